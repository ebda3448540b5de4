"""Liveness: the server notices a gone client by itself (``idle_probe``), on the simulated network."""

from __future__ import annotations

import pytest

from node.events import ClientMarkedOffline
from tests.simnet import SimNet

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
