"""Specification of the circuit breaker: resilience4j's transition table, the Hystrix preset."""

from __future__ import annotations

import json
import math
from collections import deque

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshclient._breaker import CLOSED, HALF_OPEN, OPEN, BreakerTransition, CircuitBreaker
from meshclient._exceptions import CircuitOpenError
from meshclient.testing import FakeClock


def breaker(clock: FakeClock, **kwargs: object) -> CircuitBreaker:
    settings_: dict[str, object] = {
        "window_size": 10,
        "minimum_calls": 4,
        "failure_rate": 0.5,
        "slow_call_duration": 1.0,
        "slow_call_rate": 1.0,
        "open_duration": 30.0,
        "half_open_calls": 3,
    }
    settings_.update(kwargs)
    return CircuitBreaker(clock=clock, **settings_)  # type: ignore[arg-type]


def run(b: CircuitBreaker, outcomes: str, duration: float = 0.1) -> None:
    """'o' = ok, 'x' = failure, 's' = slow success."""
    for o in outcomes:
        assert b.try_acquire()
        b.on_result(o != "x", 5.0 if o == "s" else duration)


def test_defaults_are_resilience4j() -> None:
    b = CircuitBreaker()
    assert (b.window_type, b.window_size, b.minimum_calls) == ("count", 100, 100)
    assert (b.failure_rate, b.slow_call_rate, b.slow_call_duration) == (0.5, 1.0, 60.0)
    assert (b.open_duration, b.half_open_calls) == (60.0, 10)
    assert b.state == CLOSED


def test_hystrix_preset_is_hystrix_defaults() -> None:
    b = CircuitBreaker.hystrix()
    assert (b.window_type, b.window_size, b.minimum_calls) == ("time", 10, 20)
    assert (b.failure_rate, b.open_duration, b.half_open_calls) == (0.5, 5.0, 1)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("window_type", "sliding"),
        ("window_size", 0),
        ("minimum_calls", 0),
        ("failure_rate", 0),
        ("slow_call_rate", 1.5),
        ("slow_call_duration", 0),
        ("open_duration", float("inf")),
        ("half_open_calls", 0),
    ],
)
def test_bad_configuration_names_class_field_and_value(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"CircuitBreaker\.{field} must be .*{value!r}"):
        CircuitBreaker(**{field: value})  # type: ignore[arg-type]


def test_closed_opens_at_the_failure_rate_once_minimum_calls_are_seen() -> None:
    b = breaker(FakeClock())
    run(b, "xxx")
    assert b.state == CLOSED  # 3 < minimum_calls
    run(b, "o")
    assert b.state == OPEN  # 3 of 4 failed


def test_closed_stays_below_the_failure_rate() -> None:
    b = breaker(FakeClock())
    run(b, "xooo" * 3)
    assert b.state == CLOSED


def test_slow_calls_open_the_breaker() -> None:
    b = breaker(FakeClock(), slow_call_rate=0.5)
    run(b, "ssoo")
    assert b.state == OPEN


def test_open_rejects_until_open_duration_then_half_opens() -> None:
    clock = FakeClock()
    b = breaker(clock)
    run(b, "xxxx")
    assert not b.try_acquire()
    clock.advance(29.9)
    assert not b.try_acquire()
    clock.advance(0.1)
    assert b.try_acquire()
    assert b.state == HALF_OPEN


def test_half_open_grants_exactly_half_open_calls_permits() -> None:
    clock = FakeClock()
    b = breaker(clock)
    run(b, "xxxx")
    clock.advance(30)
    assert [b.try_acquire() for _ in range(5)] == [True, True, True, False, False]


def test_half_open_closes_when_the_trials_pass() -> None:
    clock = FakeClock()
    b = breaker(clock)
    run(b, "xxxx")
    clock.advance(30)
    run(b, "oox")  # 1/3 failed < 50 %
    assert b.state == CLOSED


def test_half_open_reopens_when_the_trials_fail() -> None:
    clock = FakeClock()
    b = breaker(clock)
    run(b, "xxxx")
    clock.advance(30)
    run(b, "oxx")
    assert b.state == OPEN
    assert not b.try_acquire()


def test_release_unused_returns_a_half_open_permit() -> None:
    clock = FakeClock()
    b = breaker(clock, half_open_calls=1)
    run(b, "xxxx")
    clock.advance(30)
    assert b.try_acquire()
    assert not b.try_acquire()
    b.release_unused()
    assert b.try_acquire()


