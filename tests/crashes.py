"""The crash run: a server with ``--state FILE`` killed with SIGKILL at seeded random moments
and restarted on the same file and port, while real ``ChatApp.py -c`` processes chat.

A sender streams group messages to a group of members (the next one as soon as the last was
acknowledged: its ``Message received by Server.`` line), two other clients exchange private
messages, and after every restart each client asks the server something and waits for the
answer.  What is counted:

- acknowledged group messages a member never showed (lost), and ones a member showed twice;
- sessions lost: a client that registered again, was marked offline, or exited;
- how long after the new process was started it said it was online, and until every
  client's request was answered (the durations are reported, never asserted).

Used by tests/e2e/test_e2e_crash.py (a few kills in the default suite, 50 under ``-m soak``)."""

from __future__ import annotations

import os
import random
import re
import signal
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests.procs import CHATAPP, HOST, WAIT, Piped, ProxyProcess, free_port, quiet_port

# The clients outlast a restart: 40 tries 0.5 s apart (a restart on a busy machine takes seconds).
PATIENT = ("--ack-timeout", "0.5", "--retries", "40")
# The members reach the server through the lossy proxy, which drops a share of the group messages:
# the server retransmits them, so at any moment some acknowledged messages still wait for a member,
# and a kill often comes then (the journal's case).  Ten tries: the server does not give up on a member.
MEMBER_LOSS = "drop p=0.2 type=grp_msg"
SERVER_FLAGS = ("--retries", "10")
SERVED_WITHIN = 30.0  # after a restart, seconds a client's request may take before it counts as not served
SESSION_LOST = re.compile(r"no longer knows this client|marked this client offline|Exiting|Someone has already used")
GROUP_MESSAGE = re.compile(r"^>>> \(g\) Group_Message Sam: (m\d+)$")
PRIVATE_MESSAGE = re.compile(r"^>>> Pat: (p\d+)$")
RESUMED = r"^>>> Resumed from the state file: .* (\d+) group messages to deliver$"


@dataclass
class CrashReport:
    kills: int = 0
    acked_at_kills: list[int] = field(default_factory=list)  # group messages acknowledged before each kill
    acked: list[str] = field(default_factory=list)  # group messages the sender showed as acknowledged
    shown: dict[str, Counter] = field(default_factory=dict)  # member -> how often it showed each message
    private_acked: list[str] = field(default_factory=list)
    private_shown: Counter = field(default_factory=Counter)
    sessions_lost: dict[str, str] = field(default_factory=dict)  # client -> the line that said so
    online_s: list[float] = field(default_factory=list)  # per restart: start of the process -> "Server is online"
    served_s: list[float] = field(default_factory=list)  # per restart: start -> every client answered
    not_served: int = 0  # restarts after which some client was not answered within SERVED_WITHIN
    redelivered: list[int] = field(default_factory=list)  # per restart: journaled group messages it had to deliver
    not_resumed: int = 0  # restarts that did not say they resumed anything from the file

    @property
    def lost(self) -> list[tuple[str, str]]:
        """(member, message) for each acknowledged message a member did not show."""
        return [(m, text) for m, counts in self.shown.items() for text in self.acked if not counts[text]]

    @property
    def twice(self) -> list[tuple[str, str]]:
        return [(m, text) for m, counts in self.shown.items() for text, n in counts.items() if n > 1]

    @property
    def private_lost(self) -> list[str]:
        return [text for text in self.private_acked if not self.private_shown[text]]

    @property
    def private_twice(self) -> list[str]:
        return [text for text, n in self.private_shown.items() if n > 1]

    def summary(self) -> str:
        def spread(values: list[float]) -> str:
            if not values:
                return "-"
            return f"median {statistics.median(values):.2f} s, max {max(values):.2f} s"

        return "\n".join([
            f"kills: {self.kills}; group messages acknowledged: {len(self.acked)} to {len(self.shown)} members; "
            f"private messages acknowledged: {len(self.private_acked)}",
            f"acknowledged group messages lost: {len(self.lost)}; shown twice: {len(self.twice)}; "
            f"private messages lost: {len(self.private_lost)}, shown twice: {len(self.private_twice)}; sessions lost: {len(self.sessions_lost)}",
            f"restarts that had journaled group messages to deliver: {sum(n > 0 for n in self.redelivered)} "
            f"of {len(self.redelivered)} ({sum(self.redelivered)} messages); restarts that resumed nothing: {self.not_resumed}",
            f"restart -> server online: {spread(self.online_s)}",
            f"restart -> every client served again: {spread(self.served_s)} ({self.not_served} restarts not served)",
        ])


