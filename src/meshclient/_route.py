"""A stack built for one service inside one client: its endpoints and its frozen phases.

``Route`` is the ``ServiceContext`` modules are built with. Building freezes the stack into
one tuple of bound methods per phase, leaving out modules that do not use a phase, so the
request path loops over short tuples and never asks a module what it implements.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ._balance import rtt_estimate
from ._endpoint import EndpointState
from ._policy import Policy
from ._service import Service
from ._stack import ATTEMPT, CALL, AttemptModule, CallModule, Module, Stack
from ._telemetry import MeshTelemetry, RouteTelemetry
from .discovery import Endpoint

if TYPE_CHECKING:
    from ._call import Attempt, Call

__all__ = ["Route"]

logger = logging.getLogger("meshclient")

CallEnd = Callable[["Call"], None]
AttemptEnd = Callable[["Attempt"], None]


def _phase(layer: Module, name: str, base: type[Module]) -> Callable[..., Any] | None:
    """``layer``'s method for phase ``name``, or ``None`` when it keeps the base's no-op."""
    method = getattr(layer, name)
    if getattr(method, "__func__", None) is getattr(base, name):
        return None
    return method  # type: ignore[no-any-return]


def _ends(layers: list[Module], name: str, base: type[Module]) -> list[Any]:
    return [_phase(layer, name, base) for layer in layers]


def _entered(ends: list[Any], upto: int) -> tuple[Any, ...]:
    """End phases of the first ``upto`` layers, innermost first."""
    return tuple(end for end in reversed(ends[:upto]) if end is not None)


class Route:
    """Live state of one service in one client: endpoint states and the built stack.

    Discovery updates build new immutable endpoint tuples and swap them in by assignment, so
    requests read them without locks; an endpoint that stays keeps its state and its pools.
    """

    def __init__(
        self,
        name: str,
        service: Service,
        *,
        policy: Policy,
        stack: Stack,
        passthrough: bool,
        clock: Callable[[], float],
        rng: random.Random,
        telemetry: MeshTelemetry,
        make_pools: Callable[[EndpointState], None],
        retire_pools: Callable[[EndpointState], None],
    ) -> None:
        self.name = name
        self.service = service
        self.passthrough = passthrough
        self.clock = clock
        self.rng = rng
        #: Effective policy of the service: service over client over library defaults.
        self.policy = policy
        self.telemetry: RouteTelemetry = telemetry.route(name)
        #: Only requests to mesh services carry the deadline header; pass-through hosts do not.
        self.deadline_header = None if passthrough else telemetry.deadline_header
        self.endpoints: tuple[EndpointState, ...] = ()
        #: Set once discovery delivered its first set (calls made before it wait for it).
        self.ready = threading.Event()
        self.available: tuple[EndpointState, ...] = ()
        self.version = 0
        self._states: dict[tuple[str, int], EndpointState] = {}
        self._listeners: list[Callable[[tuple[EndpointState, ...]], None]] = []
        self._lock = threading.RLock()
        self._make_pools = make_pools
        self._retire_pools = retire_pools
        layers: list[Module] = []
        for module in stack:
            built = module.build(self)
            if built is None:
                continue
            if not isinstance(built, CallModule | AttemptModule) or built.scope != module.scope:
                raise TypeError(
                    f"{module!r}.build() must return a {module.scope} module or None for "
                    f"service {name!r}, got {built!r}"
                )
            layers.append(built)
        self.layers = tuple(layers)
        self._freeze()

    def _freeze(self) -> None:
        calls = [layer for layer in self.layers if layer.scope == CALL]
        attempts = [layer for layer in self.layers if layer.scope == ATTEMPT]
        call_ends = _ends(calls, "on_call_end", CallModule)
        #: (on_call, end phases of the layers above it, the same including it)
        self.call_start: tuple[
            tuple[Callable[[Call], Any], tuple[CallEnd, ...], tuple[CallEnd, ...]], ...
        ] = tuple(
            (start, _entered(call_ends, i), _entered(call_ends, i + 1))
            for i, layer in enumerate(calls)
            if (start := _phase(layer, "on_call", CallModule)) is not None
        )
        self.call_end: tuple[CallEnd, ...] = _entered(call_ends, len(calls))
        self.retry: tuple[Callable[[Call, Attempt], float | None], ...] = tuple(
            phase for layer in reversed(calls) if (phase := _phase(layer, "retry", CallModule))
        )
        self.recover: tuple[Callable[[Call, Exception], Any], ...] = tuple(
            phase for layer in calls if (phase := _phase(layer, "recover", CallModule))
        )
        attempt_ends = _ends(attempts, "on_attempt_end", AttemptModule)
        self.attempt_start: tuple[tuple[AttemptEnd, tuple[AttemptEnd, ...]], ...] = tuple(
            (start, _entered(attempt_ends, i))
            for i, layer in enumerate(attempts)
            if (start := _phase(layer, "on_attempt", AttemptModule)) is not None
        )
        self.attempt_outcome: tuple[AttemptEnd, ...] = tuple(
            phase
            for layer in reversed(attempts)
            if (phase := _phase(layer, "on_outcome", AttemptModule))
        )
        self.attempt_end: tuple[AttemptEnd, ...] = _entered(attempt_ends, len(attempts))

    # -- endpoint sets ---------------------------------------------------------------------

    def update(self, endpoints: Iterable[Endpoint]) -> None:
        """Swap in a new discovery set, keeping the state of endpoints that remain."""
        with self._lock:
            now = self.clock()
            old = self._states
            states: dict[tuple[str, int], EndpointState] = {}
            default_rtt = self.service.balancer.default_rtt
            for endpoint in endpoints:
                key = (endpoint.host, endpoint.port)
                state = old.get(key)
                if state is None:
                    state = EndpointState(
                        endpoint.host,
                        endpoint.port,
                        endpoint.weight,
                        initial_rtt=default_rtt,
                        now=now,
                    )
                    self._make_pools(state)
                else:
                    state.weight = endpoint.weight
                state.zone = getattr(endpoint, "zone", None)
                states[key] = state
            self._states = states
            current = tuple(states.values())
            self.endpoints = current
            self.set_available(current)
            for listener in self._listeners:
                listener(current)
            for key, state in old.items():
                if key not in states:
                    self._retire_pools(state)
            self.ready.set()
        self.telemetry.discovery_updated(self.service.discovery.describe(), len(current))

    def discovery_error(self, error: BaseException) -> None:
        """The service's registry failed; the current set stays."""
        self.telemetry.discovery_failed(
            self.service.discovery.describe(), error, len(self.endpoints)
        )

    def discovery_invalid(self, entry: object, reason: str) -> None:
        self.telemetry.discovery_invalid(self.service.discovery.describe(), entry, reason)

    def set_available(self, endpoints: tuple[EndpointState, ...]) -> None:
        # ``available`` first, then ``version``: a reader that sees the new version also sees
        # the new set.
        self.available = endpoints
        self.version += 1

    def on_endpoints(self, listener: Callable[[tuple[EndpointState, ...]], None]) -> None:
        with self._lock:
            self._listeners.append(listener)
            if self._states:
                listener(self.endpoints)

    # -- lifecycle and state ---------------------------------------------------------------

    def close(self) -> None:
        """The client is done with this route: modules let go of shared objects."""
        for layer in self.layers:
            try:
                layer.close()
            except Exception:
                logger.exception("meshclient: closing module %r raised; ignored", layer)

    def retire(self) -> None:
        """Evicted or closed: every endpoint's connections close once idle."""
        with self._lock:
            for state in self._states.values():
                self._retire_pools(state)

    def describe(self) -> dict[str, Any]:
        """This route's part of ``client.snapshot()``."""
        now = self.clock()
        decay = self.service.balancer.decay
        endpoints = []
        for state in self.endpoints:
            entry: dict[str, Any] = {
                "address": state.address,
                "weight": state.weight,
                "outstanding": state.outstanding,
                "latency_estimate": rtt_estimate(state, now, decay),
                "latency_samples": state.rtt_samples,
            }
            for layer in self.layers:
                extra = layer.describe_endpoint(state)
                if extra:
                    entry.update(extra)
            endpoints.append(entry)
        described: dict[str, Any] = {
            "discovery": self.service.discovery_health(),
            "endpoints": endpoints,
        }
        for layer in self.layers:
            extra = layer.describe()
            if extra:
                described.update(extra)
        return described
