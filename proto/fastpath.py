"""A fast codec compiled from the Scapy layer's own field lists.

The chat nodes encode and decode every datagram, and building or dissecting a
Scapy packet costs tens of microseconds.  This module reads ``fields_desc`` of
each layer once and writes a small Python function per layer from it: ``struct``
calls for the runs of fixed-size fields, slices for the length-prefixed strings,
a loop for the lists.  The Scapy layer stays the one schema: add a field there
and it is encoded here too.  A test proves both produce and accept exactly the
same bytes (tests/test_fastpath.py).

    data = encode("pri_msg", {"msg_id": 7, "port": 7771, "sender": "Ann"}, {"text": "hi"})
    msg = parse(data)       # msg.type == 13, msg.sender == "Ann", msg.payload.text == "hi"

List items may be given already encoded (``encode_item``), so a node that sends
the same rows again and again (the server's client table) encodes each row once.
"""

from __future__ import annotations

import keyword
import socket
import struct
from types import SimpleNamespace

from scapy.fields import EnumField, FieldLenField, IPField, PacketListField

from .chat import MAGIC, MSG_TYPES, PAYLOADS, TYPE_CODES, VERSION, ChatHeader, Utf8LenField
from .codec import ProtocolError


class Fields(SimpleNamespace):
    """Decoded field values as attributes, named as in the Scapy layer."""


class _Layout:
    """The reader and writer of one layer, generated from its ``fields_desc``.

    ``read(data, offset, end) -> (Fields, offset)``; ``write(values, out, t)`` appends the
    encoded bytes to the list ``out`` (``t`` stands in for the header's ``type`` field)."""

    _compiled: dict[type, "_Layout"] = {}

    def __init__(self, layer):
        self.layer = layer
        self.env = {"Fields": Fields, "ProtocolError": ProtocolError, "inet_ntoa": socket.inet_ntoa,
                    "inet_aton": socket.inet_aton, "bytes": bytes, "dict": dict, "vars": vars, "len": len}
        counted = {}  # target field -> its length/count field
        for field in layer.fields_desc:
            if isinstance(field, FieldLenField):
                counted[field.length_of or field.count_of] = field.name
        self.counted = counted
        self.lengths = {length: target for target, length in counted.items()}
        self.runs = self._runs(layer.fields_desc)
        exec(self._reader_source() + self._writer_source(), self.env)  # noqa: S102 - source generated above
        self.read = self.env["read"]
        self.write = self.env["write"]

    @classmethod
    def of(cls, layer) -> "_Layout":
        if layer not in cls._compiled:
            cls._compiled[layer] = cls(layer)
        return cls._compiled[layer]

    @staticmethod
    def _runs(fields) -> list:
        """The fields in wire order, consecutive fixed-size ones grouped: [list of fields | str/list field]."""
        runs, run = [], []
        for field in fields:
            if isinstance(field, (Utf8LenField, PacketListField)):
                if run:
                    runs.append(run)
                run = []
                runs.append(field)
            else:
                run.append(field)
        if run:
            runs.append(run)
        return runs

    def _struct(self, run) -> str:
        name = f"S{len(self.env)}"
        self.env[name] = struct.Struct("!" + "".join(f.fmt.lstrip("!<>=") for f in run))
        return name

    def _reader_source(self) -> str:
        local = {}  # field name -> local variable
        lines = ["def read(data, off, end):"]
        for step in self.runs:
            if isinstance(step, list) and len(step) == 1 and step[0].fmt.lstrip("!<>=") == "B":
                # a lone byte (a length prefix, mostly): indexing is quicker than a struct call
                lines.append(f"    if off >= end: raise ProtocolError({step[0].name + ': past the end'!r})")
                lines.append(f"    {local.setdefault(step[0].name, f'v{len(local)}')} = data[off]")
                lines.append("    off += 1")
            elif isinstance(step, list):
                names = [local.setdefault(f.name, f"v{len(local)}") for f in step]
                layout = self._struct(step)
                lines.append(f"    {', '.join(names)}, = {layout}.unpack_from(data, off)")
                lines.append(f"    off += {self.env[layout].size}")
                lines += [f"    {local[f.name]} = inet_ntoa({local[f.name]})" for f in step if isinstance(f, IPField)]
            elif isinstance(step, Utf8LenField):
                var = local.setdefault(step.name, f"v{len(local)}")
                lines.append(f"    e = off + {local[self.counted[step.name]]}")
                lines.append(f"    if e > end: raise ProtocolError({step.name + ': length past the end'!r})")
                lines.append(f"    {var} = data[off:e].decode('utf-8')")
                lines.append("    off = e")
            else:
                var = local.setdefault(step.name, f"v{len(local)}")
                item = f"R{len(self.env)}"
                self.env[item] = _Layout.of(step.cls).read
                lines.append(f"    {var} = []")
                lines.append(f"    for _ in range({local[self.counted[step.name]]}):")
                lines.append(f"        x, off = {item}(data, off, end)")
                lines.append(f"        {var}.append(x)")
        plain = all(name.isidentifier() and not keyword.iskeyword(name) for name in local)
        if plain:
            made = "Fields(" + ", ".join(f"{name}={var}" for name, var in local.items()) + ")"
        else:
            made = "Fields(**{" + ", ".join(f"{name!r}: {var}" for name, var in local.items()) + "})"
        lines.append(f"    return {made}, off")
        return "\n".join(lines) + "\n"

    def _writer_source(self) -> str:
        lines = ["def write(v, out, t=None):"]
        local = {}
        # strings and lists first: the length and count fields before them need their sizes
        for field in self.layer.fields_desc:
            if isinstance(field, Utf8LenField):
                local[field.name] = f"s{len(local)}"
                lines.append(f"    {local[field.name]} = v.get({field.name!r}, '').encode('utf-8')")
            elif isinstance(field, PacketListField):
                local[field.name] = f"s{len(local)}"
                lines.append(f"    {local[field.name]} = v.get({field.name!r}, ())")
        for step in self.runs:
            if isinstance(step, list):
                values = []
                for field in step:
                    if field.name in self.lengths:
                        values.append(f"len({local[self.lengths[field.name]]})")
                        continue
                    if field.name == "type" and self.layer is ChatHeader:
                        values.append("t")
                        continue
                    var = f"f{len(values)}"
                    lines.append(f"    {var} = v.get({field.name!r}, {field.default!r})")
                    if isinstance(field, EnumField) and field.s2i:
                        names = f"E{len(self.env)}"
                        self.env[names] = field.s2i
                        lines.append(f"    if {var}.__class__ is str: {var} = {names}[{var}]")
                    elif isinstance(field, IPField):
                        lines.append(f"    {var} = inet_aton({var})")
                    values.append(var)
                lines.append(f"    out.append({self._struct(step)}.pack({', '.join(values)}))")
            elif isinstance(step, Utf8LenField):
                lines.append(f"    out.append({local[step.name]})")
            else:
                item = f"W{len(self.env)}"
                self.env[item] = _Layout.of(step.cls).write
                lines.append(f"    for x in {local[step.name]}:")
                lines.append("        if x.__class__ is bytes: out.append(x)")  # encoded by encode_item
                lines.append(f"        else: {item}(x if x.__class__ is dict else vars(x), out)")
        if len(lines) == 1:
            lines.append("    pass")
        return "\n".join(lines) + "\n"


