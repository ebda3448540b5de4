"""What happened, as the protocol logic reports it: frozen dataclasses named for the
event (a message delivered, a member joined, the table changed), never wording.

The logic returns these from ``drain(now)`` beside the datagrams it sends; what a user
reads is made from them in one place, ``node/render.py``.  Fields hold values as they
came off the network (names, texts, list items): rendering escapes them, nothing here
does.  The idea is aioquic's ``quic/events.py`` and h11's ``_events.py``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Mapping, Sequence, dataclass_transform

if TYPE_CHECKING:  # the client's table rows
    from .peers import Peer


class LazyRows:
    """Table rows made when they are read, as they are at that moment: a shell that does not
    print them (the benchmark's thousands of simulated clients) never pays for a long table."""

    __slots__ = ("_make",)

    def __init__(self, make: Callable[[], tuple[tuple[str, ...], ...]]):
        self._make = make

    def __iter__(self) -> Iterator[tuple[str, ...]]:
        return iter(self._make())


@dataclass_transform(frozen_default=True)
def event(cls: type) -> type:
    """Make ``cls`` an event: a frozen dataclass with slots (made often, never changed)."""
    return dataclass(frozen=True, slots=True)(cls)


@event
class AboutGroup:
    """Base of the client's events about one group, the one ``group`` names."""

    group: str


# -- client events (node/client.py) -------------------------------------------------
# ``group``: in an ``AboutGroup`` event the group it is about; in InvalidCommand and ServerGone
# the group the client was in when it happened (None: normal mode), for the renderer to word
# the line for that mode.  Named from the client's side
# (CreatedGroup, ListedMembers, PeersChanged): the server's section of this module names
# the same happenings from its side, and a name defined twice here would rebind the first.


@event
class Registering:
    """The client has sent its registration as ``name`` to the server at ``server``, and waits
    (up to the retry policy's window) for the answer."""

    name: str
    server: tuple[str, int]


@event
class Registered:
    """The server confirmed our session: we are online."""


@event
class RegistrationFailed:
    """The server turned the registration down; the client exits.  ``status`` is the
    status it answered (``name_taken``, ``addr_taken``, ``server_full``, ``quota``,
    ``not_registered``), or None for any other."""

    status: str | None


@event
class PeersChanged:
    """Our copy of the client table changed.  ``peers`` is a read-only view of it: whoever
    shows it reads the table as it is then (a client of thousands that prints nothing
    never pays for copying it)."""

    peers: Mapping[str, Peer]


@event
class ListedClients:
    """``list_clients``: our copy of the client table, as ``PeersChanged`` has it, shown because it
    was asked for; ``group``: the group we are in (None: normal mode)."""

    peers: Mapping[str, Peer]
    group: str | None


@event
class PrivateMessage:
    """A private message from ``sender``, shown once.  In group mode it is held and
    comes out when the client leaves the group, deregisters or exits."""

    sender: str
    text: str


@event
class Delivered:
    """``target`` acknowledged our private message."""

    target: str


@event
class NotDelivered:
    """``target`` answered but did not take the message: its queue is full (``queue_full``,
    it is in a group), or another refusal (``status``)."""

    target: str
    status: str | None


@event
class NoAck:
    """``target`` never acknowledged our private message: not delivered, and reported to
    the server (a kick).  ``listed_offline``: our table listed it offline already; ``text``:
    the message, so that the user can tell which of several failed."""

    target: str
    listed_offline: bool
    text: str


@event
class UnknownUser:
    """A private message to a name our table does not hold: nothing sent."""

    name: str


@event
class MessageTooLong:
    """A typed message over the protocol's limit: refused, not sent (never truncated)."""

    size: int  # bytes of UTF-8
    limit: int


@event
class BadGroupName(AboutGroup):
    """A group name refused before asking the server; ``problem`` says why: ``semicolon``,
    ``whitespace``, ``too_long`` (over the protocol's bytes), ``unprintable``."""

    problem: str


@event
class CreatedGroup(AboutGroup):
    """The server created ``group``, as we asked (we are not in it)."""


@event
class GroupExists(AboutGroup):
    """A group of that name exists already: not created."""


@event
class CreateGroupRefused(AboutGroup):
    """The server holds too many groups (``too_many_groups``), or we created too many (``quota``)."""

    reason: str


@event
class ListedGroups:
    """The server's answer to ``list_groups``: every group, in its order (maybe none)."""

    groups: tuple[str, ...]


@event
class JoinedGroup(AboutGroup):
    """We entered ``group``: group mode."""


@event
class NoSuchGroup(AboutGroup):
    """There is no such group to join."""


@event
class GroupMessageSent(AboutGroup):
    """The server has our group message (it delivers it to each member itself)."""


@event
class GroupMessage(AboutGroup):
    """A message from ``origin`` to our group, shown once."""

    origin: str
    text: str


@event
class ListedMembers(AboutGroup):
    """The server's answer to ``list_members``: the members in the order they joined."""

    members: tuple[str, ...]


@event
class LeftGroup(AboutGroup):
    """We left ``group``: normal mode again."""


@event
class RemovedFromGroup(AboutGroup):
    """The server had already removed us from ``group`` (it missed our acks): normal mode again."""


@event
class QueueOverflowed:
    """``count`` private messages were refused while we were in a group: the queue was full
    (their senders were told).  Comes after the held messages."""

    count: int


@event
class InvalidCommand:
    """A typed line that is no command here.  ``command``: the command it was meant to be,
    if its first word names one; ``usage``: that command's form, when the line did not fit
    it (None when the command is only not allowed in this mode)."""

    group: str | None
    command: str | None = None
    usage: str | None = None


@event
class RequestRefused:
    """The server answered a request with a status that request has no outcome for."""

    status: str | None


@event
class HelpShown:
    """``help`` was typed: the list of commands."""


@event
class Deregistered:
    """The server took us offline as we asked; the client exits 0."""


@event
class ServerGone:
    """The server did not answer any try of a request; the client exits 1.  ``unsent``: the
    group message that request carried, if it was one (the server never confirmed it)."""

    group: str | None
    unsent: str | None = None


@event
class ServerForgotUs:
    """The server answered that it does not know us (it restarted): the client registers again."""


@event
class MarkedOffline:
    """The server's table lists us offline (we missed its probe); the client exits 1."""


# -- server events (node/server.py) -------------------------------------------------
# A line per event is printed within the console's budget (node/console.py): past it,
# the event is not made at all, only counted in a ``LinesMerged``.


@event
class ServerOnline:
    """The server's socket is bound: it serves from now on."""

    address: tuple[str, int]


@event
class StateResumed:
    """A server started on its state file: the sessions, groups and undelivered group messages
    it resumes (the online clients are probed: those that do not answer go offline)."""

    clients: int
    online: int
    groups: int
    journaled: int


@event
class ClientRegistered:
    """A registration was confirmed: the client's session starts (a new one replaces the old)."""

    client: str
    address: tuple[str, int]


@event
class RegistrationRefused:
    """A registration was answered with a refusal (``status``, a status name)."""

    client: str
    address: tuple[str, int]
    status: str


@event
class ClientDeregistered:
    client: str


@event
class ClientMarkedOffline:
    """A client reported by a kick did not answer the server's own probe either."""

    client: str


@event
class ClientGroupEvent:
    """Something a client did with a group (or the server did to it there): the subclasses say what."""

    client: str
    group: str


@event
class GroupCreated(ClientGroupEvent):
    pass


@event
class GroupNotCreated(ClientGroupEvent):
    """A create_group refused: the subclasses say why."""


@event
class GroupExisted(GroupNotCreated):
    pass


@event
class GroupsFull(GroupNotCreated):
    """The server holds as many groups as it may."""


@event
class GroupQuotaReached(GroupNotCreated):
    """The client's IP address created as many groups as one address may."""

    source: str


@event
class GroupsListed:
    client: str
    groups: Sequence[str]


@event
class GroupJoined(ClientGroupEvent):
    pass


@event
class GroupNotFound(ClientGroupEvent):
    """A join_group named a group that does not exist."""


@event
class GroupLeft(ClientGroupEvent):
    pass


@event
class MembersListed(ClientGroupEvent):
    members: Sequence[str]


@event
class GroupMessageRelayed(ClientGroupEvent):
    """A member's group message, accepted and sent on to the other members."""

    text: str


@event
class MemberRemoved(ClientGroupEvent):
    """A member did not acknowledge a group message: it is out of the group."""


@event
class ClientTableChanged:
    """The client table changed; ``clients`` are its rows (name, ip, port, online) as they are
    when read: read them once, right after the logic is drained."""

    clients: Iterable[tuple[str, str, int, bool]]


@event
class GroupTableChanged:
    """The groups changed; ``groups`` are (group, its members) as they are when read."""

    groups: Iterable[tuple[str, Sequence[str]]]


@event
class DatagramDropped:
    """The first bad datagram of its ``reason`` (the drop count's kind); the others are only counted.
    What is known of it: its type, sender and message id once it decoded, what the decoder said."""

    reason: str
    source: tuple[str, int]
    message: str = ""
    sender: str = ""
    msg_id: int = 0
    detail: str = ""


@event
class LinesMerged:
    """``count`` events of type ``kind`` came too fast to print each, in the last second."""

    kind: type
    count: int




# -- either node (node/versions.py, node/limits.py) ----------------------------------


@event
class OtherVersionHeard:
    """A chat datagram of another protocol ``version`` came from ``source`` (a peer that runs an
    older or newer ChatApp): dropped and counted; said once per address."""

    source: tuple[str, int]
    version: int


@event
class OtherVersionsOnlyCounted:
    """More addresses than are named sent datagrams of other versions: the rest are only counted."""


@event
class DropsCounted:
    """The node is stopping: the datagrams it refused, as (kind, how many), in the order of kind."""

    counts: tuple[tuple[str, int], ...]
