"""Scenario: what telemetry costs per sync call, side by side in one run.

Five clients against one backend process, sequential GETs on one keep-alive connection:

- raw ``httpx.Client``: the reference;
- meshclient with no OpenTelemetry SDK (the API's no-op providers): target ≤ 1.10x raw;
- meshclient with the SDK: a private ``TracerProvider`` with a ``BatchSpanProcessor`` and a
  ``MeterProvider`` with a ``PeriodicExportingMetricReader`` (60 s interval), both exporting to
  exporters that drop everything (the SDK's work is measured, no I/O), passed as
  ``Client(telemetry=meshclient.Telemetry(tracer_provider=..., meter_provider=...))``;
- the hand-composed peer: httpx + tenacity ``Retrying`` + pybreaker ``CircuitBreaker`` + one
  manual SDK span per call on the same kind of tracer provider;
- the floor: raw httpx plus, hand-written, only the SDK calls the telemetry contract requires of
  a one-attempt call (an INTERNAL and a CLIENT span with their attributes, trace-context
  injection, two histogram records). No client can emit that telemetry for less.

Target: meshclient's telemetry costs at most 15 µs of CPU per call above the floor's SDK
calls: what turning the SDK on adds to meshclient, minus what those SDK calls add to raw httpx,
``(mesh+SDK - mesh) - (floor - raw)``, paired within each round. The rest of the gap between
meshclient+SDK and the floor is meshclient's stack (balancer, retries, budget, health,
deadline header), which the SDK does not change and whose target is the no-SDK ratio (here and
in ``sync_overhead``); that whole gap is reported beside it. The peer is shown for comparison:
it emits less (one span, no metrics), so the SDK calls alone make the floor dearer than it.

CPU is measured two ways. ``time.process_time()`` is the whole client process, which includes
the ``BatchSpanProcessor``'s export thread; ``time.thread_time()`` is the calling thread only.
The target uses process CPU (the cost an application pays); the difference between the two is
the export thread's share. Every block of an SDK variant ends with ``force_flush()`` inside the
measurement, so the spans a block produced are exported (and paid for) within it rather than
during a later block of another variant. Method as ``sync_overhead``: interleaved rounds,
medians, ratios and differences paired per round.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

import httpx
import pybreaker
import tenacity
from opentelemetry import propagate
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, set_span_in_context

import meshclient

from .procs import HOST, backends
from .report import Check, ScenarioResult, median
from .sync_overhead import CPU_COLUMNS, Variant, difference, interleave, paired, rows, sizes

NAME = "telemetry_cost"
TARGET_RATIO = 1.10
#: What the SDK adds to meshclient's CPU per call beyond what it adds to raw httpx as the
#: floor's hand-written calls, at most (µs).
TARGET_OVER_FLOOR_US = 15.0
PATH = "/x"
#: Metric export interval: long, so collection never lands in a measured block.
METRIC_INTERVAL_MS = 60_000

RAW, MESH, MESH_SDK, PEER, FLOOR = (
    "raw httpx",
    "meshclient, no SDK",
    "meshclient + OTel SDK",
    "httpx+tenacity+pybreaker+otel span",
    "raw httpx + the contract's SDK calls",
)


class DropExporter(SpanExporter):
    """Accepts every batch, counts its spans and throws them away."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


class DropMetrics(MetricExporter):
    def __init__(self) -> None:
        super().__init__()

    def export(self, metrics_data: Any, timeout_millis: float = 0, **kwargs: Any) -> Any:
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 0) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 0, **kwargs: Any) -> None:
        pass


def tracer_provider(stack: ExitStack) -> tuple[TracerProvider, DropExporter]:
    exporter = DropExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    stack.callback(provider.shutdown)
    return provider, exporter


def meter_provider(stack: ExitStack) -> MeterProvider:
    reader = PeriodicExportingMetricReader(DropMetrics(), export_interval_millis=METRIC_INTERVAL_MS)
    provider = MeterProvider(metric_readers=[reader])
    stack.callback(provider.shutdown)
    return provider


class _ServerError(Exception):
    """A 5xx answer, raised so the peer's breaker and retry loop see it as a failure."""


class Peer:
    """What a team would hand-build: one span, a retry loop and a breaker around httpx."""

    def __init__(self, url: str, provider: TracerProvider) -> None:
        self.client = httpx.Client()
        self.url = url
        self.tracer = provider.get_tracer("bench.peer")
        self.breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)
        self.retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(3),
            wait=tenacity.wait_random_exponential(multiplier=0.025, max=0.25),
            retry=tenacity.retry_if_exception_type((httpx.TransportError, _ServerError)),
            reraise=True,
        )

    def _send(self) -> httpx.Response:
        response = self.client.get(self.url)
        if response.status_code >= 500:
            raise _ServerError(response.status_code)
        return response

    def get(self) -> httpx.Response:
        with self.tracer.start_as_current_span("GET", kind=SpanKind.CLIENT) as span:
            span.set_attribute("http.request.method", "GET")
            span.set_attribute("url.full", self.url)
            response: httpx.Response = self.retrying(self.breaker.call, self._send)
            span.set_attribute("http.response.status_code", response.status_code)
            return response

    def close(self) -> None:
        self.client.close()


