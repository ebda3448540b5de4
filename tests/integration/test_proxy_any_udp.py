"""tools/lossy_proxy.py in front of UDP services that are not ChatApp, as a process: rules on
address, port, size and bytes against a plain echo server; ``--layer scapy.layers.dns:DNS``
with a field rule against a local DNS responder (started here, on 127.0.0.1, never the
network); what the layer cannot decode counted; chat datagrams matched by their fields.

To show that a datagram was *not* delivered, the sender sends a sentinel after it on the same
path: the proxy and the responders handle one path's datagrams in order, so what comes back
before the sentinel's answer is all that will ever come back of what was sent earlier.
"""

from __future__ import annotations

import json
import select
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager

import pytest
from scapy.layers.dns import DNS, DNSQR

from proto.fastpath import encode, parse
from tests.procs import PROXY, PYTHON, ROOT, WAIT, ProxyProcess

HOST = "127.0.0.1"

pytestmark = pytest.mark.e2e  # the proxy and the responders as processes, on real sockets

# A UDP service on 127.0.0.1, port 0; prints "ready PORT".  echo: sends every datagram back.
# dns: answers each query it can dissect with an A record 127.0.0.1, ignores anything else.
RESPONDER = r"""
import socket, sys
mode = sys.argv[1]
if mode == "dns":
    from scapy.layers.dns import DNS, DNSRR
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 0))
print("ready", sock.getsockname()[1], flush=True)
while True:
    data, addr = sock.recvfrom(65535)
    if mode == "echo":
        sock.sendto(data, addr)
        continue
    try:
        assert data  # Scapy would make a default query of nothing
        query = DNS(data)
        name = query.qd[0].qname
    except Exception:
        continue
    answer = DNS(id=query.id, qr=1, aa=1, rd=query.rd, qd=query.qd, an=DNSRR(rrname=name, rdata="127.0.0.1"))
    sock.sendto(bytes(answer), addr)
"""


@contextmanager
def responder(mode: str):
    proc = subprocess.Popen([PYTHON, "-c", RESPONDER, mode], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], WAIT)
        line = proc.stdout.readline() if ready else ""
        assert line.startswith("ready "), f"the {mode} responder did not start: {line!r}"
        yield (HOST, int(line.split()[1]))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # by its pid
        proc.wait(WAIT)
        proc.stdout.close()


@contextmanager
def proxy_for(server, *args: str):
    proxy = ProxyProcess(server, *args)
    try:
        yield proxy
    finally:
        proxy.stop()


class Sender:
    """A UDP socket on 127.0.0.1 that talks to the service through the proxy."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.port = self.sock.getsockname()[1]

    def recv(self) -> bytes:
        ready, _, _ = select.select([self.sock], [], [], WAIT)
        assert ready, f"nothing came back within {WAIT} s"
        return self.sock.recv(65535)

    def answers(self, to, datagrams: list[bytes], sentinel: bytes, answer_of=lambda d: d) -> list[bytes]:
        """Send ``datagrams`` and then ``sentinel``; what came back before the sentinel's answer."""
        for data in [*datagrams, sentinel]:
            self.sock.sendto(data, to)
        got, end = [], answer_of(sentinel)
        while (data := self.recv()) != end:
            got.append(data)
        return got

    def close(self) -> None:
        self.sock.close()


def totals(stderr: str) -> str:
    return next(line for line in stderr.splitlines() if line.startswith("totals: "))


def log_rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- any UDP service: address, port, size and bytes ------------------------------------------------


