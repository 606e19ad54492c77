"""Scenarios 5 and 6: endpoint health under a partial outage and a black hole.

Partial outage: three backend processes, one answering 503 to everything; 300 idempotent
GETs/s for 10 s through meshclient's defaults. Success must stay ≥ 99.9 %, and once the
failing instance is ejected (from 2 s on) it may only get probes: ≤ 2 % of the requests the
backends receive.

Black hole: one of three instances accepts connections and never answers; with a 200 ms
attempt timeout the p99 of successful calls must stay ≤ 250 ms and success ≥ 99.9 %.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

import meshclient

from .loadgen import Event, run_open_loop
from .procs import BackendProc, backends
from .report import Check, ScenarioResult, percentile

NAME = "health_faults"
RATE = 300.0
EJECTED_FROM = 2.0  # seconds into the run
TARGET_SUCCESS = 99.9  # percent
TARGET_FAILING_SHARE = 2.0  # percent of backend requests after ejection
TARGET_BLACKHOLE_P99 = 250.0  # ms
PATH = "/x"


def _client(addrs: list[str], policy: meshclient.Policy) -> tuple[Any, Any]:
    client = meshclient.AsyncClient(services={"svc": addrs}, policy=policy)

    async def call() -> tuple[bool, str | None]:
        response = await client.get("http://svc" + PATH)
        return response.status_code == 200, response.headers.get("x-backend")

    return client, call


async def _run(
    procs: list[BackendProc], policy: meshclient.Policy, duration: float
) -> dict[str, Any]:
    marks: dict[str, dict[str, int]] = {}

    def mark(key: str) -> Callable[[], Awaitable[None]]:
        def sync() -> None:
            marks[key] = {p.name: p.count() for p in procs}

        return lambda: asyncio.to_thread(sync)

    client, call = _client([p.addr for p in procs], policy)
    async with client:
        load = await run_open_loop(
            call, rate=RATE, duration=duration, events=[Event(EJECTED_FROM, mark("ejected"))]
        )
        snapshot = client.snapshot()
    end = {p.name: p.count() for p in procs}
    after = {name: end[name] - marks["ejected"][name] for name in end}
    ok = [r.latency * 1000 for r in load.records if r.ok]
    return {
        "calls": load.scheduled,
        "success_%": len(ok) / max(1, load.scheduled) * 100,
        "p50_ms": percentile(sorted(ok), 50),
        "p99_ms": percentile(sorted(ok), 99),
        "after_ejection": after,
        "snapshot": snapshot,
        "dropped": load.dropped + load.unfinished,
    }


def run(*, quick: bool) -> ScenarioResult:
    duration = 4.0 if quick else 10.0
    result = ScenarioResult(
        NAME,
        f"open loop {RATE:.0f} GETs/s for {duration:.0f} s, 3 instances, one failing",
        ["variant", "calls", "success_%", "p50_ms", "p99_ms", "failing_share_%", "dropped"],
        params={"rate": RATE, "duration_s": duration, "ejected_from_s": EJECTED_FROM},
    )
    specs = [{"name": "ok1"}, {"name": "ok2"}, {"name": "bad"}]
    with backends(specs) as procs:
        procs[2].behave(status=503)
        outage = asyncio.run(_run(procs, meshclient.Policy(), duration))
        procs[2].behave(hang=True)
        black_hole = asyncio.run(
            _run(procs, meshclient.Policy(timeout=meshclient.Timeout(attempt=0.2)), duration)
        )
        procs[2].behave()
    for name, data in (
        ("partial outage (503)", outage),
        ("black hole (200 ms attempts)", black_hole),
    ):
        after = data["after_ejection"]
        total = sum(after.values())
        data["failing_share_%"] = after["bad"] / total * 100 if total else math.nan
        result.rows.append({"variant": name, **{k: v for k, v in data.items() if k != "snapshot"}})
        result.extra[name] = data["snapshot"]
    result.checks += [
        Check("partial outage: success", outage["success_%"], ">=", TARGET_SUCCESS, " %"),
        Check(
            "partial outage: failing instance's share after ejection",
            outage["failing_share_%"],
            "<=",
            TARGET_FAILING_SHARE,
            " %",
        ),
        Check("black hole: success", black_hole["success_%"], ">=", TARGET_SUCCESS, " %"),
        Check(
            "black hole: p99 of successes", black_hole["p99_ms"], "<=", TARGET_BLACKHOLE_P99, " ms"
        ),
    ]
    return result
