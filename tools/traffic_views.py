"""The renderings of chat traffic (tools/traffic.py's events): one line of rich ``Text`` per
datagram, JSON records, the end-of-capture report and a ladder (message-sequence) diagram.
Text from the network is shown escaped (node/text.py), never as markup.
"""

from __future__ import annotations

from rich.text import Text

from node.text import escaped
from proto import PAYLOADS, STATUSES
from proto.fields import layer_spec
from tools.traffic import (ANSWERS, FAMILIES, MALFORMED, OTHER_VERSION, SERVER, UNREAD, Event, Exchange, Stats, Tracker,
                           endpoint)

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
TEXT_CUT = 48


def quoted(text: str, cut: int = TEXT_CUT) -> str:
    # repr() escapes what escaped() does (what is not printable), and quotes.
    return repr(text[:cut]) + ("…" if len(text) > cut else "")


def ms(us: float) -> str:
    return f"{us / 1000:.2f} ms"


def seconds(us: int) -> str:
    return f"{us / 1e6:.3f}"


# -- what a datagram says, in a few words ---------------------------------------------

# The types whose payload is a group's name and nothing else: their summary is that name.
GROUP_ONLY = frozenset(kind for kind, layer in PAYLOADS.items()
                       if [f.name for f in layer_spec(layer).fields if not f.computed] == ["group"])


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
    if kind in GROUP_ONLY:
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


def claim(event: Event) -> str:
    """`` (claims Ann)`` for a datagram whose sender field names another address's holder, else ``""``."""
    return f" (claims {event.claimed})" if event.claimed is not None else ""


# -- one line per datagram ---------------------------------------------------------------------


def line(event: Event, replayed: bool = False) -> Text:
    """One datagram; ``replayed``: sent by the replayer, which speaks in other nodes' names (``as``)."""
    text = Text(no_wrap=True)
    text.append(f"{seconds(event.rel):>9} ", style="dim")
    ends = f"{event.src_name}{'' if replayed else claim(event)} → {event.dst_name}"
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
        "claimed": event.claimed,
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
        "false_claims": stats.false_claims,
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


# -- ladder diagram -------------------------------------------------------------------------------


def ladder_label(event: Event, settled: bool = True) -> str:
    """An arrow's label; ``settled``: the capture is over, so a request still without an answer has none."""
    if event.kind in ANSWERS:
        status = STATUSES.get(event.pkt.payload.status, "?") if event.pkt is not None else ""
        label = f"{event.kind} {status}".strip()
        if event.rtt is not None:
            label += f" {ms(event.rtt)}"
        return label + claim(event)
    label = event.kind
    if event.kind == "table" and event.pkt is not None:
        label += f" v{event.pkt.payload.version}"  # the entries would not fit an arrow
    elif event.pkt is not None and summary(event):
        label += " " + summary(event)
    if event.retry:
        label += f" (retry {event.retry})"
    label += claim(event)
    if settled and _without_answer(event):
        label += " no answer"
    if event.dropped:
        label += " dropped"
    return label


def _without_answer(event: Event) -> bool:
    """The latest try of a request that got no answer."""
    return event.is_request and event.exchange is not None and not event.answered and event is event.exchange.tries[-1]


MARGIN = 10  # columns before the first lifeline: the time of each arrow


