"""What the server prints is bounded per request and per second (node/console.py,
node/tables.py TablePrinter): the throttles on a fake clock, then the server's logic
under a client that asks for a lot."""

from __future__ import annotations

from node.console import LINES_AT_ONCE, LINES_PER_SECOND, LIST_SHOWN, Console
from node.events import GroupJoined, GroupLeft, GroupMessageRelayed, GroupsListed, LinesMerged, MembersListed
from node.limits import Limits
from node.tables import ROWS_IN_A_BURST, TablePrinter
from proto import MSG_TYPES, STATUS_CODES
from proto.fastpath import encode
from tests.shown import shown
from tests.simnet import SimNet

JOINED = GroupJoined


def console() -> tuple[SimNet, Console, list[str]]:
    """A console on the simulated network's clock, and the lines a user reads of what it emits (">>> " dropped)."""
    clock, lines = SimNet(server=False), []
    return clock, Console(clock.call_at, lambda event: lines.extend(line[4:] for line in shown(event))), lines


# -- per-event lines -----------------------------------------------------------------------------


def test_lines_at_reading_pace_are_printed_each_exactly():
    clock, out, lines = console()
    for i in range(1200):  # 20 a second for a minute
        assert out.event(clock.now, JOINED, f"c{i}", "g")
        clock.run(0.05)
    assert lines == [f"Client c{i} joined group g" for i in range(1200)]


def test_a_short_burst_at_machine_speed_is_printed_each_exactly():
    clock, out, lines = console()
    for i in range(int(LINES_AT_ONCE)):  # a few commands typed in a row, a short script
        assert out.event(clock.now, JOINED, f"c{i}", "g")
        clock.run(0.001)
    assert lines == [f"Client c{i} joined group g" for i in range(int(LINES_AT_ONCE))]


def test_churn_at_40_a_second_is_merged_faster_than_anyone_reads():
    """The issue's abuse: one client joining and leaving 40 times a second, for ten seconds."""
    clock, out, lines = console()
    for i in range(400):
        out.event(clock.now, JOINED, f"c{i}", "g")
        clock.run(1 / 40)
    clock.run(2.0)
    merged = [line for line in lines if line.startswith("... and ")]
    assert merged and all(line.endswith("more like it in the last second: Client … joined group …") for line in merged)
    assert len(lines) - len(merged) <= LINES_AT_ONCE + 10 * LINES_PER_SECOND + 1
    shown = sum(int(line.split()[2]) for line in merged) + len(lines) - len(merged)
    assert shown == 400, "every line is printed or counted in a merge line"


def test_a_flood_of_one_kind_is_merged_into_one_line_a_second():
    clock, out, lines = console()
    for i in range(2000):  # all within one second
        out.event(clock.now, JOINED, f"c{i}", "g")
        clock.run(0.0005)
    printed = [line for line in lines if line.startswith("Client")]
    assert printed[:int(LINES_AT_ONCE)] == [f"Client c{i} joined group g" for i in range(int(LINES_AT_ONCE))]
    assert LINES_AT_ONCE <= len(printed) <= LINES_AT_ONCE + LINES_PER_SECOND
    clock.run(1.0)
    assert lines[len(printed):] == [f"... and {2000 - len(printed)} more like it in the last second: Client … joined group …"]


def test_a_steady_flood_prints_a_bounded_number_of_lines_a_second():
    clock, out, lines = console()
    for _ in range(20_000):  # 1,000 a second for 20 seconds
        out.event(clock.now, JOINED, "Mal", "g")
        clock.run(0.001)
    clock.run(1.0)
    summaries = [line for line in lines if line.startswith("... and")]
    assert len(lines) <= LINES_AT_ONCE + 21 * LINES_PER_SECOND + len(summaries) and len(summaries) <= 21
    merged = sum(int(line.split()[2]) for line in summaries)
    assert merged + len(lines) - len(summaries) == 20_000, "every event is printed or counted"


