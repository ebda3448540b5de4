"""Structure-aware fuzzing: datagrams that are right in every field but one, from
registered sessions (valid token, fresh message ids) at the server, and from the
server's own address at a client, during a live chat.  Each field of each message type
in turn (found from the layer's ``fields_desc``, see tests/structured.py) takes boundary,
out-of-range and lying values.  No exception, every datagram counted or answered,
every refused one counted as malformed, and the chat goes on afterwards.

At the logic level on the simulated network (seconds), then against real processes:
a real server, and a real client whose server is a real ServerLogic in this process
that sends the hostile datagrams from its own socket."""

from __future__ import annotations

import asyncio
import random
import threading
import time

import pytest

from node.effects import Send
from node.reliable import is_newer
from node.runtime import open_node
from node.server import ServerLogic
from node.session import State
from proto import MSG_TYPES, STATUS_CODES, TYPE_CODES, ProtocolError
from proto.fastpath import parse
from tests.simnet import SERVER, SimNet
from tests.procs import HOST, WAIT
from tests.shown import shown
from tests.security_tools import Peer, ReceiveQueues, drain, finish
from tests.structured import OUTSIDE, datagram, hostile_variants, registered_sessions

SEED = 20241130
ID_BYTES = slice(4, 8)  # the header's msg_id and token: where stamp() writes a session's own
TOKEN_BYTES = slice(10, 18)
TOWARDS_SERVER = sorted(TYPE_CODES)  # every type: the server must cope with those it never expects
FROM_SERVER = sorted(TYPE_CODES)


def refused(data: bytes) -> bool:
    try:
        parse(data)
    except ProtocolError:
        return True
    return False


def refused_total(drops) -> int:
    """What a node refused as not its chat datagram: malformed, or of another protocol version
    (counted apart, and named once per peer)."""
    return drops["malformed"] + drops["other version"]


def expected_refused(what: str, data: bytes) -> bool:
    """Whether a node must count ``data`` as malformed: what the decoder refuses, and that
    includes every value outside its field's enum."""
    assert refused(data) or OUTSIDE not in what, f"{what}: accepted"
    return refused(data)


def stamp(data: bytes, what: str, msg_id: int, token: int | None) -> bytes:
    """``data`` with a fresh message id (and the session's current token), unless the
    variant is about that very field or was cut before it."""
    out = bytearray(data)
    if len(out) >= ID_BYTES.stop and not what.startswith("header.msg_id "):
        out[ID_BYTES] = msg_id.to_bytes(4, "big")
    if token is not None and len(out) >= TOKEN_BYTES.stop and not what.startswith("header.token "):
        out[TOKEN_BYTES] = token.to_bytes(8, "big")
    return bytes(out)


def follow_id(holder, what: str, data: bytes) -> None:
    """After a variant that moved the session's message id on (an accepted ``header.msg_id``),
    go on from there: the server takes older ids of the session for replays."""
    if what.startswith("header.msg_id ") and not refused(data):
        moved = int.from_bytes(data[ID_BYTES], "big")
        if is_newer(moved, holder.next_id):
            holder.next_id = moved if moved < 2**32 - 1 else 0


def variants(type_name: str, header: dict, payload: dict | None = None, rng: random.Random | None = None):
    """The hostile variants of one datagram, shuffled with ``rng`` (seeded) if given."""
    found = list(hostile_variants(datagram(type_name, header, payload)))
    if rng is not None:
        rng.shuffle(found)
    return found


# -- at the server's logic ---------------------------------------------------------------------------


