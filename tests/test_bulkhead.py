"""Specification of the bulkhead: limits, FIFO hand-over, exact release, cancellation."""

from __future__ import annotations

import asyncio
import gc
import json
import linecache
import math
import selectors
import signal
import sys
import threading
import time
from collections.abc import Coroutine
from types import SimpleNamespace
from typing import Any, TypeVar

import anyio
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshclient._bulkhead import Bulkhead, BulkheadFullError
from meshclient._exceptions import MeshError

from helpers import WAIT_LIMIT, eventually, join

T = TypeVar("T")

REQUEST = httpx.Request("GET", "http://users/list")
QUEUE_TIMEOUT_RULE = "a finite number of seconds >= 0, or None (no limit)"


class _InstantSelector(selectors.DefaultSelector):
    """Waits that take no time: when nothing is ready it moves ``now`` on by the wait asked
    for (up to the loop's next timer) instead of sleeping."""

    now = 1000.0

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = super().select(0)
        if not ready:
            if timeout is None:
                raise AssertionError("every task waits and no timer is set: a deadlock")
            self.now += timeout
        return ready


class _VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose seconds pass only while every task waits: timers fire at once, at
    exactly their time, so loop-time measurements are exact and deterministic."""

    def __init__(self) -> None:
        self.virtual = _InstantSelector()
        super().__init__(self.virtual)

    def time(self) -> float:
        return self.virtual.now


def run_in_virtual_time(main: Coroutine[Any, Any, T]) -> T:
    loop = _VirtualTimeLoop()
    try:
        return loop.run_until_complete(main)
    finally:
        loop.close()


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
    with pytest.raises(
        RuntimeError, match=r"^Bulkhead\.release called with no slot held \(double release\?\)$"
    ):
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


@pytest.mark.parametrize(
    ("bad", "error"),
    [("1", TypeError), (True, TypeError), (-0.5, ValueError), (math.inf, ValueError)],
)
def test_bad_queue_timeout_names_field_rule_and_value(bad: object, error: type[Exception]) -> None:
    """Not a number (a bool is no number of seconds), negative or infinite: the message says
    what is allowed and what was given."""
    with pytest.raises(error) as info:
        Bulkhead(1, queue_timeout=bad)  # type: ignore[arg-type]
    assert str(info.value) == f"Bulkhead.queue_timeout must be {QUEUE_TIMEOUT_RULE}, got {bad!r}"


def test_acquire_counts_every_slot_it_takes() -> None:
    b = Bulkhead(3)
    for held in range(1, 4):
        b.acquire()
        assert b.active == held
    with pytest.raises(BulkheadFullError):
        b.acquire()


def test_snapshot_counts_every_rejection() -> None:
    """Rejected at once (queue full) and timed out in the queue: each counts once."""
    full = Bulkhead(1)
    full.acquire()
    timed = Bulkhead(1, max_queued=1, queue_timeout=0.001)
    timed.acquire()
    for b in (full, timed):
        for _ in range(2):
            with pytest.raises(BulkheadFullError):
                b.acquire()
        assert b.snapshot()["rejected"] == 2
        assert (b.active, b.queued) == (1, 0)


def test_an_immediate_rejection_names_the_bulkhead_and_carries_the_request() -> None:
    """Rejected without queueing: no time waited, the caller's request on the error."""
    b = Bulkhead(1)
    b.acquire()
    with pytest.raises(BulkheadFullError) as info:
        b.acquire()
    assert str(info.value) == "bulkhead is full (max_concurrent=1, max_queued=0)"
    with pytest.raises(BulkheadFullError) as info:
        b.acquire(service="users", request=REQUEST)
    assert str(info.value) == "bulkhead of service 'users' is full (max_concurrent=1, max_queued=0)"
    assert info.value.request is REQUEST
    assert info.value.elapsed == 0.0


@pytest.mark.anyio
async def test_an_immediate_async_rejection_names_the_service_and_carries_the_request() -> None:
    b = Bulkhead(1)
    await b.acquire_async()
    with pytest.raises(BulkheadFullError) as info:
        await b.acquire_async(service="users", request=REQUEST)
    assert str(info.value) == "bulkhead of service 'users' is full (max_concurrent=1, max_queued=0)"
    assert info.value.request is REQUEST
    assert info.value.elapsed == 0.0


def test_a_timed_out_thread_reports_service_request_and_time_waited() -> None:
    """The error of a wait that ran out says whose queue, for how long, and carries the
    request; ``elapsed`` is the time spent queueing."""
    b = Bulkhead(1, max_queued=1, queue_timeout=0.001)
    b.acquire()
    start = time.monotonic()
    with pytest.raises(BulkheadFullError) as info:
        b.acquire(service="users", request=REQUEST)
    spent = time.monotonic() - start
    err = info.value
    assert err.request is REQUEST
    assert 0.0 < err.elapsed <= spent
    assert str(err) == (
        "bulkhead of service 'users' is full (max_concurrent=1, max_queued=1):"
        f" no slot within queue_timeout=0.001 ({err.elapsed:.3f} s waited)"
    )


