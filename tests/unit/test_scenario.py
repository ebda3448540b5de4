"""tools/scenario.py: scenario files parsed into the proxy's own rules with time windows (or refused
with the file and line), their phases, and a scripted partition then heal run on the simulator's
fake clock (tests/simnet.py) with the client kicked and recovering as docs/scenarios.md says."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.simnet import SimNet
from tools import scenario
from tools.faults import FaultPlan
from tools.scenario import ScenarioError

DEMO = Path(__file__).resolve().parents[2] / "docs" / "scenarios" / "partition.txt"

OUTAGE = """
# Ann cut off for 8 s, then healed
at 0s: pass type=ack          # a phase that changes nothing
at 3s for 8s: drop from=Ann
at 3s for 8s: drop to=Ann
at 11s: clear
at 20s: delay 200ms type=grp_msg
"""


def test_each_line_becomes_a_rule_with_its_window():
    rules = scenario.parse(OUTAGE).rules()
    assert [r.text for r in rules] == [
        "pass type=ack during=0s..3s",
        "drop from=Ann during=3s..11s",
        "drop to=Ann during=3s..11s",
        "delay 200ms type=grp_msg during=20s..",
    ]


def test_times_too_large_to_write_short_still_make_rules():
    (rule,) = scenario.parse("at 100000000000000000000s for 1s: drop").rules()
    assert rule.window == (1e20, 1e20 + 1) and rule.text == "drop during=1e+20s..1e+20s"


def test_a_phase_ends_where_the_next_begins_even_if_its_for_is_longer():
    (first, second) = scenario.parse("at 1s for 10s: drop\nat 4s: delay 1s").rules()
    assert (first.window, second.window[0]) == ((1.0, 4.0), 4.0)


def test_the_phases_say_what_is_in_force_from_when():
    phases = scenario.parse(OUTAGE).phases()
    assert [p.describe() for p in phases] == [
        "at 0s: pass type=ack (line 3)",
        "at 3s: drop from=Ann (line 4); drop to=Ann (line 5)",
        "at 11s: no rules, every datagram passes",
        "at 20s: delay 200ms type=grp_msg (line 7)",
    ]


def test_a_for_that_ends_before_the_next_phase_is_a_phase_change_of_its_own():
    phases = scenario.parse("at 2s for 3s: drop\nat 10s: clear").phases()
    assert [(p.at, len(p.steps)) for p in phases] == [(2.0, 1), (5.0, 0)]  # clear at 10s changes nothing more


@pytest.mark.parametrize(
    "text, where, words",
    [
        ("at 1s: drop\nwhen 2s: drop", ":2:", "expected 'at TIME: RULE'"),
        ("at soon: drop", ":1:", "bad duration 'soon'"),
        ("\n\nat 1s for 0s: drop", ":3:", "longer than 0"),
        ("at 1s: frop type=ack", ":1:", "unknown action 'frop'"),
        ("at 1s: drop tipe=ack", ":1:", "bad word 'tipe=ack'"),
        ("at 5s: drop\nat 2s: clear", ":2:", "at 2s comes after at 5s (line 1)"),
        ("at 1s: drop during=1s..2s", ":1:", "takes its time from 'at'"),
        ("at 1s: drop since=kick", ":1:", "takes its time from 'at'"),
        ("at 1s:", ":1:", "no rule after ':'"),
        ("at 1s for 2s: clear", ":1:", "'clear' takes no 'for'"),
        ("# nothing\n", "", "no lines"),
    ],
)
def test_a_bad_scenario_is_an_error_naming_the_file_and_the_line(text, where, words):
    with pytest.raises(ScenarioError) as caught:
        scenario.parse(text, "outage.txt")
    message = str(caught.value)
    assert message.startswith(f"outage.txt{where}") and words in message, message


def test_a_file_that_cannot_be_read_is_a_scenario_error(tmp_path):
    with pytest.raises(ScenarioError, match="cannot read"):
        scenario.load(tmp_path / "missing.txt")
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe at 1s")
    with pytest.raises(ScenarioError, match="cannot read"):
        scenario.load(tmp_path / "binary.txt")


def test_the_sniffers_proxy_log_reader_skips_the_phase_rows():
    """The demo draws its ladder from a log with phase rows in it (docs/scenarios.md)."""
    from tools.sniff import read_proxy_log

    rows = read_proxy_log(str(DEMO.with_name("partition-proxy.jsonl")))
    assert rows and all(set(row) == {"time", "from", "to", "type", "id", "action"} for row in rows)
    assert sum(row["action"] == "drop" for row in rows) == 15


def test_the_demo_scenario_parses():
    phases = scenario.load(DEMO).phases()
    assert len(phases) >= 2 and phases[-1].steps == ()  # it heals


# -- a partition scripted on the simulator's clock --------------------------------------------------


def test_a_scripted_partition_gets_the_client_kicked_and_after_the_heal_it_comes_back():
    """A is cut off from 1 s to 9 s after the plan is set.  B's message to A goes unanswered:
    B reports A, the server probes A in vain and marks it offline, all within the outage.  After
    the heal, A's next request meets "no session" and A registers again; B reaches it."""
    outage = scenario.parse("at 1s for 8s: drop from=A\nat 1s for 8s: drop to=A\nat 9s: clear")
    sim = SimNet(seed=1)
    a, b = sim.online("A", "B")
    start = sim.now
    sim.plan = FaultPlan(outage.rules())
    sim.run_until(start + 1.5)
    sim.type(b, "send A are you there")
    sim.run_until(start + 8.9)
    failed = sim.lines["B"].index(">>> No ACK from A, message not delivered")
    assert sim.lines["B"][failed + 1] == ">>> Report this issue to server"
    assert ">>> Client A did not answer the server's probe, marked offline" in sim.lines["server"]
    assert sim.server.clients["A"].online is False
    assert not any("are you there" in line for line in sim.lines["A"])  # A heard nothing of it
    dropped = sim.plan.rules[1].applied
    assert dropped >= 5 + 5  # B's five tries and the server's five probes, at least
    sim.run_until(start + 9.5)  # healed
    sim.take_lines("A")
    sim.type(a, "list_groups")
    sim.run(3)
    assert ">>> Welcome, You are registered." in sim.lines["A"]
    assert sim.server.clients["A"].online is True
    sim.type(b, "send A welcome back")
    sim.run(3)
    assert sim.lines["A"][-1] == ">>> B: welcome back" and sim.lines["B"][-1] == ">>> Message received by A."
    assert sim.plan.rules[1].applied == dropped  # nothing dropped after the heal
    assert "A" not in sim.exits
