"""The server's logic on the simulated network (tests/simnet.py): fed hand-made datagrams by
fake clients (raw peers), and in multi-node flows with real client logic."""

from __future__ import annotations

import inspect
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.effects import Send
from node.events import (
    ClientDeregistered,
    ClientRegistered,
    GroupCreated,
    GroupMessageRelayed,
    GroupTableChanged,
    RegistrationRefused,
)
from node.names import SERVER_NAME
from node.reliable import RetryPolicy
from node.server import MAX_PENDING, PENDING_WINDOWS, ServerLogic
from node.versions import MAX_TOLD
from proto import (
    MAX_TEXT_BYTES, STATUSES, VERSION, Ack, ChatHeader, CreateGroup, JoinGroup, Kick, LeaveGroup, ListMembers,
    ListMore, MsgId, PriMsg, SendGroup, decode
)
from proto.codec import HEADER_MIN
from proto.fastpath import encode
from tests.simnet import SERVER, Raw, SimNet, assert_registered_again, dropping, kind, registering_with_confirm_lost
from tests.packets import PAYLOAD_STRATEGIES

# -- a server fed by hand ------------------------------------------------------------


class Fake(Raw):
    """A hand-driven client: builds requests and reads the server's answers to it."""

    def __init__(self, sim: SimNet, name: str, addr: tuple):
        super().__init__(sim, name, addr)
        self.token = 0

    def packet(self, type_name: str, payload=None, msg_id: int | None = None, token: int | None = None) -> bytes:
        msg_id = next(self.sim.ids) if msg_id is None else msg_id
        hdr = ChatHeader(type=type_name, msg_id=msg_id, port=self.addr[1], token=self.token if token is None else token, sender=self.name)
        return bytes(hdr if payload is None else hdr / payload)

    def ask(self, type_name: str, payload=None, **kw) -> str:
        """Send a request; return the status of the server's answer to it."""
        data = self.packet(type_name, payload, **kw)
        self.send(data)
        return STATUSES[self.answer_to(decode(data).msg_id).payload.status]

    def answer_to(self, msg_id: int):
        answers = [p for p in self.received() if kind(p) in ("ack", "reg_ack") and p.payload.ack_id == msg_id]
        assert answers, f"no answer to #{msg_id}"
        return answers[-1]

    def register(self, confirm: bool = True) -> str:
        """reg, then (if it was answered ok, and with ``confirm``) confirm with the new token:
        the status of the last answer."""
        data = self.packet("reg")
        self.send(data)
        answer = self.answer_to(decode(data).msg_id)
        status = STATUSES[answer.payload.status]
        if status != "ok" or not confirm:
            return status
        self.token = answer.payload.token
        return self.ask("confirm")

    def claim(self, owner: "Fake | None" = None) -> str:
        """Register a name whose owner is listed online elsewhere: the server answers the
        confirm once it has probed the owner, which ``owner`` answers (None: nobody does).
        The status of the last answer."""
        data = self.packet("reg")
        self.send(data)
        answer = self.answer_to(decode(data).msg_id)
        if STATUSES[answer.payload.status] != "ok":
            return STATUSES[answer.payload.status]
        self.token = answer.payload.token
        confirm = self.packet("confirm")
        self.send(confirm)
        if owner is not None:
            owner.ack(owner.received("probe")[-1])
        else:
            self.sim.run(self.sim.policy.window)
        return STATUSES[self.answer_to(decode(confirm).msg_id).payload.status]

    def ack(self, pkt, status: str = "ok") -> None:
        self.send(bytes(ChatHeader(type="ack", msg_id=next(self.sim.ids), sender=self.name, token=self.token) / Ack(ack_id=pkt.msg_id, status=status)))


def fake_client(h: SimNet, name: str, addr: tuple | None = None, register: bool = True) -> Fake:
    """A fake client of ``h``'s server (registered, unless told not to)."""
    client = Fake(h, name, addr or h.fresh_addr())
    if register:
        status = client.register()
        assert status == "ok", status
    return client


def row(name, addr, state="online") -> str:
    return f"| {name} | {addr[0]} | {addr[1]} | {state}"


# -- registration -------------------------------------------------------------------------


def test_registration_is_welcomed_with_a_token_and_a_table():
    h = SimNet()
    ann = fake_client(h, "Ann", register=False)
    assert ann.register() == "ok"
    assert ann.token != 0
    assert h.take_lines() == [">>> Client table updated.", row("Ann", ann.addr)]
    (table,) = ann.received("table")
    assert [(e.client, e.ip, e.port, e.online) for e in table.payload.entries] == [("Ann", *ann.addr, 1)]
    assert h.server.clients["Ann"].online


def test_the_session_events_say_who_registered_was_refused_and_left():
    h = SimNet()
    ann = fake_client(h, "Ann")
    impostor = fake_client(h, "Ann", addr=("10.0.0.99", 7000), register=False)
    assert impostor.claim(owner=ann) == "name_taken"
    assert ann.ask("dereg") == "ok"
    sessions = [e for e in h.events["server"] if isinstance(e, (ClientRegistered, RegistrationRefused, ClientDeregistered))]
    assert sessions == [ClientRegistered("Ann", ann.addr), RegistrationRefused("Ann", impostor.addr, "name_taken"),
                        ClientDeregistered("Ann")]


def test_name_taken_by_an_online_client_is_refused():
    h = SimNet()
    ann = fake_client(h, "Ann")
    ann.ack(ann.received("table")[-1])
    h.take_lines()
    impostor = fake_client(h, "Ann", addr=("10.0.0.99", 7000), register=False)
    assert impostor.claim(owner=ann) == "name_taken", "the owner answered the server's probe"
    assert h.server.clients["Ann"].addr != impostor.addr
    assert h.take_lines() == [], "a refusal changes no table"


def test_address_taken_by_another_online_client_is_refused():
    h = SimNet()
    ann = fake_client(h, "Ann")
    bob = fake_client(h, "Bob", addr=ann.addr, register=False)
    assert bob.register() == "addr_taken"
    assert "Bob" not in h.server.clients


@pytest.mark.parametrize("name", ["server", "a;b", "a b", "", "tab\there", "x" * 33])
def test_invalid_names_are_refused(name):
    h = SimNet()
    assert fake_client(h, name, register=False).register() == "bad_name"
    assert h.server.clients == {}


def test_offline_name_registers_again_from_a_new_address():
    h = SimNet()
    ann = fake_client(h, "Ann")
    assert ann.ask("dereg") == "ok"
    again = fake_client(h, "Ann", addr=("10.0.0.77", 7777), register=False)
    assert again.register() == "ok"
    assert h.server.clients["Ann"].addr == again.addr and h.server.clients["Ann"].online
    assert h.take_lines()[-2:] == [">>> Client table updated.", row("Ann", again.addr)]
    assert ann.ask("list_groups") == "not_registered", "the old session is over"


def test_address_freed_by_an_offline_client_stays_held_by_its_new_owner():
    """Ann leaves; Bob gets her old address; Ann comes back elsewhere: Bob still holds it."""
    h = SimNet()
    ann = fake_client(h, "Ann", addr=("10.0.0.5", 7000))
    ann.ask("dereg")
    fake_client(h, "Bob", addr=ann.addr)
    fake_client(h, "Ann", addr=("10.0.0.6", 7000))
    assert fake_client(h, "Cat", addr=ann.addr, register=False).register() == "addr_taken"
    assert h.server.by_addr[ann.addr] == "Bob"


