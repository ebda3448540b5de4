"""The rule keys for any UDP datagram (tools/datagram_match.py) inside the rule engine
(tools/faults.py), and the layers that decode datagrams for them (tools/layers.py): the chat
layer through the fast codec, any Scapy layer named MODULE:CLASS."""

from __future__ import annotations

import pytest
from scapy.layers.dns import DNS, DNSQR

from proto.fastpath import encode
from tools import layers
from tools.datagram_match import Datagram
from tools.faults import FaultPlan, Rule, RuleError

CLIENT, SERVER = ("127.0.0.1", 40000), ("127.0.0.1", 53)
DNS_LAYER = layers.load("scapy.layers.dns:DNS")


def fate(rule: str, data: bytes, src=CLIENT, dst=SERVER, layer=None, kind=None) -> str:
    """The action one rule takes on one datagram (``kind`` None: not of the layer)."""
    msg = layer.decode(data) if layer else None
    if msg is not None:
        kind = layer.describe(msg)[0]
    plan = FaultPlan([rule], seed=1)
    return plan.decide(data, kind, "a", "b", datagram=Datagram(data, src, dst, msg, layer)).action


def query(name: str = "example.com", **header) -> bytes:
    return bytes(DNS(rd=1, qd=DNSQR(qname=name), **header))


# -- addresses, ports, sizes, bytes --------------------------------------------------------------


@pytest.mark.parametrize(
    "rule, dropped",
    [
        ("drop src=127.0.0.1:40000", True),
        ("drop src=127.0.0.1", True),
        ("drop src=:40000", True),
        ("drop src=127.0.0.2,:1", False),
        ("drop src=:1,127.0.0.1:40000", True),
        ("drop dst=:53", True),
        ("drop dst=:40000", False),
        ("drop port=53", True),
        ("drop port=40000", True),
        ("drop port=54,55", False),
        ("drop size=5", True),
        ("drop size=4", False),
        ("drop size=>4", True),
        ("drop size=>5", False),
        ("drop size=<6", True),
        ("drop size=<5", False),
        ("drop size=5..9", True),
        ("drop size=6..9", False),
        ("drop bytes=0:6865", True),
        ("drop bytes=1:656c6c6f", True),
        ("drop bytes=1:6865", False),
        ("drop bytes=-2:6c6f", True),
        ("drop bytes=-9:6c6f", False),
        ("drop bytes=4:6f00", False),
        ("drop bytes=0~h.l+o$", True),
        ("drop bytes=2~l{2}", True),
        ("drop bytes=3~l{2}", False),
        ("drop bytes=9~x?", False),
        ("drop port=53 size=<3", False),
    ],
)
def test_address_port_size_and_bytes_keys(rule, dropped):
    assert fate(rule, b"hello") == ("drop" if dropped else "pass")


def test_a_datagram_not_of_the_layer_meets_only_rules_with_datagram_keys():
    """`drop` alone, or by type, takes chat datagrams only, as before the new keys."""
    assert fate("drop", b"junk") == "pass"
    assert fate("drop type=ack", b"junk") == "pass"
    assert fate("drop size=4", b"junk") == "drop"
    chat = encode("ack", {"msg_id": 1, "sender": "A"}, {"ack_id": 1})
    assert fate("drop", chat, layer=layers.ChatLayer()) == "drop"


def test_the_new_keys_select_like_type_from_and_to():
    plan = FaultPlan(["drop port=53 first=2"], seed=1)
    got = [plan.decide(b"x", None, "a", "b", datagram=Datagram(b"x", CLIENT, SERVER)).action for _ in range(3)]
    assert got == ["drop", "drop", "pass"]
    assert (plan.rules[0].selected, plan.rules[0].applied) == (3, 2)


def test_without_addresses_as_in_the_simulator_only_size_and_bytes_can_match():
    plan = FaultPlan(["drop port=53", "duplicate 1 size=1"])
    assert plan.decide(b"x", "ack", "a", "b").action == "duplicate"
    assert plan.decide(b"xy", "ack", "a", "b").action == "pass"


@pytest.mark.parametrize(
    "text, words",
    [
        ("drop src=localhost", ["bad address 'localhost'"]),
        ("drop src=1.2.3.4:99999", ["bad port '99999'"]),
        ("drop dst=:x", ["bad port 'x'"]),
        ("drop src=1.2.3.4,,:5", ["bad address"]),
        ("drop port=0", ["bad port '0'"]),
        ("drop size=big", ["bad size 'big'"]),
        ("drop size=9..2", ["bad size '9..2'"]),
        ("drop bytes=ff", ["bad bytes 'ff'"]),
        ("drop bytes=0:fff", ["bad hex 'fff'"]),
        ("drop bytes=0~(", ["bad regular expression '('"]),
        ("drop field.=1", ["bad word 'field.=1'"]),
        ("drop field.a..b=1", ["bad field name 'a..b'"]),
        ("drop sizes=5", ["bad word 'sizes=5'", "size=", "bytes=", "field.NAME="]),
    ],
)
def test_a_bad_value_is_an_error_naming_it_and_the_rule(text, words):
    with pytest.raises(RuleError) as caught:
        Rule.parse(text)
    assert all(word in str(caught.value) for word in words), caught.value
    assert f"rule '{text}'" in str(caught.value)


# -- field.NAME= on the chat layer ------------------------------------------------------------------


