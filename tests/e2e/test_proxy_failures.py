"""The failure paths, with real ChatApp.py processes and tools/lossy_proxy.py between them.

Clients are given the proxy's address as the server's, so every datagram, client to
server and client to client, crosses the proxy, which breaks exactly what a test asks.
Each test also checks, from the proxy's rule counts, that the fault really happened:
a test whose fault was never injected would prove nothing.

Timing: the real defaults (500 ms per try, 5 tries) where the number of tries is what
is tested; elsewhere QUICK (200 ms, still 5 tries), so the suite stays fast without
giving a busy machine a reason to give up.
"""

from __future__ import annotations

import itertools
import json
import re
import signal
import time
from collections import Counter

import pytest

from proto import MSG_TYPES
from proto.fastpath import parse
from tests.procs import HOST, Cluster, Proc, ProxyProcess, ProxyThread, in_group, start_clients
from tools import scenario

DEFAULT: tuple[str, ...] = ()  # 500 ms x 5 tries
QUICK = ("--ack-timeout", "0.2")  # 5 tries too
NOT_IN_GROUP = (
    ">>> You're already not in the group, because the Server didn't receive your previous ack to a group message."
)
TABLE_TITLES = (">>> Client table updated.", ">>> Group table updated.")
ROW = re.compile(r"^\s*(\S+)\s+(\d+\.\d+\.\d+\.\d+)\s+(\d+)\s+(online|offline)\s*$")


# -- helpers -------------------------------------------------------------------------------------


class Net:
    """A server, a lossy proxy in front of it (a ProxyThread in this process), and the
    clients started through it."""

    def __init__(self, cluster: Cluster, server_flags: tuple[str, ...], **proxy_options):
        self.cluster = cluster
        self.server = cluster.server(*server_flags)
        self._thread = ProxyThread(server=(HOST, self.server.port), **proxy_options)
        self.proxy = self._thread.__enter__()
        self.port = self.proxy.address[1]

    def clients(self, names: list[str], *flags: str, interactive: bool = False) -> list[Proc]:
        return start_clients(self.cluster, names, self.port, *flags, interactive=interactive)

    def counts(self) -> dict[str, tuple[int, int]]:
        """Per rule: (datagrams it selected, times its action was taken)."""
        return {text: (selected, applied) for text, selected, applied in self.proxy.rule_counts()}

    def wait_for_count(self, proc: Proc, rule: str, selected: int) -> None:
        """Wait (reading ``proc``'s output meanwhile) until ``rule`` has selected ``selected`` datagrams."""
        proc.wait_until(lambda: self.counts()[rule][0] >= selected, f"{selected} datagrams for '{rule}'", output=False)

    def close(self) -> None:
        self.proxy.clear_rules()  # the clients deregister through it
        self.cluster.stop_all()
        self._thread.__exit__(None, None, None)


@pytest.fixture
def network(cluster):
    """``network(*server_flags, **proxy_options)`` starts a server behind a proxy."""
    started: list[Net] = []

    def start(*server_flags: str, **proxy_options) -> Net:
        net = Net(cluster, server_flags, **proxy_options)
        started.append(net)
        return net

    yield start
    for net in started:
        net.close()


def results(proc: Proc) -> list[str]:
    """What a user reads as results: the ``>>>`` lines, without the tables (nor the address the
    client registers with, which is the proxy's own port in each run)."""
    return [line for line in proc.text.split("\n")
            if line.startswith(">>> ") and line not in TABLE_TITLES and not line.startswith(">>> Registering as ")]


def last_table(proc: Proc) -> dict[str, tuple[str, int, str]] | None:
    """The client table printed last: {name: (ip, port, status)}."""
    start = proc.text.rfind(">>> Client table updated.\n")
    if start < 0:
        return None
    rows = {}
    for line in proc.text[start:].split("\n")[1:]:
        if line.startswith(">>>"):
            break
        if match := ROW.match(line):
            rows[match[1]] = (match[2], int(match[3]), match[4])
    return rows


def ever_offline(proc: Proc, name: str) -> bool:
    return re.search(rf"^\s*{name}\s+\S+\s+\d+\s+offline\s*$", proc.text, re.MULTILINE) is not None


# -- client to server ------------------------------------------------------------------------------