def test_re_registration_starts_outside_any_group():
    h = SimNet()
    ann = fake_client(h, "Ann")
    ann.ask("create_group", CreateGroup(group="g"))
    ann.ask("join_group", JoinGroup(group="g"))
    ann.ask("dereg")
    fake_client(h, "Ann", addr=ann.addr)
    assert h.server.groups["g"] == {} and h.server.clients["Ann"].group is None


# -- registration proves the address ----------------------------------------------------------


def reg_only(fake: "Fake") -> object:
    """Send ``fake``'s reg, not its confirm: the reg_ack (its token kept in ``fake.token``)."""
    data = fake.packet("reg")
    fake.send(data)
    answer = fake.answer_to(decode(data).msg_id)
    fake.token = answer.payload.token
    return answer


def test_nothing_changes_until_the_confirm_comes():
    h = SimNet()
    bob = fake_client(h, "Bob")
    bob.ack(bob.received("table")[-1])
    h.take_lines()
    sent = len(h.sent)
    ann = fake_client(h, "Ann", register=False)
    assert STATUSES[reg_only(ann).payload.status] == "ok" and ann.token
    assert [kind(p) for _, _, _, p, _ in h.sent[sent:]] == ["reg_ack"], "the reg_ack and nothing else"
    assert "Ann" not in h.server.clients and h.server.version == 1 and h.take_lines() == []
    assert ann.ask("confirm") == "ok"
    assert h.server.clients["Ann"].token == ann.token and h.server.version == 2
    assert h.take_lines()[0] == ">>> Client table updated."
    assert [e.client for e in bob.received("table")[-1].payload.entries] == ["Ann"], "broadcast only now"


def test_a_forged_reg_from_a_live_clients_address_leaves_its_session():
    h = SimNet()
    ann, bob = make_group(h, "Ann", "Bob")
    version, sent = h.server.version, len(h.sent)
    forger = Fake(h, "Ann", ann.addr)  # the source address forged: the answer goes to Ann
    assert STATUSES[reg_only(forger).payload.status] == "ok"
    assert [(addr, kind(p)) for _, _, addr, p, _ in h.sent[sent:]] == [(ann.addr, "reg_ack")]
    assert h.server.version == version and h.take_lines() == [], "no change, nothing broadcast"
    # Ann's session goes on with her token, in her group.
    assert bob.ask("send_group", SendGroup(group="g", text="still there?")) == "ok"
    assert ann.received("grp_msg")[-1].payload.text == "still there?"
    assert ann.ask("list_members", ListMembers(group="g")) == "ok"
    # The forger never got the token, so its guess is a forgery: dropped, no answer.
    before = len(h.sent)
    h.deliver(forger.packet("confirm", token=forger.token ^ 1), ann.addr)
    assert len(h.sent) == before and h.server.drops["forged"] == 1
    assert h.server.clients["Ann"].token == ann.token


def test_the_confirm_replaces_the_old_session():
    h = SimNet()
    ann, bob = make_group(h, "Ann", "Bob")
    old = ann.token
    again = Fake(h, "Ann", ann.addr)
    reg_only(again)
    assert ann.ask("list_groups") == "ok", "the old session is valid while the new one waits"
    assert again.ask("confirm") == "ok"
    assert "Ann" not in h.server.groups["g"], "a new session starts outside any group"
    before = len(h.sent)
    h.deliver(again.packet("list_groups", token=old), ann.addr)
    assert len(h.sent) == before and h.server.drops["forged"] == 1, "the old token is dead"


def test_an_unconfirmed_registration_expires():
    h = SimNet()
    ann = fake_client(h, "Ann", register=False)
    reg_only(ann)
    h.run(PENDING_WINDOWS * h.server.net.policy.window + 0.01)
    assert ann.ask("confirm") == "not_registered"
    assert "Ann" not in h.server.clients and h.server.version == 0
    fake_client(h, "Bob")  # the next registration clears the expired one away
    assert h.server.drops["unconfirmed reg"] == 1


def test_confirm_without_a_registration_waiting_is_refused():
    h = SimNet()
    ann = fake_client(h, "Ann")
    stranger = Fake(h, "Zed", ("10.9.9.9", 7000))
    assert stranger.ask("confirm") == "not_registered"
    other = Fake(h, "Bob", ("10.9.9.10", 7000))
    reg_only(other)
    wrong_name = Fake(h, "Cat", other.addr)
    wrong_name.token = other.token
    assert wrong_name.ask("confirm") == "not_registered", "the registration waiting there is Bob's"
    assert set(h.server.clients) == {"Ann"} and ann.ask("list_groups") == "ok"


def test_pending_registrations_do_not_count_toward_max_clients():
    from node.limits import Limits

    h = SimNet()
    h.server.limits = Limits(max_clients=2)
    fake_client(h, "Ann")
    for i in range(20):  # never confirmed: forged sources, say
        assert STATUSES[reg_only(Fake(h, f"Ghost{i}", (f"10.8.0.{i}", 9))).payload.status] == "ok"
    assert fake_client(h, "Bob", register=False).register() == "ok"
    assert fake_client(h, "Cat", register=False).register() == "server_full"


def test_two_pending_registrations_of_one_name_the_first_confirm_wins():
    h = SimNet()
    first, second = Fake(h, "Ann", ("10.7.0.1", 7000)), Fake(h, "Ann", ("10.7.0.2", 7000))
    reg_only(first)
    reg_only(second)
    assert second.ask("confirm") == "ok"
    confirm = first.packet("confirm")
    first.send(confirm)
    second.ack(second.received("probe")[-1])  # the new owner is asked first, and answers
    assert STATUSES[first.answer_to(decode(confirm).msg_id).payload.status] == "name_taken"
    assert h.server.clients["Ann"].addr == second.addr


def test_pending_registrations_are_bounded():
    h = SimNet()
    fakes = [Fake(h, f"N{i}", (f"10.{i // 250}.{i % 250}.1", 7000)) for i in range(MAX_PENDING + 10)]
    for fake in fakes:
        reg_only(fake)
    assert len(h.server._pending) == MAX_PENDING
    assert h.server.drops["unconfirmed reg"] == 10
    assert fakes[0].ask("confirm") == "not_registered", "the oldest made room"
    assert fakes[-1].ask("confirm") == "ok"
    # A flood in many names from one address holds one entry.
    for i in range(50):
        reg_only(Fake(h, f"M{i}", ("10.99.0.1", 7000)))
    assert len(h.server._pending) == MAX_PENDING
    assert h.server.drops["unconfirmed reg"] == 10 + 49, "49 replaced"


def test_a_client_whose_registration_a_flood_pushed_out_registers_again_and_is_welcomed():
    sim = SimNet()
    ann = registering_with_confirm_lost(sim, "Ann")
    for i in range(MAX_PENDING):  # before Ann's confirm is sent again: hers is the oldest, pushed out
        reg_only(Fake(sim, f"N{i}", (f"10.{i // 250}.{i % 250}.1", 7000)))
    sim.run(3)
    assert_registered_again(sim, ann)


def test_an_unproven_address_gets_at_most_three_times_the_bytes_it_sent():
    """QUIC's anti-amplification rule: whatever arrives from an address that has not confirmed a
    registration (reg floods in new names, retransmitted regs, refused ones, requests of no
    session, stray confirms), the server sends it at most three times as many bytes."""
    h = SimNet()
    for i in range(30):  # a table worth sending
        fake_client(h, f"Member{i:02}")
    version = h.server.version
    victim = ("10.66.0.1", 4444)
    received = 0

    def send(data: bytes) -> None:
        nonlocal received
        received += len(data)
        h.deliver(data, victim)

    for i in range(200):
        fake = Fake(h, f"R{i}", victim)
        send(fake.packet("reg"))
        if i % 10 == 0:
            send(fake.packet("reg", msg_id=next(h.ids) - 1))  # a retransmission
    shortest = Fake(h, "x", victim)
    retransmitted = shortest.packet("reg")
    for _ in range(20):
        send(retransmitted)
    for name in ("Member00", "", "server"):  # name taken, bad names
        send(Fake(h, name, victim).packet("reg"))
    send(Fake(h, "", victim).packet("list_groups"))  # 19 bytes, no session
    send(Fake(h, "R3", victim).packet("confirm"))  # no registration of that name waits there
    h.run(10)  # whatever retransmissions or table rounds there would be
    sent = sum(len(data) for _, _, addr, _, data in h.sent if addr == victim)
    assert 0 < sent <= 3 * received, (sent, received)
    assert h.server.version == version, "nothing registered, nothing broadcast"


