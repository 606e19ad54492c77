"""Specification of the bulkhead: limits, FIFO hand-over, exact release, cancellation."""

from __future__ import annotations

import asyncio
import json
import threading

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshclient._bulkhead import Bulkhead, BulkheadFullError
from meshclient._exceptions import MeshError

from helpers import WAIT_LIMIT, eventually, join


def test_bad_configuration_names_class_field_and_value() -> None:
    with pytest.raises(ValueError, match=r"Bulkhead\.max_concurrent must be an int >= 1, got 0"):
        Bulkhead(0)
    with pytest.raises(TypeError, match=r"Bulkhead\.max_queued"):
        Bulkhead(1, max_queued=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"Bulkhead\.queue_timeout must be > 0 or None"):
        Bulkhead(1, max_queued=2, queue_timeout=0)


def test_a_queue_without_a_timeout_waits_within_the_deadline() -> None:
    """``Bulkhead(4, 8)``: the queue's default bound is the call's own deadline."""
    assert Bulkhead(4, 8).queue_timeout is None


def test_full_error_is_a_mesh_error_naming_the_limits() -> None:
    b = Bulkhead(1)
    b.acquire()
    with pytest.raises(BulkheadFullError) as info:
        b.acquire(service="users")
    assert isinstance(info.value, MeshError)
    assert str(info.value) == "bulkhead of service 'users' is full (max_concurrent=1, max_queued=0)"


@given(ops=st.lists(st.booleans(), max_size=200), limit=st.integers(1, 5))
def test_try_acquire_never_exceeds_max_concurrent(ops: list[bool], limit: int) -> None:
    b = Bulkhead(limit)
    held = 0
    for take in ops:
        if take:
            if b.try_acquire():
                held += 1
            else:
                assert held == limit
        elif held:
            b.release()
            held -= 1
        assert b.active == held <= limit


def test_release_without_a_slot_is_a_bug() -> None:
    b = Bulkhead(1)
    with pytest.raises(RuntimeError, match="double release"):
        b.release()


def test_a_release_hands_the_slot_to_the_oldest_queued_thread() -> None:
    b = Bulkhead(1, max_queued=2, queue_timeout=None)
    b.acquire()
    order: list[int] = []
    threads = []
    for i in range(2):
        th = threading.Thread(
            target=lambda i=i: (b.acquire(timeout=WAIT_LIMIT), order.append(i), b.release()),
            daemon=True,
        )
        th.start()
        eventually(lambda i=i: b.queued == i + 1, f"thread {i} queued")
        threads.append(th)
    assert not b.try_acquire()  # queued callers go first
    b.release()
    for i, th in enumerate(threads):
        join(th, f"queued thread {i}")
    assert order == [0, 1]
    assert (b.active, b.queued) == (0, 0)


def test_queue_full_rejects_at_once() -> None:
    b = Bulkhead(1, max_queued=1, queue_timeout=None)
    b.acquire()
    th = threading.Thread(target=lambda: (b.acquire(timeout=WAIT_LIMIT), b.release()), daemon=True)
    th.start()
    eventually(lambda: b.queued == 1, "the thread queued")
    with pytest.raises(BulkheadFullError, match="max_queued=1"):
        b.acquire(timeout=WAIT_LIMIT)
    b.release()
    join(th, "the queued thread")
    assert b.snapshot() == {
        "max_concurrent": 1,
        "max_queued": 1,
        "active": 0,
        "queued": 0,
        "rejected": 1,
    }


def test_queue_timeout_rejects_and_leaves_the_queue() -> None:
    b = Bulkhead(1, max_queued=1, queue_timeout=0.001)
    b.acquire()
    with pytest.raises(BulkheadFullError, match=r"queue_timeout=0\.001"):
        b.acquire()
    assert (b.active, b.queued) == (1, 0)