def test_stragglers_cannot_decide_half_open_without_a_permit() -> None:
    clock = FakeClock()
    b = breaker(clock)
    run(b, "xxxx")
    clock.advance(30)
    assert b.state == HALF_OPEN
    for _ in range(5):
        b.on_result(True, 0.1)  # admitted before the breaker opened
    assert b.state == HALF_OPEN


def test_time_window_forgets_old_outcomes() -> None:
    clock = FakeClock()
    b = breaker(clock, window_type="time", window_size=10)
    run(b, "xxx")
    clock.advance(10)
    run(b, "oxo")
    assert b.state == CLOSED


def test_listeners_get_transitions_and_a_failing_one_is_removed() -> None:
    clock = FakeClock()
    b = breaker(clock)
    seen: list[BreakerTransition] = []
    failing: list[BreakerTransition] = []

    def fail(transition: BreakerTransition) -> None:
        failing.append(transition)
        raise ZeroDivisionError

    b.add_listener(seen.append)
    b.add_listener(fail)
    run(b, "xxxx")
    clock.advance(30)
    b.try_acquire()
    assert [(t.from_state, t.to_state) for t in seen] == [(CLOSED, OPEN), (OPEN, HALF_OPEN)]
    assert seen[0].failure_rate == 1.0
    assert [(t.from_state, t.to_state) for t in failing] == [(CLOSED, OPEN)]  # then removed


def test_a_removed_listener_hears_no_more_transitions() -> None:
    clock = FakeClock()
    b = breaker(clock)
    seen: list[BreakerTransition] = []
    b.add_listener(seen.append)
    run(b, "xxxx")
    b.remove_listener(seen.append)
    clock.advance(30)
    b.try_acquire()
    assert [(t.from_state, t.to_state) for t in seen] == [(CLOSED, OPEN)]


def test_snapshot_is_json_able() -> None:
    clock = FakeClock()
    b = breaker(clock)
    run(b, "xxxx")
    snap = b.snapshot()
    json.dumps(snap)
    assert snap["state"] == OPEN
    assert snap["open_remaining"] == 30.0
    assert "state='open'" in repr(b)


class Model:
    """The documented transition table, written out plainly for a count window."""

    def __init__(self, size: int, minimum: int, rate: float, slow: float, trials: int) -> None:
        self.size, self.minimum, self.rate, self.slow, self.trials = (
            size,
            minimum,
            rate,
            slow,
            trials,
        )
        self.state = CLOSED
        self.window: deque[tuple[bool, bool]] = deque(maxlen=size)
        self.until = 0.0
        self.out = 0
        self.results: list[tuple[bool, bool]] = []

    def trips(self, outcomes: list[tuple[bool, bool]]) -> bool:
        n = len(outcomes)
        return (
            sum(f for f, _ in outcomes) / n >= self.rate - 1e-9
            or sum(s for _, s in outcomes) / n >= self.slow - 1e-9
        )

    def tick(self, now: float) -> None:
        if self.state == OPEN and now >= self.until:
            self.state, self.out, self.results = HALF_OPEN, 0, []

    def acquire(self, now: float) -> bool:
        self.tick(now)
        if self.state == CLOSED:
            return True
        if self.state == HALF_OPEN and self.out + len(self.results) < self.trials:
            self.out += 1
            return True
        return False

    def result(self, failed: bool, slow: bool, now: float) -> None:
        if self.state == CLOSED:
            self.window.append((failed, slow))
            if len(self.window) >= min(self.minimum, self.size) and self.trips(list(self.window)):
                self.state, self.until = OPEN, now + 30.0
                self.window.clear()
        elif self.state == HALF_OPEN and self.out:
            self.out -= 1
            self.results.append((failed, slow))
            if len(self.results) == self.trials:
                if self.trips(self.results):
                    self.state, self.until = OPEN, now + 30.0
                else:
                    self.state = CLOSED
                    self.window.clear()

    def release(self) -> None:
        if self.state == HALF_OPEN and self.out:
            self.out -= 1


