"""Deadlines and traces across services: a real ASGI service (uvicorn + Starlette) calls a real
WSGI service (wsgiref) which calls a backend, each hop with meshclient behind the middleware."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import meshclient
from meshclient.middleware import DeadlineMiddleware, WSGIDeadlineMiddleware
from meshclient.testing import Backend

from helpers import serve_asgi, serve_wsgi

HEADER = "x-meshclient-timeout-ms"
#: Work each service does before calling the next one, so the budget visibly shrinks.
WORK = 0.05


@pytest.fixture
def tracing() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def telemetry(provider: TracerProvider) -> meshclient.Telemetry:
    return meshclient.Telemetry(tracer_provider=provider, meter_provider=NoOpMeterProvider())


class Hop:
    """A running service: its address and the deadline headers it received."""

    def __init__(self, address: str, received: list[str], backend: Backend | None = None):
        self.address = address
        self.received = received
        #: The backend it calls, if it calls one directly.
        self.backend = backend


@pytest.fixture
def wsgi_service(
    backend_factory: Callable[..., Backend], tracing: tuple[TracerProvider, Any]
) -> Iterator[Hop]:
    """Service B (WSGI): calls backend C through meshclient."""
    backend = backend_factory("c")
    received: list[str] = []
    client = meshclient.Client(
        services={"svc-c": [backend.address]}, telemetry=telemetry(tracing[0])
    )

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        received.append(environ.get("HTTP_X_MESHCLIENT_TIMEOUT_MS", ""))
        time.sleep(WORK)
        answer = client.get("http://svc-c/c")
        start_response("200 OK", [("content-type", "text/plain")])
        return [answer.headers["x-backend"].encode()]

    with client, serve_wsgi(WSGIDeadlineMiddleware(app)) as address:
        yield Hop(address, received, backend)


@pytest.fixture
def asgi_service(wsgi_service: Hop, tracing: tuple[TracerProvider, Any]) -> Iterator[Hop]:
    """Service A (ASGI under uvicorn): calls service B through meshclient."""
    b_address = wsgi_service.address
    received: list[str] = []

    async def endpoint(request: Request) -> PlainTextResponse:
        received.append(request.headers.get(HEADER, ""))
        await anyio.sleep(WORK)
        async with meshclient.AsyncClient(
            services={"svc-b": [b_address]}, telemetry=telemetry(tracing[0])
        ) as client:
            answer = await client.get("http://svc-b/b")
        return PlainTextResponse(answer.text)

    app = DeadlineMiddleware(Starlette(routes=[Route("/a", endpoint)]))
    with serve_asgi(app) as address:
        yield Hop(address, received)


def test_two_hops_are_one_trace_and_the_deadline_shrinks(
    asgi_service: Hop, wsgi_service: Hop, tracing: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = tracing
    with meshclient.Client(
        services={"svc-a": [asgi_service.address]},
        policy=meshclient.Policy(timeout=3.0),
        telemetry=telemetry(provider),
    ) as client:
        response = client.get("http://svc-a/a")
    assert response.status_code == 200
    assert response.text == "c"  # the answer came from backend C

    # The budget shrinks hop by hop by the time spent upstream.
    a_budget, b_budget = int(asgi_service.received[0]), int(wsgi_service.received[0])
    assert wsgi_service.backend is not None
    (c_request,) = wsgi_service.backend.requests
    c_budget = int(c_request.headers[HEADER])
    assert 3000 >= a_budget > b_budget > c_budget > 0

    spans = exporter.get_finished_spans()
    assert len(spans) == 6
    assert len({s.context.trace_id for s in spans}) == 1
    calls = {s.name: s for s in spans if s.kind is SpanKind.INTERNAL}
    attempts = {_server(s): s for s in spans if s.kind is SpanKind.CLIENT}
    assert set(calls) == {"GET svc-a", "GET svc-b", "GET svc-c"}
    assert calls["GET svc-a"].parent is None
    assert _parent(calls["GET svc-b"]) == attempts["svc-a"].context.span_id
    assert _parent(calls["GET svc-c"]) == attempts["svc-b"].context.span_id
    for name in ("svc-a", "svc-b", "svc-c"):
        assert _parent(attempts[name]) == calls[f"GET {name}"].context.span_id
    # The backend received the trace context of the last attempt.
    assert f"{attempts['svc-c'].context.span_id:016x}" in c_request.headers["traceparent"]


def _server(span: ReadableSpan) -> str:
    assert span.attributes is not None
    return str(span.attributes["server.address"])


def _parent(span: ReadableSpan) -> int:
    assert span.parent is not None
    return span.parent.span_id


# -- inherited deadlines, both clients ---------------------------------------------------------


def test_an_expired_inherited_deadline_fails_without_sending(mesh, backend_factory) -> None:
    backend = backend_factory("a")
    client = mesh(services={"users": [backend.address]})
    with pytest.raises(meshclient.DeadlineExceeded, match="inherited") as info:
        client.get_within(0, "http://users/")
    assert info.value.attempts == 0
    assert backend.count() == 0
    assert client.outstanding() == 0


def test_the_inherited_deadline_caps_the_calls_own(mesh, backend_factory) -> None:
    slow = backend_factory("slow")
    slow.behave(delay=5.0)
    client = mesh(services={"users": [slow.address]}, policy=meshclient.Policy(timeout=10.0))
    with pytest.raises(meshclient.DeadlineExceeded, match="inherited") as info:
        client.get_within(0.3, "http://users/")
    # The inherited 0.3 s, not the call's own 10 s, ended the call: the error says so, and
    # the backend was told that budget.
    assert info.value.attempts == 1
    assert int(slow.requests[0].headers[HEADER]) <= 300


def test_the_calls_own_deadline_wins_when_tighter(mesh, backend_factory) -> None:
    backend = backend_factory("a")
    client = mesh(services={"users": [backend.address]}, policy=meshclient.Policy(timeout=0.5))
    client.get_within(60, "http://users/")
    assert int(backend.requests[0].headers[HEADER]) <= 500
