"""``ChatApp.py --demo``: a real server and three scripted clients on loopback.

Every node is a separate ``ChatApp.py`` process, exactly as a user would start
it; this module only types into their standard input and reads their output.
Each step waits until the output it depends on has appeared (with a deadline),
so the script never relies on timing.  Output lines are shown as they arrive,
prefixed with the name of the process that printed them:

    server | >>> Server is online        a line printed by a process
    Ann    < send Bob Hi                 a line typed into a process
    demo   : == 2. A private message     the demo's own narration

Every process started here is stopped by its pid before the demo returns, also
when it fails or is interrupted (Ctrl+C, SIGTERM, SIGHUP).
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from node.text import escaped
from tools.loopback import LOOPBACK, free_port

CHATAPP = Path(__file__).resolve().parent.parent / "ChatApp.py"
STEP_TIMEOUT = 15.0  # generous: a step needs one round trip, or 2.5 s if a datagram is lost
STOP_TIMEOUT = 5.0  # a client deregisters on SIGTERM: one round trip with the server
WIDTH = 6  # width of the name column

STYLES = {"demo": "bold", "server": "cyan", "Ann": "green", "Bob": "magenta", "Cid": "yellow"}


class DemoFailed(Exception):
    """A step did not happen: the message says which and why."""


class Interrupted(Exception):
    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Printer:
    """Writes prefixed lines; colours them with rich only when asked to."""

    def __init__(self, color: bool, stream=None):
        self.stream = stream if stream is not None else sys.stdout
        self._console = None
        self._broken = False
        if color:
            from rich.console import Console  # only loaded when colour is wanted

            self._console = Console(file=self.stream, highlight=False, soft_wrap=True)

    def line(self, who: str, sep: str, text: str) -> None:
        if self._broken:
            return
        # What the processes print carries names and messages from the network.
        text = escaped(text)
        try:
            if self._console is None:
                print(f"{who:<{WIDTH}} {sep} {text}", file=self.stream, flush=True)
            else:
                from rich.text import Text

                style = STYLES.get(who, "")
                out = Text(f"{who:<{WIDTH}} {sep} ", style=style)
                # Text, not markup: a chat line with [brackets] must print as typed.
                out.append(text, style="bold" if sep == "<" else style)
                self._console.print(out)
        except (BrokenPipeError, ValueError):
            self._broken = True  # the reader went away (e.g. piped into head): keep going quietly

    def say(self, text: str) -> None:
        self.line("demo", ":", text)


@dataclass
class Actor:
    """One process of the demo and everything it has printed so far."""

    name: str
    proc: subprocess.Popen
    lines: list[str] = field(default_factory=list)
    ended: bool = False  # its output reached end of file


class Stage:
    """Starts processes, types into them, waits for their output, and stops them.

    Output from all processes goes through one queue, so it is shown in the
    order it arrived and conditions are checked as each line comes in.
    """

    def __init__(self, printer: Printer, timeout: float = STEP_TIMEOUT):
        self.printer = printer
        self.timeout = timeout
        self.actors: dict[str, Actor] = {}
        self._events: queue.Queue[tuple[Actor, str | None]] = queue.Queue()

    # -- processes ------------------------------------------------------------------

    def start(self, name: str, argv: list[str]) -> Actor:
        env = dict(os.environ, PYTHONIOENCODING="utf-8")
        # Buffered output: each print (a table with its title) then reaches the pipe in one piece.
        env.pop("PYTHONUNBUFFERED", None)
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # error lines get the same prefix as the rest
            env=env,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            # Own session: Ctrl+C reaches only the demo, which then stops
            # each process in order (clients deregister before the server stops).
            start_new_session=True,
        )
        actor = Actor(name, proc)
        self.actors[name] = actor
        threading.Thread(target=self._read, args=(actor,), name=f"read-{name}", daemon=True).start()
        return actor

    def _read(self, actor: Actor) -> None:
        for line in actor.proc.stdout:
            self._events.put((actor, line.rstrip("\r\n")))
        self._events.put((actor, None))

    def type(self, name: str, line: str) -> None:
        actor = self.actors[name]
        self.printer.line(name, "<", line)
        try:
            actor.proc.stdin.write(line + "\n")
            actor.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise DemoFailed(f"{name} is no longer reading its input (exit status {actor.proc.poll()})") from None

    def end_input(self, name: str) -> None:
        """Close the process's standard input: the same as Ctrl+D at its prompt."""
        self.printer.line(name, "<", "(end of input, like Ctrl+D)")
        try:
            self.actors[name].proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass

    # -- waiting -----------------------------------------------------------------------

    def mark(self, name: str) -> int:
        """A position in ``name``'s output; ``expect(..., since=mark)`` looks only after it."""
        return len(self.actors[name].lines)

    def expect(self, name: str, wanted: str | re.Pattern, since: int = 0) -> int:
        """Wait until ``name`` prints a line equal to ``wanted`` (or matching it, if a
        pattern) at or after position ``since``; return the position after that line."""
        matches = wanted.fullmatch if isinstance(wanted, re.Pattern) else wanted.__eq__
        actor = self.actors[name]
        shown = wanted.pattern if isinstance(wanted, re.Pattern) else wanted
        checked = since

        def found() -> int | None:
            nonlocal checked
            for index in range(checked, len(actor.lines)):
                if matches(actor.lines[index]):
                    return index + 1
            checked = max(checked, len(actor.lines))
            return None

        def gone() -> str | None:
            if not actor.ended:
                return None
            try:
                status = actor.proc.wait(self.timeout)
            except subprocess.TimeoutExpired:
                return f"{name} closed its output before printing {shown!r}"
            return f"{name} exited (status {status}) before printing {shown!r}"

        return self._until(found, gone, f"{name} did not print {shown!r}")

    def expect_exit(self, name: str, status: int = 0) -> None:
        """Wait until ``name`` has exited (its output closed) with ``status``."""
        actor = self.actors[name]
        self._until(lambda: True if actor.ended else None, lambda: None, f"{name} did not exit")
        try:
            code = actor.proc.wait(self.timeout)
        except subprocess.TimeoutExpired:
            raise DemoFailed(f"{name} closed its output but did not exit within {self.timeout:g} s") from None
        if code != status:
            raise DemoFailed(f"{name} exited with status {code}, expected {status}")

    def _until(self, found: Callable[[], object], gone: Callable[[], str | None], failure: str):
        """Show output as it arrives until ``found()`` is not None; fail on ``gone()`` or the deadline."""
        deadline = time.monotonic() + self.timeout
        while True:
            result = found()
            if result is not None:
                return result
            reason = gone()
            if reason is not None:
                raise DemoFailed(reason)
            left = deadline - time.monotonic()
            if left <= 0:
                raise DemoFailed(f"{failure} within {self.timeout:g} s")
            self._take(left)

    def _take(self, wait: float) -> bool:
        """Show one line of output (waiting at most ``wait`` seconds); False if none came."""
        try:
            actor, line = self._events.get(timeout=wait)
        except queue.Empty:
            return False
        if line is None:
            actor.ended = True
        else:
            actor.lines.append(line)
            self.printer.line(actor.name, "|", line)
        return True

    # -- stopping ------------------------------------------------------------------------

    def stop(self, name: str) -> int:
        """Stop one process by its pid (SIGTERM, then SIGKILL if it hangs); its exit status."""
        actor = self.actors[name]
        if actor.proc.poll() is None:
            actor.proc.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        while actor.proc.poll() is None and time.monotonic() < deadline:
            self._take(0.05)  # keep showing what it prints on the way out
        if actor.proc.poll() is None:
            actor.proc.kill()
        status = actor.proc.wait()
        if actor.proc.stdin is not None:
            try:
                actor.proc.stdin.close()
            except OSError:
                pass
        return status

    def close(self) -> None:
        """Stop every process still running, the last started first, and show their last lines."""
        for name in reversed(list(self.actors)):
            self.stop(name)
        deadline = time.monotonic() + 1.0
        while not all(a.ended for a in self.actors.values()) and time.monotonic() < deadline:
            self._take(0.05)
        while self._take(0):
            pass


