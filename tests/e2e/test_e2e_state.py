"""Durable state with real processes: a server started with ``--state FILE``, killed with SIGKILL
and started again on the same file and port, resumes what it had acknowledged."""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import stat
import subprocess

from node.runtime import STATE_LOST
from node.store import APPLICATION_ID, SCHEMA_VERSION
from tests.procs import HOST, PYTHON, ROOT, ProxyThread, free_port, in_group, join_via, registered

SLOW = ("--ack-timeout", "0.5", "--retries", "10")  # a retry window (5 s) longer than a restart takes
SLOWER = ("--ack-timeout", "1", "--retries", "10")  # 10 s: a request's tries span a restart on a busy machine
NO_IDLE = ("--idle-probe", "0")
FORGOTTEN = ">>> The server no longer knows this client (it may have restarted): registering again"


def restarted(cluster, server, path: str, *flags: str):
    """Kill ``server`` with SIGKILL and start a new one on its port and state file."""
    server.signal(signal.SIGKILL)
    assert server.wait_exit() == -signal.SIGKILL
    again = cluster.spawn(["-s", str(server.port), "--bind", HOST, "--state", path, *flags], f"again:{server.port}")
    again.expect_line(">>> Server is online")
    again.port = server.port
    return again


def test_clients_go_on_without_registering_again_after_a_sigkill_and_restart(cluster, tmp_path):
    path = str(tmp_path / "chat.db")
    server = cluster.server("--state", path, *SLOW, restartable=True)
    ann, bob = cluster.clients(["Ann", "Bob"], server, *SLOW)
    in_group([ann, bob], server, "room")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, "it holds tokens: its owner's only"
    again = restarted(cluster, server, path, *SLOW)
    again.expect_line(">>> Resumed from the state file: 2 clients (2 listed online, being probed), "
                      "1 groups, 0 group messages to deliver")
    again.expect_clients({"Ann": "online", "Bob": "online"})
    ann.sendline("send_group still here")
    ann.expect_line(">>> (room) Message received by Server.")
    bob.expect_line(">>> (room) Group_Message Ann: still here")
    bob.sendline("list_members")
    bob.expect(r"Ann")
    for client in (ann, bob):
        assert FORGOTTEN not in client.text and client.text.count("Welcome") == 1, "no second registration"
    assert "did not answer" not in again.text, "both answered the restart's probe"


def test_a_journaled_group_message_is_delivered_once_after_the_restart(cluster, tmp_path):
    """Cat's copy is lost on the way (the proxy drops it) when the server is killed: the restarted
    server sends it again from its journal, and Cat shows it once."""
    path = str(tmp_path / "chat.db")
    server = cluster.server("--state", path, *SLOW, *NO_IDLE, restartable=True)
    with ProxyThread(server=(HOST, server.port)) as proxy:
        ann, bob = cluster.clients(["Ann", "Bob"], server, *SLOW)
        cat = join_via(cluster, "Cat", proxy.address[1], *SLOW)
        assert registered(cat), "its port was taken meanwhile: run again"
        in_group([ann, bob, cat], server, "room")
        proxy.add_rule("drop type=grp_msg")
        ann.sendline("send_group journaled hello")
        ann.expect_line(">>> (room) Message received by Server.")  # acknowledged to its sender
        again = restarted(cluster, server, path, *SLOW, *NO_IDLE)  # at once: before Cat's retries run out
        proxy.clear_rules()
        bob.expect_line(">>> (room) Group_Message Ann: journaled hello")
        cat.expect_line(">>> (room) Group_Message Ann: journaled hello")
        again.expect(r">>> Resumed from the state file: 3 clients .*, 1 groups, 1 group messages to deliver")
        ann.sendline("send_group second")
        for member in (bob, cat):
            member.expect_line(">>> (room) Group_Message Ann: second")
        for member in (bob, cat):
            assert member.text.count("Group_Message Ann: journaled hello") == 1, member.text
        assert "not responsive" not in again.text, "nobody was removed from the group"
        again.wait_until(lambda: journaled(path) == 0, "every member's ack kept: the journal is empty")


def journaled(path: str) -> int:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)  # the server's last commit, beside it
    try:
        return db.execute("SELECT count(*) FROM journal").fetchone()[0]
    finally:
        db.close()


def test_a_request_retransmitted_across_the_restart_is_answered_again(cluster, tmp_path):
    """Ann's create_group is done and kept, its answer lost; the server is killed.  Ann's
    retransmission reaches the restarted server, which answers it again (not: group exists)."""
    path = str(tmp_path / "chat.db")
    server = cluster.server("--state", path, *SLOWER, *NO_IDLE, restartable=True)
    with ProxyThread(server=(HOST, server.port)) as proxy:
        ann = join_via(cluster, "Ann", proxy.address[1], *SLOWER)
        assert registered(ann), "its port was taken meanwhile: run again"
        proxy.add_rule("drop type=ack from=server")
        ann.sendline("create_group room")
        server.expect_line(">>> Client Ann created group room successfully")  # printed once committed
        again = restarted(cluster, server, path, *SLOWER, *NO_IDLE)
        proxy.clear_rules()
        ann.expect_line(">>> Group room created by Server.")
        ann.sendline("list_groups")
        ann.expect(r"room")
    assert "already exists" not in again.text + ann.text, "done once, answered twice"
    assert FORGOTTEN not in ann.text


def test_a_state_file_from_a_newer_version_or_not_ours_is_refused_with_one_line(tmp_path):
    newer = tmp_path / "newer.db"
    db = sqlite3.connect(newer)
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    db.execute("CREATE TABLE meta (key, value)")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    for path, words in ((newer, "was written by a newer ChatApp"), (notes, "is not a ChatApp state file")):
        command = [PYTHON, "ChatApp.py", "-s", str(free_port()), "--bind", HOST, "--state", str(path)]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 1 and words in done.stderr and len(done.stderr.splitlines()) == 1, done
    assert notes.read_text() == "my notes\n", "left alone"


def test_a_second_server_on_the_same_state_file_is_refused(cluster, tmp_path):
    path = str(tmp_path / "chat.db")
    cluster.server("--state", path)
    second = cluster.spawn(["-s", str(free_port()), "--bind", HOST, "--state", path], "second")
    second.expect(r"the state file .* is in use by another server")
    assert second.wait_exit() == 1


def test_a_failed_write_stops_the_server_with_one_line_before_it_answers(cluster, tmp_path):
    """The state file cannot grow any more (a file size limit set on the running server: to
    SQLite, a full disk): the server says why and exits with STATE_LOST, and the request whose
    change it could not keep is not answered."""
    path = str(tmp_path / "chat.db")
    server = cluster.server("--state", path, *NO_IDLE)
    ann = cluster.client("Ann", server, *SLOW)
    resource.prlimit(server.pid, resource.RLIMIT_FSIZE, (1, 1))  # no write past the first byte of a file
    ann.sendline("create_group room")
    server.expect(r"The server stops: cannot write the state file .*; nothing more is answered")
    assert server.wait_exit() == STATE_LOST
    ann.expect_line(">>> Server not responding", timeout=15)
    assert "Group room created" not in ann.text, "not acknowledged: it was never kept"