def test_admission_protocol_names_the_calls_service_and_request() -> None:
    """``admit``: rejected at once, or queued and timed out, the error is about the call."""
    call = SimpleNamespace(service="users", request=REQUEST)
    full = Bulkhead(1)
    assert full.admit(call) is None  # type: ignore[arg-type]
    with pytest.raises(BulkheadFullError) as info:
        full.admit(call)  # type: ignore[arg-type]
    assert str(info.value) == "bulkhead of service 'users' is full (max_concurrent=1, max_queued=0)"
    assert info.value.request is REQUEST
    queueing = Bulkhead(1, max_queued=1, queue_timeout=0.001)
    assert queueing.admit(call) is None  # type: ignore[arg-type]
    wait = queueing.admit(call)  # type: ignore[arg-type]
    assert wait is not None
    with pytest.raises(BulkheadFullError) as info:
        wait.wait(None)
    assert str(info.value).startswith(
        "bulkhead of service 'users' is full (max_concurrent=1, max_queued=1): no slot within"
    )
    assert info.value.request is REQUEST


@pytest.mark.parametrize(
    ("queue_timeout", "timeout", "waited", "within"),
    [
        (None, 0.25, 0.25, "before the call's deadline"),
        (None, -1.0, 0.0, "before the call's deadline"),  # the deadline has passed already
        (0.5, 0.25, 0.25, "before the call's deadline"),
        (0.5, 0.5, 0.5, "within queue_timeout=0.5"),  # a tie: queue_timeout is named
        (0.5, 2.0, 0.5, "within queue_timeout=0.5"),
    ],
)
def test_a_queued_task_waits_exactly_until_the_sooner_bound(
    queue_timeout: float | None, timeout: float, waited: float, within: str
) -> None:
    """Loop time passes only while tasks wait here, so the time queued is exact: the sooner
    of ``queue_timeout`` and the call's time left, never more, reported on the error."""

    async def main() -> BulkheadFullError:
        b = Bulkhead(1, max_queued=1, queue_timeout=queue_timeout)
        await b.acquire_async()
        with pytest.raises(BulkheadFullError) as info:
            await b.acquire_async(service="users", request=REQUEST, timeout=timeout)
        assert (b.active, b.queued) == (1, 0)
        return info.value

    err = run_in_virtual_time(main())
    assert err.elapsed == waited
    assert err.request is REQUEST
    assert str(err) == (
        "bulkhead of service 'users' is full (max_concurrent=1, max_queued=1):"
        f" no slot {within} ({waited:.3f} s waited)"
    )


def test_a_queued_thread_without_limits_waits_as_long_as_it_takes() -> None:
    """No ``queue_timeout`` and no deadline: still queued after well over a second, and
    the release hands it the slot."""
    b = Bulkhead(1, max_queued=1, queue_timeout=None)
    b.acquire()
    outcome: list[object] = []

    def wait() -> None:
        try:
            b.acquire()
        except BaseException as exc:  # the assertion below shows it
            outcome.append(exc)
        else:
            outcome.append("slot")

    th = threading.Thread(target=wait, daemon=True)
    th.start()
    eventually(lambda: b.queued == 1, "the thread queued")
    th.join(1.5)
    assert (outcome, b.queued) == ([], 1)
    b.release()
    join(th, "the queued thread")
    assert outcome == ["slot"]
    assert (b.active, b.queued) == (1, 0)


def test_a_thread_interrupted_while_queued_leaves_the_queue() -> None:
    """A signal handler's exception (say Ctrl-C) in a queued thread propagates unchanged and
    leaves no place behind; the interrupted wait counts as a rejection."""

    class Interrupted(Exception):
        pass

    def interrupt(signum: int, frame: object) -> None:
        raise Interrupted

    b = Bulkhead(1, max_queued=1, queue_timeout=None)
    b.acquire()
    main = threading.get_ident()

    def blocked_in_the_queue() -> bool:
        # The main thread's innermost Python frame is the bulkhead's wait, at its blocking
        # acquire: interrupting it earlier would test the interpreter, not the bulkhead.
        frame = sys._current_frames().get(main)
        return frame is not None and "lock.acquire(timeout=" in linecache.getline(
            frame.f_code.co_filename, frame.f_lineno
        )

    def signal_main() -> None:
        eventually(blocked_in_the_queue, "the main thread blocked in the queue")
        signal.pthread_kill(main, signal.SIGUSR1)

    previous = signal.signal(signal.SIGUSR1, interrupt)
    try:
        th = threading.Thread(target=signal_main, daemon=True)
        th.start()
        with pytest.raises(Interrupted):
            b.acquire(timeout=WAIT_LIMIT)
        join(th, "the thread interrupting the main thread")
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert b.snapshot() == {
        "max_concurrent": 1,
        "max_queued": 1,
        "active": 1,
        "queued": 0,
        "rejected": 1,
    }
    b.release()
    assert b.active == 0


def test_a_waiter_whose_event_loop_closed_does_not_keep_the_slot() -> None:
    """A task whose loop was closed under it can never run: a release passes it over."""
    b = Bulkhead(1, max_queued=1, queue_timeout=None)
    b.acquire()
    loop = asyncio.new_event_loop()
    orphan = loop.create_task(b.acquire_async())
    loop.run_until_complete(asyncio.sleep(0))
    assert b.queued == 1
    loop.close()  # the task still waits in the queue
    b.release()
    assert (b.active, b.queued) == (0, 0)
    assert b.try_acquire()  # the passed-over slot, taken by someone else
    # The orphan's coroutine ends at last (here rather than in a later test's garbage
    # collection): it never owned the slot, so it must not give it back.
    orphan.get_coro().close()
    assert (b.active, b.queued) == (1, 0)
    del orphan
    gc.collect()  # the pending task too: its "destroyed but pending" log goes to this test
