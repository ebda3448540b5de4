"""One order per group: a member shows its group's messages in the order the server numbered them.

The server numbers each group's messages as it accepts them (``GrpMsg.seq``).  A member shows
message n only after n-1 and holds the ones that come early.  Two kinds of gap are no loss and are
passed at once: the member's own messages (the server does not send them back; the ack of its
``send_group`` carries their number) and the messages before it joined (the ack of ``join_group``
carries the first number it receives).

A gap that does not fill means the server gave up on that message for this member: it sends each
message for one retry window, then removes a member that never acknowledged it.  The server sends
n-1 no later than n, so once n has arrived, n-1 cannot come later than one retry window and one
more timeout after it (``hold``); then the member shows what it holds, in order, and a copy of the
missing message that comes after that is too late to keep the order: it is neither shown nor
acknowledged (the server's count of who received it stays true).

What is held is bounded (``Limits.hold_messages``, ``Limits.hold_bytes``): past that a message is not
acknowledged, so the server sends it again later, as it does for a lost one.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable

from .limits import Limits

SEQ_SPAN = 2**32  # GrpMsg.seq is 32 bits; numbers go 1 .. 2**32-1, then 1 again (0 means none)
HALF = SEQ_SPAN // 2


def next_seq(seq: int) -> int:
    """The number after ``seq`` (0 is never one: an ack's seq of 0 means "no number")."""
    return seq % (SEQ_SPAN - 1) + 1


def distance(seq: int, start: int) -> int:
    """How far ``seq`` is after ``start`` (numbers wrap around, as message ids do)."""
    return (seq - start) % SEQ_SPAN


class GroupOrder:
    """The messages of the member's group, held until their turn; ``show`` gets them in order."""

    __slots__ = ("_held", "_next", "_first", "_size", "_limits", "_hold", "_call_at", "_show", "_drops",
                 "_epoch", "_armed", "gaps_skipped", "early")

    def __init__(self, limits: Limits, hold: float, call_at: Callable, show: Callable, drops: Counter):
        self._limits = limits
        self._hold = hold
        self._call_at = call_at  # the endpoint's timer: call_at(when, callback(now))
        self._show = show
        self._drops = drops
        self._held: dict[int, tuple[object, int] | None] = {}  # number -> (message, text bytes); None: ours
        self._next: int | None = None  # the number to show next; None until the join is answered
        self._first = 0  # the first number of this membership
        self._size = 0  # bytes of text held
        self._epoch = 0  # one per membership: a hold timer of an earlier one does nothing
        self._armed: int | None = None  # the gap (number) a hold timer waits on
        self.gaps_skipped = 0  # gaps given up on (the server gave up on those messages for us)
        self.early = 0  # messages that came before their turn and were held

    def reset(self) -> None:
        """A new membership (or none): nothing held, the start not known yet."""
        self._held.clear()
        self._next = self._armed = None
        self._size = 0
        self._epoch += 1

    def start(self, first: int, now: float) -> None:
        """The join is answered: ``first`` is the first number this member receives."""
        self._next = self._first = first
        for seq in [seq for seq in self._held if distance(seq, first) >= HALF]:
            self._forget(seq)  # sent to an earlier membership of this group, before the join
            self._drops["group message from before joining"] += 1
        self._release(now)

    def own(self, seq: int, now: float) -> None:
        """Our own message got number ``seq``: nothing to wait for there."""
        if self._next is not None and seq and distance(seq, self._next) < HALF:
            self._held[seq] = None
            self._release(now)

    def add(self, seq: int, message, size: int, now: float) -> bool:
        """Message number ``seq`` has come: shown now or held until its turn.  False if it is not
        taken (too late for its turn, or no room to hold it): then it must not be acknowledged."""
        nxt, held, limits = self._next, self._held, self._limits
        if nxt is not None:
            ahead = (seq - nxt) % SEQ_SPAN  # distance(), inline: this runs for every group message
            if ahead == 0 and not held:  # its turn, nothing waiting: the usual case
                self._next = seq % (SEQ_SPAN - 1) + 1  # next_seq(seq)
                self._show(message)
                return True
            if ahead >= HALF:  # before the one we show next
                if distance(seq, self._first) >= HALF:
                    self._drops["group message from before joining"] += 1
                    return True  # for an earlier membership: acknowledged, not ours to show
                self._drops["group message too late"] += 1
                return False
        if seq in held:
            return True
        if (nxt is None or ahead) and (len(held) >= limits.hold_messages or self._size + size > limits.hold_bytes):
            # (the one whose turn it is always goes in: it goes out at once, and frees what waits behind it)
            self._drops["group message, no room to hold"] += 1
            return False
        held[seq] = (message, size)
        self._size += size
        if nxt is not None:
            self.early += ahead > 0
            self._release(now)
        return True

    def flush(self) -> None:
        """Show everything held, in order (the member leaves the group, or exits), and reset."""
        held = self._held
        if held:
            base = self._next if self._next is not None else next(iter(held)) - HALF
            for seq in sorted(held, key=lambda seq: distance(seq, base)):
                if held[seq] is not None:
                    self._show(held[seq][0])
        self.reset()

    def __len__(self) -> int:
        return len(self._held)

    def _forget(self, seq: int) -> None:
        entry = self._held.pop(seq)
        if entry is not None:
            self._size -= entry[1]

    def _release(self, now: float) -> None:
        held, seq = self._held, self._next
        while seq in held:
            entry = held.pop(seq)
            if entry is not None:
                self._size -= entry[1]
                self._show(entry[0])
            seq = next_seq(seq)
        self._next = seq
        if held and self._armed != seq:  # a gap: wait for it at most ``hold``
            self._armed = seq
            epoch = self._epoch
            self._call_at(now + self._hold, lambda now: self._give_up(epoch, seq, now))

    def _give_up(self, epoch: int, gap: int, now: float) -> None:
        """The server has given up on the missing message for us: go on from the next one held."""
        if epoch != self._epoch or gap != self._next or not self._held:
            return  # the gap filled (or the membership ended) meanwhile
        self.gaps_skipped += 1
        self._next = min(self._held, key=lambda seq: distance(seq, gap))
        self._armed = None
        self._release(now)
