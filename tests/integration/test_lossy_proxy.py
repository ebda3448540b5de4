"""tools/lossy_proxy.py on its own: rules, actions and matches on real UDP sockets
of 127.0.0.1, with small stand-in nodes that send chat datagrams built with the
Scapy layer; then the command line as a process.

To show that a datagram was *not* delivered, a test sends a sentinel after it on
the same path: the proxy handles one path's datagrams in order, so whatever the
receiver gets before the sentinel is all it will ever get of what came earlier.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import types
from contextlib import contextmanager

import pytest

from proto import PAYLOADS, ChatHeader, decode
from tests.procs import PROXY, ProxyProcess, ProxyThread, quiet_port
from tools import scenario as scenarios
from tools.lossy_proxy import LossyProxy, totals

from tests.procs import ROOT  # the checkout, wherever in tests/ this file sits
HOST = "127.0.0.1"
WAIT = 10.0  # deadline for one expected datagram; a passing test never waits this long

pytestmark = pytest.mark.e2e  # the proxy on real sockets and as a process


class Node:
    """A UDP socket on 127.0.0.1 standing in for one chat node."""

    def __init__(self, name: str):
        self.name = name
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.address = self.sock.getsockname()
        self.msg_id = 0
        self.mirror: tuple[str, int] | None = None  # where the others reach it through the proxy

    def chat(self, type_name: str, **payload) -> bytes:
        """A chat datagram from this node with the next message id."""
        self.msg_id += 1
        header = ChatHeader(type=type_name, msg_id=self.msg_id, port=self.address[1], sender=self.name)
        layer = PAYLOADS.get(type_name)
        return bytes(header / layer(**payload) if layer else header)

    def send(self, data: bytes, to) -> bytes:
        self.sock.sendto(data, to)
        return data

    def recv(self, timeout: float = WAIT) -> tuple[bytes, tuple[str, int]]:
        ready, _, _ = select.select([self.sock], [], [], timeout)
        assert ready, f"{self.name}: nothing arrived within {timeout} s"
        return self.sock.recvfrom(65535)

    def recv_until(self, sentinel: bytes) -> list[bytes]:
        """Everything that arrives up to and without ``sentinel``."""
        got = []
        while (data := self.recv()[0]) != sentinel:
            got.append(data)
        return got

    def close(self) -> None:
        self.sock.close()


def texts(datagrams: list[bytes]) -> list[str]:
    return [decode(d).payload.text for d in datagrams]


@contextmanager
def network(rules=(), **options):
    """A stand-in server and clients A and B behind a ProxyThread.  Each client has
    sent the server a ``reg`` (so the proxy knows its name and the server its mirror)
    before ``rules`` are put in place."""
    server, a, b = Node("server"), Node("A"), Node("B")
    try:
        with ProxyThread(server=server.address, **options) as proxy:
            for client in (a, b):
                client.send(client.chat("reg"), proxy.address)
                data, client.mirror = server.recv()
                assert decode(data).sender == client.name
            proxy.replace_rules(rules)
            yield proxy, server, a, b
    finally:
        for node in (server, a, b):
            node.close()


def pri_msgs(sender: Node, receiver: Node, count: int, start: int = 1) -> list[bytes]:
    return [sender.send(sender.chat("pri_msg", text=f"m{i}"), receiver.mirror) for i in range(start, start + count)]


def sentinel(sender: Node, receiver: Node) -> bytes:
    """A datagram no rule in these tests selects (an ``ack``), sent last on the path."""
    return sender.send(sender.chat("ack", ack_id=0), receiver.mirror)


# -- the proxy between nodes ------------------------------------------------------------------------


def test_every_endpoint_gets_a_mirror_on_the_proxy():
    with network() as (proxy, server, a, b):
        assert a.mirror != b.mirror and a.mirror[1] != a.address[1] and b.mirror[1] != b.address[1]
        server.send(server.chat("table"), a.mirror)
        assert a.recv()[1] == proxy.address  # the server's replies come from the address A uses for it
        data = a.send(a.chat("pri_msg", text="hi"), b.mirror)
        assert b.recv() == (data, a.mirror)  # client to client: from A's mirror, the one the server knows
        answer = b.send(b.chat("ack", ack_id=1), a.mirror)
        assert a.recv() == (answer, b.mirror)
        assert proxy.counters()["forwarded"] == 5


def test_drop():
    with network(["drop type=pri_msg"]) as (proxy, server, a, b):
        pri_msgs(a, b, 2)
        assert b.recv_until(sentinel(a, b)) == []
        assert proxy.counters()["drop"] == 2
        assert proxy.rule_counts() == [("drop type=pri_msg", 2, 2)]


def test_pass_and_the_first_matching_rule_wins():
    with network(["pass type=pri_msg from=A", "drop type=pri_msg"]) as (proxy, server, a, b):
        sent = pri_msgs(a, b, 2)
        pri_msgs(b, a, 2)
        assert b.recv_until(sentinel(a, b)) == sent
        assert a.recv_until(sentinel(b, a)) == []
        assert proxy.rule_counts() == [("pass type=pri_msg from=A", 2, 2), ("drop type=pri_msg", 2, 2)]


def test_delay_lets_later_datagrams_overtake():
    with network(["delay 1s type=pri_msg"]) as (proxy, server, a, b):
        (late,) = pri_msgs(a, b, 1)
        mark = sentinel(a, b)
        assert b.recv()[0] == mark  # it went on at once, the delayed one had not arrived
        assert b.recv()[0] == late  # and that one did come, later


def test_delay_with_jitter_reorders_a_flow():
    with network(["delay 400ms±400ms type=pri_msg"], seed=2) as (proxy, server, a, b):
        pri_msgs(a, b, 12)
        got = texts([b.recv()[0] for _ in range(12)])
        assert sorted(got) == sorted(f"m{i}" for i in range(1, 13))  # each once
        assert got != [f"m{i}" for i in range(1, 13)]  # 12 random delays: not in the order sent


def test_duplicate_sends_extra_copies():
    with network(["duplicate 3 type=pri_msg"]) as (proxy, server, a, b):
        (data,) = pri_msgs(a, b, 1)
        assert b.recv_until(sentinel(a, b)) == [data] * 4
        assert proxy.counters()["duplicate"] == 1


def test_hold_keeps_a_datagram_until_the_next_one_of_its_flow():
    with network(["hold type=pri_msg from=A nth=1"]) as (proxy, server, a, b):
        pri_msgs(a, b, 1)
        pri_msgs(b, a, 1, start=10)  # traffic on another flow does not release it
        assert texts(a.recv_until(sentinel(b, a))) == ["m10"]
        pri_msgs(a, b, 2, start=2)
        assert texts(b.recv_until(sentinel(a, b))) == ["m2", "m1", "m3"]


def test_a_held_datagram_goes_after_max_hold_if_nothing_follows():
    with network(["hold type=pri_msg"], max_hold=0.2) as (proxy, server, a, b):
        pri_msgs(a, b, 1)
        assert texts([b.recv()[0]]) == ["m1"]
        assert proxy.counters()["hold"] == 1


def test_corrupt_flips_bits():
    with network(["corrupt type=pri_msg nth=1", "corrupt 4 type=pri_msg"], seed=3) as (proxy, server, a, b):
        sent = pri_msgs(a, b, 2)
        got = b.recv_until(sentinel(a, b))
        assert [len(g) for g in got] == [len(s) for s in sent]
        flipped = [sum(bin(x ^ y).count("1") for x, y in zip(g, s)) for g, s in zip(got, sent)]
        assert flipped[0] == 1  # one bit of one byte
        assert 1 <= flipped[1] <= 4 and got[1] != sent[1]
        assert proxy.counters()["corrupt"] == 2


def test_replay_delivers_now_and_again_later():
    with network(["replay 1s type=pri_msg"]) as (proxy, server, a, b):
        (data,) = pri_msgs(a, b, 1)
        assert b.recv()[0] == data
        mark = sentinel(a, b)  # sent after the first copy arrived
        assert b.recv()[0] == mark
        assert b.recv()[0] == data


def test_non_chat_datagrams_pass_untouched_and_are_counted():
    with network(["drop", "corrupt"]) as (proxy, server, a, b):
        junk = [b"hello, not chat", b"\xc4\xa7\x01", b""]
        for data in junk:
            a.send(data, proxy.address)
        assert [server.recv()[0] for _ in junk] == junk
        assert proxy.counters()["non_chat"] == 3
        assert proxy.rule_counts() == [("drop", 0, 0), ("corrupt", 0, 0)]


# -- reorder with netem's meaning; since= triggers -----------------------------------------------------


def grp_msgs(server: Node, member: Node, count: int) -> list[bytes]:
    return [server.send(server.chat("grp_msg", group="g", seq=i, origin="B", text=f"m{i}"), member.mirror)
            for i in range(1, count + 1)]


def test_plain_reorder_on_every_group_message_changes_their_arrival_order():
    """The rule of recipe 7 in docs/lossy-proxy.md: a quarter of the group messages go at once and overtake
    the others, which wait 100 ms (each arrives once)."""
    with network(["reorder type=grp_msg"], seed=5) as (proxy, server, a, b):
        sent = texts(grp_msgs(server, a, 30))
        got = texts([a.recv()[0] for _ in range(30)])
        assert sorted(got) == sorted(sent) and got != sent, got
        assert proxy.rule_counts() == [("reorder type=grp_msg", 30, 30)]


def test_reorder_with_a_gap_sends_every_fifth_ahead_of_the_four_before_it():
    """netem's "delay 1s reorder 100% gap 5"."""
    with network(["reorder 100% gap=5 delay=1s type=grp_msg"]) as (proxy, server, a, b):
        grp_msgs(server, a, 10)
        got = texts([a.recv()[0] for _ in range(10)])
        assert got == ["m5", "m10", "m1", "m2", "m3", "m4", "m6", "m7", "m8", "m9"]


