"""The maths of retries: which outcomes to retry, how long to wait, and how many retries to allow.

Everything here is a pure decision over injected time and randomness; no I/O, no sleeping. The retry
layer asks, then does the waiting and the sending itself.

- ``Retry``: a frozen, shareable policy value (attempts, full-jitter backoff, retryable statuses).
- ``RetryBudget``: one per service, stateful and thread-safe; caps retries at a fraction of calls.
- ``parse_retry_after``: seconds to wait from an HTTP ``Retry-After`` header.
- ``is_idempotent``: whether a request that reached a server may be sent again.
"""

from __future__ import annotations

import datetime
import email.utils
import math
import random
import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

import attrs
import tenacity

from ._validate import check_integer, check_number

__all__ = [
    "IDEMPOTENT_METHODS",
    "Retry",
    "RetryBudget",
    "is_idempotent",
    "parse_retry_after",
]


# -- validation helpers ----------------------------------------------------------------------------


def _validate_attempts(instance: Retry, attribute: attrs.Attribute[int], value: Any) -> None:
    check_integer("Retry", attribute.name, value, 1)


def _validate_backoff(instance: Retry, attribute: attrs.Attribute[float], value: Any) -> None:
    check_number(
        "Retry", attribute.name, value, "a finite number of seconds >= 0", _finite_non_negative
    )


def _validate_max_backoff(instance: Retry, attribute: attrs.Attribute[float], value: Any) -> None:
    # attrs runs validators after every field is set, so ``backoff`` is already checked here.
    backoff = instance.backoff
    check_number(
        "Retry",
        attribute.name,
        value,
        f"a finite number of seconds >= Retry.backoff ({backoff!r})",
        lambda v: math.isfinite(v) and v >= backoff,
    )


def _validate_max_retry_after(
    instance: Retry, attribute: attrs.Attribute[float], value: Any
) -> None:
    check_number("Retry", attribute.name, value, "a finite number of seconds > 0", _finite_positive)


def _validate_wait(instance: Retry, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not callable(value):
        raise TypeError(
            f"Retry.wait must be a tenacity wait strategy (a callable of a RetryCallState) or "
            f"None, got {value!r}"
        )


def _finite_positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


def _finite_non_negative(value: float) -> bool:
    return math.isfinite(value) and value >= 0


def _to_statuses(value: Iterable[int]) -> frozenset[int]:
    """Accept any iterable of status codes; reject non-ints and codes outside 100..599."""
    requirement = "an iterable of int HTTP status codes in 100..599"
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise TypeError(f"Retry.statuses must be {requirement}, got {value!r}")
    try:
        statuses = frozenset(value)
    except TypeError:  # unhashable elements
        raise TypeError(f"Retry.statuses must be {requirement}, got {value!r}") from None
    for status in statuses:
        if isinstance(status, bool) or not isinstance(status, int):
            raise TypeError(f"Retry.statuses must be {requirement}, got {status!r} in {value!r}")
        if not 100 <= status <= 599:
            raise ValueError(f"Retry.statuses must be {requirement}, got {status!r} in {value!r}")
    return statuses


# -- Retry -----------------------------------------------------------------------------------------

_TOO_MANY_REQUESTS: Final = 429
#: Retrying a status whose *name* says "try again later": gateway errors and overload.
DEFAULT_RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})


