"""Chat packets for the wire-format tests (test_proto.py, test_fastpath.py): hypothesis
strategies for every message type, one well-formed sample of each, Scapy-fuzzed ones, and
random corruptions of valid datagrams."""

from __future__ import annotations

import random
import socket

from hypothesis import strategies as st
from scapy.packet import fuzz

from proto import HEADER_MIN, MAGIC, MSG_TYPES, PAYLOADS, VERSION, ChatHeader
from proto.checks import FIXED
from proto.fields import HEADER, FieldSpec, Kind, LayerSpec, layer_spec

# -- strategies ---------------------------------------------------------------
# Derived from the layer's field model: a field added to a layer is drawn too.

# Text that stresses a chat format: separators, newlines, quotes, non-ASCII, emoji, empty.
TRICKY = ["", ";", ";;", "a;b", "\n", "line\nbreak", ":", "'\"", "  spaced  ", "é", "日本語", "🙂", "%s", "{x}", "%type%"]
chars = st.characters(blacklist_categories=("Cs",))  # surrogates cannot be UTF-8 encoded
free_text = st.one_of(st.sampled_from(TRICKY), st.text(chars, max_size=60))
MAX_ITEMS = 8  # list items drawn at most


def fits(limit):
    return lambda s: len(s.encode("utf-8")) <= limit


def _largest(field: FieldSpec) -> int:
    return (1 << (8 * field.size - field.signed)) - 1


def field_strategy(layer: LayerSpec, field: FieldSpec) -> st.SearchStrategy:
    """Any value ``field`` of ``layer`` may hold: integers over their whole range, enums over their values."""
    if field.kind is Kind.INT:
        return st.integers(-_largest(field) - 1 if field.signed else 0, _largest(field))
    if field.kind is Kind.ENUM:
        return st.sampled_from(sorted(field.enum))
    if field.kind is Kind.IP:
        return st.ip_addresses(v=4).map(str)
    limit = _largest(layer.field(field.measured_by))  # what its length or count field can say
    if field.kind is Kind.LIST:
        return st.lists(layer_strategy(field.item.cls), max_size=min(MAX_ITEMS, limit))
    if field.kind is Kind.BYTES:
        return st.binary(max_size=min(limit, 1500))
    if limit <= 255:  # a name: short text
        return free_text.filter(fits(limit))
    return st.one_of(free_text, st.text(chars, min_size=500, max_size=1500)).filter(fits(limit))


def _drawn(layer: LayerSpec, skip=()) -> dict:
    return {f.name: field_strategy(layer, f) for f in layer.fields if not f.computed and f.name not in skip}


def layer_strategy(cls) -> st.SearchStrategy:
    """Packets of the Scapy layer ``cls``, every field a sender sets drawn."""
    return st.builds(cls, **_drawn(layer_spec(cls)))


headers = st.fixed_dictionaries(_drawn(HEADER, skip={*FIXED, "type"}))  # the type is chosen apart
PAYLOAD_STRATEGIES = {name: layer_strategy(PAYLOADS[name]) if name in PAYLOADS else st.none() for name in MSG_TYPES.values()}


@st.composite
def packets(draw, type_name=None):
    type_name = type_name or draw(st.sampled_from(sorted(PAYLOAD_STRATEGIES)))
    pkt = ChatHeader(type=type_name, **draw(headers))
    payload = draw(PAYLOAD_STRATEGIES[type_name])
    return pkt if payload is None else pkt / payload


def user_fields(layer):
    """The values a sender sets, with the computed length and count fields left out."""
    return layer_spec(type(layer)).user_values(layer)


# -- samples, fuzzed and corrupted --------------------------------------------------


SAMPLE_TEXTS = ["Ann;é", "g1", "日本", "", "hi; there\n🙂", "hello é", "psst; é"]


