"""Durable state (issue 13, items 1 and 2), on the simulated network with the in-memory store
standing in for the state file: the rows the server writes, and a server rebuilt from them."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import Counter
from typing import Iterator

import pytest

from node.effects import Send
from node.events import ClientMarkedOffline, GroupMessage, GroupMessageRelayed, ServerForgotUs, StateResumed
from node.reliable import ID_BLOCK, is_newer
from node.server import ServerLogic
from node.runtime import STATE_LOST, Node
from node.store import COMMIT_WITHIN, MemoryStore, StoreError
from tests.simnet import SERVER, SimNet, assert_registered_again, dropping, kind, registering_with_confirm_lost


def stored(sim: SimNet, table: str) -> dict:
    return dict(sim.server._kept.store.rows(table))


def kept_sim(**options) -> SimNet:
    return SimNet(store=MemoryStore(), **options)


def restart(sim: SimNet, down: float = 0.2) -> ServerLogic:
    sim.crash_server()
    sim.run(down)
    return sim.restart_server()


def test_the_server_writes_clients_groups_members_and_its_next_number():
    sim = kept_sim()
    ann, bob = sim.online("Ann", "Bob")
    sim.in_group([ann, bob], "room")
    sim.type(ann, "send_group hello")
    sim.run(1)
    ann_record = sim.server.clients["Ann"]
    clients = stored(sim, "clients")
    assert clients[("Ann",)] == (*ann_record.addr, ann_record.session, ann_record.token.to_bytes(8, "big"), 1,
                                 " ".join(map(str, ann_record.reg_ids)), ann_record.changed)
    assert set(clients) == {("Ann",), ("Bob",)}
    assert stored(sim, "groups") == {("room",): (sim.addr(ann)[0], 2)}, "created by Ann; message 1 sent, 2 next"
    assert list(stored(sim, "members")) == [("room", "Ann"), ("room", "Bob")], "in joining order"
    assert stored(sim, "journal") == {}, "Bob acknowledged it: nothing left to deliver"
    msg_id, answer = stored(sim, "answers")[("Ann",)]
    assert kind_and_seq(answer) == ("ack", 1), "Ann's last request, send_group, and its answer (number 1)"
    meta = stored(sim, "meta")
    assert meta[("table_version",)] == (sim.server.version,)
    assert is_newer(meta[("next_id",)][0], sim.server.net._next_id - 1), "ids are reserved ahead of use"
    sim.type(bob, "leave_group")
    sim.type(ann, "dereg Ann")
    sim.run(1)
    assert stored(sim, "members") == {}, "Bob left, Ann went offline (and out of the group)"
    assert stored(sim, "clients")[("Ann",)][4] == 0, "offline"


def kind_and_seq(data: bytes) -> tuple[str, int]:
    from proto.fastpath import parse

    pkt = parse(data)
    return kind(pkt), pkt.payload.seq


def test_a_group_message_is_journaled_until_every_member_has_acknowledged_it():
    sim = kept_sim()
    ann, bob, cat = sim.online("Ann", "Bob", "Cat")
    sim.in_group([ann, bob, cat], "room")
    sim.fault = dropping(lambda pkt, src, dst: kind(pkt) == "ack" and src == sim.addr(cat), first=2)
    sim.type(ann, "send_group hello")
    sim.run(0.1 + COMMIT_WITHIN)  # (Bob's ack sends nothing: its commit may wait that long)
    journal = stored(sim, "journal")
    assert list(journal) == [("room", 1)]
    msg_id, origin, text, waiting = journal[("room", 1)]
    assert (origin, text, waiting) == ("Ann", "hello", "Cat"), "Bob acked; Cat's acks were lost so far"
    sim.run(2)
    assert stored(sim, "journal") == {}, "gone once Cat acked too"


def test_a_restarted_server_resumes_every_session_with_its_token():
    sim = kept_sim()
    ann, bob = sim.online("Ann", "Bob")
    sim.in_group([ann, bob], "room")
    old = sim.server.clients
    before = {name: (r.addr, r.session, r.token, r.online, r.group) for name, r in old.items()}
    version, next_seq = sim.server.version, sim.server._next_seq["room"]
    server = restart(sim)
    assert {name: (r.addr, r.session, r.token, r.online, r.group) for name, r in server.clients.items()} == before
    assert server.groups == {"room": {"Ann": None, "Bob": None}} and server._next_seq["room"] == next_seq
    assert server.version == version, "the table goes on where it was"
    assert {name: r.changed for name, r in server.clients.items()} == {name: r.changed for name, r in old.items()}
    resumed = [e for e in sim.events["server"] if type(e) is StateResumed]
    assert resumed == [StateResumed(clients=2, online=2, groups=1, journaled=0)]
    sim.run(5)
    assert sim.converged()
    sim.type(ann, "send_group after the restart")
    sim.run(1)
    assert GroupMessage("room", "Ann", "after the restart") in sim.events["Bob"]
    assert not any(type(e) is ServerForgotUs for name in ("Ann", "Bob") for e in sim.events[name]), "no re-registration"
    assert sim.exits == {}


def test_a_restart_sends_each_client_an_empty_table_part_and_the_whole_table_only_to_one_behind():
    sim = kept_sim()
    ann, bob, cat = sim.online("Ann", "Bob", "Cat")
    sim.run(5)
    to_cat = lambda pkt, src, dst: kind(pkt) == "table" and dst == sim.addr(cat)  # noqa: E731
    sim.fault = dropping(to_cat)
    sim.type(ann, "dereg Ann")  # a change Cat misses
    sim.run(0.3)
    assert cat.table["Ann"].online and not bob.table["Ann"].online
    sent = len(sim.sent)
    sim.fault = None
    restart(sim)
    sim.run(5)
    tables = [s for s in sim.sent[sent:] if kind(s.pkt) == "table"]
    to_bob = [s.pkt.payload for s in tables if s.dst == sim.addr(bob)]
    assert [(t.base, t.version, len(t.entries)) for t in to_bob] == [(sim.server.version,) * 2 + (0,)], \
        "Bob held the table: one empty part, answered ok"
    to_cat = [s.pkt.payload for s in tables if s.dst == sim.addr(cat)]
    assert [t.base for t in to_cat] == [sim.server.version, 0], "Cat was behind: it answered resync, got it all"
    assert not cat.table["Ann"].online and sim.converged()


def test_clients_listed_online_that_do_not_answer_the_restarted_servers_probe_go_offline():
    sim = kept_sim(idle_probe=0)  # no idle probe: only the restart's probe can find Bob gone
    ann, bob = sim.online("Ann", "Bob")
    sim.crash(bob)
    server = restart(sim)
    assert server.clients["Bob"].online, "listed online until the probe says otherwise"
    sim.run(5)
    assert not server.clients["Bob"].online and ClientMarkedOffline("Bob") in sim.events["server"]
    assert server.clients["Ann"].online, "Ann answered"
    bob_again = sim.client("Bob", label="Bob2")  # the name is free again
    sim.run(2)
    assert bob_again.registered


def test_a_resumed_session_is_watched_for_silence():
    """The idle watch is rebuilt for each resumed session, not only for new ones."""
    sim = kept_sim(idle_probe=30.0)
    ann, bob = sim.online("Ann", "Bob")
    restart(sim)
    sim.run(5)  # Bob answered the restart's probe
    sim.crash(bob)
    sim.run(40)
    assert ClientMarkedOffline("Bob") in sim.events["server"]


def test_a_request_retransmitted_across_the_restart_is_answered_again_not_done_twice():
    sim = kept_sim()
    ann, bob = sim.online("Ann", "Bob")
    sim.in_group([ann, bob], "room")
    sim.fault = dropping(lambda pkt, src, dst: kind(pkt) == "ack" and dst == sim.addr(ann), first=1)
    sim.type(ann, "send_group once")
    sim.run(0.1)  # processed (and relayed), its answer lost
    answers = [pkt for _, pkt in sim.sends("ack", src=SERVER, dst=sim.addr(ann))]
    restart(sim, down=0.2)
    sim.run(3)
    relayed = [e for e in sim.events["server"] if type(e) is GroupMessageRelayed]
    assert len(relayed) == 1, "done once"
    again = [pkt for _, pkt in sim.sends("ack", src=SERVER, dst=sim.addr(ann))][len(answers):]
    assert any(pkt.payload.ack_id == answers[-1].payload.ack_id and pkt.payload.seq == 1 for pkt in again), \
        "answered again by the restarted server, with the same number"
    assert sim.events["Bob"].count(GroupMessage("room", "Ann", "once")) == 1
    assert "replayed" not in sim.server.drops


def test_a_journaled_message_is_delivered_after_the_restart_with_its_id_and_number_once():
    sim = kept_sim()
    ann, bob, cat = sim.online("Ann", "Bob", "Cat")
    sim.in_group([ann, bob, cat], "room")
    to_cat = lambda pkt, src, dst: kind(pkt) == "grp_msg" and dst == sim.addr(cat)  # noqa: E731
    sim.fault = dropping(to_cat)  # Cat gets nothing until the crash
    sim.type(ann, "send_group journaled")
    sim.run(0.3)
    sent = [pkt for _, pkt in sim.sends("grp_msg", dst=sim.addr(bob))]
    restart(sim)
    sim.fault = None
    sim.run(3)
    to_cat_after = [pkt for _, pkt in sim.sends("grp_msg", dst=sim.addr(cat))]
    assert {(p.msg_id, p.payload.seq) for p in to_cat_after} == {(sent[0].msg_id, 1)}, "same id, same number"
    assert [p for _, p in sim.sends("grp_msg", dst=sim.addr(bob))] == sent, "Bob had acked: not sent again"
    for member in ("Bob", "Cat"):
        assert sim.events[member].count(GroupMessage("room", "Ann", "journaled")) == 1
    assert stored(sim, "journal") == {}


def test_a_member_whose_ack_was_not_kept_gets_the_message_again_and_shows_it_once():
    """Bob acked, but the server crashed before the batch with his ack was committed: the
    restarted server sends it again (same id), and Bob acks it again without showing it."""
    sim = kept_sim()
    ann, bob = sim.online("Ann", "Bob")
    sim.in_group([ann, bob], "room")
    sim.type(ann, "send_group acked but not kept")
    sim.run(0.0011)  # the message reached Bob; his ack is on its way
    sim.crash_server(within=0.01)  # the server received the ack, never committed it
    sim.run(0.2)
    sim.restart_server()
    sim.run(3)
    assert len(sim.sends("grp_msg", dst=sim.addr(bob))) >= 2, "sent again after the restart"
    assert sim.events["Bob"].count(GroupMessage("room", "Ann", "acked but not kept")) == 1
    assert stored(sim, "journal") == {}


def test_message_ids_after_a_restart_are_newer_than_any_before_it():
    sim = kept_sim()
    ann, = sim.online("Ann")
    used = sim.server.net._next_id  # the next id the first server would have used
    limit = stored(sim, "meta")[("next_id",)][0]
    before = len(sim.sends(src=SERVER))
    restart(sim)
    after = [pkt.msg_id for _, pkt in sim.sends(src=SERVER)[before:]]
    assert after[0] == limit and 0 < (limit - used) % 2**32 <= ID_BLOCK, "the restart starts past the reservation"
    assert all(is_newer(msg_id, used - 1) for msg_id in after)


def test_a_crash_before_the_commit_loses_what_the_batch_did_and_its_answer():
    """What a batch changed is committed when it is drained: a crash before that loses the
    change, and the answer, which was never sent: the client's retransmission does it again."""
    sim = kept_sim()
    ann, = sim.online("Ann")
    sim.type(ann, "create_group room")
    sim.crash_server(within=0.01)  # the request is received, its batch never drained
    assert [p for _, p in sim.sends("ack", src=SERVER, dst=sim.addr(ann))
            if p.payload.ack_id == ann.net._next_id - 1] == []
    sim.run(0.2)
    server = sim.restart_server()
    assert server.groups == {}, "not committed: gone with the crash"
    sim.run(3)
    assert "room" in server.groups and "Ann" not in sim.exits, "the retransmitted request was done then"


