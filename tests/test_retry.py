"""Specification of the retry maths: backoff, retryable outcomes, the budget, Retry-After."""

from __future__ import annotations

import bisect
import email.utils
import math
import os
import random
import statistics
import threading
import time
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshclient._retry import (
    IDEMPOTENT_METHODS,
    Retry,
    RetryBudget,
    is_idempotent,
    parse_retry_after,
)
from meshclient.testing import FakeClock

from helpers import WAIT_LIMIT, ConstantRandom, join

# -- Retry: the value ------------------------------------------------------------------------------


def test_retry_defaults_are_envoys_with_aws_full_jitter() -> None:
    retry = Retry()
    assert retry.attempts == 3
    assert retry.backoff == 0.025
    assert retry.max_backoff == 0.25
    assert retry.statuses == frozenset({429, 502, 503, 504})
    assert retry.max_retry_after == 5.0


def test_retry_is_frozen() -> None:
    retry = Retry()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        retry.attempts = 5  # type: ignore[misc]


def test_retry_is_hashable_and_equal_by_value() -> None:
    a = Retry(attempts=4, backoff=0.01, statuses=[503, 502])
    b = Retry(attempts=4, backoff=0.01, statuses={502, 503})
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b, Retry()}) == 2


def test_retry_repr_shows_public_fields_only() -> None:
    assert "_ceilings" not in repr(Retry())
    assert repr(Retry()).startswith("Retry(attempts=3, backoff=0.025, max_backoff=0.25,")


def test_retry_evolve_recomputes_backoff() -> None:
    retry = attrs.evolve(Retry(), backoff=0.1, max_backoff=1.0)
    assert retry.delay(4, ConstantRandom(1.0)) == pytest.approx(0.8)


def test_retry_statuses_accept_any_iterable_of_ints() -> None:
    assert Retry(statuses=(500, 503)).statuses == frozenset({500, 503})
    assert Retry(statuses=iter([503])).statuses == frozenset({503})
    assert Retry(statuses=[]).statuses == frozenset()


def test_retry_rejects_zero_attempts_naming_class_field_and_value() -> None:
    with pytest.raises(ValueError, match=r"^Retry\.attempts must be an int >= 1, got 0$"):
        Retry(attempts=0)


@pytest.mark.parametrize(
    ("kwargs", "error", "shown"),
    [
        ({"attempts": True}, TypeError, "True"),
        ({"attempts": 2.0}, TypeError, "2.0"),
        ({"backoff": -0.1}, ValueError, "-0.1"),
        ({"backoff": math.nan}, ValueError, "nan"),
        ({"backoff": "0.1"}, TypeError, "'0.1'"),
        ({"max_backoff": 0.01}, ValueError, "0.01"),
        ({"max_backoff": math.inf}, ValueError, "inf"),
        ({"statuses": {503, 600}}, ValueError, "600"),
        ({"statuses": {99}}, ValueError, "99"),
        ({"statuses": ["503"]}, TypeError, "'503'"),
        ({"statuses": 503}, TypeError, "503"),
        ({"statuses": "503"}, TypeError, "'503'"),
        ({"statuses": [[503]]}, TypeError, "[[503]]"),
        ({"max_retry_after": 0}, ValueError, "0"),
        ({"max_retry_after": None}, TypeError, "None"),
    ],
)
def test_retry_rejects_bad_configuration_naming_field_and_value(
    kwargs: dict[str, Any], error: type[Exception], shown: str
) -> None:
    (field,) = kwargs
    with pytest.raises(error) as info:
        Retry(**kwargs)
    message = str(info.value)
    assert message.startswith(f"Retry.{field} must be ")
    assert f", got {shown}" in message


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backoff": -1}, "Retry.backoff must be a finite number of seconds >= 0, got -1"),
        (
            {"max_retry_after": -2.5},
            "Retry.max_retry_after must be a finite number of seconds > 0, got -2.5",
        ),
        (
            {"statuses": [503, 99]},
            "Retry.statuses must be an iterable of int HTTP status codes in 100..599,"
            " got 99 in [503, 99]",
        ),
        (
            {"statuses": "503"},
            "Retry.statuses must be an iterable of int HTTP status codes in 100..599, got '503'",
        ),
    ],
)
def test_retry_error_messages_say_what_is_required(kwargs: dict[str, Any], message: str) -> None:
    """The message states the rule, not just the field, so a misconfiguration is fixed at once."""
    with pytest.raises((TypeError, ValueError)) as info:
        Retry(**kwargs)
    assert str(info.value) == message


