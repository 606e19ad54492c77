"""A fixed-size log-bucketed latency histogram: per-call latencies in bounded memory.

Buckets are spaced geometrically (``BUCKETS_PER_DECADE`` per factor of ten, about 2.3 % wide
at 100 per decade) from ``LOW`` to ``HIGH`` seconds, plus one underflow and one overflow
bucket, so the memory is the same whether a run makes a thousand calls or a billion. A
percentile read from it is the upper edge of its bucket: at most one bucket width high.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["LatencyHistogram"]

LOW = 1e-5  # 10 µs
HIGH = 100.0  # s
BUCKETS_PER_DECADE = 100


class LatencyHistogram:
    """Counts of latencies (seconds) per geometric bucket; ``record`` is O(1)."""

    __slots__ = ("count", "counts", "max", "min")

    _scale = BUCKETS_PER_DECADE / math.log(10)
    _size = math.ceil(math.log10(HIGH / LOW) * BUCKETS_PER_DECADE)

    def __init__(self, latencies: Iterable[float] = ()) -> None:
        # counts[0] is underflow (< LOW), counts[-1] overflow (>= HIGH).
        self.counts = [0] * (self._size + 2)
        self.count = 0
        self.min = math.inf
        self.max = -math.inf
        for latency in latencies:
            self.record(latency)

    def _index(self, latency: float) -> int:
        if latency < LOW:
            return 0
        if latency >= HIGH:
            return self._size + 1
        return 1 + min(self._size - 1, int(math.log(latency / LOW) * self._scale))

    @classmethod
    def _upper_edge(cls, index: int) -> float:
        if index == 0:
            return LOW
        if index > cls._size:
            return math.inf
        return LOW * 10 ** (index / BUCKETS_PER_DECADE)

    def record(self, latency: float) -> None:
        self.counts[self._index(latency)] += 1
        self.count += 1
        self.min = min(self.min, latency)
        self.max = max(self.max, latency)

    def percentile(self, q: float) -> float:
        """Upper edge (s) of the bucket holding the ``q``-th percentile (nearest rank)."""
        if not self.count:
            return math.nan
        rank = max(1, math.ceil(q / 100 * self.count))
        seen = 0
        for index, n in enumerate(self.counts):
            seen += n
            if seen >= rank:
                return min(self._upper_edge(index), self.max)
        return self.max

    def cdf(self) -> list[tuple[float, float]]:
        """``(latency s, share of calls at or below it)`` at each non-empty bucket's upper edge.

        The last point is the exact maximum, so the curve ends where the data ends.
        """
        points: list[tuple[float, float]] = []
        if not self.count:
            return points
        seen = 0
        for index, n in enumerate(self.counts):
            if n:
                seen += n
                points.append((min(self._upper_edge(index), self.max), seen / self.count))
        return points
