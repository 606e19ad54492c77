"""Generated from ``_async/_network.py`` by ``scripts/unasync.py``: edit that file instead."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterable
from typing import Any

import httpcore

from .._attempts import DEADLINE, sync_network_backend

__all__ = ["DeadlineBackend"]


def _bounded(timeout: float | None, error: type[Exception]) -> float | None:
    """``timeout`` clipped to the time the current attempt has left; raises once none is."""
    deadline = DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0.0:
        raise error("the attempt's deadline passed")
    return left if timeout is None or timeout > left else timeout


class DeadlineStream(httpcore.NetworkStream):
    """A connection whose every operation ends by the attempt's deadline."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream
        # Asked for on every request (is the connection still readable?): no wrapper frame.
        self.get_extra_info = stream.get_extra_info  # type: ignore[method-assign]

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if buffer:  # httpcore also "writes" nothing at the end of a message: no time to bound
            self._stream.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> Any:  # replaced per instance in ``__init__``
        return self._stream.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's default network backend, with every operation bounded by the deadline."""

    def __init__(self) -> None:
        self._backend: httpcore.NetworkBackend | None = None

    def _inner(self) -> httpcore.NetworkBackend:
        backend = self._backend
        if backend is None:
            backend = self._backend = sync_network_backend()
        return backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        stream = self._inner().connect_tcp(
            host, port, bounded, local_address=local_address, socket_options=socket_options
        )
        return DeadlineStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        stream = self._inner().connect_unix_socket(path, bounded, socket_options=socket_options)
        return DeadlineStream(stream)

    def sleep(self, seconds: float) -> None:
        self._inner().sleep(seconds)
