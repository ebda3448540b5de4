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
        ("drop during=5s", "5s"),
        ("drop during=5s..2s", "5s..2s"),
        ("drop during=5x..", "5x"),
        ("drop since=kik", "kik"),
        ("reorder 120%", "120%"),
        ("reorder often", "often"),
        ("reorder gap=0", "0"),
        ("reorder delay=soon", "soon"),
        ("drop gap=2", "gap=2"),
        ("drop delay=1s", "delay=1s"),
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


# -- time: during= windows and since= triggers ----------------------------------------------------


def fate(plan: FaultPlan, now: float, kind_: str = "pri_msg", src: str = "A", dst: str = "B") -> str:
    return plan.decide(b"x", kind_, src, dst, now=now).action


def test_a_window_counts_from_when_the_rule_became_active():
    plan = FaultPlan(["drop during=5s..12s"])
    plan.activate(100.0)
    assert [fate(plan, t) for t in (100.0, 104.9, 105.0, 111.9, 112.0, 500.0)] == [
        "pass", "pass", "drop", "drop", "pass", "pass"]


def test_an_open_window_has_no_end_and_a_missing_start_is_zero():
    plan = FaultPlan(["drop type=ack during=2s..", "delay 1s during=..3s"])
    plan.activate(0.0)
    assert [fate(plan, t, "ack") for t in (1.9, 2.0, 1e6)] == ["delay", "drop", "drop"]
    assert [fate(plan, t) for t in (0.0, 2.9, 3.0)] == ["delay", "delay", "pass"]


def test_a_rule_added_later_counts_from_its_own_activation():
    """The control engineer's runtime add: the new rule's window starts when it enters the plan,
    the older rule's stays where it was."""
    plan = FaultPlan(["drop type=ack during=0s..10s"])
    plan.activate(0.0)
    plan.add("drop type=pri_msg during=1s..2s")
    plan.activate(50.0)
    assert fate(plan, 5.0, "ack") == "drop" and fate(plan, 50.5, "ack") == "pass"
    assert [fate(plan, t) for t in (50.5, 51.0, 51.9, 52.0)] == ["pass", "drop", "drop", "pass"]
    plan.replace(["drop during=..1s"])  # replaced rules are fresh: activated anew
    plan.activate(80.0)
    assert [fate(plan, t) for t in (80.5, 81.0)] == ["drop", "pass"]


def test_without_a_clock_call_a_rule_becomes_active_at_the_first_datagram_it_is_asked_about():
    plan = FaultPlan(["drop during=1s..2s"])
    assert [fate(plan, t) for t in (30.0, 31.0, 32.0)] == ["pass", "drop", "pass"]


def test_first_and_nth_count_only_the_datagrams_inside_the_window():
    plan = FaultPlan(["drop first=2 during=5s.."])
    plan.activate(0.0)
    assert [fate(plan, t) for t in (1, 2, 3, 5, 6, 7)] == ["pass", "pass", "pass", "drop", "drop", "pass"]
    assert (plan.rules[0].selected, plan.rules[0].applied) == (3, 2)


def test_since_waits_for_its_type_and_includes_the_first_one():
    plan = FaultPlan(["drop since=kick"])
    plan.activate(0.0)
    assert fate(plan, 1.0) == "pass"
    assert fate(plan, 2.0, "kick", "A", "server") == "drop"  # the trigger itself: "from the first kick on"
    assert [fate(plan, 3.0), fate(plan, 900.0, "ack")] == ["drop", "drop"]


def test_since_sees_the_trigger_even_when_an_earlier_rule_takes_it():
    """'black-hole Bob from the first kick on', while the kick itself is let through."""
    plan = FaultPlan(["pass type=kick", "drop to=Bob since=kick"])
    plan.activate(0.0)
    assert fate(plan, 1.0, "pri_msg", "Ann", "Bob") == "pass"
    assert fate(plan, 2.0, "kick", "Ann", "server") == "pass"
    assert fate(plan, 2.1, "probe", "server", "Bob") == "drop"
    assert fate(plan, 2.2, "pri_msg", "Ann", "Cid") == "pass"


def test_a_window_after_since_counts_from_the_trigger():
    plan = FaultPlan(["drop to=Bob since=kick,dereg during=0s..8s"])
    plan.activate(0.0)
    assert fate(plan, 20.0, "table", "server", "Bob") == "pass"
    fate(plan, 30.0, "dereg", "Cid", "server")
    assert [fate(plan, t, "table", "server", "Bob") for t in (30.0, 37.9, 38.0)] == ["drop", "drop", "pass"]


def test_a_trigger_seen_before_the_rule_was_added_does_not_count():
    plan = FaultPlan()
    fate(plan, 1.0, "kick", "A", "server")
    plan.add("drop since=kick")
    assert fate(plan, 2.0) == "pass"
    fate(plan, 3.0, "kick", "A", "server")
    assert fate(plan, 4.0) == "drop"


# -- reorder, netem's meaning ------------------------------------------------------------------------


def delays(plan: FaultPlan, n: int) -> list[float]:
    return [plan.decide(b"x", "grp_msg", "server", "A").copies[0][0] for _ in range(n)]


def test_plain_reorder_sends_a_quarter_at_once_and_delays_the_rest():
    got = delays(FaultPlan(["reorder type=grp_msg"], seed=4), 400)
    assert set(got) == {0.0, 0.1}
    assert 0.18 < got.count(0.0) / len(got) < 0.32  # 25% (seeded: the same on every run)
    assert got == delays(FaultPlan(["reorder type=grp_msg"], seed=4), 400)


def test_reorder_gap_lets_every_nth_go_at_once_with_a_share_of_100_percent():
    """netem's "reorder 100% gap 5": the first 4 wait, the 5th overtakes them, and again."""
    got = delays(FaultPlan(["reorder 100% gap=5 delay=10ms"], seed=1), 15)
    assert got == [0.01] * 4 + [0.0] + [0.01] * 4 + [0.0] + [0.01] * 4 + [0.0]


def test_plain_reorder_on_every_datagram_of_a_flow_changes_their_arrival_order():
    """The old reorder held each datagram until the next and sent them in their own order; with
    netem's meaning, datagrams sent 10 ms apart arrive out of order."""
    plan = FaultPlan(["reorder type=grp_msg"], seed=2)
    arrivals = sorted((i * 0.01 + delay, i) for i, delay in enumerate(delays(plan, 40)))
    order = [i for _, i in arrivals]
    assert sorted(order) == list(range(40)) and order != list(range(40))


def test_reorder_p_is_still_the_match_probability():
    plan = FaultPlan(["reorder 100% p=0.5"], seed=3)
    actions = [plan.decide(b"x", "grp_msg", "server", "A").action for _ in range(200)]
    assert 60 < actions.count("reorder") < 140 and set(actions) == {"reorder", "pass"}