def test_chat_fields_by_value_by_enum_name_and_in_the_payload():
    chat = layers.ChatLayer()
    data = encode("ack", {"msg_id": 7, "sender": "Ann"}, {"ack_id": 3, "status": "ok"})
    for rule, action in [
        ("drop field.sender=Ann", "drop"),
        ("drop field.sender=Bob", "pass"),
        ("drop field.msg_id=7", "drop"),
        ("drop field.msg_id=0x7", "drop"),
        ("drop field.ack_id=3", "drop"),
        ("drop field.status=ok", "drop"),
        ("drop field.type=ack", "drop"),
        ("drop field.type=pri_msg", "pass"),
        ("drop field.payload.ack_id=3,4", "drop"),
        ("drop field.text=hi", "pass"),  # an ack has no text
    ]:
        assert fate(rule, data, layer=chat) == action, rule


def test_chat_fields_reach_into_lists():
    data = encode("table", {"msg_id": 1, "sender": "server"},
                  {"entries": [{"client": "Ann", "port": 7}, {"client": "Bob", "port": 8, "online": 0}]})
    assert fate("drop field.entries.client=Bob", data, layer=layers.ChatLayer()) == "drop"
    assert fate("drop field.entries.online=offline", data, layer=layers.ChatLayer()) == "drop"
    assert fate("drop field.entries.port=9", data, layer=layers.ChatLayer()) == "pass"


# -- --layer: any Scapy layer ---------------------------------------------------------------------


def test_dns_fields_by_value_enum_name_and_into_the_question():
    for rule, action in [
        ("drop field.qr=0", "drop"),
        ("drop field.qr=1", "pass"),
        ("drop field.opcode=QUERY", "drop"),
        ("drop field.qd.qname=example.com.", "drop"),
        ("drop field.qd.qname=example.org.", "pass"),
        ("drop field.qd.qtype=A", "drop"),
        ("drop field.qd.qtype=1", "drop"),
        ("drop field.nosuch=1", "pass"),
        ("drop", "drop"),  # a datagram of the layer meets every rule, like a chat one
        ("drop type=ack", "pass"),  # chat types are no DNS type
    ]:
        assert fate(rule, query(), layer=DNS_LAYER) == action, rule


@pytest.mark.parametrize("data", [b"", b"\x00", b"hello world, not dns at all", query()[:14]])
def test_what_scapy_cannot_dissect_is_not_of_the_layer(data):
    assert DNS_LAYER.decode(data) is None
    assert fate("drop field.qr=0", data, layer=DNS_LAYER) == "pass"
    assert fate(f"drop size={len(data)}", data, layer=DNS_LAYER) == "drop"


def test_decoding_leaves_scapys_settings_as_they_were():
    from scapy.config import conf

    before = conf.debug_dissector
    DNS_LAYER.decode(b"\x00")
    DNS_LAYER.decode(query())
    assert conf.debug_dissector == before


def test_a_layers_fields_as_json():
    fields = DNS_LAYER.as_json(DNS_LAYER.decode(query("a.example", id=0x1234)))
    assert fields["id"] == 0x1234 and fields["qr"] == 0 and fields["qdcount"] == 1
    assert fields["qd"][0]["qname"] == "a.example."
    assert layers.ChatLayer().as_json(object()) is None


def test_coap_from_scapy_contrib():
    coap = layers.load("scapy.contrib.coap:CoAP")
    from scapy.contrib.coap import CoAP

    data = bytes(CoAP(type="CON", code="GET", msg_id=5, token=b"ab"))
    assert fate("drop field.code=GET field.msg_id=5", data, layer=coap) == "drop"
    assert fate("drop field.code=POST", data, layer=coap) == "pass"


@pytest.mark.parametrize(
    "spec, said",
    [
        ("scapy.layers.dns", "bad --layer 'scapy.layers.dns' (use MODULE:CLASS"),
        ("no.such.module:X", "no module named 'no.such.module'"),
        ("scapy.layers.dns:DNZ", "module 'scapy.layers.dns' has no 'DNZ'"),
        ("scapy.layers.dns:dnsqtypes", "'dnsqtypes' is not a Scapy layer"),
    ],
)
def test_a_layer_that_cannot_be_had_is_one_clear_error(spec, said):
    with pytest.raises(layers.LayerError) as caught:
        layers.load(spec)
    assert said in str(caught.value) and "\n" not in str(caught.value)


def test_no_layer_is_the_chat_layer():
    assert isinstance(layers.load(None), layers.ChatLayer)


def test_a_layer_whose_own_code_fails_on_a_value_costs_a_match_or_the_logged_fields_never_a_crash():
    from scapy.fields import ByteField
    from scapy.packet import Packet

    class Unshowable:
        def __init__(self, value):
            self.value = value

        def __str__(self):
            raise ValueError("cannot show this value")

    class Fragile(Packet):
        name = "Fragile"
        fields_desc = [ByteField("kind", 0)]

        def getfieldval(self, attr):
            return Unshowable(super().getfieldval(attr))

    layer = layers.ScapyLayer(Fragile)
    data = b"\x05"
    assert fate("drop field.kind=5", data, layer=layer) == "pass"
    assert fate("drop size=1", data, layer=layer) == "drop"
    assert layer.as_json(layer.decode(data)) == {"error": "fields not shown (ValueError)"}


def test_corrupt_passes_an_empty_datagram_on_as_it_is():
    decision = FaultPlan(["corrupt size=0"]).decide(b"", None, "a", "b", datagram=Datagram(b"", CLIENT, SERVER))
    assert (decision.action, decision.copies) == ("corrupt", [(0.0, b"")])
