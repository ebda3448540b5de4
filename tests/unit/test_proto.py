"""The wire format: every message type round-trips, and ``decode`` never lets
anything but a well-formed packet or ``ProtocolError`` out, whatever the bytes."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from scapy.packet import NoPayload

import proto
from proto import (
    MAGIC, MSG_TYPES, TYPE_CODES, VERSION, Ack, ChatHeader, CreateGroup, Entry, GrpMsg, JoinGroup, Kick, LeaveGroup,
    ListMembers, ListMore, Name, PriMsg, ProtocolError, RegAck, SendGroup, Table, decode, is_chat
)
from proto.fields import HEADER, Kind, layer_spec
from tests.packets import PAYLOAD_STRATEGIES, fuzzed_packets, headers, mutate, packets, sample_packets, user_fields


def test_every_type_has_a_strategy():
    assert set(PAYLOAD_STRATEGIES) == set(MSG_TYPES.values())


def field_paths(spec, prefix=""):
    """(path, field) of every field a sender sets, list items' fields as ``entries.session``."""
    for field in spec.fields:
        if field.kind is Kind.LIST:
            yield from field_paths(field.item, f"{prefix}{field.name}.")
        elif not field.computed:
            yield prefix + field.name, field


def values_at(pkt, path: str) -> list:
    name, _, rest = path.partition(".")
    value = pkt.getfieldval(name)
    return [v for item in value for v in values_at(item, rest)] if rest else [value]


def varied_fields(strategy, spec, values_of=values_at) -> set[str]:
    """The paths of the fields of ``spec`` that examples drawn from ``strategy`` set to something but their default."""
    paths = dict(field_paths(spec))
    varied: set[str] = set()

    @settings(max_examples=200, derandomize=True, database=None, phases=[Phase.generate])
    @given(strategy)
    def draw(example):
        varied.update(p for p, f in paths.items() if any(v != f.default for v in values_of(example, p)))

    draw()
    return varied


@pytest.mark.parametrize("type_name", sorted(proto.PAYLOADS))
def test_the_strategies_draw_every_field(type_name):
    """A field the strategies leave at its default is never tested: every one must vary."""
    spec = layer_spec(proto.PAYLOADS[type_name])
    assert varied_fields(PAYLOAD_STRATEGIES[type_name], spec) == dict(field_paths(spec)).keys()


def test_the_header_strategy_draws_every_field_but_the_fixed_ones():
    drawn = varied_fields(headers, HEADER, lambda values, path: [values[path]] if path in values else [])
    assert drawn == dict(field_paths(HEADER)).keys() - {"magic", "version", "type"}


def all_layers(pkt):
    layers = []
    while not isinstance(pkt, NoPayload):
        layers.append((type(pkt), user_fields(pkt)))
        pkt = pkt.payload
    return layers


# -- round trips ------------------------------------------------------------------


@pytest.mark.parametrize("type_name", sorted(PAYLOAD_STRATEGIES))
@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_round_trip(type_name, data):
    pkt = data.draw(packets(type_name))
    wire = bytes(pkt)
    back = decode(wire)
    assert MSG_TYPES[back.type] == type_name
    assert all_layers(back) == all_layers(pkt)
    assert encoded_afresh(back) == wire


def test_round_trip_keeps_text_exactly():
    text = "a;b:c 'q' \"dq\"\nnew line  two  spaces é 日本 🙂"
    back = decode(bytes(ChatHeader(type="pri_msg", sender="Ann") / PriMsg(text=text)))
    assert back.payload.text == text
    assert isinstance(back.payload.text, str) and isinstance(back.sender, str)


def test_largest_text_fits_and_round_trips():
    text = "é" * (proto.MAX_TEXT_BYTES // 2)  # exactly the limit, in two-byte characters
    pkt = ChatHeader(type="grp_msg", sender="server") / GrpMsg(group="g", origin="Ann", text=text)
    assert decode(bytes(pkt)).payload.text == text


def test_wire_header_layout():
    """Magic, version and type sit where tools look for them; integers are big-endian."""
    wire = bytes(ChatHeader(type="kick", msg_id=0x01020304, port=0x0506, token=7, sender="Ab") / Kick(target="B"))
    assert wire[:2] == MAGIC.to_bytes(2, "big")
    assert wire[2] == VERSION
    assert wire[3] == TYPE_CODES["kick"]
    assert wire[4:8] == b"\x01\x02\x03\x04"
    assert wire[8:10] == b"\x05\x06"
    assert wire[10:18] == (7).to_bytes(8, "big")
    assert wire[18:21] == b"\x02Ab"
    assert wire[21:] == b"\x01B"
    assert is_chat(wire)


# -- decode never lets anything else out --------------------------------------------


def encoded_afresh(pkt) -> bytes:
    """``pkt`` built again from its field values, every length and count recomputed.

    (``bytes()`` of a dissected packet would just return Scapy's cache of the input.)"""
    clone = pkt.copy()
    clone.clear_cache()
    todo = [clone]
    while todo:
        layer = todo.pop()
        for field in layer_spec(type(layer)).fields:
            if field.computed:
                del layer.fields[field.name]
            elif field.kind is Kind.LIST:
                todo.extend(getattr(layer, field.name))
        if not isinstance(layer.payload, NoPayload):
            todo.append(layer.payload)
    return bytes(clone)


def decode_or_error(data: bytes):
    """Decode ``data``; the only acceptable outcomes are a packet that re-encodes to
    the same bytes, or ``ProtocolError`` (any other exception fails the test)."""
    try:
        pkt = decode(data)
    except ProtocolError:
        return None
    assert isinstance(pkt, ChatHeader)
    assert encoded_afresh(pkt) == data, "decode accepted bytes that do not re-encode to themselves"
    return pkt


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.binary(max_size=200))
def test_decode_random_bytes(data):
    decode_or_error(data)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.binary(max_size=200), st.integers(0, 255))
