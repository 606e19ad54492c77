"""RateLimiter behaviours pinned for mutation testing (`nox -s mutants`): edges of the bucket,
its defaults and what it reports, which tests/test_ratelimit.py leaves open."""

from __future__ import annotations

import httpx
import pytest

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
