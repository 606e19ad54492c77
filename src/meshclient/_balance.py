"""Load balancers: which endpoint of a discovery snapshot an attempt goes to.

Balancers are decisions only. Randomness comes from an injected ``random.Random``; time comes in
as an argument (clock seconds, the clock of ``EndpointState.rtt_stamp``). ``Balancer.prepare``
runs once per discovery snapshot and returns a ``Picker``; the request path calls
``Picker.pick`` without locks, reading the live counters of each ``EndpointState``.

Latency is tracked as a peak-EWMA, as in Finagle's ``PeakEwma``, tower's ``load::PeakEwma`` and
Linkerd2: ``observe_rtt`` feeds it (under ``ep.lock``), ``rtt_estimate`` reads it as of ``now``.
"""

from __future__ import annotations

import abc
import itertools
import math
import random
import statistics
import sys
from collections.abc import Iterator
from fractions import Fraction

from ._endpoint import EndpointState

__all__ = [
    "DEFAULT_DECAY",
    "DEFAULT_RTT",
    "Balancer",
    "LeastLoaded",
    "PeakEwma",
    "Picker",
    "RoundRobin",
    "observe_rtt",
    "rtt_estimate",
]

#: Seconds; the time constant of the latency estimate (Finagle's and Linkerd's decay).
DEFAULT_DECAY = 10.0
#: Seconds; the estimate used when no endpoint of a service has been measured (Linkerd2).
DEFAULT_RTT = 0.030

# An estimate never reads below the smallest normal float: an endpoint whose estimate decayed
# away (or that answered faster than the clock ticks) still costs more with more outstanding.
_MIN_RTT = sys.float_info.min
# Rejection-sampling tries per candidate before a linear scan of the snapshot: with a few
# avoided endpoints among many, 8 tries almost always succeed, keeping `pick` O(1).
_AVOID_TRIES = 8
# Round robin: weights are made integer with this largest denominator (exact for weights such
# as 1, 2.5 or 0.25), and a weighted round is at most this many slots (memory and prepare time;
# larger rounds are scaled down to it, each endpoint keeping at least one slot).
_WEIGHT_DENOMINATOR = 1000
_MAX_ROUND = 1 << 16


def observe_rtt(ep: EndpointState, rtt: float, now: float, decay: float) -> None:
    """Fold one latency sample (``rtt`` seconds, ended at ``now``) into ``ep``'s peak-EWMA.

    The first sample replaces the starting guess outright. After that, a sample at or above the
    current (decayed) estimate replaces it at once: one slow response is enough to steer traffic
    away. A lower sample pulls the estimate toward itself with weight ``1 - w``, where
    ``w = exp(-elapsed / decay)`` and ``elapsed`` is the time since the last update, so recovery
    from a peak is gradual, over about ``decay`` seconds. The caller holds ``ep.lock``.
    """
    elapsed = now - ep.rtt_stamp
    if ep.rtt_samples:
        # Samples may arrive slightly out of clock order (``now`` is read before the lock):
        # a sample from the past weighs nothing against the prior.
        w = math.exp(-elapsed / decay) if elapsed > 0.0 else 1.0
        prior = ep.rtt * w
        if rtt < prior:
            moved = rtt + (prior - rtt) * w
            rtt = moved if moved < prior else prior  # rounding must not lift it above the prior
    ep.rtt = rtt
    if elapsed > 0.0:
        ep.rtt_stamp = now
    ep.rtt_samples += 1


def rtt_estimate(ep: EndpointState, now: float, decay: float) -> float:
    """The latency estimate of ``ep`` in seconds as of ``now``; reads, never writes.

    With no new samples the estimate decays toward zero, ``rtt * exp(-idle / decay)``
    (half-life ``decay * ln 2``, 6.9 s by default), as Finagle and tower do on every read.
    That is what gets a slow endpoint that P2C stopped choosing tried again: its cost falls
    until it wins a comparison, and the probe's real latency either confirms the recovery or,
    being above the decayed estimate, re-penalises the endpoint at once. Decaying toward zero
    rather than toward a fixed value keeps the ratio of two idle endpoints' estimates constant,
    so a client back from idling keeps its ranking instead of flooding whichever endpoint went
    quiet first; and stale data is worth little, so the first fresh sample above it wins.
    """
    est = ep.rtt
    elapsed = now - ep.rtt_stamp
    if elapsed > 0.0:
        est *= math.exp(-elapsed / decay)
    return est if est > _MIN_RTT else _MIN_RTT


