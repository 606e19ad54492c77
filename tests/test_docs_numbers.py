"""Every number the narrative docs and the README quote is read from the code (or the committed
benchmark results; for install.md, pyproject.toml and the nox sessions), here.

Each ``Claim`` is a pattern in one page whose groups are the numbers quoted, and the values
the code has for them. The pattern must occur in the page (rewording a sentence means
updating its claim) and every occurrence must quote the code's values. Then every number in
the page's prose (fenced code blocks aside: those are executed by ``tests/test_docs.py``) must
sit inside a claim or inside a ``NOT_FROM_CODE`` pattern that says why it is not a setting of
meshclient (a reference, an example value, an observation of one run). A number added to a
page without either fails ``test_every_number_on_the_page_is_checked``.

Numbers that are behaviour rather than a constant (keep-alive per endpoint, memory per
endpoint, the demo's traffic mix) are measured by the tests at the end.
"""

from __future__ import annotations

import gc
import inspect
import json
import math
import re
import subprocess
import sys
import tomllib
import tracemalloc
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import tenacity

import meshclient
from meshclient import _names, dashboard
from meshclient._balance import DEFAULT_DECAY, DEFAULT_RTT
from meshclient._deadline import MAX_TIMEOUT
from meshclient._health import _MIN_PEERS
from meshclient._mesh import PASSTHROUGH_ROUTES
from meshclient._pool import DEFAULT_LIMITS, HTTP2_STREAMS
from meshclient._retry import DEFAULT_RETRY_STATUSES
from meshclient._service import DEFAULT_READY_TIMEOUT
from meshclient._throttle import _NOT_ACCEPTED
from meshclient.discovery import (
    DnsDiscovery,
    EtcdDiscovery,
    EtcdRegistration,
    FileDiscovery,
)
from meshclient.discovery._dns import _srv_weights
from meshclient.discovery._document import endpoint_from_document
from meshclient.discovery._file import _RACY_NS
from meshclient.discovery._registration import STARTUP_WAIT
from meshclient.discovery._watch import JOIN_TIMEOUT
from meshclient.testing import Backend, Behaviour

from helpers import eventually

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.DOTALL | re.MULTILINE)
NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?")

Value = float | int | str


def page_file(page: str) -> Path:
    """A page of ``docs/``, or the repository's README."""
    return ROOT / page if page == "README.md" else DOCS / page


def prose(page: str) -> str:
    """The page without its fenced blocks."""
    return FENCE.sub("", page_file(page).read_text())


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """A space in a pattern matches any run of whitespace: prose wraps anywhere."""
    return re.compile(pattern.replace(" ", r"\s+"))


def as_value(text: str) -> Value:
    compact = text.replace(" ", "").replace("\n", "").replace(",", "")
    try:
        number = float(compact)
    except ValueError:
        return text
    return int(number) if number.is_integer() else number


def same(quoted: Value, actual: Value) -> bool:
    if isinstance(quoted, str) or isinstance(actual, str):
        return str(quoted) == str(actual)
    return math.isclose(quoted, actual, rel_tol=1e-9, abs_tol=1e-12)


def bench_results() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DOCS / "_generated" / "bench-results.json").read_text())
    return data


def bench_row(scenario: str, variant: str) -> dict[str, Any]:
    rows = bench_results()["scenarios"][scenario]["rows"]
    (row,) = [r for r in rows if r["variant"] == variant]
    return dict(row)


def cost_row(variant: str) -> dict[str, Any]:
    return bench_row("telemetry_cost", variant)


def cost_extra(name: str) -> float:
    """A derived figure of the committed ``telemetry_cost`` run."""
    value: float = bench_results()["scenarios"]["telemetry_cost"]["extra"][name]
    return value