def test_every_answer_to_an_unproven_address_fits_three_times_the_smallest_datagram():
    """Why the rule above holds for any traffic, not just the traffic tried: an address that has not
    confirmed only ever gets answers, one per datagram it sent, and these are their sizes (fixed-size
    fields: the values do not matter).  A version whose reg_ack grows past this must pad the reg."""
    header = {"msg_id": 1, "sender": SERVER_NAME}
    reg_ack = encode("reg_ack", header, {"ack_id": 1, "status": "ok", "token": 2**64 - 1, "session": 2**32 - 1})
    refusal = encode("ack", header, {"ack_id": 1, "status": "not_registered"})
    smallest = len(encode("list_groups", {"sender": ""}))  # a header with an empty name
    assert smallest == HEADER_MIN and len(encode("reg", {"sender": "x"})) == HEADER_MIN + 1
    assert max(len(reg_ack), len(refusal)) <= 3 * HEADER_MIN, (len(reg_ack), len(refusal))


# -- groups ----------------------------------------------------------------------------------


def test_create_group_and_its_failures():
    h = SimNet()
    ann = fake_client(h, "Ann")
    h.take_lines()
    assert ann.ask("create_group", CreateGroup(group="g1")) == "ok"
    assert h.take_lines() == [">>> Client Ann created group g1 successfully", ">>> Group table updated.", "| g1 | "]
    assert ann.ask("create_group", CreateGroup(group="g1")) == "group_exists"
    assert h.take_lines() == [">>> Client Ann creating group g1 failed, group already exists"]
    assert ann.ask("create_group", CreateGroup(group="a;b")) == "bad_request"
    assert list(h.server.groups) == ["g1"]
    assert h.server.clients["Ann"].group is None, "creating a group does not join it"


def test_list_groups():
    h = SimNet()
    ann = fake_client(h, "Ann")
    data = ann.packet("list_groups")
    h.deliver(data, ann.addr)
    assert list(ann.answer_to(decode(data).msg_id).payload.items) == []
    for g in ("g1", "g2"):
        ann.ask("create_group", CreateGroup(group=g))
    h.take_lines()
    data = ann.packet("list_groups")
    h.deliver(data, ann.addr)
    assert [i.value for i in ann.answer_to(decode(data).msg_id).payload.items] == ["g1", "g2"]
    assert h.take_lines() == [">>> Client Ann requested listing groups, current groups:", ">>> g1", ">>> g2"]


def test_join_group_and_its_failure():
    h = SimNet()
    ann = fake_client(h, "Ann")
    ann.ask("create_group", CreateGroup(group="g1"))
    h.take_lines()
    assert ann.ask("join_group", JoinGroup(group="nope")) == "no_such_group"
    assert h.take_lines() == [">>> Client Ann joining group nope failed, group does not exist"]
    assert ann.ask("join_group", JoinGroup(group="g1")) == "ok"
    assert h.take_lines() == [">>> Client Ann joined group g1", ">>> Group table updated.", "| g1 | Ann"]


def test_joining_another_group_leaves_the_first():
    h = SimNet()
    ann = fake_client(h, "Ann")
    for g in ("g1", "g2"):
        ann.ask("create_group", CreateGroup(group=g))
    ann.ask("join_group", JoinGroup(group="g1"))
    ann.ask("join_group", JoinGroup(group="g2"))
    assert h.server.groups == {"g1": {}, "g2": {"Ann": None}}


def make_group(h: SimNet, *names: str, group: str = "g"):
    fakes = [fake_client(h, n) for n in names]
    fakes[0].ask("create_group", CreateGroup(group=group))
    for f in fakes:
        assert f.ask("join_group", JoinGroup(group=group)) == "ok"
    h.take_lines()
    return fakes


def test_list_members_in_joining_order():
    h = SimNet()
    ann, bob, cat = make_group(h, "Ann", "Bob", "Cat")
    data = bob.packet("list_members", ListMembers(group="g"))
    h.deliver(data, bob.addr)
    assert [i.value for i in bob.answer_to(decode(data).msg_id).payload.items] == ["Ann", "Bob", "Cat"]
    assert h.take_lines() == [">>> Client Bob requested listing members of group g:", ">>> Ann", ">>> Bob", ">>> Cat"]


def test_send_group_reaches_every_other_member_only():
    h = SimNet()
    ann, bob, cat = make_group(h, "Ann", "Bob", "Cat")
    outsider = fake_client(h, "Dan")
    text = "hi; all\nsecond line é"
    assert ann.ask("send_group", SendGroup(group="g", text=text)) == "ok"
    assert GroupMessageRelayed("Ann", "g", text) in h.events["server"], "the text exactly as sent"
    assert ">>> Client Ann sent group message: hi; all\\nsecond line é" in h.take_lines(), "shown as data"
    for member in (bob, cat):
        (msg,) = member.received("grp_msg")
        assert (msg.payload.group, msg.payload.origin, msg.payload.text) == ("g", "Ann", text)
    assert ann.received("grp_msg") == [] and outsider.received("grp_msg") == []


def test_one_ack_from_a_member_answers_several_group_messages():
    h = SimNet()
    ann, bob, cat = make_group(h, "Ann", "Bob", "Cat")
    for text in ("one", "two", "three"):
        assert ann.ask("send_group", SendGroup(group="g", text=text)) == "ok"
    first, *rest = bob.received("grp_msg")
    batch = Ack(ack_id=first.msg_id, also=[MsgId(id=m.msg_id) for m in rest])
    h.deliver(bytes(ChatHeader(type="ack", msg_id=next(h.ids), sender="Bob", token=bob.token) / batch), bob.addr)
    for msg in cat.received("grp_msg"):
        cat.ack(msg)
    h.sent.clear()
    h.run(1.0)
    assert h.sends("grp_msg") == [], "nothing left to retransmit, to Bob or Cat"


def test_leave_group():
    h = SimNet()
    ann, bob = make_group(h, "Ann", "Bob")
    assert ann.ask("leave_group", LeaveGroup(group="g")) == "ok"
    assert h.take_lines() == [">>> Client Ann left group", ">>> Group table updated.", "| g | Bob"]
    bob.ask("send_group", SendGroup(group="g", text="x"))
    assert ann.received("grp_msg") == []


@pytest.mark.parametrize(
    "type_name, payload",
    [
        ("leave_group", LeaveGroup(group="g")),
        ("list_members", ListMembers(group="g")),
        ("send_group", SendGroup(group="g", text="x")),
    ],
)
def test_group_commands_from_a_non_member_answer_not_in_group(type_name, payload):
    h = SimNet()
    make_group(h, "Ann")
    bob = fake_client(h, "Bob")
    h.sent.clear()
    assert bob.ask(type_name, payload) == "not_in_group"
    assert h.sends("grp_msg") == []


