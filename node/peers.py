"""The rows of a client's table: where each peer is, whether it is online, and its
session; and the store that lets many clients in one process share equal rows."""

from __future__ import annotations

from dataclasses import dataclass

from .effects import Address

MAX_SHARED_PEERS = 1 << 16


@dataclass(frozen=True)
class Peer:
    addr: Address
    online: bool
    session: int


class PeerRows:
    """Equal table rows as one object, and names interned: a process that runs many clients
    (the simulator, the benchmark's thousands) holds each row once, not once per client,
    when they share one of these.  Cleared when it holds ``limit`` rows: it only saves memory."""

    __slots__ = ("_rows", "limit")

    def __init__(self, limit: int = MAX_SHARED_PEERS):
        self._rows: dict[tuple, Peer] = {}
        self.limit = limit

    def get(self, ip: str, port: int, online: int, session: int) -> Peer:
        key = (ip, port, online, session)
        peer = self._rows.get(key)
        if peer is None:
            if len(self._rows) >= self.limit:
                self._rows.clear()
            peer = self._rows[key] = Peer((ip, port), bool(online), session)
        return peer

    def __len__(self) -> int:
        return len(self._rows)
