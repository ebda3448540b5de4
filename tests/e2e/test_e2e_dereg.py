"""Going offline: by command, Ctrl+C, Ctrl+D, signals and a closed terminal."""

from __future__ import annotations

import signal

import pytest

from tests.procs import in_group


def assert_offline_everywhere(server, others, name):
    assert server.expect_clients({name: "offline"})
    for proc in others:
        proc.expect_clients({name: "offline"})


def test_dereg_command(pair):
    server, ann, bob = pair
    ann.sendline("dereg Ann")
    ann.expect_line(">>> You are Offline. Bye.")
    assert ann.wait_exit() == 0
    assert "Traceback" not in ann.text
    assert_offline_everywhere(server, [bob], "Ann")
    bob.sendline("send Ann are you there")  # Bob's table knows Ann left, but tries as the original does
    bob.expect_lines(">>> No ACK from Ann, message not delivered", ">>> Report this issue to server",
                     ">>> (The client table listed Ann as offline.)", '>>> (the message was: "are you there")')


def test_dereg_other_name_is_invalid(pair):
    server, ann, bob = pair
    ann.sendline("dereg Bob")
    ann.expect_lines(">>> Invalid command", ">>> Usage: dereg <your-name>")
    ann.sendline("send Bob still here")
    ann.expect_line(">>> Message received by Bob.")
    bob.expect_line(">>> Ann: still here")
    assert ann.alive()


def test_dereg_in_group_mode_leaves_the_group(pair):
    server, ann, bob = pair
    in_group([ann, bob], server)
    ann.sendline("dereg Ann")
    ann.expect_line(">>> You are Offline. Bye.")
    assert ann.wait_exit() == 0
    server.expect_groups({"g": ["Bob"]})
    bob.sendline("list_members")
    bob.expect_lines(">>> (g) Members in the group g:", ">>> (g) Bob")


def test_ctrl_c(pair):
    server, ann, bob = pair
    ann.send("\x03")  # the terminal turns it into SIGINT
    ann.expect_line(">>> You are Offline. Bye.")
    ann.wait_exit()
    assert "Traceback" not in ann.text
    assert_offline_everywhere(server, [bob], "Ann")


def test_ctrl_d(pair):
    server, ann, bob = pair
    ann.child.sendeof()
    ann.expect_line(">>> You are Offline. Bye.")
    assert ann.wait_exit() == 0
    assert "Traceback" not in ann.text
    assert_offline_everywhere(server, [bob], "Ann")


def test_typed_commands_run_before_end_of_input(pair):
    """A script piped in: every line runs, in order, then end of input deregisters."""
    server, ann, bob = pair
    ann.sendline("send Bob one")
    ann.sendline("send Bob two")
    ann.child.sendeof()
    ann.expect_lines(">>> Message received by Bob.", ">>> Message received by Bob.", ">>> You are Offline. Bye.")
    assert ann.wait_exit() == 0
    bob.expect_lines(">>> Ann: one", ">>> Ann: two")
    assert_offline_everywhere(server, [bob], "Ann")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name)
def test_signal(pair, sig):
    server, ann, bob = pair
    ann.signal(sig)
    ann.expect_line(">>> You are Offline. Bye.")
    ann.wait_exit()
    assert "Traceback" not in ann.text
    assert_offline_everywhere(server, [bob], "Ann")


@pytest.mark.parametrize("interactive", [False, True], ids=["plain", "prompt_toolkit"])
def test_terminal_closed(cluster, tmp_path, interactive):
    """Closing the window: the terminal hangs up (SIGHUP), reading it and writing to it fail.
    The client goes offline and exits, without a traceback (stderr kept in a file)."""
    server = cluster.server()
    bob = cluster.client("Bob", server)
    errors = tmp_path / "stderr.txt"
    ann = cluster.client("Ann", server, interactive=interactive, stderr=str(errors))
    bob.expect_clients({"Ann": "online"})
    ann.hang_up()
    assert_offline_everywhere(server, [bob], "Ann")
    ann.wait_exit()
    assert errors.read_text() == "", errors.read_text()
