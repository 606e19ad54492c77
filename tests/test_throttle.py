"""Specification of client-side adaptive throttling (Google SRE book, "Handling Overload")."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshclient._exceptions import ThrottledError
from meshclient._throttle import AdaptiveThrottle
from meshclient.testing import FakeClock

from helpers import ConstantRandom


def test_bad_configuration_names_class_field_and_value() -> None:
    with pytest.raises(
        ValueError, match=r"AdaptiveThrottle\.k must be a finite number >= 1, got 0.5"
    ):
        AdaptiveThrottle(k=0.5)
    with pytest.raises(ValueError, match=r"AdaptiveThrottle\.window"):
        AdaptiveThrottle(window=0)


def test_a_healthy_backend_is_never_throttled() -> None:
    t = AdaptiveThrottle(clock=FakeClock(), rng=ConstantRandom(0.0))
    for _ in range(1000):
        assert t.allow()
        t.record(True)
    assert t.rejection_probability() == 0.0


@given(requests=st.integers(0, 300), accepts=st.integers(0, 300), k=st.floats(1, 4))
def test_rejection_probability_matches_the_formula(requests: int, accepts: int, k: float) -> None:
    accepts = min(accepts, requests)
    t = AdaptiveThrottle(k=k, clock=FakeClock(), rng=ConstantRandom(0.999999))
    for i in range(requests):
        t.allow()
        t.record(i < accepts)
    expected = max(0.0, (requests - k * accepts) / (requests + 1))
    assert t.rejection_probability() == pytest.approx(expected)


@given(value=st.floats(0, 0.999))
def test_allow_rejects_with_that_probability(value: float) -> None:
    t = AdaptiveThrottle(clock=FakeClock(), rng=ConstantRandom(value))
    for _ in range(9):
        t.allow()  # 9 requests, 0 accepts: p = 9 / 10 (unless the draw rejects, still counted)
    assert t.allow() == (value >= 0.9)


def test_locally_rejected_requests_still_count_as_requests() -> None:
    t = AdaptiveThrottle(clock=FakeClock(), rng=ConstantRandom(0.0))
    for _ in range(4):
        t.allow()
    assert t.snapshot()["requests"] == 4
    assert t.snapshot()["throttled_total"] == 3  # p was 0 only for the first


def test_one_failure_at_a_low_rate_rejects_half() -> None:
    """The + 1: after one unaccepted request of one, p = 1/2, never 1."""
    t = AdaptiveThrottle(clock=FakeClock())
    t.allow()
    t.record(False)
    assert t.rejection_probability() == 0.5


def test_min_requests_suppresses_throttling_below_it() -> None:
    t = AdaptiveThrottle(min_requests=10, clock=FakeClock())
    for _ in range(9):
        t.allow()
    assert t.rejection_probability() == 0.0


def test_history_older_than_the_window_is_forgotten() -> None:
    clock = FakeClock()
    t = AdaptiveThrottle(window=120.0, clock=clock)
    for _ in range(50):
        t.allow()
    clock.advance(132.0)  # window + one bucket
    assert t.rejection_probability() == 0.0
    assert t.snapshot()["requests"] == 0


def test_snapshot_is_json_able() -> None:
    t = AdaptiveThrottle(clock=FakeClock())
    json.dumps(t.snapshot())
    assert "rejection_probability=0.000" in repr(t)


def test_defaults_are_the_books() -> None:
    t = AdaptiveThrottle()
    assert (t.k, t.window, t.min_requests) == (2.0, 120.0, 0)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"k": float("inf")},
            ValueError,
            "AdaptiveThrottle.k must be a finite number >= 1, got inf",
        ),
        ({"k": "2"}, TypeError, "AdaptiveThrottle.k must be a finite number >= 1, got '2'"),
        (
            {"window": float("inf")},
            ValueError,
            "AdaptiveThrottle.window must be a finite number of seconds > 0, got inf",
        ),
        (
            {"window": 0},
            ValueError,
            "AdaptiveThrottle.window must be a finite number of seconds > 0, got 0",
        ),
        (
            {"min_requests": True},
            TypeError,
            "AdaptiveThrottle.min_requests must be an int >= 0, got True",
        ),
        (
            {"min_requests": -1},
            ValueError,
            "AdaptiveThrottle.min_requests must be an int >= 0, got -1",
        ),
        (
            {"clock": 3},
            TypeError,
            "AdaptiveThrottle.clock must be a callable returning seconds, got 3",
        ),
        ({"rng": 3}, TypeError, "AdaptiveThrottle.rng must be a random.Random instance, got 3"),
    ],
)
def test_bad_configuration_says_what_is_required(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        AdaptiveThrottle(**kwargs)
    assert str(info.value) == message


def test_a_window_under_a_second_is_valid() -> None:
    assert AdaptiveThrottle(window=0.5).window == 0.5


def test_min_requests_counts_from_the_request_that_reaches_it() -> None:
    t = AdaptiveThrottle(min_requests=3, clock=FakeClock(), rng=ConstantRandom(0.999999))
    for _ in range(3):
        t.allow()
    assert t.rejection_probability() == 0.75


class CountingRandom(random.Random):
    """Draws ``value`` and counts the draws."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value
        self.draws = 0

    def random(self) -> float:
        self.draws += 1
        return self.value