def test_dereg_goes_offline_leaves_the_group_and_tells_the_others():
    h = SimNet()
    ann, bob = make_group(h, "Ann", "Bob")
    bob.ack(bob.received("table")[-1])
    h.sent.clear()
    assert ann.ask("dereg") == "ok"
    assert h.server.groups["g"] == {"Bob": None}
    assert not h.server.clients["Ann"].online
    lines = h.take_lines()
    assert ">>> Client table updated." in lines and row("Ann", ann.addr, "offline") in lines
    assert "| g | Bob" in lines
    (update,) = bob.received("table")
    assert [(e.client, e.online) for e in update.payload.entries] == [("Ann", 0)]
    assert ann.received("table") == [], "an offline client gets no more updates"


# -- retransmitted requests ---------------------------------------------------------------------


def test_retransmitted_request_is_processed_once_and_answered_again():
    h = SimNet()
    ann = fake_client(h, "Ann")
    h.take_lines()
    h.sent.clear()
    data = ann.packet("create_group", CreateGroup(group="g1"))
    h.deliver(data, ann.addr)
    h.now += 0.5
    h.deliver(data, ann.addr)
    acks = [sent for sent in h.sent if sent.dst == ann.addr and kind(sent.pkt) == "ack"]
    assert len(acks) == 2 and acks[0].data == acks[1].data, "the same answer, sent again"
    acks = [sent.pkt for sent in acks]
    assert STATUSES[acks[0].payload.status] == "ok", "not 'group_exists': processed once"
    assert h.take_lines().count(">>> Client Ann created group g1 successfully") == 1


def test_retransmitted_send_group_is_forwarded_once():
    h = SimNet()
    ann, bob = make_group(h, "Ann", "Bob")
    data = ann.packet("send_group", SendGroup(group="g", text="once"))
    for _ in range(3):
        h.deliver(data, ann.addr)
    assert len(bob.received("grp_msg")) == 1


def test_retransmitted_reg_gets_the_same_token():
    h = SimNet()
    ann = fake_client(h, "Ann", register=False)
    data = ann.packet("reg")
    h.deliver(data, ann.addr)
    h.deliver(data, ann.addr)
    first, second = ann.received("reg_ack")
    assert first.payload.token == second.payload.token != 0
    ann.token = first.payload.token
    assert ann.ask("confirm") == "ok"
    assert h.server.version == 1, "registered once"


# -- bad datagrams --------------------------------------------------------------------------------


def test_malformed_datagrams_are_counted_logged_once_and_not_fatal():
    h = SimNet()
    ann = fake_client(h, "Ann")
    h.take_lines()
    rng = random.Random(3)
    for _ in range(50):
        h.deliver(rng.randbytes(rng.randrange(40)), ("10.6.6.6", 666))
    assert h.server.drops["malformed"] == 50
    lines = h.take_lines()
    assert len(lines) == 1 and "malformed" in lines[0] and "10.6.6.6" in lines[0]
    assert ann.ask("create_group", CreateGroup(group="still")) == "ok"


def test_datagrams_of_another_version_are_named_once_per_peer_and_counted():
    h = SimNet()
    ann = fake_client(h, "Ann")
    h.take_lines()
    old = bytearray(ann.packet("list_groups"))
    old[2] = VERSION - 1
    for peer in (("10.5.0.1", 7771), ("10.5.0.2", 7772)):
        for _ in range(3):
            h.deliver(bytes(old), peer)
    assert h.take_lines() == [
        f">>> 10.5.0.1:7771 speaks chat protocol version {VERSION - 1}; this node speaks version {VERSION}",
        f">>> 10.5.0.2:7772 speaks chat protocol version {VERSION - 1}; this node speaks version {VERSION}",
    ]
    assert h.server.drops["other version"] == 6 and h.server.drops["malformed"] == 0
    assert not h.sends(dst=("10.5.0.1", 7771)), "no answer: it would not understand one"
    for i in range(MAX_TOLD + 50):  # many sources (forged, say): the lines stop, the count goes on
        h.deliver(bytes(old), ("10.5.1.1", 1024 + i))
    lines = h.take_lines()
    assert len(lines) == MAX_TOLD - 2 + 1 and "only counted" in lines[-1]
    assert h.server.drops["other version"] == 6 + MAX_TOLD + 50


@pytest.mark.parametrize("forgery", ["unknown name", "wrong token", "wrong address", "offline"])
def test_unauthenticated_requests_are_refused_and_counted(forgery):
    h = SimNet()
    ann = fake_client(h, "Ann")
    if forgery == "unknown name":
        liar = Fake(h, "Zed", ("10.0.0.66", 7000))
    elif forgery == "wrong token":
        liar = Fake(h, "Ann", ann.addr)
        liar.token = ann.token ^ 1
    elif forgery == "wrong address":
        liar = Fake(h, "Ann", ("10.0.0.66", 7000))
        liar.token = ann.token
    else:
        ann.ask("dereg")
        liar = ann
    h.take_lines()
    for _ in range(3):
        if forgery == "wrong token":
            # the right address with a wrong token is a forged source: answering would reach Ann
            before = len(h.sends(dst=ann.addr))
            h.deliver(liar.packet("create_group", CreateGroup(group="evil")), liar.addr)
            assert len(h.sends(dst=ann.addr)) == before
        else:
            assert liar.ask("create_group", CreateGroup(group="evil")) == "not_registered"
    assert "evil" not in h.server.groups
    assert h.server.drops["forged" if forgery == "wrong token" else "unregistered"] == 3
    assert len(h.take_lines()) == 1, "one log line per kind of problem"


def test_replayed_request_of_a_live_session_is_dropped():
    h = SimNet(idle_probe=0)  # a fake client answers no probe: 60 s silent would take it offline
    ann = fake_client(h, "Ann")
    first = ann.packet("create_group", CreateGroup(group="g1"))
    h.deliver(first, ann.addr)
    assert ann.ask("create_group", CreateGroup(group="g2")) == "ok"
    h.run(60)  # the remembered answer to the first request has expired
    h.take_lines()
    before = len(h.sent)
    h.deliver(first, ann.addr)
    assert len(h.sent) == before, "no answer and no effect"
    assert h.server.drops["replayed"] == 1
    assert ann.ask("create_group", CreateGroup(group="g3")) == "ok", "the session goes on"


def test_replayed_registration_is_dropped():
    h = SimNet()
    ann = fake_client(h, "Ann", register=False)
    reg = ann.packet("reg")
    h.deliver(reg, ann.addr)
    ann.token = ann.answer_to(decode(reg).msg_id).payload.token
    assert ann.ask("confirm") == "ok"
    assert ann.ask("dereg") == "ok"
    h.run(60)
    h.deliver(reg, ann.addr)
    assert not h.server.clients["Ann"].online, "a replayed registration registers nobody"
    assert h.server.drops["replayed"] == 1


def test_server_full_and_too_many_groups():
    from node.limits import Limits

    h = SimNet()
    h.server.limits = Limits(max_clients=2, max_groups=1)
    ann, bob = fake_client(h, "Ann"), fake_client(h, "Bob")
    cat = fake_client(h, "Cat", register=False)
    assert cat.register() == "server_full"
    assert ann.ask("create_group", CreateGroup(group="g1")) == "ok"
    assert ann.ask("create_group", CreateGroup(group="g2")) == "too_many_groups"
    assert ann.ask("dereg") == "ok"
    again = fake_client(h, "Ann", addr=("10.0.0.99", 7999), register=False)
    assert again.register() == "ok", "a known name may come back when the server is full"


