"""What the protocol logic asks its I/O shell to do.  The logic never touches a
socket, a terminal or a clock; it returns these instead."""

from __future__ import annotations

from dataclasses import dataclass

Address = tuple[str, int]


@dataclass(frozen=True)
class Send:
    """Send one datagram."""

    data: bytes
    addr: Address


@dataclass(frozen=True)
class Show:
    """Print one line for the user (already formatted, ``>>> `` included)."""

    text: str


@dataclass(frozen=True)
class ShowTable:
    """Print a title line and a table (the shell chooses plain text or rich)."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Exit:
    """Stop the node with this exit status."""

    status: int


Effect = Send | Show | ShowTable | Exit
