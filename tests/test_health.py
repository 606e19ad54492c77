"""Specification of endpoint outlier detection: ejection rules, probes, the cap, panic mode."""

from __future__ import annotations

import math
import random
import re
import statistics
import threading

import attrs
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from meshclient._balance import observe_rtt
from meshclient._endpoint import EndpointState
from meshclient._health import (
    Ejected,
    HealthTracker,
    OutlierDetection,
    Readmitted,
    _median_without,
)
from meshclient.testing import FakeClock

from helpers import ConstantRandom, join

DECAY = 10.0


def endpoints(n: int, now: float = 0.0) -> tuple[EndpointState, ...]:
    return tuple(
        EndpointState("10.0.0.1", 8000 + i, 1.0, initial_rtt=0.03, now=now) for i in range(n)
    )


def tracker(
    n: int = 4, clock: FakeClock | None = None, **config: object
) -> tuple[HealthTracker, tuple[EndpointState, ...], FakeClock]:
    clock = clock or FakeClock()
    eps = endpoints(n, clock())
    t = HealthTracker(
        OutlierDetection(**config),  # type: ignore[arg-type]
        clock=clock,
        rng=random.Random(7),
        decay=DECAY,
    )
    t.set_endpoints(eps)
    return t, eps, clock


def fail(t: HealthTracker, ep: EndpointState, times: int, now: float) -> list[object]:
    out: list[object] = []
    for _ in range(times):
        out.extend(t.record(ep, False, now) or ())
    return out


# -- configuration ---------------------------------------------------------------------------------


def test_defaults_are_finagle_and_envoy() -> None:
    c = OutlierDetection()
    assert (c.consecutive_failures, c.success_rate, c.success_rate_window) == (5, 0.8, 30.0)
    assert (c.success_rate_min_calls, c.base_ejection, c.max_ejection) == (5, 5.0, 300.0)
    assert c.max_ejected_share == 0.5
    assert c.latency_factor == 3.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("consecutive_failures", 0),
        ("success_rate", 1.5),
        ("success_rate_window", 0),
        ("base_ejection", -1.0),
        ("max_ejection", 1.0),
        ("ejection_jitter", 1.0),
        ("max_ejected_share", 2),
        ("latency_factor", 1.0),
        ("probe_timeout", math.inf),
    ],
)
def test_bad_configuration_names_class_field_and_value(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"OutlierDetection\.{field} must be .*{value!r}"):
        OutlierDetection(**{field: value})  # type: ignore[arg-type]


def test_bool_is_not_a_count() -> None:
    with pytest.raises(TypeError, match="consecutive_failures"):
        OutlierDetection(consecutive_failures=True)


# -- ejection rules --------------------------------------------------------------------------------


def test_consecutive_failures_eject_exactly_at_the_threshold() -> None:
    t, eps, _ = tracker(success_rate=None)
    assert fail(t, eps[0], 4, 1.0) == []
    (ejected,) = fail(t, eps[0], 1, 1.0)
    assert isinstance(ejected, Ejected)
    assert (ejected.address, ejected.reason, ejected.repeat) == (
        eps[0].address,
        "consecutive_failures",
        1,
    )
    assert eps[0] not in t.available()


def test_a_success_resets_the_consecutive_count() -> None:
    t, eps, _ = tracker(success_rate=None)
    fail(t, eps[0], 4, 1.0)
    t.record(eps[0], True, 1.0)
    assert fail(t, eps[0], 4, 1.0) == []
    assert eps[0] in t.available()


def test_success_rate_ejects_on_the_first_failure_below_the_threshold() -> None:
    """4 ok + 1 failure is exactly 80 %: kept. The second failure (4/6) ejects."""
    t, eps, _ = tracker(consecutive_failures=None)
    for _ in range(4):
        t.record(eps[0], True, 1.0)
    assert fail(t, eps[0], 1, 1.0) == []
    (ejected,) = fail(t, eps[0], 1, 1.0)
    assert isinstance(ejected, Ejected)
    assert ejected.reason == "success_rate"


def test_success_rate_needs_the_minimum_calls() -> None:
    t, eps, _ = tracker(consecutive_failures=None, success_rate_min_calls=5)
    assert fail(t, eps[0], 4, 1.0) == []
    assert len(fail(t, eps[0], 1, 1.0)) == 1


def test_success_rate_forgets_outcomes_older_than_the_window() -> None:
    t, eps, clock = tracker(consecutive_failures=None)
    fail(t, eps[0], 4, 0.0)
    clock.set(34.0)  # > window + one bucket: the failures expired
    assert fail(t, eps[0], 4, 34.0) == []


@given(outcomes=st.lists(st.booleans(), max_size=60))
def test_success_rate_rule_matches_a_direct_count(outcomes: list[bool]) -> None:
    """Within one window: ejected at the first failure leaving successes < 80 % of >= 5 calls."""
    t, eps, _ = tracker(consecutive_failures=None)
    ok = 0
    for calls, outcome in enumerate(outcomes, 1):
        ok += outcome
        result = t.record(eps[0], outcome, 1.0)
        expected = not outcome and calls >= 5 and ok < 0.8 * calls - 1e-9
        assert bool(result) == expected
        if expected:
            return


def test_outcomes_on_an_ejected_endpoint_are_ignored() -> None:
    t, eps, _ = tracker()
    fail(t, eps[0], 5, 1.0)
    version = t.version
    assert t.record(eps[0], True, 1.5) is None
    assert fail(t, eps[0], 10, 1.5) == []
    assert t.version == version


# -- ejection time ---------------------------------------------------------------------------------


