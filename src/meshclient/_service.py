"""A logical service: its configuration (``Service``) and its live state (``Route``)."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterable
from typing import Any

from ._balance import Balancer, PeakEwma, Picker
from ._breaker import BreakerTransition, CircuitBreaker
from ._bulkhead import Bulkhead
from ._endpoint import EndpointState
from ._health import Ejected, HealthTracker, OutlierDetection
from ._policy import UNSET, Policy, Unset
from ._retry import RetryBudget
from ._telemetry import MeshTelemetry, RouteTelemetry
from ._throttle import AdaptiveThrottle
from ._validate import check_type
from .discovery import Discovery, Endpoint, StaticDiscovery

__all__ = ["Route", "Service", "as_service"]


class Service:
    """One logical service: where its endpoints come from and its stateful parts.

    The balancer and the retry budget keep state, so one ``Service`` is one pool of
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
        breaker: CircuitBreaker | None = None,
        bulkhead: Bulkhead | None = None,
        throttle: AdaptiveThrottle | None = None,
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
        if breaker is not None:
            check_type("Service", "breaker", breaker, CircuitBreaker)
        if bulkhead is not None:
            check_type("Service", "bulkhead", bulkhead, Bulkhead)
        if throttle is not None:
            check_type("Service", "throttle", throttle, AdaptiveThrottle)
        #: Endpoint health, on by default; ``None`` sends to every endpoint whatever happens.
        self.outlier = outlier
        #: Opt-in admission control, shared by every client this service is given to.
        self.breaker = breaker
        self.bulkhead = bulkhead
        self.throttle = throttle
        self.discovery = discovery
        self.balancer = balancer
        self.policy = policy
        self.retry_budget = retry_budget

    def __repr__(self) -> str:
        return (
            f"Service({self.discovery!r}, balancer={self.balancer!r}, policy={self.policy!r}, "
            f"retry_budget={self.retry_budget!r}, outlier={self.outlier!r}, "
            f"breaker={self.breaker!r}, bulkhead={self.bulkhead!r}, throttle={self.throttle!r})"
        )


def as_service(name: object, value: object) -> Service:
    """The ``services=`` shorthand: a list of ``"host:port"`` strings means static discovery."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"services keys must be service host names, got {name!r}")
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


class Route:
    """Live state of one service inside one transport: endpoint states and the current picker.

    Discovery updates build a new immutable picker and swap it in with one assignment, so
    requests read it without locks; an endpoint that stays keeps its state and its pool.
    """

    __slots__ = (
        "_lock",
        "_make_pools",
        "balancer",
        "breaker",
        "budget",
        "bulkhead",
        "clock",
        "decay",
        "health",
        "health_version",
        "host",
        "name",
        "picker",
        "policy",
        "retired",
        "rewrite",
        "states",
        "telemetry",
        "throttle",
    )

    def __init__(
        self,
        name: str,
        *,
        balancer: Balancer,
        budget: RetryBudget,
        policy: Policy,
        clock: Callable[[], float],
        make_pools: Callable[[EndpointState], None],
        rewrite: bool,
        telemetry: MeshTelemetry,
        service: Service | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.host = name
        self.balancer = balancer
        self.budget = budget
        #: The effective policy of the service (service over client over defaults).
        self.policy = policy
        self.clock = clock
        self.decay = balancer.decay
        #: ``False`` for a pass-through host: the request goes to its own URL unchanged.
        self.rewrite = rewrite
        #: Cached attribute sets and the reporting methods ``Call`` uses.
        self.telemetry: RouteTelemetry = telemetry.route(name, rewrite=rewrite)
        self.states: dict[tuple[str, int], EndpointState] = {}
        #: Endpoints removed by discovery; their pools close with the transport.
        self.retired: list[EndpointState] = []
        self._make_pools = make_pools
        self._lock = threading.Lock()
        outlier = None if service is None else service.outlier
        #: Which endpoints take traffic; ``health_version`` is the set the picker was built from.
        self.health = (
            None
            if outlier is None
            else HealthTracker(outlier, clock=clock, rng=rng, decay=balancer.decay)
        )
        self.health_version = -1
        self.breaker = None if service is None else service.breaker
        self.bulkhead = None if service is None else service.bulkhead
        self.throttle = None if service is None else service.throttle
        if self.breaker is not None:
            self.breaker.add_listener(self._breaker_moved)
        self.picker: Picker = balancer.prepare(())

    def update(self, endpoints: tuple[Endpoint, ...]) -> None:
        """Swap in a new endpoint set, keeping the state of endpoints that remain."""
        with self._lock:
            now = self.clock()
            old = self.states
            states: dict[tuple[str, int], EndpointState] = {}
            for endpoint in endpoints:
                key = (endpoint.host, endpoint.port)
                state = old.get(key)
                if state is None:
                    state = EndpointState(
                        endpoint.host,
                        endpoint.port,
                        endpoint.weight,
                        initial_rtt=self.balancer.default_rtt,
                        now=now,
                    )
                    self._make_pools(state)
                else:
                    state.weight = endpoint.weight
                states[key] = state
            self.retired.extend(s for k, s in old.items() if k not in states)
            self.states = states
            if self.health is not None:
                self.health.set_endpoints(tuple(states.values()))
            self._rebuild()

    def refresh(self) -> None:
        """Rebuild the picker after an ejection or readmission changed the healthy set."""
        with self._lock:
            self._rebuild()

    def _rebuild(self) -> None:
        health = self.health
        if health is None:
            self.picker = self.balancer.prepare(tuple(self.states.values()))
        elif health.version != self.health_version:
            self.health_version = health.version
            self.picker = self.balancer.prepare(health.available())

    def report(self, transitions: tuple[Any, ...]) -> None:
        """Turn health transitions into telemetry and a new picker."""
        telemetry = self.telemetry
        for transition in transitions:
            if isinstance(transition, Ejected):
                telemetry.endpoint_ejected(
                    transition.address, transition.reason, transition.duration
                )
            else:
                telemetry.endpoint_readmitted(transition.address)
        self.refresh()

    def _breaker_moved(self, transition: BreakerTransition) -> None:
        self.telemetry.breaker_transition(transition.from_state, transition.to_state)

    def all_states(self) -> list[EndpointState]:
        return [*self.states.values(), *self.retired]

    def describe(self) -> dict[str, Any]:
        from ._balance import rtt_estimate

        now = self.clock()
        health = self.health
        endpoints = []
        for state in self.states.values():
            entry: dict[str, Any] = {
                "address": state.address,
                "weight": state.weight,
                "outstanding": state.outstanding,
                "latency_estimate": rtt_estimate(state, now, self.decay),
                "latency_samples": state.rtt_samples,
            }
            if health is not None:
                entry["health"] = health.endpoint_snapshot(state)
            endpoints.append(entry)
        described: dict[str, Any] = {
            "balancer": repr(self.balancer),
            "retry_budget": self.budget.snapshot(),
            "endpoints": endpoints,
        }
        if health is not None:
            described["health"] = health.snapshot()
        for name in ("breaker", "bulkhead", "throttle"):
            part = getattr(self, name)
            if part is not None:
                described[name] = part.snapshot()
        return described
