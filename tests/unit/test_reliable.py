"""The shared retransmission / ack matching / duplicate suppression layer, on a fake clock
(its timers fired by the simulated network, tests/simnet.py)."""

from __future__ import annotations

import random

import pytest

from node import reliable
from node.effects import Send
from node.reliable import REPLY_MEMORY_WINDOWS, Endpoint, RetryPolicy
from proto import Ack, ChatHeader, GrpMsg, MsgId, PriMsg, RegAck, decode
from tests.simnet import SimNet

SELF = ("10.0.0.1", 7001)
PEER = ("10.0.0.2", 7002)
OTHER = ("10.0.0.3", 7003)


class Calls:
    """Records the on_ack / on_fail callbacks an endpoint makes."""

    def __init__(self):
        self.acks: list[tuple[int, float]] = []
        self.fails: list[float] = []

    def on_ack(self, ack, now):
        self.acks.append((ack.payload.ack_id, now))

    def on_fail(self, now):
        self.fails.append(now)


def endpoint(policy=RetryPolicy(), seed=1, **bounds) -> Endpoint:
    return Endpoint("A", SELF[1], policy, random.Random(seed), **bounds)


def ack_for(msg_id: int, status="ok", token=0) -> ChatHeader:
    return decode(bytes(ChatHeader(type="ack", msg_id=999, token=token, sender="B") / Ack(ack_id=msg_id, status=status)))


def reg_ack_for(msg_id: int) -> ChatHeader:
    return decode(bytes(ChatHeader(type="reg_ack", msg_id=998, sender="B") / RegAck(ack_id=msg_id, token=5)))


def run_until(ep: Endpoint, end: float) -> list[tuple[float, Send]]:
    """Put the endpoint on the simulated network's clock and fire its timers exactly when it asks,
    up to ``end``: the (time, send) pairs it sent meanwhile."""
    sim = SimNet(server=False)
    sim.add(SELF, ep, ep.name, drain=lambda now: ep.drain())
    sim.run_until(end)
    return [(sent.time, Send(sent.data, sent.dst)) for sent in sim.sent]


def test_default_policy_is_500ms_and_5_tries():
    assert RetryPolicy().timeout == 0.5
    assert RetryPolicy().tries == 5


@pytest.mark.parametrize("t0", [0.0, 12.345])
def test_unacked_request_is_sent_5_times_500ms_apart_then_fails(t0):
    ep, calls = endpoint(), Calls()
    pkt = ep.build("pri_msg", text="hi")
    ep.request(pkt, PEER, t0, calls.on_ack, calls.on_fail)
    first = ep.drain()
    assert first == [Send(pkt.data, PEER)]
    resent = run_until(ep, t0 + 100)
    times = [t0] + [t for t, _ in resent]
    assert times == pytest.approx([t0 + 0.5 * k for k in range(5)])
    assert all(send == first[0] for _, send in resent), "retransmissions are byte-identical"
    assert calls.fails == pytest.approx([t0 + 2.5])
    assert calls.acks == []
    assert ep.pending_count == 0 and ep.get_timer() is None


def test_custom_policy_is_respected():
    ep, calls = endpoint(RetryPolicy(timeout=0.2, tries=3)), Calls()
    ep.request(ep.build("probe"), PEER, 1.0, calls.on_ack, calls.on_fail)
    ep.drain()
    assert [t for t, _ in run_until(ep, 100)] == pytest.approx([1.2, 1.4])
    assert calls.fails == pytest.approx([1.6])


def test_single_try_policy_never_retransmits():
    ep, calls = endpoint(RetryPolicy(timeout=0.5, tries=1)), Calls()
    ep.request(ep.build("probe"), PEER, 0.0, calls.on_ack, calls.on_fail)
    ep.drain()
    assert run_until(ep, 100) == []
    assert calls.fails == [0.5]


def test_ack_stops_retransmission_and_is_reported_once():
    ep, calls = endpoint(), Calls()
    msg_id = ep.request(ep.build("pri_msg", text="hi"), PEER, 0.0, calls.on_ack, calls.on_fail)
    ep.drain()
    assert len(run_until(ep, 1.2)) == 2  # retransmitted at 0.5 and 1.0
    assert ep.handle_ack(ack_for(msg_id), PEER, 1.3)
    assert calls.acks == [(msg_id, 1.3)]
    assert not ep.handle_ack(ack_for(msg_id), PEER, 1.4), "a duplicate ack answers nothing"
    assert calls.acks == [(msg_id, 1.3)]
    assert run_until(ep, 100) == [] and calls.fails == []
    assert ep.pending_count == 0 and ep.get_timer() is None