def test_a_request_that_loses_its_first_four_tries_succeeds_once(network):
    net = network(*DEFAULT)
    (a,) = net.clients(["A"], *DEFAULT)
    rule = "drop type=create_group from=A first=4"
    net.proxy.add_rule(rule)
    a.sendline("create_group g")
    a.expect_line(">>> Group g created by Server.", timeout=15)
    assert net.counts()[rule] == (5, 4)  # the fifth and last try got through
    a.sendline("list_groups")
    a.expect_lines(">>> Available group chats:", ">>> g")
    net.server.expect_line(">>> Client A requested listing groups, current groups:")
    assert net.server.text.count("Client A created group g successfully") == 1
    assert "already exists" not in net.server.text + a.text


def test_a_request_that_loses_all_five_tries_gives_up(network):
    net = network(*DEFAULT)
    a, b = net.clients(["A", "B"], *DEFAULT)
    in_group([a], net.server)
    for text in ("kept for later", "and this; too"):
        b.sendline(f"send A {text}")
        b.expect_line(">>> Message received by A.")  # A queues it: it is in group mode
    rule = "drop type=send_group from=A first=5"
    net.proxy.add_rule(rule)
    a.sendline("send_group anyone?")
    a.expect_lines(">>> (g) Server not responding", ">>> (g) Exiting", '>>> (g) (the group message was: "anyone?")',
                   ">>> B: kept for later", ">>> B: and this; too", timeout=15)
    assert a.wait_exit() == 1
    assert net.counts()[rule] == (5, 5)  # five tries, no more
    assert "Traceback" not in a.text and "sent group message" not in net.server.text


def test_lost_answers_from_the_server_leave_one_effect(network):
    """The server's acks are lost, the retransmitted requests arrive: each is processed
    once and answered again, and the client shows one result."""
    net = network(*QUICK)
    a, b = net.clients(["A", "B"], *QUICK)
    lost = "drop type=ack from=server to=A first=2"
    net.proxy.replace_rules([lost, "pass type=create_group from=A"])
    a.sendline("create_group g")
    a.expect_line(">>> Group g created by Server.")  # not "already exists": processed once
    assert net.counts() == {lost: (3, 2), "pass type=create_group from=A": (3, 3)}
    in_group([b, a], net.server, create=False)

    net.proxy.replace_rules([lost, "pass type=send_group from=A"])
    a.sendline("send_group only once")
    a.expect_line(">>> (g) Message received by Server.")
    b.expect_line(">>> (g) Group_Message A: only once")
    assert net.counts() == {lost: (3, 2), "pass type=send_group from=A": (3, 3)}
    b.sendline("send_group and me")  # anything A got twice would have come before this
    a.expect_line(">>> (g) Group_Message B: and me")
    b.expect_line(">>> (g) Message received by Server.")
    net.server.expect_line(">>> Client B sent group message: and me")
    assert results(a).count(">>> Group g created by Server.") == 1 and "already exists" not in a.text
    assert results(a).count(">>> (g) Message received by Server.") == 1
    assert b.text.count("Group_Message A: only once") == 1
    assert net.server.text.count("Client A created group g successfully") == 1
    assert net.server.text.count("Client A sent group message: only once") == 1


# -- client to client ------------------------------------------------------------------------------


def test_a_private_message_lost_five_times_is_reported_and_the_probe_finds_b_alive(network):
    """Only the path A -> B is broken: A gives up and reports B; the server's own probe
    reaches B, so B stays online."""
    net = network(*QUICK)
    (a,) = net.clients(["A"], *DEFAULT)  # A's five tries are what is tested; the others may be quick
    b, c = net.clients(["B", "C"], *QUICK)
    a.expect_clients({"A": "online", "B": "online", "C": "online"})
    lost, kick, probe = "drop type=pri_msg from=A to=B", "pass type=kick from=A", "pass type=probe to=B"
    net.proxy.replace_rules([lost, kick, probe])
    a.sendline("send B are you there?")
    a.expect_lines(">>> No ACK from B, message not delivered", ">>> Report this issue to server", timeout=15)
    net.wait_for_count(a, kick, 1)  # the kick report went to the server
    net.wait_for_count(a, probe, 1)  # and the server probed B
    assert net.counts()[lost] == (5, 5)

    # A client that is really gone, reported after B: its probe started later and lasts as
    # long, so once the server gives up on it, B's probe has been settled too.
    c.signal(signal.SIGKILL)
    c.wait_exit()
    b.sendline("send C hello?")
    b.expect_lines(">>> No ACK from C, message not delivered", ">>> Report this issue to server", timeout=15)
    net.server.expect_line(">>> Client C did not answer the server's probe, marked offline")
    table = net.server.expect_clients({"C": "offline"})
    assert table["B"][2] == "online" and not ever_offline(net.server, "B")
    assert "Client B did not answer" not in net.server.text
    assert "A: are you there?" not in b.text
    net.proxy.clear_rules()
    a.sendline("send B now?")
    a.expect_line(">>> Message received by B.")
    b.expect_line(">>> A: now?")


