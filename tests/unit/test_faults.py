"""tools/faults.py, the fault rule engine, on its own: the reorder hold both the socket
proxy and the simulator use, and the same rules giving the same reordering in the simulator
(tests/simnet.py) as the proxy gives on real sockets (tests/integration/test_lossy_proxy.py)."""

from __future__ import annotations

from tests.simnet import SimNet, kind
from tools.faults import FaultPlan, ReorderHold


def test_a_held_datagram_goes_with_the_next_of_its_flow_and_then_does_not_expire():
    holds = ReorderHold(max_hold=0.5)
    holds.hold(("A", "B"), "m1")
    assert list(holds.release(("B", "A"))) == []  # another flow releases nothing
    assert list(holds.release(("A", "B"))) == ["m1"]
    assert list(holds.release(("A", "B"))) == []  # released once only
    assert holds.expire(("A", "B"), "m1") is False  # it went already: its max_hold does nothing


def test_each_held_datagram_expires_on_its_own():
    holds = ReorderHold(max_hold=0.5)
    holds.hold(("A", "B"), "m1")
    holds.hold(("A", "B"), "m2")
    assert holds.expire(("A", "B"), "m1") is True
    assert list(holds.release(("A", "B"))) == ["m2"]  # the later one was still held
    assert holds.expire(("A", "B"), "m2") is False


def test_nothing_held_releases_nothing():
    holds = ReorderHold()
    assert list(holds.release(("A", "B"))) == []
    assert holds.expire(("A", "B"), "m1") is False


def private_texts(sim: SimNet, receiver: str) -> list[str]:
    return [line.split(": ", 1)[1] for line in sim.lines[receiver] if line.startswith(">>> A: ")]


def test_the_simulator_holds_a_message_until_the_next_of_its_flow_its_retry():
    sim = SimNet(seed=1)
    a, b = sim.online("A", "B")
    sim.plan = FaultPlan(["reorder type=pri_msg from=A nth=1"])
    sim.holds.max_hold = 30.0  # longer than the run: only the flow's next datagram can release it
    sent_at = sim.now
    sim.type(a, "send B first")
    sim.run(5)
    assert private_texts(sim, "B") == ["first"]
    tries = [t for t, _ in sim.sends("pri_msg", src=sim.addr(a))]
    acks = [t for t, _ in sim.sends("ack", src=sim.addr(b)) if t > sent_at]
    assert len(tries) == 2  # the first try was held; A tried again after its ack timeout
    # Both copies reached B, the held one released by the retry: each is acked, after the retry.
    assert len(acks) == 2 and all(tries[1] <= t < sent_at + sim.holds.max_hold for t in acks)


def test_the_simulator_delivers_a_held_message_after_max_hold_if_nothing_follows():
    sim = SimNet(seed=1)
    a, b = sim.online("A", "B")
    sim.plan = FaultPlan(["reorder type=pri_msg"])
    sim.holds.max_hold = 0.4
    sent_at = sim.now
    sim.type(a, "send B alone")
    sim.run(0.3)
    assert private_texts(sim, "B") == []  # held: before max_hold nothing arrives
    sim.run(0.3)
    assert private_texts(sim, "B") == ["alone"]
    (delivered,) = [t for t, pkt in sim.sends("ack", src=sim.addr(b)) if t > sent_at]
    assert delivered >= sent_at + 0.4  # simulated time: the fake clock, not the wall's
    assert [kind(p) for _, p in sim.sends("pri_msg")] == ["pri_msg"]  # one try: the ack came in time