class _Layout:
    """Where the lifelines of ``columns`` (node names) stand, ``gap`` characters apart, and how
    one arrow between two of them is drawn."""

    def __init__(self, columns: list[str], gap: int):
        self.columns = columns
        widest_name = max((len(c) for c in columns), default=0)
        first = MARGIN + max(widest_name // 2 + 1, 2)
        self.xs = {name: first + i * gap for i, name in enumerate(columns)}
        self.width = (self.xs[columns[-1]] if columns else first) + widest_name // 2 + 2

    def _blank(self) -> list[str]:
        row = [" "] * self.width
        for x in self.xs.values():
            row[x] = "│"
        return row

    def header(self) -> list[Text]:
        """The names above their lifelines, and an empty row of lifelines."""
        names = [" "] * self.width
        for name, x in self.xs.items():
            start = x - len(name) // 2
            names[start:start + len(name)] = name
        return [Text("".join(names).rstrip(), style="bold"), Text("".join(self._blank()).rstrip(), style="dim")]

    def arrow(self, event: Event, label: str, src: str, dst: str, style: str) -> Text:
        row = self._blank()
        width = self.width
        text = Text(f"{seconds(event.rel):>9} ", style="dim")
        a, b = self.xs[src], self.xs[dst]
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
        text.append(drawn[MARGIN:lo], style="dim")
        text.append(drawn[lo:hi], style=style)
        text.append(drawn[hi:].rstrip(), style="dim")
        return text


def ladder(tracker: Tracker, events: list[Event], settled: bool = True) -> list[Text]:
    """A message-sequence diagram: one column per node, one arrow per datagram, in time order.

    Names are the tracker's final ones: a node first seen as ip:port gets its name.  ``settled``:
    the capture is over (while it runs, a request without an answer yet is not marked unanswered).
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
    labels = [ladder_label(e, settled) for e in events]
    widest_name = max((len(c) for c in columns), default=0)
    # Wide enough that most labels fit their arrow (an arrow over k gaps has k times the room).
    needs = []
    for event, label in zip(events, labels):
        src, dst = ends(event)
        span = abs(columns.index(src) - columns.index(dst)) or 1
        needs.append(-(-(len(label) + 8) // span))
    layout = _Layout(columns, max(widest_name + 4, min(max(needs, default=24), 46), 24))
    out = layout.header()
    out += [layout.arrow(event, label, *ends(event), _arrow_style(event, settled)) for event, label in zip(events, labels)]
    out.append(_legend(events, settled))
    return out


# The room between lifelines while the ladder is drawn as the datagrams come: the labels are not
# known in advance, so one width that fits most of them.
STREAM_GAP = 34


class LadderStream:
    """The ladder drawn as the datagrams come, for an output that cannot be redrawn (a pipe): each
    datagram's arrow is a row as soon as it is captured.  Columns are the nodes' names when their
    first datagram passes, in the order they appear; a new node prints the names row again.  A row
    is never changed afterwards, so no request is marked unanswered: the report at the end says so."""

    def __init__(self, tracker: Tracker):
        self.tracker = tracker
        self.columns: list[str] = []
        self.events: list[Event] = []
        self.layout = _Layout([], STREAM_GAP)

    def add(self, event: Event) -> list[Text]:
        """The rows ``event`` adds: its arrow, after the names row if it brings a new node."""
        ends = (self.tracker.name(event.src), self.tracker.name(event.dst))
        rows = []
        new = [name for name in dict.fromkeys(ends) if name not in self.columns]
        if new:
            self.columns += new
            self.layout = _Layout(self.columns, max(STREAM_GAP, max(map(len, self.columns)) + 4))
            rows += self.layout.header()
        self.events.append(event)
        rows.append(self.layout.arrow(event, ladder_label(event, settled=False), *ends, _arrow_style(event, settled=False)))
        return rows

    def legend(self) -> Text:
        return _legend(self.events, settled=False)


# Arrows on one page of a saved ladder: a page a screen shows at a readable size.
PAGE_ARROWS = 60


def ladder_pages(rows: list[Text], arrows: int = PAGE_ARROWS) -> list[list[Text]]:
    """The rows of ``ladder()`` cut into pages of at most ``arrows`` arrows, each page with the
    names of the columns above and the legend below."""
    head, body, legend = rows[:2], rows[2:-1], rows[-1:]
    return [head + body[start:start + arrows] + legend for start in range(0, max(len(body), 1), arrows)]


def _legend(events: list[Event], settled: bool = True) -> Text:
    """What the marks mean, for those the diagram uses."""
    legend = Text("          ", style="dim")
    entries = [("─▶ datagram", "", True),
               ("╌▶ relayed by a proxy", "dim", any(e.relayed for e in events)),
               ("✕ dropped by the proxy", "bold red", any(e.dropped for e in events)),
               ("retry", "bold yellow", any(e.retry for e in events)),
               ("(claims N): sent in the name of another address", "bold magenta", any(e.claimed for e in events)),
               ("no answer", "bold red", settled and any(e.is_request and not e.answered and e.src for e in events))]
    for label, style, used in entries:
        if used:
            legend.append(label, style=style)
            legend.append("   ")
    legend.rstrip()
    return legend


def _arrow_style(event: Event, settled: bool = True) -> str:
    if event.dropped or event.kind in UNREAD:
        return "bold red"
    if event.claimed is not None:
        return "bold magenta"
    if settled and event.is_request and not event.answered:
        return "bold red"
    if event.retry:
        return "bold yellow"
    style = TYPE_STYLE.get(event.kind, "")
    return f"dim {style}" if event.relayed else style