def test_a_private_message_to_a_killed_client_marks_it_offline_everywhere(network):
    net = network(*QUICK)
    a, b, c = net.clients(["A", "B", "C"], *QUICK)
    kick, probe = "pass type=kick from=A", "pass type=probe to=B"
    net.proxy.replace_rules([kick, probe])
    b.signal(signal.SIGKILL)
    b.wait_exit()
    mark = net.server.mark()
    a.sendline("send B hello?")
    a.expect_lines(">>> No ACK from B, message not delivered", ">>> Report this issue to server")
    net.server.expect_line(">>> Client B did not answer the server's probe, marked offline")
    expected = {"A": "online", "B": "offline", "C": "online"}
    server_table = net.server.expect_clients(expected, since=mark)
    assert net.counts()[kick][0] == 1 and net.counts()[probe][0] == 5  # every try of the probe went to B
    for proc in (a, c):
        assert proc.expect_clients(expected) == server_table
    a.sendline("send C still here")
    a.expect_line(">>> Message received by C.")
    c.expect_line(">>> A: still here")


def test_a_private_message_whose_ack_is_lost_is_shown_once(network):
    net = network(*QUICK)
    a, b = net.clients(["A", "B"], *QUICK)
    lost, arrived = "drop type=ack from=B to=A first=2", "pass type=pri_msg from=A to=B"
    net.proxy.replace_rules([lost, arrived])
    a.sendline("send B just once")
    a.expect_line(">>> Message received by B.")
    b.expect_line(">>> A: just once")
    assert net.counts() == {lost: (3, 2), arrived: (3, 3)}  # B got it three times
    net.proxy.clear_rules()
    a.sendline("send B next")  # anything shown twice would have come before this
    b.expect_line(">>> A: next")
    a.expect_line(">>> Message received by B.")
    assert b.text.count("A: just once") == 1
    assert results(a).count(">>> Message received by B.") == 2 and "No ACK" not in a.text


# -- group messages ----------------------------------------------------------------------------------


def test_a_member_that_never_acks_is_removed_and_the_rest_go_on(network):
    net = network(*DEFAULT)
    a, b, c = net.clients(["A", "B", "C"], *QUICK)
    in_group([a, b, c], net.server)
    rule = "drop type=grp_msg to=C first=5"
    net.proxy.add_rule(rule)
    a.sendline("send_group hello all")
    a.expect_line(">>> (g) Message received by Server.")
    b.expect_line(">>> (g) Group_Message A: hello all")
    net.server.expect_line(">>> Client C not responsive, removed from g", timeout=15)
    net.server.expect_groups({"g": ["A", "B"]})
    assert net.counts()[rule] == (5, 5)
    b.sendline("send_group still here")
    b.expect_line(">>> (g) Message received by Server.")
    a.expect_line(">>> (g) Group_Message B: still here")
    a.sendline("list_members")
    a.expect_lines(">>> (g) Members in the group g:", ">>> (g) A", ">>> (g) B")
    c.sendline("list_members")
    c.expect_line(NOT_IN_GROUP)
    assert "Group_Message" not in c.text
    assert net.counts()[rule] == (5, 5)  # nothing more was sent to C


