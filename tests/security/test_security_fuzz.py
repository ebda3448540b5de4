"""Hostile input against real processes: 100,000 datagrams at the server and
100,000 at a client (Scapy ``fuzz()`` over every layer, random bytes, truncations,
bit flips, wrong magic or version, lengths past the end, trailing bytes, requests
in the real clients' names, datagrams up to ~60 KB), sent from several sockets
while three clients hold a scripted conversation.  The processes stay up, the
conversation shows what it shows without the fuzz, memory stays bounded, and the
closing ``Dropped datagrams`` lines count the drops."""

from __future__ import annotations

import random
import re
import socket
import threading
import time
from collections import Counter

from scapy.packet import fuzz

from proto import MAGIC, PAYLOADS, TYPE_CODES, VERSION, ChatHeader
from proto.fastpath import encode
from tests.procs import HOST
from tests.security_tools import ReceiveQueues, drain, finish, rss_kib

PER_TARGET = 100_000
SOURCES = 20  # sockets per target: the rate limiter lets each through at 1000/s (bursts of 2000)
BURST = 64  # datagrams sent before looking at the target's receive queue again
QUEUE_LIMIT = 48 * 1024  # bytes queued at a target before we wait (a default receive buffer holds 208 KiB)
HUGE = 150  # datagrams of 20-60 KB per target
NAMES = ("Ann", "Bob", "Cid")
FUZZ_DEADLINE = 90.0  # seconds: the whole fuzz, on a slow machine too


# -- the hostile datagrams -------------------------------------------------------------------


def valid_samples() -> list[bytes]:
    """One well-formed datagram of each type, as the basis of the mutations."""
    header = {"msg_id": 77, "port": 7000, "token": 0x1122334455667788, "sender": "Ann"}
    payloads = {
        "reg_ack": {"ack_id": 5, "token": 9, "session": 3},
        "ack": {"ack_id": 5, "items": [{"value": "g"}, {"value": "h"}]},
        "table": {"version": 3, "base": 1, "entries": [{"client": "Bob", "ip": "127.0.0.1", "port": 7001}]},
        "create_group": {"group": "g"}, "join_group": {"group": "g"}, "leave_group": {"group": "g"},
        "list_members": {"group": "g"}, "send_group": {"group": "g", "text": "hello there"},
        "grp_msg": {"group": "g", "origin": "Bob", "text": "hello there"},
        "pri_msg": {"session": 4, "text": "hello there"}, "kick": {"target": "Bob"},
    }
    return [encode(kind, header, payloads.get(kind)) for kind in TYPE_CODES]


def scapy_fuzzed(rng: random.Random, count: int) -> list[bytes]:
    """Scapy's fuzz() over every type and payload layer: the header with the magic and version
    kept (else nearly all would stop at the first check), then whole packets fuzzed."""
    out = []
    kinds = list(TYPE_CODES)
    while len(out) < count:
        kind = kinds[len(out) % len(kinds)]
        layer = PAYLOADS.get(kind)
        header = ChatHeader(magic=MAGIC, version=VERSION, type=TYPE_CODES[kind])
        if rng.random() < 0.3:  # in the real clients' names: requests that must be refused
            header.sender = rng.choice(NAMES)
        pkt = header / layer() if layer else header
        if rng.random() < 0.05:
            pkt = ChatHeader() / (layer() if layer else b"")  # magic and version fuzzed too
        out.append(bytes(fuzz(pkt)))
    return out


