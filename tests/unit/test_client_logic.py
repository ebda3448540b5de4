"""The client's logic: what a user types, what the user sees, and how it copes
with a lossy network and a dead server, on the simulated network's fake clock."""

from __future__ import annotations

import random

import pytest

from node.client import FORGOTTEN_REGISTRATIONS, ClientLogic
from node.effects import Exit, Send
from node.events import PeersChanged, InvalidCommand, PrivateMessage
from node.ordering import next_seq
from node.render import NOT_IN_GROUP, Table as Drawn, prompt, render
from node.limits import Limits
from node.reliable import RetryPolicy
from proto import MAX_TEXT_BYTES, STATUSES, VERSION, Ack, ChatHeader, Entry, GrpMsg, PriMsg, RegAck, Table, decode

from proto.fastpath import encode, parse
from proto.messages import CLIENT, SERVER as SERVER_ROLE, requests
from tests.simnet import SERVER, SimNet, dropping, kind

WELCOME = ">>> Welcome, You are registered."
FORGOTTEN = ">>> The server no longer knows this client (it may have restarted): registering again"
REGISTERING = f">>> Registering as {{}} with {SERVER[0]}:{SERVER[1]} ..."  # .format(name): the first line
TOKEN = 9  # the session token registered_client() is given: the server's datagrams carry it


def shown(effects: list) -> list[str]:
    """The lines a user reads for what the logic reported (tables left out)."""
    return [line for e in effects if not isinstance(e, (Send, Exit)) and not isinstance(lines := render(e), Drawn) for line in lines]


def new_lines(sim: SimNet, name: str, since: int) -> list[str]:
    return [line for line in sim.lines[name][since:] if not line.startswith(("| ", ">>> Client table updated."))]


class Mark:
    """Remembers where each node's output stood, to read only what came after."""

    def __init__(self, sim: SimNet):
        self.sim, self.at = sim, {name: len(lines) for name, lines in sim.lines.items()}

    def __call__(self, name: str) -> list[str]:
        return new_lines(self.sim, name, self.at.get(name, 0))


# -- registration -----------------------------------------------------------------------


def test_registration_welcome_then_table():
    sim = SimNet()
    ann = sim.client("Ann")
    sim.run(1)
    ip, port = sim.addr(ann)
    assert sim.lines["Ann"] == [REGISTERING.format("Ann"), WELCOME, ">>> Client table updated.",
                                f"| Ann | {ip} | {port} | online"]
    assert ann.registered and prompt(ann.group) == ">>> " and "Ann" not in sim.exits


def test_a_client_confirms_its_registration_at_once_and_is_welcomed_when_that_is_acked():
    client = ClientLogic("Ann", SERVER, 7001, RetryPolicy(), random.Random(1))
    client.start(0.0)
    (reg,) = [decode(e.data) for e in client.drain(0.0) if isinstance(e, Send)]
    assert reg.token != 0, "a nonce, which the reg_ack must echo"
    answer = ChatHeader(type="reg_ack", msg_id=1, token=reg.token, sender="server") / RegAck(ack_id=reg.msg_id, token=9, session=4)
    client.receive(bytes(answer), SERVER, 0.1)
    effects = client.drain(0.1)
    (confirm,) = [decode(e.data) for e in effects if isinstance(e, Send)]
    assert kind(confirm) == "confirm" and confirm.token == 9, "the new token, at once"
    assert not client.registered and not shown(effects), "no welcome yet"
    client.handle_timer(0.6)  # unanswered: retransmitted like any request
    assert [decode(e.data).msg_id for e in client.drain(0.6) if isinstance(e, Send)] == [confirm.msg_id]
    acked = ChatHeader(type="ack", msg_id=2, token=confirm.token, sender="server") / Ack(ack_id=confirm.msg_id, status="ok")
    client.receive(bytes(acked), SERVER, 0.7)
    assert shown(client.drain(0.7)) == [WELCOME]
    assert client.registered and client.session == 4


def sent(effects: list) -> list:
    return [decode(e.data) for e in effects if isinstance(e, Send)]


def answer_registration(client: ClientLogic, reg, status: str, now: float, server_id: int) -> list:
    """``reg`` is answered; then the client's confirm, with ``status``: what the client does then."""
    client.receive(bytes(ChatHeader(type="reg_ack", msg_id=server_id, token=reg.token, sender="server")
                         / RegAck(ack_id=reg.msg_id, token=9)), SERVER, now)
    (confirm,) = sent(client.drain(now))
    assert kind(confirm) == "confirm"
    client.receive(bytes(ChatHeader(type="ack", msg_id=server_id + 1, token=confirm.token, sender="server")
                         / Ack(ack_id=confirm.msg_id, status=status)), SERVER, now + 0.1)
    return client.drain(now + 0.1)


def test_a_confirm_refused_with_name_taken_exits_1():
    client = ClientLogic("Ann", SERVER, 7001, RetryPolicy(), random.Random(1))
    client.start(0.0)
    (reg,) = sent(client.drain(0.0))
    assert shown(answer_registration(client, reg, "name_taken", 0.1, 1)) == [
        ">>> Someone has already used this name. Try another one."]
    assert client.exit_status == 1 and not client.registered


def test_a_registration_the_server_forgot_before_its_confirm_is_started_again_a_few_times():
    """The server restarted between the reg and the confirm (or the registration expired, or a
    flood of others pushed it out): the client registers again, silently, FORGOTTEN_REGISTRATIONS
    times; then it gives up with the refusal's line."""
    client = ClientLogic("Ann", SERVER, 7001, RetryPolicy(), random.Random(1))
    client.start(0.0)
    (reg,) = sent(client.drain(0.0))
    nonces = {reg.token}
    for attempt in range(FORGOTTEN_REGISTRATIONS):
        effects = answer_registration(client, reg, "not_registered", 1.0 + attempt, 10 * attempt + 1)
        assert shown(effects) == [] and client.exit_status is None, "nothing to tell the user yet"
        (reg,) = sent(effects)
        assert kind(reg) == "reg" and reg.token not in nonces, "a new registration, with a new nonce"
        nonces.add(reg.token)
    effects = answer_registration(client, reg, "not_registered", 9.0, 100)
    assert shown(effects) == [">>> The server did not keep the registration (it expired). Try again."]
    assert client.exit_status == 1 and not client.registered


def test_a_client_names_a_peer_of_another_version_once():
    client = registered_client()
    old = bytearray(table_pkt(50, 1, 0, ("Ann", 7001)))
    old[2] = VERSION - 1
    for _ in range(3):
        client.receive(bytes(old), SERVER, 1.0)
    lines = shown(client.drain(1.0))
    assert lines == [f">>> {SERVER[0]}:{SERVER[1]} speaks chat protocol version {VERSION - 1}; this node speaks version {VERSION}"]
    assert client.drops["other version"] == 3 and client.table_version == 0


def test_name_taken_exits_1():
    sim = SimNet()
    sim.online("Ann")
    sim.client("Ann", label="Ann#2")
    sim.run(1)
    assert sim.lines["Ann#2"] == [REGISTERING.format("Ann"), ">>> Someone has already used this name. Try another one."]
    assert sim.exits["Ann#2"] == 1
    assert "Ann" not in sim.exits and sim.server.clients["Ann"].online


def test_address_taken_exits_1():
    sim = SimNet()
    (ann,) = sim.online("Ann")
    sim.crash(ann)  # the server still believes Ann is online at that address
    sim.client("Bob", addr=sim.addr(ann))
    sim.run(1)
    assert sim.lines["Bob"] == [REGISTERING.format("Bob"),
                                ">>> Someone has already used this (IP, port) combination. Try another one."]
    assert sim.exits["Bob"] == 1


def test_offline_name_registers_again():
    sim = SimNet()
    (ann,) = sim.online("Ann")
    sim.type(ann, "dereg Ann")
    sim.run(1)
    again = sim.client("Ann", label="Ann#2")
    sim.run(1)
    assert sim.lines["Ann#2"][1] == WELCOME and "Ann#2" not in sim.exits
    assert sim.server.clients["Ann"].addr == sim.addr(again) != sim.addr(ann)
    assert sim.server.clients["Ann"].online


def test_invalid_username_is_refused():
    sim = SimNet()
    sim.client("server")
    sim.run(1)
    assert sim.lines["server"][-1] == ">>> Invalid username"
    assert sim.exits["server"] == 1


# -- private messages ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["hello", "a;b;c", "x: y", "'quoted' \"too\"", "non-ASCII é 日本語 🙂", "two  spaces   three"])
def test_private_message_arrives_exactly(text):
    sim = SimNet()
    ann, bob = sim.online("Ann", "Bob")
    mark = Mark(sim)
    sim.type(ann, f"send Bob {text}")
    sim.run(1)
    assert mark("Bob") == [f">>> Ann: {text}"]
    assert mark("Ann") == [">>> Message received by Bob."]


def test_unknown_user():
    sim = SimNet()
    (ann,) = sim.online("Ann")
    before = len(sim.sent)
    sim.type(ann, "send Zed hi")
    assert sim.lines["Ann"][-1] == ">>> User Zed does not exist"
    assert len(sim.sent) == before, "nothing sent"


def test_send_to_a_user_listed_offline_is_tried_and_reported_as_the_original_does():
    """The table may be stale: the message is sent with the usual retries, then No ACK, the
    report to the server, and a line saying the table listed the receiver offline."""
    sim = SimNet()
    ann, bob = sim.online("Ann", "Bob")
    sim.type(bob, "dereg Bob")
    sim.run(1)
    assert not ann.table["Bob"].online
    sent = len(sim.sent)
    sim.type(ann, "send Bob are you there")
    sim.run(5)
    tries = [p for _, src, _, p, _ in sim.sent[sent:] if kind(p) == "pri_msg" and src == sim.addr(ann)]
    assert len(tries) == 5, "the usual five tries"
    assert sim.lines["Ann"][-4:] == [">>> No ACK from Bob, message not delivered", ">>> Report this issue to server",
                                     ">>> (The client table listed Bob as offline.)",
                                     '>>> (the message was: "are you there")']
    assert [p.payload.target for _, _, _, p, _ in sim.sent[sent:] if kind(p) == "kick"] == ["Bob"]


