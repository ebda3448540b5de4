"""Turning bytes into chat packets: ``decode`` either returns a well-formed
packet or raises ``ProtocolError``, whatever the input."""

from __future__ import annotations

from scapy.fields import FieldLenField, PacketListField
from scapy.packet import NoPayload, Packet

from .chat import MAGIC, MSG_TYPES, PAYLOADS, VERSION, ChatHeader

HEADER_MIN = 19  # fixed part of the header, sender name empty


class ProtocolError(ValueError):
    """The datagram is not a well-formed chat packet of this version."""


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
        raise ProtocolError("not a chat datagram (magic, version or size)")
    try:
        pkt = ChatHeader(data)
    except Exception as exc:  # Scapy raises many kinds; all mean "malformed"
        raise ProtocolError(f"malformed header: {exc}") from None
    type_name = MSG_TYPES.get(pkt.type)
    if type_name is None:
        raise ProtocolError(f"unknown message type {pkt.type}")
    expected = PAYLOADS.get(type_name, NoPayload)
    if type(pkt.payload) is not expected or not isinstance(pkt.payload.payload, NoPayload):
        raise ProtocolError(f"malformed {type_name} payload")
    _check_lists(pkt.payload)
    try:
        canonical = bytes(_with_computed_lengths(pkt))
    except Exception as exc:
        raise ProtocolError(f"unencodable {type_name}: {exc}") from None
    if canonical != data:
        # A length or count field disagrees with what follows it.
        raise ProtocolError(f"inconsistent lengths in {type_name}")
    return pkt


def _check_lists(layer: Packet) -> None:
    for field in layer.fields_desc:
        if isinstance(field, PacketListField):
            for item in getattr(layer, field.name):
                if not isinstance(item, field.cls) or not isinstance(item.payload, NoPayload):
                    raise ProtocolError(f"malformed item in {field.name}")


def _with_computed_lengths(pkt: Packet) -> Packet:
    clone = pkt.copy()
    clone.clear_cache()  # else Scapy may hand back the input bytes instead of building anew
    _forget_lengths(clone)
    return clone


def _forget_lengths(pkt: Packet) -> None:
    layer = pkt
    while not isinstance(layer, NoPayload):
        for field in layer.fields_desc:
            if isinstance(field, FieldLenField):
                layer.fields.pop(field.name, None)
            elif isinstance(field, PacketListField):
                for item in getattr(layer, field.name):
                    _forget_lengths(item)
        layer = layer.payload
