"""Scenario 3: open-loop tail latency with one slow instance among three.

Three backend processes, one answering after 50 ms. An open-loop generator offers 600 calls/s
(latency measured from each call's scheduled time); the mesh runs with each balancer in turn,
then with only the two healthy instances (the floor). Raw httpx round-robining over the three
addresses is the same-run reference. The instance that answered comes from ``x-backend``.
"""

from __future__ import annotations

import asyncio
import math
import statistics
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

import meshclient

from .loadgen import LoadResult, run_open_loop
from .procs import BackendProc, backends
from .report import Check, ScenarioResult, percentile

NAME = "tail_latency"
RATE = 600.0
SLOW_DELAY = 0.05
MAX_IN_FLIGHT = 2000
#: A healthy run has ~10-20 calls outstanding; 300 (0.5 s of load) means the client has fallen
#: behind for good (see ``loadgen``), so the run stops instead of freezing for minutes.
ABORT_IN_FLIGHT = 300
TARGET_SLOW_SHARE = 3.0  # percent
TARGET_MEAN_RATIO = 0.3
#: With endpoint health: p99 against round robin's and against the two healthy instances'.
TARGET_P99_VS_RR = 0.25
TARGET_P99_VS_FLOOR = 2.5
#: The CDF plot the docs' benchmark page shows.
PLOT = Path(__file__).resolve().parent.parent / "docs" / "_generated" / "tail-latency-cdf.png"
PATH = "/x"

Call = Callable[[], Awaitable[tuple[bool, str | None]]]


def _mesh_variant(
    addrs: list[str], balancer: meshclient.Balancer | None, *, health: bool = True
) -> Callable[[], Any]:
    def make() -> tuple[meshclient.AsyncClient, Call]:
        if health:
            service = meshclient.Service(addrs, balancer=balancer)
        else:
            service = meshclient.Service(addrs, balancer=balancer, outlier=None)
        client = meshclient.AsyncClient(
            services={"svc": service},
            policy=meshclient.Policy(timeout=meshclient.Timeout(total=5.0)),
        )

        async def call() -> tuple[bool, str | None]:
            response = await client.get("http://svc" + PATH)
            return response.status_code == 200, response.headers.get("x-backend")

        return client, call

    return make


def _raw_round_robin(addrs: list[str]) -> Callable[[], Any]:
    def make() -> tuple[httpx.AsyncClient, Call]:
        client = httpx.AsyncClient(timeout=5.0)
        urls = [f"http://{addr}{PATH}" for addr in addrs]
        counter = [0]

        async def call() -> tuple[bool, str | None]:
            url = urls[counter[0] % len(urls)]
            counter[0] += 1
            response = await client.get(url)
            return response.status_code == 200, response.headers.get("x-backend")

        return client, call

    return make


def _summarise(name: str, load: LoadResult, slow_name: str) -> dict[str, Any]:
    latencies = sorted(r.latency * 1000 for r in load.records if r.ok)
    served = Counter(r.backend for r in load.records if r.ok)
    ok = len(latencies)
    errors = Counter(r.error or "non-200" for r in load.records if not r.ok)
    return {
        "variant": name,
        "calls": load.scheduled,
        "ok": ok,
        "errors": sum(errors.values()),
        "dropped": load.dropped + load.unfinished,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "p99.9_ms": percentile(latencies, 99.9),
        "mean_ms": statistics.fmean(latencies) if latencies else math.nan,
        "slow_share_%": served.get(slow_name, 0) / ok * 100 if ok else math.nan,
        "cpu_us_per_call": load.cpu_seconds / max(1, load.scheduled) * 1e6,
        "overloaded_at_s": load.aborted_at,
        "max_lag_ms": load.max_start_lag * 1000,
        "max_gc_ms": load.max_gc_pause * 1000,
        "full_gcs": load.full_collections,
        "by_backend": dict(served),
        "error_kinds": dict(errors),
    }


async def _measure(
    make: Callable[[], Any], procs: list[BackendProc], *, duration: float, warmup: float
) -> tuple[LoadResult, dict[str, int], dict[str, Any] | None]:
    client, call = make()
    async with client:
        if warmup:
            await run_open_loop(
                call,
                rate=RATE,
                duration=warmup,
                max_in_flight=MAX_IN_FLIGHT,
                abort_in_flight=ABORT_IN_FLIGHT,
            )
        before = await asyncio.to_thread(lambda: {p.name: p.count() for p in procs})
        load = await run_open_loop(
            call,
            rate=RATE,
            duration=duration,
            max_in_flight=MAX_IN_FLIGHT,
            abort_in_flight=ABORT_IN_FLIGHT,
        )
        after = await asyncio.to_thread(lambda: {p.name: p.count() for p in procs})
        snapshot = client.snapshot() if isinstance(client, meshclient.AsyncClient) else None
    return load, {k: after[k] - before[k] for k in after}, snapshot


