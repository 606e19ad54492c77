"""Specification of the load balancers and the peak-EWMA latency estimate (fake time: floats)."""

from __future__ import annotations

import heapq
import itertools
import math
import random
import re
from collections import Counter

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from meshclient._balance import (
    DEFAULT_DECAY,
    DEFAULT_RTT,
    Balancer,
    LeastLoaded,
    PeakEwma,
    RoundRobin,
    observe_rtt,
    rtt_estimate,
)
from meshclient._endpoint import EndpointState

DECAY = DEFAULT_DECAY


class CountingRandom(random.Random):
    """A seeded RNG that counts the draws a pick makes."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self.calls = 0

    def random(self) -> float:
        self.calls += 1
        return super().random()


class CountingTuple(tuple[EndpointState, ...]):
    """An ``avoid`` tuple that counts membership checks, to tell a scan from sampling."""

    checks = 0

    def __contains__(self, item: object) -> bool:
        self.checks += 1
        return super().__contains__(item)


class ScriptedRandom(random.Random):
    """An RNG whose ``random()`` returns the given draws in turn: a pick the test chooses."""

    def __init__(self, *draws: float) -> None:
        super().__init__(0)
        self.draws = list(draws)

    def random(self) -> float:
        return self.draws.pop(0)


def endpoint(
    i: int = 0,
    *,
    weight: float = 1.0,
    rtt: float | None = None,
    at: float = 0.0,
    outstanding: int = 0,
) -> EndpointState:
    """An endpoint; with ``rtt`` it has one latency sample of that many seconds at ``at``."""
    ep = EndpointState(f"127.0.{i // 256}.{i % 256}", 8000, weight, initial_rtt=DEFAULT_RTT, now=at)
    if rtt is not None:
        observe_rtt(ep, rtt, at, DECAY)
    ep.outstanding = outstanding
    return ep


def endpoints(n: int) -> tuple[EndpointState, ...]:
    return tuple(endpoint(i) for i in range(n))


p2c_balancers = st.sampled_from([PeakEwma, LeastLoaded])
all_balancers = st.sampled_from([PeakEwma, LeastLoaded, RoundRobin])
latencies = st.floats(min_value=1e-6, max_value=100.0)
gaps = st.floats(min_value=0.0, max_value=1_000.0)


# ------------------------------------------------------------------------- peak-EWMA estimate


def test_first_sample_replaces_the_starting_guess() -> None:
    ep = endpoint()
    observe_rtt(ep, 0.002, now=5.0, decay=DECAY)
    assert (ep.rtt, ep.rtt_stamp, ep.rtt_samples) == (0.002, 5.0, 1)


@given(first=latencies, gap=gaps, sample=latencies)
def test_sample_above_the_current_estimate_is_adopted_at_once(
    first: float, gap: float, sample: float
) -> None:
    ep = endpoint(rtt=first, at=0.0)
    if sample >= rtt_estimate(ep, gap, DECAY):
        observe_rtt(ep, sample, gap, DECAY)
        assert ep.rtt == sample


def test_lower_sample_pulls_the_estimate_toward_it_by_the_elapsed_weight() -> None:
    ep = endpoint(rtt=1.0, at=0.0)
    observe_rtt(ep, 0.1, now=5.0, decay=DECAY)
    w = math.exp(-5.0 / DECAY)
    prior = 1.0 * w
    assert ep.rtt == pytest.approx(0.1 + (prior - 0.1) * w)
    assert 0.1 < ep.rtt < prior


@given(samples=st.lists(st.tuples(gaps, latencies), min_size=1, max_size=40))
@example(samples=[(0.0, 34.86360501817497), (0.0, 1.8915004094112327)])  # rounding, once
def test_estimate_stays_within_the_observed_range_after_the_first_sample(
    samples: list[tuple[float, float]],
) -> None:
    ep = endpoint()
    now = 0.0
    seen: list[float] = []
    for gap, sample in samples:
        now += gap
        observe_rtt(ep, sample, now, DECAY)
        seen.append(sample)
        assert min(seen) <= ep.rtt <= max(seen)


def test_lower_sample_soon_after_the_last_one_still_moves_the_estimate() -> None:
    """Recovery is gradual, not frozen: half a second later a faster answer already counts."""
    ep = endpoint(rtt=1.0, at=0.0)
    observe_rtt(ep, 0.1, now=0.5, decay=DECAY)
    w = math.exp(-0.5 / DECAY)
    assert ep.rtt == pytest.approx(0.1 + (w - 0.1) * w)
    assert ep.rtt < w


def test_sample_from_the_past_neither_lowers_the_estimate_nor_rewinds_the_stamp() -> None:
    ep = endpoint(rtt=0.5, at=10.0)
    observe_rtt(ep, 0.1, now=9.0, decay=DECAY)
    assert (ep.rtt, ep.rtt_stamp, ep.rtt_samples) == (0.5, 10.0, 2)


@given(rtt=latencies, earlier=gaps, later=gaps)
def test_estimate_decays_monotonically_with_idle_time(
    rtt: float, earlier: float, later: float
) -> None:
    ep = endpoint(rtt=rtt, at=0.0)
    earlier, later = sorted((earlier, later))
    assert rtt_estimate(ep, later, DECAY) <= rtt_estimate(ep, earlier, DECAY) <= rtt


def test_idle_estimate_halves_every_decay_times_ln2_seconds() -> None:
    ep = endpoint(rtt=0.2, at=0.0)
    assert rtt_estimate(ep, DECAY * math.log(2), DECAY) == pytest.approx(0.1)


def test_reading_the_estimate_changes_nothing() -> None:
    ep = endpoint(rtt=0.2, at=0.0)
    rtt_estimate(ep, 50.0, DECAY)
    assert (ep.rtt, ep.rtt_stamp, ep.rtt_samples) == (0.2, 0.0, 1)


@given(a=latencies, b=latencies, stamp_b=gaps, idle=st.floats(min_value=0.0, max_value=50.0))
def test_idle_endpoints_keep_their_ranking(a: float, b: float, stamp_b: float, idle: float) -> None:
    """Decay toward zero is multiplicative: a client back from idling keeps its ordering."""
    fast, slow = endpoint(0, rtt=a, at=0.0), endpoint(1, rtt=b, at=stamp_b)
    before = rtt_estimate(fast, stamp_b, DECAY) / rtt_estimate(slow, stamp_b, DECAY)
    later = stamp_b + idle
    after = rtt_estimate(fast, later, DECAY) / rtt_estimate(slow, later, DECAY)
    assert after == pytest.approx(before)


def test_fully_decayed_estimate_stays_positive_so_outstanding_still_counts() -> None:
    busy, idle = endpoint(0, rtt=0.01, outstanding=3), endpoint(1, rtt=0.01)
    now = 1e6  # far beyond exp underflow
    assert rtt_estimate(busy, now, DECAY) > 0.0
    picker = PeakEwma(rng=random.Random(0)).prepare((busy, idle))
    assert {picker.pick((), now) for _ in range(50)} == {idle}


def test_slow_endpoint_that_recovered_is_tried_again_and_regains_its_share() -> None:
    fast, flaky = endpoint(0), endpoint(1)
    picker = PeakEwma(rng=random.Random(3)).prepare((fast, flaky))
    latency = {fast: 0.01, flaky: 1.0}
    recovered_at = 20.0
    flaky_picks: list[float] = []
    now = 0.0
    while now < 120.0:
        now += 0.01
        if now >= recovered_at:
            latency[flaky] = 0.01
        ep = picker.pick((), now)
        if ep is flaky:
            flaky_picks.append(now)
        observe_rtt(ep, latency[ep], now, DECAY)
    assert any(recovered_at <= t < recovered_at + 60.0 for t in flaky_picks)
    last_10s = sum(1 for t in flaky_picks if t >= 110.0)
    assert last_10s > 0.3 * 1000


# ------------------------------------------------------------------------- seeding in prepare


def test_new_endpoint_starts_at_the_median_of_measured_peers() -> None:
    peers = tuple(endpoint(i, rtt=rtt, at=7.0) for i, rtt in enumerate((0.01, 0.09, 0.02)))
    new = endpoint(3, at=7.0)
    PeakEwma().prepare((*peers, new))
    assert (new.rtt, new.rtt_stamp, new.rtt_samples) == (0.02, 7.0, 0)


def test_seed_is_the_peers_median_as_of_the_latest_clock_reading() -> None:
    stale = endpoint(0, rtt=0.08, at=0.0)
    recent = endpoint(1, rtt=0.01, at=DECAY * math.log(2))  # stale has halved to 0.04 by then
    new = endpoint(2, at=1.0)
    RoundRobin().prepare((stale, recent, new))
    assert new.rtt == pytest.approx((0.04 + 0.01) / 2)
    assert new.rtt_stamp == recent.rtt_stamp


def test_new_endpoints_start_at_default_rtt_when_no_peer_was_measured() -> None:
    eps = endpoints(3)
    for ep in eps:
        ep.rtt = 5.0
    PeakEwma(default_rtt=0.05).prepare(eps)
    assert [ep.rtt for ep in eps] == [0.05, 0.05, 0.05]


def test_prepare_leaves_measured_endpoints_alone() -> None:
    measured = endpoint(0, rtt=0.3, at=2.0)
    LeastLoaded().prepare((measured, endpoint(1, at=9.0)))
    assert (measured.rtt, measured.rtt_stamp, measured.rtt_samples) == (0.3, 2.0, 1)


def test_prepare_accepts_an_empty_snapshot() -> None:
    assert PeakEwma().prepare(()).endpoints == ()


# --------------------------------------------------------------------- power of two choices


@given(
    kind=all_balancers,
    n=st.integers(min_value=1, max_value=30),
    data=st.data(),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_pick_never_returns_an_avoided_endpoint_while_another_exists(
    kind: type[Balancer], n: int, data: st.DataObject, seed: int
) -> None:
    eps = endpoints(n)
    avoided = data.draw(st.lists(st.sampled_from(eps), unique=True, max_size=n - 1))
    picker = kind(rng=random.Random(seed)).prepare(eps)
    for _ in range(20):
        assert picker.pick(tuple(avoided), 0.0) not in avoided


@given(kind=all_balancers, n=st.integers(min_value=1, max_value=10))
def test_pick_is_among_all_when_every_endpoint_is_avoided(kind: type[Balancer], n: int) -> None:
    eps = endpoints(n)
    picker = kind(rng=random.Random(0)).prepare(eps)
    assert picker.pick(eps, 0.0) in eps


@given(
    kind=p2c_balancers,
    n=st.integers(min_value=2, max_value=20),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_p2c_candidates_are_distinct_so_the_costliest_endpoint_never_wins(
    kind: type[Balancer], n: int, seed: int
) -> None:
    eps = tuple(endpoint(i, rtt=0.01, outstanding=0) for i in range(n))
    costliest = eps[seed % n]
    costliest.outstanding = 5
    costliest.rtt = 0.05
    picker = kind(rng=random.Random(seed)).prepare(eps)
    assert all(picker.pick((), 0.0) is not costliest for _ in range(200))


@pytest.mark.parametrize("kind", [PeakEwma, LeastLoaded])
def test_p2c_cost_tie_goes_to_the_first_draw(kind: type[Balancer]) -> None:
    """Of two equally cheap candidates the first drawn wins, so ties follow the RNG exactly."""
    eps = tuple(endpoint(i, rtt=0.01, outstanding=1) for i in range(2))
    # Draws (0.75, 0.0): first eps[1], then eps[0]; draws (0.25, 0.0): eps[0], then eps[1].
    picker = kind(rng=ScriptedRandom(0.75, 0.0, 0.25, 0.0)).prepare(eps)
    assert [picker.pick((), 0.0), picker.pick((), 0.0)] == [eps[1], eps[0]]


@pytest.mark.parametrize("kind", [PeakEwma, LeastLoaded])
@pytest.mark.parametrize(
    ("size", "avoided"),
    [
        (4, (0,)),  # mostly rejection sampling
        (4, (3,)),
        (60, tuple(range(3, 60))),  # mostly the linear scan over the 3 left
    ],
)
def test_p2c_around_avoided_endpoints_compares_uniform_pairs_of_the_others(
    kind: type[Balancer], size: int, avoided: tuple[int, ...]
) -> None:
    """Avoiding endpoints must not skew P2C among the rest: each pair of distinct allowed
    endpoints is equally likely, so of three the cheapest wins 2/3, the middle one 1/3 (when
    paired with the costliest) and the costliest never."""
    eps = tuple(endpoint(i, rtt=0.01) for i in range(size))
    allowed = [ep for ep in eps if eps.index(ep) not in avoided]
    middle, costliest, cheapest = allowed
    middle.outstanding, costliest.outstanding = 1, 2
    avoid = tuple(eps[i] for i in avoided)
    picker = kind(rng=random.Random(11)).prepare(eps)
    picks = Counter(picker.pick(avoid, 0.0) for _ in range(6_000))
    assert picks[costliest] == 0
    assert picks[cheapest] + picks[middle] == 6_000
    assert picks[cheapest] / 6_000 == pytest.approx(2 / 3, abs=0.03)


@pytest.mark.parametrize("kind", [PeakEwma, LeastLoaded])
def test_p2c_with_one_endpoint_returns_it_without_drawing(kind: type[Balancer]) -> None:
    rng = CountingRandom()
    only = endpoint()
    assert kind(rng=rng).prepare((only,)).pick((), 0.0) is only
    assert rng.calls == 0


@pytest.mark.parametrize("kind", [PeakEwma, LeastLoaded])
def test_pick_does_bounded_work_whatever_the_snapshot_size(kind: type[Balancer]) -> None:
    """O(1): two draws per pick, and a few draws and avoid-checks more when avoiding one
    endpoint, for 10 or 10 000 endpoints alike."""
    for n in (10, 10_000):
        rng = CountingRandom()
        eps = endpoints(n)
        picker = kind(rng=rng).prepare(eps)
        for _ in range(1_000):
            before = rng.calls
            picker.pick((), 0.0)
            assert rng.calls - before == 2
        avoid = CountingTuple((eps[0],))
        start = rng.calls
        for _ in range(1_000):
            before, checks = rng.calls, avoid.checks
            picker.pick(avoid, 0.0)
            assert rng.calls - before <= 18
            assert avoid.checks - checks <= 18
        assert (rng.calls - start) / 1_000 < 3


def test_peak_ewma_sends_under_5_percent_to_a_10x_slower_endpoint() -> None:
    """Open-loop load, 1 000 requests/s over three 10 ms endpoints and one 100 ms endpoint."""
    eps = endpoints(4)
    slow = eps[3]
    latency = dict.fromkeys(eps, 0.01) | {slow: 0.1}
    picker = PeakEwma(rng=random.Random(7)).prepare(eps)
    in_flight: list[tuple[float, int, EndpointState]] = []
    picks: Counter[EndpointState] = Counter()
    for k in range(10_000):
        now = k * 0.001
        while in_flight and in_flight[0][0] <= now:
            done, _, ep = heapq.heappop(in_flight)
            ep.outstanding -= 1
            observe_rtt(ep, latency[ep], done, DECAY)
        ep = picker.pick((), now)
        ep.outstanding += 1
        picks[ep] += 1
        heapq.heappush(in_flight, (now + latency[ep], k, ep))
    assert picks[slow] < 500


def test_peak_ewma_divides_cost_by_weight() -> None:
    light = endpoint(0, rtt=0.01, weight=1.0)
    heavy = endpoint(1, rtt=0.01, weight=3.0, outstanding=1)  # 0.02 / 3 < 0.01 / 1
    picker = PeakEwma(rng=random.Random(0)).prepare((light, heavy))
    assert {picker.pick((), 0.0) for _ in range(50)} == {heavy}


@given(age=st.floats(0.02, 10.0), rtt=st.floats(1e-4, 0.019))
def test_peak_ewma_counts_an_unanswered_attempt_as_at_least_its_age(age: float, rtt: float) -> None:
    """A replica that just turned slow is avoided before its first slow answer arrives."""
    waiting = endpoint(0, rtt=rtt, outstanding=1)
    waiting.waiting_since = 100.0 - age  # its one attempt was sent ``age`` seconds ago
    other = endpoint(1, rtt=0.01, outstanding=1)  # cost 0.02: less than waiting's 2 * age
    picker = PeakEwma(rng=random.Random(0)).prepare((waiting, other))
    assert {picker.pick((), 100.0) for _ in range(20)} == {other}


@pytest.mark.parametrize(
    ("age", "rtt", "waiting_wins"),
    [
        (0.005, 0.02, False),  # younger than the estimate: cost 0.02 * 2 > 0.03
        (0.02, 0.01, True),  # older: cost exactly 0.02 * 2 < 0.05
    ],
)
def test_peak_ewma_counts_an_unanswered_attempt_as_its_age_not_more(
    age: float, rtt: float, waiting_wins: bool
) -> None:
    """The waiting attempt's age is a lower bound on the latency, nothing else: younger than
    the estimate it changes nothing, older it replaces the estimate by exactly the age,
    whichever of the two draws the endpoint is."""
    waiting = endpoint(0, rtt=rtt, at=100.0, outstanding=1)
    waiting.waiting_since = 100.0 - age
    other = endpoint(1, rtt=0.05 if waiting_wins else 0.03, at=100.0)
    picker = PeakEwma(rng=random.Random(0)).prepare((waiting, other))
    winner = waiting if waiting_wins else other
    assert {picker.pick((), 100.0) for _ in range(20)} == {winner}


def test_least_loaded_prefers_the_endpoint_with_fewer_outstanding() -> None:
    eps = tuple(endpoint(i, outstanding=i) for i in range(5))
    picker = LeastLoaded(rng=random.Random(1)).prepare(eps)
    picks = Counter(picker.pick((), 0.0) for _ in range(10_000))
    shares = [picks[ep] for ep in eps]
    assert shares == sorted(shares, reverse=True)
    assert picks[eps[4]] == 0  # the busiest always loses its comparison


def test_least_loaded_honours_weights_even_when_idle() -> None:
    light, heavy = endpoint(0, weight=1.0), endpoint(1, weight=4.0)
    picker = LeastLoaded(rng=random.Random(0)).prepare((light, heavy))
    assert {picker.pick((), 0.0) for _ in range(50)} == {heavy}
    heavy.outstanding = 4  # (4 + 1) / 4 > (0 + 1) / 1
    assert {picker.pick((), 0.0) for _ in range(50)} == {light}


# ------------------------------------------------------------------------------ round robin


@given(
    weights=st.lists(st.integers(min_value=1, max_value=20), min_size=1, max_size=8),
    rounds=st.integers(min_value=1, max_value=4),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_round_robin_gives_each_endpoint_its_weight_share_exactly(
    weights: list[int], rounds: int, seed: int
) -> None:
    eps = tuple(endpoint(i, weight=w) for i, w in enumerate(weights))
    picker = RoundRobin(rng=random.Random(seed)).prepare(eps)
    picks = Counter(picker.pick((), 0.0) for _ in range(rounds * sum(weights)))
    assert [picks[ep] for ep in eps] == [rounds * w for w in weights]


def test_round_robin_with_two_weights_keeps_their_exact_ratio_over_many_rounds() -> None:
    """Weights 1 and 2 make a round of 3 picks, not a scaled-up round that is off by one."""
    eps = (endpoint(0, weight=1.0), endpoint(1, weight=2.0))
    picker = RoundRobin(rng=random.Random(5)).prepare(eps)
    picks = Counter(picker.pick((), 0.0) for _ in range(3 * 65_536))
    assert [picks[ep] for ep in eps] == [65_536, 131_072]


def test_round_robin_gives_a_negligible_weight_one_slot_per_round() -> None:
    """Weights 3 and 1e-6 do not fit a round of 2**16 slots: it is scaled to 65 536 slots for
    the heavy endpoint and the light one keeps exactly one, instead of none or a fair share."""
    eps = (endpoint(0, weight=3.0), endpoint(1, weight=1e-6))
    picker = RoundRobin(rng=random.Random(5)).prepare(eps)
    picks = Counter(picker.pick((), 0.0) for _ in range(2 * 65_537))
    assert [picks[ep] for ep in eps] == [2 * 65_536, 2]


@pytest.mark.parametrize("weight", [1e-4, 7.5])
def test_round_robin_with_equal_weights_ignores_their_size(weight: float) -> None:
    """Only the ratio of weights counts: equal weights, tiny or large, pick exactly as weight 1."""
    for seed in range(20):
        plain = RoundRobin(rng=random.Random(seed)).prepare(endpoints(3))
        scaled_eps = tuple(endpoint(i, weight=weight) for i in range(3))
        scaled = RoundRobin(rng=random.Random(seed)).prepare(scaled_eps)
        expected = [plain.pick((), 0.0).address for _ in range(6)]
        assert [scaled.pick((), 0.0).address for _ in range(6)] == expected


def test_round_robin_spreads_slots_in_sainte_lague_order() -> None:
    """Weights 1, 2 and 4 give the round c b c a c b c (from a random start): slot k of an
    endpoint with s slots sits at (k + 1/2) / s of the round."""
    a, b, c = eps = (endpoint(0, weight=1.0), endpoint(1, weight=2.0), endpoint(2, weight=4.0))
    rounds = [(c, b, c, a, c, b, c)[k:] + (c, b, c, a, c, b, c)[:k] for k in range(7)]
    for seed in range(10):
        picker = RoundRobin(rng=random.Random(seed)).prepare(eps)
        sequence = tuple(picker.pick((), 0.0) for _ in range(14))
        assert sequence[:7] in rounds
        assert sequence[7:] == sequence[:7]


def test_round_robin_honours_fractional_weights_exactly() -> None:
    eps = (endpoint(0, weight=0.5), endpoint(1, weight=1.25), endpoint(2, weight=1.0))
    picker = RoundRobin(rng=random.Random(0)).prepare(eps)
    picks = Counter(picker.pick((), 0.0) for _ in range(3 * 11))  # a round is 2 + 5 + 4
    assert [picks[ep] for ep in eps] == [6, 15, 12]


@given(
    weights=st.lists(st.integers(min_value=1, max_value=12), min_size=2, max_size=6),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_round_robin_spreads_each_endpoint_evenly_over_the_round(
    weights: list[int], seed: int
) -> None:
    eps = tuple(endpoint(i, weight=w) for i, w in enumerate(weights))
    picker = RoundRobin(rng=random.Random(seed)).prepare(eps)
    size = sum(weights)
    sequence = [picker.pick((), 0.0) for _ in range(2 * size)]
    for ep, w in zip(eps, weights, strict=True):
        positions = [k for k, picked in enumerate(sequence) if picked is ep]
        widest = max(b - a for a, b in itertools.pairwise(positions))
        assert widest <= size / w + len(eps)


def test_round_robin_with_equal_weights_visits_each_endpoint_once_per_round() -> None:
    eps = endpoints(5)
    picker = RoundRobin(rng=random.Random(4)).prepare(eps)
    for _ in range(3):
        assert {picker.pick((), 0.0) for _ in range(5)} == set(eps)


def test_round_robin_starts_each_snapshot_at_a_random_place() -> None:
    eps = endpoints(4)
    firsts = {RoundRobin(rng=random.Random(seed)).prepare(eps).pick((), 0.0) for seed in range(50)}
    assert firsts == set(eps)


def test_round_robin_skips_avoided_endpoints_without_losing_the_rotation() -> None:
    eps = endpoints(3)
    picker = RoundRobin(rng=random.Random(0)).prepare(eps)
    picks = Counter(picker.pick((eps[0],), 0.0) for _ in range(30))
    assert picks[eps[0]] == 0
    assert picks[eps[1]] + picks[eps[2]] == 30


def test_round_robin_passes_an_avoided_endpoints_turn_to_the_next_in_the_round() -> None:
    """Avoiding one endpoint changes only its own turns, which go to its successor; the
    rotation of the others is the same as without avoiding."""
    eps = endpoints(4)
    plain = RoundRobin(rng=random.Random(2)).prepare(eps)
    avoiding = RoundRobin(rng=random.Random(2)).prepare(eps)
    for _ in range(12):
        expected = plain.pick((), 0.0)
        if expected is eps[1]:
            expected = eps[2]
        assert avoiding.pick((eps[1],), 0.0) is expected


# ------------------------------------------------------------------- validation and repr


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"decay": -1}, ValueError, "PeakEwma.decay must be a number > 0 (seconds), got -1"),
        ({"decay": 0.0}, ValueError, "PeakEwma.decay must be a number > 0 (seconds), got 0.0"),
        ({"decay": math.inf}, ValueError, "PeakEwma.decay must be a number > 0 (seconds), got inf"),
        ({"decay": math.nan}, ValueError, "PeakEwma.decay must be a number > 0 (seconds), got nan"),
        ({"decay": "10"}, TypeError, "PeakEwma.decay must be a number > 0 (seconds), got '10'"),
        ({"decay": True}, TypeError, "PeakEwma.decay must be a number > 0 (seconds), got True"),
        (
            {"default_rtt": 0},
            ValueError,
            "PeakEwma.default_rtt must be a number > 0 (seconds), got 0",
        ),
        ({"rng": 42}, TypeError, "PeakEwma.rng must be a random.Random instance, got 42"),
    ],
)
def test_peak_ewma_rejects_bad_settings_naming_field_and_value(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        PeakEwma(**kwargs)  # type: ignore[arg-type]
    assert str(info.value) == message


@pytest.mark.parametrize("kind", [RoundRobin, LeastLoaded])
def test_balancers_reject_a_non_random_rng_naming_the_class(kind: type[Balancer]) -> None:
    with pytest.raises(TypeError, match=rf"^{kind.__name__}\.rng must be a random\.Random"):
        kind(rng=object())  # type: ignore[arg-type]


def test_prepare_rejects_a_non_positive_weight_naming_the_endpoint() -> None:
    bad = endpoint(1, weight=0.0)
    with pytest.raises(ValueError, match=r"^RoundRobin: endpoint 127\.0\.0\.1:8000 weight must be"):
        RoundRobin().prepare((endpoint(0), bad))


@pytest.mark.parametrize("weight", [math.inf, math.nan, -2.0, "3"])
def test_prepare_rejects_every_weight_that_is_not_a_finite_positive_number(weight: object) -> None:
    """An infinite weight would take every pick: it is refused like zero, naming the value."""
    bad = endpoint(1)
    bad.weight = weight  # type: ignore[assignment]
    message = f"PeakEwma: endpoint 127.0.0.1:8000 weight must be a number > 0, got {weight!r}"
    with pytest.raises(ValueError, match=re.escape(message) + "$"):
        PeakEwma().prepare((endpoint(0), bad))


def test_balancers_have_readable_reprs() -> None:
    assert repr(PeakEwma()) == "PeakEwma(decay=10.0, default_rtt=0.03)"
    assert repr(PeakEwma(decay=5, default_rtt=0.1)) == "PeakEwma(decay=5.0, default_rtt=0.1)"
    assert repr(LeastLoaded()) == "LeastLoaded()"
    assert repr(RoundRobin()) == "RoundRobin()"


def test_pickers_show_their_kind_and_snapshot_size() -> None:
    eps = endpoints(3)
    for balancer, name in [
        (RoundRobin(), "_RoundRobinPicker"),
        (LeastLoaded(), "_LeastLoadedPicker"),
        (PeakEwma(), "_PeakEwmaPicker"),
    ]:
        picker = balancer.prepare(eps)
        assert picker.endpoints == eps
        assert repr(picker) == f"<{name} over 3 endpoints>"


def test_every_balancer_keeps_latency_with_the_default_decay() -> None:
    for balancer in (RoundRobin(), LeastLoaded(), PeakEwma()):
        assert (balancer.decay, balancer.default_rtt) == (DEFAULT_DECAY, DEFAULT_RTT)


def test_unmeasured_endpoint_borrows_its_rivals_estimate_so_load_decides() -> None:
    """A new endpoint is measured at once, not after its starting guess decays."""
    fast = endpoint(0, rtt=0.001)
    new = endpoint(1)
    picker = PeakEwma(rng=random.Random(3)).prepare((fast, new))
    new.rtt, new.rtt_samples = DEFAULT_RTT, 0  # a starting guess 30x the measured peer
    picks = Counter(picker.pick((), 0.0) for _ in range(1000))
    assert 400 < picks[new] < 600