def test_a_client_registering_when_the_server_restarts_registers_again_and_is_welcomed():
    """Registrations waiting for their confirm are not kept (anyone can send a reg: a flood of
    them must not reach the file); the client whose confirm the new server does not know starts
    its registration again."""
    sim = kept_sim()
    ann = registering_with_confirm_lost(sim, "Ann")
    restart(sim)  # before the confirm is sent again
    sim.run(3)
    assert_registered_again(sim, ann)
    assert stored(sim, "clients")[("Ann",)][4] == 1, "kept: online"


# -- the shell: one commit per batch, before the batch's datagrams go --------------------------


class OneBatch:
    """A logic whose one drain is an answer to send: what the shell does with it is the test."""

    def __init__(self):
        self.drops = Counter()

    def receive(self, data, addr, now):
        pass

    def get_timer(self):
        return None

    def handle_timer(self, now):
        pass

    def drain(self, now):
        return [ANSWER]


class Recording(MemoryStore):
    def __init__(self, log: list, fail: bool = False):
        super().__init__()
        self.log, self.fail = log, fail

    def commit(self):
        self.log.append("commit")
        if self.fail:
            raise StoreError("cannot write the state file chat.db: disk I/O error")
        super().commit()


STOPPED = "The server stops: cannot write the state file chat.db: disk I/O error; nothing more is answered\n"
ANSWER = Send(b"an answer", ("127.0.0.1", 9))