@attrs.frozen
class Retry:
    """How often and how patiently to retry one call; immutable, so share it freely.

    - ``attempts`` = 3: total attempts including the first, so at most 2 retries per call. The
      per-service ``RetryBudget``, not this number, is what bounds the extra load on a server.
    - ``backoff`` = 0.025 s and ``max_backoff`` = 0.25 s: the base and cap of full-jitter
      exponential backoff, Envoy's defaults (25 ms base, 10x cap). Retry ``n`` waits
      ``uniform(0, min(max_backoff, backoff * 2**(n-1)))`` ("Full Jitter", AWS Architecture Blog,
      "Exponential Backoff And Jitter"): spreading retries over the whole interval de-synchronises
      clients that failed together, which "equal jitter" and fixed delays do not.
    - ``statuses`` = {429, 502, 503, 504}: responses worth retrying. 429 only counts when the
      response carries ``Retry-After`` (meshclient's own rule; ``docs/policies.md`` compares it
      with Envoy's and gRPC's): a 429 without a hint is the server saying "stop", and retrying
      it would add load exactly where there is too much.
    - ``max_retry_after`` = 5.0 s: a ``Retry-After`` longer than this ends retrying and the caller
      gets the response. It is not shortened: the server asked for that long, and coming back
      sooner disrespects it (and likely gets the same answer). A deadline may stop retries sooner.
    - ``wait``: a tenacity wait strategy to use instead of full jitter, e.g.
      ``tenacity.wait_random_exponential(multiplier=0.05, max=1)`` or ``tenacity.wait_fixed(0.1)
      + tenacity.wait_random(0, 0.05)``. It is evaluated per retry over a ``RetryCallState`` that
      belongs to that call alone (attempt number, outcome, time since the call started), so one
      ``Retry`` is safe to share between concurrent calls.
    """

    attempts: int = attrs.field(default=3, validator=_validate_attempts)
    backoff: float = attrs.field(default=0.025, validator=_validate_backoff)
    max_backoff: float = attrs.field(default=0.25, validator=_validate_max_backoff)
    statuses: frozenset[int] = attrs.field(default=DEFAULT_RETRY_STATUSES, converter=_to_statuses)
    max_retry_after: float = attrs.field(default=5.0, validator=_validate_max_retry_after)
    #: A tenacity wait strategy (``tenacity.wait_random_exponential(...)``, any callable of a
    #: ``tenacity.RetryCallState``) used instead of full jitter; ``None``: full jitter.
    wait: Callable[[tenacity.RetryCallState], float] | None = attrs.field(
        default=None, validator=_validate_wait
    )
    # Backoff ceilings for retry 1, 2, ... up to the first that reaches ``max_backoff`` (5 entries
    # for the defaults). Precomputed so ``delay`` is one index and one multiply on the hot path.
    _ceilings: tuple[float, ...] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        ceilings: list[float] = []
        while True:
            # ldexp: backoff * 2**n without overflowing 2**n for a tiny backoff.
            ceiling = min(self.max_backoff, math.ldexp(self.backoff, len(ceilings)))
            ceilings.append(ceiling)
            if ceiling >= self.max_backoff or ceiling == 0.0:
                break
        object.__setattr__(self, "_ceilings", tuple(ceilings))

    def delay(self, retry_number: int, rng: random.Random) -> float:
        """Seconds to wait before retry ``retry_number`` (1 = the first retry): full jitter.

        Uniform in ``[0, min(max_backoff, backoff * 2**(retry_number - 1))]``. The RNG is the
        caller's, so tests seed it and concurrent calls never share hidden state here.
        """
        if retry_number < 1:
            raise ValueError(f"retry_number must be >= 1, got {retry_number!r}")
        ceilings = self._ceilings
        if retry_number > len(ceilings):
            return rng.random() * ceilings[-1]  # past the cap (or zero): the last ceiling holds
        return rng.random() * ceilings[retry_number - 1]

    def retryable_status(self, status: int, retry_after: float | None) -> bool:
        """Whether a response with ``status`` (and parsed ``Retry-After`` seconds) may be retried.

        ``False`` for a status outside ``statuses``, for 429 without ``Retry-After``, and for any
        ``Retry-After`` longer than ``max_retry_after`` (see the class docstring for why).
        """
        if status not in self.statuses:
            return False
        if retry_after is None:
            return status != _TOO_MANY_REQUESTS
        return retry_after <= self.max_retry_after


# -- RetryBudget -----------------------------------------------------------------------------------

