"""A small harness for end-to-end tests: real ``ChatApp.py`` processes in
pseudo-terminals (pexpect), on ports the OS hands out, stopped by pid.

Output is read into one text per process with a cursor: ``expect`` searches
after the cursor and moves it past the match, so a test reads a process's
output in order.  For plain processes (TERM=dumb) the text is the output with
ANSI escapes and carriage returns removed; for interactive (prompt_toolkit)
ones it is what a tiny terminal emulator, ``Screen``, shows: what the user sees.

The lossy proxy runs either as a process (``ProxyProcess``) or, for tests that change its rules
while it runs, on a thread of the test's own process (``ProxyThread``).
"""

from __future__ import annotations

import asyncio
import codecs
import os
import random
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import unicodedata
from pathlib import Path
from typing import Callable, Iterable

import pexpect

from tools.loopback import LOOPBACK as HOST, free_port  # noqa: F401  (the tests take free_port from here)
from tools.lossy_proxy import Address, LossyProxy

ROOT = Path(__file__).resolve().parent.parent
CHATAPP = str(ROOT / "ChatApp.py")
PROXY = str(ROOT / "tools" / "lossy_proxy.py")
PYTHON = sys.executable

# Deadline for one expected event.  Generous so that a loaded 2-core machine
# does not fail a correct program; a passing test never waits this long.
WAIT = 10.0
# Short retry flags, so that failure paths (no ack after all tries) finish fast.
FAST = ("--ack-timeout", "0.1", "--retries", "3")

ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()][0-9A-Za-z]|[@-Z\\-_=>78])")
SEPARATOR = re.compile(r"^[\s\u2500-\u257f-]+$")  # the rule under a rich table's header


def clean(text: str) -> str:
    return ANSI.sub("", text).replace("\r", "")


def base_env(interactive: bool) -> dict[str, str]:
    env = dict(os.environ)
    env.update(LC_ALL="C.UTF-8", LANG="C.UTF-8")  # as on a user's UTF-8 terminal
    env.pop("NO_COLOR", None)  # colours on, as by default: escapes are stripped when reading
    if interactive:
        env["TERM"] = "xterm"  # prompt_toolkit's questions (cursor position) are answered by Screen
    else:
        env["TERM"] = "dumb"  # plain line input: no prompt_toolkit redraws in the output
    return env


_PORT_DRAW = random.SystemRandom()


def quiet_port() -> int:
    """A free UDP port below the kernel's range for port 0 (free_port's otherwise).  No process is
    handed such a port unasked, so it stays free until the process meant for it binds it: one that
    a capture filter names before it starts, or one started again on it after a kill.  (Ports of
    that range were taken meanwhile by other suites' processes on a busy machine.)"""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return free_port()
    # Drawn from the OS, not from the random module: a test that seeds that one (Scapy's fuzz) would
    # make the same worker of two suites running side by side draw the same ports.
    for port in _PORT_DRAW.sample(range(max(1024, low - 8192), low), min(64, max(0, low - 1024))):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
            return port
    return free_port()


