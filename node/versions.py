"""Datagrams of another version of the chat protocol: a peer that runs an older or newer
ChatApp.  Said once per peer address (an event), and counted, rather than dropped
unexplained as malformed."""

from __future__ import annotations

from collections import Counter
from typing import Callable

from proto import VERSION, version_of

from .effects import Address
from .events import OtherVersionHeard, OtherVersionsOnlyCounted

MAX_TOLD = 64  # peer addresses named; past that (forged sources, say) the rest are only counted


class OtherVersions:
    def __init__(self, drops: Counter[str], emit: Callable[[object], None]):
        self._drops = drops
        self._emit = emit
        self._told: set[Address] = set()

    def check(self, data: bytes, addr: Address) -> bool:
        """True if ``data`` is a chat datagram of another version: counted, and the first one from
        ``addr`` reported as an event."""
        version = version_of(data)
        if version is None or version == VERSION:
            return False
        self._drops["other version"] += 1
        if addr not in self._told and len(self._told) <= MAX_TOLD:
            self._told.add(addr)
            if len(self._told) > MAX_TOLD:
                self._emit(OtherVersionsOnlyCounted())
            else:
                self._emit(OtherVersionHeard(addr, version))
        return True
