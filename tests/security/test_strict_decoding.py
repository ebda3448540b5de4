"""Strict decoding: a value outside its field's enum is a ``ProtocolError`` in both
decoders (proto.codec's Scapy path and proto.fastpath), found from the layer's fields;
refusals say in words what was wrong; and a node counts such a datagram as malformed
instead of raising (issue 11: a ``list_more`` whose ``list`` byte was 5 raised KeyError
in the server, once per datagram, uncounted)."""

from __future__ import annotations

import re

import pytest
from scapy.fields import ByteEnumField, ShortEnumField
from scapy.packet import Packet

from node.effects import Send
from node.server import ServerLogic
from proto import MSG_TYPES, STATUSES, TYPE_CODES, VERSION, ChatHeader, PriMsg, ProtocolError, decode
from proto import codec, fastpath
from proto.checks import enum_values
from proto.fastpath import encode, parse
from tests.procs import HOST
from tests.security_tools import drain, finish
from tests.structured import datagram, registered_sessions, segments

HEADER = {"msg_id": 77, "port": 7000, "token": 0x1122334455667788, "sender": "Mal"}


def refusals(data: bytes) -> tuple[str, str]:
    """The words of both decoders' refusals of ``data`` (each must refuse it)."""
    words = []
    for decoder in (decode, parse):
        with pytest.raises(ProtocolError) as refused:
            decoder(data)
        words.append(str(refused.value))
    return words[0], words[1]


# -- every enumerated field, in both decoders ------------------------------------------------


def enum_cases():
    """(type, field path, segment index, outside values) for every enum field of every type."""
    for type_name in TYPE_CODES:
        for i, seg in enumerate(segments(datagram(type_name, HEADER))):
            if (values := enum_values(seg.field)) is not None:
                outside = sorted({v for v in (0, min(values) - 1, max(values) + 1, 255) if 0 <= v < 256} - set(values))
                yield pytest.param(type_name, i, outside, id=seg.where)


def test_the_enumerated_fields_are_found_in_the_layer():
    found = {case.id.rsplit(".", 1)[1] for case in enum_cases()}  # ids like "table.entries[0].online"
    assert {"type", "status", "list", "online"} <= found


@pytest.mark.parametrize("type_name, index, outside", list(enum_cases()))
def test_a_value_outside_the_enum_is_refused_in_words(type_name, index, outside):
    data = datagram(type_name, HEADER)
    segs = segments(data)
    seg = segs[index]
    names = ", ".join(enum_values(seg.field).values())
    at = sum(len(s.data) for s in segs[:index])
    for value in outside:
        bad = data[:at] + bytes([value]) + data[at + 1 :]
        slow, fast = refusals(bad)
        assert slow == fast
        assert f"field {seg.field.name!r} has {value}, not one of {names}" in fast, fast


def test_the_issue_example_reads_well():
    data = bytearray(encode("list_more", HEADER, {"list": "list_groups", "start": 0}))
    data[22] = 5  # the list byte, just after the header of sender "Mal"
    assert refusals(bytes(data)) == ("list_more: field 'list' has 5, not one of list_groups, list_members",) * 2


class Mood(Packet):
    """A layer with enum fields nobody listed anywhere: both decoders check them anyway."""

    fields_desc = [ByteEnumField("mood", 1, {1: "calm", 2: "cross"}), ShortEnumField("tone", 10, {10: "low", 20: "high"})]


def test_an_enum_field_added_to_a_layer_is_checked_without_being_listed():
    read = fastpath._Layout.of(Mood).read
    assert read(b"\x02\x00\x14", 0, 3)[0].tone == 20
    for data, words in ((b"\x03\x00\x0a", "field 'mood' has 3, not one of calm, cross"),
                        (b"\x01\x00\x0b", "field 'tone' has 11, not one of low, high")):
        with pytest.raises(ProtocolError, match=re.escape(words)):
            read(data, 0, 3)
        with pytest.raises(ProtocolError, match=re.escape(words)):
            codec._check_enums(Mood(data))


# -- malformed datagrams in words ---------------------------------------------------------------


GOOD = bytes(ChatHeader(type="pri_msg", sender="Ann") / PriMsg(text="hi"))
WORDED = {
    "twelve bytes": (GOOD[:12], "too short for a chat header (12 bytes, at least 19)"),
    "empty": (b"", "too short for a chat header (0 bytes, at least 19)"),
    "wrong magic": (b"\x00\x01" + GOOD[2:], "not a chat datagram (magic number 0x0001, not 0xc4a7)"),
    "wrong version": (GOOD[:2] + bytes([VERSION + 1]) + GOOD[3:], f"chat version {VERSION + 1}, not {VERSION}"),
    "sender length past the end": (GOOD[:18] + b"\xff" + GOOD[19:], "header: field 'sender' has length 255, past the end (15 bytes left)"),
    "payload cut": (GOOD[:24], "pri_msg: too short for fields 'session', 'to_session', 'text_len' (2 bytes left, 10 needed)"),
    "text length past the end": (GOOD[:30] + b"\x00\x09" + GOOD[32:], "pri_msg: field 'text' has length 9, past the end (2 bytes left)"),
    "text length short by one": (GOOD[:30] + b"\x00\x01" + GOOD[32:], "pri_msg: 1 byte after the end of the message"),
    "invalid UTF-8": (GOOD[:-2] + b"h\xff", "pri_msg: field 'text' is not valid UTF-8 (byte 0xff at 1)"),
    "trailing bytes": (GOOD + b"xy", "pri_msg: 2 bytes after the end of the message"),
    "list item cut": (encode("ack", HEADER, {"ack_id": 1, "items": [{"value": "g"}]})[:-2],
                      "ack name: field 'value' has length 1, past the end (0 bytes left)"),
}