def test_retry_accepts_the_edges_of_every_range() -> None:
    """Status codes 100 and 599 are valid, and any positive max_retry_after, below 1 s too."""
    retry = Retry(statuses=[100, 599], max_retry_after=0.5)
    assert retry.statuses == frozenset({100, 599})
    assert retry.retryable_status(599, 0.5)
    assert not retry.retryable_status(599, 0.51)


def test_retry_max_backoff_message_names_the_backoff_it_must_exceed() -> None:
    with pytest.raises(ValueError, match=r">= Retry\.backoff \(0\.5\), got 0\.1$"):
        Retry(backoff=0.5, max_backoff=0.1)


# -- Retry: backoff --------------------------------------------------------------------------------


@given(
    backoff=st.floats(min_value=0.0, max_value=10.0),
    extra=st.floats(min_value=0.0, max_value=100.0),
    retry_number=st.integers(min_value=1, max_value=2000),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_delay_is_within_the_full_jitter_ceiling(
    backoff: float, extra: float, retry_number: int, seed: int
) -> None:
    retry = Retry(backoff=backoff, max_backoff=backoff + extra)
    try:
        ceiling = min(retry.max_backoff, math.ldexp(backoff, retry_number - 1))
    except OverflowError:
        ceiling = retry.max_backoff
    delay = retry.delay(retry_number, random.Random(seed))
    assert 0.0 <= delay <= ceiling


@pytest.mark.parametrize("retry_number", [1, 2, 3, 4, 5, 9])
def test_delay_mean_is_half_the_ceiling(retry_number: int) -> None:
    retry = Retry()
    rng = random.Random(retry_number)
    ceiling = min(0.25, 0.025 * 2 ** (retry_number - 1))
    mean = statistics.fmean(retry.delay(retry_number, rng) for _ in range(20_000))
    # The sd of a uniform mean over 20 000 samples is ceiling / sqrt(12 * 20 000) ~ 0.2 %.
    assert mean == pytest.approx(ceiling / 2, rel=0.02)


def test_delay_ceiling_doubles_from_backoff_until_max_backoff() -> None:
    retry = Retry(attempts=10)
    top = ConstantRandom(1.0)
    assert [retry.delay(n, top) for n in range(1, 8)] == pytest.approx(
        [0.025, 0.05, 0.1, 0.2, 0.25, 0.25, 0.25]
    )


def test_delay_past_the_cap_stays_at_max_backoff() -> None:
    assert Retry().delay(10_000, ConstantRandom(1.0)) == 0.25


def test_delay_with_zero_backoff_is_zero() -> None:
    assert Retry(backoff=0, max_backoff=0).delay(3, ConstantRandom(1.0)) == 0.0


def test_delay_is_reproducible_with_a_seeded_rng() -> None:
    retry = Retry()
    first = [retry.delay(n, random.Random(7)) for n in (1, 2, 3)]
    again = [retry.delay(n, random.Random(7)) for n in (1, 2, 3)]
    assert first == again


def test_delay_rejects_retry_number_below_one() -> None:
    with pytest.raises(ValueError, match="retry_number must be >= 1, got 0"):
        Retry().delay(0, random.Random(0))


# -- Retry: which statuses -------------------------------------------------------------------------


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_errors_are_retryable_without_retry_after(status: int) -> None:
    assert Retry().retryable_status(status, None)


def test_429_without_retry_after_is_not_retryable() -> None:
    assert not Retry().retryable_status(429, None)


def test_429_with_retry_after_is_retryable() -> None:
    assert Retry().retryable_status(429, 1.0)


@pytest.mark.parametrize("status", [200, 400, 404, 500, 501])
def test_status_outside_statuses_is_not_retryable(status: int) -> None:
    assert not Retry().retryable_status(status, 0.5)


def test_custom_statuses_replace_the_defaults() -> None:
    retry = Retry(statuses={500})
    assert retry.retryable_status(500, None)
    assert not retry.retryable_status(503, None)


def test_retry_after_longer_than_max_retry_after_ends_retrying() -> None:
    assert not Retry(max_retry_after=5.0).retryable_status(503, 5.001)
    assert not Retry(max_retry_after=5.0).retryable_status(429, math.inf)


def test_retry_after_up_to_max_retry_after_is_honoured() -> None:
    assert Retry(max_retry_after=5.0).retryable_status(503, 5.0)


# -- RetryBudget: construction ---------------------------------------------------------------------


def test_budget_defaults_are_finagles() -> None:
    budget = RetryBudget(clock=FakeClock())
    assert (budget.ratio, budget.min_per_second, budget.ttl) == (0.2, 10.0, 10.0)


@pytest.mark.parametrize(
    ("kwargs", "error", "requirement"),
    [
        ({"ratio": -0.1}, ValueError, "a number in [0, 1000]"),
        ({"ratio": 1000.5}, ValueError, "a number in [0, 1000]"),
        ({"ratio": math.nan}, ValueError, "a number in [0, 1000]"),
        ({"ratio": "0.2"}, TypeError, "a number in [0, 1000]"),
        ({"min_per_second": -1}, ValueError, "a finite number >= 0"),
        ({"min_per_second": math.inf}, ValueError, "a finite number >= 0"),
        ({"min_per_second": True}, TypeError, "a finite number >= 0"),
        ({"ttl": 0.5}, ValueError, "a number of seconds in [1, 60]"),
        ({"ttl": 61}, ValueError, "a number of seconds in [1, 60]"),
        ({"clock": 0.0}, TypeError, "a callable returning seconds"),
    ],
)
def test_budget_rejects_bad_configuration_naming_field_and_value(
    kwargs: dict[str, Any], error: type[Exception], requirement: str
) -> None:
    ((field, value),) = kwargs.items()
    with pytest.raises(error) as info:
        RetryBudget(**kwargs)
    assert str(info.value) == f"RetryBudget.{field} must be {requirement}, got {value!r}"


def test_budget_accepts_the_edges_of_its_ranges() -> None:
    """ratio in [0, 1000] and ttl in [1, 60] are closed ranges, as the messages say."""
    widest = RetryBudget(ratio=1000, min_per_second=0, ttl=60, clock=FakeClock())
    assert (widest.ratio, widest.ttl) == (1000.0, 60.0)
    widest.deposit()
    assert widest.balance() == 1000.0
    narrowest = RetryBudget(ratio=0, min_per_second=0, ttl=1, clock=FakeClock())
    assert (narrowest.ratio, narrowest.ttl) == (0.0, 1.0)


def test_budget_repr_shows_configuration_and_state() -> None:
    budget = RetryBudget(clock=FakeClock())
    budget.deposit()
    assert repr(budget) == (
        "RetryBudget(ratio=0.2, min_per_second=10.0, ttl=10.0, "
        "deposits=1, withdrawals=0, balance=100)"
    )


# -- RetryBudget: behaviour ------------------------------------------------------------------------


def drain(budget: RetryBudget, limit: int = 100_000) -> int:
    """Withdraw until refused; the number granted."""
    granted = 0
    while granted < limit and budget.try_withdraw():
        granted += 1
    return granted


def test_budget_grants_the_reserve_without_deposits() -> None:
    """min_per_second * ttl retries are available to a client that has made no calls yet."""
    assert drain(RetryBudget(ratio=0.2, min_per_second=10, ttl=10, clock=FakeClock())) == 100


def test_budget_grants_ratio_of_deposits() -> None:
    budget = RetryBudget(ratio=0.2, min_per_second=0, clock=FakeClock())
    for _ in range(10):
        budget.deposit()
    assert drain(budget) == 2


def test_budget_ratio_above_one_grants_several_retries_per_deposit() -> None:
    budget = RetryBudget(ratio=2.5, min_per_second=0, clock=FakeClock())
    for _ in range(2):
        budget.deposit()
    assert drain(budget) == 5


def test_budget_ratio_with_float_rounding_grants_whole_credit() -> None:
    """0.7 * 10 is 7.000000000000001 and 0.1 * 3 is 0.30000000000000004: both must mean what
    they say."""
    budget = RetryBudget(ratio=0.7, min_per_second=0, clock=FakeClock())
    for _ in range(10):
        budget.deposit()
    assert drain(budget) == 7


def test_budget_grants_credit_short_of_a_whole_retry_by_float_rounding_only() -> None:
    """The 1e-9 tolerance is inclusive: a ratio of 1 - 1e-9 earns one whole retry per call,
    exactly as ``balance`` says."""
    budget = RetryBudget(ratio=1 - 1e-9, min_per_second=0, clock=FakeClock())
    budget.deposit()
    assert budget.balance() == 1.0
    assert budget.try_withdraw()
    assert not budget.try_withdraw()


def test_budget_with_zero_ratio_and_reserve_never_grants() -> None:
    budget = RetryBudget(ratio=0, min_per_second=0, clock=FakeClock())
    for _ in range(1000):
        budget.deposit()
    assert not budget.try_withdraw()


def test_refused_withdrawal_leaves_the_budget_untouched() -> None:
    budget = RetryBudget(ratio=0.5, min_per_second=0, clock=FakeClock())
    budget.deposit()
    assert not budget.try_withdraw()
    assert budget.snapshot() == {"deposits": 1.0, "withdrawals": 0.0, "balance": 0.0}
    budget.deposit()
    assert budget.try_withdraw()


def test_budget_refills_after_the_window() -> None:
    """Withdrawals made in bucket [100, 101) stop counting when bucket [111, 112) begins."""
    clock = FakeClock(100.5)
    budget = RetryBudget(ratio=0.2, min_per_second=10, ttl=10, clock=clock)
    assert drain(budget) == 100
    clock.set(110.999)
    assert not budget.try_withdraw()
    clock.set(111.0)
    assert drain(budget) == 100


def test_deposits_expire_within_eleven_tenths_of_ttl() -> None:
    clock = FakeClock(0.0)
    budget = RetryBudget(ratio=1.0, min_per_second=0, ttl=10, clock=clock)
    budget.deposit()
    clock.advance(11.0)
    assert not budget.try_withdraw()


def test_window_reaches_back_at_least_ttl() -> None:
    """An event at the end of a bucket still counts ttl later; it is gone one instant after."""
    clock = FakeClock(20.999)  # the last instant of bucket [20, 21)
    budget = RetryBudget(ratio=1.0, min_per_second=0, ttl=10, clock=clock)
    budget.deposit()
    clock.set(30.999)  # exactly ttl later
    assert budget.balance() == 1.0
    clock.set(31.0)  # bucket [20, 21) has left the window
    assert budget.balance() == 0.0


def test_window_reaches_back_less_than_eleven_tenths_of_ttl() -> None:
    """An event at the start of a bucket counts until 1.1 * ttl later, not at 1.1 * ttl."""
    clock = FakeClock(21.0)  # the first instant of bucket [21, 22)
    budget = RetryBudget(ratio=1.0, min_per_second=0, ttl=10, clock=clock)
    budget.deposit()
    clock.set(31.999)
    assert budget.balance() == 1.0
    clock.set(32.0)
    assert budget.balance() == 0.0


def test_window_slides_one_bucket_at_a_time_and_after_an_idle_gap() -> None:
    """Stepping through the buckets, the snapshot counts exactly the deposits of the current
    bucket and the 10 before it: none lost or kept too long, before or after an idle gap."""
    clock = FakeClock(0.5)
    budget = RetryBudget(ratio=1.0, min_per_second=0, ttl=10, clock=clock)
    made: list[int] = []
    for start in (0.5, 1000.5):
        clock.set(start)
        made.clear()
        for bucket in range(30):
            count = bucket % 4 + 1
            for _ in range(count):
                budget.deposit()
            made.append(count)
            assert budget.snapshot()["deposits"] == sum(made[-11:]), (start, bucket)
            clock.advance(1.0)


def test_a_call_on_a_bucket_edge_counts_in_the_new_bucket() -> None:
    """4.3 / 0.1 rounds to 42.99999999999999: a deposit at the edge 4.3 still belongs to bucket
    [4.3, 4.4) and so counts until 5.4, a whole ttl after that bucket ends."""
    clock = FakeClock(4.25)
    budget = RetryBudget(ratio=1.0, min_per_second=0, ttl=1, clock=clock)
    clock.set(4.3)
    budget.deposit()
    clock.set(5.35)
    assert budget.balance() == 1.0
    clock.set(5.4)
    assert budget.balance() == 0.0


def test_snapshot_at_the_instant_a_bucket_ends_shows_the_new_window() -> None:
    """At 11.0 bucket [0, 1) has left the window, for snapshot as for balance."""
    clock = FakeClock(0.5)
    budget = RetryBudget(ratio=1.0, min_per_second=0, ttl=10, clock=clock)
    budget.deposit()
    clock.set(10.5)
    budget.deposit()
    clock.set(11.0)
    assert budget.snapshot() == {"deposits": 1.0, "withdrawals": 0.0, "balance": 1.0}


def test_long_idle_gap_empties_the_whole_window() -> None:
    clock = FakeClock(5.0)
    budget = RetryBudget(ratio=1.0, min_per_second=0, ttl=10, clock=clock)
    for _ in range(5):
        budget.deposit()
    clock.advance(1e6)
    assert budget.snapshot() == {"deposits": 0.0, "withdrawals": 0.0, "balance": 0.0}


def test_clock_stepping_back_counts_into_the_current_bucket() -> None:
    clock = FakeClock(50.0)
    budget = RetryBudget(ratio=1.0, min_per_second=0, ttl=10, clock=clock)
    clock.set(40.0)
    budget.deposit()
    assert budget.try_withdraw()
    assert budget.snapshot()["withdrawals"] == 1.0


def test_balance_counts_whole_retries_allowed_now() -> None:
    budget = RetryBudget(ratio=0.2, min_per_second=0.15, ttl=10, clock=FakeClock())
    for _ in range(3):
        budget.deposit()
    assert budget.balance() == 2.0  # 0.6 + 1.5 = 2.1 credits
    assert drain(budget) == 2


def test_snapshot_reports_window_totals_and_balance() -> None:
    budget = RetryBudget(ratio=0.5, min_per_second=1, ttl=2, clock=FakeClock())
    for _ in range(4):
        budget.deposit()
    assert budget.try_withdraw()
    assert budget.snapshot() == {"deposits": 4.0, "withdrawals": 1.0, "balance": 3.0}


def test_budget_is_thread_safe() -> None:
    """Concurrent deposits and withdrawals lose no count and never overdraw."""
    budget = RetryBudget(ratio=0.25, min_per_second=0, ttl=10, clock=FakeClock())
    granted = [0] * 8
    barrier = threading.Barrier(8, timeout=WAIT_LIMIT)

    def worker(index: int) -> None:
        barrier.wait()
        for _ in range(2000):
            budget.deposit()
            granted[index] += budget.try_withdraw() + budget.try_withdraw()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        join(thread, "a thread depositing and withdrawing")
    assert budget.snapshot() == {"deposits": 16000.0, "withdrawals": 4000.0, "balance": 0.0}
    assert sum(granted) == 4000


# Bucket edges fall on the 1 ms grid the property test uses; this margin only absorbs float
# rounding at an edge (it narrows the withdrawals' window and widens the deposits').
_FUZZ = 1e-6

_operations = st.lists(
    st.one_of(
        st.just(("deposit", 0)),
        st.just(("withdraw", 0)),
        st.tuples(st.just("advance"), st.integers(min_value=1, max_value=4000)),
    ),
    max_size=400,
)


@settings(max_examples=300, deadline=None)
@given(
    ratio=st.sampled_from([0.0, 0.1, 0.2, 0.5, 1.0, 3.0]),
    min_per_second=st.sampled_from([0.0, 0.1, 0.5, 2.0]),
    ttl=st.sampled_from([1.0, 2.5, 10.0]),
    start_ms=st.integers(min_value=0, max_value=100_000),
    operations=_operations,
)
def test_budget_never_grants_more_than_ratio_of_deposits_plus_reserve(
    ratio: float,
    min_per_second: float,
    ttl: float,
    start_ms: int,
    operations: list[tuple[str, int]],
) -> None:
    """At every granted withdrawal at time t:
    withdrawals in (t - ttl, t] <= ratio * deposits in (t - 1.1 ttl, t] + min_per_second * ttl."""
    clock = FakeClock(start_ms / 1000)
    budget = RetryBudget(ratio=ratio, min_per_second=min_per_second, ttl=ttl, clock=clock)
    reserve = min_per_second * ttl
    deposits: list[float] = []
    withdrawals: list[float] = []
    for kind, ms in operations:
        if kind == "advance":
            clock.advance(ms / 1000)
        elif kind == "deposit":
            budget.deposit()
            deposits.append(clock())
        elif budget.try_withdraw():
            t = clock()
            withdrawals.append(t)
            recent = len(withdrawals) - bisect.bisect_right(withdrawals, t - ttl + _FUZZ)
            earned = len(deposits) - bisect.bisect_right(deposits, t - 1.1 * ttl - _FUZZ)
            assert recent <= ratio * earned + reserve + 1e-9


@settings(max_examples=200, deadline=None)
@given(
    ratio=st.sampled_from([0.0, 0.2, 1.0, 3.0]),
    min_per_second=st.sampled_from([0.0, 0.5, 2.0]),
    operations=_operations,
)
def test_budget_balance_predicts_try_withdraw(
    ratio: float, min_per_second: float, operations: list[tuple[str, int]]
) -> None:
    clock = FakeClock(3.0)
    budget = RetryBudget(ratio=ratio, min_per_second=min_per_second, ttl=2.5, clock=clock)
    for kind, ms in operations:
        if kind == "advance":
            clock.advance(ms / 1000)
        elif kind == "deposit":
            budget.deposit()
        else:
            allowed = budget.balance() >= 1
            assert budget.try_withdraw() == allowed


def simulate_steady_load(start: float, seconds: float, rate: int = 200, wanted: int = 2) -> float:
    """``rate`` calls/s, each wanting up to ``wanted`` retries; granted retries per call."""
    clock = FakeClock(start)
    budget = RetryBudget(clock=clock)
    calls = int(seconds * rate)
    granted = 0
    for i in range(calls):
        clock.set(start + i / rate)
        budget.deposit()
        for _ in range(wanted):
            if not budget.try_withdraw():
                break
            granted += 1
    return granted / calls


@pytest.mark.parametrize("start", [0.0, 1000.37, 2000.99])
def test_steady_state_grants_a_quarter_of_calls_as_retries(start: float) -> None:
    """200 calls/s all failing for 10 s: 20 % of 2000 calls + 10/s * 10 s = 500 retries, 0.25 per
    call; the slop allowed is one bucket of deposits (0.2 * 200 / 2000 = 0.02)."""
    assert 0.24 <= simulate_steady_load(start, 10.0) <= 0.27


def test_long_run_grants_about_a_quarter_of_calls_as_retries() -> None:
    assert 0.24 <= simulate_steady_load(12.3, 60.0) <= 0.27


# -- Retry-After -----------------------------------------------------------------------------------

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def http_date(epoch: float) -> str:
    return email.utils.formatdate(epoch, usegmt=True)


@pytest.mark.parametrize(("value", "seconds"), [("120", 120.0), ("0", 0.0), (" 7 ", 7.0)])
def test_retry_after_delta_seconds(value: str, seconds: float) -> None:
    assert parse_retry_after(value, NOW) == seconds


@pytest.mark.parametrize(("value", "seconds"), [("1.5", 1.5), ("0.25", 0.25), ("2.", 2.0)])
def test_retry_after_tolerates_decimal_seconds(value: str, seconds: float) -> None:
    assert parse_retry_after(value, NOW) == seconds


def test_retry_after_negative_seconds_means_now() -> None:
    assert parse_retry_after("-3", NOW) == 0.0


def test_retry_after_http_date_in_the_future() -> None:
    assert parse_retry_after(http_date(NOW + 30), NOW) == 30.0


def test_retry_after_http_date_in_the_past_means_now() -> None:
    assert parse_retry_after(http_date(NOW - 3600), NOW) == 0.0


def test_retry_after_rfc_9110_example_date() -> None:
    assert parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111777.0 - 10) == 10.0


