"""tools/sniff.py's capture options as a process: capture filters (``-f``, compiled by libpcap and
attached in the kernel, or run on the frames of a file with ``-r``), IPv6 loopback, and the live
ladder (``--ladder`` while capturing).  Live captures need root, as in test_sniff.py."""

from __future__ import annotations

import contextlib
import ctypes.util
import re
import json
import signal
import socket

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from proto import Ack, ChatHeader, RegAck
from tests.captures import SNIFF, Processes, needs_root, run_tool

pytestmark = pytest.mark.e2e  # sniff.py as a process

# -f needs libpcap to compile a filter (tshark depends on it, and .ci/run installs tshark).
needs_libpcap = pytest.mark.skipif(ctypes.util.find_library("pcap") is None,
                                   reason="libpcap is not installed (apt-get install libpcap0.8; .ci/run installs tshark, which needs it)")

V4, V6 = "127.0.0.1", "::1"


def reg(msg_id: int, name: str, port: int) -> bytes:
    return bytes(ChatHeader(type="reg", msg_id=msg_id, sender=name, port=port))


def reg_ack(msg_id: int, answers: int, port: int) -> bytes:
    return bytes(ChatHeader(type="reg_ack", msg_id=msg_id, sender="server", port=port) / RegAck(ack_id=answers))


def bound(stack: contextlib.ExitStack, host: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = stack.enter_context(socket.socket(family, socket.SOCK_DGRAM))
    try:
        sock.bind((host, 0))
    except OSError as exc:
        pytest.skip(f"cannot bind {host}: {exc}")
    return sock


def port_of(sock: socket.socket) -> int:
    return sock.getsockname()[1]


def start_sniffer(procs: Processes, *args: str):
    """sniff.py on lo with ``args``, once it says it captures (its socket and filter are in place)."""
    proc = procs.start([SNIFF, *args], "sniff")
    proc.wait_for(r"capturing on lo", stream="err")
    return proc


# -- -f: capture filters -----------------------------------------------------------------------------


@needs_root
@needs_libpcap
def test_a_capture_filter_by_host_and_port_keeps_only_that_traffic_live(tmp_path):
    """Two pairs chat on lo; ``-f "host 127.0.0.1 and port P"`` shows only the pair using P, and the
    pcap written with -w holds only theirs."""
    pcap = tmp_path / "filtered.pcap"
    procs = Processes()
    with contextlib.ExitStack() as stack:
        stack.callback(procs.stop_all)
        server, ann, other_server, other = (bound(stack, V4) for _ in range(4))
        sniff = start_sniffer(procs, "-f", f"host 127.0.0.1 and port {port_of(server)}", "-w", str(pcap), "--json")
        other.sendto(reg(1, "Eve", port_of(other)), other_server.getsockname())
        ann.sendto(reg(2, "Ann", port_of(ann)), server.getsockname())
        other_server.sendto(reg_ack(3, 1, port_of(other_server)), other.getsockname())
        server.sendto(reg_ack(4, 2, port_of(server)), ann.getsockname())
        sniff.wait_for(r'"type": "reg_ack"')
        assert sniff.finish(signal.SIGINT) == 0, sniff.dump()
    records = [json.loads(text) for text in sniff.out if '"data"' in text]
    assert [(r["type"], r["id"]) for r in records] == [("reg", 2), ("reg_ack", 4)], sniff.dump()
    assert records[1]["answers"] == {"type": "reg", "id": 2, "retry": 0}
    again = [json.loads(text) for text in run_tool(SNIFF, "-r", str(pcap), "--json").stdout.splitlines()]
    assert [r["id"] for r in again if "data" in r] == [2, 4]


@needs_root
@needs_libpcap
def test_chat_datagrams_over_ipv6_loopback_are_captured_and_decoded(tmp_path):
    """Chat datagrams between sockets on ::1 (with IPv4 chat on lo at the same time): ``-f ip6``
    shows the IPv6 ones only, decoded and matched, addresses written [::1]:port."""
    procs = Processes()
    with contextlib.ExitStack() as stack:
        stack.callback(procs.stop_all)
        server, ann = bound(stack, V6), bound(stack, V6)
        server4, bob4 = bound(stack, V4), bound(stack, V4)
        ends = {"ann": f"[::1]:{port_of(ann)}", "server": f"[::1]:{port_of(server)}"}
        sniff = start_sniffer(procs, "-f", "ip6 and udp", "--json", "--port", str(port_of(server)),
                              "--port", str(port_of(server4)))
        bob4.sendto(reg(1, "Bob", port_of(bob4)), server4.getsockname())
        ann.sendto(reg(7, "Ann", port_of(ann)), server.getsockname()[:2])
        server.sendto(reg_ack(8, 7, port_of(server)), ann.getsockname()[:2])
        sniff.wait_for(r'"type": "reg_ack"')
        assert sniff.finish(signal.SIGINT) == 0, sniff.dump()
    records = [json.loads(text) for text in sniff.out if '"data"' in text]
    assert [(r["type"], r["from"], r["to"]) for r in records] == [("reg", "Ann", "server"), ("reg_ack", "server", "Ann")]
    assert (records[0]["src"], records[0]["dst"]) == (ends["ann"], ends["server"]), records[0]
    assert records[1]["answers"]["id"] == 7 and records[1]["payload"]["ack_id"] == 7


@needs_root
def test_the_port_filter_in_the_kernel_keeps_ipv6_datagrams_of_its_ports():
    """--port's own BPF program (no libpcap) lets IPv6 UDP datagrams of its ports through, once each."""
    from tools.bpf import attach_udp_ports

    with contextlib.ExitStack() as stack:
        watched, other, sender = bound(stack, V6), bound(stack, V6), bound(stack, V6)
        capture = stack.enter_context(socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003)))
        capture.bind(("lo", 0))
        attach_udp_ports(capture, [port_of(watched)])
        capture.settimeout(5)
        for payload, to in ((b"other-1", other), (b"to-watched", watched), (b"other-2", other), (b"end", watched)):
            sender.sendto(payload, to.getsockname()[:2])
        seen = []
        while not seen or seen[-1] != b"end":
            seen.append(capture.recv(65536)[62:])  # Ethernet 14 + IPv6 40 + UDP 8
        assert seen == [b"to-watched", b"end"], seen


