"""Many simulated clients in one process: each a real ``ClientLogic`` (the
project's own client, not a second implementation of the protocol) on its own
UDP socket, all driven by one epoll loop.

This is a shell, like node/runtime.py, only leaner: one process can hold
thousands of clients, which share their table rows (``node.peers``).  ``on_event``
sees everything a client's logic reports (``node/events.py``), with the time it
reported it.
"""

from __future__ import annotations

import heapq
import itertools
import random
import select
import socket
import time
from typing import Callable

from node.client import ClientLogic
from node.effects import Exit, Send
from node.limits import Limits
from node.peers import PeerRows
from node.reliable import RetryPolicy

from .processes import HOST

BATCH = 32  # datagrams read from one socket before moving on to the next
NO_LIMITS = Limits(rate=0.0)  # simulated clients measure capacity; see ChatServer
SETTLED = 5.0  # seconds of silence from the server after a storm: its table updates are all acknowledged


class Node:
    __slots__ = ("logic", "sock", "on_readable", "scheduled", "exit_status")

    def __init__(self, logic: ClientLogic, sock: socket.socket):
        self.logic = logic
        self.sock = sock
        # A scenario may read the socket itself for a while: called with the time instead of
        # handing what arrives to the logic.
        self.on_readable: Callable[[float], None] | None = None
        self.scheduled: float | None = None  # the timer entry in the heap that counts
        self.exit_status: int | None = None


