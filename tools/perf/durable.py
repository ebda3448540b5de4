"""state: --state's cost and a restart: group messages/s to 10 members with --state beside without; 10,000 clients resumed

Cost: two real servers, one with ``--state FILE`` and one without, each with a sender and
10 members (fanout's ``Group``, members that only ack); their sustained group
messages/s are measured in turns (without, with, with, without, ...) so that both see
the same machine, and the medians compared.  Every group message is journaled
before its sender's ack, so this is the price of durability on the hottest path.

Restart: N clients register (through the protocol, with a server on ``--state FILE``)
and settle; the server is killed with SIGKILL, a share of the clients is killed too
(their sockets closed), and a new server is started on the same file and port.
Measured from the new process's start: when it said it was online; when it answered
a request (a client registered before the crash asks ``list_groups``, retrying every
50 ms); and when every client it listed online was confirmed (the live ones answered
its probe) or marked offline (the dead ones, after the probe's retries: as the table of
a live client shows them, which the server updates once it has marked them)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from node.events import ListedGroups
from node.reliable import RetryPolicy
from node.session import State

from .fanout import Group
from .figures import Figure, check, median
from .liveness import PATIENT, is_probe
from .processes import ChatServer
from .swarm import Swarm, storm_arguments

TARGET_SHARE = ">= 70"  # % of the in-memory rate
TARGET_SERVING_S = "< 5"
MEMBERS = 10
EAGER = RetryPolicy(timeout=0.05, tries=20_000)  # the client that asks whether the server serves again


def cost(rounds: int, duration: float, progress) -> tuple[list[float], list[float], float]:
    """Sustained msgs/s to MEMBERS members without and with --state, ``rounds`` of each, in turns;
    and the state file's size at the end."""
    with tempfile.TemporaryDirectory(prefix="bench-state-") as folder:
        path = Path(folder) / "chat.db"
        with ChatServer(MEMBERS + 10) as plain, ChatServer(MEMBERS + 10, "--state", str(path)) as durable, \
                Swarm(plain.address) as plain_swarm, Swarm(durable.address) as durable_swarm:
            groups = {False: Group(plain_swarm, MEMBERS), True: Group(durable_swarm, MEMBERS)}
            rates: dict[bool, list[float]] = {False: [], True: []}
            for r in range(rounds):
                for kept in (False, True) if r % 2 == 0 else (True, False):
                    progress(f"state: round {r + 1}, {'--state' if kept else 'in memory'}", r / rounds / 2)
                    group = groups[kept]
                    rates[kept].append(group.sustained(duration, lean=True))
                    # Leave nothing under way while the other group is measured and this swarm
                    # stands still: an ack left in a member's timer would come too late, and the
                    # server would remove that member from the group.
                    group.swarm.run_until(lambda: group.sender.logic.state is State.IDLE
                                          and not any(m.logic.net.acks_waiting for m in group.members), 10)
                    group.swarm.run_for(0.2)
            size = file_bytes(path)
    return rates[False], rates[True], size


