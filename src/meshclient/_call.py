"""The per-call and per-attempt context objects, and the engine's decisions about them.

``Call`` and ``Attempt`` are what modules see: plain objects with documented fields, one
``Call`` per logical call and one ``Attempt`` per physical try. The engine's own steps that do
not wait or do I/O live here too (run the phases, classify an outcome, end exactly once), so
the sync and the async drivers (``_sync/_transport.py``, ``_async/_transport.py``) share them.

Exactly-once endings: an attempt is *finished* once (``Attempt.finish``: accounting released,
``on_attempt_end`` phases run), and a call is *ended* once (``on_call_end`` phases run) after
its last attempt finished, whichever of these comes first: the delivered response is closed,
the call raises, or the caller goes away.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final

import httpx

from ._errors_map import to_httpx
from ._exceptions import DeadlineExceeded, MeshError, NoEndpointsError
from ._names import OUTCOME_CANCELLED, OUTCOME_ERROR, OUTCOME_SERVER_ERROR, OUTCOME_SUCCESS
from ._policy import Policy

if TYPE_CHECKING:
    from ._endpoint import EndpointState
    from ._route import Route

__all__ = ["BUFFERED", "DROPPED", "Attempt", "Call"]

logger = logging.getLogger("meshclient")

#: ``True`` while a meshclient client's ``request`` (``get``, ``post``, ...) sends: its caller
#: reads the whole body before seeing the response, so the mesh reads it within the attempt; a
#: body cut short is then retried like any failed attempt, and the attempt's deadline bounds it.
BUFFERED: Final[ContextVar[bool]] = ContextVar("meshclient.buffered", default=False)
#: Attempts whose streamed response was garbage-collected unclosed; the next call finishes them
#: (not the collector: it may run while the same thread holds an endpoint's lock).
DROPPED: Final[deque[Attempt]] = deque()

#: How the limit that bounds an attempt was set (``Attempt.bound_by``).
BOUND_ATTEMPT: Final = "attempt"
BOUND_TOTAL: Final = "total"
BOUND_INHERITED: Final = "inherited"


class Call:
    """One logical call: the request your code made, across all of its attempts.

    Fields modules read (and the ones they set, where noted):

    - ``request``: the caller's ``httpx.Request``; never mutated (each attempt copies it).
    - ``route``: the ``ServiceContext`` of the service the call goes to.
    - ``service``: the service name (or the host of a pass-through request); ``passthrough``
      is ``True`` for a host that is not a configured service; ``port``: the port of the
      request's URL (its scheme's default when it names none).
    - ``policy``: the effective ``Policy`` (per call over service over client over defaults).
    - ``start``: clock seconds when the call began; ``clock()`` reads the same clock.
    - ``deadline``: clock seconds by which the call must end, or ``None`` (set by the deadline
      module; the engine starts no attempt past it). ``deadline_inherited`` is ``True`` when it
      came from the request being served (``deadline_scope``, the middleware) rather than from
      this call's own ``Timeout.total``.
    - ``attempts``: attempts sent so far; ``tried``: their endpoints, in order.
    - ``buffered``: the caller reads the whole body before it sees the response
      (``client.get``, ``client.request``, ...; not ``client.stream`` or ``client.send``): the
      body is read within the attempt.
    - ``outcome``: ``None`` while running, then ``"success"``, ``"server_error"`` (a 5xx was
      returned), ``"error"`` (the call raised) or ``"cancelled"`` (the caller went away).
    - ``status``: the status code returned to the caller; ``error``: the error it got.
    - ``rejected``: ``True`` when a call module refused the call (nothing was sent).
    - ``span`` / ``context``: the call's tracing span and OpenTelemetry context (set by the
      call telemetry module), for modules that add events or start child spans.
    - ``state``: a dict for a module's own per-call data.
    """

    __slots__ = (
        "_ended",
        "_ends",
        "_sent_names",
        "_state",
        "attempts",
        "buffered",
        "clock",
        "context",
        "deadline",
        "deadline_inherited",
        "error",
        "outcome",
        "passthrough",
        "policy",
        "port",
        "raw_headers",
        "rejected",
        "request",
        "rng",
        "route",
        "service",
        "span",
        "start",
        "status",
        "transport",
        "tried",
    )

    def __init__(
        self,
        route: Route,
        request: httpx.Request,
        policy: Policy,
        transport: Any,
    ) -> None:
        self.route = route
        self.request = request
        self.policy = policy
        self.service = route.name
        self.passthrough = route.passthrough
        #: The caller's headers, raw; each attempt sends a copy its modules may edit.
        self.raw_headers: list[tuple[bytes, bytes]] = request.headers.raw
        url = request.url
        self.port: int = url.port or (443 if url.raw_scheme == b"https" else 80)
        self.clock: Callable[[], float] = route.clock
        self.rng: random.Random = route.rng
        self.start = route.clock()
        #: The user's httpx transport for this request, or ``None`` for meshclient's pools.
        self.transport = transport
        self.buffered = BUFFERED.get()
        self.deadline: float | None = None
        self.deadline_inherited = False
        self.attempts = 0
        self.tried: tuple[EndpointState, ...] = ()
        self.outcome: str | None = None
        self.status: int | None = None
        self.error: BaseException | None = None
        self.rejected = False
        self.span: Any = None
        self.context: Any = None
        self._state: dict[Any, Any] | None = None
        self._sent_names: frozenset[bytes] | None = None
        self._ends: tuple[Callable[[Call], None], ...] = ()
        self._ended = False

    def __repr__(self) -> str:
        return (
            f"<Call {self.request.method} {self.service} attempts={self.attempts} "
            f"outcome={self.outcome}>"
        )

    @property
    def state(self) -> dict[Any, Any]:
        """Per-call storage for modules; key it by your module to stay out of others' way."""
        state = self._state
        if state is None:
            state = self._state = {}
        return state

    def ready_wait(self) -> float:
        """Seconds to wait for the service's first endpoint set: the deadline's time left,
        or the service's ``ready_timeout`` without a deadline."""
        left = self.time_left()
        if left is None:
            return self.route.service.ready_timeout
        return left if left > 0.0 else 0.0

    def time_left(self) -> float | None:
        """Seconds until ``deadline`` (negative once it passed), or ``None`` without one."""
        deadline = self.deadline
        return None if deadline is None else deadline - self.clock()

    @property
    def evidence(self) -> bool:
        """Whether the call's ending says something about the service.

        ``False`` when nothing reached the service (rejected, or the deadline was gone before
        the first attempt), when the caller went away, and when only a deadline inherited from
        the caller's caller cut it short: none of these may count against the service.
        """
        if self.outcome == OUTCOME_CANCELLED or self.attempts == 0 or self.rejected:
            return False
        return not (self.deadline_inherited and isinstance(self.error, DeadlineExceeded))

    def deadline_exceeded(self, now: float) -> DeadlineExceeded:
        """The error for a call whose deadline passed (``now``: clock seconds)."""
        if self.deadline_inherited:
            what = "the deadline inherited from the request being handled"
        else:
            total = getattr(self.policy.timeout, "total", None)
            what = "the call's deadline" if total is None else f"deadline of {total}s"
        return DeadlineExceeded(
            f"{what} exceeded after {self.attempts} attempt(s) to service {self.service!r}",
            request=self.request,
            attempts=self.attempts,
            endpoints=[state.address for state in self.tried],
            elapsed=now - self.start,
        )

    # -- the engine's steps ----------------------------------------------------------------

    def refused(self, exc: BaseException, entered: tuple[Callable[[Call], None], ...]) -> None:
        """``on_call`` (or its ``Wait``) raised: the call ends before any attempt.

        ``entered`` are the end phases of the modules that had let the call in.
        """
        self._ends = entered
        if isinstance(exc, Exception):
            self.rejected = True
            self._fail(exc)
        else:
            self.abandon()

    def answered_locally(
        self, response: httpx.Response, entered: tuple[Callable[[Call], None], ...]
    ) -> httpx.Response:
        """A call module answered the call itself (a cache, a stub): nothing is sent. The
        drivers come here with whatever ``on_call`` returned that is not a ``Wait``."""
        if not isinstance(response, httpx.Response):
            raise TypeError(
                f"on_call must return None, a Wait or an httpx.Response, got {response!r}"
            )
        self._ends = entered
        self.status = response.status_code
        self.outcome = OUTCOME_SUCCESS if response.status_code < 500 else OUTCOME_SERVER_ERROR
        self._end()
        return response

    def next_attempt(self) -> Attempt:
        """The next attempt, its ``on_attempt`` phases run; raises if none may start."""
        now = self.clock()
        deadline = self.deadline
        if deadline is not None and now >= deadline:
            raise self._fail(self.deadline_exceeded(now))
        route = self.route
        if not route.available:
            raise self._fail(self._no_endpoints(now))
        attempt = Attempt(self, now)
        for on_attempt, entered in route.attempt_start:
            try:
                on_attempt(attempt)
            except BaseException as exc:
                attempt._ends = entered
                if isinstance(exc, Exception):
                    self.error = exc
                    self.outcome = OUTCOME_ERROR
                    attempt.finish()
                else:
                    self.abandon(attempt)  # the modules entered end this attempt too
                raise
        attempt._ends = route.attempt_end
        if attempt.endpoint is None:
            error = MeshError(
                f"no module of the stack of service {self.service!r} chose an endpoint "
                "(is the balancer missing from the stack?)",
                request=self.request,
            )
            self.error = error
            self.outcome = OUTCOME_ERROR
            attempt.finish()
            raise error
        return attempt

    def attempt_answered(self, attempt: Attempt) -> float | None:
        """The attempt has a response head: seconds to wait before a retry, or ``None`` to
        deliver the response (the call then ends when the caller closes it)."""
        attempt.ended_at = self.clock()
        if not self.buffered:  # a buffered attempt finishes now: ``finish`` takes it off
            attempt.answered()
        self._observed(attempt)
        delay = self._retry(attempt)
        if delay is None:
            status = attempt.status
            self.status = status
            self.outcome = OUTCOME_SUCCESS if status < 500 else OUTCOME_SERVER_ERROR  # type: ignore[operator]
        return delay

    def attempt_failed(self, attempt: Attempt, exc: Exception) -> float:
        """The attempt raised ``exc``: seconds to wait before a retry, or raises the error the
        caller gets (the attempt is finished either way)."""
        now = self.clock()
        attempt.ended_at = now  # finished below either way: ``finish`` takes it off the queue
        error = to_httpx(exc)
        if isinstance(error, httpx.TimeoutException) and not isinstance(error, httpx.PoolTimeout):
            bound = attempt.deadline
            if bound is not None and now >= bound:
                attempt.timed_out = True
                deadline = self.deadline
                if deadline is not None and now >= deadline:
                    cause = error
                    error = self.deadline_exceeded(now)
                    error.__cause__ = cause
        attempt.error = error
        self._observed(attempt)
        delay = self._retry(attempt)
        if delay is None:
            self.error = error
            self.outcome = OUTCOME_ERROR
            attempt.finish()
            raise error
        attempt.finish()
        return delay

    def stream_failed(self, attempt: Attempt, exc: Exception) -> BaseException:
        """The error for a failure while the caller reads a delivered body.

        The attempt's outcome changes from its response to this error: ``on_outcome`` runs a
        second time, so endpoint health counts the failure against the endpoint.
        """
        now = self.clock()
        error = to_httpx(exc)
        deadline = self.deadline
        if isinstance(error, httpx.TimeoutException) and deadline is not None and now >= deadline:
            attempt.timed_out = True
            cause = error
            error = self.deadline_exceeded(now)
            error.__cause__ = cause
        self.error = error
        self.outcome = OUTCOME_ERROR
        attempt.error = error
        attempt.ended_at = now
        self._observed(attempt)
        return error

    def abandon(self, attempt: Attempt | None = None) -> None:
        """The caller went away (task cancelled, ``KeyboardInterrupt``): end without an error."""
        if self._ended:
            return
        self.outcome = OUTCOME_CANCELLED
        if attempt is not None and not attempt._finished:
            attempt.cancelled = True
            attempt.finish()
        else:
            self._end()

    def _no_endpoints(self, now: float) -> NoEndpointsError:
        health = self.route.service.discovery_health()
        source = health["source"]
        if not health["ready"]:
            why = f"its discovery ({source}) has produced no endpoint set yet"
        else:
            why = f"its discovery ({source}) lists none"
        if health["last_error"] is not None:
            why += f"; last error: {health['last_error']}"
        return NoEndpointsError(
            f"service {self.service!r} has no endpoints: {why}",
            request=self.request,
            attempts=self.attempts,
            endpoints=[state.address for state in self.tried],
            elapsed=now - self.start,
        )

    def _observed(self, attempt: Attempt) -> None:
        """Tell the attempt modules its outcome; one that raises is logged, not fatal."""
        for on_outcome in self.route.attempt_outcome:
            try:
                on_outcome(attempt)
            except Exception:
                logger.exception("meshclient: on_outcome of %r raised; ignored", on_outcome)

    def _retry(self, attempt: Attempt) -> float | None:
        for retry in self.route.retry:
            try:
                delay = retry(self, attempt)
            except Exception:
                logger.exception("meshclient: retry phase %r raised; no retry", retry)
                return None
            if delay is not None:
                return delay
        return None

    def _fail(self, error: Exception) -> Exception:
        """The call ends with ``error`` before (or between) attempts; the caller raises it."""
        self.error = error
        self.outcome = OUTCOME_ERROR
        self._end()
        return error

    def _end(self) -> None:
        if self._ended:
            return
        self._ended = True
        for on_call_end in self._ends:
            try:
                on_call_end(self)
            except Exception:
                logger.exception("meshclient: on_call_end of %r raised; ignored", on_call_end)


