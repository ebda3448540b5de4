"""Where the server's state lives: in memory (the default, and the simulator's), or in a
SQLite file (``--state FILE``) that survives the server process.

The logic records each change as it makes it (``put``/``delete`` of one row); the shell
calls ``commit()`` once per batch of datagrams, before any datagram of that batch is sent,
so nothing is acknowledged that a crash could lose, and a burst costs one transaction (a
batch that sends nothing may wait for the next one's, ``COMMIT_WITHIN``).
A failed commit raises ``StoreError``: the server must stop answering rather than answer
for state it did not keep.

The rows are plain tuples of ints, strings and bytes, in the tables of ``TABLES``; what
they mean is the server's business.  Both stores keep the same tables: the simulator's
crash schedule runs against ``MemoryStore`` (``abort()`` is a crash: what was not
committed is gone) and the real one against ``SqliteStore``.

Durability: WAL with ``synchronous=NORMAL`` survives a crash of the process (SIGKILL)
without losing a committed transaction; after a power loss or an OS crash the last
transactions before it may be lost (never a corrupted file).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from typing import Iterator

Row = tuple  # of int | str | bytes | None
Key = tuple

SCHEMA_VERSION = 2  # 2: the keyed tables are WITHOUT ROWID; a file of version 1 is read as it is
APPLICATION_ID = 0x43684174  # "ChAt": PRAGMA application_id marks a state file as ours
SQLITE_MAGIC = b"SQLite format 3\x00"
# seconds: changes of a batch that sends nothing (members' acks) may wait this long for a
# commit, so that the next batch's commit (the next group message's) carries them, instead
# of a commit of their own.  They promise nothing: a crash before it costs retransmissions
# that their receivers recognise, never a message.
COMMIT_WITHIN = 0.1

# table: (key columns, other columns).  Integers are SQLite's signed 64 bits: a value that
# does not fit (a 64-bit token) is stored by the server as bytes.
TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "meta": (("key",), ("value",)),
    "clients": (("name",), ("ip", "port", "session", "token", "online", "reg_ids", "changed")),
    "groups": (("name",), ("creator_ip", "next_seq")),
    "members": (("grp", "name"), ("first",)),
    "journal": (("grp", "seq"), ("msg_id", "origin", "text", "waiting")),
    "answers": (("name",), ("msg_id", "answer")),
}
# Tables read by key only, whose rows' order means nothing: stored in their key's b-tree
# (WITHOUT ROWID), so that a change writes one page of it, not a page of the table and one
# of its key's index.  The others keep the order their rows were first written in (rowid).
KEYED = {"journal", "answers"}
# Every commit writes the pages it changed, whole, to the write-ahead log: smaller pages
# than SQLite's 4 KiB are less to write for the few small rows a batch changes (measured:
# a group message's two commits cost 23 us with 1 KiB pages, 31 us with 4 KiB).
PAGE_SIZE = 1024


class StoreError(Exception):
    """A state file that cannot be used, or a write that failed: the message says why."""


class MemoryStore:
    """The tables as dictionaries.  ``commit()`` makes the changes since the last one
    durable (as far as this process lives); ``abort()`` forgets them, as a crash would."""

    def __init__(self) -> None:
        self._tables: dict[str, dict[Key, Row]] = {name: {} for name in TABLES}
        self._changes: dict[tuple[str, Key], Row | None] = {}  # the latest change of each row

    def put(self, table: str, key: Key, row: Row) -> None:
        self._changes[table, key] = row

    def delete(self, table: str, key: Key) -> None:
        self._changes[table, key] = None

    @property
    def dirty(self) -> bool:
        return bool(self._changes)

    def rows(self, table: str) -> Iterator[tuple[Key, Row]]:
        """The committed rows of ``table``, in the order they were first written."""
        return iter(list(self._tables[table].items()))

    def commit(self) -> None:
        if not self._changes:
            return
        changes, self._changes = self._changes, {}
        self._write(changes)
        for (table, key), row in changes.items():
            if row is None:
                self._tables[table].pop(key, None)
            else:
                self._tables[table][key] = row

    def _write(self, changes: dict[tuple[str, Key], Row | None]) -> None:
        """Make ``changes`` durable (nothing to do in memory)."""

    def abort(self) -> None:
        self._changes.clear()

    def close(self) -> None:
        self.abort()


class SqliteStore(MemoryStore):
    """The tables in a SQLite file, read into memory when it is opened.

    Reads come from memory (the server reads its state all the time); only commits touch
    the file.  One server at a time: the file is locked while it is open."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self._lock = _lock(path)
        try:
            self._db = _open(path)
            self._load()
        except BaseException:
            os.close(self._lock)
            raise

    def _load(self) -> None:
        for table, (keys, _) in TABLES.items():
            width = len(keys)
            order = ", ".join(keys) if table in KEYED else "rowid"
            for row in self._db.execute(f"SELECT * FROM {table} ORDER BY {order}"):  # noqa: S608 (names are ours)
                self._tables[table][tuple(row[:width])] = tuple(row[width:])

    def _write(self, changes: dict[tuple[str, Key], Row | None]) -> None:
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            for (table, key), row in changes.items():
                if row is None:
                    if key in self._tables[table]:  # (not a row written and deleted since the last commit)
                        db.execute(_DELETE[table], key)
                elif key in self._tables[table]:
                    db.execute(_UPDATE[table], (*row, *key))  # an update keeps the row's place (rowid)
                else:
                    db.execute(_INSERT[table], (*key, *row))
            db.execute("COMMIT")
        except (sqlite3.Error, OverflowError, UnicodeError) as exc:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise StoreError(f"cannot write the state file {self.path}: {exc}") from None

    def close(self) -> None:
        super().close()
        try:
            self._db.close()
        finally:
            os.close(self._lock)


