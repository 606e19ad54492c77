"""Endpoint health and admission against real servers on 127.0.0.1, for both clients.

Ejections use short, explicit ejection times so the tests are quick; they assert counts and
states, never durations.
"""

from __future__ import annotations

import time

import httpx
import pytest

import meshclient

FAST_RETRY = meshclient.Policy(retry=meshclient.Retry(attempts=3, backoff=0.001, max_backoff=0.002))


def outlier(**kwargs: object) -> meshclient.OutlierDetection:
    settings: dict[str, object] = {
        "consecutive_failures": 3,
        "base_ejection": 0.3,
        "max_ejection": 0.3,
        "ejection_jitter": 0.0,
        "latency_factor": None,
    }
    settings.update(kwargs)
    return meshclient.OutlierDetection(**settings)  # type: ignore[arg-type]


def users(backends, **kwargs: object) -> meshclient.Service:
    """Round robin, so a failing endpoint is tried every third call whatever its latency."""
    kwargs.setdefault("balancer", meshclient.RoundRobin())
    return meshclient.Service([b.address for b in backends], **kwargs)  # type: ignore[arg-type]


def health_of(client, address: str) -> dict:
    for endpoint in client.snapshot()["services"]["users"]["endpoints"]:
        if endpoint["address"] == address:
            return endpoint["health"]
    raise AssertionError(address)


def wait_until(predicate, *, polls: int = 200) -> None:
    """Polls a state change that takes a bounded, configured time (ejection expiry)."""
    for _ in range(polls):
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError("state did not change within the polling bound")


def test_endpoint_answering_500_is_ejected_then_gets_only_probes(mesh, backends) -> None:
    failing, *healthy = backends
    failing.behave(status=500)
    service = users(backends, outlier=outlier(base_ejection=30.0, max_ejection=30.0))
    client = mesh(services={"users": service}, policy=FAST_RETRY)
    for _ in range(30):
        client.get("http://users/")
    assert health_of(client, failing.address)["state"] == "ejected"
    before = failing.count()
    for _ in range(60):
        assert client.get("http://users/").status_code == 200
    assert failing.count() == before  # ejected for 30 s: not even a probe yet
    assert sum(b.count() for b in healthy) >= 60


def test_probe_readmits_a_recovered_endpoint(mesh, backends) -> None:
    failing, *_ = backends
    failing.behave(status=500)
    client = mesh(services={"users": users(backends, outlier=outlier())})
    for _ in range(30):
        client.get("http://users/")
    assert health_of(client, failing.address)["state"] == "ejected"
    failing.behave()  # recovered
    failing.reset()

    def readmitted() -> bool:
        client.get("http://users/")
        return health_of(client, failing.address)["state"] == "admitted"

    wait_until(readmitted)
    assert failing.count() >= 1


def test_failed_probe_ejects_again(mesh, backends) -> None:
    failing, *_ = backends
    failing.behave(status=500)
    client = mesh(services={"users": users(backends, outlier=outlier(max_ejection=10.0))})
    for _ in range(30):
        client.get("http://users/")
    first = health_of(client, failing.address)
    assert first["state"] == "ejected"

    def reejected() -> bool:
        client.get("http://users/")
        return health_of(client, failing.address).get("ejections_in_a_row", 0) >= 2

    wait_until(reejected)
    assert health_of(client, failing.address)["state"] == "ejected"


def test_black_holed_endpoint_is_ejected_after_attempt_timeouts(mesh, backends) -> None:
    hole, *_ = backends
    hole.behave(hang=True)
    policy = meshclient.Policy(
        timeout=meshclient.Timeout(attempt=0.1),
        retry=meshclient.Retry(attempts=3, backoff=0.001, max_backoff=0.002),
    )
    client = mesh(
        services={
            "users": meshclient.Service(
                [b.address for b in backends],
                outlier=outlier(base_ejection=30.0, max_ejection=30.0),
                balancer=meshclient.RoundRobin(),
            )
        },
        policy=policy,
    )
    for _ in range(12):
        assert client.get("http://users/").status_code == 200
    assert health_of(client, hole.address)["state"] == "ejected"
    sent = hole.count()
    for _ in range(20):
        assert client.get("http://users/").status_code == 200
    assert hole.count() == sent


def test_no_more_than_the_cap_is_ejected_when_everything_fails(mesh, backends) -> None:
    for backend in backends:
        backend.behave(status=500)
    client = mesh(
        services={"users": users(backends, outlier=outlier(base_ejection=30.0, max_ejection=30.0))},
        policy=FAST_RETRY,
    )
    for _ in range(30):
        client.get("http://users/")
    health = client.snapshot()["services"]["users"]["health"]
    assert health["ejected"] == health["max_ejected"] == 1  # 50 % of 3
    assert health["available"] == 2


def test_open_breaker_fails_fast_without_touching_the_network(mesh, backends) -> None:
    for backend in backends:
        backend.behave(status=503)
    breaker = meshclient.CircuitBreaker(
        window_size=10, minimum_calls=5, failure_rate=0.5, open_duration=30.0
    )
    client = mesh(
        services={
            "users": meshclient.Service(
                [b.address for b in backends], breaker=breaker, outlier=None
            )
        },
        policy=meshclient.Policy(retry=None),
    )
    for _ in range(5):
        assert client.get("http://users/").status_code == 503
    sent = sum(b.count() for b in backends)
    with pytest.raises(meshclient.CircuitOpenError, match="'users'"):
        client.get("http://users/")
    assert sum(b.count() for b in backends) == sent
    assert client.snapshot()["services"]["users"]["breaker"]["state"] == "open"


