"""Fixtures shared by the test modules, and the marks of each test (tests/kinds.py): its kind,
``e2e`` if it starts processes or real sockets, soak tests left out unless asked for."""

from __future__ import annotations

import os

import pytest

from tests import in_process, kinds
from tests.captures import Capture, record_direct, record_proxied
from tests.procs import Cluster
from tests.security_tools import Peer, Tool

in_process.install()


# -- marks ----------------------------------------------------------------------------------------


@pytest.hookimpl(tryfirst=True)  # before -m selects by the marks given here
def pytest_collection_modifyitems(config, items):
    for item in items:
        for mark in kinds.marks_for(item.path, getattr(item, "fixturenames", ())):
            item.add_marker(mark)
    if not kinds.soak_asked(config.option.markexpr or ""):
        soak = [item for item in items if item.get_closest_marker(kinds.SOAK)]
        if soak:
            config.hook.pytest_deselected(items=soak)
            items[:] = [item for item in items if not item.get_closest_marker(kinds.SOAK)]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Guards a test not marked e2e, from its fixtures' set-up to their teardown."""
    in_process.GUARD.test = None if item.get_closest_marker(kinds.E2E) else item.nodeid
    in_process.GUARD.take()
    try:
        return (yield)
    finally:
        in_process.GUARD.test = None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A breach fails the test even where the code under test caught the error."""
    report = yield
    breaches = in_process.GUARD.take()
    if breaches and report.passed:
        report.outcome = "failed"
        report.longrepr = in_process.refusal(item.nodeid, "; ".join(breaches))
    return report


# -- processes and sockets --------------------------------------------------------------------------


@pytest.fixture
def cluster():
    """ChatApp.py servers and clients in pseudo-terminals (tests/procs.py), stopped by pid at the end."""
    nodes = Cluster()
    yield nodes
    nodes.stop_all()
    for proc in nodes.procs:  # shown by pytest only when the test failed
        print(f"----- {proc.label} (pid {proc.pid}, status {proc.status}) -----\n{proc.text}")


@pytest.fixture
def pair(cluster):
    """A server, and Ann and Bob registered with it, each seeing the other online: (server, ann, bob)."""
    server = cluster.server()
    ann, bob = cluster.clients(["Ann", "Bob"], server)
    return server, ann, bob


@pytest.fixture
def tools():
    """Start tools with ``tools(script, *args)``; each is stopped by pid at the end of the test."""
    started: list[Tool] = []

    def start(script: str, *args: str) -> Tool:
        tool = Tool(script, *args)
        started.append(tool)
        return tool

    yield start
    for tool in started:
        tool.stop()


@pytest.fixture
def peers():
    """Plain sockets on 127.0.0.1 (tests/security_tools.py): ``peers()`` opens one; all are closed at the end."""
    opened: list[Peer] = []

    def open_one() -> Peer:
        peer = Peer()
        opened.append(peer)
        return peer

    yield open_one
    for peer in opened:
        peer.close()


# -- live captures ------------------------------------------------------------------------------------


def _needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("live capture on lo needs root (a raw packet socket)")


@pytest.fixture(scope="session")
def direct(tmp_path_factory) -> Capture:
    """Ann and Bob chat through a server, captured live (tests/captures.py)."""
    _needs_root()
    return record_direct(tmp_path_factory)


@pytest.fixture(scope="session")
def proxied(tmp_path_factory) -> Capture:
    """Ann messages Bob through the lossy proxy, captured live (tests/captures.py)."""
    _needs_root()
    return record_proxied(tmp_path_factory)
