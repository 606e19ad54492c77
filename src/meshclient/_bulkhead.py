"""The per-service bulkhead: at most ``max_concurrent`` calls at once, a bounded FIFO queue.

One object serves both clients: the counting core is shared, and a slot is handed over directly
from the releasing call to the oldest waiter, whether that waiter is a thread (blocked on its own
lock) or an asyncio task (a future resolved on its loop), so neither kind can starve the other.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Final

import httpx

from ._exceptions import MeshError

if TYPE_CHECKING:
    from ._call import Call
    from ._stack import Wait

__all__ = ["Bulkhead", "BulkheadFullError"]


class BulkheadFullError(MeshError):
    """The service's bulkhead had no free slot and no room (or time) in its queue; never retried."""


_WAITING: Final = 0
_GRANTED: Final = 1
_GONE: Final = 2


class _Waiter:
    """One queued call. ``state`` changes only under the bulkhead's lock."""

    __slots__ = ("future", "lock", "loop", "state")

    def __init__(self) -> None:
        self.state = _WAITING
        self.lock: threading.Lock | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.future: asyncio.Future[None] | None = None

    def wake(self) -> bool:
        """Tell the waiter it owns a slot now (outside the bulkhead's lock); ``False`` if it
        never can be told (its event loop is closed), so the slot must go to someone else."""
        if self.lock is not None:
            self.lock.release()
        elif self.loop is not None and self.future is not None:
            try:
                self.loop.call_soon_threadsafe(_resolve, self.future)
            except RuntimeError:  # the loop closed: the waiting task is gone with it
                return False
        return True


#: Returned by ``Bulkhead._enqueue`` when the queue is full; never queued itself.
_REJECTED: Final = _Waiter()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Queued:
    """One call's place in a bulkhead's queue: a ``Wait`` for the sync or the async client.

    The waiter was queued before the caller decided how to wait, so a slot may have been
    granted already (``state`` is checked first); a release before the thread's lock or the
    task's future exists only marks the waiter granted.
    """

    __slots__ = ("_bulkhead", "_request", "_service", "_waiter")

    def __init__(
        self,
        bulkhead: Bulkhead,
        waiter: _Waiter,
        service: str | None,
        request: httpx.Request | None,
    ) -> None:
        self._bulkhead = bulkhead
        self._waiter = waiter
        self._service = service
        self._request = request

    def wait(self, timeout: float | None) -> None:
        bulkhead = self._bulkhead
        waiter = self._waiter
        with bulkhead._lock:
            if waiter.state == _GRANTED:
                return
            # Created held, under the bulkhead's lock: a release can only come after this.
            lock = waiter.lock = threading.Lock()
            lock.acquire()
        start = time.monotonic()
        bound, deadline = bulkhead._wait_bound(timeout)
        try:
            woken = lock.acquire(timeout=-1.0 if bound is None else bound)
        except BaseException:  # interrupted while queued: leave, passing on a slot if one came
            with bulkhead._lock:
                granted = bulkhead._abandon(waiter)
            if granted:
                bulkhead.release()
            raise
        if not woken:
            with bulkhead._lock:
                woken = bulkhead._abandon(waiter)  # a slot may have come as the timeout fired
            if not woken:
                raise bulkhead._full_error(
                    self._service, self._request, time.monotonic() - start, deadline
                )

    async def wait_async(self, timeout: float | None) -> None:
        bulkhead = self._bulkhead
        waiter = self._waiter
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with bulkhead._lock:
            if waiter.state == _GRANTED:  # released before the future existed
                return
            waiter.loop = loop
            waiter.future = future
        start = loop.time()
        bound, deadline = bulkhead._wait_bound(timeout)
        try:
            if bound is None:
                await future
            else:
                async with asyncio.timeout(bound):
                    await future
        except TimeoutError:
            with bulkhead._lock:
                if bulkhead._abandon(waiter):
                    return  # the slot arrived as the timeout fired: keep it
            raise bulkhead._full_error(
                self._service, self._request, loop.time() - start, deadline
            ) from None
        except BaseException:
            with bulkhead._lock:
                granted = bulkhead._abandon(waiter)
            if granted:
                bulkhead.release()  # cancelled with a slot in hand: pass it on
            raise


