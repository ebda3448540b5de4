"""Where a client's session stands, as an explicit state and a table of the transitions
allowed from each (the idea of h11's ``_state.py``): registering, idle, waiting for the
answer to a command, joining a group, deregistering, exited.  A transition the table
does not hold raises ``IllegalTransition``: a bug in the client, never the network's doing.

Group mode is not a state here: it is orthogonal (a client may be idle or busy in a
group or outside one) and the client keeps it as the group it is in."""

from __future__ import annotations

from enum import Enum


class State(Enum):
    __hash__ = object.__hash__  # members are singletons: hash by identity, in C (Enum's hashes the name in Python)

    REGISTERING = "registering"  # reg and confirm; typed commands wait
    IDLE = "idle"  # registered, ready for the next typed command
    BUSY = "busy"  # a command waits for its answer (or a peer's); the next ones wait
    JOINING = "joining"  # a join_group waits for its answer; group messages for that group are held
    CLOSING = "closing"  # deregistering; typed commands are ignored
    EXITED = "exited"  # the client has stopped: it does nothing more


class Trigger(Enum):
    __hash__ = object.__hash__

    WELCOMED = "the server confirmed the registration"
    ASKED = "a command sent a request"
    JOINING = "a join_group was sent"
    ANSWERED = "the command is done"
    DEREGISTERING = "dereg was sent"
    EXITING = "the client stops"
    FORGOTTEN = "the server no longer knows the session: register again"


TRANSITIONS: dict[State, dict[Trigger, State]] = {
    State.REGISTERING: {Trigger.WELCOMED: State.IDLE, Trigger.EXITING: State.EXITED},
    State.IDLE: {
        Trigger.ASKED: State.BUSY,
        Trigger.JOINING: State.JOINING,
        Trigger.DEREGISTERING: State.CLOSING,
        Trigger.EXITING: State.EXITED,
        Trigger.FORGOTTEN: State.REGISTERING,
    },
    # Ctrl+C drops the command under way and deregisters.
    State.BUSY: {Trigger.ANSWERED: State.IDLE, Trigger.DEREGISTERING: State.CLOSING, Trigger.EXITING: State.EXITED,
                 Trigger.FORGOTTEN: State.REGISTERING},
    State.JOINING: {Trigger.ANSWERED: State.IDLE, Trigger.DEREGISTERING: State.CLOSING, Trigger.EXITING: State.EXITED,
                    Trigger.FORGOTTEN: State.REGISTERING},
    State.CLOSING: {Trigger.EXITING: State.EXITED},
    State.EXITED: {},
}

REGISTERED = frozenset({State.IDLE, State.BUSY, State.JOINING, State.CLOSING})
ACTIVE = frozenset({State.IDLE, State.BUSY, State.JOINING})  # registered, and not leaving


class IllegalTransition(RuntimeError):
    pass


class Session:
    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = State.REGISTERING

    def to(self, trigger: Trigger) -> State:
        """Move on by ``trigger``; the new state."""
        new = TRANSITIONS[self.state].get(trigger)
        if new is None:
            raise IllegalTransition(f"{trigger.name} ({trigger.value}) while {self.state.value}")
        self.state = new
        return new
