"""The fault rule engine: which fate each chat datagram meets, decided from what it means.

Pure decisions, no I/O: both the socket proxy (tools/lossy_proxy.py) and the deterministic
simulator of the tests use it, so the two mean the same thing by ``drop p=0.2`` or ``reorder``.
A ``FaultPlan`` holds the rules and the seeded randomness and gives a ``Decision`` per datagram;
a ``ReorderHold`` keeps the datagrams a ``hold`` holds back until their flow's next one.
Time comes from the caller (``decide(..., now=)``: the proxy's loop clock, the simulator's fake one).

Rules (checked in order, first match wins; no match means pass):

    ACTION [ARG] [MATCH]...

    actions:  drop | pass | delay D[±J] | duplicate N | reorder [P%] [gap=N] [delay=D] | hold
              | corrupt [N] | replay AFTER | rate R
    matches:  type=T[,T...]  from=NAME[,NAME...]  to=NAME[,NAME...]  (names learned from
              the traffic; the server is "server")
              p=P        with probability P (--seed N: each flow, a sender, a receiver and
                         a type, gets the same choices on every run with that N)
              first=N    the first N datagrams the rule's type/from/to select
              nth=N      only the Nth of them
              after=N    all of them after the first N
              count=N    apply the action at most N times
              gemodel=P[,R[,1-H[,1-K]]]
                         the datagrams a Gilbert-Elliott model loses (netem's loss gemodel):
                         bursts; P good->bad, R bad->good, 1-H loss when bad, 1-K when good
              state=P13[,P31[,P32[,P23[,P14]]]]
                         the datagrams netem's 4-state Markov model loses (loss state)
    delay:    dist=uniform|normal|pareto|paretonormal  the jitter's distribution (uniform)
              corr=C     correlation of each delay with the flow's last one
    rate:     R in bps, kbps, mbps (bytes/s) or bit, kbit, mbit (bits/s): each flow's
              link sends R; limit=N  datagrams on it at most, more are dropped (1000)
              (which are dropped depends on when they come, not on --seed)
              during=A..B  only from A to B after the rule became active (added, or its
                         since= seen); during=A.. has no end: during=5s..12s, during=2s..
              since=T[,T...]  only once a datagram of type T reached the proxy (that one
                         included, whatever rule took it): drop to=Bob since=kick
    any datagram, chat or not (one the layer cannot decode meets only rules with src/dst/port/size/bytes):
              src=HOST[:PORT]|:PORT  dst=HOST[:PORT]|:PORT  (real addresses; several: a,b)
              port=N     either end's port
              size=N  size=<N  size=>N  size=A..B    its length in bytes
              bytes=OFF:HEX    the bytes from OFF (negative: from the end) are HEX
              bytes=OFF~REGEX  a regular expression on the bytes matches from OFF
              field.NAME=V[,V...]  a field of the layer (chat, or --layer) has value V
                         (number, text or enum name; field.qd.qname: into sub-layers)
    durations: 300ms, 1.5s, 2 (seconds); jitter with ± or +-: delay 300ms±50ms
    chances (gemodel=, state=, corr=): 25% or 0.25; a model's state is kept per flow

    duplicate N sends N extra copies; reorder is netem's: a share P (default 25%) of
    the datagrams goes at once and overtakes the others, which wait D (default 100ms);
    with gap=N, N-1 datagrams wait before one may go at once; hold keeps a datagram
    until the next one of the same flow (sender to receiver) has gone, at most
    --max-hold; corrupt N flips N random bytes (default 1); replay AFTER delivers it
    now and a copy later.
    A loss model picks among what the rule's other matches let through, for any action.
    The netem command line for each: docs/fault-models.md.

Examples:

    --rule 'drop type=ack from=B first=5'      --rule 'delay 300ms type=grp_msg to=C'
    --rule 'duplicate 2 type=pri_msg'          --rule 'drop p=0.2'
    --rule 'reorder 25% gap=5 type=grp_msg'    --rule 'corrupt p=0.05'
    --rule 'hold type=table'                   --rule 'drop to=Bob since=kick during=0s..8s'
    --rule 'drop gemodel=1%,30% type=grp_msg'  --rule 'delay 100ms±20ms dist=pareto corr=25%'
    --rule 'rate 20kbps limit=50 from=server'
    --rule 'drop port=53 size=>512'            --rule 'drop bytes=0:c4a7 dst=:6666'
    --layer scapy.layers.dns:DNS --rule 'delay 1s field.qr=0 field.qd.qname=example.com.'
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field
from typing import Iterable

from tools import impairments
from tools.cli import seconds
from tools.datagram_match import KEYS as DATAGRAM_KEYS, Datagram, MatchError, is_key, parse_key
from tools.impairments import LOSS_MODELS, SHAPES, DelayShape, FlowStates, FourState, GilbertElliott, Link

ACTIONS = ("drop", "pass", "delay", "duplicate", "reorder", "hold", "corrupt", "replay", "rate")
NEEDS_ARG = {"delay", "duplicate", "replay", "rate"}
KEYS = ("type", "from", "to", "p", "first", "nth", "after", "count", "during", "since", *LOSS_MODELS, "dist", "corr", "limit")
SETTINGS = {"reorder": ("gap", "delay")}  # an action's own key=value words
# A plain `reorder`: netem's example share; a delay long enough that a burst a node sends (a
# group message's fan-out, a table in parts) is overtaken on loopback, short beside a 500 ms retry.
REORDER_SHARE, REORDER_DELAY = 0.25, 0.1


class RuleError(ValueError):
    """A rule that does not parse; the message names the offending word."""


def parse_duration(word: str, rule: str) -> float:
    try:
        return seconds(word)
    except ValueError:
        raise RuleError(f"bad duration '{word}' in rule '{rule}' (use e.g. 300ms, 1.5s)") from None


def _positive_int(word: str, key: str, rule: str) -> int:
    if not re.fullmatch(r"\d+", word) or int(word) < 1:
        raise RuleError(f"bad value '{word}' for {key} in rule '{rule}' (a whole number from 1)")
    return int(word)


@dataclass
class Rule:
    text: str
    action: str
    delay: float = 0.0
    jitter: float = 0.0
    copies: int = 0  # duplicate: extra copies; corrupt: bytes to flip
    types: frozenset[str] | None = None
    src: frozenset[str] | None = None
    dst: frozenset[str] | None = None
    p: float | None = None
    first: int | None = None
    nth: int | None = None
    after: int | None = None
    count: int | None = None
    share: float = 0.0  # reorder: the share of datagrams sent at once
    gap: int = 1  # reorder: datagrams that wait before one may go at once
    window: tuple[float, float] | None = None  # during=: seconds after the rule became active
    since: frozenset[str] | None = None  # since=: types whose first datagram activates the rule
    active_from: float | None = None  # when it became active, on the caller's clock; None: not yet
    timed: bool = False  # has during= or since=: take() looks at the clock
    waited: int = 0  # reorder: datagrams delayed since the last one sent at once
    where: list = field(default_factory=list)  # tests of tools.datagram_match (src=, size=, bytes=, field.X=...)
    selected: int = 0  # datagrams its type/from/to selected
    applied: int = 0  # times its action was taken
    loss: GilbertElliott | FourState | None = None  # a loss model: picks the datagrams the rule acts on
    shape: DelayShape | None = None  # delay: the jitter's distribution and correlation
    link: Link | None = None  # rate: the link each flow's datagrams wait for
    overflow: int = 0  # rate: datagrams dropped past the link's limit (counted in applied too)
    _losses: FlowStates | None = field(default=None, repr=False, compare=False)
    _states: FlowStates | None = field(default=None, repr=False, compare=False)
    name: str = ""  # its id in the proxy's control API (tools/control.py); given there when empty

    @classmethod
    def parse(cls, text: str) -> "Rule":
        words = text.split()
        if not words:
            raise RuleError("empty rule")
        action, rest = words[0], words[1:]
        if action not in ACTIONS:
            raise RuleError(f"unknown action '{action}' in rule '{text}' (one of {', '.join(ACTIONS)})")
        rule = cls(text, action)
        if action == "reorder":
            rest = _reorder_share(rule, rest)
        if action in NEEDS_ARG or (action == "corrupt" and rest and "=" not in rest[0]):
            if not rest or "=" in rest[0]:
                raise RuleError(f"'{action}' needs an argument in rule '{text}'")
            arg, rest = rest[0], rest[1:]
            if action == "rate":
                rule.link = Link(_impairment(impairments.rate, arg, text))
            elif action in ("delay", "replay"):
                base, sep, jitter = arg.replace("+-", "±").partition("±")
                rule.delay = parse_duration(base, text)
                if sep and not jitter:
                    raise RuleError(f"bad duration '{arg}' in rule '{text}' (a jitter after ±, e.g. 300ms±50ms)")
                rule.jitter = parse_duration(jitter, text) if sep else 0.0
                if action == "replay" and jitter:
                    raise RuleError(f"bad duration '{arg}' in rule '{text}' (replay takes no jitter)")
            else:
                rule.copies = _positive_int(arg, action, text)
        elif action == "corrupt":
            rule.copies = 1
        for word in rest:
            key, eq, value = word.partition("=")
            if eq and value and key in SETTINGS.get(action, ()):
                _setting(rule, key, value)
                continue
            if not eq or (key not in KEYS and not is_key(key)) or not value:
                keys = ", ".join(k + "=" for k in (*KEYS, *DATAGRAM_KEYS))
                raise RuleError(f"bad word '{word}' in rule '{text}' (matches are {keys})")
            if is_key(key):
                try:
                    rule.where.append(parse_key(key, value))
                except MatchError as exc:
                    raise RuleError(f"{exc} in rule '{text}'") from None
            elif key == "type":
                rule.types = _type_names(value, text)
            elif key in ("from", "to"):
                setattr(rule, "src" if key == "from" else "dst", frozenset(value.split(",")))
            elif key in LOSS_MODELS or key in ("dist", "corr", "limit"):
                _impairment_key(rule, key, value, text)
            elif key == "p":
                try:
                    rule.p = float(value)
                except ValueError:
                    rule.p = -1.0
                if not 0.0 <= rule.p <= 1.0:
                    raise RuleError(f"bad value '{value}' for p in rule '{text}' (a probability from 0 to 1)")
            elif key in ("during", "since"):
                _time_condition(rule, key, value)
            else:
                setattr(rule, key, _positive_int(value, key, text))
        _check_impairments(rule, text)
        return rule

    def take(self, kind: str | None, src: str, dst: str, rng: random.Random, now: float = 0.0,
             seed: int | None = None, datagram: Datagram | None = None) -> bool:
        """Does this rule act on this datagram?  Updates the rule's counters; a loss model's
        per-flow state comes from ``seed`` (the plan's)."""
        if self.types is not None and kind not in self.types:
            return False
        if kind is None and not self.where:
            return False  # not of the layer: for the rules that test its addresses, size or bytes only
        if (self.src is not None and src not in self.src) or (self.dst is not None and dst not in self.dst):
            return False
        if self.timed and not self.active_at(now):
            return False  # outside its time: it selects nothing, so first=/nth= count within it
        for test in self.where:
            if datagram is None or not test(datagram):
                return False
        self.selected += 1
        n = self.selected
        if (self.first is not None and n > self.first) or (self.nth is not None and n != self.nth):
            return False
        if self.after is not None and n <= self.after:
            return False
        if self.count is not None and self.applied >= self.count:
            return False
        if self.p is not None and rng.random() >= self.p:
            return False
        if self._losses is not None and not self._losses.get(src, dst, seed).lost():
            return False
        self.applied += 1
        return True

    def active_at(self, now: float) -> bool:
        """Is the rule in force at ``now``: activated (its since= seen), inside its during= window?"""
        if self.active_from is None:
            if self.since is not None:
                return False
            self.active_from = now  # put in a plan without a clock (FaultPlan.activate): from now
        if self.window is None:
            return True
        elapsed = now - self.active_from
        return self.window[0] <= elapsed < self.window[1]


def _reorder_share(rule: Rule, rest: list[str]) -> list[str]:
    """reorder's defaults, and its optional share (``25%``); returns the words after it."""
    rule.share, rule.delay = REORDER_SHARE, REORDER_DELAY
    if not rest or "=" in rest[0]:
        return rest
    word = rest[0]
    m = re.fullmatch(r"(\d+(?:\.\d+)?)%", word)
    if not m or float(m.group(1)) > 100:
        raise RuleError(f"bad share '{word}' in rule '{rule.text}' (a percentage from 0% to 100%, e.g. 25%)")
    rule.share = float(m.group(1)) / 100
    return rest[1:]


def _setting(rule: Rule, key: str, value: str) -> None:
    """An action's own key=value word (reorder's gap= and delay=)."""
    if key == "gap":
        rule.gap = _positive_int(value, key, rule.text)
    else:
        rule.delay = parse_duration(value, rule.text)


def _type_names(value: str, text: str) -> frozenset[str]:
    from proto import TYPE_CODES  # the layer's own list of type names

    names = value.split(",")
    unknown = [n for n in names if n not in TYPE_CODES]
    if unknown:
        raise RuleError(f"unknown type '{unknown[0]}' in rule '{text}'")
    return frozenset(names)


def _time_condition(rule: Rule, key: str, value: str) -> None:
    """during=A..B (B may be left out: no end) or since=TYPE[,TYPE...]."""
    rule.timed = True
    if key == "since":
        rule.since = _type_names(value, rule.text)
        return
    start, dots, end = value.partition("..")
    if not dots:
        raise RuleError(f"bad window '{value}' in rule '{rule.text}' (during=FROM..TO or during=FROM.., e.g. during=5s..12s)")
    begin = parse_duration(start, rule.text) if start else 0.0
    until = parse_duration(end, rule.text) if end else math.inf
    if until <= begin:
        raise RuleError(f"bad window '{value}' in rule '{rule.text}' (it ends before it starts)")
    rule.window = (begin, until)


def _impairment(parse, value: str, text: str):
    """``parse(value)`` from tools/impairments.py, its complaint made a RuleError naming the rule."""
    try:
        return parse(value)
    except ValueError as exc:
        raise RuleError(f"{exc} in rule '{text}'") from None


def _impairment_key(rule: Rule, key: str, value: str, text: str) -> None:
    """gemodel=, state=, dist=, corr= or limit=: checked against the action in _check_impairments."""
    if key in LOSS_MODELS:
        if rule.loss is not None:
            raise RuleError(f"bad word '{key}={value}' in rule '{text}' (one loss model per rule)")
        rule.loss = _impairment(LOSS_MODELS[key].parse, value, text)
    elif key == "dist":
        if value not in SHAPES:
            raise RuleError(f"unknown distribution '{value}' in rule '{text}' (one of {', '.join(SHAPES)})")
        rule.shape = DelayShape(rule.delay, rule.jitter, value, rule.shape.corr if rule.shape else 0.0)
    elif key == "corr":
        corr = _impairment(impairments.fraction, value, text)
        rule.shape = DelayShape(rule.delay, rule.jitter, rule.shape.dist if rule.shape else "uniform", corr)
    else:
        rule.link = Link(rule.link.rate if rule.link else 1.0, _positive_int(value, key, text))


def _check_impairments(rule: Rule, text: str) -> None:
    """The keys that shape an action belong to it; each model gets its per-flow states."""
    if rule.shape is not None:
        if rule.action != "delay" or not rule.jitter:
            raise RuleError(f"bad word 'dist=/corr=' in rule '{text}' (they shape a delay's jitter: delay 100ms±20ms dist=normal)")
        rule._states = FlowStates(rule.shape.chain, f"{text}|delay")
    if rule.link is not None:
        if rule.action != "rate":
            raise RuleError(f"bad word 'limit=' in rule '{text}' (a rate's queue: rate 20kbps limit=50)")
        link = rule.link
        rule._states = FlowStates(lambda rng: link.queue(), text)
    if rule.loss is not None:
        rule._losses = FlowStates(rule.loss.chain, f"{text}|loss")


@dataclass
class Decision:
    action: str  # what happened: one of ACTIONS
    rule: int | None  # index of the rule that matched (shown from 1), None for none
    copies: list[tuple[float, bytes]] = field(default_factory=list)  # (delay, bytes) to deliver
    hold: bool = False  # hold: keep it until the flow's next datagram


class FaultPlan:
    """The rule list and the seeded randomness: decides the fate of each chat datagram."""

    def __init__(self, rules: Iterable[str | Rule] = (), seed: int | None = None):
        self.seed = seed
        self.rules: list[Rule] = []
        self._waiting: list[Rule] = []  # rules whose since= was not seen yet
        self.replace(rules)
        self._streams: dict[tuple[str, str, str], random.Random] = {}

    def add(self, rule: str | Rule) -> None:
        self.rules.append(self._entering(rule if isinstance(rule, Rule) else Rule.parse(rule)))

    def replace(self, rules: Iterable[str | Rule]) -> None:
        self._waiting = []
        self.rules = [self._entering(r if isinstance(r, Rule) else Rule.parse(r)) for r in rules]

    def insert(self, index: int, rule: Rule) -> None:
        """``rule`` at ``index`` of the first-match order (the proxy's control API)."""
        self.rules.insert(index, self._entering(rule))

    def put(self, index: int, rule: Rule) -> None:
        """``rule`` in place of the one at ``index``."""
        self._leaving(self.rules[index])
        self.rules[index] = self._entering(rule)

    def remove(self, index: int) -> None:
        self._leaving(self.rules.pop(index))

    def _leaving(self, rule: Rule) -> None:
        self._waiting = [r for r in self._waiting if r is not rule]  # by identity: equal rules may differ in state

    def _entering(self, rule: Rule) -> Rule:
        if rule.since is not None and rule.active_from is None:
            self._waiting.append(rule)
        return rule

    def activate(self, now: float) -> None:
        """The rules that entered the plan since the last call became active at ``now`` (their
        during= counts from it); a caller with a clock calls this when it adds rules.  Without
        it, a rule becomes active at the first datagram it is asked about."""
        for rule in self.rules:
            if rule.active_from is None and rule.since is None:
                rule.active_from = now

    def stream(self, kind: str, src: str, dst: str) -> random.Random:
        """The random stream of one (sender, receiver, type).  Real nodes' flows reach the
        proxy in a different interleaving on every run; a single stream would then give
        each datagram a different fate, while one per flow repeats as long as each flow does."""
        key = (src, dst, kind)
        rng = self._streams.get(key)
        if rng is None:
            rng = self._streams[key] = random.Random(None if self.seed is None else f"{self.seed}|{src}|{dst}|{kind}")
        return rng

    def decide(self, data: bytes, kind: str | None, src: str, dst: str, *, now: float = 0.0, datagram: Datagram | None = None) -> Decision:
        """``now``: seconds on the caller's clock (the proxy's loop, the simulator's fake one).
        ``kind``: the chat type, "" for a datagram of another --layer, None for one the layer did not
        decode; ``datagram``: what src=, port=, field.X= test (without it, as in the simulator, only
        size= and bytes= can match)."""
        if self._waiting:
            self._seen(kind, now)
        rng = self.stream(kind, src, dst)
        if datagram is None:
            datagram = Datagram(data)
        for index, rule in enumerate(self.rules):
            if rule.take(kind, src, dst, rng, now, self.seed, datagram):
                if rule._states is not None:
                    return self._shaped(rule, index, data, src, dst, now)
                return Decision(rule.action, index, self._copies(rule, data, rng), hold=rule.action == "hold")
        return Decision("pass", None, [(0.0, data)])

    def _seen(self, kind: str, now: float) -> None:
        """A datagram of ``kind`` arrived: the rules waiting for one become active now."""
        for rule in [r for r in self._waiting if kind in r.since]:
            rule.active_from = now
            self._waiting.remove(rule)

    def _shaped(self, rule: Rule, index: int, data: bytes, src: str, dst: str, now: float) -> Decision:
        """A delay with a distribution, or a rate: from the flow's own state (tools/impairments.py)."""
        state = rule._states.get(src, dst, self.seed)
        if rule.link is None:
            return Decision(rule.action, index, [(state.next(), data)])
        wait = state.admit(now, len(data))
        if wait is None:
            rule.overflow += 1
            return Decision("drop", index, [])
        return Decision(rule.action, index, [(wait, data)])

    def _copies(self, rule: Rule, data: bytes, rng: random.Random) -> list[tuple[float, bytes]]:
        if rule.action == "drop":
            return []
        if rule.action == "delay":
            return [(max(0.0, rule.delay + rng.uniform(-rule.jitter, rule.jitter)), data)]
        if rule.action == "duplicate":
            return [(0.0, data)] * (rule.copies + 1)
        if rule.action == "corrupt" and data:  # an empty datagram (not chat) has nothing to flip
            flipped = bytearray(data)
            for _ in range(rule.copies):
                flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
            return [(0.0, bytes(flipped))]
        if rule.action == "replay":
            return [(0.0, data), (rule.delay, data)]
        if rule.action == "reorder":
            return [(_reorder_delay(rule, rng), data)]
        return [(0.0, data)]  # pass, hold


def _reorder_delay(rule: Rule, rng: random.Random) -> float:
    """netem's reorder: once ``gap - 1`` datagrams have waited, each goes at once with probability
    ``share``, ahead of those still waiting, and the count starts again; the others wait ``delay``.
    Like netem, which counts over its whole queue, the count is the rule's, not one per flow."""
    if rule.waited >= rule.gap - 1 and rng.random() < rule.share:
        rule.waited = 0
        return 0.0
    rule.waited += 1
    return rule.delay


class ReorderHold:
    """The datagrams a ``hold`` holds, per flow (sender to receiver): each goes out right after
    the flow's next datagram that goes out, or when ``max_hold`` is up, whichever comes first.
    What a held item is (a datagram and its socket, a queue entry) is the caller's business."""

    def __init__(self, max_hold: float = 1.0):
        self.max_hold = max_hold
        self._held: dict[object, list] = {}

    def hold(self, flow, item) -> None:
        """Keep ``item``; the caller arranges for ``expire(flow, item)`` after ``max_hold``."""
        self._held.setdefault(flow, []).append(item)

    def release(self, flow) -> list | tuple:
        """A datagram of ``flow`` went out: what the flow held, to go out now, after it."""
        return self._held.pop(flow, ())

    def expire(self, flow, item) -> bool:
        """``max_hold`` is up for ``item``: True if it was still held (it goes out now), False if it
        went out already with a later datagram of its flow."""
        held = self._held.get(flow)
        if not held or item not in held:
            return False
        held.remove(item)
        if not held:
            del self._held[flow]
        return True
