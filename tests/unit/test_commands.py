"""The client's command grammar (node/commands.py): a typed line becomes a command, or an
error naming the command that was meant and how it is written; and what help says."""

from __future__ import annotations

import pytest

from node.commands import (
    GRAMMAR,
    CreateGroup,
    Deregister,
    Help,
    JoinGroup,
    LeaveGroup,
    ListGroups,
    ListClients,
    ListMembers,
    ParseError,
    SendGroup,
    SendPrivate,
    allowed,
    parse,
)
from node.render import HELP


@pytest.mark.parametrize(
    "line, command",
    [
        ("send Bob hi", SendPrivate("Bob", "hi")),
        ("  send   Bob   two  spaces   kept  ", SendPrivate("Bob", "two  spaces   kept")),
        ("send Bob a;b: 'c' é", SendPrivate("Bob", "a;b: 'c' é")),
        ("create_group g", CreateGroup("g")),
        ("create_group a b", CreateGroup("a b")),  # a bad group name is refused when the command runs
        ("list_groups", ListGroups()),
        ("join_group g", JoinGroup("g")),
        ("send_group hello all", SendGroup("hello all")),
        ("list_members", ListMembers()),
        ("leave_group", LeaveGroup()),
        ("list_clients", ListClients()),
        ("dereg Ann", Deregister("Ann")),
        ("help", Help()),
        ("help me", Help()),
    ],
)
def test_a_line_that_fits_a_form_is_its_command(line, command):
    assert parse(line) == command


@pytest.mark.parametrize(
    "line, meant",
    [
        ("send", "send"),
        ("send Bob", "send"),
        ("create_group", "create_group"),
        ("list_groups extra", "list_groups"),
        ("join_group", "join_group"),
        ("send_group", "send_group"),
        ("list_members all", "list_members"),
        ("leave_group now", "leave_group"),
        ("list_clients all", "list_clients"),
        ("dereg", "dereg"),
    ],
)
def test_a_line_that_does_not_fit_names_the_command_and_its_form(line, meant):
    assert parse(line) == ParseError(meant, GRAMMAR[meant].usage)


@pytest.mark.parametrize("line", ["hello", "Send Bob hi", "send\tBob hi", "sendBob hi"])
def test_an_unknown_word_is_an_error_that_names_no_command(line):
    assert parse(line) == ParseError(None, None)


@pytest.mark.parametrize("line", ["", "   ", "\t"])
def test_a_blank_line_is_nothing(line):
    assert parse(line) is None


def test_modes():
    normal = {"send", "create_group", "list_groups", "join_group"}
    group = {"send_group", "list_members", "leave_group"}
    for word in GRAMMAR:
        assert allowed(word, in_group=False) == (word not in group), word
        assert allowed(word, in_group=True) == (word not in normal), word


def test_help_lists_every_command_by_its_form():
    assert HELP[0] == "Commands:"
    assert [line.split("  ")[1].strip() for line in HELP[1:]] == [form.usage for form in GRAMMAR.values()]
    assert HELP[1] == "  send <name> <message>     private message to another client"


def test_a_command_knows_the_word_that_names_it_from_its_usage():
    assert parse("send Bob hi there").word == "send"
    assert parse("dereg Ann").word == "dereg"
    assert all(form.usage.split()[0] == word for word, form in GRAMMAR.items())
    assert [parse(word).word for word in ("list_groups", "list_members", "leave_group", "help")] == [
        "list_groups", "list_members", "leave_group", "help"]
