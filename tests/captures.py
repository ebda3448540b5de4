"""Live captures for the sniffer, replayer and Wireshark tests: real ChatApp.py processes
(and the lossy proxy) chatting on lo while tools/sniff.py writes a pcap; and the tools run
as commands."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.procs import CHATAPP, HOST, PYTHON, ROOT, Piped, ProxyThread, quiet_port

SNIFF = str(ROOT / "tools" / "sniff.py")

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="live capture on lo needs root (a raw packet socket)")


# -- processes ------------------------------------------------------------------------------------


class Processes:
    def __init__(self):
        self.procs: list[Piped] = []

    def start(self, args: list[str], label: str) -> Piped:
        proc = Piped(args, label)
        self.procs.append(proc)
        return proc

    def sniffer(self, pcap: Path, ports: list[int]) -> Piped:
        """sniff.py on lo, limited to this test's ports (other tests may chat on lo meanwhile)."""
        args = [SNIFF, "-w", str(pcap)] + [arg for port in ports for arg in ("--port", str(port))]
        proc = self.start(args, "sniff")
        proc.wait_for(r"capturing on lo", stream="err")
        return proc

    def server(self, port: int, *flags: str) -> Piped:
        proc = self.start([CHATAPP, "-s", str(port), "--bind", HOST, *flags], "server")
        proc.wait_for(r"^>>> Server is online")
        return proc

    def client(self, name: str, server_port: int, port: int, *flags: str) -> Piped:
        proc = self.start([CHATAPP, "-c", name, HOST, str(server_port), str(port), "--bind", HOST, *flags], name)
        proc.wait_for(r"^>>> Welcome, You are registered\.")
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):  # clients before the server
            proc.stop()


def tool_env() -> dict[str, str]:
    return dict(os.environ, NO_COLOR="1", TERM="dumb", LC_ALL="C.UTF-8")


def run_tool(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([PYTHON, *args], cwd=ROOT, env=tool_env(), capture_output=True, text=True, timeout=60)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def run_into_closed_pipe(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run a tool whose stdout is a pipe its reader has already closed (``| head`` after it left):
    every write to it fails.  stderr is captured."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run([PYTHON, *args], cwd=ROOT, env=tool_env(), stdout=write, stderr=subprocess.PIPE, text=True,
                              timeout=timeout)
    finally:
        os.close(write)


# -- one chat session captured live (tests/conftest.py records each once per test session) ---------------


class Capture:
    def __init__(self, pcap: Path, lines: list[str], ports: dict[str, int], log: Path | None = None):
        self.pcap = pcap
        self.lines = lines  # what the live sniffer printed
        self.ports = ports
        self.log = log


def record_direct(tmp_path_factory) -> Capture:
    """Ann and Bob chat through a server; sniff.py watches lo and writes a pcap."""
    pcap = tmp_path_factory.mktemp("direct") / "chat.pcap"
    ports = {"server": quiet_port(), "Ann": quiet_port(), "Bob": quiet_port()}
    slow = ("--ack-timeout", "2")  # a loaded machine must not cause retransmissions here
    procs = Processes()
    try:
        sniff = procs.sniffer(pcap, list(ports.values()))
        procs.server(ports["server"], *slow)
        ann = procs.client("Ann", ports["server"], ports["Ann"], *slow)
        bob = procs.client("Bob", ports["server"], ports["Bob"], *slow)
        ann.wait_for(r"^\s*Bob\s")  # Ann's table lists Bob: she can message him
        ann.type("send Bob hello; there")
        ann.wait_for(r"^>>> Message received by Bob\.")
        bob.wait_for(r"^>>> Ann: hello; there$")
        bob.type("create_group g1")
        bob.wait_for(r"^>>> Group g1 created by Server\.")
        bob.type("join_group g1")
        bob.wait_for(r"^>>> Entered group g1 successfully")
        ann.type("join_group g1")
        ann.wait_for(r"^>>> Entered group g1 successfully")
        ann.type("send_group hi all")
        ann.wait_for(r"Message received by Server\.")
        bob.wait_for(r"Group_Message Ann: hi all")
        ann.type("dereg Ann")
        ann.wait_for(r"^>>> You are Offline\. Bye\.")
        sniff.wait_for(r"server → Ann +ack .*↩ dereg")
        update = sniff.wait_for(r"server → Bob +table .*Ann \S+ offline")
        sniff.wait_for(r"Bob → server +ack .*↩ table", after=update)
        assert sniff.finish(signal.SIGINT) == 0, sniff.dump()
        return Capture(pcap, list(sniff.out), ports)
    finally:
        procs.stop_all()


def record_proxied(tmp_path_factory) -> Capture:
    """Ann messages Bob through the lossy proxy, which drops her first two tries."""

    folder = tmp_path_factory.mktemp("proxied")
    pcap, log = folder / "chat.pcap", folder / "proxy.jsonl"
    ports = {"server": quiet_port(), "Ann": quiet_port(), "Bob": quiet_port()}
    procs = Processes()
    try:
        procs.server(ports["server"])
        with ProxyThread(server=(HOST, ports["server"]), log_path=str(log)) as proxy:
            ports["proxy"] = proxy.address[1]
            sniff = procs.sniffer(pcap, list(ports.values()))
            proxy.add_rule("drop first=2 type=pri_msg")
            ann = procs.client("Ann", ports["proxy"], ports["Ann"])
            procs.client("Bob", ports["proxy"], ports["Bob"])
            ann.wait_for(r"^\s*Bob\s")
            ann.type("send Bob hello")
            ann.wait_for(r"^>>> Message received by Bob\.")
            sniff.wait_for(r"Bob → Ann +ack .*↩ pri_msg #\d+ retry 2 rtt")
            assert sniff.finish(signal.SIGINT) == 0, sniff.dump()
            procs.stop_all()  # while the proxy still passes the clients' deregistrations
        return Capture(pcap, list(sniff.out), ports, log)
    finally:
        procs.stop_all()