class Session:
    """A registered session on the simulated network, speaking by hand."""

    def __init__(self, sim: SimNet, name: str, host: int):
        self.sim, self.name, self.addr = sim, name, (f"10.9.1.{host}", 7500 + host)
        self.next_id = 1
        self.token = 0

    def fresh_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def registered(self) -> bool:
        record = self.sim.server.clients.get(self.name)
        return record is not None and record.online and record.addr == self.addr and record.token == self.token

    def register(self) -> None:
        self.send(datagram("reg", {"msg_id": self.fresh_id(), "port": self.addr[1], "sender": self.name}))
        self.sim.run(0.01)
        self.token = self.answers("reg_ack")[-1].payload.token
        self.send(datagram("confirm", self.header()))  # the session starts when the server has our confirm
        self.sim.run(0.01)
        assert self.registered()

    def send(self, data: bytes) -> None:
        self.sim.inject(data, self.addr, SERVER)

    def header(self) -> dict:
        return {"msg_id": self.fresh_id(), "port": self.addr[1], "token": self.token, "sender": self.name}

    def answers(self, type_name: str | None = None) -> list:
        return [pkt for _, pkt in self.sim.sends(type_name, src=SERVER, dst=self.addr)]

    def answer_payload(self, type_name: str) -> dict | None:
        """For an ack or reg_ack: one naming the server's latest request to this session (a table
        update it never acknowledged, most likely still waiting for an answer)."""
        if type_name not in ("ack", "reg_ack"):
            return None
        requests = [pkt for _, pkt in self.sim.sends(src=SERVER, dst=self.addr) if MSG_TYPES[pkt.type] not in ("ack", "reg_ack")]
        return {"ack_id": requests[-1].msg_id} if requests else None

    def answered_since(self, mark: int) -> int:
        """How many datagrams the server sent this session since ``len(sim.sent)`` was ``mark``."""
        return sum(1 for _, src, dst, _, _ in self.sim.sent[mark:] if dst == self.addr)


def live_chat(sim: SimNet):
    """Ann, Bob and Cid registered, Ann and Bob in group g."""
    ann, bob, cid = sim.online("Ann", "Bob", "Cid")
    sim.in_group([ann, bob])
    return ann, bob, cid


def chat_goes_on(sim: SimNet, ann, bob, cid, k: int) -> None:
    """A private message, a group message, the lists: each shown as it should be."""
    def said(node, line: str) -> bool:
        return line in sim.lines[node.name]

    for node in (ann, bob):
        if node.group != "g":  # (an answer in the fuzz may have said "not in the group")
            sim.type(node, "join_group g")
    sim.run(1)
    sim.type(cid, f"send Bob after fuzz {k}")
    sim.type(ann, f"send_group group after fuzz {k}")
    sim.type(cid, "list_groups")
    sim.run(2)
    assert said(cid, ">>> Message received by Bob."), sim.lines["Cid"][-10:]
    assert said(bob, f">>> (g) Group_Message Ann: group after fuzz {k}"), sim.lines["Bob"][-10:]
    assert said(ann, ">>> (g) Message received by Server.")
    assert said(cid, ">>> Available group chats:") and said(cid, ">>> g")
    sim.type(bob, "leave_group")
    sim.run(1)
    assert said(bob, f">>> Cid: after fuzz {k}"), sim.lines["Bob"][-10:]  # queued while in the group
    sim.type(bob, "join_group g")
    sim.run(1)
    sim.type(bob, "list_members")
    sim.run(1)
    assert sim.lines["Bob"][-3:] == [">>> (g) Members in the group g:", ">>> (g) Ann", ">>> (g) Bob"], sim.lines["Bob"][-5:]
    for node in (ann, bob, cid):
        assert node.exit_status is None


def test_server_logic_under_structured_fuzz_from_registered_sessions():
    sim = SimNet(seed=SEED)
    rng = random.Random(SEED)
    ann, bob, cid = live_chat(sim)
    mal, eve = Session(sim, "Mal", 1), Session(sim, "Eve", 2)
    for session in (mal, eve):
        session.register()
    mal.send(datagram("join_group", mal.header(), {"group": "g"}))  # Mal's group requests reach a group
    sim.run(0.1)
    server = sim.server
    kinds, sent, refused_count = set(), 0, 0
    for type_name in TOWARDS_SERVER:
        for session in (mal, eve):
            for what, data in variants(type_name, session.header(), session.answer_payload(type_name), rng):
                if not session.registered():  # a dereg or a reg among the variants ended the session
                    session.register()
                data = stamp(data, what, session.fresh_id(), session.token)
                before_drops, mark = sum(server.drops.values()), len(sim.sent)
                malformed = refused_total(server.drops)
                session.send(data)
                follow_id(session, what, data)
                sim.run(0.002)  # 500 a second: below the per-source rate limit
                if expected_refused(what, data):
                    refused_count += 1
                    assert refused_total(server.drops) == malformed + 1, what
                elif parse(data).type != TYPE_CODES["ack"]:  # (an ack is counted as stale, or it answered a request)
                    assert sum(server.drops.values()) > before_drops or session.answered_since(mark), (
                        f"{type_name}: {what}: neither counted nor answered")
                sent += 1
                kinds.add(type_name)
        if type_name == "send_group":
            chat_goes_on(sim, ann, bob, cid, 1)  # during the fuzz, too
    chat_goes_on(sim, ann, bob, cid, 2)
    print(f"\n{sent} hostile datagrams, {refused_count} refused; server drops {dict(server.drops)}")
    assert kinds == set(TOWARDS_SERVER)
    assert refused_total(server.drops) == refused_count > sent // 3
    assert server.drops["unexpected type"] > 0 and server.drops["stale ack"] > 0
    assert all(isinstance(v, int) for v in server.drops.values())


