"""The modules of the default stack, each written against the public module API (``_stack.py``).

The engine knows none of them: each reads what it needs from the ``ServiceContext`` it is
built with and from the ``Call`` and ``Attempt`` it is handed, and hands decisions back the
same way (``attempt.endpoint``, ``attempt.deadline``, a retry delay). ``_defaults.py`` puts them
in order.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import httpx
import tenacity

from ._balance import Balancer, Picker, observe_rtt, rtt_estimate
from ._breaker import BreakerTransition, CircuitBreaker
from ._call import BOUND_ATTEMPT, BOUND_INHERITED, BOUND_TOTAL, Attempt, Call
from ._context import inherited_deadline
from ._endpoint import EndpointState
from ._errors_map import NEVER_SENT, RESENDABLE, is_endpoint_fault
from ._health import Ejected, HealthTracker, OutlierDetection
from ._names import DECISION_BUDGET, DECISION_DEADLINE, DECISION_RETRY
from ._policy import UNSET
from ._retry import Retry, RetryBudget, is_idempotent, parse_retry_after
from ._stack import Admission, AdmissionModule, AttemptModule, CallModule, ServiceContext, _Admitted
from ._telemetry import RouteTelemetry

__all__ = [
    "AttemptTelemetryModule",
    "AttemptTimeoutModule",
    "BalancerModule",
    "BreakerModule",
    "CallTelemetryModule",
    "DeadlineModule",
    "FallbackModule",
    "HealthModule",
    "RetryModule",
    "service_param",
]

_RETRY_AFTER: Final = b"retry-after"


def service_param(name: str) -> Callable[[ServiceContext], Admission | None]:
    """An ``AdmissionModule`` factory reading the admission rule ``Service.<name>``."""

    def read(service: ServiceContext) -> Admission | None:
        return getattr(service.service, name)  # type: ignore[no-any-return]

    read.__qualname__ = f"service_param({name!r})"
    return read


# -- call modules --------------------------------------------------------------------------------


class FallbackModule(CallModule):
    """``Policy.fallback``: a response instead of the error when a call fails for any reason
    below (an open breaker, a full bulkhead, retries exhausted on an error)."""

    role = "fallback"

    def recover(self, call: Call, error: Exception) -> httpx.Response | Awaitable[Any] | None:
        fallback = call.policy.fallback
        if fallback is None or fallback is UNSET or not isinstance(error, httpx.TransportError):
            return None
        return fallback(call.request, error)  # type: ignore[no-any-return]


class CallTelemetryModule(CallModule):
    """One span and one duration record per logical call, with its final outcome."""

    role = "call_telemetry"

    def build(self, service: ServiceContext) -> CallModule:
        return _CallTelemetry(service.telemetry)


class _CallTelemetry(CallModule):
    role = "call_telemetry"

    def __init__(self, telemetry: RouteTelemetry) -> None:
        self.on_call = telemetry.call_started  # type: ignore[method-assign]
        self.on_call_end = telemetry.call_ended  # type: ignore[method-assign]


class DeadlineModule(CallModule):
    """Sets ``call.deadline``: the earlier of ``Timeout.total`` and an inherited deadline.

    A call whose deadline is already gone fails here, before admission takes anything.
    """

    role = "deadline"

    def on_call(self, call: Call) -> None:
        timeout = call.policy.timeout
        total = None if timeout is None or timeout is UNSET else timeout.total
        deadline = None if total is None else call.start + total
        # A server handling a request passes its caller's deadline down (``_context.py``).
        inherited = inherited_deadline()
        if inherited is not None and (deadline is None or inherited < deadline):
            deadline = inherited
            call.deadline_inherited = True
        if deadline is not None:
            call.deadline = deadline
            now = call.clock()
            if now >= deadline:
                raise call.deadline_exceeded(now)


class BreakerModule(AdmissionModule):
    """``Service.breaker``; a ``CircuitBreaker``'s transitions are reported as telemetry."""

    def __init__(self) -> None:
        super().__init__("breaker", service_param("breaker"))

    def build(self, service: ServiceContext) -> CallModule | None:
        breaker = service.service.breaker
        if breaker is None:
            return None
        if isinstance(breaker, CircuitBreaker):
            return _ReportingBreaker(breaker, service.telemetry)
        return _Admitted(self.role, breaker)

    def __repr__(self) -> str:
        return "BreakerModule()"


