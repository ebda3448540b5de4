"""Parts that fit one datagram: the server's client table as versioned deltas,
and long lists (groups, members) as pages.

Every change to the client table gets the next version number, and the row it
touched remembers it.  A client whose copy is at version ``base`` is brought up
to date by the rows changed since, oldest change first, cut into parts of at most
``MAX_DATAGRAM`` bytes.  A part that stops at the row changed in version ``v`` is
the delta ``base`` -> ``v``: it carries every row changed in between (current
values, which a later change overwrites anyway), so each part applies on its own
and the next one starts where it ended.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Protocol

from proto import MAX_DATAGRAM, Entry, Name
from proto.fastpath import encode, encode_item

from .names import SERVER_NAME


class Row(Protocol):
    name: str
    changed: int  # the version in which this row last changed
    row: bytes  # the row as it goes on the wire (an encoded Entry)


def _room(type_name: str, **payload) -> int:
    """Bytes left for list items in a datagram of the server's of type ``type_name``."""
    return MAX_DATAGRAM - len(encode(type_name, {"sender": SERVER_NAME}, payload))


TABLE_ROOM = _room("table")
LIST_ROOM = _room("ack")


def entry(name: str, addr: tuple[str, int], online: bool, session: int) -> bytes:
    return encode_item(Entry, {"client": name, "ip": addr[0], "port": addr[1], "online": int(online), "session": session})


class TableVersions:
    """Which row changed in which version, for the deltas."""

    def __init__(self, rows: dict[str, Row]):
        self.rows = rows  # name -> the current row of that name (the server's client records)
        self.version = 0
        # (version, name) per change, oldest first; an entry is stale once its row changed again
        self._log: list[tuple[int, str]] = []

    def change(self, row: Row) -> None:
        self.version += 1
        row.changed = self.version
        self._log.append((self.version, row.name))
        if len(self._log) > 2 * len(self.rows) + 64:  # mostly stale: keep one entry per row
            self._log = sorted((r.changed, r.name) for r in self.rows.values() if r.changed)

    def delta(self, base: int, room: int = TABLE_ROOM) -> tuple[int, list[bytes]]:
        """(version, rows): the rows changed since ``base`` that fit in ``room`` bytes, oldest change
        first, and the version a copy at ``base`` is at once it has them."""
        rows, size, last, rows_of = [], 0, base, self.rows
        for i in range(bisect_right(self._log, base, key=lambda e: e[0]), len(self._log)):
            version, name = self._log[i]
            row = rows_of.get(name)
            if row is None or row.changed != version:
                continue  # changed again later: it comes with that version
            if rows and size + len(row.row) > room:
                return last, rows
            rows.append(row.row)
            size += len(row.row)
            last = version
        return self.version, rows


def page(items: list[str], start: int, room: int = LIST_ROOM) -> tuple[list[bytes], bool]:
    """The encoded items from ``start`` on that fit in ``room`` bytes, and whether more follow."""
    out, size = [], 0
    for i in range(start, len(items)):
        item = encode_item(Name, {"value": items[i]})
        if size + len(item) > room:
            return out, True
        out.append(item)
        size += len(item)
    return out, False
