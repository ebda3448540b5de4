"""The structures an outsider can grow from the network, each driven past its bound (the
table of bounds in docs/threat-model.md, row by row).  The queue of private messages and the per-IP
quotas have their own tests in test_client_logic.py, test_server_logic.py and
test_e2e_bounds.py."""

from __future__ import annotations

import random

from node.client import ClientLogic
from node.limits import MAX_SOURCES
from node.reliable import RetryPolicy
from node.server import ServerLogic
from node.effects import Send
from proto import ChatHeader, GrpMsg
from proto.fastpath import encode, parse
from tests.simnet import SERVER, SimNet, kind


def test_rate_limit_buckets_stop_at_max_sources():
    server = ServerLogic(9000, rng=random.Random(1))
    junk = b"\x00"
    for i in range(MAX_SOURCES + 500):
        server.receive(junk, (f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 4000), 0.0)
    assert len(server._rate) == MAX_SOURCES
    assert server.drops["malformed"] == MAX_SOURCES + 500, "every one still read and counted"


def test_strangers_leave_no_state_in_a_client():
    """Private messages from names or addresses the table does not hold, and server-only
    datagrams from elsewhere, leave nothing behind: no sender memory, no ack memory."""
    sim = SimNet()
    ann, bob = sim.online("Ann", "Bob")
    remembered = ann.net.remembered_count  # the answers to the server's table updates
    for i in range(1000):
        stranger = (f"10.66.{i >> 8}.{i & 255}", 5000)
        pri = encode("pri_msg", {"msg_id": i + 1, "sender": f"x{i}"}, {"session": 1, "text": "hi"})
        grp = encode("grp_msg", {"msg_id": i + 1, "sender": "server"}, {"group": "g", "origin": "x", "text": "hi"})
        ann.receive(pri, stranger, sim.now)
        ann.receive(grp, stranger, sim.now)
    spoofed = encode("pri_msg", {"msg_id": 5, "sender": "Bob"}, {"session": bob.session, "text": "hi"})
    ann.receive(spoofed, ("10.66.9.9", 5000), sim.now)  # Bob's name, another address
    assert ann.drain(sim.now) == [], "nothing answered"
    assert ann._last_from == {} and ann.net._acks == {} and ann.net.remembered_count == remembered
    assert ann.drops["unknown sender"] == 1001 and ann.drops["not from server"] == 1000


def test_group_message_ids_a_client_remembers_are_bounded():
    """A busy group brings thousands of message ids a second; the ids acknowledged are kept in
    two generations of at most max_replies / 2 each (MAX_REMEMBERED_REPLIES), however fast they come."""
    client = ClientLogic("Ann", SERVER, 7001, RetryPolicy(), random.Random(1))
    # the endpoint's bound, lowered (ClientLogic does not pass max_replies through yet)
    client.net._max_replies = 8
    client.net.token = 9  # as if registered: the server's group messages carry it
    for msg_id in range(1, 101):  # all at one instant: no generation expires by age
        data = bytes(ChatHeader(type="grp_msg", msg_id=msg_id, token=9, sender="server") / GrpMsg(group="g", origin="x", text="y"))
        client.receive(data, SERVER, 0.0)
        assert client.net.remembered_count <= 8
    client.drain(0.0)
    assert client.net.remembered_count == 8


def test_kicks_of_one_client_make_one_probe():
    """However many kicks name Bob, the server probes Bob once at a time."""
    sim = SimNet()
    ann, bob, cat = sim.online("Ann", "Bob", "Cat")
    sim.crash(bob)
    for reporter in (ann, cat) * 20:
        kick = reporter.net.build("kick", target="Bob")
        sim.server.receive(kick.data, sim.addr(reporter), sim.now)
    assert set(sim.server._probing) == {sim.server.clients["Bob"].token}
    sent = [kind(parse(e.data)) for e in sim.server.drain(sim.now) if isinstance(e, Send)]
    assert sent.count("probe") == 1 and sent.count("ack") == 40


def test_refused_registrations_leave_no_rows():
    """Names past --max-clients or the per-IP quota leave nothing in any per-client structure."""
    from node.limits import Limits

    server = ServerLogic(9000, rng=random.Random(1), limits=Limits(max_clients=50, max_names_per_ip=10, rate=0))
    for i in range(200):
        addr = (f"10.0.{i // 25}.1", 7000 + i)
        server.receive(encode("reg", {"msg_id": i + 1, "sender": f"n{i}"}), addr, 0.0)
        answers = [parse(e.data) for e in server.drain(0.0) if isinstance(e, Send) and e.addr == addr]
        tokens = [a.payload.token for a in answers if kind(a) == "reg_ack" and a.payload.token]
        if tokens:  # a registration starts when it is confirmed: the quota and the limit hold then too
            server.receive(encode("confirm", {"msg_id": i + 1000, "token": tokens[0], "sender": f"n{i}"}), addr, 0.0)
    server.drain(0.0)
    assert len(server.clients) == 50 and len(server.by_addr) == 50
    assert len(server._sync._due) + len(server._sync._idle) + server._sync.in_flight <= 50
    assert [server._names_held.held(f"10.0.{a}.1") for a in range(8)] == [10] * 5 + [0] * 3
