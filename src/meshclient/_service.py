"""A logical service: its configuration (``Service``) and its live state (``Route``)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from ._balance import Balancer, PeakEwma, Picker
from ._endpoint import EndpointState
from ._policy import Policy
from ._retry import RetryBudget
from ._telemetry import MeshTelemetry, RouteTelemetry
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
    ) -> None:
        if not isinstance(discovery, Discovery):
            discovery = StaticDiscovery(discovery)
        balancer = PeakEwma() if balancer is None else balancer
        policy = Policy() if policy is None else policy
        retry_budget = RetryBudget() if retry_budget is None else retry_budget
        check_type("Service", "balancer", balancer, Balancer)
        check_type("Service", "policy", policy, Policy)
        check_type("Service", "retry_budget", retry_budget, RetryBudget)
        self.discovery = discovery
        self.balancer = balancer
        self.policy = policy
        self.retry_budget = retry_budget

    def __repr__(self) -> str:
        return (
            f"Service({self.discovery!r}, balancer={self.balancer!r}, policy={self.policy!r}, "
            f"retry_budget={self.retry_budget!r})"
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
        "budget",
        "clock",
        "decay",
        "host",
        "name",
        "picker",
        "policy",
        "retired",
        "rewrite",
        "states",
        "telemetry",
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
            self.picker = self.balancer.prepare(tuple(states.values()))

    def all_states(self) -> list[EndpointState]:
        return [*self.states.values(), *self.retired]

    def describe(self) -> dict[str, Any]:
        from ._balance import rtt_estimate

        now = self.clock()
        return {
            "balancer": repr(self.balancer),
            "retry_budget": self.budget.snapshot(),
            "endpoints": [
                {
                    "address": state.address,
                    "weight": state.weight,
                    "outstanding": state.outstanding,
                    "latency_estimate": rtt_estimate(state, now, self.decay),
                    "latency_samples": state.rtt_samples,
                }
                for state in self.picker.endpoints
            ],
        }
