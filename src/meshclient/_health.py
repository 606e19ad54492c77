"""Endpoint health: outlier detection with growing, jittered ejections, one-probe half-open, panic.

``OutlierDetection`` is the frozen, validated policy (what Finagle calls failure accrual and Envoy
outlier detection). ``HealthTracker`` is its live state for one route: it is told the outcome of
every attempt (``record``), decides ejections and readmissions, and publishes the set the balancer
should pick from (``available``, with a ``version`` that changes whenever the set does).

Everything here is a pure decision: time comes in as ``now`` (clock seconds, the clock of
``EndpointState.rtt_stamp``), randomness from an injected ``random.Random``. The admission
objects of the service (breaker, bulkhead, throttle) live in ``_breaker``, ``_bulkhead`` and
``_throttle``.

Life of one endpoint::

    admitted ──(N consecutive failures | success rate < threshold | latency outlier)──▶ ejected
    ejected  ──(ejection time elapsed)──▶ probing      (not picked by the balancer)
    probing  ──probe_candidate() hands out ONE probe──▶ probe in flight
    probe ok ──▶ admitted          probe failed ──▶ ejected again, for twice as long (capped)
    probe lost (no outcome within probe_timeout, or release_probe) ──▶ another probe may go
"""

from __future__ import annotations

import heapq
import math
import random
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

import attrs

from ._balance import DEFAULT_DECAY, rtt_estimate
from ._endpoint import EndpointState
from ._validate import check_integer, check_number

__all__ = [
    "Ejected",
    "HealthTracker",
    "HealthTransition",
    "OutlierDetection",
    "Readmitted",
]


# -- validation ------------------------------------------------------------------------------------


