"""Scenarios ``partial_outage`` and ``black_hole``: endpoint health against a failing instance.

Three backend processes; an open loop of 300 idempotent GETs/s through one
``meshclient.AsyncClient``. Each run first warms the client up with all three instances
healthy (connections open, latency estimates equal), then turns one instance bad through its
admin API and measures for 10 s from that moment. Without the warm-up the bad instance would
start with cold connections, and the balancer's latency estimate alone would starve it, so
the run would say nothing about ejection.

Partial outage: the bad instance answers 503 to everything; meshclient's defaults. Success must
stay ≥ 99.9 %, and from 2 s on (after ejection) the bad instance may only get probes: ≤ 2 % of
the requests the backends receive (``/__stats`` counts at 2 s and at the end).

Black hole: the bad instance accepts connections and reads requests but never answers
(``hang``); ``Policy(timeout=Timeout(attempt=0.2))``. The p99 of successful calls must stay
≤ 250 ms, and success ≥ 99.9 %.

A hook (``HookLog``) records when meshclient ejected and readmitted the instance. The full run
adds a control row with endpoint health off (``Service(outlier=None)``), not checked, so the
difference health makes is visible.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import meshclient

from .hooklog import HookLog
from .loadgen import Event, run_open_loop
from .procs import BackendProc, backends
from .report import Check, ScenarioResult, percentile

OUTAGE_NAME = "partial_outage"
BLACK_HOLE_NAME = "black_hole"
RATE = 300.0
EJECTED_FROM = 2.0  # seconds into the measured run
ATTEMPT_TIMEOUT = 0.2
TARGET_SUCCESS = 99.9  # percent
TARGET_FAILING_SHARE = 2.0  # percent of backend requests after ejection
TARGET_BLACKHOLE_P99 = 250.0  # ms
PATH = "/x"
BAD = "bad"

COLUMNS = [
    "variant",
    "calls",
    "success_%",
    "p50_ms",
    "p99_ms",
    "p99.9_ms",
    "max_ms",
    "slow_calls",
    "bad_reqs_0-2s",
    "bad_reqs_2s+",
    "failing_share_%",
    "first_ejection_s",
    "ejections",
    "retries",
    "dropped",
]


async def _run(
    procs: list[BackendProc],
    *,
    fault: dict[str, Any],
    policy: meshclient.Policy | None,
    health: bool,
    balancer: meshclient.Balancer | None,
    duration: float,
    warmup: float,
    slow_ms: float,
) -> dict[str, Any]:
    """Warm up healthy, turn ``bad`` faulty, measure; the bad instance is healthy again after."""
    bad = next(p for p in procs if p.name == BAD)
    log = HookLog({p.addr: p.name for p in procs})
    addrs = [p.addr for p in procs]
    if health:
        service = meshclient.Service(addrs, balancer=balancer)
    else:
        service = meshclient.Service(addrs, balancer=balancer, outlier=None)
    client = meshclient.AsyncClient(
        services={"svc": service}, policy=policy, telemetry=meshclient.Telemetry(hooks=[log])
    )

    async def call() -> tuple[bool, str | None]:
        response = await client.get("http://svc" + PATH)
        return response.status_code == 200, response.headers.get("x-backend")

    marks: dict[float, dict[str, int]] = {}

    def counts() -> dict[str, int]:
        """Requests each backend has received (its ``/__stats``)."""
        return {p.name: p.count() for p in procs}

    def mark(at: float) -> Callable[[], Awaitable[None]]:
        def sync() -> None:
            marks[at] = counts()

        return lambda: asyncio.to_thread(sync)

    times = sorted({float(t) for t in range(1, math.ceil(duration))} | {EJECTED_FROM})
    times = [t for t in times if t < duration]
    try:
        async with client:
            if warmup:
                await run_open_loop(call, rate=RATE, duration=warmup)
            await asyncio.to_thread(bad.behave, **fault)
            marks[0.0] = await asyncio.to_thread(counts)
            log.start()
            load = await run_open_loop(
                call, rate=RATE, duration=duration, events=[Event(t, mark(t)) for t in times]
            )
            snapshot = client.snapshot()
    finally:
        await asyncio.to_thread(bad.behave)
    marks[duration] = counts()
    ok = sorted(r.latency * 1000 for r in load.records if r.ok)
    at2, start, end = marks[EJECTED_FROM], marks[0.0], marks[duration]
    after_total = sum(end.values()) - sum(at2.values())
    after_bad = end[BAD] - at2[BAD]
    # Requests the bad instance received in each second of the run.
    ordered = sorted(marks)
    timeline = [marks[b][BAD] - marks[a][BAD] for a, b in itertools.pairwise(ordered)]
    errors = Counter(r.error or "non-200" for r in load.records if not r.ok)
    return {
        "calls": load.scheduled,
        "success_%": len(ok) / max(1, load.scheduled) * 100,
        "p50_ms": percentile(ok, 50),
        "p99_ms": percentile(ok, 99),
        "p99.9_ms": percentile(ok, 99.9),
        "max_ms": ok[-1] if ok else math.nan,
        "slow_calls": sum(1 for v in ok if v >= slow_ms),
        "bad_reqs_0-2s": at2[BAD] - start[BAD],
        "bad_reqs_2s+": after_bad,
        "failing_share_%": after_bad / after_total * 100 if after_total else math.nan,
        "first_ejection_s": log.first_ejection(BAD),
        "ejections": log.ejection_count,
        "retries": log.retries,
        "budget_refusals": log.budget_refusals,
        "dropped": load.dropped + load.unfinished,
        "error_kinds": dict(errors),
        "bad_reqs_per_s": timeline,
        "backend_reqs": {name: end[name] - start[name] for name in end},
        "max_lag_ms": load.max_start_lag * 1000,
        "max_gc_ms": load.max_gc_pause * 1000,
        "hooks": log.summary(),
        "snapshot": snapshot,
    }


def _scenario(
    name: str,
    title: str,
    *,
    fault: dict[str, Any],
    policy: meshclient.Policy | None,
    slow_ms: float,
    quick: bool,
    extra_variants: tuple[tuple[str, bool, Callable[[], meshclient.Balancer]], ...] = (),
) -> tuple[ScenarioResult, dict[str, Any]]:
    duration, warmup = (3.0, 0.5) if quick else (10.0, 1.0)
    result = ScenarioResult(
        name,
        f"open loop {RATE:.0f} GETs/s for {duration:.0f} s, 3 instances, {title}",
        COLUMNS,
        params={
            "rate": RATE,
            "duration_s": duration,
            "warmup_s": warmup,
            "ejected_from_s": EJECTED_FROM,
            "fault": fault,
            "slow_calls_ms": slow_ms,
        },
    )
    # (label, endpoint health on, balancer factory or None for the default PeakEwma)
    variants: list[tuple[str, bool, Callable[[], meshclient.Balancer] | None]] = [
        ("meshclient defaults (health on)", True, None)
    ]
    if not quick:
        variants.append(("control: health off (outlier=None)", False, None))
        variants.extend(extra_variants)
    specs = [{"name": "ok1"}, {"name": "ok2"}, {"name": BAD}]
    measured: dict[str, Any] = {}
    # Fresh backends for each variant: no connection or counter carries over.
    for variant, health, balancer in variants:
        with backends(specs) as procs:
            data = asyncio.run(
                _run(
                    procs,
                    fault=fault,
                    policy=policy,
                    health=health,
                    balancer=None if balancer is None else balancer(),
                    duration=duration,
                    warmup=warmup,
                    slow_ms=slow_ms,
                )
            )
        result.extra[variant] = {
            "snapshot": data.pop("snapshot"),
            "hooks": data.pop("hooks"),
        }
        result.rows.append({"variant": variant, **data})
        if not measured:
            measured = data  # the checked row: the first
    for row in result.rows:
        result.notes.append(
            f"{row['variant']}: requests per backend {row['backend_reqs']}, to the bad "
            f"instance per second {row['bad_reqs_per_s']}; {row['retries']} retries, "
            f"{row['budget_refusals']} budget refusals, ejections at "
            f"{[e['t'] for e in result.extra[row['variant']]['hooks']['ejections']][:6]} s"
        )
        if row["error_kinds"] or row["dropped"]:
            result.notes.append(
                f"{row['variant']}: errors {row['error_kinds']}, "
                f"{row['dropped']} dropped/unfinished"
            )
    if quick:
        result.notes.append(f"quick mode: {duration:.0f} s instead of 10 s, and no control rows")
    else:
        result.notes.append(
            "only the first row is checked; the others are controls that show what endpoint "
            "health (and the default balancer) contribute"
        )
    return result, measured


def run_partial_outage(*, quick: bool) -> ScenarioResult:
    result, on = _scenario(
        OUTAGE_NAME,
        "one answering 503 to everything",
        fault={"status": 503},
        policy=None,  # meshclient's defaults
        slow_ms=100.0,
        quick=quick,
    )
    result.checks += [
        Check("success", on["success_%"], ">=", TARGET_SUCCESS, " %"),
        Check(
            f"failing instance's share of backend requests from {EJECTED_FROM:.0f} s on",
            on["failing_share_%"],
            "<=",
            TARGET_FAILING_SHARE,
            " %",
        ),
    ]
    if on["first_ejection_s"] is None:
        result.notes.append("the 503 instance was never ejected (no EndpointEjected event)")
    return result


def run_black_hole(*, quick: bool) -> ScenarioResult:
    result, on = _scenario(
        BLACK_HOLE_NAME,
        f"one accepting but never answering, {ATTEMPT_TIMEOUT * 1000:.0f} ms attempt timeout",
        fault={"hang": True},
        policy=meshclient.Policy(timeout=meshclient.Timeout(attempt=ATTEMPT_TIMEOUT)),
        slow_ms=ATTEMPT_TIMEOUT * 1000,
        quick=quick,
        # PeakEwma steers away from an endpoint with outstanding requests and a 200 ms sample
        # before health sees 5 failures in a row; round robin leaves the job to ejection.
        extra_variants=(("control: RoundRobin, health on", True, meshclient.RoundRobin),),
    )
    result.checks += [
        Check("success", on["success_%"], ">=", TARGET_SUCCESS, " %"),
        Check("p99 of successful calls", on["p99_ms"], "<=", TARGET_BLACKHOLE_P99, " ms"),
    ]
    result.notes.append(
        f"slow_calls: successful calls that took >= {ATTEMPT_TIMEOUT * 1000:.0f} ms "
        "(an attempt timed out on the black hole before a retry elsewhere)"
    )
    return result
