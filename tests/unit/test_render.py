"""The client's wording (node/render.py): every line a client prints, made from its events,
with the group-mode prefix where the spec has it, and network text escaped, never obeyed."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from node import events as ev
from node.limits import drop_report
from node.peers import Peer
from node.render import HELP, NOT_IN_GROUP, Table, prompt, render
from proto import VERSION

# event -> the exact lines a user reads
WORDING = [
    (ev.Registering("Ann", ("127.0.0.1", 6666)), [">>> Registering as Ann with 127.0.0.1:6666 ..."]),
    (ev.Registered(), [">>> Welcome, You are registered."]),
    (ev.RegistrationFailed("name_taken"), [">>> Someone has already used this name. Try another one."]),
    (ev.RegistrationFailed("addr_taken"), [">>> Someone has already used this (IP, port) combination. Try another one."]),
    (ev.RegistrationFailed("server_full"), [">>> The server is full. Try again later."]),
    (ev.RegistrationFailed("quota"), [">>> Too many names registered from your address. Try again later."]),
    (ev.RegistrationFailed("not_registered"), [">>> The server did not keep the registration (it expired). Try again."]),
    (ev.RegistrationFailed(None), [">>> Invalid username"]),
    (ev.PrivateMessage("Bob", "hi; there"), [">>> Bob: hi; there"]),
    (ev.Delivered("Bob"), [">>> Message received by Bob."]),
    (ev.NotDelivered("Bob", "queue_full"), [">>> Bob's queue of messages is full (Bob is in a group chat), message not delivered"]),
    (ev.NotDelivered("Bob", "bad_request"), [">>> Bob did not accept the message, message not delivered"]),
    (ev.NoAck("Bob", False, "lunch at 12:30?"), [">>> No ACK from Bob, message not delivered",
                                                ">>> Report this issue to server",
                                                '>>> (the message was: "lunch at 12:30?")']),
    (ev.NoAck("Bob", True, "x" * 41), [">>> No ACK from Bob, message not delivered", ">>> Report this issue to server",
                                      ">>> (The client table listed Bob as offline.)",
                                      f'>>> (the message was: "{"x" * 40}\u2026")']),
    (ev.UnknownUser("Zed"), [">>> User Zed does not exist"]),
    (ev.MessageTooLong(5000, 4096), [">>> Message too long (5000 bytes of UTF-8; the limit is 4096), not sent"]),
    (ev.BadGroupName("a;b", "semicolon"), [">>> Group name should not contain ';'. Try again."]),
    (ev.BadGroupName("my group", "whitespace"), [">>> Group name should not contain ';'. Try again.",
                                                 ">>> (It contains a space or other whitespace: a group name is one word.)"]),
    (ev.BadGroupName("x" * 40, "too_long"), [">>> Group name should be at most 32 bytes of UTF-8 (this one is 40). Try again."]),
    (ev.BadGroupName("a\x1bb", "unprintable"), [">>> Group name should have no control or formatting characters. Try again."]),
    (ev.CreatedGroup("g"), [">>> Group g created by Server."]),
    (ev.GroupExists("g"), [">>> Group g already exists."]),
    (ev.CreateGroupRefused("g", "too_many_groups"), [">>> Group g not created: the server has too many groups."]),
    (ev.CreateGroupRefused("g", "quota"), [">>> Group g not created: you have created too many groups."]),
    (ev.ListedGroups(()), [">>> No available group right now"]),
    (ev.ListedGroups(("g1", "g2")), [">>> Available group chats:", ">>> g1", ">>> g2"]),
    (ev.JoinedGroup("g"), [">>> Entered group g successfully"]),
    (ev.NoSuchGroup("g"), [">>> Group g does not exist"]),
    (ev.GroupMessageSent("g"), [">>> (g) Message received by Server."]),
    (ev.GroupMessage("g", "Ann", "hi all"), [">>> (g) Group_Message Ann: hi all"]),
    (ev.ListedMembers("g", ("Ann", "Bob")), [">>> (g) Members in the group g:", ">>> (g) Ann", ">>> (g) Bob"]),
    (ev.LeftGroup("g"), [">>> Leave group chat g"]),
    (ev.RemovedFromGroup("g"), [f">>> {NOT_IN_GROUP}"]),
    (ev.QueueOverflowed(1), [">>> 1 more private message was not delivered: your queue was full (the senders were told)"]),
    (ev.QueueOverflowed(3), [">>> 3 more private messages were not delivered: your queue was full (the senders were told)"]),
    (ev.InvalidCommand(None), [">>> Invalid command"]),
    (ev.InvalidCommand("g", "send"), [">>> (g) Invalid command", ">>> (g) (send is for normal mode: leave_group first)"]),
    (ev.InvalidCommand(None, "list_members"), [">>> Invalid command",
                                               ">>> (list_members is for group mode: join_group <group> first)"]),
    (ev.InvalidCommand(None, "send", "send <name> <message>"), [">>> Invalid command", ">>> Usage: send <name> <message>"]),
    (ev.InvalidCommand("g", "send_group", "send_group <message>"), [">>> (g) Invalid command", ">>> (g) Usage: send_group <message>"]),
    (ev.RequestRefused("bad_request"), [">>> Invalid command"]),
    (ev.HelpShown(), [f">>> {line}" for line in HELP]),
    (ev.Deregistered(), [">>> You are Offline. Bye."]),
    (ev.ServerGone(None), [">>> Server not responding", ">>> Exiting"]),
    (ev.ServerGone("g"), [">>> (g) Server not responding", ">>> (g) Exiting"]),
    (ev.ServerGone("g", "see you at 5"), [">>> (g) Server not responding", ">>> (g) Exiting",
                                          '>>> (g) (the group message was: "see you at 5")']),
    (ev.ServerForgotUs(), [">>> The server no longer knows this client (it may have restarted): registering again"]),
    (ev.MarkedOffline(), [">>> The server marked this client offline (it did not answer the server's probe)", ">>> Exiting"]),
]


@pytest.mark.parametrize("event, lines", WORDING, ids=lambda x: type(x).__name__ if not isinstance(x, list) else "")
def test_each_client_event_is_worded_as_the_spec_says(event, lines):
    assert render(event) == lines


def client_events() -> set[type]:
    """The event classes of events.py's client section."""
    source = open(ev.__file__, encoding="utf-8").read()
    section = source[source.index("# -- client events"):source.index("# -- server events")]
    return {getattr(ev, name) for name in re.findall(r"^class (\w+)", section, re.M)}


