"""The rules for each way an attempt ends, as properties on virtual time.

For random sequences of attempts that take random times and end every way an attempt can (an
answer, a 5xx, a network error, the mesh's own timeout, the caller going away):

- the balancer's latency estimate of the endpoint is never below the time the attempt ran,
  cut-off attempts included (they took at least that long);
- endpoint health counts 5xx, errors and the mesh's timeouts as failures, answers as
  successes, and a caller going away as nothing at all.
"""

from __future__ import annotations

import contextlib
import random
from typing import Any

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

import meshclient
from meshclient.testing import FakeClock

ENDPOINTS = ["127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003"]
ATTEMPT_BOUND = 1.0
ENDINGS = st.sampled_from(["ok", "5xx", "error", "mesh_timeout", "cancel"])
ATTEMPTS = st.lists(st.tuples(ENDINGS, st.floats(0.001, 0.9)), min_size=1, max_size=25)


@settings(max_examples=150)
@given(ATTEMPTS)
def test_every_ending_follows_its_rule(attempts: list[tuple[str, float]]) -> None:
    clock = FakeClock(50.0)
    served: list[str] = []
    script: list[tuple[str, float]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        served.append(request.url.netloc.decode())
        ending, took = script.pop()
        if ending == "mesh_timeout":
            clock.advance(ATTEMPT_BOUND + took)
            raise httpx.ReadTimeout("cut off at the attempt's deadline", request=request)
        clock.advance(took)
        if ending == "ok":
            return httpx.Response(200)
        if ending == "5xx":
            return httpx.Response(500)
        if ending == "error":
            raise httpx.ReadError("connection reset", request=request)
        raise KeyboardInterrupt  # the caller goes away

    # Counting only: no ejection, so every outcome is visible in the counters.
    outlier = meshclient.OutlierDetection(
        consecutive_failures=None, success_rate=None, latency_factor=None
    )
    transport = meshclient.MeshTransport(
        {"users": meshclient.Service(ENDPOINTS, outlier=outlier)},
        policy=meshclient.Policy(timeout=meshclient.Timeout(attempt=ATTEMPT_BOUND), retry=None),
        transport=httpx.MockTransport(handler),
        clock=clock,
        rng=random.Random(1),
    )
    streak = dict.fromkeys(ENDPOINTS, 0)
    with httpx.Client(transport=transport) as http:
        for ending, took in attempts:
            script.append((ending, took))
            start = clock()
            with contextlib.suppress(httpx.HTTPError, KeyboardInterrupt):
                http.get("http://users/")
            ran = clock() - start
            endpoint = served[-1]
            state = describe(transport, endpoint)
            assert state["latency_estimate"] >= ran - 1e-9, (ending, ran, state)
            if ending == "ok":
                streak[endpoint] = 0
            elif ending != "cancel":
                streak[endpoint] += 1
            assert state["health"]["consecutive_failures"] == streak[endpoint], ending


def describe(transport: meshclient.MeshTransport, address: str) -> dict[str, Any]:
    endpoints = transport.snapshot()["services"]["users"]["endpoints"]
    (state,) = [e for e in endpoints if e["address"] == address]
    return state
