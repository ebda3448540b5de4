"""Chat packets for the wire-format tests (test_proto.py, test_fastpath.py): hypothesis
strategies for every message type, one well-formed sample of each, Scapy-fuzzed ones, and
random corruptions of valid datagrams."""

from __future__ import annotations

import random

from hypothesis import strategies as st
from scapy.fields import FieldLenField
from scapy.packet import fuzz

from proto import (
    MAGIC,
    MSG_TYPES,
    PAYLOADS,
    STATUSES,
    TYPE_CODES,
    VERSION,
    Ack,
    ChatHeader,
    CreateGroup,
    Entry,
    GrpMsg,
    JoinGroup,
    Kick,
    LeaveGroup,
    ListMembers,
    ListMore,
    MsgId,
    Name,
    PriMsg,
    RegAck,
    SendGroup,
    Table,
)

# -- strategies ---------------------------------------------------------------

# Text that stresses a chat format: separators, newlines, quotes, non-ASCII, emoji, empty.
TRICKY = ["", ";", ";;", "a;b", "\n", "line\nbreak", ":", "'\"", "  spaced  ", "é", "日本語", "🙂", "%s", "{x}", "%type%"]
chars = st.characters(blacklist_categories=("Cs",))  # surrogates cannot be UTF-8 encoded
free_text = st.one_of(st.sampled_from(TRICKY), st.text(chars, max_size=60))


def fits(limit):
    return lambda s: len(s.encode("utf-8")) <= limit


names = free_text.filter(fits(255))  # one-byte length prefix
texts = st.one_of(free_text, st.text(chars, min_size=500, max_size=1500)).filter(fits(65535))  # two-byte prefix
u8, u16, u32, u64 = (st.integers(0, 2**bits - 1) for bits in (8, 16, 32, 64))
statuses = st.sampled_from(sorted(STATUSES))

headers = st.fixed_dictionaries({"msg_id": u32, "port": u16, "token": u64, "sender": names})

entries = st.builds(
    Entry,
    client=names,
    ip=st.ip_addresses(v=4).map(str),
    port=u16,
    online=st.sampled_from([0, 1]),
)
items = st.builds(Name, value=names)

PAYLOAD_STRATEGIES = {
    "reg": st.none(),
    "dereg": st.none(),
    "list_groups": st.none(),
    "probe": st.none(),
    "confirm": st.none(),
    "reg_ack": st.builds(RegAck, ack_id=u32, status=statuses, token=u64),
    "ack": st.builds(Ack, ack_id=u32, status=statuses, items=st.lists(items, max_size=8),
                     also=st.lists(st.builds(MsgId, id=u32), max_size=8)),
    "table": st.builds(Table, version=u32, base=u32, entries=st.lists(entries, max_size=8)),
    "create_group": st.builds(CreateGroup, group=names),
    "join_group": st.builds(JoinGroup, group=names),
    "leave_group": st.builds(LeaveGroup, group=names),
    "list_members": st.builds(ListMembers, group=names),
    "send_group": st.builds(SendGroup, group=names, text=texts),
    "grp_msg": st.builds(GrpMsg, group=names, origin=names, text=texts),
    "pri_msg": st.builds(PriMsg, text=texts),
    "kick": st.builds(Kick, target=names),
    "list_more": st.builds(ListMore, list=st.sampled_from([7, 10]), start=u16, group=names),
}


@st.composite
def packets(draw, type_name=None):
    type_name = type_name or draw(st.sampled_from(sorted(PAYLOAD_STRATEGIES)))
    pkt = ChatHeader(type=type_name, **draw(headers))
    payload = draw(PAYLOAD_STRATEGIES[type_name])
    return pkt if payload is None else pkt / payload


def user_fields(layer):
    """The values a sender sets, with the computed length and count fields left out."""
    out = {}
    for field in layer.fields_desc:
        if isinstance(field, FieldLenField):
            continue
        value = layer.getfieldval(field.name)
        out[field.name] = [user_fields(v) for v in value] if isinstance(value, list) else value
    return out


# -- samples, fuzzed and corrupted --------------------------------------------------


def sample_packets(rng: random.Random) -> list[bytes]:
    """One well-formed datagram of every type, with non-trivial contents."""
    hdr = dict(msg_id=rng.randrange(2**32), port=7001, token=rng.randrange(2**64), sender="Ann;é")
    payloads = {
        "reg_ack": RegAck(ack_id=5, status="ok", token=99),
        "ack": Ack(ack_id=6, status="ok", items=[Name(value="g1"), Name(value="日本"), Name(value="")],
                   also=[MsgId(id=7), MsgId(id=2**32 - 1)]),
        "table": Table(
            version=3,
            base=1,
            entries=[Entry(client="Ann", ip="10.0.0.1", port=7001), Entry(client="Bob", ip="10.0.0.2", port=7002, online=0)],
        ),
        "create_group": CreateGroup(group="g1"),
        "join_group": JoinGroup(group="g1"),
        "leave_group": LeaveGroup(group="g1"),
        "list_members": ListMembers(group="g1"),
        "send_group": SendGroup(group="g1", text="hi; there\n🙂"),
        "grp_msg": GrpMsg(group="g1", origin="Bob", text="hello é"),
        "pri_msg": PriMsg(text="psst; é"),
        "kick": Kick(target="Bob"),
        "list_more": ListMore(list="list_members", start=40, group="g1"),
    }
    return [
        bytes(ChatHeader(type=t, **hdr) / payloads[t]) if t in payloads else bytes(ChatHeader(type=t, **hdr))
        for t in TYPE_CODES
    ]


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One random corruption of a valid datagram."""
    b = bytearray(data)
    if len(b) <= 19:  # already cut into the header (by an earlier mutation): cut more
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
        i = rng.randrange(19, len(b)) if len(b) > 19 else len(b) - 1
        b[i] = rng.choice([0x80, 0xC0, 0xFF, 0xFE])
    elif how == 7:  # a length or count byte pushed past the end (or just off)
        i = rng.randrange(18, len(b))
        b[i] = min(255, b[i] + rng.randint(1, 255))
    elif how == 8:  # sender length past the end
        b[18] = 255
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
        if layer is Ack:
            payload = fuzz(Ack(items=[fuzz(Name()) for _ in range(rng.randrange(3))],
                               also=[fuzz(MsgId()) for _ in range(rng.randrange(3))]))
        elif layer is Table:
            payload = fuzz(Table(entries=[fuzz(Entry()) for _ in range(rng.randrange(3))]))
        else:
            payload = fuzz(layer())
        if i % 4 == 0:  # header fuzzed too, except what makes it recognisable
            header = fuzz(ChatHeader(magic=MAGIC, version=VERSION, type=type_name))
        else:
            header = ChatHeader(type=type_name, sender="A")
        out.append(bytes(header / payload))
    return out
