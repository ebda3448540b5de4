"""liveness: the idle probe's cost at 10,000 idle clients; datagrams/s with --idle-probe 30 vs 0

N ClientLogic clients of the swarm register with a real server and then do nothing.
Once the server is quiet (every table update acknowledged), the datagrams the server
sends and receives are counted over a window of two probe periods: with
``--idle-probe S`` every silent client is probed once per S seconds and acks, so
the figure should be 2·N/S (the baseline, computed); with ``--idle-probe 0`` there
should be nothing at all.  Counted at the clients' sockets (what they receive from
the server, what they send it), so other traffic on the machine does not count."""

from __future__ import annotations

from proto import TYPE_CODES, ProtocolError
from proto.fastpath import parse

from .figures import Figure
from .processes import ChatServer
from .swarm import Swarm

PROBE = TYPE_CODES["probe"]


def idle_clients(size: int, idle: float, window: float, timeout: float, progress) -> dict:
    """Counts over ``window`` seconds of ``size`` idle clients of a server run with ``--idle-probe idle``."""
    label = f"liveness {size:,}, --idle-probe {idle:g}"
    with ChatServer(size, "--idle-probe", f"{idle:g}") as server, Swarm(server.address, seed=size) as swarm:
        nodes = swarm.register([f"i{i}" for i in range(size)], timeout, lambda done: progress(f"{label}: starting clients", 0.3 * done))
        progress(f"{label}: tables settling", 0.3)
        settled = swarm.run_until_quiet(timeout)
        probes = [0]

        def count_probes(node, data: bytes, now: float) -> None:
            try:
                probes[0] += parse(data).type == PROBE
            except ProtocolError:
                pass  # the client logic counts it

        swarm.on_receive = count_probes
        received, sent = swarm.from_server[0], swarm.to_server
        cpu = server.cpu_seconds()
        progress(f"{label}: idle for {window:g} s", 0.6)
        swarm.run_for(window)
        return {
            "settled_s": settled,
            "sent": (swarm.from_server[0] - received) / window,  # by the server
            "received": (swarm.to_server - sent) / window,
            "probes": probes[0] / window,
            "server_cpu": (server.cpu_seconds() - cpu) / window,
            "exited": sum(1 for n in nodes if n.exit_status is not None),
        }


def add_arguments(parser) -> None:
    parser.add_argument("--clients", type=int, default=10_000, help="idle clients (default 10000)")
    parser.add_argument("--idle-probe", type=float, default=30.0, metavar="S", help="the server's --idle-probe (default 30)")
    parser.add_argument("--periods", type=float, default=2.0, help="probe periods counted (default 2)")
    parser.add_argument("--timeout", type=float, default=900.0, metavar="S", help="give up registering after S seconds (default 900)")


def run(args, progress) -> list[Figure]:
    size, idle = args.clients, args.idle_probe
    window = args.periods * idle
    figures = []
    expected = 2 * size / idle
    for step, probing in enumerate((idle, 0.0)):
        r = idle_clients(size, probing, window, args.timeout, lambda text, at: progress(text, (step + at) / 2))
        total = r["sent"] + r["received"]
        note = (f"sent {r['sent']:,.1f}/s (probes {r['probes']:,.1f}/s), received {r['received']:,.1f}/s; "
                f"server CPU {r['server_cpu']:.1%} of a core; {r['exited']} clients exited; "
                f"{window:g} s counted after {r['settled_s']:.0f} s of settling")
        figures.append(Figure("liveness", f"{size:,} idle clients, --idle-probe {probing:g}: datagrams", total, "/s",
                              expected if probing else None, "2N/S" if probing else "", note=note,
                              also={k: v for k, v in r.items()}))
    progress("liveness", 1.0)
    return figures
