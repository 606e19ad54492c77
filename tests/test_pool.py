"""Connections to one endpoint: the shard free list (exact slot accounting under any order of
acquire and release) and the factory that builds every shard as httpx would build its pool."""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import ssl
from typing import Any

import httpcore
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshclient._pool import HTTP2_STREAMS, EndpointPool, PoolFactory, Shard


class Closed:
    """Records the shards' pools an ``EndpointPool`` closes."""

    def __init__(self) -> None:
        self.pools: list[object] = []

    def __call__(self, pool: object) -> None:
        self.pools.append(pool)


def make_pool(
    cap: int = 1, max_shards: int | None = None, max_idle: int | None = None
) -> tuple[EndpointPool, Closed]:
    closed = Closed()
    return EndpointPool(object, closed, cap=cap, max_shards=max_shards, max_idle=max_idle), closed


@given(
    cap=st.sampled_from([1, 8]),
    max_shards=st.one_of(st.none(), st.integers(1, 6)),
    max_idle=st.one_of(st.none(), st.integers(0, 4)),
    ops=st.lists(st.booleans(), max_size=200),
)
def test_free_list_holds_exactly_the_open_shards_below_their_cap(
    cap, max_shards, max_idle, ops
) -> None:
    pool, closed = make_pool(cap, max_shards, max_idle)
    held: list[Shard] = []
    for acquire in ops:
        if acquire or not held:
            held.append(pool.acquire())
        else:
            pool.release(held.pop(len(held) // 2))
        assert sorted(map(id, pool.free)) == sorted(id(s) for s in pool.shards if s.count < cap)
        assert sum(shard.count for shard in pool.shards) == len(held)
        assert pool.idle == sum(1 for shard in pool.shards if shard.count == 0)
        assert max_shards is None or len(pool.shards) <= max_shards
        assert max_idle is None or pool.idle <= max_idle
        assert not any(shard.pool in closed.pools for shard in pool.shards)


@given(st.integers(1, 50))
def test_a_new_shard_opens_only_when_every_shard_is_full(n: int) -> None:
    pool, _ = make_pool()
    shards = [pool.acquire() for _ in range(n)]
    assert len({id(shard) for shard in shards}) == n == len(pool.shards)


def test_sequential_requests_reuse_one_shard() -> None:
    pool, _ = make_pool(max_shards=100)
    for _ in range(10):
        pool.release(pool.acquire())
    assert len(pool.shards) == 1


def test_the_most_recently_freed_shard_is_used_first() -> None:
    pool, _ = make_pool(max_shards=3)
    a, b, c = (pool.acquire() for _ in range(3))
    assert pool.acquire() is a  # all busy: queue behind the least busy
    for shard in (b, a, c):
        pool.release(shard)
    assert pool.acquire() is c


def test_idle_shards_beyond_the_keepalive_limit_are_closed_oldest_first() -> None:
    pool, closed = make_pool(max_idle=2)
    shards = [pool.acquire() for _ in range(5)]
    for shard in shards:
        pool.release(shard)
    assert closed.pools == [shards[0].pool, shards[1].pool, shards[2].pool]
    assert pool.shards == shards[3:]


def test_retired_pool_closes_idle_shards_now_and_busy_ones_on_release() -> None:
    pool, closed = make_pool()
    busy, idle = pool.acquire(), pool.acquire()
    pool.release(idle)
    pool.retire()
    assert closed.pools == [idle.pool]
    pool.release(busy)
    assert closed.pools == [idle.pool, busy.pool]
    assert pool.shards == []


# -- PoolFactory: each shard is httpcore's own pool, built from the client's settings ----------


class BuiltPool:
    """Stands in for one of httpcore's pool classes: what a shard was built with, and closes."""

    def __init__(self, kind: str, **kwargs: Any) -> None:
        self.kind = kind
        self.kwargs = kwargs
        self.closed = 0

    def close(self) -> None:
        self.closed += 1

    async def aclose(self) -> None:
        self.closed += 1


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> None:
    """httpcore's pool and proxy classes replaced by ``BuiltPool``; no proxy in the environment."""
    for kind in (
        "ConnectionPool",
        "AsyncConnectionPool",
        "HTTPProxy",
        "AsyncHTTPProxy",
        "SOCKSProxy",
        "AsyncSOCKSProxy",
    ):
        monkeypatch.setattr(httpcore, kind, functools.partial(BuiltPool, kind))
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def shard_of(pool: EndpointPool) -> BuiltPool:
    built_pool = pool.acquire().pool
    assert isinstance(built_pool, BuiltPool)
    return built_pool


LIMITS = httpx.Limits(max_connections=10, max_keepalive_connections=4, keepalive_expiry=7.0)
BACKEND = object()


@pytest.mark.usefixtures("built")
@pytest.mark.parametrize(
    ("asynchronous", "kind"), [(False, "ConnectionPool"), (True, "AsyncConnectionPool")]
)
def test_an_http1_shard_is_a_one_connection_pool_with_the_clients_settings(
    asynchronous: bool, kind: str
) -> None:
    factory = PoolFactory(
        asynchronous=asynchronous,
        verify=False,
        limits=LIMITS,
        trust_env=False,
        network_backend=BACKEND,
    )
    plain, tls = factory.pools("127.0.0.1", 8001)
    assert plain is tls  # no proxy: one pool serves both schemes
    first, second = shard_of(plain), shard_of(plain)
    assert first.kind == second.kind == kind
    ssl_context = first.kwargs.pop("ssl_context")
    assert isinstance(ssl_context, ssl.SSLContext)
    assert ssl_context.verify_mode == ssl.CERT_NONE  # verify=False reached the TLS context
    assert second.kwargs.pop("ssl_context") is ssl_context  # one TLS context for every shard
    assert first.kwargs == second.kwargs
    assert first.kwargs == {
        "max_connections": 1,
        "max_keepalive_connections": 1,
        "keepalive_expiry": 7.0,
        "http1": True,
        "http2": False,
        "network_backend": BACKEND,
    }


@pytest.mark.usefixtures("built")
def test_an_http2_shard_carries_http2_streams_requests_on_one_connection() -> None:
    factory = PoolFactory(
        asynchronous=False, limits=LIMITS, trust_env=False, http1=False, http2=True
    )
    pool, _ = factory.pools("127.0.0.1", 8001)
    kwargs = shard_of(pool).kwargs
    assert (kwargs["max_connections"], kwargs["max_keepalive_connections"]) == (8, 8)
    assert (kwargs["http1"], kwargs["http2"]) == (False, True)
    assert pool.cap == HTTP2_STREAMS == 8


@pytest.mark.usefixtures("built")
@pytest.mark.parametrize(
    ("http2", "limits", "bounds"),
    [
        (False, httpx.Limits(max_connections=10, max_keepalive_connections=4), (1, 10, 4)),
        (True, httpx.Limits(max_connections=10, max_keepalive_connections=4), (8, 2, 1)),
        (True, httpx.Limits(max_connections=3, max_keepalive_connections=0), (8, 1, 0)),
        (
            False,
            httpx.Limits(max_connections=None, max_keepalive_connections=None),
            (1, None, None),
        ),
    ],
)
def test_limits_bound_the_shards_of_each_endpoint(
    http2: bool, limits: httpx.Limits, bounds: tuple[int, int | None, int | None]
) -> None:
    """``max_connections`` and ``max_keepalive_connections`` count connections per endpoint;
    with HTTP/2 a shard is one connection carrying ``HTTP2_STREAMS`` requests."""
    factory = PoolFactory(asynchronous=False, limits=limits, trust_env=False, http2=http2)
    pool, _ = factory.pools("127.0.0.1", 8001)
    assert (pool.cap, pool.max_shards, pool.max_idle) == bounds


@pytest.mark.usefixtures("built")
@pytest.mark.parametrize(("asynchronous", "kind"), [(False, "HTTPProxy"), (True, "AsyncHTTPProxy")])
def test_an_explicit_proxy_carries_both_schemes_with_its_url_and_credentials(
    asynchronous: bool, kind: str
) -> None:
    factory = PoolFactory(
        asynchronous=asynchronous,
        limits=LIMITS,
        trust_env=False,
        proxy="http://user:pw@proxy.local:3128",
        network_backend=BACKEND,
    )
    plain, tls = factory.pools("127.0.0.1", 8001)
    assert plain is tls
    shard = shard_of(plain)
    assert shard.kind == kind
    kwargs = shard.kwargs
    assert kwargs["proxy_url"] == httpcore.URL(
        scheme=b"http", host=b"proxy.local", port=3128, target=b"/"
    )
    assert kwargs["proxy_auth"] == (b"user", b"pw")
    assert kwargs["proxy_headers"] == []
    assert kwargs["proxy_ssl_context"] is None
    assert kwargs["max_connections"] == 1
    assert kwargs["keepalive_expiry"] == 7.0
    assert kwargs["network_backend"] is BACKEND
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)


@pytest.mark.usefixtures("built")
@pytest.mark.parametrize(
    ("asynchronous", "kind"), [(False, "SOCKSProxy"), (True, "AsyncSOCKSProxy")]
)
def test_a_socks_proxy_gets_a_socks_shard(
    asynchronous: bool, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: object() if name == "socksio" else find_spec(name, *args),
    )
    factory = PoolFactory(
        asynchronous=asynchronous,
        limits=LIMITS,
        trust_env=False,
        proxy="socks5://user:pw@socks.local:1080",
    )
    shard = shard_of(factory.pools("127.0.0.1", 8001)[0])
    assert shard.kind == kind
    assert shard.kwargs["proxy_url"] == httpcore.URL(
        scheme=b"socks5", host=b"socks.local", port=1080, target=b"/"
    )
    assert shard.kwargs["proxy_auth"] == (b"user", b"pw")
    assert shard.kwargs["max_connections"] == 1
    assert "proxy_headers" not in shard.kwargs


@pytest.mark.usefixtures("built")
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_environment_proxies_apply_per_scheme_only_with_trust_env(
    host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://tls-proxy.local:3128")
    plain, tls = PoolFactory(asynchronous=False, limits=LIMITS).pools(host, 8001)
    assert plain is not tls
    assert shard_of(plain).kind == "ConnectionPool"
    proxied = shard_of(tls)
    assert proxied.kind == "HTTPProxy"
    assert proxied.kwargs["proxy_url"].host == b"tls-proxy.local"
    plain, tls = PoolFactory(asynchronous=False, limits=LIMITS, trust_env=False).pools(host, 8001)
    assert plain is tls
    assert shard_of(tls).kind == "ConnectionPool"


@pytest.mark.usefixtures("built")
def test_proxy_for_answers_as_httpx_would() -> None:
    factory = PoolFactory(asynchronous=False, limits=LIMITS, proxy=httpx.URL("http://p.local:1"))
    proxy = factory.proxy_for("https://anything:443")
    assert isinstance(proxy, httpx.Proxy)
    assert proxy.url == httpx.URL("http://p.local:1")
    assert PoolFactory(asynchronous=False, limits=LIMITS).proxy_for("http://x:1") is None


def test_a_bad_proxy_fails_when_the_factory_is_built() -> None:
    with pytest.raises(ValueError, match="Unknown scheme for proxy URL"):
        PoolFactory(asynchronous=False, limits=LIMITS, proxy="ftp://proxy.local:21")


@pytest.mark.usefixtures("built")
def test_a_retired_sync_shard_is_closed_at_once() -> None:
    factory = PoolFactory(asynchronous=False, limits=LIMITS, trust_env=False)
    pool, _ = factory.pools("127.0.0.1", 8001)
    shard = pool.acquire()
    pool.release(shard)
    pool.retire()
    assert shard.pool.closed == 1
    assert factory.unclosed == []


@pytest.mark.usefixtures("built")
def test_an_async_shard_retired_outside_a_loop_waits_for_open_shards() -> None:
    factory = PoolFactory(asynchronous=True, limits=LIMITS, trust_env=False)
    pool, _ = factory.pools("127.0.0.1", 8001)
    shard = pool.acquire()
    pool.release(shard)
    pool.retire()
    assert shard.pool.closed == 0
    assert factory.open_shards() == [shard.pool]
    assert factory.open_shards() == []


@pytest.mark.usefixtures("built")
def test_an_async_shard_retired_in_a_loop_is_closed_by_a_task_of_that_loop() -> None:
    factory = PoolFactory(asynchronous=True, limits=LIMITS, trust_env=False)

    async def retire() -> BuiltPool:
        pool, _ = factory.pools("127.0.0.1", 8001)
        shard = pool.acquire()
        pool.release(shard)
        pool.retire()
        assert len(factory.closing) == 1
        await asyncio.gather(*factory.closing)
        await asyncio.sleep(0)  # the done callback runs on the next turn of the loop
        return shard.pool

    closed = asyncio.run(retire())
    assert closed.closed == 1
    assert factory.closing == set()
    assert factory.unclosed == []


@pytest.mark.usefixtures("built")
def test_open_shards_hands_over_every_open_shard_and_empties_the_pools() -> None:
    factory = PoolFactory(asynchronous=False, limits=LIMITS, trust_env=False)
    first, _ = factory.pools("127.0.0.1", 8001)
    second, _ = factory.pools("127.0.0.1", 8002)
    busy, idle = first.acquire(), first.acquire()
    first.release(idle)
    other = second.acquire()
    assert sorted(map(id, factory.open_shards())) == sorted(
        id(shard.pool) for shard in (busy, idle, other)
    )
    for pool in (first, second):
        assert (pool.shards, pool.free, pool.retired) == ([], [], True)
    first.release(busy)  # released after the client closed: nothing left to close twice
    assert busy.pool.closed == 0


@pytest.mark.usefixtures("built")
def test_by_default_shards_verify_tls_speak_http1_and_honour_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.local:3128")
    plain, _ = PoolFactory(asynchronous=False, limits=LIMITS).pools("127.0.0.1", 8001)
    shard = shard_of(plain)
    assert shard.kind == "HTTPProxy"
    assert (shard.kwargs["http1"], shard.kwargs["http2"]) == (True, False)
    assert shard.kwargs["ssl_context"].verify_mode == ssl.CERT_REQUIRED


def test_the_tls_context_is_httpxs_own_from_verify_cert_and_trust_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[dict[str, Any]] = []
    context = ssl.create_default_context()

    def create_ssl_context(**kwargs: Any) -> ssl.SSLContext:
        made.append(kwargs)
        return context

    monkeypatch.setattr(httpx, "create_ssl_context", create_ssl_context)
    PoolFactory(
        asynchronous=False, limits=LIMITS, verify="/ca.pem", cert="/me.pem", trust_env=False
    )
    assert made == [{"verify": "/ca.pem", "cert": "/me.pem", "trust_env": False}]


@pytest.mark.usefixtures("built")
def test_no_proxy_exempts_a_host_from_the_scheme_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx's order: a pattern naming the host wins over one naming only the scheme."""
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.local:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.local:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    factory = PoolFactory(asynchronous=False, limits=LIMITS)
    assert factory.proxy_for("http://127.0.0.1:8001") is None
    assert factory.proxy_for("https://127.0.0.1:8001") is None
    assert factory.proxy_for("http://10.0.0.1:8001") is not None


@pytest.mark.usefixtures("built")
def test_an_httpx_proxy_is_taken_as_it_is() -> None:
    proxy = httpx.Proxy("http://p.local:1", headers={"x-via": "mesh"})
    factory = PoolFactory(asynchronous=False, limits=LIMITS, proxy=proxy)
    assert factory.proxy_for("http://anything:80") is proxy
    shard = shard_of(factory.pools("127.0.0.1", 8001)[0])
    assert shard.kwargs["proxy_headers"] == [(b"x-via", b"mesh")]


@pytest.mark.parametrize(
    ("package", "make", "message"),
    [
        (
            "h2",
            lambda: PoolFactory(asynchronous=False, limits=LIMITS, http2=True),
            "Using http2=True, but the 'h2' package is not installed: pip install 'httpx[http2]'",
        ),
        (
            "socksio",
            lambda: (
                PoolFactory(asynchronous=False, limits=LIMITS, proxy="socks5://s.local:1080")
                .pools("127.0.0.1", 8001)[0]
                .acquire()
            ),
            "Using a SOCKS proxy, but the 'socksio' package is not installed: "
            "pip install 'httpx[socks]'",
        ),
    ],
)
def test_a_missing_optional_package_is_named_with_its_install_command(
    package: str, make: Any, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == package else find_spec(name, *args),
    )
    with pytest.raises(ImportError) as info:
        make()
    assert str(info.value) == message


def test_http2_off_needs_no_h2(monkeypatch: pytest.MonkeyPatch) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *args: None if name == "h2" else find_spec(name)
    )
    PoolFactory(asynchronous=False, limits=LIMITS, http2=False, trust_env=False)


def test_a_shard_with_room_is_offered_again_before_another_opens() -> None:
    pool, _ = make_pool(cap=2)
    first = pool.acquire()
    assert pool.acquire() is first
    assert pool.acquire() is not first  # full at 2: the next request opens a second shard


def test_requests_queued_behind_a_busy_shard_are_counted_on_it() -> None:
    pool, _ = make_pool(max_shards=1)
    shard = pool.acquire()
    assert pool.acquire() is shard
    assert pool.acquire() is shard
    assert shard.count == 3
    for _ in range(3):
        pool.release(shard)
    assert (shard.count, pool.idle, pool.free) == (0, 1, [shard])


def test_a_retired_pool_counts_no_idle_shard() -> None:
    pool, _ = make_pool()
    busy, idle = pool.acquire(), pool.acquire()
    pool.release(idle)
    assert pool.idle == 1
    pool.retire()
    assert pool.idle == 0
    assert pool.shards == [busy]


@pytest.mark.usefixtures("built")
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_no_proxy_exempts_the_endpoints_own_pools(
    host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``pools()`` asks for the proxy of the endpoint itself: a host named in ``NO_PROXY``
    connects directly on both schemes while another host still goes through the proxy."""
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.local:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.local:3128")
    monkeypatch.setenv("NO_PROXY", host)
    factory = PoolFactory(asynchronous=False, limits=LIMITS)
    plain, tls = factory.pools(host, 8001)
    assert plain is tls
    assert shard_of(plain).kind == "ConnectionPool"
    plain, tls = factory.pools("10.0.0.1", 8001)
    assert (shard_of(plain).kind, shard_of(tls).kind) == ("HTTPProxy", "HTTPProxy")


@pytest.mark.usefixtures("built")
@pytest.mark.parametrize(("asynchronous", "kind"), [(False, "HTTPProxy"), (True, "AsyncHTTPProxy")])
def test_an_https_proxy_is_an_http_proxy_reached_over_tls_with_its_own_context(
    asynchronous: bool, kind: str
) -> None:
    """A proxy with an ``https://`` URL is still an HTTP proxy (not SOCKS), and the TLS
    context given for the proxy is the one its connection uses."""
    proxy_context = ssl.create_default_context()
    proxy = httpx.Proxy("https://proxy.local:3129", ssl_context=proxy_context)
    factory = PoolFactory(asynchronous=asynchronous, limits=LIMITS, proxy=proxy)
    shard = shard_of(factory.pools("127.0.0.1", 8001)[0])
    assert shard.kind == kind
    assert shard.kwargs["proxy_url"] == httpcore.URL(
        scheme=b"https", host=b"proxy.local", port=3129, target=b"/"
    )
    assert shard.kwargs["proxy_ssl_context"] is proxy_context
    assert shard.kwargs["ssl_context"] is not proxy_context  # the endpoint's TLS is the client's
