"""abuse: a bystander's command latency while one client floods the server at its rate limit

A real ``ChatApp.py -s`` server, with its per-source rate limit as users run it and its
output in a pseudo-terminal read as a terminal reads it (the console's cost is the point),
holds 1,000 groups.  A bystander (the project's ClientLogic in the real node runtime) joins
and leaves a group, command after command, each timed from the command to its answer line:
first with nobody else about, then while one abusive client, a process of its own, sends
``join_group``/``leave_group`` (churn) or ``list_groups`` (list) as fast as the per-source
rate limit lets through.  Target: the bystander's p99 under abuse at most 3x its quiet p99,
and none of its commands fails.

Also ``python -m tools.perf.abuse --server HOST:PORT --mode MODE``: the abusive client
alone, until SIGTERM (then it prints how many requests it sent and how many were answered).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import signal
import socket
import subprocess
import sys
import time

from node.events import JoinedGroup, LeftGroup
from node.limits import Limits
from proto import MSG_TYPES, STATUS_CODES, ProtocolError
from proto.fastpath import encode, parse
from proto.messages import ANSWERS
from tools.cli import host_port

from .figures import Busy, Figure, median, percentile
from .latency import Events, NotAnswered, client, timed
from .processes import HOST, READY_WITHIN, ChatServer, Process

TARGET_RATIO = 3.0  # p99 under abuse / quiet p99
MODES = ("churn", "list")
PAUSE = 0.02  # seconds between the bystander's commands: it is not a load of its own
OK = STATUS_CODES["ok"]


class RawClient:
    """A client that speaks the wire format itself (proto.fastpath), to send what a
    well-behaved ChatApp client never would: requests as fast as the server accepts them."""

    def __init__(self, server: tuple[str, int], name: str, port: int = 0):
        self.server = server
        self.name = name
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, port))
        self.token = 0
        self._ids = itertools.count(random.randrange(1, 2**31))  # as a client does: a reg is never a replay
        self.sent = 0
        self.answered = 0  # answers received (any status: a list_groups of 1,000 groups says 'more')

    def request(self, type_name: str, **payload) -> tuple[int, bytes]:
        msg_id = next(self._ids)
        return msg_id, encode(type_name, {"msg_id": msg_id, "sender": self.name, "token": self.token}, payload)

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.server)
        self.sent += 1

    def answers(self, wait: float) -> dict[int, tuple[int, int]]:
        """Answers arriving within ``wait`` seconds (then whatever else is waiting): msg id -> (status, token)."""
        out: dict[int, tuple[int, int]] = {}
        self.sock.settimeout(wait)
        try:
            while True:
                data, _ = self.sock.recvfrom(65536)
                self.sock.settimeout(0)
                try:
                    pkt = parse(data)
                except ProtocolError:
                    continue
                if MSG_TYPES[pkt.type] in ANSWERS:
                    out[pkt.payload.ack_id] = (pkt.payload.status, getattr(pkt.payload, "token", 0))
                    self.answered += 1
        except (BlockingIOError, socket.timeout):
            pass
        return out

    def ask(self, type_name: str, timeout: float = READY_WITHIN, **payload) -> tuple[int, int]:
        """Send a request until it is answered, as a client retransmits: (status, token).  One at a
        time, as a client does: once a newer request is processed, an older one is a replay."""
        msg_id, data = self.request(type_name, **payload)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.send(data)
            until = min(deadline, time.monotonic() + 0.5)
            while (left := until - time.monotonic()) > 0:
                if msg_id in (answered := self.answers(left)):
                    return answered[msg_id]
        raise TimeoutError(f"{self.name}: {type_name} unanswered")

    def register(self) -> None:
        status, self.token = self.ask("reg")
        if status == OK:
            status, _ = self.ask("confirm")  # the session starts once the server has the token back
        if status != OK:
            raise RuntimeError(f"{self.name} not registered: status {status}")

    def create_groups(self, count: int, timeout: float = READY_WITHIN) -> None:
        for i in range(count):
            self.ask("create_group", timeout, group=group_name(i))

    def close(self) -> None:
        self.sock.close()


def group_name(i: int) -> str:
    return f"g{i}"


def requests(raw: RawClient, mode: str, groups: int):
    """The abusive client's endless stream of requests."""
    for i in itertools.count():
        group = group_name(i % groups)
        if mode in ("churn", "mixed"):
            yield raw.request("join_group", group=group)[1]
            yield raw.request("leave_group", group=group)[1]
        if mode in ("list", "mixed"):
            yield raw.request("list_groups")[1]