def test_the_rng_is_drawn_only_when_the_probability_is_above_zero() -> None:
    rng = CountingRandom(0.0)
    t = AdaptiveThrottle(clock=FakeClock(), rng=rng)
    t.allow()
    t.record(True)
    t.allow()  # p = (1 - 2) / 2 < 0
    assert rng.draws == 0
    t.record(False)
    t.allow()  # p = (2 - 2) / 3 = 0
    assert rng.draws == 0


def test_a_draw_equal_to_the_probability_lets_the_request_through() -> None:
    t = AdaptiveThrottle(clock=FakeClock(), rng=ConstantRandom(0.5))
    t.allow()
    t.record(False)  # p = 1/2
    assert t.allow()


# -- the window, against a direct count of what was recorded in its buckets -----------------

STEPS = st.sampled_from([0.0, 0.5, 6.0, 11.5, 12.0, 12.5, 60.0, 120.0, 131.5, 132.0, 144.0])


@given(
    start=st.sampled_from([0.0, 6.0, 1_000.0]),
    events=st.lists(st.tuples(STEPS, st.sampled_from(["allow", "accept", "refuse"])), max_size=40),
)
def test_window_counts_exactly_the_requests_and_accepts_of_its_buckets(
    start: float, events: list[tuple[float, str]]
) -> None:
    """Buckets of ``window / 10`` seconds aligned on the clock: the current one and the ten
    before it count."""
    clock = FakeClock(start)
    t = AdaptiveThrottle(window=120.0, clock=clock, rng=ConstantRandom(0.999999))
    requests: list[int] = []
    accepts: list[int] = []
    for step, event in events:
        clock.advance(step)
        bucket = math.floor(clock() / 12.0)
        if event == "allow":
            t.allow()
            requests.append(bucket)
        else:
            t.record(event == "accept")
            if event == "accept":
                accepts.append(bucket)
        now = math.floor(clock() / 12.0)
        in_window_requests = sum(1 for b in requests if b > now - 11)
        in_window_accepts = sum(1 for b in accepts if b > now - 11)
        assert t.snapshot()["requests"] == in_window_requests
        assert t.snapshot()["accepts"] == in_window_accepts
        expected = max(0.0, (in_window_requests - 2 * in_window_accepts) / (in_window_requests + 1))
        assert t.rejection_probability() == pytest.approx(expected)


def test_a_bucket_leaving_the_window_takes_all_its_requests_and_accepts() -> None:
    clock = FakeClock()
    t = AdaptiveThrottle(clock=clock)
    for _ in range(3):
        t.allow()
        t.record(True)
    clock.advance(6.0)  # same bucket
    t.allow()
    clock.set(10 * 12.0 + 6.0)  # bucket 10: bucket 0 is the oldest in the window
    assert (t.snapshot()["requests"], t.snapshot()["accepts"]) == (4, 3)
    clock.set(11 * 12.0)  # bucket 11: bucket 0 leaves
    assert (t.snapshot()["requests"], t.snapshot()["accepts"]) == (0, 0)


@pytest.mark.parametrize("event", ["allow", "accept"])
def test_what_happens_at_a_buckets_first_instant_counts_in_that_bucket(event: str) -> None:
    clock = FakeClock()
    t = AdaptiveThrottle(clock=clock)
    clock.set(12.0)  # the first instant of bucket 1
    if event == "allow":
        t.allow()
    else:
        t.record(True)
    clock.set(11 * 12.0)  # bucket 11: bucket 0 leaves, bucket 1 stays
    figures = t.snapshot()
    assert figures["requests" if event == "allow" else "accepts"] == 1


@pytest.mark.parametrize("read", ["snapshot", "rejection_probability"])
def test_a_bucket_leaves_at_the_first_instant_of_the_bucket_eleven_later(read: str) -> None:
    clock = FakeClock()
    t = AdaptiveThrottle(clock=clock)
    t.allow()  # bucket 0: p = 1/2 from now on
    clock.set(10 * 12.0)
    assert t.rejection_probability() == 0.5  # bucket 10: still in the window
    clock.set(11 * 12.0)  # bucket 11's first instant
    if read == "snapshot":
        assert t.snapshot()["requests"] == 0
    else:
        assert t.rejection_probability() == 0.0


def test_a_bucket_starts_at_its_edge_even_when_float_division_puts_the_edge_a_hair_before() -> None:
    """window 7 s: buckets of 0.7 s; 3 * 0.7 / 0.7 computes to 2.9999999999999996."""
    clock = FakeClock(1.5)  # bucket 2
    t = AdaptiveThrottle(window=7.0, clock=clock)
    clock.set(3 * 0.7)  # the first instant of bucket 3, as the throttle computes it
    t.allow()
    clock.set(9.5)  # bucket 13: bucket 2 has left the window, bucket 3 has not
    assert t.snapshot()["requests"] == 1


