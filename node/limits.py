"""Bounds that keep one node serving everyone when some peers misbehave:
how many clients and groups a server holds and how many of them one source
address may take, how fast one source may send, and how many private messages
a client holds for later."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .effects import Address

if TYPE_CHECKING:  # ChatApp.py reads Limits before --help: the events (node/events.py) load later
    from .events import DropsCounted, GroupMessage, PrivateMessage


@dataclass(frozen=True)
class Limits:
    max_clients: int = 10_000  # registered names, online or not
    max_groups: int = 1_000
    rate: float = 1_000.0  # datagrams per second one source address may send (0: no limit)
    burst: float = 2_000.0  # how many it may send at once after a quiet spell
    # Names registered and groups created from one IP address (a tenth of the above;
    # 0: no limit).  An address, not an address and port: a few sockets of one host are one party.
    max_names_per_ip: int = 1_000
    max_groups_per_ip: int = 100
    # Private messages a client in group mode holds to print when it leaves: past either
    # bound it refuses the next one (status queue_full), so a sender cannot fill its memory.
    queue_messages: int = 100
    queue_bytes: int = 64 * 1024  # of message text, UTF-8
    # Group messages a member holds until their turn (node/ordering.py): past either bound it does
    # not acknowledge the next one, so the server sends it again later.
    hold_messages: int = 1_000
    hold_bytes: int = 1024 * 1024  # of message text, UTF-8


MAX_SOURCES = 20_000  # rate buckets kept; the oldest goes first, and a new bucket starts full


class RateLimiter:
    """A token bucket per source address, so a flood from one source costs the
    others nothing but CPU time spent dropping it."""

    def __init__(self, rate: float, burst: float):
        self.rate = rate
        self.burst = burst
        self._buckets: dict[Address, list[float]] = {}  # addr -> [tokens, time of last refill]

    def allow(self, addr: Address, now: float) -> bool:
        if not self.rate:
            return True
        bucket = self._buckets.get(addr)
        if bucket is None:
            if len(self._buckets) >= MAX_SOURCES:
                del self._buckets[next(iter(self._buckets))]
            bucket = self._buckets[addr] = [self.burst, now]
        else:
            bucket[0] = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
        if bucket[0] < 1.0:
            return False
        bucket[0] -= 1.0
        return True

    def __len__(self) -> int:
        return len(self._buckets)


class SourceQuota:
    """How many shared rows (names, groups) each source IP address holds, so that one party
    cannot take them all.  The caller keeps it in step with its rows: ``move`` when a row
    is created or changes hands, ``release`` when one goes; each is O(1)."""

    def __init__(self) -> None:
        self._held: dict[str, int] = {}  # IP address -> rows; addresses holding none are left out

    def allows(self, ip: str, limit: int, holder: str | None = None) -> bool:
        """May ``ip`` take one more row (one that ``holder`` holds now, or a new one)?"""
        return not limit or holder == ip or self._held.get(ip, 0) < limit

    def move(self, ip: str, holder: str | None = None) -> None:
        """``ip`` now holds a row: a new one, or the one ``holder`` held."""
        if holder != ip:
            self._held[ip] = self._held.get(ip, 0) + 1
            if holder is not None:
                self.release(holder)

    def release(self, ip: str) -> None:
        left = self._held[ip] - 1
        if left:
            self._held[ip] = left
        else:
            del self._held[ip]

    def held(self, ip: str) -> int:
        return self._held.get(ip, 0)

    def __len__(self) -> int:
        return len(self._held)


class EventQueue:
    """Events held to be shown later, at most ``limits.queue_messages`` of them carrying at most
    ``limits.queue_bytes`` bytes of text: the private messages a client in group mode keeps."""

    __slots__ = ("events", "size", "_limits")

    def __init__(self, limits: Limits):
        self._limits = limits
        self.events: list[PrivateMessage | GroupMessage] = []
        self.size = 0  # bytes of text held (as the sender counted them: its UTF-8 length field)

    def add(self, event: PrivateMessage | GroupMessage, size: int) -> bool:
        """Hold ``event`` (``size`` bytes of text); False, holding nothing, if it does not fit."""
        if len(self.events) >= self._limits.queue_messages or self.size + size > self._limits.queue_bytes:
            return False
        self.events.append(event)
        self.size += size
        return True

    def take(self) -> list[PrivateMessage | GroupMessage]:
        """Everything held, in arrival order; the queue is empty after."""
        events, self.events, self.size = self.events, [], 0
        return events

    def __len__(self) -> int:
        return len(self.events)


def drop_report(drops: Counter[str]) -> DropsCounted | None:
    """What a node refused, by kind, to say once as it stops (late acks are normal, left out)."""
    from .events import DropsCounted

    counted = tuple((kind, n) for kind, n in sorted(drops.items()) if kind != "stale ack" and n)
    return DropsCounted(counted) if counted else None
