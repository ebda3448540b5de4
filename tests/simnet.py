"""A deterministic simulated network for the sans-IO logic: a fake clock, no
sockets, no sleeps.  Datagrams between nodes pass a ``fault`` hook that can
drop, delay or duplicate them."""

from __future__ import annotations

import heapq
import itertools
import random
from collections import defaultdict
from typing import Callable

from proto import decode
from node.client import ClientLogic
from node.effects import Exit, Send, Show, ShowTable
from node.reliable import RetryPolicy
from node.server import ServerLogic

SERVER = ("10.9.0.1", 9000)  # simulated addresses: nothing is ever sent to them

# fault(packet, src, dst, sim) -> list of extra delays, one per copy to deliver ([] drops it)
Fault = Callable[[object, tuple, tuple, "SimNet"], list[float]]


class SimNet:
    def __init__(self, policy: RetryPolicy = RetryPolicy(), seed: int = 0, latency: float = 0.001):
        self.now = 0.0
        self.policy = policy
        self.latency = latency
        self.rng = random.Random(seed)
        self.nodes: dict[tuple, object] = {}
        self.lines: dict[str, list[str]] = defaultdict(list)  # node name -> printed lines
        self.exits: dict[str, int] = {}
        self.fault: Fault | None = None
        self.sent: list[tuple[float, tuple, tuple, object]] = []  # every datagram offered to the network
        self._queue: list = []
        self._seq = itertools.count()
        self.server = self._add(SERVER, ServerLogic(SERVER[1], policy, random.Random(self.rng.random())), "server")

    def _add(self, addr, logic, name):
        logic._sim_name = name
        self.nodes[addr] = logic
        return logic

    def client(self, name: str, port: int | None = None, start: bool = True) -> ClientLogic:
        addr = (f"10.9.0.{len(self.nodes) + 1}", port or 7000 + len(self.nodes))
        logic = self._add(addr, ClientLogic(name, SERVER, addr[1], self.policy, random.Random(self.rng.random())), name)
        logic._sim_addr = addr
        if start:
            logic.start(self.now)
            self._collect(addr)
        return logic

    def type(self, client: ClientLogic, line: str) -> None:
        client.command(line, self.now)
        self._collect(client._sim_addr)

    def shutdown(self, client: ClientLogic) -> None:
        client.shutdown(self.now)
        self._collect(client._sim_addr)

    def crash(self, client: ClientLogic) -> None:
        """The client's process dies: it stops answering, says nothing."""
        del self.nodes[client._sim_addr]

    def _collect(self, addr) -> None:
        logic = self.nodes.get(addr)
        if logic is None:
            return
        name = logic._sim_name
        for effect in logic.drain():
            if isinstance(effect, Send):
                self._offer(effect.data, addr, effect.addr)
            elif isinstance(effect, Show):
                self.lines[name].append(effect.text)
            elif isinstance(effect, ShowTable):
                self.lines[name].append(effect.title)
                self.lines[name].extend("| " + " | ".join(row) for row in effect.rows)
            elif isinstance(effect, Exit):
                self.exits[name] = effect.status
                self.nodes.pop(addr, None)

    def _offer(self, data: bytes, src, dst) -> None:
        pkt = decode(data)
        self.sent.append((self.now, src, dst, pkt))
        delays = self.fault(pkt, src, dst, self) if self.fault else [0.0]
        for extra in delays:
            heapq.heappush(self._queue, (self.now + self.latency + extra, next(self._seq), data, src, dst))

    def _next_event(self) -> float | None:
        times = [t for t in (logic.get_timer() for logic in self.nodes.values()) if t is not None]
        if self._queue:
            times.append(self._queue[0][0])
        return min(times) if times else None

    def run(self, seconds: float = 10.0) -> None:
        """Advance the clock, delivering datagrams and firing timers, for ``seconds``."""
        end = self.now + seconds
        while (t := self._next_event()) is not None and t <= end:
            self.now = max(self.now, t)
            while self._queue and self._queue[0][0] <= self.now:
                _, _, data, src, dst = heapq.heappop(self._queue)
                if dst in self.nodes:
                    self.nodes[dst].receive(data, src, self.now)
                    self._collect(dst)
            for addr, logic in list(self.nodes.items()):
                timer = logic.get_timer()
                if timer is not None and timer <= self.now:
                    logic.handle_timer(self.now)
                    self._collect(addr)
        self.now = end
        for addr, logic in list(self.nodes.items()):
            logic.handle_timer(self.now)  # lets expiring state (remembered replies) go
            self._collect(addr)
