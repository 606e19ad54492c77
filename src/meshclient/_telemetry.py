"""Spans, metrics and hook events: the one place where meshclient reports what it did.

Only the OpenTelemetry *API* is used; with no SDK installed every span is a no-op and
every instrument a proxy, so the cost is a few attribute lookups per call. The telemetry
modules of the stack (``_modules.py``) and the health and breaker modules call into
``RouteTelemetry``; nothing here decides anything.

Hot-path rules, because every call pays for this module:

- attribute dicts are built once per (service, method, port[, endpoint, status, error]) and
  cached on the route; OpenTelemetry copies them, so sharing is safe;
- a span that is not recording gets no ``set_attribute`` calls; attributes known at the
  start go in ``start_span`` (``url.full`` only when the call span records), the rest in one
  ``set_attributes`` at its end (for an attempt: the endpoint, which the balancer below the
  attempt telemetry module picks after the span began, with the status);
- an ended span is dropped from the ``Call``/``Attempt`` at once, so it is freed by
  reference counting rather than with the response's reference cycles;
- no context is attached or detached: spans take their parent explicitly, and the trace
  context is injected into the attempt's own header list only when there is one to carry;
- hook event records are built only when the client has hooks.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Iterable, Iterator
from importlib import metadata
from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol

import attrs
import httpx
from opentelemetry import metrics, propagate, trace
from opentelemetry.context import Context, get_current
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.propagators.textmap import Setter
from opentelemetry.trace import (
    INVALID_SPAN,
    ProxyTracer,
    SpanKind,
    Status,
    StatusCode,
    set_span_in_context,
)

from . import _names as n
from ._compat import (
    SUPPRESS_HTTP_INSTRUMENTATION,
    SUPPRESS_INSTRUMENTATION,
    tracer_provider_installed,
)
from ._names import DECISION_BUDGET, DECISION_RETRY
from .hooks import (
    AttemptFinished,
    BreakerTransition,
    BudgetExhausted,
    DiscoveryEntryRejected,
    DiscoveryFailed,
    DiscoveryUpdated,
    EndpointEjected,
    EndpointReadmitted,
    Event,
    Hook,
    RetryScheduled,
)

if TYPE_CHECKING:
    from ._call import Attempt, Call
    from ._endpoint import EndpointState
    from ._route import Route

__all__ = ["MeshTelemetry", "RouteTelemetry", "Telemetry", "redact_url"]

logger = logging.getLogger("meshclient")

try:
    _VERSION: str | None = metadata.version("meshclient")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    _VERSION = None

_ERROR: Final = Status(StatusCode.ERROR)
_KNOWN_METHODS: Final = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
)
#: Query parameters whose values are secrets (semantic conventions' default list).
#: Query parameters whose values never reach ``url.full``, compared case-insensitively: the
#: semantic conventions' list, the usual cloud signatures and credentials, and OAuth tokens.
REDACTED_QUERY_PARAMS: Final = frozenset(
    {
        "AWSAccessKeyId",
        "Signature",
        "sig",
        "X-Goog-Signature",
        "X-Goog-Credential",
        "X-Amz-Signature",
        "X-Amz-Credential",
        "X-Amz-Security-Token",
        "access_token",
        "api_key",
        "apikey",
        "client_secret",
        "code",
        "id_token",
        "key",
        "password",
        "refresh_token",
        "secret",
        "token",
    }
)
_REDACTED: Final = "REDACTED"
_DEFAULT_SECRETS: Final = frozenset(name.lower() for name in REDACTED_QUERY_PARAMS)
#: Attribute dicts cached per route; beyond this (odd methods, many statuses) build afresh.
_CACHE_LIMIT: Final = 512


def _check_hooks(_inst: object, _attr: object, value: tuple[object, ...]) -> None:
    for hook in value:
        if not callable(hook):
            raise TypeError(f"Telemetry.hooks must be callables taking an event, got {hook!r}")


def _to_names(value: Any) -> frozenset[str]:
    if isinstance(value, str) or not all(isinstance(name, str) for name in value):
        raise TypeError(
            f"Telemetry.redact_query must be a collection of parameter names, got {value!r}"
        )
    return frozenset(name.lower() for name in value)


def _check_provider(method: str) -> Any:
    def validate(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
        if value is not None and not callable(getattr(value, method, None)):
            raise TypeError(
                f"Telemetry.{attr.name} must be an OpenTelemetry {attr.name} or None, got {value!r}"
            )

    return validate


@attrs.frozen
class Telemetry:
    """Where a client's spans, metrics and hook events go.

    ``tracer_provider`` / ``meter_provider``: OpenTelemetry providers; ``None`` (the
    default) means the global ones, resolved lazily, so an SDK configured after the client
    was built is still used. ``hooks``: callables fed each event (``meshclient.hooks``).
    ``redact_query``: query parameters whose values ``url.full`` shows as ``REDACTED``
    (any case); extend the default with ``Telemetry.default_redact_query | {"my_key"}``.
    """

    #: The query parameters ``redact_query`` hides unless given others.
    default_redact_query: ClassVar[frozenset[str]] = REDACTED_QUERY_PARAMS

    tracer_provider: trace.TracerProvider | None = attrs.field(
        default=None, validator=_check_provider("get_tracer")
    )
    meter_provider: metrics.MeterProvider | None = attrs.field(
        default=None, validator=_check_provider("get_meter")
    )
    hooks: tuple[Hook, ...] = attrs.field(default=(), converter=tuple, validator=_check_hooks)
    redact_query: frozenset[str] = attrs.field(default=REDACTED_QUERY_PARAMS, converter=_to_names)


class _RouteSource(Protocol):
    def all_routes(self) -> list[Route]: ...


class _Instruments:
    """The instruments of one meter provider, shared by every client that uses it.

    The observable instruments read live route state through one callback per provider,
    over a weak set of transports, so closing or dropping a client unregisters it.
    """

    def __init__(self, meter: metrics.Meter) -> None:
        self.attempt_duration = meter.create_histogram(
            n.METRIC_ATTEMPT_DURATION,
            unit="s",
            description="Duration of HTTP client requests (one per attempt).",
            explicit_bucket_boundaries_advisory=n.DURATION_BUCKETS,
        )
        self.call_duration = meter.create_histogram(
            n.METRIC_CALL_DURATION,
            unit="s",
            description="Duration of logical calls, all attempts and backoff included.",
            explicit_bucket_boundaries_advisory=n.DURATION_BUCKETS,
        )
        self.retries = meter.create_counter(
            n.METRIC_RETRIES, unit="{retry}", description="Retries scheduled."
        )
        self.budget_exhausted = meter.create_counter(
            n.METRIC_BUDGET_EXHAUSTED,
            unit="{retry}",
            description="Retries refused because the retry budget was empty.",
        )
        self.ejections = meter.create_counter(
            n.METRIC_EJECTIONS, unit="{ejection}", description="Endpoints ejected."
        )
        self.discovery_updates = meter.create_counter(
            n.METRIC_DISCOVERY_UPDATES,
            unit="{update}",
            description="Endpoint sets delivered by a service's discovery that changed the set.",
        )
        self.discovery_errors = meter.create_counter(
            n.METRIC_DISCOVERY_ERRORS,
            unit="{error}",
            description="Failed reads of a service's registry (the last good set stays).",
        )
        self.discovery_invalid = meter.create_counter(
            n.METRIC_DISCOVERY_INVALID,
            unit="{entry}",
            description="Registry entries left out because they were unusable.",
        )
        self.breaker_transitions = meter.create_counter(
            n.METRIC_BREAKER_TRANSITIONS,
            unit="{transition}",
            description="Circuit breaker state transitions.",
        )
        self.sources: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()
        meter.create_observable_up_down_counter(
            n.METRIC_IN_FLIGHT,
            callbacks=[self._observe_in_flight],
            unit="{request}",
            description="Attempts sent and not yet finished.",
        )
        meter.create_observable_gauge(
            n.METRIC_ENDPOINTS_AVAILABLE,
            callbacks=[self._observe_available],
            unit="{endpoint}",
            description="Endpoints the balancer can pick.",
        )

    def add_source(self, source: _RouteSource) -> None:
        with self._lock:
            self.sources.add(source)

    def remove_source(self, source: _RouteSource) -> None:
        with self._lock:
            self.sources.discard(source)

    def _routes(self) -> Iterator[Route]:
        with self._lock:
            sources: list[_RouteSource] = list(self.sources)
        for source in sources:
            yield from source.all_routes()

    def _observe_in_flight(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(
                sum(state.outstanding for state in route.endpoints),
                route.telemetry.service_attrs,
            )
            for route in self._routes()
        ]

    def _observe_available(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(len(route.available), route.telemetry.service_attrs)
            for route in self._routes()
            if not route.passthrough
        ]


_INSTRUMENTS: weakref.WeakKeyDictionary[Any, _Instruments] = weakref.WeakKeyDictionary()
_INSTRUMENTS_LOCK: Final = threading.Lock()


def _instruments_for(provider: metrics.MeterProvider | None) -> _Instruments:
    """One set of instruments per provider: a second client must not register them twice."""
    if provider is None:
        provider = metrics.get_meter_provider()
    with _INSTRUMENTS_LOCK:
        try:
            instruments = _INSTRUMENTS.get(provider)
        except TypeError:  # pragma: no cover - a provider that cannot be weakly referenced
            instruments = None
        if instruments is None:
            instruments = _Instruments(provider.get_meter(n.SCOPE, _VERSION))
            with contextlib.suppress(TypeError):  # not weakly referenceable: no sharing
                _INSTRUMENTS[provider] = instruments
        return instruments


class _Hooks:
    """The live hooks of one client; a hook that raises is logged once and dropped."""

    __slots__ = ("_lock", "active")

    def __init__(self, hooks: Iterable[Hook]) -> None:
        self.active: tuple[Hook, ...] = tuple(hooks)
        self._lock = threading.Lock()

    def emit(self, event: Event) -> None:
        for hook in self.active:
            try:
                hook(event)
            except Exception:
                with self._lock:
                    if hook not in self.active:
                        continue
                    self.active = tuple(h for h in self.active if h is not hook)
                logger.exception(
                    "meshclient hook %r raised on %s; it is disabled for this client",
                    hook,
                    type(event).__name__,
                )


class _HeaderSetter(Setter["Attempt"]):
    """Sets a propagation header on an attempt, replacing any copy the caller sent."""

    __slots__ = ("_names",)

    def __init__(self) -> None:
        #: Header names as bytes, per propagator key (a handful: traceparent, baggage, ...).
        self._names: dict[str, bytes] = {}

    def set(self, carrier: Attempt, key: str, value: str) -> None:
        name = self._names.get(key)
        if name is None:
            name = key.lower().encode("ascii")
            if len(self._names) < _CACHE_LIMIT:
                self._names[key] = name
        carrier.set_header(name, value.encode("latin-1"))


_SETTER: Final = _HeaderSetter()


def _error_type(error: BaseException | None, status: int | None) -> str | None:
    """``error.type``: the exception's class, or the status code of a 4xx/5xx answer."""
    if error is not None:
        return type(error).__qualname__
    if status is not None and status >= 400:
        return str(status)
    return None