class Picker(abc.ABC):
    """Picks endpoints from one immutable discovery snapshot; built by ``Balancer.prepare``."""

    __slots__ = ("endpoints",)

    def __init__(self, endpoints: tuple[EndpointState, ...]) -> None:
        self.endpoints = endpoints

    @abc.abstractmethod
    def pick(self, avoid: tuple[EndpointState, ...], now: float) -> EndpointState:
        """The endpoint for the next attempt; ``endpoints`` is not empty.

        ``avoid`` holds endpoints this call already failed on: none of them is returned while
        another endpoint exists; if all are avoided, the pick is among all. ``now`` is clock
        seconds.
        """

    def __repr__(self) -> str:
        return f"<{type(self).__name__} over {len(self.endpoints)} endpoints>"


class Balancer(abc.ABC):
    """Turns a discovery snapshot into a ``Picker``; holds the settings (and an RNG, if given)."""

    __slots__ = ("_rng", "decay", "default_rtt")

    #: Seconds; every endpoint's latency estimate decays with it, whichever balancer picks.
    decay: float
    #: Seconds; the starting estimate when no endpoint of the snapshot has been measured.
    default_rtt: float

    def __init__(
        self,
        *,
        decay: float = DEFAULT_DECAY,
        default_rtt: float = DEFAULT_RTT,
        rng: random.Random | None = None,
    ) -> None:
        name = type(self).__name__
        self.decay = _positive_seconds(name, "decay", decay)
        self.default_rtt = _positive_seconds(name, "default_rtt", default_rtt)
        if rng is not None and not isinstance(rng, random.Random):
            raise TypeError(f"{name}.rng must be a random.Random instance, got {rng!r}")
        #: ``None``: picks draw from the client's RNG (``prepare``'s ``rng``).
        self._rng = rng

    def prepare(
        self, endpoints: tuple[EndpointState, ...], rng: random.Random | None = None
    ) -> Picker:
        """Seed starting estimates and build the picker for a new snapshot (not per request).

        Picks draw from the balancer's own ``rng`` if it was given one, else from ``rng`` (the
        client's), so one seeded RNG handed to the client makes its picks repeatable too.
        """
        for ep in endpoints:
            if not (isinstance(ep.weight, int | float) and 0.0 < ep.weight < math.inf):
                raise ValueError(
                    f"{type(self).__name__}: endpoint {ep.address} weight must be a number > 0,"
                    f" got {ep.weight!r}"
                )
        self._seed_estimates(endpoints)
        if self._rng is not None:
            rng = self._rng
        elif rng is None:
            rng = random.Random()
        return self._new_picker(endpoints, rng)

    def _seed_estimates(self, endpoints: tuple[EndpointState, ...]) -> None:
        """Give never-measured endpoints the median of their measured peers' estimates.

        A new endpoint then competes as an average peer: with a guess far below its peers it
        would take every request until its first answer, far above them it would be starved.
        The median is taken as of the latest clock reading in the snapshot and stamped with
        it, so the seed decays in step with the peers it came from.
        """
        fresh = [ep for ep in endpoints if ep.rtt_samples == 0]
        if not fresh:
            return
        decay = self.decay
        as_of = max(ep.rtt_stamp for ep in endpoints)
        measured = [rtt_estimate(ep, as_of, decay) for ep in endpoints if ep.rtt_samples]
        seed = statistics.median(measured) if measured else self.default_rtt
        for ep in fresh:
            with ep.lock:
                if ep.rtt_samples == 0:  # a sample may have landed since the scan above
                    ep.rtt = seed
                    ep.rtt_stamp = as_of

    @abc.abstractmethod
    def _new_picker(self, endpoints: tuple[EndpointState, ...], rng: random.Random) -> Picker:
        """Precompute whatever picking this snapshot needs; ``rng`` is what picks draw from."""


def _positive_seconds(owner: str, field: str, value: object) -> float:
    """Validate a duration setting at construction, naming the class, field and value."""
    message = f"{owner}.{field} must be a number > 0 (seconds), got {value!r}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(message)
    if not 0.0 < value < math.inf:
        raise ValueError(message)
    return float(value)


# ----------------------------------------------------------------------------- round robin