def test_during_holds_a_rule_only_in_its_time_window():
    """Private messages, one at a time (each followed by a sentinel), from when the rule is added:
    delivered, then dropped from 1 s to 3 s, then delivered again; the rule counts only the drops."""
    rule = "drop type=pri_msg during=1s..3s"
    with network() as (proxy, server, a, b):
        proxy.replace_rules([rule])
        fates: list[str] = []
        deadline = time.monotonic() + WAIT
        while "dropped" not in fates or fates[-1] != "delivered":
            assert time.monotonic() < deadline, fates
            pri_msgs(a, b, 1, start=len(fates))
            fates.append("delivered" if b.recv_until(sentinel(a, b)) else "dropped")
            time.sleep(0.02)  # a pace, not a wait for anything: about 150 messages in all
        runs = [fate for fate, _ in itertools.groupby(fates)]
        assert runs in (["delivered", "dropped", "delivered"], ["dropped", "delivered"]), runs  # one window
        assert proxy.rule_counts() == [(rule, fates.count("dropped"), fates.count("dropped"))]


def until(check, what: str):
    deadline = time.monotonic() + WAIT
    while not (result := check()):
        assert time.monotonic() < deadline, f"no {what} within {WAIT} s"
        time.sleep(0.01)
    return result


def test_since_black_holes_a_client_from_the_first_kick_on():
    with network(["drop to=B since=kick"]) as (proxy, server, a, b):
        pri_msgs(a, b, 1)
        assert texts(b.recv_until(sentinel(a, b))) == ["m1"]  # before any kick
        kick = a.send(a.chat("kick", target="B"), proxy.address)
        assert server.recv()[0] == kick  # the trigger itself goes to the server: not to B
        pri_msgs(a, b, 1, start=2)
        server.send(server.chat("table"), b.mirror)
        until(lambda: proxy.rule_counts() == [("drop to=B since=kick", 2, 2)], "two drops")
        assert select.select([b.sock], [], [], 0)[0] == []  # nothing reached B
        pri_msgs(b, a, 1, start=3)
        assert texts(a.recv_until(sentinel(b, a))) == ["m3"]  # B's own datagrams still go


