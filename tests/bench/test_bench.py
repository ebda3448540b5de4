"""tools/bench.py runs every scenario end to end in a tiny configuration and
prints one sane JSON object.  No durations are asserted: those belong to the
benchmark itself, not to the tests."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.captures import run_into_closed_pipe

from tests.procs import ROOT  # the checkout, wherever in tests/ this file sits
BENCH = str(ROOT / "tools" / "bench.py")

pytestmark = pytest.mark.e2e  # tools/bench.py as a process, starting servers and clients

TINY = {
    "codec": ["--types", "pri_msg", "table", "--repeat", "1", "--budget", "0.001"],
    "latency": ["--count", "5", "--typed", "2", "--startups", "1"],
    "throughput": ["--clients", "1", "2", "--duration", "0.2", "--rates", "500", "--open-clients", "2", "--rounds", "1"],
    "fanout": ["--members", "3", "--messages", "2", "--duration", "0.2"],
    "scale": ["--clients", "20", "40", "--timeout", "60"],
    "abuse": ["--groups", "30", "--count", "6", "--rounds", "2"],
    "proxy": ["--clients", "2", "--duration", "0.2", "--rounds", "1"],
    "liveness": ["--clients", "20", "--idle-probe", "1"],
    "state": ["--rounds", "2", "--duration", "0.2", "--clients", "20", "--timeout", "60"],
}


def bench(*args: str) -> dict:
    result = subprocess.run([sys.executable, BENCH, "--json", *args], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    return json.loads(result.stdout)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"


@pytest.mark.parametrize("scenario", sorted(TINY))
def test_each_scenario_prints_sane_json_and_leaves_nothing_running(scenario):
    report = bench(scenario, *TINY[scenario])
    assert report["scenarios"] == [scenario]
    assert report["machine"]["cpus"] >= 1 and report["machine"]["cpu_model"]
    figures = report["figures"]
    assert figures and all(f["scenario"] == scenario for f in figures)
    for f in figures:
        assert f["name"] and f["unit"]
        assert f["value"] is not None and math.isfinite(f["value"]) and f["value"] >= 0, f
        if f["baseline"] is not None:
            assert f["ratio"] == pytest.approx(f["value"] / f["baseline"])
        assert f["met"] in (True, False, None)
    assert not [pid for pid in report["pids"] if alive(pid)], "every process the benchmark started is stopped"
    if scenario == "scale":
        converged = [f for f in figures if f["name"].endswith("every table converged")]
        assert len(converged) == 2 and all(f["met"] for f in converged)
        assert all(f["value"] <= 1200 for f in figures if f["name"].endswith("largest datagram"))
    if scenario == "fanout":  # both kinds of members, and the bare relays, got messages through
        sustained = [f for f in figures if "sustained" in f["name"]]
        assert len(sustained) == 3 and all(f["value"] > 0 for f in sustained)
    if scenario == "abuse":  # the quiet bystander, then one figure per kind of flood, which was served
        assert [f["name"].rsplit(" ", 2)[-2] for f in figures[1:]] == ["churn", "list"]
        assert all(f["also"]["abuser_answered"] > 0 and f["baseline"] == figures[0]["also"]["p99"] for f in figures[1:])
    if scenario == "proxy":  # the relay, then the proxy without and with rules, each beside the relay; all forwarded
        assert [f["name"] for f in figures] == ["bare asyncio relay", "forwarded, no rules", "forwarded, 10 rules"]
        assert all(f["value"] > 0 and f["also"]["runs"] and f["also"]["cpu_us"] > 0 for f in figures)
        assert all(f["baseline"] == figures[0]["value"] and f["target"] == ">= 50% of relay" for f in figures[1:])
    if scenario == "liveness":  # probes counted with --idle-probe, none without; beside 2N/S
        probing, never = figures
        assert probing["baseline"] == pytest.approx(2 * 20 / 1) and probing["also"]["probes"] > 0
        assert never["baseline"] is None and never["also"]["probes"] == 0
        assert probing["also"]["exited"] == never["also"]["exited"] == 0
        assert probing["also"]["other"] == never["also"]["other"] == 0, "nothing but probes while the clients idle"
    if scenario == "state":  # both servers measured in turns; the restart's live clients confirmed, the killed ones offline
        rate, share, online, serving, settled = figures
        assert len(rate["also"]["with_state"]) == len(rate["also"]["in_memory"]) == 2
        assert share["unit"] == "%" and share["value"] == pytest.approx(100 * rate["value"] / rate["baseline"])
        assert online["value"] <= serving["value"] <= settled["value"]
        assert settled["also"]["probed"] == settled["also"]["live"] == 18 + 1  # and the asker and settled["also"]["offline"] == settled["also"]["dead"] == 2
    if scenario == "codec":
        assert any(f["name"].startswith("pri_msg build + dissect") for f in figures)


@pytest.mark.parametrize("output", [["--json"], []])
def test_a_closed_stdout_ends_quietly(output):
    """`bench.py --json ... | head`: no BrokenPipeError traceback, exit status 0."""
    done = run_into_closed_pipe(BENCH, *output, "codec", *TINY["codec"], timeout=300)
    assert (done.returncode, done.stderr) == (0, "")


def test_the_command_takes_quick():
    report = bench("--quick", "codec", "--types", "pri_msg")
    assert report["scenarios"] == ["codec"] and report["figures"]
    assert {f["name"].split(" (")[0] for f in report["figures"]} >= {"build pri_msg", "dissect pri_msg"}, report["figures"]


def test_help_names_every_scenario():
    result = subprocess.run([sys.executable, BENCH, "--help"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0
    for scenario in ("codec", "latency", "throughput", "fanout", "scale", "abuse", "proxy", "liveness", "state", "all"):
        assert scenario in result.stdout


def test_a_scenario_rejects_unknown_options():
    result = subprocess.run([sys.executable, BENCH, "scale", "--clients", "many"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 2 and "invalid int value" in result.stderr