@settings(max_examples=150)
@given(
    size=st.integers(1, 8),
    minimum=st.integers(1, 8),
    trials=st.integers(1, 4),
    ops=st.lists(
        st.tuples(
            st.sampled_from(["acquire", "ok", "fail", "slow", "release", "wait"]), st.floats(0, 40)
        ),
        max_size=200,
    ),
)
def test_transitions_follow_the_documented_table(
    size: int, minimum: int, trials: int, ops: list[tuple[str, float]]
) -> None:
    clock = FakeClock()
    b = breaker(
        clock, window_size=size, minimum_calls=minimum, half_open_calls=trials, slow_call_rate=0.75
    )
    model = Model(size, minimum, 0.5, 0.75, trials)
    for op, dt in ops:
        now = clock()
        if op == "acquire":
            assert b.try_acquire() == model.acquire(now)
        elif op == "release":
            model.tick(now)
            b.release_unused()
            model.release()
        elif op == "wait":
            clock.advance(dt)
        else:
            model.tick(now)
            b.state  # noqa: B018 - the breaker half-opens lazily too
            b.on_result(op != "fail", 5.0 if op == "slow" else 0.1)
            model.result(op == "fail", op == "slow", now)
        model.tick(clock())
        assert b.state == model.state
        if model.state == HALF_OPEN:
            # Trial permits out plus trial results never exceed the trials.
            snap = b.snapshot()
            assert snap["trial_permits_out"] + snap["trial_results"] <= trials


# -- the time window, against a direct count of the outcomes of the last whole seconds --------

STEPS = st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.75, 5.0, 6.0])


@given(
    start=st.sampled_from([0.0, 0.5, 1_000.25]),
    size=st.integers(1, 5),
    events=st.lists(st.tuples(STEPS, st.sampled_from("oxs")), max_size=40),
)
def test_time_window_counts_exactly_the_outcomes_of_its_whole_seconds(
    start: float, size: int, events: list[tuple[float, str]]
) -> None:
    """The window holds the outcomes whose second is one of the last ``size`` whole seconds
    (the current one included); it never trips here (``minimum_calls`` is out of reach)."""
    clock = FakeClock(start)
    b = breaker(clock, window_type="time", window_size=size, minimum_calls=10**6)
    seen: list[tuple[int, str]] = []
    for step, outcome in events:
        clock.advance(step)
        run(b, outcome)
        seen.append((math.floor(clock()), outcome))
        now = math.floor(clock())
        kept = [o for second, o in seen if second > now - size]
        figures = b.snapshot()
        assert figures["window_calls"] == len(kept)
        assert figures["window_failures"] == kept.count("x")
        assert figures["window_slow_calls"] == kept.count("s")


def test_a_second_leaving_the_time_window_takes_all_its_outcomes_with_it() -> None:
    clock = FakeClock()
    b = breaker(clock, window_type="time", window_size=2, minimum_calls=10**6)
    run(b, "ssxxo")  # second 0
    clock.advance(1)
    run(b, "o")  # second 1
    figures = b.snapshot()
    assert (figures["window_calls"], figures["window_failures"]) == (6, 2)
    assert figures["window_slow_calls"] == 2
    clock.advance(1)  # second 2: second 0 leaves
    figures = b.snapshot()
    assert (figures["window_calls"], figures["window_failures"]) == (1, 0)
    assert figures["window_slow_calls"] == 0


def test_a_transition_empties_the_time_window() -> None:
    clock = FakeClock()
    b = breaker(clock, window_type="time", window_size=10, half_open_calls=1)
    run(b, "s")  # second 0
    clock.advance(1)
    run(b, "xxx")  # second 1: opens, 3 failures of 4 calls
    assert b.state == OPEN
    figures = b.snapshot()
    assert (figures["window_calls"], figures["window_failures"]) == (0, 0)
    assert figures["window_slow_calls"] == 0
    clock.advance(30)
    run(b, "o")  # second 31: the trial succeeds, closed, counting afresh
    assert b.state == CLOSED
    clock.advance(8)
    b.snapshot()  # second 39
    clock.advance(2)  # seconds 40 and 41 reuse the buckets of seconds 0 and 1
    run(b, "x")
    figures = b.snapshot()
    assert (figures["window_calls"], figures["window_failures"]) == (1, 1)
    assert figures["window_slow_calls"] == 0


def test_hystrix_preset_counts_no_call_as_slow_and_runs_on_the_given_clock() -> None:
    clock = FakeClock()
    b = CircuitBreaker.hystrix(clock=clock)
    assert b.slow_call_duration == math.inf
    for _ in range(20):
        assert b.try_acquire()
        b.on_result(True, 3600.0)
    assert b.state == CLOSED
    for _ in range(20):
        b.try_acquire()
        b.on_result(False, 0.1)
    assert b.state == OPEN
    clock.advance(5.0)
    assert b.state == HALF_OPEN


