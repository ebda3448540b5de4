"""The chat wire format as Scapy layers (the one schema), and strict decoding."""

from .chat import (
    MAGIC,
    MAX_DATAGRAM,
    MAX_NAME_BYTES,
    MAX_TEXT_BYTES,
    MSG_TYPES,
    PAYLOADS,
    STATUS_CODES,
    STATUSES,
    TYPE_CODES,
    VERSION,
    Ack,
    ChatHeader,
    CreateGroup,
    Entry,
    GrpMsg,
    JoinGroup,
    Kick,
    LeaveGroup,
    ListMembers,
    ListMore,
    MsgId,
    Name,
    PriMsg,
    RegAck,
    SendGroup,
    Table,
)
from .codec import ProtocolError, decode, is_chat, version_of
from .fields import HEADER_MIN, TOKEN_AT, TOKEN_END
from .messages import MESSAGES, SERVER_NAME

__all__ = [
    "HEADER_MIN", "MAGIC", "MAX_DATAGRAM", "MAX_NAME_BYTES", "MAX_TEXT_BYTES", "MESSAGES", "MSG_TYPES", "PAYLOADS", "SERVER_NAME", "STATUS_CODES", "STATUSES", "TOKEN_AT", "TOKEN_END", "TYPE_CODES",
    "VERSION", "Ack", "ChatHeader", "CreateGroup", "Entry", "GrpMsg", "JoinGroup", "Kick",
    "LeaveGroup", "ListMembers", "ListMore", "MsgId", "Name", "PriMsg", "RegAck", "SendGroup", "Table", "ProtocolError",
    "decode", "is_chat", "version_of",
]
