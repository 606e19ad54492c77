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

``httpx.Limits`` apply **per endpoint**: ``max_connections`` connections at most to one
endpoint, and at most ``max_keepalive_connections`` of them kept open while idle (the least
recently used idle one is closed first). An endpoint that leaves the service (discovery) or a
pass-through host that is evicted is *retired*: its idle connections close at once, busy ones
as soon as their response is closed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import ssl
import weakref
from collections.abc import Callable
from typing import Any, Final

import httpcore
import httpx

from ._compat import URLPattern, get_environment_proxies

__all__ = ["DEFAULT_LIMITS", "HTTP2_STREAMS", "EndpointPool", "PoolFactory", "Shard"]

#: Requests in flight per shard when HTTP/2 is on (one multiplexed connection per shard).
HTTP2_STREAMS: Final = 8
#: httpx's own default limits, applied per endpoint.
DEFAULT_LIMITS: Final = httpx.Limits(max_connections=100, max_keepalive_connections=20)


class Shard:
    """One httpcore connection pool and the requests in flight on it."""

    __slots__ = ("count", "pool")

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.count = 0


class EndpointPool:
    """Shards of one endpoint; ``acquire``/``release`` run under the endpoint's lock."""

    __slots__ = (
        "__weakref__",
        "_close",
        "_make",
        "cap",
        "free",
        "idle",
        "max_idle",
        "max_shards",
        "retired",
        "shards",
    )

    def __init__(
        self,
        make: Callable[[], Any],
        close: Callable[[Any], None],
        *,
        cap: int,
        max_shards: int | None,
        max_idle: int | None,
    ) -> None:
        self._make = make
        self._close = close
        #: Requests a shard takes before the next one is used.
        self.cap = cap
        self.max_shards = max_shards
        #: Idle shards kept open at most (``None``: all of them).
        self.max_idle = max_idle
        self.shards: list[Shard] = []
        #: Shards below ``cap``, most recently freed last.
        self.free: list[Shard] = []
        #: Shards with no request in flight.
        self.idle = 0
        self.retired = False

    def acquire(self) -> Shard:
        """The shard for the next request."""
        free = self.free
        if free:
            shard = free[-1]
            count = shard.count + 1
            shard.count = count
            if count == 1:
                self.idle -= 1
            if count >= self.cap:
                free.pop()
            return shard
        shards = self.shards
        if self.max_shards is None or len(shards) < self.max_shards:
            shard = Shard(self._make())
            shard.count = 1
            shards.append(shard)
            if self.cap > 1:
                free.append(shard)
            return shard
        # Every connection is busy and no more may be opened: queue behind the least busy.
        shard = min(shards, key=_count)
        shard.count += 1
        return shard

    def release(self, shard: Shard) -> None:
        count = shard.count - 1
        shard.count = count
        if self.retired:
            if count == 0:
                self._drop(shard)
            return
        if count == self.cap - 1:
            self.free.append(shard)
        if count == 0:
            self.idle += 1
            if self.max_idle is not None and self.idle > self.max_idle:
                # Keep the warm end of the free list; close the idle shard unused longest.
                for victim in self.free:
                    if victim.count == 0:
                        self.free.remove(victim)
                        self.idle -= 1
                        self._drop(victim)
                        break

    def retire(self) -> None:
        """No new requests come: close idle shards now, busy ones when they are released."""
        self.retired = True
        for shard in [shard for shard in self.shards if shard.count == 0]:
            self._drop(shard)
        self.free.clear()
        self.idle = 0

    def _drop(self, shard: Shard) -> None:
        if shard in self.shards:
            self.shards.remove(shard)
            self._close(shard.pool)


def _count(shard: Shard) -> int:
    return shard.count


