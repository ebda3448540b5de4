"""tools/sniff.py's capture options as a process: capture filters (``-f``, compiled by libpcap and
attached in the kernel, or run on the frames of a file with ``-r``), IPv6 loopback, and the live
ladder (``--ladder`` while capturing).  Live captures need root, as in test_sniff.py."""

from __future__ import annotations

import contextlib
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
