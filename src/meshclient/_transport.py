"""httpx transports that send each request through the mesh: route, pick, retry, account.

``MeshTransport`` and ``AsyncMeshTransport`` are thin drivers of the same ``Call`` state
machine; everything they decide comes from ``_call.py``, so the twins only differ in how
they wait and do I/O.
"""

from __future__ import annotations

import inspect
import random
import ssl
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, Final

import anyio
import httpcore
import httpx

from ._balance import PeakEwma
from ._call import Call
from ._endpoint import EndpointState
from ._names import DEADLINE_HEADER
from ._policy import DEFAULT_POLICY, POLICY_EXTENSION, UNSET, Policy
from ._pool import EndpointPool, PoolFactory
from ._retry import RetryBudget
from ._service import Route, Service, as_service
from ._telemetry import MeshTelemetry, Telemetry
from ._validate import check_type
from .discovery import Endpoint

__all__ = ["AsyncMeshTransport", "MeshTransport"]

DEFAULT_LIMITS: Final = httpx.Limits(max_connections=100, max_keepalive_connections=20)
#: A discarded response body up to this size is read so its connection can be reused.
_DISCARD_READ_LIMIT: Final = 64 * 1024
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


class _Mesh:
    """Routes of one transport: configured services and pass-through hosts."""

    def __init__(
        self,
        services: Mapping[str, Service | list[str] | tuple[str, ...]] | None,
        policy: Policy | None,
        factory: PoolFactory,
        telemetry: Telemetry | None,
        deadline_header: str | None,
    ) -> None:
        if policy is not None:
            check_type("Client", "policy", policy, Policy)
        if telemetry is not None:
            check_type("Client", "telemetry", telemetry, Telemetry)
        if deadline_header is not None and not _is_token(deadline_header):
            raise ValueError(
                f"Client.deadline_header must be an HTTP header name or None, "
                f"got {deadline_header!r}"
            )
        self.telemetry = MeshTelemetry(
            Telemetry() if telemetry is None else telemetry, deadline_header
        )
        if services is not None and not isinstance(services, Mapping):
            raise TypeError(
                f"services must be a mapping of service name to Service, got {services!r}"
            )
        self.policy = DEFAULT_POLICY if policy is None else policy.over(DEFAULT_POLICY)
        self.factory = factory
        self.clock = time.monotonic
        self.rng = random.Random()
        self.routes: dict[str, Route] = {}
        self.passthrough: dict[tuple[str, int], Route] = {}
        self._lock = threading.Lock()
        self.services: dict[str, Service] = {}
        for name, value in (services or {}).items():
            service = as_service(name, value)
            key = name.lower()
            self.services[key] = service
            self.routes[key] = Route(
                key,
                balancer=service.balancer,
                budget=service.retry_budget,
                policy=service.policy.over(self.policy),
                clock=self.clock,
                make_pools=self._make_pools,
                rewrite=True,
                telemetry=self.telemetry,
                service=service,
                rng=self.rng,
            )
        for key, service in self.services.items():
            service.discovery.start(self.routes[key].update)
        self.telemetry.watch(self)

    def _make_pools(self, state: EndpointState) -> None:
        state.pool, state.tls_pool = self.factory.pools(state.host, state.port)

    def call(self, request: httpx.Request) -> Call:
        url = request.url
        host = url.host
        route = self.routes.get(host)
        if route is None:
            port = url.port or _DEFAULT_PORTS.get(url.scheme, 80)
            route = self.passthrough.get((host, port)) or self._add_passthrough(host, port)
        policy = route.policy
        override = request.extensions.get(POLICY_EXTENSION)
        if override is not None:
            if not isinstance(override, Policy):
                raise TypeError(f"policy must be a meshclient.Policy, got {override!r}")
            policy = override.over(policy)
        return Call(route, request, policy, self.clock, self.rng)

    def _add_passthrough(self, host: str, port: int) -> Route:
        """A host that is not a service goes to itself, still under the client policy."""
        with self._lock:
            route = self.passthrough.get((host, port))
            if route is None:
                route = Route(
                    host,
                    balancer=PeakEwma(),
                    budget=RetryBudget(),
                    policy=self.policy,
                    clock=self.clock,
                    make_pools=self._make_pools,
                    rewrite=False,
                    telemetry=self.telemetry,
                )
                route.update((Endpoint(host=host, port=port),))
                self.passthrough[(host, port)] = route
            return route

    def all_routes(self) -> list[Route]:
        return [*self.routes.values(), *self.passthrough.values()]

    def pools(self) -> list[EndpointPool]:
        unique: dict[int, EndpointPool] = {}
        for route in self.all_routes():
            for state in route.all_states():
                for pool in (state.pool, state.tls_pool):
                    unique[id(pool)] = pool
        return list(unique.values())

    def snapshot(self) -> dict[str, Any]:
        return {
            "services": {name: route.describe() for name, route in self.routes.items()},
            "passthrough": {route.name: route.describe() for route in self.passthrough.values()},
        }

    def close_discovery(self) -> None:
        for service in self.services.values():
            service.discovery.close()