# -- a call that never reached the backend is forgotten ----------------------------------------


class FakeCall:
    """What the throttle reads of a call (the Admission protocol)."""

    def __init__(
        self,
        outcome: str = "success",
        status: int | None = 200,
        *,
        evidence: bool = True,
        rejected: bool = False,
    ) -> None:
        self.service = "users"
        self.request = httpx.Request("GET", "http://users/")
        self.outcome = outcome
        self.status = status
        self.evidence = evidence
        self.rejected = rejected


def test_forgetting_takes_the_request_off_the_newest_bucket_that_has_one() -> None:
    clock = FakeClock()
    t = AdaptiveThrottle(clock=clock)
    t.allow()  # bucket 0
    clock.advance(12.0)
    t.allow()  # bucket 1
    clock.advance(12.0)  # bucket 2 has none: bucket 1's request is taken back
    t.release(FakeCall(evidence=False))  # type: ignore[arg-type]
    assert t.snapshot()["requests"] == 1
    clock.set(11 * 12.0)  # bucket 11: bucket 0 left the window with the request that was left
    assert t.snapshot()["requests"] == 0
    clock.set(12 * 12.0)  # bucket 12: bucket 1, emptied by the forgetting, leaves
    assert t.snapshot()["requests"] == 0


def test_forgetting_at_a_buckets_first_instant_sees_the_window_of_that_instant() -> None:
    """An acceptance leaving the window at that instant no longer covers a request."""
    clock = FakeClock()
    t = AdaptiveThrottle(clock=clock)
    t.record(True)  # bucket 0: an acceptance of a request made before the window
    clock.set(5 * 12.0)
    t.allow()  # bucket 5: unanswered
    clock.set(10 * 12.0)
    t.snapshot()
    clock.set(11 * 12.0)  # bucket 11's first instant: bucket 0 leaves
    t.release(FakeCall(evidence=False))  # type: ignore[arg-type]
    assert t.snapshot()["requests"] == 0


def test_forgetting_wraps_around_the_ring_of_buckets() -> None:
    clock = FakeClock(10 * 12.0)  # bucket 10: the last slot of the ring
    t = AdaptiveThrottle(clock=clock)
    t.allow()
    clock.advance(12.0)  # bucket 11: slot 0
    t.release(FakeCall(evidence=False))  # type: ignore[arg-type]
    assert t.snapshot()["requests"] == 0
    clock.advance(12.0)
    assert t.snapshot()["requests"] == 0


def test_nothing_is_forgotten_once_every_request_was_answered() -> None:
    clock = FakeClock()
    t = AdaptiveThrottle(clock=clock)
    t.allow()
    t.record(True)
    t.release(FakeCall(evidence=False))  # type: ignore[arg-type]
    assert t.snapshot()["requests"] == 1


# -- the Admission protocol --------------------------------------------------------------------


def test_a_throttled_call_is_rejected_with_its_request_and_the_reason() -> None:
    t = AdaptiveThrottle(clock=FakeClock(), rng=ConstantRandom(0.0))
    call = FakeCall()
    t.admit(call)  # type: ignore[arg-type]  # p = 0: let in
    t.release(FakeCall("error", None))  # type: ignore[arg-type]
    with pytest.raises(ThrottledError) as info:
        t.admit(call)  # type: ignore[arg-type]
    assert str(info.value) == (
        "service 'users' is rejecting calls locally: too few of the recent ones were accepted "
        "(adaptive throttling)"
    )
    assert info.value.request is call.request


@pytest.mark.parametrize(
    ("call", "requests", "accepts"),
    [
        (FakeCall("success", 200), 1, 1),
        (FakeCall("success", 404), 1, 1),
        (FakeCall("server_error", 500), 1, 0),
        (FakeCall("success", 429), 1, 0),
        (FakeCall("server_error", 503), 1, 0),
        (FakeCall("error", None), 1, 0),
        (FakeCall("error", None, evidence=False, rejected=True), 1, 0),
        (FakeCall("cancelled", None, evidence=False), 0, 0),
        (FakeCall("error", None, evidence=False), 0, 0),
    ],
)
def test_release_counts_what_the_backend_accepted_and_forgets_what_never_reached_it(
    call: FakeCall, requests: int, accepts: int
) -> None:
    """Accepted: a successful call but a 429; refused: 429, 503, a 5xx, an error, a call a
    module below rejected (a breaker); never counted: a call that never reached the backend."""
    t = AdaptiveThrottle(clock=FakeClock())
    t.admit(call)  # type: ignore[arg-type]
    t.release(call)  # type: ignore[arg-type]
    snapshot = t.snapshot()
    assert (snapshot["requests"], snapshot["accepts"]) == (requests, accepts)
