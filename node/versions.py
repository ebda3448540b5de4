"""Datagrams of another version of the chat protocol: a peer that runs an older or newer
ChatApp.  Said once per peer address, in one line, and counted, rather than dropped
unexplained as malformed."""

from __future__ import annotations

from collections import Counter

from proto import VERSION, version_of

from .effects import Address, Effect, Show

MAX_TOLD = 64  # peer addresses named; past that (forged sources, say) the rest are only counted


class OtherVersions:
    def __init__(self, drops: Counter[str]):
        self._drops = drops
        self._told: set[Address] = set()

    def check(self, data: bytes, addr: Address, effects: list[Effect]) -> bool:
        """True if ``data`` is a chat datagram of another version: counted, and the first one from
        ``addr`` named in a line appended to ``effects``."""
        version = version_of(data)
        if version is None or version == VERSION:
            return False
        self._drops["other version"] += 1
        if addr not in self._told and len(self._told) <= MAX_TOLD:
            self._told.add(addr)
            if len(self._told) > MAX_TOLD:
                effects.append(Show(">>> More peers speak other chat protocol versions; they are only counted"))
            else:
                effects.append(Show(f">>> {addr[0]}:{addr[1]} speaks chat protocol version {version}; "
                                    f"this node speaks version {VERSION}"))
        return True