def test_names_per_ip_quota_counts_the_rows_an_address_holds():
    """9,998 throwaway names from a few sockets of one host no longer fill the server: each name
    row counts against the IP address of its latest registration, online or offline."""
    from node.limits import Limits

    h = SimNet()
    h.server.limits = Limits(max_names_per_ip=3)
    host = "10.3.3.3"
    names = [fake_client(h, f"n{i}", addr=(host, 7000 + i)) for i in range(3)]
    for fake in names:
        assert fake.ask("dereg") == "ok"  # offline rows still hold their slots
    throwaway = fake_client(h, "n3", addr=(host, 7100), register=False)
    assert throwaway.register() == "quota", "a fourth name from the same address, from another port"
    assert "n3" not in h.server.clients
    assert fake_client(h, "n0", addr=(host, 7200), register=False).register() == "ok", "its own offline name: no new row"
    assert fake_client(h, "Bob", addr=("10.4.4.4", 7000), register=False).register() == "ok", "other addresses are not held back"
    # A name that moves to another address counts there: the first address gets a slot back.
    assert fake_client(h, "n1", addr=("10.4.4.4", 7001), register=False).register() == "ok"
    assert fake_client(h, "n3", addr=(host, 7300), register=False).register() == "ok"
    assert fake_client(h, "n4", addr=(host, 7301), register=False).register() == "quota"
    assert len(h.server._names_held) == 2
    assert h.server._names_held.held(host) == 3 and h.server._names_held.held("10.4.4.4") == 2


def test_quota_off_and_refused_registrations_hold_nothing():
    from node.limits import Limits

    h = SimNet()
    h.server.limits = Limits(max_names_per_ip=0, max_clients=5)
    owners = [fake_client(h, f"m{i}", addr=("10.5.5.5", 7000 + i)) for i in range(5)]
    assert fake_client(h, "m5", addr=("10.5.5.5", 7005), register=False).register() == "server_full"
    assert fake_client(h, "m0", addr=("10.5.5.5", 7006), register=False).claim(owner=owners[0]) == "name_taken"
    assert h.server._names_held.held("10.5.5.5") == 5 == len(h.server.clients)


def test_groups_per_ip_quota():
    from node.limits import Limits

    h = SimNet()
    h.server.limits = Limits(max_groups_per_ip=2)
    ann, ann2 = fake_client(h, "Ann", addr=("10.7.7.7", 7000)), fake_client(h, "Ann2", addr=("10.7.7.7", 7001))
    bob = fake_client(h, "Bob", addr=("10.8.8.8", 7000))
    assert ann.ask("create_group", CreateGroup(group="g1")) == "ok"
    assert ann.ask("create_group", CreateGroup(group="g1")) == "group_exists", "a refusal holds nothing"
    assert ann2.ask("create_group", CreateGroup(group="g2")) == "ok"
    h.take_lines()
    assert ann2.ask("create_group", CreateGroup(group="g3")) == "quota", "another socket of the same host"
    assert h.take_lines() == [">>> Client Ann2 creating group g3 failed, too many groups from 10.7.7.7"]
    assert bob.ask("create_group", CreateGroup(group="g3")) == "ok"
    assert list(h.server.groups) == ["g1", "g2", "g3"]
    assert ann.ask("join_group", JoinGroup(group="g3")) == "ok", "the others' groups stay usable"


def test_flood_from_one_source_is_rate_limited_without_hurting_others():
    h = SimNet()
    ann, bob = fake_client(h, "Ann"), fake_client(h, "Bob")
    flood = ann.packet("list_groups")
    for _ in range(5000):  # all at one instant: far beyond the burst
        h.deliver(flood, ("10.6.6.6", 666))
    assert h.server.drops["rate-limited"] >= 5000 - h.server.limits.burst
    assert bob.ask("create_group", CreateGroup(group="calm")) == "ok"


def test_unexpected_types_and_stale_acks_are_counted():
    h = SimNet()
    ann = fake_client(h, "Ann")
    h.deliver(ann.packet("pri_msg", PriMsg(text="to the server?")), ann.addr)
    h.deliver(ann.packet("probe"), ann.addr)
    assert h.server.drops["unexpected type"] == 2
    h.deliver(bytes(ChatHeader(type="ack", sender="Ann", token=ann.token) / Ack(ack_id=123456)), ann.addr)
    assert h.server.drops["stale ack"] == 1


# -- kick and probe ---------------------------------------------------------------------------------


def test_kick_makes_the_server_probe_the_target():
    h = SimNet()
    ann, bob = fake_client(h, "Ann"), fake_client(h, "Bob")
    assert ann.ask("kick", Kick(target="Bob")) == "ok"
    (probe,) = bob.received("probe")
    bob.ack(probe)
    h.run(5)
    assert bob.received("probe") == [probe], "answered: no retransmission"
    assert h.server.clients["Bob"].online


def test_unanswered_probe_marks_the_target_offline():
    h = SimNet()
    ann, bob = fake_client(h, "Ann"), fake_client(h, "Bob")
    ann.ask("kick", Kick(target="Bob"))
    h.take_lines()
    t0 = h.now
    h.run(5)
    probes = [(t, p) for t, _, addr, p, _ in h.sent if addr == bob.addr and kind(p) == "probe"]
    assert [t - t0 for t, _ in probes] == pytest.approx([0, 0.5, 1.0, 1.5, 2.0])
    assert not h.server.clients["Bob"].online
    assert row("Bob", bob.addr, "offline") in h.take_lines()


def test_kicks_of_unknown_offline_or_already_probed_clients():
    h = SimNet()
    ann, bob, cat = fake_client(h, "Ann"), fake_client(h, "Bob"), fake_client(h, "Cat")
    assert ann.ask("kick", Kick(target="Nobody")) == "no_such_user"
    assert ann.ask("kick", Kick(target="Bob")) == "ok"
    assert cat.ask("kick", Kick(target="Bob")) == "ok"
    assert len(bob.received("probe")) == 1, "one probe at a time"
    cat.ask("dereg")
    assert ann.ask("kick", Kick(target="Cat")) == "ok"
    assert cat.received("probe") == []


def test_a_client_can_be_probed_again_after_a_probe_ends():
    h = SimNet()
    ann, bob = fake_client(h, "Ann"), fake_client(h, "Bob")
    ann.ask("kick", Kick(target="Bob"))
    h.run(5)  # unanswered: Bob marked offline
    bob = fake_client(h, "Bob", addr=bob.addr)
    ann.ask("kick", Kick(target="Bob"))
    assert len(bob.received("probe")) == 6, "five tries of the first probe, then a new one"


def test_a_probe_of_an_old_session_does_not_touch_the_new_one():
    h = SimNet()
    ann, bob = fake_client(h, "Ann"), fake_client(h, "Bob")
    ann.ask("kick", Kick(target="Bob"))
    fake_client(h, "Bob", addr=bob.addr)  # Bob's process restarted on the same port, registered again
    h.take_lines()
    h.run(5)  # the old probe goes unanswered
    assert h.server.clients["Bob"].online and h.server.by_addr[bob.addr] == "Bob"
    assert not any("marked offline" in line for line in h.take_lines())


# -- table updates ------------------------------------------------------------------------------------


def test_table_updates_are_deltas_since_the_acked_version():
    h = SimNet()
    ann = fake_client(h, "Ann")
    ann.ack(ann.received("table")[-1])
    fake_client(h, "Bob")
    update = ann.received("table")[-1]
    assert update.payload.base == 1 and update.payload.version == 2
    assert [e.client for e in update.payload.entries] == ["Bob"]


def test_resync_answer_gets_the_whole_table():
    h = SimNet()
    ann = fake_client(h, "Ann")
    ann.ack(ann.received("table")[-1])
    fake_client(h, "Bob")
    ann.ack(ann.received("table")[-1], status="resync")
    full = ann.received("table")[-1]
    assert full.payload.base == 0 and full.payload.version == 2
    assert [e.client for e in full.payload.entries] == ["Ann", "Bob"]


