"""What a scenario reports: figures, each with the baseline it was measured against."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from tools.stats import median, percentile  # noqa: F401  (the scenarios take them from here, with Figure)


@dataclass
class Figure:
    scenario: str
    name: str
    value: float | None  # None: not measured (the scenario failed or was cut short)
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    target: str = ""  # as written in the issue, e.g. "< 25"
    met: bool | None = None  # None: no target
    note: str = ""
    also: dict[str, float] = field(default_factory=dict)  # other measurements beside value and baseline

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline

    def as_json(self) -> dict:
        return {**asdict(self), "ratio": self.ratio}


def check(value: float | None, target: str) -> bool | None:
    """Does ``value`` meet ``target`` ("< 25", ">= 20000")?"""
    if value is None or not target:
        return None
    op, limit = target.split()
    limit = float(limit)
    return {"<": value < limit, "<=": value <= limit, ">": value > limit, ">=": value >= limit}[op]


class Busy:
    """How busy a process (a Process of processes.py) and this one were since creation, each as
    a share of one core: which side of a measurement was the bottleneck."""

    def __init__(self, process):
        self.process = process
        self.start = time.monotonic()
        self.theirs = process.cpu_seconds()
        self.ours = time.process_time()

    def share(self) -> tuple[float, float]:
        wall = max(time.monotonic() - self.start, 1e-9)
        return (self.process.cpu_seconds() - self.theirs) / wall, (time.process_time() - self.ours) / wall