def bench(module: str) -> Any:
    """A scenario module of ``bench/`` (the harness ``nox -s bench`` runs)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import importlib

    return importlib.import_module(f"bench.{module}")


def demo_specs() -> dict[str, Any]:
    from meshclient.demo._mesh import default_specs

    return {spec.name: spec for spec in default_specs()}


def demo_defaults() -> Any:
    from meshclient.demo._app import _parser

    return _parser().parse_args([])


@dataclass(frozen=True)
class Claim:
    page: str
    pattern: str
    expected: Callable[[], tuple[Value, ...]]
    #: Compare the quoted text as written rather than as a number: versions (1.30 is not 1.3).
    as_written: bool = False

    def __str__(self) -> str:
        return f"{self.page}: {self.pattern}"


R = meshclient.Retry()
B = meshclient.RetryBudget()
O = meshclient.OutlierDetection()  # noqa: E741
THROTTLE = meshclient.AdaptiveThrottle()

CLAIMS: list[Claim] = [
    # -- policies.md -------------------------------------------------------------------------
    Claim(
        "policies.md",
        r"decay (\d+) s, starting estimate (\d+) ms",
        lambda: (DEFAULT_DECAY, DEFAULT_RTT * 1000),
    ),
    Claim(
        "policies.md",
        r"`Retry\(attempts=(\d+)\)`: the first try plus at most (\d+) retries",
        lambda: (R.attempts, R.attempts - 1),
    ),
    Claim(
        "policies.md",
        r"`uniform\((0), min\(([\d.]+), ([\d.]+) x (2)\^\(n-(1)\)\)\)` s",
        lambda: (0, R.max_backoff, R.backoff, 2, 1),
    ),
    Claim(
        "policies.md",
        r"Envoy's (\d+) ms base, (\d+)x cap",
        lambda: (R.backoff * 1000, R.max_backoff / R.backoff),
    ),
    Claim(
        "policies.md",
        r"\| (\d+), (\d+), (\d+); (\d+) only with `Retry-After` \|",
        lambda: (
            *sorted(s for s in R.statuses if R.retryable_status(s, None)),
            *[
                s
                for s in R.statuses
                if not R.retryable_status(s, None) and R.retryable_status(s, 1)
            ],
        ),
    ),
    Claim("policies.md", r"honoured up to (\d+) s", lambda: (R.max_retry_after,)),
    Claim(
        "policies.md",
        r"RetryBudget\(ratio=([\d.]+), min_per_second=(\d+), ttl=(\d+)\)",
        lambda: (B.ratio, B.min_per_second, B.ttl),
    ),
    Claim(
        "policies.md",
        r"\(([\d.]+)x its call rate at (\d+) calls/s, the `retry_storm` benchmark's load\)",
        lambda: (
            1 + B.ratio + B.min_per_second / bench("retry_storm").RATE,
            bench("retry_storm").RATE,
        ),
    ),
    Claim(
        "policies.md",
        r"httpx's own timeouts \((\d+) s by default\)",
        lambda: (httpx.Client().timeout.read,),
    ),
    Claim(
        "policies.md",
        r"own timeouts \((\d+) s unless you pass",
        lambda: (httpx.Client().timeout.read,),
    ),
    Claim(
        "policies.md",
        r"`httpx\.Limits\(max_connections=(\d+), max_keepalive_connections=(\d+)\)`",
        lambda: (DEFAULT_LIMITS.max_connections, DEFAULT_LIMITS.max_keepalive_connections),
    ),
    Claim(
        "policies.md",
        r"one endpoint \(default (\d+)\)",
        lambda: (DEFAULT_LIMITS.max_connections,),
    ),
    Claim(
        "policies.md",
        r"open while idle \(default (\d+);",
        lambda: (DEFAULT_LIMITS.max_keepalive_connections,),
    ),
    Claim(
        "policies.md",
        r"`PeakEwma\(decay=([\d.]+), default_rtt=([\d.]+)\)`",
        lambda: (DEFAULT_DECAY, DEFAULT_RTT),
    ),
    Claim(
        "policies.md",
        r"Values above (1 000 000) s \(([\d.]+) days\)",
        lambda: (MAX_TIMEOUT, round(MAX_TIMEOUT / 86400, 1)),
    ),
    Claim(
        "policies.md",
        r"a shard takes (\d+) concurrent streams",
        lambda: (HTTP2_STREAMS,),
    ),
    Claim(
        "policies.md",
        r"(\d+) consecutive failures, or success < (\d+) % over (\d+) s \(at least (\d+) calls\)",
        lambda: (
            O.consecutive_failures or 0,
            (O.success_rate or 0) * 100,
            O.success_rate_window,
            O.success_rate_min_calls,
        ),
    ),
    Claim(
        "policies.md",
        r"\| (\d+) s, doubling per repeated ejection, ±(\d+) % jitter, at most (\d+) s \|",
        lambda: (O.base_ejection, O.ejection_jitter * 100, O.max_ejection),
    ),
    Claim(
        "policies.md",
        r"another only after (\d+) s without an answer",
        lambda: (O.probe_timeout,),
    ),
    Claim(
        "policies.md",
        r"at most (\d+) % of endpoints ejected",
        lambda: (O.max_ejected_share * 100,),
    ),
    Claim(
        "policies.md",
        r"an estimate ≥ (\d+)\u00d7 the peers' median and ≥ (\d+) ms above it,"
        r" over ≥ (\d+) samples,"
        r" with at least (\d+) measured peers",
        lambda: (O.latency_factor or 0, O.latency_floor * 1000, O.latency_min_samples, _MIN_PEERS),
    ),
    Claim(
        "policies.md",
        r"max\((0), \(requests \u2212 k·accepts\) / \(requests \+ (1)\)\) over (\d+) s",
        lambda: (0, 1, THROTTLE.window),
    ),
    Claim(
        "policies.md",
        r"(\d+) and (\d+) answers count as not accepted",
        lambda: tuple(sorted(_NOT_ACCEPTED)),
    ),
    # -- migrating.md ------------------------------------------------------------------------
    Claim(
        "migrating.md",
        r"(\d+) attempts means up to (\d+)x the requests",
        lambda: (migrating_example()["attempts"],) * 2,
    ),
    Claim(
        "migrating.md",
        r"`timeout=([\d.]+)` bounds each connect and each read, not the call\. (\d+) attempts"
        r" that each wait out a read take (\d+) s plus ([\d.]+) s of backoff",
        lambda: (
            migrating_example()["timeout"],
            migrating_example()["attempts"],
            migrating_example()["attempts"] * migrating_example()["timeout"],
            round(migrating_example()["backoff"], 6),
        ),
    ),
    Claim(
        "migrating.md",
        r"`Policy\(retry=Retry\(attempts=(\d+)\)\)` \(the default\)",
        lambda: (R.attempts,),
    ),
    Claim(
        "migrating.md",
        r"`Retry\(backoff=([\d.]+), max_backoff=([\d.]+)\)`",
        lambda: (R.backoff, R.max_backoff),
    ),
    Claim(
        "migrating.md",
        r"`Retry\(statuses=\{(\d+), (\d+), (\d+), (\d+)\}\)`; (\d+) is not retried by default",
        lambda: (*sorted(DEFAULT_RETRY_STATUSES), 500 if 500 not in R.statuses else -1),
    ),
    Claim(
        "migrating.md",
        r"a retry budget per service \((\d+) % \+ (\d+)/s\)",
        lambda: (B.ratio * 100, B.min_per_second),
    ),
    Claim(
        "migrating.md",
        r"on by default: (\d+) consecutive failures",
        lambda: (O.consecutive_failures or 0,),
    ),
    Claim(
        "migrating.md",
        r"`httpx\.Client\(timeout=([\d.]+)\)`",
        lambda: (migrating_example()["timeout"],),
    ),
    # -- testing.md --------------------------------------------------------------------------
    Claim(
        "testing.md",
        r"`Backend\.behave\(fail_rate=([\d.]+)\)` answers (\d+) % of requests with `fail_status`"
        r" \((\d+) by default\)",
        lambda: (0.3, 30, Behaviour().fail_status),
    ),
    Claim("testing.md", r"answer a status \((\d+) with `Retry-After`\)", lambda: (503,)),
    # -- dashboard.md ------------------------------------------------------------------------
    Claim(
        "dashboard.md",
        r"one answers (\d+) ms late, one answers (\d+) % of requests with (\d+)\)",
        lambda: (
            demo_specs()["users-2"].delay * 1000,
            demo_specs()["users-3"].fail_rate * 100,
            Behaviour().fail_status,
        ),
    ),
    Claim(
        "dashboard.md",
        r"dies (\d+) % of the way through the run \(its port refuses connections\) and comes back"
        r" at (\d+) %",
        lambda: tuple(100 * f for f in demo_specs()["orders-2"].down or ()),
    ),
    Claim(
        "dashboard.md",
        r"\((\d+) calls/s by default, (\d+) of (\d+) to users\)",
        lambda: (demo_defaults().rate, *demo_users_share()),
    ),
    Claim(
        "dashboard.md", r"(\d+) attempts with exponential backoff", lambda: (demo_httpx_attempts(),)
    ),
    Claim(
        "dashboard.md",
        r"`--duration SECONDS` \(default (\d+)\)",
        lambda: (demo_defaults().duration,),
    ),
    Claim("dashboard.md", r"\(per client, default (\d+)\)", lambda: (demo_defaults().rate,)),
    Claim(
        "dashboard.md",
        r"over the last (\d+) s, the calls so far",
        lambda: (dashboard.DEFAULT_WINDOW,),
    ),
    Claim(
        "dashboard.md",
        r"over the last minutes \(up to (\d+), one point a second\)",
        lambda: (dashboard.DEFAULT_HISTORY / 60 if dashboard.DEFAULT_STEP == 1 else -1,),
    ),
    Claim(
        "dashboard.md",
        r"one every `interval` seconds \((\d+) by default\)",
        lambda: (inspect.signature(dashboard.Dashboard).parameters["interval"].default,),
    ),
    Claim(
        "dashboard.md",
        r"`CallStats\(window=([\d.]+), history=([\d.]+), step=([\d.]+)\)`",
        lambda: (dashboard.DEFAULT_WINDOW, dashboard.DEFAULT_HISTORY, dashboard.DEFAULT_STEP),
    ),
    Claim(
        "dashboard.md",
        r"with bins (\d+) % apart, so its p99 is at most (\d+) % above",
        lambda: (round((math.exp(dashboard._BIN_GROWTH) - 1) * 100, 6),) * 2,
    ),
    Claim(
        "dashboard.md",
        r"opens it in Chromium at (\d+) and (\d+) px wide",
        lambda: widths_under_test(),
    ),
    # -- telemetry.md ------------------------------------------------------------------------
    Claim(
        "telemetry.md",
        r"buckets ((?:[\d.]+, )+[\d.]+) \| s \|",
        lambda: (", ".join(f"{b:g}" for b in _names.DURATION_BUCKETS),),
    ),
    Claim(
        "telemetry.md",
        r"the project's (\d+)-core test machine \(Python ([\d.]+), OpenTelemetry SDK ([\d.]+)\)",
        lambda: (
            bench_results()["environment"]["cpus"],
            ".".join(bench_results()["environment"]["python"].split(".")[:2]),
            ".".join(
                bench_results()["environment"]["versions"]["opentelemetry-sdk"].split(".")[:2]
            ),
        ),
    ),
    Claim(
        "telemetry.md",
        r"(\d+) interleaved rounds of (\d+) calls per variant",
        lambda: (
            bench_results()["scenarios"]["telemetry_cost"]["params"]["rounds"],
            bench_results()["scenarios"]["telemetry_cost"]["params"]["calls_per_round"],
        ),
    ),
    Claim(
        "telemetry.md",
        r"\| raw `httpx\.Client` \| (\d+) µs \|",
        lambda: (round(cost_row("raw httpx")["cpu_us_per_call"]),),
    ),
    Claim(
        "telemetry.md",
        r"\| meshclient, no SDK \(global no-op providers\) \| (\d+) µs \|"
        r" \+(\d+) µs \(([\d.]+)\u00d7\) \|",
        lambda: (
            round(cost_row("meshclient, no SDK")["cpu_us_per_call"]),
            round(cost_row("meshclient, no SDK")["overhead_us"]),
            round(cost_row("meshclient, no SDK")["ratio_vs_raw"], 2),
        ),
    ),
    Claim(
        "telemetry.md",
        r"periodic metric reader\) \| (\d+) µs \| \+(\d+) µs \|",
        lambda: (
            round(cost_row("meshclient + OTel SDK")["cpu_us_per_call"]),
            round(cost_row("meshclient + OTel SDK")["overhead_us"]),
        ),
    ),
    Claim(
        "telemetry.md",
        r"one SDK span per call \| (\d+) µs \| \+(\d+) µs \|",
        lambda: (
            round(cost_row("httpx+tenacity+pybreaker+otel span")["cpu_us_per_call"]),
            round(cost_row("httpx+tenacity+pybreaker+otel span")["overhead_us"]),
        ),
    ),
    Claim(
        "telemetry.md",
        r"hand-written \| (\d+) µs \| \+(\d+) µs \|",
        lambda: (
            round(cost_row("raw httpx + the contract's SDK calls")["cpu_us_per_call"]),
            round(cost_row("raw httpx + the contract's SDK calls")["overhead_us"]),
        ),
    ),
    Claim(
        "telemetry.md",
        r"\(\+(\d+) µs against \+(\d+) µs\)\. Turning the SDK on adds (\d+) µs to"
        r" meshclient's call, (\d+) µs (less|more) than the same SDK calls add to raw httpx"
        r" when written by hand \(the benchmark's target: at most (\d+) µs more\)",
        lambda: (
            round(cost_row("raw httpx + the contract's SDK calls")["overhead_us"]),
            round(cost_row("httpx+tenacity+pybreaker+otel span")["overhead_us"]),
            round(cost_extra("sdk_minus_no_sdk_us")),
            abs(round(cost_extra("telemetry_over_floor_us"))),
            "less" if cost_extra("telemetry_over_floor_us") < 0 else "more",
            bench("telemetry_cost").TARGET_OVER_FLOOR_US,
        ),
    ),
    Claim(
        "telemetry.md",
        r"meshclient with the SDK costs (\d+) µs above the floor",
        lambda: (round(cost_extra("mesh_sdk_minus_floor_us")),),
    ),
    # -- benchmarks.md -----------------------------------------------------------------------
    Claim(
        "benchmarks.md",
        r"\| ≤ ([\d.]+)x raw; health on ≤ ([\d.]+)x health off \|",
        lambda: (bench("sync_overhead").TARGET_RATIO, bench("sync_overhead").TARGET_HEALTH_RATIO),
    ),
    Claim(
        "benchmarks.md",
        r"\| ≤ ([\d.]+)x plain httpx; a no-op module ≤ (\d+) µs; the rate limiter ≤ (\d+) µs \|",
        lambda: (
            bench("stack_cost").TARGET_MOCK_RATIO,
            bench("stack_cost").TARGET_NOOP_US,
            bench("stack_cost").TARGET_RATE_LIMIT_US,
        ),
    ),
    Claim(
        "benchmarks.md",
        r"\| no SDK ≤ ([\d.]+)x raw; the SDK adds to meshclient ≤ (\d+) µs more"
        r" than to the floor \|",
        lambda: (
            bench("telemetry_cost").TARGET_RATIO,
            bench("telemetry_cost").TARGET_OVER_FLOOR_US,
        ),
    ),
    Claim(
        "benchmarks.md",
        r"requests/s at concurrency (\d+) vs raw .* \| warm ≥ (\d+)x; fresh ≥ (\d+)x \|",
        lambda: (
            bench("async_throughput").CONCURRENCY,
            bench("async_throughput").TARGET_WARM,
            bench("async_throughput").TARGET_COLD,
        ),
    ),
    Claim(
        "benchmarks.md",
        r"one \+(\d+) ms, (\d+) calls/s open loop",
        lambda: (bench("tail_latency").SLOW_DELAY * 1000, bench("tail_latency").RATE),
    ),
    Claim(
        "benchmarks.md",
        r"share ≤ (\d+) %, mean ≤ ([\d.]+)x round robin; health on: p99 ≤ ([\d.]+)x round robin's"
        r" and ≤ ([\d.]+)x the floor's",
        lambda: (
            bench("tail_latency").TARGET_SLOW_SHARE,
            bench("tail_latency").TARGET_MEAN_RATIO,
            bench("tail_latency").TARGET_P99_VS_RR,
            bench("tail_latency").TARGET_P99_VS_FLOOR,
        ),
    ),
    Claim(
        "benchmarks.md",
        r"\| (\d+) replicas answering in (\d+) ms, one turning to (\d+) s for a while;"
        r" (\d+) calls/s;"
        r" callers give up after (\d+) s",
        lambda: (
            bench("cut_off").REPLICAS,
            bench("cut_off").FAST_DELAY * 1000,
            bench("cut_off").SLOW_DELAY,
            bench("cut_off").RATE,
            bench("cut_off").GIVE_UP,
        ),
    ),
    Claim(
        "benchmarks.md",
        r"while slow: success ≥ ([\d.]+) %, its share ≤ ([\d.]+) %; healed: success (\d+) %, back"
        r" within (\d+) s",
        lambda: (
            bench("cut_off").TARGET_SLOW_SUCCESS,
            bench("cut_off").TARGET_SLOW_SHARE,
            bench("cut_off").TARGET_HEALED_SUCCESS,
            bench("cut_off").TARGET_BACK_WITHIN,
        ),
    ),
    Claim(
        "benchmarks.md",
        r"for a while at (\d+) calls/s: backend requests ÷ calls, against naive tenacity retries"
        r" \| ≤ ([\d.]+);",
        lambda: (bench("retry_storm").RATE, bench("retry_storm").TARGET_AMPLIFICATION),
    ),
    Claim(
        "benchmarks.md",
        r"answers 503 to everything, (\d+) calls/s \| success ≥ ([\d.]+) %; the failing instance"
        r" ≤ ([\d.]+) % of requests from (\d+) s on",
        lambda: (
            bench("health_faults").RATE,
            bench("health_faults").TARGET_SUCCESS,
            bench("health_faults").TARGET_FAILING_SHARE,
            bench("health_faults").EJECTED_FROM,
        ),
    ),
    Claim(
        "benchmarks.md",
        r"(\d+) ms attempt timeout, (\d+) calls/s \| success ≥ ([\d.]+) %; p99 ≤ (\d+) ms",
        lambda: (
            bench("health_faults").ATTEMPT_TIMEOUT * 1000,
            bench("health_faults").RATE,
            bench("health_faults").TARGET_SUCCESS,
            bench("health_faults").TARGET_BLACKHOLE_P99,
        ),
    ),
    Claim(
        "benchmarks.md",
        r"pick cost from (\d+) to ([\d ]+) endpoints; a ([\d ]+)-endpoint update .* replaced every"
        r" ([\d.]+) s under (\d+) calls/s, .* \| pick at ([\d ]+) ≤ ([\d.]+)x at (\d+); success"
        r" ≥ ([\d.]+) %",
        lambda: (
            min(bench("discovery").SIZES),
            max(bench("discovery").SIZES),
            bench("discovery").UPDATE_SIZE,
            bench("discovery").CHURN_EVERY,
            bench("discovery").CHURN_RATE,
            max(bench("discovery").SIZES),
            bench("discovery").FLAT_RATIO,
            min(bench("discovery").SIZES),
            bench("discovery").TARGET_SUCCESS,
        ),
    ),
    Claim(
        "benchmarks.md",
        r"the project's (\d+)-core test machine",
        lambda: (bench_results()["environment"]["cpus"],),
    ),
    # -- operating.md ------------------------------------------------------------------------
    Claim(
        "operating.md",
        r"Three layers of (\d+) attempts each turn one request into up to (\d+),",
        lambda: (R.attempts, R.attempts**3),
    ),
    Claim(
        "operating.md",
        r"\(default `RetryBudget\(ratio=([\d.]+), min_per_second=(\d+), ttl=(\d+)\)`\)",
        lambda: (B.ratio, B.min_per_second, B.ttl),
    ),
    Claim(
        "operating.md",
        r"add at most (\d+) % of its calls over the last (\d+) s, plus a standing reserve of (\d+)"
        r" retries \((\d+) per second x (\d+) s\)",
        lambda: (B.ratio * 100, B.ttl, B.min_per_second * B.ttl, B.min_per_second, B.ttl),
    ),
    Claim(
        "operating.md",
        r"sends about ([\d.]+)x its call rate plus the reserve, instead of (\d+)x",
        lambda: (1 + B.ratio, R.attempts),
    ),
    Claim(
        "operating.md",
        r"and (\d+) standing reserves of (\d+) retries",
        lambda: (50, B.min_per_second * B.ttl),
    ),
    Claim(
        "operating.md",
        r"at most (\d+) connections to each endpoint and (\d+) kept open while idle",
        lambda: (DEFAULT_LIMITS.max_connections, DEFAULT_LIMITS.max_keepalive_connections),
    ),
    Claim(
        "operating.md",
        r"a service of (\d+) endpoints may open up to ([\d ]+) connections and keep up to ([\d ]+)"
        r" idle",
        lambda: (
            50,
            50 * (DEFAULT_LIMITS.max_connections or 0),
            50 * (DEFAULT_LIMITS.max_keepalive_connections or 0),
        ),
    ),
    Claim(
        "operating.md",
        r"one connection carries (\d+) requests before",
        lambda: (HTTP2_STREAMS,),
    ),
    Claim("operating.md", r"a client remembers at most (\d+);", lambda: (PASSTHROUGH_ROUTES,)),
    Claim(
        "operating.md",
        r"about (\d+) µs of CPU per call over plain httpx",
        lambda: (round(bench_row("sync_overhead", "meshclient")["overhead_us"], -1),),
    ),
    Claim(
        "operating.md",
        r"two spans and two histogram records per call, about (\d+) µs",
        lambda: (round(cost_row("meshclient + OTel SDK")["overhead_us"], -1),),
    ),
    Claim(
        "operating.md",
        r"or (\d+) s without one \(`Service\(ready_timeout=\.\.\.\)`",
        lambda: (DEFAULT_READY_TIMEOUT,),
    ),
    Claim(
        "operating.md",
        r"users-2 answers (\d+) ms late and users-3 answers (\d+) % of requests with (\d+);",
        lambda: (
            demo_specs()["users-2"].delay * 1000,
            demo_specs()["users-3"].fail_rate * 100,
            Behaviour().fail_status,
        ),
    ),
    Claim(
        "operating.md",
        r"orders-2 dies (\d+) % of the way through the run and comes back at (\d+) %",
        lambda: tuple(100 * f for f in demo_specs()["orders-2"].down or ()),
    ),
    Claim(
        "operating.md",
        r"under the (\d+) % threshold once the (\d+)-call minimum is reached",
        lambda: ((O.success_rate or 0) * 100, O.success_rate_min_calls),
    ),
    Claim(
        "operating.md",
        r"after (\d+) consecutive failures orders-2 is ejected",
        lambda: (O.consecutive_failures or 0,),
    ),
    Claim(
        "operating.md",
        r"with the default (\d+) s base ejection, doubling per failed probe up to (\d+) s",
        lambda: (O.base_ejection, O.max_ejection),
    ),
    Claim(
        "operating.md",
        r"seen every ([\d.]+) s\)",
        lambda: (live_refresh(),),
    ),
    # -- README.md ---------------------------------------------------------------------------
    Claim(
        "README.md",
        r"On a fresh machine with Python ([\d.]+) or newer",
        lambda: (requires_python(),),
        as_written=True,
    ),
    Claim(
        "README.md",
        r"It takes about (\d+) s \(`nox -s demo -- --duration",
        lambda: (demo_defaults().duration,),
    ),
    # -- request-flow.md ---------------------------------------------------------------------
    Claim(
        "request-flow.md",
        r"success \((\d+)/(\d+): refused, for throttling\)",
        lambda: tuple(sorted(_NOT_ACCEPTED)),
    ),
    # -- install.md --------------------------------------------------------------------------
    Claim(
        "install.md",
        r"meshclient ([\d.]+) is not on a package index yet",
        lambda: (project()["version"],),
        as_written=True,
    ),
    Claim(
        "install.md",
        r"\| `dns` \| `dnspython(>=[\d.]+)` \|",
        lambda: (specifier("dnspython"),),
        as_written=True,
    ),
    Claim(
        "install.md",
        r"\| `demo` \| `rich(>=[\d.]+)`, `uvicorn(>=[\d.]+)` \|",
        lambda: (specifier("rich"), specifier("uvicorn")),
        as_written=True,
    ),
    Claim(
        "install.md",
        r"\| Python \| ([\d.]+) and newer \| ([\d.]+) \|",
        lambda: (requires_python(), nox_value(r'^PYTHON = "([\d.]+)"')),
        as_written=True,
    ),
    Claim(
        "install.md",
        r"\| httpx \| ([\d.]+)\.x \(`(>=[\d.]+,<[\d.]+)`\) \| ([\d.]+) and the newest ([\d.]+)"
        r" release \|",
        lambda: (
            series("httpx", 2),
            specifier("httpx"),
            release(floor("httpx")),
            series("httpx", 2),
        ),
        as_written=True,
    ),
    Claim(
        "install.md",
        r"\| httpcore \| (\d+)\.x from ([\d.]+) \(`(>=[\d.]+,<[\d.]+)`\) \| ([\d.]+) and the"
        r" newest (\d+)\.x \|",
        lambda: (
            series("httpcore", 1),
            floor("httpcore"),
            specifier("httpcore"),
            release(floor("httpcore")),
            series("httpcore", 1),
        ),
        as_written=True,
    ),
    Claim(
        "install.md",
        r"\| OpenTelemetry API \| ([\d.]+) and newer \| ([\d.]+) and the newest \|",
        lambda: (floor("opentelemetry-api"), otel_oldest("opentelemetry-api")),
        as_written=True,
    ),
    Claim(
        "install.md",
        r"\| OpenTelemetry SDK \(yours, optional\) \| the release matching your API \| ([\d.]+)"
        r" and the newest \|",
        lambda: (otel_oldest("opentelemetry-sdk"),),
        as_written=True,
    ),
    Claim(
        "install.md",
        r"\| tenacity, attrs, anyio, sniffio \| `(>=[\d.]+)`, `(>=[\d.]+)`, `(>=[\d.]+)`,"
        r" `(>=[\d.]+)` \|",
        lambda: tuple(specifier(name) for name in ("tenacity", "attrs", "anyio", "sniffio")),
        as_written=True,
    ),
    Claim(
        "install.md",
        r"\| dnspython \(`dns`\), rich and uvicorn \(`demo`\) \| `(>=[\d.]+)`, `(>=[\d.]+)`,"
        r" `(>=[\d.]+)` \|",
        lambda: tuple(specifier(name) for name in ("dnspython", "rich", "uvicorn")),
        as_written=True,
    ),
    Claim(
        "install.md",
        r"\*\*httpx ([\d.]+)\.x\*\*: meshclient's clients and transports subclass httpx's and take"
        r" httpx ([\d.]+)'s",
        lambda: (series("httpx", 2),) * 2,
        as_written=True,
    ),
    Claim(
        "install.md",
        r"\*\*httpcore ([\d.]+)\*\*: with ([\d.]+), an async TLS handshake",
        lambda: (floor("httpcore"), previous_patch(floor("httpcore"))),
        as_written=True,
    ),
    Claim(
        "install.md",
        r"\*\*anyio ([\d.]+)\*\*: with ([\d.]+), an async connect",
        lambda: (floor("anyio"), previous_minor(floor("anyio"))),
        as_written=True,
    ),
    Claim(
        "install.md",
        r"\*\*OpenTelemetry API ([\d.]+)\*\*: the duration histograms",
        lambda: (floor("opentelemetry-api"),),
        as_written=True,
    ),
    Claim(
        "install.md",
        r"which the API accepts from ([\d.]+) on\.",
        lambda: (floor("opentelemetry-api"),),
        as_written=True,
    ),
    # -- discovery.md ------------------------------------------------------------------------
    Claim(
        "discovery.md",
        r"\| a JSON or TOML file \| within `interval` \((\d+) s\) \|",
        lambda: (default(FileDiscovery, "interval"),),
    ),
    Claim(
        "discovery.md",
        r"\| after the record's TTL \((\d+)\u2013(\d+) s\) \|",
        lambda: (default(DnsDiscovery, "min_ttl"), default(DnsDiscovery, "max_ttl")),
    ),
    Claim(
        "discovery.md",
        r"One bad record \(a port of (\d+),",
        lambda: (port_range()[0] - 1,),
    ),
    Claim(
        "discovery.md",
        r"`close\(\)` stops the thread \(waiting up to (\d+) s",
        lambda: (JOIN_TIMEOUT,),
    ),
    Claim(
        "discovery.md",
        r"`Service\(ready_timeout=([\d.]+)\)` seconds",
        lambda: (DEFAULT_READY_TIMEOUT,),
    ),
    Claim(
        "discovery.md",
        r"\| `port` \| required \| an integer in (\d+)\u2013(\d+) \|",
        lambda: port_range(),
    ),
    Claim(
        "discovery.md",
        r"\| `weight` \| optional, default (\d+) \| a number > (\d+):",
        lambda: (default_weight(), weight_floor()),
    ),
    Claim(
        "discovery.md",
        r"a port out of range, a weight of (\d+),",
        lambda: (weight_floor(),),
    ),
    Claim(
        "discovery.md",
        r"`FileDiscovery\(path, service, \*, interval=([\d.]+), format=None\)`",
        lambda: (default(FileDiscovery, "interval"),),
    ),
    Claim(
        "discovery.md",
        r"- `interval` \((\d+) s\): how often",
        lambda: (default(FileDiscovery, "interval"),),
    ),
    Claim(
        "discovery.md",
        r"A file changed less than (\d+) s ago is re-read",
        lambda: (_RACY_NS / 1e9,),
    ),
    Claim(
        "discovery.md",
        r"\| `min_ttl`, `max_ttl` \| (\d+) s, (\d+) s \|",
        lambda: (default(DnsDiscovery, "min_ttl"), default(DnsDiscovery, "max_ttl")),
    ),
    Claim(
        "discovery.md",
        r"\| `nameservers`, `nameserver_port` \| the system's, (\d+) \|",
        lambda: (default(DnsDiscovery, "nameserver_port"),),
    ),
    Claim(
        "discovery.md",
        r"\| `timeout` \| (\d+) s \| bound on each lookup \|",
        lambda: (default(DnsDiscovery, "timeout"),),
    ),
    Claim(
        "discovery.md",
        r"\| `backoff`, `max_backoff` \| ([\d.]+) s, (\d+) s \|",
        lambda: (default(DnsDiscovery, "backoff"), default(DnsDiscovery, "max_backoff")),
    ),
    Claim(
        "discovery.md",
        r"they share equally \(weight (\d+) each\); a weight-0 record beside weighted ones gets"
        r" (\d+)/(\d+) of the smallest positive weight",
        lambda: (_srv_weights([0, 0])[0], 1, 1 / (_srv_weights([0, 7])[0] / 7)),
    ),
    Claim(
        "discovery.md",
        r"with `min_ttl` at (\d+) s the client asks",
        lambda: (default(DnsDiscovery, "min_ttl"),),
    ),
    Claim(
        "discovery.md",
        r"`EtcdDiscovery\(url, prefix, \*, timeout=([\d.]+), backoff=([\d.]+),"
        r" max_backoff=([\d.]+), verify=True\)`",
        lambda: tuple(default(EtcdDiscovery, p) for p in ("timeout", "backoff", "max_backoff")),
    ),
    Claim(
        "discovery.md",
        r"`EtcdRegistration\(url, prefix, endpoint, \*, ttl=(\d+), key=None, timeout=([\d.]+),"
        r" verify=True\)`",
        lambda: (default(EtcdRegistration, "ttl"), default(EtcdRegistration, "timeout")),
    ),
    Claim(
        "discovery.md",
        r"renews the lease every `ttl / (\d+)` seconds",
        lambda: (renewals_per_ttl(),),
    ),
    Claim(
        "discovery.md",
        r"start, wait up to (\d+) s for the first registration",
        lambda: (STARTUP_WAIT,),
    ),
]


def migrating_example() -> dict[str, float]:
    """The hand-built client of migrating.md's first code block, as numbers."""
    code = (DOCS / "migrating.md").read_text()
    attempts = int(re.search(r"stop_after_attempt\((\d+)\)", code).group(1))  # type: ignore[union-attr]
    timeout = float(re.search(r"httpx\.Client\(timeout=([\d.]+)\)", code).group(1))  # type: ignore[union-attr]
    multiplier, cap = re.search(  # type: ignore[union-attr]
        r"wait_exponential\(multiplier=([\d.]+), max=([\d.]+)\)", code
    ).groups()
    wait = tenacity.wait_exponential(multiplier=float(multiplier), max=float(cap))

    class State:
        attempt_number = 0

    backoff = 0.0
    for n in range(1, attempts):
        state = State()
        state.attempt_number = n
        backoff += wait(state)  # type: ignore[arg-type]
    return {"attempts": attempts, "timeout": timeout, "backoff": backoff}


