"""Scenario 3: open-loop tail latency with one slow instance among three.

Three backend processes, one answering after 50 ms. An open-loop generator offers 600 calls/s
(latency measured from each call's scheduled time); the mesh runs with each balancer in turn,
with endpoint health off (``Service(outlier=None)``, the core client) and on (the default,
which also ejects latency outliers), then with only the two healthy instances (the floor).
Raw httpx round-robining over the three addresses is the same-run reference. The instance that
answered comes from ``x-backend``; a hook counts ejections.

Checks: the core client's (health off) PeakEwma sends ≤ 3 % to the slow instance and has a mean
≤ 0.3x round robin's; with health on, the default stack's p99 is ≤ 0.25x round robin's
(health off, i.e. plain round robin) and ≤ 2.5x the floor's.

Every call's latency also goes into a fixed-size histogram per variant (``hist``: bounded
memory whatever the rate or duration), from which the CDF plot for the docs is drawn.
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

from .hist import LatencyHistogram
from .hooklog import HookLog
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
    addrs: list[str],
    balancer: Callable[[], meshclient.Balancer] | None,
    log: HookLog,
    *,
    health: bool = True,
) -> Callable[[], Any]:
    def make() -> tuple[meshclient.AsyncClient, Call]:
        chosen = None if balancer is None else balancer()
        if health:
            service = meshclient.Service(addrs, balancer=chosen)
        else:
            service = meshclient.Service(addrs, balancer=chosen, outlier=None)
        client = meshclient.AsyncClient(
            services={"svc": service},
            policy=meshclient.Policy(timeout=meshclient.Timeout(total=5.0)),
            telemetry=meshclient.Telemetry(hooks=[log]),
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
    make: Callable[[], Any],
    procs: list[BackendProc],
    log: HookLog | None,
    *,
    duration: float,
    warmup: float,
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
        if log is not None:
            log.start()
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


#: Percentiles kept in the JSON per variant (from the histogram).
LADDER = (50.0, 90.0, 99.0, 99.5, 99.9, 99.99, 100.0)


def run(*, quick: bool) -> ScenarioResult:
    duration, warmup = (1.5, 0.5) if quick else (10.0, 1.0)
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
            "ejections",
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
        log = HookLog({p.addr: p.name for p in procs})
        rr, ll = meshclient.RoundRobin, meshclient.LeastLoaded
        variants: list[tuple[str, Callable[[], Any], HookLog | None]] = [
            ("raw httpx round robin", _raw_round_robin(addrs), None),
            ("mesh RoundRobin, health off", _mesh_variant(addrs, rr, log, health=False), log),
            ("mesh RoundRobin, health on", _mesh_variant(addrs, rr, log), log),
            ("mesh LeastLoaded, health on", _mesh_variant(addrs, ll, log), log),
            ("mesh PeakEwma, health off", _mesh_variant(addrs, None, log, health=False), log),
            ("mesh PeakEwma, health on (default)", _mesh_variant(addrs, None, log), log),
            ("mesh floor: 2 healthy only", _mesh_variant(healthy, None, log), log),
        ]
        snapshots: dict[str, Any] = {}
        histograms: dict[str, LatencyHistogram] = {}
        for name, make, hook_log in variants:
            load, served, snapshot = asyncio.run(
                _measure(make, procs, hook_log, duration=duration, warmup=warmup)
            )
            histograms[name] = LatencyHistogram(r.latency for r in load.records if r.ok)
            row = _summarise(name, load, "slow")
            row["backend_counts"] = served
            if hook_log is not None:
                row["ejections"] = hook_log.ejection_count
                row["ejection_log"] = hook_log.ejections[:10]
            result.rows.append(row)
            if snapshot is not None:
                snapshots[name] = snapshot
            del load  # only the histogram is kept across variants
        result.extra["snapshots"] = snapshots
        result.extra["percentiles_ms"] = {
            name: {str(q): h.percentile(q) * 1000 for q in LADDER} for name, h in histograms.items()
        }
    raw = result.rows[0]
    for row in result.rows:
        # An overloaded raw run has no comparable mean.
        row["mean_vs_raw"] = None if raw["overloaded_at_s"] else row["mean_ms"] / raw["mean_ms"]
    by_name = {row["variant"]: row for row in result.rows}
    ewma, rr_off = by_name["mesh PeakEwma, health off"], by_name["mesh RoundRobin, health off"]
    default = by_name["mesh PeakEwma, health on (default)"]
    floor = by_name["mesh floor: 2 healthy only"]
    result.checks.append(
        Check(
            "health off: PeakEwma slow-instance share",
            ewma["slow_share_%"],
            "<=",
            TARGET_SLOW_SHARE,
            " %",
        )
    )
    result.checks.append(
        Check(
            "health off: PeakEwma mean / RoundRobin mean",
            ewma["mean_ms"] / rr_off["mean_ms"],
            "<=",
            TARGET_MEAN_RATIO,
            "x",
        )
    )
    result.checks.append(
        Check(
            "health on (default): p99 / RoundRobin (health off) p99",
            default["p99_ms"] / rr_off["p99_ms"],
            "<=",
            TARGET_P99_VS_RR,
            "x",
        )
    )
    result.checks.append(
        Check(
            "health on (default): p99 / 2-healthy floor p99",
            default["p99_ms"] / floor["p99_ms"],
            "<=",
            TARGET_P99_VS_FLOOR,
            "x",
        )
    )
    rr_on = by_name["mesh RoundRobin, health on"]
    result.notes.append(
        "round robin for the p99 check is plain round robin (health off, as in the core "
        f"client); against RoundRobin with health on the ratio is "
        f"{default['p99_ms'] / rr_on['p99_ms']:.3f}x"
    )
    for row in result.rows:
        first = next(
            (e for e in row.get("ejection_log", []) if e["endpoint"] == "slow"),
            None,
        )
        if first is not None:
            result.notes.append(
                f"{row['variant']}: the slow instance was ejected at t={first['t']:.2f} s "
                f"({first['reason']}, {first['duration_s']:.1f} s)"
            )
    note = _plot(histograms, quick=quick)
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


def _plot(histograms: dict[str, LatencyHistogram], *, quick: bool) -> str | None:
    """The latency CDF of every variant as a PNG for the docs; a note if it cannot be drawn.

    Left: the CDF (share of calls at or below a latency). Right: the same curves as the
    share of calls slower than a latency on a log scale, where p99 and p99.9 are visible.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no CDF plot written"
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    for name, histogram in histograms.items():
        points = histogram.cdf()
        if not points:
            continue
        xs = [x * 1000 for x, _ in points]
        style = "--" if name.startswith("raw") else "-"
        left.step(xs, [y for _, y in points], style, where="post", label=name, linewidth=1.2)
        # Share slower than x; the last point (everything at or below the max) is dropped.
        tail = [(x * 1000, 1.0 - y) for x, y in points if y < 1.0]
        if tail:
            right.step(
                [x for x, _ in tail],
                [y for _, y in tail],
                style,
                where="post",
                label=name,
                linewidth=1.2,
            )
    left.set_xscale("log")
    left.set_xlabel("latency from scheduled start (ms, log scale)")
    left.set_ylabel("share of calls at or below")
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=7, loc="lower right")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("latency from scheduled start (ms, log scale)")
    right.set_ylabel("share of calls slower (log scale)")
    for q, label in ((0.01, "p99"), (0.001, "p99.9")):
        right.axhline(q, color="grey", linewidth=0.6, linestyle=":")
        right.annotate(
            label,
            (1, q),
            xycoords=("axes fraction", "data"),
            fontsize=7,
            ha="right",
            va="bottom",
            color="grey",
        )
    right.grid(True, which="both", alpha=0.3)
    mode = " (quick run)" if quick else ""
    figure.suptitle(
        f"{RATE:.0f} calls/s open loop, 3 instances, one +{SLOW_DELAY * 1000:.0f} ms{mode}"
    )
    figure.tight_layout()
    figure.savefig(PLOT, dpi=110)
    plt.close(figure)
    return f"CDF plot written to {PLOT}"
