"""The benchmarks' interleaving: every variant inherits the same mix of predecessors."""

from __future__ import annotations

import sys
from collections import Counter
from itertools import pairwise
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.sync_overhead import balanced_orders  # noqa: E402


@pytest.mark.parametrize("n", range(1, 9))
def test_each_variant_follows_every_other_equally_often(n: int) -> None:
    orders = balanced_orders(n)
    assert all(sorted(order) == list(range(n)) for order in orders)
    firsts = Counter(order[0] for order in orders)
    assert set(firsts) == set(range(n))
    assert len(set(firsts.values())) == 1
    pairs = Counter((a, b) for order in orders for a, b in pairwise(order))
    assert len(pairs) == n * (n - 1)
    assert len(set(pairs.values())) <= 1