class Floor:
    """Raw httpx plus the SDK work a one-attempt call's telemetry needs, and nothing else."""

    def __init__(
        self, url: str, provider: TracerProvider, meters: MeterProvider, host: str, port: int
    ) -> None:
        self.client = httpx.Client()
        self.url = url
        self.tracer = provider.get_tracer("bench.floor")
        meter = meters.get_meter("bench.floor")
        self.attempt_duration = meter.create_histogram("http.client.request.duration", unit="s")
        self.call_duration = meter.create_histogram("meshclient.call.duration", unit="s")
        self.call_attrs = {
            "http.request.method": "GET",
            "server.address": "svc",
            "meshclient.service": "svc",
        }
        self.attempt_attrs = {
            **self.call_attrs,
            "server.port": 80,
            "network.peer.address": host,
            "network.peer.port": port,
            "url.full": url,
        }
        self.attempt_metric_attrs = {
            "http.request.method": "GET",
            "server.address": "svc",
            "server.port": 80,
            "http.response.status_code": 200,
        }
        self.call_metric_attrs = {**self.call_attrs, "meshclient.outcome": "success"}
        self.call_end_attrs = {"meshclient.attempts": 1, "meshclient.outcome": "success"}

    def get(self) -> httpx.Response:
        start = time.perf_counter()
        call = self.tracer.start_span("GET svc", None, SpanKind.INTERNAL, self.call_attrs)
        parent = set_span_in_context(call)
        attempt = self.tracer.start_span("GET", parent, SpanKind.CLIENT, self.attempt_attrs)
        headers: dict[str, str] = {}
        propagate.inject(headers, set_span_in_context(attempt, parent))
        sent = time.perf_counter()
        response = self.client.get(self.url, headers=headers)
        now = time.perf_counter()
        attempt.set_attribute("http.response.status_code", response.status_code)
        attempt.end()
        self.attempt_duration.record(now - sent, self.attempt_metric_attrs)
        call.set_attributes(self.call_end_attrs)
        call.end()
        self.call_duration.record(now - start, self.call_metric_attrs)
        return response

    def close(self) -> None:
        self.client.close()


