"""tools/replay.py: resend the chat datagrams of a capture, and show the answers."""

from __future__ import annotations

import json
import re
import socket
import threading

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import rdpcap, wrpcap

from proto import MSG_TYPES, Ack, ChatHeader, PriMsg, ProtocolError, RegAck, decode
from tests.captures import SNIFF, Processes, needs_root, run_into_closed_pipe, run_tool
from tests.procs import HOST, free_port, quiet_port

REPLAY = SNIFF.replace("sniff.py", "replay.py")

pytestmark = pytest.mark.e2e  # replay.py and sniff.py as processes, on real sockets


class FakeServer:
    """A UDP socket that records what arrives and acknowledges every request."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(0.1)
        self.address = self.sock.getsockname()
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            self.received.append(data)
            try:
                pkt = decode(data)
            except ProtocolError:
                continue
            kind = MSG_TYPES[pkt.type]
            answer = RegAck(ack_id=pkt.msg_id, token=5) if kind == "reg" else Ack(ack_id=pkt.msg_id)
            reply = ChatHeader(type="reg_ack" if kind == "reg" else "ack", msg_id=900 + len(self.received),
                               port=self.address[1], sender="server") / answer
            self.sock.sendto(bytes(reply), addr)

    def __enter__(self) -> "FakeServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def chat(kind: str, msg_id: int, payload=None) -> bytes:
    pkt = ChatHeader(type=kind, msg_id=msg_id, port=7001, sender="Ann")
    return bytes(pkt / payload if payload is not None else pkt)


@pytest.fixture
def capture(tmp_path):
    """A pcap with a registration, a private message, a datagram that is not chat and a broken one."""
    payloads = [chat("reg", 1), chat("pri_msg", 2, PriMsg(text="hi; there")), b"not chat at all", chat("reg", 3)[:-2]]
    frames = []
    for n, data in enumerate(payloads):
        frame = Ether() / IP(src=HOST, dst=HOST) / UDP(sport=7001, dport=6000) / Raw(data)
        frame.time = 1_700_000_000 + n * 0.05
        frames.append(frame)
    path = tmp_path / "made.pcap"
    wrpcap(str(path), frames)
    return path, [payloads[0], payloads[1], payloads[3]]


def test_replay_sends_the_chat_datagrams_and_decodes_the_answers(capture):
    path, chat_datagrams = capture
    with FakeServer() as server:
        done = run_tool(REPLAY, str(path), "--to", f"{HOST}:{server.address[1]}", "--speed", "5")
    assert server.received == chat_datagrams  # byte for byte, in order; the non-chat datagram stays out
    out = done.stdout
    assert "sent" in out and "replay → server" in out and "as Ann" in out
    assert "'hi; there'" in out and "malformed" in out
    assert "recv" in out and "server → replay" in out and "↩ reg #1 rtt" in out and "↩ pri_msg #2 rtt" in out
    assert "sent 3 datagrams" in out and "received 2" in out


def test_replay_chooses_types_and_can_go_fast(capture):
    path, chat_datagrams = capture
    with FakeServer() as server:
        done = run_tool(REPLAY, str(path), "--to", f"{HOST}:{server.address[1]}", "--type", "pri_msg", "--fast",
                        "--wait", "0.5")
    assert server.received == [chat_datagrams[1]]
    assert "sent 1 datagram to" in done.stdout


def test_a_closed_stdout_does_not_stop_the_replay(capture):
    """`replay.py ... | head -1`: the reader leaves, every datagram is still sent, quietly."""
    path, chat_datagrams = capture
    with FakeServer() as server:
        done = run_into_closed_pipe(REPLAY, str(path), "--to", f"{HOST}:{server.address[1]}", "--fast", "--wait", "0.5")
    assert (done.returncode, done.stderr) == (0, "")
    assert server.received == chat_datagrams


@pytest.mark.parametrize("pace", [["--fast"], ["--speed", "5"]])
def test_replay_to_a_port_nobody_listens_on_says_so(capture, pace):
    """The ICMP port unreachable that comes back is reported: one line on stderr, status 1, no
    `received 0` as if the datagrams had gone somewhere."""
    path, _ = capture
    closed = free_port()  # bound and closed again: nothing listens there
    done = run_tool(REPLAY, str(path), "--to", f"{HOST}:{closed}", *pace, "--wait", "0.5", check=False)
    assert done.returncode == 1, done.stdout
    assert done.stderr == f"replay.py: nothing listens on {HOST}:{closed} (port unreachable)\n"
    assert "received" not in done.stdout


def test_replay_mistakes_get_one_line_and_no_traceback(capture, tmp_path):
    path, _ = capture
    for args, status, message in [
        ([str(tmp_path / "missing.pcap"), "--to", "127.0.0.1:9"], 1, "cannot read"),
        ([str(path), "--to", "nowhere"], 2, "is not HOST:PORT"),
        ([str(path)], 2, "--to"),
        ([str(path), "--to", "127.0.0.1:9", "--type", "kick"], 1, "no chat datagrams of these types"),
        ([str(path), "--to", "127.0.0.1:9", "--fast", "--speed", "2"], 2, "not allowed with"),
        ([str(path), "--to", "127.0.0.1:9", "--speed", "0"], 2, "not a positive number"),
    ]:
        done = run_tool(REPLAY, *args, check=False)
        assert done.returncode == status and message in done.stderr and "Traceback" not in done.stderr, done.stderr


@needs_root
def test_replaying_a_live_capture_to_a_server_sends_the_same_datagrams(direct, tmp_path):
    """Registrations from the capture, replayed to a fresh server and captured again: each is
    answered, and none starts a session (that needs a confirm with the token the replayer never
    reads), so no table goes out."""
    registrations = [bytes(f[UDP].payload) for f in rdpcap(str(direct.pcap)) if decode(bytes(f[UDP].payload)).type == 1]
    assert len(registrations) == 2
    port = quiet_port()
    procs = Processes()
    try:
        procs.server(port)
        sniff = procs.sniffer(tmp_path / "again.pcap", [port])
        done = run_tool(REPLAY, str(direct.pcap), "--to", f"{HOST}:{port}", "--type", "reg", "--fast")
        first = sniff.wait_for(r"server → \S+ +reg_ack ")
        sniff.wait_for(r"server → \S+ +reg_ack ", after=first + 1)
        assert sniff.finish() == 0
        assert not [line for line in sniff.out if re.search(r" table ", line)], sniff.dump()
    finally:
        procs.stop_all()
    assert "↩ reg #" in done.stdout and "reg_ack" in done.stdout
    seen = [json.loads(text) for text in run_tool(SNIFF, "-r", str(tmp_path / "again.pcap"), "--json").stdout.splitlines()]
    sent = [bytes.fromhex(r["data"]) for r in seen if "data" in r and r["dst"] == f"{HOST}:{port}" and r["type"] == "reg"]
    assert sent == registrations
