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
#
# (the server's renderers go here)
#
# -- end of server wording ----------------------------------------------------------
