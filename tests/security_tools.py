"""Helpers for the security tests (tests/security/): sockets on 127.0.0.1
that play an attacker, helper processes (sniff.py, replay.py) stopped by pid, and
the closing ``>>> Dropped datagrams: ...`` line of a node."""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import time
from collections import Counter
from pathlib import Path

import pytest

from proto import MSG_TYPES, STATUSES, Ack, ChatHeader, ProtocolError
from proto.fastpath import Fields, parse
from tests.procs import HOST, ROOT, WAIT, Piped, Proc

TOOLS = Path(ROOT) / "tools"
DROPPED = re.compile(r"^>>> Dropped datagrams: (.*)$", re.MULTILINE)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a raw or packet socket)")


# -- the closing line ---------------------------------------------------------------------


def drops(text: str) -> Counter:
    """The counts of a node's closing ``Dropped datagrams`` line (empty if it printed none)."""
    found = DROPPED.findall(text)
    counts: Counter = Counter()
    if found:
        for kind, number in re.findall(r"([^,]+?) (\d+)(?:, |$)", found[-1].strip()):
            counts[kind] = int(number)
    return counts


def finish(proc: Proc, sig: int = signal.SIGTERM) -> Counter:
    """Stop ``proc`` by pid (a client deregisters on SIGTERM) and return its closing counts."""
    if proc.alive():
        proc.signal(sig)
    proc.wait_exit()
    return drops(proc.text)


def rss_kib(pid: int) -> int:
    """Resident memory of a process (VmRSS of /proc/PID/status), in KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE).group(1))


def drain(*procs: Proc) -> None:
    """Read what each process printed meanwhile: a node blocks once its terminal's buffer is
    full, so one a test does not wait on must still be read while others are driven."""
    for proc in procs:
        while proc._read(0):
            pass


class ReceiveQueues:
    """The kernel's view of a UDP socket on 127.0.0.1 (sock_diag over netlink: one cheap query,
    however many sockets the machine has): bytes waiting in its receive queue, and datagrams
    dropped because that queue was full."""

    SOCK_DIAG_BY_FAMILY = 20
    SKMEMINFO = 7  # the attribute with the socket's memory counters
    DROPS = 8  # index of the drop counter among them

    def __init__(self):
        self.netlink = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 4)  # NETLINK_SOCK_DIAG

    def close(self) -> None:
        self.netlink.close()

    def __call__(self, port: int) -> tuple[int, int]:
        """(bytes queued, datagrams dropped) of the socket bound to 127.0.0.1:``port``;
        LookupError if there is none (its process has gone)."""
        # The socket is looked up as the receiver of a datagram from 127.0.0.1 (any port: 9) to it.
        here = socket.inet_aton(HOST) + bytes(12)
        ident = struct.pack("!HH", 9, port) + here + here + struct.pack("=III", 0, 0xFFFFFFFF, 0xFFFFFFFF)
        request = struct.pack("=BBBBI", socket.AF_INET, socket.IPPROTO_UDP, 1 << (self.SKMEMINFO - 1), 0,
                              0xFFFFFFFF) + ident
        self.netlink.send(struct.pack("=IHHII", 16 + len(request), self.SOCK_DIAG_BY_FAMILY, 1, 0, 0) + request)
        reply = self.netlink.recv(65536)
        if struct.unpack_from("=H", reply, 4)[0] == 2:  # NLMSG_ERROR: no such socket
            raise LookupError(f"no UDP socket on {HOST}:{port}")
        body = reply[16:]
        queued = struct.unpack_from("=I", body, 56)[0]  # inet_diag_msg.idiag_rqueue
        offset, dropped = 72, 0
        while offset + 4 <= len(body):
            size, kind = struct.unpack_from("=HH", body, offset)
            if size < 4:
                break
            if kind == self.SKMEMINFO:
                dropped = struct.unpack_from("=I", body, offset + 4 + 4 * self.DROPS)[0]
            offset += (size + 3) & ~3
        return queued, dropped


# -- an attacker's sockets ------------------------------------------------------------------


class Peer:
    """A plain UDP socket on 127.0.0.1 speaking the chat protocol by hand."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.addr = self.sock.getsockname()
        self.next_id = 1000
        self.token = 0
        self.session = 0
        self.name = ""

    def close(self) -> None:
        self.sock.close()

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def send(self, data: bytes | ChatHeader, to: tuple[str, int]) -> None:
        self.sock.sendto(bytes(data), to)

    def receive(self, timeout: float = WAIT) -> tuple[Fields, tuple[str, int]] | None:
        """The next chat datagram that arrives within ``timeout``, decoded; None if none."""
        deadline = time.monotonic() + timeout
        while True:
            self.sock.settimeout(max(0.0, deadline - time.monotonic()))  # 0: do not wait
            try:
                data, addr = self.sock.recvfrom(65536)
            except (socket.timeout, BlockingIOError):
                return None
            except ConnectionRefusedError:  # an ICMP error for something sent earlier
                continue
            try:
                return parse(data), addr[:2]
            except ProtocolError:
                continue

    def pending(self) -> list[Fields]:
        """Everything already queued on the socket, without waiting."""
        out = []
        while (got := self.receive(0)) is not None:
            out.append(got[0])
        return out

    def request(self, pkt: ChatHeader, to: tuple[str, int], seen: list | None = None) -> Fields:
        """Send ``pkt``; return the ack or reg_ack naming its id.  Whatever else arrives
        first goes to ``seen`` (a server-originated table, say, left unanswered)."""
        self.send(pkt, to)
        deadline = time.monotonic() + WAIT
        while True:
            got = self.receive(max(0.0, deadline - time.monotonic()))
            assert got is not None, f"no answer to {pkt.summary()}"
            msg, _ = got
            if MSG_TYPES[msg.type] in ("ack", "reg_ack") and msg.payload.ack_id == pkt.msg_id:
                return msg
            if seen is not None:
                seen.append(msg)

    def header(self, type_name: str, **fields) -> ChatHeader:
        """A request in this peer's name, with its token and a fresh, growing message id."""
        values = {"msg_id": self.new_id(), "port": self.addr[1], "sender": self.name, "token": self.token}
        values.update(fields)
        return ChatHeader(type=type_name, **values)

    def register(self, name: str, server: tuple[str, int]) -> Fields:
        """reg, then confirm with the new token (the session starts then); returns the reg_ack."""
        self.name = name
        answer = self.request(self.header("reg", token=0), server)
        assert STATUSES[answer.payload.status] == "ok", answer
        self.token, self.session = answer.payload.token, answer.payload.session
        confirmed = self.request(self.header("confirm"), server)
        assert STATUSES[confirmed.payload.status] == "ok", confirmed
        return answer

    def session_of(self, name: str) -> int:
        """The session number of online ``name``, from the server's table updates to this peer."""
        return session_from_tables(self.sock, name)


