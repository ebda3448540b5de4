"""The fault rule engine: which fate each chat datagram meets, decided from what it means.

Pure decisions, no I/O: both the socket proxy (tools/lossy_proxy.py) and the deterministic
simulator of the tests use it, so the two mean the same thing by ``drop p=0.2`` or ``reorder``.
A ``FaultPlan`` holds the rules and the seeded randomness and gives a ``Decision`` per datagram;
a ``ReorderHold`` keeps the datagrams a ``reorder`` holds back until their flow's next one.

Rules (checked in order, first match wins; no match means pass):

    ACTION [ARG] [MATCH]...

    actions:  drop | pass | delay D[±J] | duplicate N | reorder | corrupt [N] | replay AFTER
    matches:  type=T[,T...]  from=NAME[,NAME...]  to=NAME[,NAME...]  (names learned from
              the traffic; the server is "server")
              p=P        with probability P (--seed N: each flow, a sender, a receiver and
                         a type, gets the same choices on every run with that N)
              first=N    the first N datagrams the rule's type/from/to select
              nth=N      only the Nth of them
              after=N    all of them after the first N
              count=N    apply the action at most N times
    durations: 300ms, 1.5s, 2 (seconds); jitter with ± or +-: delay 300ms±50ms

    duplicate N sends N extra copies; reorder holds a datagram until the next one
    of the same flow (sender to receiver) has gone, at most --max-hold; corrupt N
    flips N random bytes (default 1); replay AFTER delivers it now and a copy later.

Examples:

    --rule 'drop type=ack from=B first=5'      --rule 'delay 300ms type=grp_msg to=C'
    --rule 'duplicate 2 type=pri_msg'          --rule 'drop p=0.2'
    --rule 'reorder type=table'                --rule 'corrupt p=0.05'
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Iterable

from tools.cli import seconds

ACTIONS = ("drop", "pass", "delay", "duplicate", "reorder", "corrupt", "replay")
NEEDS_ARG = {"delay", "duplicate", "replay"}
KEYS = ("type", "from", "to", "p", "first", "nth", "after", "count")


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
    selected: int = 0  # datagrams its type/from/to selected
    applied: int = 0  # times its action was taken
    name: str = ""  # its id in the proxy's control API (tools/control.py); given there when empty

    @classmethod
    def parse(cls, text: str) -> "Rule":
        from proto import TYPE_CODES  # the layer's own list of type names

        words = text.split()
        if not words:
            raise RuleError("empty rule")
        action, rest = words[0], words[1:]
        if action not in ACTIONS:
            raise RuleError(f"unknown action '{action}' in rule '{text}' (one of {', '.join(ACTIONS)})")
        rule = cls(text, action)
        if action in NEEDS_ARG or (action == "corrupt" and rest and "=" not in rest[0]):
            if not rest or "=" in rest[0]:
                raise RuleError(f"'{action}' needs an argument in rule '{text}'")
            arg, rest = rest[0], rest[1:]
            if action in ("delay", "replay"):
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
            if not eq or key not in KEYS or not value:
                raise RuleError(f"bad word '{word}' in rule '{text}' (matches are {', '.join(k + '=' for k in KEYS)})")
            if key == "type":
                names = value.split(",")
                unknown = [n for n in names if n not in TYPE_CODES]
                if unknown:
                    raise RuleError(f"unknown type '{unknown[0]}' in rule '{text}'")
                rule.types = frozenset(names)
            elif key in ("from", "to"):
                setattr(rule, "src" if key == "from" else "dst", frozenset(value.split(",")))
            elif key == "p":
                try:
                    rule.p = float(value)
                except ValueError:
                    rule.p = -1.0
                if not 0.0 <= rule.p <= 1.0:
                    raise RuleError(f"bad value '{value}' for p in rule '{text}' (a probability from 0 to 1)")
            else:
                setattr(rule, key, _positive_int(value, key, text))
        return rule

    def take(self, kind: str, src: str, dst: str, rng: random.Random) -> bool:
        """Does this rule act on this datagram?  Updates the rule's counters."""
        if self.types is not None and kind not in self.types:
            return False
        if (self.src is not None and src not in self.src) or (self.dst is not None and dst not in self.dst):
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
        self.applied += 1
        return True


@dataclass
class Decision:
    action: str  # what happened: one of ACTIONS
    rule: int | None  # index of the rule that matched (shown from 1), None for none
    copies: list[tuple[float, bytes]] = field(default_factory=list)  # (delay, bytes) to deliver
    hold: bool = False  # reorder: keep it until the flow's next datagram


class FaultPlan:
    """The rule list and the seeded randomness: decides the fate of each chat datagram."""

    def __init__(self, rules: Iterable[str | Rule] = (), seed: int | None = None):
        self.seed = seed
        self.rules: list[Rule] = []
        self.replace(rules)
        self._streams: dict[tuple[str, str, str], random.Random] = {}

    def add(self, rule: str | Rule) -> None:
        self.rules.append(rule if isinstance(rule, Rule) else Rule.parse(rule))

    def replace(self, rules: Iterable[str | Rule]) -> None:
        self.rules = [r if isinstance(r, Rule) else Rule.parse(r) for r in rules]

    def stream(self, kind: str, src: str, dst: str) -> random.Random:
        """The random stream of one (sender, receiver, type).  Real nodes' flows reach the
        proxy in a different interleaving on every run; a single stream would then give
        each datagram a different fate, while one per flow repeats as long as each flow does."""
        key = (src, dst, kind)
        rng = self._streams.get(key)
        if rng is None:
            rng = self._streams[key] = random.Random(None if self.seed is None else f"{self.seed}|{src}|{dst}|{kind}")
        return rng

    def decide(self, data: bytes, kind: str, src: str, dst: str) -> Decision:
        rng = self.stream(kind, src, dst)
        for index, rule in enumerate(self.rules):
            if rule.take(kind, src, dst, rng):
                return Decision(rule.action, index, self._copies(rule, data, rng), hold=rule.action == "reorder")
        return Decision("pass", None, [(0.0, data)])

    def _copies(self, rule: Rule, data: bytes, rng: random.Random) -> list[tuple[float, bytes]]:
        if rule.action == "drop":
            return []
        if rule.action == "delay":
            return [(max(0.0, rule.delay + rng.uniform(-rule.jitter, rule.jitter)), data)]
        if rule.action == "duplicate":
            return [(0.0, data)] * (rule.copies + 1)
        if rule.action == "corrupt":
            flipped = bytearray(data)
            for _ in range(rule.copies):
                flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
            return [(0.0, bytes(flipped))]
        if rule.action == "replay":
            return [(0.0, data), (rule.delay, data)]
        return [(0.0, data)]  # pass, reorder


class ReorderHold:
    """The datagrams a ``reorder`` holds, per flow (sender to receiver): each goes out right after
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
