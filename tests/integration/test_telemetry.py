"""Spans, metrics and trace-context injection, seen by an SDK on a private provider and by
the real backend that received the attempts. Globals are never set."""

from __future__ import annotations

import gc
import time
import weakref
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracerProvider, SpanKind, StatusCode

import meshclient
from meshclient.testing import Behaviour

from helpers import RETRY3, assert_budget_left

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)


class Otel:
    """A private SDK: spans in memory, metrics read on demand."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def telemetry(self, **kwargs: Any) -> meshclient.Telemetry:
        return meshclient.Telemetry(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider, **kwargs
        )

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def metric(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]

    def close(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


@pytest.fixture
def otel() -> Iterator[Otel]:
    sdk = Otel()
    yield sdk
    sdk.close()


def tree(spans: list[ReadableSpan]) -> tuple[ReadableSpan, list[ReadableSpan]]:
    """The one INTERNAL call span and its CLIENT attempt spans, oldest first."""
    (call,) = [s for s in spans if s.kind is SpanKind.INTERNAL]
    attempts = sorted(
        (s for s in spans if s.kind is SpanKind.CLIENT), key=lambda s: s.start_time or 0
    )
    return call, attempts


def test_a_retried_call_is_one_internal_span_with_a_client_span_per_attempt(
    mesh, backend_factory, otel: Otel
) -> None:
    backend = backend_factory("a")
    backend.script(Behaviour(status=503))
    client = mesh(services={"users": [backend.address]}, policy=RETRY3, telemetry=otel.telemetry())
    assert client.get("http://users/v1/x?q=1").status_code == 200

    spans = otel.spans()
    assert len(spans) == 3
    call, attempts = tree(spans)
    assert call.name == "GET users"
    assert call.parent is None
    assert call.attributes == {
        "meshclient.service": "users",
        "http.request.method": "GET",
        "meshclient.attempts": 2,
        "meshclient.outcome": "success",
    }
    assert [e.name for e in call.events] == ["meshclient.retry"]
    retry = call.events[0].attributes
    assert retry is not None
    assert retry["meshclient.attempt"] == 1
    assert retry["error.type"] == "503"
    assert 0 <= retry["meshclient.retry.delay"] <= 0.002

    first, second = attempts
    for span in attempts:
        assert span.name == "GET"
        assert span.parent is not None
        assert span.parent.span_id == call.context.span_id
        assert span.context.trace_id == call.context.trace_id
    base = {
        "http.request.method": "GET",
        "server.address": "users",
        "server.port": 80,
        "network.peer.address": "127.0.0.1",
        "network.peer.port": backend.port,
        "url.full": "http://users/v1/x?q=1",
    }
    assert first.attributes == {**base, "http.response.status_code": 503, "error.type": "503"}
    assert first.status.status_code is StatusCode.ERROR
    assert second.attributes == {
        **base,
        "http.request.resend_count": 1,
        "http.response.status_code": 200,
    }
    assert second.status.status_code is StatusCode.UNSET


def test_each_attempt_carries_its_own_traceparent(mesh, backend_factory, otel: Otel) -> None:
    backend = backend_factory("a")
    backend.script(Behaviour(status=503), Behaviour(status=503))
    client = mesh(services={"users": [backend.address]}, policy=RETRY3, telemetry=otel.telemetry())
    client.get("http://users/")
    _, attempts = tree(otel.spans())
    received = [r.headers["traceparent"] for r in backend.requests]
    expected = [
        f"00-{s.context.trace_id:032x}-{s.context.span_id:016x}-{int(s.context.trace_flags):02x}"
        for s in attempts
    ]
    assert len(set(received)) == 3
    assert received == expected


def test_the_callers_request_is_not_mutated(mesh, backend_factory, otel: Otel) -> None:
    backend = backend_factory("a")
    client = mesh(
        services={"users": [backend.address]},
        policy=meshclient.Policy(timeout=5.0),
        telemetry=otel.telemetry(),
    )
    request = client.client.build_request("GET", "http://users/", headers={"x-mine": "1"})
    before = list(request.headers.raw)
    client.send(request)
    assert request.headers.raw == before
    assert "traceparent" in backend.requests[0].headers


def test_credentials_and_signatures_are_redacted_from_url_full(
    mesh, backend_factory, otel: Otel
) -> None:
    backend = backend_factory("a")
    client = mesh(services={"users": [backend.address]}, telemetry=otel.telemetry())
    client.get("http://alice:secret@users/x?sig=abc&keep=1")
    _, (attempt,) = tree(otel.spans())
    assert attempt.attributes is not None
    assert attempt.attributes["url.full"] == (
        "http://REDACTED:REDACTED@users/x?sig=REDACTED&keep=1"
    )


def test_a_failed_attempt_records_the_error_type(
    mesh, backend_factory, closed_port: int, otel: Otel
) -> None:
    client = mesh(
        services={"users": [f"127.0.0.1:{closed_port}"]},
        policy=meshclient.Policy(retry=None),
        telemetry=otel.telemetry(),
    )
    with pytest.raises(httpx.ConnectError):
        client.get("http://users/")
    call, (attempt,) = tree(otel.spans())
    assert attempt.attributes is not None
    assert attempt.attributes["error.type"] == "ConnectError"
    assert "http.response.status_code" not in attempt.attributes
    assert call.attributes is not None
    assert call.attributes["meshclient.outcome"] == "error"
    assert call.attributes["error.type"] == "ConnectError"
    assert call.status.status_code is StatusCode.ERROR
    (point,) = otel.metric("meshclient.call.duration")
    assert point.attributes["meshclient.outcome"] == "error"


def test_a_call_that_cannot_start_ends_its_span(mesh, backend_factory, otel: Otel) -> None:
    backend = backend_factory("a")
    client = mesh(services={"users": [backend.address]}, telemetry=otel.telemetry())
    with pytest.raises(meshclient.DeadlineExceeded):
        client.get_within(0, "http://users/")
    (call,) = otel.spans()
    assert call.attributes is not None
    assert call.attributes["error.type"] == "DeadlineExceeded"
    assert call.attributes["meshclient.attempts"] == 0
    assert backend.count() == 0


def test_attempt_and_call_metrics(mesh, backend_factory, otel: Otel) -> None:
    backend = backend_factory("a")
    backend.script(Behaviour(status=503))
    client = mesh(services={"users": [backend.address]}, policy=RETRY3, telemetry=otel.telemetry())
    client.get("http://users/")

    attempts = otel.metric("http.client.request.duration")
    by_status = {p.attributes.get("http.response.status_code"): p for p in attempts}
    assert set(by_status) == {503, 200}
    assert dict(by_status[503].attributes) == {
        "http.request.method": "GET",
        "server.address": "users",
        "server.port": 80,
        "http.response.status_code": 503,
        "error.type": "503",
    }
    assert tuple(by_status[200].explicit_bounds) == BUCKETS
    assert all(p.count == 1 for p in attempts)

    (call,) = otel.metric("meshclient.call.duration")
    assert dict(call.attributes) == {
        "meshclient.service": "users",
        "http.request.method": "GET",
        "meshclient.outcome": "success",
    }
    assert call.count == 1
    (retries,) = otel.metric("meshclient.retries")
    assert retries.value == 1
    assert dict(retries.attributes)["error.type"] == "503"
    (available,) = otel.metric("meshclient.endpoints.available")
    assert available.value == 1
    (in_flight,) = otel.metric("meshclient.requests.in_flight")
    assert in_flight.value == 0


def test_budget_refusal_is_an_event_and_a_metric(mesh, backend_factory, otel: Otel) -> None:
    backend = backend_factory("a")
    backend.behave(status=503)
    empty = meshclient.RetryBudget(ratio=0.0, min_per_second=0.0)
    client = mesh(
        services={"users": meshclient.Service([backend.address], retry_budget=empty)},
        policy=RETRY3,
        telemetry=otel.telemetry(),
    )
    assert client.get("http://users/").status_code == 503
    call, _ = tree(otel.spans())
    assert [e.name for e in call.events] == ["meshclient.retry_budget.exhausted"]
    assert call.attributes is not None
    assert call.attributes["meshclient.outcome"] == "server_error"
    (refused,) = otel.metric("meshclient.retry_budget.exhausted")
    assert refused.value == 1


def test_in_flight_counts_an_open_response(backend_factory, otel: Otel) -> None:
    backend = backend_factory("a")
    with (
        meshclient.Client(services={"users": [backend.address]}, telemetry=otel.telemetry()) as c,
        c.stream("GET", "http://users/"),
    ):
        (point,) = otel.metric("meshclient.requests.in_flight")
        assert point.value == 1
        assert otel.spans() == []  # spans end when the response is closed
    assert len(otel.spans()) == 2


def test_deadline_header_goes_to_mesh_services_only(mesh, backend_factory, otel: Otel) -> None:
    backend = backend_factory("a")
    client = mesh(
        services={"users": [backend.address]},
        policy=meshclient.Policy(timeout=2.0),
        telemetry=otel.telemetry(),
    )
    client.get("http://users/")
    client.get(f"{backend.url}/direct")
    mesh_request, direct_request = backend.requests
    assert 0 < int(mesh_request.headers["x-meshclient-timeout-ms"]) <= 2000
    assert "x-meshclient-timeout-ms" not in direct_request.headers
    # Pass-through hosts are still traced.
    assert "traceparent" in direct_request.headers


def test_deadline_header_name_is_configurable(mesh, backend_factory) -> None:
    backend = backend_factory("a")
    client = mesh(
        services={"users": [backend.address]},
        policy=meshclient.Policy(timeout=meshclient.Timeout(attempt=0.5)),
        deadline_header="x-budget-ms",
    )
    client.get("http://users/", headers={"X-Budget-Ms": "999999"})
    headers = backend.requests[0].headers
    assert 0 < int(headers["x-budget-ms"]) <= 500
    assert "x-meshclient-timeout-ms" not in headers


def test_nothing_is_injected_without_a_tracer_or_a_trace(mesh, backend_factory) -> None:
    backend = backend_factory("a")
    client = mesh(
        services={"users": [backend.address]},
        telemetry=meshclient.Telemetry(
            tracer_provider=NoOpTracerProvider(), meter_provider=NoOpMeterProvider()
        ),
        deadline_header=None,
    )
    client.get("http://users/")
    assert "traceparent" not in backend.requests[0].headers


def test_httpx_instrumentation_does_not_duplicate_spans(mesh, backend_factory, otel: Otel) -> None:
    """opentelemetry-instrumentation-httpx patches httpx's own transports; the mesh's
    attempts go through its endpoint pools, so they are traced once, by meshclient."""
    instrumentor = HTTPXClientInstrumentor()
    instrumentor.instrument(
        tracer_provider=otel.tracer_provider, meter_provider=NoOpMeterProvider()
    )
    try:
        backend = backend_factory("a")
        backend.script(Behaviour(status=503))
        client = mesh(
            services={"users": [backend.address]}, policy=RETRY3, telemetry=otel.telemetry()
        )
        client.get("http://users/")
        assert len(otel.spans()) == 3
        assert all(s.instrumentation_scope.name == "meshclient" for s in otel.spans())
        # The instrumentation is live: a plain httpx client is traced by it.
        with httpx.Client() as plain:
            plain.get(backend.url)
        assert len(otel.spans()) == 4
    finally:
        instrumentor.uninstrument()


@pytest.mark.anyio
async def test_cancellation_is_not_an_error(backend_factory, otel: Otel) -> None:
    hanging = backend_factory("hanging")
    hanging.behave(hang=True)
    async with meshclient.AsyncClient(
        services={"users": [hanging.address]}, telemetry=otel.telemetry()
    ) as client:
        with anyio.move_on_after(0.2) as scope:
            await client.get("http://users/")
        assert scope.cancelled_caught
    call, (attempt,) = tree(otel.spans())
    assert call.attributes is not None
    assert call.attributes["meshclient.outcome"] == "cancelled"
    assert "error.type" not in call.attributes
    assert call.status.status_code is StatusCode.UNSET
    assert attempt.attributes is not None
    assert "error.type" not in attempt.attributes
    assert attempt.status.status_code is StatusCode.UNSET


class _StartAttributes(SpanProcessor):
    """Records each span's attributes as they were when it started, and a weak reference."""

    def __init__(self) -> None:
        self.at_start: dict[str, dict[str, Any]] = {}
        self.alive: list[weakref.ref[Any]] = []

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.at_start[span.name] = dict(span.attributes or {})
        self.alive.append(weakref.ref(span))


