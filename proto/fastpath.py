"""A fast codec compiled from the Scapy layer's own field lists.

The chat nodes encode and decode every datagram, and building or dissecting a
Scapy packet costs tens of microseconds.  This module reads the field model of
each layer (proto.fields) once and writes a small Python function per layer from it: ``struct``
calls for the runs of fixed-size fields, slices for the length-prefixed strings,
a loop for the lists.  The Scapy layer stays the one schema: add a field there
and it is encoded here too.  A test proves both produce and accept exactly the
same bytes (tests/unit/test_fastpath.py).

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

from .chat import MSG_TYPES, PAYLOADS, TYPE_CODES, ChatHeader
from .checks import (
    FIXED,
    ProtocolError,
    bad_utf8,
    cut_short,
    label,
    length_past_end,
    not_chat,
    not_in_enum,
    trailing,
)
from .fields import Kind, layer_spec


class Fields(SimpleNamespace):
    """Decoded field values as attributes, named as in the Scapy layer."""


class _Layout:
    """The reader and writer of one layer, generated from its field model (proto.fields).

    ``read(data, offset, end) -> (Fields, offset)``; ``write(values, out, t)`` appends the
    encoded bytes to the list ``out`` (``t`` stands in for the header's ``type`` field)."""

    _compiled: dict[type, "_Layout"] = {}

    def __init__(self, layer):
        self.layer = layer
        self.spec = layer_spec(layer)
        self.env = {"Fields": Fields, "inet_ntoa": socket.inet_ntoa, "inet_aton": socket.inet_aton, "bytes": bytes,
                    "dict": dict, "vars": vars, "len": len, "not_chat": not_chat, "not_in_enum": not_in_enum,
                    "cut_short": cut_short, "length_past_end": length_past_end, "bad_utf8": bad_utf8}
        self.runs = self._runs(self.spec.fields)
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
        """The fields in wire order, consecutive fixed-size ones grouped: [list of fields | string/list field]."""
        runs, run = [], []
        for field in fields:
            if not field.fixed:
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
        self.env[name] = struct.Struct("!" + "".join(f.code for f in run))
        return name

    def _reader_source(self) -> str:
        """Reads every field in wire order; refuses, in words, a datagram that ends too soon, a
        length past the end, invalid UTF-8, a fixed field (magic, version) with another value,
        and an enumerated field with a value outside its enum."""
        local = {}  # field name -> local variable
        where = label(self.layer)
        lines = ["def read(data, off, end):"]
        for step in self.runs:
            if isinstance(step, list) and len(step) == 1 and step[0].code == "B":
                # a lone byte (a length prefix, mostly): indexing is quicker than a struct call
                field = step[0]
                lines.append(f"    if off >= end: raise cut_short({where!r}, {'field ' + repr(field.name)!r}, 0, 1)")
                lines.append(f"    {local.setdefault(field.name, f'v{len(local)}')} = data[off]")
                lines.append("    off += 1")
                lines += self._value_checks(step, local, where)
            elif isinstance(step, list):
                names = [local.setdefault(f.name, f"v{len(local)}") for f in step]
                layout = self._struct(step)
                size = self.env[layout].size
                fields = ("field " if len(step) == 1 else "fields ") + ", ".join(repr(f.name) for f in step)
                if self.layer is ChatHeader and step is self.runs[0]:
                    lines.append(f"    if off + {size} > end: raise not_chat(data)")
                else:
                    lines.append(f"    if off + {size} > end: raise cut_short({where!r}, {fields!r}, end - off, {size})")
                lines.append(f"    {', '.join(names)}, = {layout}.unpack_from(data, off)")
                lines.append(f"    off += {size}")
                lines += [f"    {local[f.name]} = inet_ntoa({local[f.name]})" for f in step if f.kind is Kind.IP]
                lines += self._value_checks(step, local, where)
            elif step.kind is Kind.TEXT:
                var = local.setdefault(step.name, f"v{len(local)}")
                length = local[step.measured_by]
                lines.append(f"    e = off + {length}")
                lines.append(f"    if e > end: raise length_past_end({where!r}, {step.name!r}, {length}, end - off)")
                lines.append(f"    try: {var} = data[off:e].decode('utf-8')")
                lines.append(f"    except UnicodeDecodeError as x: raise bad_utf8({where!r}, {step.name!r}, x) from None")
                lines.append("    off = e")
            elif step.kind is Kind.LIST:
                var = local.setdefault(step.name, f"v{len(local)}")
                item = f"R{len(self.env)}"
                self.env[item] = _Layout.of(step.item.cls).read
                lines.append(f"    {var} = []")
                lines.append(f"    for _ in range({local[step.measured_by]}):")
                lines.append(f"        x, off = {item}(data, off, end)")
                lines.append(f"        {var}.append(x)")
            else:
                raise NotImplementedError(f"{self.layer.__name__}.{step.name}: the fast codec has no {step.kind.value}")
        plain = all(name.isidentifier() and not keyword.iskeyword(name) for name in local)
        if plain:
            made = "Fields(" + ", ".join(f"{name}={var}" for name, var in local.items()) + ")"
        else:
            made = "Fields(**{" + ", ".join(f"{name!r}: {var}" for name, var in local.items()) + "})"
        lines.append(f"    return {made}, off")
        return "\n".join(lines) + "\n"

    def _value_checks(self, step: list, local: dict, where: str) -> list[str]:
        """Checks of the values just read: fixed ones first (another magic or version says
        'not ours' before anything else could), then those of enumerated fields."""
        lines = []
        if self.layer is ChatHeader:
            for field in step:
                if field.name in FIXED:
                    lines.append(f"    if {local[field.name]} != {FIXED[field.name]!r}: raise not_chat(data)")
        for field in step:
            if field.kind is Kind.ENUM:
                table = f"E{len(self.env)}"
                self.env[table] = field.enum
                var = local[field.name]
                lines.append(f"    if {var} not in {table}: raise not_in_enum({where!r}, {field.name!r}, {var}, {table})")
        return lines

    def _writer_source(self) -> str:
        lines = ["def write(v, out, t=None):"]
        local = {}
        # strings and lists first: the length and count fields before them need their sizes
        for field in self.spec.fields:
            if field.kind is Kind.TEXT:
                local[field.name] = f"s{len(local)}"
                lines.append(f"    {local[field.name]} = v.get({field.name!r}, '').encode('utf-8')")
            elif field.kind is Kind.LIST:
                local[field.name] = f"s{len(local)}"
                lines.append(f"    {local[field.name]} = v.get({field.name!r}, ())")
        for step in self.runs:
            if isinstance(step, list):
                values = []
                for field in step:
                    if field.computed:
                        values.append(f"len({local[field.measures]})")
                        continue
                    if field.name == "type" and self.layer is ChatHeader:
                        values.append("t")
                        continue
                    var = f"f{len(values)}"
                    lines.append(f"    {var} = v.get({field.name!r}, {field.default!r})")
                    if field.kind is Kind.ENUM:
                        names = f"E{len(self.env)}"
                        self.env[names] = field.names
                        lines.append(f"    if {var}.__class__ is str: {var} = {names}[{var}]")
                    elif field.kind is Kind.IP:
                        lines.append(f"    {var} = inet_aton({var})")
                    values.append(var)
                lines.append(f"    out.append({self._struct(step)}.pack({', '.join(values)}))")
            elif step.kind is Kind.TEXT:
                lines.append(f"    out.append({local[step.name]})")
            else:
                item = f"W{len(self.env)}"
                self.env[item] = _Layout.of(step.item.cls).write
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

    Header fields are attributes of the result; payload fields are under ``.payload``.
    Anything else is a ``ProtocolError`` that says what was wrong."""
    end = len(data)
    try:
        msg, offset = _HEADER.read(data, 0, end)  # the type is one of MSG_TYPES after this
        msg.payload, offset = _PAYLOADS.get(msg.type, _EMPTY).read(data, offset, end)
    except (struct.error, UnicodeDecodeError) as exc:
        # Not expected: the readers check every size and decode before they read.  Kept so that
        # a field kind the compiler learns later cannot raise anything but ProtocolError.
        raise ProtocolError(f"malformed datagram: {exc}") from None
    if offset != end:
        raise trailing(MSG_TYPES[msg.type], end - offset)
    return msg
