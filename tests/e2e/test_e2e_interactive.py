"""The client on a real terminal (prompt_toolkit), checked on an emulated screen."""

from __future__ import annotations

import re
import termios

import pytest


LIMIT = 4096  # bytes of UTF-8 in one message (SPEC: at least 4 KiB)


@pytest.fixture
def pair(cluster):
    """Ann on a terminal with line editing; Bob plain."""
    server = cluster.server()
    bob = cluster.client("Bob", server)
    ann = cluster.client("Ann", server, interactive=True)
    bob.expect_clients({"Ann": "online"})
    ann.wait_screen(lambda lines: lines[-1] == ">>>", "the prompt")
    return server, ann, bob


def test_incoming_message_does_not_garble_typing(pair):
    _, ann, bob = pair
    ann.send("send Bob half a")
    ann.wait_screen(lambda lines: lines[-1] == ">>> send Bob half a", "the partial line")
    bob.sendline("send Ann interrupting you")
    bob.expect_line(">>> Message received by Ann.")
    # The message gets a line of its own above the prompt, and the partial line is intact below.
    screen = ann.wait_screen(lambda lines: ">>> Bob: interrupting you" in lines, "the incoming message")
    screen = ann.wait_screen(lambda lines: lines[-1] == ">>> send Bob half a", "the partial line redrawn")
    assert not any("half a" in line and "interrupting" in line for line in screen), screen
    ann.send(" sentence\r")
    ann.expect_line(">>> Message received by Bob.")
    bob.expect_line(">>> Ann: half a sentence")


def test_lines_printed_above_the_prompt_never_ask_the_terminal_for_the_cursor(pair):
    """A cursor position request makes each printed line wait for the terminal's answer, and an
    answer that comes late is echoed among the lines ("^[[25;1R"): the client sends none."""
    _, ann, bob = pair
    for i in range(5):
        bob.sendline(f"send Ann line {i}")
        bob.expect_line(">>> Message received by Ann.")
    ann.wait_screen(lambda lines: ">>> Bob: line 4" in lines and lines[-1] == ">>>", "the lines and the prompt")
    assert "\x1b[6n" not in ann.raw


def test_a_ctrl_c_typed_while_a_line_is_printed_above_the_prompt_is_not_echoed_among_the_lines(pair):
    """To print above the prompt, prompt_toolkit puts the terminal in cooked mode for a moment; a
    Ctrl+C typed then is the terminal's, which sends SIGINT and echoes it.  The test opens that
    moment itself (the pty's modes, set from its master side, are the client's) and types Ctrl+C
    in it: the client leaves as for the key, and no "^C" lands in front of its last line."""
    server, ann, bob = pair
    fd = ann.child.child_fd
    modes = termios.tcgetattr(fd)
    modes[3] |= termios.ECHO | termios.ICANON | termios.IEXTEN | termios.ISIG  # what prompt_toolkit sets
    termios.tcsetattr(fd, termios.TCSANOW, modes)
    ann.send("\x03")
    assert ann.wait_exit() == 0
    lines = ann.screen.lines()
    assert lines[-1] == ">>> You are Offline. Bye." and not any("^C" in line for line in lines), lines[-6:]
    server.expect_clients({"Ann": "offline"})
    bob.expect_clients({"Ann": "offline"})


def test_prompt_shows_the_group(pair):
    _, ann, _ = pair
    ann.sendline("create_group g")
    ann.expect_line(">>> Group g created by Server.")
    ann.wait_screen(lambda lines: lines[-1] == ">>>", "the normal prompt")
    ann.sendline("join_group g")
    ann.expect_line(">>> Entered group g successfully")
    ann.wait_screen(lambda lines: lines[-1] == ">>> (g)", "the group prompt")
    ann.sendline("send_group hi")
    ann.expect_line(">>> (g) Message received by Server.")
    ann.sendline("leave_group")
    ann.expect_line(">>> Leave group chat g")
    ann.wait_screen(lambda lines: lines[-1] == ">>>", "the normal prompt again")


