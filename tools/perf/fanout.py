"""fanout: one send_group to 10/100/1,000 acking members; group messages/s

A sender and M members, all ClientLogic clients of the swarm, in one group of the
real server.  Per message: the time until the last member's client logic has it, and
the time until the server holds every ack: the sender asks ``list_members`` as soon
as the last ack has left, and the server, reading its socket in order, answers only
after the acks (an upper bound by one one-way trip).  The messages follow each other
closely, so the members' acks wait the ack delay (``Endpoint.acknowledge``).  Then messages/s sustained: the
sender sends its next message as soon as the server has acknowledged the previous
one (at once, from the client's output line); the members, busy now, acknowledge
several messages per ack datagram.  Baseline: the bare asyncio relay of tools/perf/echo.py
with the same number of members, answering every copy with a datagram of its own."""

from __future__ import annotations

import select
import socket
import time
from typing import Callable

from proto import TYPE_CODES, ProtocolError
from proto.fastpath import parse

from node.events import GroupMessage, GroupMessageSent, ListedMembers
from node.session import State

from .figures import Busy, Figure, check, median
from .processes import HOST, ChatServer, EchoServer
from .swarm import Swarm

TARGET_RATE_10 = ">= 10000"  # group messages/s to 10 acking members
TARGET_LAST_MS = {10: "< 0.5", 50: "< 1"}  # last member reached, median
TARGET_ACKED_1000_MS = "< 500"


class Group:
    """A sender and ``size`` members in group ``g``, registered and with settled tables."""

    def __init__(self, swarm: Swarm, size: int):
        self.swarm = swarm
        self.sender = swarm.add("sender")
        self.members = [swarm.add(f"m{i}") for i in range(size)]
        everyone = [self.sender, *self.members]
        if not swarm.run_until(lambda: all(n.logic.registered for n in everyone), 60):
            raise RuntimeError("fanout: clients did not register")
        swarm.ask(self.sender, self.sender.logic.create_group, "g")
        swarm.run_until(lambda: self.sender.logic.state is State.IDLE, 10)
        for node in everyone:
            swarm.ask(node, node.logic.join_group, "g")
        if not swarm.run_until(lambda: all(n.logic.group == "g" for n in everyone), 60):
            raise RuntimeError("fanout: clients did not join")
        # table updates must be over, or they would be measured too
        swarm.run_until(lambda: all(len(n.logic.table) == size + 1 for n in everyone), 120)
        swarm.run_for(0.5)
        self.received: dict[int, float] = {}  # member fd -> when its logic showed the message
        self.answers: list[float] = []  # when the sender's requests were answered
        swarm.on_event = self._shown

    def _shown(self, node, event, now: float) -> None:
        if node is self.sender:
            if isinstance(event, (GroupMessageSent, ListedMembers)):
                self.answers.append(now)
        elif isinstance(event, GroupMessage):
            self.received[node.sock.fileno()] = now

    def one_message(self, text: str) -> tuple[float, float]:
        """(last member reached, server holds every ack), in seconds after sending."""
        self.received.clear()
        self.answers.clear()
        start = time.monotonic()
        self.swarm.ask(self.sender, self.sender.logic.send_group, text)
        self.swarm.run_until(lambda: len(self.received) == len(self.members) and self.answers, 10)
        last = max(self.received.values())
        # A member's ack may wait a few milliseconds for later messages to go with it.
        self.swarm.run_until(lambda: not any(m.logic.net.acks_waiting for m in self.members), 10)
        self.swarm.ask(self.sender, self.sender.logic.list_members)
        self.swarm.run_until(lambda: len(self.answers) >= 2, 10)
        self.swarm.run_until(lambda: self.sender.logic.state is State.IDLE, 10)
        return last - start, self.answers[-1] - start

    def sustained(self, seconds: float, lean: bool = False) -> float:
        """Messages/s delivered to every member, the sender one message ahead of the server's ack.

        ``lean``: the members answer copies with ``ack_copies`` instead of their whole client
        logic, so that one benchmark process can keep up with the server (see ``ack_copies``)."""
        delivered, sent, acked = 0, 0, 0

        def shown(node, event, now):
            nonlocal delivered, acked
            if node is self.sender:
                if isinstance(event, GroupMessageSent):
                    acked += 1
                    next_message()  # at once, not after the other sockets ready now
            elif isinstance(event, GroupMessage):
                delivered += 1

        def copied():
            nonlocal delivered
            delivered += 1

        def next_message():
            nonlocal sent
            if acked == sent and time.monotonic() < end:
                sent += 1
                self.swarm.ask(self.sender, self.sender.logic.send_group, f"s{sent}")

        self.swarm.on_event = shown
        if lean:
            for member in self.members:
                member.on_readable = ack_copies(self.swarm, member, copied)
        start = time.monotonic()
        end = start + seconds
        next_message()
        self.swarm.run_until(lambda: time.monotonic() >= end, seconds + 1, tick=next_message)
        self.swarm.run_until(lambda: delivered >= sent * len(self.members), 5)
        elapsed = time.monotonic() - start
        self.swarm.on_event = self._shown
        for member in self.members:
            member.on_readable = None
        return delivered / len(self.members) / elapsed


