"""Every line a user reads, made from the logic's events (``node/events.py``): the
wording of each ``>>> ...`` line, the group-mode prefix, the help text, the tables.

This is the one place where text from the network becomes terminal output, and it is
escaped here (``node/text.py``).  The terminal, the demo, the simulation's transcripts
and the benchmarks all print through it."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, fields
from typing import Callable, Iterable

from proto import MAX_NAME_BYTES, VERSION

from . import events as ev
from .commands import GRAMMAR
from .console import LIST_SHOWN
from .text import escaped

_RENDERERS: dict[type, Callable] = {}
ELLIPSIS = "\u2026"  # ends a cut quote; stands for each field in a merged line's example


@dataclass(frozen=True)
class Table:
    """A title line and a table; the terminal draws it with rich or as aligned text.
    Cells are network text, still raw: whoever draws the table escapes them."""

    title: str
    columns: tuple[str, ...]
    rows: Iterable[tuple[str, ...]]


def render(event) -> list[str] | Table:
    """What the user reads for ``event``: finished lines (already escaped), or a table."""
    return _RENDERERS[type(event)](event)


def renders(event_type: type) -> Callable[[Callable], Callable]:
    """Register the function that words ``event_type``."""

    def register(function: Callable) -> Callable:
        _RENDERERS[event_type] = function
        return function

    return register


# -- client wording -----------------------------------------------------------------

SUMMARIES = {  # what each command of node/commands.py does, for help
    "send": "private message to another client",
    "create_group": "create a group (does not join it)",
    "list_groups": "list the groups on the server",
    "join_group": "enter a group (group mode)",
    "send_group": "message everyone in your group (group mode)",
    "list_members": "list the members of your group (group mode)",
    "leave_group": "leave your group (group mode)",
    "list_clients": "show the client table",
    "dereg": "go offline and exit (Ctrl+C and Ctrl+D too)",
    "help": "this list",
}

HELP = ("Commands:", *(f"  {form.usage:<25} {SUMMARIES[word]}" for word, form in GRAMMAR.items()))

NOT_IN_GROUP = (
    "You're already not in the group, because the Server didn't receive your previous ack to a group message."
)

CLIENT_COLUMNS = ("name", "ip", "port", "status")


def by_name(rows: Iterable[tuple]) -> list[tuple]:
    """Client table rows in one order for the server and every client: by name, case aside.  (The
    order of arrival differs: a client learns rows in the order they last changed.)"""
    return sorted(rows, key=lambda row: (row[0].casefold(), row[0]))

REFUSALS = {
    "name_taken": "Someone has already used this name. Try another one.",
    "addr_taken": "Someone has already used this (IP, port) combination. Try another one.",
    "server_full": "The server is full. Try again later.",
    "quota": "Too many names registered from your address. Try again later.",
    "not_registered": "The server did not keep the registration (it expired). Try again.",
}

NOT_CREATED = {
    "too_many_groups": "the server has too many groups",
    "quota": "you have created too many groups",
}


def state_lost(reason: str) -> str:
    """The line of a server that stops because it could not keep its state."""
    return f"The server stops: {reason}; nothing more is answered"


def prompt(group: str | None) -> str:
    """What a client shows before the line being typed."""
    return escaped(f">>> ({group}) " if group else ">>> ")


def line(text: str, group: str | None = None) -> str:
    """One line as a client prints it: after ``>>> ``, or in group mode after ``>>> (<group>) ``;
    escaped (names and texts in it came from the network)."""
    return escaped(f">>> ({group}) {text}" if group else f">>> {text}")


def _words(event_type: type, wording: Callable) -> None:
    """Register an event whose rendering is one line, worded by ``wording(event)``."""
    _RENDERERS[event_type] = lambda event: [line(wording(event))]


_words(ev.Registering, lambda e: f"Registering as {e.name} with {e.server[0]}:{e.server[1]} ...")
_words(ev.Registered, lambda e: "Welcome, You are registered.")
_words(ev.RegistrationFailed, lambda e: REFUSALS.get(e.status, "Invalid username"))
_words(ev.PrivateMessage, lambda e: f"{e.sender}: {e.text}")
_words(ev.Delivered, lambda e: f"Message received by {e.target}.")
_words(ev.UnknownUser, lambda e: f"User {e.name} does not exist")
_words(ev.MessageTooLong, lambda e: f"Message too long ({e.size} bytes of UTF-8; the limit is {e.limit}), not sent")
_words(ev.CreatedGroup, lambda e: f"Group {e.group} created by Server.")
_words(ev.GroupExists, lambda e: f"Group {e.group} already exists.")
_words(ev.CreateGroupRefused, lambda e: f"Group {e.group} not created: {NOT_CREATED.get(e.reason, e.reason)}.")
_words(ev.JoinedGroup, lambda e: f"Entered group {e.group} successfully")
_words(ev.NoSuchGroup, lambda e: f"Group {e.group} does not exist")
_words(ev.LeftGroup, lambda e: f"Leave group chat {e.group}")
_words(ev.RemovedFromGroup, lambda e: NOT_IN_GROUP)
_words(ev.RequestRefused, lambda e: "Invalid command")  # as the original answers a refused request
_words(ev.Deregistered, lambda e: "You are Offline. Bye.")


@renders(ev.NotDelivered)
def _not_delivered(e: ev.NotDelivered) -> list[str]:
    if e.status == "queue_full":
        return [line(f"{e.target}'s queue of messages is full ({e.target} is in a group chat), message not delivered")]
    return [line(f"{e.target} did not accept the message, message not delivered")]


QUOTED = 40  # characters of a message quoted back to its sender


def quoted(text: str) -> str:
    """The start of ``text`` in quotes, cut with an ellipsis past QUOTED characters; cut before
    it is escaped (by ``line``), so that an escape is never cut in two."""
    return f'"{text[:QUOTED].rstrip()}{ELLIPSIS}"' if len(text) > QUOTED else f'"{text}"'


@renders(ev.NoAck)
def _no_ack(e: ev.NoAck) -> list[str]:
    lines = [line(f"No ACK from {e.target}, message not delivered"), line("Report this issue to server")]
    if e.listed_offline:
        lines.append(line(f"(The client table listed {e.target} as offline.)"))
    lines.append(line(f"(the message was: {quoted(e.text)})"))
    return lines


@renders(ev.BadGroupName)
def _bad_group_name(e: ev.BadGroupName) -> list[str]:
    if e.problem == "too_long":
        return [line(f"Group name should be at most {MAX_NAME_BYTES} bytes of UTF-8 "
                     f"(this one is {len(e.group.encode('utf-8'))}). Try again.")]
    if e.problem == "unprintable":
        return [line("Group name should have no control or formatting characters. Try again.")]
    lines = [line("Group name should not contain ';'. Try again.")]  # the original's answer to whitespace too
    if e.problem == "whitespace":
        lines.append(line("(It contains a space or other whitespace: a group name is one word.)"))
    return lines


@renders(ev.ListedGroups)
def _listed_groups(e: ev.ListedGroups) -> list[str]:
    if not e.groups:
        return [line("No available group right now")]
    return [line("Available group chats:"), *(line(group) for group in e.groups)]


@renders(ev.GroupMessageSent)
def _group_message_sent(e: ev.GroupMessageSent) -> list[str]:
    return [line("Message received by Server.", e.group)]


@renders(ev.GroupMessage)
def _group_message(e: ev.GroupMessage) -> list[str]:
    return [line(f"Group_Message {e.origin}: {e.text}", e.group)]


@renders(ev.ListedMembers)
def _listed_members(e: ev.ListedMembers) -> list[str]:
    return [line(f"Members in the group {e.group}:", e.group), *(line(member, e.group) for member in e.members)]


@renders(ev.QueueOverflowed)
def _queue_overflowed(e: ev.QueueOverflowed) -> list[str]:
    many = "s were" if e.count > 1 else " was"
    return [line(f"{e.count} more private message{many} not delivered: your queue was full (the senders were told)")]


@renders(ev.InvalidCommand)
def _invalid_command(e: ev.InvalidCommand) -> list[str]:
    lines = [line("Invalid command", e.group)]
    if e.usage is not None:
        lines.append(line(f"Usage: {e.usage}", e.group))
    elif e.command is not None:  # a command of the other mode: say how to get there
        way = "normal mode: leave_group first" if e.group else f"group mode: {GRAMMAR['join_group'].usage} first"
        lines.append(line(f"({e.command} is for {way})", e.group))
    return lines


@renders(ev.HelpShown)
def _help(e: ev.HelpShown) -> list[str]:
    return [line(text) for text in HELP]


@renders(ev.ServerGone)
def _lost_server(e: ev.ServerGone) -> list[str]:
    lines = [line("Server not responding", e.group), line("Exiting", e.group)]
    if e.unsent is not None:
        lines.append(line(f"(the group message was: {quoted(e.unsent)})", e.group))
    return lines


@renders(ev.ServerForgotUs)
def _forgotten(e: ev.ServerForgotUs) -> list[str]:
    return [line("The server no longer knows this client (it may have restarted): registering again")]


@renders(ev.MarkedOffline)
def _marked_offline(e: ev.MarkedOffline) -> list[str]:
    return [line("The server marked this client offline (it did not answer the server's probe)"), line("Exiting")]


def _peer_rows(peers) -> ev.LazyRows:
    """A client's table as rows, read when they are drawn."""

    def rows() -> tuple[tuple[str, ...], ...]:
        return tuple((name, p.addr[0], str(p.addr[1]), "online" if p.online else "offline")
                     for name, p in by_name(peers.items()))

    return ev.LazyRows(rows)


