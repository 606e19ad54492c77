"""Scenario: Linkerd's "Beyond Round Robin" experiment, with callers that give up.

Eleven replicas answer in ~50 ms; after a warm-up one of them turns to 2 s for a while, then
heals. An open loop offers 300 calls/s. Callers give up after 1 s, in two variants: the caller
cancels (``asyncio.wait_for``, as most asyncio code bounds a call), or the mesh's own
``Policy(timeout=1.0)`` ends the call. A cut-off attempt must still teach the balancer that the
replica took at least a second, or the slow replica keeps its share of the traffic and the
success rate drops (the experiment's peak-EWMA result: 99.9 %).

Reported per phase (warm-up, slow, healed): success, latency percentiles, and the slow
replica's share of the calls (requests it received, from its own counter); and how long after
healing it first served a call again.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

import meshclient

from .loadgen import CallRecord, Event, LoadResult, run_open_loop
from .procs import BackendProc, backends
from .report import Check, ScenarioResult, percentile

NAME = "cut_off"
RATE = 300.0
REPLICAS = 11
FAST_DELAY = 0.05
SLOW_DELAY = 2.0
GIVE_UP = 1.0
#: Targets: success while the replica is slow, its share then, and its return once healed.
TARGET_SLOW_SUCCESS = 99.9  # percent
TARGET_SLOW_SHARE = 0.2  # percent
TARGET_HEALED_SUCCESS = 100.0  # percent
TARGET_BACK_WITHIN = 10.0  # seconds
PATH = "/x"

Call = Callable[[], Awaitable[tuple[bool, str | None]]]


def _phases(quick: bool) -> tuple[float, float, float]:
    """Seconds of warm-up, of the slow phase, and after healing."""
    return (2.0, 4.0, 6.0) if quick else (5.0, 10.0, 15.0)


async def _run(
    variant: str, procs: list[BackendProc], slow: BackendProc, quick: bool
) -> tuple[LoadResult, dict[str, int]]:
    warm, slow_for, healed_for = _phases(quick)
    cancel = variant == "caller cancels"
    policy = meshclient.Policy(timeout=None if cancel else GIVE_UP)
    counts: dict[str, int] = {}
    async with meshclient.AsyncClient(
        services={"svc": [p.addr for p in procs]}, policy=policy
    ) as client:

        async def call() -> tuple[bool, str | None]:
            request = client.get("http://svc" + PATH)
            response = await (asyncio.wait_for(request, GIVE_UP) if cancel else request)
            return response.status_code == 200, response.headers.get("x-backend")

        async def turn(delay: float, mark: str) -> None:
            counts[mark] = await asyncio.to_thread(slow.count)
            await asyncio.to_thread(slow.behave, delay=delay)

        async def mark(name: str) -> None:
            counts[name] = await asyncio.to_thread(slow.count)

        load = await run_open_loop(
            call,
            rate=RATE,
            duration=warm + slow_for + healed_for,
            events=[
                Event(warm, lambda: turn(SLOW_DELAY, "slow_start")),
                Event(warm + slow_for, lambda: turn(FAST_DELAY, "slow_end")),
                Event(warm + slow_for + healed_for - 0.01, lambda: mark("end")),
            ],
        )
    return load, counts


def _phase_row(
    variant: str, phase: str, records: list[CallRecord], received: int | None
) -> dict[str, Any]:
    calls = len(records)
    ok = sum(r.ok for r in records)
    latencies = sorted(r.latency * 1000 for r in records)
    return {
        "variant": variant,
        "phase": phase,
        "calls": calls,
        "success_%": ok / calls * 100 if calls else math.nan,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "p99.9_ms": percentile(latencies, 99.9),
        "slow_share_%": math.nan if received is None else received / max(1, calls) * 100,
    }


def run(*, quick: bool) -> ScenarioResult:
    warm, slow_for, healed_for = _phases(quick)
    result = ScenarioResult(
        NAME,
        f"{REPLICAS} replicas at {FAST_DELAY * 1000:.0f} ms, one turns {SLOW_DELAY:.0f} s; "
        f"{RATE:.0f} calls/s; callers give up after {GIVE_UP:.0f} s",
        ["variant", "phase", "calls", "success_%", "p50_ms", "p99_ms", "p99.9_ms", "slow_share_%"],
        params={
            "rate": RATE,
            "replicas": REPLICAS,
            "warmup_s": warm,
            "slow_s": slow_for,
            "healed_s": healed_for,
            "give_up_s": GIVE_UP,
        },
    )
    specs = [{"name": f"r{i}", "delay": FAST_DELAY} for i in range(REPLICAS)]
    with backends(specs) as procs:
        slow = procs[-1]
        for variant in ("caller cancels", "Policy(timeout=1.0)"):
            load, counts = asyncio.run(_run(variant, procs, slow, quick))
            start, heal = warm, warm + slow_for
            phases = {
                "warm-up": [r for r in load.records if r.at < start],
                "slow": [r for r in load.records if start <= r.at < heal],
                "healed": [r for r in load.records if r.at >= heal],
            }
            received = counts["slow_end"] - counts["slow_start"]
            for phase, records in phases.items():
                result.rows.append(
                    _phase_row(variant, phase, records, received if phase == "slow" else None)
                )
            back = [r.at + r.latency - heal for r in phases["healed"] if r.backend == slow.name]
            back_after = min(back) if back else math.inf
            result.extra[f"{variant}: back after healing s"] = back_after
            slow_row, healed_row = result.rows[-2], result.rows[-1]
            result.checks += [
                Check(
                    f"{variant}: success while slow",
                    slow_row["success_%"],
                    ">=",
                    TARGET_SLOW_SUCCESS,
                    " %",
                ),
                Check(
                    f"{variant}: slow replica's share while slow",
                    slow_row["slow_share_%"],
                    "<=",
                    TARGET_SLOW_SHARE,
                    " %",
                ),
                Check(
                    f"{variant}: success once healed",
                    healed_row["success_%"],
                    ">=",
                    TARGET_HEALED_SUCCESS,
                    " %",
                ),
                Check(
                    f"{variant}: healed replica serves again within",
                    back_after,
                    "<=",
                    TARGET_BACK_WITHIN,
                    " s",
                ),
            ]
            result.notes.append(
                f"{variant}: the slow replica received {received} requests in the slow phase; "
                f"first served again {back_after:.1f} s after healing; "
                f"{load.dropped + load.unfinished} calls dropped or unfinished"
            )
    return result