# -- install.md: what pyproject.toml and the nox sessions say -----------------------------------


def project() -> dict[str, Any]:
    data: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return data


def specifier(name: str) -> str:
    """A run-time dependency's version range as pyproject.toml writes it (``>=0.28,<0.29``)."""
    extras = [dep for deps in project()["optional-dependencies"].values() for dep in deps]
    for dep in [*project()["dependencies"], *extras]:  # the base requirement before an extra's
        if re.split(r"[<>=\[ ;]", dep)[0] == name:
            return re.sub(r"^[\w.-]+(?:\[[^]]*\])?", "", dep)
    raise LookupError(name)


def floor(name: str) -> str:
    match = re.search(r">=([\d.]+)", specifier(name))
    assert match is not None, f"{name} has no lower bound"
    return match.group(1)


def series(name: str, parts: int) -> str:
    """The release series a range stays in, ``0.28`` for ``>=0.28,<0.29`` (parts=2)."""
    low = floor(name).split(".")[:parts]
    high = re.search(r",<([\d.]+)", specifier(name))
    following = [*low[:-1], str(int(low[-1]) + 1)]
    if high is None or high.group(1).split(".") != following:
        return f"not the {'.'.join(low)} series alone: {specifier(name)}"
    return ".".join(low)


def release(version: str) -> str:
    """The release pip installs for a pin of ``version``: ``0.28`` is 0.28.0."""
    return ".".join([*version.split("."), "0", "0"][:3])