# -- matches ------------------------------------------------------------------------------------------


def test_type_takes_several_types():
    with network(["drop type=pri_msg,kick"]) as (proxy, server, a, b):
        a.send(a.chat("kick", target="B"), b.mirror)
        pri_msgs(a, b, 1)
        kept = a.send(a.chat("list_groups"), b.mirror)
        assert b.recv_until(sentinel(a, b)) == [kept]


def test_from_and_to_use_names_learned_from_the_traffic():
    rules = ["drop type=table from=server to=A", "drop type=list_groups from=B to=server"]
    with network(rules) as (proxy, server, a, b):
        server.send(server.chat("table"), a.mirror)
        to_b = server.send(server.chat("table"), b.mirror)
        assert a.recv_until(sentinel(server, a)) == []
        assert b.recv_until(sentinel(server, b)) == [to_b]
        b.send(b.chat("list_groups"), proxy.address)
        from_a = a.send(a.chat("list_groups"), proxy.address)
        assert server.recv()[0] == from_a  # B's, sent first, was dropped


def delivered(rule: str, count: int = 10, seed: int | None = None) -> tuple[list[str], list]:
    """Which of ``count`` private messages from A get through with ``rule`` in place."""
    with network([rule], seed=seed) as (proxy, server, a, b):
        pri_msgs(a, b, count)
        return texts(b.recv_until(sentinel(a, b))), proxy.rule_counts()


