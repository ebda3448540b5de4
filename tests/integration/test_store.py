"""The state store: a real SQLite file, and the in-memory store the simulator uses, kept
to the same behaviour."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap

import pytest

from node.store import APPLICATION_ID, SCHEMA_VERSION, MemoryStore, SqliteStore, StoreError
from tests.procs import ROOT

TOKEN = (7).to_bytes(8, "big")


def client(name: str, online: int = 1) -> tuple:
    return ("127.0.0.1", 7000, 5, TOKEN, online, "", 1)


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    made = MemoryStore() if request.param == "memory" else SqliteStore(str(tmp_path / "state.db"))
    yield made
    made.close()


def test_committed_changes_are_read_back_and_uncommitted_ones_are_not(store):
    store.put("clients", ("Ann",), client("Ann"))
    assert list(store.rows("clients")) == []  # not committed yet
    store.commit()
    store.put("clients", ("Bob",), client("Bob"))
    store.abort()
    assert list(store.rows("clients")) == [(("Ann",), client("Ann"))]


def test_an_update_keeps_the_row_in_its_place_and_a_delete_removes_it(store):
    for name in ("Ann", "Bob", "Cid"):
        store.put("clients", (name,), client(name))
    store.commit()
    store.put("clients", ("Ann",), client("Ann", online=0))
    store.delete("clients", ("Bob",))
    store.commit()
    assert list(store.rows("clients")) == [(("Ann",), client("Ann", online=0)), (("Cid",), client("Cid"))]


def test_several_changes_to_one_row_in_a_batch_keep_the_last(store):
    store.put("members", ("g", "Ann"), (1,))
    store.delete("members", ("g", "Ann"))
    store.put("members", ("g", "Bob"), (2,))
    store.commit()
    assert list(store.rows("members")) == [(("g", "Bob"), (2,))]


def test_a_reopened_file_has_what_was_committed_in_order(tmp_path):
    path = str(tmp_path / "state.db")
    first = SqliteStore(path)
    for name in ("Cid", "Ann", "Bob"):
        first.put("clients", (name,), client(name))
    first.put("meta", ("epoch",), (3,))
    first.commit()
    first.put("clients", ("Dan",), client("Dan"))  # never committed
    first.close()
    again = SqliteStore(path)
    assert [key for key, _ in again.rows("clients")] == [("Cid",), ("Ann",), ("Bob",)]
    assert list(again.rows("meta")) == [(("epoch",), (3,))]
    again.close()


def test_a_row_written_and_deleted_between_two_commits_never_reaches_the_file(tmp_path):
    """A group message acknowledged by all before the next commit costs its journal nothing."""
    store = SqliteStore(str(tmp_path / "state.db"))
    store.put("journal", ("g", 1), (5, "Ann", "committed", "Bob"))
    store.commit()
    statements = []
    store._db.set_trace_callback(statements.append)
    store.put("journal", ("g", 2), (6, "Ann", "acked by all at once", "Bob"))
    store.delete("journal", ("g", 2))
    store.delete("journal", ("g", 1))
    store.commit()
    assert statements == ["BEGIN IMMEDIATE", "DELETE FROM journal WHERE grp = 'g' AND seq = 1", "COMMIT"]
    store.close()
    again = SqliteStore(str(tmp_path / "state.db"))
    assert list(again.rows("journal")) == []
    again.close()


def test_a_file_of_state_format_1_is_read_as_it_is(tmp_path):
    """Format 1 kept every table with a rowid (and 4 KiB pages); format 2 only changed how the
    keyed tables are stored, so a file of format 1 is read, and written, without a conversion."""
    path = str(tmp_path / "state.db")
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    for table, columns in {
        "meta": "key, value, PRIMARY KEY (key)",
        "clients": "name, ip, port, session, token, online, reg_ids, changed, PRIMARY KEY (name)",
        "groups": "name, creator_ip, next_seq, PRIMARY KEY (name)",
        "members": "grp, name, first, PRIMARY KEY (grp, name)",
        "journal": "grp, seq, msg_id, origin, text, waiting, PRIMARY KEY (grp, seq)",
        "answers": "name, msg_id, answer, PRIMARY KEY (name)",
    }.items():
        db.execute(f"CREATE TABLE {table} ({columns})")
    db.execute("INSERT INTO clients VALUES ('Ann', '127.0.0.1', 7000, 5, ?, 1, '', 1)", (TOKEN,))
    db.execute("INSERT INTO journal VALUES ('g', 2, 6, 'Ann', 'second', 'Bob')")
    db.execute("INSERT INTO journal VALUES ('g', 1, 5, 'Ann', 'first', 'Bob')")
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    db.execute("PRAGMA user_version = 1")
    db.close()
    store = SqliteStore(path)
    assert list(store.rows("clients")) == [(("Ann",), client("Ann"))]
    assert [key for key, _ in store.rows("journal")] == [("g", 1), ("g", 2)]
    store.delete("journal", ("g", 1))
    store.put("answers", ("Ann",), (9, b"an answer"))
    store.commit()
    store.close()
    again = SqliteStore(path)
    assert [key for key, _ in again.rows("journal")] == [("g", 2)]
    assert list(again.rows("answers")) == [(("Ann",), (9, b"an answer"))]
    again.close()


@pytest.mark.e2e  # starts a process
def test_a_killed_process_loses_nothing_it_committed(tmp_path):
    path = str(tmp_path / "state.db")
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from node.store import SqliteStore
        store = SqliteStore({path!r})
        for i in range(200):
            store.put("journal", ("g", i), (i + 1, "Ann", "message %d" % i, ""))
            store.commit()
        store.put("journal", ("g", 999), (1000, "Ann", "not committed", ""))
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    done = subprocess.run([sys.executable, "-c", script], timeout=60)
    assert done.returncode == -signal.SIGKILL
    store = SqliteStore(path)  # the killed process's lock went with it
    assert [key for key, _ in store.rows("journal")] == [("g", i) for i in range(200)]
    store.close()


def test_a_new_file_is_readable_by_its_owner_only(tmp_path):
    path = tmp_path / "state.db"
    store = SqliteStore(str(path))
    store.put("meta", ("epoch",), (1,))
    store.commit()
    for name in ("state.db", "state.db-wal"):
        mode = stat.S_IMODE(os.stat(tmp_path / name).st_mode)
        assert mode == 0o600, (name, oct(mode))
    store.close()


def test_the_file_is_marked_as_ours_and_versioned(tmp_path):
    path = str(tmp_path / "state.db")
    SqliteStore(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA page_size").fetchone()[0] == 1024
    without_rowid = {name for name, sql in db.execute("SELECT name, sql FROM sqlite_schema WHERE type = 'table'")
                     if sql.endswith("WITHOUT ROWID")}
    assert without_rowid == {"journal", "answers"}
    db.close()


def test_a_file_that_is_not_a_database_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("my notes\n")
    with pytest.raises(StoreError, match="not a ChatApp state file"):
        SqliteStore(str(path))
    assert path.read_text() == "my notes\n"


def test_another_programs_database_is_refused(tmp_path):
    path = str(tmp_path / "other.db")
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="another program"):
        SqliteStore(path)


def test_a_file_from_a_newer_version_is_refused(tmp_path):
    path = str(tmp_path / "state.db")
    SqliteStore(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer ChatApp"):
        SqliteStore(path)


def test_a_second_server_on_the_same_file_is_refused(tmp_path):
    path = str(tmp_path / "state.db")
    first = SqliteStore(path)
    with pytest.raises(StoreError, match="in use by another server"):
        SqliteStore(path)
    first.close()
    SqliteStore(path).close()  # free again once the first has closed it


def test_a_failed_write_raises_and_leaves_the_last_commit_whole(tmp_path):
    path = str(tmp_path / "state.db")
    store = SqliteStore(path)
    store.put("clients", ("Ann",), client("Ann"))
    store.commit()
    store.put("clients", ("Bob",), client("Bob"))
    store.put("meta", ("version",), (2**64,))  # does not fit SQLite's integers
    with pytest.raises(StoreError, match="cannot write the state file"):
        store.commit()
    store.close()
    again = SqliteStore(path)
    assert [key for key, _ in again.rows("clients")] == [("Ann",)]  # Bob's row went with the failed batch
    again.close()
