"""tools/impairments.py, the realistic loss, delay and rate models of the fault rules, on their own:
each model's long-run statistics against the formulas of its definition (from a fixed seed, so
every run draws the same numbers and the tolerances are not a matter of luck), the rule syntax
that names them, and the simulator (tests/simnet.py) replaying a run with them exactly."""

from __future__ import annotations

import itertools
import re
import random
import statistics
from statistics import NormalDist

import pytest

from tests.simnet import SimNet
from tools.faults import FaultPlan, Rule, RuleError
from tools.impairments import DelayShape, FourState, GilbertElliott, Link, fraction, rate

N = 200_000  # datagrams per statistics test: the long run, at a fraction of a second each


def losses(model, n: int = N, seed: int = 1) -> list[bool]:
    chain = model.chain(random.Random(seed))
    return [chain.lost() for _ in range(n)]


def runs(fates: list[bool], value: bool = True) -> list[int]:
    """The lengths of the runs of ``value`` (losses by default) in ``fates``."""
    return [len(list(group)) for fate, group in itertools.groupby(fates) if fate == value]


# -- Gilbert-Elliott -------------------------------------------------------------------------------


def test_gilbert_loss_comes_in_bursts_of_the_mean_length_the_model_gives():
    """Simple Gilbert (1-h = 1, 1-k = 0): the share of time in the bad state is p/(p+r), every
    datagram there is lost, and a stay there lasts 1/r datagrams on average (geometric)."""
    p, r = 0.05, 0.25
    fates = losses(GilbertElliott.parse(f"{p},{r}"))
    assert sum(fates) / N == pytest.approx(p / (p + r), rel=0.03)
    assert statistics.mean(runs(fates)) == pytest.approx(1 / r, rel=0.03)
    assert statistics.mean(runs(fates, False)) == pytest.approx(1 / p, rel=0.03)  # gaps between bursts: 1/p


def test_gilbert_elliott_loses_in_both_states_at_their_rates():
    p, r, loss_bad, loss_good = 0.02, 0.2, 0.7, 0.01
    fates = losses(GilbertElliott.parse(f"{p:%},{r:%},{loss_bad:%},{loss_good:%}"))
    bad = p / (p + r)
    assert sum(fates) / N == pytest.approx(bad * loss_bad + (1 - bad) * loss_good, rel=0.03)


def test_gemodel_with_p_alone_is_independent_loss_as_netem_defaults_it():
    """netem: r = 1-p, 1-h = 1, 1-k = 0: then each datagram is lost with chance p, independently."""
    assert GilbertElliott.parse("1%") == GilbertElliott(0.01, 0.99, 1.0, 0.0)
    fates = losses(GilbertElliott.parse("20%"))
    assert sum(fates) / N == pytest.approx(0.2, rel=0.03)
    assert statistics.mean(runs(fates)) == pytest.approx(1 / 0.8, rel=0.03)  # geometric, as for a coin


# -- the 4-state Markov model ------------------------------------------------------------------------


def four_state_loss(p13, p31, p32, p23, p14) -> float:
    """The long-run loss of the 4-state chain, from its balance equations: π4 = p14·π1,
    π3 = (p13/p31)·π1, π2 = (p32/p23)·π3, the four adding up to 1; lost are states 3 and 4."""
    pi3 = p13 / p31
    pi1 = 1 / (1 + p14 + pi3 + pi3 * p32 / p23)
    return pi1 * (p14 + pi3)


def test_four_state_long_run_loss_matches_its_balance_equations():
    values = (0.02, 0.3, 0.2, 0.4, 0.01)
    fates = losses(FourState.parse(",".join(map(str, values))))
    assert sum(fates) / N == pytest.approx(four_state_loss(*values), rel=0.03)


def test_four_state_isolated_losses_never_come_two_in_a_row():
    """Only p14: each loss is state 4, which always returns to 1, where the next datagram goes through."""
    fates = losses(FourState.parse("0%,100%,0%,100%,10%"))
    assert sum(fates) / N == pytest.approx(0.1 / 1.1, rel=0.03)
    assert max(runs(fates)) == 1


