"""A logical service: where its endpoints come from and the stateful parts it shares.

A ``Service`` holds what the modules of its stack read when they are built (Finagle's stack
parameters): the balancer, the retry budget, endpoint health settings and admission rules. One
``Service`` given to several clients is one pool of budget and admission, and its discovery
runs once: the first client to use it starts it, every client gets each update, and the last
client to close stops it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable
from typing import Any, Final, Protocol

from ._balance import Balancer, PeakEwma
from ._health import OutlierDetection
from ._policy import UNSET, Policy, Unset
from ._retry import RetryBudget
from ._stack import Admission, Stack, _is_admission
from ._validate import check_number, check_type
from .discovery import Discovery, Endpoint, StaticDiscovery

__all__ = ["DEFAULT_READY_TIMEOUT", "Service", "as_service"]

logger = logging.getLogger("meshclient")

#: Seconds a call with no deadline waits for a service's first endpoint set.
DEFAULT_READY_TIMEOUT: Final = 5.0


class Subscriber(Protocol):
    """A client's view of a service (its route): told of every set and every failure."""

    def update(self, endpoints: tuple[Endpoint, ...]) -> None: ...

    def discovery_error(self, error: BaseException) -> None: ...

    def discovery_invalid(self, entry: object, reason: str) -> None: ...


def _check_admission(field: str, value: object) -> None:
    if value is not None and not _is_admission(value):
        raise TypeError(
            f"Service.{field} must be an admission rule (with admit(call) and release(call)) "
            f"or None, got {value!r}"
        )