@renders(ev.PeersChanged)
def _peers_table(e: ev.PeersChanged) -> Table:
    return Table(">>> Client table updated.", CLIENT_COLUMNS, _peer_rows(e.peers))


@renders(ev.ListedClients)
def _listed_clients(e: ev.ListedClients) -> Table:
    return Table(line("Client table, as asked for:", e.group), CLIENT_COLUMNS, _peer_rows(e.peers))


# -- server wording -----------------------------------------------------------------

CLIENT_TABLE = ">>> Client table updated."
GROUP_TABLE = ">>> Group table updated."
GROUP_COLUMNS = ("group", "members")


def _listed(title: str, items) -> list[str]:
    """``title``, then the first LIST_SHOWN items, one a line, and how many more there are."""
    lines = [line(title), *(line(item) for item in itertools.islice(items, LIST_SHOWN))]
    if len(items) > LIST_SHOWN:
        lines.append(line(f"... and {len(items) - LIST_SHOWN} more"))
    return lines


def _nothing(event) -> list[str]:
    return []  # the table changes that go with it say it


for _quiet in (ev.ClientRegistered, ev.RegistrationRefused, ev.ClientDeregistered):
    renders(_quiet)(_nothing)

_words(ev.ServerOnline, lambda e: "Server is online")
_words(ev.StateResumed, lambda e: f"Resumed from the state file: {e.clients} clients ({e.online} listed online, "
      f"being probed), {e.groups} groups, {e.journaled} group messages to deliver")
