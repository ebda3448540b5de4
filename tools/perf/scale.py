"""scale: registration storm of 1,000 and 10,000 clients: convergence, bytes, RSS

N ClientLogic clients of the swarm register with a fresh server as fast as they
can be created.  Measured: the time until every client's table holds every
client, datagrams and bytes the clients received from the server per registration,
the largest datagram, and the server's memory per registered client (resident
set growth over the storm).  Baseline: the least any design must send, every
client receiving every row once (N x the encoded rows of the final table)."""

from __future__ import annotations

import time

from node.peers import PeerRows
from node.reliable import RetryPolicy
from proto import MAX_DATAGRAM, SERVER_NAME

from .figures import Figure, check
from .processes import ChatServer
from .swarm import Swarm

TARGET_RSS = "< 2048"  # bytes of server memory per registered client
REPLY_MEMORY = 10.5  # seconds the server remembers its answers (node.reliable), and a little more


def entry_bytes(name: str) -> int:
    """Bytes of one table row on the wire (read from the layer, so a new field counts)."""
    from proto.fastpath import encode

    empty = len(encode("table", {"sender": SERVER_NAME}, {"entries": []}))
    one = len(encode("table", {"sender": SERVER_NAME}, {"entries": [{"client": name}]}))
    return one - empty


def truth(nodes, shared: PeerRows) -> dict:
    """The table every client must hold: each client online at its address, with its session.

    Made of the very rows the clients share (the swarm's ``PeerRows``), so that comparing
    10,000 tables of 10,000 rows takes seconds; the comparison is by value anyway."""
    rows = {}
    for n in nodes:
        ip, port = n.sock.getsockname()
        rows[n.logic.name] = shared.get(ip, port, 1, n.logic.session)
    return rows


def storm(size: int, timeout: float, progress) -> dict:
    result: dict = {"clients": size}
    with ChatServer(max_clients=size) as server, Swarm(server.address, RetryPolicy(), seed=size) as swarm:
        before = server.status()["VmRSS"]
        cpu_before = server.cpu_seconds()
        start = time.monotonic()
        nodes = []
        for i in range(size):
            nodes.append(swarm.add(f"c{i}"))
            if i % 200 == 0:
                swarm.step(0)  # the storm's first clients are answered while the rest start
                progress(f"scale {size:,}: starting clients", i / size / 3)
        full, gave_up, last_count = 0, False, 0.0

        def count() -> None:
            """Every 50 ms: how many tables are complete, and whether a client gave up."""
            nonlocal full, gave_up, last_count
            if time.monotonic() - last_count > 0.05:
                last_count = time.monotonic()
                full = sum(1 for n in nodes if len(n.logic.table) == size)
                gave_up = any(n.exit_status is not None for n in nodes)
                progress(f"scale {size:,}: {full:,} tables complete", (1 + 2 * full / size) / 3)

        registered = swarm.run_until(lambda: all(n.logic.registered for n in nodes), timeout)
        result["registered_s"] = time.monotonic() - start if registered else None
        left = max(0.0, timeout - (time.monotonic() - start))
        done = swarm.run_until(lambda: full == size or gave_up, left, tick=count) and full == size
        result["converged_s"] = time.monotonic() - start if done else None
        result["complete_tables"] = full
        result["exited"] = sum(1 for n in nodes if n.exit_status is not None)
        swarm.run_for(1.0)  # the last acks reach the server
        datagrams, sent_bytes, largest = swarm.from_server
        result |= {"datagrams": datagrams, "bytes": sent_bytes, "largest": largest}
        result["server_cpu_s"] = server.cpu_seconds() - cpu_before
        result["rss_growth"] = server.status()["VmRSS"] - before
        progress(f"scale {size:,}: settling", 1.0)
        swarm.run_for(REPLY_MEMORY)  # the answers remembered for retransmitted requests expire
        status = server.status()
        result["rss_settled"], result["rss_peak"] = status["VmRSS"] - before, status["VmHWM"]
        expected = truth(nodes, swarm.peers)
        result["wrong"] = sum(1 for n in nodes if n.logic.table != expected)
        result["min_bytes"] = size * sum(entry_bytes(n.logic.name) for n in nodes)
    return result


def add_arguments(parser) -> None:
    parser.add_argument("--clients", type=int, nargs="+", default=[1000, 10000], help="storm sizes (default 1000 10000)")
    parser.add_argument("--timeout", type=float, default=600.0, metavar="S", help="give up on a storm after S seconds (default 600)")


def run(args, progress) -> list[Figure]:
    figures = []
    per_registration = {}
    for size in args.clients:
        r = storm(size, args.timeout, progress)
        name = f"{size:,} clients"
        ok = r["converged_s"] is not None and r["wrong"] == 0
        note = f"{r['complete_tables']:,} of {size:,} tables complete, {r['exited']} clients gave up" if not ok else ""
        if r["wrong"]:
            note += f"; {r['wrong']} tables differ from the truth"
        registered = f"registered in {r['registered_s']:.2f} s" if r["registered_s"] is not None else "not all registered"
        figures.append(Figure("scale", f"{name}: every table converged", r["converged_s"], "s", target="converged",
                              met=ok, note=note or f"{registered}; every table compared row by row",
                              also={k: v for k, v in r.items() if isinstance(v, (int, float)) and v is not None}))
        figures.append(Figure("scale", f"{name}: server CPU per registration", r["server_cpu_s"] / size * 1000, "ms",
                              note=f"{r['server_cpu_s']:.1f} s in all; the simulated clients, on one core, set the pace"))
        per_registration[size] = r["bytes"] / size
        figures.append(Figure("scale", f"{name}: server bytes per registration", r["bytes"] / size, "B",
                              r["min_bytes"] / size, "every row once", note=f"{r['datagrams'] / size:,.1f} datagrams"))
        figures.append(Figure("scale", f"{name}: largest datagram", r["largest"], "B", target=f"<= {MAX_DATAGRAM}",
                              met=check(r["largest"], f"<= {MAX_DATAGRAM}")))
        per_client = r["rss_settled"] / size
        figures.append(Figure("scale", f"{name}: server RSS per client", per_client, "B", target=TARGET_RSS,
                              met=check(per_client, TARGET_RSS), note=f"{r['rss_growth'] / size:,.0f} B just after "
                              f"converging (answers still remembered); peak RSS {r['rss_peak'] / 2**20:.0f} MiB"))
    sizes = sorted(per_registration)
    if len(sizes) >= 2:
        small, big = sizes[0], sizes[-1]
        growth = per_registration[big] / per_registration[small]
        figures.append(Figure("scale", f"bytes per registration, {big:,} vs {small:,} clients", growth, "x",
                              big / small, "linear", f"<= {2 * big / small:g}", check(growth, f"<= {2 * big / small:g}"),
                              note=f"quadratic would be {(big / small) ** 2:g}x"))
    progress("scale", 1.0)
    return figures
