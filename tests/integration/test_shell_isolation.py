"""The asyncio shell (node/runtime.py) isolates every call into the logic: an unexpected
exception in ``receive``, ``handle_timer``, a typed command or an effect carried out (a show)
is counted as ``internal error`` in the drop report, its first traceback is written once to
stderr, and the node goes on serving and re-arms its timer.  Real nodes on real sockets on
127.0.0.1; the failures are injected into the real logic."""

from __future__ import annotations

import asyncio
import random
import socket

import pytest

from node.client import ClientLogic
from node.events import GroupTableChanged
from node.render import HELP, render
from node.limits import drop_report
from node.reliable import RetryPolicy
from node.runtime import ERROR_PAUSE, open_node, run_client
from node.server import ServerLogic
from proto import MSG_TYPES, STATUS_CODES
from proto.fastpath import encode, parse
from tests.shown import shown as printed
from tests.procs import HOST, WAIT

QUICK = RetryPolicy(timeout=0.1, tries=5)

pytestmark = pytest.mark.e2e  # real nodes on real sockets, in this process


class Injected(Exception):
    """The failure a test plants in the logic or the shell."""


def run(test) -> list[dict]:
    """Run the coroutine function ``test`` on a fresh loop; the errors that reached the loop."""
    escaped: list[dict] = []

    async def main():
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: escaped.append(context))
        await asyncio.wait_for(test(), 3 * WAIT)

    asyncio.run(main())
    return escaped


class Peer:
    """A UDP socket on 127.0.0.1 that talks to a node as a scripted client would."""

    def __init__(self, name: str):
        self.name = name
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.setblocking(False)
        self.msg_id = 0

    def send(self, to, type_name: str, token: int = 0, **payload) -> int:
        self.msg_id += 1
        header = {"msg_id": self.msg_id, "sender": self.name, "token": token}
        self.sock.sendto(encode(type_name, header, payload), to)
        return self.msg_id

    async def receive(self, type_name: str, timeout: float = WAIT):
        """The next datagram of that type (others are skipped)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            data, _ = await asyncio.wait_for(loop.sock_recvfrom(self.sock, 65536), deadline - loop.time())
            msg = parse(data)
            if MSG_TYPES[msg.type] == type_name:
                return msg

    async def register(self, to) -> int:
        """reg, then confirm with the token of the reg_ack: the session's token."""
        self.send(to, "reg")
        token = (await self.receive("reg_ack")).payload.token
        self.send(to, "confirm", token=token)
        return token

    def close(self) -> None:
        self.sock.close()


async def server_node(show=lambda effect: None):
    logic = ServerLogic(0, QUICK, random.Random(1))
    node, _ = await open_node(logic, show, (HOST, 0))
    return logic, node, node.sock.getsockname()


def failing_for(method, should_fail):
    """``method`` that raises Injected when ``should_fail(*args)`` says so."""

    def call(*args):
        if should_fail(*args):
            raise Injected("planted")
        return method(*args)

    return call


def test_a_failing_receive_is_counted_and_the_rest_of_the_batch_is_served(capsys):
    async def test():
        logic, node, addr = await server_node()
        logic.receive = failing_for(logic.receive, lambda data, *_: MSG_TYPES[parse(data).type] == "list_groups")
        ann, bob = Peer("Ann"), Peer("Bob")
        try:
            # Sent before the node runs again: one batch, the failing datagrams first.
            ann.send(addr, "list_groups")
            ann.send(addr, "list_groups")
            bob.send(addr, "reg")
            reg_ack = await bob.receive("reg_ack")
            assert reg_ack.payload.status == STATUS_CODES["ok"]
            ann.send(addr, "reg")  # and later datagrams too
            assert (await ann.receive("reg_ack")).payload.status == STATUS_CODES["ok"]
            assert logic.drops["internal error"] == 2
            assert ("internal error", 2) in drop_report(logic.drops).counts
        finally:
            node.close()
            ann.close()
            bob.close()

    assert run(test) == []
    err = capsys.readouterr().err
    assert err.count("Traceback") == 1 and "Injected: planted" in err, err
    assert "Internal error while receiving a datagram" in err


