"""Private messages between clients, and commands that are refused."""

from __future__ import annotations

import pytest


def test_private_message_both_ways(pair):
    _, ann, bob = pair
    ann.sendline("send Bob hello Bob")
    ann.expect_line(">>> Message received by Bob.")
    bob.expect_line(">>> Ann: hello Bob")
    bob.sendline("send Ann hi Ann")
    bob.expect_line(">>> Message received by Ann.")
    ann.expect_line(">>> Bob: hi Ann")


@pytest.mark.parametrize(
    "text",
    [
        "semi;colon;and:colon: send Bob x",
        "\"double\" and 'single' quotes, back\\slash",
        "héllo wörld — ✓ 日本語 ☃",
        "repeated   spaces  inside    the  text",
    ],
)
def test_text_arrives_exactly(pair, text):
    _, ann, bob = pair
    ann.sendline(f"send Bob {text}")
    ann.expect_line(">>> Message received by Bob.")
    bob.expect_line(f">>> Ann: {text}")


def test_messages_arrive_in_order_each_once(pair):
    _, ann, bob = pair
    texts = [f"message {i}" for i in range(5)]
    mark = bob.mark()
    for text in texts:
        ann.sendline(f"send Bob {text}")
    for _ in texts:
        ann.expect_line(">>> Message received by Bob.")
    bob.expect_lines(*(f">>> Ann: {text}" for text in texts))
    # A round trip Bob -> Ann after the last one: nothing else reached Bob in between.
    bob.sendline("send Ann done")
    bob.expect_line(">>> Message received by Ann.")
    received = [line for line in bob.lines_since(mark) if line.startswith(">>> Ann:")]
    assert received == [f">>> Ann: {text}" for text in texts]


def test_unknown_user(pair):
    _, ann, bob = pair
    mark = bob.mark()
    ann.sendline("send Zed are you there")
    ann.expect_line(">>> User Zed does not exist")
    ann.sendline("send Bob still working")  # and the client goes on
    ann.expect_line(">>> Message received by Bob.")
    bob.expect_line(">>> Ann: still working")
    assert "are you there" not in bob.text[mark:]


def test_send_refused_in_group_mode(pair):
    _, ann, bob = pair
    ann.sendline("create_group g")
    ann.expect_line(">>> Group g created by Server.")
    ann.sendline("join_group g")
    ann.expect_line(">>> Entered group g successfully")
    mark = bob.mark()
    ann.sendline("send Bob psst")
    ann.expect_lines(">>> (g) Invalid command", ">>> (g) (send is for normal mode: leave_group first)")
    # Bob answers a message of his own, so anything Ann had sent would have come first.
    bob.sendline("send Ann ping")
    bob.expect_line(">>> Message received by Ann.")
    assert "psst" not in bob.text[mark:]


GROUP_MODE = "({} is for group mode: join_group <group> first)"
INVALID_IN_NORMAL_MODE = {  # typed line -> how the command meant is written, shown after the error (None: nothing)
    "hello": None,
    "send": "send <name> <message>",
    "send Bob": "send <name> <message>",
    "send_group hi all": GROUP_MODE.format("send_group"),  # a group-mode command: how to get there
    "list_members": GROUP_MODE.format("list_members"),
    "leave_group": GROUP_MODE.format("leave_group"),
    "join_group": "join_group <group>",
    "create_group": "create_group <group>",
    "dereg": "dereg <your-name>",
    "dereg Bob": "dereg <your-name>",
    "Send Bob hi": None,
}


def test_invalid_commands_in_normal_mode(pair):
    _, ann, bob = pair
    for line, usage in INVALID_IN_NORMAL_MODE.items():  # one cluster for all: starting processes is the slow part
        mark = ann.mark()
        ann.sendline(line)
        hint = usage if usage is None or usage.startswith("(") else f"Usage: {usage}"
        expected = ">>> Invalid command\n" + (f">>> {hint}\n" if hint else "")
        ann.expect_lines(*expected.splitlines())
        assert ann.text[mark:] == expected, f"after {line!r}"
    ann.sendline("send Bob after")  # still registered and working
    ann.expect_line(">>> Message received by Bob.")
    bob.expect_line(">>> Ann: after")


def test_blank_line_is_ignored(pair):
    _, ann, bob = pair
    mark = ann.mark()
    ann.sendline("")
    ann.sendline("   ")
    ann.sendline("send Bob after blanks")
    ann.expect_line(">>> Message received by Bob.")
    assert ann.text[mark:] == ">>> Message received by Bob.\n"


def test_list_clients_shows_the_table_when_asked_in_either_mode(pair):
    _, ann, bob = pair
    expected = {"Ann": ("127.0.0.1", ann.port, "online"), "Bob": ("127.0.0.1", bob.port, "online")}

    def listed(title: str) -> dict:
        ann.sendline("list_clients")
        rows = ann.expect_table(title, lambda rows: len(rows) == 2, "both clients")
        return {row[0]: (row[1], int(row[2]), row[3]) for row in rows}

    assert listed(">>> Client table, as asked for:") == expected
    ann.sendline("create_group g")
    ann.sendline("join_group g")
    ann.expect_line(">>> Entered group g successfully")
    assert listed(">>> (g) Client table, as asked for:") == expected
