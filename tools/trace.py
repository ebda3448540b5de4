"""What the chat traffic means, for tools/sniff.py: pure logic, no sockets, no files.

``Tracker`` is fed captured chat datagrams in order (capture time in integer
microseconds, source and destination addresses, bytes) and turns each into an
``Event``: decoded, with the names of both ends, its retry number, and for an
answer the request it answers and the round-trip time.  The rest of this module
renders events: one line of rich ``Text`` each, a JSON record, the end-of-capture
statistics and a ladder (message-sequence) diagram.

Names are learned from the traffic: a datagram's source is named by its sender
field, client-table entries name their addresses, and the destination of a
request only servers receive (reg, join_group...) is the server.

Through the lossy proxy every datagram crosses the wire twice: to a proxy socket
that stands for the receiver, then from a proxy socket that stands for the
sender.  The second hop is *relayed*: its source port differs from the listening
port in its header.  Both hops carry the names of the real ends.
"""

from __future__ import annotations

import statistics
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from rich.text import Text

from node.reliable import RetryPolicy
from node.text import escaped
from proto import MSG_TYPES, STATUSES, VERSION, ChatHeader, ProtocolError, decode, messages, version_of

Address = tuple[str, int]

SERVER = messages.SERVER_NAME
ANSWERS = messages.ANSWERS
# Requests only a server receives: their destination is the server.
TO_SERVER = messages.received_only_by(messages.SERVER)
MALFORMED = "malformed"
OTHER_VERSION = "other_version"  # a chat datagram of a protocol version this tool does not read
UNREAD = frozenset({MALFORMED, OTHER_VERSION})

FAMILIES = messages.FAMILIES
FAMILY_STYLE = {
    "session": "blue",
    "table": "cyan",
    "group": "magenta",
    "message": "green",
    "failure": "red",
    "answer": "bright_black",
}
TYPE_STYLE = {kind: FAMILY_STYLE[family] for family, kinds in FAMILIES.items() for kind in kinds}
TYPE_STYLE[MALFORMED] = TYPE_STYLE[OTHER_VERSION] = "bold red"

# Learned names outrank guesses: a node's own sender field, then a table entry, then its role;
# a name the tool itself gives (the replayer's socket) is never replaced.
_BY_ROLE, _BY_TABLE, _BY_SELF, _PINNED = 0, 1, 2, 3
# Requests remembered for ack matching (each holds its decoded tries): a long
# capture forgets the oldest, and does not list them as unanswered.
MAX_EXCHANGES = 20_000
TEXT_CUT = 48
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


def quoted(text: str, cut: int = TEXT_CUT) -> str:
    # repr() escapes what escaped() does (what is not printable), and quotes.
    return repr(text[:cut]) + ("…" if len(text) > cut else "")


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
            rtt_median=statistics.median(self._rtts) if self._rtts else None,
            rtt_p99=percentile(self._rtts, 99) if self._rtts else None,
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


def percentile(values: list[int], p: float) -> int:
    """Nearest-rank percentile: a value that was measured, never an interpolation."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def ms(us: float) -> str:
    return f"{us / 1000:.2f} ms"


def seconds(us: int) -> str:
    return f"{us / 1e6:.3f}"


# -- what a datagram says, in a few words ---------------------------------------------


def summary(event: Event) -> str:
    if event.pkt is None:
        return escaped(event.error or "")
    body, kind = event.pkt.payload, event.kind
    if kind in ANSWERS:
        status = STATUSES.get(body.status, str(body.status))
        items = [escaped(i.value) for i in getattr(body, "items", [])]
        also = [f"#{more.id}" for more in getattr(body, "also", [])]
        return status + (f" [{', '.join(items)}]" if items else "") + (f" also {' '.join(also)}" if also else "")
    if kind == "table":
        rows = [f"{escaped(e.client)} {e.ip}:{e.port}{'' if e.online else ' offline'}" for e in body.entries]
        shown = ", ".join(rows[:3]) + (f", +{len(rows) - 3} more" if len(rows) > 3 else "")
        entries = f"{len(rows)} {'entry' if len(rows) == 1 else 'entries'}"
        return f"v{body.version} since v{body.base}: {entries}" + (f" ({shown})" if rows else "")
    if kind in ("create_group", "join_group", "leave_group", "list_members"):
        return quoted(body.group)
    if kind == "send_group":
        return f"{quoted(body.group)}: {quoted(body.text)}"
    if kind == "grp_msg":
        return f"{quoted(body.group)} from {escaped(body.origin)}: {quoted(body.text)}"
    if kind == "pri_msg":
        return quoted(body.text)
    if kind == "kick":
        return f"report {quoted(body.target)}"
    return ""


def answer_note(event: Event) -> str:
    """For an answer: which request it answers and how long that took."""
    if event.request is None:
        ack_id = event.pkt.payload.ack_id
        return f"↩ #{ack_id} (request not seen)"
    req = event.request
    note = f"↩ {req.kind} #{req.msg_id}"
    if req.retry:
        note += f" retry {req.retry}"
    note += f" rtt {ms(event.rtt)}"
    if event.repeat:
        note += f" (answered again, {event.repeat + 1}x)"
    if event.also:
        note += f", and {len(event.also)} more"
    return note


# -- one line per datagram ---------------------------------------------------------------------


def line(event: Event, replayed: bool = False) -> Text:
    """One datagram; ``replayed``: sent by the replayer, which speaks in other nodes' names."""
    text = Text(no_wrap=True)
    text.append(f"{seconds(event.rel):>9} ", style="dim")
    ends = f"{event.src_name} → {event.dst_name}"
    text.append(f"{ends:<26} ", style="bold")
    text.append(f"{event.kind:<12} ", style=TYPE_STYLE.get(event.kind, ""))
    text.append(f"{'#' + str(event.msg_id) if event.msg_id is not None else '':<11} ", style="dim")
    text.append(summary(event))
    if event.kind in ANSWERS:
        text.append("  " + answer_note(event), style="green" if event.request else "yellow")
    if event.retry:
        text.append(f"  retry {event.retry}", style="bold yellow")
    if replayed and event.pkt is not None:
        text.append(f"  as {escaped(event.pkt.sender)}", style="dim italic")
    elif event.relayed:
        text.append("  relayed", style="dim italic")
    text.rstrip()
    return text