@contextlib.contextmanager
def shell(logic, store: Recording, log: list) -> Iterator[Node]:
    """A real ``Node`` (on a local socket pair: nothing leaves the process) whose sends are logged."""
    mine, other = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    node = Node(logic, lambda event: None, asyncio.get_running_loop().create_future(), mine, store)
    node._send = lambda data, addr: log.append("send")
    try:
        yield node
    finally:
        node.close()
        other.close()


def pump_once(store: Recording, log: list):
    """One pump of a real ``Node``, then a second turn (after a failure, nothing goes either)."""

    async def run():
        with shell(OneBatch(), store, log) as node:
            node.pump()
            node.pump()
            return node.done.result() if node.done.done() else None

    return asyncio.run(run())


def test_the_shell_commits_each_batch_before_it_sends_anything_of_it():
    log = []
    assert pump_once(Recording(log), log) is None
    assert log == ["commit", "send", "commit", "send"]


class Scripted(OneBatch):
    """A logic that changes a row of its store in each drain and returns the effects it is given."""

    def __init__(self, store: MemoryStore, drains: list[list]):
        super().__init__()
        self.store, self.drains, self.batches = store, drains, 0

    def drain(self, now):
        self.batches += 1
        self.store.put("meta", ("batches",), (self.batches,))
        return self.drains.pop(0)


