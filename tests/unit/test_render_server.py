"""The server's wording (node/render.py, server section): every server event has one,
text from the network is shown as data, and the lines are the ones users have always read."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from node import events as ev
from node.render import Table, render
from tests.shown import shown

SOURCE = ("10.6.6.6", 4000)


def server_events() -> list[type]:
    """The event types of the server's section of node/events.py that are made (not a base class)."""
    lines = inspect.getsource(ev).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# -- server events"))
    end = next(i for i, line in enumerate(lines) if line.startswith("# -- either node"))
    return [cls for cls in vars(ev).values() if isinstance(cls, type) and cls.__module__ == ev.__name__
            and start < inspect.getsourcelines(cls)[1] - 1 < end and not cls.__subclasses__()]


def example(event_type: type):
    values = {"address": SOURCE, "source": "10.6.6.6", "groups": ("g1",), "members": ("Ann",), "clients": (),
              "msg_id": 1, "count": 2, "kind": ev.GroupJoined}
    return event_type(**{f.name: values.get(f.name, "x") for f in dataclasses.fields(event_type)})


def test_every_server_event_is_worded():
    types = server_events()
    assert len(types) >= 20 and ev.GroupJoined in types and ev.LinesMerged in types
    for event_type in types:
        out = render(example(event_type))
        assert isinstance(out, (list, Table)), event_type


@pytest.mark.parametrize("event, line", [
    (ev.ServerOnline(SOURCE), ">>> Server is online"),
    (ev.GroupCreated("Ann", "g"), ">>> Client Ann created group g successfully"),
    (ev.GroupExisted("Ann", "g"), ">>> Client Ann creating group g failed, group already exists"),
    (ev.GroupsFull("Ann", "g"), ">>> Client Ann creating group g failed, too many groups"),
    (ev.GroupQuotaReached("Ann", "g", "10.7.7.7"), ">>> Client Ann creating group g failed, too many groups from 10.7.7.7"),
    (ev.GroupJoined("Ann", "g"), ">>> Client Ann joined group g"),
    (ev.GroupNotFound("Ann", "g"), ">>> Client Ann joining group g failed, group does not exist"),
    (ev.GroupLeft("Ann", "g"), ">>> Client Ann left group"),
    (ev.GroupMessageRelayed("Ann", "g", "hi; there: é"), ">>> Client Ann sent group message: hi; there: é"),
    (ev.MemberRemoved("Cat", "g"), ">>> Client Cat not responsive, removed from g"),
    (ev.ClientMarkedOffline("Bob"), ">>> Client Bob did not answer the server's probe, marked offline"),
    (ev.LinesMerged(ev.GroupJoined, 380), ">>> ... and 380 more like it in the last second: Client … joined group …"),
    (ev.LinesMerged(ev.GroupsListed, 7),
     ">>> ... and 7 more like it in the last second: Client … requested listing groups, current groups:"),
])
def test_one_line_events_read_as_before(event, line):
    assert render(event) == [line]


@pytest.mark.parametrize("event, detail", [
    (ev.DatagramDropped("rate-limited", SOURCE), "too many datagrams from one source"),
    (ev.DatagramDropped("malformed", SOURCE, detail="type 99 is not one of ..."), "type 99 is not one of ..."),
    (ev.DatagramDropped("unexpected type", SOURCE, "table"), "table"),
    (ev.DatagramDropped("replayed", SOURCE, "reg", "Ann", 7), "reg #7 of 'Ann' seen before"),
    (ev.DatagramDropped("replayed", SOURCE, "join_group", "Ann", 7), "join_group #7 of 'Ann' is older than the session's last"),
    (ev.DatagramDropped("unregistered", SOURCE, "confirm", "Ann"), "confirm from no registration of 'Ann' at that address"),
    (ev.DatagramDropped("unregistered", SOURCE, "kick", "Ann"), "kick from no session of 'Ann' at that address"),
    (ev.DatagramDropped("forged", SOURCE, "dereg", "Ann"), "dereg in the name of 'Ann' with a wrong token"),
])
def test_a_dropped_datagram_says_why(event, detail):
    assert render(event) == [f">>> Dropped {event.reason} datagram from 10.6.6.6:4000 ({detail}); "
                             "more of this kind are only counted"]


def test_lists_are_cut_after_twenty():
    lines = render(ev.GroupsListed("Ann", [f"g{i}" for i in range(50)]))
    assert lines == [">>> Client Ann requested listing groups, current groups:", *(f">>> g{i}" for i in range(20)),
                     ">>> ... and 30 more"]
    assert render(ev.MembersListed("Ann", "g", ["Ann", "Bob"])) == [
        ">>> Client Ann requested listing members of group g:", ">>> Ann", ">>> Bob"]


def test_tables_are_their_rows_as_text():
    clients = ev.ClientTableChanged([("Ann", "10.0.0.1", 7000, True), ("Bob", "10.0.0.2", 7001, False)])
    assert shown(clients) == [">>> Client table updated.", "| Ann | 10.0.0.1 | 7000 | online",
                              "| Bob | 10.0.0.2 | 7001 | offline"]
    groups = ev.GroupTableChanged([("g", ("Ann", "Bob")), ("h", ())])
    assert shown(groups) == [">>> Group table updated.", "| g | Ann, Bob", "| h | "]


HOSTILE = "\x1b]0;owned\x07\x1b[2J\u202e[b]x[/b]\n"


def test_text_from_the_network_is_shown_as_data():
    lines = [
        *render(ev.GroupMessageRelayed(HOSTILE, "g", HOSTILE)),
        *render(ev.GroupsListed(HOSTILE, [HOSTILE])),
        *render(ev.MembersListed("Ann", HOSTILE, [HOSTILE])),
        *render(ev.DatagramDropped("malformed", SOURCE, detail=HOSTILE)),
        *render(ev.DatagramDropped("forged", SOURCE, "dereg", HOSTILE)),
        *render(ev.GroupQuotaReached(HOSTILE, HOSTILE, HOSTILE)),
    ]
    assert all(line.isprintable() for line in lines), lines
    assert render(ev.GroupMessageRelayed("Ann", "g", HOSTILE)) == [
        ">>> Client Ann sent group message: \\x1b]0;owned\\x07\\x1b[2J\\u202e[b]x[/b]\\n"]


def test_events_said_only_by_the_table_print_nothing():
    assert render(ev.ClientRegistered("Ann", SOURCE)) == []
    assert render(ev.RegistrationRefused("Ann", SOURCE, "name_taken")) == []
    assert render(ev.ClientDeregistered("Ann")) == []