def unanswered_lines(tracker: Tracker, exchanges: list[Exchange], waiting: bool = False) -> list[Text]:
    """The report of requests without an answer: unanswered ones, or (``waiting``) those the end of
    the capture cut off."""
    if not exchanges:
        return []
    title = "waiting for an answer when the capture ended" if waiting else "unanswered requests"
    out = [Text(f"{title}: {len(exchanges)}", style="bold yellow" if waiting else "bold red")]
    for ex in exchanges:
        first, last = ex.tries[0], ex.tries[-1]
        tries = len(ex.tries)
        row = Text(f"{seconds(first.rel):>9} ", style="dim")
        row.append(f"{tracker.name(first.src)} → {tracker.name(first.dst)}  ", style="bold")
        row.append(f"{ex.kind} #{first.msg_id}", style=TYPE_STYLE.get(ex.kind, ""))
        row.append(f"  {tries} {'try' if tries == 1 else 'tries'}, last at {seconds(last.rel)}",
                   style="yellow" if waiting else "red")
        out.append(row)
    return out


# -- JSON ------------------------------------------------------------------------------------------


def field_values(layer) -> dict:
    """Every field of one Scapy layer, as JSON values: enum fields by their names."""
    from proto.fields import Kind, layer_spec

    values = {}
    for fld in layer_spec(type(layer)).fields:
        value = layer.getfieldval(fld.name)
        if fld.kind is Kind.LIST:
            value = [field_values(item) for item in value]
        elif fld.kind is Kind.ENUM:
            value = fld.enum.get(value, value)
        elif fld.kind is Kind.BYTES:
            value = value.hex()
        values[fld.name] = value
    return values


def record(event: Event) -> dict:
    rec = {
        "time": round(event.rel / 1e6, 6),
        "epoch": event.time / 1e6,
        "src": endpoint(event.src),
        "dst": endpoint(event.dst),
        "from": event.src_name,
        "to": event.dst_name,
        "type": event.kind,
        "id": event.msg_id,
        "bytes": len(event.data),
        "data": event.data.hex(),
        "relayed": event.relayed,
    }
    if event.pkt is None:
        rec["error"] = event.error
        return rec
    if event.is_request:
        rec["retry"] = event.retry
    else:
        req = event.request
        rec["answers"] = None if req is None else {"type": req.kind, "id": req.msg_id, "retry": req.retry}
        rec["also_answers"] = [{"type": r.kind, "id": r.msg_id, "retry": r.retry} for r in event.also]
        rec["rtt_ms"] = None if event.rtt is None else event.rtt / 1000
        rec["repeat"] = event.repeat
    rec["header"] = field_values(event.pkt)
    body = event.pkt.payload
    rec["payload"] = {"layer": body.name, **field_values(body)} if body.fields_desc else None
    return rec


def stats_record(stats: Stats) -> dict:
    return {
        "packets": stats.packets,
        "per_type": stats.per_type,
        "per_node": {name: {"sent": s, "received": r} for name, (s, r) in stats.per_node.items()},
        "retransmissions": stats.retransmissions,
        "unanswered": stats.unanswered,
        "waiting": stats.waiting,
        "rtt_median_ms": None if stats.rtt_median is None else stats.rtt_median / 1000,
        "rtt_p99_ms": None if stats.rtt_p99 is None else stats.rtt_p99 / 1000,
        "rtt_samples": stats.rtt_samples,
    }


def unanswered_record(tracker: Tracker, exchange: Exchange, waiting: bool = False) -> dict:
    """``{"unanswered": {...}}``, or ``{"waiting": {...}}`` for a request the end of the capture cut off."""
    first = exchange.tries[0]
    return {
        "waiting" if waiting else "unanswered": {
            "time": round(first.rel / 1e6, 6),
            "from": tracker.name(first.src),
            "to": tracker.name(first.dst),
            "type": exchange.kind,
            "id": first.msg_id,
            "tries": len(exchange.tries),
        }
    }


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


