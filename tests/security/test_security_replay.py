"""Replay attacks on real processes: a real session is captured on lo with
``tools/sniff.py -w`` and resent with ``tools/replay.py`` to the server and to a
client that is still running, from another port and from the original one
(after its owner left), and as root from forged source addresses.  Nothing may
change: no registration, no second dereg, no message shown again, no group
message sent again; and the nodes count what they dropped."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from scapy.layers.inet import UDP
from scapy.utils import rdpcap, wrpcap

from proto import MSG_TYPES
from proto.fastpath import parse
from proto.messages import CLIENT, SERVER, requests
from node.reliable import REPLY_MEMORY_WINDOWS, RetryPolicy
from tests.procs import HOST, WAIT, in_group, quiet_port
from tests.security_tools import drain, finish, needs_root, spoof

SHORT_MEMORY = ("--ack-timeout", "0.25", "--retries", "4")  # a 1 s retry window: answers remembered 4 s
# What a client asks the server within its session (a registration's reg and confirm are counted apart).
REQUESTS = requests(CLIENT, SERVER) - {"reg", "confirm"}

pytestmark = needs_root  # a live capture on lo needs a packet socket


class Captured:
    """The chat datagrams of a capture: (source port, destination port, type, bytes), and the frames."""

    def __init__(self, pcap: Path):
        self.pcap = pcap
        self.frames = [frame for frame in rdpcap(str(pcap)) if UDP in frame]
        self.datagrams = []
        for frame in self.frames:
            data = bytes(frame[UDP].payload)
            self.datagrams.append((frame[UDP].sport, frame[UDP].dport, MSG_TYPES[parse(data).type], data))

    def kinds(self, sport: int | None = None) -> Counter:
        return Counter(kind for src, _, kind, _ in self.datagrams if sport is None or src == sport)

    def only_from(self, port: int, path: Path) -> Path:
        """A capture of the datagrams sent from ``port`` alone."""
        wrpcap(str(path), [frame for frame in self.frames if frame[UDP].sport == port])
        return path


CAPTURE_TRIES = 3


def record_session(cluster, tools, folder: Path, *client_flags: str):
    """Ann and Bob chat privately and in group g while sniff.py writes a capture; then Ann
    deregisters.  Returns the server, Bob (still in g), Ann's old port and the capture.

    sniff.py filters ports in Python, after its packet socket has taken in all of lo: when
    other tests load lo and the CPUs, it can miss datagrams.  A capture that misses any is
    recorded again, with new processes."""
    for attempt in range(1, CAPTURE_TRIES + 1):
        recorded = record_once(cluster, tools, folder / f"session-{attempt}.pcap", client_flags)
        if recorded is not None:
            return recorded
        print(f"capture {attempt} missed datagrams (a busy loopback?): recording again")
    raise AssertionError(f"sniff.py missed datagrams in {CAPTURE_TRIES} captures in a row")


def record_once(cluster, tools, pcap: Path, client_flags: tuple[str, ...]):
    server = cluster.server()
    ann_port, bob_port = quiet_port(), quiet_port()
    sniff = tools("sniff.py", "-w", str(pcap), *[arg for port in (server.port, ann_port, bob_port)
                                                  for arg in ("--port", str(port))])
    sniff.wait_for(r"capturing on lo", stream="err")  # printed once the socket is open: nothing is missed
    ann = cluster.client("Ann", server, port=ann_port)
    bob = cluster.client("Bob", server, *client_flags, port=bob_port)
    ann.expect_clients({"Bob": "online"})
    ann.sendline("send Bob hello Bob")
    ann.expect_line(">>> Message received by Bob.")
    bob.expect_line(">>> Ann: hello Bob")
    bob.sendline("create_group g")
    bob.expect_line(">>> Group g created by Server.")
    for proc in (bob, ann):
        proc.sendline("join_group g")
        proc.expect_line(">>> Entered group g successfully")
    bob.sendline("send_group from Bob")
    ann.expect_line(">>> (g) Group_Message Bob: from Bob")
    ann.sendline("send_group from Ann")
    bob.expect_line(">>> (g) Group_Message Ann: from Ann")
    ann.sendline("dereg Ann")
    ann.expect_line(">>> You are Offline. Bye.")
    assert ann.wait_exit() == 0
    bob.expect_clients({"Ann": "offline"})
    # The capture is complete once it holds Bob's ack of the table that shows Ann offline.
    try:
        update = sniff.wait_for(r"server → Bob +table .*Ann\S* .*offline", timeout=5)
        sniff.wait_for(r"Bob → server +ack .*↩ table", after=update, timeout=5)
    except AssertionError:
        pass  # judged below, with what it did capture
    assert sniff.interrupt() == 0, sniff.dump()
    captured = Captured(pcap)
    kinds = captured.kinds()
    expected = {"reg": 2, "reg_ack": 2, "confirm": 2, "pri_msg": 1, "create_group": 1, "join_group": 2, "send_group": 2,
                "grp_msg": 2, "dereg": 1, "table": 2}
    ann_offline = any(kind == "table" and dport == bob_port
                      and any(row.client == "Ann" and not row.online for row in parse(data).payload.entries)
                      for _, dport, kind, data in captured.datagrams)
    unmatched = [line for line in sniff.out if "request not seen" in line]
    if ann_offline and not unmatched and all(kinds[kind] >= n for kind, n in expected.items()):
        return server, bob, ann_port, captured
    finish(bob)
    finish(server)
    return None


def test_replayed_capture_changes_nothing(cluster, tools, tmp_path):
    server, bob, ann_port, captured = record_session(cluster, tools, tmp_path)
    bob_port = bob.port
    online = [bob]  # the clients that list the members of g after each step
    drain(server, bob)

    def nothing_changed(step: str) -> None:
        """Each online client lists the members of g (a round trip, after what was replayed);
        that must be all that they and the server printed since the last step."""
        procs = [server, *online]
        marks = {proc: proc.mark() for proc in procs}
        names = [proc.name for proc in online]
        listing = ["Members in the group g:", *names]
        expected = {proc: [f">>> (g) {line}" for line in listing] for proc in online}
        expected[server] = [line for name in names for line in
                            (f">>> Client {name} requested listing members of group g:", *(f">>> {n}" for n in names))]
        for proc in online:  # one after the other: the server's lines come in this order
            proc.sendline("list_members")
            proc.expect_lines(*expected[proc])

        def shown(proc) -> list[str]:
            # The server notes the first drop of each kind: not a change.
            return [line for line in proc.lines_since(marks[proc]) if line.startswith(">>>")
                    and not line.startswith(">>> Dropped")]

        server.wait_until(lambda: len(shown(server)) >= len(expected[server]), "the listings")
        drain(*procs)
        for proc, lines in expected.items():
            assert shown(proc) == lines, f"after {step}, {proc.label} printed:\n" + "\n".join(shown(proc))

    def replay(capture: Path, to: int, *flags: str) -> list[str]:
        tool = tools("replay.py", str(capture), "--to", f"{HOST}:{to}", "--fast", "--wait", "0.3", *flags)
        assert tool.wait() == 0, tool.dump()
        return tool.out

    # (a) The whole capture to the server, from another port, while Ann is offline: her
    # registration must not be taken again, nor anything else done in anyone's name.
    out = replay(captured.pcap, server.port)
    requests = sum(n for kind, n in captured.kinds().items() if kind in REQUESTS)
    # Each confirm too: no registration waits at that address (the replayed regs' reg_acks went to the
    # replayer, and the confirms carry the tokens of long-gone registrations).
    requests += captured.kinds()["confirm"]
    refused = [line for line in out if line.startswith("recv") and "not_registered" in line]
    assert len(refused) == requests, "\n".join(out)  # each request answered: no such session here
    nothing_changed("replaying the capture to the server from another port")

    # (c) Ann's own datagrams to the server from her old port, Ann still offline.
    from_ann = captured.only_from(ann_port, tmp_path / "ann.pcap")
    replay(from_ann, server.port, "--bind", f"{HOST}:{ann_port}")
    nothing_changed("replaying Ann's datagrams to the server from her old port")

    # Ann comes back on another port and joins g: a replayed dereg must not take her
    # offline, and a group message sent again would reach her.
    ann = cluster.client("Ann", server)
    joined = server.mark()
    ann.sendline("join_group g")
    ann.expect_line(">>> Entered group g successfully")
    server.expect_groups({"g": ["Bob", "Ann"]}, since=joined)  # the server's lines of the join, before the next mark
    bob.expect_clients({"Ann": "online"})
    online.append(ann)
    drain(server, bob, ann)

    # (b) The whole capture to Bob, from another port; then Ann's datagrams from her old one.
    replay(captured.pcap, bob_port)
    nothing_changed("replaying the capture to Bob from another port")
    replay(from_ann, bob_port, "--bind", f"{HOST}:{ann_port}")
    nothing_changed("replaying Ann's datagrams to Bob from her old port")

    # (d) Forged sources (root): Bob's own datagrams from Bob's address, with his valid
    # token, while he is online; Ann's old datagrams from her new address.  First let the
    # server forget its answers to Bob's requests (it would send them again, unprocessed):
    # then only the request ids, older than his latest, tell a replay.
    answered = max(float(frame.time) for frame, (sport, dport, kind, _) in zip(captured.frames, captured.datagrams)
                   if sport == server.port and dport == bob_port and kind in ("ack", "reg_ack"))
    time.sleep(max(0.0, answered + REPLY_MEMORY_WINDOWS * RetryPolicy().window + 0.5 - time.time()))
    for sport, _, kind, data in captured.datagrams:
        if sport == bob_port and kind != "ack":
            spoof(data, (HOST, bob_port), (HOST, server.port))
        if sport == ann_port and kind != "ack":
            spoof(data, (HOST, ann.port), (HOST, server.port))
    nothing_changed("forging Bob's and Ann's addresses")

    bob_drops = finish(bob)
    assert finish(ann)["unknown sender"] == 0
    counts = finish(server)
    print(f"\nserver drops: {dict(counts)}\nBob's drops: {dict(bob_drops)}")
    every, bobs, anns = captured.kinds(), captured.kinds(bob_port), captured.kinds(ann_port)
    bob_requests = sum(n for kind, n in bobs.items() if kind in REQUESTS)
    ann_requests = sum(n for kind, n in anns.items() if kind in REQUESTS)
    # (a) every reg is a replay and every other request comes from no session at that address
    # ((c), within the server's memory of its answers, only gets the same answers again);
    # (d) Bob's requests and both registrations are replays, Ann's requests carry her old token.
    assert counts["replayed"] >= every["reg"] + bobs["reg"] + bob_requests + anns["reg"], counts
    assert counts["unregistered"] >= requests, counts
    assert counts["forged"] == ann_requests, counts
    # (b) and (c): datagrams only the server may send, from elsewhere; Ann's private message
    # from an address that is not hers now.
    assert bob_drops["not from server"] >= every["grp_msg"] + every["table"], bob_drops
    assert bob_drops["unknown sender"] >= 1, bob_drops
    assert bob.text.count(">>> Ann: hello Bob") == 1 and bob.text.count("Group_Message Ann: from Ann") == 1
    assert ann.text.count("Group_Message Bob: from Bob") == 0


def test_group_message_forged_from_the_servers_address(cluster, tools, tmp_path):
    """Bob's own copy of a group message (his token in it), sent again in the server's name
    until well after Bob has forgotten its id: the server's ids grow, so an id older than
    ones forgotten is a replay, and it is never shown again."""
    # Bob remembers his answers for 4 x 1 s only, so that window passes soon.
    server, bob, _, captured = record_session(cluster, tools, tmp_path, *SHORT_MEMORY)
    to_bob = [data for sport, dport, kind, data in captured.datagrams
              if kind == "grp_msg" and sport == server.port and dport == bob.port]
    assert len(to_bob) == 1, captured.datagrams
    deadline = time.monotonic() + 2 * 4 * 1.0 + WAIT  # the id is forgotten after 4 to 8 s
    while bob.text.count("Group_Message Ann: from Ann") == 1 and time.monotonic() < deadline:
        spoof(to_bob[0], (HOST, server.port), (HOST, bob.port))
        bob._read(0.3)  # until Bob prints something, or 0.3 s: then forge it again
        drain(bob)
    assert bob.text.count("Group_Message Ann: from Ann") == 1, "a replayed group message was shown again"
    assert finish(bob)["replayed"] >= 1


def capture_for_bob(tools, folder: Path, server, ann, bob, dee):
    """Ann's private message to Bob and Bob's copy of a group message of Dee's, captured with
    sniff.py (again, with new messages, if a busy loopback made it miss one): their bytes."""
    for attempt in range(1, CAPTURE_TRIES + 1):
        pcap = folder / f"for-bob-{attempt}.pcap"
        sniff = tools("sniff.py", "-w", str(pcap), *[arg for port in (server.port, ann.port, bob.port)
                                                      for arg in ("--port", str(port))])
        sniff.wait_for(r"capturing on lo", stream="err")
        ann.sendline(f"send Bob secret {attempt} for Bob")
        ann.expect_line(">>> Message received by Bob.")  # queued by Bob, who is in group mode
        dee.sendline(f"send_group secret {attempt} for the group")
        bob.expect_line(f">>> (g) Group_Message Dee: secret {attempt} for the group")
        try:
            sniff.wait_for(r"Ann → Bob +pri_msg", timeout=5)
            sniff.wait_for(r"server → Bob +grp_msg", timeout=5)
        except AssertionError:
            pass  # judged below, with what it did capture
        assert sniff.interrupt() == 0, sniff.dump()
        datagrams = Captured(pcap).datagrams
        private = [data for sport, dport, kind, data in datagrams if kind == "pri_msg" and dport == bob.port]
        group = [data for sport, dport, kind, data in datagrams if kind == "grp_msg" and dport == bob.port]
        if private and group:
            return private[0], group[0]
        print(f"capture {attempt} missed datagrams (a busy loopback?): sending again")
    raise AssertionError(f"sniff.py missed datagrams in {CAPTURE_TRIES} captures in a row")


def test_captured_messages_replayed_to_other_receivers_are_not_shown(cluster, tools, tmp_path):
    """A private message Ann sent Bob, replayed from Ann's address to Cy and to Bob once he has
    restarted (a new session); Bob's copy of a group message, replayed from the server's
    address to Cy, who joined the group since: none is shown."""
    server = cluster.server()
    ann, bob, cy, dee = cluster.clients(["Ann", "Bob", "Cy", "Dee"], server)
    in_group([dee, bob], server)
    private, group = capture_for_bob(tools, tmp_path, server, ann, bob, dee)
    # Each sync is sent after a replay, so received after it: once shown, the replay was handled.
    spoof(private, (HOST, ann.port), (HOST, cy.port))
    ann.sendline("send Cy sync")
    cy.expect_line(">>> Ann: sync")
    cy.sendline("join_group g")
    cy.expect_line(">>> Entered group g successfully")
    spoof(group, (HOST, server.port), (HOST, cy.port))
    dee.sendline("send_group sync")
    cy.expect_line(">>> (g) Group_Message Dee: sync")

    finish(bob)  # Bob deregisters and starts again on the same port: a new session
    again = cluster.client("Bob", server, port=bob.port)
    ann.expect_clients({"Bob": "online"})
    again.expect_clients({"Ann": "online"}, since=0)
    spoof(private, (HOST, ann.port), (HOST, again.port))
    ann.sendline("send Bob sync")
    again.expect_line(">>> Ann: sync")
    assert "secret" not in cy.text and "secret" not in again.text, "not shown, not queued"
    cy_drops, bob_drops = finish(cy), finish(again)
    assert cy_drops["for another session"] == 1 and cy_drops["forged"] == 1, cy_drops
    assert bob_drops["for another session"] == 1, bob_drops
