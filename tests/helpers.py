"""Helpers shared by the tests; every wait here is bounded, so a broken promise fails, not hangs."""

from __future__ import annotations

import time
from collections.abc import Callable

#: Seconds any condition a test waits for may take before the test fails.
WAIT_LIMIT = 10.0


def eventually(condition: Callable[[], bool], what: str, limit: float = WAIT_LIMIT) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"still not true after {limit} s: {what}")
        time.sleep(0.005)