def test_help_in_any_mode():
    sim = SimNet()
    (ann,) = sim.online("Ann")
    sim.type(ann, "help")
    assert any("send_group <message>" in line for line in sim.lines["Ann"])
    sim.in_group([ann])
    sim.type(ann, "help")
    assert sim.lines["Ann"][-1].startswith(">>>   help") and ann.group == "g"


def test_list_clients_shows_the_table_on_demand_in_either_mode():
    """The table prints by itself only when it changes; list_clients shows it when asked, titled
    as asked for, without asking the server anything."""
    sim = SimNet()
    ann, bob = sim.online("Ann", "Bob")
    rows = [f"| {name} | {ip} | {port} | online" for name, (ip, port) in (("Ann", sim.addr(ann)), ("Bob", sim.addr(bob)))]
    for prefix in (">>> ", ">>> (g) "):
        sent, before = len(sim.sent), len(sim.lines["Ann"])
        sim.type(ann, "list_clients")
        assert sim.lines["Ann"][before:] == [f"{prefix}Client table, as asked for:", *rows]
        assert len(sim.sent) == sent, "nothing sent: it is the client's own copy"
        sim.in_group([ann])


def last_table(lines: list[str]) -> list[str]:
    """The names of the last client table in ``lines``, in the order printed."""
    start = max(i for i, line in enumerate(lines) if line.endswith("Client table updated."))
    return [line.split(" | ")[0].removeprefix("| ") for line in lines[start + 1:] if line.startswith("| ")]


def test_the_server_and_a_client_list_table_rows_in_one_order():
    """Bob registered again after Cid: the server keeps its rows in registration order, and a
    newcomer's copy came in the order rows last changed (Cid, Bob, Ann).  Both print by name."""
    sim = SimNet()
    bob, cid = sim.online("Bob", "Cid")
    sim.type(bob, "dereg Bob")
    sim.run(1)
    sim.client("Bob", label="Bob#2")
    sim.run(1)
    sim.online("Ann")
    assert last_table(sim.lines["server"]) == last_table(sim.lines["Ann"]) == ["Ann", "Bob", "Cid"]


def test_send_in_group_mode_is_invalid():
    sim = SimNet()
    ann, bob = sim.online("Ann", "Bob")
    sim.in_group([ann])
    sim.type(ann, "send Bob hi")
    sim.run(1)
    assert sim.lines["Ann"][-2:] == [">>> (g) Invalid command", ">>> (g) " + NORMAL_ONLY.format("send")]
    assert sim.sends("pri_msg") == []


def test_private_messages_in_group_mode_wait_for_leave_group():
    sim = SimNet()
    ann, bob, cat = sim.online("Ann", "Bob", "Cat")
    sim.in_group([ann])
    mark = Mark(sim)
    sim.type(bob, "send Ann first")
    sim.run(1)
    sim.type(cat, "send Ann second")
    sim.run(1)
    assert mark("Ann") == [], "queued, not shown in group mode"
    assert mark("Bob") == [">>> Message received by Ann."], "acked at once all the same"
    sim.type(ann, "leave_group")
    sim.run(1)
    assert mark("Ann") == [">>> Leave group chat g", ">>> Bob: first", ">>> Cat: second"]
    assert prompt(ann.group) == ">>> "


@pytest.mark.parametrize("how", ["dereg", "end of input", "Ctrl+C"])
def test_queued_private_messages_are_printed_on_exit(how):
    sim = SimNet()
    ann, bob = sim.online("Ann", "Bob")
    sim.in_group([ann])
    sim.type(bob, "send Ann psst")
    sim.run(1)
    mark = Mark(sim)
    if how == "dereg":
        sim.type(ann, "dereg Ann")
    elif how == "end of input":
        sim.end_input(ann)
    else:
        sim.shutdown(ann)
    sim.run(1)
    assert mark("Ann") == [">>> You are Offline. Bye.", ">>> Bob: psst"]
    assert sim.exits["Ann"] == 0


def test_private_message_from_a_stranger_or_a_spoofed_address_is_ignored():
    sim = SimNet()
    ann, bob = sim.online("Ann", "Bob")
    mark = Mark(sim)
    stranger = bytes(ChatHeader(type="pri_msg", msg_id=5, sender="Zed") / PriMsg(text="hi"))
    spoofed = bytes(ChatHeader(type="pri_msg", msg_id=6, sender="Bob") / PriMsg(text="it's me, Bob"))
    sim.inject(stranger, ("10.6.6.6", 666), sim.addr(ann))
    sim.inject(spoofed, ("10.6.6.6", 666), sim.addr(ann))
    sim.run(1)
    assert mark("Ann") == []
    assert ann.drops["unknown sender"] == 2
    assert sim.sends(src=sim.addr(ann), dst=("10.6.6.6", 666)) == [], "not acked: not delivered"


# -- dereg, end of input, shutdown ------------------------------------------------------------------


def test_dereg_own_name():
    sim = SimNet()
    ann, bob = sim.online("Ann", "Bob")
    sim.type(ann, "dereg Ann")
    sim.run(1)
    assert sim.lines["Ann"][-1] == ">>> You are Offline. Bye."
    assert sim.exits["Ann"] == 0
    assert not sim.server.clients["Ann"].online and bob.table["Ann"].online is False


@pytest.mark.parametrize("group_mode, prefix", [(False, ">>> "), (True, ">>> (g) ")])
def test_dereg_another_name_is_invalid(group_mode, prefix):
    sim = SimNet()
    ann, bob = sim.online("Ann", "Bob")
    if group_mode:
        sim.in_group([ann])
    sim.type(ann, "dereg Bob")
    sim.run(1)
    assert sim.lines["Ann"][-2:] == [f"{prefix}Invalid command", f"{prefix}Usage: dereg <your-name>"]
    assert "Ann" not in sim.exits and sim.server.clients["Bob"].online


def test_end_of_input_runs_what_was_typed_then_deregisters():
    sim = SimNet()
    ann, bob = sim.online("Ann", "Bob")
    mark = Mark(sim)
    for line in ("create_group g", "send Bob bye"):
        sim.type(ann, line)
    sim.end_input(ann)
    sim.run(2)
    assert mark("Ann") == [">>> Group g created by Server.", ">>> Message received by Bob.", ">>> You are Offline. Bye."]
    assert sim.exits["Ann"] == 0 and not sim.server.clients["Ann"].online


def test_shutdown_drops_what_is_under_way_and_deregisters():
    sim = SimNet()
    ann, bob = sim.online("Ann", "Bob")
    sim.crash(bob)
    sim.type(ann, "send Bob are you there")
    sim.type(ann, "list_groups")
    sim.run(0.7)
    sim.shutdown(ann)
    sim.run(5)
    assert sim.exits["Ann"] == 0
    assert sim.lines["Ann"][-1] == ">>> You are Offline. Bye."
    assert not any("No ACK" in line or "group" in line for line in sim.lines["Ann"])
    assert not sim.server.clients["Ann"].online


def test_shutdown_before_registration_exits_1():
    sim = SimNet()
    sim.fault = dropping(lambda p, src, dst: True)
    ann = sim.client("Ann")
    sim.shutdown(ann)
    assert sim.exits["Ann"] == 1
    assert ann.get_timer() is None


def test_commands_after_exit_or_during_dereg_are_ignored():
    sim = SimNet()
    (ann,) = sim.online("Ann")
    sim.type(ann, "dereg Ann")
    sent = len(sim.sent)
    sim.type(ann, "create_group late")
    sim.shutdown(ann)
    assert len(sim.sent) == sent
    sim.run(1)
    assert sim.exits["Ann"] == 0 and "late" not in sim.server.groups


# -- group commands -----------------------------------------------------------------------------------


def test_create_group_and_failures():
    sim = SimNet()
    (ann,) = sim.online("Ann")
    mark = Mark(sim)
    sim.type(ann, "create_group g1")
    sim.run(1)
    sim.type(ann, "create_group g1")
    sim.run(1)
    sent = len(sim.sent)
    for name in ("a;b", "my group", "é" * 17, "a\u202eb"):
        sim.type(ann, f"create_group {name}")
    assert mark("Ann") == [
        ">>> Group g1 created by Server.",
        ">>> Group g1 already exists.",
        ">>> Group name should not contain ';'. Try again.",
        ">>> Group name should not contain ';'. Try again.",  # the spec's line, then what is really wrong
        ">>> (It contains a space or other whitespace: a group name is one word.)",
        ">>> Group name should be at most 32 bytes of UTF-8 (this one is 34). Try again.",
        ">>> Group name should have no control or formatting characters. Try again.",
    ]
    assert len(sim.sent) == sent, "refused locally"
    assert prompt(ann.group) == ">>> ", "creating does not join"


def test_list_groups():
    sim = SimNet()
    (ann,) = sim.online("Ann")
    sim.type(ann, "list_groups")
    sim.run(1)
    assert sim.lines["Ann"][-1] == ">>> No available group right now"
    for g in ("g1", "g2"):
        sim.type(ann, f"create_group {g}")
    sim.run(1)
    mark = Mark(sim)
    sim.type(ann, "list_groups")
    sim.run(1)
    assert mark("Ann") == [">>> Available group chats:", ">>> g1", ">>> g2"]


def test_join_group_and_failure():
    sim = SimNet()
    (ann,) = sim.online("Ann")
    sim.type(ann, "join_group nope")
    sim.run(1)
    assert sim.lines["Ann"][-1] == ">>> Group nope does not exist" and prompt(ann.group) == ">>> "
    sim.in_group([ann])
    assert sim.lines["Ann"][-1] == ">>> Entered group g successfully"
    assert prompt(ann.group) == ">>> (g) "


