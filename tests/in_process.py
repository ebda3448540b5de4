"""Keeps the fast loop in-process: while a test not marked ``e2e`` runs (its fixtures too),
starting a process or opening an internet or packet socket raises ``NotInProcess``, and the test
fails saying so even if it caught the error.  conftest.py installs it; tests/kinds.py says which
tests are e2e.

It listens to Python's audit events (``sys.addaudithook``), which every way of starting a process
or opening a socket raises, wherever in the test, its fixtures or the code under test it happens.
Local sockets (AF_UNIX: asyncio's self-pipe) are in-process enough and allowed."""

from __future__ import annotations

import socket
import sys

_FAMILIES = frozenset({socket.AF_INET, socket.AF_INET6, socket.AF_PACKET})
_STARTS = frozenset({"subprocess.Popen", "os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.forkpty"})


class NotInProcess(RuntimeError):
    """A test not marked e2e started a process or opened a real socket."""


class Guard:
    def __init__(self):
        self.test: str | None = None  # the node id of the guarded test running now
        self.breaches: list[str] = []
        self.installed = False

    def __call__(self, event: str, args: tuple) -> None:
        if self.test is None:  # the common case first: called for every audit event of the run
            return
        if event == "socket.__new__":
            if args[1] not in _FAMILIES:
                return
            what = f"opened an {socket.AddressFamily(args[1]).name} socket"
        elif event in _STARTS:
            what = f"started a process ({event})"
        else:
            return
        self.breaches.append(what)
        raise NotInProcess(refusal(self.test, what))

    def take(self) -> list[str]:
        """The breaches since the last call, forgotten."""
        taken, self.breaches = self.breaches, []
        return taken


def refusal(test: str, what: str) -> str:
    return (f"{test} {what} but is not marked e2e: move it to tests/e2e, use a fixture that starts "
            "processes (tests/kinds.py), or mark it with @pytest.mark.e2e")


GUARD = Guard()


def install() -> None:
    """Once per process: an audit hook cannot be removed, and a second one would report twice."""
    if not GUARD.installed:
        sys.addaudithook(GUARD)
        GUARD.installed = True
