"""What the chat traffic means, for tools/sniff.py and tools/replay.py: pure logic, no sockets, no
files, no rendering (that is tools/traffic_views.py).

``Tracker`` is fed captured chat datagrams in order (capture time in integer
microseconds, source and destination addresses, bytes) and turns each into an
``Event``: decoded, with the names of both ends, its retry number, and for an
answer the request it answers and the round-trip time.  It keeps the requests as
``Exchange``s (tries and answers) and the end-of-capture figures as ``Stats``.

Endpoints are named by address, from the traffic: the server's word (its table's
entries, the ok that answers a ``confirm``) names an address for good; the destination of a
request only servers receive (reg, join_group...) is the server; a datagram's
sender field names its source only while no other address holds that name.  A
datagram whose sender field names another address's holder is a *false claim*:
its source keeps its own name (or ``ip:port``) and the event carries ``claimed``
(the sniffer exists to watch spoofing and replay).

Through the lossy proxy every datagram crosses the wire twice: to a proxy socket
that stands for the receiver, then from a proxy socket that stands for the
sender.  The second hop is *relayed*: its source port differs from the listening
port in its header.  Both hops carry the names of the real ends: a relayed
datagram claiming the name of the address in its header is no false claim.  The proxy's own
log says which datagrams it dropped: ``apply_proxy_log`` marks them.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from node.reliable import RetryPolicy
from node.text import escaped
from proto import MSG_TYPES, STATUS_CODES, VERSION, ChatHeader, ProtocolError, decode, messages, version_of
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
OK = STATUS_CODES["ok"]

# How sure a name is: the server's word (a table entry, the ok to a confirm) outranks a datagram's own
# claim, which outranks a guess from its role; a name the tool itself gives (the replayer's socket)
# is never replaced.
_BY_ROLE, _BY_CLAIM, _BY_SERVER, _PINNED = 0, 1, 2, 3
# Requests remembered for ack matching (each holds its decoded tries): a long
# capture forgets the oldest, and does not list them as unanswered.
MAX_EXCHANGES = 20_000
# Distinct (source, name) false claims counted one by one; past that, a source's further names are
# counted together under ELLIPSIS, so a flood of invented names cannot grow the statistics.
MAX_CLAIMS = MAX_EXCHANGES
ELLIPSIS = "\u2026"
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
    claimed: str | None = None  # a sender name (escaped) that another address holds: a false claim
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
    return f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"  # IPv6 in brackets, as in URLs


class Tracker:
    def __init__(self, max_claims: int = MAX_CLAIMS):
        self._max_claims = max_claims
        self.origin: int | None = None
        self.count = 0
        self._names: dict[Address, tuple[int, str]] = {}  # address -> (rank, name as shown)
        self._holders: dict[str, Address] = {}  # name as shown -> the address that holds it
        self._claims: Counter[tuple[Address, str]] = Counter()  # false claims: (source, name claimed)
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
            shown = escaped(name)
            self._names[addr] = (rank, shown)
            # A name is held by the first address to claim it, until the server gives it to one.
            if rank >= _BY_SERVER or (rank == _BY_CLAIM and self._holder(shown) is None):
                self._holders[shown] = addr

    def _holder(self, shown: str) -> Address | None:
        """The address that holds a name, if it still goes by it."""
        addr = self._holders.get(shown)
        known = self._names.get(addr) if addr is not None else None
        return addr if known is not None and known[1] == shown else None

    def _claim(self, src: Address, sender: str, port: int) -> str | None:
        """A datagram's sender field: it names its source unless another address holds the name;
        then it is returned (escaped), a false claim."""
        if not sender:
            return None
        shown = escaped(sender)
        known = self._names.get(src)
        sure = known is not None and known[0] >= _BY_SERVER  # the server's word, or the tool's
        if sure and known[1] == shown:
            return None
        if not sure and self._holder(shown) in (None, src):
            self._learn(src, sender, _BY_CLAIM)
            return None
        if port not in (0, src[1]) and self.name((src[0], port)) == shown:
            # A relay (the lossy proxy's socket) speaking for the address in the header.
            self._names.setdefault(src, (_BY_ROLE, shown))
            return None
        if known == (_BY_CLAIM, shown):
            del self._names[src]  # its claim came first, but the server gave the name to another
        key = (src, shown)
        if key not in self._claims and len(self._claims) >= self._max_claims:
            key = (src, ELLIPSIS)
        self._claims[key] += 1
        return shown

    def _registered(self, answer: Event) -> None:
        """The server's answer to a registration: an ok to the confirm (the session starts then)
        names its receiver by the name registered; a refusal, to the reg or to the confirm, takes
        back a name its receiver had only claimed.  An ok reg_ack names nobody: a name whose
        owner is online elsewhere gets one, and is refused at the confirm if the owner answers."""
        request = answer.request
        if request is None or request.kind not in ("reg", "confirm") or self.name(answer.src) != SERVER:
            return
        if answer.pkt.payload.status == OK:
            if request.kind == "confirm":
                self._learn(answer.dst, request.pkt.sender, _BY_SERVER)
        elif self._names.get(answer.dst) == (_BY_CLAIM, escaped(request.pkt.sender)):
            del self._names[answer.dst]

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
        claimed = self._claim(src, pkt.sender, pkt.port)
        if kind in TO_SERVER:
            self._learn(dst, SERVER, _BY_ROLE)
        if kind == "table" and self.name(src) == SERVER:
            for entry in pkt.payload.entries:
                self._learn((entry.ip, entry.port), entry.client, _BY_SERVER)
        event = Event(self.count, time, time - self.origin, src, dst, self.name(src), self.name(dst), kind,
                      pkt.msg_id, pkt=pkt, data=data, relayed=pkt.port not in (0, src[1]), claimed=claimed)
        if kind in ANSWERS:
            for msg_id in (pkt.payload.ack_id, *(more.id for more in getattr(pkt.payload, "also", ()))):
                self._answer(event, (dst, src, msg_id))
            self._registered(event)
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
        claims: dict[str, dict[str, int]] = {}
        for (addr, name), n in self._claims.items():
            claims.setdefault(self.name(addr), {})[name] = n
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
            false_claims=claims,
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
    false_claims: dict[str, dict[str, int]] = field(default_factory=dict)  # node -> {name claimed: datagrams}


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
    chat_types = set(MSG_TYPES.values())
    for row in rows:
        if row.get("action") != "drop" or row.get("type") not in chat_types:
            continue  # a datagram of another protocol (--layer, or not decoded) is not on the chat's ladder
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
