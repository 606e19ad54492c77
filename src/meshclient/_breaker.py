"""The service circuit breaker: resilience4j's state machine, with a Hystrix preset.

A pure decision object with an injected clock: ``try_acquire`` before a call, then exactly one of
``on_result`` (the call produced an outcome) or ``release_unused`` (it never did: cancelled before
sending). It does no I/O. As an admission rule of the stack (``admit``/``release``) it raises
``CircuitOpenError`` when it says no.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import attrs

from ._exceptions import CircuitOpenError
from ._names import OUTCOME_SUCCESS

if TYPE_CHECKING:
    from ._call import Call

__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "BreakerTransition", "CircuitBreaker"]

_log = logging.getLogger("meshclient")

CLOSED: Final = "closed"
OPEN: Final = "open"
HALF_OPEN: Final = "half_open"
#: Absorbs float rounding when a rate is compared with its threshold.
_EPSILON: Final = 1e-9
_FAILED: Final = 1
_SLOW: Final = 2


@attrs.frozen
class BreakerTransition:
    """A change of breaker state, with the figures that decided it (rates in [0, 1])."""

    from_state: str
    to_state: str
    at: float  # clock seconds
    calls: int  # outcomes the decision was based on (0 for open -> half_open)
    failure_rate: float
    slow_call_rate: float


def _check(owner: str, field: str, value: Any, requirement: str, ok: Callable[[Any], bool]) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{owner}.{field} must be {requirement}, got {value!r}")
    if math.isnan(value) or not ok(value):
        raise ValueError(f"{owner}.{field} must be {requirement}, got {value!r}")


def _check_int(owner: str, field: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}.{field} must be an int >= {low}, got {value!r}")
    if value < low:
        raise ValueError(f"{owner}.{field} must be an int >= {low}, got {value!r}")


class _CountWindow:
    """The last ``size`` outcomes, as a ring of codes (bit 0 failed, bit 1 slow)."""

    __slots__ = ("calls", "failures", "pos", "ring", "size", "slow")

    def __init__(self, size: int) -> None:
        self.size = size
        self.ring = bytearray(size)
        self.reset()

    def reset(self, now: float = 0.0) -> None:
        self.ring[:] = bytes(self.size)
        self.pos = 0
        self.calls = 0
        self.failures = 0
        self.slow = 0

    def add(self, code: int, now: float) -> None:
        ring = self.ring
        pos = self.pos
        if self.calls == self.size:
            old = ring[pos]
            self.failures -= old & _FAILED
            self.slow -= old >> 1
        else:
            self.calls += 1
        ring[pos] = code
        self.failures += code & _FAILED
        self.slow += code >> 1
        self.pos = pos + 1 if pos + 1 < self.size else 0

    def current(self, now: float) -> None:
        return None


class _TimeWindow:
    """Outcomes of the last ``size`` seconds: one bucket per clock-aligned second, the current
    (partial) one included, so the window reaches back ``size - 1`` to ``size`` seconds."""

    __slots__ = ("calls", "counts", "failures", "head", "size", "slow")

    def __init__(self, size: int, now: float) -> None:
        self.size = size
        # Per bucket: calls, failures, slow calls.
        self.counts = [[0, 0, 0] for _ in range(size)]
        self.reset(now)

    def reset(self, now: float = 0.0) -> None:
        for bucket in self.counts:
            bucket[0] = bucket[1] = bucket[2] = 0
        self.head = math.floor(now)
        self.calls = 0
        self.failures = 0
        self.slow = 0

    def current(self, now: float) -> None:
        """Empty the buckets that fell out of the window (O(1) amortised)."""
        second = math.floor(now)
        gap = second - self.head
        if gap <= 0:
            return
        if gap >= self.size:
            self.reset(now)
            return
        counts, size = self.counts, self.size
        for k in range(self.head + 1, second + 1):
            bucket = counts[k % size]
            self.calls -= bucket[0]
            self.failures -= bucket[1]
            self.slow -= bucket[2]
            bucket[0] = bucket[1] = bucket[2] = 0
        self.head = second

    def add(self, code: int, now: float) -> None:
        self.current(now)
        # A clock reading older than the head (threads racing) lands in the head's bucket.
        bucket = self.counts[self.head % self.size]
        failed = code & _FAILED
        slow = code >> 1
        bucket[0] += 1
        bucket[1] += failed
        bucket[2] += slow
        self.calls += 1
        self.failures += failed
        self.slow += slow


class CircuitBreaker:
    """Fails calls fast while a service is failing, then lets a few trial calls decide.

    resilience4j's model (``CircuitBreakerConfig`` defaults). Outcomes go into a sliding window,
    ``window_type="count"`` (the last ``window_size`` calls) or ``"time"`` (the last
    ``window_size`` whole seconds, in 1-s buckets). A call is *slow* when its duration is
    >= ``slow_call_duration`` seconds (whether it succeeded or not). Rates are compared with
    ``>=``. Transition table (``calls`` = outcomes in the window):

    ============  ==========================================================  ============
    state         event                                                       next state
    ============  ==========================================================  ============
    closed        outcome; calls >= minimum_calls* and (failure rate >=        open
                  failure_rate or slow-call rate >= slow_call_rate)
    closed        any other outcome; try_acquire (always True)                closed
    open          try_acquire / ``state`` before ``open_duration`` elapsed    open (False)
    open          try_acquire / ``state`` once ``open_duration`` elapsed      half_open
    half_open     try_acquire with fewer than half_open_calls permits out     half_open (True)
                  (permits out: granted, not yet returned by release_unused)
    half_open     try_acquire with half_open_calls permits out                half_open (False)
    half_open     the half_open_calls-th trial outcome; rates over the         open
                  trials >= a threshold
    half_open     the half_open_calls-th trial outcome; rates below both       closed
    open          outcome or release_unused (calls admitted earlier)          open (ignored)
    ============  ==========================================================  ============

    \\* for a count window, ``min(minimum_calls, window_size)``. Every transition clears the
    window, so a closed breaker starts counting afresh. In half-open, an outcome counts as a trial
    only while a trial permit is outstanding, so outcomes of calls admitted before the breaker
    opened cannot exceed the trial count; every permit must end in exactly one ``on_result`` or
    ``release_unused``, else half-open waits for it (the admission layer guarantees this).

    Defaults: window of 100 calls, 100 calls minimum, 50 % failures, slow calls >= 60 s at 100 %,
    open for 60 s, 10 trial calls. ``CircuitBreaker.hystrix()`` gives Hystrix's instead.
    Thread-safe (one lock); ``try_acquire`` + ``on_result`` allocate nothing unless the state
    changes. Listeners (``add_listener``) get each ``BreakerTransition`` outside the lock; one
    that raises is logged and removed, so telemetry never breaks a call.
    """

    __slots__ = (
        "_clock",
        "_granted",
        "_listeners",
        "_lock",
        "_min_calls",
        "_open_until",
        "_state",
        "_trial_failures",
        "_trial_results",
        "_trial_slow",
        "_window",
        "failure_rate",
        "half_open_calls",
        "minimum_calls",
        "open_duration",
        "slow_call_duration",
        "slow_call_rate",
        "window_size",
        "window_type",
    )

    def __init__(
        self,
        *,
        window_type: str = "count",
        window_size: int = 100,
        minimum_calls: int = 100,
        failure_rate: float = 0.5,
        slow_call_rate: float = 1.0,
        slow_call_duration: float = 60.0,
        open_duration: float = 60.0,
        half_open_calls: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        name = "CircuitBreaker"
        if window_type not in ("count", "time"):
            raise ValueError(f"{name}.window_type must be 'count' or 'time', got {window_type!r}")
        _check_int(name, "window_size", window_size, 1)
        _check_int(name, "minimum_calls", minimum_calls, 1)
        rate = "a number in (0, 1]"
        _check(name, "failure_rate", failure_rate, rate, lambda v: 0 < v <= 1)
        _check(name, "slow_call_rate", slow_call_rate, rate, lambda v: 0 < v <= 1)
        _check(
            name, "slow_call_duration", slow_call_duration,
            "a number of seconds > 0 (inf: no call is slow)", lambda v: v > 0,
        )  # fmt: skip
        _check(
            name, "open_duration", open_duration, "a finite number of seconds > 0",
            lambda v: 0 < v < math.inf,
        )  # fmt: skip
        _check_int(name, "half_open_calls", half_open_calls, 1)
        if not callable(clock):
            raise TypeError(f"{name}.clock must be a callable returning seconds, got {clock!r}")
        self.window_type = window_type
        self.window_size = window_size
        self.minimum_calls = minimum_calls
        self.failure_rate = float(failure_rate)
        self.slow_call_rate = float(slow_call_rate)
        self.slow_call_duration = float(slow_call_duration)
        self.open_duration = float(open_duration)
        self.half_open_calls = half_open_calls
        self._clock = clock
        self._lock = threading.Lock()
        self._listeners: list[Callable[[BreakerTransition], object]] = []
        now = clock()
        self._window: _CountWindow | _TimeWindow
        if window_type == "count":
            self._window = _CountWindow(window_size)
            self._min_calls = min(minimum_calls, window_size)
        else:
            self._window = _TimeWindow(window_size, now)
            self._min_calls = minimum_calls
        self._state = CLOSED
        self._open_until = 0.0
        self._granted = 0  # trial permits out or resolved in this half-open episode
        self._trial_results = 0
        self._trial_failures = 0
        self._trial_slow = 0

    @classmethod
    def hystrix(cls, *, clock: Callable[[], float] = time.monotonic) -> CircuitBreaker:
        """Hystrix's defaults: a 10 s rolling window, trip at >= 50 % errors once 20 requests
        were seen in it, stay open 5 s (the sleep window), then one trial request decides.

        Hystrix has no slow-call rule (a timeout is an error), so slow calls never trip it.
        """
        return cls(
            window_type="time",
            window_size=10,
            minimum_calls=20,
            failure_rate=0.5,
            slow_call_rate=1.0,
            slow_call_duration=math.inf,
            open_duration=5.0,
            half_open_calls=1,
            clock=clock,
        )

    # -- admission ---------------------------------------------------------------------------------

    def try_acquire(self) -> bool:
        """Whether a call may go now. ``True`` obliges the caller to one ``on_result`` or
        ``release_unused`` later; ``False`` means fail the call at once (``CircuitOpenError``)."""
        with self._lock:
            state = self._state
            if state is CLOSED:
                return True
            transition = None
            if state is OPEN:
                now = self._clock()
                if now < self._open_until:
                    return False
                transition = self._to_half_open(now)
            granted = self._granted < self.half_open_calls
            if granted:
                self._granted += 1
        if transition is not None:
            self._notify(transition)
        return granted

    def release_unused(self) -> None:
        """Return a permit whose call produced no outcome (cancelled before an answer)."""
        with self._lock:
            if self._state is HALF_OPEN and self._granted > self._trial_results:
                self._granted -= 1

    def on_result(self, ok: bool, duration: float) -> BreakerTransition | None:
        """Record the outcome of an admitted call (``duration`` in seconds); returns the
        transition it caused, if any (listeners are told as well)."""
        code = (0 if ok else _FAILED) | (_SLOW if duration >= self.slow_call_duration else 0)
        with self._lock:
            state = self._state
            if state is CLOSED:
                window = self._window
                now = self._clock()
                window.add(code, now)
                calls = window.calls
                if calls < self._min_calls:
                    return None
                failure_rate = window.failures / calls
                slow_rate = window.slow / calls
                if not self._trips(failure_rate, slow_rate):
                    return None
                transition = self._to_open(now, calls, failure_rate, slow_rate)
            elif state is HALF_OPEN and self._granted > self._trial_results:
                self._trial_results += 1
                self._trial_failures += code & _FAILED
                self._trial_slow += code >> 1
                calls = self._trial_results
                if calls < self.half_open_calls:
                    return None
                now = self._clock()
                failure_rate = self._trial_failures / calls
                slow_rate = self._trial_slow / calls
                if self._trips(failure_rate, slow_rate):
                    transition = self._to_open(now, calls, failure_rate, slow_rate)
                else:
                    transition = self._move(CLOSED, now, calls, failure_rate, slow_rate)
            else:
                return None  # open, or a straggler admitted before the breaker opened
        self._notify(transition)
        return transition

    # -- state -------------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half_open"`` now; an expired open turns half-open."""
        with self._lock:
            transition = None
            if self._state is OPEN:
                now = self._clock()
                if now >= self._open_until:
                    transition = self._to_half_open(now)
            state = self._state
        if transition is not None:
            self._notify(transition)
        return state

    # -- the Admission protocol (``meshclient.Admission``) -----------------------------------

    def admit(self, call: Call) -> None:
        """Fail the call with ``CircuitOpenError`` unless the breaker lets it through."""
        if not self.try_acquire():
            raise CircuitOpenError(
                f"circuit breaker of service {call.service!r} is {self.state}",
                request=call.request,
            )

    def release(self, call: Call) -> None:
        """Count the call's outcome; a call that says nothing about the service (rejected
        locally, cancelled, never sent) gives its permit back unused."""
        if call.evidence:
            self.on_result(call.outcome == OUTCOME_SUCCESS, call.clock() - call.start)
        else:
            self.release_unused()

    def add_listener(self, listener: Callable[[BreakerTransition], object]) -> None:
        """Call ``listener(transition)`` on every state change (outside the breaker's lock)."""
        if not callable(listener):
            raise TypeError(f"CircuitBreaker listener must be callable, got {listener!r}")
        with self._lock:
            self._listeners = [*self._listeners, listener]

    def remove_listener(self, listener: Callable[[BreakerTransition], object]) -> None:
        """Stop calling ``listener`` (a client closing takes its listener away)."""
        with self._lock:
            self._listeners = [f for f in self._listeners if f != listener]

    def snapshot(self) -> dict[str, Any]:
        """JSON-able figures: state, window counts and rates, open deadline, trial progress."""
        state = self.state
        with self._lock:
            now = self._clock()
            window = self._window
            window.current(now)
            calls = window.calls
            figures: dict[str, Any] = {
                "state": state,
                "window_type": self.window_type,
                "window_calls": calls,
                "window_failures": window.failures,
                "window_slow_calls": window.slow,
                "failure_rate": window.failures / calls if calls else None,
                "slow_call_rate": window.slow / calls if calls else None,
            }
            if self._state is OPEN:
                figures["open_until"] = self._open_until
                figures["open_remaining"] = max(0.0, self._open_until - now)
            elif self._state is HALF_OPEN:
                figures["trial_permits_out"] = self._granted - self._trial_results
                figures["trial_results"] = self._trial_results
                figures["trial_failures"] = self._trial_failures
            return figures

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker(window_type={self.window_type!r}, window_size={self.window_size!r},"
            f" minimum_calls={self.minimum_calls!r}, failure_rate={self.failure_rate!r},"
            f" slow_call_rate={self.slow_call_rate!r},"
            f" slow_call_duration={self.slow_call_duration!r},"
            f" open_duration={self.open_duration!r}, half_open_calls={self.half_open_calls!r},"
            f" state={self._state!r})"
        )

    # -- transitions (lock held) -------------------------------------------------------------------

    def _trips(self, failure_rate: float, slow_rate: float) -> bool:
        return (
            failure_rate >= self.failure_rate - _EPSILON
            or slow_rate >= self.slow_call_rate - _EPSILON
        )

    def _move(
        self, to: str, now: float, calls: int, failure_rate: float, slow_rate: float
    ) -> BreakerTransition:
        transition = BreakerTransition(self._state, to, now, calls, failure_rate, slow_rate)
        self._state = to
        self._window.reset(now)
        self._granted = self._trial_results = self._trial_failures = self._trial_slow = 0
        return transition

    def _to_open(
        self, now: float, calls: int, failure_rate: float, slow_rate: float
    ) -> BreakerTransition:
        self._open_until = now + self.open_duration
        return self._move(OPEN, now, calls, failure_rate, slow_rate)

    def _to_half_open(self, now: float) -> BreakerTransition:
        return self._move(HALF_OPEN, now, 0, 0.0, 0.0)

    def _notify(self, transition: BreakerTransition) -> None:
        for listener in self._listeners:
            try:
                listener(transition)
            except Exception:
                _log.exception("circuit breaker listener %r failed; removed", listener)
                with self._lock:
                    self._listeners = [f for f in self._listeners if f is not listener]