def _statements(template: str) -> dict[str, str]:
    out = {}
    for table, (keys, columns) in TABLES.items():
        out[table] = template.format(
            table=table,
            all=", ".join(keys + columns),
            marks=", ".join("?" * (len(keys) + len(columns))),
            set=", ".join(f"{c} = ?" for c in columns),
            where=" AND ".join(f"{k} = ?" for k in keys),
        )
    return out


_INSERT = _statements("INSERT INTO {table} ({all}) VALUES ({marks})")
_UPDATE = _statements("UPDATE {table} SET {set} WHERE {where}")
_DELETE = _statements("DELETE FROM {table} WHERE {where}")
_CREATE = [
    f"CREATE TABLE {table} ({', '.join(keys + columns)}, PRIMARY KEY ({', '.join(keys)})){' WITHOUT ROWID' * (table in KEYED)}"
    for table, (keys, columns) in TABLES.items()
]


def _lock(path: str) -> int:
    """Create ``path`` readable by its owner only if it is new (it holds tokens), and lock it
    for this process: a second server on the same file would overwrite the first's state."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StoreError(f"cannot open the state file {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise StoreError(f"the state file {path} is in use by another server") from None
    return fd


def _open(path: str) -> sqlite3.Connection:
    with open(path, "rb") as f:
        head = f.read(len(SQLITE_MAGIC))
    if head and head != SQLITE_MAGIC:
        raise StoreError(f"{path} is not a ChatApp state file (not a SQLite database)")
    try:
        db = sqlite3.connect(path, isolation_level=None)
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = db.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]
    except sqlite3.Error as exc:
        raise StoreError(f"{path} is not a ChatApp state file ({exc})") from None
    if app_id != APPLICATION_ID and (app_id != 0 or tables != 0):
        db.close()
        raise StoreError(f"{path} is not a ChatApp state file (a SQLite database of another program)")
    if version > SCHEMA_VERSION:
        db.close()
        raise StoreError(
            f"{path} was written by a newer ChatApp (state format {version}; this one reads up to {SCHEMA_VERSION})"
        )
    try:
        if tables == 0:
            db.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # (only a file with nothing in it yet takes it)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        if tables == 0:
            db.execute("BEGIN IMMEDIATE")
            for statement in _CREATE:
                db.execute(statement)
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
    except sqlite3.Error as exc:
        db.close()
        raise StoreError(f"cannot set up the state file {path}: {exc}") from None
    return db