_words(ev.ClientMarkedOffline, lambda e: f"Client {e.client} did not answer the server's probe, marked offline")
_words(ev.GroupCreated, lambda e: f"Client {e.client} created group {e.group} successfully")
_words(ev.GroupExisted, lambda e: f"Client {e.client} creating group {e.group} failed, group already exists")
_words(ev.GroupsFull, lambda e: f"Client {e.client} creating group {e.group} failed, too many groups")
_words(ev.GroupQuotaReached,
      lambda e: f"Client {e.client} creating group {e.group} failed, too many groups from {e.source}")
_words(ev.GroupJoined, lambda e: f"Client {e.client} joined group {e.group}")
_words(ev.GroupNotFound, lambda e: f"Client {e.client} joining group {e.group} failed, group does not exist")
_words(ev.GroupLeft, lambda e: f"Client {e.client} left group")
_words(ev.GroupMessageRelayed, lambda e: f"Client {e.client} sent group message: {e.text}")
_words(ev.MemberRemoved, lambda e: f"Client {e.client} not responsive, removed from {e.group}")


@renders(ev.GroupsListed)
def _groups_listed(e: ev.GroupsListed) -> list[str]:
    return _listed(f"Client {e.client} requested listing groups, current groups:", e.groups)


@renders(ev.MembersListed)
def _members_listed(e: ev.MembersListed) -> list[str]:
    return _listed(f"Client {e.client} requested listing members of group {e.group}:", e.members)


@renders(ev.ClientTableChanged)
def _client_table(e: ev.ClientTableChanged) -> Table:
    rows = tuple((name, ip, str(port), "online" if online else "offline") for name, ip, port, online in by_name(e.clients))
    return Table(CLIENT_TABLE, CLIENT_COLUMNS, rows)


@renders(ev.GroupTableChanged)
def _group_table(e: ev.GroupTableChanged) -> Table:
    return Table(GROUP_TABLE, GROUP_COLUMNS, tuple((group, ", ".join(members)) for group, members in e.groups))


# Why a datagram was dropped, by drop kind (and by message type where that reads otherwise);
# filled in with the event's fields, which stay data.
_SERVER_DROPPED = {
    "rate-limited": "too many datagrams from one source",
    "malformed": "{detail}",
    "unexpected type": "{message}",
    "unregistered": "{message} from no session of {sender!r} at that address",
    "forged": "{message} in the name of {sender!r} with a wrong token",
    "replayed": "{message} #{msg_id} of {sender!r} is older than the session's last",
}
_SERVER_DROPPED_AS = {
    ("unregistered", "confirm"): "confirm from no registration of {sender!r} at that address",
    ("replayed", "reg"): "reg #{msg_id} of {sender!r} seen before",
}


@renders(ev.DatagramDropped)
def _dropped(e: ev.DatagramDropped) -> list[str]:
    why = _SERVER_DROPPED_AS.get((e.reason, e.message)) or _SERVER_DROPPED.get(e.reason, "{detail}")
    detail = why.format_map({field.name: getattr(e, field.name) for field in fields(e)})
    return [line(f"Dropped {e.reason} datagram from {e.source[0]}:{e.source[1]} ({detail}); "
                 "more of this kind are only counted")]


@renders(ev.LinesMerged)
def _merged(e: ev.LinesMerged) -> list[str]:
    example = e.kind(**{field.name: ELLIPSIS for field in fields(e.kind)})
    like = render(example)[0].removeprefix(">>> ")
    return [line(f"... and {e.count} more like it in the last second: {like}")]


# -- either node --------------------------------------------------------------------

_words(ev.OtherVersionHeard, lambda e: f"{e.source[0]}:{e.source[1]} speaks chat protocol version {e.version}; "
                                      f"this node speaks version {VERSION}")
_words(ev.OtherVersionsOnlyCounted, lambda e: "More peers speak other chat protocol versions; they are only counted")
_words(ev.DropsCounted, lambda e: "Dropped datagrams: " + ", ".join(f"{kind} {n}" for kind, n in e.counts))
