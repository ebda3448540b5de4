"""throughput: requests/s answered, closed and open loop, vs a bare echo server

Closed loop: 1, 8 and 64 simulated clients, each sending its next request as soon
as the previous one is answered.  Open loop: requests offered at fixed rates, and
the fraction answered.  The same load goes to the real server (``list_groups``
requests of registered ClientLogic clients, built by their own endpoints) and to
a bare asyncio echo server; answers are checked after the timed window, so the
load generator does little more than send and receive while the clock runs."""

from __future__ import annotations

import select
import time

from proto import MSG_TYPES, STATUS_CODES
from proto.fastpath import parse

from .figures import Busy, Figure, check, median
from .processes import ChatServer, EchoServer
from .swarm import Swarm

TARGET_RATE_8 = ">= 20000"  # requests/s with 8 clients
TARGET_ECHO_SHARE = 0.5  # ... and at least half the echo server's rate


class Load:
    """Registered clients and, for each, a supply of fresh requests (built before the clock starts)."""

    def __init__(self, swarm: Swarm, clients: int):
        self.nodes = [swarm.add(f"tp{i}") for i in range(clients)]
        if not swarm.run_until(lambda: all(n.logic.registered for n in self.nodes), 30):
            raise RuntimeError("throughput: clients did not register")
        # let every table update be acked, so that only answers arrive from now on
        swarm.run_until(lambda: all(len(n.logic.table) == clients for n in self.nodes), 30)
        swarm.run_for(0.2)
        self.sent_ids: set[int] = set()
        self.sent_data: set[bytes] = set()

    def requests(self, node, count: int) -> list[bytes]:
        """``count`` requests in the order they must be sent (ids grow: older ones count as replays)."""
        out = []
        for _ in range(count):
            request = node.logic.net.build("list_groups")
            self.sent_ids.add(request.msg_id)
            self.sent_data.add(request.data)
            out.append(request.data)
        return out


def answered(datagrams: list[bytes], sent: set, echo: bool) -> int:
    """How many of ``datagrams`` answer one of the requests (echo: are one of them)."""
    if echo:
        return sum(1 for d in datagrams if d in sent)
    ok, ack = STATUS_CODES["ok"], next(c for c, n in MSG_TYPES.items() if n == "ack")
    count = 0
    for d in datagrams:
        msg = parse(d)
        count += msg.type == ack and msg.payload.ack_id in sent and msg.payload.status == ok
    return count


def closed_loop(socks, supplies, refill, address, warmup: float, duration: float) -> list[bytes]:
    """Each socket keeps one request outstanding; the answers that arrived during the timed window.

    ``refill(i)`` builds more requests for socket ``i`` should its supply run dry."""
    supplies = [supply[::-1] for supply in supplies]  # popped from the end, sent in order
    poller = select.epoll()
    by_fd = {s.fileno(): (i, s) for i, s in enumerate(socks)}
    for i, s in enumerate(socks):
        poller.register(s.fileno(), select.EPOLLIN)
        s.sendto(supplies[i].pop(), address)
    start = time.monotonic()
    window, end = start + warmup, start + warmup + duration
    kept: list[bytes] = []
    try:
        while (now := time.monotonic()) < end:
            counting = now >= window
            for fd, _ in poller.poll(0.05):
                i, s = by_fd[fd]
                supply = supplies[i]
                while True:
                    try:
                        data = s.recv(65536)
                    except BlockingIOError:
                        break
                    if counting:
                        kept.append(data)
                    if not supply:
                        supply.extend(refill(i)[::-1])
                    s.sendto(supply.pop(), address)
    finally:
        poller.close()
    return kept


def open_loop(socks, supply: list[bytes], address, rate: float, duration: float, grace: float) -> tuple[int, list[bytes]]:
    """Send ``rate`` requests/s for ``duration`` s round-robin over ``socks``; (sent, answers)."""
    poller = select.epoll()
    for s in socks:
        poller.register(s.fileno(), select.EPOLLIN)
    by_fd = {s.fileno(): s for s in socks}
    kept: list[bytes] = []
    sent = 0
    total = min(len(supply), int(rate * duration))
    start = time.monotonic()
    try:
        while (now := time.monotonic()) < start + duration + grace:
            due = min(total, int((now - start) * rate) + 1)
            while sent < due:
                try:
                    socks[sent % len(socks)].sendto(supply[sent], address)
                except BlockingIOError:
                    pass  # counted as sent and not answered
                sent += 1
            for fd, _ in poller.poll(0.0005 if sent < total else 0.05):
                s = by_fd[fd]
                while True:
                    try:
                        kept.append(s.recv(65536))
                    except BlockingIOError:
                        break
    finally:
        poller.close()
    return sent, kept


