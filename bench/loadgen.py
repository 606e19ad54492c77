"""An open-loop load generator on the asyncio event loop.

Calls are scheduled at fixed intervals whatever happens to earlier calls; a call's latency is
measured from its *scheduled* time, so a stalled event loop or a slow client shows up as
latency instead of silently lowering the offered load (no coordinated omission). When more
than ``max_in_flight`` calls are outstanding, a scheduled call is dropped and counted.

A client that cannot keep up piles up outstanding calls, and some (httpcore's pool) then spend
CPU in proportion to the backlog until the event loop freezes for minutes. So past
``abort_in_flight`` outstanding calls the run stops scheduling, records ``aborted_at``, counts the
rest as dropped and gives outstanding calls a short grace period before cancelling them.

The harness's own heap (httpx, the OpenTelemetry SDK, matplotlib once imported: ~50-100k
objects) makes a full garbage collection take 20-40 ms on this machine, which would show up as
a stall of every call in flight, in every variant alike. So the run collects and
then freezes what exists before it starts (``gc.freeze``: moved out of the collector's sight,
as long-running servers do) and unfreezes it afterwards; the GC pauses that remain are the
ones caused by the run's own garbage, and are still reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CallRecord", "Event", "LoadResult", "run_open_loop"]

#: Seconds to wait for outstanding calls after the last one was scheduled.
DRAIN_TIMEOUT = 15.0
#: The same after an aborted (overloaded) run.
ABORT_DRAIN_TIMEOUT = 3.0


@dataclass
class CallRecord:
    """One call: scheduled offset from the start, latency from that time, outcome."""

    at: float
    latency: float
    ok: bool
    backend: str | None = None
    error: str | None = None


@dataclass
class Event:
    """A coroutine run (awaited, in its own task) ``at`` seconds after the start."""

    at: float
    action: Callable[[], Awaitable[object]]


@dataclass
class LoadResult:
    records: list[CallRecord] = field(default_factory=list)
    scheduled: int = 0
    dropped: int = 0
    unfinished: int = 0
    #: Largest lag (s) between a call's scheduled time and its actual start: client stalls.
    max_start_lag: float = 0.0
    #: Offset (s) at which the run was stopped for overload, or None.
    aborted_at: float | None = None
    #: (start, end) offsets of each event.
    event_times: list[tuple[float, float]] = field(default_factory=list)
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    #: Longest garbage-collector pause (s) and full collections during the run, to tell the
    #: client process's own stalls from the behaviour under test.
    max_gc_pause: float = 0.0
    full_collections: int = 0


@contextlib.contextmanager
def _watch_gc(result: LoadResult) -> Iterator[None]:
    started = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        result.max_gc_pause = max(result.max_gc_pause, time.perf_counter() - started[0])
        if info.get("generation") == 2:
            result.full_collections += 1

    gc.callbacks.append(on_gc)
    try:
        yield
    finally:
        gc.callbacks.remove(on_gc)


@contextlib.contextmanager
def _unfreeze() -> Iterator[None]:
    try:
        yield
    finally:
        gc.unfreeze()


async def run_open_loop(
    call: Callable[[], Awaitable[tuple[bool, str | None]]],
    *,
    rate: float,
    duration: float,
    max_in_flight: int = 2000,
    abort_in_flight: int | None = None,
    events: Sequence[Event] = (),
) -> LoadResult:
    """Issue ``call()`` at ``rate`` per second for ``duration`` seconds.

    ``call`` returns ``(ok, backend name or None)``; an exception is a failed call.
    """
    # Before the clock starts: a full collection takes tens of ms (see the module docstring).
    gc.collect()
    gc.freeze()
    result = LoadResult()
    total = int(rate * duration)
    interval = 1.0 / rate
    tasks: set[asyncio.Task[None]] = set()
    clock = time.perf_counter
    start = clock()

    async def one(offset: float) -> None:
        try:
            ok, backend = await call()
        except Exception as exc:
            result.records.append(
                CallRecord(offset, clock() - start - offset, False, error=type(exc).__name__)
            )
        else:
            result.records.append(CallRecord(offset, clock() - start - offset, ok, backend))

    async def fire(event: Event) -> None:
        delay = start + event.at - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        began = clock() - start
        await event.action()
        result.event_times.append((began, clock() - start))

    event_tasks = [asyncio.create_task(fire(e)) for e in events]
    cpu0 = time.process_time()
    with _watch_gc(result), _unfreeze():
        index = 0
        while index < total:
            now = clock() - start
            due = index * interval
            if now < due:
                await asyncio.sleep(due - now)
                continue
            if abort_in_flight is not None and len(tasks) > abort_in_flight:
                result.aborted_at = now
                result.dropped += total - index
                break
            # Catch up: everything scheduled up to now starts immediately.
            while index < total and index * interval <= now:
                offset = index * interval
                index += 1
                result.scheduled += 1
                if len(tasks) >= max_in_flight:
                    result.dropped += 1
                    continue
                result.max_start_lag = max(result.max_start_lag, now - offset)
                task = asyncio.create_task(one(offset))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        if tasks:
            grace = DRAIN_TIMEOUT if result.aborted_at is None else ABORT_DRAIN_TIMEOUT
            _, pending = await asyncio.wait(set(tasks), timeout=grace)
            result.unfinished = len(pending)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
    result.cpu_seconds = time.process_time() - cpu0
    result.wall_seconds = clock() - start
    if event_tasks:
        await asyncio.gather(*event_tasks)
    return result
