"""Liveness with real processes: the server notices a gone client without anyone messaging it."""

from __future__ import annotations

import signal

from tests.procs import FAST

IDLE = ("--idle-probe", "1")  # short, so the test waits little; the rule is the same at 30 s


def test_a_client_killed_with_sigkill_is_marked_offline_without_other_traffic(cluster):
    server = cluster.server(*FAST, *IDLE)
    ann, bob = cluster.clients(["Ann", "Bob"], server, *FAST)
    bob.signal(signal.SIGKILL)  # no dereg, no last word: it is simply gone
    bob.wait_exit()
    server.expect_line(">>> Client Bob did not answer the server's probe, marked offline")
    server.expect_clients({"Ann": "online", "Bob": "offline"})
    ann.expect_clients({"Ann": "online", "Bob": "offline"})  # told with the broadcast table
    assert ann.alive(), "the client that answers its probes stays"
    assert "Client Ann did not answer" not in server.text