_HEADER = _Layout.of(ChatHeader)
_PAYLOADS = {TYPE_CODES[name]: _Layout.of(layer) for name, layer in PAYLOADS.items()}
_EMPTY = _Layout.of(type("Empty", (), {"fields_desc": []}))


def encode(type_name: str, header: dict, payload: dict | None = None) -> bytes:
    """The datagram of type ``type_name``: header and payload fields by name, list items as dicts
    (or as bytes from ``encode_item``).

    (Two dicts, because a payload field may share a header field's name: Table.version.)"""
    out: list[bytes] = []
    code = TYPE_CODES[type_name]
    _HEADER.write(header, out, code)
    _PAYLOADS.get(code, _EMPTY).write(payload or {}, out)
    return b"".join(out)


def encode_item(layer, values: dict) -> bytes:
    """One list item (``layer`` is its Scapy class, e.g. ``Entry``), to pass to ``encode`` as bytes."""
    out: list[bytes] = []
    _Layout.of(layer).write(values, out)
    return b"".join(out)


def parse(data: bytes) -> Fields:
    """Decode a datagram as ``proto.decode`` does (the same bytes accepted), only faster.

    Header fields are attributes of the result; payload fields are under ``.payload``."""
    end = len(data)
    try:
        msg, offset = _HEADER.read(data, 0, end)
        if msg.magic != MAGIC or msg.version != VERSION or msg.type not in MSG_TYPES:
            raise ProtocolError("not a chat datagram of this version")
        msg.payload, offset = _PAYLOADS.get(msg.type, _EMPTY).read(data, offset, end)
    except (struct.error, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed datagram: {exc}") from None
    if offset != end:
        raise ProtocolError("bytes after the end of the message")
    return msg