def test_size_port_and_bytes_rules_drop_what_they_name_of_an_echo_service(tmp_path):
    log = tmp_path / "proxy.jsonl"
    a, b = Sender(), Sender()
    try:
        with responder("echo") as echo, proxy_for(
            echo,
            "--rule", "drop size=>100",
            "--rule", "drop bytes=0:dead",
            "--rule", "drop bytes=2~x+y",
            "--rule", f"drop port={b.port}",
            "--rule", f"duplicate 1 size=10..12 src=127.0.0.1:{a.port}",
            "--log", str(log), "--stats",
        ) as proxy:
            sent = [b"x" * 101, b"\xde\xad-first", b"ok", b"ab" + b"x" * 5 + b"y", b"y" * 11, b"x" * 100]
            assert a.answers(proxy.address, sent, b"end") == [b"ok", b"y" * 11, b"y" * 11, b"x" * 100]
            # every datagram from or to b's port is dropped; a's are not
            b.sock.sendto(b"from b", proxy.address)
            assert a.answers(proxy.address, [], b"end again") == []
            assert proxy.stop(signal.SIGTERM) == 0
    finally:
        a.close(), b.close()
    # in: a's 8 datagrams, b's one, 6 echoes; 4 dropped, one sent twice, the other 10 passed
    assert totals(proxy.stderr) == "totals: 15 datagrams in (0 chat; 15 not chat: drop 4, pass 10, duplicate 1), 12 out", proxy.stderr
    rows = log_rows(log)  # only the datagrams a rule took: the others are not chat and pass unlogged
    assert [(r["action"], r["rule"], r["bytes"]) for r in rows] == [
        ("drop", 1, 101), ("drop", 2, 8), ("drop", 3, 8), ("duplicate", 5, 11), ("drop", 4, 6)]
    assert rows[0]["from"] == f"{HOST}:{a.port}" and rows[0]["type"] is None and rows[0]["id"] is None


def test_without_rules_for_it_a_datagram_of_another_protocol_passes_untouched():
    sender = Sender()
    try:
        with responder("echo") as echo, proxy_for(echo, "--rule", "drop", "--rule", "corrupt") as proxy:
            junk = [b"\xc4\xa7\x03", b"", b"hello"]
            assert sender.answers(proxy.address, junk, b"end") == junk
    finally:
        sender.close()


def test_corrupting_an_empty_datagram_passes_it_on_and_the_proxy_goes_on():
    sender = Sender()
    try:
        with responder("echo") as echo, proxy_for(echo, "--rule", "corrupt size=0") as proxy:
            assert sender.answers(proxy.address, [b"", b"abc"], b"end") == [b"", b"abc"]
            assert proxy.stop(signal.SIGTERM) == 0
    finally:
        sender.close()
    assert "Traceback" not in proxy.stderr, proxy.stderr


# -- --layer: DNS ---------------------------------------------------------------------------------


def dns_query(name: str, ident: int) -> bytes:
    return bytes(DNS(id=ident, rd=1, qd=DNSQR(qname=name)))


def answer_name(data: bytes) -> str:
    return DNS(data).an[0].rrname.decode()


def test_a_dns_answer_is_dropped_by_a_field_of_the_layer_and_logged_with_its_fields(tmp_path):
    log = tmp_path / "proxy.jsonl"
    sender = Sender()
    try:
        with responder("dns") as dns, proxy_for(
            dns, "--layer", "scapy.layers.dns:DNS", "--rule", "drop field.qr=1 field.qd.qname=blocked.example.",
            "--log", str(log), "--stats",
        ) as proxy:
            for i, name in enumerate(["ok.example", "blocked.example", "also.example"]):
                sender.sock.sendto(dns_query(name, i + 1), proxy.address)
            sender.sock.sendto(dns_query("end.example", 9), proxy.address)
            names = []
            while (name := answer_name(sender.recv())) != "end.example.":
                names.append(name)
            assert names == ["ok.example.", "also.example."]
            assert proxy.stop(signal.SIGTERM) == 0
    finally:
        sender.close()
    assert totals(proxy.stderr) == "totals: 8 datagrams in (8 DNS: drop 1, pass 7; 0 not DNS), 7 out", proxy.stderr
    rows = log_rows(log)
    assert len(rows) == 8 and all(r["type"] == "DNS" for r in rows)
    dropped = [r for r in rows if r["action"] == "drop"]
    assert len(dropped) == 1 and dropped[0]["rule"] == 1
    fields = dropped[0]["fields"]
    assert fields["qr"] == 1 and fields["id"] == 2 and fields["qd"][0]["qname"] == "blocked.example."
    assert fields["an"][0]["rdata"] == "127.0.0.1"