def ack_copies(swarm: Swarm, member, copied: Callable[[], None]) -> Callable[[float], None]:
    """A reader for a member's socket that handles group messages as its client logic does as
    far as the server can tell: recognised by the member's endpoint as new or retransmitted,
    acknowledged by it (several per ack datagram when they come close together), each new one
    counted once; but not shown, which in ten full clients in one process costs more than the
    server's whole work.  Anything else still goes to the client logic."""
    logic, server = member.logic, member.logic.server
    net, recvfrom = logic.net, member.sock.recvfrom
    grp_msg = TYPE_CODES["grp_msg"]

    def readable(now: float) -> None:
        # One datagram: epoll reports the socket again while more wait, and a read that finds
        # nothing would cost as much as the message.
        try:
            data, addr = recvfrom(65536)
        except BlockingIOError:
            return
        try:
            msg = parse(data)
        except ProtocolError:
            msg = None  # the client logic counts it
        if msg is None or msg.type != grp_msg or addr != server:
            logic.receive(data, addr, now)
        elif not net.answer_again(msg, addr, now):
            net.acknowledge(msg, addr, now)
            copied()
            if not net.effects and net.acks_waiting > 1:
                return  # it joined a wait already timed: nothing for the shell to do
        swarm.pump(member, now)

    return readable


class RelayGroup:
    """The baseline: raw sockets around the bare relay, members answering every copy."""

    def __init__(self, relay: tuple[str, int], size: int):
        self.relay = relay
        self.poller = select.epoll()
        self.sender = self._socket()
        self.members = [self._socket() for _ in range(size)]
        for s in [self.sender, *self.members]:
            s.sendto(b"J", relay)
            s.setblocking(True)
            s.recv(16)
            s.setblocking(False)
            self.poller.register(s.fileno(), select.EPOLLIN)
        self.member_fds = {s.fileno(): s for s in self.members}

    def _socket(self) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((HOST, 0))
        return s

    def _pump(self, on_copy, on_answer, timeout: float) -> None:
        for fd, _ in self.poller.poll(timeout):
            s = self.member_fds.get(fd) or self.sender
            while True:
                try:
                    s.recv(65536)
                except BlockingIOError:
                    break
                if s is self.sender:
                    on_answer()
                else:
                    s.sendto(b"A", self.relay)
                    on_copy()

    def one_message(self) -> float:
        got = [0]
        start = time.monotonic()
        self.sender.sendto(b"M one", self.relay)
        last = start
        while got[0] < len(self.members) and time.monotonic() - start < 10:

            def copy():
                nonlocal last
                got[0] += 1
                last = time.monotonic()

            self._pump(copy, lambda: None, 0.01)
        return last - start

    def sustained(self, seconds: float) -> float:
        delivered = [0]
        start = time.monotonic()
        end = start + seconds
        sent = [start]

        def send():
            sent[0] = time.monotonic()
            if sent[0] < end:
                self.sender.sendto(b"M msg", self.relay)

        def copy():
            delivered[0] += 1

        send()
        while time.monotonic() < end + 0.5:
            self._pump(copy, send, 0.01)
            if time.monotonic() - sent[0] > 0.2:
                send()  # no retransmission in the bare relay: a lost message would stop the loop
        return delivered[0] / len(self.members) / (time.monotonic() - start - 0.5)

    def close(self) -> None:
        self.poller.close()
        for s in [self.sender, *self.members]:
            s.close()