def previous_patch(version: str) -> str:
    *head, patch = version.split(".")
    return ".".join([*head, str(int(patch) - 1)])


def previous_minor(version: str) -> str:
    major, minor = version.split(".")[:2]
    return f"{major}.{int(minor) - 1}"


def requires_python() -> str:
    match = re.fullmatch(r">=([\d.]+)", project()["requires-python"])
    assert match is not None
    return match.group(1)


def nox_value(pattern: str) -> str:
    match = re.search(pattern, (ROOT / "noxfile.py").read_text(), re.MULTILINE)
    assert match is not None, pattern
    return match.group(1)


def otel_oldest(name: str) -> str:
    """What ``nox -s tests_oldest`` pins an OpenTelemetry package to."""
    return nox_value(rf'^    "{re.escape(name)}": "([\d.]+)",$')


# -- discovery.md ------------------------------------------------------------------------------


def default(function: Callable[..., Any], parameter: str) -> Any:
    return inspect.signature(function).parameters[parameter].default


def document_ok(**fields: Any) -> bool:
    """Whether an endpoint document (as in etcd or a discovery file) is accepted."""
    try:
        endpoint_from_document({"address": "127.0.0.1", "port": 8001, **fields})
    except ValueError:
        return False
    return True


def port_range() -> tuple[int, int]:
    return (
        min(p for p in (0, 1, 2) if document_ok(port=p)),
        max(p for p in (65534, 65535, 65536) if document_ok(port=p)),
    )