# -- the scenario ---------------------------------------------------------------------------

CLIENTS = ("Ann", "Bob", "Cid")
GROUP = "study"
PRIVATE = "Hi Bob; lunch at 12:30?"  # ';' and ':' are plain text on this wire
QUEUED = "Cid, call me when you are out of the group"
GROUP_TEXT = "Hello study group!"


def _row(name: str, port: int, state: str) -> re.Pattern:
    """A row of a client table as a client prints it when its output is not a terminal."""
    return re.compile(rf"\s+{re.escape(name)}\s+{re.escape(LOOPBACK)}\s+{port}\s+{state}")


def scenario(stage: Stage, options: list[str]) -> None:
    say = stage.printer.say
    python = [sys.executable, str(CHATAPP)]
    server_port = free_port()
    ports = {name: free_port() for name in CLIENTS}

    def start(name: str, args: list[str]) -> None:
        actor = stage.start(name, python + args + ["--bind", LOOPBACK, "--no-color", *options])
        say(f"started {name} (pid {actor.proc.pid}): ChatApp.py {' '.join(args)}")

    say("== 1. Registration: a server and three clients, on loopback ports the OS picked")
    start("server", ["-s", str(server_port)])
    stage.expect("server", ">>> Server is online")
    for name in CLIENTS:
        start(name, ["-c", name, LOOPBACK, str(server_port), str(ports[name])])
        stage.expect(name, ">>> Welcome, You are registered.")
    say("waiting until every client's table shows all three online ...")
    for name in CLIENTS:
        for peer in CLIENTS:
            stage.expect(name, _row(peer, ports[peer], "online"))

    say("== 2. A private message goes straight from Ann to Bob; the server is not involved")
    bob, ann = stage.mark("Bob"), stage.mark("Ann")
    stage.type("Ann", f"send Bob {PRIVATE}")
    stage.expect("Bob", f">>> Ann: {PRIVATE}", bob)
    stage.expect("Ann", ">>> Message received by Bob.", ann)

    say("== 3. A group: Ann creates it, Bob and Cid join")
    ann = stage.mark("Ann")
    stage.type("Ann", f"create_group {GROUP}")
    stage.expect("Ann", f">>> Group {GROUP} created by Server.", ann)
    stage.expect("server", f">>> Client Ann created group {GROUP} successfully")
    bob = stage.mark("Bob")
    stage.type("Bob", "list_groups")
    after = stage.expect("Bob", ">>> Available group chats:", bob)
    stage.expect("Bob", f">>> {GROUP}", after)
    for name in ("Bob", "Cid"):
        mark = stage.mark(name)
        stage.type(name, f"join_group {GROUP}")
        stage.expect(name, f">>> Entered group {GROUP} successfully", mark)
        stage.expect("server", f">>> Client {name} joined group {GROUP}")

    say("== 4. Cid is in group mode: a private message to Cid is queued, not shown yet")
    ann = stage.mark("Ann")
    stage.type("Ann", f"send Cid {QUEUED}")
    stage.expect("Ann", ">>> Message received by Cid.", ann)
    ann = stage.mark("Ann")
    stage.type("Ann", f"join_group {GROUP}")
    stage.expect("Ann", f">>> Entered group {GROUP} successfully", ann)

    say("== 5. Group conversation: the server forwards Bob's message to the other members")
    marks = {name: stage.mark(name) for name in CLIENTS}
    stage.type("Bob", f"send_group {GROUP_TEXT}")
    stage.expect("Bob", f">>> ({GROUP}) Message received by Server.", marks["Bob"])
    for name in ("Ann", "Cid"):
        stage.expect(name, f">>> ({GROUP}) Group_Message Bob: {GROUP_TEXT}", marks[name])
    cid = stage.mark("Cid")
    stage.type("Cid", "list_members")
    after = stage.expect("Cid", f">>> ({GROUP}) Members in the group {GROUP}:", cid)
    for name in ("Bob", "Cid", "Ann"):  # in the order they joined
        after = stage.expect("Cid", f">>> ({GROUP}) {name}", after)

    say("== 6. Cid leaves the group; the queued private message is printed now")
    cid = stage.mark("Cid")
    stage.type("Cid", "leave_group")
    after = stage.expect("Cid", f">>> Leave group chat {GROUP}", cid)
    stage.expect("Cid", f">>> Ann: {QUEUED}", after)
    stage.expect("server", ">>> Client Cid left group")

    say("== 7. Deregistration: the others see it in their client tables")
    bob = stage.mark("Bob")
    stage.type("Ann", "dereg Ann")
    stage.expect("Ann", ">>> You are Offline. Bye.")
    stage.expect_exit("Ann", 0)
    stage.expect("Bob", _row("Ann", ports["Ann"], "offline"), bob)
    stage.type("Bob", "dereg Bob")
    stage.expect("Bob", ">>> You are Offline. Bye.")
    stage.expect_exit("Bob", 0)
    stage.end_input("Cid")
    stage.expect("Cid", ">>> You are Offline. Bye.")
    stage.expect_exit("Cid", 0)

    server = stage.actors["server"]
    say(f"stopping the server with SIGTERM (pid {server.proc.pid})")
    status = stage.stop("server")
    if status != 0:
        raise DemoFailed(f"server exited with status {status} after SIGTERM, expected 0")


def run_demo(args) -> int:
    """Entry point from ChatApp.py; returns the exit status."""
    color = not args.no_color and sys.stdout.isatty() and "NO_COLOR" not in os.environ
    printer = Printer(color)
    options = ["--ack-timeout", str(args.ack_timeout), "--retries", str(args.retries)]
    stage = Stage(printer)
    closing = False

    def interrupt(signum, frame) -> None:
        if not closing:  # a second Ctrl+C must not cut the clean-up short
            raise Interrupted(signum)

    # Installed explicitly: a demo started in the background may inherit SIGINT ignored.
    wanted = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, interrupt) for sig in wanted}
    status = 0
    try:
        scenario(stage, options)
        printer.say("all steps done")
    except DemoFailed as exc:
        print(f"demo failed: {exc}", file=sys.stderr, flush=True)
        status = 1
    except Interrupted as exc:
        print(f"demo interrupted ({exc}); stopping its processes", file=sys.stderr, flush=True)
        status = 128 + exc.signum
    finally:
        closing = True
        stage.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status
