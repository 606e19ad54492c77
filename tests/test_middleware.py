"""The middlewares read the caller's budget and trace context and scope them to the request."""

from __future__ import annotations

import time
from typing import Any
from wsgiref.util import setup_testing_defaults

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

import meshclient
from meshclient.middleware import DeadlineMiddleware, WSGIDeadlineMiddleware

from helpers import assert_budget_left

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Seen:
    """What the wrapped application saw while handling the request."""

    time_left: float | None = None
    trace_id: int = 0
    span_id: int = 0
    #: Seconds the middleware took around the application: the deadline was set within them.
    spent: float = 0.0

    def capture(self) -> None:
        self.time_left = meshclient.time_left()
        context = trace.get_current_span().get_span_context()
        self.trace_id, self.span_id = context.trace_id, context.span_id


def asgi(headers: dict[str, str], **options: Any) -> Seen:
    seen = Seen()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.capture()

    middleware = DeadlineMiddleware(app, **options)
    scope = {
        "type": "http",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }

    async def main() -> None:
        started = time.monotonic()
        await middleware(scope, None, None)  # type: ignore[arg-type]
        seen.spent = time.monotonic() - started

    anyio.run(main)
    return seen


def wsgi(headers: dict[str, str], **options: Any) -> Seen:
    seen = Seen()

    def app(environ: Any, start_response: Any) -> list[bytes]:
        seen.capture()
        return [b""]

    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    for name, value in headers.items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    started = time.monotonic()
    WSGIDeadlineMiddleware(app, **options)(environ, lambda *a: None)
    seen.spent = time.monotonic() - started
    return seen


@pytest.fixture(params=[asgi, wsgi], ids=["asgi", "wsgi"])
def serve(request: pytest.FixtureRequest) -> Any:
    return request.param


def test_deadline_header_sets_the_time_left(serve: Any) -> None:
    seen = serve({"x-meshclient-timeout-ms": "1500"})
    assert_budget_left(seen.time_left, 1.5, seen.spent)
    assert meshclient.time_left() is None  # scoped to the request


def test_the_shortest_announced_budget_wins(serve: Any) -> None:
    seen = serve(
        {
            "x-meshclient-timeout-ms": "1500",
            "grpc-timeout": "200m",
            "x-envoy-expected-rq-timeout-ms": "900",
        }
    )
    assert_budget_left(seen.time_left, 0.2, seen.spent)


def test_other_headers_can_be_ignored(serve: Any) -> None:
    seen = serve(
        {"grpc-timeout": "1m", "x-envoy-expected-rq-timeout-ms": "1"},
        grpc_timeout=False,
        envoy_timeout=False,
    )
    assert seen.time_left is None


def test_a_custom_header_name(serve: Any) -> None:
    seen = serve({"x-budget": "500", "x-meshclient-timeout-ms": "1"}, header="X-Budget")
    assert_budget_left(seen.time_left, 0.5, seen.spent)


def test_malformed_budgets_are_ignored(serve: Any) -> None:
    seen = serve({"x-meshclient-timeout-ms": "soon", "grpc-timeout": "1000000000S"})
    assert seen.time_left is None


def test_no_header_no_deadline(serve: Any) -> None:
    assert serve({}).time_left is None


def test_trace_context_becomes_current(serve: Any) -> None:
    seen = serve({"traceparent": TRACEPARENT})
    assert seen.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert seen.span_id == 0xB7AD6B7169203331


def test_a_current_server_span_is_kept(serve: Any) -> None:
    """An OpenTelemetry server instrumentation outside ours already continued the trace."""
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("server") as span:
        seen = serve({"traceparent": TRACEPARENT})
    assert seen.span_id == span.get_span_context().span_id


def test_trace_context_can_be_left_alone(serve: Any) -> None:
    assert serve({"traceparent": TRACEPARENT}, trace_context=False).trace_id == 0


def test_an_outer_deadline_is_never_extended(serve: Any) -> None:
    with meshclient.deadline_scope(0.1):
        seen = serve({"x-meshclient-timeout-ms": "5000"})
    assert seen.time_left is not None
    assert seen.time_left <= 0.1


def test_lifespan_passes_through() -> None:
    called: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        called.append(scope["type"])

    async def main() -> None:
        await DeadlineMiddleware(app)({"type": "lifespan"}, None, None)  # type: ignore[arg-type]

    anyio.run(main)
    assert called == ["lifespan"]


def test_bad_header_option() -> None:
    with pytest.raises(TypeError, match="header"):
        DeadlineMiddleware(lambda *a: None, header="")  # type: ignore[arg-type,return-value]


def test_a_floor_raises_a_budget_too_short_to_use(serve: Any) -> None:
    """At the edge, a hostile or broken ``0`` must not fail every call the request makes."""
    seen = serve({"x-meshclient-timeout-ms": "0"}, floor=0.5)
    assert_budget_left(seen.time_left, 0.5, seen.spent)


def test_a_cap_shortens_a_budget_but_invents_none(serve: Any) -> None:
    seen = serve({"grpc-timeout": "100S"}, cap=2.0)
    assert_budget_left(seen.time_left, 2.0, seen.spent)
    assert serve({}, cap=2.0).time_left is None


def test_inbound_deadlines_can_be_ignored_altogether(serve: Any) -> None:
    headers = {"x-meshclient-timeout-ms": "5", "grpc-timeout": "5m"}
    assert serve(headers, ignore_deadlines=True).time_left is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"floor": -1}, r"DeadlineMiddleware.floor must be a finite number .* -1"),
        ({"cap": float("inf")}, r"DeadlineMiddleware.cap must be .* inf"),
        ({"floor": 2, "cap": 1}, r"DeadlineMiddleware.floor must not exceed cap \(1\), got 2"),
    ],
)
def test_bad_floor_or_cap_fails_at_construction(options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DeadlineMiddleware(lambda *a: None, **options)  # type: ignore[arg-type,return-value]
