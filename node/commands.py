"""The client's command grammar: a typed line as a command object, or as an error that
names the command it was meant to be and that command's form.  Nothing here knows the
protocol or the client's state; the mode a command is allowed in is checked when it runs
(a command typed ahead runs after the ones before it, in the mode they leave)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Callable


class Mode(Enum):
    """Where a command is allowed: outside a group, inside one, or anywhere."""

    NORMAL = "normal"
    GROUP = "group"
    ANY = "any"


def command(cls: type) -> type:
    """Make ``cls`` a command: a frozen dataclass with slots, as the events are."""
    return dataclass(frozen=True, slots=True)(cls)


class _Command:
    """Base of the commands: each knows the word that names it, from its form in GRAMMAR."""

    __slots__ = ()

    @property
    def word(self) -> str:
        return _WORDS[type(self)]


@command
class SendPrivate(_Command):
    """A private message to ``target``, sent peer to peer."""

    target: str
    text: str


@command
class CreateGroup(_Command):
    """Ask the server to create ``group`` (without joining it)."""

    group: str


@command
class ListGroups(_Command):
    """Ask the server for every group."""


@command
class JoinGroup(_Command):
    """Enter ``group``: group mode."""

    group: str


@command
class SendGroup(_Command):
    """A message to everyone in our group, through the server."""

    text: str


@command
class ListMembers(_Command):
    """Ask the server who is in our group."""


@command
class LeaveGroup(_Command):
    """Leave our group: normal mode again."""


@command
class ListClients(_Command):
    """Show our copy of the client table now (it is printed by itself only when it changes)."""


@command
class Deregister(_Command):
    """Go offline and exit."""

    name: str  # must be the client's own: checked when it runs


@command
class Help(_Command):
    """The list of commands."""


@command
class EndOfInput:
    """Not typed: the input ended (Ctrl+D, the end of a script).  Deregisters when its turn comes."""


Command = (SendPrivate | CreateGroup | ListGroups | JoinGroup | SendGroup | ListMembers | LeaveGroup | ListClients
           | Deregister | Help)


@command
class ParseError:
    """A line that is no command.  ``command``: the command its first word names, if any;
    ``usage``: how that command is written (None for an unknown word)."""

    command: str | None
    usage: str | None


# What may follow a command's word: each gives the command's arguments, or None if the rest
# of the line does not fit.
def _name_and_text(rest: str) -> tuple[str, ...] | None:
    parts = rest.split(maxsplit=1)  # the text keeps its inner spaces
    return tuple(parts) if len(parts) == 2 else None


def _one(rest: str) -> tuple[str, ...] | None:
    return (rest,) if rest else None


def _nothing(rest: str) -> tuple[str, ...] | None:
    return None if rest else ()


def _anything(rest: str) -> tuple[str, ...]:
    return ()


@command
class Form:
    """One command of the grammar: how it is written, where it is allowed, its arguments."""

    command: type
    usage: str
    mode: Mode
    arguments: Callable[[str], tuple[str, ...] | None]


GRAMMAR: dict[str, Form] = {  # a command's word is the first of its usage
    form.usage.partition(" ")[0]: form
    for form in (
        Form(SendPrivate, "send <name> <message>", Mode.NORMAL, _name_and_text),
        Form(CreateGroup, "create_group <group>", Mode.NORMAL, _one),
        Form(ListGroups, "list_groups", Mode.NORMAL, _nothing),
        Form(JoinGroup, "join_group <group>", Mode.NORMAL, _one),
        Form(SendGroup, "send_group <message>", Mode.GROUP, _one),
        Form(ListMembers, "list_members", Mode.GROUP, _nothing),
        Form(LeaveGroup, "leave_group", Mode.GROUP, _nothing),
        Form(ListClients, "list_clients", Mode.ANY, _nothing),
        Form(Deregister, "dereg <your-name>", Mode.ANY, _one),
        Form(Help, "help", Mode.ANY, _anything),
    )
}
_WORDS = {form.command: word for word, form in GRAMMAR.items()}


def parse(line: str) -> Command | ParseError | None:
    """The command ``line`` asks for; None for a blank line."""
    line = line.strip()
    if not line:
        return None
    word, _, rest = line.partition(" ")
    form = GRAMMAR.get(word)
    if form is None:
        return ParseError(None, None)
    arguments = form.arguments(rest.strip())
    if arguments is None:
        return ParseError(word, form.usage)
    return form.command(*arguments)


# in_group -> the commands allowed there
_ALLOWED = {
    in_group: frozenset(word for word, form in GRAMMAR.items() if form.mode in (Mode.ANY, Mode.GROUP if in_group else Mode.NORMAL))
    for in_group in (False, True)
}


def allowed(word: str, in_group: bool) -> bool:
    """May the command ``word`` run in this mode?"""
    return word in _ALLOWED[in_group]
