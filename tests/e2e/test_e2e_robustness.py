"""Bad input never stops a node: stray datagrams, forged packets, undecodable typing;
and the server stops cleanly when asked."""

from __future__ import annotations

import random
import re
import signal
import socket

import pytest

from proto import MAGIC, MSG_TYPES, STATUSES, VERSION, ChatHeader, CreateGroup, Entry, GrpMsg, PriMsg, RegAck, SendGroup, Table, decode
from tests.procs import FAST, HOST, WAIT
from tests.security_tools import session_from_tables


@pytest.fixture
def udp():
    """A plain UDP socket on 127.0.0.1, playing a stranger on the network."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        sock.settimeout(WAIT)
        yield sock


def junk() -> list[bytes]:
    rng = random.Random(7)
    valid = bytes(ChatHeader(type="create_group", msg_id=5, sender="Zed") / CreateGroup(group="g"))
    return [
        b"",
        b"\x00",
        b"hello server",
        rng.randbytes(600),
        MAGIC.to_bytes(2, "big") + bytes([VERSION]) + b"\xff" * 40,  # magic and version, then nonsense
        valid[:-1],  # cut short
        valid + b"extra",  # trailing bytes
        valid[:4] + bytes([99]) + valid[5:],  # unknown type
        MAGIC.to_bytes(2, "big") + bytes([VERSION]) + rng.randbytes(60000),
    ]


def request(sock, addr, pkt) -> ChatHeader:
    """Send ``pkt`` and return the answer that names its message id."""
    sock.sendto(bytes(pkt), addr)
    while True:
        data, _ = sock.recvfrom(65536)
        answer = decode(data)
        # Skip what else arrives (a registered socket gets table updates, left unanswered).
        if MSG_TYPES[answer.type] in ("ack", "reg_ack") and answer.payload.ack_id == pkt.msg_id:
            return answer


def test_server_survives_malformed_datagrams(cluster, udp):
    server = cluster.server()
    ann = cluster.client("Ann", server)
    mark = server.mark()
    for data in junk() * 3:
        udp.sendto(data, (HOST, server.port))
    ann.sendline("list_groups")  # sent after the junk, so answered after it was all handled
    ann.expect_line(">>> No available group right now")
    server.expect_line(">>> Client Ann requested listing groups, current groups:")
    # One log line per kind of problem, not one per datagram.
    logged = [line for line in server.lines_since(mark) if line and "Client Ann requested" not in line]
    assert 1 <= len(logged) <= len(junk()), logged
    bob = cluster.client("Bob", server)  # still registering newcomers
    ann.expect_clients({"Bob": "online"})
    ann.sendline("send Bob fine")
    ann.expect_line(">>> Message received by Bob.")
    bob.expect_line(">>> Ann: fine")


def test_server_refuses_strangers_and_impostors(cluster, udp):
    server = cluster.server()
    ann = cluster.client("Ann", server)
    ann.sendline("create_group g")
    ann.expect_line(">>> Group g created by Server.")
    ann.sendline("join_group g")
    ann.expect_line(">>> Entered group g successfully")
    addr = (HOST, server.port)

    answer = request(udp, addr, ChatHeader(type="reg", msg_id=11, sender="server"))
    assert MSG_TYPES[answer.type] == "reg_ack" and STATUSES[answer.payload.status] == "bad_name"
    # Not registered, or claiming to be Ann from another address without her token: refused.
    for pkt in [
        ChatHeader(type="create_group", msg_id=12, sender="Zed") / CreateGroup(group="h"),
        ChatHeader(type="dereg", msg_id=13, sender="Ann"),
        ChatHeader(type="send_group", msg_id=14, sender="Ann") / SendGroup(group="g", text="forged"),
    ]:
        answer = request(udp, addr, pkt)
        assert MSG_TYPES[answer.type] == "ack" and STATUSES[answer.payload.status] == "not_registered", answer
    ann.sendline("list_members")  # Ann is still online, in g, and no group was created
    ann.expect_lines(">>> (g) Members in the group g:", ">>> (g) Ann")
    assert "Client Zed" not in server.text and "forged" not in server.text
    assert not re.search(r"^\s*Ann\s+\S+\s+\d+\s+offline", server.text, re.MULTILINE)


def test_client_survives_malformed_and_forged_datagrams(cluster, udp):
    server = cluster.server()
    ann, bob = cluster.clients(["Ann", "Bob"], server)
    ann.sendline("create_group g")
    ann.expect_line(">>> Group g created by Server.")
    mark = ann.mark()
    here = udp.getsockname()
    forged = [
        # A table update that only the server may send, adding an address of ours.
        ChatHeader(type="table", msg_id=21, sender="server")
        / Table(version=1000, base=0, entries=[Entry(client="Mallory", ip=here[0], port=here[1], online=1)]),
        # A private message that says it is from Bob, from an address that is not Bob's.
        ChatHeader(type="pri_msg", msg_id=22, sender="Bob") / PriMsg(text="forged private"),
        ChatHeader(type="grp_msg", msg_id=23, sender="server") / GrpMsg(group="g", origin="Bob", text="forged group"),
    ]
    for data in junk() * 3 + [bytes(pkt) for pkt in forged]:
        udp.sendto(data, (HOST, ann.port))
    bob.sendline("send Ann real one")  # sent after the junk: arrives after it
    bob.expect_line(">>> Message received by Ann.")
    ann.expect_line(">>> Bob: real one")
    ann.sendline("send Mallory hi")
    ann.expect_line(">>> User Mallory does not exist")
    assert "forged" not in ann.text[mark:]
    ann.sendline("join_group g")
    ann.expect_line(">>> Entered group g successfully")
    bob.sendline("join_group g")
    bob.expect_line(">>> Entered group g successfully")
    bob.sendline("send_group real group message")
    ann.expect_line(">>> (g) Group_Message Bob: real group message")
    assert "forged" not in ann.text


@pytest.mark.parametrize("interactive", [False, True], ids=["plain", "prompt_toolkit"])
def test_typed_bytes_that_are_not_utf8(cluster, interactive):
    """A terminal in another encoding: the line is sent with replacement characters,
    and the client goes on reading commands."""
    server = cluster.server()
    bob = cluster.client("Bob", server)
    ann = cluster.client("Ann", server, interactive=interactive)
    bob.expect_clients({"Ann": "online"})
    ann.child.send(b"send Bob caf\xe9 ok\r")
    ann.expect(r">>> Message received by Bob\.\n")
    bob.expect_line(">>> Ann: caf\ufffd ok")
    ann.sendline("send Bob next")
    ann.expect(r">>> Message received by Bob\.\n")
    bob.expect_line(">>> Ann: next")


@pytest.mark.parametrize("how", ["ctrl-c", "SIGTERM"])
def test_server_stops_cleanly(cluster, how):
    server = cluster.server(*FAST)
    ann = cluster.client("Ann", server, *FAST)
    if how == "ctrl-c":
        server.send("\x03")
    else:
        server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    assert "Traceback" not in server.text and "Error" not in server.text, server.text
    # The client finds out at its next request, as from a server that crashed.
    ann.sendline("list_groups")
    ann.expect_lines(">>> Server not responding", ">>> Exiting")


def register_raw(sock, server, name: str) -> RegAck:
    """Register the plain socket as a client (reg, then confirm with the new token); returns
    the reg_ack's payload (its token and session)."""
    answer = request(sock, (HOST, server.port), ChatHeader(type="reg", msg_id=30, sender=name))
    assert STATUSES[answer.payload.status] == "ok", answer
    confirmed = request(sock, (HOST, server.port), ChatHeader(type="confirm", msg_id=31, sender=name, token=answer.payload.token))
    assert STATUSES[confirmed.payload.status] == "ok", confirmed
    return answer.payload


