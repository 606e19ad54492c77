"""Client-side adaptive throttling (Google SRE book, "Handling Overload").

Each client keeps, over a sliding window, the requests it attempted and the requests the backend
accepted, and rejects new requests locally with probability::

    max(0, (requests - k * accepts) / (requests + 1))

so once a backend rejects most traffic, the client stops sending most of it, without any
coordination, while still letting a fraction through to notice recovery.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from ._exceptions import ThrottledError
from ._names import OUTCOME_SUCCESS

if TYPE_CHECKING:
    from ._call import Call

__all__ = ["AdaptiveThrottle"]

#: Statuses by which a server refuses work: not "accepted".
_NOT_ACCEPTED: Final = frozenset({429, 503})

#: Buckets per window (as ``RetryBudget``): the window is these whole buckets plus the current.
_BUCKETS: Final = 10
_SLOTS: Final = _BUCKETS + 1


def _check(field: str, value: Any, requirement: str, ok: Callable[[float], bool]) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"AdaptiveThrottle.{field} must be {requirement}, got {value!r}")
    if math.isnan(value) or not ok(value):
        raise ValueError(f"AdaptiveThrottle.{field} must be {requirement}, got {value!r}")


class AdaptiveThrottle:
    """The SRE book's client-side throttle; opt-in per service.

    - ``allow()`` per call, before anything else is spent on it: counts the call as a request
      (rejected ones too, as the book specifies: the client's own demand is what is measured)
      and says whether to send it.
    - ``record(True)`` when the backend accepted the call (any answer but overload);
      ``record(False)`` when it did not (429, 503, a breaker rejection, a connection refused).
      As an admission rule of the stack, a call that never reached the backend (its deadline
      was gone) or whose caller went away is taken back out of the count: cancellation is not
      a refusal.
    - ``k`` = 2.0: the book's value; the backend may reject up to half of the requests before the
      client starts throttling. Lower is more aggressive.
    - ``window`` = 120 s: the book's two minutes, in 10 clock-aligned buckets plus the current one.
    - ``min_requests`` = 0: below this many requests in the window the throttle never rejects.
      The ``+ 1`` already keeps low rates sensible: one failed request of one gives 1/2, and at
      least ``1 / (requests + 1)`` of the traffic always goes through to detect recovery.

    O(1) amortised per call, one lock, no allocation; the RNG is drawn only when the
    probability is above zero.
    """

    __slots__ = (
        "_accepts",
        "_accepts_sum",
        "_clock",
        "_edge",
        "_head",
        "_lock",
        "_random",
        "_requests",
        "_requests_sum",
        "_slot",
        "_throttled",
        "_width",
        "k",
        "min_requests",
        "window",
    )

    def __init__(
        self,
        k: float = 2.0,
        window: float = 120.0,
        *,
        min_requests: int = 0,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        _check("k", k, "a finite number >= 1", lambda v: 1 <= v < math.inf)
        _check("window", window, "a finite number of seconds > 0", lambda v: 0 < v < math.inf)
        if isinstance(min_requests, bool) or not isinstance(min_requests, int):
            raise TypeError(
                f"AdaptiveThrottle.min_requests must be an int >= 0, got {min_requests!r}"
            )
        if min_requests < 0:
            raise ValueError(
                f"AdaptiveThrottle.min_requests must be an int >= 0, got {min_requests!r}"
            )
        if not callable(clock):
            raise TypeError(
                f"AdaptiveThrottle.clock must be a callable returning seconds, got {clock!r}"
            )
        if rng is None:
            rng = random.Random()
        elif not isinstance(rng, random.Random):
            raise TypeError(f"AdaptiveThrottle.rng must be a random.Random instance, got {rng!r}")
        self.k = float(k)
        self.window = float(window)
        self.min_requests = min_requests
        self._clock = clock
        self._random = rng.random
        self._lock = threading.Lock()
        self._width = self.window / _BUCKETS
        self._requests = [0] * _SLOTS
        self._accepts = [0] * _SLOTS
        self._requests_sum = 0
        self._accepts_sum = 0
        self._throttled = 0
        self._head = math.floor(clock() / self._width)
        self._slot = self._head % _SLOTS
        self._edge = (self._head + 1) * self._width

    def _expire(self, now: float) -> None:
        """Move to the bucket of ``now``, emptying expired buckets (lock held)."""
        head = max(math.floor(now / self._width), self._head + 1)
        gap = head - self._head
        requests, accepts = self._requests, self._accepts
        if gap >= _SLOTS:
            for i in range(_SLOTS):
                requests[i] = accepts[i] = 0
            self._requests_sum = self._accepts_sum = 0
        else:
            slot = self._slot
            for _ in range(gap):
                slot = slot + 1 if slot + 1 < _SLOTS else 0
                self._requests_sum -= requests[slot]
                self._accepts_sum -= accepts[slot]
                requests[slot] = accepts[slot] = 0
        self._head = head
        self._slot = head % _SLOTS
        self._edge = (head + 1) * self._width

    def _probability(self) -> float:
        requests = self._requests_sum
        if requests < self.min_requests:
            return 0.0
        p = (requests - self.k * self._accepts_sum) / (requests + 1)
        return p if p > 0.0 else 0.0

    def allow(self) -> bool:
        """Count one request; ``False`` means reject it locally (do not send it)."""
        with self._lock:
            now = self._clock()
            if now >= self._edge:
                self._expire(now)
            p = self._probability()  # before counting this request, as in the book
            self._requests[self._slot] += 1
            self._requests_sum += 1
            if p > 0.0 and self._random() < p:
                self._throttled += 1
                return False
            return True

    def record(self, accepted: bool) -> None:
        """The backend's verdict on a request ``allow`` let through."""
        if not accepted:
            return  # counted as a request already; only acceptances are tallied
        with self._lock:
            now = self._clock()
            if now >= self._edge:
                self._expire(now)
            self._accepts[self._slot] += 1
            self._accepts_sum += 1

    def _forget(self) -> None:
        """Take back the request of a call that never reached the backend, or whose caller
        went away: it was neither accepted nor refused. It comes off the newest bucket that
        counts a request."""
        with self._lock:
            now = self._clock()
            if now >= self._edge:
                self._expire(now)
            if self._requests_sum <= self._accepts_sum:
                return  # nothing unanswered left in the window: the request already aged out
            requests = self._requests
            slot = self._slot
            for _ in range(_SLOTS):
                if requests[slot]:
                    requests[slot] -= 1
                    self._requests_sum -= 1
                    return
                slot = slot - 1 if slot else _SLOTS - 1

    # -- the Admission protocol (``meshclient.Admission``) -----------------------------------------

    def admit(self, call: Call) -> None:
        """Count the call as a request and reject it locally (``ThrottledError``) when the
        backend refuses much of its work."""
        if not self.allow():
            raise ThrottledError(
                f"service {call.service!r} is rejecting calls locally: too few of the "
                "recent ones were accepted (adaptive throttling)",
                request=call.request,
            )

    def release(self, call: Call) -> None:
        """Accepted unless the backend refused (429, 503, a failure) or a module below
        rejected it; a call that never reached the backend, or was cancelled, is forgotten."""
        if not call.rejected and not call.evidence:
            self._forget()
            return
        self.record(call.outcome == OUTCOME_SUCCESS and call.status not in _NOT_ACCEPTED)

    def rejection_probability(self) -> float:
        """The probability the next ``allow`` rejects, as of now."""
        with self._lock:
            now = self._clock()
            if now >= self._edge:
                self._expire(now)
            return self._probability()

    def snapshot(self) -> dict[str, Any]:
        """JSON-able figures: window requests and accepts, the rejection probability, rejections."""
        with self._lock:
            now = self._clock()
            if now >= self._edge:
                self._expire(now)
            return {
                "requests": self._requests_sum,
                "accepts": self._accepts_sum,
                "rejection_probability": self._probability(),
                "throttled_total": self._throttled,
            }

    def __repr__(self) -> str:
        figures = self.snapshot()
        return (
            f"AdaptiveThrottle(k={self.k!r}, window={self.window!r},"
            f" min_requests={self.min_requests!r}, requests={figures['requests']},"
            f" accepts={figures['accepts']},"
            f" rejection_probability={figures['rejection_probability']:.3f})"
        )
