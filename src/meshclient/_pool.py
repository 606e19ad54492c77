"""Connections to one endpoint: a few small httpcore pools ("shards") instead of one big one.

httpcore's pool does work proportional to (connections x queued requests) on every request
and, when a fresh pool is hit by many callers at once, keeps re-offering the same idle
connection to everybody. Capping each shard at ``SHARD_SIZE`` connections and sending each
request to the first shard with a free slot keeps that cost small and constant; a caller
that sends one request at a time always lands on shard 0 and reuses one connection.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import Callable
from typing import Any, Final

import httpx
from httpx._utils import URLPattern, get_environment_proxies

__all__ = ["SHARD_SIZE", "EndpointPool", "PoolFactory"]

#: Connections per shard (measured: 8 pools x 8 connections cost ~40% of one pool of 64).
SHARD_SIZE: Final = 8


class EndpointPool:
    """Shards of one endpoint; ``acquire``/``release`` run under the endpoint's lock."""

    __slots__ = ("_make_shard", "cap", "counts", "max_shards", "shards")

    def __init__(self, make_shard: Callable[[], Any], max_connections: int | None) -> None:
        self._make_shard = make_shard
        self.cap = SHARD_SIZE if max_connections is None else min(SHARD_SIZE, max_connections)
        self.max_shards = (
            None if max_connections is None else max(1, math.ceil(max_connections / self.cap))
        )
        self.shards: list[Any] = []
        #: Requests in flight per shard.
        self.counts: list[int] = []

    def acquire(self) -> Any:
        """The shard for the next request (the first with a free slot); returns its index."""
        counts = self.counts
        cap = self.cap
        for index, count in enumerate(counts):
            if count < cap:
                counts[index] = count + 1
                return index
        if self.max_shards is None or len(counts) < self.max_shards:
            self.shards.append(self._make_shard())
            counts.append(1)
            return len(counts) - 1
        index = counts.index(min(counts))
        counts[index] += 1
        return index

    def release(self, index: int) -> None:
        self.counts[index] -= 1


class PoolFactory:
    """Builds endpoint pools from the client's own connection settings.

    ``transport=`` would make httpx drop ``limits``, ``verify``, ``http2`` and proxies, so
    the mesh transport takes them itself and passes them to every shard. ``limits`` apply
    per endpoint: ``max_connections`` is the most connections opened to one endpoint.
    """

    def __init__(
        self,
        *,
        asynchronous: bool,
        verify: ssl.SSLContext | str | bool = True,
        cert: Any = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits,
        proxy: httpx.Proxy | str | httpx.URL | None = None,
    ) -> None:
        self._transport_class: Any = (
            httpx.AsyncHTTPTransport if asynchronous else httpx.HTTPTransport
        )
        # One TLS context for every shard: building one reads the CA bundle (milliseconds).
        self._ssl_context = httpx.create_ssl_context(verify=verify, cert=cert, trust_env=trust_env)
        self._http1 = http1
        self._http2 = http2
        self.max_connections = limits.max_connections
        cap = (
            SHARD_SIZE
            if limits.max_connections is None
            else min(SHARD_SIZE, limits.max_connections)
        )
        keepalive = limits.max_keepalive_connections
        self._shard_limits = httpx.Limits(
            max_connections=cap,
            max_keepalive_connections=cap if keepalive is None else min(cap, keepalive),
            keepalive_expiry=limits.keepalive_expiry,
        )
        proxies: dict[str, httpx.Proxy | str | httpx.URL | None]
        if proxy is not None:
            proxies = {"all://": proxy}
        elif trust_env:
            proxies = dict(get_environment_proxies())
        else:
            proxies = {}
        self._proxies = sorted(
            ((URLPattern(pattern), value) for pattern, value in proxies.items()),
            key=lambda item: item[0],
        )

    def proxy_for(self, url: str) -> httpx.Proxy | str | httpx.URL | None:
        """The proxy httpx would use for ``url`` (explicit ``proxy=`` or the environment)."""
        parsed = httpx.URL(url)
        for pattern, proxy in self._proxies:
            if pattern.matches(parsed):
                return proxy
        return None

    def pools(self, host: str, port: int) -> tuple[EndpointPool, EndpointPool]:
        """Pools for plain and TLS traffic to ``host:port`` (one object unless proxies differ)."""
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        plain = self.proxy_for(f"http://{authority}")
        tls = self.proxy_for(f"https://{authority}")
        pool = EndpointPool(lambda: self._shard(plain), self.max_connections)
        if tls == plain:
            return pool, pool
        return pool, EndpointPool(lambda: self._shard(tls), self.max_connections)

    def _shard(self, proxy: httpx.Proxy | str | httpx.URL | None) -> Any:
        transport = self._transport_class(
            verify=self._ssl_context,
            http1=self._http1,
            http2=self._http2,
            limits=self._shard_limits,
            proxy=proxy,
        )
        return transport._pool