# -- at a client's logic, from the server's address ---------------------------------------------------


def ids_behind(server_net):
    """Message ids for datagrams in the server's name: far behind its own (which grow), so that a
    client acknowledging them still takes the server's next ones as new."""
    base = server_net._next_id - 2**30
    return ((base + i) % 2**32 or 1 for i in range(2**30))


def server_header(bob) -> dict:
    """The header of what the server sends Bob: his token (the token of the server's requests
    to him, and the one its answers to his requests echo)."""
    return {"port": SERVER[1], "token": bob.net.token, "sender": "server"}


def from_server_payload(type_name: str, bob, ack_id: int) -> dict | None:
    """Plausible payloads of what the server sends: a table update that applies to Bob's copy
    (a row of someone new, not of anyone chatting), a group message for Bob's group, an
    answer naming ``ack_id``."""
    if type_name == "table":
        return {"version": bob.table_version + 1, "base": bob.table_version,
                "entries": [{"client": "Zed", "ip": "127.0.0.1", "port": 7999, "online": 1, "session": 5}]}
    if type_name == "grp_msg":
        return {"group": "g", "origin": "Ann", "text": "hello"}
    if type_name in ("ack", "reg_ack"):
        return {"ack_id": ack_id}
    return None


LIST_REQUESTS = ("list_members", "list_groups")
# Answers that rightly end the client when they answer its request ("the server no longer
# knows this client"): sent naming no request of Bob's instead.
ENDING = {f"ack.status = {STATUS_CODES['not_registered']}"}


def outstanding_list_request(sim: SimNet, bob) -> int:
    """Have Bob ask for a list (the request kept from the server): the id to answer."""
    sim.type(bob, "list_members" if bob.group else "list_groups")
    (_, pkt), = [(t, p) for t, p in sim.sends(src=sim.addr(bob)) if MSG_TYPES[p.type] in LIST_REQUESTS][-1:]
    return pkt.msg_id


def test_client_logic_under_structured_fuzz_from_the_servers_address():
    sim = SimNet(seed=SEED)
    rng = random.Random(SEED)
    ann, bob, cid = live_chat(sim)
    bob_addr = sim.addr(bob)
    # While his answers are being fuzzed, Bob's list requests do not reach the server: the
    # hostile acks are the only answers (his retransmissions too; he would give up after 2.5 s).
    kept_back = lambda pkt, src, dst, s: [] if src == bob_addr and MSG_TYPES[pkt.type] in LIST_REQUESTS else [0.0]  # noqa: E731
    ids = ids_behind(sim.server.net)
    sent = refused_count = 0
    for type_name in FROM_SERVER:
        asking = type_name == "ack"  # (a reg_ack answering a list request: see the test after this one)
        sim.fault = kept_back if asking else None
        ack_id = outstanding_list_request(sim, bob) if asking else 1
        header = {**server_header(bob), "msg_id": 0}
        found = list(enumerate(variants(type_name, header, from_server_payload(type_name, bob, ack_id))))
        rng.shuffle(found)
        for index, (what, data) in found:
            if asking and what not in ENDING:
                if bob.state is State.IDLE:  # a variant answered the request: ask again, answer that one
                    ack_id = outstanding_list_request(sim, bob)
                # The same variant (by place: its label may name the old id) of an answer to the new request
                what, data = variants(type_name, header, from_server_payload(type_name, bob, ack_id))[index]
            data = stamp(data, what, next(ids), None)
            before = (sum(bob.drops.values()), len(sim.sends(src=bob_addr)), len(sim.lines["Bob"]))
            malformed = refused_total(bob.drops)
            sim.inject(data, SERVER, bob_addr)
            sim.run(0.03)  # longer than the ack delay: a grp_msg's ack has gone
            if expected_refused(what, data):
                refused_count += 1
                assert refused_total(bob.drops) == malformed + 1, what
            else:
                after = (sum(bob.drops.values()), len(sim.sends(src=bob_addr)), len(sim.lines["Bob"]))
                assert after != before, f"{type_name}: {what}: neither counted, answered nor shown"
            assert bob.exit_status is None, (what, sim.lines["Bob"][-5:])
            sent += 1
        if asking:
            sim.fault = None
            sim.run(1)  # a request still outstanding reaches the server now
    print(f"\n{sent} hostile datagrams, {refused_count} refused; Bob's drops {dict(bob.drops)}")
    assert refused_total(bob.drops) == refused_count > sent // 3
    chat_goes_on(sim, ann, bob, cid, 1)


