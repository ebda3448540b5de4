"""Group chat through the server, and private messages queued in group mode."""

from __future__ import annotations

import random
import socket

import pytest

from node.reliable import Endpoint, RetryPolicy
from proto import MSG_TYPES, STATUS_CODES
from proto.fastpath import parse
from tests.procs import FAST, HOST, WAIT
from tests.scripted import ScriptedServer


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


@pytest.mark.parametrize("name, why", [
    ("a;b", None),
    ("a b", "(It contains a space or other whitespace: a group name is one word.)"),
    (";", None),
])
def test_group_name_refused(trio, name, why):
    server, ann, _, _ = trio
    ann.sendline(f"create_group {name}")
    ann.expect_lines(">>> Group name should not contain ';'. Try again.", *([f">>> {why}"] if why else []))
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
    usages = {"send_group": "Usage: send_group <message>", "list_members all": "Usage: list_members",
              "dereg Bob": "Usage: dereg <your-name>", "dereg": "Usage: dereg <your-name>"}
    for line in ["create_group h", "list_groups", "join_group g", "send Bob hi"]:  # normal-mode commands
        usages[line] = f"({line.split()[0]} is for normal mode: leave_group first)"
    for line in ["create_group h", "list_groups", "join_group g", "send Bob hi", "send_group", "list_members all",
                 "dereg Bob", "dereg", "bogus"]:
        mark = ann.mark()
        ann.sendline(line)
        expected = ">>> (g) Invalid command\n" + (f">>> (g) {usages[line]}\n" if line in usages else "")
        ann.expect_lines(*expected.splitlines())
        assert ann.text[mark:] == expected, f"after {line!r}"
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


# -- acknowledgements in batches, on the wire -------------------------------------------------------


def test_a_burst_of_group_messages_is_acknowledged_in_a_few_datagrams(cluster):
    fake = ScriptedServer()
    try:
        bob = cluster.client("Bob", fake.port, *FAST, register=False)
        addr = fake.register("Bob", token=77)
        ok = STATUS_CODES["ok"]
        bob.expect_line(">>> Welcome, You are registered.")
        bob.sendline("join_group g")
        join, _ = fake.receive("join_group")
        fake.send(addr, "ack", ack_id=join.msg_id, status=ok, seq=1)  # Bob's first group message is number 1
        bob.expect_line(">>> Entered group g successfully")

        burst = [fake.send(addr, "grp_msg", group="g", seq=i + 1, origin="Ann", text=f"m{i}") for i in range(6)]
        ids = sorted(out.msg_id for out in burst)
        answered: list[list[int]] = []  # the ids each ack datagram answers
        while sorted(i for acked in answered for i in acked) != ids:
            ack, _ = fake.receive("ack")
            assert ack.token == 77 and ack.payload.status == ok
            answered.append([ack.payload.ack_id, *(more.id for more in ack.payload.also)])
        assert answered[0] == [burst[0].msg_id], "after a quiet spell the ack goes at once"
        assert len(answered) < len(burst), f"the others wait to go together: {answered}"
        bob.expect_lines(*(f">>> (g) Group_Message Ann: m{i}" for i in range(6)))

        fake.sock.sendto(burst[3].data, addr)  # as if that ack had been lost: a retransmission
        again, _ = fake.receive("ack")
        assert (again.payload.ack_id, again.payload.also) == (burst[3].msg_id, [])
        bob.sendline("list_members")  # whatever Bob prints next comes after any second showing
        members, _ = fake.receive("list_members")
        fake.send(addr, "ack", ack_id=members.msg_id, status=ok, items=[{"value": "Bob"}])
        bob.expect_line(">>> (g) Bob")
        assert bob.text.count("Group_Message Ann: m3") == 1
    finally:
        fake.close()


def test_the_server_takes_one_ack_for_several_group_messages(cluster):
    server = cluster.server(*FAST)  # a member whose acks it missed would be retried within 0.1 s
    ann = cluster.client("Ann", server, *FAST)
    ann.sendline("create_group g")
    ann.expect_line(">>> Group g created by Server.")
    join(ann, "g")
    member = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    member.bind((HOST, 0))
    member.settimeout(WAIT)
    try:
        net = Endpoint("Bob", member.getsockname()[1], RetryPolicy(), random.Random(4))
        to_server = (HOST, server.port)

        def receive(type_name: str):
            while True:
                msg = parse(member.recv(65536))
                if MSG_TYPES[msg.type] == "table":  # acknowledged, or the server would keep sending it
                    member.sendto(net.build("ack", ack_id=msg.msg_id, status=STATUS_CODES["ok"]).data, to_server)
                elif MSG_TYPES[msg.type] == type_name:
                    return msg

        member.sendto(net.build("reg", secret=False).data, to_server)
        net.token = receive("reg_ack").payload.token
        member.sendto(net.build("confirm").data, to_server)
        assert receive("ack").payload.status == STATUS_CODES["ok"]
        member.sendto(net.build("join_group", group="g").data, to_server)
        assert receive("ack").payload.status == STATUS_CODES["ok"]
        server.expect_groups({"g": ["Ann", "Bob"]})
        for text in ("one", "two", "three"):
            ann.sendline(f"send_group {text}")
            ann.expect_line(">>> (g) Message received by Server.")
        first, *rest = [receive("grp_msg") for _ in range(3)]
        batch = net.build("ack", ack_id=first.msg_id, status=STATUS_CODES["ok"], also=[{"id": m.msg_id} for m in rest])
        member.sendto(batch.data, to_server)

        member.settimeout(10 * 0.1)  # ten retry timeouts: a message the server still waits for comes again
        with pytest.raises(socket.timeout):
            receive("grp_msg")
        ann.sendline("list_members")
        ann.expect_lines(">>> (g) Members in the group g:", ">>> (g) Ann", ">>> (g) Bob")
        assert "not responsive" not in server.text
    finally:
        member.close()