class Client:
    """A client process and what the run reads from its output, line by line, once."""

    def __init__(self, name: str, server_port: int):
        self.name = name
        self.proc = Piped([CHATAPP, "-c", name, HOST, str(server_port), str(free_port()), "--bind", HOST, *PATIENT], name)
        self.read = 0  # lines of output looked at
        self.waiting: tuple[re.Pattern, object] | None = None  # (answer, what to call with its time)

    def ask(self, command: str, answer: str, then) -> None:
        """Type ``command``; call ``then(time, line)`` when a line matching ``answer`` comes."""
        self.waiting = (re.compile(answer), then)
        self.proc.type(command)

    @property
    def idle(self) -> bool:
        return self.waiting is None

    def poll(self, report: CrashReport) -> None:
        lines, times = self.proc.out, self.proc.out_at
        for index in range(self.read, len(lines)):
            text = lines[index]
            if SESSION_LOST.search(text):
                report.sessions_lost.setdefault(self.name, text)
            if (m := GROUP_MESSAGE.match(text)) and self.name in report.shown:
                report.shown[self.name][m.group(1)] += 1
            if m := PRIVATE_MESSAGE.match(text):
                report.private_shown[m.group(1)] += 1
            if self.waiting is not None and self.waiting[0].search(text):
                then, self.waiting = self.waiting[1], None
                then(times[index], text)
            self.read = index + 1
        if self.proc.popen.poll() is not None:
            report.sessions_lost.setdefault(self.name, f"exited with status {self.proc.popen.returncode}")


