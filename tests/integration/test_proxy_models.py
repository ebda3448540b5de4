"""The realistic impairments (tools/impairments.py) through the real proxy process: bursty loss seen
in its --log as runs of drops, delays drawn from a distribution, and a rate limit that delays a
burst and drops what is past its queue limit, counted in --stats; stand-in nodes on 127.0.0.1 send
chat datagrams built with the Scapy layer.

What the models choose is seeded per flow, so a test can say exactly which datagrams of a flow a
loss model drops, and which delays it draws, by asking the rule engine with the same seed.  What a
rate limit drops depends on when datagrams reach the proxy, so those checks are bounds that hold
on a busy machine (the burst is sent at once; the link takes far longer to drain it).
"""

from __future__ import annotations

import itertools
import json
import select
import socket
import subprocess
import sys

import pytest

from proto import PAYLOADS, ChatHeader, decode
from tests.procs import PROXY, ROOT, WAIT, ProxyProcess
from tools.faults import FaultPlan

HOST = "127.0.0.1"

pytestmark = pytest.mark.e2e  # the proxy as a process, on real sockets


class Peer:
    """A UDP socket on 127.0.0.1 that sends chat datagrams as ``name``."""

    def __init__(self, name: str):
        self.name, self.ids = name, itertools.count(1)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))

    def datagram(self, type_name: str, **payload) -> bytes:
        header = ChatHeader(type=type_name, msg_id=next(self.ids), port=self.sock.getsockname()[1], sender=self.name)
        layer = PAYLOADS.get(type_name)
        return bytes(header / layer(**payload) if layer else header)

    def send(self, to, type_name: str, **payload) -> bytes:
        data = self.datagram(type_name, **payload)
        self.sock.sendto(data, to)
        return data

    def recv(self) -> tuple[bytes, tuple]:
        assert select.select([self.sock], [], [], WAIT)[0], f"{self.name}: nothing arrived within {WAIT} s"
        return self.sock.recvfrom(65535)

    def recv_until(self, sentinel: bytes) -> list[bytes]:
        """What arrives up to ``sentinel``: on one path the proxy decides in order, so a datagram sent
        before the sentinel and not held back has arrived by then."""
        got = []
        while (data := self.recv()[0]) != sentinel:
            got.append(data)
        return got


@pytest.fixture
def server():
    peer = Peer("server")
    yield peer
    peer.sock.close()


@pytest.fixture
def ann():
    peer = Peer("Ann")
    yield peer
    peer.sock.close()


def registered(proxy: ProxyProcess, server: Peer, client: Peer) -> tuple:
    """``client`` registers through the proxy (so the proxy knows its name); its mirror address."""
    sentinel = client.send(proxy.address, "reg")
    data, mirror = server.recv()
    assert data == sentinel
    return mirror


def log_rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def drop_runs(actions: list[str]) -> list[int]:
    return [len(list(run)) for action, run in itertools.groupby(actions) if action == "drop"]


def seeded_run(tmp_path, server: Peer, ann: Peer, rule: str, seed: int, traffic) -> tuple[list, list[dict], list]:
    """The proxy process with ``rule`` and ``--seed``; Ann registers and ``traffic(proxy address)`` runs.
    What it returned, the log's rows of Ann's private messages, and the decisions the rule engine
    makes for as many with the same seed: the flow Ann -> server must meet exactly those fates."""
    log = tmp_path / "proxy.jsonl"
    proxy = ProxyProcess(server.sock.getsockname(), "--rule", rule, "--seed", str(seed), "--log", str(log))
    try:
        registered(proxy, server, ann)
        got = traffic(proxy.address)
    finally:
        assert proxy.stop() == 0
    rows = [r for r in log_rows(log) if r["type"] == "pri_msg"]
    plan = FaultPlan([rule], seed=seed)
    return got, rows, [plan.decide(b"", "pri_msg", "Ann", "server") for _ in rows]


@pytest.mark.parametrize("rule", ["drop gemodel=10%,25% type=pri_msg", "drop state=4%,30%,10%,50%,1% type=pri_msg"])
def test_bursty_loss_shows_in_the_log_as_runs_of_drops_the_seed_repeats(tmp_path, server, ann, rule):
    def traffic(to) -> list[bytes]:
        got = []
        for start in range(0, 300, 25):  # in steps, each ended by a sentinel: no socket buffer overflows
            for i in range(start, start + 25):
                ann.send(to, "pri_msg", text=f"m{i}")
            got += server.recv_until(ann.send(to, "ack", ack_id=0))
        return got

    got, rows, decisions = seeded_run(tmp_path, server, ann, rule, 4, traffic)
    actions = [r["action"] for r in rows]
    assert len(actions) == 300 and actions == [d.action for d in decisions]
    assert [decode(d).payload.text for d in got] == [f"m{i}" for i, a in enumerate(actions) if a == "pass"]
    runs = drop_runs(actions)
    assert max(runs) >= 3 and sum(runs) / len(runs) > 1.5, runs  # bursts, not lone drops
    assert all(r["rule"] == 1 for r in rows if r["action"] == "drop")