#: Buckets per ``ttl``: the window's granularity (Finagle's WindowedAdder and tower's TpsBudget
#: both cut ``ttl`` into 10 slices).
_BUCKETS: Final = 10
#: Ring length: the bucket being written plus ``_BUCKETS`` whole ones, so the window never spans
#: less than ``ttl`` and a granted retry is remembered for at least ``ttl``.
_SLOTS: Final = _BUCKETS + 1
#: Absorbs float rounding in ``ratio * deposits`` (0.7 * 10 == 7.000000000000001).
_EPSILON: Final = 1e-9


class RetryBudget:
    """Finagle's and Linkerd's retry budget: retries may add at most ``ratio`` of the calls, plus
    ``min_per_second`` so quiet or just-started clients can still retry.

    Every logical call makes one ``deposit()``; every retry, re-queues of never-sent requests
    included, must ``try_withdraw()`` first. The defaults (20 % + 10/s over 10 s) are Finagle's
    ``RetryBudget()`` and Linkerd's: under total failure a client sends at most ~1.25x its call
    rate instead of ``attempts`` x, so retries cannot turn an overload into an outage. The
    ``min_per_second * ttl`` reserve is a standing allowance (100 retries by default), not a
    per-second refill, exactly as in Finagle.

    **What it guarantees.** Time is cut into buckets of ``ttl / 10`` seconds aligned to the clock
    (bucket ``k`` is ``[k*ttl/10, (k+1)*ttl/10)``). The window is the current bucket and the 10
    before it: it reaches back at least ``ttl`` and less than ``1.1 * ttl``. A withdrawal is
    granted only if, counting it, withdrawals in the window <= ``ratio`` x deposits in the window
    + ``min_per_second * ttl`` (+1e-9 for float rounding). Hence, at every granted withdrawal at
    time ``t``::

        withdrawals in (t - ttl, t]  <=  ratio * deposits in (t - 1.1*ttl, t] + min_per_second * ttl

    Withdrawals are never forgotten early; the only slop is that deposits up to one bucket older
    than ``ttl`` may still count, worth at most ``ratio`` x one bucket of calls (for 200 calls/s,
    0.2 x 200 x 1 s = 40 retries per 10 s window). A retry refused now is granted again once the
    withdrawals before it have been in the past for ``ttl`` to ``1.1 * ttl`` seconds. The check is
    made when a retry is asked for, so credit that earned it may age out later, as with every
    expiring-credit scheme.

    **Compared with Finagle** (``RetryBudget.apply`` over ``TokenBucket.newLeakyBucket``): the same
    quantities (a deposit is worth ``ratio`` retries, a standing reserve of ``min_per_second *
    ttl``, expiry after about ``ttl`` in 10 slices) with two differences. Finagle's
    ``WindowedAdder`` keeps 9 old slices plus the current one, so its window spans 0.9-1.0 ``ttl``
    and forgets a burst of retries up to one slice early (with 200 calls/s starting mid-slice that
    lets ~30 % of calls retry in the first 10 s instead of 25 %); its slices also start whenever a
    call notices expiry, so the window drifts under sparse traffic. Here, as in tower's
    ``TpsBudget`` (Linkerd2), the current bucket comes on top of 10 whole ones, and buckets are
    clock-aligned so nothing drifts.
    And Finagle counts integer tokens (a withdrawal costs ``int(1000 / ratio)`` of them, slightly
    generous when 1000 / ratio is not whole); here the comparison is exact.

    ``deposit`` and ``try_withdraw`` are O(1) amortised (expiry zeroes at most 11 buckets, one per
    bucket of elapsed time), allocate nothing, and hold one lock: the sync client calls them from
    many threads. ``clock`` returns seconds (monotonic); tests inject a fake one.
    """

    __slots__ = (
        "_allowance",
        "_clock",
        "_deposit_sum",
        "_deposits",
        "_edge",
        "_head",
        "_lock",
        "_min_per_second",
        "_ratio",
        "_reserve",
        "_slot",
        "_ttl",
        "_width",
        "_withdrawal_sum",
        "_withdrawals",
    )

    def __init__(
        self,
        ratio: float = 0.2,
        min_per_second: float = 10.0,
        ttl: float = 10.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_number(
            "RetryBudget", "ratio", ratio, "a number in [0, 1000]", lambda v: 0 <= v <= 1000
        )
        check_number(
            "RetryBudget",
            "min_per_second",
            min_per_second,
            "a finite number >= 0",
            _finite_non_negative,
        )
        check_number(
            "RetryBudget", "ttl", ttl, "a number of seconds in [1, 60]", lambda v: 1 <= v <= 60
        )
        if not callable(clock):
            raise TypeError(
                f"RetryBudget.clock must be a callable returning seconds, got {clock!r}"
            )
        self._ratio = float(ratio)
        self._min_per_second = float(min_per_second)
        self._ttl = float(ttl)
        self._clock = clock
        self._lock = threading.Lock()
        self._reserve = self._min_per_second * self._ttl
        # Grant iff withdrawals + 1 <= ratio * deposits + reserve (+ epsilon), rearranged so the hot
        # path is one multiply and one compare.
        self._allowance = self._reserve - 1.0 + _EPSILON
        self._width = self._ttl / _BUCKETS
        self._deposits = [0] * _SLOTS
        self._withdrawals = [0] * _SLOTS
        self._deposit_sum = 0
        self._withdrawal_sum = 0
        self._head = math.floor(clock() / self._width)  # index of the bucket being written
        self._slot = self._head % _SLOTS  # its position in the ring
        self._edge = (self._head + 1) * self._width  # when it ends

    @property
    def ratio(self) -> float:
        """Retries allowed per deposited call (0.2 = 20 %)."""
        return self._ratio

    @property
    def min_per_second(self) -> float:
        """Retries per second allowed regardless of deposits."""
        return self._min_per_second

    @property
    def ttl(self) -> float:
        """Seconds a deposit (and a withdrawal) counts for."""
        return self._ttl

    def _expire(self, now: float) -> None:
        """Move the head to the bucket holding ``now``, emptying the buckets that fell out of the
        window. Called with the lock held, only once ``now`` has reached the head's edge."""
        # ``max``: float rounding must never leave ``now`` past the edge yet in the same bucket.
        head = max(math.floor(now / self._width), self._head + 1)
        gap = head - self._head
        deposits = self._deposits
        withdrawals = self._withdrawals
        if gap >= _SLOTS:  # idle for a whole window: everything expired
            for i in range(_SLOTS):
                deposits[i] = 0
                withdrawals[i] = 0
            self._deposit_sum = 0
            self._withdrawal_sum = 0
        else:
            slot = self._slot
            for _ in range(gap):
                slot = slot + 1 if slot + 1 < _SLOTS else 0
                self._deposit_sum -= deposits[slot]
                self._withdrawal_sum -= withdrawals[slot]
                deposits[slot] = 0
                withdrawals[slot] = 0
        self._head = head
        self._slot = head % _SLOTS
        self._edge = (head + 1) * self._width

    def deposit(self) -> None:
        """Record one logical call: it earns ``ratio`` retries for the next ``ttl`` seconds."""
        with self._lock:
            now = self._clock()
            if now >= self._edge:
                self._expire(now)
            self._deposits[self._slot] += 1
            self._deposit_sum += 1

    def try_withdraw(self) -> bool:
        """Take one retry if the budget allows it; ``False`` leaves the budget untouched."""
        with self._lock:
            now = self._clock()
            if now >= self._edge:
                self._expire(now)
            if self._withdrawal_sum > self._ratio * self._deposit_sum + self._allowance:
                return False
            self._withdrawals[self._slot] += 1
            self._withdrawal_sum += 1
            return True

    def _balance(self) -> float:
        # Called with the lock held and the window current.
        credit = self._ratio * self._deposit_sum + self._reserve - self._withdrawal_sum
        return float(max(0, math.floor(credit + _EPSILON)))

    def balance(self) -> float:
        """Whole retries ``try_withdraw`` would grant right now."""
        with self._lock:
            now = self._clock()
            if now >= self._edge:
                self._expire(now)
            return self._balance()

    def snapshot(self) -> dict[str, float]:
        """Deposits and withdrawals in the current window, and the ``balance``."""
        with self._lock:
            now = self._clock()
            if now >= self._edge:
                self._expire(now)
            return {
                "deposits": float(self._deposit_sum),
                "withdrawals": float(self._withdrawal_sum),
                "balance": self._balance(),
            }

    def __repr__(self) -> str:
        state = self.snapshot()
        return (
            f"RetryBudget(ratio={self._ratio!r}, min_per_second={self._min_per_second!r}, "
            f"ttl={self._ttl!r}, deposits={state['deposits']:g}, "
            f"withdrawals={state['withdrawals']:g}, balance={state['balance']:g})"
        )


# -- Retry-After -----------------------------------------------------------------------------------

# delta-seconds (RFC 9110 10.2.3) is digits only; a decimal and a sign are tolerated because servers
# send them. Spelled out so float()'s extras ("inf", "nan", "1e3", "1_000") stay garbage.
_DELTA_SECONDS: Final = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")


def parse_retry_after(value: str, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value, or ``None`` if it is not one. Never raises.

    ``value`` is delta-seconds (``"120"``, tolerated ``"1.5"``) or an HTTP-date
    (``"Sun, 06 Nov 1994 08:49:37 GMT"``), the latter relative to ``now`` in wall-clock epoch
    seconds (``time.time()``, injected for tests). A negative delta or a date in the past gives
    ``0.0``; a number too large for a float gives ``inf`` (the caller then gives up waiting).
    """
    if not isinstance(value, str):
        return None
    text = value.strip()
    if _DELTA_SECONDS.fullmatch(text):
        seconds = float(text)
        return seconds if seconds > 0.0 else 0.0
    try:
        when = email.utils.parsedate_to_datetime(text)
        if when.tzinfo is None:  # "-0000" (zone unknown) parses naive; HTTP-dates are UTC
            when = when.replace(tzinfo=datetime.UTC)
        seconds = when.timestamp() - now
    except (ValueError, TypeError, OverflowError, IndexError, AttributeError):
        return None
    if math.isnan(seconds):
        return None
    return seconds if seconds > 0.0 else 0.0


# -- idempotency -----------------------------------------------------------------------------------

#: Methods RFC 9110 (9.2.2) defines as idempotent: sending one twice has the effect of once. Bytes,
#: because the transport sees ``request.method`` as httpcore does.
IDEMPOTENT_METHODS: Final[frozenset[bytes]] = frozenset(
    {b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"}
)
# The str spellings too: httpx.Request.method is str, httpcore's is bytes; a str looked up in a set
# of bytes would silently answer "not idempotent" for every GET.
_IDEMPOTENT_LOOKUP: Final[frozenset[bytes | str]] = IDEMPOTENT_METHODS | frozenset(
    method.decode("ascii") for method in IDEMPOTENT_METHODS
)
_IDEMPOTENCY_KEY: Final = b"idempotency-key"


def is_idempotent(method: bytes | str, headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether a request that may have reached the server can be sent again.

    True for an idempotent method (bytes as httpcore has it, or str as httpx does), or for any
    request carrying an ``Idempotency-Key`` header (IETF httpapi draft: the server deduplicates by
    key, so a POST becomes safe to repeat). Methods are case-sensitive (RFC 9110 9.1).
    """
    if method in _IDEMPOTENT_LOOKUP:
        return True
    return any(len(name) == 15 and name.lower() == _IDEMPOTENCY_KEY for name, _ in headers)
