"""The rules for each way an attempt ends, as properties on virtual time.

For random sequences of attempts that take random times and end every way an attempt can (an
answer, a 5xx, a network error, the mesh's own timeout, the caller going away):

- the balancer's latency estimate of the endpoint is never below the time the attempt ran,
  cut-off attempts included (they took at least that long);
- endpoint health counts 5xx, errors and the mesh's timeouts as failures, answers as
  successes, and a caller going away as nothing at all.

And by example: a cut-off by a deadline inherited from the caller's caller is no evidence
against the endpoint (nor the service), and a streamed body that breaks after its response
was delivered turns that attempt's outcome into a failure.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import meshclient
from meshclient.stack import Attempt, AttemptModule
from meshclient.testing import FakeClock

from helpers import CallEnds

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


# -- by example ------------------------------------------------------------------------------


class Seen(AttemptModule):
    """What ``on_outcome`` saw of each attempt: status, error, its cause, ``timed_out``."""

    role = "seen"

    def __init__(self) -> None:
        self.outcomes: list[tuple[int | None, str | None, str | None, bool, float | None]] = []

    def on_outcome(self, attempt: Attempt) -> None:
        error = attempt.error
        name = cause = None
        if error is not None:
            name = type(error).__name__
            cause = None if error.__cause__ is None else type(error.__cause__).__name__
        self.outcomes.append((attempt.status, name, cause, attempt.timed_out, attempt.ended_at))


def mesh(
    handler: Callable[[httpx.Request], httpx.Response],
    clock: FakeClock,
    policy: meshclient.Policy,
    seen: Seen,
    ends: CallEnds,
) -> meshclient.MeshTransport:
    outlier = meshclient.OutlierDetection(
        consecutive_failures=None, success_rate=None, latency_factor=None
    )
    stack = meshclient.DEFAULT_STACK.insert_before("fallback", ends).insert_after(
        "attempt_timeout", seen
    )
    return meshclient.MeshTransport(
        {"users": meshclient.Service(ENDPOINTS, outlier=outlier)},
        policy=policy,
        stack=stack,
        transport=httpx.MockTransport(handler),
        clock=clock,
        rng=random.Random(1),
    )


@contextlib.contextmanager
def limited(deadline: str) -> Iterator[meshclient.Policy]:
    """The call's 1 s budget: its own ``Timeout.total``, or inherited from the request being
    handled (``deadline_scope``, as the middleware sets it)."""
    if deadline == "total":
        yield meshclient.Policy(timeout=meshclient.Timeout(total=1.0), retry=None)
    else:
        with meshclient.deadline_scope(1.0):
            yield meshclient.Policy(timeout=None, retry=None)


MESSAGES = {
    "total": "deadline of 1.0s exceeded after 1 attempt(s) to service 'users'",
    "inherited": "the deadline inherited from the request being handled exceeded after 1 "
    "attempt(s) to service 'users'",
}


@pytest.mark.parametrize(("deadline", "failures"), [("total", 1), ("inherited", 0)])
def test_a_cut_off_by_an_inherited_deadline_is_no_evidence(deadline, failures) -> None:
    """Cut off by its own ``Timeout.total``, the endpoint was too slow: a failure. Cut off by
    the deadline its caller's caller chose, it says nothing about the endpoint or the service.
    Either way the error names the deadline that ran out."""
    clock = FakeClock(time.monotonic())  # an inherited deadline is in time.monotonic() seconds
    served: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        served.append(request.url.netloc.decode())
        clock.advance(5.0)
        raise httpx.ReadTimeout("cut off", request=request)

    seen, ends = Seen(), CallEnds()
    with limited(deadline) as policy:
        transport = mesh(handler, clock, policy, seen, ends)
        with (
            httpx.Client(transport=transport) as http,
            pytest.raises(meshclient.DeadlineExceeded) as info,
        ):
            http.get("http://users/")
    assert str(info.value) == MESSAGES[deadline]
    assert (info.value.attempts, info.value.endpoints) == (1, tuple(served))
    assert info.value.elapsed == pytest.approx(5.0)
    assert [outcome[:4] for outcome in seen.outcomes] == [
        (None, "DeadlineExceeded", "ReadTimeout", True)
    ]
    health = describe(transport, served[0])["health"]
    assert health["consecutive_failures"] == failures
    (call,) = ends.calls
    assert (call.error, call.evidence) == (info.value, deadline == "total")
    assert call.deadline_inherited is (deadline == "inherited")


class Body(httpx.SyncByteStream):
    """A body that sends a first part, then breaks the way ``fail`` says."""

    def __init__(self, fail: Callable[[], None]) -> None:
        self.fail = fail

    def __iter__(self) -> Iterator[bytes]:
        yield b"first part"
        self.fail()


@pytest.mark.parametrize(
    ("deadline", "ending"),
    [("total", "error"), ("total", "timeout"), ("inherited", "timeout")],
)
def test_a_streamed_body_that_breaks_fails_its_attempt(deadline, ending) -> None:
    """The response was delivered (a success so far); its body then breaks while the caller
    reads it. The caller gets the error (a network error as itself, even past the deadline;
    a timeout at the deadline as ``DeadlineExceeded``), the call ends as failed, and the
    endpoint's health counts the failure, unless an inherited deadline cut it off."""
    clock = FakeClock(time.monotonic())
    start = clock()
    served: list[str] = []

    def fail() -> None:
        if ending == "error":
            clock.advance(2.0)  # past the deadline, but the connection broke: not a timeout
            raise httpx.ReadError("connection reset")
        if deadline == "total":
            clock.set(start + 1.0)  # exactly the deadline
        else:
            clock.advance(5.0)
        raise httpx.ReadTimeout("cut off")

    def handler(request: httpx.Request) -> httpx.Response:
        served.append(request.url.netloc.decode())
        return httpx.Response(200, stream=Body(fail))

    seen, ends = Seen(), CallEnds()
    expected: type[Exception] = (
        httpx.ReadError if ending == "error" else meshclient.DeadlineExceeded
    )
    with limited(deadline) as policy:
        transport = mesh(handler, clock, policy, seen, ends)
        with httpx.Client(transport=transport) as http, pytest.raises(expected) as info:
            http.get("http://users/")
    error = info.value
    broke = clock()
    if ending == "error":
        assert str(error) == "connection reset"
        second = (200, "ReadError", None, False, broke)
    else:
        assert str(error) == MESSAGES[deadline]
        assert (error.attempts, error.endpoints) == (1, tuple(served))  # type: ignore[attr-defined]
        assert error.elapsed == pytest.approx(broke - start)  # type: ignore[attr-defined]
        second = (200, "DeadlineExceeded", "ReadTimeout", True, broke)
    assert seen.outcomes == [(200, None, None, False, start), second]
    state = describe(transport, served[0])
    assert state["outstanding"] == 0
    assert state["health"]["consecutive_failures"] == (deadline == "total")
    (call,) = ends.calls
    assert (call.outcome, call.status, call.error) == ("error", 200, error)