def sample_values(layer: LayerSpec, rng: random.Random, skip=()) -> dict:
    """Non-trivial values for every field of ``layer`` a sender sets (list items as dicts)."""
    values = {}
    for f in layer.fields:
        if f.computed or f.name in skip:
            continue
        if f.kind is Kind.INT:
            values[f.name] = rng.randint(-_largest(f) - 1 if f.signed else 0, _largest(f))
        elif f.kind is Kind.ENUM:
            values[f.name] = rng.choice(sorted(f.enum))
        elif f.kind is Kind.IP:
            values[f.name] = socket.inet_ntoa(rng.randbytes(4))
        elif f.kind is Kind.TEXT:
            values[f.name] = rng.choice(SAMPLE_TEXTS)
        elif f.kind is Kind.BYTES:
            values[f.name] = rng.randbytes(rng.randrange(8))
        else:
            values[f.name] = [sample_values(f.item, rng) for _ in range(rng.randint(1, 3))]
    return values


def sample_packets(rng: random.Random) -> list[bytes]:
    """One well-formed datagram of every type, with non-trivial contents."""
    out = []
    for type_name in MSG_TYPES.values():
        pkt = ChatHeader(type=type_name, **sample_values(HEADER, rng, skip={*FIXED, "type"}))
        if type_name in PAYLOADS:
            pkt /= layer_spec(PAYLOADS[type_name]).build(sample_values(layer_spec(PAYLOADS[type_name]), rng))
        out.append(bytes(pkt))
    return out


SENDER_LEN_AT = HEADER.span(HEADER.field("sender").measured_by)[0]  # the header's byte that gives the sender's length


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One random corruption of a valid datagram."""
    b = bytearray(data)
    if len(b) <= HEADER_MIN:  # already cut into the header (by an earlier mutation): cut more
        return bytes(b[:-1])
    how = rng.randrange(11)
    if how == 0:  # truncation
        return bytes(b[: rng.randrange(len(b))])
    if how == 1:  # bit flips
        for _ in range(rng.randint(1, 3)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    elif how == 2:  # wrong magic
        b[rng.randrange(2)] ^= rng.randint(1, 255)
    elif how == 3:  # wrong version
        b[2] = rng.choice([0, VERSION - 1, VERSION + 1, 255])
    elif how == 4:  # unknown type
        b[3] = rng.choice([0, max(MSG_TYPES) + 1, 200, 255])
    elif how == 5:  # trailing garbage
        b += rng.randbytes(rng.randint(1, 8))
    elif how == 6:  # invalid UTF-8 somewhere after the header
        i = rng.randrange(HEADER_MIN, len(b)) if len(b) > HEADER_MIN else len(b) - 1
        b[i] = rng.choice([0x80, 0xC0, 0xFF, 0xFE])
    elif how == 7:  # a length or count byte pushed past the end (or just off)
        i = rng.randrange(SENDER_LEN_AT, len(b))
        b[i] = min(255, b[i] + rng.randint(1, 255))
    elif how == 8:  # sender length past the end
        b[SENDER_LEN_AT] = 255
    elif how == 9:  # random byte overwritten
        b[rng.randrange(len(b))] = rng.randrange(256)
    else:  # a chunk removed from the middle
        i = rng.randrange(len(b))
        del b[i : i + rng.randint(1, 4)]
    return bytes(b)


def fuzzed_packets(rng: random.Random, count: int) -> list[bytes]:
    """Scapy's own ``fuzz()`` over every payload layer (and the header's free fields)."""
    out = []
    layers = sorted(PAYLOADS.items())
    for i in range(count):
        type_name, layer = layers[i % len(layers)]
        lists = {f.name: [fuzz(f.item.cls()) for _ in range(rng.randrange(3))] for f in layer_spec(layer).fields if f.kind is Kind.LIST}
        payload = fuzz(layer(**lists))
        if i % 4 == 0:  # header fuzzed too, except what makes it recognisable
            header = fuzz(ChatHeader(magic=MAGIC, version=VERSION, type=type_name))
        else:
            header = ChatHeader(type=type_name, sender="A")
        out.append(bytes(header / payload))
    return out
