"""Bounds an outsider cannot get past, with real processes on 127.0.0.1: the queue of
private messages a client in group mode holds, and the names and groups one IP address
may take on the server."""

from __future__ import annotations

from node.limits import Limits
from proto import PriMsg
from tests.procs import HOST
from tests.security_tools import rss_kib, status

FULL = ">>> Bob's queue of messages is full (Bob is in a group chat), message not delivered"


def test_queue_of_private_messages_in_group_mode_is_bounded(cluster, peers):
    """Bob is in a group.  Ann sends messages of 4,000 bytes: the first 16 fill Bob's 64 KiB and
    are queued, the next ones are refused and Ann says so.  Then a registered peer sends Bob
    3,000 more as fast as Bob answers: every one refused, Bob's memory does not grow with them,
    and after leave_group Bob prints exactly the 16 queued ones."""
    server = cluster.server()
    # Bob's rate limit off: it would only slow the flood down, the queue is what is tested here.
    ann, bob = cluster.clients(["Ann", "Bob"], server, "--rate-limit", "0")
    bob.sendline("create_group g")
    bob.expect_line(">>> Group g created by Server.")
    bob.sendline("join_group g")
    bob.expect_line(">>> Entered group g successfully")

    fit = Limits().queue_bytes // 4000
    texts = [f"{i:04d}" + "x" * 3996 for i in range(fit + 2)]
    for text in texts[:fit]:
        ann.sendline(f"send Bob {text}")
        ann.expect_line(">>> Message received by Bob.")
    for text in texts[fit:]:
        ann.sendline(f"send Bob {text}")
        ann.expect_line(FULL)

    mal = peers()
    mal.register("Mal", (HOST, server.port))
    bob.expect_clients({"Mal": "online"})
    to = mal.session_of("Bob")
    before = rss_kib(bob.pid)
    flood = 3000
    for _ in range(flood):
        pkt = mal.header("pri_msg", token=0xD1) / PriMsg(session=mal.session, to_session=to, text="y" * 4000)
        answer = mal.request(pkt, (HOST, bob.port))
        assert status(answer) == "queue_full"
    grown = rss_kib(bob.pid) - before
    assert grown < 4 * 1024, f"Bob's memory grew by {grown} KiB while refusing {flood} messages of 4,000 bytes"

    mark = bob.mark()
    bob.sendline("leave_group")
    refused = f">>> {flood + 2} more private messages were not delivered: your queue was full (the senders were told)"
    bob.expect_lines(">>> Leave group chat g", *(f">>> Ann: {text}" for text in texts[:fit]), refused)
    assert ">>> Mal:" not in bob.text[mark:] and bob.text.count(">>> Ann: ") == fit
    assert "No ACK" not in ann.text and "Report this issue" not in ann.text, "a refusal is not a silent peer"
    ann.sendline("send Bob after")  # Bob is back in normal mode: shown at once
    bob.expect_line(">>> Ann: after")


def test_names_and_groups_per_ip_address(cluster):
    """With quotas of 3 names and 2 groups per IP address, every client here is on 127.0.0.1:
    they share the quota whatever their port; an offline name still counts, and its owner may
    come back; past the quota the server refuses with a clear line and goes on serving."""
    server = cluster.server("--max-names-per-ip", "3", "--max-groups-per-ip", "2")
    ann, bob = cluster.clients(["Ann", "Bob"], server)
    ann.sendline("create_group g1")
    ann.expect_line(">>> Group g1 created by Server.")
    ann.sendline("create_group g2")
    ann.expect_line(">>> Group g2 created by Server.")
    ann.sendline("create_group g3")
    ann.expect_line(">>> Group g3 not created: you have created too many groups.")
    bob.sendline("create_group g3")  # another socket of the same host: the same party
    bob.expect_line(">>> Group g3 not created: you have created too many groups.")
    server.expect_line(f">>> Client Bob creating group g3 failed, too many groups from {HOST}")

    cid = cluster.client("Cid", server)
    cid.sendline("dereg Cid")
    cid.expect_line(">>> You are Offline. Bye.")
    assert cid.wait_exit() == 0
    dan = cluster.client("Dan", server, register=False)  # Cid's offline row still holds a slot
    dan.expect_line(">>> Too many names registered from your address. Try again later.")
    assert dan.wait_exit() == 1
    cid = cluster.client("Cid", server)  # its own name again: no new row

    ann.sendline("list_groups")
    ann.expect_lines(">>> Available group chats:", ">>> g1", ">>> g2")
    ann.sendline("send Cid still serving")
    ann.expect_line(">>> Message received by Cid.")
    cid.expect_line(">>> Ann: still serving")
    assert "Dan" not in server.text