def default_weight() -> float:
    return endpoint_from_document({"address": "127.0.0.1", "port": 8001}).weight


def weight_floor() -> int:
    """0 when every weight above 0 is accepted and 0 itself is not."""
    return 0 if document_ok(weight=1e-9) and not document_ok(weight=0) else -1


def renewals_per_ttl() -> float:
    registration = EtcdRegistration("http://127.0.0.1:2379", "/services/users/", "127.0.0.1:8001")
    return registration.ttl / registration.interval


def widths_under_test() -> tuple[int, ...]:
    text = (ROOT / "tests" / "test_dashboard.py").read_text()
    match = re.search(r'parametrize\("width", \[(\d+), (\d+)\]\)', text)
    assert match is not None
    return tuple(int(g) for g in match.groups())


def live_refresh() -> float:
    from meshclient.demo._app import LIVE_REFRESH

    return LIVE_REFRESH


def demo_users_share() -> tuple[int, int]:
    """Run the demo's traffic driver against stand-in clients: how many of 4 calls go to users."""
    import asyncio

    from meshclient.demo._traffic import Side, drive

    seen: list[str] = []

    async def send(service: str, path: str) -> httpx.Response:
        seen.append(service)
        return httpx.Response(200)

    async def close() -> None:
        return None

    async def run() -> None:
        side = Side("stand-in", None, send, close)  # type: ignore[arg-type]
        await drive(
            [side], rate=400, duration=0.1, schedule=[], on_event=lambda *_: None,
            stop=asyncio.Event(),
        )  # fmt: skip

    asyncio.run(run())
    assert len(seen) == 40
    return seen.count("users") * 4 // len(seen), 4


