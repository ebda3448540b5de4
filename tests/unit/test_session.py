"""The client's session state (node/session.py): each transition of the table, each one
the table refuses, and the client following the table through a session."""

from __future__ import annotations

import pytest

from node.session import TRANSITIONS, IllegalTransition, Session, State, Trigger
from tests.simnet import SimNet, dropping

RULES = [(state, trigger, TRANSITIONS[state].get(trigger)) for state in State for trigger in Trigger]


def session_in(state: State) -> Session:
    session = Session()
    session.state = state
    return session


@pytest.mark.parametrize(
    "state, trigger, new",
    [rule for rule in RULES if rule[2] is not None],
    ids=lambda x: getattr(x, "name", x),
)
def test_an_allowed_transition(state, trigger, new):
    session = session_in(state)
    assert session.to(trigger) is new and session.state is new


@pytest.mark.parametrize(
    "state, trigger",
    [rule[:2] for rule in RULES if rule[2] is None],
    ids=lambda x: getattr(x, "name", x),
)
def test_a_transition_the_table_does_not_hold_raises_and_changes_nothing(state, trigger):
    session = session_in(state)
    with pytest.raises(IllegalTransition, match=trigger.name):
        session.to(trigger)
    assert session.state is state


def test_the_table_covers_the_lifecycle():
    assert Session().state is State.REGISTERING
    assert TRANSITIONS[State.EXITED] == {}, "an exited client does nothing more"
    assert all(Trigger.EXITING in TRANSITIONS[s] for s in State if s is not State.EXITED), "any other state may exit"
    assert [s for s in State if Trigger.ANSWERED in TRANSITIONS[s]] == [State.BUSY, State.JOINING]


def test_a_client_walks_the_table():
    sim = SimNet()
    ann = sim.client("Ann")
    assert ann.state is State.REGISTERING
    sim.type(ann, "list_groups")  # typed before the welcome: waits
    assert ann.state is State.REGISTERING and sim.sends("list_groups") == []
    sim.run(1)
    assert ann.state is State.IDLE and len(sim.sends("list_groups")) == 1, "run after the welcome"
    sim.type(ann, "create_group g")
    assert ann.state is State.BUSY
    sim.type(ann, "join_group g")  # typed ahead
    assert ann.state is State.BUSY and sim.sends("join_group") == []
    sim.fault = dropping(lambda p, src, dst: src == sim.addr(ann), first=1)  # the join's first try is lost
    sim.run(0.01)
    assert ann.state is State.JOINING and ann.group is None
    sim.run(1)
    assert ann.state is State.IDLE and ann.group == "g"
    sim.type(ann, "dereg Ann")
    assert ann.state is State.CLOSING
    sim.type(ann, "leave_group")  # ignored: going offline
    sim.run(1)
    assert ann.state is State.EXITED and sim.exits["Ann"] == 0 and sim.sends("leave_group") == []


def test_ctrl_c_while_a_command_waits_goes_from_busy_to_closing():
    sim = SimNet()
    ann, bob = sim.online("Ann", "Bob")
    sim.crash(bob)
    sim.type(ann, "send Bob are you there")
    assert ann.state is State.BUSY
    sim.shutdown(ann)
    assert ann.state is State.CLOSING
    sim.run(1)
    assert ann.state is State.EXITED and sim.exits["Ann"] == 0
