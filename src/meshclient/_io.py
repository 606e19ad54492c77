"""The I/O whose sync and async forms differ in more than ``await``: written twice, here only.

Everything else of the request path is written once, for async, and generated for sync
(``scripts/unasync.py``). These cannot be: an async wait can be interrupted at the deadline
(``anyio.fail_after``), a blocking call into someone else's sync transport cannot, so the sync
form checks the deadline as soon as the call returns instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator

import anyio
import httpx

__all__ = [
    "READY_POLL",
    "exchange_async",
    "exchange_sync",
    "next_chunk_async",
    "next_chunk_sync",
    "sleep_async",
    "sleep_sync",
    "wait_ready_async",
    "wait_ready_sync",
]

#: Seconds between looks at a service's readiness from an event loop (a thread sets it).
READY_POLL = 0.005


def _late(request: httpx.Request) -> httpx.ReadTimeout:
    return httpx.ReadTimeout("the attempt's deadline passed", request=request)


async def sleep_async(seconds: float) -> None:
    await anyio.sleep(seconds)


def sleep_sync(seconds: float) -> None:
    time.sleep(seconds)


async def wait_ready_async(ready: threading.Event, timeout: float) -> None:
    """Wait up to ``timeout`` seconds for ``ready``, set by a discovery thread, never blocking
    the event loop (a start-up wait: polling costs nothing worth a cross-thread wake-up)."""
    deadline = time.monotonic() + timeout
    while not ready.is_set() and time.monotonic() < deadline:
        await anyio.sleep(READY_POLL)


def wait_ready_sync(ready: threading.Event, timeout: float) -> None:
    ready.wait(timeout)


async def exchange_async(
    transport: httpx.AsyncBaseTransport,
    request: httpx.Request,
    left: float | None,
    buffered: bool,
) -> httpx.Response:
    """Send ``request`` to the user's transport within ``left`` seconds, the body too when
    the caller wants it ``buffered``; ``httpx.ReadTimeout`` once the time is up."""
    if left is None:
        response = await transport.handle_async_request(request)
        if buffered:
            await response.aread()
        return response
    try:
        with anyio.fail_after(left):
            response = await transport.handle_async_request(request)
            if buffered:
                await response.aread()
    except TimeoutError:
        raise _late(request) from None
    return response


def exchange_sync(
    transport: httpx.BaseTransport,
    request: httpx.Request,
    left: float | None,
    buffered: bool,
) -> httpx.Response:
    """``exchange_async`` for a sync transport: an answer that came too late is refused."""
    start = time.monotonic()
    response = transport.handle_request(request)
    if buffered:
        response.read()
    if left is not None and time.monotonic() - start > left:
        response.close()
        raise _late(request)
    return response


async def next_chunk_async(
    iterator: AsyncIterator[bytes], left: float | None, request: httpx.Request
) -> bytes:
    """The next chunk of a body from the user's transport, within ``left`` seconds."""
    if left is None:
        return await iterator.__anext__()
    try:
        with anyio.fail_after(left):
            return await iterator.__anext__()
    except TimeoutError:
        raise _late(request) from None


def next_chunk_sync(iterator: Iterator[bytes], left: float | None, request: httpx.Request) -> bytes:
    start = time.monotonic()
    part = next(iterator)
    if left is not None and time.monotonic() - start > left:
        raise _late(request)
    return part