@given(repeat=st.integers(1, 200), seed=st.integers(0, 2**32))
def test_ejection_time_is_jittered_around_a_doubling_capped_at_max(repeat: int, seed: int) -> None:
    c = OutlierDetection()
    nominal = min(c.base_ejection * 2.0 ** min(repeat - 1, 1023), c.max_ejection)
    d = c.ejection_time(repeat, random.Random(seed))
    assert nominal * (1 - c.ejection_jitter) <= d <= min(nominal * (1 + c.ejection_jitter), 300)


def test_repeated_ejections_double_until_the_cap() -> None:
    t, eps, clock = tracker(ejection_jitter=0.0)
    durations = []
    fail(t, eps[0], 5, 0.0)
    for _ in range(9):
        h = eps[0].health
        durations.append(h.until - clock())
        clock.set(h.until)
        assert t.probe_candidate(clock()) is eps[0]
        t.record(eps[0], False, clock(), probe=True)
    assert durations == [5, 10, 20, 40, 80, 160, 300, 300, 300]


def test_repeat_count_is_forgiven_one_step_per_window_admitted() -> None:
    t, eps, clock = tracker(ejection_jitter=0.0)
    fail(t, eps[0], 5, 0.0)
    clock.set(5.0)
    t.probe_candidate(5.0)
    t.record(eps[0], False, 5.0, probe=True)  # repeat 2: 10 s
    clock.set(15.0)
    t.probe_candidate(15.0)
    t.record(eps[0], True, 15.0, probe=True)
    (again,) = fail(t, eps[0], 5, 15.0 + 30.0)  # one window admitted: 2 -> 1, then 2
    assert isinstance(again, Ejected)
    assert (again.repeat, again.duration) == (2, 10.0)


# -- probes ----------------------------------------------------------------------------------------


def test_an_expired_ejection_gives_exactly_one_probe() -> None:
    t, eps, _ = tracker()
    fail(t, eps[0], 5, 0.0)
    until = eps[0].health.until
    assert t.probe_candidate(until - 0.001) is None
    assert t.probe_candidate(until) is eps[0]
    assert t.probe_candidate(until) is None
    assert eps[0] not in t.available()


def test_a_successful_probe_readmits() -> None:
    t, eps, _ = tracker()
    fail(t, eps[0], 5, 0.0)
    until = eps[0].health.until
    t.probe_candidate(until)
    (readmitted,) = t.record(eps[0], True, until + 0.1, probe=True) or ()
    assert readmitted == Readmitted(eps[0].address, pytest.approx(until + 0.1))
    assert eps[0] in t.available()


def test_a_failed_probe_ejects_for_longer() -> None:
    t, eps, _ = tracker(ejection_jitter=0.0)
    fail(t, eps[0], 5, 0.0)
    t.probe_candidate(5.0)
    (ejected,) = t.record(eps[0], False, 5.0, probe=True) or ()
    assert isinstance(ejected, Ejected)
    assert (ejected.duration, ejected.until) == (10.0, 15.0)


def test_a_lost_probe_allows_another_after_probe_timeout() -> None:
    t, eps, _ = tracker(probe_timeout=2.0)
    fail(t, eps[0], 5, 0.0)
    until = eps[0].health.until
    assert t.probe_candidate(until) is eps[0]
    assert t.probe_candidate(until + 1.999) is None
    assert t.probe_candidate(until + 2.0) is eps[0]


def test_a_released_probe_allows_another_at_once() -> None:
    t, eps, _ = tracker()
    fail(t, eps[0], 5, 0.0)
    until = eps[0].health.until
    assert t.probe_candidate(until) is eps[0]
    t.release_probe(eps[0])
    assert t.probe_candidate(until) is eps[0]


def test_no_probe_is_due_costs_one_compare() -> None:
    t, _, _ = tracker()
    assert t.next_probe_at == math.inf
    assert t.probe_candidate(1e9) is None


@settings(max_examples=60)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["fail", "ok", "probe", "answer", "release", "advance"]),
            st.integers(0, 3),
            st.floats(0, 20),
        ),
        max_size=150,
    )
)
def test_a_probe_is_never_out_twice_at_once(ops: list[tuple[str, int, float]]) -> None:
    t, eps, clock = tracker(probe_timeout=1e6)
    out: set[EndpointState] = set()
    for op, i, dt in ops:
        ep, now = eps[i], clock()
        if op == "fail":
            t.record(ep, False, now)
        elif op == "ok":
            t.record(ep, True, now)
        elif op == "probe":
            chosen = t.probe_candidate(now)
            assert chosen not in out
            if chosen is not None:
                out.add(chosen)
        elif op == "answer" and ep in out:
            out.discard(ep)
            t.record(ep, dt > 10, now, probe=True)
        elif op == "release" and ep in out:
            out.discard(ep)
            t.release_probe(ep)
        elif op == "advance":
            clock.advance(dt)


# -- the cap and panic -----------------------------------------------------------------------------


@settings(max_examples=100)
@given(
    n=st.integers(1, 7),
    share=st.sampled_from([0.0, 0.3, 0.5, 1.0]),
    ops=st.lists(st.tuples(st.integers(0, 6), st.booleans(), st.floats(0, 30)), max_size=200),
)
def test_ejections_never_exceed_the_cap_and_available_is_never_empty(
    n: int, share: float, ops: list[tuple[int, bool, float]]
) -> None:
    t, eps, clock = tracker(n, max_ejected_share=share, consecutive_failures=2)
    cap = math.floor(share * n + 1e-9)
    for i, ok, dt in ops:
        ep = eps[i % n]
        now = clock.advance(dt)
        probe = t.probe_candidate(now)
        if probe is not None:
            t.record(probe, ok, now, probe=True)
        t.record(ep, ok, now)
        ejected = sum(e.health.state != 0 for e in eps)
        assert ejected <= cap
        assert t.available()
        assert t.panic == (ejected == n)


