"""RateLimiter: a token bucket per service, on a fake clock; never more than it promises."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

import meshclient
from meshclient.stack import Sleep
from meshclient.testing import FakeClock


class FakeCall:
    """The two things a rate limiter reads of a call."""

    def __init__(self, left: float | None = None) -> None:
        self.service = "users"
        self.request = httpx.Request("GET", "http://users/")
        self._left = left

    def time_left(self) -> float | None:
        return self._left


def admit(limiter: meshclient.RateLimiter, call: Any = None) -> Any:
    return limiter.admit(call or FakeCall())


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"rate": 0}, ValueError, "RateLimiter.rate must be a finite number .* got 0"),
        ({"rate": float("inf")}, ValueError, "RateLimiter.rate .* inf"),
        ({"rate": 5, "burst": 0}, ValueError, "RateLimiter.burst must be an int >= 1, got 0"),
        ({"rate": 5, "burst": 1.5}, TypeError, "RateLimiter.burst"),
        ({"rate": 5, "max_wait": -1}, ValueError, "RateLimiter.max_wait .* -1"),
        ({"rate": 5, "clock": 3}, TypeError, "RateLimiter.clock"),
    ],
)
def test_bad_settings_fail_at_construction(kwargs, error, message) -> None:
    with pytest.raises(error, match=message):
        meshclient.RateLimiter(**kwargs)


def test_a_burst_goes_through_then_calls_are_rejected_naming_the_wait() -> None:
    clock = FakeClock()
    limiter = meshclient.RateLimiter(10, burst=3, clock=clock)
    assert [admit(limiter) for _ in range(3)] == [None, None, None]
    with pytest.raises(meshclient.RateLimitedError, match="rate limit of service 'users'") as info:
        admit(limiter)
    assert info.value.retry_after == pytest.approx(0.1)
    assert isinstance(info.value, meshclient.MeshError)
    clock.advance(0.1)
    assert admit(limiter) is None


def test_a_waiting_call_reserves_the_next_permit_in_order() -> None:
    clock = FakeClock()
    limiter = meshclient.RateLimiter(10, burst=1, max_wait=1.0, clock=clock)
    assert admit(limiter) is None
    first, second = admit(limiter), admit(limiter)
    assert isinstance(first, Sleep)
    assert isinstance(second, Sleep)
    assert (first.seconds, second.seconds) == (pytest.approx(0.1), pytest.approx(0.2))


def test_a_wait_longer_than_the_deadline_is_rejected_at_once() -> None:
    limiter = meshclient.RateLimiter(1, burst=1, max_wait=None, clock=FakeClock())
    admit(limiter)
    with pytest.raises(meshclient.RateLimitedError):
        admit(limiter, FakeCall(left=0.5))
    assert isinstance(admit(limiter, FakeCall(left=1.5)), Sleep)


def test_a_cancelled_waiter_gives_its_permit_back() -> None:
    clock = FakeClock()
    limiter = meshclient.RateLimiter(10, burst=1, max_wait=1.0, clock=clock)
    admit(limiter)
    waiter = admit(limiter)
    assert limiter.snapshot()["tokens"] == pytest.approx(-1.0)
    waiter.on_cancel()
    assert limiter.snapshot()["tokens"] == pytest.approx(0.0)


@given(
    rate=st.floats(0.5, 50),
    burst=st.integers(1, 10),
    steps=st.lists(st.floats(0, 0.5), max_size=60),
)
def test_never_more_permits_than_burst_plus_rate_times_time(rate, burst, steps) -> None:
    clock = FakeClock()
    limiter = meshclient.RateLimiter(rate, burst=burst, clock=clock)
    for granted, step in enumerate(steps, start=1):
        clock.advance(step)
        wait = refused_for(limiter)
        if wait is not None:
            # The promised wait is honest: after it, the next call gets its permit.
            assert 0 < wait <= 1 / rate + 1e-9
            clock.advance(wait)
            assert refused_for(limiter) is None
        assert granted <= burst + rate * clock() + 1e-6


def refused_for(limiter: meshclient.RateLimiter) -> float | None:
    """``None`` if a call got a permit, else the wait its rejection promised."""
    try:
        admit(limiter)
    except meshclient.RateLimitedError as error:
        return error.retry_after
    return None


def test_a_rate_limited_service_rejects_beyond_its_burst() -> None:
    limiter = meshclient.RateLimiter(0.5, burst=2)
    transport = meshclient.MeshTransport(
        {"users": meshclient.Service(["127.0.0.1:8001"], rate_limit=limiter)},
        transport=httpx.MockTransport(lambda request: httpx.Response(200)),
    )
    with httpx.Client(transport=transport) as http:
        assert http.get("http://users/").status_code == 200
        assert http.get("http://users/").status_code == 200
        with pytest.raises(meshclient.RateLimitedError):
            http.get("http://users/")
        snapshot = transport.snapshot()["services"]["users"]["rate_limit"]
    assert snapshot["rejected"] == 1


@pytest.mark.parametrize(("rate", "burst"), [(0.5, 1), (1, 1), (2.5, 3), (10, 10)])
def test_default_burst_is_one_seconds_worth_and_at_least_one(rate: float, burst: int) -> None:
    assert meshclient.RateLimiter(rate).burst == burst


@pytest.mark.parametrize("max_wait", [-1, float("inf")])
def test_a_bad_max_wait_names_the_requirement(max_wait: float) -> None:
    message = (
        f"RateLimiter.max_wait must be a finite number of seconds >= 0 or None, got {max_wait!r}"
    )
    with pytest.raises(ValueError, match=r"RateLimiter\.max_wait") as info:
        meshclient.RateLimiter(5, max_wait=max_wait)
    assert str(info.value) == message


def test_a_rejection_carries_the_calls_request() -> None:
    limiter = meshclient.RateLimiter(1, burst=1, clock=FakeClock())
    call = FakeCall()
    limiter.admit(call)  # type: ignore[arg-type]
    with pytest.raises(meshclient.RateLimitedError) as info:
        limiter.admit(call)  # type: ignore[arg-type]
    assert info.value.request is call.request


def test_a_wait_of_exactly_max_wait_is_granted() -> None:
    limiter = meshclient.RateLimiter(10, burst=1, max_wait=0.1, clock=FakeClock())
    assert limiter.admit(FakeCall()) is None  # type: ignore[arg-type]
    waiter = limiter.admit(FakeCall())  # type: ignore[arg-type]
    assert isinstance(waiter, Sleep)
    assert waiter.seconds == 0.1


def test_a_permit_short_of_whole_only_by_float_rounding_is_granted() -> None:
    """The refill's epsilon: a bucket 1e-9 short of a permit grants it without waiting."""
    clock = FakeClock()
    limiter = meshclient.RateLimiter(1, burst=1, clock=clock)
    assert limiter.admit(FakeCall()) is None  # type: ignore[arg-type]
    clock.advance(1.0 - 1e-9)
    assert limiter.admit(FakeCall()) is None  # type: ignore[arg-type]


