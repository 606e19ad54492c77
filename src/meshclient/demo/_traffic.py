"""The same open-loop traffic through two clients: plain httpx (round robin + tenacity) and
meshclient with its defaults.

Calls are scheduled at fixed times whatever happened to earlier ones, and a call's latency
counts from its scheduled time, so a stalled client shows up as latency instead of silently
sending less (no coordinated omission). Each client has its own copy of the mesh, so the
backend request counts (for load amplification) belong to one client.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import tenacity

import meshclient

from ..dashboard import CallStats
from ._mesh import Mesh

__all__ = ["Call", "Side", "drive", "httpx_side", "mesh_side", "percentile"]

#: Most calls in flight per client; past it a scheduled call is dropped and counted as failed.
MAX_IN_FLIGHT = 1000
#: Seconds to wait for calls still in flight once the last one was scheduled.
DRAIN_TIMEOUT = 10.0
#: Per call, over all attempts: what a caller would give up after.
CALL_TIMEOUT = 5.0


@dataclass
class Call:
    """One finished logical call."""

    at: float
    service: str
    ok: bool
    latency: float
    backend: str | None
    error: str | None = None


@dataclass
class Side:
    """One client under test, the mesh it talks to and what it saw."""

    label: str
    mesh: Mesh
    send: Callable[[str, str], Awaitable[httpx.Response]]
    close: Callable[[], Awaitable[None]]
    client: Any = None
    calls: list[Call] = field(default_factory=list)
    dropped: int = 0
    stats: CallStats = field(default_factory=CallStats)
    in_flight: int = 0

    def by_backend(self, since: float = -math.inf) -> Counter[str]:
        return Counter(c.backend for c in self.calls if c.backend and c.at >= since)

    def latencies(self, ok_only: bool = True) -> list[float]:
        return sorted(c.latency for c in self.calls if c.ok or not ok_only)


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted values (``q`` in 0..100); NaN without values."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def httpx_side(mesh: Mesh) -> Side:
    """What many services do today: round robin over the addresses, retried with tenacity.

    Three attempts, exponential backoff from 25 ms, retrying connection errors and 5xx; each
    attempt takes the next address in the rotation (the retry re-runs the function that picks
    it). A fresh tenacity controller per call (sharing one is unsafe, jd/tenacity#93).
    """
    client = httpx.AsyncClient(timeout=CALL_TIMEOUT, trust_env=False)
    rotations = {
        service: itertools.cycle([f"http://{a}" for a in mesh.addresses(service)])
        for service in mesh.services()
    }

    async def attempt(service: str, path: str) -> httpx.Response:
        response = await client.get(next(rotations[service]) + path)
        await response.aread()
        return response

    async def send(service: str, path: str) -> httpx.Response:
        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(3),
            wait=tenacity.wait_exponential(multiplier=0.025, max=0.25),
            retry=(
                tenacity.retry_if_exception_type(httpx.TransportError)
                | tenacity.retry_if_result(lambda r: r.status_code >= 500)
            ),
            retry_error_callback=lambda state: state.outcome.result(),  # type: ignore[union-attr]
        )
        response: httpx.Response = await retrying(attempt, service, path)
        return response

    return Side("httpx + tenacity", mesh, send, client.aclose, client=client)


def mesh_side(mesh: Mesh) -> Side:
    """meshclient with its defaults: logical names, P2C peak-EWMA, budgeted retries."""
    client = meshclient.AsyncClient(
        services={service: mesh.addresses(service) for service in mesh.services()},
        timeout=CALL_TIMEOUT,
        trust_env=False,
    )

    async def send(service: str, path: str) -> httpx.Response:
        return await client.get(f"http://{service}{path}")

    return Side("meshclient", mesh, send, client.aclose, client=client)


async def drive(
    sides: list[Side],
    *,
    rate: float,
    duration: float,
    schedule: list[tuple[float, Callable[[], None], str]],
    on_event: Callable[[float, str], None],
    stop: asyncio.Event,
) -> float:
    """Offer ``rate`` calls/s for ``duration`` s to every side; 3 of 4 go to users.

    ``schedule`` holds ``(offset, action, message)``: blocking actions (kill or revive an
    instance) run in a worker thread at ``offset`` seconds. Returns the seconds it ran.
    """
    loop_time = time.perf_counter
    start = loop_time()
    total = int(rate * duration)
    interval = 1.0 / rate
    tasks: set[asyncio.Task[None]] = set()
    services = ["users", "users", "orders", "users"]

    async def one(side: Side, offset: float, service: str, index: int) -> None:
        side.in_flight += 1
        backend: str | None = None
        error: str | None = None
        try:
            response = await side.send(service, f"/v1/{service}/{index}")
            ok = response.status_code == 200
            backend = response.headers.get("x-backend")
            if not ok:
                error = str(response.status_code)
        except Exception as exc:
            ok, error = False, type(exc).__name__
        finally:
            side.in_flight -= 1
        latency = loop_time() - start - offset
        side.calls.append(Call(offset, service, ok, latency, backend, error))
        side.stats.record(service, ok, latency)

    async def fire(offset: float, action: Callable[[], None], message: str) -> None:
        delay = start + offset - loop_time()
        if delay > 0:
            await asyncio.sleep(delay)
        await asyncio.to_thread(action)
        on_event(loop_time() - start, message)

    events = [asyncio.create_task(fire(*item)) for item in schedule]
    index = 0
    try:
        while index < total and not stop.is_set():
            now = loop_time() - start
            due = index * interval
            if now < due:
                await asyncio.sleep(min(due - now, 0.05))
                continue
            while index < total and index * interval <= now:
                offset = index * interval
                service = services[index % len(services)]
                for side in sides:
                    if side.in_flight >= MAX_IN_FLIGHT:
                        side.dropped += 1
                        side.calls.append(Call(offset, service, False, 0.0, None, "dropped"))
                        continue
                    task = asyncio.create_task(one(side, offset, service, index))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                index += 1
        if tasks:
            await asyncio.wait(set(tasks), timeout=DRAIN_TIMEOUT)
    finally:
        for task in [*tasks, *events]:
            task.cancel()
        await asyncio.gather(*tasks, *events, return_exceptions=True)
    return loop_time() - start