def test_retransmitted_request_is_processed_once(cluster, udp):
    server = cluster.server()
    token = register_raw(udp, server, "Raw").token
    server.expect_clients({"Raw": "online"})
    pkt = ChatHeader(type="create_group", msg_id=32, sender="Raw", token=token) / CreateGroup(group="g")
    first = request(udp, (HOST, server.port), pkt)
    again = request(udp, (HOST, server.port), pkt)  # the same message id: a retransmission
    assert STATUSES[first.payload.status] == "ok" and bytes(again) == bytes(first)  # the same answer again
    other = request(udp, (HOST, server.port), ChatHeader(type="list_groups", msg_id=33, sender="Raw", token=token))
    assert [item.value for item in other.payload.items] == ["g"]
    server.expect_line(">>> Client Raw requested listing groups, current groups:")
    assert server.text.count("created group g") == 1, server.text


def test_duplicate_private_message_is_shown_once(cluster, udp):
    server = cluster.server()
    ann = cluster.client("Ann", server)
    session = register_raw(udp, server, "Raw").session
    ann.expect_clients({"Raw": "online"})  # Ann accepts messages from Raw's address now
    to = session_from_tables(udp, "Ann")  # a private message names its receiver's session
    pkt = ChatHeader(type="pri_msg", msg_id=41, token=0xD1, sender="Raw") / PriMsg(session=session, to_session=to, text="only once")
    for _ in range(3):
        answer = request(udp, (HOST, ann.port), pkt)  # each copy is acknowledged
        assert STATUSES[answer.payload.status] == "ok"
    later = ChatHeader(type="pri_msg", msg_id=42, token=0xD2, sender="Raw") / PriMsg(session=session, to_session=to, text="next")
    request(udp, (HOST, ann.port), later)
    ann.expect_lines(">>> Raw: only once", ">>> Raw: next")
    assert ann.text.count("only once") == 1
