"""Liveness: the server notices a gone client by itself (``idle_probe``), on the simulated network."""

from __future__ import annotations

import pytest

from node.events import ClientMarkedOffline
from tests.simnet import SimNet, kind

IDLE = 30.0
MARKED = ">>> Client Bob did not answer the server's probe, marked offline"


def probes_to(sim: SimNet, client) -> list[float]:
    return [t for t, _ in sim.sends("probe", dst=sim.addr(client))]


def test_a_client_that_stops_answering_is_marked_offline_after_idle_and_the_retries():
    sim = SimNet(idle_probe=IDLE)
    ann, bob, cat = sim.online("Ann", "Bob", "Cat")
    sim.run(5)  # every table acknowledged: the last Bob was heard from is before this
    heard = sim.server.clients["Bob"].heard
    sim.crash(bob)
    sim.run(IDLE + 10)
    probes = probes_to(sim, bob)
    assert probes, "a silent client is probed without anyone messaging it"
    assert probes[0] == pytest.approx(heard + IDLE), "after exactly idle_probe seconds of silence"
    assert [t - probes[0] for t in probes] == pytest.approx([0, 0.5, 1.0, 1.5, 2.0]), "the usual retries"
    assert not sim.server.clients["Bob"].online
    assert ClientMarkedOffline("Bob") in sim.events["server"] and MARKED in sim.lines["server"]
    assert ann.table["Bob"].online is False and cat.table["Bob"].online is False, "the table was broadcast"
    assert sim.converged()
    sim.run(10 * IDLE)
    assert len(probes_to(sim, bob)) == 5, "an offline client is not probed again"


def test_an_idle_client_that_answers_its_probes_stays_online():
    sim = SimNet(idle_probe=IDLE)
    ann, bob = sim.online("Ann", "Bob")
    sim.run(10 * IDLE)
    assert len(probes_to(sim, bob)) >= 8, "probed about once per idle_probe"
    assert all(sim.server.clients[name].online for name in ("Ann", "Bob"))
    assert MARKED not in sim.lines["server"] and "Bob" not in sim.exits


def test_traffic_from_a_client_resets_its_clock():
    sim = SimNet(idle_probe=IDLE)
    ann, bob = sim.online("Ann", "Bob")
    for _ in range(10):
        sim.type(bob, "list_groups")  # a request every two thirds of idle_probe
        sim.run(IDLE * 2 / 3)
    assert probes_to(sim, bob) == [], "a client heard from within idle_probe is never probed"
    assert probes_to(sim, ann), "the quiet one is"


def test_answers_count_as_traffic_too():
    """A member busy acknowledging group messages is heard from: it is not probed."""
    sim = SimNet(idle_probe=IDLE)
    ann, bob = sim.online("Ann", "Bob")
    sim.in_group([ann, bob])
    for i in range(10):
        sim.type(ann, f"send_group {i}")
        sim.run(IDLE * 2 / 3)
    assert probes_to(sim, bob) == []


def test_zero_turns_it_off():
    sim = SimNet(idle_probe=0)
    ann, bob = sim.online("Ann", "Bob")
    sim.crash(bob)
    sim.run(10 * IDLE)
    assert sim.sends("probe") == [] and sim.server.clients["Bob"].online
    assert sim.server.get_timer() is None, "no watch is kept"


def test_a_replaced_session_is_not_probed_for_the_old_one():
    sim = SimNet(idle_probe=IDLE)
    ann, bob = sim.online("Ann", "Bob")
    addr = sim.addr(bob)
    sim.crash(bob)
    sim.run(IDLE / 2)
    bob = sim.client("Bob", addr=addr, label="Bob again")  # restarted on the same port: a new session
    sim.run(1)
    old_done = sim.now
    sim.run(IDLE / 2 + 5)  # the old session's check comes and finds it replaced
    assert [t for t in probes_to(sim, bob) if t < old_done + IDLE / 2] == []
    assert sim.server.clients["Bob"].online


# -- a name claimed while its owner is listed online elsewhere ---------------------------------------

TAKEN = ">>> Someone has already used this name. Try another one."


