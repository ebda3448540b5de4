"""What lets one server serve thousands of clients: tables and lists split into
parts that fit one datagram, table updates coalesced, a bounded number of parts
in flight, long tables printed now and then, small records."""

from __future__ import annotations

from node.limits import Limits
from node.names import SERVER_NAME
from node.server import ClientRecord
from node.sync import TABLE_WINDOW
from node.tables import TableVersions, entry, page
from proto import MAX_DATAGRAM, STATUSES, Entry, decode
from proto.fastpath import encode, encode_item, parse
from tests.simnet import SERVER, Sent, SimNet, kind

LONG = "x" * 24  # a long name prefix, so that few rows fit a datagram


class Server:
    """The server on the simulated network, fed by hand as the shell feeds it: datagrams in batches,
    one drain per batch; its clients are addresses on one host, answering as tests tell them."""

    def __init__(self, table_window: int = TABLE_WINDOW, **limits):
        # Every fake client is on 10.1.0.1: no per-IP quota (a test may set one).
        limits = {"max_names_per_ip": 0, **limits}
        self.sim = SimNet(limits=Limits(rate=0, **limits), table_window=table_window)
        self.logic = self.sim.server
        self.tokens: dict[str, int] = {}

    @property
    def sent(self) -> list[Sent]:
        return self.sim.sent

    @property
    def shown(self) -> list[list[str]]:
        return client_tables(self.sim.lines["server"])

    def addr(self, name: str) -> tuple[str, int]:
        return ("10.1.0.1", 1024 + int(name.rsplit("-", 1)[1]))

    def batch(self, datagrams: list[tuple[bytes, tuple]]) -> list[Sent]:
        """Feed ``datagrams`` and drain; each client answered with an ok reg_ack confirms at
        once, its confirm read with the others and drained once too."""
        mark = len(self.sent)
        self.sim.batch(datagrams)
        out, confirms = self.sent[mark:], []
        for sent in out:
            if kind(sent.pkt) == "reg_ack" and sent.pkt.payload.status == 0:
                name = self.name_at(sent.dst)
                self.tokens[name] = sent.pkt.payload.token
                confirms.append((encode("confirm", {"msg_id": 2, "sender": name, "token": sent.pkt.payload.token}), sent.dst))
        return out + (self.batch(confirms) if confirms else [])

    def name_at(self, addr) -> str:
        return self.logic.by_addr.get(addr) or f"{LONG}-{addr[1] - 1024}"

    def reg(self, name: str) -> tuple[bytes, tuple]:
        return encode("reg", {"msg_id": 1, "sender": name}), self.addr(name)

    def acks(self, sends: list[Sent]) -> list[tuple[bytes, tuple]]:
        """Every client's ack of the table parts in ``sends``."""
        out = []
        for sent in sends:
            if kind(sent.pkt) == "table":
                name = self.name_at(sent.dst)
                out.append((encode("ack", {"msg_id": 1, "sender": name, "token": self.tokens[name]}, {"ack_id": sent.pkt.msg_id}), sent.dst))
        return out

    def settle(self, sends: list[Sent]) -> None:
        """Everyone acks everything until nothing more is sent."""
        while sends:
            sends = self.batch(self.acks(sends))


def client_tables(lines: list[str]) -> list[list[str]]:
    """The rows of each client table in ``lines``, as printed (rows are made when read, right after the drain)."""
    tables: list[list[str]] = []
    rows = None
    for line in lines:
        if line == ">>> Client table updated.":
            rows = []
            tables.append(rows)
        elif rows is not None and line.startswith("| "):
            rows.append(line)
        else:
            rows = None
    return tables


def tables_to(sends: list[Sent], addr) -> list:
    return [s.pkt for s in sends if s.dst == addr and kind(s.pkt) == "table"]


# -- the client table in parts -------------------------------------------------------------


def test_a_new_client_gets_the_whole_table_in_parts_that_each_fit_a_datagram():
    sim = SimNet()
    clients = [sim.client(f"{LONG}-{i}") for i in range(120)]
    sim.run(5)
    assert sim.converged() and all(len(c.table) == 120 for c in clients)
    newcomer = sim.client(f"{LONG}-new")
    sim.run(2)
    parts = [p for _, p in sim.sends("table", dst=sim.addr(newcomer))]
    assert len(parts) >= 4, "120 long rows do not fit one datagram"
    assert all(len(s.data) <= MAX_DATAGRAM for s in sim.sent if s.dst == sim.addr(newcomer) and kind(s.pkt) == "table")
    # a chain: each part starts where the one before ended, the first from nothing
    assert parts[0].payload.base == 0
    assert all(b.payload.base == a.payload.version for a, b in zip(parts, parts[1:]))
    assert len(newcomer.table) == 121 and sim.converged()
    assert max(len(s.data) for s in sim.sent) <= MAX_DATAGRAM


class Row:
    """A table row as TableVersions sees it."""

    def __init__(self, name):
        self.name, self.changed, self.row = name, 0, b""


