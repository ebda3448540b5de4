"""The ChatApp wire format, version 3: the one schema of every datagram.

A datagram is a ``ChatHeader`` followed by at most one payload layer chosen by
the header's ``type`` (see the ``bind_layers`` calls at the bottom).  Strings
are length-prefixed UTF-8, so ``;``, ``:`` and newlines inside a message are
plain text.  Multi-byte integers are big-endian (network order).
"""

from __future__ import annotations

import struct

from scapy.fields import (
    ByteEnumField,
    FieldLenField,
    IntField,
    IPField,
    PacketListField,
    ShortField,
    StrLenField,
    XLongField,
    XIntField,
    XShortField,
    ByteField,
)
from scapy.packet import Packet, bind_layers
from scapy.volatile import RandNum, RandString

from .messages import IN_PARTS, MESSAGES

MAGIC = 0xC4A7
# 2: registration is confirmed (type confirm) before its session starts
# 3: group messages are numbered per group (grp_msg seq; the ack of send_group and join_group carries one)
VERSION = 3

# The header's type byte: the codes of the message types in proto/messages.py.
MSG_TYPES = {message.code: message.name for message in MESSAGES}
TYPE_CODES = {name: code for code, name in MSG_TYPES.items()}

# Result of a request, carried by ack and reg_ack.
STATUSES = {
    0: "ok",
    1: "name_taken",
    2: "addr_taken",
    3: "bad_name",
    4: "group_exists",
    5: "no_such_group",
    6: "not_in_group",
    7: "no_such_user",
    8: "not_registered",
    9: "bad_request",
    10: "resync",  # a table delta did not apply: send the whole table again
    11: "server_full",  # the server holds as many clients as it is allowed to
    12: "too_many_groups",  # the server holds as many groups as it is allowed to
    13: "more",  # ok, and the list goes on: ask list_more for the items after these
    14: "queue_full",  # a client in group mode holds as many private messages as it may: not delivered
    15: "quota",  # the sender's IP address holds as many names (or groups) as one address may
}
STATUS_CODES = {name: code for code, name in STATUSES.items()}

# Limits a well-formed datagram respects (the layer's length prefixes allow more).
MAX_NAME_BYTES = 32
MAX_TEXT_BYTES = 4096
# UDP payload a datagram stays within, so it crosses real networks unfragmented: the
# client table and the group and member lists are sent in parts that fit.  Only a chat
# message whose text is longer than that makes a longer datagram.
MAX_DATAGRAM = 1200


class Utf8LenField(StrLenField):
    """A length-prefixed UTF-8 string, held as ``str``.

    Decoding is strict: invalid UTF-8, or a length that points past the end of
    the datagram, raises instead of being silently repaired.
    """

    def h2i(self, pkt, x):
        return x.decode("utf-8") if isinstance(x, bytes) else x

    def any2i(self, pkt, x):
        return self.h2i(pkt, x)

    def i2m(self, pkt, x):
        return (x or "").encode("utf-8")

    def i2len(self, pkt, x):
        return len(self.i2m(pkt, x))

    def m2i(self, pkt, x):
        return x.decode("utf-8")

    def i2repr(self, pkt, x):
        return repr(x)

    def getfield(self, pkt, s):
        length = self.length_from(pkt)
        if length > len(s):
            raise struct.error(f"{self.name}: length {length} past the end")
        return s[length:], self.m2i(pkt, s[:length])

    def randval(self):
        return RandString(RandNum(0, self.max_length or 64))


def _utf8(name, length_field, fmt="B"):
    """A string as it goes on the wire: the field that holds its length in bytes (``fmt``: "B"
    for at most 255, "H" for more), then the UTF-8 text."""
    return [
        FieldLenField(length_field, None, length_of=name, fmt=fmt),
        Utf8LenField(name, "", length_from=lambda pkt: getattr(pkt, length_field)),
    ]


def _counted(name, count_field, item, fmt):
    """A list as it goes on the wire: the field that holds how many items follow, then the items."""
    return [
        FieldLenField(count_field, None, count_of=name, fmt=fmt),
        PacketListField(name, [], item, count_from=lambda pkt: getattr(pkt, count_field)),
    ]


