"""The wire numbers as a contract: every message type code and status code, and the exact
bytes of one fully specified datagram of each type, written out literally here.

Nodes of different versions of this code talk to each other, and Wireshark's dissector
and saved captures read these numbers: swapping two codes, reordering or resizing a field
changes the wire, and must fail here, not only in the comparison with docs/protocol.md.  A deliberate change
of the wire format updates this file (and ``VERSION``)."""

from __future__ import annotations

from itertools import combinations

import pytest

from proto import MAGIC, MSG_TYPES, PAYLOADS, STATUSES, VERSION, ChatHeader, decode
from proto.fastpath import encode, parse
from proto.fields import layer_spec
from tests.structured import segments

PINNED_TYPES = {
    "reg": 1, "reg_ack": 2, "dereg": 3, "ack": 4, "table": 5, "create_group": 6, "list_groups": 7,
    "join_group": 8, "leave_group": 9, "list_members": 10, "send_group": 11, "grp_msg": 12, "pri_msg": 13,
    "kick": 14, "probe": 15, "list_more": 16, "confirm": 17,
}
PINNED_STATUSES = {
    "ok": 0, "name_taken": 1, "addr_taken": 2, "bad_name": 3, "group_exists": 4, "no_such_group": 5,
    "not_in_group": 6, "no_such_user": 7, "not_registered": 8, "bad_request": 9, "resync": 10,
    "server_full": 11, "too_many_groups": 12, "more": 13, "queue_full": 14, "quota": 15,
}
PINNED_LIST_MORE = {"list_groups": 7, "list_members": 10}  # ListMore.list names the request it continues
PINNED_ONLINE = {"offline": 0, "online": 1}  # Entry.online

# Every field differs from its default and from its neighbours, so that a field moved,
# resized or dropped shows in the bytes.
HEADER = {"msg_id": 0x01020304, "port": 0x0506, "token": 0x0708090A0B0C0D0E, "sender": "Anne"}
PAYLOAD = {
    "reg_ack": {"ack_id": 0x11121314, "status": 2, "token": 0x2122232425262728, "session": 0x31323334},
    "ack": {"ack_id": 0x11121314, "status": 13, "seq": 0x21222324, "items": [{"value": "g1"}, {"value": "é"}], "also": [{"id": 0x41424344}]},
    "table": {"version": 0x51525354, "base": 0x61626364,
              "entries": [{"client": "Bob", "ip": "10.1.2.3", "port": 0x7172, "online": 0, "session": 0x81828384}]},
    "create_group": {"group": "g1"},
    "join_group": {"group": "g2"},
    "leave_group": {"group": "g3"},
    "list_members": {"group": "g4"},
    "send_group": {"group": "g5", "text": "hi;"},
    "grp_msg": {"group": "g6", "seq": 0x31323334, "origin": "Cid", "text": "yo"},
    "pri_msg": {"session": 0x91929394, "to_session": 0xA1A2A3A4, "text": "psst"},
    "kick": {"target": "Dan"},
    "list_more": {"list": 10, "start": 0x0A0B, "group": "g7"},
}
GOLDEN = {
    "reg": "c4a703010102030405060708090a0b0c0d0e04416e6e65",
    "reg_ack": "c4a703020102030405060708090a0b0c0d0e04416e6e651112131402212223242526272831323334",
    "dereg": "c4a703030102030405060708090a0b0c0d0e04416e6e65",
    "ack": "c4a703040102030405060708090a0b0c0d0e04416e6e65111213140d21222324000202673102c3a90141424344",
    "table": "c4a703050102030405060708090a0b0c0d0e04416e6e655152535461626364000103426f620a01020371720081828384",
    "create_group": "c4a703060102030405060708090a0b0c0d0e04416e6e65026731",
    "list_groups": "c4a703070102030405060708090a0b0c0d0e04416e6e65",
    "join_group": "c4a703080102030405060708090a0b0c0d0e04416e6e65026732",
    "leave_group": "c4a703090102030405060708090a0b0c0d0e04416e6e65026733",
    "list_members": "c4a7030a0102030405060708090a0b0c0d0e04416e6e65026734",
    "send_group": "c4a7030b0102030405060708090a0b0c0d0e04416e6e65026735000368693b",
    "grp_msg": "c4a7030c0102030405060708090a0b0c0d0e04416e6e6502673631323334034369640002796f",
    "pri_msg": "c4a7030d0102030405060708090a0b0c0d0e04416e6e6591929394a1a2a3a4000470737374",
    "kick": "c4a7030e0102030405060708090a0b0c0d0e04416e6e650344616e",
    "probe": "c4a7030f0102030405060708090a0b0c0d0e04416e6e65",
    "list_more": "c4a703100102030405060708090a0b0c0d0e04416e6e650a0a0b026737",
    "confirm": "c4a703110102030405060708090a0b0c0d0e04416e6e65",
}


