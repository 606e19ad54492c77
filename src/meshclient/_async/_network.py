"""Wall-clock deadlines for meshclient's own pools: every network operation is clipped.

httpx timeouts bound each read or write, not their sum: a server that sends its answer a byte
at a time never trips a read timeout however long the whole takes. This network backend wraps
httpcore's and bounds every connect, TLS handshake, read and write by the time the current
attempt has left (``DEADLINE``, set by the driver around the attempt and around each read of
its body), so the whole exchange ends by the deadline however the bytes arrive.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterable
from typing import Any

import httpcore

from .._attempts import DEADLINE, async_network_backend

__all__ = ["AsyncDeadlineBackend"]


def _bounded(timeout: float | None, error: type[Exception]) -> float | None:
    """``timeout`` clipped to the time the current attempt has left; raises once none is."""
    deadline = DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0.0:
        raise error("the attempt's deadline passed")
    return left if timeout is None or timeout > left else timeout


class AsyncDeadlineStream(httpcore.AsyncNetworkStream):
    """A connection whose every operation ends by the attempt's deadline."""

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream
        # Asked for on every request (is the connection still readable?): no wrapper frame.
        self.get_extra_info = stream.get_extra_info  # type: ignore[method-assign]

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._stream.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if buffer:  # httpcore also "writes" nothing at the end of a message: no time to bound
            await self._stream.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return AsyncDeadlineStream(
            await self._stream.start_tls(ssl_context, server_hostname, bounded)
        )

    def get_extra_info(self, info: str) -> Any:  # replaced per instance in ``__init__``
        return self._stream.get_extra_info(info)


class AsyncDeadlineBackend(httpcore.AsyncNetworkBackend):
    """httpcore's default network backend, with every operation bounded by the deadline."""

    def __init__(self) -> None:
        self._backend: httpcore.AsyncNetworkBackend | None = None

    def _inner(self) -> httpcore.AsyncNetworkBackend:
        backend = self._backend
        if backend is None:
            backend = self._backend = async_network_backend()
        return backend

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        stream = await self._inner().connect_tcp(
            host, port, bounded, local_address=local_address, socket_options=socket_options
        )
        return AsyncDeadlineStream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        stream = await self._inner().connect_unix_socket(
            path, bounded, socket_options=socket_options
        )
        return AsyncDeadlineStream(stream)

    async def sleep(self, seconds: float) -> None:
        await self._inner().sleep(seconds)