# -- ladder diagram -------------------------------------------------------------------------------


def ladder_label(event: Event) -> str:
    if event.kind in ANSWERS:
        status = STATUSES.get(event.pkt.payload.status, "?") if event.pkt is not None else ""
        label = f"{event.kind} {status}".strip()
        if event.rtt is not None:
            label += f" {ms(event.rtt)}"
        return label
    label = event.kind
    if event.kind == "table" and event.pkt is not None:
        label += f" v{event.pkt.payload.version}"  # the entries would not fit an arrow
    elif event.pkt is not None and summary(event):
        label += " " + summary(event)
    if event.retry:
        label += f" (retry {event.retry})"
    if event.is_request and event.exchange is not None and not event.answered and event is event.exchange.tries[-1]:
        label += " no answer"
    if event.dropped:
        label += " dropped"
    return label


def ladder(tracker: Tracker, events: list[Event]) -> list[Text]:
    """A message-sequence diagram: one column per node, one arrow per datagram, in time order.

    Names are the tracker's final ones: a node first seen as ip:port gets its name.
    """
    events = sorted(events, key=lambda e: (e.time, e.seq))

    def ends(event: Event) -> tuple[str, str]:
        if event.src is None:
            return event.src_name, event.dst_name
        return tracker.name(event.src), tracker.name(event.dst)

    columns: list[str] = []
    for event in events:
        for name in ends(event):
            if name not in columns:
                columns.append(name)
    if SERVER in columns:  # the hub in the middle of the picture reads best
        columns.remove(SERVER)
        columns.insert(len(columns) // 2, SERVER)
    labels = [ladder_label(e) for e in events]
    widest_name = max((len(c) for c in columns), default=0)
    # Wide enough that most labels fit their arrow (an arrow over k gaps has k times the room).
    needs = []
    for event, label in zip(events, labels):
        src, dst = ends(event)
        span = abs(columns.index(src) - columns.index(dst)) or 1
        needs.append(-(-(len(label) + 8) // span))
    gap = max(widest_name + 4, min(max(needs, default=24), 46), 24)
    margin = 10
    first = margin + max(widest_name // 2 + 1, 2)
    xs = {name: first + i * gap for i, name in enumerate(columns)}
    width = (xs[columns[-1]] if columns else first) + widest_name // 2 + 2

    def blank() -> list[str]:
        row = [" "] * width
        for x in xs.values():
            row[x] = "│"
        return row

    header = [" "] * width
    for name, x in xs.items():
        start = x - len(name) // 2
        header[start:start + len(name)] = name
    out = [Text("".join(header).rstrip(), style="bold"), Text("".join(blank()).rstrip(), style="dim")]
    for event, label in zip(events, labels):
        src, dst = ends(event)
        row = blank()
        text = Text(f"{seconds(event.rel):>9} ", style="dim")
        style = _arrow_style(event)
        a, b = xs[src], xs[dst]
        if a == b:
            body = f"↺ {label}"
            row[a + 1:a + 1 + len(body)] = body[: width - a - 1]
        else:
            left, right = min(a, b), max(a, b)
            dash = "╌" if event.relayed else "─"
            for x in range(left + 1, right):
                row[x] = "┼" if row[x] == "│" else dash
            room = right - left - (9 if event.dropped else 5)
            shown = label if len(label) <= room else label[: max(room - 1, 0)] + "…"
            start = left + 1 + (right - left - 1 - len(shown)) // 2
            row[start - 1:start + len(shown) + 1] = f" {shown} "
            if event.dropped:  # the arrow stops short of its receiver, with a cross
                if b > a:
                    row[right - 3:right] = ["✕", " ", " "]
                else:
                    row[left + 1:left + 4] = [" ", " ", "✕"]
            else:
                row[right - 1 if b > a else left + 1] = "▶" if b > a else "◀"
        drawn = "".join(row)
        lo = min(a, b) + 1
        hi = max(a, b) if a != b else width
        text.append(drawn[margin:lo], style="dim")
        text.append(drawn[lo:hi], style=style)
        text.append(drawn[hi:].rstrip(), style="dim")
        out.append(text)
    out.append(_legend(events))
    return out


def _legend(events: list[Event]) -> Text:
    """What the marks mean, for those the diagram uses."""
    legend = Text("          ", style="dim")
    entries = [("─▶ datagram", "", True),
               ("╌▶ relayed by a proxy", "dim", any(e.relayed for e in events)),
               ("✕ dropped by the proxy", "bold red", any(e.dropped for e in events)),
               ("retry", "bold yellow", any(e.retry for e in events)),
               ("no answer", "bold red", any(e.is_request and not e.answered and e.src for e in events))]
    for label, style, used in entries:
        if used:
            legend.append(label, style=style)
            legend.append("   ")
    legend.rstrip()
    return legend


def _arrow_style(event: Event) -> str:
    if event.dropped or event.kind in UNREAD:
        return "bold red"
    if event.is_request and not event.answered:
        return "bold red"
    if event.retry:
        return "bold yellow"
    style = TYPE_STYLE.get(event.kind, "")
    return f"dim {style}" if event.relayed else style
