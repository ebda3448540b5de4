"""The shared retransmission / ack matching / duplicate suppression layer, on a fake clock."""

from __future__ import annotations

import random

import pytest

from node import reliable
from node.effects import Send
from node.reliable import REPLY_MEMORY_WINDOWS, Endpoint, RetryPolicy
from proto import Ack, ChatHeader, PriMsg, decode

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


def endpoint(policy=RetryPolicy(), seed=1) -> Endpoint:
    return Endpoint("A", 7001, policy, random.Random(seed))


def ack_for(msg_id: int, status="ok") -> ChatHeader:
    return decode(bytes(ChatHeader(type="ack", msg_id=999, sender="B") / Ack(ack_id=msg_id, status=status)))


def run_until(ep: Endpoint, end: float) -> list[tuple[float, Send]]:
    """Fire the endpoint's timers exactly when it asks, up to ``end``; return (time, send) pairs."""
    sent = []
    while (due := ep.get_timer()) is not None and due <= end:
        ep.handle_timer(due)
        sent += [(due, e) for e in ep.drain() if isinstance(e, Send)]
    return sent


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


def test_one_request_to_several_is_sent_once_to_each_and_retried_to_the_silent_ones():
    ep, failed = endpoint(), []
    pkt = ep.build("grp_msg", group="g", origin="Ann", text="hi")
    msg_id = ep.request_each(pkt, [PEER, OTHER, THIRD], 0.0, on_fail=lambda addr, now: failed.append((addr, now)))
    assert sorted(ep.drain(), key=lambda s: s.addr) == [Send(pkt.data, a) for a in sorted([PEER, OTHER, THIRD])]
    assert ep.handle_ack(ack_for(msg_id), PEER, 0.1)
    assert not ep.handle_ack(ack_for(msg_id), PEER, 0.2), "a duplicate ack answers nothing"
    assert ep.awaited() == {OTHER, THIRD}
    resent = run_until(ep, 0.6)
    assert sorted(s.addr for _, s in resent) == sorted([OTHER, THIRD]) and all(s.data == pkt.data for _, s in resent)
    assert ep.handle_ack(ack_for(msg_id), OTHER, 0.7)
    resent = run_until(ep, 100)
    assert {s.addr for _, s in resent} == {THIRD} and len(resent) == 3  # tries 3, 4 and 5
    assert failed == [(THIRD, pytest.approx(2.5))]
    assert ep.pending_count == 0 and ep.awaited() == set()


def test_one_request_to_several_acked_by_all_is_done():
    ep, failed = endpoint(), []
    msg_id = ep.request_each(ep.build("grp_msg", group="g", origin="Ann", text="hi"), [PEER, OTHER], 0.0,
                             on_fail=lambda addr, now: failed.append(addr))
    ep.drain()
    assert not ep.handle_ack(ack_for(msg_id), THIRD, 0.1), "only the receivers' acks count"
    assert ep.handle_ack(ack_for(msg_id), OTHER, 0.1) and ep.handle_ack(ack_for(msg_id), PEER, 0.1)
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


def request_from(sender: str, msg_id: int) -> ChatHeader:
    return decode(bytes(ChatHeader(type="pri_msg", msg_id=msg_id, sender=sender) / PriMsg(text="x")))


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


def test_remembered_answers_are_bounded(monkeypatch):
    monkeypatch.setattr(reliable, "MAX_REMEMBERED_REPLIES", 3)
    ep = endpoint()
    for msg_id in range(1, 6):
        ep.answer(request_from("B", msg_id), PEER, ep.build("ack", ack_id=msg_id), 0.0)
    assert ep.remembered_count == 3
    assert not ep.answer_again(request_from("B", 1), PEER, 0.0), "the oldest were forgotten first"
    assert ep.answer_again(request_from("B", 5), PEER, 0.0)