def _seconds(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    check_number(
        "OutlierDetection",
        attribute.name,
        value,
        "a finite number of seconds > 0",
        lambda v: 0 < v < math.inf,
    )


def _count(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    check_integer("OutlierDetection", attribute.name, value, 1)


def _count_or_none(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    check_integer("OutlierDetection", attribute.name, value, 1, allow_none=True)


def _rate_or_none(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        check_number(
            "OutlierDetection", attribute.name, value, "a number in (0, 1] or None",
            lambda v: 0 < v <= 1,
        )  # fmt: skip


def _share(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    check_number(
        "OutlierDetection", attribute.name, value, "a number in [0, 1]", lambda v: 0 <= v <= 1
    )


def _jitter(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    check_number(
        "OutlierDetection", attribute.name, value, "a number in [0, 1)", lambda v: 0 <= v < 1
    )


def _factor_or_none(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        check_number(
            "OutlierDetection", attribute.name, value, "a finite number > 1 or None",
            lambda v: 1 < v < math.inf,
        )  # fmt: skip


def _floor(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    check_number(
        "OutlierDetection",
        attribute.name,
        value,
        "a finite number of seconds >= 0",
        lambda v: 0 <= v < math.inf,
    )


def _max_ejection(instance: OutlierDetection, attribute: attrs.Attribute[Any], value: Any) -> None:
    base = instance.base_ejection
    check_number(
        "OutlierDetection",
        attribute.name,
        value,
        f"a finite number of seconds >= OutlierDetection.base_ejection ({base!r})",
        lambda v: base <= v < math.inf,
    )


# -- policy ----------------------------------------------------------------------------------------


@attrs.frozen
class OutlierDetection:
    """When an endpoint is taken out of rotation, and for how long. Immutable; share freely.

    On by default in every ``Service``; ``Service(outlier=None)`` turns it off. Defaults follow
    Finagle's failure accrual and Envoy's outlier detection:

    - ``consecutive_failures`` = 5: eject after this many failed attempts in a row (``None``:
      off). A failure is whatever the caller classifies as one (connect errors, timeouts, 5xx).
    - ``success_rate`` = 0.8 over ``success_rate_window`` = 30 s, once the endpoint has at least
      ``success_rate_min_calls`` = 5 outcomes in the window: eject when successes < 80 % of
      outcomes (``None``: off). The window is 10 clock-aligned buckets plus the current one, so
      it reaches back 30-33 s. Checked on failures only (a success cannot lower the rate).
    - ``base_ejection`` = 5 s, doubled for each repeated ejection, capped at ``max_ejection`` =
      300 s, each spread by ``ejection_jitter`` = ±15 % so endpoints ejected together are not
      probed together. The repeat count falls by one for every ``success_rate_window`` the
      endpoint then stays admitted, so a flapping endpoint keeps long ejections and a recovered
      one starts over (Envoy's multiplier decay).
    - ``max_ejected_share`` = 0.5: never eject past ``floor(share * endpoints)`` at once (an
      ejection that would is skipped). If the admitted set is empty or the cap is exceeded (the
      endpoint set shrank), the balancer gets every endpoint: panic mode, as in Envoy, because
      some answer is better than none.
    - Latency outliers (``latency_factor`` = 3, ``None``: off): an admitted endpoint whose
      latency estimate (``_balance.rtt_estimate``) is at least 3x the median of its admitted
      peers' estimates *and* at least ``latency_floor`` = 10 ms above it, continuously while it
      took ``latency_min_samples`` = 20 more latency samples. Checked every ``latency_interval``
      = 1 s (amortised O(1); the scan is O(n log n)); needs at least 2 measured peers. Because the
      yardstick is the peers' median, a client-side stall (GC, a blocked event loop) that
      inflates every endpoint at once ejects nothing.
    - ``probe_timeout`` = 10 s: a probe whose outcome never arrives (a cancelled call that did not
      ``release_probe``) stops blocking the next probe after this long.
    """

    consecutive_failures: int | None = attrs.field(default=5, validator=_count_or_none)
    success_rate: float | None = attrs.field(default=0.8, validator=_rate_or_none)
    success_rate_window: float = attrs.field(default=30.0, validator=_seconds)
    success_rate_min_calls: int = attrs.field(default=5, validator=_count)
    base_ejection: float = attrs.field(default=5.0, validator=_seconds)
    max_ejection: float = attrs.field(default=300.0, validator=_max_ejection)
    ejection_jitter: float = attrs.field(default=0.15, validator=_jitter)
    max_ejected_share: float = attrs.field(default=0.5, validator=_share)
    latency_factor: float | None = attrs.field(default=3.0, validator=_factor_or_none)
    latency_floor: float = attrs.field(default=0.010, validator=_floor)
    latency_min_samples: int = attrs.field(default=20, validator=_count)
    latency_interval: float = attrs.field(default=1.0, validator=_seconds)
    probe_timeout: float = attrs.field(default=10.0, validator=_seconds)

    def ejection_time(self, repeat: int, rng: random.Random) -> float:
        """Seconds of the ``repeat``-th ejection in a row (1 = first): jittered, capped."""
        if repeat < 1:
            raise ValueError(f"repeat must be >= 1, got {repeat!r}")
        # 2**1023 is the largest power of two a float holds: every finite base reaches max.
        nominal = self.base_ejection * 2.0 ** min(repeat - 1, 1023)
        nominal = min(nominal, self.max_ejection)
        jitter = self.ejection_jitter
        if jitter:
            nominal *= 1.0 + jitter * (2.0 * rng.random() - 1.0)
        return min(nominal, self.max_ejection)


# -- transitions -----------------------------------------------------------------------------------


@attrs.frozen
class Ejected:
    """An endpoint left the balancer's set (``until``: clock seconds when a probe may go)."""

    address: str
    reason: str  # "consecutive_failures", "success_rate" or "latency"
    until: float
    duration: float  # seconds
    repeat: int  # 1 for a first ejection, 2 after one failed probe, ...


@attrs.frozen
class Readmitted:
    """A probe to an ejected endpoint succeeded: it is back in the balancer's set."""

    address: str
    ejected_for: float  # seconds since the ejection that started the episode


HealthTransition = Ejected | Readmitted

_ADMITTED: Final = 0
_EJECTED: Final = 1
_PROBING: Final = 2
_STATE_NAMES: Final = ("admitted", "ejected", "probing")
#: Buckets per success-rate window, plus the one being written (as ``RetryBudget``).
_BUCKETS: Final = 10
_SLOTS: Final = _BUCKETS + 1
#: Absorbs float rounding in ``rate * calls`` (0.7 * 10 == 7.000000000000001).
_EPSILON: Final = 1e-9
#: Fewest measured admitted peers a latency comparison needs: the median of one peer is noise.
_MIN_PEERS: Final = 2


class _EndpointHealth:
    """Health of one endpoint, owned by one tracker; mutated only under the tracker's lock."""

    __slots__ = (
        "consecutive",
        "edge",
        "ejected_at",
        "ep",
        "fail_sum",
        "fails",
        "head",
        "ok_sum",
        "oks",
        "owner",
        "probe_deadline",
        "probe_out",
        "reason",
        "repeat",
        "since",
        "slot",
        "slow_mark",
        "state",
        "until",
    )

    def __init__(self, owner: HealthTracker, ep: EndpointState, now: float, width: float) -> None:
        self.owner: HealthTracker | None = owner
        self.ep = ep
        self.state = _ADMITTED
        self.consecutive = 0
        self.oks = [0] * _SLOTS
        self.fails = [0] * _SLOTS
        self.ok_sum = 0
        self.fail_sum = 0
        self.head = math.floor(now / width)
        self.slot = self.head % _SLOTS
        self.edge = (self.head + 1) * width
        self.until = 0.0
        self.reason = ""
        self.repeat = 0  # ejections in a row, decaying while admitted
        self.since = now  # when the current state began
        self.ejected_at = now  # start of the current ejection episode
        self.probe_out = False
        self.probe_deadline = 0.0
        self.slow_mark = -1  # rtt_samples when first seen slow; -1 = not slow

    def roll(self, now: float, width: float) -> None:
        """Move the window's head to the bucket of ``now``, emptying buckets that expired."""
        head = max(math.floor(now / width), self.head + 1)
        gap = head - self.head
        oks, fails = self.oks, self.fails
        if gap >= _SLOTS:  # idle for a whole window: every bucket expired
            for i in range(_SLOTS):
                oks[i] = 0
                fails[i] = 0
            self.ok_sum = 0
            self.fail_sum = 0
        else:
            slot = self.slot
            for _ in range(gap):
                slot = slot + 1 if slot + 1 < _SLOTS else 0
                self.ok_sum -= oks[slot]
                self.fail_sum -= fails[slot]
                oks[slot] = 0
                fails[slot] = 0
        self.head = head
        self.slot = head % _SLOTS
        self.edge = (head + 1) * width

    def clear_window(self) -> None:
        """Forget outcomes, the failure streak and latency suspicion (on ejection, readmission)."""
        for i in range(_SLOTS):
            self.oks[i] = 0
            self.fails[i] = 0
        self.ok_sum = 0
        self.fail_sum = 0
        self.consecutive = 0
        self.slow_mark = -1


def _median_without(values: list[float], i: int) -> float:
    """Median of sorted ``values`` with index ``i`` left out (len(values) >= 2)."""
    n = len(values) - 1

    def at(j: int) -> float:
        return values[j] if j < i else values[j + 1]

    if n % 2:
        return at(n // 2)
    return (at(n // 2 - 1) + at(n // 2)) / 2.0


class HealthTracker:
    """Live outlier detection of one route; thread-safe, one lock, O(1) amortised per event.

    The request path uses it so:

    - per attempt: ``probe_candidate(now)`` first (one float compare unless a probe is due); if it
      returns an endpoint, send this attempt there and report with ``record(..., probe=True)``.
      Otherwise pick from ``available()``, rebuilding the picker only when ``version`` changed.
    - per outcome: ``record(ep, ok, now)``; a transition tuple (rare) goes to telemetry.
    - a probe attempt that ends without an outcome (cancelled): ``release_probe(ep)``.
    - discovery updates: ``set_endpoints(endpoints)``; state survives for endpoints that stay.

    ``available()`` and ``version`` are read without the lock: both are swapped by assignment.
    """

    __slots__ = (
        "_available",
        "_cap",
        "_clock",
        "_config",
        "_decay",
        "_ejected",
        "_endpoints",
        "_heap",
        "_lock",
        "_next_scan",
        "_ready",
        "_rng",
        "_seq",
        "_skipped",
        "_width",
        "next_probe_at",
        "panic",
        "version",
    )

    def __init__(
        self,
        config: OutlierDetection,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        decay: float = DEFAULT_DECAY,
    ) -> None:
        if not isinstance(config, OutlierDetection):
            raise TypeError(f"HealthTracker.config must be OutlierDetection, got {config!r}")
        if not callable(clock):
            raise TypeError(
                f"HealthTracker.clock must be a callable returning seconds, got {clock!r}"
            )
        if rng is None:
            rng = random.Random()
        elif not isinstance(rng, random.Random):
            raise TypeError(f"HealthTracker.rng must be a random.Random instance, got {rng!r}")
        check_number(
            "HealthTracker", "decay", decay, "a number of seconds > 0", lambda v: 0 < v < math.inf
        )
        self._config = config
        self._clock = clock
        self._rng = rng
        self._decay = float(decay)
        self._width = config.success_rate_window / _BUCKETS
        self._lock = threading.Lock()
        self._endpoints: tuple[EndpointState, ...] = ()
        self._available: tuple[EndpointState, ...] = ()
        # (until, seq, health) of ejected endpoints; stale entries are skipped when popped.
        self._heap: list[tuple[float, int, _EndpointHealth]] = []
        self._seq = 0
        #: Endpoints whose ejection expired, waiting for (or running) their probe.
        self._ready: list[_EndpointHealth] = []
        self._ejected = 0  # ejected + probing
        self._cap = 0
        self._skipped = 0
        self._next_scan = -math.inf if config.latency_factor is not None else math.inf
        #: Clock seconds before which ``probe_candidate`` has nothing to hand out.
        self.next_probe_at = math.inf
        #: Whether ``available()`` is every endpoint because too many are unhealthy.
        self.panic = False
        #: Changes whenever ``available()`` does.
        self.version = 0

    @property
    def config(self) -> OutlierDetection:
        return self._config

    # -- endpoint set ------------------------------------------------------------------------------

    def set_endpoints(self, endpoints: Iterable[EndpointState]) -> None:
        """Adopt a new discovery snapshot; endpoints that remain keep their health."""
        new = tuple(endpoints)
        with self._lock:
            now = self._clock()
            members = set(new)
            for ep in self._endpoints:
                if ep not in members and ep.health is not None and ep.health.owner is self:
                    ep.health.owner = None  # late outcomes of a removed endpoint are ignored
            ejected = 0
            for ep in new:
                h = ep.health
                if not isinstance(h, _EndpointHealth) or h.owner is not self:
                    ep.health = _EndpointHealth(self, ep, now, self._width)
                elif h.state != _ADMITTED:
                    ejected += 1
            self._endpoints = new
            self._ejected = ejected
            self._cap = math.floor(self._config.max_ejected_share * len(new) + _EPSILON)
            self._ready = [h for h in self._ready if h.owner is self]
            self._rebuild()
            self._refresh_next_probe()

    def _rebuild(self) -> None:
        endpoints = self._endpoints
        healthy = tuple(ep for ep in endpoints if ep.health.state == _ADMITTED)
        panic = bool(endpoints) and (not healthy or self._ejected > self._cap)
        self.panic = panic
        self._available = endpoints if panic else healthy
        self.version += 1

    # -- the request path --------------------------------------------------------------------------

    def available(self) -> tuple[EndpointState, ...]:
        """The endpoints the balancer should pick from now; never empty when endpoints exist.

        Lock-free: the tuple is replaced, never mutated. It changes only on ``record``,
        ``set_endpoints`` (ejection, readmission), and then ``version`` changes too; an ejection
        expiring does not change it (the endpoint waits for its probe, see ``probe_candidate``).
        """
        return self._available

    def probe_candidate(self, now: float) -> EndpointState | None:
        """An endpoint whose ejection has expired and that has no probe in flight, marked as
        probed (until ``record(..., probe=True)``, ``release_probe`` or ``probe_timeout``).

        Returns ``None`` with one float compare unless a probe is due (``next_probe_at``).
        """
        if now < self.next_probe_at:
            return None
        with self._lock:
            self._expire(now)
            chosen = None
            for h in self._ready:
                if not h.probe_out or now >= h.probe_deadline:
                    chosen = h
                    break
            if chosen is not None:
                chosen.probe_out = True
                chosen.probe_deadline = now + self._config.probe_timeout
            self._refresh_next_probe()
            return None if chosen is None else chosen.ep

    def release_probe(self, ep: EndpointState) -> None:
        """The probe to ``ep`` ended without an outcome (cancelled): let another probe go now."""
        with self._lock:
            h = ep.health
            if isinstance(h, _EndpointHealth) and h.owner is self and h.state == _PROBING:
                h.probe_out = False
                self._refresh_next_probe()

    def record(
        self, ep: EndpointState, ok: bool, now: float, *, probe: bool = False
    ) -> tuple[HealthTransition, ...] | None:
        """Account one attempt outcome on ``ep`` (``ok=False``: connect error, timeout, 5xx...).

        ``probe=True`` for the attempt ``probe_candidate`` handed out: it readmits the endpoint
        (success) or ejects it again for longer (failure). Outcomes on an ejected endpoint that
        are not its probe (attempts sent before the ejection) are ignored. Returns the
        transitions this outcome caused, usually ``None``; allocates nothing on success.
        """
        with self._lock:
            h = ep.health
            if not isinstance(h, _EndpointHealth) or h.owner is not self:
                return None
            if h.state != _ADMITTED:
                if probe and h.state == _PROBING:
                    return (self._close_probe(h, ok, now),)
                return None
            if now >= h.edge:
                h.roll(now, self._width)
            if ok:
                h.consecutive = 0
                h.oks[h.slot] += 1
                h.ok_sum += 1
                if now >= self._next_scan:
                    return self._scan(now)
                return None
            h.consecutive += 1
            h.fails[h.slot] += 1
            h.fail_sum += 1
            config = self._config
            reason = None
            threshold = config.consecutive_failures
            rate = config.success_rate
            if threshold is not None and h.consecutive >= threshold:
                reason = "consecutive_failures"
            elif rate is not None:
                calls = h.ok_sum + h.fail_sum
                if calls >= config.success_rate_min_calls and h.ok_sum < rate * calls - _EPSILON:
                    reason = "success_rate"
            transitions: tuple[HealthTransition, ...] | None = None
            if reason is not None:
                ejected = self._eject(h, reason, now)
                if ejected is not None:
                    transitions = (ejected,)
            if now >= self._next_scan:
                scanned = self._scan(now)
                if scanned:
                    transitions = scanned if transitions is None else transitions + scanned
            return transitions

    # -- decisions (lock held) ---------------------------------------------------------------------

    def _eject(self, h: _EndpointHealth, reason: str, now: float) -> Ejected | None:
        """Eject an admitted endpoint unless the cap forbids it."""
        if self._ejected + 1 > self._cap:
            self._skipped += 1
            return None
        if h.repeat:  # one repeat forgiven per window spent admitted
            # ``now`` is read before the lock, so it may precede ``since`` slightly.
            forgiven = max(0, int((now - h.since) // self._config.success_rate_window))
            h.repeat = max(0, h.repeat - forgiven)
        h.ejected_at = now
        h.reason = reason
        self._ejected += 1
        ejected = self._put_out(h, now)
        self._rebuild()
        return ejected

    def _put_out(self, h: _EndpointHealth, now: float) -> Ejected:
        h.repeat += 1
        duration = self._config.ejection_time(h.repeat, self._rng)
        h.state = _EJECTED
        h.since = now
        h.until = now + duration
        h.probe_out = False
        h.clear_window()
        self._seq += 1
        heapq.heappush(self._heap, (h.until, self._seq, h))
        if h.until < self.next_probe_at:
            self.next_probe_at = h.until
        return Ejected(h.ep.address, h.reason, h.until, duration, h.repeat)

    def _close_probe(self, h: _EndpointHealth, ok: bool, now: float) -> HealthTransition:
        self._ready.remove(h)
        if ok:
            h.state = _ADMITTED
            h.since = now
            h.probe_out = False
            h.clear_window()
            self._ejected -= 1
            self._rebuild()
            transition: HealthTransition = Readmitted(h.ep.address, now - h.ejected_at)
        else:
            transition = self._put_out(h, now)
        self._refresh_next_probe()
        return transition

    def _expire(self, now: float) -> None:
        """Move endpoints whose ejection ended to the probe queue."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            until, _, h = heapq.heappop(heap)
            if h.owner is self and h.state == _EJECTED and h.until == until:
                h.state = _PROBING
                h.since = now
                h.probe_out = False
                self._ready.append(h)

    def _refresh_next_probe(self) -> None:
        heap = self._heap
        at = heap[0][0] if heap else math.inf
        for h in self._ready:
            if not h.probe_out:
                at = -math.inf
                break
            at = min(at, h.probe_deadline)
        self.next_probe_at = at

    def _scan(self, now: float) -> tuple[HealthTransition, ...] | None:
        """Latency outliers among admitted, measured endpoints; O(n log n) once per interval."""
        config = self._config
        factor = config.latency_factor
        if factor is None:
            self._next_scan = math.inf
            return None
        self._next_scan = now + config.latency_interval
        decay = self._decay
        measured = sorted(
            (
                (rtt_estimate(ep, now, decay), ep.health)
                for ep in self._endpoints
                if ep.rtt_samples and ep.health.state == _ADMITTED
            ),
            key=_first,
        )
        if len(measured) <= _MIN_PEERS:
            for _, h in measured:
                h.slow_mark = -1
            return None
        estimates = [estimate for estimate, _ in measured]
        floor = config.latency_floor
        transitions: list[HealthTransition] = []
        for i in range(len(measured) - 1, -1, -1):  # slowest first: the cap may allow only one
            estimate, h = measured[i]
            median = _median_without(estimates, i)
            if estimate < factor * median or estimate - median < floor:
                h.slow_mark = -1
                continue
            samples = h.ep.rtt_samples
            if h.slow_mark < 0:
                h.slow_mark = samples
            elif samples - h.slow_mark >= config.latency_min_samples:
                ejected = self._eject(h, "latency", now)
                if ejected is not None:
                    transitions.append(ejected)
        return tuple(transitions) if transitions else None

    # -- state -------------------------------------------------------------------------------------

    def endpoint_snapshot(self, ep: EndpointState) -> dict[str, Any]:
        """JSON-able health of one endpoint, for ``client.snapshot()``'s endpoint entries."""
        with self._lock:
            h = ep.health
            if not isinstance(h, _EndpointHealth) or h.owner is not self:
                return {"state": "unknown"}
            now = self._clock()
            if now >= h.edge and h.state == _ADMITTED:
                h.roll(now, self._width)
            calls = h.ok_sum + h.fail_sum
            figures: dict[str, Any] = {
                "state": _STATE_NAMES[h.state],
                "consecutive_failures": h.consecutive,
                "window_calls": calls,
                "window_success_rate": h.ok_sum / calls if calls else None,
                "ejections_in_a_row": h.repeat,
            }
            if h.state != _ADMITTED:
                figures["reason"] = h.reason
                figures["until"] = h.until
                figures["probe_in_flight"] = h.probe_out and now < h.probe_deadline
            return figures

    def snapshot(self) -> dict[str, Any]:
        """JSON-able figures: counts, panic, the cap, and every endpoint out of rotation."""
        with self._lock:
            now = self._clock()
            out = [
                {
                    "address": ep.address,
                    "state": _STATE_NAMES[ep.health.state],
                    "reason": ep.health.reason,
                    "until": ep.health.until,
                    "ejections_in_a_row": ep.health.repeat,
                    "probe_in_flight": ep.health.probe_out and now < ep.health.probe_deadline,
                }
                for ep in self._endpoints
                if ep.health.state != _ADMITTED
            ]
            return {
                "endpoints": len(self._endpoints),
                "available": len(self._available),
                "ejected": self._ejected,
                "max_ejected": self._cap,
                "panic": self.panic,
                "ejections_skipped": self._skipped,
                "version": self.version,
                "out_of_rotation": out,
            }

    def __repr__(self) -> str:
        return (
            f"<HealthTracker {len(self._endpoints)} endpoints, {self._ejected} ejected"
            f" (max {self._cap}), panic={self.panic}, version={self.version}>"
        )


def _first(item: tuple[float, _EndpointHealth]) -> float:
    return item[0]
