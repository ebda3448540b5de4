"""Realistic impairments for the fault rules (tools/faults.py): bursty loss models, delay
distributions with correlation, and a rate-limited link with a queue limit, as tc netem has them.

Pure: no I/O and no clock of its own (the caller passes ``now``, seconds on its clock); every
random choice comes from a seeded ``random.Random`` passed in.  A model's parameters are parsed
once per rule; its state is kept per flow (sender to receiver) in ``FlowStates``, each flow with
its own random stream, so a flow meets the same fates on every run with the same seed however
the flows interleave.  What each model means, with the netem command line it stands for:
docs/fault-models.md.
"""

from __future__ import annotations

import math
import random
import re
from collections import deque
from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


def fraction(word: str) -> float:
    """A probability written as netem writes it (``25%``) or as a fraction (``0.25``); ValueError if
    it is neither or lies outside 0..1."""
    percent = word.endswith("%")
    try:
        value = float(word[:-1] if percent else word) / (100 if percent else 1)
    except ValueError:
        raise ValueError(f"'{word}' is not a probability (e.g. 25% or 0.25)") from None
    if not 0.0 <= value <= 1.0 or math.isnan(value):
        raise ValueError(f"'{word}' is not a probability from 0 to 1 (0% to 100%)")
    return value


def fractions(value: str, names: tuple[str, ...]) -> list[float]:
    """``1%,30%`` for a model whose parameters are ``names``: 1 to len(names) of them, in order."""
    words = value.split(",")
    if len(words) > len(names):
        raise ValueError(f"too many values in '{value}' (at most {len(names)}: {','.join(names)})")
    return [fraction(word) for word in words]


class FlowStates(Generic[T]):
    """One rule's state machines, one per flow (sender to receiver), each made on first use with
    a random stream of its own, seeded from the run's seed, the flow and ``salt`` (the rule)."""

    def __init__(self, make: Callable[[random.Random], T], salt: str):
        self._make = make
        self._salt = salt
        self._states: dict[tuple[str, str], T] = {}

    def get(self, src: str, dst: str, seed: int | None) -> T:
        state = self._states.get((src, dst))
        if state is None:
            rng = random.Random(None if seed is None else f"{seed}|{src}|{dst}|{self._salt}")
            state = self._states[(src, dst)] = self._make(rng)
        return state


# -- loss models: which datagrams a rule picks ------------------------------------------------------


@dataclass(frozen=True)
class GilbertElliott:
    """netem's ``loss gemodel p [r [1-h [1-k]]]``: a good and a bad state; p is the chance of going
    from good to bad, r from bad to good, 1-h the loss chance in the bad state, 1-k in the good one.
    netem's defaults: r = 1-p, 1-h = 1, 1-k = 0 (with p alone, independent loss with chance p)."""

    p: float
    r: float
    loss_bad: float = 1.0  # 1-h
    loss_good: float = 0.0  # 1-k

    PARAMETERS = ("p", "r", "1-h", "1-k")

    @classmethod
    def parse(cls, value: str) -> "GilbertElliott":
        values = fractions(value, cls.PARAMETERS)
        return cls(values[0], *(values[1:] or [1.0 - values[0]]))

    def chain(self, rng: random.Random) -> "_GilbertChain":
        return _GilbertChain(self, rng)


class _GilbertChain:
    __slots__ = ("model", "random", "bad")

    def __init__(self, model: GilbertElliott, rng: random.Random):
        self.model, self.random, self.bad = model, rng.random, False

    def lost(self) -> bool:
        """Is the next datagram lost?  As netem: the state it meets decides, then the state moves on."""
        m, rand = self.model, self.random
        if self.bad:
            lost = rand() < m.loss_bad
            self.bad = rand() >= m.r
        else:
            lost = rand() < m.loss_good
            self.bad = rand() < m.p
        return lost


@dataclass(frozen=True)
class FourState:
    """netem's ``loss state p13 [p31 [p32 [p23 [p14]]]]``: 1 is good reception, 2 good reception
    within a burst, 3 a burst loss, 4 an isolated loss; a datagram is lost when the step it makes
    lands in state 3 or 4.  Moves: 1→3 p13, 1→4 p14, 3→1 p31, 3→2 p32, 2→3 p23, 4→1 always; the
    rest stay.  netem's defaults: p31 = 1-p13, p32 = 0, p23 = 1, p14 = 0 (p13 alone: independent loss)."""

    p13: float
    p31: float
    p32: float = 0.0
    p23: float = 1.0
    p14: float = 0.0

    PARAMETERS = ("p13", "p31", "p32", "p23", "p14")

    @classmethod
    def parse(cls, value: str) -> "FourState":
        values = fractions(value, cls.PARAMETERS)
        model = cls(values[0], *(values[1:] or [1.0 - values[0]]))
        if model.p13 + model.p14 > 1 or model.p31 + model.p32 > 1:
            raise ValueError(f"'{value}': the chances out of one state add up to more than 1 (p13+p14, p31+p32)")
        return model

    def chain(self, rng: random.Random) -> "_FourStateChain":
        return _FourStateChain(self, rng)