def test_state_with_p13_alone_is_independent_loss_as_netem_defaults_it():
    assert FourState.parse("5%") == FourState(0.05, 0.95, 0.0, 1.0, 0.0)
    fates = losses(FourState.parse("5%"))
    assert sum(fates) / N == pytest.approx(0.05, rel=0.03)
    assert statistics.mean(runs(fates)) == pytest.approx(1 / 0.95, rel=0.03)


@pytest.mark.parametrize("model, value, message", [
    (GilbertElliott, "1%,2%,3%,4%,5%", "too many values"),
    (GilbertElliott, "150%", "from 0 to 1"),
    (GilbertElliott, "often", "not a probability"),
    (FourState, "60%,50%,60%", "more than 1"),
    (FourState, "60%,10%,0%,100%,50%", "more than 1"),
])
def test_a_bad_model_is_refused_with_the_reason(model, value, message):
    with pytest.raises(ValueError, match=message):
        model.parse(value)


def test_chances_are_written_as_netem_writes_them_or_as_fractions():
    assert (fraction("25%"), fraction("0.25"), fraction("100%"), fraction("0")) == (0.25, 0.25, 1.0, 0.0)
    for bad in ("nan", "-1%", "1.5", "%"):
        with pytest.raises(ValueError):
            fraction(bad)


# -- delay distributions --------------------------------------------------------------------------------

MEAN, JITTER = 0.1, 0.02
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def pareto_table(q: float) -> float:
    """netem's pareto table at quantile q (iproute2's netem/pareto.c): (X - 1.5)·4/3 for the Pareto
    X = (1-q)^(-1/3), shape 3, scale 1."""
    return ((1 - q) ** (-1 / 3) - 1.5) * 4 / 3


EXPECTED = {  # the standard shape at quantile q of each distribution, as netem's tables define it
    "uniform": lambda q: 2 * q - 1,
    "normal": NormalDist().inv_cdf,
    "pareto": pareto_table,
    "paretonormal": lambda q: 0.25 * NormalDist().inv_cdf(q) + 0.75 * pareto_table(q),
}


def delays(dist: str, corr: float = 0.0, n: int = 50_000, seed: int = 2) -> list[float]:
    chain = DelayShape(MEAN, JITTER, dist, corr).chain(random.Random(seed))
    return [chain.next() for _ in range(n)]


def lag1(values: list[float]) -> float:
    return statistics.correlation(values[:-1], values[1:])


@pytest.mark.parametrize("dist", EXPECTED)
def test_each_distribution_has_the_quantiles_of_netems_table(dist):
    got = statistics.quantiles(delays(dist), n=20)  # 5%, 10%, ... 95%
    for q in QUANTILES:
        assert got[round(q * 20) - 1] == pytest.approx(MEAN + JITTER * EXPECTED[dist](q), abs=JITTER * 0.03), q


@pytest.mark.parametrize("dist", EXPECTED)
def test_correlation_ties_each_delay_to_the_last_and_leaves_the_distribution_as_it_is(dist):
    """Unlike netem's (which mixes uniforms and so narrows the spread as correlation grows), the
    delays of a correlated flow have the same distribution as uncorrelated ones."""
    free, tied = delays(dist), delays(dist, corr=0.75)
    assert abs(lag1(free)) < 0.02
    assert lag1(tied) > 0.6 if dist != "normal" else lag1(tied) == pytest.approx(0.75, abs=0.02)
    got, want = statistics.quantiles(tied, n=20), statistics.quantiles(free, n=20)
    assert got == pytest.approx(want, abs=JITTER * 0.06)