def versioned() -> tuple[dict, TableVersions]:
    rows: dict[str, Row] = {}
    return rows, TableVersions(rows)


def test_each_part_applies_on_its_own():
    """A copy that took only the first k parts holds exactly the rows changed up to their version."""
    rows, versions = versioned()
    for i in range(60):
        row = rows[f"{LONG}-{i}"] = Row(f"{LONG}-{i}")
        row.row = entry(row.name, ("10.0.0.1", 1000 + i), True, i)
        versions.change(row)
    for i in range(0, 60, 7):  # some rows change again: they move to the end
        rows[f"{LONG}-{i}"].row = entry(f"{LONG}-{i}", ("10.0.0.2", 2000 + i), False, i)
        versions.change(rows[f"{LONG}-{i}"])
    base, copy, parts = 0, {}, 0
    while base < versions.version:
        version, part = versions.delta(base)
        assert part and sum(map(len, part)) <= MAX_DATAGRAM - len(encode("table", {"sender": "server"}, {}))
        for data in part:
            msg = parse(encode("table", {"sender": "server"}, {"entries": [data]}))
            copy[msg.payload.entries[0].client] = data
        # every row changed at or before this version is in the copy, as it is now
        assert all(copy.get(r.name) == r.row for r in rows.values() if r.changed <= version)
        base, parts = version, parts + 1
    assert parts > 1 and copy == {name: r.row for name, r in rows.items()}


def test_a_delta_skips_rows_that_changed_again_and_the_log_stays_small():
    rows, versions = versioned()
    row = rows["a"] = Row("a")
    for i in range(1000):
        row.row = entry("a", ("10.0.0.1", 1000 + i % 7), bool(i % 2), i)
        versions.change(row)
    assert versions.delta(0) == (1000, [row.row])
    assert versions.delta(1000) == (1000, [])
    assert len(versions._log) <= 2 * len(rows) + 64


# -- coalescing ------------------------------------------------------------------------------


def test_a_burst_of_registrations_costs_each_client_one_update():
    s = Server()
    s.settle(s.batch([s.reg(f"{LONG}-{i}") for i in range(30)]))
    before = len(s.sent)
    burst = s.batch([s.reg(f"{LONG}-{i}") for i in range(30, 50)])  # read in one go, drained once
    for i in range(30):
        (update,) = tables_to(burst, s.addr(f"{LONG}-{i}"))
        assert update.payload.version == s.logic.version and len(update.payload.entries) == 20
    assert len(s.shown) == 2, "the table is printed once per burst"
    assert len(s.sent) - before == 20 + 20 + 30 + 20, (
        "20 reg_acks, 20 acks of their confirms, one update each for the 30, a first part each for the 20")


def test_changes_while_an_update_is_in_flight_wait_for_its_ack():
    s = Server()
    first = s.batch([s.reg(f"{LONG}-0")])
    s.batch([s.reg(f"{LONG}-1")])
    s.batch([s.reg(f"{LONG}-2")])
    ann = s.addr(f"{LONG}-0")
    assert len(tables_to(s.sent, ann)) == 1, "one in flight: the later changes wait"
    after_ack = s.batch(s.acks(first))
    (update,) = tables_to(after_ack, ann)
    assert update.payload.base == 1 and update.payload.version == 3 and len(update.payload.entries) == 2


def table_bytes_per_registration(n: int) -> float:
    s = Server(max_clients=n)
    sends = []
    for i in range(0, n, 10):  # registrations arrive in bursts of ten, acks come back at once
        sends = s.batch([s.reg(f"{LONG}-{j}") for j in range(i, min(n, i + 10))] + s.acks(sends))
    s.settle(sends)
    return sum(len(x.data) for x in s.sent if kind(x.pkt) == "table") / n


def test_server_bytes_per_registration_grow_linearly():
    small, big = table_bytes_per_registration(50), table_bytes_per_registration(200)
    assert big / small < 6, f"{small:.0f} -> {big:.0f} bytes per registration: 4x the clients should cost about 4x, not 16x"


def test_at_most_a_window_of_table_parts_in_flight():
    s = Server(table_window=8)
    sends = s.batch([s.reg(f"{LONG}-{i}") for i in range(40)])
    assert len([x for x in sends if kind(x.pkt) == "table"]) == 8
    assert len(s.logic.net._pending) == 8
    s.settle(sends)  # the others got theirs as slots came free
    assert all(r.synced == s.logic.version for r in s.logic.clients.values())


# -- lists in parts --------------------------------------------------------------------------


def long_lists(groups: int, members: int) -> tuple[SimNet, list]:
    sim = SimNet()
    clients = sim.online(*[f"{LONG}-{i}" for i in range(members)])
    sim.run(5)
    for i in range(groups):
        sim.type(clients[0], f"create_group {LONG}g{i}")
        sim.run(0.1)
    sim.in_group(clients, f"{LONG}g0")
    return sim, clients


