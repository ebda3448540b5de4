"""A blind spoofer (root: a raw socket forges source addresses) against real processes: every
answer echoes a secret of the request it answers, and every datagram the server sends a client
carries that client's token, so acks and server datagrams forged from a member's, a peer's or
the server's address change nothing (issue 11, items 9 and 10).  The attacker is a registered
client of its own (``Mal``): it sees message ids and its own token, which is all a blind
spoofer can know."""

from __future__ import annotations

import signal
import time

import pytest

from proto import TYPE_CODES, Ack, ChatHeader, Entry, JoinGroup, Table
from tests.procs import HOST, WAIT, in_group
from tests.security_tools import Peer, ReceiveQueues, drain, drops, finish, needs_root, spoof_all

pytestmark = needs_root


def forged_acks(ids, src: tuple[str, int], tokens, status: str = "ok", sender: str = "") -> list:
    """Acks naming each of ``ids`` with each of ``tokens``, all as from ``src``."""
    return [(bytes(ChatHeader(type="ack", msg_id=0x4D414C00 + i, token=token, sender=sender) / Ack(ack_id=msg_id, status=status)), src)
            for i, (msg_id, token) in enumerate((m, t) for m in ids for t in tokens)]


def next_of(peer: Peer, type_name: str):
    """The next datagram of that type to ``peer`` (others, such as table updates, skipped)."""
    deadline = time.monotonic() + WAIT
    while (got := peer.receive(max(0.0, deadline - time.monotonic()))) is not None:
        if got[0].type == TYPE_CODES[type_name]:
            return got[0]
    raise AssertionError(f"no {type_name} reached the peer")


def ack(peer: Peer, msg, to: tuple[str, int]) -> None:
    """Acknowledge ``msg`` as a genuine client does: echoing its token."""
    peer.send(ChatHeader(type="ack", msg_id=peer.new_id(), token=msg.token, sender=peer.name) / Ack(ack_id=msg.msg_id), to)


def test_forged_acks_do_not_save_a_member_that_does_not_answer(cluster, peers):
    """Cy is stopped; Mal, a member too, forges Cy's acks of the group message (no token, and
    Mal's own): the server retries Cy and removes it as unresponsive, as without them."""
    server = cluster.server()
    ann, cy = cluster.clients(["Ann", "Cy"], server)
    in_group([ann, cy], server)
    mal = peers()
    mal.register("Mal", (HOST, server.port))
    joined = mal.request(mal.header("join_group") / JoinGroup(group="g"), (HOST, server.port))
    assert joined.payload.status == 0
    server.expect_groups({"g": ["Ann", "Cy", "Mal"]})
    cy.signal(signal.SIGSTOP)
    try:
        ann.sendline("send_group is anyone there")
        copy = next_of(mal, "grp_msg")
        ack(mal, copy, (HOST, server.port))  # Mal answers its own copy, as a member does
        spoof_all(forged_acks([copy.msg_id], (HOST, cy.port), (0, mal.token), sender="Cy"), (HOST, server.port))
        ann.expect_line(">>> (g) Message received by Server.")
        server.expect_line(">>> Client Cy not responsive, removed from g")
        server.expect_groups({"g": ["Ann", "Mal"]})
    finally:
        cy.signal(signal.SIGCONT)
    counts = finish(server)
    assert counts["forged ack"] == 2, counts


