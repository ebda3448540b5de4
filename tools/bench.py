#!/usr/bin/env python3
"""Measure ChatApp's speed, cost and scale on loopback, each figure beside a
baseline measured in the same run (so ratios hold on a noisy machine).

    python3 tools/bench.py codec        µs per build/dissect: Scapy, proto.fastpath, plain struct
    python3 tools/bench.py latency      request->ack, private message->ack, typed command->output
    python3 tools/bench.py throughput   requests/s answered, closed and open loop, vs a bare echo server
    python3 tools/bench.py fanout       one send_group to 10/100/1,000 acking members; messages/s
    python3 tools/bench.py scale        registration storm: convergence, bytes, largest datagram, RSS
    python3 tools/bench.py abuse        a bystander's command latency while one client floods the server
    python3 tools/bench.py proxy        datagrams/s through the lossy proxy (no rules, ten) vs a bare asyncio relay
    python3 tools/bench.py state        --state: group messages/s beside in memory; a restart with 10,000 clients
    python3 tools/bench.py liveness     10,000 idle clients: the idle probe's datagrams/s, --idle-probe 30 vs 0
    python3 tools/bench.py all          everything above

The server under test is a real ``ChatApp.py -s PORT`` process (with the per-source
rate limit off, but for abuse, where the limit is what the abuser runs into); simulated clients are the project's own ClientLogic, many to a
process.  Everything runs on 127.0.0.1, and every process started is stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import sys
import time
from pathlib import Path

if not __package__:  # run as a script: make the checkout's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.cli import Parser, dependencies, prog, reader_may_leave  # noqa: E402  (after the path is set)

with dependencies():
    from node.grids import rich_grid
    from tools.perf import abuse, codec, durable, fanout, latency, liveness, proxy, scale, throughput
    from tools.perf.figures import Figure
    from tools.perf.processes import STARTED

SCENARIOS = {"codec": codec, "latency": latency, "throughput": throughput, "fanout": fanout, "scale": scale, "abuse": abuse,
             "proxy": proxy, "state": durable, "liveness": liveness}
# --quick: sizes for a first look, each scenario well under a minute; options given after them still win.
QUICK = {
    "codec": ["--repeat", "3", "--budget", "0.005"],
    "latency": ["--count", "50", "--typed", "10", "--startups", "3"],
    "throughput": ["--clients", "1", "8", "--duration", "0.5", "--rates", "5000", "20000", "--rounds", "1"],
    "fanout": ["--members", "10", "100", "--messages", "10", "--duration", "0.5"],
    "scale": ["--clients", "200", "1000", "--timeout", "50"],
    "abuse": ["--groups", "200", "--count", "50", "--rounds", "2"],
    "proxy": ["--clients", "8", "--duration", "0.5", "--rounds", "1"],
    "state": ["--rounds", "3", "--duration", "0.5", "--clients", "300", "--timeout", "120"],
    "liveness": ["--clients", "300", "--idle-probe", "2", "--timeout", "120"],
}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=prog(), description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Each scenario has its own options: %(prog)s SCENARIO --help.",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a first look (each scenario under a minute)")
    sub = parser.add_subparsers(dest="scenario", required=True, metavar="{" + ",".join([*SCENARIOS, "all"]) + "}")
    for name, module in SCENARIOS.items():
        scenario = sub.add_parser(name, help=module.__doc__.split("\n")[0].partition(": ")[2])
        scenario.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print one JSON object")
        scenario.add_argument("--quick", action="store_true", default=argparse.SUPPRESS, help="small sizes, for a first look")
        module.add_arguments(scenario)
    every = sub.add_parser("all", help="every scenario with its default options")
    every.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print one JSON object")
    every.add_argument("--quick", action="store_true", default=argparse.SUPPRESS, help="every scenario with its small sizes")
    return parser


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpus": os.cpu_count(), "cpu_model": cpu, "python": platform.python_version(), "load": os.getloadavg()[0]}


class Progress:
    """A rich progress bar on a terminal (stderr); silent otherwise."""

    def __init__(self, enabled: bool):
        self._bar = None
        if enabled:
            from rich.progress import BarColumn, Progress as Bar, TextColumn, TimeElapsedColumn

            self._bar = Bar(TextColumn("{task.description:<32}"), BarColumn(), TimeElapsedColumn(), transient=True)
            self._task = self._bar.add_task("starting", total=1.0)
            self._bar.start()

    def __call__(self, description: str, fraction: float) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=description, completed=fraction)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def options(argv: list[str]) -> argparse.Namespace:
    """The command line parsed; with --quick, the scenario's QUICK sizes go in right after its name."""
    args = build_parser().parse_args(argv)
    if args.quick and args.scenario in QUICK:
        at = argv.index(args.scenario) + 1  # the first word that is no option: only flags come before it
        args = build_parser().parse_args([*argv[:at], *QUICK[args.scenario], *argv[at:]])
    return args


def defaults(name: str, quick: bool = False) -> argparse.Namespace:
    return build_parser().parse_args([name, *(QUICK.get(name, []) if quick else [])])


def table(figures: list[Figure]) -> None:
    from rich.console import Console

    def num(x: float | None) -> str:
        if x is None:
            return "-"
        return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"

    rows = []
    for f in figures:
        met = {True: "yes", False: "NO", None: ""}[f.met]
        baseline = f"{num(f.baseline)} ({f.baseline_name})" if f.baseline is not None else ""
        ratio = f"{f.ratio:.2f}" if f.ratio is not None else ""
        rows.append((f.scenario, f.name, num(f.value), f.unit, baseline, ratio, f.target, met, f.note))
    columns = ("scenario", "figure", "value", "unit", "baseline", "ratio", "target", "met", "note")
    grid = rich_grid(columns, rows, ("value", "baseline", "ratio"), title="ChatApp benchmark (medians)", title_justify="left")
    Console(width=max(160, Console().width)).print(grid)


@dependencies()
@reader_may_leave
def main(argv: list[str] | None = None) -> int:
    args = options(sys.argv[1:] if argv is None else argv)
    # SIGTERM unwinds like Ctrl+C, so every process a scenario started is stopped on the way out
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    # thousands of simulated clients need thousands of sockets
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    progress = Progress(sys.stderr.isatty() and not args.json)
    figures: list[Figure] = []
    started = time.monotonic()
    try:
        for name in names:
            chosen = args if args.scenario == name else defaults(name, args.quick)
            figures += SCENARIOS[name].run(chosen, progress)
    except KeyboardInterrupt:
        progress.stop()
        print(f"{prog()}: interrupted", file=sys.stderr)
        return 130
    finally:
        progress.stop()
    elapsed = time.monotonic() - started
    if args.json:
        print(json.dumps({"machine": machine(), "scenarios": names, "seconds": round(elapsed, 1),
                          "figures": [f.as_json() for f in figures], "pids": STARTED}))
    else:
        table(figures)
        m = machine()
        print(f"{m['cpus']} CPUs ({m['cpu_model']}), Python {m['python']}, load {m['load']:.2f}; {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
