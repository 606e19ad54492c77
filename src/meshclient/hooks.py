"""Instrumentation hooks: callables fed a frozen record of each thing meshclient decides.

A hook is any callable that takes one event (``Hook``). Hooks are configured per client,
``Client(telemetry=meshclient.Telemetry(hooks=[LoggingHook()]))``, run on the calling thread
(or task) right where the decision is made, and must be quick. A hook that raises is logged
once and disabled for that client; it never breaks a call (trio's rule for instruments).

Events (all frozen, compared by value):

- ``AttemptFinished``: one physical attempt ended (response closed, or an error).
- ``RetryScheduled``: a retry will be sent after ``delay`` seconds.
- ``BudgetExhausted``: a retry was wanted but the service's retry budget refused it.
- ``EndpointEjected`` / ``EndpointReadmitted``: outlier detection took an endpoint out
  of, or put it back into, the balancer's set.
- ``BreakerTransition``: a service's circuit breaker changed state.
- ``DiscoveryUpdated`` / ``DiscoveryFailed`` / ``DiscoveryEntryRejected``: a service's
  registry delivered a changed endpoint set, could not be read (the last good set stays), or
  had an unusable entry that was left out.
"""

from __future__ import annotations

import logging
from typing import Protocol, TypeAlias

import attrs

__all__ = [
    "AttemptFinished",
    "BreakerTransition",
    "BudgetExhausted",
    "DiscoveryEntryRejected",
    "DiscoveryFailed",
    "DiscoveryUpdated",
    "EndpointEjected",
    "EndpointReadmitted",
    "Event",
    "Hook",
    "LoggingHook",
    "RetryScheduled",
]


@attrs.frozen
class AttemptFinished:
    """One physical attempt ended.

    ``attempt`` counts from 1; ``endpoint`` is ``"host:port"``; ``status_code`` is ``None``
    when no response arrived, and ``error_type`` then names the error (for a response it
    is the status code as a string when the status is 4xx/5xx). ``duration`` is seconds
    from sending until the response was closed or the error seen. ``cancelled`` is
    ``True`` when the caller abandoned the attempt (not an error).
    """

    service: str
    method: str
    endpoint: str
    attempt: int
    status_code: int | None
    error_type: str | None
    duration: float
    cancelled: bool = False


@attrs.frozen
class RetryScheduled:
    """Attempt ``attempt`` failed with ``reason`` (a status code or error type).

    The next attempt is sent after ``delay`` seconds.
    """

    service: str
    method: str
    endpoint: str
    attempt: int
    reason: str
    delay: float


@attrs.frozen
class BudgetExhausted:
    """Attempt ``attempt`` failed with ``reason`` and would be retried, but the budget is empty."""

    service: str
    method: str
    attempt: int
    reason: str


@attrs.frozen
class EndpointEjected:
    """``endpoint`` of ``service`` leaves the balancer's set for ``duration`` seconds."""

    service: str
    endpoint: str
    reason: str
    duration: float


@attrs.frozen
class EndpointReadmitted:
    """``endpoint`` of ``service`` is back in the balancer's set."""

    service: str
    endpoint: str


@attrs.frozen
class BreakerTransition:
    """The circuit breaker of ``service`` went from ``from_state`` to ``to_state``."""

    service: str
    from_state: str
    to_state: str
    reason: str = ""


@attrs.frozen
class DiscoveryUpdated:
    """``service``'s registry (``source``) delivered a new set of ``endpoints`` endpoints."""

    service: str
    source: str
    endpoints: int


@attrs.frozen
class DiscoveryFailed:
    """``service``'s registry could not be read; ``endpoints`` (the last good set) stay."""

    service: str
    source: str
    error: str
    endpoints: int


@attrs.frozen
class DiscoveryEntryRejected:
    """An unusable registry ``entry`` of ``service`` was left out, for ``reason``."""

    service: str
    source: str
    entry: str
    reason: str


Event: TypeAlias = (
    AttemptFinished
    | RetryScheduled
    | BudgetExhausted
    | EndpointEjected
    | EndpointReadmitted
    | BreakerTransition
    | DiscoveryUpdated
    | DiscoveryFailed
    | DiscoveryEntryRejected
)


class Hook(Protocol):
    """Receives every event of a client; must not block. Exceptions disable the hook."""

    def __call__(self, event: Event, /) -> None: ...


class LoggingHook:
    """Logs events to ``logger`` (default ``logging.getLogger("meshclient")``).

    Finished attempts and discovery updates go at DEBUG, retries and readmissions at INFO,
    and what signals trouble (an empty budget, an ejection, a breaker transition, a registry
    that failed or had a bad entry) at WARNING. The message is formatted only if the logger is
    enabled for the level.
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logging.getLogger("meshclient") if logger is None else logger

    def __repr__(self) -> str:
        return f"LoggingHook(logger={self.logger.name!r})"

    def __call__(self, event: Event, /) -> None:
        log = self.logger.log
        match event:
            case AttemptFinished():
                if self.logger.isEnabledFor(logging.DEBUG):
                    outcome = (
                        "cancelled"
                        if event.cancelled
                        else f"status {event.status_code}"
                        if event.error_type is None
                        else f"error {event.error_type}"
                    )
                    log(
                        logging.DEBUG,
                        "%s %s attempt %d to %s: %s in %.1f ms",
                        event.method,
                        event.service,
                        event.attempt,
                        event.endpoint,
                        outcome,
                        event.duration * 1000,
                    )
            case RetryScheduled():
                log(
                    logging.INFO,
                    "%s %s attempt %d to %s failed (%s); retrying in %.1f ms",
                    event.method,
                    event.service,
                    event.attempt,
                    event.endpoint,
                    event.reason,
                    event.delay * 1000,
                )
            case BudgetExhausted():
                log(
                    logging.WARNING,
                    "%s %s attempt %d failed (%s); retry budget exhausted, not retrying",
                    event.method,
                    event.service,
                    event.attempt,
                    event.reason,
                )
            case EndpointEjected():
                log(
                    logging.WARNING,
                    "service %s: endpoint %s ejected for %.1f s (%s)",
                    event.service,
                    event.endpoint,
                    event.duration,
                    event.reason,
                )
            case EndpointReadmitted():
                log(
                    logging.INFO,
                    "service %s: endpoint %s readmitted",
                    event.service,
                    event.endpoint,
                )
            case DiscoveryUpdated():
                log(
                    logging.DEBUG,
                    "service %s: %d endpoint(s) from %s",
                    event.service,
                    event.endpoints,
                    event.source,
                )
            case DiscoveryFailed():
                log(
                    logging.WARNING,
                    "service %s: discovery %s failed (%s); keeping %d endpoint(s)",
                    event.service,
                    event.source,
                    event.error,
                    event.endpoints,
                )
            case DiscoveryEntryRejected():
                log(
                    logging.WARNING,
                    "service %s: discovery %s entry %s left out: %s",
                    event.service,
                    event.source,
                    event.entry,
                    event.reason,
                )
            case BreakerTransition():
                log(
                    logging.WARNING,
                    "service %s: circuit breaker %s -> %s%s",
                    event.service,
                    event.from_state,
                    event.to_state,
                    f" ({event.reason})" if event.reason else "",
                )
