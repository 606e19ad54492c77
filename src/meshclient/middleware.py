"""Server middleware: calls made while handling a request inherit its deadline and trace.

``DeadlineMiddleware`` wraps an ASGI application (Starlette, FastAPI, ...) and
``WSGIDeadlineMiddleware`` a WSGI one (Flask, Django, ...). For each request they

1. read the caller's time budget from ``x-meshclient-timeout-ms`` (what meshclient sends;
   the name is configurable) and, unless turned off, ``grpc-timeout`` and
   ``x-envoy-expected-rq-timeout-ms``, taking the shortest; every meshclient call made
   while handling the request then finishes within min(its own ``Timeout.total``, the
   time left), and one started after the deadline fails at once with
   ``DeadlineExceeded`` without sending anything;
2. extract the trace context (``traceparent``, ``tracestate``, ``baggage``) with the
   global propagator and make it current, so meshclient's spans continue the caller's
   trace. If a span is already current (an OpenTelemetry server instrumentation runs
   outside this middleware), that span is kept: it is already the caller's child.

Only the standard library and the OpenTelemetry API are used. For WSGI, the deadline is
in force while the application callable runs, not while a lazy response body is iterated.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Final, Generic, TypeAlias, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter

from ._context import _DEADLINE, timeout_from_headers
from ._names import DEADLINE_HEADER
from ._validate import check_number

__all__ = ["DeadlineMiddleware", "WSGIDeadlineMiddleware"]

Scope: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send: TypeAlias = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]
WSGIApp: TypeAlias = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
_App = TypeVar("_App", ASGIApp, WSGIApp)

_ASGI_TYPES: Final = frozenset({"http", "websocket"})


class _DictGetter(Getter[dict[str, str]]):
    def get(self, carrier: dict[str, str], key: str) -> list[str] | None:
        value = carrier.get(key)
        return None if value is None else [value]

    def keys(self, carrier: dict[str, str]) -> list[str]:
        return list(carrier)


class _EnvironGetter(Getter[dict[str, Any]]):
    def get(self, carrier: dict[str, Any], key: str) -> list[str] | None:
        value = carrier.get(_environ_key(key))
        return None if value is None else [value]

    def keys(self, carrier: dict[str, Any]) -> list[str]:
        return [key[5:].lower().replace("_", "-") for key in carrier if key.startswith("HTTP_")]


_DICT_GETTER: Final = _DictGetter()
_ENVIRON_GETTER: Final = _EnvironGetter()


def _seconds(value: float) -> bool:
    return math.isfinite(value) and value >= 0


def _environ_key(header: str) -> str:
    return "HTTP_" + header.upper().replace("-", "_")


class _Settings:
    """What both middlewares read, validated once."""

    def __init__(
        self,
        owner: str,
        header: str | None,
        grpc_timeout: bool,
        envoy_timeout: bool,
        trace_context: bool,
        ignore_deadlines: bool,
        floor: float | None,
        cap: float | None,
    ) -> None:
        if header is not None and (not isinstance(header, str) or not header):
            raise TypeError(f"{owner}.header must be a header name or None, got {header!r}")
        for field, value in (("floor", floor), ("cap", cap)):
            if value is not None:
                check_number(
                    owner, field, value, "a finite number of seconds >= 0 or None", _seconds
                )
        if floor is not None and cap is not None and floor > cap:
            raise ValueError(f"{owner}.floor must not exceed cap ({cap!r}), got {floor!r}")
        self.header = None if header is None else header.lower()
        self.grpc_timeout = bool(grpc_timeout)
        self.envoy_timeout = bool(envoy_timeout)
        self.trace_context = bool(trace_context)
        self.ignore_deadlines = bool(ignore_deadlines)
        self.floor = floor
        self.cap = cap

    def budget(self, get: Callable[[str], str | None]) -> float | None:
        """Seconds the caller gives this request: what its headers say, floored and capped."""
        if self.ignore_deadlines:
            return None
        budget = timeout_from_headers(
            get,
            header=self.header,
            grpc_timeout=self.grpc_timeout,
            envoy_timeout=self.envoy_timeout,
        )
        if budget is None:
            return None
        if self.floor is not None and budget < self.floor:
            budget = self.floor
        if self.cap is not None and budget > self.cap:
            budget = self.cap
        return budget

    def enter(self, arrived: float, get: Callable[[str], str | None], extract: Any) -> Any:
        """Set the deadline and trace context; returns what ``exit`` needs to undo them."""
        budget = self.budget(get)
        deadline_token = None
        if budget is not None:
            deadline = arrived + budget
            current = _DEADLINE.get()
            if current is None or deadline < current:
                deadline_token = _DEADLINE.set(deadline)
        context_token = None
        if self.trace_context and not trace.get_current_span().get_span_context().is_valid:
            extracted = extract()
            if extracted:
                context_token = otel_context.attach(extracted)
        return deadline_token, context_token

    @staticmethod
    def exit(tokens: Any) -> None:
        deadline_token, context_token = tokens
        if context_token is not None:
            otel_context.detach(context_token)
        if deadline_token is not None:
            _DEADLINE.reset(deadline_token)


class _Middleware(Generic[_App]):
    """The options both middlewares take (documented on ``DeadlineMiddleware``)."""

    def __init__(
        self,
        app: _App,
        *,
        header: str | None = DEADLINE_HEADER,
        grpc_timeout: bool = True,
        envoy_timeout: bool = True,
        trace_context: bool = True,
        ignore_deadlines: bool = False,
        floor: float | None = None,
        cap: float | None = None,
    ) -> None:
        self.app: _App = app
        self._settings = _Settings(
            type(self).__name__,
            header,
            grpc_timeout,
            envoy_timeout,
            trace_context,
            ignore_deadlines,
            floor,
            cap,
        )


class DeadlineMiddleware(_Middleware[ASGIApp]):
    """ASGI middleware: the request's deadline and trace context for the calls it makes.

    ``header``: the relative deadline header meshclient sends (``None``: not read).
    ``grpc_timeout`` / ``envoy_timeout``: also honour ``grpc-timeout`` and
    ``x-envoy-expected-rq-timeout-ms``. ``trace_context``: make the caller's trace
    context current when no span is.

    At the edge, where callers are not yours: ``ignore_deadlines=True`` honours no inbound
    deadline at all; ``floor`` (seconds) raises a budget shorter than that to it, so a hostile
    or broken ``0`` cannot make every call fail at once; ``cap`` (seconds) shortens a budget
    longer than that (a request with no deadline header stays without one).
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in _ASGI_TYPES:
            await self.app(scope, receive, send)
            return
        arrived = time.monotonic()
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope.get("headers", ()):
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        tokens = self._settings.enter(
            arrived, headers.get, lambda: propagate.extract(headers, getter=_DICT_GETTER)
        )
        try:
            await self.app(scope, receive, send)
        finally:
            self._settings.exit(tokens)


class WSGIDeadlineMiddleware(_Middleware[WSGIApp]):
    """WSGI middleware: the request's deadline and trace context for the calls it makes.

    Same options as ``DeadlineMiddleware``.
    """

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        arrived = time.monotonic()
        tokens = self._settings.enter(
            arrived,
            lambda name: environ.get(_environ_key(name)),
            lambda: propagate.extract(environ, getter=_ENVIRON_GETTER),
        )
        try:
            return self.app(environ, start_response)
        finally:
            self._settings.exit(tokens)