def test_ack_from_another_address_or_for_another_id_is_ignored():
    ep, calls = endpoint(), Calls()
    msg_id = ep.request(ep.build("probe"), PEER, 0.0, calls.on_ack, calls.on_fail)
    assert not ep.handle_ack(ack_for(msg_id), OTHER, 0.1)
    assert not ep.handle_ack(ack_for(msg_id + 1), PEER, 0.1)
    assert calls.acks == [] and ep.pending_count == 1


def test_several_requests_retry_independently():
    ep, calls = endpoint(), Calls()
    first = ep.request(ep.build("probe"), PEER, 0.0, calls.on_ack, calls.on_fail)
    second = ep.request(ep.build("probe"), OTHER, 0.2, calls.on_ack, calls.on_fail)
    ep.drain()
    assert ep.get_timer() == pytest.approx(0.5)
    ep.handle_ack(ack_for(first), PEER, 0.3)
    resent = run_until(ep, 100)
    assert [t for t, _ in resent] == pytest.approx([0.7, 1.2, 1.7, 2.2])
    assert {s.addr for _, s in resent} == {OTHER}
    assert decode(resent[0][1].data).msg_id == second
    assert calls.fails == pytest.approx([2.7])


THIRD = ("10.0.0.4", 7004)
TOKENS = {PEER: 0x1111, OTHER: 0x2222, THIRD: 0x3333}  # each receiver's token, stamped into its copy


def stamped(data: bytes, token: int) -> bytes:
    """``data`` with its header token set to ``token`` (what the receiver must get)."""
    msg = decode(data)
    msg.token = token
    return bytes(msg)


def test_one_request_to_several_is_sent_once_to_each_and_retried_to_the_silent_ones():
    ep, failed = endpoint(), []
    pkt = ep.build("grp_msg", group="g", origin="Ann", text="hi")
    msg_id = ep.request_each(pkt, TOKENS, 0.0, on_fail=lambda addr, now: failed.append((addr, now)))
    assert sorted(ep.drain(), key=lambda s: s.addr) == [Send(stamped(pkt.data, TOKENS[a]), a) for a in sorted(TOKENS)]
    assert ep.handle_ack(ack_for(msg_id, token=TOKENS[PEER]), PEER, 0.1)
    assert not ep.handle_ack(ack_for(msg_id, token=TOKENS[PEER]), PEER, 0.2), "a duplicate ack answers nothing"
    assert ep.awaited() == {OTHER, THIRD}
    resent = run_until(ep, 0.6)
    assert sorted((s.addr, s.data) for _, s in resent) == [(a, stamped(pkt.data, TOKENS[a])) for a in sorted([OTHER, THIRD])]
    assert ep.handle_ack(ack_for(msg_id, token=TOKENS[OTHER]), OTHER, 0.7)
    resent = run_until(ep, 100)
    assert {s.addr for _, s in resent} == {THIRD} and len(resent) == 3  # tries 3, 4 and 5
    assert failed == [(THIRD, pytest.approx(2.5))]
    assert ep.pending_count == 0 and ep.awaited() == set()


def test_one_request_to_several_acked_by_all_is_done():
    ep, failed = endpoint(), []
    msg_id = ep.request_each(ep.build("grp_msg", group="g", origin="Ann", text="hi"), {PEER: 1, OTHER: 2}, 0.0,
                             on_fail=lambda addr, now: failed.append(addr))
    ep.drain()
    assert not ep.handle_ack(ack_for(msg_id, token=1), THIRD, 0.1), "only the receivers' acks count"
    assert ep.handle_ack(ack_for(msg_id, token=2), OTHER, 0.1) and ep.handle_ack(ack_for(msg_id, token=1), PEER, 0.1)
    assert run_until(ep, 100) == [] and failed == [] and ep.pending_count == 0


