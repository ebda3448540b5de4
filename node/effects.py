"""What the protocol logic asks its I/O shell to do.  The logic never touches a
socket, a terminal or a clock; it returns these instead, beside its events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

Address = tuple[str, int]


class Send(NamedTuple):
    """Send one datagram.

    (A named tuple, unlike the other effects: a busy server makes tens of thousands a second,
    and a frozen dataclass costs about twice as much to create.)"""

    data: bytes
    addr: Address


@dataclass(frozen=True)
class Exit:
    """Stop the node with this exit status."""

    status: int


Effect = Send | Exit  # and the events of node/events.py: what happened, for the user