def demo_httpx_attempts() -> int:
    """The demo's httpx + tenacity client against an instance that always answers 503."""
    import asyncio

    from meshclient.demo._traffic import httpx_side

    class OneInstance:
        def __init__(self, address: str) -> None:
            self.address = address

        def services(self) -> list[str]:
            return ["users"]

        def addresses(self, service: str) -> list[str]:
            return [self.address]

    with Backend("always-503") as backend:
        backend.behave(status=503)
        side = httpx_side(OneInstance(backend.address))  # type: ignore[arg-type]

        async def run() -> int:
            try:
                return (await side.send("users", "/")).status_code
            finally:
                await side.close()

        assert asyncio.run(run()) == 503
        return backend.count()


#: operating.md's memory figures, checked by measuring them.
MEMORY = (
    r"an endpoint costs about (\d+) KB of Python heap for its state \(address, latency estimate,"
    r" health, pools not yet connected\), and an open keep-alive connection about (\d+) KB more"
)

#: Numbers a page may quote that are not settings of meshclient, and why.
NOT_FROM_CODE: dict[str, list[tuple[str, str]]] = {
    "*": [
        (r"\b[1-5]xx\b", "an HTTP status class"),
        (r"HTTP/[\d.]+", "a protocol version"),
        (r"127\.0\.0\.1(?::\d+)?", "the loopback address"),
        (r"RFC \d+(?: §[\d.]+)?", "a standard"),
        (r"jd/tenacity#\d+|Envoy issue #\d+", "an issue number"),
        (r"O\(1\)", "complexity"),
        (r"^\d+\. ", "a numbered list"),
        (r"\b(?:429|500|502|503|504)\b", "an HTTP status code, named (defaults are claims)"),
    ],
    "policies.md": [
        (r"Envoy's default is 1 retry", "Envoy's documented num_retries default"),
        (r"Envoy's `gateway-error` \(502, 503, 504\)", "Envoy's definition"),
        (r"\(outstanding \+ 1\)", "a formula"),
        (r"`\[0, min\(max_backoff, backoff \* 2\*\*\(n-1\)\)\]`", "a formula"),
        (
            r'`meshclient\.Endpoint\("127\.0\.0\.1", 8001, weight=2\.0\)` takes about twice',
            "an example",
        ),
        (r"`Policy\(timeout=meshclient\.Timeout\(total=2\.0, attempt=0\.5\)\)`", "an example"),
        (r"`Policy\(timeout=2\.0\)`", "an example"),
    ],
    "migrating.md": [
        (r"`pybreaker\.CircuitBreaker\(fail_max=5, reset_timeout=30\)`", "pybreaker's example"),
        (r"`retry_if_result\(lambda r: r\.status_code >= 500\)`", "tenacity's example"),
        (r"`@tenacity\.retry\(stop=stop_after_attempt\(3\), \.\.\.\)`", "the example above"),
    ],
    "recipes.md": [
        (r"`x-meshclient-timeout-ms: 300`", "an example value, run in the code below it"),
    ],
    "testing.md": [
        (r"`python -m meshclient\.testing --port 0 --delay 0\.05 --fail-rate 0\.3`", "an example"),
    ],
    "dashboard.md": [
        (r"\(`\[age, rate, success_rate, p99\]`", "field names"),
    ],
    "telemetry.md": [
        (r"\(`users`, 80\)", "an example: HTTP's default port"),
        (r'\(`"503"`\)', "an example"),
        (r"\| 1, 2, \.\.\. from the second attempt on \|", "ordinals"),
        (r"a response < 500|a response >= 500", "HTTP's 5xx class"),
        (r"`100m`, `5S`", "the grpc-timeout format"),
        (r"`floor=0\.05` raises a budget shorter than 50 ms to 50 ms", "an example value"),
        (r"`cap=10\.0` shortens a budget longer than 10 s to 10 s", "an example value"),
        (r"(?s)\*Measured by hand, once,.*?(?=To cut the SDK's share)", "one-off measurements"),
        (r"a broken or hostile `0`", "an example value"),
    ],
    "benchmarks.md": [
        (r"\| 3 instances, one \+", "instances the scenario starts (a literal in its code)"),
        (r"and the 2 healthy instances alone", "the same"),
        (r"one instance of 3", "the same"),
        (r"100 % success from 1 s after recovery", "a literal check in bench/retry_storm.py"),
    ],
    "README.md": [
        (r"`nox -s demo -- --duration 60`", "an example duration"),
    ],
    "install.md": [
        (
            r"Until 1\.0, a minor release \(0\.1 → 0\.2\) may change the public API; a patch"
            r" release \(0\.1\.0 → 0\.1\.1\)",
            "semantic versioning's rules, with example versions",
        ),
    ],
    "discovery.md": [
        (r'`Service\(zone="eu-west-1a"\)`', "an example zone"),
        (r'`DnsDiscovery\("users\.svc\.example", port=8001\)`', "an example"),
        (r"a TTL of 0 means `min_ttl`", "a TTL as DNS gives it, below any `min_ttl`"),
        (r"\*\*Weight 0\*\*: if every record of the priority has weight 0", "SRV's weight field"),
        (r"Kubernetes' cluster DNS TTL is typically 5\u201330 s", "Kubernetes' DNS"),
        (r"etcd 3\.4 and later", "etcd's release that serves the `/v3/` gateway paths"),
        (r"&watch=1`", "a Kubernetes API query"),
        (r"`410 Gone`", "the Kubernetes API's status for an expired resource version"),
    ],
    "operating.md": [
        (r"`Timeout\(total=2\.0\)`|`Retry-After`\)|\(502, 503, 504, or 429", "examples, statuses"),
        (r"(?s)a deadline of `0` \(broken or hostile\)", "an example"),
        (r"50 replicas of your service hold 50 budgets", "an example fleet"),
        (r"A service of 1 000 endpoints is a few MB", "an example size"),
        (MEMORY, "measured by test_memory_per_endpoint_is_what_operating_md_says"),
        (r"`num_retries: 0`", "Envoy's setting"),
        (r"(?s)## A worked incident: the demo.*", "observations of one run of the demo"),
    ],
}