def test_late_timer_call_keeps_the_schedule():
    """A timer served late retransmits once, and the next try stays on the 500 ms grid."""
    ep, calls = endpoint(), Calls()
    ep.request(ep.build("probe"), PEER, 0.0, calls.on_ack, calls.on_fail)
    ep.drain()
    ep.handle_timer(0.7)
    assert len(ep.drain()) == 1
    assert ep.get_timer() == pytest.approx(1.0)


def test_cancel_stops_a_request_silently():
    ep, calls = endpoint(), Calls()
    msg_id = ep.request(ep.build("probe"), PEER, 0.0, calls.on_ack, calls.on_fail)
    ep.drain()
    ep.cancel(msg_id)
    assert ep.get_timer() is None
    assert run_until(ep, 100) == [] and calls.fails == [] and calls.acks == []
    assert not ep.handle_ack(ack_for(msg_id), PEER, 0.1)


def test_cancel_all():
    ep, calls = endpoint(), Calls()
    for _ in range(3):
        ep.request(ep.build("probe"), PEER, 0.0, calls.on_ack, calls.on_fail)
    ep.cancel_all()
    assert ep.pending_count == 0 and ep.get_timer() is None


def test_message_ids_are_fresh_and_never_zero():
    ep = endpoint()
    ids = [ep.build("probe").msg_id for _ in range(100)]
    assert len(set(ids)) == 100 and 0 not in ids
    ep._next_id = 2**32 - 1  # the wrap-around, without sending four billion messages
    assert [ep.build("probe").msg_id for _ in range(2)] == [2**32 - 1, 1]


def test_header_carries_name_port_and_token():
    ep = endpoint()
    ep.token = 1234
    hdr = decode(ep.build("dereg").data)
    assert (hdr.sender, hdr.port, hdr.token) == ("A", 7001, 1234)


def request_from(sender: str, msg_id: int, token: int = 0) -> ChatHeader:
    return decode(bytes(ChatHeader(type="pri_msg", msg_id=msg_id, token=token, sender=sender) / PriMsg(text="x")))


def test_answer_is_sent_again_for_a_retransmitted_request():
    ep = endpoint()
    req = request_from("B", 42)
    assert not ep.answer_again(req, PEER, 0.0)
    reply = ep.build("ack", ack_id=42)
    ep.answer(req, PEER, reply, 0.0)
    (first,) = ep.drain()
    assert ep.answer_again(req, PEER, 0.5)
    assert ep.drain() == [first], "the very same answer, not a new one"
    assert not ep.answer_again(request_from("C", 42), OTHER, 0.5), "same id from elsewhere is another request"
    assert ep.drain() == []


def test_remembered_answers_expire():
    ep = endpoint()
    memory = REPLY_MEMORY_WINDOWS * ep.policy.window
    ep.answer(request_from("B", 42), PEER, ep.build("ack", ack_id=42), 1.0)
    ep.drain()
    assert ep.answer_again(request_from("B", 42), PEER, 1.0 + memory - 0.01)
    ep.handle_timer(1.0 + memory)
    assert ep.remembered_count == 0
    assert not ep.answer_again(request_from("B", 42), PEER, 1.0 + memory + 0.01)


def test_remembered_answers_are_bounded():
    ep = endpoint(max_replies=3)
    for msg_id in range(1, 6):
        ep.answer(request_from("B", msg_id), PEER, ep.build("ack", ack_id=msg_id), 0.0)
    assert ep.remembered_count == 3
    assert not ep.answer_again(request_from("B", 1), PEER, 0.0), "the oldest were forgotten first"
    assert ep.answer_again(request_from("B", 5), PEER, 0.0)


# -- acknowledging several messages in one ack ----------------------------------------------


def acked_ids(sends) -> list[list[int]]:
    """The message ids each ack datagram answers, in order."""
    out = []
    for send in sends:
        ack = decode(send.data).payload
        out.append([ack.ack_id, *(m.id for m in ack.also)])
    return out


def acks_until(ep: Endpoint, end: float) -> list[tuple[float, list[int]]]:
    return [(t, ids) for t, send in run_until(ep, end) for ids in acked_ids([send])]


def test_an_ack_after_a_quiet_spell_goes_at_once():
    ep = endpoint()
    delay = ep.policy.ack_delay
    ep.acknowledge(request_from("S", 1), PEER, 0.0)
    assert acked_ids(ep.drain()) == [[1]]
    ep.acknowledge(request_from("S", 2), PEER, 0.0 + delay)
    assert acked_ids(ep.drain()) == [[2]], "a whole ack delay later: no waiting"
    assert acks_until(ep, 100) == []


