"""What is sent again, where, and how often — counted at real servers on 127.0.0.1."""

from __future__ import annotations

import attrs
import httpx
import pytest

import meshclient
from meshclient.testing import Behaviour, FakeClock

from helpers import RETRY3, service


@pytest.mark.parametrize("method", ["GET", "POST", "PATCH", "DELETE"])
def test_never_sent_request_is_requeued_for_any_method(
    mesh, backend_factory, closed_port: int, method: str
) -> None:
    healthy = backend_factory("healthy")
    client = mesh(
        services={"users": service(f"127.0.0.1:{closed_port}", healthy.address)}, policy=RETRY3
    )
    for _ in range(10):
        assert client.request(method, "http://users/", content=b"x").status_code == 200
    assert healthy.count(method=method) == 10


def test_generator_body_is_requeued_when_never_sent(
    mesh, backend_factory, closed_port: int
) -> None:
    healthy = backend_factory("healthy")
    client = mesh(
        services={
            "users": service(
                f"127.0.0.1:{closed_port}", healthy.address, balancer=meshclient.RoundRobin()
            )
        },
        policy=RETRY3,
    )
    for _ in range(4):
        assert client.post("http://users/", content=client.body(b"a", b"b")).status_code == 200
    assert [r.body for r in healthy.requests] == [b"ab"] * 4


def test_post_that_reached_a_server_is_not_sent_twice(mesh, backend_factory) -> None:
    failing = backend_factory("failing")
    failing.behave(status=503)
    client = mesh(services={"users": service(failing.address)}, policy=RETRY3)
    assert client.post("http://users/", json={"n": 1}).status_code == 503
    assert failing.count(method="POST") == 1


def test_idempotent_methods_are_retried_on_503(mesh, backend_factory) -> None:
    failing = backend_factory("failing")
    failing.behave(status=503)
    client = mesh(services={"users": service(failing.address)}, policy=RETRY3)
    for method in ("GET", "HEAD", "OPTIONS", "PUT", "DELETE"):
        response = client.request(method, "http://users/")
        assert response.status_code == 503, method
        assert failing.count(method=method) == 3, method


def test_idempotency_key_makes_post_retryable(mesh, backend_factory) -> None:
    failing = backend_factory("failing")
    failing.behave(status=503)
    client = mesh(services={"users": service(failing.address)}, policy=RETRY3)
    client.post("http://users/", content=b"x", headers={"Idempotency-Key": "k1"})
    assert failing.count(method="POST") == 3


def test_per_call_policy_opts_post_into_retries(mesh, backend_factory) -> None:
    failing = backend_factory("failing")
    failing.behave(status=503)
    client = mesh(services={"users": service(failing.address)}, policy=RETRY3)
    client.post("http://users/", content=b"x", policy=meshclient.Policy(idempotent=True))
    assert failing.count(method="POST") == 3
    client.get("http://users/", policy=meshclient.Policy(retry=None))
    assert failing.count(method="GET") == 1


@pytest.mark.parametrize("level", ["call", "service", "client"])
def test_idempotent_false_stops_retries_of_a_get(mesh, backend_factory, level: str) -> None:
    """``Policy(idempotent=False)`` overrides the method: a GET that reached a server is
    then sent once, whether the call, its service or the client says so."""
    failing = backend_factory("failing")
    failing.behave(status=503)
    not_idempotent = meshclient.Policy(idempotent=False)
    client = mesh(
        services={
            "users": service(failing.address, policy=not_idempotent if level == "service" else None)
        },
        policy=attrs.evolve(RETRY3, idempotent=False) if level == "client" else RETRY3,
    )
    call_policy = not_idempotent if level == "call" else None
    assert client.get("http://users/", policy=call_policy).status_code == 503
    assert failing.count(method="GET") == 1


def test_idempotent_false_stops_retries_of_a_get_after_a_reset(mesh, backend_factory) -> None:
    """A connection lost after the GET was written is not sent again either."""
    broken = backend_factory("broken")
    broken.behave(close_before_response=True)
    client = mesh(services={"users": service(broken.address)}, policy=RETRY3)
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("http://users/", policy=meshclient.Policy(idempotent=False))
    assert broken.count(method="GET") == 1


def test_idempotent_false_still_requeues_what_was_never_sent(
    mesh, backend_factory, closed_port: int
) -> None:
    """A refused connection sent nothing, so even a non-idempotent call moves on."""
    healthy = backend_factory("healthy")
    client = mesh(
        services={
            "users": service(
                f"127.0.0.1:{closed_port}", healthy.address, balancer=meshclient.RoundRobin()
            )
        },
        policy=attrs.evolve(RETRY3, idempotent=False),
    )
    for _ in range(4):
        assert client.get("http://users/").status_code == 200
    assert healthy.count(method="GET") == 4


