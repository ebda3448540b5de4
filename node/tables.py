"""Parts that fit one datagram: the server's client table as versioned deltas,
and long lists (groups, members) as pages.

Every change to the client table gets the next version number, and the row it
touched remembers it.  A client whose copy is at version ``base`` is brought up
to date by the rows changed since, oldest change first, cut into parts of at most
``MAX_DATAGRAM`` bytes.  A part that stops at the row changed in version ``v`` is
the delta ``base`` -> ``v``: it carries every row changed in between (current
values, which a later change overwrites anyway), so each part applies on its own
and the next one starts where it ended.

Also how often a node prints a table that keeps changing (``TablePrinter``).
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Callable, Protocol

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


SHOWN_AT_ONCE = 100  # a table of up to this many rows is printed on every change, within a budget; a longer one at most
SHOW_PAUSE_PER_ROW = 0.001  # once every rows x this many seconds (SHOW_PAUSE at least): printing it costs that much
SHOW_PAUSE = 1.0  # seconds: a table that changes faster than it can be printed, about this often, the latest
ROWS_PER_SECOND = 1_000  # rows one table's printer prints a second on average (drawn with rich: 0.1 ms a row,
ROWS_IN_A_BURST = 2_000  # 0.2 ms a table: a tenth of the node's time), and at once

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

    def restore(self, version: int) -> None:
        """The rows were restored with the versions they changed in (a restarted server's): go on from ``version``."""
        self.version = version
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


class TablePrinter:
    """Prints a table when it changes, unless printing it would cost more than serving the clients:
    a short table (up to ``SHOWN_AT_ONCE`` rows) on every change while its printings stay within a
    budget of rows (``ROWS_IN_A_BURST`` at once, ``ROWS_PER_SECOND`` on average), beyond that the
    latest version about once a second until it has been quiet for a while; a long one (10,000
    rows) at most once every max(1 s, rows x 1 ms).  ``call_at`` is the endpoint's; ``show()``
    prints the table as it is."""

    def __init__(self, call_at: Callable[[float, Callable[[float], None]], None], size: Callable[[], int],
                 show: Callable[[], None]):
        self._call_at = call_at
        self._size = size
        self._show = show
        self._credit = float(ROWS_IN_A_BURST)  # rows that may be printed now
        self._at = 0.0  # when the credit was last topped up
        self._after = 0.0  # when a long table may be printed again
        self._later = False  # a printing is already set for later

    def changed(self, now: float) -> None:
        if self._later:
            return  # that printing shows this change too
        rows = self._top_up(now)
        if rows > SHOWN_AT_ONCE:
            due = self._after
        else:
            due = now if self._credit >= rows + 2 else now + SHOW_PAUSE
        if due <= now:
            self._credit = max(0.0, self._credit - rows - 2)  # the title and header cost about two rows
            self._show_now(now, rows)
        else:
            self._later = True
            self._call_at(due, self._show_later)

    def _top_up(self, now: float) -> int:
        """Add the credit earned since it was last topped up; the table's rows."""
        self._credit = min(ROWS_IN_A_BURST, self._credit + (now - self._at) * ROWS_PER_SECOND)
        self._at = now
        return self._size()

    def _show_later(self, now: float) -> None:
        self._later = False
        rows = self._top_up(now)
        self._credit = 0.0  # over budget: until it has been quiet for a while, the next change waits its turn too
        self._show_now(now, rows)

    def _show_now(self, now: float, rows: int) -> None:
        self._after = now + max(SHOW_PAUSE, rows * SHOW_PAUSE_PER_ROW)
        self._show()


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
