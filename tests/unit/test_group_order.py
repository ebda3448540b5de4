"""One order per group (node/ordering.py): the server numbers each group's messages, and a member
shows them in that order, holding back one whose predecessor has not come.  These drive the real
server and clients through the simulator; tests/unit/test_client_logic.py feeds one client numbered
messages by hand (early, late, from before its join, across the wrap-around)."""

from __future__ import annotations

from node.events import GroupMessage, GroupMessageSent, MemberRemoved
from node.reliable import RetryPolicy
from tests.simnet import SimNet, dropping, kind


def group_texts(sim: SimNet, name: str) -> list[str]:
    return [e.text for e in sim.events[name] if type(e) is GroupMessage]


def to(sim: SimNet, member, text: str):
    """Matches the copies of group message ``text`` to ``member``."""
    return lambda p, src, dst: kind(p) == "grp_msg" and dst == sim.addr(member) and p.payload.text == text


def test_the_server_numbers_each_groups_messages_and_the_answers_carry_them():
    sim = SimNet()
    ann, bob, cat = sim.online("Ann", "Bob", "Cat")
    sim.in_group([ann, bob])
    sim.type(ann, "send_group one")
    sim.run(1)
    sim.type(bob, "send_group two")
    sim.run(1)
    sim.type(cat, "join_group g")
    sim.run(1)
    numbers = [p.payload.seq for _, p in sim.sends("grp_msg")]
    answers = {p.payload.ack_id: p.payload.seq for _, p in sim.sends("ack", src=sim.server._sim_addr)}
    requests = {p.payload.text if kind(p) == "send_group" else p.sender: p.msg_id
                for _, p in sim.sends() if kind(p) in ("send_group", "join_group")}
    assert numbers == [1, 2]
    assert answers[requests["one"]] == 1 and answers[requests["two"]] == 2, "each sender learns its number"
    assert answers[requests["Cat"]] == 3, "a joiner learns where it starts"


def test_each_group_has_numbers_of_its_own():
    sim = SimNet()
    ann, bob, cat, dan = sim.online("Ann", "Bob", "Cat", "Dan")
    sim.in_group([ann, bob], "g")
    sim.in_group([cat, dan], "h")
    for member, text in ((ann, "g1"), (cat, "h1"), (bob, "g2"), (dan, "h2")):
        sim.type(member, f"send_group {text}")
        sim.run(1)
    assert {p.payload.text: (p.payload.group, p.payload.seq) for _, p in sim.sends("grp_msg")} == {
        "g1": ("g", 1), "h1": ("h", 1), "g2": ("g", 2), "h2": ("h", 2)}


def test_a_message_whose_predecessor_was_lost_waits_for_it():
    """Ann's message to Cat is lost once; Bob's, sent after it, reaches Cat first: Cat shows
    Ann's (retransmitted) first all the same, as Dan does, who got both in order."""
    sim = SimNet()
    ann, bob, cat, dan = sim.online("Ann", "Bob", "Cat", "Dan")
    sim.in_group([ann, bob, cat, dan])
    sim.fault = dropping(to(sim, cat, "first"), first=1)
    sim.type(ann, "send_group first")
    sim.run(0.05)
    sim.type(bob, "send_group second")
    sim.run(0.2)
    assert group_texts(sim, "Cat") == [], "second is held: first has not come"
    sim.run(2)
    assert group_texts(sim, "Cat") == group_texts(sim, "Dan") == ["first", "second"]


def test_a_sender_does_not_wait_for_its_own_number():
    """Bob's message (numbered after Ann's) reaches Ann before the answer to her send_group,
    whose first copy is lost: held until that answer says the number before it was hers."""
    sim = SimNet()
    ann, bob = sim.online("Ann", "Bob")
    sim.in_group([ann, bob])
    server = sim.server._sim_addr
    sim.fault = dropping(lambda p, src, dst: src == server and dst == sim.addr(ann) and kind(p) == "ack", first=1)
    sim.type(ann, "send_group mine")
    sim.run(0.05)
    sim.type(bob, "send_group yours")
    sim.run(0.2)
    assert group_texts(sim, "Ann") == [], "held until her own number is known"
    sim.run(1)  # her retransmitted send_group is answered again, with its number
    assert group_texts(sim, "Ann") == ["yours"]
    assert [type(e) for e in sim.events["Ann"] if type(e) in (GroupMessage, GroupMessageSent)] == [GroupMessage, GroupMessageSent]
    assert ann._order.gaps_skipped == 0, "shown when the answer came, not after giving up"


def test_a_gap_the_server_gave_up_on_is_passed_after_the_hold():
    """Every copy of Ann's message to Cat is lost: the server gives up on it and removes Cat; Cat
    shows Bob's later message once the hold is over (one retry window and one timeout)."""
    sim = SimNet()
    ann, bob, cat = sim.online("Ann", "Bob", "Cat")
    sim.in_group([ann, bob, cat])
    sim.fault = dropping(to(sim, cat, "lost"))
    sim.type(ann, "send_group lost")
    sim.run(0.05)
    sim.type(bob, "send_group later")
    start = sim.now
    policy = RetryPolicy()
    sim.run(policy.window)
    assert group_texts(sim, "Cat") == []
    assert MemberRemoved("Cat", "g") in sim.events["server"]
    sim.run_until(start + policy.window + policy.timeout + 0.1)
    assert group_texts(sim, "Cat") == ["later"] and cat._order.gaps_skipped == 1
