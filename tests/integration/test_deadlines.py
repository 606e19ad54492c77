"""Total and per-attempt timeouts, and exactly-once accounting on every exit path."""

from __future__ import annotations

import anyio
import httpx
import pytest

import meshclient

#: The header that tells the callee how many milliseconds it has.
HEADER = "x-meshclient-timeout-ms"


def test_total_timeout_raises_deadline_exceeded(mesh, backend_factory) -> None:
    slow = backend_factory("slow")
    slow.behave(delay=5.0)
    client = mesh(services={"users": [slow.address]}, policy=meshclient.Policy(timeout=0.2))
    with pytest.raises(meshclient.DeadlineExceeded) as info:
        client.get("http://users/")
    assert isinstance(info.value, httpx.TimeoutException)
    assert info.value.attempts == 1
    assert info.value.endpoints == (slow.address,)
    assert client.outstanding() == 0


def test_attempt_bound_longer_than_the_total_is_clipped_in_the_deadline_header(
    mesh, backend_factory
) -> None:
    """``Timeout(total=0.3, attempt=2.0)``: the callee is told it has at most 300 ms."""
    backend = backend_factory("a")
    client = mesh(
        services={"users": [backend.address]},
        policy=meshclient.Policy(timeout=meshclient.Timeout(total=0.3, attempt=2.0)),
    )
    assert client.get("http://users/").status_code == 200
    assert 0 <= int(backend.requests[0].headers[HEADER]) <= 300


def test_attempt_bound_longer_than_the_total_is_clipped_to_the_time_left(
    mesh, backend_factory
) -> None:
    """A hanging attempt ends at the call's 0.3 s total, not at its 2 s attempt bound."""
    hanging = backend_factory("hanging")
    hanging.behave(hang=True)
    client = mesh(
        services={"users": [hanging.address]},
        policy=meshclient.Policy(timeout=meshclient.Timeout(total=0.3, attempt=2.0)),
    )
    with pytest.raises(meshclient.DeadlineExceeded, match=r"deadline of 0\.3s") as info:
        client.get("http://users/")
    # The one wall-clock bound here, and a generous one (1.7 s over the total): the call
    # reports it ended before the unclipped 2 s attempt bound would have ended it.
    assert info.value.elapsed < 2.0
    assert info.value.attempts == 1
    hanging.wait_for_requests(1)
    assert 0 <= int(hanging.requests[0].headers[HEADER]) <= 300
    assert client.outstanding() == 0


def test_attempt_timeout_moves_to_another_endpoint(mesh, backend_factory) -> None:
    slow, fast = backend_factory("slow"), backend_factory("fast")
    slow.behave(delay=5.0)
    policy = meshclient.Policy(
        timeout=meshclient.Timeout(total=4.0, attempt=0.2),
        retry=meshclient.Retry(attempts=2, backoff=0.001, max_backoff=0.001),
    )
    client = mesh(
        services={
            "users": meshclient.Service(
                [slow.address, fast.address], balancer=meshclient.RoundRobin()
            )
        },
        policy=policy,
    )
    responses = [client.get("http://users/") for _ in range(4)]
    assert {r.headers["x-backend"] for r in responses} == {"fast"}
    assert 1 <= slow.count() <= 4  # round robin reaches "slow" at least every other call


def test_attempt_timeout_on_post_is_not_retried(mesh, backend_factory) -> None:
    slow = backend_factory("slow")
    slow.behave(delay=5.0)
    client = mesh(
        services={"users": [slow.address]},
        policy=meshclient.Policy(timeout=meshclient.Timeout(attempt=0.2)),
    )
    with pytest.raises(httpx.ReadTimeout):
        client.post("http://users/", content=b"x")
    assert slow.count() == 1


def test_retry_after_longer_than_time_left_is_not_waited(mesh, backend_factory) -> None:
    limited = backend_factory("limited")
    limited.behave(status=503, retry_after="3")
    client = mesh(
        services={"users": [limited.address]},
        policy=meshclient.Policy(timeout=1.0, retry=meshclient.Retry(max_retry_after=5.0)),
    )
    assert client.get("http://users/").status_code == 503
    assert limited.count() == 1


def test_per_call_timeout_overrides_service_policy(mesh, backend_factory) -> None:
    slow = backend_factory("slow")
    slow.behave(delay=0.5)
    client = mesh(
        services={
            "users": meshclient.Service([slow.address], policy=meshclient.Policy(timeout=0.1))
        }
    )
    assert client.get("http://users/", policy=meshclient.Policy(timeout=3.0)).status_code == 200
    with pytest.raises(meshclient.DeadlineExceeded):
        client.get("http://users/")


def test_no_endpoints_error_names_the_service(mesh) -> None:
    class Empty(meshclient.Discovery):
        def start(self, on_update):  # type: ignore[no-untyped-def]
            on_update(())

        def close(self) -> None:
            pass

    client = mesh(services={"users": meshclient.Service(Empty())})
    with pytest.raises(meshclient.NoEndpointsError, match="'users'"):
        client.get("http://users/")


@pytest.mark.anyio
async def test_cancelled_task_releases_its_endpoint(backend_factory) -> None:
    hanging = backend_factory("hanging")
    hanging.behave(hang=True)
    async with meshclient.AsyncClient(services={"users": [hanging.address]}) as client:
        with anyio.move_on_after(0.2) as scope:
            await client.get("http://users/")
        assert scope.cancelled_caught
        endpoints = client.snapshot()["services"]["users"]["endpoints"]
        assert endpoints[0]["outstanding"] == 0
        assert hanging.count() == 1


@pytest.mark.anyio
async def test_cancelled_stream_read_releases_its_endpoint(backend_factory) -> None:
    slow = backend_factory("slow")
    async with meshclient.AsyncClient(services={"users": [slow.address]}) as client:
        async with client.stream("GET", "http://users/") as response:
            with anyio.CancelScope() as scope:
                scope.cancel()
                await response.aread()
        endpoints = client.snapshot()["services"]["users"]["endpoints"]
        assert endpoints[0]["outstanding"] == 0