def test_every_rejection_is_counted() -> None:
    limiter = meshclient.RateLimiter(1, burst=1, clock=FakeClock())
    limiter.admit(FakeCall())  # type: ignore[arg-type]
    for _ in range(3):
        with pytest.raises(meshclient.RateLimitedError):
            limiter.admit(FakeCall())  # type: ignore[arg-type]
    assert limiter.snapshot()["rejected"] == 3


def test_a_permit_given_back_never_fills_the_bucket_past_burst() -> None:
    clock = FakeClock()
    limiter = meshclient.RateLimiter(10, burst=1, max_wait=1.0, clock=clock)
    limiter.admit(FakeCall())  # type: ignore[arg-type]
    waiter = limiter.admit(FakeCall())  # type: ignore[arg-type]
    assert isinstance(waiter, Sleep)
    assert waiter.on_cancel is not None
    clock.advance(5.0)  # the bucket refilled to its burst meanwhile
    waiter.on_cancel()
    assert limiter.snapshot()["tokens"] == 1.0


def test_snapshot_names_settings_tokens_and_rejections() -> None:
    limiter = meshclient.RateLimiter(4, burst=2, max_wait=0.5, clock=FakeClock())
    limiter.admit(FakeCall())  # type: ignore[arg-type]
    assert limiter.snapshot() == {
        "rate": 4.0,
        "burst": 2,
        "max_wait": 0.5,
        "tokens": 1.0,
        "rejected": 0,
    }


def test_a_rate_limited_error_raised_by_hand_says_no_wait_unless_told() -> None:
    """Users' own admission rules and fakes raise ``RateLimitedError`` too: without
    ``retry_after`` it claims no wait (0.0), and the ``MeshError`` fields keep their defaults."""
    request = httpx.Request("GET", "http://users/")
    error = meshclient.RateLimitedError("slow down", request=request)
    assert (error.retry_after, error.attempts, error.endpoints) == (0.0, 0, ())
    assert error.request is request
    assert str(error) == "slow down"
    assert meshclient.RateLimitedError("slow down", retry_after=2.5).retry_after == 2.5
