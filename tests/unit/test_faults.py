"""tools/faults.py, the fault rule engine, on its own: rules parsed (or refused naming the bad
word), seeded choices, the hold both the socket proxy and the simulator use, and the
same rules giving the same reordering in the simulator (tests/simnet.py) as the proxy gives on
real sockets (tests/integration/test_lossy_proxy.py)."""

from __future__ import annotations

import pytest

from tests.simnet import SimNet, kind
from tools.faults import FaultPlan, ReorderHold, Rule, RuleError


# -- rules: parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, word",
    [
        ("frop type=ack", "frop"),
        ("drop tipe=ack", "tipe=ack"),
        ("drop type=akc", "akc"),
        ("drop type=ack,nope", "nope"),
        ("drop ack", "ack"),
        ("drop from=", "from="),
        ("drop p=1.5", "1.5"),
        ("drop p=often", "often"),
        ("drop first=0", "0"),
        ("drop nth=two", "two"),
        ("drop after=-1", "-1"),
        ("drop count=1.5", "1.5"),
        ("delay", "delay"),
        ("delay type=ack", "delay"),
        ("delay 3xs", "3xs"),
        ("delay 300ms±", "300ms±"),
        ("delay 300ms±5x", "5x"),
        ("duplicate", "duplicate"),
        ("duplicate many", "many"),
        ("corrupt 0", "0"),
        ("replay soon", "soon"),
        ("replay 1s±5ms", "1s±5ms"),
    ],
)
def test_a_bad_rule_is_an_error_naming_the_bad_word(text, word):
    with pytest.raises(RuleError) as caught:
        Rule.parse(text)
    assert f"'{word}'" in str(caught.value)


def test_an_empty_rule_is_an_error():
    with pytest.raises(RuleError, match="empty rule"):
        Rule.parse("   ")


def test_rules_parse_into_their_parts():
    rule = Rule.parse("delay 300ms±50ms type=pri_msg,ack from=A to=B,server p=0.25 first=3")
    assert (rule.action, rule.delay, rule.jitter, rule.p, rule.first) == ("delay", 0.3, 0.05, 0.25, 3)
    assert rule.types == {"pri_msg", "ack"} and rule.src == {"A"} and rule.dst == {"B", "server"}
    assert (Rule.parse("delay 1.5s+-0.5s").delay, Rule.parse("delay 1.5s+-0.5s").jitter) == (1.5, 0.5)
    assert Rule.parse("delay 2").delay == 2.0
    assert Rule.parse("duplicate 3 nth=2").copies == 3
    assert Rule.parse("corrupt").copies == 1 and Rule.parse("corrupt 4 after=1").copies == 4
    assert Rule.parse("replay 400ms count=2").delay == 0.4


def test_jittered_delays_stay_in_their_range_and_repeat_with_the_seed():
    def delays(seed):
        plan = FaultPlan(["delay 300ms±100ms"], seed)
        return [plan.decide(b"x", "pri_msg", "A", "B").copies[0][0] for _ in range(50)]

    first = delays(5)
    assert all(0.2 <= d <= 0.4 for d in first)
    assert len(set(first)) == 50  # jittered, not one fixed delay
    assert delays(5) == first
    assert delays(6) != first


def test_a_seed_gives_each_flow_the_same_choices_whatever_the_interleaving():
    """Real nodes' flows reach the proxy in a different order on each run."""

    def fates(order):
        plan = FaultPlan(["drop p=0.5"], seed=11)
        got = {"A": [], "B": []}
        for src in order:
            got[src].append(plan.decide(b"x", "pri_msg", src, "server").action)
        return got

    one = fates(["A", "B"] * 20)
    other = fates(["A"] * 20 + ["B"] * 20)
    assert one == other
    assert {"drop", "pass"} == set(one["A"])


# -- the hold ------------------------------------------------------------------------------


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
    sim.plan = FaultPlan(["hold type=pri_msg from=A nth=1"])
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
    sim.plan = FaultPlan(["hold type=pri_msg"])
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
