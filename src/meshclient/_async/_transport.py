"""The async mesh transport: the engine's async driver and its two bottoms.

The driver runs the phases of a call's stack (``_route.Route``) and does only what needs I/O
or waiting: admission waits, sending, discarding a response before a retry, backoff. Every
decision is made by the modules and by ``Call``/``Attempt`` (``_call.py``).

This file is the source: ``scripts/unasync.py`` writes the sync twin (``_sync/_transport.py``)
from it, and CI fails if the two drift apart.
"""

from __future__ import annotations

import logging
import random
import ssl
import warnings
from collections.abc import AsyncIterator, Callable, Mapping
from time import monotonic
from typing import Any

import httpcore
import httpx

from .._attempts import DEADLINE, DISCARD_READ_LIMIT, attempt_extensions, attempt_url
from .._call import DROPPED, Attempt, Call
from .._io import exchange_async, next_chunk_async, sleep_async, wait_ready_async
from .._mesh import Mesh, ServicesArg
from .._modules import settle_async
from .._names import DEADLINE_HEADER
from .._policy import Policy
from .._pool import DEFAULT_LIMITS, PoolFactory
from .._stack import Stack, Wait
from .._telemetry import Telemetry
from .._validate import check_transport
from ._network import AsyncDeadlineBackend

__all__ = ["AsyncMeshTransport"]

logger = logging.getLogger("meshclient")

_HTTP = b"http"