class _Item(Packet):
    """Base of sub-packets that sit in a list: the bytes after one item belong to the next."""

    def extract_padding(self, s):
        return b"", s


class Name(_Item):
    """One string in a list (group names, member names)."""

    name = "Name"
    fields_desc = [
        *_utf8("value", "len"),
    ]

    def mysummary(self):
        return self.value


class MsgId(_Item):
    """One more message id that an ack answers (see ``Ack.also``)."""

    name = "MsgId"
    fields_desc = [IntField("id", 0)]

    def mysummary(self):
        return f"#{self.id}"


class Entry(_Item):
    """One row of the client table: a client's name, observed address and status."""

    name = "Entry"
    fields_desc = [
        *_utf8("client", "name_len"),
        IPField("ip", "127.0.0.1"),
        ShortField("port", 0),
        ByteEnumField("online", 1, {0: "offline", 1: "online"}),
        XIntField("session", 0),  # public number of this registration; peers check pri_msg against it
    ]

    def mysummary(self):
        state = "online" if self.online else "offline"
        return f"{self.client}@{self.ip}:{self.port} {state}"


class ChatHeader(Packet):
    """Common header of every chat datagram."""

    name = "Chat"
    fields_desc = [
        XShortField("magic", MAGIC),
        ByteField("version", VERSION),
        ByteEnumField("type", 1, MSG_TYPES),
        IntField("msg_id", 0),  # chosen by the sender; acks name it, receivers dedup on it
        ShortField("port", 0),  # sender's listening port (informational: the source address rules)
        # Which secret: the sender's session token on requests to the server, the receiving client's
        # on the server's requests, a random nonce on reg and pri_msg; an answer echoes its request's.
        XLongField("token", 0),  # a secret the receiver checks, which a blind spoofer cannot guess
        *_utf8("sender", "name_len"),
    ]

    def mysummary(self):
        # The sender is user data: kept out of sprintf, where '%' or '{' would be format syntax.
        return self.sprintf("Chat %type% #%msg_id% from ") + repr(self.sender)

    def hashret(self):
        # An answer hashes like the request it answers, so Scapy's sr() and tools can pair them.
        if isinstance(self.payload, _Answer):
            return self.payload.hashret()
        return struct.pack("!I", self.msg_id)

    def answers(self, other):
        return isinstance(self.payload, _Answer) and self.payload.answers(other)


class _Payload(Packet):
    """Base of the payload layers: their summary follows the header's."""

    def mysummary(self):
        return self.describe(), [ChatHeader]

    def describe(self) -> str:
        return self.name


class _Answer(_Payload):
    """Common part of ack and reg_ack: which request they answer, and how it went."""

    def hashret(self):
        return struct.pack("!I", self.ack_id)

    def answers(self, other):
        return isinstance(other, ChatHeader) and other.msg_id == self.ack_id


class Ack(_Answer):
    """Answer to a request; list requests carry their result in ``items``.

    ``also``: more message ids answered with the same status.  A member acknowledges the
    group messages of a busy group several at a time (like QUIC's ACK frames), so that ten
    members do not send ten datagrams for every message."""

    name = "Ack"
    fields_desc = [
        IntField("ack_id", 0),
        ByteEnumField("status", 0, STATUSES),
        IntField("seq", 0),  # a group's message number: a send_group's own, a join_group's first one to receive; else 0
        *_counted("items", "count", Name, "H"),
        *_counted("also", "also_count", MsgId, "B"),
    ]

    def describe(self):
        items = f" [{', '.join(i.value for i in self.items)}]" if self.items else ""
        also = f" also {' '.join(f'#{m.id}' for m in self.also)}" if self.also else ""
        return self.sprintf("Ack #%ack_id% %status%") + items + also

    def answers(self, other):
        return super().answers(other) or isinstance(other, ChatHeader) and any(m.id == other.msg_id for m in self.also)


