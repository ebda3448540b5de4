"""Structure-aware hostile datagrams (tests/security/: test_security_structured.py, test_strict_decoding.py).

One well-formed datagram, taken apart into its fields with the layer's field model
(proto.fields; each field's bytes made by the Scapy field itself), then each field in turn
given a hostile value: numbers at 0, 1, their maximum, just outside their enum; the
header's type set to every other type (a payload of the wrong type); lengths that lie
by one; counts that lie; strings empty, over the limit, invalid UTF-8, or markup and
control sequences; the datagram cut at and inside every field (items cut short).
A field added to the layer is fuzzed without touching this file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from scapy.fields import Field
from scapy.packet import NoPayload, Packet

from proto import MAX_NAME_BYTES, MAX_TEXT_BYTES, PAYLOADS, decode
from proto.checks import label
from proto.fastpath import encode
from proto.fields import FieldSpec, Kind, layer_spec

# Strings that are well-formed on the wire but hostile to whoever prints or parses them.
MARKUP = ("[bold red]x[/]", "\x1b[2J\x1b[31mred", "%s%n{0}", "a\nb\r\x00c", "<b>&amp;</b>")
BAD_UTF8 = (b"\xff", b"A\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"ok\x80")  # bad byte, cut, surrogate, overlong

OUTSIDE = " (outside its enum)"  # in the description of a variant every decoder must refuse

# Values of the fields a sender sets: plausible ones, so that the request would work but
# for the one field made hostile.  Fields not named here get their layer's default.
PLAUSIBLE = {"group": "g", "target": "Ann", "text": "hello", "origin": "Ann", "client": "Ann", "value": "g",
             "ip": "127.0.0.1", "port": 7001}


def plausible_values(layer, items: int = 2) -> dict:
    """Values for the user fields of ``layer``, list fields with ``items`` items each."""
    values = {}
    for field in layer_spec(layer).fields:
        if field.computed:
            continue
        if field.kind is Kind.LIST:
            values[field.name] = [plausible_values(field.item.cls) for _ in range(items)]
        elif field.name in PLAUSIBLE:
            values[field.name] = PLAUSIBLE[field.name]
    return values


def datagram(type_name: str, header: dict, payload: dict | None = None) -> bytes:
    """A well-formed datagram; payload fields not given take plausible values."""
    layer = PAYLOADS.get(type_name)
    values = {**plausible_values(layer), **(payload or {})} if layer else None
    return encode(type_name, header, values)


@dataclass
class Segment:
    """The bytes of one field of a datagram."""

    layer: Packet  # the layer (or list item) it belongs to
    spec: FieldSpec  # what the field is
    data: bytes
    where: str  # e.g. "list_more.list", "table.entries[1].online"

    @property
    def field(self) -> Field:
        """The Scapy field."""
        return self.spec.field


def segments(data: bytes) -> list[Segment]:
    """``data`` (well-formed) as one segment per field, in wire order."""
    out: list[Segment] = []

    def walk(layer: Packet, where: str) -> None:
        for spec in layer_spec(type(layer)).fields:
            value = layer.getfieldval(spec.name)
            if spec.kind is Kind.LIST:
                for i, item in enumerate(value):
                    walk(item, f"{where}.{spec.name}[{i}]")
            else:
                out.append(Segment(layer, spec, spec.field.addfield(layer, b"", value), f"{where}.{spec.name}"))

    layer = decode(data)
    while not isinstance(layer, NoPayload):
        walk(layer, label(type(layer)))
        layer = layer.payload
    assert b"".join(s.data for s in out) == data, "the segments must be the datagram"
    return out


def _number_values(field: FieldSpec, value: int, size: int) -> list[int]:
    top = (1 << (8 * size)) - 1
    values = [0, 1, top, top - 1, value ^ 1]
    if (enum := field.enum) is not None:
        values += [min(enum) - 1, max(enum) + 1]
        values += [code for code in range(min(enum), max(enum)) if code not in enum][:2]  # gaps inside
        values += list(enum)  # every other member too: for the type, a payload of the wrong type
    return [v for v in dict.fromkeys(values) if 0 <= v <= top and v != value]


def _string_values(prefix: int) -> list[tuple[str, bytes]]:
    limit = MAX_NAME_BYTES if prefix == 1 else MAX_TEXT_BYTES
    top = (1 << (8 * prefix)) - 1
    values = [("empty", b""), (f"{limit + 1} bytes", b"y" * (limit + 1)),
              (f"{min(top, 3 * limit)} bytes", "é".encode() * (min(top, 3 * limit) // 2))]
    values += [(f"invalid UTF-8 {raw!r}", raw) for raw in BAD_UTF8]
    values += [(f"markup {text!r}", text.encode()) for text in MARKUP]
    return values


def hostile_variants(data: bytes) -> Iterator[tuple[str, bytes]]:
    """(what was done, the datagram) for each hostile value of each field of ``data``."""
    segs = segments(data)
    index = {(id(s.layer), s.field.name): i for i, s in enumerate(segs)}

    def replaced(changes: dict[int, bytes]) -> bytes:
        return b"".join(changes.get(i, s.data) for i, s in enumerate(segs))

    for i, seg in enumerate(segs):
        field, where = seg.spec, seg.where
        if field.kind is Kind.TEXT:
            j = index[(id(seg.layer), field.measured_by)]
            prefix = len(segs[j].data)
            for what, raw in _string_values(prefix):
                if len(raw) < 1 << (8 * prefix):
                    yield f"{where} {what}", replaced({i: raw, j: len(raw).to_bytes(prefix, "big")})
        elif field.computed:  # a length or count: lies
            real = seg.layer.getfieldval(field.name)
            size = len(seg.data)
            for value in dict.fromkeys((real - 1, real + 1, 0, (1 << (8 * size)) - 1)):
                if 0 <= value < 1 << (8 * size) and value != real:
                    yield f"{where} = {value} (really {real})", replaced({i: value.to_bytes(size, "big")})
        elif field.kind is Kind.IP:
            for raw in (b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\xe0\x00\x00\x01"):
                yield f"{where} = {raw.hex()}", replaced({i: raw})
        else:
            value = seg.layer.getfieldval(field.name)
            enum = field.enum
            for number in _number_values(field, value, len(seg.data)):
                note = OUTSIDE if enum is not None and number not in enum else ""
                yield f"{where} = {number}{note}", replaced({i: number.to_bytes(len(seg.data), "big")})
    cut = 0
    for seg in segs:  # cut at every field, and inside it: lists end mid-item
        if cut:
            yield f"cut before {seg.where}", data[:cut]
        if len(seg.data) > 1:
            yield f"cut inside {seg.where}", data[: cut + len(seg.data) // 2]
        cut += len(seg.data)
    yield "one byte more", data + b"\x00"
    for seg in segs:  # a list item given twice, its count not changed
        if seg.where.endswith("[0]." + layer_spec(type(seg.layer)).fields[0].name):
            item = b"".join(s.data for s in segs if s.layer is seg.layer)
            at = sum(len(s.data) for s in segs[: segs.index(seg)])
            yield f"extra item at {seg.where}", data[:at] + item + data[at:]


def registered_sessions(peers, server: tuple, names=("Mal", "Eve")) -> list:
    """A socket per name (from the ``peers`` fixture), each registered with the server at
    ``server``: sessions with valid tokens, to send hostile requests from."""
    sessions = []
    for name in names:
        peer = peers()
        peer.register(name, server)
        sessions.append(peer)
    return sessions
