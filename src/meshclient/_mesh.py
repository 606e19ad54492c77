"""The routes of one client: configured services, pass-through hosts, and where requests go.

Shared by the sync and the async transport. A configured service gets its route (its stack,
built for it) when the client is made; any other host gets a pass-through route the first
time it is called, under the client's policy, kept in a bounded least-recently-used table.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Final, NamedTuple

import httpx

from ._call import Call
from ._compat import URLPattern
from ._defaults import DEFAULT_STACK
from ._endpoint import EndpointState
from ._policy import DEFAULT_POLICY, POLICY_EXTENSION, Policy
from ._pool import PoolFactory
from ._route import Route
from ._service import Service, as_service
from ._stack import Stack
from ._telemetry import MeshTelemetry, Telemetry
from ._validate import check_type
from .discovery import Discovery, DiscoveryUpdates

__all__ = ["PASSTHROUGH_ROUTES", "Mesh", "check_service_name"]

#: Pass-through hosts remembered at once; the least recently used one beyond this is evicted
#: (its idle connections closed at once, busy ones when their response closes).
PASSTHROUGH_ROUTES: Final = 256
_DEFAULT_PORTS: Final = {b"http": 80, b"https": 443}
#: Header names the deadline header may not take: framing and routing would break.
_RESERVED_HEADERS: Final = frozenset(
    {
        "connection",
        "content-length",
        "host",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

ServicesArg = Mapping[str, Service | Discovery | list[str] | tuple[str, ...]] | None


class _Address(NamedTuple):
    """A pass-through host as an endpoint: taken from a URL httpx already parsed."""

    host: str
    port: int
    weight: float = 1.0


class _Passthrough(Discovery):
    def __init__(self, address: _Address) -> None:
        self.address = address

    def start(self, updates: DiscoveryUpdates) -> None:
        updates((self.address,))  # type: ignore[arg-type]

    def close(self) -> None:
        """Nothing to stop."""

    def describe(self) -> str:
        return "passthrough"


def _is_token(name: object) -> bool:
    """An HTTP field name (RFC 9110 token)."""
    return (
        isinstance(name, str)
        and bool(name)
        and name.isascii()
        and all(c.isalnum() or c in "!#$%&'*+-.^_`|~" for c in name)
    )


def check_service_name(name: object) -> str:
    """A service name as URLs carry it: a host name, no port, no path; lower case."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"services keys must be service host names, got {name!r}")
    try:
        host = httpx.URL(f"http://{name}/").host
    except httpx.InvalidURL:
        host = ""
    if not host or host != name.lower() or not name.isascii():
        raise ValueError(
            f"services key {name!r} is not a host name a URL can carry (no port, path, "
            "space or scheme): requests to it could never reach the service"
        )
    return host


