"""The thin asyncio shell around the sans-IO logic: one UDP socket per node,
the timers the logic asks for, and signals."""

from __future__ import annotations

import asyncio
import signal
from typing import Callable, Protocol

from .client import ClientLogic
from .effects import Address, Effect, Exit, Send, Show
from .limits import drop_report
from .server import ServerLogic


class Logic(Protocol):
    def receive(self, data: bytes, addr: Address, now: float) -> None: ...
    def get_timer(self) -> float | None: ...
    def handle_timer(self, now: float) -> None: ...
    def drain(self) -> list[Effect]: ...


class NodeProtocol(asyncio.DatagramProtocol):
    """Feeds datagrams and timer ticks to the logic and carries out its effects."""

    def __init__(self, logic: Logic, show: Callable[[Effect], None], done: asyncio.Future):
        self.logic = logic
        self.show = show
        self.done = done
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.logic.receive(data, addr[:2], self.loop.time())
        self.pump()

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors (port unreachable) are loss as far as the protocol is concerned

    def now(self) -> float:
        return self.loop.time()

    def pump(self) -> None:
        """Carry out what the logic asked for, then arm its next timer."""
        for effect in self.logic.drain():
            if isinstance(effect, Send):
                if self.transport is not None:
                    self.transport.sendto(effect.data, effect.addr)
            elif isinstance(effect, Exit):
                if not self.done.done():
                    self.done.set_result(effect.status)
            else:
                self.show(effect)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        when = self.logic.get_timer()
        if when is not None:
            self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.logic.handle_timer(self.loop.time())
        self.pump()


async def open_node(logic: Logic, show: Callable[[Effect], None], bind: Address) -> tuple[NodeProtocol, asyncio.Future]:
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    _, protocol = await loop.create_datagram_endpoint(lambda: NodeProtocol(logic, show, done), local_addr=bind)
    return protocol, done


async def run_server(logic: ServerLogic, bind: Address, show: Callable[[Effect], None]) -> int:
    """Serve until SIGINT or SIGTERM; returns the exit status."""
    node, done = await open_node(logic, show, bind)
    show(Show(">>> Server is online"))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: done.done() or done.set_result(0))
    try:
        return await done
    finally:
        node.transport.close()
        if report := drop_report(logic.drops):
            show(report)


async def run_client(logic: ClientLogic, bind: Address, terminal) -> int:
    """Register, then run typed commands until the logic exits; returns the exit status."""
    node, done = await open_node(logic, terminal.show, bind)
    loop = asyncio.get_running_loop()

    def shutdown() -> None:
        logic.shutdown(node.now())
        node.pump()

    def ended() -> None:
        logic.end_of_input(node.now())
        node.pump()

    def typed(line: str) -> None:
        logic.command(line, node.now())
        node.pump()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, shutdown)
    logic.start(node.now())
    node.pump()
    reader = asyncio.ensure_future(terminal.read(typed, ended, shutdown, lambda: logic.prompt))

    def reader_done(task: asyncio.Future) -> None:
        # A failure while reading or running a typed command would leave a client that
        # is online but deaf to the keyboard: report it (with its traceback) and go offline.
        if not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler({"message": "reading typed commands failed", "exception": task.exception()})
            shutdown()

    reader.add_done_callback(reader_done)
    try:
        return await done
    finally:
        if report := drop_report(logic.drops):
            terminal.show(report)
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        node.transport.close()