def test_a_forged_ack_from_a_dead_peers_address_is_not_a_delivery(cluster, peers):
    """Bob is gone (killed); acks forged from his address for the ids Ann is likely to use,
    with no token or the nonce of a message Mal got from Ann: Ann still reports No ACK."""
    server = cluster.server()
    ann, bob = cluster.clients(["Ann", "Bob"], server)
    mal = peers()
    mal.register("Mal", (HOST, server.port))
    ann.expect_clients({"Mal": "online"})
    ann.sendline("send Mal hello")
    seen = next_of(mal, "pri_msg")  # Ann's message id and the nonce of that message
    ack(mal, seen, (HOST, ann.port))
    ann.expect_line(">>> Message received by Mal.")
    bob.signal(signal.SIGKILL)
    bob.wait_exit()
    mark = ann.mark()
    ann.sendline("send Bob are you there")
    ahead = range(seen.msg_id + 1, seen.msg_id + 33)  # Ann's next ids (her acks take ids too)
    forged = forged_acks(ahead, (HOST, bob.port), (0, seen.token), sender="Bob")
    deadline = time.monotonic() + WAIT
    answered = ("No ACK from Bob", "Message received by Bob")
    while not any(what in ann.text[mark:] for what in answered) and time.monotonic() < deadline:
        spoof_all(forged, (HOST, ann.port))  # again and again while Ann waits for Bob's ack
        ann._read(0.2)
    ann.expect_lines(">>> No ACK from Bob, message not delivered", ">>> Report this issue to server")
    assert "Message received by Bob" not in ann.text
    ann.sendline("dereg Ann")
    ann.expect_line(">>> You are Offline. Bye.")
    assert ann.wait_exit() == 0
    assert drops(ann.text)["forged ack"] >= 2, ann.text


def test_datagrams_forged_from_the_servers_address_change_nothing(cluster, peers):
    """From the server's address: a table of version 0x7fffffff whose row sends Bob's messages
    to Mal, and not_registered answers to Ann's pending request.  Ann's table goes on updating,
    her messages go to the real Bob, and she does not exit."""
    server = cluster.server()
    ann, bob = cluster.clients(["Ann", "Bob"], server)
    mal = peers()
    mal.register("Mal", (HOST, server.port))
    ann.expect_clients({"Mal": "online"})
    bobs_session = mal.session_of("Bob")
    from_server = (HOST, server.port)
    row = Entry(client="Bob", ip=HOST, port=mal.addr[1], online=1, session=bobs_session)
    tables = [bytes(ChatHeader(type="table", msg_id=0x7F000000 + i, token=token, sender="server")
                    / Table(version=0x7FFFFFFF, base=0, entries=[row])) for i, token in enumerate((0, mal.token))]
    spoof_all([(data, from_server) for data in tables], (HOST, ann.port))

    cy = cluster.client("Cy", server)  # a real table update after the forged ones
    ann.expect_clients({"Cy": "online", "Bob": "online"})
    ann.sendline("send Bob still you")
    bob.expect_line(">>> Ann: still you")
    ann.expect_line(">>> Message received by Bob.")
    assert TYPE_CODES["pri_msg"] not in [msg.type for msg in mal.pending()], "nothing of Ann's went to Mal"

    # Ann's next request waits at a stopped server while acks forged from its address refuse it.
    ann.sendline("send Mal your ids")
    seen = next_of(mal, "pri_msg")
    ack(mal, seen, (HOST, ann.port))
    ann.expect_line(">>> Message received by Mal.")
    queues = ReceiveQueues()
    server.signal(signal.SIGSTOP)
    try:
        ann.sendline("list_groups")
        deadline = time.monotonic() + WAIT
        while queues(server.port)[0] == 0 and time.monotonic() < deadline:
            ann._read(0.01)  # until Ann's request waits in the server's socket
        ahead = range(seen.msg_id + 1, seen.msg_id + 33)
        spoof_all(forged_acks(ahead, from_server, (0, mal.token), status="not_registered", sender="server"), (HOST, ann.port))
        ann._read(0.2)
    finally:
        server.signal(signal.SIGCONT)
        queues.close()
    ann.expect_line(">>> No available group right now")
    assert "no longer knows" not in ann.text and ann.alive()
    drain(bob, cy)
    ann.sendline("dereg Ann")
    ann.expect_line(">>> You are Offline. Bye.")
    assert ann.wait_exit() == 0
    counts = drops(ann.text)
    assert counts["forged"] == 2 and counts["forged ack"] >= 2, ann.text
