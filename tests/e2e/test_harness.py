"""The harness's own promises (tests/procs.py) that the other tests rely on."""

from __future__ import annotations

import random
import socket
from pathlib import Path

import pytest

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


def test_a_port_for_a_process_started_again_on_it_is_below_the_range_for_port_0():
    """quiet_port: no other process is handed it between a kill and the restart on it."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    if low <= 2048:
        pytest.skip("this host leaves no room below its range for port 0")
    port = procs.quiet_port()
    assert 1024 <= port < low
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, port))  # and it is free


def test_quiet_ports_do_not_follow_the_random_module_s_seed():
    """A test that seeds the random module (Scapy's fuzz draws from it) must not make the same worker
    of two suites side by side draw the same ports, one after the other."""
    draws = []
    for _ in range(3):
        random.seed(20240505)
        draws.append(procs.quiet_port())
    assert len(set(draws)) > 1, draws
