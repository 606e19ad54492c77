"""The real wire format: meshclient's spans exported with OTLP/HTTP to a local receiver that
decodes the protobuf, as a collector would."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

import meshclient
from meshclient.testing import Behaviour

from helpers import shut_down


class Receiver:
    """An OTLP/HTTP trace receiver on 127.0.0.1 that keeps every decoded span."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.scopes: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest.FromString(body)
                for resource in request.resource_spans:
                    for scope in resource.scope_spans:
                        receiver.scopes.append(scope.scope.name)
                        receiver.spans.extend(scope.spans)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_port}/v1/traces"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def attributes(self, span: Span) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for item in span.attributes:
            kind = item.value.WhichOneof("value")
            values[item.key] = getattr(item.value, kind) if kind else None
        return values


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rx = Receiver()
    rx.thread.start()
    yield rx
    shut_down(rx.server, rx.thread, "the OTLP receiver")


def test_spans_reach_an_otlp_receiver(backend_factory, receiver: Receiver) -> None:
    backend = backend_factory("a")
    backend.script(Behaviour(status=503))
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=receiver.endpoint)))
    try:
        with meshclient.Client(
            services={"users": [backend.address]},
            policy=meshclient.Policy(
                retry=meshclient.Retry(attempts=2, backoff=0.001, max_backoff=0.001)
            ),
            telemetry=meshclient.Telemetry(
                tracer_provider=provider, meter_provider=NoOpMeterProvider()
            ),
        ) as client:
            assert client.get("http://users/v1").status_code == 200
        provider.force_flush()
    finally:
        provider.shutdown()

    assert set(receiver.scopes) == {"meshclient"}
    by_kind: dict[int, list[Span]] = {}
    for span in receiver.spans:
        by_kind.setdefault(span.kind, []).append(span)
    (call,) = by_kind[Span.SPAN_KIND_INTERNAL]
    first, second = sorted(by_kind[Span.SPAN_KIND_CLIENT], key=lambda s: s.start_time_unix_nano)
    assert call.name == "GET users"
    assert receiver.attributes(call)["meshclient.attempts"] == 2
    assert [event.name for event in call.events] == ["meshclient.retry"]
    assert first.parent_span_id == second.parent_span_id == call.span_id
    assert receiver.attributes(first)["http.response.status_code"] == 503
    assert receiver.attributes(first)["error.type"] == "503"
    assert first.status.code == first.status.STATUS_CODE_ERROR
    assert receiver.attributes(second) == {
        "http.request.method": "GET",
        "server.address": "users",
        "server.port": 80,
        "network.peer.address": "127.0.0.1",
        "network.peer.port": backend.port,
        "http.request.resend_count": 1,
        "url.full": "http://users/v1",
        "http.response.status_code": 200,
    }
    # The span the backend saw is the one that was exported.
    assert second.span_id.hex() in backend.requests[1].headers["traceparent"]