def test_a_member_that_acks_late_stays_and_sees_each_message_once(network):
    net = network(*DEFAULT)
    a, b, c = net.clients(["A", "B", "C"], *QUICK)
    in_group([a, b, c], net.server)
    four, c_acks = "drop type=grp_msg to=C first=4", "pass type=ack from=C to=server"
    net.proxy.replace_rules([four, c_acks])
    a.sendline("send_group first")
    c.expect_line(">>> (g) Group_Message A: first", timeout=15)  # the fifth and last try
    # C's ack may leave a little after the line (acks wait a moment for others): the rules below
    # must not see it, or it would count as the first of C's acks to 'second'.
    net.wait_for_count(c, c_acks, 1)
    assert net.counts()[four] == (5, 4)

    # Then C gets three copies: its first two acks are lost.
    to_c, acks = "drop type=grp_msg to=C first=2", "drop type=ack from=C to=server first=2"
    net.proxy.replace_rules([to_c, acks, "pass type=grp_msg to=C"])
    b.sendline("send_group second")
    c.expect_line(">>> (g) Group_Message B: second", timeout=15)
    net.wait_for_count(c, acks, 3)
    assert net.counts()[to_c] == (5, 2) and net.counts()["pass type=grp_msg to=C"][0] == 3  # tries 3-5 arrived

    net.proxy.clear_rules()
    a.sendline("send_group third")
    c.expect_line(">>> (g) Group_Message A: third")
    c.sendline("list_members")
    c.expect_lines(">>> (g) Members in the group g:", ">>> (g) A", ">>> (g) B", ">>> (g) C")
    for text in ("A: first", "B: second", "A: third"):
        assert c.text.count(f"Group_Message {text}") == 1
    assert "not responsive" not in net.server.text


def test_group_messages_duplicated_reordered_and_late_crash_nobody(network):
    """Issue 11, docs/lossy-proxy.md recipe 7 with three members on terminals and a sender
    typing group messages 0.3 s apart: acks wait in batches while retransmissions, delayed and
    overtaking messages arrive together.  No member crashes (no traceback, no "Unhandled exception", no
    prompt_toolkit "Press ENTER"), each shows each message once, and each leaves on Ctrl+C."""
    net = network(*DEFAULT, seed=11)
    members = net.clients(["B", "C", "D"], *DEFAULT, interactive=True)
    (sender,) = net.clients(["A"], *DEFAULT)
    for proc in members:
        proc.expect_clients({"A": "online"})
    in_group([sender, *members], net.server)
    rules = ["duplicate 3 type=pri_msg", "reorder type=grp_msg", "delay 200ms±150ms"]
    net.proxy.replace_rules(rules)
    texts = [f"m{i}" for i in range(8)]
    for text in texts:
        sender.sendline(f"send_group {text}")
        time.sleep(0.3)  # the pace of the reproduction (typed commands wait for each other anyway)
    for text in texts:
        for proc in members:
            proc.expect(rf"^>>> \(g\) Group_Message A: {text}$", timeout=20, flags=re.MULTILINE)
    sender.wait_until(lambda: results(sender).count(">>> (g) Message received by Server.") == len(texts),
                      "every group message confirmed", timeout=20)
    counts = net.counts()
    assert counts[rules[1]][1] >= len(texts) * len(members) and counts[rules[2]][1] > 0, counts
    net.proxy.clear_rules()
    for proc in members:
        proc.send("\x03")  # Ctrl+C
    for proc in [*members, sender]:
        if proc is sender:
            sender.sendline("dereg A")
        proc.expect_line(">>> You are Offline. Bye.")
        assert proc.wait_exit() == 0
    net.server.expect_clients({name: "offline" for name in "ABCD"})
    for proc in [*members, sender]:
        for crash in ("Traceback", "Unhandled exception", "Press ENTER", "Exception in callback", "internal error"):
            assert crash not in proc.text, f"{proc.label}: {crash}"
    for proc in members:
        for text in texts:
            assert results(proc).count(f">>> (g) Group_Message A: {text}") == 1, (proc.label, text)


GROUP_LINE = re.compile(r"^>>> \(g\) Group_Message (\S+): (\S+)$", re.MULTILINE)


def arrivals(net: Net) -> dict[str, list[int]]:
    """Start recording, per member, the numbers of the group messages the proxy passes on to it, in
    the order they go out (the order they arrive: each member has its own loopback socket)."""
    lossy = net.proxy.proxy
    passed: list[tuple[tuple, int]] = []
    send = lossy._send

    def recording(mirror, data, dst):
        pkt = parse(data)
        if MSG_TYPES[pkt.type] == "grp_msg":
            passed.append((dst, pkt.payload.seq))
        send(mirror, data, dst)

    net.proxy.call(setattr, lossy, "_send", recording)  # on the proxy's loop, between two datagrams

    class ByMember(dict):
        def __missing__(self, name):
            names = net.proxy.call(lambda: dict(lossy.names))
            return [seq for dst, seq in list(passed) if names.get(dst) == name]

    return ByMember()


