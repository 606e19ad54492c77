"""The decisions of one logical call, shared by the sync and the async transport.

A ``Call`` is created per request and owns all per-call state (attempt count, endpoints
that failed, the deadline); policies and balancers stay immutable or per service. The
transports only drive it: ask for an attempt, do the I/O, report the outcome, sleep for
the delay it returns. Nothing in here does I/O.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import httpcore
import httpx

from ._balance import observe_rtt, rtt_estimate
from ._deadline import clip_timeouts
from ._endpoint import EndpointState
from ._errors_map import NEVER_SENT, to_httpx
from ._exceptions import DeadlineExceeded, NoEndpointsError
from ._policy import UNSET, Policy
from ._pool import EndpointPool
from ._retry import is_idempotent, parse_retry_after
from ._service import Route

__all__ = ["Call"]

_HTTP = b"http"
_RETRY_AFTER = b"retry-after"


class Call:
    """Per-call state machine: ``next_attempt`` → I/O → ``on_response`` / ``on_error``.

    The endpoint of the current attempt is accounted (outstanding requests, a pool slot)
    from ``next_attempt`` until ``release``, which is idempotent so every exit path (a
    closed response, an error, a cancelled task) may call it.
    """

    __slots__ = (
        "attempts",
        "clock",
        "deadline",
        "endpoint",
        "policy",
        "pool",
        "released",
        "request",
        "rng",
        "route",
        "sent_at",
        "shard",
        "start",
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
        self.deadline: float | None = None if total is None else now + total
        self.attempts = 0
        #: Endpoints that failed this call, avoided by later attempts.
        self.tried: tuple[EndpointState, ...] = ()
        self.released = True
        route.budget.deposit()

    # -- attempts --------------------------------------------------------------------------

    def next_attempt(self) -> tuple[Any, httpcore.Request]:
        """Pick an endpoint and build the physical request; the caller sends it to the shard."""
        now = self.clock()
        timeout = self.policy.timeout
        bound = None if timeout is None or timeout is UNSET else timeout.attempt
        if self.deadline is not None:
            left = self.deadline - now
            if left <= 0:
                raise self._deadline_exceeded(now)
            if bound is None or left < bound:
                bound = left
        route = self.route
        picker = route.picker
        if not picker.endpoints:
            raise NoEndpointsError(
                f"service {route.name!r} has no endpoints",
                request=self.request,
                attempts=self.attempts,
                endpoints=[state.address for state in self.tried],
                elapsed=now - self.start,
            )
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
        core = httpcore.Request(
            request.method,
            httpcore.URL(
                scheme=scheme, host=endpoint.raw_host, port=endpoint.port, target=url.raw_path
            ),
            headers=request.headers.raw,
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

    def release(self) -> None:
        """Return the attempt's slot and outstanding count; safe to call more than once."""
        if self.released:
            return
        endpoint = self.endpoint
        with endpoint.lock:
            if self.released:
                return
            self.released = True
            endpoint.outstanding -= 1
            self.pool.release(self.shard)

    # -- outcomes --------------------------------------------------------------------------

    def on_response(self, response: httpcore.Response) -> float | None:
        """``None`` to hand the response to the caller, else seconds to wait before a retry.

        A retry decision is final: the caller must discard the response, then ``release``.
        """
        now = self.clock()
        status = response.status
        retry = self.policy.retry
        if retry is None or retry is UNSET or status not in retry.statuses:
            self._observe(now - self.sent_at, now)
            return None
        self._observe_failure(now)
        retry_after = None
        for name, value in response.headers:
            if name.lower() == _RETRY_AFTER:
                retry_after = parse_retry_after(value.decode("latin-1"), time.time())
                break
        if not retry.retryable_status(status, retry_after):
            return None
        if self.attempts >= retry.attempts or not self._may_resend():
            return None
        # retryable_status already refused a Retry-After beyond the cap.
        delay = retry.delay(self.attempts, self.rng) if retry_after is None else retry_after
        if self.deadline is not None and now + delay >= self.deadline:
            return None
        if not self.route.budget.try_withdraw():
            return None
        self.tried += (self.endpoint,)
        return delay

    def on_error(self, exc: Exception) -> float:
        """Seconds to wait before a retry, or raises the error the caller should see."""
        now = self.clock()
        self._observe_failure(now)
        self.release()
        self.tried += (self.endpoint,)
        if (
            self.deadline is not None
            and now >= self.deadline
            and isinstance(exc, httpcore.TimeoutException)
        ):
            raise self._deadline_exceeded(now) from exc
        error = to_httpx(exc)
        retry = self.policy.retry
        if (
            retry is None
            or retry is UNSET
            or self.attempts >= retry.attempts
            or not (isinstance(exc, NEVER_SENT) or self._may_resend())
        ):
            raise error
        delay = retry.delay(self.attempts, self.rng)
        if (
            self.deadline is not None and now + delay >= self.deadline
        ) or not self.route.budget.try_withdraw():
            raise error
        return delay

    def stream_error(self, exc: Exception) -> BaseException:
        """The error for a failure while the caller reads the body of a delivered response."""
        if (
            self.deadline is not None
            and isinstance(exc, httpcore.TimeoutException)
            and self.clock() >= self.deadline
        ):
            error: BaseException = self._deadline_exceeded(self.clock())
            error.__cause__ = exc
            return error
        return to_httpx(exc)

    # -- helpers ---------------------------------------------------------------------------

    def _may_resend(self) -> bool:
        """Whether a request that may have reached a server can be sent again."""
        if not isinstance(self.request.stream, httpx.ByteStream):
            return False  # a generator body was consumed by the first attempt
        idempotent = self.policy.idempotent
        if idempotent is UNSET:
            return is_idempotent(self.request.method, self.request.headers.raw)
        return idempotent

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
        timeout = self.policy.timeout
        total = None if timeout is None or timeout is UNSET else timeout.total
        return DeadlineExceeded(
            f"deadline of {total}s exceeded after {self.attempts} attempt(s) "
            f"to service {self.route.name!r}",
            request=self.request,
            attempts=self.attempts,
            endpoints=[state.address for state in self.tried],
            elapsed=now - self.start,
        )