def redact_url(url: httpx.URL, secrets: frozenset[str] = _DEFAULT_SECRETS) -> str:
    """``url.full`` as the semantic conventions want it: no credentials, no signatures.

    ``secrets`` are lower-case parameter names.
    """
    if url.userinfo:
        url = url.copy_with(username=_REDACTED, password=_REDACTED)
    if url.query:
        params = url.params
        if any(key.lower() in secrets for key in params):
            url = url.copy_with(
                params=[
                    (key, _REDACTED if key.lower() in secrets else value)
                    for key, value in params.multi_items()
                ]
            )
    return str(url)


class MeshTelemetry:
    """A transport's telemetry: tracer, instruments, hooks and the deadline header."""

    def __init__(self, telemetry: Telemetry, deadline_header: str | None) -> None:
        self.tracer = trace.get_tracer(n.SCOPE, _VERSION, tracer_provider=telemetry.tracer_provider)
        self.instruments = _instruments_for(telemetry.meter_provider)
        self.hooks = _Hooks(telemetry.hooks)
        self.redact = telemetry.redact_query
        self.deadline_header = (
            None if deadline_header is None else deadline_header.lower().encode("ascii")
        )

    def route(self, service: str) -> RouteTelemetry:
        return RouteTelemetry(self, service)

    def watch(self, source: _RouteSource) -> None:
        """Report ``source``'s routes in the observable metrics while it is alive."""
        self.instruments.add_source(source)

    def unwatch(self, source: _RouteSource) -> None:
        self.instruments.remove_source(source)