def test_members_agree_on_the_order_of_group_messages(network):
    """Issue 13, item 4, through the real proxy: three of five members send group messages while
    the network drops, holds back and delays them, so that each member receives them in an order
    of its own (checked from what the proxy passed on); every pair of members shows the messages
    both showed in the same order, each message once."""
    retries = ("--retries", "8")  # a member that loses all its copies of one is removed: not a test of order
    net = network(*retries, seed=13)
    members = net.clients(["A", "B", "C", "D", "E"], *retries)
    in_group(members, net.server)
    passed = arrivals(net)
    rules = ["drop p=0.3 type=grp_msg", "reorder type=grp_msg p=0.4", "delay 120ms±110ms type=grp_msg"]
    net.proxy.replace_rules(rules)
    senders = members[:3]
    texts = {proc.name: [f"{proc.name}{i}" for i in range(5)] for proc in senders}
    for i in range(5):
        for proc in senders:
            proc.sendline(f"send_group {texts[proc.name][i]}")
    for proc in senders:
        proc.wait_until(lambda: results(proc).count(">>> (g) Message received by Server.") == 5,
                        "its five group messages confirmed", timeout=30)
    expected = {proc.name: sorted(t for name, ts in texts.items() if name != proc.name for t in ts) for proc in members}
    for proc in members:
        proc.wait_until(lambda: sorted(m[2] for m in GROUP_LINE.finditer(proc.text)) == expected[proc.name],
                        "every other member's group messages shown", timeout=30)
    counts = net.counts()
    assert all(counts[rule][1] > 0 for rule in rules), counts
    first_arrivals = {proc.name: list(dict.fromkeys(passed[proc.name])) for proc in members}  # copies left out
    assert any(seqs != sorted(seqs) for seqs in first_arrivals.values()), f"the arrival order changed: {first_arrivals}"
    shown = {proc.name: [m[2] for m in GROUP_LINE.finditer(proc.text)] for proc in members}
    for first, second in itertools.combinations(members, 2):
        common = set(shown[first.name]) & set(shown[second.name])
        assert [t for t in shown[first.name] if t in common] == [t for t in shown[second.name] if t in common], (
            first.name, second.name, shown)
    assert "not responsive" not in net.server.text


def test_since_black_holes_a_client_from_the_first_kick_on(network):
    """docs/lossy-proxy.md recipe 9's trigger with real clients: A's message to B is lost and A reports B; from
    that kick on everything to B is dropped, so the server's probe of B fails too and B is marked
    offline (without the trigger, B answers the probe and stays online: recipe 2)."""
    net = network(*QUICK)
    a, b = net.clients(["A", "B"], *QUICK)
    rules = ["drop type=pri_msg from=A to=B", "drop to=B since=kick during=..8s"]
    net.proxy.replace_rules(rules)
    a.sendline("send B hello")
    a.expect_lines(">>> No ACK from B, message not delivered", ">>> Report this issue to server")
    net.server.expect_line(">>> Client B did not answer the server's probe, marked offline")
    counts = net.counts()
    assert counts[rules[0]] == (5, 5) and counts[rules[1]][1] >= 5, counts  # A's tries; the probes and more


def test_corrupted_datagrams_stop_nobody(network):
    """Bytes flipped in 15 datagrams through the proxy, a third of them, whatever their type: each
    is refused as malformed or forged, or taken for what it now says (UDP's checksum is the sender's
    kernel's, after the proxy), and everyone goes on: messages in both directions afterwards.  (Five
    tries of one request all corrupted would end in the spec's "not responding": p=0.3 and the seed
    keep that away.)"""
    net = network(*QUICK, seed=7)
    a, b = net.clients(["A", "B"], *QUICK)
    rule = "corrupt 3 p=0.3 count=15"
    net.proxy.replace_rules([rule])
    sent = 0
    while net.counts()[rule][1] < 15:
        sent += 1
        a.sendline(f"send B m{sent}")
        a.expect(r"^>>> (Message received by B\.|No ACK from B, message not delivered)\n", flags=re.MULTILINE)
        assert sent < 50, net.counts()
    for sender, receiver in ((a, b), (b, a)):
        sender.sendline(f"send {receiver.name} after the noise")
        sender.expect_line(f">>> Message received by {receiver.name}.")
        receiver.expect_line(f">>> {sender.name}: after the noise")
    for proc in (net.server, a, b):
        assert "Traceback" not in proc.text and not proc.eof, proc.label