def _is_token(name: object) -> bool:
    """An HTTP field name (RFC 9110 token)."""
    return (
        isinstance(name, str)
        and bool(name)
        and name.isascii()
        and all(c.isalnum() or c in "!#$%&'*+-.^_`|~" for c in name)
    )


def _factory_kwargs(
    verify: ssl.SSLContext | str | bool,
    cert: Any,
    trust_env: bool,
    http1: bool,
    http2: bool,
    limits: httpx.Limits,
    proxy: Any,
) -> dict[str, Any]:
    return {
        "verify": verify,
        "cert": cert,
        "trust_env": trust_env,
        "http1": http1,
        "http2": http2,
        "limits": limits,
        "proxy": proxy,
    }


class _SyncResponseStream(httpx.SyncByteStream):
    """The delivered body: maps httpcore errors and releases the attempt when closed."""

    __slots__ = ("_call", "_stream")

    def __init__(self, stream: Any, call: Call) -> None:
        self._stream = stream
        self._call = call

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._stream
        except Exception as exc:
            raise self._call.stream_error(exc) from exc

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._call.release()


class _AsyncResponseStream(httpx.AsyncByteStream):
    __slots__ = ("_call", "_stream")

    def __init__(self, stream: Any, call: Call) -> None:
        self._stream = stream
        self._call = call

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for part in self._stream:
                yield part
        except Exception as exc:
            raise self._call.stream_error(exc) from exc

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            self._call.release()


def _fallback_response(fallback: object, response: object, error: Exception) -> httpx.Response:
    """What a fallback returned, if it is a response (``None`` was handled: the error)."""
    if not isinstance(response, httpx.Response):
        raise TypeError(
            f"Policy.fallback {fallback!r} must return an httpx.Response or None, got {response!r}"
        ) from error
    return response


def _discard(response: httpcore.Response) -> None:
    """Close a response before a retry, reading a small body first to keep the connection."""
    try:
        read = 0
        for chunk in response.stream:  # type: ignore[union-attr]
            read += len(chunk)
            if read > _DISCARD_READ_LIMIT:
                break
    except Exception:
        pass
    finally:
        response.close()


async def _adiscard(response: httpcore.Response) -> None:
    try:
        read = 0
        async for chunk in response.stream:  # type: ignore[union-attr]
            read += len(chunk)
            if read > _DISCARD_READ_LIMIT:
                break
    except Exception:
        pass
    finally:
        await response.aclose()


