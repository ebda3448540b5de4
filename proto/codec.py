"""Turning bytes into chat packets: ``decode`` either returns a well-formed
packet or raises ``ProtocolError`` saying what was wrong, whatever the input."""

from __future__ import annotations

from scapy.packet import NoPayload, Packet

from .chat import MAGIC, MSG_TYPES, PAYLOADS, VERSION, ChatHeader
from .checks import HEADER_MIN, ProtocolError, label, not_chat, not_in_enum
from .fields import Kind, layer_spec

__all__ = ["HEADER_MIN", "ProtocolError", "decode", "is_chat"]


def is_chat(data: bytes) -> bool:
    """Cheap recognition by magic and version, for tools watching arbitrary UDP."""
    return len(data) >= HEADER_MIN and int.from_bytes(data[:2], "big") == MAGIC and data[2] == VERSION


def version_of(data: bytes) -> int | None:
    """The version byte of a datagram that starts with the chat magic (of any version), else None."""
    if len(data) >= 3 and int.from_bytes(data[:2], "big") == MAGIC:
        return data[2]
    return None


def decode(data: bytes) -> ChatHeader:
    if not is_chat(data):
        raise not_chat(data)
    try:
        pkt = ChatHeader(data)
    except Exception:  # Scapy raises many kinds; all mean "malformed"
        raise _why(data, "malformed header") from None
    _check_enums(pkt)  # the type first: an unknown one has no payload layer to expect
    type_name = MSG_TYPES[pkt.type]
    expected = PAYLOADS.get(type_name, NoPayload)
    if type(pkt.payload) is not expected or not isinstance(pkt.payload.payload, NoPayload):
        # Scapy keeps what it cannot dissect as raw bytes, without saying why
        raise _why(data, f"malformed {type_name} payload")
    _check_lists(pkt.payload)
    _check_enums(pkt.payload)
    try:
        canonical = bytes(_with_computed_lengths(pkt))
    except Exception as exc:
        raise ProtocolError(f"unencodable {type_name}: {exc}") from None
    if canonical != data:
        # A length or count field disagrees with what follows it.
        raise _why(data, f"inconsistent lengths in {type_name}")
    return pkt


def _why(data: bytes, fallback: str) -> ProtocolError:
    """The words for a datagram Scapy could not take apart.  Scapy's own exceptions are
    Python's (struct's, the codec's) or none at all, so the compiled reader of the same
    layer, which checks each field as it goes, names the field; ``fallback`` if it has no
    objection (the verdict stays Scapy's)."""
    from .fastpath import parse  # fastpath is compiled from this module's layer: imported late

    try:
        parse(data)
    except ProtocolError as exc:
        return exc
    return ProtocolError(fallback)


def _check_enums(layer: Packet) -> None:
    """Every enumerated field of ``layer`` (and of its list items) holds a value of its enum."""
    for field in layer_spec(type(layer)).fields:
        if field.kind is Kind.ENUM:
            value = layer.getfieldval(field.name)
            if value not in field.enum:
                raise not_in_enum(label(type(layer)), field.name, value, field.enum)
        elif field.kind is Kind.LIST:
            for item in getattr(layer, field.name):
                _check_enums(item)


def _check_lists(layer: Packet) -> None:
    for field in layer_spec(type(layer)).fields:
        if field.kind is Kind.LIST:
            for item in getattr(layer, field.name):
                if not isinstance(item, field.item.cls) or not isinstance(item.payload, NoPayload):
                    raise ProtocolError(f"malformed item in {field.name}")


def _with_computed_lengths(pkt: Packet) -> Packet:
    clone = pkt.copy()
    clone.clear_cache()  # else Scapy may hand back the input bytes instead of building anew
    _forget_lengths(clone)
    return clone


def _forget_lengths(pkt: Packet) -> None:
    layer = pkt
    while not isinstance(layer, NoPayload):
        for field in layer_spec(type(layer)).fields:
            if field.computed:
                layer.fields.pop(field.name, None)
            elif field.kind is Kind.LIST:
                for item in getattr(layer, field.name):
                    _forget_lengths(item)
        layer = layer.payload
