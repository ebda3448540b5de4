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