def busy_note(server_cpu: float, members_cpu: float) -> str:
    return f"server busy {server_cpu:.0%} of a core, simulated clients {members_cpu:.0%}"


def add_arguments(parser) -> None:
    parser.add_argument("--members", type=int, nargs="+", default=[10, 50, 100, 1000], help="group sizes (default 10 50 100 1000)")
    parser.add_argument("--messages", type=int, default=30, help="timed single messages per group size (default 30; 5 for 1,000 members)")
    parser.add_argument("--duration", type=float, default=2.0, metavar="S", help="seconds of sustained sending per group size (default 2)")


def run(args, progress) -> list[Figure]:
    figures = []
    for step, size in enumerate(args.members):
        progress(f"fanout: {size} members", step / len(args.members))
        count = args.messages if size < 1000 else min(args.messages, 5)
        with ChatServer(max_clients=size + 10) as server, Swarm(server.address) as swarm:
            group = Group(swarm, size)
            timings = [group.one_message(f"hello{i}") for i in range(count)]
            busy = Busy(server)
            full_rate = group.sustained(args.duration)
            full_cpu = busy.share()
            busy = Busy(server)
            rate = group.sustained(args.duration, lean=True)
            server_cpu, bench_cpu = busy.share()
        bare_last, bare_rate = relayed(size, count, args.duration, plain=False)
        _, floor_rate = relayed(size, 0, args.duration, plain=True)
        last = median(t[0] for t in timings) * 1000
        acked = median(t[1] for t in timings) * 1000
        target = TARGET_LAST_MS.get(size, "")
        figures.append(Figure("fanout", f"{size} members: last member reached", last, "ms", bare_last * 1000, "relay",
                              target, check(last, target)))
        target = TARGET_ACKED_1000_MS if size == 1000 else ""
        figures.append(Figure("fanout", f"{size} members: server holds every ack (<=)", acked, "ms", target=target,
                              met=check(acked, target)))
        target = TARGET_RATE_10 if size == 10 else ""
        figures.append(Figure("fanout", f"{size} members: sustained", rate, "msgs/s", bare_rate, "relay", target,
                              check(rate, target), note=f"members ack only; {busy_note(server_cpu, bench_cpu)}",
                              also={"server_cpu_share": server_cpu, "members_cpu_share": bench_cpu}))
        figures.append(Figure("fanout", f"{size} members: sustained, members run whole clients", full_rate, "msgs/s",
                              bare_rate, "relay", note=busy_note(*full_cpu),
                              also={"server_cpu_share": full_cpu[0], "members_cpu_share": full_cpu[1]}))
        figures.append(Figure("fanout", f"{size} members: sustained, bare relay without asyncio", floor_rate, "msgs/s",
                              note=f"no protocol: about the most Python gets through this loopback; the server reaches {rate / floor_rate:.0%}"))
    progress("fanout", 1.0)
    return figures


def relayed(size: int, count: int, duration: float, plain: bool) -> tuple[float | None, float]:
    """The bare relay's (median last member reached over ``count`` messages, sustained rate)."""
    with EchoServer(relay=True, plain=plain) as relay:
        bare = RelayGroup(relay.address, size)
        try:
            last = median(bare.one_message() for _ in range(count)) if count else None
            return last, bare.sustained(duration)
        finally:
            bare.close()