def test_kinds_are_merged_apart():
    clock, out, lines = console()
    for _ in range(3000):
        out.event(clock.now, JOINED, "Mal", "g")
        out.event(clock.now, GroupLeft, "Mal", "g")
    assert out.event(clock.now, GroupMessageRelayed, "Ann", "g", "hello"), "another kind still gets through"
    clock.run(1.0)
    n = int(3000 - LINES_AT_ONCE)
    assert sorted(line for line in lines if line.startswith("...")) == [
        f"... and {n} more like it in the last second: Client … joined group …",
        f"... and {n} more like it in the last second: Client … left group",
    ]


def test_a_long_list_is_cut_and_a_short_one_is_not():
    clock, out, lines = console()
    groups = [f"g{i}" for i in range(1000)]
    out.event(clock.now, GroupsListed, "Ann", groups, items=groups)
    assert lines == ["Client Ann requested listing groups, current groups:", *(f"g{i}" for i in range(LIST_SHOWN)),
                     f"... and {1000 - LIST_SHOWN} more"]
    lines.clear()
    out.event(clock.now, MembersListed, "Ann", "g", ["Ann", "Bob"], items=["Ann", "Bob"])
    assert lines == ["Client Ann requested listing members of group g:", "Ann", "Bob"]


def test_text_from_the_network_is_only_filled_in():
    clock, out, lines = console()
    out.event(clock.now, GroupMessageRelayed, "{0}", "g", "{1} {} %s {x!r}")
    assert lines == ["Client {0} sent group message: {1} {} %s {x!r}"]


def test_an_event_past_the_budget_is_never_made_and_the_merge_is_an_event():
    clock, emitted = SimNet(server=False), []
    out = Console(clock.call_at, emitted.append)
    made = []

    class Counted(GroupJoined):
        def __init__(self, *fields):
            made.append(fields)
            super().__init__(*fields)

    for i in range(int(LINES_AT_ONCE) + 50):
        out.event(clock.now, Counted, f"c{i}", "g")
    assert len(made) == LINES_AT_ONCE, "the 50 past the budget were only counted"
    clock.run(1.0)
    assert emitted[-1] == LinesMerged(Counted, 50)


# -- tables ----------------------------------------------------------------------------------------


class Table:
    def __init__(self, rows: int):
        self.clock = SimNet(server=False)
        self.rows = rows
        self.version = 0
        self.printed: list[int] = []  # the version each printing showed
        self.printer = TablePrinter(self.clock.call_at, lambda: self.rows, lambda: self.printed.append(self.version))

    def change(self) -> None:
        self.version += 1
        self.printer.changed(self.clock.now)


def test_a_short_table_changing_at_reading_pace_is_printed_on_every_change():
    t = Table(5)
    for _ in range(30):
        t.change()
        t.clock.run(1.0)
    assert t.printed == list(range(1, 31))


def test_a_short_table_changing_fast_is_printed_about_once_a_second_the_latest_last():
    t = Table(50)
    for _ in range(1000):  # 1,000 changes a second for ten seconds
        for _ in range(10):
            t.change()
        t.clock.run(0.01)
    t.clock.run(2.0)
    assert t.printed[:10] == list(range(1, 11)), "a burst goes at once"
    burst = ROWS_IN_A_BURST // 51 + 1  # rows and title
    assert len(t.printed) <= burst + 11, "then about once a second"
    assert t.printed[-1] == 10_000, "the latest version in the end"


def test_a_tiny_table_in_a_quick_conversation_is_printed_on_every_change():
    t = Table(3)
    for _ in range(100):  # ten changes a second for ten seconds
        t.change()
        t.clock.run(0.1)
    assert t.printed == list(range(1, 101))


def test_a_long_table_is_printed_at_most_once_per_pause():
    t = Table(5000)  # 5 s between printings: 1 ms a row
    for _ in range(2000):
        t.change()
        t.clock.run(0.01)  # 20 s in all
    t.clock.run(10.0)
    assert 3 <= len(t.printed) <= 6 and t.printed[-1] == 2000


# -- the server under a client that asks for a lot ----------------------------------------------------