def test_generator_body_is_never_resent_after_it_was_consumed(mesh, backend_factory) -> None:
    failing = backend_factory("failing")
    failing.behave(status=503)
    client = mesh(services={"users": service(failing.address)}, policy=RETRY3)
    response = client.post(
        "http://users/", content=client.body(b"a", b"b"), policy=meshclient.Policy(idempotent=True)
    )
    assert response.status_code == 503
    assert failing.count() == 1


def test_connection_closed_before_response_retries_only_idempotent(mesh, backend_factory) -> None:
    broken = backend_factory("broken")
    broken.behave(close_before_response=True)
    client = mesh(services={"users": service(broken.address)}, policy=RETRY3)
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("http://users/", content=b"x")
    assert broken.count(method="POST") == 1
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("http://users/")
    assert broken.count(method="GET") == 3


def test_a_body_cut_short_is_retried_when_the_caller_has_seen_nothing(
    mesh, backend_factory
) -> None:
    """A non-streamed call reads the body within its attempt: a cut is a failed attempt."""
    broken = backend_factory("broken")
    broken.behave(close_mid_response=True)
    client = mesh(services={"users": service(broken.address)}, policy=RETRY3)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        client.get("http://users/")
    assert broken.count() == 3
    assert client.outstanding() == 0
    (endpoint,) = client.snapshot()["services"]["users"]["endpoints"]
    assert endpoint["health"]["consecutive_failures"] == 3  # each cut counted against it


def test_a_streamed_body_cut_short_reaches_the_caller_and_counts_against_the_endpoint(
    mesh, backend_factory
) -> None:
    broken = backend_factory("broken")
    broken.behave(close_mid_response=True)
    client = mesh(services={"users": service(broken.address)}, policy=RETRY3)
    with (
        client.stream("GET", "http://users/") as response,
        pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)),
    ):
        response.read()
    assert broken.count() == 1
    assert client.outstanding() == 0
    (endpoint,) = client.snapshot()["services"]["users"]["endpoints"]
    assert endpoint["health"]["consecutive_failures"] == 1


def test_retry_avoids_the_endpoint_that_just_failed(mesh, backend_factory) -> None:
    """Every call tries each of two failing endpoints once, even where the balancer's own
    order would pick the same endpoint twice in a row.

    Round robin weighted 2:1 over ``heavy`` and ``light`` makes a round of three slots in
    which ``heavy`` holds two neighbouring ones (cyclically). A call of two attempts takes
    two consecutive slots, so over three calls some call starts on the pair (heavy, heavy)
    whatever the starting slot: only the avoidance of the failed endpoint sends its retry to
    ``light``. Outlier ejection is off, so both endpoints stay available throughout.
    """
    heavy, light = backend_factory("heavy"), backend_factory("light")
    for backend in (heavy, light):
        backend.behave(status=503)
    endpoints = [
        meshclient.Endpoint(heavy.host, heavy.port, weight=2.0),
        meshclient.Endpoint(light.host, light.port, weight=1.0),
    ]
    client = mesh(
        services={
            "users": meshclient.Service(endpoints, balancer=meshclient.RoundRobin(), outlier=None)
        },
        policy=meshclient.Policy(
            retry=meshclient.Retry(attempts=2, backoff=0.001, max_backoff=0.001)
        ),
    )
    per_call = []
    for _ in range(6):
        before = heavy.count(), light.count()
        assert client.get("http://users/").status_code == 503
        per_call.append((heavy.count() - before[0], light.count() - before[1]))
    assert per_call == [(1, 1)] * 6


def test_retries_run_out_with_the_last_response(mesh, backends) -> None:
    for backend in backends:
        backend.behave(status=502, body=b"bad gateway")
    client = mesh(services={"users": service(*[b.address for b in backends])}, policy=RETRY3)
    response = client.get("http://users/")
    assert response.status_code == 502
    assert response.content == b"bad gateway"
    assert sum(b.count() for b in backends) == 3
    assert sorted(b.count() for b in backends) == [1, 1, 1]


def test_discarded_responses_are_closed_and_connections_reused(mesh, backend_factory) -> None:
    failing = backend_factory("failing")
    failing.behave(status=503, body=b"x" * 2000)
    client = mesh(services={"users": service(failing.address)}, policy=RETRY3)
    for _ in range(5):
        client.get("http://users/")
    assert failing.count() == 15
    assert client.outstanding() == 0
    assert failing.connections_opened == 1


