"""Protocol facts as data: one row per message type, saying who sends it, who receives it and
what answers it.

The layer's ``type`` enum (``MSG_TYPES`` in proto/chat.py) and ``ListMore``'s ``list`` enum are
made from this table, and so are the nodes' and tools' rules about who may send what and the
list of exchanges in docs/protocol.md (``python -m proto.reference``).  A new message type is one row here
and, if it carries anything, one payload layer in proto/chat.py; tests/unit/test_messages.py checks
the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass

CLIENT, SERVER, ANY = "client", "server", "any"  # roles; ANY: either

# The name in the sender field of every datagram the server sends; no user may take it.
SERVER_NAME = "server"


@dataclass(frozen=True)
class Message:
    code: int  # the header's type byte
    name: str
    sender: str  # the role that sends it
    receiver: str  # the role that receives it
    answer: str | None  # the type that answers it (the sender retries until it comes); None: it is an answer
    family: str  # what it is about, for tools that group types (sniff.py colours them by it)
    in_parts: bool = False  # a list request: an answer that does not fit one datagram goes on (list_more)
    opens_session: bool = False  # sent before the sender has a session (the others are checked against one)


MESSAGES = (
    Message(1, "reg", CLIENT, SERVER, "reg_ack", "session", opens_session=True),
    Message(2, "reg_ack", SERVER, CLIENT, None, "session"),
    Message(3, "dereg", CLIENT, SERVER, "ack", "session"),
    Message(4, "ack", ANY, ANY, None, "answer"),
    Message(5, "table", SERVER, CLIENT, "ack", "table"),
    Message(6, "create_group", CLIENT, SERVER, "ack", "group"),
    Message(7, "list_groups", CLIENT, SERVER, "ack", "group", in_parts=True),
    Message(8, "join_group", CLIENT, SERVER, "ack", "group"),
    Message(9, "leave_group", CLIENT, SERVER, "ack", "group"),
    Message(10, "list_members", CLIENT, SERVER, "ack", "group", in_parts=True),
    Message(11, "send_group", CLIENT, SERVER, "ack", "message"),
    Message(12, "grp_msg", SERVER, CLIENT, "ack", "message"),
    Message(13, "pri_msg", CLIENT, CLIENT, "ack", "message"),
    Message(14, "kick", CLIENT, SERVER, "ack", "failure"),
    Message(15, "probe", SERVER, CLIENT, "ack", "failure"),  # the server checks a kicked client itself before believing the kick
    Message(16, "list_more", CLIENT, SERVER, "ack", "group"),  # the next part of a list that did not fit one datagram
    Message(17, "confirm", CLIENT, SERVER, "ack", "session", opens_session=True),  # the client shows it received reg_ack (the new token): its address is its own
)
BY_NAME = {m.name: m for m in MESSAGES}

ANSWERS = frozenset(m.name for m in MESSAGES if m.answer is None)  # the types that answer a request
IN_PARTS = tuple(m.name for m in MESSAGES if m.in_parts)  # the requests answered in parts
OPENS_SESSION = frozenset(m.name for m in MESSAGES if m.opens_session)  # the requests before a session
FAMILIES = {family: tuple(m.name for m in MESSAGES if m.family == family) for family in dict.fromkeys(m.family for m in MESSAGES)}


def _plays(roles: str, role: str) -> bool:
    return roles in (role, ANY)


def requests(sender: str, receiver: str) -> frozenset[str]:
    """The requests (types answered by another) that role ``sender`` sends to role ``receiver``."""
    return frozenset(m.name for m in MESSAGES if m.answer and _plays(m.sender, sender) and _plays(m.receiver, receiver))


def sent_only_by(role: str) -> frozenset[str]:
    """The requests no one but ``role`` sends: one from anyone else is forged."""
    return frozenset(m.name for m in MESSAGES if m.answer and m.sender == role)


def received_by(role: str) -> frozenset[str]:
    """The requests that role ``role`` receives (from anyone): the ones its logic handles."""
    return frozenset(m.name for m in MESSAGES if m.answer and _plays(m.receiver, role))


def received_only_by(role: str) -> frozenset[str]:
    """The requests no one but ``role`` receives: their destination is a ``role``."""
    return frozenset(m.name for m in MESSAGES if m.answer and m.receiver == role)