def test_unacked_table_update_is_retransmitted_then_repaired_on_contact():
    h = SimNet()
    ann = fake_client(h, "Ann")
    t0 = h.now
    h.run(2.6)
    times = [t - t0 for t, _, addr, p, _ in h.sent if addr == ann.addr and kind(p) == "table"]
    assert times == pytest.approx([0, 0.5, 1.0, 1.5, 2.0])
    ann.ask("list_groups")
    assert len(ann.received("table")) == 6, "a client that missed an update gets it when it next asks"


def test_silent_client_gets_table_rounds_with_growing_pauses():
    h = SimNet(idle_probe=0)  # silent, and listed online all the same
    ann = fake_client(h, "Ann")
    t0 = h.now
    h.run(48)  # into the fifth round
    times = [t - t0 for t, _, addr, p, _ in h.sent if addr == ann.addr and kind(p) == "table"]
    rounds = [times[i] for i in range(0, len(times), 5)]
    # a round of 5 tries takes 2.5 s; then pauses of 2.5, 5, 10, 20 s
    assert rounds == pytest.approx([0, 5.0, 12.5, 25.0, 47.5])
    assert len(times) == 22  # the fifth round has sent two tries by now
    ann.ack(ann.received("table")[-1])
    h.run(120)
    assert len(ann.received("table")) == 22, "once acked, no more rounds"


# -- through the simulated network --------------------------------------------------------------------


def test_probe_after_kick_when_the_client_is_really_gone():
    sim = SimNet()
    ann, bob, cat = sim.online("Ann", "Bob", "Cat")
    sim.crash(bob)
    sim.type(ann, "send Bob hello?")
    sim.run(10)
    i = sim.lines["Ann"].index(">>> No ACK from Bob, message not delivered")
    assert sim.lines["Ann"][i + 1] == ">>> Report this issue to server"
    assert ">>> Client Bob did not answer the server's probe, marked offline" in sim.lines["server"]
    assert not sim.server.clients["Bob"].online
    for client in (ann, cat):
        assert client.table["Bob"].online is False
    assert sim.converged()


def test_probe_after_kick_when_only_the_path_from_the_reporter_is_broken():
    sim = SimNet()
    ann, bob, cat = sim.online("Ann", "Bob", "Cat")
    sim.fault = dropping(lambda p, src, dst: src == sim.addr(ann) and dst == sim.addr(bob))
    sim.type(ann, "send Bob hello?")
    sim.run(10)
    assert ">>> Report this issue to server" in sim.lines["Ann"]
    assert len(sim.sends("probe", dst=sim.addr(bob))) == 1, "Bob answered the first probe"
    assert sim.server.clients["Bob"].online
    assert all(c.table["Bob"].online for c in (ann, cat))
    assert not any("marked offline" in line for line in sim.lines["server"])


def test_group_member_that_never_acks_is_removed():
    sim = SimNet()
    ann, bob, cat = sim.online("Ann", "Bob", "Cat")
    sim.in_group([ann, bob, cat])
    sim.fault = dropping(lambda p, src, dst: src == sim.addr(cat) and kind(p) == "ack")
    sim.type(ann, "send_group anyone?")
    t0 = sim.now
    sim.run(5)
    tries = [t - t0 for t, _ in sim.sends("grp_msg", dst=sim.addr(cat))]
    assert tries == pytest.approx([0.001 + 0.5 * k for k in range(5)])  # the first after one network hop
    assert ">>> Client Cat not responsive, removed from g" in sim.lines["server"]
    assert list(sim.server.groups["g"]) == ["Ann", "Bob"]
    assert sim.lines["Cat"].count(">>> (g) Group_Message Ann: anyone?") == 1, "shown once, though sent five times"
    assert sim.lines["Bob"].count(">>> (g) Group_Message Ann: anyone?") == 1
    assert sim.server.clients["Cat"].online, "removed from the group, not from the table"


def test_group_member_that_misses_a_few_tries_stays():
    sim = SimNet()
    ann, bob = sim.online("Ann", "Bob")
    sim.in_group([ann, bob])
    sim.fault = dropping(lambda p, src, dst: kind(p) == "grp_msg", first=3)
    sim.type(ann, "send_group are you there")
    sim.run(5)
    assert len(sim.sends("grp_msg")) == 4
    assert sim.lines["Bob"].count(">>> (g) Group_Message Ann: are you there") == 1
    assert not any("not responsive" in line for line in sim.lines["server"])
    assert list(sim.server.groups["g"]) == ["Ann", "Bob"]


def test_lost_table_updates_are_repaired_and_tables_converge():
    sim = SimNet()
    (ann,) = sim.online("Ann")
    sim.fault = dropping(lambda p, src, dst: kind(p) == "table" and dst == sim.addr(ann))
    bob = sim.client("Bob")
    sim.run(5)  # every try of the update to Ann is lost
    assert "Bob" not in ann.table
    sim.fault = None
    sim.type(ann, "list_groups")
    sim.run(1)
    assert ann.table["Bob"].online and sim.converged()
    assert bob.table.keys() == {"Ann", "Bob"}


def test_lost_table_update_is_covered_by_the_next_one():
    sim = SimNet()
    (ann,) = sim.online("Ann")
    sim.fault = dropping(lambda p, src, dst: kind(p) == "table" and dst == sim.addr(ann), first=5)
    sim.client("Bob")
    sim.run(5)
    sim.client("Cat")  # the next change: its delta starts from what Ann acknowledged
    sim.run(1)
    assert ann.table.keys() == {"Ann", "Bob", "Cat"} and sim.converged()


def test_no_state_is_left_behind_after_a_conversation():
    sim = SimNet(idle_probe=0)  # the idle watch is a timer for as long as anyone is online
    ann, bob, cat = sim.online("Ann", "Bob", "Cat")
    sim.in_group([ann, bob, cat])
    sim.fault = lambda p, src, dst, sim: [0.0, 0.05]  # everything duplicated: replies get remembered twice over
    sim.type(ann, "send_group hello")
    sim.type(bob, "send Ann hi")
    sim.type(cat, "list_members")
    sim.run(3)
    sim.crash(cat)
    sim.type(bob, "send_group anyone")
    sim.run(60)
    for node in sim.nodes.values():
        assert node.net.pending_count == 0
        assert node.net.remembered_count == 0
        assert node.get_timer() is None
    assert not sim.server._probing
    assert ">>> Client Cat not responsive, removed from g" in sim.lines["server"]


# -- holes found by breaking the code on purpose (issue 11) ------------------------------------------


def test_the_latest_request_replayed_after_its_answer_is_forgotten_is_not_processed_again():
    """Not only an older id is a replay: so is the session's latest request itself, once its
    remembered answer has expired (a second forwarding would show the message twice)."""
    h = SimNet(idle_probe=0)  # fake clients answer no probe
    ann, bob = make_group(h, "Ann", "Bob")
    latest = ann.packet("send_group", SendGroup(group="g", text="once"))
    h.deliver(latest, ann.addr)
    for msg in bob.received("grp_msg"):
        bob.ack(msg)
    h.run(60)  # the remembered answer has expired
    h.sent.clear()
    h.deliver(latest, ann.addr)
    assert h.sent == [], "neither answered again nor forwarded again"
    assert h.server.drops["replayed"] == 1