class Swarm:
    def __init__(self, server: tuple[str, int], policy: RetryPolicy = RetryPolicy(), seed: int = 1):
        self.server = server
        self.policy = policy
        self.rng = random.Random(seed)
        self.epoll = select.epoll()
        self.nodes: dict[int, Node] = {}  # fd -> node
        self._timers: list[tuple[float, int, int]] = []  # (when, seq, fd)
        self._seq = itertools.count()
        self.on_event: Callable[[Node, object, float], None] | None = None
        self.peers = PeerRows()  # equal rows of the clients' tables, held once
        self.on_receive: Callable[[Node, bytes, float], None] | None = None
        self.from_server = [0, 0, 0]  # datagrams, bytes, largest
        self.to_server = 0  # datagrams
        self.send_errors = 0

    def add(self, name: str, start: bool = True, policy: RetryPolicy | None = None) -> Node:
        """A client on a socket of its own; ``policy``: its own retries instead of the swarm's."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((HOST, 0))
        sock.setblocking(False)
        port = sock.getsockname()[1]
        logic = ClientLogic(name, self.server, port, policy or self.policy, random.Random(self.rng.random()), NO_LIMITS, self.peers)
        node = Node(logic, sock)
        self.nodes[sock.fileno()] = node
        self.epoll.register(sock.fileno(), select.EPOLLIN)
        if start:
            logic.start(time.monotonic())
            self.pump(node, time.monotonic())
        return node

    def register(self, names: list[str], timeout: float, progress: Callable[[float], None] = lambda done: None) -> list[Node]:
        """A client for each name, started as fast as they can be created; returns once all are
        registered (RuntimeError after ``timeout`` seconds)."""
        nodes = []
        for i, name in enumerate(names):
            nodes.append(self.add(name))
            if i % 200 == 0:
                self.step(0)  # the first clients are answered while the rest start
                progress(i / len(names))
        if not self.run_until(lambda: all(n.logic.registered for n in nodes), timeout):
            raise RuntimeError(f"{sum(not n.logic.registered for n in nodes)} of {len(nodes)} clients did not register")
        return nodes

    def run_until_quiet(self, timeout: float, quiet: float = 1.0, ignoring: Callable[[bytes], bool] | None = None) -> float:
        """Run until the server has sent nothing (but what ``ignoring`` accepts) for ``quiet``
        seconds: every table update acknowledged.  How long that took (RuntimeError after
        ``timeout`` seconds)."""
        start = time.monotonic()
        last = [start]

        def heard(node: Node, data: bytes, now: float) -> None:
            if ignoring is None or not ignoring(data):
                last[0] = now

        self.on_receive = heard
        try:
            while time.monotonic() - last[0] < quiet:
                if time.monotonic() - start > timeout:
                    raise RuntimeError("the server did not go quiet")
                self.step(0.05)
        finally:
            self.on_receive = None
        return time.monotonic() - start

    def run_until_settled(self, nodes: list[Node], rows: int, timeout: float, ignoring: Callable[[bytes], bool] | None = None) -> float:
        """Run until every one of ``nodes`` holds the same table version with ``rows`` rows, and
        then the server sends nothing (but what ``ignoring`` accepts) for SETTLED seconds; how
        long that took (RuntimeError after ``timeout`` seconds)."""
        start = time.monotonic()
        checked = [start]

        def same_table() -> bool:  # every second: it costs a look at every node
            if time.monotonic() - checked[0] < 1.0:
                return False
            checked[0] = time.monotonic()
            versions = {n.logic.table_version for n in nodes}
            return len(versions) == 1 and all(len(n.logic.table) == rows for n in nodes)

        if not self.run_until(same_table, timeout):
            raise RuntimeError("the clients' tables did not settle")
        self.run_until_quiet(timeout - (time.monotonic() - start), SETTLED, ignoring)
        return time.monotonic() - start

    def ask(self, node: Node, intent: Callable[..., None], *args) -> None:
        """Call one of ``node``'s intent methods (``node.logic.send_group``, ...) now; carry out what follows."""
        now = time.monotonic()
        intent(*args, now)
        self.pump(node, now)

    def pump(self, node: Node, now: float) -> None:
        """Carry out what the node's logic asked for, then note its next timer."""
        for effect in node.logic.drain(now):
            kind = type(effect)
            if kind is Send:
                if effect.addr == self.server:
                    self.to_server += 1
                try:
                    node.sock.sendto(effect.data, effect.addr)
                except OSError:
                    self.send_errors += 1  # a full buffer: loss, which the protocol repairs
            elif kind is Exit:
                node.exit_status = effect.status
            elif self.on_event is not None:
                self.on_event(node, effect, now)
        when = node.logic.get_timer()
        if when is not None and (node.scheduled is None or when < node.scheduled):
            node.scheduled = when
            heapq.heappush(self._timers, (when, next(self._seq), node.sock.fileno()))

    def step(self, timeout: float) -> None:
        """Deliver what has arrived (waiting at most ``timeout``), then fire due timers."""
        if self._timers:
            timeout = max(0.0, min(timeout, self._timers[0][0] - time.monotonic()))
        for fd, _ in self.epoll.poll(timeout, len(self.nodes) + 1):
            node = self.nodes[fd]
            now = time.monotonic()
            if node.on_readable is not None:
                node.on_readable(now)
                continue
            self._read(node, now)
            self.pump(node, now)
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            when, _, fd = heapq.heappop(self._timers)
            node = self.nodes.get(fd)
            if node is None or node.scheduled != when:
                continue  # superseded by an earlier timer of the same node
            node.scheduled = None
            # What already waits in the node's socket counts before its timer, as in a client
            # process of its own: a busy swarm must not make a client give up on an answer it has.
            if node.on_readable is not None:
                node.on_readable(now)
            else:
                self._read(node, now)
            node.logic.handle_timer(now)
            self.pump(node, now)

    def _read(self, node: Node, now: float) -> None:
        server, counts = self.server, self.from_server
        receive, recvfrom = node.logic.receive, node.sock.recvfrom
        for _ in range(BATCH):
            try:
                data, addr = recvfrom(65536)
            except BlockingIOError:
                break
            if addr == server:
                counts[0] += 1
                counts[1] += len(data)
                counts[2] = max(counts[2], len(data))
            if self.on_receive is not None:
                self.on_receive(node, data, now)
            receive(data, addr, now)

    def run_until(self, done: Callable[[], bool], timeout: float, tick: Callable[[], None] | None = None) -> bool:
        """Run until ``done()`` (checked every few milliseconds) or ``timeout`` seconds; True if done."""
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() >= deadline:
                return False
            self.step(0.005)
            if tick is not None:
                tick()
        return True

    def run_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.step(min(0.005, end - time.monotonic()))

    def remove(self, node: Node) -> None:
        """The node is gone, as a client killed with SIGKILL: its socket closed, nothing more from it."""
        del self.nodes[node.sock.fileno()]
        self.epoll.unregister(node.sock.fileno())
        node.sock.close()

    def close(self) -> None:
        for node in self.nodes.values():
            self.epoll.unregister(node.sock.fileno())
            node.sock.close()
        self.nodes.clear()
        self.epoll.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def storm_arguments(parser, clients: str) -> None:
    """The options of a scenario that registers N clients first: how many (``clients`` says what
    they are for) and how long their storm may take."""
    parser.add_argument("--clients", type=int, default=10_000, help=f"{clients} (default 10000)")
    parser.add_argument("--timeout", type=float, default=900.0, metavar="S", help="give up registering after S seconds (default 900)")
