"""Scenario 1: client CPU per sequential sync GET on one keep-alive connection.

Clients against one backend process: raw ``httpx.Client``; meshclient's default stack
(balancer, retries with budget, accounting, deadline, endpoint health; tracing API without an
SDK); the same with endpoint health off; the same with the OpenTelemetry SDK recording spans
and metrics; and a hand-composed peer (httpx + tenacity ``Retrying`` + pybreaker
``CircuitBreaker`` + one OpenTelemetry SDK span per call).
The variants are interleaved over several rounds, in a rotating order, and each variant's
median round is reported, so drift (CPU frequency, noisy neighbours) hits them alike.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any

import httpx
import pybreaker
import tenacity
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

import meshclient

from .procs import backends
from .report import Check, ScenarioResult, median

NAME = "sync_overhead"
TARGET_RATIO = 1.10
#: Endpoint health may cost at most this much CPU per call over the stack without it.
TARGET_HEALTH_RATIO = 1.05
PATH = "/x"


class _DropExporter(SpanExporter):
    """Accepts every batch and throws it away: the SDK's work is measured, no I/O."""

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


class _DropMetrics(MetricExporter):
    def __init__(self) -> None:
        super().__init__()

    def export(self, metrics_data: Any, timeout_millis: float = 0, **kwargs: Any) -> Any:
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 0) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 0, **kwargs: Any) -> None:
        pass


def _sdk_telemetry(stack: ExitStack) -> meshclient.Telemetry:
    """Private SDK providers (batch spans, periodic metrics), exporting to nowhere."""
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(_DropExporter()))
    reader = PeriodicExportingMetricReader(_DropMetrics(), export_interval_millis=60_000)
    meter_provider = MeterProvider(metric_readers=[reader])
    stack.callback(tracer_provider.shutdown)
    stack.callback(meter_provider.shutdown)
    return meshclient.Telemetry(tracer_provider=tracer_provider, meter_provider=meter_provider)


class _ServerError(Exception):
    """A 5xx answer, raised so the peer's breaker and retry loop see it as a failure."""


class Peer:
    """What a team would hand-build: one span, a retry loop and a breaker around httpx."""

    def __init__(self, base_url: str) -> None:
        self.client = httpx.Client()
        self.url = base_url + PATH
        self.provider = TracerProvider()
        self.provider.add_span_processor(BatchSpanProcessor(_DropExporter()))
        self.tracer = self.provider.get_tracer("bench.peer")
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
        self.provider.shutdown()


def _block(get: Callable[[], httpx.Response], calls: int) -> tuple[float, float, int]:
    """``calls`` sequential GETs: (CPU µs per call, wall µs per call, non-200 answers)."""
    gc.collect()
    bad = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(calls):
        if get().status_code != 200:
            bad += 1
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return cpu / calls * 1e6, wall / calls * 1e6, bad


def run(*, quick: bool) -> ScenarioResult:
    rounds, calls, warmup = (3, 300, 200) if quick else (10, 1000, 1000)
    result = ScenarioResult(
        NAME,
        "sequential sync GETs, one keep-alive connection, client CPU per call",
        ["variant", "cpu_us_per_call", "wall_us_per_call", "ratio_vs_raw", "round_spread_%"],
        params={"rounds": rounds, "calls_per_round": calls, "warmup_calls": warmup},
    )
    with backends([{"name": "b1"}]) as (backend,), ExitStack() as stack:
        raw = stack.enter_context(httpx.Client())
        mesh = stack.enter_context(
            meshclient.Client(
                services={"svc": [backend.addr]},
                policy=meshclient.Policy(timeout=meshclient.Timeout(total=5.0)),
            )
        )
        no_health = stack.enter_context(
            meshclient.Client(
                services={"svc": meshclient.Service([backend.addr], outlier=None)},
                policy=meshclient.Policy(timeout=meshclient.Timeout(total=5.0)),
            )
        )
        with_sdk = stack.enter_context(
            meshclient.Client(
                services={"svc": [backend.addr]},
                policy=meshclient.Policy(timeout=meshclient.Timeout(total=5.0)),
                telemetry=_sdk_telemetry(stack),
            )
        )
        peer = Peer(backend.url)
        stack.callback(peer.close)
        raw_url, mesh_url = backend.url + PATH, "http://svc" + PATH
        variants: dict[str, Callable[[], httpx.Response]] = {
            "raw httpx": lambda: raw.get(raw_url),
            "meshclient": lambda: mesh.get(mesh_url),
            "meshclient, health off": lambda: no_health.get(mesh_url),
            "meshclient + OTel SDK": lambda: with_sdk.get(mesh_url),
            "httpx+tenacity+pybreaker+otel": peer.get,
        }
        for get in variants.values():
            _block(get, warmup)
        samples: dict[str, list[tuple[float, float, int]]] = {name: [] for name in variants}
        names = list(variants)
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                samples[name].append(_block(variants[name], calls))
        connections = backend.count()
    raw_cpu = median([s[0] for s in samples["raw httpx"]])
    for name, rows in samples.items():
        cpus = [s[0] for s in rows]
        cpu = median(cpus)
        result.rows.append(
            {
                "variant": name,
                "cpu_us_per_call": cpu,
                "wall_us_per_call": median([s[1] for s in rows]),
                "ratio_vs_raw": cpu / raw_cpu,
                "round_spread_%": (max(cpus) - min(cpus)) / cpu * 100,
                "non_200": sum(s[2] for s in rows),
                "rounds_cpu_us": cpus,
            }
        )
    by_name = {row["variant"]: row for row in result.rows}
    result.checks.append(
        Check(
            "meshclient CPU / raw httpx",
            by_name["meshclient"]["ratio_vs_raw"],
            "<=",
            TARGET_RATIO,
            "x",
        )
    )
    result.checks.append(
        Check(
            "health on / health off CPU",
            by_name["meshclient"]["cpu_us_per_call"]
            / by_name["meshclient, health off"]["cpu_us_per_call"],
            "<=",
            TARGET_HEALTH_RATIO,
            "x",
        )
    )
    peer_cost = by_name["httpx+tenacity+pybreaker+otel"]["cpu_us_per_call"] - raw_cpu
    sdk_cost = by_name["meshclient + OTel SDK"]["cpu_us_per_call"] - raw_cpu
    result.checks.append(
        Check("meshclient+SDK overhead over raw vs the peer's", sdk_cost, "<=", peer_cost, " µs")
    )
    result.notes.append(
        f"peer (httpx+tenacity+pybreaker+otel) ratio "
        f"{by_name['httpx+tenacity+pybreaker+otel']['ratio_vs_raw']:.2f}x (expected ~1.35x); "
        f"backend served {connections} requests"
    )
    bad = sum(row["non_200"] for row in result.rows)
    if bad:
        result.notes.append(f"{bad} non-200 answers: the measurement is suspect")
    return result
