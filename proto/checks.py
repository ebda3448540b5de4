"""What both decoders (proto.codec, the Scapy path, and proto.fastpath, the compiled one)
check beyond the byte layout, read from the layer's own fields, and the words they use
when they refuse a datagram.  Every refusal is a ``ProtocolError`` saying what was wrong.
"""

from __future__ import annotations

from .chat import MAGIC, PAYLOADS, VERSION, ChatHeader
from .fields import HEADER_MIN, enum_values, layer_spec  # noqa: F401  (enum_values: kept importable from here)


class ProtocolError(ValueError):
    """The datagram is not a well-formed chat packet of this version."""


# Fields whose value is fixed for this version: a datagram with another is not ours.
FIXED = {"magic": MAGIC, "version": VERSION}


def _labels() -> dict[type, str]:
    labels = {ChatHeader: "header"}
    for type_name, layer in PAYLOADS.items():
        labels[layer] = type_name
        for item in layer_spec(layer).sub_layers():
            labels.setdefault(item.cls, f"{type_name} {item.cls.__name__.lower()}")
    return labels


_LABELS = _labels()


def label(layer: type) -> str:
    """How a refusal names a layer: the message type for a payload, e.g. ``table entry`` for an item."""
    return _LABELS.get(layer) or layer.__name__.lower()


# -- the words of a refusal -----------------------------------------------------------------


def _bytes(n: int) -> str:
    return f"{n} byte" if n == 1 else f"{n} bytes"


def not_chat(data: bytes) -> ProtocolError:
    """A datagram too short for the header, or with another magic number or version."""
    if len(data) < HEADER_MIN:
        return ProtocolError(f"too short for a chat header ({_bytes(len(data))}, at least {HEADER_MIN})")
    magic = int.from_bytes(data[:2], "big")
    if magic != MAGIC:
        return ProtocolError(f"not a chat datagram (magic number 0x{magic:04x}, not 0x{MAGIC:04x})")
    return ProtocolError(f"chat version {data[2]}, not {VERSION}")


def not_in_enum(where: str, field: str, value: int, names: dict) -> ProtocolError:
    return ProtocolError(f"{where}: field {field!r} has {value}, not one of {', '.join(names.values())}")


def cut_short(where: str, fields: str, left: int, needed: int) -> ProtocolError:
    return ProtocolError(f"{where}: too short for {fields} ({_bytes(left)} left, {needed} needed)")


def length_past_end(where: str, field: str, length: int, left: int) -> ProtocolError:
    return ProtocolError(f"{where}: field {field!r} has length {length}, past the end ({_bytes(left)} left)")


def bad_utf8(where: str, field: str, exc: UnicodeDecodeError) -> ProtocolError:
    return ProtocolError(f"{where}: field {field!r} is not valid UTF-8 (byte 0x{exc.object[exc.start]:02x} at {exc.start})")


def trailing(where: str, extra: int) -> ProtocolError:
    return ProtocolError(f"{where}: {_bytes(extra)} after the end of the message")
