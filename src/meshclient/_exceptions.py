"""Errors raised by meshclient.

Every error is an ``httpx.TransportError``, so ``except httpx.RequestError`` keeps working::

    httpx.TransportError
    └── MeshError                  what happened: attempts, endpoints tried, elapsed
        ├── NoEndpointsError       discovery has no endpoint for the service
        ├── CircuitOpenError       the service breaker rejected the call (never retried)
        ├── BulkheadFullError      the service's concurrency limit is reached (never retried)
        ├── ThrottledError         adaptive throttling rejected the call locally (never retried)
        ├── RateLimitedError       the service's rate limiter had no permit in time (never retried)
        └── DeadlineExceeded       the call's total timeout ran out (also httpx.TimeoutException)
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx

__all__ = [
    "CircuitOpenError",
    "DeadlineExceeded",
    "MeshError",
    "NoEndpointsError",
    "ThrottledError",
]


class MeshError(httpx.TransportError):
    """A call failed for a reason meshclient decided, not one the network reported."""

    def __init__(
        self,
        message: str,
        *,
        request: httpx.Request | None = None,
        attempts: int = 0,
        endpoints: Sequence[str] = (),
        elapsed: float = 0.0,
    ) -> None:
        super().__init__(message, request=request)
        #: Physical attempts made before giving up.
        self.attempts = attempts
        #: ``host:port`` of every endpoint tried, in order.
        self.endpoints = tuple(endpoints)
        #: Seconds from the start of the call to the error.
        self.elapsed = elapsed


class NoEndpointsError(MeshError):
    """The service has no endpoint to send to (discovery is empty)."""


class CircuitOpenError(MeshError):
    """The service's circuit breaker is open: the call failed without touching the network."""


class ThrottledError(MeshError):
    """Adaptive throttling refused the call locally because the service refuses much of its work."""


class DeadlineExceeded(MeshError, httpx.TimeoutException):
    """The call's total time budget (``Timeout.total`` or an inherited deadline) ran out."""
