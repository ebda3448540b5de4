"""Bounds that keep one node serving everyone when some peers misbehave:
how many clients and groups a server holds, and how fast one source may send."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .effects import Address, Show


@dataclass(frozen=True)
class Limits:
    max_clients: int = 10_000  # registered names, online or not
    max_groups: int = 1_000
    rate: float = 1_000.0  # datagrams per second one source address may send (0: no limit)
    burst: float = 2_000.0  # how many it may send at once after a quiet spell


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


def drop_report(drops: Counter[str]) -> Show | None:
    """One closing line counting the datagrams a node refused, by kind (late acks are normal, left out)."""
    counted = {kind: n for kind, n in sorted(drops.items()) if kind != "stale ack" and n}
    if not counted:
        return None
    return Show(">>> Dropped datagrams: " + ", ".join(f"{kind} {n}" for kind, n in counted.items()))