def test_decode_random_bytes_behind_a_valid_magic(tail, type_code):
    decode_or_error(MAGIC.to_bytes(2, "big") + bytes([VERSION, type_code]) + tail)


def test_decode_ten_thousand_random_and_mutated_datagrams():
    rng = random.Random(20240601)
    valid = sample_packets(rng)
    corpus = [rng.randbytes(rng.randrange(64)) for _ in range(1500)]  # random bytes
    corpus += [MAGIC.to_bytes(2, "big") + bytes([VERSION]) + rng.randbytes(rng.randrange(60)) for _ in range(1500)]
    corpus += [mutate(rng.choice(valid), rng) for _ in range(5500)]
    corpus += [mutate(mutate(rng.choice(valid), rng), rng) for _ in range(500)]
    fuzzed = fuzzed_packets(rng, 1000)
    corpus += fuzzed + [mutate(data, rng) for data in fuzzed[:500]]  # fuzz() keeps lengths right; break them
    assert len(corpus) >= 10_000
    accepted = sum(decode_or_error(data) is not None for data in corpus)
    rejected = len(corpus) - accepted
    # Both outcomes must really occur, or the corpus tests nothing.
    assert accepted > 500 and rejected > 5000


def test_each_kind_of_damage_is_a_protocol_error():
    good = bytes(ChatHeader(type="pri_msg", sender="Ann") / PriMsg(text="hi"))
    assert decode(good).payload.text == "hi"
    damaged = {
        "empty": b"",
        "truncated header": good[:10],
        "truncated text": good[:-1],
        "wrong magic": b"\x00\x00" + good[2:],
        "wrong version": good[:2] + bytes([VERSION - 1]) + good[3:],
        "unknown type": good[:3] + b"\xee" + good[4:],
        "trailing garbage": good + b"x",
        "bad UTF-8": good[:-2] + b"\xff\xfe",
        "sender length past the end": good[: proto.HEADER_MIN - 1] + b"\xff" + good[proto.HEADER_MIN :],
        "text length past the end": good[:30] + b"\x00\x09" + good[32:],
        "text length too short": good[:30] + b"\x00\x01" + good[32:],
        "payload on a bodiless type": bytes(ChatHeader(type="reg", sender="Ann")) + b"\x00",
        "missing payload": bytes(ChatHeader(type="pri_msg", sender="Ann")),
    }
    for what, data in damaged.items():
        try:
            decode(data)
        except ProtocolError:
            continue
        pytest.fail(f"{what}: accepted")


def test_list_count_past_the_end_is_an_error():
    good = bytes(ChatHeader(type="ack", sender="server") / Ack(ack_id=1, items=[Name(value="g")]))
    count_at = len(good) - 1 - 2 - 2  # count (2 bytes), the single item (len byte + "g"), also_count (1 byte)
    assert good[count_at : count_at + 2] == b"\x00\x01"
    for count in (b"\x00\x02", b"\xff\xff", b"\x00\x00"):
        with pytest.raises(ProtocolError):
            decode(good[:count_at] + count + good[count_at + 2 :])


@pytest.mark.parametrize(
    "type_name, layer, tail, counts",
    [
        ("ack", Ack(ack_id=1), b"\x00\x00\x00", (b"\x00\x01\x00", b"\x00\x05\x00", b"\x00\x00\x01", b"\x00\x00\xff")),
        ("table", Table(version=1), b"\x00\x00", (b"\x00\x01", b"\x00\x05")),
    ],
)
def test_count_of_an_empty_list_must_be_zero(type_name, layer, tail, counts):
    good = bytes(ChatHeader(type=type_name, sender="server") / layer)
    assert good.endswith(tail)  # the ack's counts: items (2 bytes), also (1 byte)
    for count in counts:
        with pytest.raises(ProtocolError):
            decode(good[: -len(tail)] + count)


def test_bad_utf8_inside_a_table_entry_is_an_error():
    good = bytes(ChatHeader(type="table", sender="server") / Table(version=1, entries=[Entry(client="Ann")]))
    bad = good.replace(b"Ann", b"A\xffn")
    with pytest.raises(ProtocolError):
        decode(bad)