def test_a_scenario_partitions_a_client_then_heals(network, tmp_path):
    """A scenario file played by the real proxy (tools/scenario.py through LossyProxy.play, the
    code behind --scenario), started once the clients are in: A is cut off for 10 s.  B's message
    to A fails, B reports A, the server's probe fails and A is marked offline; the proxy logs the
    heal; then A's next command finds it was forgotten, A registers again, and B reaches it.  (The
    outage outlasts the server's tries of its last table update to A, about 3 s in at QUICK's pace:
    one that got through would tell A it was marked offline, and A would exit instead.)"""
    log = tmp_path / "proxy.jsonl"
    net = network(*QUICK, seed=14, log_path=str(log))
    a, b = net.clients(["A", "B"], *QUICK)
    outage = tmp_path / "outage.txt"
    outage.write_text("at 0s for 10s: drop from=A\nat 0s for 10s: drop to=A\nat 10s: clear\n", encoding="utf-8")
    lossy = net.proxy.proxy
    net.proxy.call(lossy.play, scenario.load(outage))
    b.sendline("send A are you there")
    b.expect_lines(">>> No ACK from A, message not delivered", ">>> Report this issue to server")
    net.server.expect_line(">>> Client A did not answer the server's probe, marked offline")

    def phases() -> list[dict]:
        return [row for row in map(json.loads, log.read_text().splitlines()) if "phase" in row]

    b.wait_until(lambda: len(phases()) == 2, "the proxy's log of the heal", timeout=20, output=False)
    assert [(row["phase"], [r["line"] for r in row["rules"]]) for row in phases()] == [(0.0, [1, 2]), (10.0, [])]
    cut = net.counts()
    assert cut["drop to=A during=0s..10s"][1] >= 10, cut  # B's five tries and the server's five probes
    assert "are you there" not in a.text
    a.sendline("list_groups")
    a.expect_line(">>> The server no longer knows this client (it may have restarted): registering again")
    a.expect_line(">>> Welcome, You are registered.")
    # B sends to the session its table holds: wait for the one A's new registration started
    b.expect_clients({"A": "offline"})
    b.expect_clients({"A": "online"})
    b.sendline("send A welcome back")
    b.expect_line(">>> Message received by A.")
    a.expect_line(">>> B: welcome back")
    assert net.counts() == cut  # nothing dropped after the heal


# -- table updates -------------------------------------------------------------------------------


def test_tables_converge_when_updates_are_lost(network):
    net = network(*QUICK, seed=5)
    a, b, c = net.clients(["A", "B", "C"], *QUICK)
    rules = [
        "drop type=table to=A first=7",  # more than one round of tries: the server comes back to A later
        "drop type=ack from=B to=server first=3",  # B has the update; the server does not know it
        "drop type=table to=C p=0.5",
    ]
    net.proxy.replace_rules(rules)
    (d,) = net.clients(["D"], *QUICK)
    d.sendline("dereg D")
    d.expect_line(">>> You are Offline. Bye.")
    def d_offline():
        table = last_table(net.server)
        return table if table and "D" in table and table["D"][2] == "offline" else None

    target = net.server.wait_until(d_offline, "a server table with D offline")
    assert set(target) == {"A", "B", "C", "D"}
    for proc in (a, b, c):
        proc.wait_until(lambda proc=proc: last_table(proc) == target, "its table to equal the server's", timeout=20)
    counts = net.counts()
    assert counts[rules[0]][1] == 7 and counts[rules[1]][1] == 3 and counts[rules[2]][1] >= 1, counts


# -- a whole session -------------------------------------------------------------------------------------