def test_client_logic_given_a_reg_ack_for_a_list_request():
    sim = SimNet(seed=SEED)
    ann, bob, cid = live_chat(sim)
    sim.fault = lambda pkt, src, dst, s: [] if MSG_TYPES[pkt.type] in LIST_REQUESTS else [0.0]
    ack_id = outstanding_list_request(sim, bob)
    sim.inject(datagram("reg_ack", {**server_header(bob), "msg_id": 0x7000_0000}, {"ack_id": ack_id}), SERVER, sim.addr(bob))
    sim.run(0.03)
    assert bob.drops["wrong answer"] == 1, bob.drops  # a list request takes an ack, never a reg_ack
    sim.fault = None
    chat_goes_on(sim, ann, bob, cid, 1)


# -- real processes ------------------------------------------------------------------------------------


def test_server_process_under_structured_fuzz_from_registered_sessions(cluster, peers):
    """Two registered sessions send every variant of every type at a real server while
    Ann, Bob and Cid chat; no traceback, each refused datagram counted as malformed, every
    command of the chat answered as without the fuzz."""
    rng = random.Random(SEED)
    server = cluster.server()
    ann, bob, cid = cluster.clients(["Ann", "Bob", "Cid"], server)
    to = (HOST, server.port)
    sessions = registered_sessions(peers, to)
    ann.sendline("create_group g")
    ann.expect_line(">>> Group g created by Server.")
    refused_count = sent = 0
    for k, type_name in enumerate(TOWARDS_SERVER):
        for peer in sessions:
            found = variants(type_name, {"msg_id": 0, "port": peer.addr[1], "token": peer.token, "sender": peer.name}, rng=rng)
            for i, (what, data) in enumerate(found):
                data = stamp(data, what, peer.new_id(), peer.token)
                peer.send(data, to)
                follow_id(peer, what, data)
                refused_count += expected_refused(what, data)
                sent += 1
                if i % 50 == 49:
                    keep_session(peer, to)  # a barrier too: the server has read all sent before
            keep_session(peer, to)
        step = k % 3
        if step == 0:
            cid.sendline(f"send Ann fuzzed {k}")
            cid.expect_line(">>> Message received by Ann.")
            ann.expect_line(f">>> Cid: fuzzed {k}")
        elif step == 1:
            bob.sendline("list_groups")
            bob.expect_lines(">>> Available group chats:", ">>> g")
        else:
            ann.sendline("join_group g")
            ann.expect_line(">>> Entered group g successfully")
            ann.sendline("list_members")
            ann.expect_line(">>> (g) Members in the group g:")
            ann.sendline("leave_group")
            ann.expect_line(">>> Leave group chat g")
        drain(server, ann, bob, cid)
    for proc in (ann, bob, cid):
        finish(proc)
        assert proc.status == 0
    counts = finish(server)
    print(f"\n{sent} hostile datagrams, {refused_count} refused; server closing counts {dict(counts)}")
    assert server.status == 0 and "Traceback" not in server.text
    assert refused_total(counts) == refused_count > sent // 3, counts
    assert "rate-limited" not in counts, "the fuzz was meant to stay below the rate limit"


def keep_session(peer: Peer, to: tuple) -> None:
    """Register again: the answer comes once the server has read everything sent before (a
    barrier), and the session is whole again whatever the variants did to it (a dereg, a new
    reg, a message id far ahead)."""
    peer.register(peer.name, to)


