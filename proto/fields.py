"""The layer's fields as a small model: the one place that reads Scapy field classes.

``layer_spec(ChatHeader)`` reads the layer's ``fields_desc`` once into a ``LayerSpec``: per
field its kind (a fixed-size integer, an enumerated one, an IPv4 address, length-prefixed UTF-8
text or bytes, a list of sub-packets), its size and ``struct`` code, which field holds its length
or count, its enum values.  Everything else that needs to know what a field is (the compiled
codec, the strict checks, the generated reference, the Wireshark dissector, the tools' field
values, the benchmarks and the tests' packet generators) asks this model, so a field added to
the layer is understood everywhere at once, or refused here in words.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field as dataclass_field

from scapy.fields import BitField, EnumField, Field, FieldLenField, IPField, PacketListField, StrLenField, _PacketField, _StrField

from .chat import ChatHeader, Utf8LenField


class Kind(enum.Enum):
    INT = "integer"
    ENUM = "enumerated integer"
    IP = "IPv4 address"
    TEXT = "UTF-8 text"  # length-prefixed
    BYTES = "bytes"  # length-prefixed
    LIST = "list of sub-packets"  # counted



@dataclass(frozen=True, eq=False)
class FieldSpec:
    name: str
    kind: Kind
    field: Field  # the Scapy field itself: for what only it can do (addfield, i2repr)
    default: object
    fmt: str | None = None  # struct format of a fixed-size field, byte order first ("!H"); None: variable size
    hex: bool = False  # Scapy shows the value in hex (the X*Field classes)
    enum: dict | None = None  # value -> name, for ENUM
    measures: str | None = None  # this field holds the byte length (TEXT, BYTES) or item count (LIST) of that one
    measured_by: str | None = None  # for TEXT, BYTES and LIST: the field that holds its length or count
    item: "LayerSpec | None" = None  # for LIST: the sub-packet's layer

    @property
    def fixed(self) -> bool:
        return self.fmt is not None

    @property
    def code(self) -> str:
        """The struct code without the byte order ("H")."""
        return self.fmt.lstrip("!<>=@")

    @property
    def size(self) -> int | None:
        """Bytes on the wire of a fixed-size field; None for the others."""
        return struct.calcsize(self.fmt) if self.fixed else None

    @property
    def bits(self) -> int | None:
        """Bits on the wire of a fixed-size field (how many a random token for it draws); None for the others."""
        return 8 * self.size if self.fixed else None

    @property
    def signed(self) -> bool:
        return self.code.islower()

    @property
    def computed(self) -> bool:
        """A length or count: the encoder works it out, a sender never sets it."""
        return self.measures is not None

    @property
    def names(self) -> dict:
        """name -> value, for ENUM."""
        return {name: value for value, name in self.enum.items()}


@dataclass(frozen=True, eq=False)
class LayerSpec:
    cls: type
    fields: tuple[FieldSpec, ...]
    _by_name: dict = dataclass_field(default_factory=dict, repr=False)

    def __post_init__(self):
        self._by_name.update((f.name, f) for f in self.fields)

    @property
    def title(self) -> str:
        """Scapy's display name of the layer ("Chat", "Ack")."""
        return self.cls().name  # the class attribute is Scapy's slot: an instance holds the name

    def field(self, name: str) -> FieldSpec:
        return self._by_name[name]

    @property
    def fixed_size(self) -> int:
        """Bytes of the fixed-size fields (the whole layer, with every string and list empty)."""
        return sum(f.size for f in self.fields if f.fixed)

    def span(self, name: str) -> tuple[int, int]:
        """Where the fixed-size field ``name`` starts and ends, when every field before it is fixed-size too."""
        offset = 0
        for f in self.fields:
            if not f.fixed:
                break
            if f.name == name:
                return offset, offset + f.size
            offset += f.size
        raise KeyError(f"{self.cls.__name__}.{name} does not sit at a fixed offset")

    def user_values(self, pkt) -> dict:
        """The values of a Scapy packet of this layer that a sender sets (lengths and counts left
        out), list items as dicts of theirs."""
        out = {}
        for f in self.fields:
            if f.computed:
                continue
            value = pkt.getfieldval(f.name)
            out[f.name] = [f.item.user_values(v) for v in value] if f.kind is Kind.LIST else value
        return out

    def build(self, values: dict):
        """A Scapy packet of this layer from values as ``user_values`` gives them (items as dicts)."""
        fields = {}
        for name, value in values.items():
            f = self.field(name)
            fields[name] = [f.item.build(v) for v in value] if f.kind is Kind.LIST else value
        return self.cls(**fields)

    def sub_layers(self) -> list["LayerSpec"]:
        """The layers of this one's list items, and of theirs, in order of first appearance."""
        found: list[LayerSpec] = []
        for f in self.fields:
            if f.kind is Kind.LIST and f.item not in found:
                found += [f.item] + [s for s in f.item.sub_layers() if s not in found]
        return found


