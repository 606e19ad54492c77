"""A logical service: where its endpoints come from and the stateful parts it shares.

A ``Service`` holds what the modules of its stack read when they are built (Finagle's stack
parameters): the balancer, the retry budget, endpoint health settings and admission rules. One
``Service`` given to several clients is one pool of budget and admission, and its discovery
runs once: the first client to use it starts it, every client gets each update, and the last
client to close stops it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from ._balance import Balancer, PeakEwma
from ._health import OutlierDetection
from ._policy import UNSET, Policy, Unset
from ._retry import RetryBudget
from ._stack import Admission, Stack, _is_admission
from ._validate import check_type
from .discovery import Discovery, Endpoint, StaticDiscovery

__all__ = ["Service", "as_service"]

_Listener = Callable[[tuple[Endpoint, ...]], None]


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
    client's stack for this service only.

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
        # Discovery fan-out: started by the first subscriber, stopped with the last.
        self._lock = threading.RLock()
        self._listeners: list[_Listener] = []
        self._latest: tuple[Endpoint, ...] | None = None

    def __repr__(self) -> str:
        return (
            f"Service({self.discovery!r}, balancer={self.balancer!r}, policy={self.policy!r}, "
            f"retry_budget={self.retry_budget!r}, outlier={self.outlier!r}, "
            f"breaker={self.breaker!r}, bulkhead={self.bulkhead!r}, throttle={self.throttle!r}, "
            f"rate_limit={self.rate_limit!r})"
        )

    # -- discovery, shared by every client ---------------------------------------------------

    def subscribe(self, listener: _Listener) -> None:
        """Deliver every endpoint set to ``listener``; the first subscriber starts discovery."""
        with self._lock:
            self._listeners.append(listener)
            if len(self._listeners) == 1:
                self._latest = None
                try:
                    self.discovery.start(self._publish)
                except BaseException:
                    self._listeners.remove(listener)
                    raise
            elif self._latest is not None:
                listener(self._latest)

    def unsubscribe(self, listener: _Listener) -> None:
        """Stop delivering to ``listener``; the last one out stops discovery."""
        with self._lock:
            if listener not in self._listeners:
                return
            self._listeners.remove(listener)
            if not self._listeners:
                self._latest = None
                self.discovery.close()

    @property
    def subscribers(self) -> int:
        """Clients using this service now."""
        return len(self._listeners)

    def _publish(self, endpoints: tuple[Endpoint, ...]) -> None:
        # Fanned out under the lock, so a client subscribing meanwhile gets the newest set last.
        with self._lock:
            self._latest = endpoints
            for listener in self._listeners:
                listener(endpoints)


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
