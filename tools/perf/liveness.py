"""liveness: the idle probe's cost at 10,000 idle clients; datagrams/s with --idle-probe 30 vs 0

N ClientLogic clients of the swarm register with a real server and then do nothing.
Once the server is quiet (every table update acknowledged), the datagrams the server
sends and receives are counted over a window of two probe periods: with
``--idle-probe S`` every silent client is probed once per S seconds and acks, so
the figure should be 2·N/S (the baseline, computed); with ``--idle-probe 0`` there
should be nothing at all.  One registration storm serves both: the server with
``--idle-probe 0`` is the first one restarted on its state file (``--state``), with
the same clients, once the probes of its restart are over.  Counted at the clients' sockets (what they receive from
the server, what they send it), so other traffic on the machine does not count."""

from __future__ import annotations

import tempfile
from pathlib import Path

from node.reliable import RetryPolicy
from proto import TYPE_CODES, ProtocolError
from proto.fastpath import parse

from .figures import Figure
from .processes import ChatServer, crashed
from .swarm import Swarm, storm_arguments

PROBE = TYPE_CODES["probe"]
# The clients do not give up on a busy server: registering 10,000 of them is a storm of table updates.
PATIENT = RetryPolicy(timeout=1.0, tries=30)


def is_probe(data: bytes) -> bool:
    try:
        return parse(data).type == PROBE
    except ProtocolError:
        return False  # the client logic counts it


def idle_window(swarm: Swarm, server: ChatServer, window: float) -> dict:
    """What the server sent and received in ``window`` seconds of idle clients, per second."""
    probes = [0]
    swarm.on_receive = lambda node, data, now: probes.__setitem__(0, probes[0] + is_probe(data))
    received, sent = swarm.from_server[0], swarm.to_server
    cpu = server.cpu_seconds()
    swarm.run_for(window)
    swarm.on_receive = None
    sent_by_server = swarm.from_server[0] - received
    return {
        "sent": sent_by_server / window,
        "received": (swarm.to_server - sent) / window,
        "probes": probes[0] / window,
        "other": (sent_by_server - probes[0]) / window,  # anything but probes from the server: should be none
        "server_cpu": (server.cpu_seconds() - cpu) / window,
    }


def idle_clients(size: int, idle: float, window: float, timeout: float, progress) -> tuple[dict, dict]:
    """Counts over ``window`` seconds of ``size`` idle clients of a server run with ``--idle-probe idle``,
    then of the same clients of a server run with ``--idle-probe 0``: one registration storm for
    both (it is the long part), the second server a restart of the first on its state file."""
    label = f"liveness {size:,}"
    with tempfile.TemporaryDirectory(prefix="bench-liveness-") as folder:
        state = str(Path(folder) / "chat.db")
        server = ChatServer(size, "--idle-probe", f"{idle:g}", "--state", state)
        try:
            with Swarm(server.address, PATIENT, seed=size) as swarm:
                nodes = swarm.register([f"i{i}" for i in range(size)], timeout, lambda done: progress(f"{label}: registering", 0.4 * done))
                progress(f"{label}: tables settling", 0.4)
                settled = swarm.run_until_settled(nodes, size, timeout, ignoring=is_probe)  # probes go on all the time
                progress(f"{label}: idle for {window:g} s, --idle-probe {idle:g}", 0.5)
                probing = idle_window(swarm, server, window) | {"settled_s": settled}
                server = crashed(server, size, "--idle-probe", "0", "--state", state)
                progress(f"{label}: restarted with --idle-probe 0", 0.75)
                # it probes every client once, as any restart does, and sends each the whole table
                settled = swarm.run_until_settled(nodes, size, timeout)
                never = idle_window(swarm, server, window) | {"settled_s": settled}
                exited = sum(1 for n in nodes if n.exit_status is not None)
                return probing | {"exited": exited}, never | {"exited": exited}
        finally:
            server.stop()


def add_arguments(parser) -> None:
    storm_arguments(parser, "idle clients")
    parser.add_argument("--idle-probe", type=float, default=30.0, metavar="S", help="the server's --idle-probe (default 30)")
    parser.add_argument("--periods", type=float, default=2.0, help="probe periods counted (default 2)")


def run(args, progress) -> list[Figure]:
    size, idle = args.clients, args.idle_probe
    window = args.periods * idle
    figures = []
    results = idle_clients(size, idle, window, args.timeout, progress)
    for probing, r in zip((idle, 0.0), results):
        total = r["sent"] + r["received"]
        note = (f"sent {r['sent']:,.1f}/s (probes {r['probes']:,.1f}/s, other {r['other']:,.1f}/s), received {r['received']:,.1f}/s; "
                f"server CPU {r['server_cpu']:.1%} of a core; {r['exited']} clients exited; "
                f"{window:g} s counted after {r['settled_s']:.0f} s of settling")
        figures.append(Figure("liveness", f"{size:,} idle clients, --idle-probe {probing:g}: datagrams", total, "/s",
                              2 * size / idle if probing else None, "2N/S" if probing else "", note=note, also=r))
    progress("liveness", 1.0)
    return figures