def test_a_claimed_name_whose_owner_is_gone_is_freed_and_registered():
    sim = SimNet(idle_probe=0)  # only the claim probes here
    ann, bob = sim.online("Ann", "Bob")
    old = sim.addr(ann)
    sim.crash(ann)  # still listed online: nobody noticed
    again = sim.client("Ann", label="Ann again")  # another address (a new proxy port, say)
    sim.run(10)
    assert ">>> Client Ann did not answer the server's probe, marked offline" in sim.lines["server"]
    assert ">>> Welcome, You are registered." in sim.lines["Ann again"] and "Ann again" not in sim.exits
    assert sim.server.clients["Ann"].addr == sim.addr(again) and sim.server.clients["Ann"].online
    probes = [t for t, _ in sim.sends("probe", dst=old)]
    assert len(probes) == sim.policy.tries - 1, "one try fewer than the claimant's, to answer it in time"
    assert bob.table["Ann"].addr == sim.addr(again) and sim.converged()


def test_a_claimed_name_whose_owner_answers_is_refused():
    sim = SimNet(idle_probe=0)
    ann, bob = sim.online("Ann", "Bob")
    sim.client("Ann", label="Ann again")
    sim.run(10)
    assert len(sim.sends("probe", dst=sim.addr(ann))) == 1, "the owner answered the first try"
    assert TAKEN in sim.lines["Ann again"] and sim.exits["Ann again"] == 1
    assert sim.server.clients["Ann"].addr == sim.addr(ann) and "Ann" not in sim.exits


def test_the_claim_is_answered_within_the_claimants_wait_under_loss_of_the_probe_answers():
    """The owner is alive but its answers to the probe are lost: it is marked offline (as
    after a kick), and the claimant, whose confirm was retransmitted meanwhile, is answered once."""
    sim = SimNet(idle_probe=0)
    ann, bob = sim.online("Ann", "Bob")
    owner = sim.addr(ann)
    sim.fault = lambda pkt, src, dst, sim: [] if src == owner and dst != sim.addr(bob) else [0.0]
    again = sim.client("Ann", label="Ann again")
    sim.run(10)
    assert ">>> Welcome, You are registered." in sim.lines["Ann again"]
    confirms = sim.sends("confirm", src=sim.addr(again))
    assert len(confirms) > 1, "the confirm was retransmitted while the probe went on"
    answers = {s.data for s in sim.sent if s.dst == sim.addr(again) and kind(s.pkt) == "ack"
               and s.pkt.payload.ack_id == confirms[0][1].msg_id}
    assert len(answers) == 1, "answered once (retransmissions of the confirm waited for the probe)"
    assert sim.exits.get("Ann") == 1, "the old Ann learnt it was marked offline"


def test_an_unconfirmed_claim_probes_nobody():
    """A reg alone proves nothing (its source may be forged): the owner is probed only for a
    claimant that confirmed, i.e. received at its address."""
    sim = SimNet(idle_probe=0)
    ann, bob = sim.online("Ann", "Bob")
    forger = sim.raw("Ann")
    out = bob.net.build("reg", 12345)
    forger.send(out.data.replace(b"\x03Bob", b"\x03Ann"))
    sim.run(10)
    assert sim.sends("probe") == []
    assert sim.server.clients["Ann"].addr == sim.addr(ann) and sim.server.clients["Ann"].online


def test_a_claim_while_an_old_session_of_the_name_is_probed_asks_the_current_owner():
    """Bob's old session is being probed (a kick) when Bob registers again and then is gone
    too: a claim must probe the new session, not wait for the old one's probe."""
    sim = SimNet(idle_probe=0)
    ann, bob = sim.online("Ann", "Bob")
    addr = sim.addr(bob)
    sim.crash(bob)
    kick = ann.net.build("kick", target="Bob")
    sim.deliver(kick.data, sim.addr(ann))  # the old session's probe starts
    bob = sim.client("Bob", addr=addr, label="Bob again")
    sim.run(0.1)
    assert sim.server.clients["Bob"].addr == addr and "Bob again" not in sim.exits
    new = sim.server.clients["Bob"]
    sim.crash(bob)
    sim.client("Bob", label="Bob third")
    sim.run(10)
    assert ">>> Welcome, You are registered." in sim.lines["Bob third"], "the new session's probe went unanswered"
    assert sim.server.clients["Bob"] is not new
