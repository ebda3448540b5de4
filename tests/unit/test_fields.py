"""The field model (proto/fields.py) against the Scapy layer it reads, and the rule that it is
the one place that interprets Scapy field classes."""

from __future__ import annotations

import re
import struct

import pytest
from scapy.fields import BitField, ByteEnumField, FieldLenField, IntField, IPField, PacketListField, ShortField
from scapy.fields import StrFixedLenField, StrLenField, XLongField
from scapy.packet import Packet

from proto import HEADER_MIN, PAYLOADS, TOKEN_AT, TOKEN_END, ChatHeader, Name
from proto.chat import Utf8LenField
from proto.fastpath import _Layout, encode
from proto.fields import Kind, layer_spec
from tests.procs import ROOT

ALL = [ChatHeader, *PAYLOADS.values()]


def every_layer():
    for layer in ALL:
        yield layer_spec(layer)
        yield from layer_spec(layer).sub_layers()


def test_every_field_of_every_layer_is_modelled_in_wire_order():
    for spec in every_layer():
        assert [f.field for f in spec.fields] == list(spec.cls.fields_desc), spec.cls.__name__
        for f in spec.fields:
            if f.fixed:
                assert f.size == f.field.sz == struct.calcsize(f.fmt), (spec.cls.__name__, f.name)
            else:
                assert f.kind in (Kind.TEXT, Kind.BYTES, Kind.LIST) and f.size is None


def test_each_length_and_count_names_the_field_it_measures_and_back():
    for spec in every_layer():
        for f in spec.fields:
            if f.computed:
                assert spec.field(f.measures).measured_by == f.name
            if f.measured_by:
                assert spec.field(f.measured_by).measures == f.name


def test_the_header_sizes_are_those_scapy_builds():
    assert HEADER_MIN == len(ChatHeader()) == len(encode("reg", {}))
    data = encode("reg", {"token": 0x0102030405060708, "sender": "Ann"})
    assert data[TOKEN_AT:TOKEN_END] == bytes(range(1, 9))


class Every(Packet):
    """A layer with one field of each kind the model knows, none of them the chat layer's."""

    name = "Every"
    fields_desc = [
        XLongField("big", 0),
        ByteEnumField("colour", 1, {1: "red", 2: "green"}),
        IPField("where", "127.0.0.1"),
        FieldLenField("note_len", None, length_of="note", fmt="H"),
        Utf8LenField("note", "", length_from=lambda pkt: pkt.note_len),
        ShortField("tail", 0),
        FieldLenField("count", None, count_of="names", fmt="B"),
        PacketListField("names", [], Name, count_from=lambda pkt: pkt.count),
    ]


def test_a_new_layer_is_understood_by_the_model_and_the_compiled_codec():
    spec = layer_spec(Every)
    assert [f.kind for f in spec.fields] == [Kind.INT, Kind.ENUM, Kind.IP, Kind.INT, Kind.TEXT, Kind.INT, Kind.INT, Kind.LIST]
    assert spec.field("big").hex and not spec.field("tail").hex
    values = {"big": 2**64 - 1, "colour": "green", "where": "10.9.8.7", "note": "é;\n", "tail": 513, "names": [{"value": "g"}]}
    out: list[bytes] = []
    layout = _Layout.of(Every)
    layout.write(values, out)
    data = b"".join(out)
    assert data == bytes(spec.build(values))
    read, end = layout.read(data, 0, len(data))
    assert end == len(data) and spec.user_values(Every(data)) == {**values, "colour": 2, "names": [{"value": "g"}]}
    assert (read.big, read.colour, read.where, read.note, read.tail, read.names[0].value) == (2**64 - 1, 2, "10.9.8.7", "é;\n", 513, "g")


@pytest.mark.parametrize("field, words", [
    (StrFixedLenField("code", b"", length=4), "a StrFixedLenField is not a field this model knows"),
    (BitField("flags", 0, 4), "a BitField is not a field this model knows"),
    (StrLenField("blob", b"", length_from=lambda pkt: 3), "no field of the layer gives its length or count"),
])
def test_a_field_the_model_does_not_know_is_refused_in_words(field, words):
    layer = type("Odd", (Packet,), {"name": "Odd", "fields_desc": [IntField("n", 0), field]})
    with pytest.raises(NotImplementedError, match=f"Odd.{field.name}: {words}"):
        layer_spec(layer)


def test_only_the_model_reads_scapy_field_classes():
    """Everyone else asks the model: an isinstance test on a Scapy field class elsewhere is a
    second interpretation of the layer, which drifts from the first."""
    pattern = re.compile(r"isinstance\([^)]*Field\b")
    found = []
    for folder in ("proto", "node", "tools", "tests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == ROOT / "proto" / "fields.py":
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if pattern.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)