# -- the Admission protocol: how a call of the stack is let in and counted --------------------


class FakeCall:
    """What the breaker reads of a call: who it is for, how it ended and how long it took."""

    def __init__(
        self, clock: FakeClock, outcome: str = "success", *, evidence: bool = True
    ) -> None:
        self.service = "users"
        self.request = httpx.Request("GET", "http://users/")
        self.outcome = outcome
        self.evidence = evidence
        self.clock = clock
        self.start = clock()


def test_an_open_breaker_rejects_a_call_naming_service_and_state() -> None:
    clock = FakeClock()
    b = breaker(clock)
    call = FakeCall(clock)
    b.admit(call)  # type: ignore[arg-type]
    run(b, "xxxx")
    with pytest.raises(CircuitOpenError) as info:
        b.admit(call)  # type: ignore[arg-type]
    assert str(info.value) == "circuit breaker of service 'users' is open"
    assert info.value.request is call.request


def test_release_counts_a_call_that_did_not_succeed_as_a_failure() -> None:
    clock = FakeClock()
    b = breaker(clock, minimum_calls=2, window_size=2)
    b.release(FakeCall(clock, "success"))  # type: ignore[arg-type]
    b.release(FakeCall(clock, "success"))  # type: ignore[arg-type]
    assert b.state == CLOSED
    b.release(FakeCall(clock, "server_error"))  # type: ignore[arg-type]
    assert b.state == OPEN


def test_release_counts_the_calls_duration_since_it_started() -> None:
    clock = FakeClock(100.0)
    b = breaker(clock, minimum_calls=2, window_size=2, slow_call_rate=0.5, failure_rate=1.0)
    fast = FakeCall(clock)
    clock.advance(0.5)
    b.release(fast)  # type: ignore[arg-type]  # 0.5 s: not slow
    assert b.snapshot()["window_slow_calls"] == 0
    slow = FakeCall(clock)
    clock.advance(1.0)  # slow_call_duration
    b.release(slow)  # type: ignore[arg-type]
    assert b.state == OPEN  # half the calls slow, none failed


def test_release_of_a_call_without_evidence_gives_the_trial_permit_back() -> None:
    clock = FakeClock()
    b = breaker(clock, half_open_calls=1)
    run(b, "xxxx")
    clock.advance(30)
    assert b.try_acquire()
    assert not b.try_acquire()  # the one trial permit is out
    b.release(FakeCall(clock, "cancelled", evidence=False))  # type: ignore[arg-type]
    assert b.state == HALF_OPEN
    assert b.try_acquire()


def test_a_listener_that_is_not_callable_is_refused_by_name() -> None:
    with pytest.raises(TypeError) as info:
        CircuitBreaker().add_listener(42)  # type: ignore[arg-type]
    assert str(info.value) == "CircuitBreaker listener must be callable, got 42"


# -- what the breaker reports: transitions, snapshots, messages --------------------------------


@pytest.mark.parametrize(
    ("field", "value", "error", "requirement"),
    [
        ("failure_rate", 0, ValueError, "a number in (0, 1]"),
        ("failure_rate", 1.5, ValueError, "a number in (0, 1]"),
        ("failure_rate", True, TypeError, "a number in (0, 1]"),
        ("slow_call_rate", 0, ValueError, "a number in (0, 1]"),
        ("slow_call_duration", 0, ValueError, "a number of seconds > 0 (inf: no call is slow)"),
        ("open_duration", 0, ValueError, "a finite number of seconds > 0"),
        ("window_size", True, TypeError, "an int >= 1"),
        ("clock", 3, TypeError, "a callable returning seconds"),
    ],
)
def test_bad_configuration_says_what_is_required(
    field: str, value: object, error: type[Exception], requirement: str
) -> None:
    with pytest.raises(error) as info:
        CircuitBreaker(**{field: value})  # type: ignore[arg-type]
    assert str(info.value) == f"CircuitBreaker.{field} must be {requirement}, got {value!r}"


def test_the_edges_of_the_valid_ranges_are_valid() -> None:
    b = CircuitBreaker(failure_rate=1, slow_call_rate=1, open_duration=0.5)
    assert (b.failure_rate, b.slow_call_rate, b.open_duration) == (1.0, 1.0, 0.5)


