"""A server with ``--state`` killed with SIGKILL at random moments (seeded) and restarted on the
same file and port, while real clients chat (tests/crashes.py): no acknowledged group message is
lost or shown twice, and no session is lost.  The durations are printed, never asserted.

The long run (50 kills) is a soak test:

    ./dev test -m soak tests/e2e/test_e2e_crash.py -s      (CRASH_SEED=N for another schedule)
"""

from __future__ import annotations

import os

import pytest

from tests.crashes import crash_run
from tests.procs import run_plain


@pytest.fixture(autouse=True)
def durable_server():
    if "--state" not in run_plain("--help").stdout:
        pytest.skip("the server has no --state yet (durable state: branch h-state)")


def check(report, kills: int) -> None:
    print(f"\n{report.summary()}")
    assert report.acked_at_kills[0] > 0 and len(report.acked) > report.acked_at_kills[-1], \
        "the stream went on before the first kill and after the last restart"
    assert report.not_resumed == 0, "every restart resumed the state file"
    assert report.sessions_lost == {}, "no client registered again, was marked offline or exited"
    assert report.lost == [], "every acknowledged group message reached every member"
    assert report.twice == [], "no member showed a group message twice"
    assert report.private_acked and report.private_lost == [] and report.private_twice == []
    assert report.not_served == 0, "after every restart every client's request was answered"
    assert report.kills == kills


def test_a_server_killed_three_times_loses_no_acknowledged_message_and_no_session(tmp_path):
    check(crash_run(tmp_path / "chat.db", kills=3, seed=13), kills=3)


@pytest.mark.soak
@pytest.mark.timeout(1800)  # 50 restarts; about 2 minutes on an idle machine
def test_soak_fifty_kills(tmp_path):
    seed = int(os.environ.get("CRASH_SEED", "1"))
    check(crash_run(tmp_path / "chat.db", kills=50, seed=seed), kills=50)