def test_leave_group_naming_another_group_is_refused():
    h = SimNet()
    ann, bob = fake_client(h, "Ann"), fake_client(h, "Bob")
    for group, member in (("g1", ann), ("g2", bob)):
        ann.ask("create_group", CreateGroup(group=group))
        assert member.ask("join_group", JoinGroup(group=group)) == "ok"
    h.take_lines()
    assert ann.ask("leave_group", LeaveGroup(group="g2")) == "not_in_group"
    assert h.server.clients["Ann"].group == "g1" and h.server.groups == {"g1": {"Ann": None}, "g2": {"Bob": None}}
    assert h.take_lines() == [], "no 'left group' and no new group table"


def test_list_members_answers_with_the_askers_own_group_only():
    h = SimNet()
    ann, cat = make_group(h, "Ann", "Cat", group="g1")
    (bob,) = make_group(h, "Bob", group="g2")

    def listing(fake, group):
        data = fake.packet("list_members", ListMembers(group=group))
        h.deliver(data, fake.addr)
        answer = fake.answer_to(decode(data).msg_id)
        return STATUSES[answer.payload.status], [item.value for item in answer.payload.items]

    assert listing(ann, "g1") == ("ok", ["Ann", "Cat"])
    assert listing(bob, "g2") == ("ok", ["Bob"])
    assert listing(ann, "g2") == ("not_in_group", []), "another group's members are not for Ann"
    assert listing(ann, "nope") == ("not_in_group", []), "nor a group that does not exist"


@pytest.mark.parametrize("how", ["registers again from the same address", "deregisters"])
def test_an_ended_sessions_table_update_is_not_retransmitted(how):
    h = SimNet()
    ann = fake_client(h, "Ann")  # its first table update is in flight, never acknowledged
    old_ids = {p.msg_id for p in ann.received("table")}
    if how == "deregisters":
        assert ann.ask("dereg") == "ok"
    else:
        again = fake_client(h, "Ann", addr=ann.addr)
        again.ack(again.received("table")[-1])  # the new session acknowledges its own
    h.sent.clear()
    h.run(5)
    assert [p.msg_id for p in ann.received("table") if p.msg_id in old_ids] == []


def test_over_long_group_text_from_a_hand_made_client_is_refused():
    """The limit is in bytes of UTF-8: one byte over it, in two-byte characters, is refused."""
    h = SimNet()
    ann, bob = make_group(h, "Ann", "Bob")
    over = "é" * (MAX_TEXT_BYTES // 2) + "!"
    assert ann.ask("send_group", SendGroup(group="g", text=over)) == "bad_request"
    assert bob.received("grp_msg") == []
    assert not any("sent group message" in line for line in h.take_lines())
    assert ann.ask("send_group", SendGroup(group="g", text=over[:-1])) == "ok", "exactly the limit goes through"
    (msg,) = bob.received("grp_msg")
    assert msg.payload.text == over[:-1]


def test_a_client_back_on_the_same_address_starts_outside_its_old_group():
    """Bob's process died while he was in g and a new one registers from the same port."""
    h = SimNet()
    ann, bob = make_group(h, "Ann", "Bob")
    bob = fake_client(h, "Bob", addr=bob.addr)
    assert h.server.groups["g"] == {"Ann": None} and h.server.clients["Bob"].group is None
    h.sent.clear()
    assert ann.ask("send_group", SendGroup(group="g", text="who is here?")) == "ok"
    assert bob.received("grp_msg") == []


def test_registering_again_from_the_same_address_issues_a_new_token_and_session():
    h = SimNet()
    ann = fake_client(h, "Ann")
    old_token, old_session = ann.token, h.server.clients["Ann"].session
    again = fake_client(h, "Ann", addr=ann.addr)
    assert again.token != old_token and h.server.clients["Ann"].session != old_session
    h.take_lines()
    before = len(h.sent)
    h.deliver(again.packet("create_group", CreateGroup(group="stale"), token=old_token), ann.addr)
    assert len(h.sent) == before, "the old token from the right address is a forgery: no answer"
    assert "stale" not in h.server.groups and h.server.drops["forged"] == 1
    assert again.ask("create_group", CreateGroup(group="fresh")) == "ok"


def test_a_registration_of_an_earlier_session_replayed_from_the_current_address_is_refused():
    h = SimNet()
    ann = fake_client(h, "Ann", addr=("10.0.0.5", 7000), register=False)
    first = ann.packet("reg")
    h.deliver(first, ann.addr)
    ann.token = ann.answer_to(decode(first).msg_id).payload.token
    assert ann.ask("confirm") == "ok"
    assert ann.ask("dereg") == "ok"
    now = fake_client(h, "Ann", addr=("10.0.0.6", 7000))
    token = h.server.clients["Ann"].token
    h.sent.clear()
    h.deliver(first, now.addr)  # forged from where Ann is now
    assert h.sent == [] and h.server.drops["replayed"] == 1
    assert h.server.clients["Ann"].token == token, "the session goes on"
    assert now.ask("list_groups") == "ok"


def test_a_member_that_moved_to_another_group_is_not_removed_from_it():
    """Cat misses a group message of g, then moves to h before the server gives up on it."""
    h = SimNet()
    ann, cat = make_group(h, "Ann", "Cat")
    ann.ask("create_group", CreateGroup(group="h"))
    assert ann.ask("send_group", SendGroup(group="g", text="hello")) == "ok"  # Cat never acks it
    assert cat.ask("join_group", JoinGroup(group="h")) == "ok"
    h.take_lines()
    h.run(5)
    assert h.server.groups["h"] == {"Cat": None} and h.server.clients["Cat"].group == "h"
    assert not any("not responsive" in line for line in h.take_lines())


def test_a_flooding_source_is_served_again_after_a_quiet_spell():
    h = SimNet()
    ann = fake_client(h, "Ann")
    flood = ann.packet("list_groups")
    for _ in range(5000):  # all at one instant: the bucket is empty
        h.server.receive(flood, ann.addr, h.now)
    h.server.drain(h.now)  # thousands of answers to one request: not worth decoding
    assert h.server.drops["rate-limited"] >= 5000 - h.server.limits.burst
    h.run(2.0)  # refilled at the configured rate
    assert ann.ask("create_group", CreateGroup(group="later")) == "ok"


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(sorted(set(PAYLOAD_STRATEGIES) - {"reg", "dereg"})).flatmap(
    lambda kind_: st.tuples(st.just(kind_), PAYLOAD_STRATEGIES[kind_])), min_size=1, max_size=6))
def test_nonsense_requests_in_a_live_session_never_raise(requests):
    """Datagrams of every type with random fields, from a registered member's address and with
    its token: they pass the checks in front and reach the handlers (the process-level fuzz
    mostly stops at those checks).  Each is answered or dropped; the server goes on."""
    h = SimNet()
    ann, bob = make_group(h, "Ann", "Bob")
    for type_name, payload in requests:
        h.deliver(ann.packet(type_name, payload), ann.addr)
        h.run(0.1)
    assert bob.ask("list_groups") == "ok"


def test_list_more_naming_no_list_is_refused_not_raised():
    """A list code that names no message type (a KeyError in the handler once): the decoder
    refuses it, counted, and the session goes on."""
    h = SimNet()
    ann = fake_client(h, "Ann")
    before = len(h.sent)
    h.deliver(ann.packet("list_more", ListMore(list=99, start=0, group="g")), ann.addr)
    assert h.sent[before:] == [] and h.server.drops["malformed"] == 1
    assert ann.ask("list_groups") == "ok"


def test_request_ids_that_wrap_around_are_new():
    h = SimNet()
    ann = fake_client(h, "Ann", register=False)
    reg = ann.packet("reg", msg_id=2**32 - 3)  # a client whose ids start near the top
    h.deliver(reg, ann.addr)
    ann.token = ann.answer_to(decode(reg).msg_id).payload.token
    assert ann.ask("confirm", msg_id=2**32 - 2) == "ok"
    assert ann.ask("create_group", CreateGroup(group="g1"), msg_id=2**32 - 1) == "ok"
    assert ann.ask("create_group", CreateGroup(group="g2"), msg_id=1) == "ok", "after the wrap: not a replay"
    assert list(h.server.groups) == ["g1", "g2"] and h.server.drops["replayed"] == 0