class Service:
    """One logical service: its discovery and the stateful parts of its stack.

    ``balancer`` (default ``PeakEwma()``), ``retry_budget`` (default ``RetryBudget()``),
    ``outlier`` (endpoint health, on by default; ``None`` turns it off) and the admission
    rules ``throttle``, ``breaker``, ``bulkhead`` and ``rate_limit`` (off unless given; any
    object with ``admit`` and ``release`` fits) are what the default stack's modules use.
    ``policy`` sits between the client's policy and each call's. ``stack`` replaces the
    client's stack for this service only. ``zone`` keeps calls in the caller's zone while at
    least half of that zone's endpoints are available. A call made before discovery produced
    its first set waits for it, within its deadline or ``ready_timeout`` seconds (5 s) without
    one.

    The balancer, budget and admission rules keep state, so one ``Service`` is one pool of
    load and budget; give two services their own objects unless they should share.
    """

    def __init__(
        self,
        discovery: Discovery | Iterable[Endpoint | str],
        *,
        balancer: Balancer | None = None,
        policy: Policy | None = None,
        retry_budget: RetryBudget | None = None,
        outlier: OutlierDetection | Unset | None = UNSET,
        breaker: Admission | None = None,
        bulkhead: Admission | None = None,
        throttle: Admission | None = None,
        rate_limit: Admission | None = None,
        stack: Stack | None = None,
        zone: str | None = None,
        ready_timeout: float = DEFAULT_READY_TIMEOUT,
    ) -> None:
        if not isinstance(discovery, Discovery):
            discovery = StaticDiscovery(discovery)
        balancer = PeakEwma() if balancer is None else balancer
        policy = Policy() if policy is None else policy
        retry_budget = RetryBudget() if retry_budget is None else retry_budget
        check_type("Service", "balancer", balancer, Balancer)
        check_type("Service", "policy", policy, Policy)
        check_type("Service", "retry_budget", retry_budget, RetryBudget)
        outlier = OutlierDetection() if outlier is UNSET else outlier
        if outlier is not None:
            check_type("Service", "outlier", outlier, OutlierDetection)
        for field, value in (
            ("breaker", breaker),
            ("bulkhead", bulkhead),
            ("throttle", throttle),
            ("rate_limit", rate_limit),
        ):
            _check_admission(field, value)
        if stack is not None:
            check_type("Service", "stack", stack, Stack)
        if zone is not None and (not isinstance(zone, str) or not zone):
            raise ValueError(f"Service.zone must be a non-empty string or None, got {zone!r}")
        check_number(
            "Service", "ready_timeout", ready_timeout, "a finite number of seconds >= 0",
            lambda v: 0 <= v < math.inf,
        )  # fmt: skip
        self.discovery = discovery
        self.balancer = balancer
        self.policy = policy
        self.retry_budget = retry_budget
        #: Endpoint health, on by default; ``None`` sends to every endpoint whatever happens.
        self.outlier = outlier
        #: Opt-in admission rules, shared by every client this service is given to.
        self.breaker = breaker
        self.bulkhead = bulkhead
        self.throttle = throttle
        self.rate_limit = rate_limit
        self.stack = stack
        #: The caller's zone: attempts stay among endpoints of this zone while enough of them
        #: are available (``BalancerModule``), ``None`` for no preference.
        self.zone = zone
        #: Seconds a call with no deadline waits for the first endpoint set (with a deadline,
        #: it waits as long as the deadline allows).
        self.ready_timeout = float(ready_timeout)
        # Discovery fan-out: started by the first subscriber, stopped with the last.
        self._lock = threading.RLock()
        self._subscribers: list[Subscriber] = []
        self._latest: tuple[Endpoint, ...] | None = None
        self._feed: _Feed | None = None
        self._health = _DiscoveryHealth(discovery.describe())

    def __repr__(self) -> str:
        return (
            f"Service({self.discovery!r}, balancer={self.balancer!r}, policy={self.policy!r}, "
            f"retry_budget={self.retry_budget!r}, outlier={self.outlier!r}, "
            f"breaker={self.breaker!r}, bulkhead={self.bulkhead!r}, throttle={self.throttle!r}, "
            f"rate_limit={self.rate_limit!r}, zone={self.zone!r})"
        )

    # -- discovery, shared by every client ---------------------------------------------------

    def subscribe(self, subscriber: Subscriber) -> None:
        """Deliver every endpoint set to ``subscriber``; the first subscriber starts discovery."""
        with self._lock:
            self._subscribers.append(subscriber)
            if len(self._subscribers) == 1:
                self._latest = None
                self._feed = feed = _Feed(self)
                try:
                    self.discovery.start(feed)
                except BaseException:
                    self._subscribers.remove(subscriber)
                    feed.closed = True
                    raise
            elif self._latest is not None:
                subscriber.update(self._latest)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Stop delivering to ``subscriber``; the last one out stops discovery."""
        with self._lock:
            if subscriber not in self._subscribers:
                return
            self._subscribers.remove(subscriber)
            if self._subscribers:
                return
            self._latest = None
            if self._feed is not None:
                self._feed.closed = True  # a late report of the stopped run is ignored
        # Outside the lock: a backend thread publishing right now must not wait for us while
        # we wait for it to stop.
        self.discovery.close()

    @property
    def subscribers(self) -> int:
        """Clients using this service now."""
        return len(self._subscribers)

    @property
    def ready(self) -> bool:
        """Whether discovery has produced a first endpoint set."""
        return self._latest is not None

    def discovery_health(self) -> dict[str, Any]:
        """Source, last update, last error and counts: for ``client.snapshot()``."""
        with self._lock:
            return self._health.snapshot(self._latest)

    def _publish(self, feed: _Feed, endpoints: Iterable[Endpoint]) -> None:
        current = tuple(endpoints)
        # Fanned out under the lock, so a client subscribing meanwhile gets the newest set last.
        with self._lock:
            if feed.closed:
                return
            self._health.updated()
            if current == self._latest:
                return
            self._latest = current
            for subscriber in self._subscribers:
                subscriber.update(current)

    def _fail(self, feed: _Feed, error: BaseException) -> None:
        with self._lock:
            if feed.closed:
                return
            self._health.failed(error)
            logger.warning(
                "meshclient: discovery %s failed (%r); keeping the last good set of %s",
                self._health.source,
                error,
                "no endpoints" if self._latest is None else f"{len(self._latest)} endpoint(s)",
            )
            for subscriber in self._subscribers:
                subscriber.discovery_error(error)

    def _reject(self, feed: _Feed, entry: object, reason: str) -> None:
        with self._lock:
            if feed.closed:
                return
            self._health.invalid += 1
            source = self._health.source
            logger.error("meshclient: discovery %s: entry %r left out: %s", source, entry, reason)
            for subscriber in self._subscribers:
                subscriber.discovery_invalid(entry, reason)


class _Feed:
    """The ``DiscoveryUpdates`` handed to one run of a discovery (``start`` to ``close``)."""

    __slots__ = ("_service", "closed")

    def __init__(self, service: Service) -> None:
        self._service = service
        self.closed = False

    def __call__(self, endpoints: Iterable[Endpoint]) -> None:
        self._service._publish(self, endpoints)

    def error(self, error: BaseException) -> None:
        self._service._fail(self, error)

    def invalid(self, entry: object, reason: str) -> None:
        self._service._reject(self, entry, reason)


class _DiscoveryHealth:
    """What ``client.snapshot()`` says about a service's discovery. Lock held by the caller."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.updates = 0
        self.errors = 0
        self.invalid = 0
        self.last_update: float | None = None
        self.last_error: str | None = None
        self.last_error_at: float | None = None

    def updated(self) -> None:
        self.updates += 1
        self.last_update = time.time()

    def failed(self, error: BaseException) -> None:
        self.errors += 1
        self.last_error = f"{type(error).__name__}: {error}"
        self.last_error_at = time.time()

    def snapshot(self, latest: tuple[Endpoint, ...] | None) -> dict[str, Any]:
        return {
            "source": self.source,
            "ready": latest is not None,
            "endpoints": 0 if latest is None else len(latest),
            "updates": self.updates,
            "last_update": self.last_update,
            "errors": self.errors,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "invalid_entries": self.invalid,
        }


def as_service(name: object, value: object) -> Service:
    """The ``services=`` shorthand: a list of ``"host:port"`` strings means static discovery."""
    if isinstance(value, Service):
        return value
    if isinstance(value, Discovery):
        return Service(value)
    if isinstance(value, list | tuple):
        try:
            return Service(StaticDiscovery(value))
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"services[{name!r}]: {exc}") from None
    raise TypeError(
        f"services[{name!r}] must be a Service, a Discovery or a list of 'host:port' strings, "
        f"got {value!r}"
    )