def test_first():
    with network(["drop type=pri_msg first=2"]) as (proxy, server, a, b):
        a.send(a.chat("list_groups"), b.mirror)  # another type does not count
        pri_msgs(a, b, 4)
        assert texts(b.recv_until(sentinel(a, b))[1:]) == ["m3", "m4"]


def test_nth():
    assert delivered("drop type=pri_msg nth=2", 4)[0] == ["m1", "m3", "m4"]


def test_after():
    assert delivered("drop type=pri_msg after=2", 4)[0] == ["m1", "m2"]


def test_count_caps_how_often_the_action_is_taken():
    got, counts = delivered("drop type=pri_msg p=0.5 count=3", 30, seed=4)
    assert len(got) == 27 and counts == [("drop type=pri_msg p=0.5 count=3", 30, 3)]


def test_p_and_seed():
    got, counts = delivered("drop type=pri_msg p=0.5", 40, seed=7)
    assert 5 < len(got) < 35 and counts[0][2] == 40 - len(got)
    assert delivered("drop type=pri_msg p=0.5", 40, seed=7)[0] == got  # the same seed, the same fates
    assert delivered("drop type=pri_msg p=0.5", 40, seed=8)[0] != got
    assert len(delivered("drop type=pri_msg p=0", 20)[0]) == 20
    assert delivered("drop type=pri_msg p=1", 20)[0] == []


def test_rules_change_while_running():
    with network() as (proxy, server, a, b):
        proxy.add_rule("drop type=pri_msg nth=1")
        pri_msgs(a, b, 2)
        assert texts(b.recv_until(sentinel(a, b))) == ["m2"]
        proxy.replace_rules(["duplicate 1 type=pri_msg"])
        pri_msgs(a, b, 1, start=3)
        assert texts(b.recv_until(sentinel(a, b))) == ["m3", "m3"]
        proxy.clear_rules()
        pri_msgs(a, b, 1, start=4)
        assert texts(b.recv_until(sentinel(a, b))) == ["m4"]
        assert proxy.rule_counts() == []
        counters = proxy.counters()
        assert (counters["drop"], counters["duplicate"], counters["pass"]) == (1, 1, 7)  # 2 regs, m2, m4, 3 acks


