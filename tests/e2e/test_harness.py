"""The harness's own promises (tests/procs.py) that the other tests rely on."""

from __future__ import annotations

import socket

import tests.procs as procs
from tests.procs import HOST


def test_a_client_whose_port_was_taken_before_it_bound_it_is_started_again(cluster, monkeypatch):
    """free_port's port is closed again before the client binds it, and another suite's process may
    take it meanwhile: the harness starts the client on another port, also when the test does not
    wait for the registration (register=False)."""
    server = cluster.server()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind((HOST, 0))
        taken = [squatter.getsockname()[1]]
        chosen = procs.free_port
        monkeypatch.setattr(procs, "free_port", lambda: taken.pop() if taken else chosen())
        dan = cluster.client("Dan", server, register=False)
        assert not taken and dan.port != squatter.getsockname()[1]
        dan.expect_line(">>> Welcome, You are registered.")