@pytest.mark.parametrize("name", ["é" * 17, "bell\x07", "esc\x1b[31m", "nul\x00"], ids=["34 bytes", "bell", "escape", "nul"])
def test_names_are_counted_in_bytes_and_printable_only(name):
    """17 two-byte characters are 34 bytes, over the 32-byte limit; control characters would
    reach every terminal that prints the name."""
    h = SimNet()
    assert fake_client(h, name, register=False).register() == "bad_name"
    ann = fake_client(h, "Ann")
    assert ann.ask("create_group", CreateGroup(group=name)) == "bad_request"
    assert h.server.clients.keys() == {"Ann"} and h.server.groups == {}
    assert fake_client(h, "é" * 16, register=False).register() == "ok", "32 bytes fit"


# -- an answer echoes its request's token; the server's requests carry the receiver's --------------


def test_forged_acks_in_a_members_name_do_not_stop_its_retries():
    """Cat never acks; acks from Cat's address without Cat's token (none, or Bob's) are
    counted and change nothing: Cat is retried and removed as unresponsive."""
    sim = SimNet()
    ann, bob, cat = sim.online("Ann", "Bob", "Cat")
    sim.in_group([ann, bob, cat])
    sim.fault = dropping(lambda p, src, dst: src == sim.addr(cat) and kind(p) == "ack")
    sim.type(ann, "send_group anyone?")
    sim.run(0.1)
    ((_, copy),) = sim.sends("grp_msg", dst=sim.addr(cat))
    for token in (0, bob.net.token):
        forged = ChatHeader(type="ack", msg_id=5000 + token % 7, token=token, sender="Cat") / Ack(ack_id=copy.msg_id)
        sim.inject(bytes(forged), sim.addr(cat), SERVER)
    sim.run(5)
    assert len(sim.sends("grp_msg", dst=sim.addr(cat))) == 5, "retried as if no ack had come"
    assert ">>> Client Cat not responsive, removed from g" in sim.lines["server"]
    assert sim.server.drops["forged ack"] == 2
    assert list(sim.server.groups["g"]) == ["Ann", "Bob"]


def test_each_members_copy_of_a_group_message_carries_its_token_and_its_ack_echoes_it():
    sim = SimNet()
    ann, bob, cat = sim.online("Ann", "Bob", "Cat")
    sim.in_group([ann, bob, cat])
    sim.type(ann, "send_group hi")
    sim.run(1)
    copies = {dst: pkt for _, _, dst, pkt, _ in sim.sent if kind(pkt) == "grp_msg"}
    assert {dst: pkt.token for dst, pkt in copies.items()} == {sim.addr(bob): bob.net.token, sim.addr(cat): cat.net.token}
    (msg_id,) = {pkt.msg_id for pkt in copies.values()}
    acks = [(src, pkt.token) for _, src, dst, pkt, _ in sim.sent if dst == SERVER and kind(pkt) == "ack"
            and pkt.payload.ack_id == msg_id]
    assert sorted(acks) == sorted([(sim.addr(bob), bob.net.token), (sim.addr(cat), cat.net.token)])
    assert sim.server.drops["forged ack"] == 0


def test_a_forged_ack_of_a_table_update_leaves_it_in_flight():
    h = SimNet()
    ann = fake_client(h, "Ann")
    (table,) = ann.received("table")
    assert table.token == ann.token, "the server's requests carry the receiver's token"
    h.deliver(bytes(ChatHeader(type="ack", msg_id=1, token=ann.token ^ 1, sender="Ann") / Ack(ack_id=table.msg_id)), ann.addr)
    assert h.server.drops["forged ack"] == 1 and h.server.clients["Ann"].synced == 0
    h.run(0.6)
    assert len(ann.received("table")) == 2, "retransmitted"
    ann.ack(table)
    assert h.server.clients["Ann"].synced == h.server.version


def test_answers_echo_the_token_of_the_request():
    """So a client knows the answer comes from whoever got its request: a reg_ack echoes the
    reg's nonce, a not_registered the token of the request it refuses."""
    h = SimNet()
    ann = fake_client(h, "Ann", register=False)
    reg = ann.packet("reg", token=0xA11CE)
    h.deliver(reg, ann.addr)
    assert ann.answer_to(decode(reg).msg_id).token == 0xA11CE
    stranger = fake_client(h, "Zed", register=False)
    ask = stranger.packet("list_groups", token=0x5EC)
    h.deliver(ask, stranger.addr)
    answer = stranger.answer_to(decode(ask).msg_id)
    assert STATUSES[answer.payload.status] == "not_registered" and answer.token == 0x5EC


# -- the endpoint boundary: events in an outbox of the logic's own, the time told, randomness injected ----


def test_events_wait_in_the_logics_own_outbox_not_among_the_endpoints_datagrams():
    h = SimNet()
    ann = fake_client(h, "Ann")
    h.server.receive(ann.packet("create_group", CreateGroup(group="g")), ann.addr, h.now)
    assert h.server.net.effects and all(type(e) is Send for e in h.server.net.effects), "the endpoint holds datagrams"
    drained = h.server.drain(h.now)
    assert [type(e) for e in drained] == [Send, GroupCreated, GroupTableChanged], "datagrams first, then what happened"
    assert h.server.drain(h.now) == [], "each event once"


def test_a_round_of_table_updates_goes_at_the_time_of_the_drain():
    """drain(now) is told the time: the table update a registration causes goes out at the drain,
    and its retransmission is due a timeout after that, not after the datagram's arrival."""
    h = SimNet()
    ann = fake_client(h, "Ann", register=False)
    reg = ann.packet("reg")
    h.server.receive(reg, ann.addr, 0.0)
    (answer,) = [decode(e.data) for e in h.server.drain(0.0) if isinstance(e, Send)]
    confirm = ann.packet("confirm", token=answer.payload.token)
    h.server.receive(confirm, ann.addr, 1.0)
    sent = [kind(decode(e.data)) for e in h.server.drain(3.0) if isinstance(e, Send)]
    assert sent == ["ack", "table"]
    assert h.server.get_timer() == 3.0 + RetryPolicy().timeout


def test_session_tokens_come_from_the_injected_source():
    drawn = []

    def randbits(k: int) -> int:
        drawn.append(k)
        return 0 if k == 64 else 12345  # a token of 0 would be the token of nothing: it is never used

    h = SimNet(randbits=randbits)
    ann = fake_client(h, "Ann", register=False)
    assert ann.register(confirm=False) == "ok"
    (reg_ack,) = ann.received("reg_ack")
    assert drawn == [64, 32] and (reg_ack.payload.token, reg_ack.payload.session) == (1, 12345)


def test_the_default_token_source_is_unpredictable():
    tokens = set()
    default = inspect.signature(ServerLogic).parameters["randbits"].default  # (SimNet seeds its own)
    for _ in range(2):  # two servers with the same seeded rng
        h = SimNet(randbits=default)
        ann = fake_client(h, "Ann", register=False)
        ann.register(confirm=False)
        tokens.add(ann.received("reg_ack")[0].payload.token)
    assert len(tokens) == 2


def test_the_answers_a_server_remembers_are_bounded_by_its_parameter():
    h = SimNet(max_replies=4)
    ann = fake_client(h, "Ann")
    for _ in range(10):
        assert ann.ask("list_groups") == "ok"
    assert h.server.net.remembered_count == 4