def test_delays_stay_within_netems_range_and_never_below_zero():
    uniform = delays("uniform")
    assert MEAN - JITTER <= min(uniform) and max(uniform) <= MEAN + JITTER
    pareto = delays("pareto")
    assert min(pareto) >= MEAN - JITTER * 2 / 3 - 1e-9  # Pareto's floor: X = 1
    assert max(pareto) <= MEAN + JITTER * 4  # netem's tables hold shapes within ±4
    wide = DelayShape(0.01, 0.05, "normal").chain(random.Random(3))
    assert min(wide.next() for _ in range(1000)) == 0.0


# -- the rate-limited link --------------------------------------------------------------------------------


def test_a_burst_waits_for_the_link_and_what_is_past_the_limit_is_dropped():
    queue = Link(rate=1000.0, limit=4).queue()  # 100-byte datagrams: 0.1 s each on the link
    waits = [queue.admit(0.0, 100) for _ in range(6)]
    assert waits[:4] == pytest.approx([0.1, 0.2, 0.3, 0.4]) and waits[4:] == [None, None]
    assert queue.admit(0.25, 100) == pytest.approx(0.25)  # two have gone out by 0.25: room again, behind 0.4
    assert queue.admit(0.25, 100) == pytest.approx(0.35)
    assert queue.admit(0.25, 100) is None
    assert queue.admit(5.0, 50) == pytest.approx(0.05)  # an idle link: only its own time


def test_rates_are_written_as_tc_writes_them():
    assert (rate("20kbps"), rate("160kbit"), rate("1mbit"), rate("300bps")) == (20_000, 20_000, 125_000, 300)
    for bad in ("20", "20kb", "0kbps", "fast", "-1kbps"):
        with pytest.raises(ValueError, match="not a rate"):
            rate(bad)


# -- the rules that name them --------------------------------------------------------------------------------


def test_rules_parse_the_models():
    rule = Rule.parse("drop gemodel=1%,30% type=grp_msg")
    assert (rule.action, rule.loss, rule.types) == ("drop", GilbertElliott(0.01, 0.3), {"grp_msg"})
    assert Rule.parse("duplicate 1 state=2%,40%").loss == FourState(0.02, 0.4)
    rule = Rule.parse("delay 100ms±20ms dist=pareto corr=25%")
    assert rule.shape == DelayShape(0.1, 0.02, "pareto", 0.25)
    assert Rule.parse("delay 100ms±20ms corr=0.5").shape == DelayShape(0.1, 0.02, "uniform", 0.5)
    assert Rule.parse("rate 20kbps limit=50 from=server").link == Link(20_000, 50)
    assert Rule.parse("rate 1mbit").link == Link(125_000, 1000)  # netem's default limit


@pytest.mark.parametrize("text, word", [
    ("drop gemodel=1%,2%,3%,4%,5%", "too many values"),
    ("drop gemodel=1% state=2%", "'state=2%'"),
    ("drop state=often", "'often'"),
    ("drop dist=normal", "'dist=/corr='"),
    ("delay 100ms dist=normal", "'dist=/corr='"),
    ("delay 100ms±10ms dist=cauchy", "'cauchy'"),
    ("delay 100ms±10ms corr=2", "'2'"),
    ("drop limit=5", "'limit='"),
    ("rate 20kbps limit=0", "'0'"),
    ("rate fast", "'fast'"),
    ("rate", "'rate' needs an argument"),
    ("rate limit=3", "'rate' needs an argument"),
])
def test_a_bad_model_in_a_rule_is_an_error_naming_it(text, word):
    with pytest.raises(RuleError) as caught:
        Rule.parse(text)
    assert word in str(caught.value) and f"rule '{text}'" in str(caught.value)


def fates(plan: FaultPlan, flows: list[tuple[str, str]]) -> dict[tuple[str, str], list[str]]:
    got: dict[tuple[str, str], list[str]] = {}
    for src, dst in flows:
        got.setdefault((src, dst), []).append(plan.decide(b"x" * 40, "grp_msg", src, dst).action)
    return got