def flood(raw: RawClient, mode: str, groups: int, rate: float, stop) -> None:
    """Send ``rate`` requests a second until ``stop()``, reading the answers meanwhile."""
    stream = requests(raw, mode, groups)
    start = time.monotonic()
    while not stop():
        due = int((time.monotonic() - start) * rate) - raw.sent
        for _ in range(max(0, due)):
            raw.send(next(stream))
        raw.answers(0.002)


def abuser_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.perf.abuse", description="the abusive client of bench.py abuse")
    parser.add_argument("--server", required=True, type=host_port, metavar="HOST:PORT")
    parser.add_argument("--port", type=int, default=0, help="local UDP port (default: any)")
    parser.add_argument("--mode", choices=(*MODES, "mixed"), default="churn")
    parser.add_argument("--groups", type=int, required=True, help="the server's groups are g0 .. g<N-1>")
    parser.add_argument("--rate", type=float, default=Limits.rate, help="requests a second (default: the server's rate limit)")
    parser.add_argument("--name", default="Mallory")
    args = parser.parse_args(argv)
    stopped = []
    signal.signal(signal.SIGTERM, lambda *_: stopped.append(True))
    raw = RawClient(args.server, args.name, args.port)
    raw.register()
    print(f"flooding {args.server[0]}:{args.server[1]} with {args.mode} requests, {args.rate:g} a second", flush=True)
    flood(raw, args.mode, args.groups, args.rate, lambda: stopped)
    raw.send(raw.request("dereg")[1])  # best effort, as a client that quits
    print(f"sent {raw.sent} answered {raw.answered}", flush=True)
    return 0


