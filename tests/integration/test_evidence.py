"""Every attempt is evidence: cut-off attempts teach the balancer, nothing-sent teaches nothing.

A caller that gives up (``asyncio.wait_for``) or the mesh's own timeout ends an attempt without
an answer; the balancer still learns the endpoint took at least that long, so a replica that
turned slow stops getting traffic. A deadline that was gone before anything was sent, or a
caller that goes away, is no evidence against the service: shared breakers and throttles must
not trip on it.
"""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest

import meshclient

#: Calls of 40 the slow replica may still get once it was seen to be slow (re-probes).
STRAY = 3


def test_callers_that_give_up_steer_traffic_away_from_a_slow_replica(backend_factory) -> None:
    fast = [backend_factory(f"fast{i}") for i in range(3)]
    slow = backend_factory("slow")
    slow.behave(delay=2.0)

    async def main() -> tuple[int, int]:
        async with meshclient.AsyncClient(
            services={"users": [b.address for b in (*fast, slow)]},
            policy=meshclient.Policy(retry=None),
        ) as client:

            async def call() -> None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(client.get("http://users/"), 0.3)

            for _ in range(20):  # warm-up: every replica gets measured
                await call()
            warm = slow.count()
            for _ in range(40):
                await call()
            return warm, slow.count()

    warm, total = asyncio.run(main())
    assert warm >= 1
    # A quarter of 40 (10) if cut-off attempts taught nothing; a re-probe as its estimate
    # decays (every few seconds, more on a slow machine) is all it may get.
    assert total - warm <= STRAY


def test_the_mesh_timeout_steers_traffic_away_from_a_slow_replica(mesh, backend_factory) -> None:
    fast = [backend_factory(f"fast{i}") for i in range(3)]
    slow = backend_factory("slow")
    slow.behave(delay=2.0)
    client = mesh(
        services={"users": [b.address for b in (*fast, slow)]},
        policy=meshclient.Policy(timeout=0.3, retry=None),
    )
    for _ in range(20):
        with contextlib.suppress(meshclient.DeadlineExceeded):
            client.get("http://users/")
    warm = slow.count()
    assert warm >= 1
    failures = 0
    for _ in range(40):
        try:
            client.get("http://users/")
        except meshclient.DeadlineExceeded:
            failures += 1
    assert slow.count() - warm <= STRAY
    assert failures <= STRAY


def test_a_deadline_gone_before_sending_trips_no_shared_state(mesh, backend_factory) -> None:
    """A hostile ``x-meshclient-timeout-ms: 0`` must not open a breaker others rely on."""
    backend = backend_factory("healthy")
    breaker = meshclient.CircuitBreaker(window_size=10, minimum_calls=5)
    throttle = meshclient.AdaptiveThrottle()
    service = meshclient.Service([backend.address], breaker=breaker, throttle=throttle)
    client = mesh(services={"users": service})
    for _ in range(20):
        with pytest.raises(meshclient.DeadlineExceeded):
            client.get_within(0, "http://users/")
    assert backend.count() == 0
    assert breaker.state == "closed"
    assert throttle.rejection_probability() == 0
    assert client.get("http://users/").status_code == 200


def test_a_tiny_inherited_deadline_ejects_no_healthy_endpoint(mesh, backend_factory) -> None:
    """A 2 ms budget from the caller's caller cuts attempts short: that is the caller's doing."""
    backend = backend_factory("healthy")
    backend.behave(delay=0.05)
    breaker = meshclient.CircuitBreaker(window_size=10, minimum_calls=5)
    client = mesh(
        services={"users": meshclient.Service([backend.address], breaker=breaker)},
        policy=meshclient.Policy(retry=None),
    )
    for _ in range(10):
        with pytest.raises(meshclient.DeadlineExceeded):
            client.get_within(0.002, "http://users/")
    (endpoint,) = client.snapshot()["services"]["users"]["endpoints"]
    assert endpoint["health"]["state"] == "admitted"
    assert endpoint["health"]["consecutive_failures"] == 0
    assert breaker.state == "closed"


def test_the_mesh_s_own_timeouts_count_against_the_endpoint(mesh, backend_factory) -> None:
    backend = backend_factory("slow")
    backend.behave(delay=1.0)
    client = mesh(
        services={"users": [backend.address]},
        policy=meshclient.Policy(timeout=meshclient.Timeout(attempt=0.05), retry=None),
    )
    for _ in range(3):
        with pytest.raises(httpx.TimeoutException):
            client.get("http://users/")
    (endpoint,) = client.snapshot()["services"]["users"]["endpoints"]
    assert endpoint["health"]["consecutive_failures"] == 3


def test_callers_that_cancel_do_not_make_the_throttle_refuse(backend_factory) -> None:
    backend = backend_factory("slow")
    backend.behave(delay=0.2)
    throttle = meshclient.AdaptiveThrottle()
    breaker = meshclient.CircuitBreaker(window_size=10, minimum_calls=5)
    service = meshclient.Service([backend.address], throttle=throttle, breaker=breaker)

    async def main() -> int:
        async with meshclient.AsyncClient(services={"users": service}) as client:
            for _ in range(30):
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(client.get("http://users/"), 0.01)
            backend.behave()
            return (await client.get("http://users/")).status_code

    assert asyncio.run(main()) == 200
    assert throttle.rejection_probability() == 0
    assert breaker.state == "closed"
