"""Deadlines are wall-clock bounds, against servers that trickle their answer a byte at a time.

Every single read returns quickly; only the whole is slow. The bounds checked here are
deliberately generous (the call's total plus 0.25 s, or more): what matters is that a call
ends near its deadline instead of after the seconds the trickle takes. Exact figures are the
benchmark's business.
"""

from __future__ import annotations

import pytest

import meshclient

#: Allowed lateness of a call past its deadline, in these tests (scheduling, a slow machine).
SLACK = 0.25


def trickling(backend_factory, **behaviour: float) -> meshclient.testing.Backend:
    backend = backend_factory("trickling")
    backend.behave(body=b"x" * 400, **behaviour)  # 400 bytes: 4 s at 10 ms a byte
    return backend


@pytest.mark.parametrize("part", ["trickle_head", "trickle_body"])
def test_a_trickling_answer_cannot_stretch_a_call_past_its_total(
    mesh, backend_factory, part: str
) -> None:
    backend = trickling(backend_factory, **{part: 0.01})
    client = mesh(
        services={"users": [backend.address]},
        policy=meshclient.Policy(timeout=0.5, retry=None),
    )
    with pytest.raises(meshclient.DeadlineExceeded) as info:
        client.get("http://users/")
    assert info.value.attempts == 1
    assert 0.5 <= info.value.elapsed <= 0.5 + SLACK
    assert client.outstanding() == 0


@pytest.mark.parametrize("part", ["trickle_head", "trickle_body"])
def test_an_attempt_timeout_cuts_a_trickle_and_the_retry_succeeds_elsewhere(
    mesh, backend_factory, part: str
) -> None:
    slow = trickling(backend_factory, **{part: 0.01})
    healthy = backend_factory("healthy")
    client = mesh(
        services={
            "users": meshclient.Service(
                [slow.address, healthy.address], balancer=meshclient.RoundRobin()
            )
        },
        policy=meshclient.Policy(
            timeout=meshclient.Timeout(total=5.0, attempt=0.3),
            retry=meshclient.Retry(attempts=2, backoff=0.001, max_backoff=0.002),
        ),
    )
    for _ in range(4):
        assert client.get("http://users/").status_code == 200
    # Round robin's turn comes to the trickler at least every other attempt: each time, the
    # attempt is cut at 0.3 s and the call is retried on the healthy endpoint.
    assert slow.count() >= 3
    assert healthy.count() == 4


def test_a_streamed_body_is_bounded_by_the_calls_total(mesh, backend_factory) -> None:
    """gRPC and Envoy bound the whole exchange: a stream's body too, by ``Timeout.total``."""
    backend = trickling(backend_factory, trickle_body=0.01)
    client = mesh(
        services={"users": [backend.address]},
        policy=meshclient.Policy(timeout=meshclient.Timeout(total=0.5, attempt=0.3)),
    )
    with (
        client.stream("GET", "http://users/") as response,
        pytest.raises(meshclient.DeadlineExceeded) as info,
    ):
        response.read()
    assert 0.5 <= info.value.elapsed <= 0.5 + SLACK
    assert client.outstanding() == 0


def test_an_inherited_deadline_bounds_a_trickle_too(mesh, backend_factory) -> None:
    backend = trickling(backend_factory, trickle_head=0.01)
    client = mesh(services={"users": [backend.address]}, policy=meshclient.Policy(retry=None))
    with pytest.raises(meshclient.DeadlineExceeded) as info:
        client.get_within(0.4, "http://users/")
    # The scope's clock starts just before the call's own (``elapsed`` counts from the call).
    assert 0.4 - SLACK <= info.value.elapsed <= 0.4 + SLACK
    assert client.outstanding() == 0