def allowed_spans(page: str, text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for claim in CLAIMS:
        if claim.page == page:
            spans.extend(m.span() for m in compile_pattern(claim.pattern).finditer(text))
    for pattern, _ in [*NOT_FROM_CODE["*"], *NOT_FROM_CODE.get(page, [])]:
        regex = re.compile(pattern.replace(" ", r"\s+"), re.MULTILINE)
        spans.extend(m.span() for m in regex.finditer(text))
    return spans


CHECKED_PAGES = [
    "quickstart.md",
    "recipes.md",
    "policies.md",
    "migrating.md",
    "testing.md",
    "dashboard.md",
    "telemetry.md",
    "benchmarks.md",
    "operating.md",
    "README.md",
    "index.md",
    "request-flow.md",
    "modules.md",
    "discovery.md",
    "install.md",
]


@pytest.mark.parametrize("claim", CLAIMS, ids=str)
def test_the_page_quotes_what_the_code_has(claim: Claim) -> None:
    matches = list(compile_pattern(claim.pattern).finditer(prose(claim.page)))
    assert matches, f"{claim.page} no longer says {claim.pattern!r}: update the page or the claim"
    expected = claim.expected()
    for match in matches:
        if claim.as_written:
            quoted: tuple[Value, ...] = match.groups()
            assert len(quoted) == len(expected), (quoted, expected)
            wrong = [(q, e) for q, e in zip(quoted, expected, strict=True) if q != str(e)]
        else:
            quoted = tuple(as_value(g) for g in match.groups())
            assert len(quoted) == len(expected), (quoted, expected)
            wrong = [
                (q, e)
                for q, e in zip(quoted, expected, strict=True)
                if not same(q, as_value(str(e)) if isinstance(e, str) else e)
            ]
        assert not wrong, (
            f"{claim.page}: {match.group(0)!r} quotes {quoted}, the code has {expected}"
        )


@pytest.mark.parametrize("page", CHECKED_PAGES)
def test_every_number_on_the_page_is_checked(page: str) -> None:
    text = prose(page)
    spans = allowed_spans(page, text)
    loose = [
        f"{m.group(0)!r} in ...{text[max(0, m.start() - 40) : m.end() + 20]!r}..."
        for m in NUMBER.finditer(text)
        if not any(start <= m.start() and m.end() <= end for start, end in spans)
    ]
    assert loose == [], "numbers no test reads from the code:\n" + "\n".join(loose)


# -- numbers that are behaviour ------------------------------------------------------------------


def test_keepalive_limit_counts_per_endpoint(backend_factory: Callable[..., Backend]) -> None:
    """policies.md and operating.md: by default 20 idle connections stay open *per endpoint*."""
    backends = [backend_factory(f"users-{i}", record=False) for i in range(2)]
    for backend in backends:
        backend.behave(delay=0.5)
    service = meshclient.Service([b.address for b in backends], balancer=meshclient.RoundRobin())
    keep = DEFAULT_LIMITS.max_keepalive_connections
    assert keep is not None
    calls = 2 * (keep + 10)
    with (
        meshclient.Client(services={"users": service}) as client,
        ThreadPoolExecutor(calls) as pool,
    ):
        statuses = list(pool.map(lambda _: client.get("http://users/").status_code, range(calls)))
        assert statuses == [200] * calls
        assert all(b.connections_opened > keep for b in backends), "the calls did not overlap"
        for backend in backends:
            eventually(lambda b=backend: b.open_connections == keep, f"{keep} idle kept")  # type: ignore[misc]


SERVER = """
import asyncio, socket, sys
from pathlib import Path

async def answer(reader, writer):
    try:
        while True:
            await reader.readuntil(b"\\r\\n\\r\\n")
            writer.write(b"HTTP/1.1 200 OK\\r\\ncontent-length: 2\\r\\n\\r\\nok")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()

async def main(count, out):
    socks = []
    for i in range(count):  # one listening socket per loopback address: 127.0.1.1, ...
        sock = socket.socket()
        sock.bind((f"127.0.{1 + i // 250}.{1 + i % 250}", 0))
        sock.listen(16)
        socks.append(sock)
    servers = [await asyncio.start_server(answer, sock=s) for s in socks]
    tmp = Path(out + ".tmp")
    tmp.write_text(" ".join("%s:%d" % s.getsockname() for s in socks))
    tmp.rename(out)
    await asyncio.Event().wait()

asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
"""


@pytest.fixture
def many_endpoints(tmp_path: Path) -> Iterator[list[str]]:
    """200 endpoints on as many loopback addresses, served by a child process."""
    out = tmp_path / "addresses"
    with (tmp_path / "server.log").open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER, "200", str(out)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        eventually(lambda: out.exists() or server.poll() is not None, "the endpoints listen")
        assert server.poll() is None, (tmp_path / "server.log").read_text()
        yield out.read_text().split()
    finally:
        server.terminate()
        server.wait(10)


def heap_per_endpoint(addresses: list[str], *, connect: bool) -> float:
    """Bytes of Python heap a client keeps per endpoint (tracemalloc), with or without one
    open keep-alive connection to each."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        service = meshclient.Service(addresses, balancer=meshclient.RoundRobin())
        client = meshclient.Client(services={"many": service})
        if connect:
            for _ in addresses:  # round robin: one call, so one connection, per endpoint
                assert client.get("http://many/").status_code == 200
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    client.close()
    return used / len(addresses)


def test_memory_per_endpoint_is_what_operating_md_says(many_endpoints: list[str]) -> None:
    match = compile_pattern(MEMORY).search(prose("operating.md"))
    assert match is not None, "operating.md no longer states the memory per endpoint"
    state_kb, connection_kb = (int(g) for g in match.groups())
    state = heap_per_endpoint(many_endpoints, connect=False) / 1000
    connected = heap_per_endpoint(many_endpoints, connect=True) / 1000
    # "About": within a factor of 2 either way (Python versions and allocators differ).
    assert state_kb / 2 <= state <= state_kb * 2, f"{state:.1f} KB per endpoint"
    assert connection_kb / 2 <= connected - state <= connection_kb * 2, (
        f"{connected - state:.1f} KB per connection"
    )


def test_tenacity_decorator_runs_each_call_on_a_copy_sharing_one_statistics_dict() -> None:
    """migrating.md: what tenacity shares today (so the page can drop #93 when it changes)."""
    controllers: list[object] = []

    @tenacity.retry(
        stop=tenacity.stop_after_attempt(2),
        wait=tenacity.wait_none(),
        before=lambda state: controllers.append(state.retry_object),
        reraise=True,
    )
    def call() -> str:
        return "ok"

    stats = call.statistics
    call()
    call()
    assert controllers[0] is not controllers[1]
    assert all(c is not call.retry for c in controllers)
    assert call.statistics is stats
    assert stats["attempt_number"] == 1


def test_one_tenacity_controller_shared_by_concurrent_tasks_mixes_their_statistics() -> None:
    import asyncio

    shared = tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_none(), reraise=True
    )
    attempts = {"a": 0, "b": 0}

    async def failing(name: str) -> None:
        attempts[name] += 1
        await asyncio.sleep(0)
        raise ValueError(name)

    async def run() -> None:
        results = await asyncio.gather(
            shared(failing, "a"), shared(failing, "b"), return_exceptions=True
        )
        assert all(isinstance(r, ValueError) for r in results)

    asyncio.run(run())
    assert attempts == {"a": 3, "b": 3}  # each call's decisions are its own...
    assert shared.statistics["attempt_number"] > 3  # ...its statistics are not


def test_quickstart_lists_the_dependencies_pip_installs() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {re.split(r"[<>=\[ ;]", dep)[0] for dep in project["dependencies"]}
    quickstart = (DOCS / "quickstart.md").read_text()  # the line is in a console block
    match = re.search(r"pip install meshclient +# the library \(([^)]*)\)", quickstart)
    assert match is not None
    assert set(match.group(1).split(", ")) == wanted
    demo = {re.split(r"[<>=\[ ;]", dep)[0] for dep in project["optional-dependencies"]["demo"]}
    match = re.search(r'pip install "meshclient\[demo\]" +# plus (\w+) and (\w+) for', quickstart)
    assert match is not None
    assert set(match.groups()) == demo


def test_install_md_names_the_files_nox_build_makes() -> None:
    """install.md's console blocks name the wheel and sdist of the version pyproject.toml has."""
    page = (DOCS / "install.md").read_text()
    named = re.findall(r"meshclient-([\d.]*\d)(?:-py3-none-any\.whl|\.tar\.gz)", page)
    assert len(named) >= 4
    assert set(named) == {project()["version"]}


# -- names the pages list -------------------------------------------------------------------


def table_rows(page: str, first_column: str) -> dict[str, str]:
    """Rows of the Markdown tables whose first column holds a backticked name."""
    rows = {}
    for line in prose(page).splitlines():
        match = re.match(r"\| `([^`]+)` \|(.*)", line)
        if match and re.fullmatch(first_column, match.group(1)):
            rows[match.group(1)] = match.group(2)
    return rows


def test_telemetry_md_lists_every_metric() -> None:
    metrics = {v for k, v in vars(_names).items() if k.startswith("METRIC_")}
    listed = table_rows("telemetry.md", r"[\w.]+")
    assert metrics <= set(listed), sorted(metrics - set(listed))


def test_telemetry_md_lists_every_hook_event_with_its_fields() -> None:
    import attrs

    from meshclient import hooks

    listed = table_rows("telemetry.md", r"[A-Z]\w+")
    for name in hooks.__all__:
        event = getattr(hooks, name)
        if not attrs.has(event):
            continue
        assert name in listed, f"{name} is missing from telemetry.md's hook table"
        fields = re.findall(r"`(\w+)`", listed[name])
        assert fields == [f.name for f in attrs.fields(event)], name


@pytest.mark.parametrize("page", ["operating.md", "telemetry.md", "dashboard.md"])
def test_telemetry_names_quoted_are_meshclients(page: str) -> None:
    """A metric, attribute or event name in backticks is one ``meshclient._names`` defines."""
    emitted = {v for k, v in vars(_names).items() if k.isupper() and isinstance(v, str)}
    quoted = re.findall(r"`((?:http|meshclient|server|network|url|error)\.[a-z_.]+)`", prose(page))
    modules = {"meshclient.hooks", "meshclient.testing", "meshclient.middleware"}
    modules |= {"meshclient.dashboard", "meshclient.stack"}
    unknown = sorted({name for name in quoted if name not in emitted and name not in modules})
    assert unknown == []
