"""latency: request->ack, private message->ack, typed command->output line

(a) a client's request to the server until its ack, and (b) a private message
between two clients until its ack, both through the real asyncio node runtime
(node/runtime.py) on loopback, against the same round trip to a bare asyncio echo
server; (c) what a user sees: a command typed into a real ``ChatApp.py`` client
in a pseudo-terminal until its output line appears, against a line typed into
``cat`` in a pseudo-terminal (what the terminal path alone costs)."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from typing import Callable

from node.client import ClientLogic
from node.events import Delivered, ListedGroups, Registered, ServerGone
from node.runtime import Node, open_node

from .figures import Figure, check, median, percentile
from .processes import HOST, ROOT, STARTED, ChatServer, EchoServer, free_port
from .swarm import NO_LIMITS

TARGET_RUNTIME_RATIO = 5.0  # (a) and (b): median within 5x of the echo round trip
TARGET_TYPED_MS = "< 20"
TARGET_HELP_MS = "< 300"


class NotAnswered(Exception):
    """The client gave up on the server (``Server not responding``)."""


class Events:
    """The show callback of a node: lets a coroutine wait for an event of a type (NotAnswered
    if the client gives up on the server instead)."""

    def __init__(self):
        self.waiting: tuple[type, asyncio.Future] | None = None

    def __call__(self, event) -> None:
        if self.waiting is None:
            return
        wanted, future = self.waiting
        if isinstance(event, wanted):
            self.waiting = None
            if not future.done():
                future.set_result(time.perf_counter())
        elif isinstance(event, ServerGone):
            self.waiting = None
            if not future.done():
                future.set_exception(NotAnswered(repr(event)))

    def expect(self, wanted: type) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self.waiting = (wanted, future)
        return future


async def client(name: str, server, events: Events):
    port = free_port()
    logic = ClientLogic(name, server, port, rng=random.Random(name), limits=NO_LIMITS)
    welcome = events.expect(Registered)
    node, _ = await open_node(logic, events, (HOST, port))
    logic.start(node.now())
    node.pump()
    await asyncio.wait_for(welcome, 10)
    return logic, node


async def timed(node: Node, events: Events, ask: Callable[[float], None], answer: type, timeout: float = 10) -> float:
    """Seconds from asking (one of the client's intent methods, called with the time) until
    the client reports an ``answer``."""
    done = events.expect(answer)
    start = time.perf_counter()
    ask(node.now())
    node.pump()
    return (await asyncio.wait_for(done, timeout)) - start


async def timed_commands(node: Node, events: Events, ask: Callable[[int, float], None], answer: type, count: int,
                         tick) -> list[float]:
    """``count`` times ``ask(i, now)``, each timed until its answer."""
    samples = []
    for i in range(count):
        samples.append(await timed(node, events, lambda now: ask(i, now), answer))
        tick(i / count)
    return samples


async def echo_round_trips(address, count: int, tick) -> list[float]:
    loop = asyncio.get_running_loop()
    arrived: asyncio.Future | None = None

    class Probe(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            if arrived is not None and not arrived.done():
                arrived.set_result(time.perf_counter())

    transport, _ = await loop.create_datagram_endpoint(Probe, local_addr=(HOST, 0))
    samples = []
    try:
        datagram = b"\xc4\xa7" + bytes(40)  # the size of a small chat request
        for i in range(count):
            arrived = loop.create_future()
            start = time.perf_counter()
            transport.sendto(datagram, address)
            samples.append((await asyncio.wait_for(arrived, 10)) - start)
            tick(i / count)
    finally:
        transport.close()
    return samples


async def runtime_latency(server, echo, count: int, progress) -> dict[str, list[float]]:
    a_events, b_events = Events(), Events()
    ann, ann_node = await client("LatAnn", server, a_events)
    bob, bob_node = await client("LatBob", server, b_events)
    try:
        while "LatBob" not in ann.table:  # Ann learns Bob's address from the server's table
            await asyncio.sleep(0.01)
        results = {"echo": await echo_round_trips(echo, count, lambda f: progress("latency: echo", f / 3))}
        results["request"] = await timed_commands(
            ann_node, a_events, lambda i, now: ann.list_groups(now), ListedGroups, count,
            lambda f: progress("latency: request->ack", (1 + f) / 3),
        )
        results["private"] = await timed_commands(
            ann_node, a_events, lambda i, now: ann.send_private("LatBob", f"m{i}", now), Delivered, count,
            lambda f: progress("latency: private->ack", (2 + f) / 3),
        )
    finally:
        for logic, node in ((ann, ann_node), (bob, bob_node)):
            logic.shutdown(node.now())
            node.pump()
        await asyncio.sleep(0.05)  # lets the deregistrations leave
        ann_node.close()
        bob_node.close()
    return results


# Typing pace: a person reads one answer before typing the next command.  (Output that
# follows other output within 0.2 s is held back by prompt_toolkit, which bundles writes
# above the prompt: see docs/performance.md.)
PAUSE = 0.3
CPR = "\x1b[6n"  # prompt_toolkit asks the terminal where the cursor is, and waits for the answer


def read_until(child, text: str | None, timeout: float = 10.0) -> None:
    """Read ``child``'s output until ``text`` appears (None: for ``timeout`` seconds), answering
    cursor position requests at once, as a terminal does (prompt_toolkit waits for the answers)."""
    import pexpect

    seen, deadline = "", time.monotonic() + timeout
    while text is None or text not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            if text is None:
                return
            raise TimeoutError(f"no {text!r} in {seen[-300:]!r}")
        try:
            chunk = child.read_nonblocking(65536, timeout=min(left, 0.5))
        except pexpect.TIMEOUT:
            continue
        seen += chunk
        for _ in range(chunk.count(CPR)):
            child.send("\x1b[1;1R")


def spawn(argv: list[str]):
    import pexpect

    child = pexpect.spawn(argv[0], argv[1:], cwd=str(ROOT), env={**os.environ, "TERM": "xterm", "NO_COLOR": "1"},
                          encoding="utf-8", echo=False, dimensions=(50, 200))
    child.delaybeforesend = None  # pexpect pauses 50 ms before each write by default
    STARTED.append(child.pid)
    return child


def typed_latency(server, count: int, progress) -> dict[str, list[float]]:
    samples = {"typed": [], "pty": []}
    chat = spawn([sys.executable, str(ROOT / "ChatApp.py"), "-c", "LatCat", HOST, str(server[1]), str(free_port())])
    cat = spawn(["cat"])
    try:
        read_until(chat, "Welcome")
        chat.send("list_groups\r")  # the first command loads code the later ones find ready: not timed
        read_until(chat, "No available group right now")
        for i in range(count):
            read_until(chat, None, PAUSE)
            start = time.perf_counter()
            chat.send("list_groups\r")
            read_until(chat, "No available group right now")
            samples["typed"].append(time.perf_counter() - start)
            start = time.perf_counter()
            cat.send(f"line {i}\n")
            read_until(cat, f"line {i}")
            samples["pty"].append(time.perf_counter() - start)
            progress("latency: typed command", i / count)
        chat.send("dereg LatCat\r")
        read_until(chat, "Bye")
    finally:
        for child in (chat, cat):
            if child.isalive():
                child.terminate(force=True)
    return samples


def startup(count: int, progress) -> dict[str, list[float]]:
    """``ChatApp.py --help`` from start to exit, against the interpreter starting and doing nothing."""
    samples = {"help": [], "python": []}
    for i in range(count):
        for key, argv in (("help", [str(ROOT / "ChatApp.py"), "--help"]), ("python", ["-c", "pass"])):
            start = time.perf_counter()
            subprocess.run([sys.executable, *argv], cwd=ROOT, stdout=subprocess.DEVNULL, check=True)
            samples[key].append(time.perf_counter() - start)
        progress("latency: start-up", i / count)
    return samples


def add_arguments(parser) -> None:
    parser.add_argument("--count", type=int, default=300, help="round trips per runtime figure (default 300)")
    parser.add_argument("--typed", type=int, default=40, help="commands typed into the pseudo-terminal client (default 40)")
    parser.add_argument("--startups", type=int, default=10, help="runs of ChatApp.py --help (default 10)")


def run(args, progress) -> list[Figure]:
    with ChatServer() as server, EchoServer() as echo:
        results = asyncio.run(runtime_latency(server.address, echo.address, args.count, progress))
        results |= typed_latency(server.address, args.typed, progress)
    results |= startup(args.startups, progress)
    ms = {k: [s * 1000 for s in v] for k, v in results.items()}
    echo_ms = median(ms["echo"])
    figures = []
    for key, name in (("request", "(a) request -> ack, runtime"), ("private", "(b) private message -> ack, runtime")):
        value = median(ms[key])
        figures.append(Figure("latency", name, value, "ms", echo_ms, "echo RTT", f"< {TARGET_RUNTIME_RATIO:g}x",
                              value / echo_ms < TARGET_RUNTIME_RATIO, note=f"p99 {percentile(ms[key], 99):.3f} ms",
                              also={"p99": percentile(ms[key], 99)}))
    typed = median(ms["typed"])
    figures.append(Figure("latency", "(c) typed command -> output line, ChatApp.py in a pty", typed, "ms",
                          median(ms["pty"]), "pty+cat", TARGET_TYPED_MS, check(typed, TARGET_TYPED_MS),
                          note=f"p99 {percentile(ms['typed'], 99):.2f} ms", also={"p99": percentile(ms["typed"], 99)}))
    help_ms = median(ms["help"])
    figures.append(Figure("latency", "start-up: ChatApp.py --help", help_ms, "ms", median(ms["python"]), "python -c pass",
                          TARGET_HELP_MS, check(help_ms, TARGET_HELP_MS)))
    figures.append(Figure("latency", "bare asyncio echo round trip", echo_ms, "ms",
                          note=f"p99 {percentile(ms['echo'], 99):.3f} ms", also={"p99": percentile(ms["echo"], 99)}))
    progress("latency", 1.0)
    return figures