# -- the command line ----------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, PROXY, *args], capture_output=True, text=True, timeout=30, cwd=ROOT)


def test_help_shows_the_rule_grammar_with_examples():
    done = run_cli("--help")
    assert done.returncode == 0
    for word in ("--listen", "--server", "--rule", "--rules", "--seed", "--log", "--stats", "ACTION [ARG] [MATCH]",
                 "drop", "pass", "delay D[±J]", "duplicate N", "reorder [P%] [gap=N] [delay=D]", "hold", "corrupt",
                 "replay AFTER", "type=", "from=", "during=", "since=", "--scenario",
                 "to=", "p=", "first=", "nth=", "after=", "count=", "Examples", "drop type=ack from=B first=5"):
        assert word in done.stdout, word


@pytest.mark.parametrize(
    "args, message",
    [
        (["--rule", "drop tipe=ack"], "bad word 'tipe=ack'"),
        (["--rule", "pass", "--rule", "bounce"], "unknown action 'bounce'"),
        (["--rule", "delay 5 parsecs"], "bad word 'parsecs'"),
    ],
)
def test_a_bad_rule_is_one_line_on_stderr_and_status_2(args, message):
    done = run_cli("--listen", f"{HOST}:0", "--server", f"{HOST}:9", *args)
    assert done.returncode == 2
    assert message in done.stderr and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stdout == ""


GUIDE = ROOT / "docs" / "lossy-proxy.md"


def test_every_rule_the_guide_shows_parses():
    """The rules quoted in docs/lossy-proxy.md (``--rule '...'`` and the rules file of recipe 8) are
    rules the proxy accepts, as written."""
    from tools.faults import Rule

    guide = GUIDE.read_text(encoding="utf-8")
    quoted = re.findall(r"--rule\s+'([^']+)'", guide)
    rules_file = re.search(r"```text\n\s*(# a bad day.*?)```", guide, re.S).group(1)
    quoted += [line.split("#")[0].strip() for line in rules_file.splitlines() if line.split("#")[0].strip()]
    assert len(quoted) >= 12, quoted
    for rule in quoted:
        Rule.parse(rule)