def session_from_tables(sock: socket.socket, name: str, deadline: float | None = None) -> int:
    """The session number of online ``name``, read from the table updates the server sends the
    registered socket ``sock`` (each acknowledged, echoing its token, as a client does): a private
    message must name its receiver's session.  Updates retransmitted until acknowledged bring
    the rows again, so one read earlier and dropped is not missed."""
    deadline = deadline or time.monotonic() + WAIT
    timeout = sock.gettimeout()
    try:
        while True:
            sock.settimeout(max(0.0, deadline - time.monotonic()))
            try:
                data, addr = sock.recvfrom(65536)
            except (socket.timeout, BlockingIOError):
                raise AssertionError(f"no table update listing {name!r} online") from None
            try:
                msg = parse(data)
            except ProtocolError:
                continue
            if MSG_TYPES[msg.type] != "table":
                continue
            ack = ChatHeader(type="ack", msg_id=msg.msg_id ^ 0x5A5A, token=msg.token, sender="") / Ack(ack_id=msg.msg_id)
            sock.sendto(bytes(ack), addr)
            for row in msg.payload.entries:
                if row.client == name and row.online:
                    return row.session
    finally:
        sock.settimeout(timeout)


def status(answer: Fields) -> str:
    return STATUSES[answer.payload.status]


def spoof(data: bytes, src: tuple[str, int], dst: tuple[str, int]) -> None:
    """Send ``data`` with a forged source address (a raw socket: root only)."""
    spoof_all([(data, src)], dst)


def spoof_all(datagrams: list[tuple[bytes, tuple[str, int]]], dst: tuple[str, int]) -> None:
    """Send each ``(data, forged source)`` to ``dst``, in order, through one raw socket (root only)."""
    from scapy.layers.inet import IP, UDP

    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as raw:
        for data, src in datagrams:
            raw.sendto(bytes(IP(src=src[0], dst=dst[0]) / UDP(sport=src[1], dport=dst[1]) / data), (dst[0], 0))


# -- helper processes -------------------------------------------------------------------------


class Tool(Piped):
    """A tools/*.py process with pipes; its output lines are collected as they come."""

    def __init__(self, script: str, *args: str):
        super().__init__([str(TOOLS / script), *args], script, COLUMNS="200")
