"""A token-bucket rate limiter for one service, written against the public module API only.

It is an ``Admission`` rule: the default stack's ``rate_limit`` module runs it for a service
given ``Service(rate_limit=RateLimiter(...))``, and any stack can place it with
``AdmissionModule``. Nothing in the engine knows it exists.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

from ._call import Call
from ._exceptions import MeshError
from ._stack import Sleep
from ._validate import check_integer, check_number

__all__ = ["RateLimitedError", "RateLimiter"]

#: Absorbs float rounding in the refill (0.1 s at 10/s must give a whole permit).
_EPSILON = 1e-9


class RateLimitedError(MeshError):
    """The service's rate limiter had no permit within the time the call could wait.

    ``retry_after`` is the number of seconds until a permit would be free. Never retried.
    """

    def __init__(self, message: str, *, retry_after: float = 0.0, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class RateLimiter:
    """At most ``rate`` calls per second to one service, with bursts of up to ``burst``.

    A token bucket (Polly's and resilience4j's rate limiters, Guava's ``RateLimiter``): the
    bucket holds up to ``burst`` permits (default: one second's worth, at least 1) and refills
    at ``rate`` per second; each call takes one. A call that finds the bucket empty waits for
    its permit if it can have it within ``max_wait`` seconds and before its deadline, else it
    fails at once with ``RateLimitedError``:

    - ``max_wait=0`` (the default): never wait, reject (resilience4j with a zero timeout);
    - ``max_wait=0.5``: wait up to half a second;
    - ``max_wait=None``: wait as long as the call's deadline allows (unbounded without one).

    A waiting call reserves the next free permit, so waiters are served in order and a burst
    of waiters is spread at ``rate``; a waiter that is cancelled gives its permit back. Permits
    are never returned after use: the rate counts calls started, not calls in flight (that is
    the ``Bulkhead``'s job). Thread-safe; one lock, O(1) per call.
    """

    __slots__ = (
        "_clock",
        "_lock",
        "_rejected",
        "_stamp",
        "_tokens",
        "burst",
        "max_wait",
        "rate",
    )

    def __init__(
        self,
        rate: float,
        *,
        burst: int | None = None,
        max_wait: float | None = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_number(
            "RateLimiter", "rate", rate, "a finite number of calls per second > 0",
            lambda v: 0 < v < math.inf,
        )  # fmt: skip
        if burst is None:
            burst = max(1, math.ceil(rate))
        check_integer("RateLimiter", "burst", burst, 1)
        if max_wait is not None:
            check_number(
                "RateLimiter", "max_wait", max_wait, "a finite number of seconds >= 0 or None",
                lambda v: 0 <= v < math.inf,
            )  # fmt: skip
        if not callable(clock):
            raise TypeError(
                f"RateLimiter.clock must be a callable returning seconds, got {clock!r}"
            )
        self.rate = float(rate)
        self.burst = burst
        self.max_wait = None if max_wait is None else float(max_wait)
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._stamp = clock()
        self._rejected = 0

    def _refill(self, now: float) -> float:
        """Tokens as of ``now`` (negative: permits reserved by waiters). Lock held."""
        elapsed = now - self._stamp
        tokens = self._tokens
        if elapsed > 0.0:
            tokens += elapsed * self.rate
            if tokens > self.burst:
                tokens = float(self.burst)
            self._tokens = tokens
            self._stamp = now
        return tokens

    def admit(self, call: Call) -> Sleep | None:
        """A permit now (``None``), a ``Sleep`` until the reserved one is due, or the error."""
        with self._lock:
            tokens = self._refill(self._clock())
            if tokens >= 1.0 - _EPSILON:
                self._tokens = tokens - 1.0
                return None
            wait = (1.0 - tokens) / self.rate
            limit = self.max_wait
            left = call.time_left()
            if left is not None and (limit is None or left < limit):
                limit = left
            if limit is not None and wait > limit:
                self._rejected += 1
                rejected = True
            else:
                self._tokens = tokens - 1.0
                rejected = False
        if rejected:
            raise RateLimitedError(
                f"rate limit of service {call.service!r} reached ({self.rate:g}/s, burst "
                f"{self.burst}): the next permit is {wait:.3f} s away",
                retry_after=wait,
                request=call.request,
            )
        return Sleep(wait, on_cancel=self._refund)

    def release(self, call: Call) -> None:
        """Nothing to give back: a permit is spent when its call starts."""

    def _refund(self) -> None:
        """A waiter went away before its permit came due: the permit is free again."""
        with self._lock:
            tokens = self._refill(self._clock()) + 1.0
            self._tokens = tokens if tokens < self.burst else float(self.burst)

    def snapshot(self) -> dict[str, Any]:
        """JSON-able figures: settings, permits available now (negative: reserved), rejections."""
        with self._lock:
            return {
                "rate": self.rate,
                "burst": self.burst,
                "max_wait": self.max_wait,
                "tokens": self._refill(self._clock()),
                "rejected": self._rejected,
            }

    def __repr__(self) -> str:
        return f"RateLimiter({self.rate!r}, burst={self.burst!r}, max_wait={self.max_wait!r})"