def test_a_call_lasting_exactly_slow_call_duration_is_slow() -> None:
    b = breaker(FakeClock())
    run(b, "o", duration=1.0)
    assert b.snapshot()["window_slow_calls"] == 1


@pytest.mark.parametrize("rule", ["failure_rate", "slow_call_rate"])
def test_a_rate_a_rounding_error_below_its_threshold_trips(rule: str) -> None:
    """The comparison absorbs float rounding: 1/4 trips a threshold of 0.25 + 1e-9."""
    b = breaker(FakeClock(), **{rule: 0.25 + 1e-9})
    run(b, "x" if rule == "failure_rate" else "s")
    run(b, "ooo")
    assert b.state == OPEN


def test_slow_calls_leaving_the_count_window_stop_counting() -> None:
    b = breaker(FakeClock(), window_size=3, minimum_calls=10)
    run(b, "ss")
    run(b, "ooo")
    assert b.snapshot()["window_slow_calls"] == 0


def test_every_transition_carries_its_time_and_the_figures_that_decided_it() -> None:
    clock = FakeClock(10.0)
    b = breaker(clock, slow_call_rate=0.5)
    seen: list[BreakerTransition] = []
    b.add_listener(seen.append)
    run(b, "sxxo")  # 2 of 4 failed, 1 of 4 slow
    clock.advance(30)
    assert b.try_acquire()
    b.on_result(True, 5.0)  # trials: ok but slow
    b.try_acquire()
    b.on_result(False, 0.1)
    b.try_acquire()
    b.on_result(True, 0.1)  # 1 of 3 failed, 1 of 3 slow: closes
    assert seen == [
        BreakerTransition(CLOSED, OPEN, 10.0, 4, 0.5, 0.25),
        BreakerTransition(OPEN, HALF_OPEN, 40.0, 0, 0.0, 0.0),
        BreakerTransition(HALF_OPEN, CLOSED, 40.0, 3, 1 / 3, 1 / 3),
    ]
    run(b, "xxxx")
    clock.advance(30)
    run(b, "sxs")  # trials: 1 of 3 failed, 2 of 3 slow
    assert seen[-1] == BreakerTransition(HALF_OPEN, OPEN, 70.0, 3, 1 / 3, 2 / 3)


def test_a_trial_permit_granted_in_half_open_is_no_transition() -> None:
    clock = FakeClock()
    b = breaker(clock)
    seen: list[BreakerTransition] = []
    run(b, "xxxx")
    clock.advance(30)
    assert b.try_acquire()  # open -> half-open
    b.add_listener(seen.append)
    assert b.try_acquire()
    assert seen == []


def test_snapshot_of_each_state() -> None:
    clock = FakeClock()
    b = breaker(clock)
    run(b, "xso")
    assert b.snapshot() == {
        "state": CLOSED,
        "window_type": "count",
        "window_calls": 3,
        "window_failures": 1,
        "window_slow_calls": 1,
        "failure_rate": 1 / 3,
        "slow_call_rate": 1 / 3,
    }
    run(b, "x")
    clock.advance(29.5)
    assert b.snapshot() == {
        "state": OPEN,
        "window_type": "count",
        "window_calls": 0,
        "window_failures": 0,
        "window_slow_calls": 0,
        "failure_rate": None,
        "slow_call_rate": None,
        "open_until": 30.0,
        "open_remaining": 0.5,
    }
    clock.advance(0.5)
    run(b, "x")
    assert b.try_acquire()
    assert b.snapshot() == {
        "state": HALF_OPEN,
        "window_type": "count",
        "window_calls": 0,
        "window_failures": 0,
        "window_slow_calls": 0,
        "failure_rate": None,
        "slow_call_rate": None,
        "trial_permits_out": 1,
        "trial_results": 1,
        "trial_failures": 1,
    }


def test_a_failing_listener_is_logged_by_name(caplog: pytest.LogCaptureFixture) -> None:
    def broken(transition: BreakerTransition) -> None:
        raise ZeroDivisionError

    b = breaker(FakeClock())
    b.add_listener(broken)
    run(b, "xxxx")
    assert [record.getMessage() for record in caplog.records] == [
        f"circuit breaker listener {broken!r} failed; removed"
    ]