def test_the_guide_shows_the_error_a_bad_rule_really_gets():
    shown = re.search(r"```text\n(chatapp-proxy: bad word .*?)\n```", GUIDE.read_text(encoding="utf-8")).group(1)
    done = subprocess.run([str(ROOT / ".venv" / "bin" / "chatapp-proxy"), "--listen", f"{HOST}:0", "--server", f"{HOST}:9",
                           "--rule", "drop tipe=ack"], capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert done.returncode == 2 and done.stderr == shown + "\n", done.stderr


def test_a_bad_line_in_a_rules_file(tmp_path):
    rules = tmp_path / "rules.txt"
    rules.write_text("# loss\ndrop p=0.1   # some\n\ndrop type=grp_msg too=C\n")
    done = run_cli("--listen", f"{HOST}:0", "--server", f"{HOST}:9", "--rules", str(rules))
    assert done.returncode == 2 and "bad word 'too=C'" in done.stderr


@pytest.mark.parametrize(
    "text, message",
    [
        ("at 1s for 2s: drop from=Ann\nat 3s: drop tipe=ack\n", "outage.txt:2: bad word 'tipe=ack'"),
        ("at 5s: clear\nat 1s: drop\n", "outage.txt:2: at 1s comes after at 5s"),
        (None, "outage.txt: cannot read the scenario"),
    ],
)
def test_a_bad_scenario_is_one_line_on_stderr_naming_the_line_and_status_2(tmp_path, text, message):
    scenario = tmp_path / "outage.txt"
    if text is not None:
        scenario.write_text(text)
    done = run_cli("--listen", f"{HOST}:0", "--server", f"{HOST}:9", "--scenario", str(scenario))
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr and done.stdout == ""


def test_a_datagram_decided_as_a_phase_begins_comes_after_that_phase_in_the_log(tmp_path):
    """A phase's timer and a datagram can fall due in the same turn of the loop, and the loop runs
    the datagram's I/O first.  The clock is moved to the end of the outage before the datagram
    arrives, so that both fall due together: the datagram passes (the window is over), and its row
    comes after the row of the phase that let it through."""
    log = tmp_path / "proxy.jsonl"
    server, a = Node("server"), Node("A")

    async def play() -> None:
        proxy = LossyProxy(server.address, log_path=str(log))
        proxy.start()
        loop = asyncio.get_running_loop()
        real = loop.time
        try:
            proxy.play(scenarios.parse("at 0s for 3s: drop type=pri_msg\nat 3s: clear\n"))
            loop.time = lambda: real() + 3.0
            a.send(a.chat("pri_msg", text="after the outage"), proxy.address)
            while not select.select([server.sock], [], [], 0)[0]:
                await asyncio.sleep(0.01)
        finally:
            loop.time = real
            proxy.stop()

    try:
        asyncio.run(play())
        server.recv()
    finally:
        server.close()
        a.close()
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r.get("phase", r.get("action")) for r in rows] == [0.0, 3.0, "pass"], rows


def test_the_command_line_plays_a_scenario_and_logs_its_phases(tmp_path):
    """A scenario file's rules hold in their time window (private messages dropped for the first
    3 s, then healed); each phase is a line on stderr and a row in the JSON log."""
    log, outage = tmp_path / "proxy.jsonl", tmp_path / "outage.txt"
    outage.write_text("at 0s for 3s: drop type=pri_msg   # an outage\nat 3s: clear\n")
    server, a = Node("server"), Node("A")
    try:
        with proxy_process(server, "--scenario", str(outage), "--log", str(log)) as proxy:
            assert proxy.banner.endswith(f"(0 rules, scenario {outage}: 2 phases)"), proxy.banner
            a.send(a.chat("reg"), proxy.address)
            server.recv()
            deadline = time.monotonic() + WAIT
            while not select.select([server.sock], [], [], 0.05)[0]:  # one every 50 ms until one gets through
                assert time.monotonic() < deadline, "no private message got through after the outage"
                a.send(a.chat("pri_msg", text="are you there"), proxy.address)
            assert proxy.stop() == 0
    finally:
        server.close()
        a.close()
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["phase"], r["rules"]) for r in rows if "phase" in r] == [
        (0.0, [{"line": 1, "rule": "drop type=pri_msg"}]), (3.0, [])]
    fates = [r["action"] for r in rows if r.get("type") == "pri_msg"]
    assert fates[0] == "drop" and fates[-1] == "pass", fates
    assert fates == sorted(fates, key=lambda action: action != "drop"), fates  # the drops, then the heal
    heal = next(i for i, r in enumerate(rows) if r.get("phase") == 3.0)
    assert all(r["action"] == "pass" for r in rows[heal:] if r.get("type") == "pri_msg")  # logged once it ended
    assert "lossy proxy: scenario at 0s: drop type=pri_msg (line 1)\n" in proxy.stderr
    assert "lossy proxy: scenario at 3s: no rules, every datagram passes\n" in proxy.stderr


@contextmanager
def proxy_process(server: Node, *args: str):
    proxy = ProxyProcess(server.address, *args)
    try:
        yield proxy
    finally:
        proxy.stop()


