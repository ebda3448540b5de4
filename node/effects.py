"""What the protocol logic asks its I/O shell to do.  The logic never touches a
socket, a terminal or a clock; it returns these instead."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, NamedTuple

Address = tuple[str, int]


class Send(NamedTuple):
    """Send one datagram.

    (A named tuple, unlike the other effects: a busy server makes tens of thousands a second,
    and a frozen dataclass costs about twice as much to create.)"""

    data: bytes
    addr: Address


@dataclass(frozen=True)
class Show:
    """Print one line for the user (already formatted, ``>>> `` included)."""

    text: str


class LazyRows:
    """Table rows made when they are read, as they are at that moment: a shell that does not
    print them (the benchmark's thousands of simulated clients) never pays for a long table."""

    __slots__ = ("_make",)

    def __init__(self, make: Callable[[], tuple[tuple[str, ...], ...]]):
        self._make = make

    def __iter__(self) -> Iterator[tuple[str, ...]]:
        return iter(self._make())


@dataclass(frozen=True)
class ShowTable:
    """Print a title line and a table (the shell chooses plain text or rich)."""

    title: str
    columns: tuple[str, ...]
    rows: Iterable[tuple[str, ...]]  # read once, right after the logic is drained


@dataclass(frozen=True)
class Exit:
    """Stop the node with this exit status."""

    status: int


Effect = Send | Show | ShowTable | Exit