def test_breaker_closes_after_successful_half_open_calls(mesh, backends) -> None:
    for backend in backends:
        backend.behave(status=503)
    breaker = meshclient.CircuitBreaker(
        window_size=10, minimum_calls=5, open_duration=0.2, half_open_calls=2
    )
    client = mesh(
        services={
            "users": meshclient.Service(
                [b.address for b in backends], breaker=breaker, outlier=None
            )
        },
        policy=meshclient.Policy(retry=None),
    )
    for _ in range(5):
        client.get("http://users/")
    assert breaker.state == "open"
    for backend in backends:
        backend.behave()

    def closed() -> bool:
        try:
            client.get("http://users/")
        except meshclient.CircuitOpenError:
            return False
        return breaker.state == "closed"

    wait_until(closed)


def test_fallback_answers_for_an_open_breaker(mesh, backends) -> None:
    breaker = meshclient.CircuitBreaker(window_size=2, minimum_calls=1, open_duration=30.0)
    for backend in backends:
        backend.behave(status=503)
    seen: list[type] = []

    def fallback(request: httpx.Request, error: Exception) -> httpx.Response:
        seen.append(type(error))
        return httpx.Response(200, json={"cached": True})

    client = mesh(
        services={"users": meshclient.Service([b.address for b in backends], breaker=breaker)},
        policy=meshclient.Policy(retry=None, fallback=fallback),
    )
    assert client.get("http://users/").status_code == 503  # a response: no fallback
    response = client.get("http://users/")
    assert response.json() == {"cached": True}
    assert seen == [meshclient.CircuitOpenError]


@pytest.mark.anyio
async def test_async_fallback_coroutine_answers_for_a_full_bulkhead(backend_factory) -> None:
    slow = backend_factory("slow")
    slow.behave(delay=0.3)

    async def fallback(request: httpx.Request, error: Exception) -> httpx.Response:
        assert isinstance(error, meshclient.BulkheadFullError)
        return httpx.Response(200, text="fallback")

    import anyio

    service = meshclient.Service([slow.address], bulkhead=meshclient.Bulkhead(max_concurrent=1))
    async with meshclient.AsyncClient(
        services={"users": service}, policy=meshclient.Policy(fallback=fallback)
    ) as client:
        results: list[str] = []

        async def call() -> None:
            results.append((await client.get("http://users/")).text)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await anyio.sleep(0.1)
            tg.start_soon(call)
        assert sorted(r == "fallback" for r in results) == [False, True]
        assert client.snapshot()["services"]["users"]["bulkhead"]["active"] == 0


def test_full_bulkhead_rejects_naming_the_limit(backend_factory) -> None:
    import threading

    slow = backend_factory("slow")
    slow.behave(delay=0.5)
    service = meshclient.Service([slow.address], bulkhead=meshclient.Bulkhead(max_concurrent=1))
    with meshclient.Client(services={"users": service}) as client:
        holder = threading.Thread(target=client.get, args=("http://users/",))
        holder.start()
        slow.wait_for_requests(1)
        with pytest.raises(meshclient.BulkheadFullError, match="max_concurrent=1"):
            client.get("http://users/")
        holder.join(timeout=10)
        assert client.snapshot()["services"]["users"]["bulkhead"]["active"] == 0
        assert slow.count() == 1


@pytest.mark.anyio
async def test_cancelled_holder_gives_its_bulkhead_slot_back(backend_factory) -> None:
    import anyio

    hanging = backend_factory("hanging")
    hanging.behave(hang=True)
    service = meshclient.Service([hanging.address], bulkhead=meshclient.Bulkhead(max_concurrent=1))
    async with meshclient.AsyncClient(services={"users": service}) as client:
        with anyio.move_on_after(0.2):
            await client.get("http://users/")
        assert client.snapshot()["services"]["users"]["bulkhead"]["active"] == 0


def test_adaptive_throttle_rejects_locally_when_the_service_refuses_work(mesh, backends) -> None:
    for backend in backends:
        backend.behave(status=503)
    throttle = meshclient.AdaptiveThrottle(k=2.0)
    client = mesh(
        services={
            "users": meshclient.Service(
                [b.address for b in backends], throttle=throttle, outlier=None
            )
        },
        policy=meshclient.Policy(retry=None),
    )
    rejected = 0
    for _ in range(100):
        try:
            client.get("http://users/")
        except meshclient.ThrottledError:
            rejected += 1
    assert rejected > 50
    assert sum(b.count() for b in backends) == 100 - rejected


def test_snapshot_reports_health_of_every_endpoint(mesh, backends) -> None:
    client = mesh(services={"users": [b.address for b in backends]})
    client.get("http://users/")
    service = client.snapshot()["services"]["users"]
    assert {e["health"]["state"] for e in service["endpoints"]} == {"admitted"}
    assert service["health"]["panic"] is False