def run_plain(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run ChatApp.py with pipes (stdout and stderr apart), for checks of the command line."""
    return subprocess.run(
        [PYTHON, CHATAPP, *args],
        cwd=ROOT,
        env=base_env(False),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class Screen:
    """Just enough of a VT100 to replay prompt_toolkit's redraws: it draws with
    carriage returns, relative cursor moves and erase-below, never absolute
    positions.  Scrolling is ignored (the screen grows downwards).  Like a real
    terminal it answers cursor position requests (CPR): see ``answers``."""

    _SEQ = re.compile(r"\x1b\[([0-?]*)[ -/]*([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b[@-Z\\-_=>78]")
    _PARTIAL = re.compile(r"\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*|[()])?\Z")

    def __init__(self, width: int, height: int):
        self.width = width
        self.height = height
        self.rows: list[list[str]] = [[]]
        self.row = self.col = 0
        self.autowrap = True
        self.answers: list[str] = []  # what the terminal must send back to the program
        self._rest = ""

    def feed(self, text: str) -> None:
        text, self._rest = self._rest + text, ""
        i = 0
        while i < len(text):
            ch = text[i]
            if ch == "\x1b":
                m = self._SEQ.match(text, i)
                if m is None:
                    if self._PARTIAL.match(text, i):
                        self._rest = text[i:]  # the rest of the sequence comes with the next read
                        return
                    i += 1
                    continue
                if m.group(2):
                    self._csi(m.group(1), m.group(2))
                i = m.end()
                continue
            if ch == "\r":
                self.col = 0
            elif ch == "\n":
                self._goto_row(self.row + 1)
            elif ch == "\b":
                self.col = max(0, self.col - 1)
            elif ch >= " ":
                self._put(ch)
            i += 1

    def _csi(self, params: str, final: str) -> None:
        if params.startswith("?"):
            if params[1:] == "7" and final in "hl":
                self.autowrap = final == "h"
            return
        numbers = [int(p) if p else 0 for p in params.split(";")] if params else []
        n = max(numbers[0], 1) if numbers else 1
        if final == "A":
            self.row = max(0, self.row - n)
        elif final == "B":
            self._goto_row(self.row + n)
        elif final == "C":
            self.col = min(self.width - 1, self.col + n)
        elif final == "D":
            self.col = max(0, self.col - n)
        elif final == "G":
            self.col = min(self.width - 1, n - 1)
        elif final == "J" and (not numbers or numbers[0] == 0):
            del self.rows[self.row][self.col :]
            del self.rows[self.row + 1 :]
        elif final == "K" and (not numbers or numbers[0] == 0):
            del self.rows[self.row][self.col :]
        elif final == "n" and numbers == [6]:
            # Past the last row a real terminal has scrolled: the cursor is on its bottom row.
            self.answers.append(f"\x1b[{min(self.row + 1, self.height)};{self.col + 1}R")
        # colours (m), modes and the rest do not change the text

    def _goto_row(self, row: int) -> None:
        while len(self.rows) <= row:
            self.rows.append([])
        self.row = row

    def _put(self, ch: str) -> None:
        wide = unicodedata.east_asian_width(ch) in "WF"
        if self.col + (2 if wide else 1) > self.width:
            if not self.autowrap:
                return
            self._goto_row(self.row + 1)
            self.col = 0
        line = self.rows[self.row]
        line.extend(" " * (self.col - len(line)))
        cells = [ch, ""] if wide else [ch]
        line[self.col : self.col + len(cells)] = cells
        self.col += len(cells)

    def lines(self) -> list[str]:
        """The screen's text, trailing blank lines dropped."""
        text = ["".join(row).rstrip() for row in self.rows]
        while text and not text[-1]:
            text.pop()
        return text


class Proc:
    """One ChatApp.py process in a pseudo-terminal."""

    def __init__(
        self, args: list[str], label: str, interactive: bool = False, columns: int = 200, stderr: str | None = None
    ):
        self.label = label
        self.args = args
        self.interactive = interactive
        command, argv = PYTHON, [CHATAPP, *args]
        if stderr is not None:
            # For tests of a lost terminal: what the program says on stderr must not be lost with it.
            command, argv = "/bin/sh", ["-c", 'exec "$0" "$@" 2>"$STDERR_FILE"', PYTHON, *argv]
        env = base_env(interactive)
        if stderr is not None:
            env["STDERR_FILE"] = stderr
        self.child = pexpect.spawn(
            command,
            argv,
            cwd=str(ROOT),
            env=env,
            echo=False,  # plain mode: keep typed commands out of the output (prompt_toolkit echoes itself)
            dimensions=(50, columns),
        )
        self.pid = self.child.pid
        # pexpect's pauses before each write and after close are for slow old programs;
        # every wait in these tests is on a condition instead.
        self.child.delaybeforesend = None
        self.child.delayafterclose = self.child.ptyproc.delayafterclose = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.raw = ""
        self.text = ""
        self.pos = 0
        self.eof = False
        self.screen = Screen(columns, 50) if interactive else None
        self.status: int | None = None  # exit code, or -signal

    # -- reading -------------------------------------------------------------

    def _read(self, timeout: float) -> bool:
        """Read what is there (waiting up to ``timeout``); False if nothing came."""
        if self.eof:
            time.sleep(min(timeout, 0.02))  # only the exit status can still change
            return False
        try:
            data = self.child.read_nonblocking(65536, timeout=timeout)
        except pexpect.TIMEOUT:
            return False
        except pexpect.EOF:
            self.eof = True
            return False
        chunk = self._decoder.decode(data)
        self.raw += chunk
        if self.screen is None:
            self.text = clean(self.raw)
        else:
            # prompt_toolkit redraws its prompt in place: read what the screen shows.  The
            # rows above the prompt never change, so offsets into them stay valid.
            self.screen.feed(chunk)
            self.text = "\n".join(self.screen.lines()) + "\n"
            while self.screen.answers:
                self.child.send(self.screen.answers.pop(0).encode())
        return True

    def _fail(self, what: str) -> None:
        tail = self.text[max(0, self.pos - 1500) : self.pos]
        rest = self.text[self.pos :]
        state = "exited" if self.eof else "running"
        raise AssertionError(
            f"{self.label} ({state}): {what}\n--- already read ---\n{tail}\n--- not matched yet ---\n{rest}"
        )

    def wait_until(self, check: Callable[[], object], what: str, timeout: float = WAIT, output: bool = True):
        """Read output until ``check()`` returns something true; return it.  With
        ``output`` (the check looks at the output), give up as soon as the output ends."""
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result:
                return result
            left = deadline - time.monotonic()
            if left <= 0 or (output and self.eof and not self._read(0)):
                # One last look: the output may have ended with what we wait for.
                result = check()
                if result:
                    return result
                self._fail(f"timed out waiting for {what}" if left <= 0 else f"exited before {what}")
            self._read(min(left, 0.2))

    def expect(self, pattern: str, timeout: float = WAIT, flags: int = 0) -> re.Match:
        """Search ``pattern`` (a regex) after the cursor; move the cursor past the match."""
        regex = re.compile(pattern, flags)

        def found():
            return regex.search(self.text, self.pos)

        match = self.wait_until(found, f"/{pattern}/", timeout)
        self.pos = match.end()
        return match

    def expect_line(self, line: str, timeout: float = WAIT) -> re.Match:
        """A whole output line, exactly."""
        return self.expect(r"^" + re.escape(line) + r"\n", timeout, re.MULTILINE)

    def expect_lines(self, *lines: str, timeout: float = WAIT) -> re.Match:
        """Consecutive whole lines, exactly and in this order."""
        return self.expect(r"^" + "".join(re.escape(line) + r"\n" for line in lines), timeout, re.MULTILINE)

    def mark(self) -> int:
        return len(self.text)

    def lines_since(self, mark: int) -> list[str]:
        return self.text[mark:].split("\n")

    def _tables(self, title: str, since: int):
        """Each table titled ``title`` after ``since``: (end offset, rows as lists of cells)."""
        for match in re.finditer(r"^" + re.escape(title) + r"\n", self.text[since:], re.MULTILINE):
            start = since + match.end()
            rows, end, header = [], start, False
            for line in self.text[start:].split("\n")[:-1]:  # complete lines only
                if line.startswith(">>>"):
                    break
                end += len(line) + 1
                if not line.strip() or SEPARATOR.match(line):
                    continue
                if not header:
                    header = True  # column names
                    continue
                rows.append(re.split(r"\s{2,}", line.strip()))
            yield end, rows

    def expect_table(
        self,
        title: str,
        check: Callable[[list[list[str]]], bool],
        what: str,
        timeout: float = WAIT,
        since: int | None = None,
    ):
        """Wait for a table that passes ``check``, after the cursor (or after ``since``,
        a ``mark()``, for output whose order does not matter); the cursor moves past it."""

        def found():
            for end, rows in self._tables(title, self.pos if since is None else since):
                if check(rows):
                    return end, rows
            return None

        self.wait_until(found, f"a table '{title}' with {what}", timeout)
        # The check may have passed on a table read in part: the node printed it with one
        # write, so the rest is already waiting.  Read it, then take the table again, whole.
        while self._read(0):
            pass
        end, rows = found()
        self.pos = max(self.pos, end)
        return rows

    def expect_clients(
        self, expected: dict[str, str], timeout: float = WAIT, since: int | None = None
    ) -> dict[str, tuple[str, int, str]]:
        """Wait for a client table in which each named client has the given status;
        returns the table as {name: (ip, port, status)}."""

        def as_dict(rows):
            return {row[0]: (row[1], int(row[2]), row[3]) for row in rows if len(row) == 4 and row[2].isdigit()}

        def check(rows):
            table = as_dict(rows)
            return all(name in table and table[name][2] == status for name, status in expected.items())

        rows = self.expect_table(">>> Client table updated.", check, str(expected), timeout, since)
        return as_dict(rows)

    def expect_groups(
        self, expected: dict[str, list[str]], timeout: float = WAIT, since: int | None = None
    ) -> dict[str, list[str]]:
        """Wait for a group table with exactly these members in the named groups."""

        def as_dict(rows):
            return {row[0]: (row[1].split(", ") if len(row) > 1 else []) for row in rows}

        def check(rows):
            table = as_dict(rows)
            return all(table.get(group) == members for group, members in expected.items())

        rows = self.expect_table(">>> Group table updated.", check, str(expected), timeout, since)
        return as_dict(rows)

    def wait_screen(self, check: Callable[[list[str]], bool], what: str, timeout: float = WAIT) -> list[str]:
        """Interactive processes: wait until the emulated screen satisfies ``check``."""
        assert self.screen is not None, "not an interactive process"

        def found():
            lines = self.screen.lines()
            return lines if check(lines) else None

        try:
            return self.wait_until(found, what, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- screen ---\n" + "\n".join(self.screen.lines()[-20:])) from None

    # -- writing and signals --------------------------------------------------

    def send(self, text: str) -> None:
        self.child.send(text.encode("utf-8"))

    def paste(self, text: str) -> None:
        """As a terminal sends pasted text (bracketed paste), so that it arrives as one input; into
        a prompt that is reading keys.  (Typed while the client is between two prompts, a line goes
        through the terminal's own line discipline, which cuts it at 4095 bytes, end of paste
        included: the prompt would then wait for that end forever.)"""
        self.wait_until(self.reading_keys, "the prompt reading keys")
        self.send("\x1b[200~" + text + "\x1b[201~")

    def reading_keys(self) -> bool:
        """prompt_toolkit has the terminal in raw mode: it turns bracketed paste on when it draws
        a prompt, and off when the prompt ends."""
        return self.raw.rfind("\x1b[?2004h") > self.raw.rfind("\x1b[?2004l")

    def sendline(self, text: str) -> None:
        self.send(text + "\r")

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def hang_up(self) -> None:
        """Close the terminal, as a terminal emulator does when its window closes:
        the kernel sends SIGHUP and later writes to the terminal fail."""
        self.child.ptyproc.fileobj.close()  # the master side of the pty
        self.child.ptyproc.closed = self.child.closed = True
        self.eof = True

    # -- ending ----------------------------------------------------------------

    def alive(self) -> bool:
        if self.status is not None:
            return False
        try:
            alive = self.child.isalive()
        except pexpect.ExceptionPexpect:  # already reaped, or the pty closed under it
            alive = False
        if not alive:
            code, sig = self.child.exitstatus, self.child.signalstatus
            self.status = -sig if sig is not None else (code if code is not None else -1)
        return alive

    def wait_exit(self, timeout: float = WAIT) -> int:
        """Read output until the process has exited; its exit code (or -signal)."""
        self.wait_until(lambda: not self.alive(), "the process to exit", timeout, output=False)
        while self._read(0):  # whatever it printed last
            pass
        return self.status

    def stop(self) -> None:
        """Terminate by pid, wait, then kill: whatever state the test left it in."""
        stop_all([self])

    def close(self) -> None:
        self.stop()
        if not self.child.closed:
            self.child.close(force=True)


def stop_all(procs: list[Proc], grace: float = 5.0) -> None:
    """SIGTERM to each by pid, all at once (a client deregisters meanwhile), wait;
    then SIGKILL to any left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        live = [proc for proc in procs if proc.alive()]
        for proc in live:
            for each in (sig, signal.SIGCONT):  # SIGCONT: a test may have left it stopped
                try:
                    os.kill(proc.pid, each)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace
        while any(proc.alive() for proc in live) and time.monotonic() < deadline:
            for proc in live:
                proc._read(0.01)  # keep each pty drained so that none blocks on a write


class Cluster:
    """The processes of one test; every one is stopped at the end of the test."""

    def __init__(self):
        self.procs: list[Proc] = []

    def spawn(self, args: list[str], label: str, interactive: bool = False, stderr: str | None = None) -> Proc:
        proc = Proc(args, label, interactive, stderr=stderr)
        self.procs.append(proc)
        return proc

    def server(self, *flags: str, restartable: bool = False) -> Proc:
        """A server on a free port of 127.0.0.1, up and listening; ``restartable``: on a port that
        stays free when it is killed, for a test that starts a server on that port again."""
        for _ in range(5):
            port = quiet_port() if restartable else free_port()
            proc = self.spawn(["-s", str(port), "--bind", HOST, *flags], f"server:{port}")
            match = proc.expect(r">>> Server is online\n|already in use")
            if match.group(0).startswith(">>>"):
                proc.port = port
                return proc
            proc.wait_exit()  # someone took the port in between: try another one
        raise AssertionError("no free server port after 5 tries")

    def client(
        self,
        name: str,
        server: Proc | int,
        *flags: str,
        port: int | None = None,
        interactive: bool = False,
        register: bool = True,
        stderr: str | None = None,
    ) -> Proc:
        """A client of ``server`` (a server process, or the port of whatever stands in for one: a
        proxy, a scripted server) on 127.0.0.1; with ``register``, wait until it is welcomed and its
        table shows it online."""
        for _ in range(5 if port is None else 1):
            proc = self._start_client(name, server, flags, port, interactive, stderr)
            if register:
                if self._registered(proc):
                    return proc
            elif port is not None or not self._port_taken(proc):
                return proc
        raise AssertionError("no free client port after 5 tries")

    def clients(self, names: list[str], server: Proc, *flags: str) -> list[Proc]:
        """Plain clients started together (start-up is the slow part), each registered
        and each knowing all the others online."""
        procs = [self._start_client(name, server, flags) for name in names]
        for i, proc in enumerate(procs):
            for _ in range(5):
                if self._registered(proc):
                    break
                proc = procs[i] = self._start_client(proc.name, server, flags)
            else:
                raise AssertionError("no free client port after 5 tries")
        for proc in procs:
            # From the start of its output: they registered in no particular order.
            proc.expect_clients({name: "online" for name in names}, since=0)
        return procs

    def _start_client(self, name, server, flags, port=None, interactive=False, stderr=None) -> Proc:
        port = port or free_port()
        server_port = server if isinstance(server, int) else server.port
        args = ["-c", name, HOST, str(server_port), str(port), "--bind", HOST, *flags]
        proc = self.spawn(args, f"{name}:{port}", interactive, stderr)
        proc.port = port
        proc.name = name
        return proc

    def _port_taken(self, proc: Proc) -> bool:
        """The port free_port chose was taken before the client bound it.  Read without moving the
        test's place in the output: the test expects the client's lines from the start."""
        proc.wait_until(lambda: proc.eof or ">>> Registering as" in proc.text or "already in use" in proc.text,
                        "the client's first line", output=False)
        if "already in use" not in proc.text:
            return False
        proc.wait_exit()
        return True

    def _registered(self, proc: Proc) -> bool:
        """Welcomed, with itself online in its table; False if its port was taken meanwhile."""
        match = proc.expect(r">>> Welcome, You are registered\.\n|already in use|>>> Someone.*\n")
        if match.group(0).startswith("already"):
            proc.wait_exit()
            return False
        assert match.group(0).startswith(">>> Welcome"), f"{proc.label} refused: {match.group(0)}"
        table = proc.expect_clients({proc.name: "online"})
        assert table[proc.name] == (HOST, proc.port, "online"), table
        return True

    def stop_all(self) -> None:
        # Clients first, while the server can still acknowledge their dereg.
        stop_all([proc for proc in self.procs if proc.args[0] != "-s"])
        stop_all([proc for proc in self.procs if proc.args[0] == "-s"])
        for proc in self.procs:
            proc.close()


def in_group(procs: list[Proc], server: Proc, group: str = "g", create: bool = True) -> None:
    """Each of ``procs`` joins ``group`` (created first by the first of them, with ``create``), in
    order; waits until the server's group table lists them all."""
    if create:
        procs[0].sendline(f"create_group {group}")
        procs[0].expect_line(f">>> Group {group} created by Server.")
    for proc in procs:
        proc.sendline(f"join_group {group}")
        proc.expect_line(f">>> Entered group {group} successfully")
    server.expect_groups({group: [proc.name for proc in procs]})


class Piped:
    """A Python process with pipes (no terminal); its stdout and stderr lines are collected as they come."""

    def __init__(self, args: list[str], label: str, **env_extra: str):
        self.label = label
        env = dict(os.environ, NO_COLOR="1", TERM="dumb", PYTHONUNBUFFERED="1", LC_ALL="C.UTF-8", **env_extra)
        self.popen = subprocess.Popen(
            [PYTHON, *args], cwd=ROOT, env=env, text=True, encoding="utf-8", errors="replace",
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.pid = self.popen.pid
        self.out: list[str] = []
        self.out_at: list[float] = []  # when each line of ``out`` came (time.monotonic); never shorter than ``out``
        self.err: list[str] = []
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._collect, args=(stream, lines), daemon=True)
            for stream, lines in ((self.popen.stdout, self.out), (self.popen.stderr, self.err))
        ]
        for reader in self._readers:
            reader.start()

    def _collect(self, stream, lines: list[str]) -> None:
        for text in stream:
            with self._changed:
                if lines is self.out:
                    self.out_at.append(time.monotonic())
                lines.append(text.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, pattern: str, stream: str = "out", timeout: float = WAIT, after: int = 0) -> int:
        """The index of the first line of stdout (or stderr) from ``after`` on that matches ``pattern``."""
        regex = re.compile(pattern)
        lines = self.out if stream == "out" else self.err
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for index in range(after, len(lines)):
                    if regex.search(lines[index]):
                        return index
                left = deadline - time.monotonic()
                if left <= 0 or (self.popen.poll() is not None and not any(r.is_alive() for r in self._readers)):
                    raise AssertionError(f"{self.label}: no line matching /{pattern}/ in {stream}:\n" + self.dump())
                self._changed.wait(min(left, 0.2))

    def type(self, line: str) -> None:
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()

    def wait(self, timeout: float = 60) -> int:
        """The exit status, once the process has ended and its output is read."""
        status = self.popen.wait(timeout)
        for reader in self._readers:
            reader.join(WAIT)
        return status

    def interrupt(self) -> int:
        """Ctrl+C by pid, then the exit status once its output is read."""
        return self.finish(signal.SIGINT)

    def finish(self, sig: int = signal.SIGINT, timeout: float = WAIT) -> int:
        """Send ``sig`` by pid and wait for the exit and the last output."""
        if self.popen.poll() is None:
            os.kill(self.pid, sig)
        status = self.popen.wait(timeout)
        for reader in self._readers:
            reader.join(timeout)
        return status

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(5)
        for stream in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
            try:
                stream.close()
            except OSError:
                pass

    def dump(self) -> str:
        return "\n".join(self.out[-60:]) + "\n--- stderr ---\n" + "\n".join(self.err[-20:])


class ProxyProcess:
    """tools/lossy_proxy.py as a process, stopped by its pid."""

    def __init__(self, server: tuple[str, int], *args: str):
        self.proc = subprocess.Popen(
            [PYTHON, PROXY, "--listen", f"{HOST}:0", "--server", f"{HOST}:{server[1]}", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        ready, _, _ = select.select([self.proc.stdout], [], [], WAIT)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("lossy proxy on "):
            self.stop()
            raise AssertionError(f"the proxy did not start: {line!r} {self.stderr!r}")
        self.banner = line.rstrip("\n")
        host, port = line.split()[3].rsplit(":", 1)
        self.address = (host, int(port))

    def stop(self, sig: int = signal.SIGINT) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        try:
            out, self.stderr = self.proc.communicate(timeout=WAIT)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            out, self.stderr = self.proc.communicate()
        return self.proc.returncode


class ProxyThread:
    """A LossyProxy on its own event loop in a background thread, for tests.

    with ProxyThread(server=("127.0.0.1", port)) as proxy:
        proxy.add_rule("drop type=pri_msg first=2")
        ... proxy.address, proxy.counters() ...
    """

    def __init__(self, **kwargs):
        self.proxy = LossyProxy(**kwargs)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="lossy-proxy", daemon=True)

    def __enter__(self) -> "ProxyThread":
        self._thread.start()
        self.call(self.proxy.start)
        return self

    def __exit__(self, *exc) -> None:
        self.call(self.proxy.stop)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def call(self, fn, *args):
        """Run ``fn(*args)`` on the proxy's loop and return its result."""

        async def run():
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result()

    @property
    def address(self) -> Address:
        return self.call(lambda: self.proxy.address)

    def add_rule(self, rule: str) -> None:
        self.call(self.proxy.add_rule, rule)

    def replace_rules(self, rules: Iterable[str]) -> None:
        self.call(self.proxy.replace_rules, list(rules))

    def clear_rules(self) -> None:
        self.call(self.proxy.clear_rules)

    def counters(self) -> dict[str, int]:
        return self.call(lambda: dict(self.proxy.counters))

    def rule_counts(self) -> list[tuple[str, int, int]]:
        """(rule, datagrams selected, times applied) per rule."""
        return self.call(lambda: [(r.text, r.selected, r.applied) for r in self.proxy.plan.rules])


# -- clients through a proxy (their server address is the proxy's) ----------------------------------


def join_via(cluster: Cluster, name: str, proxy_port: int, *flags: str, interactive: bool = False) -> Proc:
    """Start a client whose server address is the proxy's; do not wait for it."""
    port = free_port()
    args = ["-c", name, HOST, str(proxy_port), str(port), "--bind", HOST, *flags]
    proc = cluster.spawn(args, f"{name}:{port}", interactive)
    proc.name, proc.port = name, port
    return proc


def registered(proc: Proc) -> bool:
    """Welcomed (False if its port was taken meanwhile); then its table shows it online."""
    match = proc.expect(r">>> Welcome, You are registered\.\n|already in use|>>> Someone.*\n|>>> Server not responding\n")
    if match.group(0).startswith("already"):
        proc.wait_exit()
        return False
    assert match.group(0).startswith(">>> Welcome"), f"{proc.label}: {match.group(0)}"
    proc.expect_clients({proc.name: "online"})
    return True


def start_clients(
    cluster: Cluster, names: list[str], proxy_port: int, *flags: str, timeout: float = 10, interactive: bool = False
) -> list[Proc]:
    """Clients started together, each registered and knowing all the others online."""
    procs = [join_via(cluster, name, proxy_port, *flags, interactive=interactive) for name in names]
    for i, proc in enumerate(procs):
        for _ in range(5):
            if registered(procs[i]):
                break
            procs[i] = join_via(cluster, proc.name, proxy_port, *flags, interactive=interactive)
        else:
            raise AssertionError("no free client port after 5 tries")
    for proc in procs:
        proc.expect_clients({name: "online" for name in names}, since=0, timeout=timeout)
    return procs
