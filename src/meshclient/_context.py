"""The deadline a call inherits from the request being handled, and the headers that carry it.

A server that handles a request with some time left sets an absolute deadline (a
``time.monotonic()`` value) in a context variable; every meshclient call made while it is
set finishes by then: its deadline is min(its own ``Timeout.total``, the inherited one).
Context variables follow threads started by ``contextvars.copy_context`` and asyncio tasks,
so the deadline reaches the handler's own tasks too.

On the wire the budget is relative (milliseconds left), so clocks of the two hosts never
have to agree; the time spent in transit is charged to the callee, which is the safe side.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Final

from ._names import DEADLINE_HEADER, ENVOY_TIMEOUT_HEADER, GRPC_TIMEOUT_HEADER

__all__ = [
    "deadline_scope",
    "inherited_deadline",
    "parse_grpc_timeout",
    "parse_milliseconds",
    "time_left",
    "timeout_from_headers",
]

#: Absolute ``time.monotonic()`` deadline inherited by calls in this context, or ``None``.
_DEADLINE: Final[ContextVar[float | None]] = ContextVar("meshclient.deadline", default=None)

inherited_deadline: Final = _DEADLINE.get

#: gRPC ``TimeoutUnit`` → seconds (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md).
_GRPC_UNITS: Final = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


@contextmanager
def deadline_scope(seconds: float | None) -> Iterator[None]:
    """Every meshclient call inside the block finishes within ``seconds`` from now.

    Scopes nest: the tightest deadline wins, so an inner scope can shorten but never
    extend the time an outer one gave. ``None`` keeps the current deadline (if any).
    A call started after the deadline fails at once with ``DeadlineExceeded``, without
    sending anything. Servers get this from ``meshclient.middleware`` for free.
    """
    deadline = _DEADLINE.get()
    if seconds is not None:
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise TypeError(f"deadline_scope: seconds must be a number or None, got {seconds!r}")
        if not math.isfinite(seconds):
            raise ValueError(
                f"deadline_scope: seconds must be a finite number or None, got {seconds!r}"
            )
        mine = time.monotonic() + seconds
        if deadline is None or mine < deadline:
            deadline = mine
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def time_left() -> float | None:
    """Seconds left of the inherited deadline (may be negative), or ``None`` without one."""
    deadline = _DEADLINE.get()
    return None if deadline is None else deadline - time.monotonic()


def parse_milliseconds(value: str) -> float | None:
    """``"250"`` → 0.25 s; ``None`` for anything that is not a finite, non-negative number."""
    try:
        ms = float(value)
    except ValueError:
        return None
    if not (math.isfinite(ms) and ms >= 0):
        return None
    return ms / 1000


def parse_grpc_timeout(value: str) -> float | None:
    """gRPC's ``grpc-timeout`` (at most 8 digits and a unit: ``100m``, ``5S``) → seconds."""
    value = value.strip()
    digits, unit = value[:-1], value[-1:]
    if not (0 < len(digits) <= 8 and digits.isascii() and digits.isdigit()):
        return None
    scale = _GRPC_UNITS.get(unit)
    return None if scale is None else int(digits) * scale


def timeout_from_headers(
    get: Callable[[str], str | None],
    *,
    header: str | None = DEADLINE_HEADER,
    grpc_timeout: bool = True,
    envoy_timeout: bool = True,
) -> float | None:
    """The shortest time budget (seconds) announced by a request's headers, or ``None``.

    ``get`` looks a lower-case header name up. Malformed values are ignored rather than
    rejected: a bad budget from a caller must not fail the request it came with.
    """
    budgets: list[float] = []
    if header is not None and (value := get(header)) is not None:
        budget = parse_milliseconds(value)
        if budget is not None:
            budgets.append(budget)
    if grpc_timeout and (value := get(GRPC_TIMEOUT_HEADER)) is not None:
        budget = parse_grpc_timeout(value)
        if budget is not None:
            budgets.append(budget)
    if envoy_timeout and (value := get(ENVOY_TIMEOUT_HEADER)) is not None:
        budget = parse_milliseconds(value)
        if budget is not None:
            budgets.append(budget)
    return min(budgets) if budgets else None
