"""The layers the lossy proxy decodes datagrams with: the chat layer (by default, through the
fast codec proto.fastpath compiled from it) or any Scapy layer named ``module:Class``
(``--layer scapy.layers.dns:DNS``), decoded by Scapy itself.

A layer answers four questions about a datagram: is it one of mine (``decode``: the message,
or None), what do the rules and the log call it (``describe``), what texts does a field path
hold (``texts``, for ``field.NAME=`` matches), and its fields as JSON (``as_json``, for --log).
"""

from __future__ import annotations

import importlib

from proto import MSG_TYPES, PAYLOADS, ChatHeader, ProtocolError
from proto.fastpath import Fields, parse
from proto.fields import Kind, layer_spec

_MISSING = object()


class LayerError(ValueError):
    """A --layer that cannot be used; the message says why, in one line."""


def _items(value) -> list:
    """A field's value as the items a dotted path goes on from (a list: each of its items)."""
    return list(value) if isinstance(value, list) else [value]


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


def _chat_fields(specs):
    """Every field of these layers and of the items of their lists."""
    for spec in specs:
        for field in spec.fields:
            yield field
            if field.item is not None:
                yield from _chat_fields([field.item])


class ChatLayer:
    """The chat layer through proto.fastpath: a few µs a datagram where Scapy takes ~100."""

    name = "chat"

    def __init__(self) -> None:
        every = list(_chat_fields([layer_spec(layer) for layer in (ChatHeader, *PAYLOADS.values())]))
        # field name -> {code: name} of the enumerated fields (type, status, online), from the layer's own model
        self.enums = {f.name: f.enum for f in every if f.kind is Kind.ENUM}
        self.fields = frozenset(f.name for f in every) | {"payload"}

    def decode(self, data: bytes):
        try:
            return parse(data)
        except ProtocolError:
            return None

    @staticmethod
    def describe(msg) -> tuple[str, str, int, str]:
        """(type for type= rules, type for the log, message id, the sender's name)."""
        kind = MSG_TYPES[msg.type]
        return kind, kind, msg.msg_id, msg.sender

    def texts(self, msg, path: tuple[str, ...]) -> set[str]:
        values = [msg]
        for name in path:
            found = []
            for value in values:
                for item in _items(value):
                    got = getattr(item, name, _MISSING)
                    if got is _MISSING and isinstance(getattr(item, "payload", None), Fields):
                        got = getattr(item.payload, name, _MISSING)  # a payload field, below the header's
                    if got is not _MISSING:
                        found.append(got)
            values = found
        out = set()
        names = self.enums.get(path[-1], {})
        for value in values:
            for item in _items(value):
                out.add(_text(item))
                if item in names:
                    out.add(names[item])
        return out

    def as_json(self, msg) -> None:
        return None  # the log's type and id say what a chat datagram is


class ScapyLayer:
    """Any Scapy layer class; what Scapy cannot dissect is not of the layer."""

    def __init__(self, cls) -> None:
        from scapy.config import conf

        self.cls = cls
        self.name = cls.__name__
        self._conf = conf
        self.fields = frozenset(f.name for f in cls.fields_desc) | {
            f.name for sub in getattr(cls, "payload_guess", ()) for f in sub[1].fields_desc
        }

    def decode(self, data: bytes):
        if not data:
            return None  # nothing to dissect: Scapy would make a packet of default values
        conf = self._conf
        before, conf.debug_dissector = conf.debug_dissector, True  # errors raise, not hide in a Raw layer
        try:
            return self.cls(data)
        except Exception:  # noqa: BLE001 - any dissector error: a datagram not of the layer, counted
            return None
        finally:
            conf.debug_dissector = before

    def describe(self, msg) -> tuple[str, str, None, None]:
        return "", self.name, None, None  # type= names chat types: it matches none of these

    def texts(self, msg, path: tuple[str, ...]) -> set[str]:
        values = [(None, None, msg)]  # (layer, field, value)
        for name in path:
            found = []
            for _, _, value in values:
                for item in _items(value):
                    layer = item
                    while layer is not None and hasattr(layer, "fieldtype") and name not in layer.fieldtype:
                        layer = layer.payload or None  # a field of a layer further down
                    if layer is not None and hasattr(layer, "fieldtype"):
                        found.append((layer, layer.fieldtype[name], layer.getfieldval(name)))
            values = found
        out = set()
        for layer, field, value in values:
            for item in _items(value):
                try:
                    out.add(_text(item))
                    shown = field.i2repr(layer, item)
                    out.add(shown.strip("'\"") if isinstance(shown, str) else _text(shown))
                except Exception:  # noqa: BLE001 - a layer's own display code failing on hostile input: no match
                    continue
        return out

    def as_json(self, msg) -> dict:
        try:
            return _packet_json(msg)
        except Exception as exc:  # noqa: BLE001 - as above: the log line goes out without the fields
            return {"error": f"fields not shown ({type(exc).__name__})"}


def _packet_json(pkt) -> dict:
    """A Scapy packet's fields as JSON values, layer by layer (sub-layers under their class name)."""
    out: dict = {}
    for field in pkt.fields_desc:
        out[field.name] = _json_value(pkt.getfieldval(field.name))
    if pkt.payload:
        out[type(pkt.payload).__name__] = _packet_json(pkt.payload)
    return out


def _json_value(value):
    if hasattr(value, "fields_desc"):
        return _packet_json(value)
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def load(spec: str | None):
    """The layer for ``--layer`` (None: the chat layer); LayerError in one line if it cannot be had."""
    if spec is None:
        return ChatLayer()
    module_name, colon, class_name = spec.partition(":")
    if not colon or not module_name or not class_name:
        raise LayerError(f"bad --layer '{spec}' (use MODULE:CLASS, e.g. scapy.layers.dns:DNS)")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        raise LayerError(f"--layer {spec}: no module named '{module_name}'") from None
    except Exception as exc:  # noqa: BLE001 - whatever the module raised while importing
        raise LayerError(f"--layer {spec}: cannot import '{module_name}': {exc}") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise LayerError(f"--layer {spec}: module '{module_name}' has no '{class_name}'")
    from scapy.packet import Packet

    if not (isinstance(cls, type) and issubclass(cls, Packet)):
        raise LayerError(f"--layer {spec}: '{class_name}' is not a Scapy layer (a Packet class)")
    return ScapyLayer(cls)
