"""Group chat through the server, and private messages queued in group mode."""

from __future__ import annotations

import pytest

from tests.procs import cluster  # noqa: F401  (cluster is a fixture)


@pytest.fixture
def trio(cluster):
    server = cluster.server()
    ann, bob, cy = cluster.clients(["Ann", "Bob", "Cy"], server)
    return server, ann, bob, cy


def join(proc, group: str) -> None:
    proc.sendline(f"join_group {group}")
    proc.expect_line(f">>> Entered group {group} successfully")


def test_create_and_list_groups(trio):
    server, ann, bob, cy = trio
    ann.sendline("list_groups")
    ann.expect_line(">>> No available group right now")
    server.expect_line(">>> Client Ann requested listing groups, current groups:")

    ann.sendline("create_group g")
    ann.expect_line(">>> Group g created by Server.")
    server.expect_line(">>> Client Ann created group g successfully")
    server.expect_groups({"g": []})

    bob.sendline("create_group g")
    bob.expect_line(">>> Group g already exists.")
    server.expect_line(">>> Client Bob creating group g failed, group already exists")

    bob.sendline("create_group h")
    bob.expect_line(">>> Group h created by Server.")
    server.expect_groups({"g": [], "h": []})

    cy.sendline("list_groups")
    cy.expect_lines(">>> Available group chats:", ">>> g", ">>> h")
    server.expect_lines(">>> Client Cy requested listing groups, current groups:", ">>> g", ">>> h")


@pytest.mark.parametrize("name", ["a;b", "a b", ";"])
def test_group_name_refused(trio, name):
    server, ann, _, _ = trio
    ann.sendline(f"create_group {name}")
    ann.expect_line(">>> Group name should not contain ';'. Try again.")
    ann.sendline("list_groups")  # nothing was created
    ann.expect_line(">>> No available group right now")


def test_creating_a_group_does_not_join_it(trio):
    _, ann, _, _ = trio
    ann.sendline("create_group g")
    ann.expect_line(">>> Group g created by Server.")
    ann.sendline("send_group hello?")
    ann.expect_line(">>> Invalid command")


def test_join_group(trio):
    server, ann, _, _ = trio
    ann.sendline("join_group nosuch")
    ann.expect_line(">>> Group nosuch does not exist")
    server.expect_line(">>> Client Ann joining group nosuch failed, group does not exist")
    ann.sendline("create_group g")
    ann.expect_line(">>> Group g created by Server.")
    join(ann, "g")
    server.expect_line(">>> Client Ann joined group g")
    server.expect_groups({"g": ["Ann"]})
    ann.sendline("list_members")  # now in group mode
    ann.expect_lines(">>> (g) Members in the group g:", ">>> (g) Ann")


def test_group_conversation(trio):
    server, ann, bob, cy = trio
    ann.sendline("create_group g")
    ann.expect_line(">>> Group g created by Server.")
    for proc in (ann, bob, cy):
        join(proc, "g")
    server.expect_groups({"g": ["Ann", "Bob", "Cy"]})

    text = "hello all; it's 10:30 \"sharp\" — ça va?  ok"
    mark = ann.mark()
    ann.sendline(f"send_group {text}")
    ann.expect_line(">>> (g) Message received by Server.")
    server.expect_line(f">>> Client Ann sent group message: {text}")
    bob.expect_line(f">>> (g) Group_Message Ann: {text}")
    cy.expect_line(f">>> (g) Group_Message Ann: {text}")

    # Anything the server had sent back to Ann would arrive before this answer.
    ann.sendline("list_members")
    ann.expect_lines(">>> (g) Members in the group g:", ">>> (g) Ann", ">>> (g) Bob", ">>> (g) Cy")
    server.expect_lines(">>> Client Ann requested listing members of group g:", ">>> Ann", ">>> Bob", ">>> Cy")
    assert "Group_Message Ann" not in ann.text[mark:]

    cy.sendline("leave_group")
    cy.expect_line(">>> Leave group chat g")
    server.expect_line(">>> Client Cy left group")
    server.expect_groups({"g": ["Ann", "Bob"]})

    mark = cy.mark()
    bob.sendline("send_group second")
    bob.expect_line(">>> (g) Message received by Server.")
    ann.expect_line(">>> (g) Group_Message Bob: second")
    cy.sendline("list_groups")  # back in normal mode; and a round trip after Bob's message
    cy.expect_lines(">>> Available group chats:", ">>> g")
    assert "Group_Message" not in cy.text[mark:]


def test_invalid_commands_in_group_mode(trio):
    _, ann, bob, _ = trio
    ann.sendline("create_group g")
    ann.expect_line(">>> Group g created by Server.")
    join(ann, "g")
    for line in ["create_group h", "list_groups", "join_group g", "send Bob hi", "send_group", "list_members all",
                 "dereg Bob", "dereg", "bogus"]:
        mark = ann.mark()
        ann.sendline(line)
        ann.expect_line(">>> (g) Invalid command")
        assert ann.text[mark:] == ">>> (g) Invalid command\n", f"after {line!r}"
    ann.sendline("leave_group")
    ann.expect_line(">>> Leave group chat g")
    ann.sendline("send_group gone")
    ann.expect_line(">>> Invalid command")


def test_private_messages_queued_until_leave_group(trio):
    _, ann, bob, _ = trio
    bob.sendline("create_group g")
    bob.expect_line(">>> Group g created by Server.")
    join(bob, "g")
    mark = bob.mark()
    texts = ["first", "second; with: punctuation", "third  one"]
    for text in texts:
        ann.sendline(f"send Bob {text}")
        ann.expect_line(">>> Message received by Bob.")  # acked even though Bob only queues it
    bob.sendline("list_members")  # a round trip: had Bob printed them, they would be above its answer
    bob.expect_lines(">>> (g) Members in the group g:", ">>> (g) Bob")
    assert ">>> Ann:" not in bob.text[mark:]

    bob.sendline("leave_group")
    bob.expect_lines(">>> Leave group chat g", *(f">>> Ann: {text}" for text in texts))
    ann.sendline("send Bob now at once")  # out of group mode: shown at once
    bob.expect_line(">>> Ann: now at once")
    assert bob.text.count(">>> Ann: first") == 1


def test_private_messages_queued_until_dereg(trio):
    server, ann, bob, _ = trio
    bob.sendline("create_group g")
    bob.expect_line(">>> Group g created by Server.")
    join(bob, "g")
    server.expect_groups({"g": ["Bob"]})
    ann.sendline("send Bob before you go")
    ann.expect_line(">>> Message received by Bob.")
    ann.sendline("send Bob one more")
    ann.expect_line(">>> Message received by Bob.")
    bob.sendline("dereg Bob")
    bob.expect_lines(">>> You are Offline. Bye.", ">>> Ann: before you go", ">>> Ann: one more")
    assert bob.wait_exit() == 0
    server.expect_groups({"g": []})  # deregistering leaves the group
    server.expect_clients({"Bob": "offline"})