def test_send_group_reaches_the_other_members_only():
    sim = SimNet()
    ann, bob, cat, dan = sim.online("Ann", "Bob", "Cat", "Dan")
    sim.in_group([ann, bob, cat])
    mark = Mark(sim)
    sim.type(ann, "send_group hi; all é")
    sim.run(1)
    assert mark("Ann") == [">>> (g) Message received by Server."]
    assert mark("Bob") == [">>> (g) Group_Message Ann: hi; all é"]
    assert mark("Cat") == [">>> (g) Group_Message Ann: hi; all é"]
    assert mark("Dan") == []


def test_list_members():
    sim = SimNet()
    ann, bob = sim.online("Ann", "Bob")
    sim.in_group([ann, bob])
    mark = Mark(sim)
    sim.type(bob, "list_members")
    sim.run(1)
    assert mark("Bob") == [">>> (g) Members in the group g:", ">>> (g) Ann", ">>> (g) Bob"]


def test_leave_group():
    sim = SimNet()
    ann, bob = sim.online("Ann", "Bob")
    sim.in_group([ann, bob])
    sim.type(ann, "leave_group")
    sim.run(1)
    assert sim.lines["Ann"][-1] == ">>> Leave group chat g" and prompt(ann.group) == ">>> "
    assert list(sim.server.groups["g"]) == ["Bob"]
    mark = Mark(sim)
    sim.type(bob, "send_group still here?")
    sim.run(1)
    assert mark("Ann") == []


GROUP_ONLY = "({} is for group mode: join_group <group> first)"
NORMAL_ONLY = "({} is for normal mode: leave_group first)"


@pytest.mark.parametrize(
    "group_mode, line, usage",
    [
        (False, "hello", None),
        (False, "send", "send <name> <message>"),
        (False, "send Bob", "send <name> <message>"),
        (False, "create_group", "create_group <group>"),
        (False, "join_group", "join_group <group>"),
        (False, "list_groups extra", "list_groups"),
        (False, "send_group hi", GROUP_ONLY.format("send_group")),  # the wrong mode: how to get to the right one
        (False, "list_members", GROUP_ONLY.format("list_members")),
        (False, "leave_group", GROUP_ONLY.format("leave_group")),
        (False, "dereg", "dereg <your-name>"),
        (True, "create_group g2", NORMAL_ONLY.format("create_group")),
        (True, "join_group g", NORMAL_ONLY.format("join_group")),
        (True, "list_groups", NORMAL_ONLY.format("list_groups")),
        (True, "send_group", "send_group <message>"),
        (True, "list_members extra", "list_members"),
        (True, "leave_group now", "leave_group"),
        (True, "bogus", None),
        (True, "send Bob", NORMAL_ONLY.format("send")),  # the wrong mode comes first
    ],
)
def test_invalid_commands(group_mode, line, usage):
    """The spec's line, then the form of the command that was meant when the line did not fit it,
    or, for a command of the other mode, how to get to that mode."""
    sim = SimNet()
    ann, bob = sim.online("Ann", "Bob")
    if group_mode:
        sim.in_group([ann])
    sent = len(sim.sent)
    mark = Mark(sim)
    sim.type(ann, line)
    sim.run(1)
    prefix = ">>> (g) " if group_mode else ">>> "
    hint = [] if usage is None else [prefix + (usage if usage.startswith("(") else f"Usage: {usage}")]
    assert mark("Ann") == [f"{prefix}Invalid command", *hint]
    assert len(sim.sent) == sent, "nothing sent"


def test_blank_lines_are_ignored():
    sim = SimNet()
    (ann,) = sim.online("Ann")
    before = list(sim.lines["Ann"])
    sim.type(ann, "   ")
    sim.type(ann, "")
    assert sim.lines["Ann"] == before