def test_attributes_known_at_the_start_are_given_at_the_start(backend_factory, otel: Otel) -> None:
    """``url.full`` is visible to samplers and processors at the attempt's start; the call's
    deadline and outcome arrive together when it ends."""
    backend = backend_factory("a")
    seen = _StartAttributes()
    otel.tracer_provider.add_span_processor(seen)
    with meshclient.Client(
        services={"users": [backend.address]},
        policy=meshclient.Policy(timeout=2.0),
        telemetry=otel.telemetry(),
    ) as client:
        started = time.monotonic()
        client.get("http://users/v1?x=1")
        spent = time.monotonic() - started
    assert seen.at_start["GET"]["url.full"] == "http://users/v1?x=1"
    assert seen.at_start["GET users"] == {
        "meshclient.service": "users",
        "http.request.method": "GET",
    }
    call, (attempt,) = tree(otel.spans())
    assert call.attributes is not None
    assert_budget_left(call.attributes["meshclient.deadline.remaining"], 2.0, spent)
    assert "meshclient.deadline.inherited" not in call.attributes
    assert call.attributes["meshclient.outcome"] == "success"
    assert attempt.attributes is not None
    assert attempt.attributes["http.response.status_code"] == 200


def test_ended_spans_are_not_kept_alive_by_the_call(backend_factory, otel: Otel) -> None:
    """Once ended, a call's spans are freed by reference counting, not left to the cycle
    collector with the response (which still references the call)."""
    backend = backend_factory("a")
    seen = _StartAttributes()
    otel.tracer_provider.add_span_processor(seen)
    with meshclient.Client(
        services={"users": [backend.address]}, telemetry=otel.telemetry()
    ) as client:
        gc.disable()
        try:
            response = client.get("http://users/")
            assert response.status_code == 200
            assert len(seen.alive) == 2
            assert [ref() for ref in seen.alive] == [None, None]
        finally:
            gc.enable()
    assert len(otel.spans()) == 2