def test_callers_time_left_bounds_the_queueing() -> None:
    """``queue_timeout=None`` queues until the call's deadline (``timeout``), not past it."""
    b = Bulkhead(1, max_queued=1, queue_timeout=None)
    b.acquire()
    with pytest.raises(BulkheadFullError, match="before the call's deadline"):
        b.acquire(timeout=0.001)
    with pytest.raises(BulkheadFullError, match="before the call's deadline"):
        b.acquire(timeout=-1.0)  # already past it
    assert (b.active, b.queued) == (1, 0)
    shorter = Bulkhead(1, max_queued=1, queue_timeout=0.001)
    shorter.acquire()
    with pytest.raises(BulkheadFullError, match=r"queue_timeout=0\.001"):
        shorter.acquire(timeout=30.0)  # queue_timeout is the shorter bound


@pytest.mark.anyio
async def test_async_callers_time_left_bounds_the_queueing() -> None:
    b = Bulkhead(1, max_queued=1, queue_timeout=None)
    await b.acquire_async()
    with pytest.raises(BulkheadFullError, match="before the call's deadline"):
        await b.acquire_async(timeout=0.001)
    assert (b.active, b.queued) == (1, 0)
    b.release()
    await b.acquire_async(timeout=0.001)  # a free slot needs no time
    assert b.active == 1


def test_many_threads_never_exceed_the_limit_and_release_every_slot() -> None:
    b = Bulkhead(3, max_queued=100, queue_timeout=None)
    peak = 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal peak
        for _ in range(200):
            b.acquire(timeout=WAIT_LIMIT)
            with lock:
                peak = max(peak, b.active)
            b.release()

    threads = [threading.Thread(target=work, daemon=True) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        join(th, "a worker taking and releasing slots")
    assert peak <= 3
    assert (b.active, b.queued) == (0, 0)


@pytest.mark.anyio
async def test_async_waiter_gets_the_released_slot() -> None:
    b = Bulkhead(1, max_queued=1, queue_timeout=None)
    await b.acquire_async()
    got = anyio.Event()

    async def wait() -> None:
        await b.acquire_async()
        got.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        await anyio.wait_all_tasks_blocked()
        assert b.queued == 1
        b.release()
        with anyio.fail_after(WAIT_LIMIT):
            await got.wait()
    assert (b.active, b.queued) == (1, 0)
    b.release()


@pytest.mark.anyio
async def test_cancelled_async_waiter_leaks_nothing() -> None:
    b = Bulkhead(1, max_queued=4, queue_timeout=None)
    await b.acquire_async()
    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(b.acquire_async)
        await anyio.wait_all_tasks_blocked()
        assert b.queued == 3
        tg.cancel_scope.cancel()
    assert (b.active, b.queued) == (1, 0)
    b.release()
    assert b.active == 0


@pytest.mark.anyio
async def test_a_waiter_cancelled_after_being_granted_passes_the_slot_on() -> None:
    b = Bulkhead(1, max_queued=2, queue_timeout=None)
    await b.acquire_async()
    first = asyncio.ensure_future(b.acquire_async())
    second = asyncio.ensure_future(b.acquire_async())
    await anyio.wait_all_tasks_blocked()
    b.release()  # granted to `first`, whose wake-up is still scheduled
    first.cancel()
    with anyio.fail_after(WAIT_LIMIT):
        with pytest.raises(asyncio.CancelledError):
            await first
        await second  # the slot went on to the next waiter
    assert (b.active, b.queued) == (1, 0)
    b.release()
    assert b.active == 0


@pytest.mark.anyio
async def test_async_queue_timeout_rejects() -> None:
    b = Bulkhead(1, max_queued=1, queue_timeout=0.001)
    await b.acquire_async()
    with pytest.raises(BulkheadFullError, match="queue_timeout"):
        await b.acquire_async(service="users")
    assert (b.active, b.queued) == (1, 0)


@pytest.mark.anyio
async def test_a_thread_release_wakes_an_async_waiter() -> None:
    """Sync and async clients share one Service: one counter, one queue."""
    b = Bulkhead(1, max_queued=1, queue_timeout=None)
    b.acquire()
    waiter = asyncio.ensure_future(b.acquire_async())
    await anyio.wait_all_tasks_blocked()
    await anyio.to_thread.run_sync(b.release)
    with anyio.fail_after(WAIT_LIMIT):
        await waiter
    assert b.active == 1
    b.release()


def test_snapshot_and_repr() -> None:
    b = Bulkhead(2)
    b.acquire()
    json.dumps(b.snapshot())
    assert "active=1" in repr(b)