def test_retry_after_date_with_unknown_zone_is_read_as_utc() -> None:
    assert parse_retry_after("Sun, 06 Nov 1994 08:49:37 -0000", 784111777.0 - 10) == 10.0


def test_retry_after_negative_zero_means_plain_zero() -> None:
    """A signed zero would show as "-0.0" wherever the wait is logged or reported."""
    assert [repr(parse_retry_after(value, NOW)) for value in ("-0", "-0.0", "+0")] == ["0.0"] * 3


def test_retry_after_http_date_under_a_second_ahead_is_kept() -> None:
    """HTTP-dates are whole seconds but the clock is not: what is left of the second counts."""
    assert parse_retry_after(http_date(NOW + 1), NOW) == 1.0
    assert parse_retry_after(http_date(NOW + 1), NOW + 0.25) == 0.75


def test_retry_after_date_with_a_numeric_zone_is_read_in_that_zone() -> None:
    """10:49:37 +0200 is 08:49:37 GMT (obsolete, but servers send it)."""
    assert parse_retry_after("Sun, 06 Nov 1994 10:49:37 +0200", 784111777.0 - 10) == 10.0


def test_retry_after_date_with_unknown_zone_is_utc_whatever_the_local_zone() -> None:
    """ "-0000" parses to a naive datetime: it must not be read in the machine's local zone."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "EST+5"  # POSIX spelling: no zoneinfo files needed
    time.tzset()
    try:
        value = parse_retry_after("Sun, 06 Nov 1994 08:49:37 -0000", 784111777.0 - 10)
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()
    assert value == 10.0


def test_retry_after_huge_seconds_exceed_any_max_retry_after() -> None:
    assert parse_retry_after("9" * 30, NOW) == 1e30
    huge = parse_retry_after("9" * 400, NOW)
    assert huge == math.inf
    assert not Retry().retryable_status(503, huge)


@pytest.mark.parametrize(
    "value",
    ["", "   ", "soon", "1e3", "nan", "inf", "-inf", "0x10", "1_000", "1,5", "5 s", "--1",
     "Sun, 99 Nov 1994 08:49:37 GMT", "Sun, 06 Foo 1994 08:49:37 GMT", "Sun, 06 Nov"],
)  # fmt: skip
def test_retry_after_garbage_is_none(value: str) -> None:
    assert parse_retry_after(value, NOW) is None


@given(value=st.text())
def test_retry_after_never_raises(value: str) -> None:
    result = parse_retry_after(value, NOW)
    assert result is None or result >= 0.0


@given(delta=st.integers(min_value=0, max_value=10**9))
def test_retry_after_http_date_round_trips_whole_seconds(delta: int) -> None:
    assert parse_retry_after(http_date(NOW + delta), NOW) == delta


# -- idempotency -----------------------------------------------------------------------------------


def test_idempotent_methods_are_rfc_9110s() -> None:
    expected = {b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"}
    assert expected == IDEMPOTENT_METHODS


@pytest.mark.parametrize("method", sorted(IDEMPOTENT_METHODS))
def test_idempotent_method_may_be_resent(method: bytes) -> None:
    assert is_idempotent(method, [])


@pytest.mark.parametrize("method", [b"POST", b"PATCH", b"CONNECT", b"get"])
def test_other_methods_may_not_be_resent(method: bytes) -> None:
    assert not is_idempotent(method, [(b"content-type", b"application/json")])


@pytest.mark.parametrize("name", [b"Idempotency-Key", b"idempotency-key", b"IDEMPOTENCY-KEY"])
def test_idempotency_key_makes_a_post_resendable(name: bytes) -> None:
    assert is_idempotent(b"POST", [(b"accept", b"*/*"), (name, b"8e03978e-40d5")])


def test_only_the_idempotency_key_header_makes_a_post_resendable() -> None:
    """Another header of the same length (``Accept-Language``) is no promise of deduplication."""
    assert not is_idempotent(b"POST", [(b"Accept-Language", b"en"), (b"idempotency-kez", b"1")])


def test_str_methods_from_httpx_are_recognised() -> None:
    assert is_idempotent("GET", [])
    assert not is_idempotent("POST", [])
