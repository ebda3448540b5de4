"""What the chat traffic means, for tools/sniff.py and tools/replay.py: pure logic, no sockets, no
files, no rendering (that is tools/traffic_views.py).

``Tracker`` is fed captured chat datagrams in order (capture time in integer
microseconds, source and destination addresses, bytes) and turns each into an
``Event``: decoded, with the names of both ends, its retry number, and for an
answer the request it answers and the round-trip time.  It keeps the requests as
``Exchange``s (tries and answers) and the end-of-capture figures as ``Stats``.

Names are learned from the traffic: a datagram's source is named by its sender
field, client-table entries name their addresses, and the destination of a
request only servers receive (reg, join_group...) is the server.

Through the lossy proxy every datagram crosses the wire twice: to a proxy socket
that stands for the receiver, then from a proxy socket that stands for the
sender.  The second hop is *relayed*: its source port differs from the listening
port in its header.  Both hops carry the names of the real ends.  The proxy's own
log says which datagrams it dropped: ``apply_proxy_log`` marks them.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from node.reliable import RetryPolicy
from node.text import escaped
from proto import MSG_TYPES, VERSION, ChatHeader, ProtocolError, decode, messages, version_of
from tools.stats import median, percentile

Address = tuple[str, int]

SERVER = messages.SERVER_NAME
ANSWERS = messages.ANSWERS
# Requests only a server receives: their destination is the server.
TO_SERVER = messages.received_only_by(messages.SERVER)
MALFORMED = "malformed"
OTHER_VERSION = "other_version"  # a chat datagram of a protocol version this tool does not read
UNREAD = frozenset({MALFORMED, OTHER_VERSION})

FAMILIES = messages.FAMILIES

# Learned names outrank guesses: a node's own sender field, then a table entry, then its role;
# a name the tool itself gives (the replayer's socket) is never replaced.
_BY_ROLE, _BY_TABLE, _BY_SELF, _PINNED = 0, 1, 2, 3
# Requests remembered for ack matching (each holds its decoded tries): a long
# capture forgets the oldest, and does not list them as unanswered.
MAX_EXCHANGES = 20_000
# A request without an answer counts as unanswered only if the capture went on this long after its
# latest try (the nodes' default time between tries): by then its sender would have tried again or
# given up.  One tried more recently was cut off by the end of the capture: it is *waiting*.
ANSWER_WINDOW = round(RetryPolicy().timeout * 1_000_000)


@dataclass(eq=False)
class Exchange:
    """One request on one path (source, destination, message id): its tries and the answers."""

    kind: str
    tries: list["Event"] = field(default_factory=list)
    answers: list["Event"] = field(default_factory=list)


@dataclass(eq=False)
class Event:
    seq: int
    time: int  # capture time, microseconds since the epoch
    rel: int  # microseconds since the first datagram of the capture
    src: Address | None  # None: known only from the proxy's log
    dst: Address | None
    src_name: str  # names as known when the datagram passed
    dst_name: str
    kind: str  # message type, or "malformed"
    msg_id: int | None
    pkt: ChatHeader | None = None
    data: bytes = b""
    error: str | None = None
    relayed: bool = False
    retry: int = 0  # requests: earlier tries seen on the same path
    exchange: Exchange | None = None  # requests: their exchange; answers: the one they answer
    request: "Event | None" = None  # answers: the latest try of the request they answer
    also: list["Event"] = field(default_factory=list)  # acks: the latest tries of the others they answer
    rtt: int | None = None  # answers: microseconds since that try
    repeat: int = 0  # answers: earlier answers to the same request
    dropped: bool = False  # the proxy's log says it dropped this datagram

    @property
    def is_request(self) -> bool:
        return self.kind not in ANSWERS and self.kind not in UNREAD

    @property
    def answered(self) -> bool:
        return self.exchange is not None and bool(self.exchange.answers)


def endpoint(addr: Address) -> str:
    return f"{addr[0]}:{addr[1]}"


class Tracker:
    def __init__(self):
        self.origin: int | None = None
        self.count = 0
        self._names: dict[Address, tuple[int, str]] = {}
        self._exchanges: OrderedDict[tuple[Address, Address, int], Exchange] = OrderedDict()
        self._rtts: list[int] = []
        self._types: Counter[str] = Counter()
        self._sent: Counter[Address] = Counter()
        self._received: Counter[Address] = Counter()
        self._retries = 0

    # -- names --------------------------------------------------------------------

    def name(self, addr: Address) -> str:
        known = self._names.get(addr)
        return known[1] if known else endpoint(addr)

    def pin(self, addr: Address, name: str) -> None:
        """Name ``addr`` for good, whatever its datagrams claim."""
        self._learn(addr, name, _PINNED)

    def _learn(self, addr: Address, name: str, rank: int) -> None:
        known = self._names.get(addr)
        if name and (known is None or rank >= known[0]):
            self._names[addr] = (rank, escaped(name))

    # -- feeding --------------------------------------------------------------------

    def feed(self, time: int, src: Address, dst: Address, data: bytes) -> Event:
        if self.origin is None:
            self.origin = time
        self.count += 1
        try:
            pkt = decode(data)
        except ProtocolError as exc:
            version = version_of(data)
            if version is not None and version != VERSION:
                kind, error = OTHER_VERSION, f"chat protocol version {version}; this tool reads version {VERSION}"
            else:
                kind, error = MALFORMED, str(exc)
            event = Event(self.count, time, time - self.origin, src, dst, self.name(src), self.name(dst), kind,
                          None, data=data, error=error)
        else:
            event = self._chat(time, src, dst, data, pkt)
        self._types[event.kind] += 1
        self._sent[src] += 1
        self._received[dst] += 1
        return event

    def _chat(self, time: int, src: Address, dst: Address, data: bytes, pkt: ChatHeader) -> Event:
        kind = MSG_TYPES[pkt.type]
        self._learn(src, pkt.sender, _BY_SELF)
        if kind in TO_SERVER:
            self._learn(dst, SERVER, _BY_ROLE)
        if kind == "table":
            for entry in pkt.payload.entries:
                self._learn((entry.ip, entry.port), entry.client, _BY_TABLE)
        event = Event(self.count, time, time - self.origin, src, dst, self.name(src), self.name(dst), kind,
                      pkt.msg_id, pkt=pkt, data=data, relayed=pkt.port not in (0, src[1]))
        if kind in ANSWERS:
            for msg_id in (pkt.payload.ack_id, *(more.id for more in getattr(pkt.payload, "also", ()))):
                self._answer(event, (dst, src, msg_id))
        else:
            self._request(event, (src, dst, pkt.msg_id))
        return event

    def _request(self, event: Event, key: tuple[Address, Address, int]) -> None:
        exchange = self._exchanges.get(key)
        if exchange is None or exchange.kind != event.kind:
            exchange = self._exchanges[key] = Exchange(event.kind)
            if len(self._exchanges) > MAX_EXCHANGES:
                self._exchanges.popitem(last=False)
        event.retry = len(exchange.tries)
        self._retries += event.retry > 0
        exchange.tries.append(event)
        event.exchange = exchange

    def _answer(self, event: Event, key: tuple[Address, Address, int]) -> None:
        """Match an answer to one request it answers (an ack may answer several)."""
        exchange = self._exchanges.get(key)
        if exchange is None:
            return
        request = exchange.tries[-1]
        if event.request is None:
            event.exchange, event.request = exchange, request
            event.rtt = event.time - request.time
            event.repeat = len(exchange.answers)
        else:
            event.also.append(request)
        if not exchange.answers:
            self._rtts.append(event.time - request.time)  # for a batched ack, its wait included
        exchange.answers.append(event)

    # -- results ------------------------------------------------------------------------

    def unanswered(self, end: int | None = None) -> list[Exchange]:
        """Requests with no answer; with ``end`` (when the capture ended, µs), only those whose latest
        try was ANSWER_WINDOW or more before it."""
        return self.without_answer(end)[0]

    def without_answer(self, end: int | None) -> tuple[list[Exchange], list[Exchange]]:
        """Requests with no answer: (unanswered, waiting), waiting being those tried less than
        ANSWER_WINDOW before the capture ended at ``end`` (µs; None: none is waiting)."""
        unanswered, waiting = [], []
        for ex in self._exchanges.values():
            if not ex.answers:
                cut_off = end is not None and end - ex.tries[-1].time < ANSWER_WINDOW
                (waiting if cut_off else unanswered).append(ex)
        return unanswered, waiting

    def stats(self, end: int | None = None) -> "Stats":
        unanswered, waiting = self.without_answer(end)
        per_node: dict[str, list[int]] = {}
        for counter, column in ((self._sent, 0), (self._received, 1)):
            for addr, n in counter.items():
                per_node.setdefault(self.name(addr), [0, 0])[column] += n
        return Stats(
            packets=self.count,
            per_type=dict(self._types.most_common()),
            per_node={name: (sent, received) for name, (sent, received) in sorted(per_node.items())},
            retransmissions=self._retries,
            unanswered=len(unanswered),
            waiting=len(waiting),
            rtt_median=median(self._rtts),
            rtt_p99=percentile(self._rtts, 99),
            rtt_samples=len(self._rtts),
        )


@dataclass
class Stats:
    packets: int
    per_type: dict[str, int]
    per_node: dict[str, tuple[int, int]]  # name -> (sent, received)
    retransmissions: int
    unanswered: int
    waiting: int  # without an answer when the capture ended, too recently tried to call unanswered
    rtt_median: float | None  # microseconds
    rtt_p99: int | None
    rtt_samples: int


# -- the lossy proxy's log ---------------------------------------------------------------------


def apply_proxy_log(tracker: Tracker, events: list[Event], rows: list[dict], slack_us: int = 1_000_000) -> list[Event]:
    """Mark the captured datagrams the proxy dropped; returns the drops the capture did not see.

    A log row names the datagram by sender, receiver, type and id, stamped just
    after the proxy received it; it matches the latest captured hop into the
    proxy with those names at or before that time (up to ``slack_us`` earlier).
    """
    candidates: dict[tuple[str, str, int], list[Event]] = {}
    for event in events:
        if not event.relayed and event.pkt is not None:
            key = (tracker.name(event.src), event.kind, event.msg_id)
            candidates.setdefault(key, []).append(event)
    unseen = []
    for row in rows:
        if row.get("action") != "drop":
            continue
        when = int(round(float(row["time"]) * 1e6))
        # The log holds names as sent; the tracker's are escaped, and so are what the ladder shows.
        src, dst, kind = (escaped(str(row[key])) for key in ("from", "to", "type"))
        options = [
            e for e in candidates.get((src, kind, row["id"]), [])
            if not e.dropped and when - slack_us <= e.time <= when + 1000
            and (dst == tracker.name(e.dst) or ":" in dst)
        ]
        if options:
            max(options, key=lambda e: e.time).dropped = True
            continue
        origin = tracker.origin if tracker.origin is not None else when
        unseen.append(Event(0, when, when - origin, None, None, src, dst, kind, row["id"], dropped=True))
    return unseen