class RegAck(_Answer):
    """Answer to reg: when the status is ok, the secret token the client's requests must
    carry from now on, and the public session number its peers will see in the table."""

    name = "RegAck"
    fields_desc = [
        IntField("ack_id", 0),
        ByteEnumField("status", 0, STATUSES),
        XLongField("token", 0),
        XIntField("session", 0),
    ]

    def describe(self):
        return self.sprintf("RegAck #%ack_id% %status%")


class Table(_Payload):
    """Client-table update: the entries changed since version ``base`` (0: the whole table)."""

    name = "Table"
    fields_desc = [
        IntField("version", 0),
        IntField("base", 0),
        *_counted("entries", "count", Entry, "H"),
    ]

    def describe(self):
        return f"Table v{self.version} (since v{self.base}, {len(self.entries)} entries)"


class _GroupRequest(_Payload):
    fields_desc = [
        *_utf8("group", "group_len"),
    ]

    def describe(self):
        return f"{self.name} {self.group!r}"


class CreateGroup(_GroupRequest):
    name = "CreateGroup"


class JoinGroup(_GroupRequest):
    name = "JoinGroup"


class LeaveGroup(_GroupRequest):
    name = "LeaveGroup"


class ListMembers(_GroupRequest):
    name = "ListMembers"


class SendGroup(_Payload):
    name = "SendGroup"
    fields_desc = _GroupRequest.fields_desc + [
        *_utf8("text", "text_len", "H"),
    ]

    def describe(self):
        return f"SendGroup {self.group!r}: {self.text!r}"


class GrpMsg(_Payload):
    """A group message the server forwards: one encoding, one message id, to every other member, each copy
    with that member's token in its header; each acks it, echoing the token."""

    name = "GrpMsg"
    fields_desc = _GroupRequest.fields_desc + [
        IntField("seq", 0),  # the group's number for it: members show the group's messages in this order
        *_utf8("origin", "from_len"),
        *_utf8("text", "text_len", "H"),
    ]

    def describe(self):
        return f"GrpMsg {self.group!r} #{self.seq} {self.origin}: {self.text!r}"


class PriMsg(_Payload):
    """A private message, sent peer to peer.  Its header token is a fresh nonce that the ack echoes."""

    name = "PriMsg"
    fields_desc = [
        XIntField("session", 0),  # the sender's session number, as in its table entry
        XIntField("to_session", 0),  # the receiver's, from the sender's table: shown by that session only
        *_utf8("text", "text_len", "H"),
    ]

    def describe(self):
        return f"PriMsg {self.text!r}"


class Kick(_Payload):
    """A client reports that ``target`` did not answer it."""

    name = "Kick"
    fields_desc = [
        *_utf8("target", "target_len"),
    ]

    def describe(self):
        return f"Kick {self.target!r}"


LISTS = {TYPE_CODES[name]: name for name in IN_PARTS}  # the requests answered in parts


class ListMore(_Payload):
    """Asks for the items of a list from ``start`` on, after an answer with status ``more``."""

    name = "ListMore"
    fields_desc = [
        ByteEnumField("list", TYPE_CODES["list_groups"], LISTS),  # the request whose answer goes on
        ShortField("start", 0),  # how many items the client has already
        *_utf8("group", "group_len"),  # the group, for list_members
    ]

    def describe(self):
        return self.sprintf("ListMore %list% from %start% ") + repr(self.group)


# The payload layer of each type; types missing here (reg, dereg, list_groups,
# probe, confirm) carry nothing after the header.
PAYLOADS = {
    "reg_ack": RegAck,
    "ack": Ack,
    "table": Table,
    "create_group": CreateGroup,
    "join_group": JoinGroup,
    "leave_group": LeaveGroup,
    "list_members": ListMembers,
    "send_group": SendGroup,
    "grp_msg": GrpMsg,
    "pri_msg": PriMsg,
    "kick": Kick,
    "list_more": ListMore,
}
for _type, _layer in PAYLOADS.items():
    bind_layers(ChatHeader, _layer, type=TYPE_CODES[_type])