def frames_file(path, frames) -> str:
    for n, frame in enumerate(frames):
        frame.time = 1_700_000_000 + n / 100
    wrpcap(str(path), frames)
    return str(path)


@needs_libpcap
def test_a_capture_filter_applies_to_a_capture_file_too(tmp_path):
    """-r with -f keeps what tcpdump -r with that filter would: here, by host, by port, by IP version."""
    pcap = frames_file(tmp_path / "mixed.pcap", [
        Ether() / IP(src="127.0.0.1", dst="127.0.0.2") / UDP(sport=5001, dport=6666) / Raw(reg(1, "Ann", 5001)),
        Ether() / IP(src="127.0.0.3", dst="127.0.0.2") / UDP(sport=5003, dport=6666) / Raw(reg(2, "Bob", 5003)),
        Ether() / IPv6(src="::1", dst="::1") / UDP(sport=5005, dport=6667) / Raw(reg(3, "Cy", 5005)),
        Ether() / IP(src="127.0.0.2", dst="127.0.0.1") / UDP(sport=6666, dport=5001) / Raw(reg_ack(4, 1, 6666)),
    ])

    def ids(expression: str) -> list[int]:
        out = run_tool(SNIFF, "-r", pcap, "-f", expression, "--json").stdout
        return [r["id"] for r in map(json.loads, out.splitlines()) if "data" in r]

    assert ids("host 127.0.0.1") == [1, 4]
    assert ids("src host 127.0.0.3 or ip6") == [2, 3]
    assert ids("udp port 6667") == [3]
    assert ids("not port 6666") == [3]


@needs_libpcap
@pytest.mark.parametrize("expression, reason", [
    ("host and port", "syntax error"),
    ("port 70000", "illegal port number 70000"),
    ("port nosuchservice", "unknown port"),
])
def test_a_bad_capture_filter_is_one_clear_line(tmp_path, expression, reason):
    pcap = frames_file(tmp_path / "one.pcap", [Ether() / IP() / UDP(sport=5001, dport=6666) / Raw(reg(1, "Ann", 5001))])
    for source in (["-r", pcap], ["-i", "lo"]):  # a bad filter is refused before any capture starts
        done = run_tool(SNIFF, *source, "-f", expression, check=False)
        assert done.returncode == 1 and done.stdout == "", done
        assert done.stderr.startswith(f"sniff.py: bad capture filter {expression!r}: ") and reason in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr


# -- --ladder while capturing ------------------------------------------------------------------------


@needs_root
def test_a_live_ladder_to_a_pipe_prints_each_arrow_while_the_capture_runs():
    """Ann, then Bob register with a real server; sniff.py --ladder writes into a pipe.  Each arrow is
    a row before the capture ends, a new node prints the names again, and nothing is an escape code."""
    from tests.procs import quiet_port

    ports = {"server": quiet_port(), "Ann": quiet_port(), "Bob": quiet_port()}
    procs = Processes()
    try:
        sniff = start_sniffer(procs, "--ladder", *(arg for port in ports.values() for arg in ("--port", str(port))))
        procs.server(ports["server"])
        procs.client("Ann", ports["server"], ports["Ann"])
        first = sniff.wait_for(r"│◀─* reg_ack ok [\d.]+ ms ─*│")
        assert sniff.popen.poll() is None  # drawn while capturing, not at the end
        assert re.match(r"^ +server +Ann$", sniff.out[0]) or re.match(r"^ +Ann +server$", sniff.out[0]), sniff.dump()
        procs.client("Bob", ports["server"], ports["Bob"])
        names = sniff.wait_for(r"^ +\S+ +\S+ +\S+$", after=first)  # the names again, with Bob's column
        assert set(sniff.out[names].split()) == {"Ann", "server", "Bob"}, sniff.dump()
        sniff.wait_for(r"│◀─* ack ok [\d.]+ ms ─*│$", after=names)  # Bob's ack of his table, in the third column
        assert sniff.popen.poll() is None
        assert sniff.finish(signal.SIGINT) == 0, sniff.dump()
    finally:
        procs.stop_all()
    out = "\n".join(sniff.out)
    assert "\x1b" not in out and "no answer" not in out.split("─▶ datagram")[0], out
    assert out.count("─▶ datagram") == 1, out  # the legend, once, after the rows; the rows are not drawn again
    assert out.count("reg_ack ok") == 2, out


