"""The decisions of one logical call, shared by the sync and the async transport.

A ``Call`` is created per request and owns all per-call state (attempt count, endpoints
that failed, the deadline); policies and balancers stay immutable or per service. The
transports only drive it: ask for an attempt, do the I/O, report the outcome, sleep for
the delay it returns. Nothing in here does I/O.

Telemetry is reported at the decisions (``RouteTelemetry`` in ``_telemetry.py``): the call's
span starts with the call; an attempt's span starts in ``next_attempt`` and ends in
``release``, followed by the decision taken on its outcome (retry, budget or deadline
refusal); the call's span ends when the delivered response is released, when the call
raises, or when the caller abandons it (``abandon``: cancellation is not an error).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpcore
import httpx

from ._balance import observe_rtt, rtt_estimate
from ._context import inherited_deadline
from ._deadline import clip_timeouts
from ._endpoint import EndpointState
from ._errors_map import NEVER_SENT, to_httpx
from ._exceptions import CircuitOpenError, DeadlineExceeded, NoEndpointsError, ThrottledError
from ._names import OUTCOME_CANCELLED, OUTCOME_ERROR, OUTCOME_SERVER_ERROR, OUTCOME_SUCCESS
from ._policy import UNSET, Policy
from ._pool import EndpointPool
from ._retry import is_idempotent, parse_retry_after
from ._service import Route
from ._telemetry import set_header

__all__ = ["Call"]

_E = TypeVar("_E", bound=BaseException)

_HTTP = b"http"
_HTTPS = b"https"
_RETRY_AFTER = b"retry-after"
#: Decisions reported after the attempt they concern has ended (see ``release``).
_RETRY, _BUDGET_REFUSED, _DEADLINE_REFUSED = 1, 2, 3
_FAILED = frozenset({OUTCOME_ERROR, OUTCOME_SERVER_ERROR})
#: Statuses by which a server refuses work: not "accepted" for adaptive throttling.
_NOT_ACCEPTED = frozenset({429, 503})


class Call:
    """Per-call state machine: ``next_attempt`` → I/O → ``on_response`` / ``on_error``.

    The endpoint of the current attempt is accounted (outstanding requests, a pool slot)
    from ``next_attempt`` until ``release``, which is idempotent so every exit path (a
    closed response, an error, a cancelled task) may call it.
    """

    __slots__ = (
        "attempt_span",
        "attempts",
        "breaker_permit",
        "clock",
        "deadline",
        "decision",
        "ended",
        "endpoint",
        "error_type",
        "inherited",
        "local",
        "outcome",
        "parent",
        "policy",
        "pool",
        "port",
        "probing",
        "released",
        "request",
        "rng",
        "route",
        "sent_at",
        "shard",
        "slot_held",
        "span",
        "start",
        "status",
        "telemetry",
        "throttled",
        "tried",
    )

    def __init__(
        self,
        route: Route,
        request: httpx.Request,
        policy: Policy,
        clock: Callable[[], float],
        rng: random.Random,
    ) -> None:
        self.route = route
        self.request = request
        self.policy = policy
        self.clock = clock
        self.rng = rng
        now = clock()
        self.start = now
        timeout = policy.timeout
        total = None if timeout is None or timeout is UNSET else timeout.total
        deadline = None if total is None else now + total
        # A server handling a request passes its caller's deadline down (``_context.py``).
        inherited = inherited_deadline()
        self.inherited = inherited is not None and (deadline is None or inherited < deadline)
        self.deadline: float | None = inherited if self.inherited else deadline
        url = request.url
        #: ``server.port`` of the logical URL, for telemetry.
        self.port: int = url.port or (443 if url.raw_scheme == _HTTPS else 80)
        self.attempts = 0
        #: Endpoints that failed this call, avoided by later attempts.
        self.tried: tuple[EndpointState, ...] = ()
        self.released = True
        #: The current attempt's status code and ``error.type`` (telemetry).
        self.status: int | None = None
        self.error_type: str | None = None
        #: What was decided about the current attempt, reported once it has ended.
        self.decision: tuple[int, float] | None = None
        #: How the call ends, once that is decided; ``ended`` once it is reported.
        self.outcome: str | None = None
        self.ended = False
        #: Admission held by this call, each given back exactly once in ``_end``.
        self.throttled = self.breaker_permit = self.slot_held = False
        #: Rejected locally (admission), so the breaker does not count it as an outcome.
        self.local = False
        #: The current attempt is the one probe of an endpoint whose ejection expired.
        self.probing = False
        route.budget.deposit()
        self.telemetry = route.telemetry
        self.span: Any = None
        self.parent: Any = None
        self.attempt_span: Any = None
        self.telemetry.call_started(self)

    # -- admission -------------------------------------------------------------------------

    def admit(self) -> None:
        """Throttle and breaker: reject before any work; a rejection is never retried.

        The bulkhead, which may wait, is taken by the transport (``hold_slot``).
        """
        route = self.route
        throttle = route.throttle
        if throttle is not None:
            self.throttled = True
            if not throttle.allow():
                self.local = True
                raise self._fail(
                    ThrottledError(
                        f"service {route.name!r} is rejecting calls locally: too few of the "
                        "recent ones were accepted (adaptive throttling)",
                        request=self.request,
                    )
                )
        breaker = route.breaker
        if breaker is not None:
            if not breaker.try_acquire():
                self.local = True
                raise self._fail(
                    CircuitOpenError(
                        f"circuit breaker of service {route.name!r} is {breaker.state}",
                        request=self.request,
                    )
                )
            self.breaker_permit = True

    def hold_slot(self) -> None:
        """The transport took a bulkhead slot for this call; ``_end`` gives it back."""
        self.slot_held = True

    def reject(self, error: _E) -> _E:
        """Admission refused the call (a full bulkhead): it ends with ``error``."""
        self.local = True
        return self._fail(error)

    # -- attempts --------------------------------------------------------------------------

    def next_attempt(self) -> tuple[Any, httpcore.Request]:
        """Pick an endpoint and build the physical request; the caller sends it to the shard."""
        now = self.clock()
        timeout = self.policy.timeout
        bound = None if timeout is None or timeout is UNSET else timeout.attempt
        if self.deadline is not None:
            left = self.deadline - now
            if left <= 0:
                raise self._fail(self._deadline_exceeded(now))
            if bound is None or left < bound:
                bound = left
        route = self.route
        picker = route.picker
        if not picker.endpoints:
            raise self._fail(
                NoEndpointsError(
                    f"service {route.name!r} has no endpoints",
                    request=self.request,
                    attempts=self.attempts,
                    endpoints=[state.address for state in self.tried],
                    elapsed=now - self.start,
                )
            )
        endpoint = None
        health = route.health
        if health is not None:
            if health.version != route.health_version:
                route.refresh()
                picker = route.picker
            if now >= health.next_probe_at:
                candidate = health.probe_candidate(now)
                if candidate is not None:
                    if candidate in self.tried:
                        health.release_probe(candidate)
                    else:
                        endpoint = candidate
                        self.probing = True
        if endpoint is None:
            endpoint = picker.pick(self.tried, now)
        request = self.request
        url = request.url
        scheme = url.raw_scheme
        extensions = request.extensions
        if bound is not None or (route.rewrite and scheme != _HTTP):
            extensions = dict(extensions)
            if bound is not None:
                extensions["timeout"] = clip_timeouts(extensions.get("timeout", {}), bound)
            if route.rewrite and scheme != _HTTP:
                # Verify the certificate against the logical name, not the endpoint's address.
                extensions["sni_hostname"] = url.host
        # A fresh list per attempt: the caller's request is never mutated.
        headers = request.headers.raw
        telemetry = self.telemetry
        if bound is not None and telemetry.deadline_header is not None:
            # Relative, so the callee's clock need not agree with ours.
            set_header(headers, telemetry.deadline_header, b"%d" % (bound * 1000))
        self.status = self.error_type = None
        telemetry.attempt_started(self, endpoint, headers)
        core = httpcore.Request(
            request.method,
            httpcore.URL(
                scheme=scheme, host=endpoint.raw_host, port=endpoint.port, target=url.raw_path
            ),
            headers=headers,
            content=request.stream,
            extensions=extensions,
        )
        pool: EndpointPool = endpoint.pool if scheme == _HTTP else endpoint.tls_pool
        with endpoint.lock:
            endpoint.outstanding += 1
            shard = pool.acquire()
        self.endpoint = endpoint
        self.pool = pool
        self.shard = shard
        self.released = False
        self.sent_at = now
        self.attempts += 1
        return pool.shards[shard], core

    def release(self, *, cancelled: bool = False) -> None:
        """Return the attempt's slot and outstanding count; safe to call more than once.

        This is where an attempt ends: its span and duration are reported, then the
        decision taken on its outcome, then the call's end if the call is over.
        """
        if self.released:
            return
        endpoint = self.endpoint
        with endpoint.lock:
            if self.released:
                return
            self.released = True
            endpoint.outstanding -= 1
            self.pool.release(self.shard)
        if self.probing:  # ended without an outcome: another probe may go
            self.probing = False
            health = self.route.health
            if health is not None:
                health.release_probe(endpoint)
        now = self.clock()
        telemetry = self.telemetry
        telemetry.attempt_ended(self, now, cancelled)
        decision = self.decision
        if decision is not None:
            self.decision = None
            kind, delay = decision
            reason = self.error_type or ""
            if kind == _RETRY:
                telemetry.retry_scheduled(self, delay, reason)
            elif kind == _BUDGET_REFUSED:
                telemetry.budget_exhausted(self, reason)
            else:
                telemetry.deadline_stops_retry(self, delay)
        if self.outcome is not None:
            self._end(now)

    def abandon(self) -> None:
        """The caller went away (task cancelled, KeyboardInterrupt): end without an error."""
        if self.ended:
            return
        self.outcome = OUTCOME_CANCELLED
        if self.released:
            self._end(self.clock())
        else:
            self.release(cancelled=True)

    # -- outcomes --------------------------------------------------------------------------

    def on_response(self, response: httpcore.Response) -> float | None:
        """``None`` to hand the response to the caller, else seconds to wait before a retry.

        A retry decision is final: the caller must discard the response, then ``release``.
        """
        now = self.clock()
        status = response.status
        self.status = status
        if status >= 400:
            self.error_type = str(status)  # semantic conventions: the status code
        if self.route.health is not None:
            self._health(status < 500, now)
        retry = self.policy.retry
        if retry is None or retry is UNSET or status not in retry.statuses:
            self._observe(now - self.sent_at, now)
            return self._deliver()
        self._observe_failure(now)
        retry_after = None
        for name, value in response.headers:
            if name.lower() == _RETRY_AFTER:
                retry_after = parse_retry_after(value.decode("latin-1"), time.time())
                break
        if not retry.retryable_status(status, retry_after):
            return self._deliver()
        if self.attempts >= retry.attempts or not self._may_resend():
            return self._deliver()
        # retryable_status already refused a Retry-After beyond the cap.
        delay = retry.delay(self.attempts, self.rng) if retry_after is None else retry_after
        if self.deadline is not None and now + delay >= self.deadline:
            self.decision = (_DEADLINE_REFUSED, delay)
            return self._deliver()
        if not self.route.budget.try_withdraw():
            self.decision = (_BUDGET_REFUSED, delay)
            return self._deliver()
        self.tried += (self.endpoint,)
        self.decision = (_RETRY, delay)
        return delay

    def on_error(self, exc: Exception) -> float:
        """Seconds to wait before a retry, or raises the error the caller should see."""
        now = self.clock()
        self._observe_failure(now)
        if self.route.health is not None and not isinstance(exc, httpcore.PoolTimeout):
            self._health(False, now)  # a full local pool says nothing about the endpoint
        error = to_httpx(exc)
        self.error_type = type(error).__qualname__
        self.tried += (self.endpoint,)
        if (
            self.deadline is not None
            and now >= self.deadline
            and isinstance(exc, httpcore.TimeoutException)
        ):
            self.release()
            raise self._fail(self._deadline_exceeded(now)) from exc
        retry = self.policy.retry
        if (
            retry is None
            or retry is UNSET
            or self.attempts >= retry.attempts
            or not (isinstance(exc, NEVER_SENT) or self._may_resend())
        ):
            self.release()
            raise self._fail(error)
        delay = retry.delay(self.attempts, self.rng)
        if self.deadline is not None and now + delay >= self.deadline:
            self.decision = (_DEADLINE_REFUSED, delay)
        elif not self.route.budget.try_withdraw():
            self.decision = (_BUDGET_REFUSED, delay)
        else:
            self.decision = (_RETRY, delay)
            self.release()
            return delay
        self.release()
        raise self._fail(error)

    def stream_error(self, exc: Exception) -> BaseException:
        """The error for a failure while the caller reads the body of a delivered response."""
        if (
            self.deadline is not None
            and isinstance(exc, httpcore.TimeoutException)
            and self.clock() >= self.deadline
        ):
            error: BaseException = self._deadline_exceeded(self.clock())
            error.__cause__ = exc
        else:
            error = to_httpx(exc)
        # Reported when the response is closed, which releases the attempt.
        self.error_type = type(error).__qualname__
        self.outcome = OUTCOME_ERROR
        return error

    # -- endings ---------------------------------------------------------------------------

    def _deliver(self) -> float | None:
        """Hand the response to the caller (``None``: no retry); the call ends at release."""
        status = self.status
        self.outcome = OUTCOME_SUCCESS if status is None or status < 500 else OUTCOME_SERVER_ERROR
        return None

    def _fail(self, error: _E) -> _E:
        """The call ends with ``error``, which the caller raises."""
        self.outcome = OUTCOME_ERROR
        self.error_type = type(error).__qualname__
        self._end(self.clock())
        return error

    def _end(self, now: float) -> None:
        if self.ended:
            return
        self.ended = True
        outcome = self.outcome or OUTCOME_CANCELLED
        route = self.route
        if self.slot_held:
            self.slot_held = False
            route.bulkhead.release()  # type: ignore[union-attr]
        if self.breaker_permit:
            self.breaker_permit = False
            breaker = route.breaker
            assert breaker is not None
            if outcome == OUTCOME_CANCELLED or self.local:
                breaker.release_unused()
            else:
                breaker.on_result(outcome == OUTCOME_SUCCESS, now - self.start)
        if self.throttled:
            self.throttled = False
            route.throttle.record(  # type: ignore[union-attr]
                outcome == OUTCOME_SUCCESS and self.status not in _NOT_ACCEPTED
            )
        error = self.error_type if outcome in _FAILED else None
        self.telemetry.call_ended(self, now, outcome, error)

    # -- helpers ---------------------------------------------------------------------------

    def _may_resend(self) -> bool:
        """Whether a request that may have reached a server can be sent again."""
        if not isinstance(self.request.stream, httpx.ByteStream):
            return False  # a generator body was consumed by the first attempt
        idempotent = self.policy.idempotent
        if idempotent is UNSET:
            return is_idempotent(self.request.method, self.request.headers.raw)
        return idempotent

    def _health(self, ok: bool, now: float) -> None:
        """Tell endpoint health how the attempt went; a transition rebuilds the picker."""
        probe = self.probing
        self.probing = False
        transitions = self.route.health.record(  # type: ignore[union-attr]
            self.endpoint, ok, now, probe=probe
        )
        if transitions:
            self.route.report(transitions)

    def _observe(self, latency: float, now: float) -> None:
        endpoint = self.endpoint
        with endpoint.lock:
            observe_rtt(endpoint, latency, now, self.route.decay)

    def _observe_failure(self, now: float) -> None:
        """A failure never makes an endpoint look faster than it was thought to be."""
        endpoint = self.endpoint
        latency = now - self.sent_at
        estimate = rtt_estimate(endpoint, now, self.route.decay)
        self._observe(latency if latency > estimate else estimate, now)

    def _deadline_exceeded(self, now: float) -> DeadlineExceeded:
        if self.inherited:
            what = "the deadline inherited from the request being handled"
        else:
            timeout = self.policy.timeout
            total = None if timeout is None or timeout is UNSET else timeout.total
            what = f"deadline of {total}s"
        return DeadlineExceeded(
            f"{what} exceeded after {self.attempts} attempt(s) to service {self.route.name!r}",
            request=self.request,
            attempts=self.attempts,
            endpoints=[state.address for state in self.tried],
            elapsed=now - self.start,
        )