def test_an_ejection_past_the_cap_is_skipped() -> None:
    t, eps, _ = tracker(4)  # cap 2
    fail(t, eps[0], 5, 0.0)
    fail(t, eps[1], 5, 0.0)
    assert fail(t, eps[2], 5, 0.0) == []
    assert eps[2] in t.available()
    assert t.snapshot()["ejections_skipped"] >= 1


def test_panic_when_the_set_shrinks_below_the_cap() -> None:
    t, eps, _ = tracker(4)
    fail(t, eps[0], 5, 0.0)
    fail(t, eps[1], 5, 0.0)
    t.set_endpoints(eps[:3])  # 2 ejected of 3 > floor(1.5)
    assert t.panic
    assert t.available() == eps[:3]


def test_panic_when_every_endpoint_is_ejected() -> None:
    t, eps, _ = tracker(2, max_ejected_share=1.0)
    fail(t, eps[0], 5, 0.0)
    fail(t, eps[1], 5, 0.0)
    assert t.panic
    assert t.available() == eps


# -- the endpoint set and the version --------------------------------------------------------------


def test_health_survives_a_discovery_update_for_endpoints_that_remain() -> None:
    t, eps, _ = tracker(4)
    fail(t, eps[0], 5, 0.0)
    extra = endpoints(5)[4]
    t.set_endpoints((*eps, extra))
    assert eps[0] not in t.available()
    assert extra in t.available()


def test_outcomes_of_a_removed_endpoint_are_ignored() -> None:
    t, eps, _ = tracker(4)
    t.set_endpoints(eps[1:])
    assert fail(t, eps[0], 10, 0.0) == []


def test_version_changes_exactly_when_available_changes() -> None:
    t, eps, _ = tracker(4)
    v = t.version
    t.record(eps[0], True, 0.0)
    fail(t, eps[1], 4, 0.0)
    assert t.version == v
    fail(t, eps[1], 1, 0.0)
    assert t.version != v
    v = t.version
    t.probe_candidate(100.0)
    assert t.version == v  # an expiry alone does not change the set
    t.record(eps[1], True, 100.0, probe=True)
    assert t.version != v


# -- latency outliers ------------------------------------------------------------------------------


def drive_latency(
    t: HealthTracker,
    eps: tuple[EndpointState, ...],
    rtts: list[float],
    rounds: int,
    clock: FakeClock,
) -> list[object]:
    transitions: list[object] = []
    for _ in range(rounds):
        now = clock.advance(0.1)
        for ep, rtt in zip(eps, rtts, strict=True):
            if ep not in t.available():
                continue
            observe_rtt(ep, rtt, now, DECAY)
            transitions.extend(t.record(ep, True, now) or ())
    return transitions


def test_a_ten_times_slower_endpoint_among_three_is_ejected() -> None:
    t, eps, clock = tracker(3)
    (ejected,) = drive_latency(t, eps, [0.010, 0.012, 0.100], 60, clock)
    assert isinstance(ejected, Ejected)
    assert (ejected.address, ejected.reason) == (eps[2].address, "latency")


def test_all_endpoints_slowing_together_ejects_nothing() -> None:
    """A client stall inflates every endpoint at once: relative to peers, nobody is an outlier."""
    t, eps, clock = tracker(3)
    drive_latency(t, eps, [0.010, 0.012, 0.011], 30, clock)
    assert drive_latency(t, eps, [0.500, 0.600, 0.550], 100, clock) == []


def test_a_slow_endpoint_is_not_ejected_before_enough_samples() -> None:
    t, eps, clock = tracker(3, latency_min_samples=20)
    assert drive_latency(t, eps, [0.010, 0.012, 0.100], 15, clock) == []


def test_latency_needs_the_absolute_floor_too() -> None:
    """1 ms vs 0.2 ms is 5x, but a 0.8 ms difference is below the 10 ms floor."""
    t, eps, clock = tracker(3)
    assert drive_latency(t, eps, [0.0002, 0.0002, 0.001], 100, clock) == []


def test_two_endpoints_are_too_few_peers_for_latency() -> None:
    t, eps, clock = tracker(2)
    assert drive_latency(t, eps, [0.010, 0.100], 100, clock) == []


# -- state -----------------------------------------------------------------------------------------


def test_snapshot_is_json_able_and_lists_ejected_endpoints() -> None:
    import json

    t, eps, _ = tracker(4)
    fail(t, eps[0], 5, 0.0)
    snap = t.snapshot()
    json.dumps(snap)
    assert snap["ejected"] == 1
    assert snap["out_of_rotation"][0]["address"] == eps[0].address
    json.dumps(t.endpoint_snapshot(eps[0]))
    assert "1 ejected" in repr(t)


def test_concurrent_records_keep_counts_consistent() -> None:
    t, eps, _ = tracker(4, consecutive_failures=None, success_rate=None, latency_factor=None)

    def work() -> None:
        for _ in range(2000):
            t.record(eps[0], True, 1.0)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        join(th, "a thread recording outcomes")
    assert t.endpoint_snapshot(eps[0])["window_calls"] == 8000


def test_transitions_are_frozen_records() -> None:
    e = Ejected("a:1", "latency", 1.0, 1.0, 1)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        e.reason = "x"  # type: ignore[misc]


# -- configuration: every bound, every message -----------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("consecutive_failures", None),
        ("consecutive_failures", 1),
        ("success_rate", None),
        ("success_rate", 1.0),
        ("success_rate", 1e-9),
        ("success_rate_window", 1e-9),
        ("success_rate_min_calls", 1),
        ("base_ejection", 1e-9),
        ("base_ejection", 300.0),
        ("max_ejection", 5.0),
        ("max_ejection", 1e300),
        ("ejection_jitter", 0.0),
        ("ejection_jitter", 0.999),
        ("max_ejected_share", 0.0),
        ("max_ejected_share", 1.0),
        ("latency_factor", None),
        ("latency_factor", 1.0001),
        ("latency_floor", 0.0),
        ("latency_min_samples", 1),
        ("latency_interval", 1e-9),
        ("probe_timeout", 1e300),
    ],
)
def test_values_on_the_edge_of_each_range_are_accepted(field: str, value: object) -> None:
    assert getattr(OutlierDetection(**{field: value}), field) == value  # type: ignore[arg-type]