def test_acks_close_together_wait_for_each_other_at_most_the_ack_delay():
    ep = endpoint()
    delay = ep.policy.ack_delay
    ep.acknowledge(request_from("S", 1, token=77), PEER, 0.0)
    ep.drain()
    for msg_id, t in ((2, 0.001), (3, 0.002)):
        ep.acknowledge(request_from("S", msg_id, token=77), PEER, t)
        assert ep.drain() == []
    ep.handle_timer(delay / 2)
    assert ep.drain() == [] and ep.acks_waiting == 2, "the alarm is not early"
    (t, send), = run_until(ep, 100)
    assert t == pytest.approx(delay) and acked_ids([send]) == [[2, 3]], "one datagram, a delay after the last ack"
    assert ep.acks_waiting == 0
    assert decode(send.data).token == 77 and send.addr == PEER, "the requests' token echoed"


def test_acks_go_as_soon_as_a_batch_is_full():
    ep = endpoint()
    ep.acknowledge(request_from("S", 100), PEER, 0.0)
    ep.drain()
    for msg_id in range(1, reliable.ACK_BATCH + 2):
        ep.acknowledge(request_from("S", msg_id), PEER, 0.0001 * msg_id)
        if msg_id == reliable.ACK_BATCH:
            assert acked_ids(ep.drain()) == [list(range(1, reliable.ACK_BATCH + 1))]
    assert ep.drain() == []
    ((t, ids),) = acks_until(ep, 100)
    assert ids == [reliable.ACK_BATCH + 1] and t <= 0.0001 * reliable.ACK_BATCH + ep.policy.ack_delay


def test_acks_to_different_addresses_are_separate():
    ep = endpoint()
    for addr in (PEER, OTHER):
        ep.acknowledge(request_from("S", 1), addr, 0.0)
    assert sorted(s.addr for s in ep.drain()) == sorted([PEER, OTHER])


def test_a_retransmitted_message_is_acknowledged_again_at_once_and_processed_once():
    ep = endpoint()
    ep.acknowledge(request_from("S", 1), PEER, 0.0)
    ep.acknowledge(request_from("S", 2), PEER, 0.001)
    ep.drain()
    assert ep.answer_again(request_from("S", 2), PEER, 0.002), "known: not processed again"
    assert acked_ids(ep.drain()) == [[2]], "its ack was still waiting: sent now, once"
    assert ep.answer_again(request_from("S", 1), PEER, 0.6)
    assert acked_ids(ep.drain()) == [[1]]
    assert acks_until(ep, 100) == []


def test_a_retransmission_in_the_same_batch_as_a_waiting_ack_leaves_nothing_for_the_wait():
    """The shell hands a whole batch of datagrams over with one ``now``: an ack goes at once,
    the next message starts a wait, a retransmission of the first sends both acks at that same
    instant.  The wait then finds its batch gone (an ack of nothing would not even encode)."""
    ep = endpoint()
    ep.acknowledge(request_from("S", 1), PEER, 1.0)
    ep.acknowledge(request_from("S", 2), PEER, 1.0)
    assert ep.answer_again(request_from("S", 1), PEER, 1.0)
    assert acked_ids(ep.drain()) == [[1], [2, 1]]
    assert acks_until(ep, 100) == [], "the wait for message 2 ends without an ack"
    assert ep.acks_waiting == 0
    ep.acknowledge(request_from("S", 3), PEER, 1.001)
    assert ep.drain() == []
    assert acks_until(ep, 100) == [(pytest.approx(1.0 + ep.policy.ack_delay), [3])], "the next wait is its own"


def test_the_ack_delay_is_a_small_part_of_the_retry_timeout():
    assert RetryPolicy().ack_delay == reliable.ACK_DELAY
    assert RetryPolicy(timeout=0.01).ack_delay == pytest.approx(0.001)