def hostile(rng: random.Random, count: int) -> tuple[list[bytes], Counter]:
    """``count`` hostile datagrams in random order, and how many of each kind."""
    samples = valid_samples()
    pool = scapy_fuzzed(rng, 1500)
    # Many of Scapy's fuzzed strings are valid; giving each datagram its own fuzzing would
    # cost ~170 µs apiece, so the pool is reused, half of it re-mutated below.
    basis = samples + pool

    def flipped() -> bytes:
        data = bytearray(rng.choice(basis))
        for _ in range(rng.randint(1, 4)):
            bit = rng.randrange(len(data) * 8)
            data[bit // 8] ^= 1 << (bit % 8)
        return bytes(data)

    def truncated() -> bytes:
        data = rng.choice(basis)
        return data[: rng.randrange(len(data))]

    def wrong_version() -> bytes:
        data = bytearray(rng.choice(samples))
        where = rng.choice((0, 1, 2))
        data[where] = (data[where] + rng.randint(1, 255)) % 256
        return bytes(data)

    def past_the_end() -> bytes:
        data = bytearray(rng.choice(samples))
        data[18] = rng.randint(data[18] + 1, 255)  # the sender's length byte, past the end
        return bytes(data)

    def text_past_the_end() -> bytes:
        text = "x" * rng.randint(0, 40)
        data = encode("pri_msg", {"msg_id": rng.getrandbits(32), "sender": rng.choice(NAMES)}, {"text": text})
        return data[:-len(text) - 2] + rng.randint(len(text) + 1, 0xFFFF).to_bytes(2, "big") + text.encode()

    def trailing() -> bytes:
        return rng.choice(basis) + rng.randbytes(rng.randint(1, 30))

    def random_bytes() -> bytes:
        return rng.randbytes(rng.choice((0, 1, 2, 18, 19, 20, rng.randint(0, 1400))))

    def fuzzed() -> bytes:
        return rng.choice(pool)

    makers = [(fuzzed, 25), (flipped, 14), (truncated, 12), (random_bytes, 15), (wrong_version, 8),
              (past_the_end, 8), (text_past_the_end, 6), (trailing, 12)]
    choices = rng.choices([m for m, _ in makers], [w for _, w in makers], k=count - HUGE)
    datagrams = [make() for make in choices]
    kinds = Counter(make.__name__ for make in choices)
    for i in range(HUGE):
        size = rng.randint(20_000, 60_000)
        if i % 2:
            datagrams.append(rng.randbytes(size))
        else:  # well-formed but far over the text limit, in a real client's name
            kind, payload = ("send_group", {"group": "study"}) if i % 4 else ("pri_msg", {"session": 1})
            header = {"msg_id": rng.getrandbits(32), "sender": rng.choice(NAMES)}
            datagrams.append(encode(kind, header, {**payload, "text": "y" * size}))
    kinds["huge"] = HUGE
    rng.shuffle(datagrams)
    return datagrams, kinds


# -- sending them, paced by the target's receive queue ------------------------------------------


class Fuzzer(threading.Thread):
    """Sends each target its datagrams from its own sockets, in bursts, waiting whenever
    a target's receive queue holds more than QUEUE_LIMIT: the targets must decode the fuzz,
    and the real clients' datagrams must not be lost to a full queue."""

    def __init__(self, targets: dict[int, list[bytes]]):
        super().__init__(daemon=True)
        self.targets = targets
        self.sent = Counter()
        self.error: BaseException | None = None
        self.queues = ReceiveQueues()
        self.kernel_drops_before = {port: self.queues(port)[1] for port in targets}
        self.sockets = {port: [self._socket() for _ in range(SOURCES)] for port in targets}

    @staticmethod
    def _socket() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((HOST, 0))
        sock.setblocking(False)
        return sock

    def run(self) -> None:
        try:
            self._send_all()
        except BaseException as exc:  # reported by the test
            self.error = exc

    def _send_all(self) -> None:
        deadline = time.monotonic() + FUZZ_DEADLINE
        while any(self.sent[port] < len(data) for port, data in self.targets.items()):
            for port, data in self.targets.items():
                if self.sent[port] >= len(data) or self.queues(port)[0] > QUEUE_LIMIT:
                    continue  # (LookupError if its process has gone)
                start = self.sent[port]
                end, size = start, 0
                while end < len(data) and end - start < BURST and (size < 32_768 or end == start):
                    size += len(data[end])
                    end += 1
                    if size > 32_768:  # a huge one goes alone
                        break
                for i in range(start, end):
                    sock = self.sockets[port][i % SOURCES]
                    try:
                        sock.sendto(data[i], (HOST, port))
                    except (BlockingIOError, ConnectionRefusedError):
                        pass  # our own buffer full, or an ICMP error for an earlier one
                self.sent[port] = end
            if time.monotonic() > deadline:
                raise AssertionError(f"fuzz not sent within {FUZZ_DEADLINE} s: {dict(self.sent)}")
            time.sleep(0.0005)  # let the targets read their queues

    def kernel_drops(self) -> dict[int, int]:
        return {port: self.queues(port)[1] - before for port, before in self.kernel_drops_before.items()}

    def close(self) -> None:
        self.queues.close()
        for sockets in self.sockets.values():
            for sock in sockets:
                sock.close()


# -- the scripted conversation -------------------------------------------------------------------


def conversation_round(ann, bob, cid, server, k: int) -> None:
    """Private messages, list commands and a group exchange; each step waited for."""
    procs = (ann, bob, cid, server)

    def step(proc, command: str, *expected: tuple) -> None:
        proc.sendline(command)
        for who, line in expected:
            who.expect_line(line)
        drain(*procs)  # keep every terminal read, so that no process blocks on its output

    step(ann, f"send Bob r{k} from Ann", (ann, ">>> Message received by Bob."), (bob, f">>> Ann: r{k} from Ann"))
    step(bob, f"send Cid r{k} from Bob", (bob, ">>> Message received by Cid."), (cid, f">>> Bob: r{k} from Bob"))
    step(cid, "list_groups", (cid, ">>> Available group chats:"), (cid, ">>> study"))
    for proc in (ann, bob, cid):
        step(proc, "join_group study", (proc, ">>> Entered group study successfully"))
    step(ann, f"send_group r{k} to all", (ann, ">>> (study) Message received by Server."),
         (bob, f">>> (study) Group_Message Ann: r{k} to all"), (cid, f">>> (study) Group_Message Ann: r{k} to all"))
    step(bob, "list_members", (bob, ">>> (study) Members in the group study:"), (bob, ">>> (study) Ann"),
         (bob, ">>> (study) Bob"), (bob, ">>> (study) Cid"))
    step(cid, "leave_group", (cid, ">>> Leave group chat study"))
    step(cid, f"send Bob r{k} while you are busy", (cid, ">>> Message received by Bob."))
    step(bob, "leave_group", (bob, ">>> Leave group chat study"), (bob, f">>> Cid: r{k} while you are busy"))
    left = server.mark()
    step(ann, "leave_group", (ann, ">>> Leave group chat study"))
    # the server answers before it prints: its lines of the round are waited for, not assumed
    server.expect_groups({"study": []}, since=left)
    step(cid, "send_group not in a group", (cid, ">>> Invalid command"))


MERGED = re.compile(r"^>>> \.\.\. and \d+ more like it in the last second: ")


def visible(proc, start: int, end: int, k: int) -> list[str]:
    """What ``proc`` showed between two marks, the round number made generic; tables (registrations
    by the fuzz itself change the client table, and the console budget may print a group table a
    moment later, so its place among the lines varies), the first-drop notes and the notes naming a
    fuzzing socket that sent another version byte left out."""
    lines = []
    skipping = False
    for line in proc.text[start:end].split("\n"):
        if line.startswith(">>>"):
            skipping = line in (">>> Client table updated.", ">>> Group table updated.")  # printed when the budget allows
            if not skipping and not line.startswith(">>> Dropped") and " speaks chat protocol version " not in line:
                lines.append(line.replace(f"r{k} ", "rK "))
        elif not skipping and line.strip():
            lines.append(line)
    return lines


def run_conversation(cluster, fuzz_with: list[bytes] | None = None):
    """Start a server and Ann, Bob and Cid; hold rounds of the conversation (with the fuzz
    aimed at the server and at Bob, as long as it lasts). Returns what each showed per round."""
    server = cluster.server()
    ann, bob, cid = cluster.clients(list(NAMES), server)
    created = server.mark()
    cid.sendline("create_group study")
    cid.expect_line(">>> Group study created by Server.")
    server.expect_groups({"study": []}, since=created)  # it answers before it prints: not in the first round's lines
    procs = {"server": server, "Ann": ann, "Bob": bob, "Cid": cid}
    drain(*procs.values())
    rounds = []
    report = {}
    fuzzer = None
    if fuzz_with is not None:
        rss = {"server": rss_kib(server.pid), "Bob": rss_kib(bob.pid)}
        half = len(fuzz_with) // 2
        fuzzer = Fuzzer({server.port: fuzz_with[:half], bob.port: fuzz_with[half:]})
        fuzzer.start()
        started = time.monotonic()
    try:
        k = 0
        while k < 2 or (fuzzer is not None and fuzzer.is_alive()):
            k += 1
            marks = {name: proc.mark() for name, proc in procs.items()}
            conversation_round(ann, bob, cid, server, k)
            drain(*procs.values())
            rounds.append({name: visible(proc, marks[name], proc.mark(), k) for name, proc in procs.items()})
    finally:
        if fuzzer is not None:
            fuzzer.join(FUZZ_DEADLINE)
            if fuzzer.error is None:
                report["kernel drops"] = fuzzer.kernel_drops()
            fuzzer.close()
    if fuzzer is not None:
        assert fuzzer.error is None, fuzzer.error
        report["seconds"] = time.monotonic() - started
        report["sent"] = dict(fuzzer.sent)
        report["rss"] = {name: (before, rss_kib(procs[name].pid)) for name, before in rss.items()}
    for name, proc in procs.items():
        assert proc.alive(), f"{name} stopped"
    closing = {name: finish(procs[name]) for name in ("Ann", "Bob", "Cid", "server")}  # clients first
    for name in NAMES:
        assert procs[name].status == 0, f"{name} did not deregister cleanly"
    return rounds, closing, report


def test_fuzz_at_server_and_client_during_a_conversation(cluster):
    rng = random.Random(20240505)
    random.seed(20240505)  # Scapy's fuzz() draws from the random module
    datagrams, kinds = hostile(rng, 2 * PER_TARGET)
    baseline, _, _ = run_conversation(cluster)
    assert baseline[0] == baseline[1], "the rounds of the script are not alike: the comparison would mean nothing"
    cluster.stop_all()

    rounds, closing, report = run_conversation(cluster, datagrams)
    print(f"\nfuzz: {kinds}\nsent {report['sent']} in {report['seconds']:.1f} s during {len(rounds)} rounds; "
          f"dropped by the kernel (receive queue full): {report['kernel drops']}")
    for name, (before, after) in report["rss"].items():
        print(f"RSS {name}: {before / 1024:.1f} MiB before, {after / 1024:.1f} MiB after "
              f"({(after - before) / 1024:+.1f} MiB)")
    for name, counts in closing.items():
        print(f"{name} closing counts: {dict(counts)}")

    for k, shown in enumerate(rounds, 1):
        for name in shown:
            if name == "server":  # its event lines are merged when rounds come faster than anyone reads
                extra = set(shown[name]) - set(baseline[0][name])
                assert all(MERGED.match(line) for line in extra), (f"round {k} under fuzz: the server showed\n"
                                                                   + "\n".join(sorted(extra)))
                continue
            assert shown[name] == baseline[0][name], (
                f"round {k} under fuzz: {name} showed\n" + "\n".join(shown[name])
                + "\n--- instead of ---\n" + "\n".join(baseline[0][name]))
    for name, (before, after) in report["rss"].items():
        assert after - before < 50 * 1024, f"{name} grew by {(after - before) / 1024:.1f} MiB"
    sent = sum(report["sent"].values())
    assert sent == 2 * PER_TARGET
    for name in ("server", "Bob"):
        counts = closing[name]
        assert counts["malformed"] >= PER_TARGET // 10, (name, counts)
        assert sum(counts.values()) >= PER_TARGET // 2, (name, counts)
    assert closing["server"]["unregistered"] > 0 and closing["Bob"]["unknown sender"] > 0, closing