def test_a_batch_that_sends_nothing_waits_for_the_next_commit_but_not_longer_than_commit_within():
    log = []
    store = Recording(log)

    async def committed_within(deadline: float) -> bool:
        end = asyncio.get_running_loop().time() + deadline
        while store.dirty and asyncio.get_running_loop().time() < end:
            await asyncio.sleep(0.005)
        return not store.dirty

    async def run():
        with shell(Scripted(store, [[], [ANSWER], [], []]), store, log) as node:
            node.pump()  # members' acks, say: nothing to send, so no commit of their own
            assert log == [] and store.dirty
            node.pump()  # an answer: what both batches changed is kept before it goes
            assert log == ["commit", "send"] and not store.dirty
            assert dict(store.rows("meta")) == {("batches",): (2,)}
            node.pump()  # nothing to send, and no batch after it: a timer commits it
            assert store.dirty
            assert await committed_within(5.0), "committed without another batch"
            assert dict(store.rows("meta")) == {("batches",): (3,)}
            node.pump()  # nothing to send, then the server stops before the timer
            assert store.dirty
        assert not store.dirty and dict(store.rows("meta")) == {("batches",): (4,)}, "a stop commits what waited"
        assert "send" not in log[2:]

    asyncio.run(run())


def test_a_failed_commit_of_a_batch_that_sent_nothing_ends_the_server_too(capsys):
    log = []
    store = Recording(log, fail=True)

    async def run():
        with shell(Scripted(store, [[], [ANSWER]]), store, log) as node:
            node.pump()  # nothing to send: its commit waits, then fails
            status = await asyncio.wait_for(node.done, 5.0)
            node.pump()  # the next batch's answer never goes
            return status

    assert asyncio.run(run()) == STATE_LOST
    assert log == ["commit"], "one commit tried (by the timer); nothing sent, nothing tried at the stop"
    assert capsys.readouterr().err == STOPPED


def test_a_failed_commit_at_a_stop_is_said_and_counts_as_state_lost(capsys):
    log = []
    store = Recording(log, fail=True)

    async def run():
        with shell(Scripted(store, [[]]), store, log) as node:
            node.pump()  # nothing to send: its commit waits; then the server is stopped
            assert not node.state_lost
            node.done.set_result(0)
        return node.state_lost

    assert asyncio.run(run()), "run_server then ends with STATE_LOST, not 0"
    assert log == ["commit"]
    assert capsys.readouterr().err == STOPPED


def test_a_failed_commit_sends_nothing_and_ends_the_server_with_one_line(capsys):
    log = []
    assert pump_once(Recording(log, fail=True), log) == STATE_LOST
    assert log == ["commit"], "the answer of the batch that could not be kept never goes, nor anything after"
    assert capsys.readouterr().err == STOPPED


def test_a_row_the_server_did_not_write_is_refused_with_a_clear_error():
    store = MemoryStore()
    store.put("clients", ("Ann",), ("127.0.0.1", "not a port", 5, b"12345678", 1, "", 1))  # edited by hand
    store.commit()
    with pytest.raises(StoreError, match=r"the state store holds a clients row this ChatApp cannot read: \('Ann',\)"):
        ServerLogic(store=store)
