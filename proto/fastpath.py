"""A fast codec compiled from the Scapy layer's own field lists.

The chat nodes encode and decode every datagram, and building or dissecting a
Scapy packet costs tens of microseconds.  This module reads ``fields_desc`` of
each layer once and turns it into ``struct`` operations, so the Scapy layer
stays the one schema: add a field there and it is encoded here too.  A test
proves both produce and accept exactly the same bytes (tests/test_fastpath.py).

    data = encode("pri_msg", {"msg_id": 7, "port": 7771, "sender": "Ann"}, {"text": "hi"})
    msg = parse(data)       # msg.type == 13, msg.sender == "Ann", msg.payload.text == "hi"
"""

from __future__ import annotations

import socket
import struct
from types import SimpleNamespace

from scapy.fields import EnumField, FieldLenField, IPField, PacketListField

from .chat import MAGIC, MSG_TYPES, PAYLOADS, TYPE_CODES, VERSION, ChatHeader, Utf8LenField
from .codec import ProtocolError


class Fields(SimpleNamespace):
    """Decoded field values as attributes, named as in the Scapy layer."""


class _Layout:
    """How one layer's fields lie on the wire, as a list of compiled steps."""

    def __init__(self, layer):
        self.steps: list[tuple] = []
        self.defaults: dict[str, object] = {}
        counted = {}  # target field -> its length/count field
        run: list = []  # consecutive fixed-size fields, packed by one Struct
        for field in layer.fields_desc:
            if isinstance(field, FieldLenField):
                counted[field.length_of or field.count_of] = field.name
            if isinstance(field, (Utf8LenField, PacketListField)):
                self._close_run(run)
                run = []
                if isinstance(field, Utf8LenField):
                    self.steps.append(("str", field.name, counted[field.name]))
                else:
                    self.steps.append(("list", field.name, counted[field.name], _Layout(field.cls)))
            else:
                run.append(field)
                self.defaults[field.name] = field.default
        self._close_run(run)
        # length/count fields are computed when encoding, like Scapy does for None
        self.computed = {length: target for target, length in counted.items()}

    def _close_run(self, run: list) -> None:
        if run:
            fmt = "!" + "".join(f.fmt.lstrip("!<>=") for f in run)
            enums = {f.name: f.s2i for f in run if isinstance(f, EnumField) and f.s2i}
            ips = {f.name for f in run if isinstance(f, IPField)}
            self.steps.append(("fixed", struct.Struct(fmt), [f.name for f in run], enums, ips))

    def read(self, data: bytes, offset: int) -> tuple[Fields, int]:
        values: dict[str, object] = {}
        for step in self.steps:
            if step[0] == "fixed":
                _, layout, names, _, ips = step
                for name, value in zip(names, layout.unpack_from(data, offset)):
                    values[name] = socket.inet_ntoa(value) if name in ips else value
                offset += layout.size
            elif step[0] == "str":
                _, name, length_field = step
                end = offset + values[length_field]
                if end > len(data):
                    raise ProtocolError(f"{name}: length past the end")
                values[name] = data[offset:end].decode("utf-8")
                offset = end
            else:
                _, name, count_field, item = step
                items = []
                for _ in range(values[count_field]):
                    fields, offset = item.read(data, offset)
                    items.append(fields)
                values[name] = items
        return Fields(**values), offset

    def write(self, values: dict, out: list[bytes]) -> None:
        encoded: dict[str, object] = {}
        for step in self.steps:
            if step[0] == "str":
                encoded[step[1]] = values.get(step[1], "").encode("utf-8")
            elif step[0] == "list":
                encoded[step[1]] = values.get(step[1], [])
        for step in self.steps:
            if step[0] == "fixed":
                _, layout, names, enums, ips = step
                row = []
                for name in names:
                    if name in self.computed:
                        value = len(encoded[self.computed[name]])
                    else:
                        value = values.get(name, self.defaults[name])
                        if name in enums and isinstance(value, str):
                            value = enums[name][value]
                        elif name in ips:
                            value = socket.inet_aton(value)
                    row.append(value)
                out.append(layout.pack(*row))
            elif step[0] == "str":
                out.append(encoded[step[1]])
            else:
                for item in encoded[step[1]]:
                    step[3].write(item if isinstance(item, dict) else vars(item), out)


_HEADER = _Layout(ChatHeader)
_PAYLOADS = {TYPE_CODES[name]: _Layout(layer) for name, layer in PAYLOADS.items()}
_EMPTY = _Layout(type("Empty", (), {"fields_desc": []}))


def encode(type_name: str, header: dict, payload: dict | None = None) -> bytes:
    """The datagram of type ``type_name``: header and payload fields by name, list items as dicts.

    (Two dicts, because a payload field may share a header field's name: Table.version.)"""
    out: list[bytes] = []
    code = TYPE_CODES[type_name]
    _HEADER.write({**header, "type": code}, out)
    _PAYLOADS.get(code, _EMPTY).write(payload or {}, out)
    return b"".join(out)


def parse(data: bytes) -> Fields:
    """Decode a datagram as ``proto.decode`` does (the same bytes accepted), only faster.

    Header fields are attributes of the result; payload fields are under ``.payload``."""
    try:
        msg, offset = _HEADER.read(data, 0)
        if msg.magic != MAGIC or msg.version != VERSION or msg.type not in MSG_TYPES:
            raise ProtocolError("not a chat datagram of this version")
        msg.payload, offset = _PAYLOADS.get(msg.type, _EMPTY).read(data, offset)
    except (struct.error, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed datagram: {exc}") from None
    if offset != len(data):
        raise ProtocolError("bytes after the end of the message")
    return msg