SECONDS = "a finite number of seconds > 0"


@pytest.mark.parametrize(
    ("field", "value", "error", "requirement"),
    [
        ("consecutive_failures", 0, ValueError, "an int >= 1 or None"),
        ("consecutive_failures", 1.5, TypeError, "an int >= 1 or None"),
        ("success_rate", 0, ValueError, "a number in (0, 1] or None"),
        ("success_rate", 1.0000001, ValueError, "a number in (0, 1] or None"),
        ("success_rate", "0.5", TypeError, "a number in (0, 1] or None"),
        ("success_rate_window", 0, ValueError, SECONDS),
        ("success_rate_window", math.inf, ValueError, SECONDS),
        ("success_rate_min_calls", 0, ValueError, "an int >= 1"),
        ("success_rate_min_calls", None, TypeError, "an int >= 1"),
        ("base_ejection", 0.0, ValueError, SECONDS),
        ("ejection_jitter", 1.0, ValueError, "a number in [0, 1)"),
        ("ejection_jitter", -0.01, ValueError, "a number in [0, 1)"),
        ("max_ejected_share", -0.01, ValueError, "a number in [0, 1]"),
        ("max_ejected_share", 1.01, ValueError, "a number in [0, 1]"),
        ("latency_factor", 1.0, ValueError, "a finite number > 1 or None"),
        ("latency_factor", math.inf, ValueError, "a finite number > 1 or None"),
        ("latency_floor", -0.001, ValueError, "a finite number of seconds >= 0"),
        ("latency_floor", math.inf, ValueError, "a finite number of seconds >= 0"),
        ("latency_floor", None, TypeError, "a finite number of seconds >= 0"),
        ("latency_min_samples", 0, ValueError, "an int >= 1"),
        ("latency_interval", 0, ValueError, SECONDS),
        ("probe_timeout", -1.0, ValueError, SECONDS),
    ],
)
def test_each_rejected_value_gets_a_message_naming_field_rule_and_value(
    field: str, value: object, error: type[Exception], requirement: str
) -> None:
    with pytest.raises(error) as raised:
        OutlierDetection(**{field: value})  # type: ignore[arg-type]
    assert str(raised.value) == f"OutlierDetection.{field} must be {requirement}, got {value!r}"