class Mesh:
    """Routes of one transport: configured services and pass-through hosts."""

    def __init__(
        self,
        services: ServicesArg,
        *,
        policy: Policy | None,
        stack: Stack | None,
        telemetry: Telemetry | None,
        deadline_header: str | None,
        factory: PoolFactory | None,
        transport: Any,
        mounts: Mapping[str, Any] | None,
        clock: Callable[[], float] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if policy is not None:
            check_type("Client", "policy", policy, Policy)
        if stack is not None:
            check_type("Client", "stack", stack, Stack)
        if telemetry is not None:
            check_type("Client", "telemetry", telemetry, Telemetry)
        if deadline_header is not None and (
            not _is_token(deadline_header) or deadline_header.lower() in _RESERVED_HEADERS
        ):
            raise ValueError(
                "Client.deadline_header must be an HTTP header name that does not carry "
                f"framing or routing, or None, got {deadline_header!r}"
            )
        if services is not None and not isinstance(services, Mapping):
            raise TypeError(
                f"services must be a mapping of service name to Service, got {services!r}"
            )
        self.telemetry = MeshTelemetry(
            Telemetry() if telemetry is None else telemetry, deadline_header
        )
        self.policy = DEFAULT_POLICY if policy is None else policy.over(DEFAULT_POLICY)
        self.stack = DEFAULT_STACK if stack is None else stack
        self.factory = factory
        self.transport = transport
        self.mounts = sorted(
            (URLPattern(pattern), value) for pattern, value in (mounts or {}).items()
        )
        if clock is not None and not callable(clock):
            raise TypeError(f"Client.clock must be a callable returning seconds, got {clock!r}")
        if rng is not None:
            check_type("Client", "rng", rng, random.Random)
        self.clock: Callable[[], float] = time.monotonic if clock is None else clock
        #: Waits for backoff on a fake clock (``meshclient.testing.FakeClock``) move it instead.
        self.sleep: Callable[[float], None] | None = getattr(clock, "sleep", None)
        self.rng = random.Random() if rng is None else rng
        self.routes: dict[str, Route] = {}
        self.passthrough: OrderedDict[tuple[str, int], Route] = OrderedDict()
        self._lock = threading.Lock()
        self._closed = False
        for name, value in (services or {}).items():
            key = check_service_name(name)
            if key in self.routes:
                raise ValueError(
                    f"services names {name!r} and another differ only in case; host names "
                    "are case-insensitive, so both would name one service"
                )
            self.routes[key] = self._route(key, as_service(name, value), passthrough=False)
        try:
            for route in self.routes.values():
                route.service.subscribe(route)
        except BaseException:
            self.close()
            raise
        self.telemetry.watch(self)

    def _route(self, name: str, service: Service, *, passthrough: bool) -> Route:
        return Route(
            name,
            service,
            policy=service.policy.over(self.policy),
            stack=service.stack or self.stack,
            passthrough=passthrough,
            clock=self.clock,
            rng=self.rng,
            telemetry=self.telemetry,
            make_pools=self._make_pools,
            retire_pools=_retire_pools,
        )

    def _make_pools(self, state: EndpointState) -> None:
        if self.factory is not None:
            state.pool, state.tls_pool = self.factory.pools(state.host, state.port)

    # -- the request path ------------------------------------------------------------------

    def call(self, request: httpx.Request) -> Call:
        """The call for ``request``: its route, its effective policy, its bottom transport."""
        url = request.url
        route = self.routes.get(url.host)
        if route is None:
            route = self._passthrough(url)
        elif url.port is not None:
            raise httpx.InvalidURL(
                f"{str(url)!r}: {route.name!r} is a mesh service, whose endpoints and their "
                "ports come from its discovery; a port in its URL would be ignored. Drop the "
                "port, or call an endpoint's own address to bypass the mesh"
            )
        policy = route.policy
        override = request.extensions.get(POLICY_EXTENSION)
        if override is not None:
            if not isinstance(override, Policy):
                raise TypeError(f"policy must be a meshclient.Policy, got {override!r}")
            policy = override.over(policy)
        transport = self.transport
        if self.mounts:
            for pattern, mounted in self.mounts:
                if pattern.matches(url):
                    if mounted is not None:
                        transport = mounted
                    break
        return Call(route, request, policy, transport)

    def _passthrough(self, url: httpx.URL) -> Route:
        """A host that is not a service goes to itself, still under the client policy."""
        host = url.raw_host.decode("ascii")
        port = url.port or _DEFAULT_PORTS.get(url.raw_scheme, 80)
        key = (host, port)
        table = self.passthrough
        route = table.get(key)
        if route is not None:
            # Evicted meanwhile by another thread: it still serves this call.
            with contextlib.suppress(KeyError):
                table.move_to_end(key)
            return route
        with self._lock:
            route = table.get(key)
            if route is None:
                route = self._route(
                    host,
                    Service(_Passthrough(_Address(host, port)), outlier=None),
                    passthrough=True,
                )
                route.service.subscribe(route)
                table[key] = route
                if len(table) > PASSTHROUGH_ROUTES:
                    _, evicted = table.popitem(last=False)
                    _drop(evicted)
            return route

    # -- state and lifecycle ---------------------------------------------------------------

    def transports(self) -> list[Any]:
        """The user's transports, which the client closes when it closes (as httpx does)."""
        found = [] if self.transport is None else [self.transport]
        found.extend(mounted for _, mounted in self.mounts if mounted is not None)
        return found

    def all_routes(self) -> list[Route]:
        return [*self.routes.values(), *self.passthrough.values()]

    def snapshot(self) -> dict[str, Any]:
        return {
            "services": {name: route.describe() for name, route in self.routes.items()},
            "passthrough": {
                _authority(host, port): route.describe()
                for (host, port), route in list(self.passthrough.items())
            },
        }

    def close(self) -> None:
        """Stop discovery (for services no other client uses), let go of shared objects; the
        transport closes the connections."""
        if self._closed:
            return
        self._closed = True
        self.telemetry.unwatch(self)
        with self._lock:
            routes = self.all_routes()
            self.passthrough.clear()
        for route in routes:
            _let_go(route)


def _let_go(route: Route) -> None:
    route.service.unsubscribe(route)
    route.close()


def _drop(route: Route) -> None:
    """An evicted pass-through route: its connections close as they fall idle."""
    _let_go(route)
    route.retire()


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _retire_pools(state: EndpointState) -> None:
    with state.lock:
        for pool in {id(state.pool): state.pool, id(state.tls_pool): state.tls_pool}.values():
            if pool is not None:
                pool.retire()
