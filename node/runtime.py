"""The thin asyncio shell around the sans-IO logic: one UDP socket per node,
the timers the logic asks for, and signals.

The shell isolates every call into the logic and every effect it carries out: an
unexpected exception is counted (``internal error`` in the node's drop report), the
first one's traceback goes to stderr, and the node goes on serving."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import traceback
from collections import Counter, deque
from typing import Callable, Protocol

from .client import ClientLogic
from .effects import Address, Exit, Send
from .events import ServerOnline
from .limits import drop_report
from .render import prompt, state_lost
from .server import ServerLogic
from .store import COMMIT_WITHIN, MemoryStore, StoreError

Printer = Callable[[object], None]  # prints what the user reads for one event (node/events.py)


class Logic(Protocol):
    def receive(self, data: bytes, addr: Address, now: float) -> None: ...
    def get_timer(self) -> float | None: ...
    def handle_timer(self, now: float) -> None: ...
    def drain(self, now: float) -> list: ...  # Send and Exit effects, and events

    drops: Counter[str]


BATCH = 64  # datagrams handed to the logic before its effects are carried out
MAX_BACKLOG = 65536  # datagrams waiting for a full send buffer to drain; beyond that, lost
RECEIVE_BUFFER = 4 << 20  # bytes: a burst (a registration storm, a group's acks) waits here instead of
# being dropped by the kernel; Linux caps it at net.core.rmem_max
INTERNAL_ERROR = "internal error"  # the drop kind that counts unexpected exceptions
STATE_LOST = 3  # exit status of a server that could not keep its state (a write to its state file failed)
ERROR_PAUSE = 0.05  # seconds: after a timer call failed, the next waits at least this long (no busy loop)


class Node:
    """One UDP socket driving one sans-IO logic: feeds it datagrams and timer ticks and
    carries out its effects.

    It reads the socket itself (``loop.add_reader``) rather than through an asyncio
    datagram transport, which hands over one datagram per turn of the event loop: here
    every datagram already waiting (up to BATCH) reaches the logic before its effects
    are carried out, so under load one ``drain`` serves a whole burst, and the server
    coalesces the table updates that burst caused into one round."""

    def __init__(self, logic: Logic, show: Printer, done: asyncio.Future, sock: socket.socket,
                 store: MemoryStore | None = None):
        """``store``: the server's state store, committed after each drain, before anything is sent
        (a drain with nothing to send may wait, see ``COMMIT_WITHIN``)."""
        self.logic = logic
        self._store = store
        self._commit_timer: asyncio.TimerHandle | None = None
        self._stopped = False
        self.show = show
        self.done = done
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when: float | None = None
        self._backlog: deque[tuple[bytes, Address]] = deque()
        self._timer_floor = 0.0  # no timer before this (see ERROR_PAUSE)
        self._traced = False  # an internal error's traceback was written already
        self.loop.add_reader(sock.fileno(), self._readable)

    def now(self) -> float:
        return self.loop.time()

    def call(self, what: str, action: Callable[..., None], *args) -> None:
        """Call into the logic (a typed command, a signal), isolated; then carry out its effects."""
        try:
            action(*args)
        except Exception:
            self._internal_error(what)
        self.pump()

    def _internal_error(self, what: str) -> None:
        """Count the exception being handled; write the first one's traceback to stderr."""
        self.logic.drops[INTERNAL_ERROR] += 1
        if self._traced:
            return
        self._traced = True
        try:
            print(f"Internal error while {what}; the node goes on (later ones are only counted):", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
            sys.stderr.flush()
        except (OSError, ValueError):
            pass  # no stderr any more (the terminal is gone): the count remains

    def _readable(self) -> None:
        now = self.loop.time()
        receive, recvfrom = self.logic.receive, self.sock.recvfrom
        batch = iter(range(BATCH))  # shared by the tries: after a failure, the rest of the batch
        while True:
            try:  # one try per batch, not one per datagram
                for _ in batch:
                    try:
                        data, addr = recvfrom(65536)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        continue  # an ICMP error (port unreachable): loss, as far as the protocol is concerned
                    receive(data, addr[:2], now)
                break
            except Exception:
                self._internal_error("receiving a datagram")
        self.pump()

    def _send(self, data: bytes, addr: Address) -> None:
        if self._backlog:
            if len(self._backlog) < MAX_BACKLOG:
                self._backlog.append((data, addr))
            return
        try:
            self.sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self._backlog.append((data, addr))
            self.loop.add_writer(self.sock.fileno(), self._writable)
        except OSError:
            pass  # unreachable: loss, which the protocol repairs

    def _writable(self) -> None:
        while self._backlog:
            try:
                self.sock.sendto(*self._backlog[0])
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                pass
            self._backlog.popleft()
        self.loop.remove_writer(self.sock.fileno())

    def pump(self) -> None:
        """Carry out what the logic asked for, then arm its next timer."""
        if self._stopped:
            return  # nothing more goes out after a failed commit
        try:
            effects = self.logic.drain(self.loop.time())
        except Exception:
            self._internal_error("collecting the logic's effects")
            effects = ()
        if self._store is not None:
            if effects:
                if not self._keep():  # what this batch changed is kept before any of its answers go
                    return
            elif self._commit_timer is None and self._store.dirty:
                self._commit_timer = self.loop.call_later(COMMIT_WITHIN, self._commit_late)
        effects = iter(effects)  # shared by the tries: after a failure, the rest of the effects
        while True:
            try:  # one try per drain, not one per effect
                for effect in effects:
                    if type(effect) is Send:
                        self._send(*effect)
                    elif isinstance(effect, Exit):
                        if not self.done.done():
                            self.done.set_result(effect.status)
                    else:
                        self.show(effect)
                break
            except Exception:
                self._internal_error(f"carrying out {type(effect).__name__}")
        try:
            when = self.logic.get_timer()
        except Exception:
            self._internal_error("asking the logic for its next timer")
            when = self.loop.time() + ERROR_PAUSE
        if when is not None and when < self._timer_floor:
            when = self._timer_floor
        # Re-armed only when the logic wants to be called sooner: a timer that comes too late
        # (the retransmission it was for got acked) finds nothing due and costs one call, while
        # moving it on every acked datagram would cost a cancel and a new timer each time.
        if when is not None and (self._timer_when is None or when < self._timer_when):
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.loop.call_at(when, self._on_timer)
            self._timer_when = when

    @property
    def state_lost(self) -> bool:
        """A commit failed: the server stopped keeping its state (and answering)."""
        return self._stopped

    def _keep(self) -> bool:
        """Commit what the logic changed; False if that failed (the server has stopped)."""
        if self._stopped:
            return False
        try:
            self._store.commit()
        except StoreError as exc:
            self._stop(exc)
            return False
        return True

    def _commit_late(self) -> None:
        self._commit_timer = None
        self._keep()

    def _stop(self, exc: StoreError) -> None:
        """The state could not be kept: answer nothing more (an answer would promise what a
        restart would not know), say why, and end with STATE_LOST."""
        try:
            print(state_lost(str(exc)), file=sys.stderr, flush=True)
        except (OSError, ValueError):
            pass
        self._stopped = True
        if not self.done.done():
            self.done.set_result(STATE_LOST)

    def _on_timer(self) -> None:
        self._timer = self._timer_when = None
        now = self.loop.time()
        try:
            self.logic.handle_timer(now)
        except Exception:
            self._internal_error("handling a timer")
            self._timer_floor = now + ERROR_PAUSE  # what failed may still be due: not again at once
        self.pump()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._commit_timer is not None:
            self._commit_timer.cancel()
            self._keep()  # what was waiting for a commit, at a stop
        self.loop.remove_reader(self.sock.fileno())
        if self._backlog:
            self.loop.remove_writer(self.sock.fileno())
        self.sock.close()


async def open_node(logic: Logic, show: Printer, bind: Address,
                    store: MemoryStore | None = None) -> tuple[Node, asyncio.Future]:
    """A node on a UDP socket bound to ``bind`` (OSError if it cannot be bound)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.bind(bind)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    done = asyncio.get_running_loop().create_future()
    return Node(logic, show, done, sock, store), done


async def run_server(logic: ServerLogic, bind: Address, show: Printer, store: MemoryStore | None = None) -> int:
    """Serve until SIGINT or SIGTERM; returns the exit status.  With ``store``, the one the logic
    was made with, it resumes what the store holds and commits each batch."""
    node, done = await open_node(logic, show, bind, store)
    show(ServerOnline(node.sock.getsockname()[:2]))
    node.call("resuming", logic.resume, node.now())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: done.done() or done.set_result(0))
    try:
        status = await done
    finally:
        node.close()  # (it commits what waited for a commit)
        if report := drop_report(logic.drops):
            show(report)
    return STATE_LOST if node.state_lost else status


async def run_client(logic: ClientLogic, bind: Address, terminal) -> int:
    """Register, then run typed commands until the logic exits; returns the exit status."""
    node, done = await open_node(logic, terminal.show, bind)
    loop = asyncio.get_running_loop()

    def shutdown() -> None:
        node.call("shutting down", logic.shutdown, node.now())

    def ended() -> None:
        node.call("ending the input", logic.end_of_input, node.now())

    def typed(line: str) -> None:
        node.call("running a typed command", logic.command, line, node.now())

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, shutdown)
    node.call("registering", logic.start, node.now())
    reader = asyncio.ensure_future(terminal.read(typed, ended, shutdown, lambda: prompt(logic.group)))

    def reader_done(task: asyncio.Future) -> None:
        # A failure while reading typed commands would leave a client that is online but
        # deaf to the keyboard: report it (with its traceback) and go offline.
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
        node.close()