@pytest.mark.parametrize("max_ejection", [1.999, math.inf])
def test_max_ejection_message_quotes_the_base_it_must_reach(max_ejection: float) -> None:
    message = (
        "OutlierDetection.max_ejection must be a finite number of seconds"
        f" >= OutlierDetection.base_ejection (2.0), got {max_ejection!r}"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        OutlierDetection(base_ejection=2.0, max_ejection=max_ejection)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"config": None}, TypeError, "HealthTracker.config must be OutlierDetection, got None"),
        (
            {"clock": 5},
            TypeError,
            "HealthTracker.clock must be a callable returning seconds, got 5",
        ),
        ({"rng": 7}, TypeError, "HealthTracker.rng must be a random.Random instance, got 7"),
        ({"decay": 0}, ValueError, "HealthTracker.decay must be a number of seconds > 0, got 0"),
        ({"decay": math.inf}, ValueError, "must be a number of seconds > 0, got inf"),
        ({"decay": "1"}, TypeError, "HealthTracker.decay must be a number of seconds > 0, got '1'"),
    ],
)
def test_a_bad_tracker_argument_is_named_with_its_value(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    arguments: dict[str, object] = {"config": OutlierDetection(), **kwargs}
    with pytest.raises(error) as raised:
        HealthTracker(**arguments)  # type: ignore[arg-type]
    assert str(raised.value).endswith(message)


def test_ejection_time_rejects_a_repeat_below_one() -> None:
    with pytest.raises(ValueError, match=r"^repeat must be >= 1, got 0$"):
        OutlierDetection().ejection_time(0, random.Random(1))


@pytest.mark.parametrize(
    ("draw", "seconds"), [(0.0, 5.0 * 0.85), (0.5, 5.0), (0.75, 5.0 * 1.075), (0.999999, 5.75)]
)
def test_a_low_draw_gives_a_short_ejection_and_a_high_draw_a_long_one(
    draw: float, seconds: float
) -> None:
    """Jitter spreads the nominal time linearly over +-ejection_jitter, driven by the rng."""
    assert OutlierDetection().ejection_time(1, ConstantRandom(draw)) == pytest.approx(
        seconds, abs=1e-5
    )


# -- a fresh tracker, the endpoint set, the cap ----------------------------------------------------


def test_a_tracker_without_endpoints_reports_nothing_out_of_rotation() -> None:
    t = HealthTracker(OutlierDetection())
    expected = {
        "endpoints": 0,
        "available": 0,
        "ejected": 0,
        "max_ejected": 0,
        "panic": False,
        "ejections_skipped": 0,
        "version": 0,
        "out_of_rotation": [],
    }
    assert t.snapshot() == expected
    assert (t.available(), t.panic, t.next_probe_at) == ((), False, math.inf)
    t.set_endpoints([])
    assert (t.available(), t.panic) == ((), False)  # no endpoints is not a panic
    assert repr(t) == "<HealthTracker 0 endpoints, 0 ejected (max 0), panic=False, version=1>"


def test_a_tracker_with_its_own_clock_rng_and_a_short_decay_works() -> None:
    """The defaults (time.monotonic, a fresh random.Random) and any decay > 0 are usable."""
    t = HealthTracker(OutlierDetection(), decay=1e-9)
    eps = endpoints(4)
    t.set_endpoints(eps)
    (ejected,) = fail(t, eps[0], 5, 0.0)
    assert isinstance(ejected, Ejected)
    assert 5.0 * 0.85 <= ejected.duration <= 5.0 * 1.15
    assert t.endpoint_snapshot(eps[0])["state"] == "ejected"


@pytest.mark.parametrize(
    ("n", "share", "cap"), [(100, 0.29, 29), (10, 0.7, 7), (3, 0.5, 1), (5, 0.0, 0), (4, 1.0, 4)]
)
def test_the_cap_is_the_floor_of_share_times_endpoints_despite_float_rounding(
    n: int, share: float, cap: int
) -> None:
    """0.29 * 100 is 28.999999999999996 in floats: still 29 endpoints may be out."""
    t, _, _ = tracker(n, max_ejected_share=share)
    assert t.snapshot()["max_ejected"] == cap


def test_each_ejection_past_the_cap_is_counted_as_skipped() -> None:
    t, eps, _ = tracker(4)  # cap 2
    fail(t, eps[0], 5, 0.0)
    fail(t, eps[1], 5, 0.0)
    assert fail(t, eps[2], 5, 0.0) == []
    assert t.snapshot()["ejections_skipped"] == 1
    fail(t, eps[2], 2, 0.0)  # still failing: each failure past the threshold is one more skip
    assert t.snapshot()["ejections_skipped"] == 3
    assert t.snapshot()["ejected"] == 2


def test_removing_and_readding_an_ejected_endpoint_starts_it_afresh() -> None:
    t, eps, clock = tracker(4, ejection_jitter=0.0)
    fail(t, eps[0], 5, 0.0)
    v = t.version
    t.set_endpoints(eps[1:])
    assert t.version != v
    assert (t.snapshot()["ejected"], t.snapshot()["out_of_rotation"]) == (0, [])
    assert t.endpoint_snapshot(eps[0]) == {"state": "unknown"}
    clock.set(5.0)
    assert t.probe_candidate(5.0) is None  # its ejection ends, but it is gone: no probe
    assert t.probe_candidate(1000.0) is None
    assert t.record(eps[0], True, 5.0, probe=True) is None
    t.release_probe(eps[0])
    t.set_endpoints(eps)
    assert t.available() == eps
    assert t.endpoint_snapshot(eps[0])["ejections_in_a_row"] == 0
    assert t.snapshot()["ejected"] == 0


def test_an_endpoint_removed_while_waiting_for_its_probe_gets_none() -> None:
    t, eps, clock = tracker(4, ejection_jitter=0.0)
    fail(t, eps[0], 5, 0.0)
    fail(t, eps[1], 5, 0.0)
    clock.set(5.0)
    assert t.probe_candidate(5.0) is eps[0]  # eps[1] waits in line for its probe
    t.set_endpoints((eps[0], eps[2], eps[3]))
    assert t.snapshot()["ejected"] == 1
    assert t.probe_candidate(5.0) is None
    assert t.probe_candidate(15.0) is eps[0]  # its lost probe timed out


def test_unknown_endpoints_are_ignored() -> None:
    t, _, _ = tracker(2)
    stranger = endpoints(3)[2]
    assert t.record(stranger, False, 0.0) is None
    t.release_probe(stranger)
    assert t.endpoint_snapshot(stranger) == {"state": "unknown"}


def test_releasing_another_trackers_probe_leaves_it_in_flight() -> None:
    """The endpoint moved to a second route's tracker: the first no longer speaks for it."""
    first, eps, clock = tracker(4, ejection_jitter=0.0)
    second = HealthTracker(OutlierDetection(ejection_jitter=0.0), clock=clock)
    second.set_endpoints(eps)
    fail(second, eps[0], 5, 0.0)
    clock.set(5.0)
    assert second.probe_candidate(5.0) is eps[0]
    first.release_probe(eps[0])
    assert second.snapshot()["out_of_rotation"][0]["probe_in_flight"] is True


# -- probes and their order ------------------------------------------------------------------------


def test_each_endpoint_is_probed_when_its_own_ejection_ends() -> None:
    t, eps, _ = tracker(4, ejection_jitter=0.0)
    fail(t, eps[0], 5, 2.0)  # until 7
    fail(t, eps[1], 5, 4.0)  # until 9
    assert t.next_probe_at == 7.0
    assert t.probe_candidate(6.999) is None
    assert t.probe_candidate(7.0) is eps[0]
    assert t.probe_candidate(7.0) is None
    assert t.next_probe_at == 9.0
    assert t.probe_candidate(9.0) is eps[1]
    assert t.next_probe_at == 17.0  # both out: the first probe_timeout to end
    t.release_probe(eps[1])
    assert t.next_probe_at == -math.inf
    assert t.probe_candidate(9.0) is eps[1]


def test_endpoints_ejected_for_the_same_time_are_probed_in_ejection_order() -> None:
    t, eps, clock = tracker(4, ejection_jitter=0.0)
    fail(t, eps[0], 5, 0.0)
    fail(t, eps[1], 5, 0.0)  # the same until, 5.0
    clock.set(5.0)
    assert t.probe_candidate(5.0) is eps[0]
    rows = t.snapshot()["out_of_rotation"]
    assert [(r["state"], r["probe_in_flight"]) for r in rows] == [
        ("probing", True),
        ("probing", False),
    ]
    assert t.probe_candidate(5.0) is eps[1]
    assert t.probe_candidate(5.0) is None


def test_after_a_failed_probe_the_next_goes_when_the_longer_ejection_ends() -> None:
    """However long probe_timeout is: the failed probe is over, nothing is in flight."""
    t, eps, clock = tracker(4, ejection_jitter=0.0, probe_timeout=100.0)
    fail(t, eps[0], 5, 0.0)
    assert t.probe_candidate(5.0) is eps[0]
    (again,) = t.record(eps[0], False, 5.0, probe=True) or ()
    assert isinstance(again, Ejected)
    assert again.until == 15.0
    clock.set(6.0)
    (row,) = t.snapshot()["out_of_rotation"]
    assert (row["state"], row["ejections_in_a_row"], row["probe_in_flight"]) == (
        "ejected",
        2,
        False,
    )
    assert t.next_probe_at == 15.0
    assert t.probe_candidate(15.0) is eps[0]


def test_snapshots_show_a_probe_in_flight_until_it_times_out_or_is_released() -> None:
    t, eps, clock = tracker(4, ejection_jitter=0.0, probe_timeout=10.0)
    fail(t, eps[0], 5, 0.0)
    row = {
        "address": eps[0].address,
        "state": "ejected",
        "reason": "consecutive_failures",
        "until": 5.0,
        "ejections_in_a_row": 1,
        "probe_in_flight": False,
    }
    assert t.snapshot()["out_of_rotation"] == [row]
    clock.set(5.0)
    assert t.probe_candidate(5.0) is eps[0]
    clock.set(6.0)
    assert t.snapshot() == {
        "endpoints": 4,
        "available": 3,
        "ejected": 1,
        "max_ejected": 2,
        "panic": False,
        "ejections_skipped": 0,
        "version": t.version,
        "out_of_rotation": [{**row, "state": "probing", "probe_in_flight": True}],
    }
    assert t.endpoint_snapshot(eps[0]) == {
        "state": "probing",
        "consecutive_failures": 0,
        "window_calls": 0,
        "window_success_rate": None,
        "ejections_in_a_row": 1,
        "reason": "consecutive_failures",
        "until": 5.0,
        "probe_in_flight": True,
    }
    clock.set(15.0)  # probe_timeout: the probe counts as lost
    assert t.snapshot()["out_of_rotation"][0]["probe_in_flight"] is False
    assert t.endpoint_snapshot(eps[0])["probe_in_flight"] is False
    clock.set(6.0)
    t.release_probe(eps[0])
    assert t.snapshot()["out_of_rotation"][0]["probe_in_flight"] is False
    assert t.endpoint_snapshot(eps[0])["probe_in_flight"] is False
    assert (
        repr(t)
        == f"<HealthTracker 4 endpoints, 1 ejected (max 2), panic=False, version={t.version}>"
    )


# -- readmission and the repeat count --------------------------------------------------------------


def test_a_readmitted_endpoint_starts_with_a_clean_record() -> None:
    t, eps, clock = tracker(4, ejection_jitter=0.0)
    fail(t, eps[0], 5, 10.0)  # until 15
    clock.set(15.0)
    assert t.probe_candidate(15.0) is eps[0]
    back = t.record(eps[0], True, 15.5, probe=True)
    assert back == (Readmitted(eps[0].address, 5.5),)
    clock.set(15.5)
    clean = {
        "state": "admitted",
        "consecutive_failures": 0,
        "window_calls": 0,
        "window_success_rate": None,
        "ejections_in_a_row": 1,
    }
    assert t.endpoint_snapshot(eps[0]) == clean
    assert (t.snapshot()["ejected"], t.available()) == (0, eps)
    clock.set(21.5)  # two buckets on: nothing from before the readmission reappears
    assert t.endpoint_snapshot(eps[0]) == clean
    assert fail(t, eps[0], 4, 21.5) == []
    (ejected,) = fail(t, eps[0], 1, 21.5)
    assert isinstance(ejected, Ejected)
    assert (ejected.repeat, ejected.duration) == (2, 10.0)


def test_ejected_for_spans_the_whole_episode_of_failed_probes() -> None:
    t, eps, _ = tracker(4, ejection_jitter=0.0)
    fail(t, eps[0], 5, 10.0)  # until 15
    t.probe_candidate(15.0)
    t.record(eps[0], False, 15.0, probe=True)  # until 25
    t.probe_candidate(25.0)
    assert t.record(eps[0], True, 25.0, probe=True) == (Readmitted(eps[0].address, 15.0),)


def test_a_full_window_admitted_forgives_a_single_ejection_entirely() -> None:
    t, eps, _ = tracker(4, ejection_jitter=0.0)
    fail(t, eps[0], 5, 0.0)
    t.probe_candidate(5.0)
    t.record(eps[0], True, 5.0, probe=True)
    (early,) = fail(t, eps[0], 5, 34.9)  # 29.9 s admitted: not forgiven
    assert isinstance(early, Ejected)
    assert (early.repeat, early.duration) == (2, 10.0)
    t.probe_candidate(44.9)
    t.record(eps[0], True, 44.9, probe=True)
    (late,) = fail(t, eps[0], 5, 104.9)  # two windows admitted: 2 -> 0, then 1
    assert isinstance(late, Ejected)
    assert (late.repeat, late.duration) == (1, 5.0)


def test_an_outcome_stamped_just_before_readmission_forgives_nothing() -> None:
    """Outcomes are stamped before the tracker's lock, so one may carry a time a hair before
    the readmission it races with: it must not count as a negative window (a longer ejection)."""
    t, eps, _ = tracker(4, ejection_jitter=0.0)
    fail(t, eps[0], 5, 0.0)
    t.probe_candidate(5.0)
    t.record(eps[0], True, 5.0, probe=True)
    (again,) = fail(t, eps[0], 5, 4.999)
    assert isinstance(again, Ejected)
    assert (again.repeat, again.duration) == (2, 10.0)


def test_even_a_tiny_base_ejection_doubles_up_to_max_ejection() -> None:
    config = OutlierDetection(base_ejection=1e-20, max_ejection=1.0, ejection_jitter=0.0)
    assert config.ejection_time(200, random.Random(0)) == 1.0
    assert config.ejection_time(5000, random.Random(0)) == 1.0  # past 2**1023: no overflow


# -- the success-rate window -----------------------------------------------------------------------


@settings(max_examples=60)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from([0.0, 0.5, 1.5, 3.0, 4.5, 10.0, 29.5, 31.0, 40.0]), st.booleans()
        ),
        max_size=40,
    ),
    idle=st.sampled_from([0.0, 3.0, 28.5, 33.0]),
    start=st.sampled_from([0.0, 7.5, 100.0]),
)
# A snapshot exactly at the edge of the bucket that pushes the first outcome out.
@example(steps=[(0.0, False), (29.5, True), (0.5, True)], idle=3.0, start=0.0)
def test_the_window_holds_the_current_bucket_and_ten_before_it(
    steps: list[tuple[float, bool]], idle: float, start: float
) -> None:
    """Buckets of window / 10 = 3 s; an outcome counts while its bucket is one of the last 11."""
    clock = FakeClock(start)
    t, eps, _ = tracker(1, clock, consecutive_failures=None, success_rate=None, latency_factor=None)
    history: list[tuple[float, bool]] = []

    def check(now: float) -> None:
        kept = [ok for at, ok in history if math.floor(at / 3.0) >= math.floor(now / 3.0) - 10]
        snap = t.endpoint_snapshot(eps[0])
        assert snap["window_calls"] == len(kept)
        assert snap["window_success_rate"] == (sum(kept) / len(kept) if kept else None)

    now = start
    for dt, ok in steps:
        now += dt
        clock.set(now)
        t.record(eps[0], ok, now)
        history.append((now, ok))
        check(now)
    clock.set(now + idle)
    check(now + idle)