def test_each_flow_has_its_own_chain_and_repeats_its_fates_however_flows_interleave():
    """The proxy sees flows interleave differently on every run: a flow's chain and random stream
    are its own, so what befalls it depends only on the seed and its own datagrams."""
    rule = "drop gemodel=10%,30%"
    one_by_one = fates(FaultPlan([rule], seed=5), [("A", "B")] * 300 + [("B", "A")] * 300)
    interleaved = fates(FaultPlan([rule], seed=5), [("A", "B"), ("B", "A")] * 300)
    assert one_by_one == interleaved
    assert one_by_one[("A", "B")] != one_by_one[("B", "A")]
    assert "drop" in one_by_one[("A", "B")] and fates(FaultPlan([rule], seed=6), [("A", "B")] * 300) != {("A", "B"): one_by_one[("A", "B")]}


def test_a_rate_rule_gives_each_direction_its_own_link():
    plan = FaultPlan(["rate 1kbps limit=2"], seed=1)
    waits = [plan.decide(b"x" * 100, "grp_msg", src, dst, now=0.0).copies for src, dst in [("A", "B"), ("B", "A")] * 3]
    assert [w[0][0] if w else None for w in waits] == pytest.approx([0.1, 0.1, 0.2, 0.2, None, None])
    assert plan.rules[0].applied == 6 and plan.rules[0].overflow == 2


# -- the simulator with the models ------------------------------------------------------------------------


MODELS = ["drop gemodel=10%,40% type=grp_msg,ack", "delay 40ms±30ms dist=paretonormal corr=50% type=pri_msg",
          "rate 300bps limit=2 from=server"]


def simulated(seed: int) -> tuple[list, list, dict]:
    sim = SimNet(seed=3)  # the nodes' own randomness stays fixed: only the plan's seed varies
    sim.plan = FaultPlan(MODELS, seed)
    ann, bob, cat, dan = sim.online("Ann", "Bob", "Cat", "Dan")
    sim.in_group([ann, bob, cat])
    for i in range(15):
        sim.type([ann, bob, cat][i % 3], f"send_group g{i}")
        sim.type(dan, f"send Ann p{i}")
        sim.run(0.3)
    sim.run(20)
    counts = [(r.selected, r.applied, r.overflow) for r in sim.plan.rules]
    return [(s.time, s.src, s.dst, s.data) for s in sim.sent], counts, dict(sim.lines)


def test_the_simulator_replays_a_run_with_the_models_exactly_from_its_seed():
    sent, counts, lines = simulated(11)
    assert all(applied for _, applied, _ in counts), counts  # every model acted in this run
    assert counts[2][2] > 0, counts  # and the server's links dropped past their limit
    assert simulated(11) == (sent, counts, lines)
    assert simulated(12)[0] != sent


def test_the_simulators_clock_drives_the_link():
    """A rate rule in the simulator waits on its fake clock: a datagram arrives after its time on
    the link, and the link drains as the clock runs, so later datagrams find room again."""
    sim = SimNet(seed=1)
    sim.plan = FaultPlan(["rate 100bps limit=1 type=pri_msg"], seed=1)
    ann, bob = sim.online("Ann", "Bob")
    sim.type(ann, "send Bob one")
    size = len(sim.sent[-1].data)
    sim.run(size / 100 * 0.9)
    assert ">>> Ann: one" not in sim.lines["Bob"]  # still on the link
    sim.run(size / 100 * 0.2)
    assert ">>> Ann: one" in sim.lines["Bob"]
    sim.run(5)
    sim.type(ann, "send Bob two")
    sim.run(5)
    assert ">>> Ann: two" in sim.lines["Bob"]


def test_every_rule_in_the_fault_models_doc_parses():
    from tests.procs import ROOT

    text = (ROOT / "docs" / "fault-models.md").read_text(encoding="utf-8")
    rules = re.findall(r"--rule '([^']+)'", text)
    rules += [s for s in re.findall(r"`((?:drop|delay|duplicate|corrupt|rate) [^`]+)`", text) if not re.search(r"[A-Z]|\.\.\.", s)]
    assert len(rules) > 10
    for rule in rules:
        Rule.parse(rule)