def test_every_client_event_is_worded_here():
    assert len(client_events()) > 20
    assert client_events() == {type(event) for event, _ in WORDING} | {ev.PeersChanged, ev.ListedClients}


def test_the_prompt_shows_the_group():
    assert prompt(None) == ">>> " and prompt("g") == ">>> (g) "


def test_the_client_table_is_read_when_it_is_drawn():
    peers = {"Ann": Peer(("10.0.0.1", 7001), True, 1)}
    table = render(ev.PeersChanged(peers))
    assert isinstance(table, Table) and table.title == ">>> Client table updated."
    assert table.columns == ("name", "ip", "port", "status")
    peers["Bob"] = Peer(("10.0.0.2", 7002), False, 2)
    assert list(table.rows) == [("Ann", "10.0.0.1", "7001", "online"), ("Bob", "10.0.0.2", "7002", "offline")]


def test_the_asked_for_client_table_is_the_same_table_with_its_own_title():
    peers = {"Ann": Peer(("10.0.0.1", 7001), True, 1)}
    changed, asked, in_group = render(ev.PeersChanged(peers)), render(ev.ListedClients(peers, None)), render(
        ev.ListedClients(peers, "g"))
    assert (asked.title, in_group.title) == (">>> Client table, as asked for:", ">>> (g) Client table, as asked for:")
    assert asked.columns == in_group.columns == changed.columns
    assert list(asked.rows) == list(in_group.rows) == list(changed.rows) == [("Ann", "10.0.0.1", "7001", "online")]


def test_client_tables_list_rows_by_name_case_aside_on_either_node():
    peers = {name: Peer(("10.0.0.1", 7000 + i), True, i) for i, name in enumerate(["cid", "Bob", "ann", "Ann"])}
    assert [row[0] for row in render(ev.PeersChanged(peers)).rows] == ["Ann", "ann", "Bob", "cid"]
    clients = ev.ClientTableChanged([(name, "10.0.0.1", 7000, True) for name in ["cid", "Bob", "ann", "Ann"]])
    assert [row[0] for row in render(clients).rows] == ["Ann", "ann", "Bob", "cid"]


@pytest.mark.parametrize("hostile", ["\x1b[2J\x1b]0;owned\x07", "\u202eevil", "a\nb", "\x9b31m", "[b]bold[/b] :smile:"])
def test_network_text_is_shown_escaped_never_obeyed(hostile):
    for event in (ev.PrivateMessage(hostile, hostile), ev.GroupMessage("g", hostile, hostile),
                  ev.ListedMembers("g", (hostile,)), ev.ListedGroups((hostile,)), ev.NoAck(hostile, True, hostile)):
        for line in render(event):
            assert line.isprintable(), (event, line)
            assert "\n" not in line and "\x1b" not in line
    assert render(ev.PrivateMessage("Bob", "\x1b[2J"))[0] == ">>> Bob: \\x1b[2J"
    assert render(ev.PrivateMessage("Bob", "[b]x[/b]"))[0] == ">>> Bob: [b]x[/b]", "plain text: no markup is read"


def test_a_quoted_message_is_cut_before_it_is_escaped():
    """Forty characters, then the ellipsis: an escape (``\\x1b``) is never cut in two."""
    assert render(ev.NoAck("Bob", False, "a" * 39 + "\x1b[2J"))[-1] == f'>>> (the message was: "{"a" * 39}\\x1b\u2026")'
    assert render(ev.NoAck("Bob", False, "é" * 40))[-1] == f'>>> (the message was: "{"é" * 40}")', "exactly 40: whole"


# -- what either node says (node/versions.py, node/limits.py) --------------------------------


def test_a_peer_of_another_version_is_named_with_both_versions():
    assert render(ev.OtherVersionHeard(("10.5.0.1", 7771), VERSION + 1)) == [
        f">>> 10.5.0.1:7771 speaks chat protocol version {VERSION + 1}; this node speaks version {VERSION}"]
    assert render(ev.OtherVersionsOnlyCounted()) == [
        ">>> More peers speak other chat protocol versions; they are only counted"]


def test_the_closing_drop_count_is_one_line_by_kind_without_late_acks():
    report = drop_report(Counter({"replayed": 2, "stale ack": 9, "malformed": 3, "forged": 0}))
    assert report == ev.DropsCounted((("malformed", 3), ("replayed", 2)))
    assert render(report) == [">>> Dropped datagrams: malformed 3, replayed 2"]
    assert drop_report(Counter({"stale ack": 4})) is None  # nothing worth a line