def file_bytes(path: Path) -> int:
    """The state file's size, with its write-ahead log (where the last commits may still be)."""
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def restart(size: int, gone: float, timeout: float, progress) -> dict:
    """Times (seconds after the new server process started) of a restart with ``size`` clients."""
    label = f"state: restart of {size:,} clients"
    with tempfile.TemporaryDirectory(prefix="bench-state-") as folder:
        path = str(Path(folder) / "chat.db")
        server = ChatServer(size + 1, "--state", path)
        try:
            with Swarm(server.address, PATIENT, seed=size) as swarm:
                # the asker acks its table updates with the others (or the server would give up on it)
                asker = swarm.add("asker", policy=EAGER)
                nodes = swarm.register([f"c{i}" for i in range(size)], timeout, lambda done: progress(label, 0.5 + done / 4))
                progress(f"{label}: tables settling", 0.75)
                swarm.run_until_settled([asker, *nodes], size + 1, timeout, ignoring=is_probe)
                server.kill()
                server.stop()  # (its output file)
                dead = nodes[: round(size * gone)]
                for node in dead:
                    swarm.remove(node)
                live = {node.sock.fileno() for node in [asker, *nodes[len(dead):]]}
                probed: set[int] = set()

                def confirmed(node, data: bytes, now: float) -> None:
                    if is_probe(data):
                        probed.add(node.sock.fileno())  # its logic acks it at once

                swarm.on_receive = confirmed
                answered: list[float] = []
                swarm.on_event = lambda node, event, now: node is asker and isinstance(event, ListedGroups) and answered.append(now)
                swarm.ask(asker, asker.logic.list_groups)  # on its way again every 50 ms until answered
                started = time.monotonic()
                server = ChatServer(size + 1, "--state", path, port=server.port)
                online = time.monotonic() - started  # (to within the 10 ms the start polls its output)
                gone = [node.logic.name for node in dead]
                times: dict[str, float] = {}
                checked = 0.0
                end = started + timeout
                while time.monotonic() < end and ("confirmed" not in times or "serving" not in times):
                    swarm.step(0.005)
                    now = time.monotonic()
                    if answered and "serving" not in times:
                        times["serving"] = answered[0] - started
                    if len(probed) == len(live) and now - checked > 0.05 and "confirmed" not in times:
                        checked = now  # the asker's table: offline there means marked offline by the server
                        table = asker.logic.table
                        if all(name in table and not table[name].online for name in gone):
                            times["confirmed"] = now - started
                return {"online": online, **times, "dead": len(dead), "live": len(live),
                        "offline": sum(1 for name in gone if name in asker.logic.table and not asker.logic.table[name].online),
                        "probed": len(probed), "file_bytes": file_bytes(Path(path))}
        finally:
            server.stop()


def add_arguments(parser) -> None:
    parser.add_argument("--rounds", type=int, default=5, help="measurements of each kind, taken in turns (default 5)")
    parser.add_argument("--duration", type=float, default=2.0, metavar="S", help="seconds of sustained sending per measurement (default 2)")
    parser.add_argument("--gone", type=float, default=0.1, metavar="SHARE", help="share of them killed with the server (default 0.1)")
    storm_arguments(parser, "clients in the state file at the restart")


def run(args, progress) -> list[Figure]:
    plain, kept, size = cost(args.rounds, args.duration, progress)
    share = median(kept) / median(plain) * 100 if median(plain) else None  # (None: nothing got through in memory)
    figures = [
        Figure("state", f"{MEMBERS} members: sustained, --state", median(kept), "msgs/s", median(plain), "in memory",
               note=f"members ack only; {args.rounds} measurements of each, in turns; state file {size / 1024:,.0f} KiB",
               also={"with_state": kept, "in_memory": plain}),
        Figure("state", f"{MEMBERS} members: --state vs in memory", share, "%", target=TARGET_SHARE, met=check(share, TARGET_SHARE)),
    ]
    r = restart(args.clients, args.gone, args.timeout, progress)
    name = f"restart with {args.clients:,} clients"
    figures.append(Figure("state", f"{name}: online", r["online"], "s", note="from the new process's start"))
    serving = r.get("serving")
    figures.append(Figure("state", f"{name}: answers a request", serving, "s", target=TARGET_SERVING_S,
                          met=check(serving, TARGET_SERVING_S), note="from the new process's start"))
    done = r.get("confirmed")
    figures.append(Figure("state", f"{name}: every online client confirmed or marked offline", done, "s",
                          note=f"{r['probed']:,} of {r['live']:,} live clients probed, {r['offline']:,} of {r['dead']:,} "
                          f"killed ones marked offline; state file {r['file_bytes'] / 2**20:.1f} MiB",
                          also={k: v for k, v in r.items() if v is not None}))
    progress("state", 1.0)
    return figures
