"""The tools' few words per datagram (tools/traffic_views.py summary), read from the layer."""

from __future__ import annotations

from proto import PAYLOADS, ChatHeader
from tools.traffic import Tracker
from tools.traffic_views import GROUP_ONLY, summary


def test_each_request_about_one_group_is_summarised_by_the_group_name():
    assert len(GROUP_ONLY) == 4  # create_group, join_group, leave_group, list_members: derived, not listed
    tracker = Tracker()
    for kind in sorted(GROUP_ONLY):
        data = bytes(ChatHeader(type=kind, msg_id=1, sender="Ann") / PAYLOADS[kind](group="room; 2"))
        event = tracker.feed(1_000, ("127.0.0.1", 4000), ("127.0.0.1", 5000), data)
        assert event.kind == kind and summary(event) == "'room; 2'", kind


def test_the_streamed_ladder_draws_each_arrow_once_and_names_a_new_node_when_it_appears():
    """LadderStream (sniff.py --ladder into a pipe): rows are final when written, so a request not
    answered yet is not marked, and a new node's first datagram prints the names row again."""
    from proto import RegAck
    from tools.traffic_views import LadderStream, ladder

    ann, server, bob = ("127.0.0.1", 7001), ("127.0.0.1", 6666), ("127.0.0.1", 7002)
    tracker = Tracker()
    stream = LadderStream(tracker)
    reg = tracker.feed(0, ann, server, bytes(ChatHeader(type="reg", msg_id=1, sender="Ann", port=7001)))
    rows = [row.plain for row in stream.add(reg)]
    assert len(rows) == 3 and rows[0].split() == ["Ann", "server"] and "reg ─" in rows[2] and "no answer" not in rows[2]
    answer = ChatHeader(type="reg_ack", msg_id=9, sender="server", port=6666) / RegAck(ack_id=1)
    rows = [row.plain for row in stream.add(tracker.feed(1000, server, ann, bytes(answer)))]
    assert len(rows) == 1 and "◀─" in rows[0] and "reg_ack ok 1.00 ms" in rows[0]
    rows = [row.plain for row in stream.add(tracker.feed(2000, bob, server, bytes(ChatHeader(type="reg", msg_id=5, sender="Bob", port=7002))))]
    assert len(rows) == 3 and rows[0].split() == ["Ann", "server", "Bob"] and "◀─" in rows[2]
    assert "no answer" not in stream.legend().plain
    # At the end, the whole ladder says what got no answer.
    assert "reg no answer" in "\n".join(row.plain for row in ladder(tracker, [reg, *tracker.unanswered()[0].tries]))