# -- latency, sample by sample ---------------------------------------------------------------------

#: Decay for observe_rtt in the tests below: 1 s later the old estimate weighs nothing, so each
#: endpoint's estimate is exactly its latest sample.
INSTANT = 1e-3


def latency_rounds(
    t: HealthTracker,
    eps: tuple[EndpointState, ...],
    rtts: list[float | None],
    rounds: int,
    clock: FakeClock,
) -> list[tuple[int, object]]:
    """``rounds`` seconds: each admitted endpoint with an rtt (None: unmeasured) takes one
    sample, then reports a success; the first report of a round runs the latency check.
    Returns (round, transition) pairs."""
    out: list[tuple[int, object]] = []
    for r in range(1, rounds + 1):
        now = clock.advance(1.0)
        live = [(ep, rtt) for ep, rtt in zip(eps, rtts, strict=True) if rtt is not None]
        live = [(ep, rtt) for ep, rtt in live if ep.health.state == 0]
        for ep, rtt in live:
            observe_rtt(ep, rtt, now, INSTANT)
        for ep, _ in live:
            result = t.record(ep, True, now)
            assert result is None or result, "nothing happened: None, not an empty tuple"
            out.extend((r, transition) for transition in result or ())
    return out


def latency_ejection(found: list[tuple[int, object]]) -> tuple[int, Ejected]:
    (pair,) = found
    r, ejected = pair
    assert isinstance(ejected, Ejected)
    assert ejected.reason == "latency"
    return r, ejected