class RouteTelemetry:
    """Telemetry of one route: cached attribute dicts and the methods ``Call`` reports to."""

    __slots__ = (
        "_attempt_attrs",
        "_attempt_end_attrs",
        "_attempt_metric_attrs",
        "_call_attrs",
        "_call_end_attrs",
        "_call_metric_attrs",
        "_counter_attrs",
        "hooks",
        "instruments",
        "lazy",
        "redact",
        "service",
        "service_attrs",
        "tracer",
    )

    def __init__(self, mesh: MeshTelemetry, service: str) -> None:
        self.service = service
        self.tracer = mesh.tracer
        self.instruments = mesh.instruments
        self.hooks = mesh.hooks
        self.redact = mesh.redact
        #: The global (proxy) tracer: until an SDK is installed, its spans are no-ops.
        self.lazy = isinstance(mesh.tracer, ProxyTracer)
        self.service_attrs: dict[str, Any] = {n.SERVICE: service}
        self._call_attrs: dict[tuple[str, int], tuple[str, dict[str, Any]]] = {}
        self._attempt_attrs: dict[tuple[str, int], dict[str, Any]] = {}
        self._attempt_end_attrs: dict[tuple[str, int | None, str | None], dict[str, Any]] = {}
        self._call_end_attrs: dict[tuple[int, str, str | None], dict[str, Any]] = {}
        self._attempt_metric_attrs: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._call_metric_attrs: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._counter_attrs: dict[tuple[str, str, str | None], dict[str, Any]] = {}

    # -- cached attribute dicts -------------------------------------------------------------

    @staticmethod
    def _method_attrs(method: str) -> dict[str, Any]:
        if method in _KNOWN_METHODS:
            return {n.HTTP_REQUEST_METHOD: method}
        return {n.HTTP_REQUEST_METHOD: "_OTHER", n.HTTP_REQUEST_METHOD_ORIGINAL: method}

    def _cache(self, cache: dict[Any, Any], key: Any, value: Any) -> Any:
        if len(cache) < _CACHE_LIMIT:
            cache[key] = value
        return value

    def _call_start(self, method: str, port: int) -> tuple[str, dict[str, Any]]:
        key = (method, port)
        found = self._call_attrs.get(key)
        if found is None:
            # Not an HTTP span: the service is enough (its attempts carry the HTTP details).
            attributes = {n.SERVICE: self.service, **self._method_attrs(method)}
            name = f"{method if method in _KNOWN_METHODS else 'HTTP'} {self.service}"
            found = self._cache(self._call_attrs, key, (name, attributes))
        return found

    def _attempt_start(self, method: str, port: int) -> dict[str, Any]:
        key = (method, port)
        found = self._attempt_attrs.get(key)
        if found is None:
            found = self._cache(
                self._attempt_attrs,
                key,
                {**self._method_attrs(method), n.SERVER_ADDRESS: self.service, n.SERVER_PORT: port},
            )
        return found

    def _attempt_end(
        self, endpoint: EndpointState, status: int | None, error: str | None
    ) -> dict[str, Any]:
        """The endpoint (chosen below this module, after the span began) and the outcome."""
        key = (endpoint.address, status, error)
        found = self._attempt_end_attrs.get(key)
        if found is None:
            attributes: dict[str, Any] = {
                n.NETWORK_PEER_ADDRESS: endpoint.host,
                n.NETWORK_PEER_PORT: endpoint.port,
            }
            if status is not None:
                attributes[n.HTTP_RESPONSE_STATUS_CODE] = status
            if error is not None:
                attributes[n.ERROR_TYPE] = error
            found = self._cache(self._attempt_end_attrs, key, attributes)
        return found

    def _call_end(self, attempts: int, outcome: str, error: str | None) -> dict[str, Any]:
        key = (attempts, outcome, error)
        found = self._call_end_attrs.get(key)
        if found is None:
            attributes: dict[str, Any] = {n.ATTEMPTS: attempts, n.OUTCOME: outcome}
            if error is not None:
                attributes[n.ERROR_TYPE] = error
            found = self._cache(self._call_end_attrs, key, attributes)
        return found

    def _attempt_metric(
        self, method: str, port: int, status: int | None, error: str | None
    ) -> dict[str, Any]:
        key = (method, port, status, error)
        found = self._attempt_metric_attrs.get(key)
        if found is None:
            attributes = {
                **self._method_attrs(method),
                n.SERVER_ADDRESS: self.service,
                n.SERVER_PORT: port,
            }
            if status is not None:
                attributes[n.HTTP_RESPONSE_STATUS_CODE] = status
            if error is not None:
                attributes[n.ERROR_TYPE] = error
            found = self._cache(self._attempt_metric_attrs, key, attributes)
        return found

    def _call_metric(self, method: str, outcome: str, error: str | None) -> dict[str, Any]:
        key = (method, outcome, error)
        found = self._call_metric_attrs.get(key)
        if found is None:
            attributes = {n.SERVICE: self.service, **self._method_attrs(method), n.OUTCOME: outcome}
            if error is not None:
                attributes[n.ERROR_TYPE] = error
            found = self._cache(self._call_metric_attrs, key, attributes)
        return found

    def _counter(self, method: str, kind: str, reason: str | None) -> dict[str, Any]:
        key = (method, kind, reason)
        found = self._counter_attrs.get(key)
        if found is None:
            attributes = {n.SERVICE: self.service, **self._method_attrs(method)}
            if reason is not None:
                attributes[n.ERROR_TYPE] = reason
            found = self._cache(self._counter_attrs, key, attributes)
        return found

    # -- the call's life --------------------------------------------------------------------

    def call_started(self, call: Call) -> None:
        """Start the logical call's INTERNAL span; attempts become its children.

        Its per-call attributes (deadline, attempts, outcome) are set in one
        ``set_attributes`` when it ends (``call_ended``), not one by one.
        """
        ctx = get_current()
        if ctx and (ctx.get(SUPPRESS_INSTRUMENTATION) or ctx.get(SUPPRESS_HTTP_INSTRUMENTATION)):
            call.span = INVALID_SPAN
            call.context = None
            return
        span: trace.Span
        if self.lazy and not tracer_provider_installed():
            span = INVALID_SPAN  # what the proxy tracer would return, four calls later
        else:
            name, attributes = self._call_start(call.request.method, call.port)
            span = self.tracer.start_span(name, ctx, SpanKind.INTERNAL, attributes)
        call.span = span
        # Without a span and without an incoming context there is nothing to add.
        call.context = ctx if span is INVALID_SPAN else set_span_in_context(span, ctx)

    def attempt_started(self, attempt: Attempt) -> None:
        """Start the attempt's CLIENT span and inject its trace context into its headers."""
        call = attempt.call
        parent = call.context
        if parent is None:  # instrumentation suppressed by the caller, or no call span module
            attempt.span = INVALID_SPAN
            return
        if call.span is INVALID_SPAN and self.lazy and not tracer_provider_installed():
            attempt.span = INVALID_SPAN  # no SDK: no span, but an incoming trace goes on
            if parent:
                propagate.get_global_textmap().inject(attempt, parent, _SETTER)
            return
        request = call.request
        method = request.method
        attributes = self._attempt_start(method, call.port)
        # A recording call span predicts a recording attempt span (its child): then
        # ``url.full`` goes in at the start, with the rest, rather than in a later
        # ``set_attribute``; with no SDK it is never computed.
        url = redact_url(request.url, self.redact) if call.span.is_recording() else None
        resends = attempt.number - 1
        if url is not None or resends:
            attributes = {**attributes}
            if url is not None:
                attributes[n.URL_FULL] = url
            if resends:
                attributes[n.HTTP_REQUEST_RESEND_COUNT] = resends
        span = self.tracer.start_span(
            method if method in _KNOWN_METHODS else "HTTP", parent, SpanKind.CLIENT, attributes
        )
        attempt.span = span
        if span is INVALID_SPAN:
            if not parent:
                return  # no span and no incoming context: nothing to propagate
            inject: Context = parent
        else:
            if url is None and span.is_recording():  # a sampler that decided otherwise
                span.set_attribute(n.URL_FULL, redact_url(request.url, self.redact))
            inject = set_span_in_context(span, parent)
        propagate.get_global_textmap().inject(attempt, inject, _SETTER)

    def attempt_ended(self, attempt: Attempt) -> None:
        """End the attempt's span, record its duration, then report what was decided on it."""
        call = attempt.call
        endpoint = attempt.endpoint
        status = attempt.status
        failure = attempt.error
        if failure is None and (status is None or status < 400):
            error = None
        else:
            error = _error_type(failure, status)
        span = attempt.span
        if span is not None and span is not INVALID_SPAN:
            if span.is_recording() and endpoint is not None:
                span.set_attributes(self._attempt_end(endpoint, status, error))
                if error is not None:
                    span.set_status(_ERROR)
            span.end()
            # Ended: drop it, so it is freed now rather than with the call's reference cycles.
            attempt.span = INVALID_SPAN
        if endpoint is None:
            return  # never sent: nothing to time
        method = call.request.method
        cancelled = attempt.cancelled
        duration = (attempt.ended_at or call.clock()) - attempt.sent_at
        if not cancelled:
            self.instruments.attempt_duration.record(
                duration, self._attempt_metric(method, call.port, status, error)
            )
        if self.hooks.active:
            self.hooks.emit(
                AttemptFinished(
                    service=self.service,
                    method=method,
                    endpoint=endpoint.address,
                    attempt=attempt.number,
                    status_code=status,
                    error_type=error,
                    duration=duration,
                    cancelled=cancelled,
                )
            )
        decision = attempt.decision
        if decision is not None:
            reason = error or ""
            if decision == DECISION_RETRY:
                self._retry_scheduled(attempt, reason)
            elif decision == DECISION_BUDGET:
                self._budget_exhausted(attempt, reason)
            else:
                self._deadline_stops_retry(attempt)

    def _retry_scheduled(self, attempt: Attempt, reason: str) -> None:
        call = attempt.call
        endpoint = attempt.endpoint
        assert endpoint is not None
        delay = attempt.delay or 0.0
        span = call.span
        if span is not None and span.is_recording():
            span.add_event(
                n.EVENT_RETRY,
                {
                    n.ATTEMPT: attempt.number,
                    n.RETRY_DELAY: delay,
                    n.ERROR_TYPE: reason,
                    n.NETWORK_PEER_ADDRESS: endpoint.host,
                    n.NETWORK_PEER_PORT: endpoint.port,
                },
            )
        method = call.request.method
        self.instruments.retries.add(1, self._counter(method, "retry", reason))
        if self.hooks.active:
            self.hooks.emit(
                RetryScheduled(
                    service=self.service,
                    method=method,
                    endpoint=endpoint.address,
                    attempt=attempt.number,
                    reason=reason,
                    delay=delay,
                )
            )

    def _budget_exhausted(self, attempt: Attempt, reason: str) -> None:
        call = attempt.call
        span = call.span
        if span is not None and span.is_recording():
            span.add_event(
                n.EVENT_BUDGET_EXHAUSTED, {n.ATTEMPT: attempt.number, n.ERROR_TYPE: reason}
            )
        method = call.request.method
        self.instruments.budget_exhausted.add(1, self._counter(method, "budget", None))
        if self.hooks.active:
            self.hooks.emit(
                BudgetExhausted(
                    service=self.service, method=method, attempt=attempt.number, reason=reason
                )
            )

    def _deadline_stops_retry(self, attempt: Attempt) -> None:
        span = attempt.call.span
        if span is not None and span.is_recording():
            span.add_event(
                n.EVENT_DEADLINE_EXCEEDED,
                {n.ATTEMPT: attempt.number, n.RETRY_DELAY: attempt.delay or 0.0},
            )

    def call_ended(self, call: Call) -> None:
        outcome = call.outcome or n.OUTCOME_CANCELLED
        error = None
        if outcome == n.OUTCOME_ERROR:
            error = _error_type(call.error, None)
        elif outcome == n.OUTCOME_SERVER_ERROR:
            error = str(call.status)
        span = call.span
        if span is not None and span is not INVALID_SPAN:
            if span.is_recording():
                attributes = self._call_end(call.attempts, outcome, error)
                if call.deadline is not None:
                    attributes = {**attributes, n.DEADLINE_REMAINING: call.deadline - call.start}
                    if call.deadline_inherited:
                        attributes[n.DEADLINE_INHERITED] = True
                span.set_attributes(attributes)
                if error is not None:
                    span.set_status(_ERROR)
            span.end()
            # Ended: drop the span and its context (see ``attempt_ended``).
            call.span = INVALID_SPAN
            call.context = None
        self.instruments.call_duration.record(
            call.clock() - call.start, self._call_metric(call.request.method, outcome, error)
        )

    # -- extension points for endpoint health (emitted by the health layer) -------------------

    def endpoint_ejected(self, endpoint: str, reason: str, duration: float) -> None:
        self.instruments.ejections.add(1, {n.SERVICE: self.service, n.REASON: reason})
        if self.hooks.active:
            self.hooks.emit(EndpointEjected(self.service, endpoint, reason, duration))

    def endpoint_readmitted(self, endpoint: str) -> None:
        if self.hooks.active:
            self.hooks.emit(EndpointReadmitted(self.service, endpoint))

    def breaker_transition(self, from_state: str, to_state: str, reason: str = "") -> None:
        self.instruments.breaker_transitions.add(
            1, {n.SERVICE: self.service, n.BREAKER_FROM: from_state, n.BREAKER_TO: to_state}
        )
        if self.hooks.active:
            self.hooks.emit(BreakerTransition(self.service, from_state, to_state, reason))

    # -- discovery (reported by the route when its service's registry speaks) -----------------

    def discovery_updated(self, source: str, endpoints: int) -> None:
        self.instruments.discovery_updates.add(1, self._discovery_attrs(source))
        if self.hooks.active:
            self.hooks.emit(DiscoveryUpdated(self.service, source, endpoints))

    def discovery_failed(self, source: str, error: BaseException, endpoints: int) -> None:
        self.instruments.discovery_errors.add(1, self._discovery_attrs(source))
        if self.hooks.active:
            self.hooks.emit(
                DiscoveryFailed(self.service, source, f"{type(error).__name__}: {error}", endpoints)
            )

    def discovery_invalid(self, source: str, entry: object, reason: str) -> None:
        self.instruments.discovery_invalid.add(1, self._discovery_attrs(source))
        if self.hooks.active:
            self.hooks.emit(DiscoveryEntryRejected(self.service, source, repr(entry), reason))

    def _discovery_attrs(self, source: str) -> dict[str, Any]:
        return {n.SERVICE: self.service, n.DISCOVERY_SOURCE: source}
