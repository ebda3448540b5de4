"""``ChatApp.py --demo`` as a user runs it: a real process, its output and exit status."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from tools.demo import DemoFailed, Stage

from tests.procs import ROOT  # the checkout, wherever in tests/ this file sits
CHATAPP = str(ROOT / "ChatApp.py")
DEADLINE = 60.0

pytestmark = pytest.mark.e2e  # the demo as processes


def started_pids(output: str) -> dict[str, int]:
    return {name: int(pid) for name, pid in re.findall(r"^demo +: started (\w+) \(pid (\d+)\)", output, re.M)}


def still_running(pids: dict[str, int]) -> list[str]:
    """Names whose pid still exists; those are killed, so a failing test leaves nothing behind."""
    left = []
    for name, pid in pids.items():
        try:
            os.kill(pid, 0)  # signal 0: only asks whether the pid exists
        except ProcessLookupError:
            continue  # stopped and reaped
        left.append(f"{name} (pid {pid})")
        os.kill(pid, signal.SIGKILL)
    return left


class Demo:
    """``ChatApp.py --demo`` as a child process whose output is read line by line."""

    def __init__(self, *args: str):
        env = dict(os.environ)
        env.pop("NO_COLOR", None)  # output is a pipe: the demo must choose plain text by itself
        self.proc = subprocess.Popen(
            [sys.executable, CHATAPP, "--demo", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd="/",  # the demo finds ChatApp.py by itself, not through the working directory
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, prefix: str) -> None:
        deadline = time.monotonic() + DEADLINE
        while not any(line.startswith(prefix) for line in self.lines):
            line = self._queue.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, f"demo ended before {prefix!r}:\n" + "\n".join(self.lines)
            self.lines.append(line)

    def finish(self) -> tuple[int, str]:
        """Wait for the exit; the status and what it wrote on stderr."""
        status = self.proc.wait(timeout=DEADLINE)
        while (line := self._queue.get(timeout=DEADLINE)) is not None:
            self.lines.append(line)
        return status, self.proc.stderr.read()

    def cleanup(self) -> list[str]:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        return still_running(started_pids("\n".join(self.lines)))


def test_demo_runs_every_step_and_exits_0():
    demo = Demo()
    try:
        status, errors = demo.finish()
    finally:
        left = demo.cleanup()
    lines = demo.lines
    assert status == 0, errors + "\n".join(lines[-40:])
    assert not left, f"still running after the demo: {left}"
    assert not any("\x1b[" in line for line in lines)  # not a terminal: no colour codes

    def at(line: str, start: int = 0) -> int:
        """Index of the first exact ``line`` at or after ``start``."""
        assert line in lines[start:], f"missing {line!r} after line {start}"
        return lines.index(line, start)

    at("server | >>> Server is online")
    for name in ("Ann", "Bob", "Cid"):
        at(f"{name:<6} | >>> Welcome, You are registered.")
    typed = at("Ann    < send Bob Hi Bob; lunch at 12:30?")
    at("Bob    | >>> Ann: Hi Bob; lunch at 12:30?", typed)
    at("Ann    | >>> Message received by Bob.", typed)
    at("Ann    | >>> Group study created by Server.")
    at("server | >>> Client Ann created group study successfully")
    for name in ("Ann", "Bob", "Cid"):
        at(f"{name:<6} | >>> Entered group study successfully")
    sent = at("Bob    < send_group Hello study group!")
    at("Bob    | >>> (study) Message received by Server.", sent)
    at("Ann    | >>> (study) Group_Message Bob: Hello study group!", sent)
    at("Cid    | >>> (study) Group_Message Bob: Hello study group!", sent)
    assert "Bob    | >>> (study) Group_Message Bob: Hello study group!" not in lines  # no echo to the sender
    members = at("Cid    | >>> (study) Members in the group study:")
    assert lines[members + 1 : members + 4] == [f"Cid    | >>> (study) {n}" for n in ("Bob", "Cid", "Ann")]
    # The private message sent to Cid in group mode is shown only after leave_group.
    left_group = at("Cid    | >>> Leave group chat study")
    assert at("Cid    | >>> Ann: Cid, call me when you are out of the group") > left_group
    for name in ("Ann", "Bob", "Cid"):
        at(f"{name:<6} | >>> You are Offline. Bye.")
    assert lines[-1] == "demo   : all steps done"
    assert set(started_pids("\n".join(lines))) == {"server", "Ann", "Bob", "Cid"}


@pytest.mark.parametrize("other", [["-s", "6666"], ["-c", "Ann", "127.0.0.1", "6666", "7771"]])
def test_demo_excludes_server_and_client_modes(other):
    # Rejected while parsing arguments: nothing is bound or started.
    result = subprocess.run([sys.executable, CHATAPP, "--demo", *other], capture_output=True, text=True, timeout=DEADLINE)
    assert result.returncode == 1
    assert "not allowed with argument" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_does_not_load_scapy_or_the_demo():
    probe = (
        "import sys, ChatApp\n"
        "try:\n    ChatApp.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('scapy', 'rich', 'proto', 'prompt_toolkit')"
        " or m in ('tools.demo', 'node.client', 'node.server', 'node.runtime')))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=DEADLINE)
    assert "--demo" in result.stdout
    assert result.stdout.rstrip().splitlines()[-1] == "[]"


def test_interrupted_demo_stops_every_process_it_started():
    demo = Demo()
    try:
        demo.wait_for("Cid    | >>> Welcome")  # every client registered: mid-scenario
        demo.proc.send_signal(signal.SIGINT)
        status, errors = demo.finish()
    finally:
        left = demo.cleanup()
    assert not left, f"still running after the demo: {left}"
    assert status == 128 + signal.SIGINT
    assert "demo interrupted" in errors
    # Stopped in order: each client still reached the server to deregister.
    for name in ("Ann", "Bob", "Cid"):
        assert f"{name:<6} | >>> You are Offline. Bye." in demo.lines
    assert set(started_pids("\n".join(demo.lines))) == {"server", "Ann", "Bob", "Cid"}


class Collect:
    """A Printer stand-in that keeps the lines."""

    def __init__(self):
        self.lines: list[str] = []

    def line(self, who, sep, text):
        self.lines.append(f"{who} {sep} {text}")

    def say(self, text):
        self.line("demo", ":", text)


CHILD = "import sys\nprint('ready', flush=True)\nfor line in sys.stdin:\n    print('got ' + line.strip(), flush=True)\n"


def test_a_missing_line_fails_the_step_with_a_clear_message_and_the_process_is_stopped():
    stage = Stage(Collect(), timeout=1.0)
    actor = stage.start("echo", [sys.executable, "-c", CHILD])
    try:
        stage.expect("echo", "ready")
        stage.type("echo", "hello")
        stage.expect("echo", "got hello")
        with pytest.raises(DemoFailed, match=r"echo did not print 'never' within 1 s"):
            stage.expect("echo", "never")
    finally:
        stage.close()
    assert actor.proc.returncode is not None
    assert not still_running({"echo": actor.proc.pid})


def test_a_process_that_exits_early_fails_the_step_at_once():
    stage = Stage(Collect(), timeout=30.0)
    try:
        stage.start("quitter", [sys.executable, "-c", "import sys; print('bye'); sys.exit(3)"])
        with pytest.raises(DemoFailed, match=r"quitter exited \(status 3\) before printing 'hello'"):
            stage.expect("quitter", "hello")
        with pytest.raises(DemoFailed, match="exited with status 3, expected 0"):
            stage.expect_exit("quitter", 0)
    finally:
        stage.close()