def test_latency_counts_samples_from_when_enough_peers_are_measured() -> None:
    """Unmeasured endpoints are not peers; with fewer than 3 measured nothing is compared, and
    the slow endpoint's latency_min_samples start only when the comparison becomes possible."""
    t, eps, clock = tracker(3, latency_min_samples=5)
    assert latency_rounds(t, eps, [0.01, None, 0.1], 30, clock) == []
    r, ejected = latency_ejection(latency_rounds(t, eps, [0.01, 0.01, 0.1], 10, clock))
    assert (r, ejected.address) == (6, eps[2].address)  # seen slow in round 1, +5 samples


def test_a_latency_outlier_must_stay_slow_for_latency_min_samples_in_a_row() -> None:
    """A slow spell interrupted by a recovery starts the count over, wherever the endpoint
    then ranks among its peers."""
    t, eps, clock = tracker(4, latency_min_samples=5)
    peers: list[float | None] = [0.01, 0.01, 0.02]  # the 0.02 one is slowest but no outlier
    assert latency_rounds(t, eps, [*peers, 0.01], 30, clock) == []
    assert latency_rounds(t, eps, [*peers, 0.1], 3, clock) == []
    assert latency_rounds(t, eps, [*peers, 0.005], 10, clock) == []
    r, ejected = latency_ejection(latency_rounds(t, eps, [*peers, 0.1], 10, clock))
    assert (r, ejected.address) == (6, eps[3].address)


def test_a_readmitted_endpoint_still_slow_needs_latency_min_samples_again() -> None:
    t, eps, clock = tracker(3, latency_min_samples=5, ejection_jitter=0.0)
    rtts: list[float | None] = [0.01, 0.01, 0.1]
    r, first = latency_ejection(latency_rounds(t, eps, rtts, 10, clock))
    assert r == 6
    clock.set(first.until)
    assert t.probe_candidate(clock()) is eps[2]
    observe_rtt(eps[2], 0.1, clock(), INSTANT)
    (back,) = t.record(eps[2], True, clock(), probe=True) or ()
    assert isinstance(back, Readmitted)
    r, second = latency_ejection(latency_rounds(t, eps, rtts, 10, clock))
    assert (r, second.repeat) == (6, 2)