@pytest.mark.parametrize("command", ["send Bob ", "send_group "])
def test_too_long_message_is_refused_not_truncated(command):
    sim = SimNet()
    ann, bob = sim.online("Ann", "Bob")
    if command.startswith("send_group"):
        sim.in_group([ann, bob])
    sent = len(sim.sent)
    sim.type(ann, command + "é" * (MAX_TEXT_BYTES // 2 + 1))
    assert "Message too long" in sim.lines["Ann"][-1] and "not sent" in sim.lines["Ann"][-1]
    assert len(sim.sent) == sent
    sim.type(ann, command + "é" * (MAX_TEXT_BYTES // 2))  # exactly the limit goes through
    sim.run(1)
    assert sim.lines["Bob"][-1].endswith("é" * (MAX_TEXT_BYTES // 2))


def test_commands_typed_ahead_run_in_order():
    sim = SimNet()
    ann, bob = sim.online("Ann", "Bob")
    mark = Mark(sim)
    for line in ("create_group g", "join_group g", "send_group one", "list_members", "leave_group"):
        sim.type(ann, line)
    sim.run(2)
    assert mark("Ann") == [
        ">>> Group g created by Server.",
        ">>> Entered group g successfully",
        ">>> (g) Message received by Server.",
        ">>> (g) Members in the group g:",
        ">>> (g) Ann",
        ">>> Leave group chat g",
    ]


# -- the same commands asked by a program ----------------------------------------------------------------

# typed line -> the intent method that asks the same, and its arguments
INTENTS = {
    "create_group g": ("create_group", "g"),
    "list_groups": ("list_groups",),
    "send Bob hello  there": ("send_private", "Bob", "hello  there"),
    "send Zed hi": ("send_private", "Zed", "hi"),
    "join_group g": ("join_group", "g"),
    "send_group hi all": ("send_group", "hi all"),
    "list_members": ("list_members",),
    "help": ("help",),
    "leave_group": ("leave_group",),
    "dereg Ann": ("deregister",),
}


def test_intent_methods_do_what_the_typed_commands_do():
    """Asked one after the other at once, so each also waits its turn behind the ones before."""
    seen = []
    for typed in (True, False):
        sim = SimNet(seed=3)
        ann, bob = sim.online("Ann", "Bob")
        since, sent = len(sim.events["Ann"]), len(sim.sent)
        for line, (intent, *args) in INTENTS.items():
            if typed:
                sim.type(ann, line)
            else:
                sim.ask(ann, getattr(ann, intent), *args)
        sim.run(2)
        assert sim.exits["Ann"] == 0
        datagrams = [kind(p) for _, src, _, p, _ in sim.sent[sent:] if src == sim.addr(ann)]
        seen.append((sim.events["Ann"][since:], [e for e in sim.events["Bob"] if isinstance(e, PrivateMessage)], datagrams))
    assert seen[0] == seen[1]
    events = [type(e).__name__ for e in seen[0][0]]
    assert events == ["CreatedGroup", "ListedGroups", "Delivered", "UnknownUser", "JoinedGroup", "GroupMessageSent",
                      "ListedMembers", "HelpShown", "LeftGroup", "Deregistered"]
    assert seen[0][1] == [PrivateMessage("Ann", "hello  there")]


def test_an_intent_in_the_wrong_mode_is_an_invalid_command():
    sim = SimNet()
    ann, bob = sim.online("Ann", "Bob")
    sent = len(sim.sent)
    sim.ask(ann, ann.send_group, "hi")
    sim.ask(ann, ann.leave_group)
    assert sim.events["Ann"][-2:] == [InvalidCommand(None, "send_group"), InvalidCommand(None, "leave_group")]
    sim.in_group([ann])
    sim.ask(ann, ann.send_private, "Bob", "hi")
    assert sim.events["Ann"][-1] == InvalidCommand("g", "send")
    assert sim.lines["Ann"][-2] == ">>> (g) Invalid command"
    assert [kind(p) for _, src, _, p, _ in sim.sent[sent:] if src == sim.addr(ann)] == ["create_group", "join_group"]


# -- the server stops answering ------------------------------------------------------------------------

# scenario (named for the request it waits on) -> (set-up typed lines, the line that sends it, in group mode?)
SILENT_SERVER = {
    "reg": ([], None, False),
    "dereg": ([], "dereg Ann", False),
    "create_group": ([], "create_group g2", False),
    "list_groups": ([], "list_groups", False),
    "join_group": (["create_group g2"], "join_group g2", False),
    "send_group": (["create_group g", "join_group g"], "send_group hello", True),
    "list_members": (["create_group g", "join_group g"], "list_members", True),
    "leave_group": (["create_group g", "join_group g"], "leave_group", True),
    "dereg in group": (["create_group g", "join_group g"], "dereg Ann", True),
    "end of input": (["create_group g", "join_group g"], "<eof>", True),
    "kick": ([], "send Bob are you there", False),
}


def test_every_request_a_user_can_cause_has_a_silent_server_scenario():
    # confirm follows reg and list_more follows a list, never typed: their scenarios are reg's and the lists'
    typed = set(requests(CLIENT, SERVER_ROLE)) - {"confirm", "list_more"}
    assert typed <= {scenario.split()[0] for scenario in SILENT_SERVER}


@pytest.mark.parametrize("request_type", sorted(SILENT_SERVER))
def test_server_not_responding(request_type):
    setup, line, group_mode = SILENT_SERVER[request_type]
    sim = SimNet()
    if request_type == "reg":
        sim.crash(sim.server)
        sim.client("Ann")
        t0 = 0.0
    else:
        ann, bob = sim.online("Ann", "Bob")
        for typed in setup:
            sim.type(ann, typed)
            sim.run(1)
        if group_mode:
            sim.type(bob, "send Ann queued one")
            sim.type(bob, "send Ann queued two")
            sim.run(1)
        if request_type == "kick":
            sim.crash(bob)
        sim.crash(sim.server)
        t0 = sim.now
        if line == "<eof>":
            sim.end_input(ann)
        else:
            sim.type(ann, line)
    sim.run(2.49 + (2.5 if request_type == "kick" else 0))
    assert "Ann" not in sim.exits, "not before the last try's time is up"
    sim.run(0.02)
    assert sim.exits["Ann"] == 1
    prefix = ">>> (g) " if group_mode else ">>> "
    queued = [">>> Bob: queued one", ">>> Bob: queued two"] if group_mode else []
    unsent = [f'{prefix}(the group message was: "hello")'] if request_type == "send_group" else []  # which one was lost
    assert sim.lines["Ann"][-2 - len(unsent) - len(queued) :] == [f"{prefix}Server not responding", f"{prefix}Exiting",
                                                                  *unsent, *queued]
    wanted = {"end of input": "dereg", "dereg in group": "dereg"}.get(request_type, request_type)
    tries = [t for t, pkt in sim.sends(wanted, dst=SERVER)][-5:]
    start = t0 + (2.5 if request_type == "kick" else 0)
    assert tries == pytest.approx([start + 0.5 * k for k in range(5)])
    assert len(sim.sends(wanted, dst=SERVER)) == 5


def test_server_not_responding_with_a_custom_retry_policy():
    sim = SimNet(policy=RetryPolicy(timeout=0.2, tries=2))
    sim.crash(sim.server)
    sim.client("Ann")
    sim.run(0.39)
    assert "Ann" not in sim.exits
    sim.run(0.02)
    assert sim.exits["Ann"] == 1
    assert [t for t, _ in sim.sends("reg")] == pytest.approx([0.0, 0.2])


def test_a_few_lost_answers_are_survived():
    sim = SimNet()
    sim.fault = dropping(lambda p, src, dst: src == SERVER and kind(p) in ("ack", "reg_ack"), first=4)
    ann = sim.client("Ann")
    sim.run(3)
    assert sim.lines["Ann"][1] == WELCOME and "Ann" not in sim.exits
    assert len(sim.sends("reg")) == 5 and len(sim.server.clients) == 1


# -- a peer stops answering -------------------------------------------------------------------------------


def test_no_ack_from_peer_then_report_and_kick():
    sim = SimNet()
    ann, bob = sim.online("Ann", "Bob")
    sim.crash(bob)
    mark = Mark(sim)
    t0 = sim.now
    sim.type(ann, "send Bob hello")
    sim.run(2.49)
    assert mark("Ann") == []
    sim.run(0.02)
    assert mark("Ann") == [">>> No ACK from Bob, message not delivered", ">>> Report this issue to server",
                           '>>> (the message was: "hello")']
    assert [t - t0 for t, _ in sim.sends("pri_msg")] == pytest.approx([0, 0.5, 1.0, 1.5, 2.0])
    ((t, kick),) = sim.sends("kick")
    assert kick.payload.target == "Bob" and t == pytest.approx(t0 + 2.5)
    sim.run(5)
    assert "Ann" not in sim.exits
    sim.type(ann, "list_groups")  # not held up by the finished send
    sim.run(1)
    assert sim.lines["Ann"][-1] == ">>> No available group right now"


def test_after_several_quick_sends_the_no_ack_quotes_the_one_that_failed():
    sim = SimNet()
    ann, bob, cat = sim.online("Ann", "Bob", "Cat")
    sim.crash(bob)
    mark = Mark(sim)
    for line in ("send Cat first", "send Bob lunch at 12:30? or shall we meet at the station at one", "send Cat third"):
        sim.type(ann, line)  # typed at once: they run in turn
    sim.run(5)
    assert mark("Ann") == [">>> Message received by Cat.", ">>> No ACK from Bob, message not delivered",
                           ">>> Report this issue to server",
                           '>>> (the message was: "lunch at 12:30? or shall we meet at the\u2026")',
                           ">>> Message received by Cat."]


def test_peer_that_misses_a_few_tries_sees_the_message_once():
    sim = SimNet()
    ann, bob = sim.online("Ann", "Bob")
    sim.fault = dropping(lambda p, src, dst: src == sim.addr(bob) and kind(p) == "ack", first=3)
    mark = Mark(sim)
    sim.type(ann, "send Bob once")
    sim.run(3)
    assert mark("Bob") == [">>> Ann: once"]
    assert mark("Ann") == [">>> Message received by Bob."]
    assert len(sim.sends("pri_msg")) == 4 and sim.sends("kick") == []
    answers = [repr(p) for _, p in sim.sends("ack", src=sim.addr(bob), dst=sim.addr(ann))]
    assert len(answers) == 4 and len(set(answers)) == 1, "each retransmission answered again, identically"


# -- removed from the group by the server ---------------------------------------------------------------------


@pytest.mark.parametrize("command", ["send_group again", "list_members", "leave_group"])
def test_already_not_in_the_group(command):
    sim = SimNet()
    ann, bob, cat = sim.online("Ann", "Bob", "Cat")
    sim.in_group([ann, cat])
    sim.fault = dropping(lambda p, src, dst: src == sim.addr(cat) and kind(p) == "ack" and dst == SERVER)
    sim.type(ann, "send_group hello")
    sim.type(bob, "send Cat queued")
    sim.run(5)
    assert ">>> Client Cat not responsive, removed from g" in sim.lines["server"]
    sim.fault = None
    mark = Mark(sim)
    sim.type(cat, command)
    sim.run(1)
    assert mark("Cat") == [f">>> {NOT_IN_GROUP}", ">>> Bob: queued"]
    assert prompt(cat.group) == ">>> " and cat.group is None
    assert NOT_IN_GROUP == (
        "You're already not in the group, because the Server didn't receive your previous ack to a group message."
    )
    sim.type(cat, "list_groups")  # back in normal mode, and not stuck
    sim.run(1)
    assert sim.lines["Cat"][-1] == ">>> g"


# -- duplicates, reordering, table versions -----------------------------------------------------------------


def test_everything_duplicated_is_shown_once():
    sim = SimNet()
    sim.fault = lambda p, src, dst, sim: [0.0, 0.002, 0.3]  # three copies, one of them late
    ann, bob, cat = sim.online("Ann", "Bob", "Cat")
    sim.in_group([ann, bob])
    mark = Mark(sim)
    sim.type(ann, "send_group to all")
    sim.type(cat, "send Bob privately")
    sim.run(2)
    assert mark("Ann") == [">>> (g) Message received by Server."]
    assert mark("Bob") == [">>> (g) Group_Message Ann: to all"]
    sim.type(bob, "leave_group")
    sim.run(2)
    assert mark("Bob") == [">>> (g) Group_Message Ann: to all", ">>> Leave group chat g", ">>> Cat: privately"]
    assert mark("Cat") == [">>> Message received by Bob."]
    assert sim.lines["server"].count(">>> Client Ann sent group message: to all") == 1
    assert sim.lines["server"].count(">>> Client Ann created group g successfully") == 1
    assert sim.converged()


def table_pkt(msg_id: int, version: int, base: int, *entries: tuple[str, int]) -> bytes:
    rows = [Entry(client=name, ip="10.0.0.9", port=port, online=1) for name, port in entries]
    return bytes(ChatHeader(type="table", msg_id=msg_id, token=TOKEN, sender="server") / Table(version=version, base=base, entries=rows))


def registered_client() -> ClientLogic:
    client = ClientLogic("Ann", SERVER, 7001, RetryPolicy(), random.Random(1))
    client.start(0.0)
    (reg,) = [decode(e.data) for e in client.drain(0.0) if isinstance(e, Send)]
    answer = ChatHeader(type="reg_ack", msg_id=1, token=reg.token, sender="server") / RegAck(ack_id=reg.msg_id, token=9)
    client.receive(bytes(answer), SERVER, 0.0)
    (confirm,) = [decode(e.data) for e in client.drain(0.0) if isinstance(e, Send)]
    confirmed = ChatHeader(type="ack", msg_id=2, token=confirm.token, sender="server") / Ack(ack_id=confirm.msg_id, status="ok")
    client.receive(bytes(confirmed), SERVER, 0.0)
    client.drain(0.0)
    assert client.registered
    return client


def acks(client: ClientLogic, now: float = 1.0) -> list[tuple[int, str]]:
    return [
        (p.payload.ack_id, STATUSES[p.payload.status])
        for p in (decode(e.data) for e in client.drain(now) if isinstance(e, Send))
        if kind(p) == "ack"
    ]


def test_reordered_table_update_does_not_roll_back():
    client = registered_client()
    client.receive(table_pkt(11, 2, 0, ("Ann", 7001), ("Bob", 7002)), SERVER, 0.1)
    assert acks(client) == [(11, "ok")]
    client.receive(table_pkt(10, 1, 0, ("Ann", 7001)), SERVER, 0.2)  # older, arrives late
    assert acks(client) == [(10, "ok")], "acked, so the server stops sending it"
    assert client.table_version == 2 and set(client.table) == {"Ann", "Bob"}


def test_duplicated_table_update_is_applied_and_shown_once():
    client = registered_client()
    data = table_pkt(11, 1, 0, ("Ann", 7001))
    client.receive(data, SERVER, 0.1)
    first = client.drain(0.1)
    client.receive(data, SERVER, 0.2)
    second = client.drain(0.2)
    assert sum(isinstance(e, PeersChanged) for e in first) == 1
    assert [e for e in second if not isinstance(e, Send)] == [] and len(second) == 1


def test_table_update_of_a_version_already_held_is_acked_not_shown_again():
    """The server resends the current version when it missed our ack (new message id, same version)."""
    client = registered_client()
    client.receive(table_pkt(11, 2, 0, ("Ann", 7001), ("Bob", 7002)), SERVER, 0.1)
    client.drain(0.1)
    client.receive(table_pkt(12, 2, 0, ("Ann", 7001), ("Bob", 7002)), SERVER, 5.0)
    effects = client.drain(5.0)
    assert not any(isinstance(e, PeersChanged) for e in effects)
    assert [(decode(e.data).payload.ack_id, STATUSES[decode(e.data).payload.status]) for e in effects] == [(12, "ok")]


def test_table_delta_with_a_gap_asks_for_a_resync():
    client = registered_client()
    client.receive(table_pkt(11, 1, 0, ("Ann", 7001)), SERVER, 0.1)
    acks(client)
    client.receive(table_pkt(12, 4, 3, ("Dan", 7004)), SERVER, 0.2)  # versions 2 and 3 never arrived
    assert acks(client) == [(12, "resync")]
    assert "Dan" not in client.table and client.table_version == 1
    client.receive(table_pkt(13, 4, 0, ("Ann", 7001), ("Bob", 7002), ("Dan", 7004)), SERVER, 0.3)
    assert acks(client) == [(13, "ok")]
    assert set(client.table) == {"Ann", "Bob", "Dan"} and client.table_version == 4


def test_reordered_and_duplicated_table_updates_converge():
    sim = SimNet(seed=5)
    rng = random.Random(5)
    # Table updates get random extra delays (so arrive out of order) and are sometimes duplicated.
    sim.fault = lambda p, src, dst, sim: (
        [rng.uniform(0, 0.4) for _ in range(rng.choice([1, 1, 2]))] if kind(p) == "table" else [0.0]
    )
    clients = [sim.client(name) for name in ("Ann", "Bob", "Cat", "Dan", "Eve")]
    sim.run(0.5)  # the first updates have arrived (each client has one in flight at a time): Dan knows Cat
    sim.type(clients[1], "dereg Bob")
    sim.crash(clients[2])
    sim.type(clients[3], "send Cat gone?")
    sim.run(15)
    assert not sim.server.clients["Bob"].online and not sim.server.clients["Cat"].online
    assert sim.converged()


def test_table_probe_and_group_messages_only_from_the_server():
    client = registered_client()
    stranger = ("10.6.6.6", 666)
    client.receive(table_pkt(11, 1, 0, ("Zed", 6666)), stranger, 0.1)
    client.receive(bytes(ChatHeader(type="probe", msg_id=12, token=TOKEN, sender="server")), stranger, 0.1)
    client.receive(bytes(ChatHeader(type="grp_msg", msg_id=13, token=TOKEN, sender="server") / GrpMsg(group="g", origin="x", text="y")), stranger, 0.1)
    assert client.drops["not from server"] == 3
    assert client.drain(0.1) == [] and "Zed" not in client.table


def test_probe_from_the_server_is_acked():
    client = registered_client()
    client.receive(bytes(ChatHeader(type="probe", msg_id=12, token=TOKEN, sender="server")), SERVER, 0.1)
    assert acks(client) == [(12, "ok")]


def test_group_message_for_another_group_is_acked_not_shown():
    client = registered_client()
    client.receive(bytes(ChatHeader(type="grp_msg", msg_id=13, token=TOKEN, sender="server") / GrpMsg(group="old", origin="x", text="y")), SERVER, 0.1)
    effects = client.drain(0.1)
    assert not shown(effects) and not any(isinstance(e, PeersChanged) for e in effects)
    assert [STATUSES[decode(e.data).payload.status] for e in effects if isinstance(e, Send)] == ["ok"]


def test_malformed_datagrams_are_counted_not_fatal():
    sim = SimNet()
    ann, bob = sim.online("Ann", "Bob")
    rng = random.Random(9)
    for _ in range(20):
        sim.inject(rng.randbytes(30), ("10.6.6.6", 666), sim.addr(ann))
    sim.inject(bytes(ChatHeader(type="ack", sender="server") / Ack(ack_id=4242)), SERVER, sim.addr(ann))
    sim.run(1)
    assert ann.drops["malformed"] == 20 and ann.drops["stale ack"] == 1
    sim.type(bob, "send Ann still fine")
    sim.run(1)
    assert sim.lines["Ann"][-1] == ">>> Bob: still fine"


def test_nothing_left_behind_after_exit():
    sim = SimNet()
    ann, bob = sim.online("Ann", "Bob")
    sim.type(ann, "send Bob bye")
    sim.type(ann, "dereg Ann")
    sim.run(1)
    assert sim.exits["Ann"] == 0
    assert ann.net.pending_count == 0 and ann.get_timer() is None
    effects_before = len(sim.sent)
    ann.receive(bytes(ChatHeader(type="probe", msg_id=1, token=TOKEN, sender="server")), SERVER, sim.now)
    ann.handle_timer(sim.now + 10)
    assert ann.drain(sim.now + 10) == [] and len(sim.sent) == effects_before, "an exited client does nothing more"


def test_group_message_that_beats_the_join_answer_is_shown_after_it():
    """The server forwards as soon as it adds Bob; Bob's join answer is lost once: nothing is lost."""
    sim = SimNet()
    ann, bob = sim.online("Ann", "Bob")
    sim.in_group([ann])
    sim.fault = dropping(lambda p, src, dst: dst == sim.addr(bob) and kind(p) == "ack", first=1)
    mark = Mark(sim)
    sim.type(bob, "join_group g")
    sim.run(0.01)
    sim.type(ann, "send_group early bird")
    sim.run(2)
    assert mark("Bob") == [">>> Entered group g successfully", ">>> (g) Group_Message Ann: early bird"]
    assert mark("Ann") == [">>> (g) Message received by Server."]


def test_group_messages_close_together_are_acknowledged_in_one_datagram():
    client = registered_client()
    delay = client.net.policy.ack_delay

    def grp_msg(msg_id: int, now: float) -> None:
        data = bytes(ChatHeader(type="grp_msg", msg_id=msg_id, token=TOKEN, sender="server") / GrpMsg(group="g", origin="x", text="y"))
        client.receive(data, SERVER, now)

    grp_msg(20, 1.0)
    assert acks(client) == [(20, "ok")], "after a quiet spell: at once"
    grp_msg(21, 1.001)
    grp_msg(22, 1.002)
    assert acks(client) == []
    assert client.get_timer() == pytest.approx(1.0 + delay)
    client.handle_timer(1.0 + delay)
    (batch,) = [decode(e.data) for e in client.drain(1.0 + delay) if isinstance(e, Send)]
    assert (batch.payload.ack_id, [m.id for m in batch.payload.also]) == (21, [22])
    assert batch.token == 9, "to the server, with the session token"
    grp_msg(21, 1.5)  # the server did not get that ack: its retransmission is acknowledged at once
    assert acks(client) == [(21, "ok")]


def test_group_message_held_for_a_join_that_fails_is_not_shown():
    client = registered_client()
    client.command("join_group g", 0.1)
    (join,) = [decode(e.data) for e in client.drain(0.1) if isinstance(e, Send)]
    client.receive(bytes(ChatHeader(type="grp_msg", msg_id=13, token=TOKEN, sender="server") / GrpMsg(group="g", origin="x", text="y")), SERVER, 0.2)
    client.receive(bytes(ChatHeader(type="ack", msg_id=14, token=join.token, sender="server") / Ack(ack_id=join.msg_id, status="no_such_group")), SERVER, 0.3)
    client.command("create_group g", 0.4)
    assert shown(client.drain(0.4)) == [">>> Group g does not exist"]


# -- bounded queues ------------------------------------------------------------------------------------

FULL = ">>> Ann's queue of messages is full (Ann is in a group chat), message not delivered"


def test_private_messages_past_the_queue_bound_are_refused_and_the_sender_told():
    """A client in group mode holds at most ``queue_messages`` private messages; past it, it
    answers queue_full: the sender says so once per message, with no retry and no kick."""
    sim = SimNet()
    ann, bob = sim.online("Ann", "Bob")
    sim.in_group([ann])
    bound = Limits().queue_messages
    mark = Mark(sim)
    for i in range(bound + 3):
        sim.type(bob, f"send Ann m{i}")
    sim.run(5)
    assert mark("Bob") == [">>> Message received by Ann."] * bound + [FULL] * 3
    assert len(sim.sends("pri_msg")) == bound + 3, "each sent once: a refusal is not retried"
    assert sim.sends("kick") == []
    assert len(ann.queued) == bound and mark("Ann") == []
    sim.type(ann, "leave_group")
    sim.run(1)
    shown = [f">>> Bob: m{i}" for i in range(bound)]
    refused = ">>> 3 more private messages were not delivered: your queue was full (the senders were told)"
    assert mark("Ann") == [">>> Leave group chat g", *shown, refused]
    sim.type(bob, "send Ann after")
    sim.run(1)
    assert mark("Ann")[-1] == ">>> Bob: after"


def test_queue_bound_in_bytes_and_a_fresh_queue_after_leaving():
    sim = SimNet()
    ann, bob = sim.online("Ann", "Bob")
    sim.in_group([ann])
    limits = Limits()
    text = "é" * 2000  # 4,000 bytes of UTF-8 in 2,000 characters: the bound counts bytes
    fit = limits.queue_bytes // 4000
    assert fit < limits.queue_messages
    mark = Mark(sim)
    for _ in range(fit + 1):
        sim.type(bob, f"send Ann {text}")
    sim.run(5)
    assert mark("Bob") == [">>> Message received by Ann."] * fit + [FULL]
    assert len(ann.queued) == fit
    sim.type(ann, "leave_group")
    sim.run(1)
    assert mark("Ann")[1:-1] == [f">>> Bob: {text}"] * fit
    sim.type(ann, "join_group g")
    sim.run(1)
    sim.type(bob, "send Ann short")
    sim.run(1)
    assert mark("Bob")[-1] == ">>> Message received by Ann.", "emptied when printed"


def test_retransmitted_refused_message_is_refused_again_not_queued():
    sim = SimNet()
    ann, bob = sim.online("Ann", "Bob")
    sim.in_group([ann])
    bound = Limits().queue_messages
    for i in range(bound):
        sim.type(bob, f"send Ann m{i}")
    sim.run(5)
    # Bob's first try of the next one reaches Ann, and its answer is lost: Bob tries again.
    sim.fault = dropping(lambda p, src, dst: src == sim.addr(ann) and kind(p) == "ack", first=1)
    mark = Mark(sim)
    sim.type(bob, "send Ann one more")
    sim.run(5)
    assert mark("Bob") == [FULL]
    sim.type(ann, "leave_group")
    sim.run(1)
    assert mark("Ann")[bound + 1 :] == [">>> 1 more private message was not delivered: your queue was full (the senders were told)"]


def test_group_messages_before_the_join_answer_are_held_up_to_the_bound():
    """Group messages that beat the join answer are held, at most the hold's bound; those past
    it are not acknowledged, so the server sends them again and they are shown then."""
    client = registered_client()
    bound = Limits().hold_messages
    client.command("join_group g", 0.1)
    (join,) = [decode(e.data) for e in client.drain(0.1) if isinstance(e, Send)]

    def grp_msg(msg_id: int, now: float) -> None:
        data = ChatHeader(type="grp_msg", msg_id=msg_id, token=TOKEN, sender="server") / GrpMsg(group="g", seq=msg_id - 99, origin="x", text=f"t{msg_id}")
        client.receive(bytes(data), SERVER, now)

    for i in range(bound + 5):
        grp_msg(100 + i, 0.2)
    client.handle_timer(0.3)
    acked = {m for p in (decode(e.data) for e in client.drain(0.3) if isinstance(e, Send)) for m in [p.payload.ack_id, *(x.id for x in p.payload.also)]}
    assert acked == set(range(100, 100 + bound)), "held ones acknowledged, the others not"
    assert client.drops["group message, no room to hold"] == 5 and len(client._order) == bound
    client.receive(bytes(ChatHeader(type="ack", msg_id=9, token=join.token, sender="server") / Ack(ack_id=join.msg_id, status="ok", seq=1)), SERVER, 0.4)
    grp_msg(100 + bound, 0.6)  # the server's retransmission of the first one not acknowledged
    client.handle_timer(0.7)
    effects = client.drain(0.7)
    assert shown(effects) == [">>> Entered group g successfully"] + [f">>> (g) Group_Message x: t{100 + i}" for i in range(bound + 1)]
    assert [decode(e.data).payload.ack_id for e in effects if isinstance(e, Send)] == [100 + bound]


# -- the server restarted and forgot us -------------------------------------------------------------------


@pytest.mark.parametrize(
    "group_mode, command",
    [
        (False, "create_group x"),
        (False, "list_groups"),
        (False, "join_group x"),
        (True, "send_group hi"),
        (True, "list_members"),
        (True, "leave_group"),
    ],
)
def test_request_refused_as_not_registered_registers_again(group_mode, command):
    sim = SimNet()
    ann, bob = sim.online("Ann", "Bob")
    if group_mode:
        sim.in_group([ann])
        sim.type(bob, "send Ann kept")
        sim.run(1)
    sim.restart_server()
    mark = Mark(sim)
    sim.type(ann, command)
    sim.run(1)
    queued = [">>> Bob: kept"] if group_mode else []
    lines = mark("Ann")
    assert lines[:1 + len(queued)] == [FORGOTTEN, *queued], "one line, then what group mode held"
    assert WELCOME in lines and "Ann" not in sim.exits
    assert ann.registered and ann.group is None, "a new session starts outside any group"
    assert set(ann.table) == {"Ann"} and ann.table_version == sim.server.version, "the new server's table, afresh"
    sim.type(ann, "create_group after")
    sim.run(1)
    assert mark("Ann")[-1] == ">>> Group after created by Server.", "the client goes on"


def test_the_name_taken_meanwhile_is_refused_when_registering_again():
    sim = SimNet()
    (ann,) = sim.online("Ann")
    sim.restart_server()
    sim.client("Ann", label="Ann elsewhere")  # takes the name at the new server first
    sim.run(1)
    sim.type(ann, "list_groups")
    sim.run(10)
    assert sim.lines["Ann"][-2:] == [FORGOTTEN, ">>> Someone has already used this name. Try another one."]
    assert sim.exits["Ann"] == 1


def test_registering_again_resets_the_replay_floor_for_the_servers_datagrams():
    """A restarted server draws its message ids from a new random point, which may be "older"
    than the ids the client forgot long ago from the old one: they must not be refused as replays."""
    sim = SimNet()
    ann, bob = sim.online("Ann", "Bob")
    sim.in_group([ann, bob])
    for i in range(3):
        sim.type(bob, f"send_group old {i}")
        sim.run(30)  # the ids acknowledged age out: Ann's floor rises to the newest of them
    floor = ann.net._acks[SERVER].floor
    assert floor is not None
    server = sim.restart_server()
    server.net._next_id = (floor - 1000) % 2**32  # the new server's ids fall below that floor
    for client in (ann, bob):
        sim.type(client, "list_members")
        sim.run(5)
    sim.in_group([ann, bob], group="h")
    sim.type(bob, "send_group new")
    sim.run(5)
    assert sim.lines["Ann"][-1] == ">>> (h) Group_Message Bob: new"
    assert ann.drops["replayed"] == 0


def test_client_the_server_marked_offline_is_told_and_exits():
    sim = SimNet()
    ann, cat = sim.online("Ann", "Cat")
    # Ann cannot reach Cat, and Cat's answers to the server are lost: the probe fails
    sim.fault = dropping(
        lambda p, src, dst: (src == sim.addr(ann) and dst == sim.addr(cat))
        or (src == sim.addr(cat) and dst == SERVER and kind(p) == "ack")
    )
    sim.type(ann, "send Cat hello?")
    sim.run(10)
    assert ">>> Client Cat did not answer the server's probe, marked offline" in sim.lines["server"]
    assert sim.lines["Cat"][-2:] == [
        ">>> The server marked this client offline (it did not answer the server's probe)",
        ">>> Exiting",
    ]
    assert sim.exits["Cat"] == 1


# -- holes found by breaking the code on purpose (issue 11) ------------------------------------------

BOB = ("10.0.0.2", 7002)


def from_server(client: ClientLogic, type_name: str, msg_id: int, payload=None, now: float = 1.0) -> list[str]:
    """Deliver a datagram from the server; return the lines the client shows."""
    pkt = ChatHeader(type=type_name, msg_id=msg_id, token=TOKEN, sender="server")
    client.receive(bytes(pkt if payload is None else pkt / payload), SERVER, now)
    return shown(client.drain(now))


def typed(client: ClientLogic, line: str, now: float):
    """Type a command; return the one request it sends."""
    client.command(line, now)
    (request,) = [decode(e.data) for e in client.drain(now) if isinstance(e, Send)]
    return request


def row_table(version: int, base: int = 0, **row) -> Table:
    """A table update with one row, Bob's at BOB unless ``row`` says otherwise."""
    fields = {"client": "Bob", "ip": BOB[0], "port": BOB[1], "online": 1, "session": 5, **row}
    return Table(version=version, base=base, entries=[Entry(**fields)])


def client_knowing_bob(online: int = 1, session: int = 5) -> ClientLogic:
    """A registered Ann whose table lists Bob at BOB with ``session``."""
    client = registered_client()
    from_server(client, "table", 11, row_table(1, online=online, session=session), now=0.1)
    return client


def from_bob(client: ClientLogic, msg_id: int, text: str, now: float = 1.0, session: int = 5, addr=BOB):
    """Deliver a private message in Bob's name; return the lines shown and the ids acked to ``addr``."""
    data = bytes(ChatHeader(type="pri_msg", msg_id=msg_id, sender="Bob", port=addr[1]) / PriMsg(session=session, text=text))
    client.receive(data, addr, now)
    effects = client.drain(now)
    acked = [decode(e.data).payload.ack_id for e in effects if isinstance(e, Send) and e.addr == addr]
    return shown(effects), acked


@pytest.mark.parametrize(
    "case, online, session, addr",
    [
        ("another session of Bob's", 1, 6, BOB),
        ("Bob listed offline", 0, 5, BOB),
        ("another address", 1, 5, ("10.0.0.3", 7002)),
    ],
)
def test_private_message_the_table_does_not_vouch_for_is_ignored(case, online, session, addr):
    client = client_knowing_bob(online=online)
    assert from_bob(client, 50, "trust me", session=session, addr=addr) == ([], []), "not shown, not acked"
    assert client.drops["unknown sender"] == 1


def test_private_message_older_than_one_already_shown_is_ignored():
    client = client_knowing_bob()
    assert from_bob(client, 50, "first") == ([">>> Bob: first"], [50])
    assert from_bob(client, 49, "older, not a retransmission") == ([], [])
    assert client.drops["replayed"] == 1
    assert from_bob(client, 51, "next") == ([">>> Bob: next"], [51])


def test_the_latest_private_message_replayed_after_its_ack_is_forgotten_is_not_shown_again():
    client = client_knowing_bob()
    assert from_bob(client, 50, "once", now=1.0) == ([">>> Bob: once"], [50])
    assert from_bob(client, 50, "once", now=1.5) == ([], [50]), "a retransmission: acked again, shown once"
    assert from_bob(client, 50, "once", now=100.0) == ([], []), "the remembered ack has expired: a replay"
    assert client.drops["replayed"] == 1


def test_over_long_private_message_from_a_hand_made_peer_is_ignored():
    client = client_knowing_bob()
    over = "é" * (MAX_TEXT_BYTES // 2) + "!"  # one byte over the limit
    assert from_bob(client, 50, over) == ([], [])
    assert client.drops["oversized"] == 1
    assert from_bob(client, 51, over[:-1]) == ([">>> Bob: " + over[:-1]], [51])


def test_group_message_for_another_group_is_not_shown_in_group_mode():
    client = registered_client()
    join = typed(client, "join_group g", 0.1)
    from_server(client, "ack", 12, Ack(ack_id=join.msg_id), now=0.2)
    assert client.group == "g"
    hi = {"origin": "Cat", "text": "hi"}
    assert from_server(client, "grp_msg", 13, GrpMsg(group="h", **hi), now=1.0) == [], "late or misdirected"
    assert from_server(client, "grp_msg", 14, GrpMsg(group="g", **hi), now=2.0) == [">>> (g) Group_Message Cat: hi"]


def test_ctrl_c_with_a_private_message_in_flight_and_a_slow_dereg_answer():
    """The send is dropped at Ctrl+C: even if the dereg answer comes after the send's tries
    would have run out, there is no 'No ACK' and no kick."""
    sim = SimNet()
    ann, bob = sim.online("Ann", "Bob")
    sim.crash(bob)
    sim.type(ann, "send Bob are you there")
    sim.run(0.7)
    sim.fault = dropping(lambda p, src, dst: src == SERVER and dst == sim.addr(ann) and kind(p) == "ack", first=4)
    sim.shutdown(ann)
    sim.run(5)
    assert sim.exits["Ann"] == 0 and sim.lines["Ann"][-1] == ">>> You are Offline. Bye."
    assert len(sim.sends("dereg")) == 5, "the answer came only to the last try"
    assert not any("No ACK" in line or "Report" in line for line in sim.lines["Ann"])
    assert sim.sends("kick") == []


def test_datagrams_to_peers_never_carry_the_session_token():
    """The token is the client's secret with the server: a peer that saw it could act in its name."""
    sim = SimNet()
    ann, bob = sim.online("Ann", "Bob")
    sim.type(ann, "send Bob hi")
    sim.type(bob, "send Ann hello")
    sim.run(1)
    peers = {sim.addr(ann), sim.addr(bob)}
    between = [p for t, s, d, p, _ in sim.sent if s in peers and d in peers]
    assert sorted(kind(p) for p in between) == ["ack", "ack", "pri_msg", "pri_msg"]
    tokens = {ann.net.token, bob.net.token}
    assert not tokens & {p.token for p in between}, "a nonce instead, echoed by the ack"
    nonces = {p.msg_id: p.token for p in between if kind(p) == "pri_msg"}
    assert {p.payload.ack_id: p.token for p in between if kind(p) == "ack"} == nonces and 0 not in nonces.values()
    to_server = [p for t, s, d, p, _ in sim.sent if s in peers and d == SERVER and kind(p) != "reg"]
    assert to_server and all(p.token != 0 for p in to_server), "what goes to the server after registering carries it"


def test_the_servers_burst_is_not_rate_limited_but_a_peers_is():
    """A busy group brings thousands of group messages at once: refusing them would leave
    them unacknowledged and get the member removed.  Peers are held to the limit."""
    client = registered_client()
    burst = int(Limits().burst) + 500  # more than any one peer may send at once

    def header(msg_id: int, sender: str) -> dict:
        return {"msg_id": msg_id, "port": 0, "token": TOKEN, "sender": sender}

    for msg_id in range(100, 100 + burst):
        client.receive(encode("probe", header(msg_id, "server"), None), SERVER, 1.0)
    acked = {parse(e.data).payload.ack_id for e in client.drain(1.0) if isinstance(e, Send)}
    assert len(acked) == burst and client.drops["rate-limited"] == 0
    for msg_id in range(100, 100 + burst):
        client.receive(encode("pri_msg", header(msg_id, "Zed"), {"session": 0, "text": "x"}), BOB, 1.0)
    assert client.drops["rate-limited"] == 500


def test_a_group_message_held_for_a_join_is_shown_once_not_again_at_the_next_join():
    client = registered_client()
    join = typed(client, "join_group g", 1.0)
    early = GrpMsg(group="g", origin="Cat", text="early")
    assert from_server(client, "grp_msg", 20, early) == [], "forwarded before the answer to the join: held"
    shown = from_server(client, "ack", 21, Ack(ack_id=join.msg_id))
    assert shown == [">>> Entered group g successfully", ">>> (g) Group_Message Cat: early"]
    leave = typed(client, "leave_group", 2.0)
    from_server(client, "ack", 30, Ack(ack_id=leave.msg_id), now=2.0)
    assert client.group is None
    join = typed(client, "join_group g", 3.0)
    assert from_server(client, "ack", 40, Ack(ack_id=join.msg_id), now=3.0) == [">>> Entered group g successfully"]


def test_typed_bytes_that_are_not_utf8_are_sent_with_replacement_characters():
    """A terminal in another encoding: Python hands the line over with lone surrogates,
    which cannot be encoded into a datagram."""
    sim = SimNet()
    ann, bob = sim.online("Ann", "Bob")
    sim.type(ann, "send Bob caf\udce9 ok")  # b"caf\xe9 ok" read with surrogateescape
    sim.run(1)
    assert sim.lines["Bob"][-1] == ">>> Ann: caf\ufffd ok"
    assert sim.lines["Ann"][-1] == ">>> Message received by Bob."


def test_a_peer_that_registered_again_is_heard_from_its_first_message():
    """Bob's new process numbers its messages from a new random start, maybe below the last
    one shown from his old session: that is no replay."""
    client = client_knowing_bob(session=5)
    assert from_bob(client, 5000, "old session") == ([">>> Bob: old session"], [5000])
    from_server(client, "table", 12, row_table(2, base=1, session=6), now=2.0)
    assert from_bob(client, 17, "new session", session=6, now=2.5) == ([">>> Bob: new session"], [17])


def test_private_message_ids_that_wrap_around_are_new():
    client = client_knowing_bob()
    assert from_bob(client, 2**32 - 1, "last id") == ([">>> Bob: last id"], [2**32 - 1])
    assert from_bob(client, 1, "after the wrap") == ([">>> Bob: after the wrap"], [1])


def test_a_table_marking_us_offline_during_dereg_does_not_spoil_the_goodbye():
    """The server may take us offline (a probe it sent went unanswered) just as we deregister."""
    client = registered_client()
    dereg = typed(client, "dereg Ann", 1.0)
    shown = from_server(client, "table", 12, row_table(1, client="Ann", ip="10.0.0.1", port=7001, online=0), now=1.1)
    shown += from_server(client, "ack", 13, Ack(ack_id=dereg.msg_id), now=1.2)
    assert shown[-1] == ">>> You are Offline. Bye." and client.exit_status == 0
    assert not any("marked this client offline" in line for line in shown)


def test_private_message_before_the_registration_is_answered_is_ignored():
    """The table can arrive before the answer to our registration (reordered, or the answer lost)."""
    client = ClientLogic("Ann", SERVER, 7001, RetryPolicy(), random.Random(1))
    client.start(0.0)
    client.drain(0.0)
    from_server(client, "table", 11, row_table(1), now=0.1)
    assert from_bob(client, 50, "too early") == ([], []), "not shown before the welcome; Bob tries again"
    assert client.drops["unknown sender"] == 1


# -- a blind spoofer cannot answer for the server or a peer, nor speak as the server ------------------


@pytest.mark.parametrize("token", [0, TOKEN + 1], ids=["no token", "another token"])
def test_server_datagrams_without_the_clients_token_are_refused(token):
    """From the server's address (easy to forge) but without our token: a table that would
    freeze ours (version 0x7fffffff), rows that redirect a peer, a probe, a group message."""
    client = client_knowing_bob()
    client.command("join_group g", 0.2)
    join = [decode(e.data) for e in client.drain(0.2) if isinstance(e, Send)][-1]
    from_server(client, "ack", 30, Ack(ack_id=join.msg_id, status="ok"), now=0.3)
    forged = [
        ("table", row_table(0x7FFFFFFF, ip="10.6.6.6", port=666)),
        ("table", row_table(2, base=1, ip="10.6.6.6", port=666)),
        ("probe", None),
        ("grp_msg", GrpMsg(group="g", origin="Mallory", text="forged")),
    ]
    for msg_id, (type_name, payload) in enumerate(forged, 40):
        pkt = ChatHeader(type=type_name, msg_id=msg_id, token=token, sender="server")
        client.receive(bytes(pkt if payload is None else pkt / payload), SERVER, 0.4)
    assert client.drain(0.4) == [], "nothing shown, nothing acknowledged"
    assert client.drops["forged"] == 4
    assert client.table_version == 1 and client.table["Bob"].addr == BOB
    assert from_server(client, "table", 50, row_table(2, base=1, port=BOB[1] + 1), now=0.5) == []
    assert client.table_version == 2 and client.table["Bob"].addr == (BOB[0], BOB[1] + 1), "real updates still apply"


def test_a_group_message_stamped_for_another_member_is_refused():
    client = registered_client()
    client.command("join_group g", 0.1)
    (join,) = [decode(e.data) for e in client.drain(0.1) if isinstance(e, Send)]
    from_server(client, "ack", 30, Ack(ack_id=join.msg_id, status="ok"), now=0.2)
    other_member = ChatHeader(type="grp_msg", msg_id=31, token=0xB0B, sender="server") / GrpMsg(group="g", origin="Cy", text="for Bob")
    client.receive(bytes(other_member), SERVER, 0.3)
    assert client.drain(0.3) == [] and client.drops["forged"] == 1
    assert from_server(client, "grp_msg", 31, GrpMsg(group="g", origin="Cy", text="for Ann"), now=0.4) == [
        ">>> (g) Group_Message Cy: for Ann"]


@pytest.mark.parametrize("token", [0, TOKEN + 1], ids=["no token", "another token"])
def test_an_answer_from_the_servers_address_without_the_requests_token_is_ignored(token):
    """A forged not_registered would make the client exit; it answers nothing."""
    client = registered_client()
    request = typed(client, "list_groups", 0.1)
    forged = ChatHeader(type="ack", msg_id=60, token=token, sender="server") / Ack(ack_id=request.msg_id, status="not_registered")
    client.receive(bytes(forged), SERVER, 0.2)
    assert client.drain(0.2) == [] and client.exit_status is None
    assert client.drops["forged ack"] == 1
    assert from_server(client, "ack", 61, Ack(ack_id=request.msg_id, status="ok"), now=0.3) == [
        ">>> No available group right now"]


def test_a_reg_ack_that_does_not_echo_the_regs_nonce_is_ignored():
    client = ClientLogic("Ann", SERVER, 7001, RetryPolicy(), random.Random(1))
    client.start(0.0)
    (reg,) = [decode(e.data) for e in client.drain(0.0) if isinstance(e, Send)]
    for token in (0, reg.token ^ 1):
        forged = ChatHeader(type="reg_ack", msg_id=1, token=token, sender="server") / RegAck(ack_id=reg.msg_id, token=66, session=6)
        client.receive(bytes(forged), SERVER, 0.1)
    assert client.drain(0.1) == [] and client.net.token == 0 and client.drops["forged ack"] == 2
    genuine = ChatHeader(type="reg_ack", msg_id=2, token=reg.token, sender="server") / RegAck(ack_id=reg.msg_id, token=9, session=4)
    client.receive(bytes(genuine), SERVER, 0.2)
    assert client.net.token == 9


def test_a_forged_ack_from_a_silent_peers_address_does_not_deliver_the_message():
    """Bob is gone; an ack in his name without the message's nonce must not make Ann print
    'Message received by Bob.'"""
    sim = SimNet()
    ann, bob = sim.online("Ann", "Bob")
    sim.crash(bob)
    mark = Mark(sim)
    sim.type(ann, "send Bob are you there")
    sim.run(0.1)
    ((_, pri),) = sim.sends("pri_msg", src=sim.addr(ann))
    for token in (0, pri.token ^ 1):
        forged = ChatHeader(type="ack", msg_id=77, token=token, sender="Bob") / Ack(ack_id=pri.msg_id, status="ok")
        sim.inject(bytes(forged), sim.addr(bob), sim.addr(ann))
    sim.run(5)
    assert mark("Ann")[:2] == [">>> No ACK from Bob, message not delivered", ">>> Report this issue to server"]
    assert ann.drops["forged ack"] == 2


def test_a_private_message_for_another_session_is_refused():
    """A captured message replayed to a third client, or to the receiver after it restarted
    (a new session), names a session that is not the receiver's: not shown, not acked."""
    client = client_knowing_bob()
    client.session = 0x1234
    data = ChatHeader(type="pri_msg", msg_id=70, token=0xC0FFEE, sender="Bob", port=BOB[1]) / PriMsg(session=5, to_session=0x4321, text="for Cy")
    client.receive(bytes(data), BOB, 1.0)
    assert client.drain(1.0) == [] and client.drops["for another session"] == 1
    data.payload.to_session = 0x1234
    data.msg_id = 71
    client.receive(bytes(data), BOB, 1.1)
    effects = client.drain(1.1)
    assert shown(effects) == [">>> Bob: for Cy"]
    (ack,) = [decode(e.data) for e in effects if isinstance(e, Send)]
    assert ack.payload.ack_id == 71 and ack.token == 0xC0FFEE, "the ack echoes the message's nonce"


def test_a_private_message_names_the_receivers_session_and_carries_a_fresh_nonce():
    client = client_knowing_bob(session=0xB0B5)
    first, second = typed(client, "send Bob one", 1.0), None
    from_bob_ack = ChatHeader(type="ack", msg_id=80, token=first.token, sender="Bob") / Ack(ack_id=first.msg_id, status="ok")
    client.receive(bytes(from_bob_ack), BOB, 1.1)
    assert shown(client.drain(1.1)) == [">>> Message received by Bob."]
    second = typed(client, "send Bob two", 1.2)
    assert first.payload.to_session == second.payload.to_session == 0xB0B5
    assert first.token not in (0, second.token, client.net.token)


def test_table_versions_are_compared_serially_so_they_may_wrap_around():
    client = registered_client()
    from_server(client, "table", 90, row_table(0x7FFFFFFF, base=0), now=0.1)
    from_server(client, "table", 91, row_table(0xFFFFFFFE, base=0x7FFFFFFF, port=BOB[1] + 1), now=0.2)
    assert client.table_version == 0xFFFFFFFE and client.table["Bob"].addr == (BOB[0], BOB[1] + 1)
    from_server(client, "table", 92, row_table(1, base=0xFFFFFFFE, port=BOB[1] + 2), now=0.3)
    assert client.table_version == 1 and client.table["Bob"].addr == (BOB[0], BOB[1] + 2), "the next one, wrapped"
    from_server(client, "table", 93, row_table(0xFFFFFFFF, base=0, port=BOB[1] + 3), now=0.4)
    assert client.table_version == 1 and client.table["Bob"].addr == (BOB[0], BOB[1] + 2), "an older one is not applied"


def test_a_group_message_replayed_after_its_id_is_forgotten_is_not_shown_again():
    """The server's message ids grow: once an acknowledged id is forgotten (it came a memory
    ago or more, long after its last retransmission), a copy of it or of any older id is a
    replay, even with this client's own token."""
    client = registered_client()
    client.command("join_group g", 0.1)
    (join,) = [decode(e.data) for e in client.drain(0.1) if isinstance(e, Send)]
    from_server(client, "ack", 30, Ack(ack_id=join.msg_id, status="ok", seq=1), now=0.2)
    memory = 4 * client.net.policy.window
    times = {100: 1.0, 101: 1.0 + memory + 0.1, 102: 1.0 + 2 * memory + 0.2}
    for msg_id, now in times.items():
        assert from_server(client, "grp_msg", msg_id, GrpMsg(group="g", seq=msg_id - 99, origin="Cy", text=f"m{msg_id}"), now=now) == [
            f">>> (g) Group_Message Cy: m{msg_id}"]
    later = times[102] + 0.1
    for msg_id in (100, 99):
        replay = ChatHeader(type="grp_msg", msg_id=msg_id, token=TOKEN, sender="server") / GrpMsg(group="g", seq=4, origin="Cy", text="again")
        client.receive(bytes(replay), SERVER, later)
        assert client.drain(later) == [], "neither shown nor acknowledged"
    assert client.drops["replayed"] == 2
    assert from_server(client, "grp_msg", 101, GrpMsg(group="g", seq=2, origin="Cy", text="m101"), now=later) == []
    assert client.drops["replayed"] == 2, "still remembered: acknowledged again, not shown"


# -- one order per group (node/ordering.py) ---------------------------------------------------


def joined_client(first: int = 1):
    client = registered_client()
    join = typed(client, "join_group g", 0.1)
    assert from_server(client, "ack", 30, Ack(ack_id=join.msg_id, status="ok", seq=first), now=0.2) == [
        ">>> Entered group g successfully"]
    return client


def message(seq: int, text: str) -> GrpMsg:
    return GrpMsg(group="g", seq=seq, origin="Cy", text=text)


def group_message(client, msg_id: int, seq: int, text: str, now: float) -> tuple[list[str], set[int]]:
    """Deliver group message number ``seq``; the lines shown and the message ids acknowledged
    (an ack may wait a few ms to go with others: the time is let pass)."""
    client.receive(bytes(ChatHeader(type="grp_msg", msg_id=msg_id, token=TOKEN, sender="server") / message(seq, text)), SERVER, now)
    effects = client.drain(now)
    client.handle_timer(now + 0.01)
    effects += client.drain(now + 0.01)
    answers = [decode(e.data) for e in effects if isinstance(e, Send)]
    acked = {m for p in answers if kind(p) == "ack" for m in (p.payload.ack_id, *(x.id for x in p.payload.also))}
    return shown(effects), acked


def test_a_copy_that_comes_after_the_hold_is_neither_shown_nor_acknowledged():
    """Showing it then would break the order; not acknowledging it keeps the server's count true."""
    client = joined_client()
    assert group_message(client, 101, 2, "two", now=1.0) == ([], {101})
    hold = client.net.policy.window + client.net.policy.timeout
    client.handle_timer(1.0 + hold)
    assert group_message(client, 102, 3, "three", now=1.0 + hold) == (
        [">>> (g) Group_Message Cy: two", ">>> (g) Group_Message Cy: three"], {102})
    assert group_message(client, 100, 1, "one", now=1.1 + hold) == ([], set())
    assert client.drops["group message too late"] == 1


def test_leaving_shows_what_was_held_in_order():
    client = joined_client(first=5)
    for msg_id, seq in ((101, 8), (100, 7)):
        assert from_server(client, "grp_msg", msg_id, message(seq, f"m{seq}"), now=1.0) == []
    leave = typed(client, "leave_group", 1.1)
    assert from_server(client, "ack", 31, Ack(ack_id=leave.msg_id, status="ok"), now=1.2) == [
        ">>> (g) Group_Message Cy: m7", ">>> (g) Group_Message Cy: m8", ">>> Leave group chat g"]


def test_messages_from_before_the_join_are_acknowledged_not_shown():
    """A copy of a message the server sent to this client's previous membership of the group."""
    client = joined_client(first=10)
    assert group_message(client, 100, 9, "old", now=1.0) == ([], {100})
    assert group_message(client, 101, 10, "new", now=1.2) == ([">>> (g) Group_Message Cy: new"], {101})


def test_numbers_wrap_around():
    last = 2**32 - 1
    assert next_seq(last) == 1
    client = joined_client(first=last)
    assert from_server(client, "grp_msg", 101, message(1, "after"), now=1.0) == []
    assert from_server(client, "grp_msg", 100, message(last, "last"), now=1.1) == [
        ">>> (g) Group_Message Cy: last", ">>> (g) Group_Message Cy: after"]


def test_a_member_holds_at_most_the_bound_behind_a_gap():
    """Past ``Limits.hold_messages`` a message that must wait is not acknowledged (the server sends it
    again); once the gap fills, everything held comes out in order, and the retransmission too."""
    client = joined_client(first=1)
    bound = Limits().hold_messages
    acked = set()
    for seq in range(2, bound + 3):
        lines, more = group_message(client, 100 + seq, seq, f"m{seq}", now=1.0 + seq / 1000)
        assert lines == []
        acked |= more
    acked |= group_message(client, 102, 2, "m2", now=2.1)[1] - {102}  # lets the last acks go (102 is a copy)
    assert acked == {100 + seq for seq in range(2, bound + 2)}, "the held ones acknowledged, not the last"
    assert len(client._order) == bound and client.drops["group message, no room to hold"] == 1
    lines, _ = group_message(client, 101, 1, "m1", now=2.5)
    assert lines == [f">>> (g) Group_Message Cy: m{seq}" for seq in range(1, bound + 2)]
    lines, acked = group_message(client, 100 + bound + 2, bound + 2, f"m{bound + 2}", now=2.6)
    assert lines == [f">>> (g) Group_Message Cy: m{bound + 2}"] and acked == {100 + bound + 2}