@pytest.mark.parametrize("case", sorted(WORDED))
def test_malformed_datagrams_are_refused_in_words(case):
    data, words = WORDED[case]
    assert refusals(data) == (words, words)


def test_no_refusal_is_python_text():
    """Whatever the damage, the words are ours: no struct or codec message leaks through."""
    python = re.compile(r"unpack|buffer|codec can't|struct|Traceback|object")
    for type_name in TYPE_CODES:
        data = datagram(type_name, HEADER)
        for cut in range(len(data)):
            for words in refusals(data[:cut]):
                assert not python.search(words), words


# -- a node counts them: logic -------------------------------------------------------------------


def register(server: ServerLogic, name: str, addr: tuple, now: float) -> int:
    """Register ``name`` from ``addr``; its token."""
    server.receive(encode("reg", {"msg_id": 1, "port": addr[1], "sender": name}), addr, now)
    for effect in server.drain(now):
        if isinstance(effect, Send) and effect.addr == addr and MSG_TYPES[parse(effect.data).type] == "reg_ack":
            token = parse(effect.data).payload.token
            server.receive(encode("confirm", {"msg_id": 2, "port": addr[1], "token": token, "sender": name}), addr, now)
            return token
    raise AssertionError("no reg_ack")


def answers(server: ServerLogic, addr: tuple) -> list:
    return [parse(e.data) for e in server.drain(0.0) if isinstance(e, Send) and e.addr == addr]


def test_server_logic_counts_a_list_more_outside_its_enum_as_malformed():
    server = ServerLogic(9000)
    addr = ("10.0.0.5", 7005)
    token = register(server, "Mal", addr, 0.0)
    answers(server, addr)
    for i, value in enumerate((5, 0, 255, 8)):
        header = {"msg_id": 10 + i, "port": 7005, "token": token, "sender": "Mal"}
        data = bytearray(encode("list_more", header, {"list": "list_groups", "start": 0}))
        data[22] = value
        server.receive(bytes(data), addr, 1.0 + i)  # must not raise
        assert answers(server, addr) == []
    assert server.drops["malformed"] == 4
    # the session goes on
    server.receive(encode("list_groups", {"msg_id": 20, "port": 7005, "token": token, "sender": "Mal"}), addr, 9.0)
    (answer,) = [a for a in answers(server, addr) if a.type == TYPE_CODES["ack"]]
    assert STATUSES[answer.payload.status] == "ok" and answer.payload.ack_id == 20


# -- a node counts them: real processes -------------------------------------------------------------


BAD_PER_SESSION = 400  # well below the rate limit's burst (2000 per source)


def test_server_process_counts_bad_enums_from_registered_sessions(cluster, peers):
    """Two registered sessions send list_more datagrams whose list byte is no list type (and
    acks with unknown statuses) while a real client keeps using commands: every command
    succeeds, the server prints no traceback, and each bad datagram is counted as malformed."""
    server = cluster.server()
    (ann,) = cluster.clients(["Ann"], server)
    to = (HOST, server.port)
    attackers = registered_sessions(peers, to)
    sent = 0
    for round_ in range(4):
        for peer in attackers:
            for i in range(BAD_PER_SESSION // 4):
                if i % 4 == 3:
                    ack = peer.header("ack")
                    header = {"msg_id": ack.msg_id, "port": ack.port, "token": peer.token, "sender": peer.name}
                    data = bytearray(encode("ack", header, {"ack_id": 1, "status": 0}))
                    other = encode("ack", header, {"ack_id": 1, "status": 1})
                    at = next(k for k, (a, b) in enumerate(zip(data, other)) if a != b)  # the status byte
                    data[at] = 14 + i % 200  # past the last status
                else:
                    request = peer.header("list_more")
                    data = bytearray(encode("list_more", {"msg_id": request.msg_id, "port": request.port,
                                                          "token": peer.token, "sender": peer.name}, {"list": 7}))
                    data[19 + len(peer.name)] = (5, 0, 255)[i % 3]
                peer.send(bytes(data), to)
                sent += 1
        # the real client's commands, between the waves: each must succeed
        ann.sendline(f"create_group g{round_}")
        ann.expect_line(f">>> Group g{round_} created by Server.")
        ann.sendline("list_groups")
        ann.expect_lines(">>> Available group chats:", *(f">>> g{k}" for k in range(round_ + 1)))
        ann.sendline(f"join_group g{round_}")
        ann.expect_line(f">>> Entered group g{round_} successfully")
        ann.sendline("list_members")
        ann.expect_lines(f">>> (g{round_}) Members in the group g{round_}:", f">>> (g{round_}) Ann")
        ann.sendline("leave_group")
        ann.expect_line(f">>> Leave group chat g{round_}")
        drain(server)
    for peer in attackers:  # still registered and answered: nothing above ended their sessions
        answer = peer.request(peer.header("list_groups"), to)
        assert STATUSES[answer.payload.status] == "ok"
    finish(ann)
    counts = finish(server)
    assert server.status == 0
    assert "Traceback" not in server.text and "KeyError" not in server.text
    assert counts["malformed"] == sent, counts
    assert "Dropped malformed datagram" in server.text and "not one of" in server.text
