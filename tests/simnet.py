"""The one fake-clock driver of the sans-IO logic: a deterministic simulated network, no
sockets, no sleeps.  Every in-process test that lets time pass drives its logic through it.

    sim = SimNet()
    a, b = sim.client("A"), sim.client("B")
    sim.run(1)
    sim.type(a, "send B hi")
    sim.run(1)
    assert sim.lines["B"][-1] == ">>> A: hi"  # or sim.events["B"][-1] == PrivateMessage("A", "hi")

What it holds:

- nodes at addresses: a server (``SimNet(server=False)`` for none; keyword arguments it does not
  know go to ``ServerLogic``), clients (``client``), or any object with the logic's driving
  interface (``add``: an ``Endpoint`` on its own, say);
- one clock: ``run`` fires every node's timers, and the alarms set with ``call_at`` (the
  endpoint's, which ``Console`` and ``TablePrinter`` take), exactly when due;
- batches, as the shell feeds them: the datagrams that reach one node at one instant are all
  received with that ``now``, then its effects are drained once; ``batch`` and ``deliver``
  hand a node datagrams made by hand the same way, at once;
- raw peers (``raw``): hand-driven addresses for tests that craft datagrams; what the network
  was given for one is in its ``received``;
- the record: every datagram a node offered (``sent``, ``sends``), and per node what its logic
  reported (``events``) and how a user reads it (``lines``), and its exit status (``exits``).

Datagrams between nodes pass either a ``fault`` hook that can drop, delay or duplicate them, or
a ``plan``: the lossy proxy's own rule engine (tools/faults.py, the hold included), so the
simulator and the proxy mean the same thing by ``drop p=0.2`` or ``reorder``.  A plan's rules
become active when it is set (``sim.plan = ...``): their ``during=`` windows, and so a scenario
(tools/scenario.py), count on the fake clock from then.

Like the asyncio shell, the simulator isolates every call into a node's logic: an exception
is counted (``internal error``) and recorded in ``errors``, and the node goes on.  Each
``run`` then fails the test if any was recorded ("no exception escaped", checked in every
simulated run), unless ``tolerate_errors`` is set by a caller that checks ``errors`` itself.

With a ``tick``, arrival times are rounded up to a multiple of it, so datagrams that arrive
close together share an instant, and a batch, as they do in a real one.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import traceback
from collections import defaultdict
from typing import Callable, NamedTuple

from proto import MSG_TYPES, STATUSES
from proto.fastpath import parse
from node.client import ClientLogic
from node.effects import Exit, Send
from node.peers import PeerRows
from node.reliable import RetryPolicy
from node.runtime import BATCH, INTERNAL_ERROR
from node.server import ServerLogic
from node.store import COMMIT_WITHIN
from tests.shown import shown
from tools.faults import FaultPlan, ReorderHold

SERVER = ("10.9.0.1", 9000)  # simulated addresses: nothing is ever sent to them
MAX_ERRORS = 100  # exceptions recorded before a run stops even if errors are tolerated

# fault(packet, src, dst, sim) -> list of extra delays, one per copy to deliver ([] drops it)
Fault = Callable[[object, tuple, tuple, "SimNet"], list[float]]
# match(packet, src, dst) -> bool, for the fault helpers below
Match = Callable[[object, tuple, tuple], bool]


def kind(pkt) -> str:
    """The message type of a decoded chat packet, by name."""
    return MSG_TYPES[pkt.type]


def dropping(match: Match, first: int | None = None) -> Fault:
    """A fault that drops the datagrams ``match`` selects (only the first ``first`` of them, if given)."""
    dropped = 0

    def fault(pkt, src, dst, sim) -> list[float]:
        nonlocal dropped
        if match(pkt, src, dst) and (first is None or dropped < first):
            dropped += 1
            return []
        return [0.0]

    return fault


def registering_with_confirm_lost(sim: "SimNet", name: str) -> ClientLogic:
    """A client whose reg has been answered and whose first confirm was lost: the server waits for
    it (until ``sim.run`` lets the client send it again)."""
    sim.fault = dropping(lambda pkt, src, dst: kind(pkt) == "confirm", first=1)
    client = sim.client(name)
    sim.run(0.1)
    assert not client.registered and sim.sends("reg_ack", dst=sim.addr(client))
    return client


def assert_registered_again(sim: "SimNet", client: ClientLogic) -> None:
    """The server answered ``client``'s confirm ``not_registered`` once (it had forgotten the
    registration), and the client registered again and was welcomed, without exiting."""
    refused = [p for _, p in sim.sends("ack", src=SERVER, dst=sim.addr(client))
               if STATUSES[p.payload.status] == "not_registered"]
    assert len(refused) == 1, "the server did not know the registration any more"
    assert client.registered and client.name not in sim.exits and sim.server.clients[client.name].online
    assert sim.lines[client.name].count(">>> Welcome, You are registered.") == 1


class Sent(NamedTuple):
    """One datagram a node offered to the network: when, from and to where, decoded and as sent."""

    time: float
    src: tuple
    dst: tuple
    pkt: object
    data: bytes


class Raw:
    """A hand-driven peer: a test crafts the datagrams it sends, and reads what the network was
    given for it (at once: no need to run the clock; a fault may still lose it on the way)."""

    def __init__(self, sim: "SimNet", name: str, addr: tuple):
        self.sim, self.name, self.addr = sim, name, addr
        sim._names[addr] = name

    def send(self, data: bytes, to: tuple = SERVER) -> None:
        """Hand ``data`` to the node at ``to`` now, as a batch of its own."""
        self.sim.deliver(data, self.addr, to)

    def received(self, type_name: str | None = None) -> list:
        """The packets (of ``type_name``) sent to this peer so far, decoded."""
        return [pkt for _, pkt in self.sim.sends(type_name, dst=self.addr)]


class SimNet:
    def __init__(self, policy: RetryPolicy = RetryPolicy(), seed: int = 0, latency: float = 0.001, tick: float = 0.0,
                 server: bool = True, **server_options):
        self.now = 0.0
        self.policy = policy
        self.latency = latency
        self.tick = tick
        self.errors: list[tuple[str, str]] = []  # (node name, traceback) of each exception a logic raised
        self.tolerate_errors = False
        self.rng = random.Random(seed)
        self.ids = itertools.count(1000)  # message ids for the datagrams tests craft
        self.nodes: dict[tuple, object] = {}  # address -> live node; crashed and exited nodes leave
        self.events: dict[str, list] = defaultdict(list)  # node name -> what its logic reported (node/events.py)
        self.lines: dict[str, list[str]] = defaultdict(list)  # node name -> those events as printed
        self.exits: dict[str, int] = {}
        self.fault: Fault | None = None
        self._plan: FaultPlan | None = None  # the lossy proxy's rules, applied to every datagram
        self.holds = ReorderHold()  # datagrams a `hold` keeps, as (queue seq, bytes); max_hold as in the proxy
        self._released: set[int] = set()  # held datagrams already sent on early
        self.sent: list[Sent] = []  # every datagram offered to the network
        self._queue: list = []
        self._alarms: list = []  # (when, seq, callback) set with call_at
        self._names: dict[tuple, str] = {}
        self._drains: dict[tuple, Callable[[float], list]] = {}
        self._seq = itertools.count()
        self._hosts = itertools.count(2)  # never reused, so a new client cannot take a live one's address
        self._server_options = server_options
        self.server = self.restart_server() if server else None

    def add(self, addr: tuple, logic, name: str, drain: Callable[[float], list] | None = None):
        """Put ``logic`` at ``addr``: anything with ``receive``, ``get_timer``, ``handle_timer`` and
        ``drain(now)``, or another ``drain`` (an ``Endpoint``'s takes no time)."""
        logic._sim_name = name
        logic._sim_addr = addr
        self.nodes[addr] = logic
        self._names[addr] = name
        self._drains[addr] = drain or logic.drain
        return logic

    @property
    def plan(self) -> FaultPlan | None:
        return self._plan

    @plan.setter
    def plan(self, plan: FaultPlan | None) -> None:
        self._plan = plan
        if plan is not None:
            plan.activate(self.now)  # as the proxy does: its rules' time counts from now

    def fresh_addr(self, port: int | None = None) -> tuple:
        """An address no node or peer has had."""
        host = next(self._hosts)
        return (f"10.9.{host >> 8}.{host & 255}", port or 7000 + host)

    def client(
        self, name: str, port: int | None = None, start: bool = True, addr: tuple | None = None, label: str | None = None,
        peers: PeerRows | None = None, **options,
    ) -> ClientLogic:
        """A new client process; ``addr`` reuses an address (that of a crashed process, say),
        ``label`` keys its output in ``lines`` and ``exits`` when two processes use the same name,
        and ``peers`` is a table-row store it shares with other clients (as in one process);
        ``options`` go to ``ClientLogic``."""
        addr = addr or self.fresh_addr(port)
        logic = ClientLogic(name, SERVER, addr[1], self.policy, random.Random(self.rng.random()), peers=peers, **options)
        self.add(addr, logic, label or name)
        if start:
            self._call(logic, logic.start, self.now)
        return logic

    def raw(self, name: str, addr: tuple | None = None) -> Raw:
        """A hand-driven peer named ``name`` (at a fresh address unless given)."""
        return Raw(self, name, addr or self.fresh_addr())

    def online(self, *names: str) -> list[ClientLogic]:
        """Start a client per name and let them all register."""
        clients = [self.client(name) for name in names]
        self.run(1)
        return clients

    def in_group(self, clients: list[ClientLogic], group: str = "g") -> None:
        """The first client creates ``group``, then every client joins it."""
        self.type(clients[0], f"create_group {group}")
        self.run(1)
        for client in clients:
            self.type(client, f"join_group {group}")
        self.run(1)

    @staticmethod
    def addr(node) -> tuple:
        return node._sim_addr

    def type(self, client: ClientLogic, line: str) -> None:
        self._call(client, client.command, line, self.now)

    def ask(self, client: ClientLogic, intent: Callable[..., None], *args) -> None:
        """Call one of the client's intent methods (``client.send_private``, ...) now."""
        self._call(client, intent, *args, self.now)

    def end_input(self, client: ClientLogic) -> None:
        """Ctrl+D, or the end of a piped script."""
        self._call(client, client.end_of_input, self.now)

    def shutdown(self, client: ClientLogic) -> None:
        self._call(client, client.shutdown, self.now)

    def _isolated(self, logic, action, *args) -> None:
        """Call into a node's logic as the shell does: an exception is counted and recorded, never lost."""
        try:
            action(*args)
        except Exception:
            logic.drops[INTERNAL_ERROR] += 1
            self.errors.append((logic._sim_name, traceback.format_exc()))
            if len(self.errors) > MAX_ERRORS:  # one that recurs: a failing timer would be called again and again
                self.tolerate_errors = False
                self.check_errors()

    def _call(self, logic, action, *args) -> None:
        """One isolated call, then the node's effects carried out."""
        self._isolated(logic, action, *args)
        self.collect(logic._sim_addr)

    def check_errors(self) -> None:
        """The invariant of every simulated run: no exception escaped a node's logic."""
        if self.errors and not self.tolerate_errors:
            name, trace = self.errors[0]
            raise AssertionError(f"{len(self.errors)} exception(s) escaped the logic; the first, in {name}:\n{trace}")

    def crash(self, node) -> None:
        """The node's process dies: it stops answering, says nothing."""
        del self.nodes[node._sim_addr]

    def restart_server(self) -> ServerLogic:
        """A server process starts (again) on the server's address, knowing nobody; its tokens
        come from the run's seed too, so a seed replays a run exactly.

        With a ``store`` (``SimNet(store=MemoryStore())``) it knows what the store holds, as a
        real one started with ``--state`` does, and each drain is committed before its
        datagrams go, as the shell does (one that sends nothing within ``COMMIT_WITHIN``)."""
        options = {"randbits": random.Random(self.rng.random()).getrandbits, **self._server_options}
        logic = ServerLogic(SERVER[1], self.policy, random.Random(self.rng.random()), **options)
        store = options.get("store")
        if store is None:
            self.server = self.add(SERVER, logic, "server")
            return self.server

        late = False  # a commit is set for later: a drain that sent nothing left changes

        def commit_late(now: float) -> None:
            nonlocal late
            late = False
            if self.nodes.get(SERVER) is logic:  # (not after a crash)
                store.commit()

        def drain(now: float) -> list:
            nonlocal late
            effects = logic.drain(now)
            if effects:
                store.commit()
            elif store.dirty and not late:
                late = True
                self.call_at(now + COMMIT_WITHIN, commit_late)
            return effects

        self.server = self.add(SERVER, logic, "server", drain)
        self._call(logic, logic.resume, self.now)
        return self.server

    def crash_server(self, within: float = 0.0) -> None:
        """The server's process is killed.  What it had not committed is lost: with ``within``,
        the datagrams that reach it in the next ``within`` seconds are received (they change
        its state, uncommitted) but their batch is never drained: the crash comes first."""
        server = self.server
        arriving = [entry for entry in self._queue if entry[4] == SERVER and entry[0] <= self.now + within]
        if arriving:
            self._queue = [entry for entry in self._queue if not (entry[4] == SERVER and entry[0] <= self.now + within)]
            heapq.heapify(self._queue)
            for _, _, data, src, _ in sorted(arriving):
                self._isolated(server, server.receive, data, src, self.now)
        self._server_options["store"].abort()
        server.net.drain()  # what it meant to send dies with it
        self.crash(server)

    def inject(self, data: bytes, src: tuple, dst: tuple) -> None:
        """Deliver raw bytes (not necessarily a chat packet) from ``src`` to ``dst``, bypassing ``fault``."""
        heapq.heappush(self._queue, (self.now + self.latency, next(self._seq), data, src, dst))

    def batch(self, datagrams: list[tuple[bytes, tuple]], dst: tuple = SERVER) -> None:
        """Hand the node at ``dst`` ``datagrams`` (bytes, source) now, as one read of its socket:
        each received with this ``now``, then its effects drained once."""
        logic = self.nodes[dst]
        for data, src in datagrams:
            self._isolated(logic, logic.receive, data, src, self.now)
        self.collect(dst)

    def deliver(self, data: bytes, src: tuple, dst: tuple = SERVER) -> None:
        """One datagram, a batch of its own."""
        self.batch([(data, src)], dst)

    def call_at(self, when: float, callback: Callable[[float], None]) -> None:
        """Call ``callback(now)`` once the clock reaches ``when`` (the endpoint's ``call_at``)."""
        heapq.heappush(self._alarms, (when, next(self._seq), callback))

    def sends(self, type_name: str | None = None, src=None, dst=None) -> list[tuple[float, object]]:
        """(time, packet) of the datagrams offered so far, filtered by type name and endpoints."""
        return [
            (s.time, s.pkt)
            for s in self.sent
            if (type_name is None or kind(s.pkt) == type_name) and src in (None, s.src) and dst in (None, s.dst)
        ]

    def take_lines(self, name: str = "server") -> list[str]:
        """The lines ``name`` printed since the last take."""
        return self.lines.pop(name, [])

    def converged(self) -> bool:
        """Does every live client the server counts as online hold the server's client table?"""
        truth = {c.name: (c.addr, c.online) for c in self.server.clients.values()}
        return all(
            {name: (peer.addr, peer.online) for name, peer in node.table.items()} == truth
            for node in self.nodes.values()
            if node is not self.server and node.registered and truth.get(node.name, (None, False))[1]
        )

    def collect(self, addr: tuple = SERVER) -> None:
        """Drain the node at ``addr`` now and carry out its effects (a test that calls into a
        logic by hand does this after it)."""
        logic = self.nodes.get(addr)
        if logic is None:
            return
        name = logic._sim_name
        for effect in self._drains[addr](self.now):
            if isinstance(effect, Send):
                self._offer(effect.data, addr, effect.addr)
            elif isinstance(effect, Exit):
                self.exits[name] = effect.status
                self.nodes.pop(addr, None)
            else:
                self.events[name].append(effect)
                self.lines[name].extend(shown(effect))

    def name_of(self, addr) -> str:
        """The name of the (last) node at ``addr``, live or gone."""
        return self._names.get(addr) or f"{addr[0]}:{addr[1]}"

    def _offer(self, data: bytes, src, dst) -> None:
        pkt = parse(data)  # the logic only ever sends well-formed packets
        self.sent.append(Sent(self.now, src, dst, pkt, data))
        if self.plan is not None:
            decision = self.plan.decide(data, kind(pkt), self.name_of(src), self.name_of(dst), now=self.now)
            if decision.hold:
                self.holds.hold((src, dst), (self._push(self.now + self.holds.max_hold, data, src, dst), data))
                return
            copies = decision.copies
        else:
            copies = [(extra, data) for extra in (self.fault(pkt, src, dst, self) if self.fault else [0.0])]
        for extra, copy in copies:
            self._push(self.now + self.latency + extra, copy, src, dst)
        for seq, held in self.holds.release((src, dst)) if copies else ():
            self._released.add(seq)  # its entry at max_hold is skipped: it goes just after this one
            self._push(self.now + self.latency * 1.5, held, src, dst)

    def _push(self, when: float, data: bytes, src, dst) -> int:
        if self.tick:
            when = math.ceil(when / self.tick) * self.tick
        seq = next(self._seq)
        heapq.heappush(self._queue, (when, seq, data, src, dst))
        return seq

    def _next_event(self) -> float | None:
        times = [t for t in (logic.get_timer() for logic in self.nodes.values()) if t is not None]
        times += [heap[0][0] for heap in (self._queue, self._alarms) if heap]
        return min(times) if times else None

    def _arrivals(self) -> dict[tuple, list[tuple[bytes, tuple]]]:
        """The datagrams due by now, by destination, in the order they arrive."""
        arrived: dict[tuple, list[tuple[bytes, tuple]]] = {}
        while self._queue and self._queue[0][0] <= self.now:
            _, seq, data, src, dst = heapq.heappop(self._queue)
            if seq in self._released:
                self._released.discard(seq)  # sent on early already
                continue
            self.holds.expire((src, dst), (seq, data))  # if it was held, max_hold is up
            arrived.setdefault(dst, []).append((data, src))
        return arrived

    def run(self, seconds: float = 10.0) -> None:
        """Advance the clock by ``seconds``; see ``run_until``."""
        self.run_until(self.now + seconds)

    def run_until(self, end: float) -> None:
        """Advance the clock to ``end``, delivering datagrams in batches and firing timers and
        alarms when due; at ``end`` every node sees the time once more (expiring state goes)."""
        while (t := self._next_event()) is not None and t <= end:
            self.now = max(self.now, t)
            for dst, datagrams in self._arrivals().items():
                for start in range(0, len(datagrams), BATCH):  # the shell reads at most BATCH at a time
                    if dst in self.nodes:
                        self.batch(datagrams[start:start + BATCH], dst)
            while self._alarms and self._alarms[0][0] <= self.now:
                heapq.heappop(self._alarms)[2](self.now)
            for logic in list(self.nodes.values()):
                timer = logic.get_timer()
                if timer is not None and timer <= self.now:
                    self._call(logic, logic.handle_timer, self.now)
        self.now = max(self.now, end)
        for logic in list(self.nodes.values()):
            self._call(logic, logic.handle_timer, self.now)  # lets expiring state (remembered replies) go
        self.check_errors()