def run(*, quick: bool) -> ScenarioResult:
    duration, warmup = (2.0, 0.5) if quick else (10.0, 1.0)
    result = ScenarioResult(
        NAME,
        f"open loop {RATE:.0f} calls/s, 3 instances, one +{SLOW_DELAY * 1000:.0f} ms",
        [
            "variant",
            "calls",
            "errors",
            "dropped",
            "p50_ms",
            "p99_ms",
            "p99.9_ms",
            "mean_ms",
            "slow_share_%",
            "mean_vs_raw",
            "cpu_us_per_call",
            "max_lag_ms",
            "max_gc_ms",
            "overloaded_at_s",
        ],
        params={
            "rate": RATE,
            "duration_s": duration,
            "warmup_s": warmup,
            "slow_delay_s": SLOW_DELAY,
            "max_in_flight": MAX_IN_FLIGHT,
        },
    )
    specs = [{"name": "fast1"}, {"name": "fast2"}, {"name": "slow", "delay": SLOW_DELAY}]
    with backends(specs) as procs:
        addrs = [p.addr for p in procs]
        healthy = addrs[:2]
        variants: list[tuple[str, Callable[[], Any], list[str]]] = [
            ("raw httpx round robin", _raw_round_robin(addrs), addrs),
            ("mesh RoundRobin", _mesh_variant(addrs, meshclient.RoundRobin()), addrs),
            ("mesh LeastLoaded", _mesh_variant(addrs, meshclient.LeastLoaded()), addrs),
            ("mesh PeakEwma, health off", _mesh_variant(addrs, None, health=False), addrs),
            ("mesh PeakEwma (default)", _mesh_variant(addrs, None), addrs),
            ("mesh floor: 2 healthy only", _mesh_variant(healthy, None), healthy),
        ]
        snapshots: dict[str, Any] = {}
        curves: dict[str, list[float]] = {}
        for name, make, _ in variants:
            load, served, snapshot = asyncio.run(
                _measure(make, procs, duration=duration, warmup=warmup)
            )
            curves[name] = sorted(r.latency * 1000 for r in load.records if r.ok)
            row = _summarise(name, load, "slow")
            row["backend_counts"] = served
            result.rows.append(row)
            if snapshot is not None:
                snapshots[name] = snapshot
        result.extra["snapshots"] = snapshots
    raw = result.rows[0]
    for row in result.rows:
        # An overloaded raw run has no comparable mean.
        row["mean_vs_raw"] = None if raw["overloaded_at_s"] else row["mean_ms"] / raw["mean_ms"]
    by_name = {row["variant"]: row for row in result.rows}
    ewma, rr = by_name["mesh PeakEwma, health off"], by_name["mesh RoundRobin"]
    default, floor = by_name["mesh PeakEwma (default)"], by_name["mesh floor: 2 healthy only"]
    result.checks.append(
        Check("PeakEwma slow-instance share", ewma["slow_share_%"], "<=", TARGET_SLOW_SHARE, " %")
    )
    result.checks.append(
        Check(
            "PeakEwma mean / RoundRobin mean",
            ewma["mean_ms"] / rr["mean_ms"],
            "<=",
            TARGET_MEAN_RATIO,
            "x",
        )
    )
    result.checks.append(
        Check(
            "health on: p99 / RoundRobin p99",
            default["p99_ms"] / rr["p99_ms"],
            "<=",
            TARGET_P99_VS_RR,
            "x",
        )
    )
    result.checks.append(
        Check(
            "health on: p99 / 2-healthy floor p99",
            default["p99_ms"] / floor["p99_ms"],
            "<=",
            TARGET_P99_VS_FLOOR,
            "x",
        )
    )
    note = _plot(curves)
    if note:
        result.notes.append(note)
    for row in result.rows:
        if row["overloaded_at_s"] is not None:
            result.notes.append(
                f"{row['variant']}: OVERLOADED - more than {ABORT_IN_FLIGHT} calls outstanding "
                f"at t={row['overloaded_at_s']:.1f} s, run stopped; its latencies cover only "
                f"the calls that finished"
            )
        counted = sum(row["backend_counts"].values())
        if counted != row["ok"] + row["errors"]:
            result.notes.append(
                f"{row['variant']}: backends counted {counted} requests for "
                f"{row['ok'] + row['errors']} finished calls (retries or lost calls)"
            )
        if row["errors"] or row["dropped"]:
            result.notes.append(
                f"{row['variant']}: {row['errors']} errors {row['error_kinds']}, "
                f"{row['dropped']} dropped/unfinished"
            )
    return result


def _plot(curves: dict[str, list[float]]) -> str | None:
    """The latency CDF of every variant as a PNG for the docs; a note if it cannot be drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no CDF plot written"
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots(figsize=(8, 4.5))
    for name, latencies in curves.items():
        if latencies:
            n = len(latencies)
            axes.plot(latencies, [(i + 1) / n for i in range(n)], label=name)
    axes.set_xscale("log")
    axes.set_xlabel("latency from scheduled start (ms, log scale)")
    axes.set_ylabel("share of calls")
    axes.set_title(f"{RATE:.0f} calls/s, 3 instances, one +{SLOW_DELAY * 1000:.0f} ms")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(PLOT, dpi=110)
    plt.close(figure)
    return f"CDF plot written to {PLOT}"