def run(*, quick: bool) -> ScenarioResult:
    rounds, calls, warmup = sizes(quick=quick)
    result = ScenarioResult(
        NAME,
        "sequential sync GETs, one keep-alive connection: CPU per call with and without the SDK",
        [*CPU_COLUMNS, "thread_overhead_us", "spans_per_call"],
        params={
            "rounds": rounds,
            "calls_per_round": calls,
            "warmup_calls": warmup,
            "metric_export_interval_ms": METRIC_INTERVAL_MS,
            "cpu_target_clock": "time.process_time (whole client process, export thread included)",
        },
    )
    # Not pinned to one CPU (unlike ``sync_overhead``): the SDK's export thread would then
    # share the client's core and its hand-offs would land on whichever block ran next.
    with backends([{"name": "b1"}]) as (backend,), ExitStack() as stack:
        policy = meshclient.Policy(timeout=meshclient.Timeout(total=5.0))
        raw = stack.enter_context(httpx.Client())
        mesh = stack.enter_context(
            meshclient.Client(services={"svc": [backend.addr]}, policy=policy)
        )
        mesh_tp, mesh_spans = tracer_provider(stack)
        with_sdk = stack.enter_context(
            meshclient.Client(
                services={"svc": [backend.addr]},
                policy=policy,
                telemetry=meshclient.Telemetry(
                    tracer_provider=mesh_tp, meter_provider=meter_provider(stack)
                ),
            )
        )
        peer_tp, peer_spans = tracer_provider(stack)
        peer = Peer(backend.url + PATH, peer_tp)
        stack.callback(peer.close)
        floor_tp, floor_spans = tracer_provider(stack)
        floor = Floor(backend.url + PATH, floor_tp, meter_provider(stack), HOST, backend.port)
        stack.callback(floor.close)
        raw_url, mesh_url = backend.url + PATH, "http://svc" + PATH
        variants = {
            RAW: Variant(lambda: raw.get(raw_url)),
            MESH: Variant(lambda: mesh.get(mesh_url)),
            MESH_SDK: Variant(lambda: with_sdk.get(mesh_url), flush=mesh_tp.force_flush),
            PEER: Variant(peer.get, flush=peer_tp.force_flush),
            FLOOR: Variant(floor.get, flush=floor_tp.force_flush),
        }
        # Two passes. The no-SDK ratio comes from a pass without the SDK, whose export thread
        # and long-lived span garbage would otherwise slow every block, raw httpx's included.
        plain = interleave(
            {name: variants[name] for name in (RAW, MESH)},
            rounds=rounds,
            calls=calls,
            warmup=warmup,
        )
        # meshclient without the SDK runs in this pass too (its row comes from the first), so
        # the glue is paired within each round: (mesh+SDK - mesh) - (floor - raw).
        with_sdk = interleave(
            {name: variants[name] for name in (RAW, MESH, MESH_SDK, PEER, FLOOR)},
            rounds=rounds,
            calls=calls,
            warmup=warmup,
        )
        served = backend.count()

    total_calls = warmup + rounds * calls
    result.rows = [
        *(row for row in rows(plain, RAW) if row["variant"] == MESH),
        *(row for row in rows(with_sdk, RAW) if row["variant"] != MESH),
    ]
    result.rows.sort(key=lambda row: list(variants).index(row["variant"]))
    by_name = {row["variant"]: row for row in result.rows}
    by_name[MESH_SDK]["spans_per_call"] = mesh_spans.spans / total_calls
    by_name[PEER]["spans_per_call"] = peer_spans.spans / total_calls
    by_name[FLOOR]["spans_per_call"] = floor_spans.spans / total_calls
    for row in result.rows:
        row.setdefault("spans_per_call", 0.0)
        row["export_thread_us_per_call"] = row["cpu_us_per_call"] - row["thread_cpu_us_per_call"]
    sdk_cost = by_name[MESH_SDK]["overhead_us"]
    peer_cost = by_name[PEER]["overhead_us"]
    result.checks.append(
        Check(
            "meshclient (no SDK) CPU / raw httpx",
            by_name[MESH]["ratio_vs_raw"],
            "<=",
            TARGET_RATIO,
            "x",
        )
    )
    floor_cost = by_name[FLOOR]["overhead_us"]
    telemetry_only = paired(with_sdk, MESH_SDK, MESH, difference)
    over_floor = paired(with_sdk, MESH_SDK, FLOOR, difference)
    glue = median(
        [
            (sdk.cpu_us - bare.cpu_us) - (hand.cpu_us - reference.cpu_us)
            for sdk, bare, hand, reference in zip(
                with_sdk[MESH_SDK], with_sdk[MESH], with_sdk[FLOOR], with_sdk[RAW], strict=True
            )
        ]
    )
    result.checks.append(
        Check(
            "meshclient's telemetry above the SDK floor (process CPU)",
            glue,
            "<=",
            TARGET_OVER_FLOOR_US,
            " µs",
        )
    )
    result.extra["sdk_minus_no_sdk_us"] = telemetry_only
    result.extra["floor_overhead_us"] = floor_cost
    result.extra["mesh_sdk_minus_floor_us"] = over_floor
    result.extra["telemetry_over_floor_us"] = glue
    result.notes.append(
        "the target compares process CPU (time.process_time: every thread of the client "
        "process, the BatchSpanProcessor's export thread included); thread_cpu_us_per_call "
        "is the calling thread alone (time.thread_time)"
    )
    result.notes.append(
        f"overhead over raw, process CPU: meshclient+SDK {sdk_cost:+.1f} µs, peer "
        f"{peer_cost:+.1f} µs; calling thread only: meshclient+SDK "
        f"{by_name[MESH_SDK]['thread_overhead_us']:+.1f} µs, peer "
        f"{by_name[PEER]['thread_overhead_us']:+.1f} µs"
    )
    result.notes.append(
        f"the contract's SDK calls alone (2 spans, injection, 2 histogram records) cost "
        f"{floor_cost:+.1f} µs over raw httpx, the peer's whole stack {peer_cost:+.1f} µs; "
        f"turning the SDK on costs meshclient {telemetry_only:+.1f} µs, so its telemetry costs "
        f"{glue:+.1f} µs above the floor's SDK calls; meshclient + SDK is {over_floor:+.1f} µs "
        f"above the floor in all (its telemetry plus its balancer, retries, budget, health "
        f"and deadline, whose own target is sync_overhead's)"
    )
    result.notes.append(
        f"peer ratio {by_name[PEER]['ratio_vs_raw']:.2f}x (issue: ~+120 µs CPU here); "
        f"backend served {served} requests"
    )
    bad = sum(row["non_200"] for row in result.rows)
    if bad:
        result.notes.append(f"{bad} non-200 answers: the measurement is suspect")
    return result
