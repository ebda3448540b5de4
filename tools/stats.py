"""The median and the nearest-rank percentile of measured values, for the sniffer's statistics and
the benchmarks' figures alike."""

from __future__ import annotations

import statistics


def median(values) -> float | None:
    """The median, or None for no values."""
    values = list(values)
    return statistics.median(values) if values else None


def percentile(values, p: float):
    """The ``p``-th percentile by nearest rank: a value that was measured, never an interpolation
    (p99 of 500 samples is the 495th smallest); None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]
