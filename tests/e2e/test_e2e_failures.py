"""Nodes that go away: the server, a client; and what the retry rules make of it."""

from __future__ import annotations

import re
import signal

from tests.procs import FAST, HOST

NOT_IN_GROUP = (
    ">>> You're already not in the group, because the Server didn't receive your previous ack to a group message."
)


def ever_offline(proc, name: str) -> bool:
    """Whether any client table printed so far showed ``name`` offline."""
    return re.search(rf"^\s*{name}\s+\S+\s+\d+\s+offline\s*$", proc.text, re.MULTILINE) is not None


def kill(proc) -> None:
    proc.signal(signal.SIGKILL)
    proc.wait_exit()


def test_server_gone_in_normal_mode(cluster):
    server = cluster.server(*FAST)
    ann = cluster.client("Ann", server, *FAST)
    kill(server)
    ann.sendline("list_groups")
    ann.expect_lines(">>> Server not responding", ">>> Exiting")
    assert ann.wait_exit() == 1
    assert "Traceback" not in ann.text


def test_server_gone_in_group_mode_prints_queued_messages(cluster):
    server = cluster.server(*FAST)
    ann, bob = cluster.clients(["Ann", "Bob"], server, *FAST)
    bob.sendline("create_group g")
    bob.expect_line(">>> Group g created by Server.")
    bob.sendline("join_group g")
    bob.expect_line(">>> Entered group g successfully")
    for text in ("kept for later", "and this one"):
        ann.sendline(f"send Bob {text}")
        ann.expect_line(">>> Message received by Bob.")
    kill(server)
    bob.sendline("send_group anyone there?")
    bob.expect_lines(">>> (g) Server not responding", ">>> (g) Exiting",
                     '>>> (g) (the group message was: "anyone there?")', ">>> Ann: kept for later",
                     ">>> Ann: and this one")
    assert bob.wait_exit() == 1
    assert "Traceback" not in bob.text


def test_server_gone_with_default_retries(cluster):
    """The real timing: 500 ms per try, 5 tries (no flags)."""
    server = cluster.server()
    ann = cluster.client("Ann", server)
    kill(server)
    ann.sendline("create_group g")
    ann.expect_lines(">>> Server not responding", ">>> Exiting", timeout=20)
    assert ann.wait_exit() == 1


def test_ctrl_c_when_the_server_is_gone(cluster):
    """Deregistering is best effort: with nobody to answer, the client still exits."""
    server = cluster.server(*FAST)
    ann = cluster.client("Ann", server, *FAST)
    kill(server)
    ann.send("\x03")
    ann.wait_exit()
    assert "Traceback" not in ann.text


def test_server_gone_before_registration(cluster):
    server = cluster.server(*FAST)
    kill(server)
    ann = cluster.client("Ann", server, *FAST, register=False)
    ann.expect_line(f">>> Registering as Ann with {HOST}:{server.port} ...")  # said before the wait, not after
    ann.expect_lines(">>> Server not responding", ">>> Exiting")
    assert ann.wait_exit() == 1
    assert "Welcome" not in ann.text


def group_of_three(cluster):
    server = cluster.server(*FAST)
    ann, bob, cy = cluster.clients(["Ann", "Bob", "Cy"], server, *FAST)
    ann.sendline("create_group g")
    ann.expect_line(">>> Group g created by Server.")
    for proc in (ann, bob, cy):
        proc.sendline("join_group g")
        proc.expect_line(">>> Entered group g successfully")
    server.expect_groups({"g": ["Ann", "Bob", "Cy"]})
    return server, ann, bob, cy


def test_killed_member_removed_from_group(cluster):
    server, ann, bob, cy = group_of_three(cluster)
    kill(cy)
    ann.sendline("send_group is everyone here?")
    ann.expect_line(">>> (g) Message received by Server.")
    bob.expect_line(">>> (g) Group_Message Ann: is everyone here?")
    server.expect_line(">>> Client Cy not responsive, removed from g")
    server.expect_groups({"g": ["Ann", "Bob"]})
    ann.sendline("list_members")
    ann.expect_lines(">>> (g) Members in the group g:", ">>> (g) Ann", ">>> (g) Bob")
    assert "removed from" not in server.text.replace(">>> Client Cy not responsive, removed from g", "")