def test_long_group_and_member_lists_come_in_parts():
    sim, clients = long_lists(groups=80, members=60)
    first = clients[1]
    sim.type(first, "leave_group")
    sim.run(1)
    mark = len(sim.lines[first.name])
    sim.type(first, "list_groups")
    sim.run(2)
    shown = sim.lines[first.name][mark:]
    assert shown == [">>> Available group chats:"] + [f">>> {LONG}g{i}" for i in range(80)]
    pages = [p for _, p in sim.sends("ack", dst=sim.addr(first)) if p.payload.items]
    assert len(pages) > 1 and [STATUSES[p.payload.status] for p in pages][-1] == "ok"
    assert {STATUSES[p.payload.status] for p in pages[:-1]} == {"more"}
    assert len(sim.sends("list_more", src=sim.addr(first))) == len(pages) - 1

    member = clients[2]
    mark = len(sim.lines[member.name])
    sim.type(member, "list_members")
    sim.run(2)
    prefix = f">>> ({LONG}g0) "
    expected = [f"{prefix}Members in the group {LONG}g0:"] + [f"{prefix}{c.name}" for c in clients if c is not first]
    assert sim.lines[member.name][mark:] == expected
    assert max(len(s.data) for s in sim.sent) <= MAX_DATAGRAM


def test_list_more_of_a_group_one_is_not_in_is_refused():
    s = Server()
    s.settle(s.batch([s.reg(f"{LONG}-0")]))
    name = f"{LONG}-0"
    more = encode("list_more", {"msg_id": 9, "sender": name, "token": s.tokens[name]}, {"list": "list_members", "group": "g"})
    (answer,) = s.batch([(more, s.addr(name))])
    assert STATUSES[answer.pkt.payload.status] == "not_in_group"


def test_pages_cover_the_list_once_in_order():
    items = [f"name{i:04d}" + "y" * (i % 30) for i in range(500)]
    seen, start = [], 0
    while True:
        part, more = page(items, start)
        assert sum(map(len, part)) <= MAX_DATAGRAM
        seen += [parse(encode("ack", {}, {"items": [p]})).payload.items[0].value for p in part]
        start = len(seen)
        if not more:
            break
    assert seen == items


# -- printing long tables, memory ------------------------------------------------------------


def test_a_long_table_is_printed_now_and_then_the_latest_last():
    s = Server(max_clients=400)
    for i in range(0, 300, 10):
        s.batch([s.reg(f"{LONG}-{j}") for j in range(i, i + 10)])
        s.sim.run(0.01)
    printed = [len(rows) for rows in s.shown]
    assert printed[:10] == [10 * (k + 1) for k in range(10)], "short: printed on every change"
    assert len(printed) < 15, "long: not on every change"
    s.sim.run(5)
    assert len(s.shown[-1]) == 300, "the latest table is printed in the end"


def test_a_client_shows_a_long_table_now_and_then():
    sim = SimNet(server=False)
    server = sim.raw(SERVER_NAME, SERVER)  # updates made by hand
    client = sim.client("me", limits=Limits(rate=0))
    me = sim.addr(client)
    (reg,) = server.received("reg")
    server.send(encode("reg_ack", {"msg_id": 1, "token": reg.token, "sender": SERVER_NAME}, {"ack_id": reg.msg_id, "token": 5}), me)
    (confirm,) = server.received("confirm")
    server.send(encode("ack", {"msg_id": 2, "token": 5, "sender": SERVER_NAME}, {"ack_id": confirm.msg_id}), me)
    assert client.registered
    for v in range(1, 301):  # one new row per update: a second apart while short, then 10 ms apart
        row = {"client": f"c{v}", "ip": "10.0.0.1", "port": 1000 + v, "session": v}
        update = encode("table", {"msg_id": 100 + v, "token": 5, "sender": SERVER_NAME}, {"version": v, "base": v - 1, "entries": [row]})
        sim.run_until(min(v, 100) + max(0, v - 100) * 0.01)
        server.send(update, me)
    shown = [len(rows) for rows in client_tables(sim.lines["me"])]
    assert shown[:100] == list(range(1, 101)), "short and changing at reading pace: shown on every update"
    assert len(shown) < 110, "long: at most once a second"
    sim.run_until(110.0)
    assert len(client_tables(sim.lines["me"])[-1]) == 300, "the latest table is shown in the end"


def test_client_records_have_no_instance_dict():
    record = ClientRecord("a", ("10.0.0.1", 1), 1, 1)
    assert not hasattr(record, "__dict__")


def test_encoded_items_are_the_same_bytes_as_dict_items():
    row = {"client": "Ann", "ip": "10.0.0.7", "port": 7001, "online": 1, "session": 99}
    header = {"msg_id": 5, "sender": "server"}
    assert encode("table", header, {"entries": [encode_item(Entry, row)]}) == encode("table", header, {"entries": [row]})
    assert decode(encode("table", header, {"entries": [encode_item(Entry, row)]})).payload.entries[0].client == "Ann"