_SPECS: dict[type, LayerSpec] = {}


def layer_spec(cls: type) -> LayerSpec:
    """The field model of the Scapy layer class ``cls`` (read once, then remembered)."""
    if cls not in _SPECS:
        _SPECS[cls] = _read(cls)
    return _SPECS[cls]


def enum_values(field: Field) -> dict | None:
    """The value -> name table of an enumerated Scapy field (a new ``*EnumField`` of the layer is
    checked by both decoders without anyone listing it); None for other fields."""
    if isinstance(field, EnumField) and isinstance(field.i2s, dict) and field.i2s:
        return field.i2s
    return None


def _read(cls: type) -> LayerSpec:
    measured_by = {}
    for f in cls.fields_desc:
        if isinstance(f, FieldLenField):
            measured_by[f.length_of or f.count_of] = f.name
    return LayerSpec(cls, tuple(_spec(cls, f, measured_by) for f in cls.fields_desc))


def _spec(cls: type, f: Field, measured_by: dict) -> FieldSpec:
    where = f"{cls.__name__}.{f.name}"
    if isinstance(f, (StrLenField, PacketListField)):
        if f.name not in measured_by:
            raise NotImplementedError(f"{where}: no field of the layer gives its length or count")
        if isinstance(f, PacketListField):
            return FieldSpec(f.name, Kind.LIST, f, [], measured_by=measured_by[f.name], item=layer_spec(f.cls))
        kind = Kind.TEXT if isinstance(f, Utf8LenField) else Kind.BYTES
        return FieldSpec(f.name, kind, f, f.default, measured_by=measured_by[f.name])
    if isinstance(f, IPField):
        return FieldSpec(f.name, Kind.IP, f, f.default, fmt=f.fmt)
    code = (f.fmt or "").lstrip("!<>=@")
    if isinstance(f, (_StrField, _PacketField, BitField)) or len(code) != 1 or code not in "bBhHiIqQ":
        # Other strings, bit fields, conditional ones...: teach this model (and its users) first.
        raise NotImplementedError(f"{where}: a {type(f).__name__} is not a field this model knows")
    if isinstance(f, FieldLenField):
        return FieldSpec(f.name, Kind.INT, f, None, fmt=f.fmt, measures=f.length_of or f.count_of)
    if (values := enum_values(f)) is not None:
        return FieldSpec(f.name, Kind.ENUM, f, f.default, fmt=f.fmt, enum=values)
    return FieldSpec(f.name, Kind.INT, f, f.default, fmt=f.fmt, hex=f.i2repr(None, 1).startswith("0x"))


HEADER = layer_spec(ChatHeader)
HEADER_MIN = HEADER.fixed_size  # the shortest chat datagram: the header with the sender's name empty
# The header's token field, data[TOKEN_AT:TOKEN_END]: a group message is encoded once and each
# member's token written there.
TOKEN_AT, TOKEN_END = HEADER.span("token")