def session(cluster: Cluster, tmp_path, *proxy_args: str) -> dict:
    """A scripted three-client session (private messages, a group, the list commands)
    through tools/lossy_proxy.py run as a process with ``proxy_args``; each node's
    visible results, and the proxy's log."""
    server = cluster.server(*QUICK)
    log = tmp_path / "proxy.jsonl"
    proxy = ProxyProcess((HOST, server.port), "--log", str(log), *proxy_args)
    try:
        procs = start_clients(cluster, ["A", "B", "C"], proxy.address[1], *QUICK, timeout=20)
        a, b, c = procs

        def step(proc: Proc, command: str, *lines: str, seen: tuple = ()) -> None:
            proc.sendline(command)
            proc.expect_lines(*lines)
            for other, line in seen:
                other.expect_line(line)

        step(a, "send B hello B", ">>> Message received by B.", seen=[(b, ">>> A: hello B")])
        step(b, "send C hi C; from B", ">>> Message received by C.", seen=[(c, ">>> B: hi C; from B")])
        step(a, "list_groups", ">>> No available group right now")
        step(c, "create_group g", ">>> Group g created by Server.")
        step(b, "create_group g", ">>> Group g already exists.")
        step(a, "list_groups", ">>> Available group chats:", ">>> g")
        for proc in procs:
            step(proc, "join_group g", ">>> Entered group g successfully")
        step(a, "send_group hi all", ">>> (g) Message received by Server.",
             seen=[(b, ">>> (g) Group_Message A: hi all"), (c, ">>> (g) Group_Message A: hi all")])
        step(b, "send_group hello back", ">>> (g) Message received by Server.",
             seen=[(a, ">>> (g) Group_Message B: hello back"), (c, ">>> (g) Group_Message B: hello back")])
        step(c, "list_members", ">>> (g) Members in the group g:", ">>> (g) A", ">>> (g) B", ">>> (g) C")
        step(a, "send C not now", ">>> (g) Invalid command")
        step(b, "leave_group", ">>> Leave group chat g")
        step(b, "send C queued for you", ">>> Message received by C.")  # C is in group mode: it waits
        step(a, "send_group bye", ">>> (g) Message received by Server.", seen=[(c, ">>> (g) Group_Message A: bye")])
        step(c, "leave_group", ">>> Leave group chat g", ">>> B: queued for you")
        step(a, "leave_group", ">>> Leave group chat g")
        step(c, "send A see you", ">>> Message received by A.", seen=[(a, ">>> C: see you")])
        for proc in procs:
            step(proc, f"dereg {proc.name}", ">>> You are Offline. Bye.")
            assert proc.wait_exit() == 0
    finally:
        cluster.stop_all()
        proxy.stop()
    actions = Counter(json.loads(line)["action"] for line in log.read_text().splitlines())
    lines = {"server": results(server), **{proc.name: results(proc) for proc in procs}}
    return {"lines": lines, "actions": actions}


@pytest.fixture(scope="module")
def clean_session(tmp_path_factory):
    nodes = Cluster()
    try:
        return session(nodes, tmp_path_factory.mktemp("clean"))
    finally:
        nodes.stop_all()


def same_results(clean: dict, faulty: dict) -> None:
    for name, lines in clean["lines"].items():
        assert faulty["lines"][name] == lines, name
    assert set(faulty["lines"]) == set(clean["lines"])


def test_the_session_without_faults(clean_session):
    """The reference for the tests below; also proves the script sees every result."""
    lines = clean_session["lines"]
    assert set(clean_session["actions"]) == {"pass"}
    assert lines["A"][-2:] == [">>> C: see you", ">>> You are Offline. Bye."]
    assert lines["C"][-2:] == [">>> Message received by A.", ">>> You are Offline. Bye."]
    assert ">>> Client C requested listing members of group g:" in lines["server"]
    assert not any("Traceback" in line or "not responding" in line for node in lines.values() for line in node)


def test_duplicated_datagrams_change_nothing(cluster, tmp_path, clean_session):
    faulty = session(cluster, tmp_path, "--rule", "duplicate 3")
    assert faulty["actions"]["duplicate"] > 100
    same_results(clean_session, faulty)


def test_reordered_datagrams_change_nothing(cluster, tmp_path, clean_session):
    faulty = session(cluster, tmp_path, "--rule", "reorder 50% p=0.3", "--seed", "3")
    assert faulty["actions"]["reorder"] > 10
    same_results(clean_session, faulty)


def test_held_datagrams_change_nothing(cluster, tmp_path, clean_session):
    faulty = session(cluster, tmp_path, "--rule", "hold p=0.3", "--seed", "3", "--max-hold", "0.3")
    assert faulty["actions"]["hold"] > 10
    same_results(clean_session, faulty)


def test_twenty_percent_loss_gives_the_same_results(cluster, tmp_path, clean_session):
    faulty = session(cluster, tmp_path, "--rule", "drop p=0.2", "--seed", "1")
    actions = faulty["actions"]
    print(f"proxy actions: {dict(actions)}")
    assert actions["drop"] >= 0.1 * sum(actions.values()), actions
    same_results(clean_session, faulty)