# -- what a student sees ------------------------------------------------------------------

EXAMPLES = {
    "reg": (ChatHeader(type="reg", msg_id=11, sender="Ann"), ["reg", "11", "Ann"]),
    "dereg": (ChatHeader(type="dereg", msg_id=12, sender="Ann"), ["dereg", "12", "Ann"]),
    "list_groups": (ChatHeader(type="list_groups", msg_id=13, sender="Ann"), ["list_groups", "13"]),
    "probe": (ChatHeader(type="probe", msg_id=14, sender="server"), ["probe", "14", "server"]),
    "confirm": (ChatHeader(type="confirm", msg_id=12, sender="Ann"), ["confirm", "12", "Ann"]),
    "reg_ack": (ChatHeader(type="reg_ack", sender="server") / RegAck(ack_id=11, status="name_taken"), ["reg_ack", "RegAck", "11", "name_taken"]),
    "ack": (ChatHeader(type="ack", sender="server") / Ack(ack_id=13, items=[Name(value="g1"), Name(value="g2")]), ["ack", "Ack", "13", "ok", "g1", "g2"]),
    "table": (
        ChatHeader(type="table", sender="server") / Table(version=4, base=2, entries=[Entry(client="Bob", ip="10.0.0.2", port=7002)]),
        ["table", "Table", "v4", "v2", "1 entries"],
    ),
    "create_group": (ChatHeader(type="create_group", sender="Ann") / CreateGroup(group="g1"), ["create_group", "CreateGroup", "g1"]),
    "join_group": (ChatHeader(type="join_group", sender="Ann") / JoinGroup(group="g1"), ["join_group", "JoinGroup", "g1"]),
    "leave_group": (ChatHeader(type="leave_group", sender="Ann") / LeaveGroup(group="g1"), ["leave_group", "LeaveGroup", "g1"]),
    "list_members": (ChatHeader(type="list_members", sender="Ann") / ListMembers(group="g1"), ["list_members", "ListMembers", "g1"]),
    "send_group": (ChatHeader(type="send_group", sender="Ann") / SendGroup(group="g1", text="hi all"), ["send_group", "SendGroup", "g1", "hi all"]),
    "grp_msg": (ChatHeader(type="grp_msg", sender="server") / GrpMsg(group="g1", origin="Ann", text="hi all"), ["grp_msg", "GrpMsg", "g1", "Ann", "hi all"]),
    "pri_msg": (ChatHeader(type="pri_msg", sender="Ann") / PriMsg(text="psst"), ["pri_msg", "PriMsg", "Ann", "psst"]),
    "kick": (ChatHeader(type="kick", sender="Ann") / Kick(target="Bob"), ["kick", "Kick", "Bob"]),
    "list_more": (
        ChatHeader(type="list_more", sender="Ann") / ListMore(list="list_members", start=40, group="g1"),
        ["list_more", "ListMore", "list_members", "40", "g1"],
    ),
}


def test_every_type_has_a_readable_example():
    assert set(EXAMPLES) == set(MSG_TYPES.values())


@pytest.mark.parametrize("type_name", sorted(EXAMPLES))
def test_summary_and_show_are_readable(type_name):
    built, expected = EXAMPLES[type_name]
    for pkt in (built, decode(bytes(built))):
        summary = pkt.summary()
        for word in expected:
            assert word in summary, (word, summary)
        assert "Raw" not in summary and "\\x" not in summary
        shown = pkt.show(dump=True)
        assert f"type      = {type_name}" in shown
        assert "magic     = 0xc4a7" in shown


def test_table_entries_show_name_address_and_state():
    pkt = decode(bytes(EXAMPLES["table"][0]))
    shown = pkt.show(dump=True)
    assert "client    = 'Bob'" in shown and "ip        = 10.0.0.2" in shown and "online    = online" in shown
    assert pkt.payload.entries[0].summary().endswith("Bob@10.0.0.2:7002 online")


@settings(max_examples=200, deadline=None, derandomize=True)
@given(packets())
def test_summary_and_show_never_fail(pkt):
    """Names and texts are user data: `%` or `{` in them must not break Scapy's formatting."""
    pkt = decode(bytes(pkt))
    summary = pkt.summary()
    assert MSG_TYPES[pkt.type] in summary
    assert repr(pkt.sender) in summary
    pkt.show(dump=True)


def test_answers_match_ack_to_request():
    req = ChatHeader(type="join_group", msg_id=77, sender="Ann") / JoinGroup(group="g")
    ack = ChatHeader(type="ack", msg_id=5, sender="server") / Ack(ack_id=77)
    other = ChatHeader(type="ack", msg_id=6, sender="server") / Ack(ack_id=78)
    assert ack.answers(req) and not other.answers(req) and not req.answers(ack)
    assert ack.hashret() == req.hashret()