def test_one_ack_can_answer_several_requests():
    ep, calls, failed = endpoint(), Calls(), []
    ids = [ep.request(ep.build("probe"), PEER, 0.0, calls.on_ack, calls.on_fail) for _ in range(3)]
    group = ep.request_each(ep.build("grp_msg", group="g", origin="Ann", text="hi"), {PEER: 0, OTHER: 0}, 0.0,
                            on_fail=lambda addr, now: failed.append(addr))
    ep.drain()
    batch = ChatHeader(type="ack", msg_id=9, sender="B") / Ack(ack_id=ids[0], also=[MsgId(id=ids[2]), MsgId(id=group)])
    assert ep.handle_ack(decode(bytes(batch)), PEER, 0.1)
    assert len(calls.acks) == 2 and ep.pending_count == 2, "the middle probe and the group message (OTHER) remain"
    assert not ep.handle_ack(decode(bytes(batch)), PEER, 0.2), "all answered already"
    resent = run_until(ep, 0.6)
    assert sorted((decode(s.data).msg_id, s.addr) for _, s in resent) == sorted([(ids[1], PEER), (group, OTHER)])


# -- answers fit their requests -------------------------------------------------------------


def test_reg_is_answered_only_by_a_reg_ack():
    ep, calls = endpoint(), Calls()
    msg_id = ep.request(ep.build("reg"), PEER, 0.0, calls.on_ack, calls.on_fail)
    ep.drain()
    assert not ep.handle_ack(ack_for(msg_id), PEER, 0.1), "an ack has no token: never handed to reg's handler"
    assert calls.acks == [] and ep.pending_count == 1
    assert ep.drops == {"wrong answer": 1}
    assert len(run_until(ep, 0.6)) == 1, "still retransmitted: the real answer may come yet"
    assert ep.handle_ack(reg_ack_for(msg_id), PEER, 0.7)
    assert calls.acks == [(msg_id, 0.7)] and ep.pending_count == 0
    assert ep.drops == {"wrong answer": 1}


@pytest.mark.parametrize("request_type", ["dereg", "list_groups", "probe"])
def test_every_other_request_is_answered_only_by_an_ack(request_type):
    ep, calls = endpoint(), Calls()
    msg_id = ep.request(ep.build(request_type), PEER, 0.0, calls.on_ack, calls.on_fail)
    ep.drain()
    assert not ep.handle_ack(reg_ack_for(msg_id), PEER, 0.1), "a reg_ack has no items, no also"
    assert calls.acks == [] and ep.pending_count == 1 and ep.drops == {"wrong answer": 1}
    assert ep.handle_ack(ack_for(msg_id), PEER, 0.2)
    assert calls.acks == [(msg_id, 0.2)] and ep.drops == {"wrong answer": 1}


def test_an_ack_whose_extra_id_names_a_reg_answers_only_the_others():
    ep, calls = endpoint(), Calls()
    reg = ep.request(ep.build("reg"), PEER, 0.0, calls.on_ack, calls.on_fail)
    probe = ep.request(ep.build("probe"), PEER, 0.0, calls.on_ack, calls.on_fail)
    ep.drain()
    batch = ChatHeader(type="ack", msg_id=9, sender="B") / Ack(ack_id=probe, also=[MsgId(id=reg)])
    assert ep.handle_ack(decode(bytes(batch)), PEER, 0.1)
    assert calls.acks == [(probe, 0.1)] and ep.pending_count == 1, "the reg still waits for its reg_ack"


def test_answers_that_answer_nothing_are_counted_as_stale():
    ep = endpoint()
    assert not ep.handle_ack(ack_for(4242), PEER, 0.0)
    assert not ep.handle_ack(reg_ack_for(4243), PEER, 0.0)
    assert ep.drops == {"stale ack": 2}


def test_a_message_id_is_not_newer_than_itself():
    """Serial-number order: an id equal to the last one is a replay, not a new message (the
    server and the clients refuse replays with ``is_newer``), across the wrap-around too."""
    for last in (1, 12345, 2**31, 2**32 - 1):
        assert not reliable.is_newer(last, last)
        after = last % (2**32 - 1) + 1  # the next id, as Endpoint.build numbers them (never 0)
        assert reliable.is_newer(after, last) and not reliable.is_newer(last, after)
    assert reliable.is_newer(3, 2**32 - 5), "ids wrap around"