class RoundRobin(Balancer):
    """Each endpoint in turn, in proportion to its weight (smooth weighted round robin).

    The round is precomputed per snapshot: every endpoint gets slots in proportion to its
    weight, spread evenly over the round, so k rounds give each endpoint exactly k times its slots.
    Each snapshot starts at a random place in the round, so that many clients started together
    do not send their first requests to the same endpoint.
    """

    __slots__ = ()

    def __init__(self, *, rng: random.Random | None = None) -> None:
        super().__init__(rng=rng)

    def __repr__(self) -> str:
        return "RoundRobin()"

    def _new_picker(self, endpoints: tuple[EndpointState, ...], rng: random.Random) -> Picker:
        schedule = _weighted_round(endpoints)
        start = rng.randrange(len(schedule)) if schedule else 0
        return _RoundRobinPicker(endpoints, schedule, start)


def _weighted_round(endpoints: tuple[EndpointState, ...]) -> tuple[EndpointState, ...]:
    """One round of the schedule: each endpoint once if weights are equal, else by weight."""
    if len({ep.weight for ep in endpoints}) <= 1:
        return endpoints
    slots = _integer_weights([ep.weight for ep in endpoints])
    # Slot k of endpoint i sits at (k + 1/2) / slots[i] of the round (Sainte-Laguë order):
    # an endpoint's slots are evenly spaced, and sorting places every endpoint within about
    # len(endpoints) / 2 positions of its ideal spacing.
    # (Float keys of equal ratios are bit-identical: the division is correctly rounded.)
    order = sorted(((k + 0.5) / s, i) for i, s in enumerate(slots) for k in range(s))
    return tuple(endpoints[i] for _, i in order)


