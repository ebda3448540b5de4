"""The client table's synchronisation on its own (node/sync.py): a real endpoint on the
simulated network's clock (tests/simnet.py), client records made by hand, parts acknowledged
(or not) by hand."""

from __future__ import annotations

import itertools
import random

from node.names import SERVER_NAME
from node.reliable import Endpoint, RetryPolicy
from node.server import ClientRecord
from node.sync import MAX_SYNC_PAUSE, TABLE_WINDOW, SyncState, TableSync
from proto import MSG_TYPES, STATUS_CODES
from proto.fastpath import encode, parse
from tests.simnet import SERVER, SimNet

POLICY = RetryPolicy()


class Harness:
    """The table sync of a server's endpoint on the simulated network; its clients' addresses are raw peers."""

    def __init__(self, window: int = TABLE_WINDOW):
        self.sim = SimNet(server=False)
        self.net = Endpoint(SERVER_NAME, SERVER[1], POLICY, random.Random(1))
        self.sim.add(SERVER, self.net, SERVER_NAME, drain=lambda now: self.net.drain())
        self.clients: dict[str, ClientRecord] = {}
        self.printed: list[int] = []  # the table version at each printing
        self.sync = TableSync(self.net, self.clients, lambda: self.printed.append(self.sync.version), window)
        self._ids = itertools.count(1)

    @property
    def now(self) -> float:
        return self.sim.now

    @property
    def sent(self) -> list[tuple[float, str, object]]:
        """(time, receiver, table part) of every part sent."""
        return [(s.time, self.sim.name_of(s.dst), s.pkt) for s in self.sim.sent]

    def join(self, name: str) -> ClientRecord:
        peer = self.sim.raw(name)
        record = ClientRecord(name, peer.addr, token=1000 + peer.addr[1], session=peer.addr[1])  # both unique
        replaced = self.clients.get(name)
        self.clients[name] = record
        self.sync.start(record, replaced)
        return record

    def leave(self, record: ClientRecord) -> None:
        record.online = False
        self.sync.stop(record)
        self.sync.changed(record)

    def round(self) -> list[tuple[str, object]]:
        """The shell's drain: a round, then what went out (receiver, part)."""
        self.sync.round(self.now)
        return self.collect()

    def collect(self) -> list[tuple[str, object]]:
        mark = len(self.sim.sent)
        self.sim.collect(SERVER)
        parts = [(self.sim.name_of(s.dst), s.pkt) for s in self.sim.sent[mark:]]
        assert all(MSG_TYPES[p.type] == "table" for _, p in parts)
        return parts

    def ack(self, record: ClientRecord, status: str = "ok") -> None:
        """``record`` acknowledges the part in flight to it."""
        header = {"msg_id": next(self._ids), "token": record.token, "sender": record.name}
        ack = encode("ack", header, {"ack_id": record.table_msg, "status": STATUS_CODES[status]})
        assert self.net.handle_ack(parse(ack), record.addr, self.now)

    def advance(self, seconds: float) -> None:
        self.sim.run(seconds)
        assert all(MSG_TYPES[p.type] == "table" for _, _, p in self.sent)

    def settle(self, *records: ClientRecord) -> None:
        """Rounds and acks until ``records`` hold the whole table."""
        for _ in range(1000):
            self.round()
            flying = [r for r in records if r.sync is SyncState.IN_FLIGHT]
            if not flying and all(r.synced == self.sync.version for r in records):
                return
            for record in flying:
                self.ack(record)
        raise AssertionError("never settled")


def test_a_new_session_is_due_and_idle_once_it_holds_the_table():
    h = Harness()
    ann = h.join("Ann")
    assert ann.sync is SyncState.DUE and h.sync.version == 1
    ((to, part),) = h.round()
    assert to == "Ann" and (part.payload.base, part.payload.version) == (0, 1) and ann.sync is SyncState.IN_FLIGHT
    h.ack(ann)
    assert ann.sync is SyncState.IDLE and ann.synced == 1 and h.sync.in_flight == 0
    assert h.round() == [], "nothing changed: nothing sent"


def test_the_changes_of_one_batch_go_as_one_part_to_each_client():
    h = Harness()
    ann, bob = h.join("Ann"), h.join("Bob")
    h.settle(ann, bob)
    cat, dan = h.join("Cat"), h.join("Dan")  # two changes before the next drain
    parts = h.round()
    assert sorted(to for to, _ in parts) == ["Ann", "Bob", "Cat", "Dan"], "one part each"
    part = dict(parts)["Ann"]
    assert (part.payload.base, part.payload.version) == (2, 4) and len(part.payload.entries) == 2
    assert h.printed == [2, 4], "printed once a round"


def test_at_most_a_window_of_parts_is_in_flight_the_others_wait_their_turn():
    h = Harness(window=2)
    records = [h.join(f"c{i}") for i in range(5)]
    first = h.round()
    assert len(first) == 2 and h.sync.in_flight == 2
    assert [r.sync for r in records[2:]] == [SyncState.DUE] * 3
    for record in records[:2]:
        h.ack(record)
    assert h.sync.in_flight == 0
    assert sorted(to for to, _ in h.round()) == ["c2", "c3"], "in turn, as slots come free"
    h.settle(*records)
    assert all(r.synced == h.sync.version for r in records)


