"""Connections to one endpoint: many one-connection httpcore pools ("shards") and a free list.

httpcore's pool does work proportional to (connections x queued requests) on every request
and offers the same idle connection to every request queued in the same tick, so all but
one of them fail over and try again: at 64 concurrent callers that is several passes per
request, and a fresh pool hit by many callers at once collapses. Giving each HTTP/1.1
connection its own pool, and each request a pool with no request in flight, takes that
work away; httpcore still owns connecting, keep-alive expiry and dropping broken or
half-read connections. A caller that sends one request at a time always gets the most
recently used shard back (a LIFO free list), so it reuses one warm connection.

With HTTP/2 one connection carries many requests, so shards take ``HTTP2_STREAMS``
requests each before another is opened.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import Callable
from typing import Any, Final

import httpx
from httpx._utils import URLPattern, get_environment_proxies

__all__ = ["HTTP2_STREAMS", "EndpointPool", "PoolFactory"]

#: Requests in flight per shard when HTTP/2 is on (one multiplexed connection per shard).
HTTP2_STREAMS: Final = 8


class EndpointPool:
    """Shards of one endpoint; ``acquire``/``release`` run under the endpoint's lock."""

    __slots__ = ("_make_shard", "cap", "counts", "free", "max_shards", "shards")

    def __init__(self, make_shard: Callable[[], Any], cap: int, max_shards: int | None) -> None:
        self._make_shard = make_shard
        #: Requests a shard takes before the next one is used.
        self.cap = cap
        self.max_shards = max_shards
        self.shards: list[Any] = []
        #: Requests in flight per shard.
        self.counts: list[int] = []
        #: Shards below ``cap``, most recently freed last.
        self.free: list[int] = []

    def acquire(self) -> int:
        """The index of the shard for the next request."""
        counts = self.counts
        free = self.free
        if free:
            index = free[-1]
            count = counts[index] + 1
            counts[index] = count
            if count >= self.cap:
                free.pop()
            return index
        if self.max_shards is None or len(counts) < self.max_shards:
            self.shards.append(self._make_shard())
            counts.append(1)
            index = len(counts) - 1
            if self.cap > 1:
                free.append(index)
            return index
        # Every connection is busy and no more may be opened: queue behind the least busy.
        index = counts.index(min(counts))
        counts[index] += 1
        return index

    def release(self, index: int) -> None:
        count = self.counts[index] - 1
        self.counts[index] = count
        if count == self.cap - 1:
            self.free.append(index)


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
        # One connection per shard for HTTP/1.1; ``limits`` bound the shards of one endpoint.
        self._cap = HTTP2_STREAMS if http2 else 1
        self._max_shards = (
            None
            if limits.max_connections is None
            else max(1, math.ceil(limits.max_connections / self._cap))
        )
        self._shard_limits = httpx.Limits(
            max_connections=self._cap,
            max_keepalive_connections=self._cap,
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
        pool = EndpointPool(lambda: self._shard(plain), self._cap, self._max_shards)
        if tls == plain:
            return pool, pool
        return pool, EndpointPool(lambda: self._shard(tls), self._cap, self._max_shards)

    def _shard(self, proxy: httpx.Proxy | str | httpx.URL | None) -> Any:
        transport = self._transport_class(
            verify=self._ssl_context,
            http1=self._http1,
            http2=self._http2,
            limits=self._shard_limits,
            proxy=proxy,
        )
        return transport._pool