class Attempt:
    """One physical try of a call on one endpoint.

    Fields modules read (and set, where noted):

    - ``call``, ``number`` (1 for the first attempt), ``started`` (clock seconds).
    - ``endpoint``: the ``EndpointState`` it goes to (set by the balancer module).
    - ``headers``: this attempt's own header list (raw ``(name, value)`` bytes pairs, a copy of
      the request's); modules add or replace headers here, e.g. to sign the attempt.
    - ``deadline``: clock seconds by which the attempt must have its response (set by the
      attempt timeout module; the engine enforces it) and ``bound_by``: ``"attempt"``,
      ``"total"`` or ``"inherited"``, the limit that set it.
    - ``probe``: the attempt checks whether an ejected endpoint recovered (health module).
    - After sending: ``sent_at``, then either ``status`` and ``response_headers`` (raw
      ``(name, value)`` pairs; ``response`` too when the bottom is your own transport) or
      ``error`` (an ``httpx`` exception), with ``ended_at``; for a ``buffered`` call, the
      whole body is in ``content`` by then. ``timed_out`` is ``True`` when the mesh's own
      deadline cut it off; ``cancelled`` when the caller went away before it finished.
    - ``decision`` / ``delay``: what the retry module decided about it (``"retry"``,
      ``"budget_exhausted"``, ``"deadline"``), for telemetry.
    - ``span``: the attempt's tracing span (set by the attempt telemetry module).
    """

    __slots__ = (
        "_ends",
        "_finished",
        "_headers",
        "_held",
        "_pool",
        "_shard",
        "_waiting",
        "bound_by",
        "call",
        "cancelled",
        "content",
        "deadline",
        "decision",
        "delay",
        "ended_at",
        "endpoint",
        "error",
        "headers",
        "number",
        "probe",
        "response",
        "response_extensions",
        "sent_at",
        "span",
        "started",
        "status",
        "stream",
        "timed_out",
    )

    def __init__(self, call: Call, now: float) -> None:
        self.call = call
        self.number = call.attempts + 1
        self.started = now
        self.endpoint: EndpointState | None = None
        # A fresh list per attempt: the caller's request is never mutated.
        self.headers: list[tuple[bytes, bytes]] = call.raw_headers.copy()
        self.deadline: float | None = None
        self.bound_by: str | None = None
        self.probe = False
        self.span: Any = None
        self.sent_at = now
        self.ended_at: float | None = None
        self.status: int | None = None
        self.response: httpx.Response | None = None
        self._headers: list[tuple[bytes, bytes]] | None = None
        self.response_extensions: dict[str, Any] | None = None
        self.stream: Any = None
        self.content: bytes | None = None
        self.error: BaseException | None = None
        self.timed_out = False
        self.cancelled = False
        self.decision: str | None = None
        self.delay: float | None = None
        self._ends: tuple[Callable[[Attempt], None], ...] = ()
        self._held = False
        self._waiting = False
        self._finished = False
        self._pool: Any = None
        self._shard: Any = None

    def __repr__(self) -> str:
        endpoint = None if self.endpoint is None else self.endpoint.address
        return f"<Attempt {self.number} of {self.call!r} to {endpoint}>"

    @property
    def finished(self) -> bool:
        """Whether the attempt's accounting was released and its end phases ran."""
        return self._finished

    @property
    def sent(self) -> bool:
        """Whether the attempt went to the bottom (it may have reached the endpoint)."""
        return self._held

    @property
    def response_headers(self) -> list[tuple[bytes, bytes]] | None:
        """The response head's headers, raw; read from ``response`` only when asked for."""
        headers = self._headers
        if headers is None and self.response is not None:
            headers = self._headers = self.response.headers.raw
        return headers

    def header(self, name: str) -> str | None:
        """The first response header called ``name`` (any case), or ``None``."""
        key = name.lower().encode("ascii")
        for item, value in self.response_headers or ():
            if item.lower() == key:
                return value.decode("latin-1")
        return None

    def set_header(self, name: bytes, value: bytes) -> None:
        """Set header ``name`` (lower-case) on this attempt, replacing any copy the caller sent.

        The caller's header names are lower-cased once per call, not once per header set.
        """
        call = self.call
        sent = call._sent_names
        if sent is None:
            sent = call._sent_names = frozenset(
                map(bytes.lower, next(zip(*call.raw_headers, strict=True), ()))
            )
        if name in sent:  # rare: the caller sent it
            self.headers = [item for item in self.headers if item[0].lower() != name]
        self.headers.append((name, value))

    def answered(self) -> None:
        """The attempt's answer (or its error) arrived: it no longer waits on its endpoint."""
        if self._waiting:
            self._waiting = False
            endpoint = self.endpoint
            with endpoint.lock:  # type: ignore[union-attr]
                _unqueue(endpoint)  # type: ignore[arg-type]

    def begin(self, pool: Any) -> Any:
        """The bottom sends now: count the attempt as outstanding on its endpoint and, for
        meshclient's pools, take a connection shard of ``pool``. Returns the shard."""
        endpoint = self.endpoint
        call = self.call
        self.sent_at = call.clock()
        with endpoint.lock:  # type: ignore[union-attr]
            endpoint.outstanding += 1  # type: ignore[union-attr]
            shard = None if pool is None else pool.acquire()
            waiting = endpoint.waiting  # type: ignore[union-attr]
            waiting.append(self)
            if len(waiting) == 1:
                endpoint.waiting_since = self.sent_at  # type: ignore[union-attr]
        self._waiting = True
        self._pool = pool
        self._shard = shard
        self._held = True
        call.attempts += 1
        call.tried += (endpoint,)  # type: ignore[operator]
        return shard

    def finish(self) -> None:
        """Release the attempt's accounting and run its end phases; safe to call again."""
        if self._finished:
            return
        self._finished = True
        if self._held:
            endpoint = self.endpoint
            with endpoint.lock:  # type: ignore[union-attr]
                endpoint.outstanding -= 1  # type: ignore[union-attr]
                pool = self._pool
                if pool is not None:
                    pool.release(self._shard)
                if self._waiting:  # not answered yet, or buffered: off the endpoint's queue
                    self._waiting = False
                    waiting = endpoint.waiting  # type: ignore[union-attr]
                    while waiting and not waiting[0]._waiting:
                        waiting.popleft()
                    endpoint.waiting_since = waiting[0].sent_at if waiting else None  # type: ignore[union-attr]
        for on_attempt_end in self._ends:
            try:
                on_attempt_end(self)
            except Exception:
                logger.exception("meshclient: on_attempt_end of %r raised; ignored", on_attempt_end)
        call = self.call
        if call.outcome is not None:
            call._end()


def _unqueue(endpoint: EndpointState) -> None:
    """Drop answered attempts from the front of the endpoint's queue (its lock held)."""
    waiting = endpoint.waiting
    while waiting and not waiting[0]._waiting:
        waiting.popleft()
    endpoint.waiting_since = waiting[0].sent_at if waiting else None
