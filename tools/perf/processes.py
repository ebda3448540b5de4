"""The processes a benchmark starts: the real server (``ChatApp.py -s PORT``) and
the bare echo server, each on a loopback port, each stopped by its pid.

The server runs as its own process, as users run it: it gets its own interpreter
(no GIL shared with the load generator, so on two cores each side has one), and its
memory and CPU time can be read from /proc without counting the generator's."""

from __future__ import annotations

import fcntl
import os
import pty
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

from tools.loopback import LOOPBACK as HOST, free_port  # both also taken from here by the scenarios

ROOT = Path(__file__).resolve().parents[2]
READY_WITHIN = 20.0  # seconds; the machine may be busy
STARTED: list[int] = []  # the pid of every process a benchmark started, for the report
CORES = sorted(os.sched_getaffinity(0))  # the cores this benchmark may use, before it pins anything


def keep_apart(pid: int) -> None:
    """The started process on the last core, this one (the load) on the others: each side
    keeps a core of its own instead of both migrating between them (measured here: ~8 % more
    group messages per second, and steadier)."""
    if len(CORES) >= 2:
        os.sched_setaffinity(pid, {CORES[-1]})
        os.sched_setaffinity(0, set(CORES[:-1]))


class Process:
    """A child process whose output goes to a temporary file, ready once it prints ``ready``.

    With ``terminal`` its output goes to a pseudo-terminal instead, which another process
    (``cat``, standing in for the terminal emulator) reads into that file as fast as it
    comes: the child prints as it would in a terminal window (tables drawn with rich),
    and pays what that costs."""

    def __init__(self, argv_for_port, ready: str, terminal: bool = False, apart: bool = True, attempts: int = 5,
                 port: int | None = None):
        """``port``: this one (a restart on the port of a process before it), tried once."""
        self.reader: subprocess.Popen | None = None
        for _ in range(attempts if port is None else 1):
            self.output = tempfile.NamedTemporaryFile("w+b", prefix="bench-", suffix=".log", delete=False)
            self.port = port or free_port()
            stdout = self._terminal() if terminal else self.output.fileno()
            self.proc = subprocess.Popen(
                argv_for_port(self.port),
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=subprocess.STDOUT,
                env={**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"},
            )
            STARTED.append(self.proc.pid)
            if terminal:
                os.close(stdout)  # the child holds it now: the reader sees the end when the child exits
            if self._wait_ready(ready.encode()):
                if apart:
                    keep_apart(self.proc.pid)
                return
            log = self.log()
            self.stop()  # another process took the port meanwhile, or it failed: try again
        raise RuntimeError(f"{argv_for_port(0)[1:3]} did not start: {log[-300:]!r}")

    def _terminal(self) -> int:
        """A pseudo-terminal (200 columns) whose output a ``cat`` copies into the output file;
        the terminal's side for the child."""
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
        self.reader = subprocess.Popen(["cat"], stdin=master, stdout=self.output, stderr=subprocess.DEVNULL)
        STARTED.append(self.reader.pid)
        os.close(master)
        return slave

    def _wait_ready(self, ready: bytes) -> bool:
        deadline = time.monotonic() + READY_WITHIN
        while time.monotonic() < deadline and self.proc.poll() is None:
            if ready in Path(self.output.name).read_bytes():
                return True
            time.sleep(0.01)
        return False

    @property
    def address(self) -> tuple[str, int]:
        return HOST, self.port

    def log(self) -> str:
        return Path(self.output.name).read_text(errors="replace")

    def status(self) -> dict[str, int]:
        """VmRSS and VmHWM (peak) of the process, in bytes."""
        fields = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) * 1024
        return fields

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far."""
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        """SIGKILL, as a crash: the process has no last word."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.reader is not None:
            try:
                self.reader.wait(timeout=10)  # it ends at the end of the child's output
            except subprocess.TimeoutExpired:
                os.kill(self.reader.pid, signal.SIGKILL)
                self.reader.wait()
        self.output.close()
        Path(self.output.name).unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class ChatServer(Process):
    """``ChatApp.py -s PORT`` on loopback, without the per-IP quotas (all the benchmark's clients
    are on 127.0.0.1) and without the per-source rate limit (the benchmark measures capacity; the
    limit exists to share it fairly among many sources), unless ``limited``: then with the rate
    limit, as users run it."""

    def __init__(self, max_clients: int = 10_000, *extra: str, limited: bool = False, terminal: bool = False,
                 port: int | None = None):
        no_limit = ["--max-names-per-ip", "0", "--max-groups-per-ip", "0"] + ([] if limited else ["--rate-limit", "0"])
        super().__init__(
            lambda port: [
                sys.executable, str(ROOT / "ChatApp.py"), "-s", str(port), "--bind", HOST,
                *no_limit, "--max-clients", str(max_clients), *extra,
            ],
            "Server is online",
            terminal,
            port=port,
        )


def crashed(server: ChatServer, max_clients: int, *extra: str) -> ChatServer:
    """``server`` killed with SIGKILL (no last word) and a new one started on its port with ``extra``."""
    server.kill()
    server.stop()  # (its output file)
    return ChatServer(max_clients, *extra, port=server.port)


class EchoServer(Process):
    """The bare asyncio UDP echo (or relay) server of tools/perf/echo.py."""

    def __init__(self, relay: bool = False, plain: bool = False):
        flags = ["--relay"] * relay + ["--plain"] * plain
        super().__init__(lambda port: [sys.executable, "-m", "tools.perf.echo", "--port", str(port), *flags], "ready")
