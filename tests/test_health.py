"""Specification of endpoint outlier detection: ejection rules, probes, the cap, panic mode."""

from __future__ import annotations

import math
import random
import threading

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshclient._balance import observe_rtt
from meshclient._endpoint import EndpointState
from meshclient._health import Ejected, HealthTracker, OutlierDetection, Readmitted
from meshclient.testing import FakeClock

from helpers import join

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
    nominal = min(c.base_ejection * 2.0 ** min(repeat - 1, 64), c.max_ejection)
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