def test_longest_message_arrives_whole(pair):
    _, ann, bob = pair
    text = "x" * (LIMIT - 3) + "end"
    ann.paste(f"send Bob {text}")
    ann.send("\r")
    ann.expect_line(">>> Message received by Bob.")
    bob.expect_line(f">>> Ann: {text}")


@pytest.mark.parametrize("text", ["y" * (LIMIT + 1), "é" * (LIMIT // 2) + "!"], ids=["ascii", "two-byte"])
def test_too_long_message_refused(pair, text):
    _, ann, bob = pair
    assert len(text.encode("utf-8")) == LIMIT + 1
    mark = bob.mark()
    ann.paste(f"send Bob {text}")
    ann.send("\r")
    match = ann.expect(r"^>>> .*too long.*\n", flags=re.MULTILINE)
    assert str(LIMIT) in match.group(0), match.group(0)
    ann.sendline("send Bob short one")  # and nothing was sent before it
    ann.expect_line(">>> Message received by Bob.")
    bob.expect_line(">>> Ann: short one")
    assert bob.text[mark:].count(">>> Ann:") == 1


def test_ctrl_c_at_the_prompt(pair):
    server, ann, bob = pair
    ann.send("half typed")
    ann.wait_screen(lambda lines: lines[-1] == ">>> half typed", "the partial line")
    ann.send("\x03")
    ann.expect_line(">>> You are Offline. Bye.")
    ann.wait_exit()
    server.expect_clients({"Ann": "offline"})
    bob.expect_clients({"Ann": "offline"})


def test_ctrl_d_at_the_prompt(pair):
    server, ann, bob = pair
    ann.send("\x04")
    ann.expect_line(">>> You are Offline. Bye.")
    assert ann.wait_exit() == 0
    assert termios.tcgetattr(ann.child.child_fd)[3] & termios.ECHOCTL  # the terminal's echo as it was
    server.expect_clients({"Ann": "offline"})
    bob.expect_clients({"Ann": "offline"})


# -- a client that leaves leaves no empty prompt line behind -------------------------------------------

BARE_PROMPT = re.compile(r">>>( \(\w+\))?")  # the screen's lines are stripped: ">>> " reads ">>>"


def bare_prompts(proc) -> list[str]:
    return [line for line in proc.screen.lines() if BARE_PROMPT.fullmatch(line)]


@pytest.mark.parametrize("how", ["dereg", "ctrl-d", "ctrl-c"])
def test_leaving_from_group_mode_leaves_no_empty_prompt_line(pair, how):
    """prompt_toolkit used to leave the prompt drawn, empty, beside the last lines: `>>> (g)`
    above `>>> You are Offline. Bye.`."""
    _, ann, _ = pair
    ann.sendline("create_group g")
    ann.expect_line(">>> Group g created by Server.")
    ann.sendline("join_group g")
    ann.expect_line(">>> Entered group g successfully")
    ann.wait_screen(lambda lines: lines[-1] == ">>> (g)", "the group prompt")
    ann.send({"dereg": "dereg Ann\r", "ctrl-d": "\x04", "ctrl-c": "\x03"}[how])
    assert ann.wait_exit() == 0
    lines = ann.screen.lines()
    assert lines[-1] == ">>> You are Offline. Bye.", lines[-6:]
    if how == "dereg":
        assert lines[-2] == ">>> (g) dereg Ann", lines[-6:]
    assert bare_prompts(ann) == [], lines[-6:]


def test_server_gone_and_name_taken_leave_no_empty_prompt_line(pair, cluster):
    server, ann, _ = pair
    again = cluster.client("Ann", server, interactive=True, register=False)
    assert again.wait_exit() == 1
    assert again.screen.lines()[-1] == ">>> Someone has already used this name. Try another one."
    assert bare_prompts(again) == [], again.screen.lines()
    server.stop()
    ann.sendline("list_groups")
    assert ann.wait_exit() == 1
    assert ann.screen.lines()[-3:] == [">>> list_groups", ">>> Server not responding", ">>> Exiting"]
    assert bare_prompts(ann) == [], ann.screen.lines()[-6:]