class Abuser(Process):
    """``python -m tools.perf.abuse`` against ``server``, on the benchmark's side of the machine."""

    def __init__(self, server: tuple[str, int], mode: str, groups: int, rate: float, name: str):
        super().__init__(
            lambda port: [sys.executable, "-m", "tools.perf.abuse", "--server", f"{server[0]}:{server[1]}",
                          "--port", str(port), "--mode", mode, "--groups", str(groups), "--rate", f"{rate:g}",
                          "--name", name],
            "flooding",
            apart=False,
            attempts=1,  # not ready means its registration went unanswered, not that its port was taken
        )

    def finish(self) -> tuple[int, int]:
        """Stop it (SIGTERM by pid); (requests sent, answers received), as it reports them at exit."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(READY_WITHIN)
        except subprocess.TimeoutExpired:
            pass  # stop() kills it
        words = self.log().split()
        self.stop()
        if "sent" not in words:
            return 0, 0
        i = words.index("sent")
        return int(words[i + 1]), int(words[i + 3])


async def bystander(server: tuple[str, int], name: str, count: int, tick) -> tuple[list[float], int]:
    """``count`` commands (join, leave, ...): seconds each, and how many failed."""
    events = Events()
    try:
        logic, node = await client(name, server, events)
    except (NotAnswered, asyncio.TimeoutError):
        return [], count  # not even registered
    samples, failed = [], 0
    cycle = [(lambda now: logic.join_group("g0", now), JoinedGroup), (logic.leave_group, LeftGroup)]
    try:
        for i in range(count):
            ask, answer = cycle[i % 2]
            try:
                samples.append(await timed(node, events, ask, answer))
            except (NotAnswered, asyncio.TimeoutError):
                failed = count - i  # the client gave up on the server: the rest cannot run
                break
            tick(i / count)
            await asyncio.sleep(PAUSE)
    finally:
        logic.shutdown(node.now())
        node.pump()
        await asyncio.sleep(0.05)  # lets the deregistration leave
        node.close()
    return samples, failed


def add_arguments(parser) -> None:
    parser.add_argument("--groups", type=int, default=Limits.max_groups, help=f"groups on the server (default {Limits.max_groups})")
    parser.add_argument("--count", type=int, default=400, help="bystander commands per phase (default 400)")
    parser.add_argument("--rounds", type=int, default=4, help="blocks of commands per phase, taken in turns (default 4)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="kinds of abuse (default both)")
    parser.add_argument("--rate", type=float, default=Limits.rate,
                        help="the abuser's requests a second (default: the server's per-source rate limit)")
    parser.add_argument("--setup-timeout", type=float, default=600.0, help="seconds allowed for creating the groups")


def run(args, progress) -> list[Figure]:
    """Rounds of one block of bystander commands per phase, so that whatever else the machine does
    meanwhile falls on every phase alike."""
    phases = ["quiet", *args.modes]
    results = {phase: {"ms": [], "failed": 0, "cpu": [], "printed": 0, "abuser_sent": 0, "abuser_answered": 0, "problem": ""}
               for phase in phases}
    block = max(2, args.count // args.rounds)
    with ChatServer(limited=True, terminal=True) as server:
        progress("abuse: creating groups", 0.0)
        setup = RawClient(server.address, "Setup")
        try:
            setup.register()
            setup.create_groups(args.groups, args.setup_timeout)
        finally:
            setup.close()
        for k in range(args.rounds):
            for n, phase in enumerate(phases):
                total = results[phase]
                if total["failed"]:  # that phase failed already: its later blocks are not run, but counted
                    total["failed"] += block
                    continue
                share = (k * len(phases) + n) / (args.rounds * len(phases))
                tick = lambda f, phase=phase, share=share: progress(f"abuse: {phase}", share + f / (args.rounds * len(phases)))  # noqa: E731
                measure(server, phase, f"{k}", block, args, tick, total)
    progress("abuse", 1.0)
    return figures(results)


def measure(server: ChatServer, phase: str, tag: str, count: int, args, tick, total: dict) -> None:
    """``count`` bystander commands, with the abuse of ``phase`` going on (none if quiet), added to ``total``."""
    printed, busy = len(server.log()), Busy(server)
    abuser = None
    try:
        if phase != "quiet":
            try:
                abuser = Abuser(server.address, phase, args.groups, args.rate, f"Mal{phase}{tag}")
            except RuntimeError:  # it registers first: the server did not answer even that
                total["failed"] += count
                total["problem"] = "the abusive client's registration went unanswered"
                return
        samples, failed = asyncio.run(bystander(server.address, f"By{phase}{tag}", count, tick))
        total["ms"] += [s * 1000 for s in samples]
        total["failed"] += failed
    finally:
        total["cpu"].append(busy.share()[0])
        if abuser is not None:
            sent, answered = abuser.finish()
            total["abuser_sent"] += sent
            total["abuser_answered"] += answered
        total["printed"] += len(server.log()) - printed


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def figures(results: dict[str, dict]) -> list[Figure]:
    quiet = results["quiet"]
    quiet_p99 = percentile(quiet["ms"], 99)
    out = []
    for phase, r in results.items():
        p99 = percentile(r["ms"], 99)
        cpu = sum(r["cpu"]) / len(r["cpu"])
        also = {"p99": p99, "median": median(r["ms"]), "failed": r["failed"], "server_cpu": cpu, "printed": r["printed"]}
        note = (f"{r['failed']} of {len(r['ms']) + r['failed']} failed{'; ' + r['problem'] if r['problem'] else ''}; "
                f"server {cpu:.0%} busy, printed {r['printed']:,} chars")
        if phase == "quiet":
            out.append(Figure("abuse", "bystander join/leave, nobody else about", median(r["ms"]), "ms",
                              note=f"p99 {ms(p99)}; " + note, also=also))
            continue
        met = p99 is not None and quiet_p99 is not None and p99 <= TARGET_RATIO * quiet_p99 and not r["failed"] + quiet["failed"]
        out.append(Figure(
            "abuse", f"bystander p99 while one client floods {phase} requests", p99, "ms", quiet_p99, "quiet p99",
            f"<= {TARGET_RATIO:g}x, none failed", met,
            note=(f"median {ms(median(r['ms']))} (quiet {ms(median(quiet['ms']))}); {note}; "
                  f"the abuser sent {r['abuser_sent']:,}, {r['abuser_answered']:,} answered"),
            also={**also, "abuser_sent": r["abuser_sent"], "abuser_answered": r["abuser_answered"]},
        ))
    return out


if __name__ == "__main__":
    sys.exit(abuser_main())