def test_latency_is_checked_once_per_latency_interval() -> None:
    t, eps, clock = tracker(3, latency_min_samples=3, latency_interval=50.0)
    r, _ = latency_ejection(latency_rounds(t, eps, [0.01, 0.01, 0.1], 60, clock))
    assert r == 51  # seen slow at the check of round 1, ejected at the next, 50 s later


@pytest.mark.parametrize(
    ("factor", "floor", "ejected"),
    [(4.0, 0.01, True), (4.5, 0.01, False), (2.0, 0.1875, True), (2.0, 0.25, False)],
)
def test_latency_thresholds_are_at_least_factor_times_and_floor_above_the_median(
    factor: float, floor: float, ejected: bool
) -> None:
    """0.25 s against peers at 0.0625 s: exactly 4x the median and 0.1875 s above it."""
    t, eps, clock = tracker(3, latency_factor=factor, latency_floor=floor, latency_min_samples=1)
    found = latency_rounds(t, eps, [0.0625, 0.0625, 0.25], 5, clock)
    assert bool(found) == ejected


@given(
    values=st.lists(st.floats(0, 1e3), min_size=2, max_size=9).map(sorted),
    data=st.data(),
)
def test_the_peers_median_leaves_out_the_endpoint_judged(
    values: list[float], data: st.DataObject
) -> None:
    """The yardstick of each endpoint is the median of the others' estimates."""
    i = data.draw(st.integers(0, len(values) - 1))
    assert _median_without(values, i) == statistics.median(values[:i] + values[i + 1 :])


@pytest.mark.parametrize("earlier_failures", [4, 0])
def test_a_failure_reports_its_own_ejection_then_the_latency_checks(earlier_failures: int) -> None:
    """One record may eject two endpoints: the failing one, then a latency outlier."""
    t, eps, clock = tracker(4, latency_min_samples=2, success_rate=None)
    rtts: list[float | None] = [0.01, 0.01, 0.01, 0.1]
    assert latency_rounds(t, eps, rtts, 2, clock) == []  # eps[3] seen slow at round 1
    assert fail(t, eps[0], earlier_failures, clock()) == []
    now = clock.advance(1.0)
    for ep, rtt in zip(eps, rtts, strict=True):
        observe_rtt(ep, rtt, now, INSTANT)
    found = t.record(eps[0], False, now)
    assert found is not None
    expected = [(eps[0].address, "consecutive_failures")] if earlier_failures == 4 else []
    assert [(e.address, e.reason) for e in found if isinstance(e, Ejected)] == [
        *expected,
        (eps[3].address, "latency"),
    ]


def test_only_the_probe_decides_for_an_endpoint_out_of_rotation() -> None:
    """Outcomes of attempts sent before the ejection are not the probe, and a probe outcome
    for an endpoint whose ejection has not ended yet is not one either."""
    t, eps, _ = tracker(4, ejection_jitter=0.0)
    assert t.record(eps[0], False, 0.0) is None  # a failure that ejects nothing reports nothing
    fail(t, eps[0], 4, 0.0)
    assert t.record(eps[0], True, 1.0, probe=True) is None  # still ejected: no probe was out
    assert t.probe_candidate(5.0) is eps[0]
    assert t.record(eps[0], True, 5.0) is None
    assert t.record(eps[0], False, 5.0) is None
    assert t.endpoint_snapshot(eps[0])["state"] == "probing"
    assert t.record(eps[0], True, 5.0, probe=True) == (Readmitted(eps[0].address, 5.0),)


def test_an_outcome_at_a_bucket_edge_opens_the_next_bucket_despite_float_rounding() -> None:
    """With 0.03 s buckets, 11 * 0.03 / 0.03 < 11 in floats: an outcome at that edge still
    belongs to bucket 11, so it outlives the outcomes of bucket 10 by one bucket."""
    clock = FakeClock()
    t, eps, _ = tracker(
        1,
        clock,
        success_rate_window=0.3,
        consecutive_failures=None,
        success_rate=None,
        latency_factor=None,
    )
    width = 0.3 / 10
    t.record(eps[0], True, 10.5 * width)  # bucket 10
    t.record(eps[0], True, 11 * width)  # the edge of bucket 11
    clock.set(21.5 * width)  # bucket 21: bucket 10 has left the window, bucket 11 has not
    assert t.endpoint_snapshot(eps[0])["window_calls"] == 1


@pytest.mark.parametrize(
    ("rate", "oks", "calls"),
    [(0.7, 7, 10), (0.8000000002000001, 4, 5)],
)
def test_a_success_rate_within_a_billionth_of_the_threshold_meets_it(
    rate: float, oks: int, calls: int
) -> None:
    """0.7 * 10 is 7.000000000000001 in floats; a rate 2e-10 above 4/5 is 4/5 within the 1e-9
    tolerance too: both keep the endpoint, and the next failure ejects it."""
    t, eps, _ = tracker(consecutive_failures=None, success_rate=rate, success_rate_min_calls=2)
    for _ in range(oks):
        t.record(eps[0], True, 1.0)
    assert fail(t, eps[0], calls - oks, 1.0) == []
    (ejected,) = fail(t, eps[0], 1, 1.0)
    assert isinstance(ejected, Ejected)
    assert ejected.reason == "success_rate"


def test_latency_min_samples_count_from_the_first_check_not_the_first_sample() -> None:
    """Samples an endpoint took before the tracker first compared it (it joined the route with
    a history, say) do not count towards latency_min_samples."""
    t, eps, clock = tracker(3, latency_min_samples=5)
    rtts: list[float | None] = [0.01, 0.01, 0.1]
    for _ in range(30):
        now = clock.advance(1.0)
        for ep, rtt in zip(eps, rtts, strict=True):
            observe_rtt(ep, rtt, now, INSTANT)
    r, _ = latency_ejection(latency_rounds(t, eps, rtts, 10, clock))
    assert r == 6