def test_a_client_that_does_not_answer_backs_off_ever_more_slowly():
    h = Harness()
    ann = h.join("Ann")
    h.round()
    h.advance(POLICY.window)  # every try of the part went unanswered
    assert ann.sync is SyncState.BACKING_OFF and ann.sync_pause == POLICY.window and h.sync.in_flight == 0
    pauses = []
    for _ in range(6):
        h.advance(ann.sync_pause)  # the retry: a new part, tried as often, unanswered too
        assert ann.sync is SyncState.IN_FLIGHT
        h.advance(POLICY.window)
        pauses.append(ann.sync_pause)
    assert pauses == [5.0, 10.0, 20.0, MAX_SYNC_PAUSE, MAX_SYNC_PAUSE, MAX_SYNC_PAUSE]
    h.advance(ann.sync_pause)
    h.ack(ann)
    assert ann.sync is SyncState.IDLE and ann.sync_pause == 0.0 and ann.synced == h.sync.version


def test_a_change_reaches_a_client_backing_off_before_its_pause_is_over():
    h = Harness()
    ann = h.join("Ann")
    h.round()
    h.advance(POLICY.window)
    assert ann.sync is SyncState.BACKING_OFF
    bob = h.join("Bob")
    assert sorted(to for to, _ in h.round()) == ["Ann", "Bob"], "at the next round, not after the pause"
    h.ack(ann)
    h.ack(bob)
    sent = len(h.sent)
    h.advance(MAX_SYNC_PAUSE)  # the retry set while it backed off finds nothing to do
    assert h.sent[sent:] == [] and ann.sync is SyncState.IDLE


def test_a_resync_answer_gets_the_whole_table():
    h = Harness()
    ann, bob = h.join("Ann"), h.join("Bob")
    h.settle(ann, bob)
    h.join("Cat")
    h.round()
    h.ack(ann, "resync")  # its copy is not what we thought
    assert ann.synced == 0 and ann.sync is SyncState.DUE
    ((to, part),) = [p for p in h.round() if p[0] == "Ann"]
    assert part.payload.base == 0 and {e.client for e in part.payload.entries} == {"Ann", "Bob", "Cat"}


def test_going_offline_cancels_the_part_in_flight_and_frees_its_slot():
    h = Harness(window=1)
    ann, bob = h.join("Ann"), h.join("Bob")
    assert [to for to, _ in h.round()] == ["Ann"]
    h.leave(ann)
    assert ann.sync is SyncState.OFF and ann.table_msg is None and h.sync.in_flight == 0
    assert [to for to, _ in h.round()] == ["Bob"]
    h.advance(POLICY.window)
    assert "Ann" not in [to for _, to, _ in h.sent[2:]], "Ann's part is not retransmitted"


def test_a_replaced_session_gets_nothing_more():
    h = Harness()
    old = h.join("Ann")
    h.round()
    new = h.join("Ann")  # the same name registered again, elsewhere
    assert old.sync is SyncState.OFF and h.sync.in_flight == 0
    assert [to for to, _ in h.round()] == ["Ann"] and new.sync is SyncState.IN_FLIGHT
    assert [p.token for _, _, p in h.sent] == [old.token, new.token]


def test_contact_repairs_a_client_waiting_its_turn_at_once():
    h = Harness(window=1)
    ann, bob = h.join("Ann"), h.join("Bob")
    h.round()
    assert bob.sync is SyncState.DUE
    h.sync.contact(bob, h.now)  # Bob sent a request: no need to wait for the window
    h.collect()
    assert bob.sync is SyncState.IN_FLIGHT and [to for _, to, _ in h.sent] == ["Ann", "Bob"]
    h.sync.contact(bob, h.now)
    assert len(h.collect()) == 0, "one part at a time"


def test_an_offline_client_is_told_once():
    h = Harness()
    ann, bob = h.join("Ann"), h.join("Bob")
    h.settle(ann, bob)
    h.leave(bob)
    h.sync.tell(bob, h.now)  # the last word: you are offline
    h.round()
    assert [to for _, to, _ in h.sent[-2:]] == ["Bob", "Ann"]
    h.ack(bob)
    assert bob.sync is SyncState.OFF and h.sync.in_flight == 1
    h.join("Cat")
    assert "Bob" not in [to for to, _ in h.round()]


def test_a_long_table_goes_in_parts_each_after_the_last_is_acknowledged():
    h = Harness()
    records = [h.join(f"{'x' * 60}-{i}") for i in range(400)]
    ann = records[0]
    h.settle(*records)
    parts = [p for _, to, p in h.sent if to == ann.name]
    assert len(parts) > 2 and ann.synced == h.sync.version == 400
    assert all(b.payload.base == a.payload.version for a, b in zip(parts, parts[1:])), "each starts where the last ended"
