"""Every line a user reads, made from the logic's events (``node/events.py``): the
wording of each ``>>> ...`` line, the group-mode prefix, the help text, the tables.

This is the one place where text from the network becomes terminal output, and it is
escaped here (``node/text.py``).  The terminal, the demo, the simulation's transcripts
and the benchmarks all print through it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

_RENDERERS: dict[type, Callable] = {}


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
#
# (the client's renderers go here)
#
# -- end of client wording ----------------------------------------------------------


#
#
#


# -- server wording -----------------------------------------------------------------

import itertools  # noqa: E402 (here, in the server's section)
from dataclasses import fields  # noqa: E402

from . import events as ev  # noqa: E402
from .console import LIST_SHOWN  # noqa: E402
from .text import escaped  # noqa: E402

ELLIPSIS = "\u2026"  # stands for each field in a merged line's example
CLIENT_TABLE = ">>> Client table updated."
GROUP_TABLE = ">>> Group table updated."
CLIENT_COLUMNS = ("name", "ip", "port", "status")
GROUP_COLUMNS = ("group", "members")


# (the helpers are named _server_...: module globals, which the client's section must not rebind)
def _server_line(text: str) -> list[str]:
    return [escaped(">>> " + text)]


def _server_listed(title: str, items) -> list[str]:
    """``title``, then the first LIST_SHOWN items, one a line, and how many more there are."""
    lines = [">>> " + title, *(">>> " + item for item in itertools.islice(items, LIST_SHOWN))]
    if len(items) > LIST_SHOWN:
        lines.append(f">>> ... and {len(items) - LIST_SHOWN} more")
    return [escaped(line) for line in lines]


def _server_says(event_type: type, wording: Callable[..., str]) -> None:
    """Register the one line ``wording(event)`` for ``event_type``."""
    renders(event_type)(lambda event: _server_line(wording(event)))


def _server_nothing(event) -> list[str]:
    return []  # the table changes that go with it say it


for _quiet in (ev.ClientRegistered, ev.RegistrationRefused, ev.ClientDeregistered):
    renders(_quiet)(_server_nothing)

_server_says(ev.ServerOnline, lambda e: "Server is online")
_server_says(ev.ClientMarkedOffline, lambda e: f"Client {e.client} did not answer the server's probe, marked offline")
_server_says(ev.GroupCreated, lambda e: f"Client {e.client} created group {e.group} successfully")
_server_says(ev.GroupExisted, lambda e: f"Client {e.client} creating group {e.group} failed, group already exists")
_server_says(ev.GroupsFull, lambda e: f"Client {e.client} creating group {e.group} failed, too many groups")
_server_says(ev.GroupQuotaReached,
      lambda e: f"Client {e.client} creating group {e.group} failed, too many groups from {e.source}")
_server_says(ev.GroupJoined, lambda e: f"Client {e.client} joined group {e.group}")
_server_says(ev.GroupNotFound, lambda e: f"Client {e.client} joining group {e.group} failed, group does not exist")
_server_says(ev.GroupLeft, lambda e: f"Client {e.client} left group")
_server_says(ev.GroupMessageRelayed, lambda e: f"Client {e.client} sent group message: {e.text}")
_server_says(ev.MemberRemoved, lambda e: f"Client {e.client} not responsive, removed from {e.group}")


@renders(ev.GroupsListed)
def _groups_listed(e: ev.GroupsListed) -> list[str]:
    return _server_listed(f"Client {e.client} requested listing groups, current groups:", e.groups)


@renders(ev.MembersListed)
def _members_listed(e: ev.MembersListed) -> list[str]:
    return _server_listed(f"Client {e.client} requested listing members of group {e.group}:", e.members)


@renders(ev.ClientTableChanged)
def _client_table(e: ev.ClientTableChanged) -> Table:
    rows = tuple((name, ip, str(port), "online" if online else "offline") for name, ip, port, online in e.clients)
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
    detail = why.format_map(vars(e))
    return _server_line(f"Dropped {e.reason} datagram from {e.source[0]}:{e.source[1]} ({detail}); "
                 "more of this kind are only counted")


@renders(ev.LinesMerged)
def _merged(e: ev.LinesMerged) -> list[str]:
    example = e.kind(**{field.name: ELLIPSIS for field in fields(e.kind)})
    like = render(example)[0].removeprefix(">>> ")
    return _server_line(f"... and {e.count} more like it in the last second: {like}")


#
# -- end of server wording ----------------------------------------------------------