def test_member_that_missed_acks_is_told_it_left(cluster):
    """A member frozen while a group message is retried is removed; once it runs again,
    its next group command says so, leaves group mode and prints its queued messages."""
    server, ann, bob, cy = group_of_three(cluster)
    dan = cluster.client("Dan", server, *FAST)
    cy.expect_clients({"Dan": "online"})
    dan.sendline("send Cy for later")
    dan.expect_line(">>> Message received by Cy.")  # queued by Cy: it is in group mode

    cy.signal(signal.SIGSTOP)
    try:
        ann.sendline("send_group while you slept")
        bob.expect_line(">>> (g) Group_Message Ann: while you slept")
        server.expect_line(">>> Client Cy not responsive, removed from g")
    finally:
        cy.signal(signal.SIGCONT)
    # The retransmissions waited in Cy's socket: it shows the message once.
    cy.expect_line(">>> (g) Group_Message Ann: while you slept")
    cy.sendline("list_members")
    cy.expect_lines(NOT_IN_GROUP, ">>> Dan: for later")
    cy.sendline("list_groups")  # back in normal mode
    cy.expect_lines(">>> Available group chats:", ">>> g")
    assert cy.text.count("Group_Message Ann: while you slept") == 1
    server.expect_groups({"g": ["Ann", "Bob"]})
    assert not ever_offline(server, "Cy")  # removed from the group only


def test_private_message_to_killed_client(cluster):
    server, ann, bob, cy = group_of_three(cluster)
    ann.sendline("leave_group")
    ann.expect_line(">>> Leave group chat g")
    kill(cy)
    mark = server.mark()
    ann.sendline("send Cy hello?")
    ann.expect_lines(">>> No ACK from Cy, message not delivered", ">>> Report this issue to server")
    # The server probes Cy itself, gets no answer, and tells everyone.
    server.expect_clients({"Cy": "offline", "Ann": "online", "Bob": "online"}, since=mark)
    server.expect_groups({"g": ["Bob"]}, since=mark)  # and Cy is out of its group
    ann.expect_clients({"Cy": "offline", "Ann": "online", "Bob": "online"})
    bob.expect_clients({"Cy": "offline", "Ann": "online", "Bob": "online"})
    ann.sendline("send Bob still fine")  # Ann goes on
    ann.expect_line(">>> Message received by Bob.")


def test_kick_of_a_live_client_is_not_believed(cluster):
    """Bob is frozen just long enough for Ann's message to fail, not for the server's probe."""
    server = cluster.server()  # default retries: the probe waits 2.5 s, Ann's message 0.3 s
    ann, bob, cy = cluster.clients(["Ann", "Bob", "Cy"], server, *FAST)
    bob.signal(signal.SIGSTOP)
    try:
        ann.sendline("send Bob wake up")
        ann.expect_lines(">>> No ACK from Bob, message not delivered", ">>> Report this issue to server")
    finally:
        bob.signal(signal.SIGCONT)
    bob.expect_line(">>> Ann: wake up")  # it was delivered after all, once
    # A second report, about a client that is really gone: its probe started later and
    # lasts as long, so when the server gives up on Cy it has settled Bob's probe too.
    kill(cy)
    ann.sendline("send Cy hello?")
    ann.expect_lines(">>> No ACK from Cy, message not delivered", ">>> Report this issue to server")
    table = server.expect_clients({"Cy": "offline"})
    assert table["Bob"][2] == "online", table
    assert not ever_offline(server, "Bob")
    ann.sendline("send Bob you are still there")
    ann.expect_line(">>> Message received by Bob.")
    assert bob.text.count(">>> Ann: wake up") == 1
