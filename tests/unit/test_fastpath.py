"""The compiled codec (proto.fastpath) against the Scapy layer it is derived from:
the same bytes out, the same bytes accepted, the same values read."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from proto import MSG_TYPES, PAYLOADS, ChatHeader, ProtocolError, decode
from proto.fastpath import encode, parse
from proto.fields import layer_spec
from tests.packets import PAYLOAD_STRATEGIES, fuzzed_packets, mutate, packets, sample_packets, user_fields


# length and count fields: user_fields leaves them out too
COMPUTED = {f.name for layer in map(layer_spec, (ChatHeader, *PAYLOADS.values()))
            for spec in (layer, *layer.sub_layers()) for f in spec.fields if f.computed}


def as_plain(fields) -> dict:
    """A parsed message's values in the shape ``user_fields`` gives for a Scapy layer."""
    out = {}
    for name, value in vars(fields).items():
        if name == "payload" or name in COMPUTED:
            continue
        out[name] = [as_plain(v) for v in value] if isinstance(value, list) else value
    return out


def fast_encode(pkt) -> bytes:
    header = user_fields(pkt)
    for key in ("magic", "version", "type"):
        header.pop(key)
    payload = user_fields(pkt.payload) if pkt.payload else {}
    return encode(MSG_TYPES[pkt.type], header, payload)


@pytest.mark.parametrize("type_name", sorted(PAYLOAD_STRATEGIES))
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_same_bytes_and_values_as_scapy(type_name, data):
    pkt = data.draw(packets(type_name))
    wire = bytes(pkt)
    assert fast_encode(pkt) == wire
    msg = parse(wire)
    assert as_plain(msg) == user_fields(pkt)
    assert as_plain(msg.payload) == (user_fields(pkt.payload) if pkt.payload else {})


def accepts(parser, data: bytes) -> bool:
    try:
        parser(data)
    except ProtocolError:
        return False
    return True


def test_accepts_exactly_what_scapy_decode_accepts():
    rng = random.Random(7)
    valid = sample_packets(rng)
    fuzzed = fuzzed_packets(rng, 400)
    corpus = valid + fuzzed + [mutate(rng.choice(valid + fuzzed), rng) for _ in range(4000)]
    corpus += [rng.randbytes(rng.randrange(40)) for _ in range(500)]
    verdicts = [(accepts(decode, data), accepts(parse, data)) for data in corpus]
    disagreements = [data for data, (slow, fast) in zip(corpus, verdicts) if slow != fast]
    assert not disagreements, f"{len(disagreements)} disagreements, first {disagreements[0].hex()}"
    assert 0 < sum(slow for slow, _ in verdicts) < len(corpus), "both verdicts must occur"
    for data in corpus:
        if accepts(parse, data):
            assert as_plain(parse(data)) == user_fields(decode(data))


def test_enum_names_and_numbers_encode_alike():
    header = {"msg_id": 1, "sender": "server"}
    assert encode("ack", header, {"ack_id": 2, "status": "not_in_group"}) == encode("ack", header, {"ack_id": 2, "status": 6})