def scripted_traffic(proxy_address, server: Node, count: int) -> list[bytes]:
    """A registers, then sends ``count`` private messages to the server (the proxy does
    not care who gets what) and a sentinel; what the server got before the sentinel."""
    a = Node("A")
    try:
        a.send(a.chat("reg"), proxy_address)
        server.recv()
        for i in range(count):
            a.send(a.chat("pri_msg", text=f"m{i}"), proxy_address)
        end = a.send(a.chat("ack", ack_id=0), proxy_address)
        return server.recv_until(end)
    finally:
        a.close()


def test_the_command_line_logs_and_counts(tmp_path):
    """Rules are numbered from 1 in the order given, in the --stats table and in the log's `rule` field;
    the totals say once each how many datagrams came in, what befell the chat ones, and how many went out."""
    log = tmp_path / "proxy.jsonl"
    server = Node("server")
    try:
        with proxy_process(server, "--rule", "drop type=pri_msg nth=2", "--rule", "duplicate 1 type=pri_msg first=1",
                           "--log", str(log), "--stats") as proxy:
            assert proxy.banner.endswith(f"-> server {HOST}:{server.address[1]} (2 rules)")
            assert texts(scripted_traffic(proxy.address, server, 3)) == ["m0", "m0", "m2"]
            other = Node("X")
            other.send(b"not chat", proxy.address)
            assert server.recv()[0] == b"not chat"
            other.close()
            assert proxy.stop(signal.SIGTERM) == 0
    finally:
        server.close()
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["from"], r["to"], r["type"], r["action"], r["rule"]) for r in rows] == [
        ("A", "server", "reg", "pass", None),
        ("A", "server", "pri_msg", "duplicate", 2),
        ("A", "server", "pri_msg", "drop", 1),
        ("A", "server", "pri_msg", "pass", None),
        ("A", "server", "ack", "pass", None),
    ]
    assert all(isinstance(r["time"], float) and isinstance(r["id"], int) and r["bytes"] > 0 for r in rows)
    assert [r["id"] for r in rows] == [1, 2, 3, 4, 5]
    stats = proxy.stderr
    assert "counts per rule" in stats and "Traceback" not in stats
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in stats.splitlines() if line.startswith("│")]
    assert rows == [["1", "drop type=pri_msg nth=2", "3", "1"], ["2", "duplicate 1 type=pri_msg first=1", "2", "1"]]
    assert "totals: 6 datagrams in (5 chat: drop 1, pass 3, duplicate 1; 1 not chat), 6 out\n" in stats, stats


@pytest.mark.parametrize("rules, said", [([], "(no rules: every datagram passes)"), (["drop p=0.1"], "(1 rule)")])
def test_the_first_line_counts_the_rules_in_words(rules, said):
    server = Node("server")
    try:
        with proxy_process(server, *[arg for rule in rules for arg in ("--rule", rule)]) as proxy:
            assert proxy.banner.endswith(f"-> server {HOST}:{server.address[1]} {said}"), proxy.banner
            assert proxy.stop() == 0
    finally:
        server.close()


def test_stats_of_a_proxy_nothing_went_through():
    server = Node("server")
    try:
        with proxy_process(server, "--stats") as proxy:
            assert proxy.stop() == 0
        assert proxy.stderr.endswith("totals: no traffic\n"), proxy.stderr
    finally:
        server.close()