def test_what_the_layer_cannot_decode_is_counted_and_met_only_by_the_datagram_keys():
    sender = Sender()
    try:
        with responder("dns") as dns, proxy_for(
            dns, "--layer", "scapy.layers.dns:DNS", "--rule", "drop size=<4 field.qr=0", "--rule", "drop bytes=0:ff", "--stats",
        ) as proxy:
            malformed = [b"\x00", b"\xff\xfe", dns_query("cut.example", 5)[:15], b""]
            for data in malformed:
                sender.sock.sendto(data, proxy.address)
            # the proxy still serves: a query after them is answered
            sender.sock.sendto(dns_query("after.example", 6), proxy.address)
            assert answer_name(sender.recv()) == "after.example."
            assert proxy.stop(signal.SIGTERM) == 0
    finally:
        sender.close()
    # the first rule's size= would take three of them, but its field.qr= can only match DNS
    assert totals(proxy.stderr) == "totals: 6 datagrams in (2 DNS: pass 2; 4 not DNS: drop 1, pass 3), 5 out", proxy.stderr
    assert "Traceback" not in proxy.stderr


# -- the chat layer's fields ----------------------------------------------------------------------


def test_chat_datagrams_are_matched_by_their_fields():
    sender = Sender()
    try:
        with responder("echo") as echo, proxy_for(echo, "--rule", "drop field.sender=Ann field.text=secret,private") as proxy:
            def pri_msg(who: str, text: str) -> bytes:
                return encode("pri_msg", {"msg_id": 1, "port": sender.port, "sender": who}, {"text": text})

            sent = [pri_msg("Ann", "secret"), pri_msg("Ann", "hello"), pri_msg("Bob", "secret"), pri_msg("Ann", "private")]
            got = sender.answers(proxy.address, sent, pri_msg("Ann", "end"))
            assert [(parse(d).sender, parse(d).payload.text) for d in got] == [("Ann", "hello"), ("Bob", "secret")]
    finally:
        sender.close()


# -- the command line -----------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, PROXY, *args], capture_output=True, text=True, timeout=60, cwd=ROOT)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--layer", "no.such.module:X"], "--layer no.such.module:X: no module named 'no.such.module'"),
        (["--layer", "scapy.layers.dns:DNZ"], "module 'scapy.layers.dns' has no 'DNZ'"),
        (["--layer", "scapy.layers.dns"], "bad --layer 'scapy.layers.dns' (use MODULE:CLASS"),
        (["--layer", "scapy.layers.dns:DNS", "--rule", "drop field.txet=1"], "the DNS layer has no field 'txet'"),
        (["--rule", "drop field.txet=hi"], "the chat layer has no field 'txet'"),
        (["--rule", "drop size=big"], "bad size 'big'"),
    ],
)
def test_a_layer_or_field_that_does_not_exist_is_one_line_and_status_2(args, message):
    done = run_cli("--listen", f"{HOST}:0", "--server", f"{HOST}:9", *args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stdout == ""


def test_help_lists_the_keys_for_any_datagram_and_the_layer_option():
    done = run_cli("--help")
    assert done.returncode == 0
    for word in ("--layer MODULE:CLASS", "scapy.layers.dns:DNS", "src=HOST[:PORT]", "dst=", "port=N", "size=A..B",
                 "bytes=OFF:HEX", "bytes=OFF~REGEX", "field.NAME=V", "drop port=53 size=>512"):
        assert word in done.stdout, word