def add_arguments(parser) -> None:
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64], help="closed-loop client counts (default 1 8 64)")
    parser.add_argument("--duration", type=float, default=2.0, metavar="S", help="seconds per measurement (default 2)")
    parser.add_argument("--rates", type=float, nargs="+", default=[5000, 10000, 20000, 40000, 80000], metavar="R",
                        help="open-loop offered requests/s (default 5000 10000 20000 40000 80000)")
    parser.add_argument("--open-clients", type=int, default=8, help="sockets the open-loop load is spread over (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating chat/echo rounds per closed-loop figure; medians (default 3)")


def run(args, progress) -> list[Figure]:
    warmup, grace = min(0.3, args.duration / 4), 0.5
    biggest = max(args.clients + [args.open_clients])
    steps = len(args.clients) * args.rounds + len(args.rates)
    step = 0
    rates: dict[tuple, list[float]] = {}
    cpu: dict[tuple, list[tuple[float, float]]] = {}  # (server's share of a core, load generator's)
    fractions: dict[tuple, float] = {}
    with ChatServer() as server, EchoServer() as echo, Swarm(server.address) as swarm:
        load = Load(swarm, biggest)
        # supplies for a fast server; a client that runs dry builds more while the clock runs
        per_client = lambda n: int(30_000 * (args.duration + warmup) / n) + 100  # noqa: E731
        for n in args.clients:
            socks = [node.sock for node in load.nodes[:n]]
            for _ in range(args.rounds):
                for target, proc, echoing in (("chat", server, False), ("echo", echo, True)):
                    progress(f"throughput: {n} clients, {target}", step / steps)
                    supplies = [load.requests(node, per_client(n)) for node in load.nodes[:n]]
                    refill = lambda i: load.requests(load.nodes[i], 1000)  # noqa: E731
                    busy = Busy(proc)
                    kept = closed_loop(socks, supplies, refill, proc.address, warmup, args.duration)
                    cpu.setdefault((n, target), []).append(busy.share())
                    sent = load.sent_data if echoing else load.sent_ids
                    rates.setdefault((n, target), []).append(answered(kept, sent, echoing) / args.duration)
                    swarm.run_for(0.6)  # late answers drain; nothing is left in flight
                step += 1
        socks = [node.sock for node in load.nodes[: args.open_clients]]
        for rate in args.rates:
            for target, address, echoing in (("chat", server.address, False), ("echo", echo.address, True)):
                progress(f"throughput: open loop {rate:,.0f}/s, {target}", step / steps)
                per = int(rate * args.duration) // args.open_clients + 1
                lists = [load.requests(node, per) for node in load.nodes[: args.open_clients]]
                # round-robin: request k goes out from client k % n, each client's in the order built
                supply = [lists[i][j] for j in range(per) for i in range(args.open_clients)]
                sent_set = load.sent_data if echoing else load.sent_ids
                sent, kept = open_loop(socks, supply, address, rate, args.duration, grace)
                fractions[(rate, target)] = answered(kept, sent_set, echoing) / max(sent, 1)
                swarm.run_for(0.3)
            step += 1
    figures = []
    for n in args.clients:
        chat, echo_rate = median(rates[(n, "chat")]), median(rates[(n, "echo")])
        target = TARGET_RATE_8 if n == 8 else ""
        met = None
        if n == 8:
            met = bool(check(chat, TARGET_RATE_8)) and chat / echo_rate >= TARGET_ECHO_SHARE
            target = f"{TARGET_RATE_8} and >= {TARGET_ECHO_SHARE:.0%} of echo"
        server_cpu = median(c[0] for c in cpu[(n, "chat")])
        bench_cpu = median(c[1] for c in cpu[(n, "chat")])
        figures.append(Figure("throughput", f"closed loop, {n} client{'s' * (n > 1)}", chat, "req/s", echo_rate, "echo",
                              target, met, note=f"server busy {server_cpu:.0%} of a core, load generator {bench_cpu:.0%}",
                              also={"chat_runs": rates[(n, "chat")], "echo_runs": rates[(n, "echo")],
                                    "server_cpu_share": server_cpu, "generator_cpu_share": bench_cpu,
                                    "echo_cpu_share": median(c[0] for c in cpu[(n, "echo")])}))
    for rate in args.rates:
        figures.append(Figure("throughput", f"open loop {rate:,.0f} req/s offered: answered", fractions[(rate, "chat")] * 100,
                              "%", fractions[(rate, "echo")] * 100, "echo"))
    progress("throughput", 1.0)
    return figures
