"""What the server keeps in its state store (``node/store.py``), as rows, and reads back at a restart.

``Unkept`` is the server without ``--state``: every call does nothing, so state in memory costs
what it did.  ``Kept`` writes each change to the store as the server makes it (the store collects
them; the shell commits once a batch, before sending what the batch produced, or with the
next batch when it produced nothing to send):

- ``clients``: name -> address, session number, token, online flag, the ids of its latest
  registrations (against replays), and the table version in which its row last changed;
- ``groups``: name -> its creator's IP address (for the per-address quota) and its next number;
- ``members``: (group, name), in joining order;
- ``journal``: each group message not yet acknowledged by every member it was sent to, with
  its message id and number, and the names that still owe an ack; written before the sender
  is answered, and rewritten once a batch as acks come;
- ``answers``: each session's last request id and the answer it got;
- ``meta``: the client table's version and the first message id not yet used (reserved in
  blocks, ``Endpoint.reserve_ids``).
"""

from __future__ import annotations

from typing import NamedTuple

from .effects import Address
from .reliable import Endpoint
from .store import MemoryStore, StoreError

TOKEN_BYTES = 8  # tokens are 64 bits: SQLite's integers are signed, so they are kept as bytes


class Journaled(NamedTuple):
    """A group message the server is delivering, as it would send it again after a restart."""

    group: str
    seq: int
    origin: str
    text: str
    names: dict[Address, str]  # the members it was sent to, by address


class Unkept:
    """No store: nothing is written (the server keeps its state in memory only).  The server calls
    the rest of ``Kept`` (the journal, the answers, ``flush``) only when it has a store: those are
    on its busiest paths."""

    store: MemoryStore | None = None

    def client(self, record) -> None:
        pass

    def group(self, name: str, creator_ip: str, next_seq: int) -> None:
        pass

    def member(self, group: str, name: str, first: int | None) -> None:
        pass

    def settled(self, msg_id: int) -> None:
        pass


class Kept(Unkept):
    def __init__(self, store: MemoryStore, net: Endpoint):
        self.store = store
        self._put, self._delete = store.put, store.delete
        self._net = net
        self._journal: dict[int, Journaled] = {}  # msg id -> the message, while members owe acks
        self._acked: set[int] = set()  # msg ids acknowledged (or given up on) by someone this batch
        self.on_ack = self._acked.add
        self._version = None  # the table version last written

    def client(self, record) -> None:
        self._put("clients", (record.name,), (
            record.addr[0], record.addr[1], record.session, record.token.to_bytes(TOKEN_BYTES, "big"),
            int(record.online), " ".join(map(str, record.reg_ids)), record.changed,
        ))

    def group(self, name: str, creator_ip: str, next_seq: int) -> None:
        self._put("groups", (name,), (creator_ip, next_seq))

    def member(self, group: str, name: str, first: int | None) -> None:
        """``name`` joined ``group`` (its first number ``first``), or left it (None)."""
        if first is None:
            self._delete("members", (group, name))
        else:
            self._put("members", (group, name), (first,))

    def journal(self, msg_id: int, message: Journaled) -> None:
        self._journal[msg_id] = message
        self._write_journal(msg_id, message, message.names.values())

    def settled(self, msg_id: int) -> None:
        """A member of ``msg_id`` will never ack it (it was removed from the group)."""
        self._acked.add(msg_id)

    def answer(self, name: str, msg_id: int, data: bytes) -> None:
        self._put("answers", (name,), (msg_id, data))

    def flush(self, table_version: int) -> None:
        """At the end of a batch: the journal rows of the messages acknowledged meanwhile say who
        still owes an ack (or go, once nobody does), and the table's version is written."""
        for msg_id in self._acked:
            message = self._journal.get(msg_id)
            if message is None:
                continue
            waiting = self._net.waiting(msg_id)
            if waiting:
                self._write_journal(msg_id, message, [message.names[addr] for addr in waiting])
            else:
                del self._journal[msg_id]
                self._delete("journal", (message.group, message.seq))
        self._acked.clear()
        if table_version != self._version:
            self._version = table_version
            self._put("meta", ("table_version",), (table_version,))

    def _write_journal(self, msg_id: int, message: Journaled, names) -> None:
        self._put("journal", (message.group, message.seq), (msg_id, message.origin, message.text, " ".join(names)))

    def reserve(self, limit: int) -> None:
        """Message ids up to ``limit`` (excluded) may be used: a restart starts at ``limit``."""
        self._put("meta", ("next_id",), (limit,))


class Restored(NamedTuple):
    """The rows of a store, as the server rebuilds itself from them."""

    meta: dict[str, int]
    clients: list[tuple[str, Address, int, int, bool, tuple[int, ...], int]]  # name, addr, session, token, online, reg_ids, changed
    groups: list[tuple[str, str, int]]  # name, creator IP, next number
    members: list[tuple[str, str]]  # (group, name), in joining order
    journal: list[tuple[int, str, int, str, str, tuple[str, ...]]]  # msg id, group, seq, origin, text, waiting names
    answers: list[tuple[str, int, bytes]]  # name, msg id, answer


# The types of each table's values as the server writes them (node/store.py names the columns).
TYPES = {
    "meta": (int,),
    "clients": (str, int, int, bytes, int, str, int),
    "groups": (str, int),
    "members": (int,),
    "journal": (int, str, str, str),
    "answers": (int, bytes),
}


def read(store: MemoryStore) -> Restored:
    """The rows, as the server rebuilds itself from them; ``StoreError`` if one is not what the server
    writes (a file edited by hand): one clear line, not a traceback at start-up."""
    for table, types in TYPES.items():
        for key, row in store.rows(table):
            if len(row) != len(types) or not all(isinstance(value, kind) for value, kind in zip(row, types)):
                where = getattr(store, "path", "the state store")
                raise StoreError(f"{where} holds a {table} row this ChatApp cannot read: {key!r}")
    rows = store.rows
    return Restored(
        {key: value for (key,), (value,) in rows("meta")},
        [
            (name, (ip, port), session, int.from_bytes(token, "big"), bool(online), tuple(map(int, reg_ids.split())), changed)
            for (name,), (ip, port, session, token, online, reg_ids, changed) in rows("clients")
        ],
        [(name, creator_ip, next_seq) for (name,), (creator_ip, next_seq) in rows("groups")],
        [key for key, _ in rows("members")],
        [
            (msg_id, group, seq, origin, text, tuple(waiting.split()))
            for (group, seq), (msg_id, origin, text, waiting) in rows("journal")
        ],
        [(name, msg_id, bytes(answer)) for (name,), (msg_id, answer) in rows("answers")],
    )