def test_a_failing_timer_call_is_counted_and_the_timer_is_armed_again(capsys):
    async def test():
        logic, node, addr = await server_node()
        failed = []

        def once(now):
            if not failed:
                failed.append(now)
                return True
            return False

        logic.handle_timer = failing_for(logic.handle_timer, once)
        ann = Peer("Ann")
        try:
            await ann.register(addr)
            first = await ann.receive("table")  # never acknowledged: the server retransmits it
            again = await ann.receive("table")  # after the failing timer call, only if it was re-armed
            assert failed and again.msg_id == first.msg_id
            assert logic.drops["internal error"] == 1
        finally:
            node.close()
            ann.close()

    assert run(test) == []
    err = capsys.readouterr().err
    assert err.count("Traceback") == 1 and "Internal error while handling a timer" in err, err


def test_a_timer_call_that_always_fails_is_not_repeated_at_once():
    """What failed is still due: calling it again at once would be a busy loop.  The timer
    waits ERROR_PAUSE instead (asyncio never runs a timer before its time)."""

    async def test():
        logic, node, addr = await server_node()
        loop = asyncio.get_running_loop()
        calls: list[float] = []
        ann = Peer("Ann")
        try:
            await ann.register(addr)
            await ann.receive("table")  # unacknowledged: a retransmission is due
            logic.handle_timer = failing_for(logic.handle_timer, lambda now: calls.append(loop.time()) or True)
            deadline = loop.time() + WAIT
            while len(calls) < 3 and loop.time() < deadline:
                await asyncio.sleep(0.01)
            assert len(calls) >= 3, calls
            assert all(b - a >= ERROR_PAUSE * 0.99 for a, b in zip(calls, calls[1:])), calls
            assert logic.drops["internal error"] == len(calls)
        finally:
            node.close()
            ann.close()

    assert run(test) == []


def test_a_failing_show_is_counted_and_the_rest_is_carried_out(capsys):
    shown, raised = [], []

    def show(event):
        if isinstance(event, GroupTableChanged):
            raised.append(printed(event)[0])
            raise Injected("cannot print a table")
        shown.extend(printed(event))

    async def test():
        logic, node, addr = await server_node(show)
        ann, bob = Peer("Ann"), Peer("Bob")
        try:
            token = await ann.register(addr)
            ann.send(addr, "create_group", token=token, group="g")  # a line and a table
            assert (await ann.receive("ack")).payload.status == STATUS_CODES["ok"]
            await bob.register(addr)
            await bob.receive("table")
            assert ">>> Group table updated." in raised
            assert logic.drops["internal error"] == len(raised)
        finally:
            node.close()
            ann.close()
            bob.close()

    assert run(test) == []
    assert ">>> Client Ann created group g successfully" in shown
    err = capsys.readouterr().err
    assert err.count("Traceback") == 1 and "Internal error while carrying out GroupTableChanged" in err, err


class ScriptedTerminal:
    """Stands in for node/terminal.py: types ``lines`` one by one, each after the output
    line that ends the one before (if any), then ends the input (Ctrl+D)."""

    def __init__(self, lines: list[tuple[str, str | None]]):
        self.lines = lines  # (typed line, the output line to wait for before typing the next)
        self.shown: list[str] = []
        self._changed = asyncio.Event()

    def show(self, event) -> None:
        if isinstance(shown := render(event), list):
            self.shown += shown
            self._changed.set()

    async def wait_for(self, text: str) -> None:
        while text not in self.shown:
            self._changed.clear()
            await self._changed.wait()

    async def read(self, typed, ended, interrupted, prompt) -> None:
        await self.wait_for(">>> Welcome, You are registered.")
        for line, answer in self.lines:
            typed(line)
            if answer is not None:
                await self.wait_for(answer)
        ended()


def test_a_failing_typed_command_is_counted_and_later_commands_run(capsys):
    terminal = ScriptedTerminal([("boom", None), ("help", f">>> {HELP[-1]}")])

    async def test():
        server, server_node_, addr = await server_node()
        logic = ClientLogic("Ann", addr, 0, QUICK, random.Random(2))
        logic.command = failing_for(logic.command, lambda line, now: line == "boom")
        try:
            status = await run_client(logic, (HOST, 0), terminal)
        finally:
            server_node_.close()
        assert status == 0
        assert logic.drops["internal error"] == 1

    assert run(test) == []
    assert terminal.shown[-2:] == [">>> You are Offline. Bye.", ">>> Dropped datagrams: internal error 1"]
    assert f">>> {HELP[-1]}" in terminal.shown
    err = capsys.readouterr().err
    assert err.count("Traceback") == 1 and "Internal error while running a typed command" in err, err
