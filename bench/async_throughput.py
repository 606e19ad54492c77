"""Scenario 2: async throughput with 64 concurrent callers against one backend process.

Raw ``httpx.AsyncClient()`` (default limits) against ``meshclient.AsyncClient``. Warm: requests
per second over a window after a warm-up, on one client. Cold: requests completed within the
first second by a freshly built client (a new one each repetition), where httpcore's single
pool suffers most. Variants alternate so drift hits both alike; medians are reported.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from typing import Any

import httpx

import meshclient

from .procs import BackendProc, backends
from .report import Check, ScenarioResult, median

NAME = "async_throughput"
CONCURRENCY = 64
#: Warm requests per second at concurrency 64, at least this many times raw httpx's.
TARGET_WARM = 3.0
#: Requests a fresh client completes in its first second, at least this many times raw's.
TARGET_COLD = 2.0
PATH = "/x"
#: Upper bound on requests per worker per run (the loops also stop on time).
MAX_PER_WORKER = 1_000_000
STOP_TIMEOUT = 15.0


def _raw(backend: BackendProc) -> tuple[httpx.AsyncClient, str]:
    return httpx.AsyncClient(), backend.url + PATH


def _mesh(backend: BackendProc) -> tuple[httpx.AsyncClient, str]:
    client = meshclient.AsyncClient(services={"svc": [backend.addr]})
    return client, "http://svc" + PATH


Make = Callable[[BackendProc], tuple[httpx.AsyncClient, str]]


class _Load:
    """``CONCURRENCY`` workers in a closed loop; counts completions and errors."""

    def __init__(self, client: httpx.AsyncClient, url: str) -> None:
        self.client, self.url = client, url
        self.done = 0
        self.errors = 0
        self.stopping = False
        self.tasks: list[asyncio.Task[None]] = []

    async def _worker(self) -> None:
        for _ in range(MAX_PER_WORKER):
            if self.stopping:
                return
            try:
                response = await self.client.get(self.url)
            except Exception:  # any failure counts; the loop is bounded by count and time
                self.errors += 1
                continue
            if response.status_code == 200:
                self.done += 1
            else:
                self.errors += 1

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._worker()) for _ in range(CONCURRENCY)]

    async def stop(self) -> None:
        self.stopping = True
        _, pending = await asyncio.wait(self.tasks, timeout=STOP_TIMEOUT)
        for task in pending:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def _warm(make: Make, backend: BackendProc, warmup: float, window: float) -> dict[str, Any]:
    client, url = make(backend)
    async with client:
        load = _Load(client, url)
        load.start()
        await asyncio.sleep(warmup)
        n0, cpu0, t0 = load.done, time.process_time(), time.perf_counter()
        await asyncio.sleep(window)
        n1, cpu1, t1 = load.done, time.process_time(), time.perf_counter()
        await load.stop()
    n = n1 - n0
    return {"rps": n / (t1 - t0), "cpu_us": (cpu1 - cpu0) / max(1, n) * 1e6, "errors": load.errors}


async def _cold(make: Make, backend: BackendProc) -> dict[str, Any]:
    client, url = make(backend)
    async with client:
        load = _Load(client, url)
        cpu0, t0 = time.process_time(), time.perf_counter()
        load.start()
        await asyncio.sleep(1.0 - (time.perf_counter() - t0))
        n, cpu1 = load.done, time.process_time()
        await load.stop()
    return {"requests": n, "cpu_us": (cpu1 - cpu0) / max(1, n) * 1e6, "errors": load.errors}


def _run(coro_factory: Callable[[], Any]) -> dict[str, Any]:
    gc.collect()
    result: dict[str, Any] = asyncio.run(coro_factory())
    time.sleep(0.2)  # let the backend close the old connections
    return result


def run(*, quick: bool) -> ScenarioResult:
    warm_reps, warmup, window, cold_reps = (1, 0.3, 1.0, 1) if quick else (2, 1.0, 4.0, 3)
    result = ScenarioResult(
        NAME,
        f"{CONCURRENCY} concurrent callers, one backend",
        [
            "variant",
            "warm_req_per_s",
            "warm_cpu_us_per_req",
            "warm_vs_raw",
            "cold_req_first_s",
            "cold_cpu_us_per_req",
            "cold_vs_raw",
        ],
        params={
            "concurrency": CONCURRENCY,
            "warm_reps": warm_reps,
            "warmup_s": warmup,
            "window_s": window,
            "cold_reps": cold_reps,
        },
    )
    variants: dict[str, Make] = {"raw httpx": _raw, "meshclient": _mesh}
    warm: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    cold: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    names = list(variants)
    with backends([{"name": "b1"}]) as (backend,):
        for rep in range(max(warm_reps, cold_reps)):
            order = names if rep % 2 == 0 else names[::-1]
            for name in order:
                if rep < cold_reps:
                    cold[name].append(_run(lambda n=name: _cold(variants[n], backend)))
                if rep < warm_reps:
                    warm[name].append(
                        _run(lambda n=name: _warm(variants[n], backend, warmup, window))
                    )
    for name in names:
        result.rows.append(
            {
                "variant": name,
                "warm_req_per_s": median([w["rps"] for w in warm[name]]),
                "warm_cpu_us_per_req": median([w["cpu_us"] for w in warm[name]]),
                "cold_req_first_s": median([float(c["requests"]) for c in cold[name]]),
                "cold_cpu_us_per_req": median([c["cpu_us"] for c in cold[name]]),
                "errors": sum(w["errors"] for w in warm[name])
                + sum(c["errors"] for c in cold[name]),
                "warm_runs": warm[name],
                "cold_runs": cold[name],
            }
        )
    raw, mesh = result.rows
    for row in result.rows:
        row["warm_vs_raw"] = row["warm_req_per_s"] / raw["warm_req_per_s"]
        row["cold_vs_raw"] = row["cold_req_first_s"] / max(1.0, raw["cold_req_first_s"])
    result.checks.append(
        Check("meshclient warm req/s vs raw", mesh["warm_vs_raw"], ">=", TARGET_WARM, "x")
    )
    result.checks.append(
        Check(
            "meshclient cold first-second requests vs raw",
            mesh["cold_vs_raw"],
            ">=",
            TARGET_COLD,
            "x",
        )
    )
    for row in result.rows:
        if row["errors"]:
            result.notes.append(f"{row['variant']}: {row['errors']} errors or non-200 answers")
    return result