def field(layer, name):
    return layer_spec(layer).field(name)


def test_magic_and_version():
    assert (MAGIC, VERSION) == (0xC4A7, 3)


def test_message_type_codes():
    assert {name: code for code, name in MSG_TYPES.items()} == PINNED_TYPES
    assert field(ChatHeader, "type").enum == {code: name for name, code in PINNED_TYPES.items()}


def test_status_codes():
    assert {name: code for code, name in STATUSES.items()} == PINNED_STATUSES
    for layer in (PAYLOADS["ack"], PAYLOADS["reg_ack"]):
        assert field(layer, "status").enum == {code: name for name, code in PINNED_STATUSES.items()}


def test_other_enumerated_fields():
    assert field(PAYLOADS["list_more"], "list").names == PINNED_LIST_MORE
    assert field(field(PAYLOADS["table"], "entries").item.cls, "online").names == PINNED_ONLINE


def test_every_type_has_a_golden_datagram():
    assert set(GOLDEN) == set(MSG_TYPES.values())


def scapy_packet(type_name: str):
    pkt = ChatHeader(type=type_name, **HEADER)
    layer = PAYLOADS.get(type_name)
    return pkt if layer is None else pkt / layer_spec(layer).build(PAYLOAD[type_name])


@pytest.mark.parametrize("type_name", sorted(GOLDEN))
def test_golden_bytes_from_both_encoders(type_name):
    golden = bytes.fromhex(GOLDEN[type_name])
    assert bytes(scapy_packet(type_name)) == golden, "Scapy layer"
    assert encode(type_name, HEADER, PAYLOAD.get(type_name)) == golden, "fast path"


@pytest.mark.parametrize("type_name", sorted(GOLDEN))
def test_golden_bytes_decode_to_their_values(type_name):
    golden = bytes.fromhex(GOLDEN[type_name])
    slow, fast = decode(golden), parse(golden)
    assert slow.type == fast.type == PINNED_TYPES[type_name]
    for name, value in HEADER.items():
        assert getattr(slow, name) == getattr(fast, name) == value
    for name, value in PAYLOAD.get(type_name, {}).items():
        got_slow, got_fast = getattr(slow.payload, name), getattr(fast.payload, name)
        if isinstance(value, list):
            got_slow = [{k: getattr(item, k) for k in want} for item, want in zip(got_slow, value)]
            got_fast = [{k: getattr(item, k) for k in want} for item, want in zip(got_fast, value)]
        assert got_slow == got_fast == value, name


def test_reordering_any_two_fields_of_a_layer_changes_a_golden_datagram():
    """The golden bytes catch a reordered layer only if the two fields' bytes differ in some datagram:
    for every layer (and list item) and every pair of its fields, one golden datagram must show it."""
    shown: dict[type, set] = {}
    for hex_bytes in GOLDEN.values():
        golden = bytes.fromhex(hex_bytes)
        segs = segments(golden)
        for i, j in combinations(range(len(segs)), 2):
            if segs[i].layer is segs[j].layer:
                swapped = [s.data for s in segs]
                swapped[i], swapped[j] = swapped[j], swapped[i]
                if b"".join(swapped) != golden:
                    shown.setdefault(type(segs[i].layer), set()).add((segs[i].spec.name, segs[j].spec.name))
    for layer in (ChatHeader, *PAYLOADS.values()):
        for spec in (layer_spec(layer), *layer_spec(layer).sub_layers()):
            plain = [f.name for f in spec.fields if f.item is None]  # a list's items are their layer's fields
            missed = set(combinations(plain, 2)) - shown.get(spec.cls, set())
            assert not missed, f"{spec.cls.__name__}: swapping {sorted(missed)} leaves every golden datagram as it is"