def test_429_is_retried_only_with_retry_after(mesh, backend_factory) -> None:
    limited = backend_factory("limited")
    limited.behave(status=429)
    client = mesh(services={"users": service(limited.address)}, policy=RETRY3)
    client.get("http://users/")
    assert limited.count() == 1
    limited.reset()
    limited.behave(status=429, retry_after="0")
    client.get("http://users/")
    assert limited.count() == 3


def test_retry_after_is_waited_for(mesh, backend_factory) -> None:
    limited = backend_factory("limited")
    limited.behave(status=503, retry_after="1")
    policy = meshclient.Policy(retry=meshclient.Retry(attempts=2))
    client = mesh(services={"users": service(limited.address)}, policy=policy)
    client.get("http://users/")
    first, second = limited.requests
    # A lower bound (the promised wait; 10 ms for the event loop's timer granularity): a slow
    # machine can only make the gap larger.
    assert second.t - first.t >= 0.99


def test_retry_after_beyond_the_cap_ends_retries(mesh, backend_factory) -> None:
    limited = backend_factory("limited")
    limited.behave(status=503, retry_after="30")
    client = mesh(services={"users": service(limited.address)}, policy=RETRY3)
    assert client.get("http://users/").status_code == 503
    assert limited.count() == 1


def test_empty_budget_means_no_retry(mesh, backend_factory) -> None:
    failing = backend_factory("failing")
    failing.behave(status=503)
    budget = meshclient.RetryBudget(ratio=0.0, min_per_second=0.0, ttl=10)
    client = mesh(services={"users": service(failing.address, retry_budget=budget)}, policy=RETRY3)
    for _ in range(3):
        client.get("http://users/")
    assert failing.count() == 3


def test_every_call_deposits_once_into_the_retry_budget(mesh, backend_factory) -> None:
    """One deposit per logical call, none per attempt; the frozen clock keeps every deposit."""
    failing = backend_factory("failing")
    failing.script(Behaviour(status=503))  # the first call is retried once; the rest succeed
    budget = meshclient.RetryBudget(ratio=1.0, min_per_second=0.0, ttl=10, clock=FakeClock())
    client = mesh(services={"users": service(failing.address, retry_budget=budget)}, policy=RETRY3)
    statuses, deposits = [], []
    for _ in range(4):
        statuses.append(client.get("http://users/").status_code)
        deposits.append(budget.snapshot()["deposits"])
    assert deposits == [1.0, 2.0, 3.0, 4.0]
    assert statuses == [200] * 4  # the first call's deposit paid for its retry
    assert failing.count() == 5
    assert budget.snapshot()["withdrawals"] == 1.0


def test_retries_are_paid_for_by_the_calls_deposits(mesh, backend_factory) -> None:
    """``ratio=1`` and no reserve: each call earns exactly one retry, and only its deposit
    makes that retry possible."""
    failing = backend_factory("failing")
    failing.behave(status=503)
    budget = meshclient.RetryBudget(ratio=1.0, min_per_second=0.0, ttl=10, clock=FakeClock())
    client = mesh(services={"users": service(failing.address, retry_budget=budget)}, policy=RETRY3)
    for _ in range(3):
        assert client.get("http://users/").status_code == 503
    assert failing.count() == 3 * 2  # each call: one attempt and the one retry it paid for
    assert budget.snapshot() == {"deposits": 3.0, "withdrawals": 3.0, "balance": 0.0}


def test_budget_reserve_is_spent_then_retries_stop(mesh, backend_factory) -> None:
    failing = backend_factory("failing")
    failing.behave(status=503)
    budget = meshclient.RetryBudget(ratio=0.0, min_per_second=0.2, ttl=10)  # 2 retries per 10 s
    client = mesh(services={"users": service(failing.address, retry_budget=budget)}, policy=RETRY3)
    for _ in range(4):
        client.get("http://users/")
    assert failing.count() == 4 + 2


def test_requeues_withdraw_from_the_budget(mesh, backend_factory, closed_port: int) -> None:
    healthy = backend_factory("healthy")
    budget = meshclient.RetryBudget(ratio=0.0, min_per_second=0.0, ttl=10)
    client = mesh(
        services={
            "users": service(
                f"127.0.0.1:{closed_port}",
                healthy.address,
                retry_budget=budget,
                balancer=meshclient.RoundRobin(),
            )
        },
        policy=RETRY3,
    )
    outcomes = []
    for _ in range(4):
        try:
            outcomes.append(client.get("http://users/").status_code)
        except httpx.ConnectError:
            outcomes.append("refused")
    assert outcomes.count("refused") == 2
    assert healthy.count() == 2