COLOUR = re.compile(rb"\x1b\[(?:[0-9;]*;)?(?:3[0-7]|9[0-7]|38|4[0-7])(?:;[0-9;]*)?m")  # an SGR that sets a colour


def ladder_on_a_terminal(no_color: bool) -> tuple[bytes, bytes]:
    """sniff.py --ladder on a pseudo-terminal while a reg and its reg_ack pass: (what the screen got
    before the capture was stopped, what it got in all)."""
    import fcntl
    import os
    import pty
    import select
    import struct
    import subprocess
    import termios
    import time

    from tests.procs import PYTHON, ROOT

    env = dict(os.environ, TERM="xterm-256color", LC_ALL="C.UTF-8")
    env.pop("NO_COLOR", None)
    if no_color:
        env["NO_COLOR"] = "1"
    with contextlib.ExitStack() as stack:
        ann, server = bound(stack, V4), bound(stack, V4)
        master, slave = pty.openpty()
        stack.callback(os.close, master)
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
        proc = subprocess.Popen([PYTHON, SNIFF, "--ladder", "--port", str(port_of(server))], cwd=ROOT, env=env,
                                stdin=slave, stdout=slave, stderr=slave)
        os.close(slave)
        screen = bytearray()

        def read_until(pattern: bytes, timeout: float = 30) -> None:
            deadline = time.monotonic() + timeout
            while pattern not in screen:
                assert time.monotonic() < deadline, (pattern, bytes(screen))
                if select.select([master], [], [], 0.2)[0]:
                    try:
                        screen.extend(os.read(master, 65536))
                    except OSError:  # the terminal's other end closed: the process ended
                        raise AssertionError((pattern, bytes(screen))) from None

        try:
            read_until(b"capturing on lo")
            ann.sendto(reg(5, "Ann", port_of(ann)), server.getsockname())
            server.sendto(reg_ack(6, 5, port_of(server)), ann.getsockname())
            read_until(" reg_ack ok ".encode())
            assert proc.poll() is None
            before = bytes(screen)
            os.kill(proc.pid, signal.SIGINT)
            assert proc.wait(30) == 0
            with contextlib.suppress(OSError):
                while select.select([master], [], [], 0.5)[0]:
                    chunk = os.read(master, 65536)
                    if not chunk:
                        break
                    screen.extend(chunk)
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
    return before, bytes(screen)


@needs_root
@pytest.mark.parametrize("no_color", [False, True])
def test_a_live_ladder_on_a_terminal_is_drawn_while_capturing_in_colour_unless_no_color(no_color):
    before, everything = ladder_on_a_terminal(no_color)
    assert "◀".encode() in before or "▶".encode() in before, before
    assert b" reg " in before and b"no answer" not in before, before  # not yet: its answer may come
    assert everything.count("─▶ datagram".encode()) >= 2, everything  # redrawn, then the whole ladder at the end
    assert bool(COLOUR.search(everything)) is not no_color, everything


@needs_root
def test_a_live_ladder_to_a_pipe_shows_hostile_names_and_text_literally():
    """Names and text from the network that look like markup or carry escape sequences are drawn as
    escaped text in the streamed rows, never interpreted."""
    from proto import PriMsg

    name, text = "[bold]E\x1b]8;;http://x\x1b\\v", "[/]\x1b[2J\u202ehi"
    procs = Processes()
    with contextlib.ExitStack() as stack:
        stack.callback(procs.stop_all)
        eve, bob = bound(stack, V4), bound(stack, V4)
        sniff = start_sniffer(procs, "--ladder", "--port", str(port_of(bob)))
        message = ChatHeader(type="pri_msg", msg_id=3, sender=name, port=port_of(eve)) / PriMsg(text=text)
        eve.sendto(bytes(message), bob.getsockname())
        bob.sendto(bytes(ChatHeader(type="ack", msg_id=4, sender="Bob", port=port_of(bob)) / Ack(ack_id=3)), eve.getsockname())
        sniff.wait_for(r"ack ok [\d.]+ ms")
        assert sniff.finish(signal.SIGINT) == 0, sniff.dump()
    out = "\n".join(sniff.out)
    assert all(ch.isprintable() for ch in out.replace("\n", "")), out
    assert r"[bold]E\x1b]8;;http://x\x1b\v" in sniff.out[0], sniff.dump()  # the names row
    assert r"pri_msg '[/]\x1b[2J\u202ehi'" in out, out