class MeshTransport(httpx.BaseTransport):
    """The mesh as an httpx transport, for a client you build yourself.

    Mount it (``mounts={"all://users": transport}``) or pass it as ``transport=``; a
    per-call ``Policy`` rides in ``request.extensions["meshclient.policy"]``.
    """

    def __init__(
        self,
        services: Mapping[str, Service | list[str] | tuple[str, ...]] | None = None,
        *,
        policy: Policy | None = None,
        verify: ssl.SSLContext | str | bool = True,
        cert: Any = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = DEFAULT_LIMITS,
        proxy: Any = None,
        telemetry: Telemetry | None = None,
        deadline_header: str | None = DEADLINE_HEADER,
    ) -> None:
        factory = PoolFactory(
            asynchronous=False,
            **_factory_kwargs(verify, cert, trust_env, http1, http2, limits, proxy),
        )
        self._mesh = _Mesh(services, policy, factory, telemetry, deadline_header)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        call = self._mesh.call(request)
        try:
            call.admit()
            bulkhead = call.route.bulkhead
            if bulkhead is not None:
                try:
                    # Queue no longer than the call's deadline allows.
                    left = None if call.deadline is None else call.deadline - call.clock()
                    bulkhead.acquire(service=call.route.name, request=request, timeout=left)
                except Exception as exc:
                    raise call.reject(exc)  # noqa: B904 - the same error, now accounted
                except BaseException:
                    call.abandon()
                    raise
                call.hold_slot()
            return self._send(call)
        except httpx.TransportError as exc:
            fallback = call.policy.fallback
            if fallback is None or fallback is UNSET:
                raise
            response = fallback(request, exc)
            if response is None:
                raise
            if inspect.isawaitable(response):
                if inspect.iscoroutine(response):
                    response.close()  # never awaited: no "never awaited" warning
                raise TypeError(
                    f"Policy.fallback {fallback!r} returned an awaitable: a coroutine "
                    "function fallback needs meshclient.AsyncClient"
                ) from exc
            return _fallback_response(fallback, response, exc)

    def _send(self, call: Call) -> httpx.Response:
        while True:
            shard, core = call.next_attempt()
            delay: float | None
            try:
                response = shard.handle_request(core)
            except Exception as exc:
                delay = call.on_error(exc)
            except BaseException:
                call.abandon()
                raise
            else:
                try:
                    delay = call.on_response(response)
                    if delay is None:
                        # Released when the caller closes the response.
                        return httpx.Response(
                            status_code=response.status,
                            headers=response.headers,
                            stream=_SyncResponseStream(response.stream, call),
                            extensions=response.extensions,
                        )
                    _discard(response)
                except BaseException:
                    call.abandon()
                    raise
                call.release()
            try:
                time.sleep(delay)
            except BaseException:
                call.abandon()
                raise

    def snapshot(self) -> dict[str, Any]:
        """Live state: services → endpoints with load and latency estimate; budgets."""
        return self._mesh.snapshot()

    def close(self) -> None:
        self._mesh.close_discovery()
        self._mesh.telemetry.unwatch(self._mesh)
        for pool in self._mesh.pools():
            for shard in pool.shards:
                shard.close()


class AsyncMeshTransport(httpx.AsyncBaseTransport):
    """The async twin of ``MeshTransport``."""

    def __init__(
        self,
        services: Mapping[str, Service | list[str] | tuple[str, ...]] | None = None,
        *,
        policy: Policy | None = None,
        verify: ssl.SSLContext | str | bool = True,
        cert: Any = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = DEFAULT_LIMITS,
        proxy: Any = None,
        telemetry: Telemetry | None = None,
        deadline_header: str | None = DEADLINE_HEADER,
    ) -> None:
        factory = PoolFactory(
            asynchronous=True,
            **_factory_kwargs(verify, cert, trust_env, http1, http2, limits, proxy),
        )
        self._mesh = _Mesh(services, policy, factory, telemetry, deadline_header)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        call = self._mesh.call(request)
        try:
            call.admit()
            bulkhead = call.route.bulkhead
            if bulkhead is not None:
                try:
                    left = None if call.deadline is None else call.deadline - call.clock()
                    await bulkhead.acquire_async(
                        service=call.route.name, request=request, timeout=left
                    )
                except Exception as exc:
                    raise call.reject(exc)  # noqa: B904 - the same error, now accounted
                except BaseException:
                    call.abandon()
                    raise
                call.hold_slot()
            return await self._send(call)
        except httpx.TransportError as exc:
            fallback = call.policy.fallback
            if fallback is None or fallback is UNSET:
                raise
            response = fallback(request, exc)
            if inspect.isawaitable(response):
                response = await response
            if response is None:
                raise
            return _fallback_response(fallback, response, exc)

    async def _send(self, call: Call) -> httpx.Response:
        while True:
            shard, core = call.next_attempt()
            delay: float | None
            try:
                response = await shard.handle_async_request(core)
            except Exception as exc:
                delay = call.on_error(exc)
            except BaseException:
                call.abandon()
                raise
            else:
                try:
                    delay = call.on_response(response)
                    if delay is None:
                        # Released when the caller closes the response.
                        return httpx.Response(
                            status_code=response.status,
                            headers=response.headers,
                            stream=_AsyncResponseStream(response.stream, call),
                            extensions=response.extensions,
                        )
                    await _adiscard(response)
                except BaseException:
                    call.abandon()
                    raise
                call.release()
            try:
                await anyio.sleep(delay)
            except BaseException:
                call.abandon()
                raise

    def snapshot(self) -> dict[str, Any]:
        """Live state: services → endpoints with load and latency estimate; budgets."""
        return self._mesh.snapshot()

    async def aclose(self) -> None:
        self._mesh.close_discovery()
        self._mesh.telemetry.unwatch(self._mesh)
        for pool in self._mesh.pools():
            for shard in pool.shards:
                await shard.aclose()