def test_acknowledged_messages_are_remembered_at_least_the_memory_time():
    """Acknowledged ids are kept in two generations, the older dropped whole: whenever that
    happens, an id younger than ``memory`` must still be known (else a late retransmission
    of it would be processed, and shown, a second time), and none is kept for ever.  A
    forgotten id is not new either: it is older than the newest id forgotten (ids grow), so
    a copy of it is refused as a replay, unanswered."""
    ep = endpoint()
    memory = REPLY_MEMORY_WINDOWS * ep.policy.window
    step = memory / 8
    added: list[tuple[int, float]] = []
    for k in range(40):  # five memory times, a message every eighth of one
        now = k * step
        ep.acknowledge(request_from("S", k + 1), PEER, now)
        ep.drain()
        added.append((k + 1, now))
        for msg_id, when in added:
            handled = ep.answer_again(request_from("S", msg_id), PEER, now)
            known = bool(ep.drain())  # acknowledged again
            assert handled, f"#{msg_id} taken for a new message {now - when:.2f} s after its ack"
            assert known or now - when >= memory, f"#{msg_id} forgotten {now - when:.2f} s after its ack"
            assert not known or now - when <= 2 * memory + step, f"#{msg_id} still known after {now - when:.2f} s"
    assert ep.drops["replayed"] > 0


# -- an answer echoes the token of the request it answers ------------------------------------


def test_an_ack_with_another_token_than_its_request_is_counted_forged_and_the_request_retried():
    ep, calls = endpoint(), Calls()
    ep.token = 0x5EC2E7
    msg_id = ep.request(ep.build("probe"), PEER, 0.0, calls.on_ack, calls.on_fail)
    ep.drain()
    for wrong in (0, 0x5EC2E6):
        assert not ep.handle_ack(ack_for(msg_id, token=wrong), PEER, 0.1)
    assert calls.acks == [] and ep.drops == {"forged ack": 2}
    assert len(run_until(ep, 0.6)) == 1, "still retransmitted"
    assert ep.handle_ack(ack_for(msg_id, token=0x5EC2E7), PEER, 0.7)
    assert calls.acks == [(msg_id, 0.7)]


def test_a_member_is_answered_only_with_its_own_token():
    """A forged ack in a member's name (no token, or another member's) leaves it waiting, retried
    and in the end reported unresponsive."""
    ep, failed = endpoint(), []
    msg_id = ep.request_each(ep.build("grp_msg", group="g", origin="Ann", text="hi"), TOKENS, 0.0,
                             on_fail=lambda addr, now: failed.append(addr))
    ep.drain()
    assert not ep.handle_ack(ack_for(msg_id), PEER, 0.1)
    assert not ep.handle_ack(ack_for(msg_id, token=TOKENS[OTHER]), PEER, 0.1)
    assert ep.drops == {"forged ack": 2}
    assert ep.handle_ack(ack_for(msg_id, token=TOKENS[OTHER]), OTHER, 0.1)
    assert ep.handle_ack(ack_for(msg_id, token=TOKENS[THIRD]), THIRD, 0.1)
    resent = run_until(ep, 100)
    assert [s.addr for _, s in resent] == [PEER] * 4 and failed == [PEER]


def test_answers_echo_the_request_token_and_requests_without_a_session_carry_a_nonce():
    ep = endpoint()
    ep.token = 77
    request = decode(bytes(ChatHeader(type="probe", msg_id=5, token=0xABCDEF, sender="B")))
    assert decode(ep.build_answer(request).data).token == 0xABCDEF
    ep.acknowledge(request, PEER, 0.0)
    assert [decode(e.data).token for e in ep.drain()] == [0xABCDEF]
    nonces = {ep.nonce() for _ in range(100)}
    assert len(nonces) == 100 and 0 not in nonces and all(n < 2**64 for n in nonces)


def test_batched_acks_of_requests_with_different_tokens_go_apart():
    ep = endpoint(RetryPolicy(timeout=1.0))
    ep.acknowledge(decode(bytes(ChatHeader(type="grp_msg", msg_id=1, token=7, sender="S") / GrpMsg())), PEER, 0.0)
    ep.acknowledge(decode(bytes(ChatHeader(type="grp_msg", msg_id=2, token=7, sender="S") / GrpMsg())), PEER, 0.01)
    ep.acknowledge(decode(bytes(ChatHeader(type="grp_msg", msg_id=3, token=8, sender="S") / GrpMsg())), PEER, 0.02)
    acks = [decode(send.data) for _, send in run_until(ep, 1.0)]
    assert [(a.token, [a.ack_id] + [m.id for m in a.also]) for a in acks] == [(7, [1]), (7, [2]), (8, [3])]