class PoolFactory:
    """Builds endpoint pools from the client's own connection settings.

    ``transport=`` would make httpx drop ``limits``, ``verify``, ``http2`` and proxies, so
    the mesh takes them itself and builds every shard with them, as ``httpx.HTTPTransport``
    would build its pool (httpcore's public constructors, proxies from ``proxy=`` or, with
    ``trust_env``, the environment).
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
        network_backend: Any = None,
    ) -> None:
        if http2 and importlib.util.find_spec("h2") is None:  # pragma: no cover - the environment
            raise ImportError(
                "Using http2=True, but the 'h2' package is not installed: "
                "pip install 'httpx[http2]'"
            )
        self._asynchronous = asynchronous
        # One TLS context for every shard: building one reads the CA bundle (milliseconds).
        self._ssl_context = httpx.create_ssl_context(verify=verify, cert=cert, trust_env=trust_env)
        self._http1 = http1
        self._http2 = http2
        self._network_backend = network_backend
        # One connection per shard for HTTP/1.1; ``limits`` bound the shards of one endpoint.
        self._cap = HTTP2_STREAMS if http2 else 1
        self._max_shards = (
            None
            if limits.max_connections is None
            else max(1, math.ceil(limits.max_connections / self._cap))
        )
        self._max_idle = (
            None
            if limits.max_keepalive_connections is None
            else math.ceil(limits.max_keepalive_connections / self._cap)
        )
        self._keepalive_expiry = limits.keepalive_expiry
        proxies: dict[str, httpx.Proxy | str | httpx.URL | None]
        if proxy is not None:
            proxies = {"all://": proxy}
        elif trust_env:
            proxies = dict(get_environment_proxies())
        else:
            proxies = {}
        self._proxies = sorted(
            ((URLPattern(pattern), _as_proxy(value)) for pattern, value in proxies.items()),
            key=lambda item: item[0],
        )
        #: Every endpoint pool made, for closing what is still open when the client closes.
        self.made: weakref.WeakSet[EndpointPool] = weakref.WeakSet()
        #: Async shards that must be closed but could not be (no running event loop).
        self.unclosed: list[Any] = []
        self.closing: set[asyncio.Task[None]] = set()

    def proxy_for(self, url: str) -> httpx.Proxy | None:
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
        pool = self._pool(plain)
        if tls is plain:
            return pool, pool
        return pool, self._pool(tls)

    def _pool(self, proxy: httpx.Proxy | None) -> EndpointPool:
        pool = EndpointPool(
            lambda: self._shard(proxy),
            self._close,
            cap=self._cap,
            max_shards=self._max_shards,
            max_idle=self._max_idle,
        )
        self.made.add(pool)
        return pool

    def open_shards(self) -> list[Any]:
        """Every shard still open (and forgotten by its pool), emptying the pools: the client
        is closing."""
        shards = self.unclosed
        self.unclosed = []
        for pool in list(self.made):
            shards.extend(shard.pool for shard in pool.shards)
            pool.shards.clear()
            pool.free.clear()
            pool.retired = True
        return shards

    def _shard(self, proxy: httpx.Proxy | None) -> Any:
        cap = self._cap
        common: dict[str, Any] = {
            "ssl_context": self._ssl_context,
            "max_connections": cap,
            "max_keepalive_connections": cap,
            "keepalive_expiry": self._keepalive_expiry,
            "http1": self._http1,
            "http2": self._http2,
            "network_backend": self._network_backend,
        }
        if proxy is None:
            cls: Any = (
                httpcore.AsyncConnectionPool if self._asynchronous else httpcore.ConnectionPool
            )
            return cls(**common)
        url = proxy.url
        proxy_url = httpcore.URL(
            scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
        )
        if url.scheme in ("http", "https"):
            cls = httpcore.AsyncHTTPProxy if self._asynchronous else httpcore.HTTPProxy
            return cls(
                proxy_url=proxy_url,
                proxy_auth=proxy.raw_auth,
                proxy_headers=proxy.headers.raw,
                proxy_ssl_context=proxy.ssl_context,
                **common,
            )
        if importlib.util.find_spec("socksio") is None:  # pragma: no cover - the environment
            raise ImportError(
                "Using a SOCKS proxy, but the 'socksio' package is not installed: "
                "pip install 'httpx[socks]'"
            )
        cls = httpcore.AsyncSOCKSProxy if self._asynchronous else httpcore.SOCKSProxy
        return cls(proxy_url=proxy_url, proxy_auth=proxy.raw_auth, **common)

    def _close(self, pool: Any) -> None:
        """Close one shard's pool now (sync), or soon on the running event loop (async)."""
        if not self._asynchronous:
            pool.close()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.unclosed.append(pool)
            return
        task = loop.create_task(pool.aclose())
        self.closing.add(task)
        task.add_done_callback(self.closing.discard)


def _as_proxy(value: httpx.Proxy | str | httpx.URL | None) -> httpx.Proxy | None:
    """httpx's own validation of a proxy: a bad one raises httpx's error at construction."""
    if value is None or isinstance(value, httpx.Proxy):
        return value
    return httpx.Proxy(url=value)