class Bulkhead:
    """Concurrency limit of one service: ``max_concurrent`` calls in flight, ``max_queued``
    more waiting up to ``queue_timeout`` seconds (``None``: until the call's own deadline or
    cancellation), the rest rejected at once with ``BulkheadFullError``.

    Slot accounting is exact: every successful acquisition (``try_acquire``, ``acquire``,
    ``acquire_async``) must be matched by exactly one ``release``. The counters cannot tell two
    permits apart, so the caller guards against a double release (the stack's engine ends each
    call once); a release with nothing held raises ``RuntimeError`` (a bug).
    A waiter that times out or is cancelled leaves the queue; if a slot was handed to it in that
    same instant it passes the slot on (cancelled) or keeps it (timeout), so nothing leaks.

    The async path needs an asyncio event loop (the ``asyncio`` backend of anyio included).
    """

    __slots__ = (
        "_active",
        "_lock",
        "_rejected",
        "_waiters",
        "max_concurrent",
        "max_queued",
        "queue_timeout",
    )

    def __init__(
        self, max_concurrent: int, max_queued: int = 0, queue_timeout: float | None = None
    ) -> None:
        for field, value, low in (
            ("max_concurrent", max_concurrent, 1),
            ("max_queued", max_queued, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"Bulkhead.{field} must be an int >= {low}, got {value!r}")
            if value < low:
                raise ValueError(f"Bulkhead.{field} must be an int >= {low}, got {value!r}")
        if queue_timeout is not None:
            requirement = "a finite number of seconds >= 0, or None (no limit)"
            if isinstance(queue_timeout, bool) or not isinstance(queue_timeout, int | float):
                raise TypeError(
                    f"Bulkhead.queue_timeout must be {requirement}, got {queue_timeout!r}"
                )
            if not 0 <= queue_timeout < math.inf:
                raise ValueError(
                    f"Bulkhead.queue_timeout must be {requirement}, got {queue_timeout!r}"
                )
            if max_queued and not queue_timeout:
                raise ValueError(
                    f"Bulkhead.queue_timeout must be > 0 or None when max_queued > 0"
                    f" (max_queued={max_queued!r}), got {queue_timeout!r}"
                )
            queue_timeout = float(queue_timeout)
        self.max_concurrent = max_concurrent
        self.max_queued = max_queued
        self.queue_timeout = queue_timeout
        self._lock = threading.Lock()
        self._active = 0
        self._waiters: deque[_Waiter] = deque()
        self._rejected = 0

    # -- the counting core -------------------------------------------------------------------------

    @property
    def active(self) -> int:
        """Slots held now (calls in flight)."""
        return self._active

    @property
    def queued(self) -> int:
        """Calls waiting for a slot now."""
        return len(self._waiters)

    def try_acquire(self) -> bool:
        """Take a free slot without waiting; ``False`` if none is free (or others queue first)."""
        with self._lock:
            if self._active < self.max_concurrent and not self._waiters:
                self._active += 1
                return True
            return False

    def _enqueue(self) -> _Waiter | None:
        """Under the lock: ``None`` (a slot was free), a new waiter, or ``_REJECTED``."""
        if self._active < self.max_concurrent and not self._waiters:
            self._active += 1
            return None
        if len(self._waiters) >= self.max_queued:
            self._rejected += 1
            return _REJECTED
        waiter = _Waiter()
        self._waiters.append(waiter)
        return waiter

    def _abandon(self, waiter: _Waiter) -> bool:
        """Under the lock: leave the queue; ``True`` if a slot was granted meanwhile."""
        if waiter.state == _GRANTED:
            return True
        if waiter.state == _WAITING:
            waiter.state = _GONE
            self._waiters.remove(waiter)
            self._rejected += 1
        return False

    def _wait_bound(self, timeout: float | None) -> tuple[float | None, bool]:
        """Seconds to queue at most (``None``: no limit), and whether the caller's own
        ``timeout`` (the time left before its deadline) rather than ``queue_timeout`` sets it."""
        queue_timeout = self.queue_timeout
        if timeout is None:
            return queue_timeout, False
        timeout = max(0.0, timeout)
        if queue_timeout is None or timeout < queue_timeout:
            return timeout, True
        return queue_timeout, False

    def _full_error(
        self,
        service: str | None,
        request: httpx.Request | None,
        waited: float | None,
        deadline: bool = False,
    ) -> BulkheadFullError:
        who = "bulkhead" if service is None else f"bulkhead of service {service!r}"
        limits = f"max_concurrent={self.max_concurrent}, max_queued={self.max_queued}"
        if waited is None:
            message = f"{who} is full ({limits})"
        else:
            if deadline:
                within = "before the call's deadline"
            else:
                within = f"within queue_timeout={self.queue_timeout}"
            message = f"{who} is full ({limits}): no slot {within} ({waited:.3f} s waited)"
        return BulkheadFullError(message, request=request, elapsed=waited or 0.0)

    # -- waiting (sync and async) ------------------------------------------------------------------

    def _queue(self, service: str | None, request: httpx.Request | None) -> _Queued | None:
        """``None`` (a slot was free and is now held), or a place in the queue; raises
        ``BulkheadFullError`` when the queue is full too."""
        with self._lock:
            waiter = self._enqueue()
        if waiter is None:
            return None
        if waiter is _REJECTED:
            raise self._full_error(service, request, None)
        return _Queued(self, waiter, service, request)

    def acquire(
        self,
        *,
        service: str | None = None,
        request: httpx.Request | None = None,
        timeout: float | None = None,
    ) -> None:
        """Take a slot, queueing up to ``queue_timeout`` and at most ``timeout`` seconds (the
        call's time left, ``None``: no deadline); raises ``BulkheadFullError``."""
        queued = self._queue(service, request)
        if queued is not None:
            queued.wait(timeout)

    async def acquire_async(
        self,
        *,
        service: str | None = None,
        request: httpx.Request | None = None,
        timeout: float | None = None,
    ) -> None:
        """``acquire`` for asyncio tasks; a cancelled waiter leaves the queue, leaking nothing."""
        queued = self._queue(service, request)
        if queued is not None:
            await queued.wait_async(timeout)

    # -- the Admission protocol (``meshclient.Admission``) -----------------------------------------

    def admit(self, call: Call) -> Wait | None:
        """A free slot, a place in the queue (a ``Wait`` within the call's deadline), or
        ``BulkheadFullError``."""
        return self._queue(call.service, call.request)

    def release(self, call: Call | None = None) -> None:
        """Give back one slot: to the oldest waiter if any, else to the pool. O(1)."""
        with self._lock:
            if self._active <= 0:
                raise RuntimeError("Bulkhead.release called with no slot held (double release?)")
            waiter = None
            while self._waiters:
                candidate = self._waiters.popleft()
                if candidate.state == _WAITING:
                    candidate.state = _GRANTED  # the slot changes hands: active is unchanged
                    waiter = candidate
                    break
            if waiter is None:
                self._active -= 1
        if waiter is not None and not waiter.wake():
            with self._lock:
                waiter.state = _GONE  # never runs: its clean-up must not give the slot back too
            self.release()

    # -- state -------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """JSON-able occupancy: limits, slots held, calls queued, rejections so far."""
        with self._lock:
            return {
                "max_concurrent": self.max_concurrent,
                "max_queued": self.max_queued,
                "active": self._active,
                "queued": len(self._waiters),
                "rejected": self._rejected,
            }

    def __repr__(self) -> str:
        return (
            f"Bulkhead(max_concurrent={self.max_concurrent!r}, max_queued={self.max_queued!r},"
            f" queue_timeout={self.queue_timeout!r}, active={self._active}, queued={self.queued})"
        )