def test_a_loss_model_picks_for_any_action_here_bursts_of_duplicates(tmp_path, server, ann):
    sent = []

    def traffic(to) -> list[bytes]:
        sent.extend(ann.send(to, "pri_msg", text=f"m{i}") for i in range(100))
        return server.recv_until(ann.send(to, "ack", ack_id=0))

    got, rows, decisions = seeded_run(tmp_path, server, ann, "duplicate 1 gemodel=15%,40% type=pri_msg", 2, traffic)
    fates = [d.action for d in decisions]
    assert len(rows) == 100 and [r["action"] for r in rows] == fates
    assert got == [copy for data, fate in zip(sent, fates) for copy in [data] * (2 if fate == "duplicate" else 1)]
    runs = [len(list(run)) for fate, run in itertools.groupby(fates) if fate == "duplicate"]
    assert max(runs) >= 3, runs  # in bursts


def test_delays_come_from_the_seeded_distribution_and_the_log_says_each(tmp_path, server, ann):
    sent = []

    def traffic(to) -> list[bytes]:
        sent.extend(ann.send(to, "pri_msg", text=f"m{i}") for i in range(40))
        return [server.recv()[0] for _ in sent]

    rule = "delay 30ms±20ms dist=paretonormal corr=50% type=pri_msg"
    got, rows, decisions = seeded_run(tmp_path, server, ann, rule, 9, traffic)
    assert sorted(got) == sorted(sent)  # each once, none lost
    logged = [r.get("delay", 0.0) for r in rows]
    assert len(logged) == 40 and logged == [round(d.copies[0][0], 6) for d in decisions]
    assert len(set(logged)) == 40  # a delay of its own for each


def test_a_rate_limit_delays_a_burst_drops_past_its_limit_and_counts_the_drops(tmp_path, server, ann):
    """250 bytes/s and 100-byte datagrams: each holds the link 0.4 s, so a burst of 12 sent at once
    fills the 4 places and the rest are dropped, unless the proxy paused for 0.4 s and more between
    two of them (then fewer drops, never none unless it paused 3.2 s).  The other direction has a
    link of its own, empty.  (What the proxy's clock did is read from its log, not assumed.)"""
    log = tmp_path / "proxy.jsonl"
    proxy = ProxyProcess(server.sock.getsockname(), "--rule", "rate 250bps limit=4 type=pri_msg", "--log", str(log), "--stats")
    text = "x" * (100 - len(ann.datagram("pri_msg", text="")))  # a text that makes 100-byte datagrams
    try:
        mirror = registered(proxy, server, ann)
        burst = [ann.send(proxy.address, "pri_msg", text=text) for _ in range(12)]
        back = [server.send(mirror, "pri_msg", text=text) for _ in range(3)]
        assert len(burst[0]) == 100
        # The sentinel is not rate-limited: once it is in, the proxy has decided the whole burst.
        ahead = server.recv_until(ann.send(proxy.address, "ack", ack_id=0))
        decided = [r for r in log_rows(log) if r["type"] == "pri_msg" and r["from"] == "Ann"]
        queued = [r for r in decided if r["action"] == "rate"]
        assert len(decided) == 12 and 4 <= len(queued) < 12
        assert [r["action"] for r in decided[:4]] == ["rate"] * 4  # an empty link takes the first 4
        assert queued[0]["delay"] == 0.4  # on an empty link, only its own 100 bytes at 250 bytes/s
        leaving = [r["time"] + r["delay"] for r in queued]  # each goes out after the one before it has
        assert all(b - a > 0.4 - 0.005 for a, b in zip(leaving, leaving[1:])), leaving  # (the log's clock: ±ms)
        out = ahead + [server.recv()[0] for _ in range(len(queued) - len(ahead))]
        assert [decode(d).msg_id for d in out] == [r["id"] for r in queued]  # in order, after their wait
        assert {decode(d).msg_id for d in burst} >= {r["id"] for r in queued}
        assert [ann.recv()[0] for _ in back] == back  # server -> Ann: its own link, all 3 in
    finally:
        assert proxy.stop() == 0
    dropped = 12 - len(queued)
    table = [[cell.strip() for cell in line.split("│")[1:-1]] for line in proxy.stderr.splitlines() if line.startswith("│")]
    assert table == [["1", "rate 250bps limit=4 type=pri_msg", "15", "15", str(dropped)]], proxy.stderr
    assert f"drop {dropped}" in proxy.stderr and "rate " + str(15 - dropped) in proxy.stderr


def test_the_help_lists_the_models_and_a_bad_one_stops_the_proxy():
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, PROXY, *args], capture_output=True, text=True, timeout=30, cwd=ROOT)

    done = run("--help")
    for word in ("rate R", "gemodel=P[,R[,1-H[,1-K]]]", "state=P13[,P31[,P32[,P23[,P14]]]]", "dist=uniform|normal|pareto|paretonormal",
                 "corr=C", "limit=N", "docs/fault-models.md", "delay 100ms±20ms dist=pareto corr=25%"):
        assert word in done.stdout, word
    done = run("--listen", f"{HOST}:0", "--server", f"{HOST}:9", "--rule", "drop gemodel=1%,200%")
    assert done.returncode == 2 and "'200%' is not a probability" in done.stderr and done.stderr.count("\n") == 1