class CrashRun:
    def __init__(self, state: Path | None, members: int, seed: int):
        self.state = state
        self.rng = random.Random(seed)
        self.seed = seed
        self.proxy: ProxyProcess | None = None
        self.report = CrashReport()
        self.port = quiet_port()  # the server is restarted on it, again and again
        self.server: Piped | None = None
        self.clients: list[Client] = []
        self.members = [f"M{i}" for i in range(members)]
        self.sent = 0  # group messages typed
        self.private = 0
        self.wanted: set[str] = set()  # clients to ask the new server something when idle
        self.answered: dict[str, float] = {}  # client -> when the new server answered it

    # -- processes ---------------------------------------------------------------------------------

    def start_server(self) -> float:
        """A server on the run's port and state file; the time it was started."""
        flags = ["--state", str(self.state)] if self.state is not None else []
        started = time.monotonic()
        self.server = Piped([CHATAPP, "-s", str(self.port), "--bind", HOST, *SERVER_FLAGS, *flags], f"server:{self.port}")
        return started

    def kill_server(self) -> None:
        os.kill(self.server.pid, signal.SIGKILL)
        self.server.wait(WAIT)
        self.server.stop()  # its pipes
        self.report.kills += 1
        self.report.acked_at_kills.append(len(self.report.acked))

    def setup(self) -> None:
        self.start_server()
        self.server.wait_for(r"^>>> Server is online$")
        self.sam, self.pat, self.quin = (Client(n, self.port) for n in ("Sam", "Pat", "Quin"))
        self.proxy = ProxyProcess((HOST, self.port), "--rule", MEMBER_LOSS, "--seed", str(self.seed))
        members = [Client(name, self.proxy.address[1]) for name in self.members]
        self.clients = [self.sam, self.pat, self.quin, *members]
        for client in self.clients:
            client.proc.wait_for(r"^>>> Welcome, You are registered\.$")
        self.sam.proc.type("create_group g")
        self.sam.proc.wait_for(r"^>>> Group g created by Server\.$")
        for client in (self.sam, *members):
            client.proc.type("join_group g")
            client.proc.wait_for(r"^>>> Entered group g successfully$")
            client.read = len(client.proc.out)
        self.report.shown = {name: Counter() for name in self.members}
        self.group = members

    # -- traffic -----------------------------------------------------------------------------------

    def pump(self, streaming: bool = True) -> None:
        """Read every client's new output; the sender sends its next message once the last is
        acknowledged, Pat its next private message once Quin's ack came (unless a request to
        the new server is wanted of them first)."""
        for client in self.clients:
            client.poll(self.report)
        for client in self.clients:
            if client.idle and client.name in self.wanted:
                self._served_check(client)
        if not streaming:
            return
        if self.sam.idle:
            self.sent += 1
            self._stream(self.sam, f"send_group m{self.sent}", f"m{self.sent}", "Server", self.report.acked)
        if self.pat.idle:
            self.private += 1
            self._stream(self.pat, f"send Quin p{self.private}", f"p{self.private}", "Quin", self.report.private_acked)

    def _stream(self, client: Client, command: str, text: str, to: str, acked: list[str]) -> None:
        ack = f"Message received by {to}."

        def then(at: float, line: str) -> None:
            if line.endswith(ack):  # not "Server not responding" or a refusal
                acked.append(text)

        client.ask(command, re.escape(ack) + r"|not responding|not delivered|Invalid", then)

    def run_for(self, seconds: float, streaming: bool = True) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.pump(streaming)
            time.sleep(0.005)

    def until(self, done, seconds: float, streaming: bool = True) -> bool:
        end = time.monotonic() + seconds
        while not done():
            if time.monotonic() >= end:
                return False
            self.pump(streaming)
            time.sleep(0.005)
        return True

    # -- the run -----------------------------------------------------------------------------------

    def crash_once(self) -> None:
        self.run_for(self.rng.uniform(0.05, 1.5))  # a random moment of the stream
        self.kill_server()
        started = self.start_server()
        online = self.server.out_at[self.server.wait_for(r"^>>> Server is online$", timeout=SERVED_WITHIN)]
        self.report.online_s.append(online - started)
        try:  # said in the same turn as "online", when the file held anyone
            resumed = self.server.out[self.server.wait_for(RESUMED, timeout=WAIT)]
            self.report.redelivered.append(int(re.search(RESUMED, resumed).group(1)))
        except AssertionError:
            self.report.not_resumed += 1
        # Every client asks something of the new server (the two that stream once their
        # message under way is done): it is served again when the answer comes.
        self.answered.clear()
        self.wanted.update(c.name for c in self.clients)
        if self.until(lambda: len(self.answered) == len(self.clients), SERVED_WITHIN):
            self.report.served_s.append(max(self.answered.values()) - started)
        else:
            self.report.not_served += 1
            self.wanted.clear()

    def _served_check(self, client: Client) -> None:
        self.wanted.discard(client.name)

        def then(at: float, line: str) -> None:
            self.answered[client.name] = at

        if client in self.group or client is self.sam:
            client.ask("list_members", r"^>>> \(g\) Members in the group g:$", then)
        else:
            client.ask("list_groups", r"^>>> (Available group chats:|No available group right now)$", then)

    def finish(self) -> None:
        """Stop streaming; wait until every acknowledged message has reached every member."""
        self.until(lambda: self.sam.idle and self.pat.idle, SERVED_WITHIN, streaming=False)
        self.until(lambda: not self.report.lost and not self.report.private_lost, SERVED_WITHIN, streaming=False)

    def stop(self) -> None:
        for proc in [c.proc for c in self.clients] + [p for p in (self.server, self.proxy) if p is not None]:
            proc.stop()


def crash_run(state: Path | None, kills: int, seed: int, members: int = 3) -> CrashReport:
    """``kills`` SIGKILLs of a server on ``state`` (None: a server without ``--state``)."""
    run = CrashRun(state, members, seed)
    try:
        run.setup()
        for _ in range(kills):
            run.crash_once()
            if run.report.sessions_lost or run.report.not_served:
                break  # a failed run already: the report says how, without waiting out the other kills
        run.finish()
    finally:
        run.stop()
    return run.report