class AsyncMeshTransport(httpx.AsyncBaseTransport):
    """The mesh as an httpx transport, for a client you build yourself.

    Mount it (``mounts={"all://users": transport}``) or pass it as ``transport=``; a
    per-call ``Policy`` rides in ``request.extensions["meshclient.policy"]``. ``transport=``
    and ``mounts=`` here are the bottom: where physical attempts go instead of meshclient's
    own connection pools. ``clock`` and ``rng`` are for tests: a ``meshclient.testing.FakeClock``
    makes deadlines and backoff run on virtual time, a seeded ``random.Random`` makes picks
    and jitter repeatable.
    """

    def __init__(
        self,
        services: ServicesArg = None,
        *,
        policy: Policy | None = None,
        stack: Stack | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        mounts: Mapping[str, httpx.AsyncBaseTransport | None] | None = None,
        verify: ssl.SSLContext | str | bool = True,
        cert: Any = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = DEFAULT_LIMITS,
        proxy: Any = None,
        telemetry: Telemetry | None = None,
        deadline_header: str | None = DEADLINE_HEADER,
        clock: Callable[[], float] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        check_transport("transport", transport, httpx.AsyncBaseTransport)
        for pattern, mounted in (mounts or {}).items():
            check_transport(f"mounts[{pattern!r}]", mounted, httpx.AsyncBaseTransport)
        factory = None
        if transport is None:
            factory = PoolFactory(
                asynchronous=True,
                verify=verify,
                cert=cert,
                trust_env=trust_env,
                http1=http1,
                http2=http2,
                limits=limits,
                proxy=proxy,
                network_backend=AsyncDeadlineBackend(),
            )
        self._factory = factory
        self._mesh = Mesh(
            services,
            policy=policy,
            stack=stack,
            telemetry=telemetry,
            deadline_header=deadline_header,
            factory=factory,
            transport=transport,
            mounts=mounts,
            clock=clock,
            rng=rng,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        while DROPPED:  # responses garbage-collected unclosed: their attempts end here
            await _drop(DROPPED.popleft())
        call = self._mesh.call(request)
        try:
            return await self._run(call)
        except Exception as error:
            for recover in call.route.recover:
                response = await settle_async(call, recover, recover(call, error), error)
                if response is not None:
                    return response
            raise

    async def _run(self, call: Call) -> httpx.Response:
        for on_call, entered, through in call.route.call_start:
            try:
                step = on_call(call)
                if step is not None:
                    if not isinstance(step, Wait):  # a local answer, or a wrong type
                        return call.answered_locally(step, through)
                    await step.wait_async(call.time_left())
            except BaseException as exc:
                call.refused(exc, entered)
                raise
        route = call.route
        call._ends = route.call_end  # every on_call let the call in: every end phase runs
        ready = route.ready
        if not ready.is_set():  # discovery has not produced its first set yet: wait for it
            await wait_ready_async(ready, call.ready_wait())
        delay: float | None
        while True:
            attempt = call.next_attempt()
            try:
                await self._send(attempt)
            except Exception as exc:
                delay = call.attempt_failed(attempt, exc)
            except BaseException:
                call.abandon(attempt)
                raise
            else:
                try:
                    delay = call.attempt_answered(attempt)
                    if delay is None:
                        return _deliver(attempt)
                    await _discard(attempt)
                except BaseException:
                    call.abandon(attempt)
                    raise
                attempt.finish()
            try:
                sleep = self._mesh.sleep
                if sleep is None:
                    await sleep_async(delay)
                else:
                    sleep(delay)
            except BaseException:
                call.abandon()
                raise

    async def _send(self, attempt: Attempt) -> None:
        """Send the attempt to the bottom, and read its body when the caller buffers it."""
        call = attempt.call
        request = call.request
        transport = call.transport
        if transport is not None:
            physical = httpx.Request(
                request.method,
                attempt_url(attempt),
                headers=attempt.headers,
                stream=request.stream,
                extensions=attempt_extensions(attempt),
            )
            attempt.begin(None)
            deadline = attempt.deadline
            left = None if deadline is None else deadline - call.clock()
            response = await exchange_async(transport, physical, left, call.buffered)
            attempt.response = response
            attempt.status = response.status_code
            attempt.stream = response.stream
            attempt.response_extensions = response.extensions
            return
        url = request.url
        endpoint = attempt.endpoint
        assert endpoint is not None
        scheme = url.raw_scheme
        core = httpcore.Request(
            request.method,
            httpcore.URL(
                scheme=scheme, host=endpoint.raw_host, port=endpoint.port, target=url.raw_path
            ),
            headers=attempt.headers,
            content=request.stream,
            extensions=attempt_extensions(attempt),
        )
        shard = attempt.begin(endpoint.pool if scheme == _HTTP else endpoint.tls_pool)
        # The pools' network backend ends every read and write by this deadline.
        token = DEADLINE.set(attempt.deadline if call.clock is monotonic else None)
        try:
            response = await shard.pool.handle_async_request(core)
            attempt.status = response.status
            attempt._headers = response.headers
            attempt.stream = response.stream
            attempt.response_extensions = response.extensions
            if call.buffered:
                stream = response.stream
                try:
                    attempt.content = b"".join([part async for part in stream])
                finally:
                    await stream.aclose()
        finally:
            DEADLINE.reset(token)

    def snapshot(self) -> dict[str, Any]:
        """Live state: services → endpoints with load and latency estimate; budgets."""
        return self._mesh.snapshot()

    async def aclose(self) -> None:
        self._mesh.close()
        factory = self._factory
        if factory is not None:
            for shard in factory.open_shards():
                await shard.aclose()
        for transport in {id(t): t for t in self._mesh.transports()}.values():
            await transport.aclose()


class AsyncResponseStream(httpx.AsyncByteStream):
    """A body the caller streams: read by the call's deadline, errors mapped to httpx's, and
    the attempt finished when it is closed (or, with a ``ResourceWarning``, when dropped)."""

    __slots__ = ("_attempt", "_open")

    def __init__(self, attempt: Attempt) -> None:
        self._attempt = attempt
        self._open = True

    async def __aiter__(self) -> AsyncIterator[bytes]:
        attempt = self._attempt
        call = attempt.call
        # ``Timeout.total`` bounds the whole exchange, a streamed body included.
        deadline = call.deadline
        transport = call.transport
        iterator = attempt.stream.__aiter__()
        try:
            while True:
                if transport is None:
                    token = DEADLINE.set(deadline if call.clock is monotonic else None)
                    try:
                        part = await iterator.__anext__()
                    finally:
                        DEADLINE.reset(token)
                else:
                    left = None if deadline is None else deadline - call.clock()
                    part = await next_chunk_async(iterator, left, call.request)
                yield part
        except StopAsyncIteration:
            return
        except Exception as exc:
            error = call.stream_failed(attempt, exc)
            if error is exc:  # an httpx error already: raised as it is, not as its own cause
                raise
            raise error from exc

    async def aclose(self) -> None:
        self._open = False
        attempt = self._attempt
        try:
            await attempt.stream.aclose()
        finally:
            attempt.finish()

    def __del__(self) -> None:
        if self._open and not self._attempt.finished:
            warnings.warn(
                f"a response of service {self._attempt.call.service!r} was never closed: "
                "close it (or use it as a context manager) to give its connection back",
                ResourceWarning,
                stacklevel=1,
            )
            # Not here: a collector may run while this thread holds the endpoint's lock.
            DROPPED.append(self._attempt)


def _deliver(attempt: Attempt) -> httpx.Response:
    """The response for the caller; a streamed one finishes its attempt when closed."""
    response = attempt.response
    if response is None:  # meshclient's pools: an httpcore response
        content = attempt.content
        if content is not None:  # read in full already: nothing is left to hold
            attempt.finish()
            stream: httpx.AsyncByteStream = httpx.ByteStream(content)
        else:
            stream = AsyncResponseStream(attempt)
        return httpx.Response(
            status_code=attempt.status,  # type: ignore[arg-type]
            headers=attempt._headers,
            stream=stream,
            extensions=attempt.response_extensions,
        )
    if response.is_closed:
        attempt.finish()  # read in full already: nothing is left to hold
    else:
        response.stream = AsyncResponseStream(attempt)
    return response


async def _drop(attempt: Attempt) -> None:
    """End the attempt of a response its caller dropped unclosed: connection, then accounting."""
    try:
        await attempt.stream.aclose()
    except Exception:  # the connection is going anyway; its error concerns no caller
        logger.debug("meshclient: closing a dropped response failed", exc_info=True)
    finally:
        attempt.finish()


async def _discard(attempt: Attempt) -> None:
    """Close a response before a retry, reading a small body first to keep the connection."""
    response = attempt.response
    if attempt.content is not None or (response is not None and response.is_closed):
        return  # read in full and closed already
    stream = attempt.stream
    try:
        read = 0
        async for chunk in stream:
            read += len(chunk)
            if read > DISCARD_READ_LIMIT:
                break
    except Exception:
        pass
    finally:
        await stream.aclose()