class FuzzingServer:
    """A real ServerLogic that also sends hostile datagrams, a few at a time, to one client from
    its own socket: the client cannot tell them from the server's own."""

    BATCH = 16
    QUEUE_LIMIT = 32 * 1024  # bytes waiting at the client before the next batch

    def __init__(self):
        self.logic = ServerLogic()
        self.lines: list[str] = []
        self.hostile: list[bytes] = []
        self.target: tuple | None = None
        self.sent = 0
        self.queues = ReceiveQueues()

    # the Logic interface, as the runtime drives it
    def receive(self, data, addr, now):
        self.logic.receive(data, addr, now)

    def get_timer(self):
        timer = self.logic.get_timer()
        if self.sent < len(self.hostile):
            soon = time.monotonic() + 0.002
            return soon if timer is None else min(timer, soon)
        return timer

    def handle_timer(self, now):
        self.logic.handle_timer(now)

    def drain(self, now):
        effects = self.logic.drain(now)
        if self.sent < len(self.hostile) and self.queues(self.target[1])[0] < self.QUEUE_LIMIT:
            batch = self.hostile[self.sent : self.sent + self.BATCH]
            self.sent += len(batch)
            effects += [Send(data, self.target) for data in batch]
        return effects

    def show(self, effect):
        self.lines.extend(shown(effect))


@pytest.fixture
def fuzzing_server():
    """A FuzzingServer on 127.0.0.1 in a thread of this process, stopped at the end."""
    fuzzer = FuzzingServer()
    ready = threading.Event()
    state: dict = {}

    async def serve():
        node, done = await open_node(fuzzer, fuzzer.show, (HOST, 0))
        state.update(loop=asyncio.get_running_loop(), node=node, done=done, port=node.sock.getsockname()[1])
        ready.set()
        try:
            await done
        finally:
            node.close()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    assert ready.wait(WAIT)
    fuzzer.port = state["port"]
    fuzzer.kick = lambda: state["loop"].call_soon_threadsafe(state["node"].pump)
    yield fuzzer
    state["loop"].call_soon_threadsafe(lambda: state["done"].done() or state["done"].set_result(0))
    thread.join(WAIT)
    fuzzer.queues.close()
    assert not thread.is_alive()


def test_client_process_under_structured_fuzz_from_its_servers_address(cluster, fuzzing_server):
    """A real client (Bob) chats with a real client (Ann) through a server that also sends him
    every variant of every type: no traceback, each refused datagram counted as malformed,
    his commands still succeed, and he deregisters cleanly."""
    rng = random.Random(SEED)
    server = type("Server", (), {"port": fuzzing_server.port})  # what cluster.clients needs of a server
    ann, bob = cluster.clients(["Ann", "Bob"], server)
    bob.sendline("create_group g")
    bob.expect_line(">>> Group g created by Server.")
    bob.sendline("join_group g")
    bob.expect_line(">>> Entered group g successfully")
    bob.sendline("leave_group")
    bob.expect_line(">>> Leave group chat g")
    hostile, ids = [], ids_behind(fuzzing_server.logic.net)
    for type_name in FROM_SERVER:
        payload = None
        if type_name == "table":  # a row of someone new: applies to Bob's copy without moving Ann
            version = fuzzing_server.logic.version
            payload = {"version": version + 1, "base": version,
                       "entries": [{"client": "Zed", "ip": HOST, "port": 7999, "online": 1, "session": 5}]}
        header = {"msg_id": 0, "port": fuzzing_server.port, "token": fuzzing_server.logic.clients["Bob"].token, "sender": "server"}
        for what, data in variants(type_name, header, payload, rng):
            hostile.append((what, stamp(data, what, next(ids), None)))
    refused_count = sum(expected_refused(what, data) for what, data in hostile)
    hostile = [data for _, data in hostile]
    fuzzing_server.target = (HOST, bob.port)
    fuzzing_server.hostile = hostile
    fuzzing_server.kick()
    k = 0
    while fuzzing_server.sent < len(hostile) or k < 2:  # the chat goes on while the fuzz lasts, and after
        k += 1
        ann.sendline(f"send Bob during fuzz {k}")
        ann.expect_line(">>> Message received by Bob.")
        bob.expect_line(f">>> Ann: during fuzz {k}")
        bob.sendline(f"send Ann reply {k}")
        bob.expect_line(">>> Message received by Ann.")
        bob.sendline("list_groups")
        bob.expect_lines(">>> Available group chats:", ">>> g")
        drain(ann, bob)
    counts = finish(bob)
    finish(ann)
    print(f"\n{len(hostile)} hostile datagrams, {refused_count} refused, {k} rounds; Bob's closing counts {dict(counts)}")
    assert bob.status == 0 and "Traceback" not in bob.text
    assert "\x1b[2J" not in bob.raw, "text from the network is shown as text"
    assert refused_total(counts) == refused_count > len(hostile) // 3, counts