class _ReportingBreaker(_Admitted):
    def __init__(self, breaker: CircuitBreaker, telemetry: RouteTelemetry) -> None:
        super().__init__("breaker", breaker)
        self._breaker = breaker
        self._telemetry = telemetry
        breaker.add_listener(self._moved)

    def _moved(self, transition: BreakerTransition) -> None:
        self._telemetry.breaker_transition(transition.from_state, transition.to_state)

    def close(self) -> None:
        self._breaker.remove_listener(self._moved)


class RetryModule(CallModule):
    """``Policy.retry`` within the service's ``RetryBudget``: when, where and how soon to try
    again. Every call deposits into the budget; every retry withdraws from it."""

    role = "retry"

    def build(self, service: ServiceContext) -> CallModule:
        return _Retrying(service.service.retry_budget)

    def __repr__(self) -> str:
        return "RetryModule()"


class _Retrying(CallModule):
    role = "retry"

    def __init__(self, budget: RetryBudget) -> None:
        self.budget = budget
        self._withdraw = budget.try_withdraw

    def on_call(self, call: Call) -> None:
        self.budget.deposit()

    def retry(self, call: Call, attempt: Attempt) -> float | None:
        retry = call.policy.retry
        if retry is None or retry is UNSET or attempt.number >= retry.attempts:
            return None
        error = attempt.error
        if error is None:
            status = attempt.status
            if status not in retry.statuses:
                return None
            retry_after = None
            for name, value in attempt.response_headers or ():
                if name.lower() == _RETRY_AFTER:
                    retry_after = parse_retry_after(value.decode("latin-1"), time.time())
                    break
            if not retry.retryable_status(status, retry_after) or not _may_resend(call):
                return None
            delay = _delay(retry, call, attempt) if retry_after is None else retry_after
        else:
            if not isinstance(error, RESENDABLE) or (
                not isinstance(error, NEVER_SENT) and not _may_resend(call)
            ):
                return None
            delay = _delay(retry, call, attempt)
        attempt.delay = delay
        deadline = call.deadline
        if deadline is not None and call.clock() + delay >= deadline:
            attempt.decision = DECISION_DEADLINE
            return None
        if not self._withdraw():
            attempt.decision = DECISION_BUDGET
            return None
        attempt.decision = DECISION_RETRY
        return delay

    def describe(self) -> Mapping[str, Any]:
        return {"retry_budget": self.budget.snapshot()}


def _may_resend(call: Call) -> bool:
    """Whether a request that may have reached a server can be sent again."""
    request = call.request
    if not isinstance(request.stream, httpx.ByteStream):
        return False  # a generator body was consumed by the first attempt
    idempotent = call.policy.idempotent
    if idempotent is UNSET:
        return is_idempotent(request.method, call.raw_headers)
    return idempotent


#: ``call.state`` key of the call's own tenacity ``RetryCallState`` (``Retry(wait=...)``).
_TENACITY_STATE: Final = "meshclient.retry.tenacity"
_TENACITY_CONTROLLER: Final = tenacity.Retrying()


def _delay(retry: Retry, call: Call, attempt: Attempt) -> float:
    """Seconds before the next attempt: full jitter, or the caller's tenacity wait strategy
    evaluated over a ``RetryCallState`` of this call alone (never shared between calls)."""
    wait = retry.wait
    if wait is None:
        return retry.delay(attempt.number, call.rng)
    state = call.state.get(_TENACITY_STATE)
    if state is None:
        state = tenacity.RetryCallState(_TENACITY_CONTROLLER, None, (), {})
        state.start_time = call.start
        call.state[_TENACITY_STATE] = state
    state.attempt_number = attempt.number
    outcome: tenacity.Future = tenacity.Future(attempt.number)
    if attempt.error is None:
        outcome.set_result(attempt.status)
    else:
        outcome.set_exception(attempt.error)
    state.outcome = outcome
    state.outcome_timestamp = attempt.ended_at
    delay = float(wait(state))
    state.idle_for += delay
    return delay if delay > 0.0 else 0.0


# -- attempt modules -----------------------------------------------------------------------------


class AttemptTelemetryModule(AttemptModule):
    """One CLIENT span per attempt (its trace context in the attempt's headers) and one
    duration record; then the retry decision taken on it."""

    role = "attempt_telemetry"

    def build(self, service: ServiceContext) -> AttemptModule:
        return _AttemptTelemetry(service.telemetry)


class _AttemptTelemetry(AttemptModule):
    role = "attempt_telemetry"

    def __init__(self, telemetry: RouteTelemetry) -> None:
        self.on_attempt = telemetry.attempt_started  # type: ignore[method-assign]
        self.on_attempt_end = telemetry.attempt_ended  # type: ignore[method-assign]