def _integer_weights(weights: list[float]) -> list[int]:
    """The smallest integers in the weights' exact ratio, or the nearest fit in a bounded round."""
    fractions = [Fraction(w).limit_denominator(_WEIGHT_DENOMINATOR) for w in weights]
    scale = math.lcm(*(f.denominator for f in fractions))
    ints = [f.numerator * (scale // f.denominator) for f in fractions]
    common = math.gcd(*ints)
    ints = [n // common for n in ints]
    if 0 in ints or sum(ints) > _MAX_ROUND:
        total = math.fsum(weights)
        ints = [max(1, round(w / total * _MAX_ROUND)) for w in weights]
    return ints


class _RoundRobinPicker(Picker):
    __slots__ = ("_counter", "_schedule", "_size")

    def __init__(
        self,
        endpoints: tuple[EndpointState, ...],
        schedule: tuple[EndpointState, ...],
        start: int,
    ) -> None:
        super().__init__(endpoints)
        self._schedule = schedule
        self._size = len(schedule)
        # itertools.count advances atomically under the GIL: no lock on the request path.
        self._counter: Iterator[int] = itertools.count(start)

    def pick(self, avoid: tuple[EndpointState, ...], now: float) -> EndpointState:
        schedule = self._schedule
        size = self._size
        position = next(self._counter) % size
        ep = schedule[position]
        if avoid and ep in avoid:
            # Walk on from this slot without consuming the shared counter (retries are rare).
            for step in range(1, size):
                candidate = schedule[(position + step) % size]
                if candidate not in avoid:
                    return candidate
        return ep


# ------------------------------------------------------------------ power of two choices


class _P2CPicker(Picker):
    """Power of two choices: two distinct random endpoints, the cheaper one wins.

    Two draws per pick whatever the size of the snapshot (Mitzenmacher: nearly the load
    spread of examining every endpoint, at O(1) cost and without herding onto one endpoint).
    On cost ties the first draw wins, which is itself uniformly random.
    """

    __slots__ = ("_random", "_size")

    def __init__(self, endpoints: tuple[EndpointState, ...], rng: random.Random) -> None:
        super().__init__(endpoints)
        self._random = rng.random
        self._size = len(endpoints)

    @abc.abstractmethod
    def _cheaper(self, a: EndpointState, b: EndpointState, now: float) -> EndpointState:
        """``a`` unless ``b`` costs strictly less."""

    def pick(self, avoid: tuple[EndpointState, ...], now: float) -> EndpointState:
        endpoints = self.endpoints
        size = self._size
        if size == 1:
            return endpoints[0]
        random_ = self._random
        # int(random() * n) is uniform over range(n) and about 5x cheaper than randrange.
        i = int(random_() * size)
        j = int(random_() * (size - 1))
        a = endpoints[i]
        b = endpoints[j + 1 if j >= i else j]
        if avoid and (a in avoid or b in avoid):
            return self._pick_avoiding(avoid, now)
        return self._cheaper(a, b, now)

    def _pick_avoiding(self, avoid: tuple[EndpointState, ...], now: float) -> EndpointState:
        """P2C among the endpoints not in ``avoid``: rejection sampling, then a linear scan."""
        endpoints = self.endpoints
        size = self._size
        random_ = self._random
        for _ in range(_AVOID_TRIES):
            i = int(random_() * size)
            if endpoints[i] not in avoid:
                for _ in range(_AVOID_TRIES):
                    j = int(random_() * (size - 1))
                    b = endpoints[j + 1 if j >= i else j]
                    if b not in avoid:
                        return self._cheaper(endpoints[i], b, now)
                break
        allowed = [ep for ep in endpoints if ep not in avoid] or list(endpoints)
        if len(allowed) == 1:
            return allowed[0]
        i = int(random_() * len(allowed))
        j = int(random_() * (len(allowed) - 1))
        return self._cheaper(allowed[i], allowed[j + 1 if j >= i else j], now)


class LeastLoaded(Balancer):
    """P2C on outstanding requests per unit of weight (Finagle's least-loaded balancer).

    The cost is ``(outstanding + 1) / weight``, the load the endpoint would carry with this
    request: with equal weights it orders endpoints exactly as ``outstanding`` does, and with
    unequal weights idle endpoints still differ, so weights count even at low concurrency.
    """

    __slots__ = ()

    def __init__(self, *, rng: random.Random | None = None) -> None:
        super().__init__(rng=rng)

    def __repr__(self) -> str:
        return "LeastLoaded()"

    def _new_picker(self, endpoints: tuple[EndpointState, ...], rng: random.Random) -> Picker:
        return _LeastLoadedPicker(endpoints, rng)


class _LeastLoadedPicker(_P2CPicker):
    __slots__ = ()

    def _cheaper(self, a: EndpointState, b: EndpointState, now: float) -> EndpointState:
        if (b.outstanding + 1) / b.weight < (a.outstanding + 1) / a.weight:
            return b
        return a


class PeakEwma(Balancer):
    """P2C on expected latency: ``rtt_estimate * (outstanding + 1) / weight`` (the default).

    The cost estimates how long this request would wait behind the endpoint's outstanding
    ones (Finagle, Linkerd2), so a slow endpoint and a busy one are both avoided. The latency
    used is never below the age of the endpoint's oldest attempt still waiting for its answer:
    an endpoint that just turned slow is avoided before its first slow answer arrives. The weight
    divides the cost, as in Finagle: an endpoint of weight 2 is chosen over one of weight 1
    until it carries about twice the load. ``decay`` (seconds) is how fast the estimate forgets;
    ``default_rtt`` (seconds) is the starting estimate when no endpoint has been measured.
    """

    __slots__ = ()

    def __init__(
        self,
        *,
        decay: float = DEFAULT_DECAY,
        default_rtt: float = DEFAULT_RTT,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(decay=decay, default_rtt=default_rtt, rng=rng)

    def __repr__(self) -> str:
        return f"PeakEwma(decay={self.decay!r}, default_rtt={self.default_rtt!r})"

    def _new_picker(self, endpoints: tuple[EndpointState, ...], rng: random.Random) -> Picker:
        return _PeakEwmaPicker(endpoints, rng, self.decay)


class _PeakEwmaPicker(_P2CPicker):
    __slots__ = ("_decay",)

    def __init__(
        self, endpoints: tuple[EndpointState, ...], rng: random.Random, decay: float
    ) -> None:
        super().__init__(endpoints, rng)
        self._decay = decay

    def _cheaper(self, a: EndpointState, b: EndpointState, now: float) -> EndpointState:
        decay = self._decay
        rtt_a = rtt_estimate(a, now, decay)
        rtt_b = rtt_estimate(b, now, decay)
        # An attempt still unanswered after t seconds says the endpoint takes at least t now:
        # a replica that just turned slow costs more before its first answer (or cut-off).
        since = a.waiting_since
        if since is not None and now - since > rtt_a:
            rtt_a = now - since
        since = b.waiting_since
        if since is not None and now - since > rtt_b:
            rtt_b = now - since
        # An endpoint with no sample yet borrows its rival's estimate, so load alone decides
        # and a new endpoint is measured at once instead of waiting for its guess to decay.
        if not a.rtt_samples:
            if b.rtt_samples:
                rtt_a = rtt_b
        elif not b.rtt_samples:
            rtt_b = rtt_a
        cost_a = rtt_a * (a.outstanding + 1) / a.weight
        cost_b = rtt_b * (b.outstanding + 1) / b.weight
        return b if cost_b < cost_a else a