class Server:
    """The server on the simulated network, and Mal, a raw peer asking it for a lot; what the server
    prints is read as the shell reads it (table rows right after each drain)."""

    def __init__(self):
        self.sim = SimNet(limits=Limits(rate=0, max_groups_per_ip=0))
        self.logic = self.sim.server
        self.mal = self.sim.raw("Mal")
        self.token = 0
        self.batch([encode("reg", {"msg_id": next(self.sim.ids), "sender": "Mal"})])
        (reg_ack,) = self.mal.received("reg_ack")
        self.token = reg_ack.payload.token
        self.batch([self.request("confirm")])  # the session starts with the confirm
        self.forget()

    def request(self, type_name: str, **payload) -> bytes:
        return encode(type_name, {"msg_id": next(self.sim.ids), "sender": "Mal", "token": self.token}, payload)

    def batch(self, datagrams: list[bytes]) -> None:
        self.sim.batch([(data, self.mal.addr) for data in datagrams])

    def advance(self, seconds: float) -> None:
        self.sim.run(seconds)

    def forget(self) -> None:
        """Count what is printed and answered from now on."""
        self._printed, self._sent = len(self.sim.lines["server"]), len(self.sim.sent)

    def _printed_since(self) -> list[str]:
        return self.sim.lines["server"][self._printed:]

    @property
    def lines(self) -> list[str]:
        """The lines printed, but for tables."""
        return [line for line in self._printed_since() if not (line.endswith("table updated.") or line.startswith("| "))]

    @property
    def tables(self) -> int:
        return sum(line.endswith("table updated.") for line in self._printed_since())

    @property
    def rows(self) -> int:
        """Table rows made."""
        return sum(line.startswith("| ") for line in self._printed_since())

    @property
    def answers(self) -> dict[int, int]:
        """msg_id -> status of each request answered."""
        return {s.pkt.payload.ack_id: s.pkt.payload.status for s in self.sim.sent[self._sent:]
                if s.dst == self.mal.addr and MSG_TYPES[s.pkt.type] == "ack"}


def with_groups(count: int) -> Server:
    s = Server()
    for start in range(0, count, 64):
        s.batch([s.request("create_group", group=f"g{i}") for i in range(start, min(count, start + 64))])
    assert len(s.logic.groups) == count
    s.advance(5.0)
    s.forget()
    return s


def test_join_leave_churn_with_1000_groups_prints_a_bounded_amount():
    s = with_groups(1000)
    for i in range(3000):  # 6,000 requests in three simulated seconds, one batch each
        s.batch([s.request("join_group", group=f"g{i % 1000}")])
        s.advance(0.0005)
        s.batch([s.request("leave_group", group=f"g{i % 1000}")])
        s.advance(0.0005)
    s.advance(2.0)
    assert sum(status == STATUS_CODES["ok"] for status in s.answers.values()) == 6000, "every request was answered"
    assert s.tables <= 5, "the group table: once at once, then its latest version every second or so"
    assert s.rows <= 5 * 1000
    assert len(s.lines) <= 2 * (LINES_AT_ONCE + 5 * LINES_PER_SECOND + 5), s.lines[-20:]
    assert any(line.endswith("more like it in the last second: Client … joined group …") for line in s.lines)


def test_list_groups_with_1000_groups_prints_a_bounded_list():
    s = with_groups(1000)
    s.batch([s.request("list_groups")])
    assert s.lines == [">>> Client Mal requested listing groups, current groups:",
                       *(f">>> g{i}" for i in range(LIST_SHOWN)), f">>> ... and {1000 - LIST_SHOWN} more"]


def test_list_groups_flood_prints_a_bounded_number_of_lines():
    s = with_groups(40)
    for _ in range(1000):
        s.batch([s.request("list_groups")])
        s.advance(0.001)
    s.advance(2.0)
    assert len(s.answers) >= 1000
    assert len(s.lines) <= LINES_AT_ONCE + (1 + LIST_SHOWN + 1) * (1 + 3 * LINES_PER_SECOND / 22) + 3