class BalancerModule(AttemptModule):
    """``Service.balancer`` picks each attempt's endpoint, avoiding those this call tried, and
    learns every endpoint's latency (peak-EWMA) from every attempt."""

    role = "balancer"

    def build(self, service: ServiceContext) -> AttemptModule:
        return _Balancing(service, service.service.balancer)


class _Balancing(AttemptModule):
    role = "balancer"

    def __init__(self, service: ServiceContext, balancer: Balancer) -> None:
        self.service = service
        self.balancer = balancer
        self.decay = balancer.decay
        self.zone = service.service.zone
        self._lock = threading.Lock()
        self._version = -1
        self._picker: Picker = balancer.prepare(())
        #: With a zone: the picker over the zone's endpoints while enough are available.
        self._local: Picker | None = None

    def on_attempt(self, attempt: Attempt) -> None:
        service = self.service
        if service.version != self._version:
            self._rebuild()
        tried = attempt.call.tried
        local = self._local
        if local is not None and not (tried and all(e in tried for e in local.endpoints)):
            attempt.endpoint = local.pick(tried, attempt.started)
        else:  # no zone preference, or the zone's endpoints all failed this call: spill over
            attempt.endpoint = self._picker.pick(tried, attempt.started)

    def _rebuild(self) -> None:
        """Pickers over the set attempts may go to now; rebuilt only when it changed."""
        with self._lock:
            service = self.service
            version = service.version  # before the set: a newer set never gets an older version
            if version == self._version:
                return
            available = service.available
            self._picker = self.balancer.prepare(available, service.rng)
            self._local = None
            zone = self.zone
            if zone is not None:
                local = tuple(e for e in available if e.zone == zone)
                listed = sum(1 for e in service.endpoints if e.zone == zone)
                # Stay home while at least half of the zone's endpoints can take traffic.
                if local and 2 * len(local) >= listed:
                    self._local = self.balancer.prepare(local, service.rng)
            self._version = version

    def on_outcome(self, attempt: Attempt) -> None:
        error = attempt.error
        if error is not None and (attempt.status is not None or not isinstance(error, RESENDABLE)):
            # A body that failed after its head (the head's latency was learnt), or a bad
            # request, which fails the same anywhere: nothing to learn about the endpoint.
            return
        failed = error is not None or attempt.status >= 500  # type: ignore[operator]
        self._observe(attempt, attempt.ended_at, failed)  # type: ignore[arg-type]

    def on_attempt_end(self, attempt: Attempt) -> None:
        if attempt.ended_at is None and attempt.sent:
            # Cut off before any outcome (the caller went away): the endpoint took at least
            # this long, which is worth knowing (tower's PeakEwma records on drop).
            self._observe(attempt, attempt.call.clock(), failed=True)

    def _observe(self, attempt: Attempt, now: float, failed: bool) -> None:
        """Fold the attempt's latency in; a failure never makes an endpoint look faster."""
        endpoint = attempt.endpoint
        assert endpoint is not None
        latency = now - attempt.sent_at
        decay = self.decay
        with endpoint.lock:
            if failed:
                estimate = rtt_estimate(endpoint, now, decay)
                if estimate > latency:
                    latency = estimate
            observe_rtt(endpoint, latency, now, decay)

    def describe(self) -> Mapping[str, Any]:
        return {"balancer": repr(self.balancer)}


class HealthModule(AttemptModule):
    """``Service.outlier``: ejects failing and slow endpoints, probes them back in."""

    role = "health"

    def build(self, service: ServiceContext) -> AttemptModule | None:
        outlier = service.service.outlier
        if outlier is None:
            return None
        return _Health(service, outlier)