class _FourStateChain:
    __slots__ = ("model", "random", "state")

    def __init__(self, model: FourState, rng: random.Random):
        self.model, self.random, self.state = model, rng.random, 1

    def lost(self) -> bool:
        m, u, s = self.model, self.random(), self.state
        if s == 1:
            s = 4 if u < m.p14 else 3 if u < m.p14 + m.p13 else 1
        elif s == 2:
            s = 3 if u < m.p23 else 2
        elif s == 3:
            s = 2 if u < m.p32 else 1 if u < m.p32 + m.p31 else 3
        else:
            s = 1
        self.state = s
        return s >= 3


LOSS_MODELS = {"gemodel": GilbertElliott, "state": FourState}  # the rule key of each, netem's word


# -- delay distributions -----------------------------------------------------------------------------


def _pareto(z: float) -> float:
    # netem's pareto table: (X - 1.5) * 4/3 for X Pareto with shape 3 and scale 1 (mean 1.5), at the
    # quantile Φ(z); 1 - Φ(z) is taken as Φ(-z) so that the far tail does not round to 0.
    tail = 0.5 * math.erfc(z / math.sqrt(2))
    return (tail ** (-1 / 3) - 1.5) * 4 / 3 if tail > 0 else math.inf


# The standard shape of each distribution at the quantile Φ(z) of a standard normal z; the delay
# is mean + jitter * shape, the shape kept within ±4 as netem's 16-bit tables keep it.
SHAPES: dict[str, Callable[[float], float]] = {
    "uniform": lambda z: math.erf(z / math.sqrt(2)),  # 2Φ(z) - 1: uniform on -1..1
    "normal": lambda z: z,
    "pareto": _pareto,
    "paretonormal": lambda z: 0.25 * z + 0.75 * _pareto(z),  # netem's: a quarter normal, three quarters pareto
}
SHAPE_LIMIT = 4.0


@dataclass(frozen=True)
class DelayShape:
    """netem's ``delay TIME JITTER [CORRELATION] distribution NAME``.  Each flow's delays come from
    a chain of standard normals z (z' = corr·z + √(1-corr²)·fresh): every delay has exactly the
    named distribution whatever the correlation, and consecutive ones are correlated by about
    ``corr`` (exactly, for normal)."""

    mean: float
    jitter: float
    dist: str = "uniform"
    corr: float = 0.0

    def chain(self, rng: random.Random) -> "_DelayChain":
        return _DelayChain(self, rng)


class _DelayChain:
    __slots__ = ("shape", "gauss", "z", "keep", "fresh")

    def __init__(self, shape: DelayShape, rng: random.Random):
        self.shape, self.gauss, self.z = shape, rng.gauss, None
        self.keep, self.fresh = shape.corr, math.sqrt(1.0 - shape.corr**2)

    def next(self) -> float:
        """The next datagram's delay, in seconds (never below 0)."""
        z = self.gauss()
        if self.z is not None:
            z = self.keep * self.z + self.fresh * z
        self.z = z
        s = self.shape
        t = max(-SHAPE_LIMIT, min(SHAPE_LIMIT, SHAPES[s.dist](z)))
        return max(0.0, s.mean + s.jitter * t)


# -- a rate-limited link ------------------------------------------------------------------------------

RATE_UNITS = {"bps": 1, "kbps": 1e3, "mbps": 1e6, "gbps": 1e9, "bit": 1 / 8, "kbit": 1e3 / 8, "mbit": 1e6 / 8, "gbit": 1e9 / 8}
DEFAULT_LIMIT = 1000  # netem's default queue limit, in packets


def rate(word: str) -> float:
    """A rate as tc writes it, in bytes per second: ``20kbps`` (kilobytes/s) or ``160kbit`` (kilobits/s);
    k, m and g are powers of 1000.  ValueError if not a positive rate with a unit."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([a-z]+)", word)
    if not m or m.group(2) not in RATE_UNITS or float(m.group(1)) <= 0:
        raise ValueError(f"'{word}' is not a rate (e.g. 20kbps for bytes/s, 160kbit for bits/s)")
    return float(m.group(1)) * RATE_UNITS[m.group(2)]


@dataclass(frozen=True)
class Link:
    """netem's ``rate RATE`` with ``limit PACKETS`` (Toxiproxy's ``bandwidth``): a datagram waits
    for the datagrams before it on its flow's link, then takes size / rate to go out; one that
    finds ``limit`` datagrams on the link (the one going out included) is dropped."""

    rate: float  # bytes per second
    limit: int = DEFAULT_LIMIT

    def queue(self) -> "_LinkQueue":
        return _LinkQueue(self)


class _LinkQueue:
    __slots__ = ("link", "leaving")

    def __init__(self, link: Link):
        self.link = link
        self.leaving: deque[float] = deque()  # when each datagram on the link has gone out, in order

    def admit(self, now: float, size: int) -> float | None:
        """How long until a datagram of ``size`` bytes arriving at ``now`` has gone out; None if
        the queue is full and it is dropped."""
        leaving = self.leaving
        while leaving and leaving[0] <= now:
            leaving.popleft()
        if len(leaving) >= self.link.limit:
            return None
        done = max(now, leaving[-1] if leaving else now) + size / self.link.rate
        leaving.append(done)
        return done - now
