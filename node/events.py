"""What happened, as the protocol logic reports it: frozen dataclasses named for the
event (a message delivered, a member joined, the table changed), never wording.

The logic returns these from ``drain(now)`` beside the datagrams it sends; what a user
reads is made from them in one place, ``node/render.py``.  Fields hold values as they
came off the network (names, texts, list items): rendering escapes them, nothing here
does.  The idea is aioquic's ``quic/events.py`` and h11's ``_events.py``."""

from __future__ import annotations

from dataclasses import dataclass


# -- client events (node/client.py) -------------------------------------------------
#
# (the client's events go here)
#
# -- end of client events ------------------------------------------------------------


#
#
#


# -- server events (node/server.py) -------------------------------------------------
#
# A line per event is printed within the console's budget (node/console.py): past it,
# the event is not made at all, only counted in a ``LinesMerged``.

from typing import Iterable, Sequence  # noqa: E402 (here, in the server's section)


@dataclass(frozen=True)
class ServerOnline:
    """The server's socket is bound: it serves from now on."""

    address: tuple[str, int]


@dataclass(frozen=True)
class ClientRegistered:
    """A registration was confirmed: the client's session starts (a new one replaces the old)."""

    client: str
    address: tuple[str, int]


@dataclass(frozen=True)
class RegistrationRefused:
    """A registration was answered with a refusal (``status``, a status name)."""

    client: str
    address: tuple[str, int]
    status: str


@dataclass(frozen=True)
class ClientDeregistered:
    client: str


@dataclass(frozen=True)
class ClientMarkedOffline:
    """A client reported by a kick did not answer the server's own probe either."""

    client: str


@dataclass(frozen=True)
class ClientGroupEvent:
    """Something a client did with a group (or the server did to it there): the subclasses say what."""

    client: str
    group: str


@dataclass(frozen=True)
class GroupCreated(ClientGroupEvent):
    pass


@dataclass(frozen=True)
class GroupNotCreated(ClientGroupEvent):
    """A create_group refused: the subclasses say why."""


@dataclass(frozen=True)
class GroupExisted(GroupNotCreated):
    pass


@dataclass(frozen=True)
class GroupsFull(GroupNotCreated):
    """The server holds as many groups as it may."""


@dataclass(frozen=True)
class GroupQuotaReached(GroupNotCreated):
    """The client's IP address created as many groups as one address may."""

    source: str


@dataclass(frozen=True)
class GroupsListed:
    client: str
    groups: Sequence[str]


@dataclass(frozen=True)
class GroupJoined(ClientGroupEvent):
    pass


@dataclass(frozen=True)
class GroupNotFound(ClientGroupEvent):
    """A join_group named a group that does not exist."""


@dataclass(frozen=True)
class GroupLeft(ClientGroupEvent):
    pass


@dataclass(frozen=True)
class MembersListed(ClientGroupEvent):
    members: Sequence[str]


@dataclass(frozen=True)
class GroupMessageRelayed(ClientGroupEvent):
    """A member's group message, accepted and sent on to the other members."""

    text: str


@dataclass(frozen=True)
class MemberRemoved(ClientGroupEvent):
    """A member did not acknowledge a group message: it is out of the group."""


@dataclass(frozen=True)
class ClientTableChanged:
    """The client table changed; ``clients`` are its rows (name, ip, port, online) as they are
    when read: read them once, right after the logic is drained."""

    clients: Iterable[tuple[str, str, int, bool]]


@dataclass(frozen=True)
class GroupTableChanged:
    """The groups changed; ``groups`` are (group, its members) as they are when read."""

    groups: Iterable[tuple[str, Sequence[str]]]


@dataclass(frozen=True)
class DatagramDropped:
    """The first bad datagram of its ``reason`` (the drop count's kind); the others are only counted.
    What is known of it: its type, sender and message id once it decoded, what the decoder said."""

    reason: str
    source: tuple[str, int]
    message: str = ""
    sender: str = ""
    msg_id: int = 0
    detail: str = ""


@dataclass(frozen=True)
class LinesMerged:
    """``count`` events of type ``kind`` came too fast to print each, in the last second."""

    kind: type
    count: int


#
# -- end of server events ------------------------------------------------------------