class _Health(AttemptModule):
    role = "health"

    def __init__(self, service: ServiceContext, outlier: OutlierDetection) -> None:
        self.service = service
        self.telemetry = service.telemetry
        self.tracker = HealthTracker(
            outlier, clock=service.clock, rng=service.rng, decay=service.service.balancer.decay
        )
        self._publish_lock = threading.Lock()
        service.on_endpoints(self._endpoints)

    def _endpoints(self, endpoints: tuple[EndpointState, ...]) -> None:
        self.tracker.set_endpoints(endpoints)
        self._publish()

    def _publish(self) -> None:
        # Read under the lock: whoever publishes last publishes the newest set.
        with self._publish_lock:
            self.service.set_available(self.tracker.available())

    def on_attempt(self, attempt: Attempt) -> None:
        tracker = self.tracker
        now = attempt.started
        if now < tracker.next_probe_at:
            return
        candidate = tracker.probe_candidate(now)
        if candidate is None:
            return
        if candidate in attempt.call.tried:
            tracker.release_probe(candidate)
        else:
            attempt.endpoint = candidate
            attempt.probe = True

    def on_outcome(self, attempt: Attempt) -> None:
        error = attempt.error
        if error is None:
            ok: bool | None = attempt.status < 500  # type: ignore[operator]
        elif attempt.timed_out and attempt.bound_by == BOUND_INHERITED:
            ok = None  # the caller's caller chose a budget this endpoint could not meet
        else:
            ok = False if is_endpoint_fault(error) else None
        endpoint = attempt.endpoint
        assert endpoint is not None
        if ok is None:
            if attempt.probe:
                self.tracker.release_probe(endpoint)
            return
        transitions = self.tracker.record(endpoint, ok, attempt.ended_at, probe=attempt.probe)  # type: ignore[arg-type]
        if transitions:
            telemetry = self.telemetry
            for transition in transitions:
                if isinstance(transition, Ejected):
                    telemetry.endpoint_ejected(
                        transition.address, transition.reason, transition.duration
                    )
                else:
                    telemetry.endpoint_readmitted(transition.address)
            self._publish()

    def on_attempt_end(self, attempt: Attempt) -> None:
        if attempt.probe and attempt.ended_at is None:  # ended without an outcome
            self.tracker.release_probe(attempt.endpoint)  # type: ignore[arg-type]

    def describe(self) -> Mapping[str, Any]:
        return {"health": self.tracker.snapshot()}

    def describe_endpoint(self, endpoint: EndpointState) -> Mapping[str, Any]:
        return {"health": self.tracker.endpoint_snapshot(endpoint)}


class AttemptTimeoutModule(AttemptModule):
    """Sets ``attempt.deadline``: ``Timeout.attempt``, never past the call's deadline, and
    tells the callee how long it has (the deadline header). Innermost, so health and retries
    see its timeouts."""

    role = "attempt_timeout"

    def build(self, service: ServiceContext) -> AttemptModule:
        return _AttemptTimeout(service.deadline_header)


class _AttemptTimeout(AttemptModule):
    role = "attempt_timeout"

    def __init__(self, header: bytes | None) -> None:
        self.header = header

    def on_attempt(self, attempt: Attempt) -> None:
        call = attempt.call
        timeout = call.policy.timeout
        bound = None if timeout is None or timeout is UNSET else timeout.attempt
        now = attempt.started
        deadline = call.deadline
        if bound is not None and (deadline is None or now + bound < deadline):
            deadline = attempt.deadline = now + bound
            attempt.bound_by = BOUND_ATTEMPT
        elif deadline is not None:
            attempt.deadline = deadline
            attempt.bound_by = BOUND_INHERITED if call.deadline_inherited else BOUND_TOTAL
        else:
            return
        header = self.header
        if header is not None:
            # Relative, so the callee's clock need not agree with ours.
            left = deadline - now
            attempt.set_header(header, b"%d" % (left * 1000 if left > 0 else 0))


def settle_sync(
    call: Call, recover: object, result: Any, error: Exception
) -> httpx.Response | None:
    """What a ``recover`` phase returned, in a sync client: a response or ``None``."""
    if inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()  # never awaited: no "never awaited" warning
        raise TypeError(
            f"{_recoverer(call, recover)} returned an awaitable: a coroutine "
            "function fallback needs meshclient.AsyncClient"
        ) from error
    return _response(call, recover, result, error)


async def settle_async(
    call: Call, recover: object, result: Any, error: Exception
) -> httpx.Response | None:
    """What a ``recover`` phase returned, in an async client: awaited if awaitable."""
    if inspect.isawaitable(result):
        result = await result
    return _response(call, recover, result, error)


def _response(
    call: Call, recover: object, result: object, error: Exception
) -> httpx.Response | None:
    if result is None or isinstance(result, httpx.Response):
        return result
    raise TypeError(
        f"{_recoverer(call, recover)} must return an httpx.Response or None, got {result!r}"
    ) from error


def _recoverer(call: Call, recover: object) -> str:
    owner = getattr(recover, "__self__", recover)
    if isinstance(owner, FallbackModule):
        return f"Policy.fallback {call.policy.fallback!r}"
    return f"{owner!r}.recover"