def test_a_closed_stdout_does_not_stop_the_proxy_or_its_log(tmp_path):
    """`lossy_proxy.py ... | head -0`: the reader leaves before the first line; the proxy still
    forwards, writes its --log, and stops cleanly."""
    log, listen = tmp_path / "proxy.jsonl", quiet_port()
    server, a = Node("server"), Node("A")
    read, write = os.pipe()
    os.close(read)
    proxy = subprocess.Popen([sys.executable, PROXY, "--listen", f"{HOST}:{listen}", "--server", f"{HOST}:{server.address[1]}",
                              "--log", str(log)], cwd=ROOT, stdout=write, stderr=subprocess.PIPE, text=True)
    os.close(write)
    try:
        deadline = time.monotonic() + WAIT
        while not select.select([server.sock], [], [], 0.1)[0]:  # until it listens (or gives up)
            assert proxy.poll() is None and time.monotonic() < deadline, "the proxy did not start or stopped"
            a.send(a.chat("reg"), (HOST, listen))
        assert decode(server.recv()[0]).sender == "A"
        os.kill(proxy.pid, signal.SIGINT)
        _, err = proxy.communicate(timeout=WAIT)
        assert (proxy.returncode, err) == (0, "")
    finally:
        if proxy.poll() is None:
            os.kill(proxy.pid, signal.SIGKILL)
            proxy.communicate()
        server.close()
        a.close()
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert rows and all((r["from"], r["type"], r["action"]) == ("A", "reg", "pass") for r in rows)


def unported(datagrams: list[bytes]) -> list[bytes]:
    """Without the header's port field (bytes 8-9), which differs from run to run."""
    return [d[:8] + d[10:] for d in datagrams]


def test_the_same_seed_repeats_a_run(tmp_path):
    def run(seed: int) -> tuple[list[str], list[bytes]]:
        log = tmp_path / f"run-{seed}-{time.monotonic_ns()}.jsonl"
        server = Node("server")
        try:
            with proxy_process(server, "--rule", "drop p=0.3 type=pri_msg", "--rule", "corrupt p=0.3 type=pri_msg",
                               "--seed", str(seed), "--log", str(log)) as proxy:
                got = scripted_traffic(proxy.address, server, 30)
        finally:
            server.close()
        return [json.loads(line)["action"] for line in log.read_text().splitlines()], got

    actions, got = run(21)
    assert {"drop", "corrupt", "pass"} <= set(actions)
    again, got_again = run(21)
    assert again == actions
    assert unported(got_again) == unported(got)  # the same bytes flipped
    assert run(22)[0] != actions


def test_the_command_line_stops_cleanly_on_sigint_and_sigterm():
    server = Node("server")
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            proxy = ProxyProcess(server.address)
            assert proxy.stop(sig) == 0
            assert proxy.stderr == ""
    finally:
        server.close()


# -- bounds: endpoints, and a flood on one socket -------------------------------------------------


def test_past_its_endpoints_new_sources_are_refused_and_counted_and_the_others_go_on():
    """Every source gets a mirror socket: a flood from ever new ports (spoofed, or many clients)
    would open files until the system says no.  Past --max-endpoints (here the server, A and B),
    a new source's datagrams are dropped and counted; the endpoints there are go on."""
    with network(max_endpoints=3) as (proxy, server, a, b):
        intruders = [Node(f"X{i}") for i in range(5)]
        try:
            for node in intruders:
                node.send(node.chat("reg"), proxy.address)
            sent = pri_msgs(a, b, 1)
            assert b.recv_until(sentinel(a, b)) == sent
            assert proxy.counters()["refused"] == 5
            assert "5 from new endpoints refused" in proxy.call(lambda: totals(proxy.proxy.counters))
        finally:
            for node in intruders:
                node.close()


class EndlessSocket:
    """A socket that always has one more datagram."""

    def __init__(self):
        self.reads = 0

    def recvfrom(self, size: int):
        self.reads += 1
        if self.reads > 100_000:
            raise AssertionError("read on and on: the flood held the loop")
        return b"x", ("127.0.0.1", 9)


def test_a_flood_on_one_socket_gives_the_loop_back_after_a_batch():
    """The loop calls again while the socket has more; meanwhile timers (delayed copies), the other
    sockets and the control API get their turn."""
    proxy = LossyProxy(("127.0.0.1", 9))
    forwarded = []
    proxy._forward = lambda mirror, data, src: forwarded.append(data)
    sock = EndlessSocket()
    proxy._readable(types.SimpleNamespace(sock=sock))
    assert 0 < len(forwarded) == sock.reads <= 1000
