"""Specification of client-side adaptive throttling (Google SRE book, "Handling Overload")."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

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
