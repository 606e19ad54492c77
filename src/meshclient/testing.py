"""Test helpers: a fake clock, a scriptable HTTP/1.1 backend and a TCP fault proxy on loopback.

Kept in the package (not in ``tests/``) because the demo, the benchmarks and users' own test
suites need the same tools. Only the standard library and attrs are imported here, so this module
adds nothing to the package's dependencies.

``Backend`` is a raw asyncio server rather than uvicorn: it is several times faster (it is also
the benchmark backend), starts instantly, and can misbehave on purpose (hang, close mid-body,
close before answering, refuse connections) in ways a framework would not let it.
``FaultProxy`` puts network faults (latency, resets, a black hole, a refused port) in front of
any real server, ``Backend`` or not.
"""

from __future__ import annotations

import abc
import argparse
import asyncio
import contextlib
import ipaddress
import json
import math
import random
import signal
import socket
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from http import HTTPStatus
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import attrs

__all__ = [
    "Backend",
    "Behaviour",
    "FakeClock",
    "FaultProxy",
    "Recorded",
    "closed_port",
    "held_closed_port",
    "main",
]

_T = TypeVar("_T")

#: Largest request head (request line + headers) accepted; bigger requests are dropped.
_HEAD_LIMIT = 64 * 1024
#: Largest request body accepted (either framing); bigger requests are dropped.
_MAX_BODY = 16 * 1024 * 1024
#: Bounds the per-connection loop; the last response says ``connection: close``.
_MAX_REQUESTS_PER_CONNECTION = 10_000_000
_MAX_TRAILER_LINES = 100
#: Seconds a call from another thread waits for the backend's event loop.
_CONTROL_TIMEOUT = 10.0
_REASONS = {status.value: status.phrase for status in HTTPStatus}
_NO_BODY_STATUSES = frozenset({204, 304})
_ADMIN_PATHS = frozenset({"/__behave", "/__stats", "/__reset"})


class FakeClock:
    """A manually driven clock, so time-based state machines are tested without sleeping.

    ``clock()`` returns monotonic seconds; ``wall()`` returns epoch seconds that move in step
    (for code that stamps wall time, e.g. parsing an HTTP-date ``Retry-After``). ``sleep`` is a
    drop-in for ``time.sleep`` that advances the clock instead of blocking.
    """

    def __init__(self, start: float = 0.0, *, wall_start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._wall_offset = float(wall_start) - self._now
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self._now

    def __repr__(self) -> str:
        return f"<FakeClock {self._now!r}>"

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds`` (>= 0) and return the new reading."""
        if not seconds >= 0:
            raise ValueError(f"FakeClock.advance: seconds must be >= 0, got {seconds!r}")
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, t: float) -> None:
        """Jump to ``t``; may go backwards, to test code that must survive clock steps."""
        with self._lock:
            self._now = float(t)

    def sleep(self, seconds: float) -> None:
        """Advance instead of blocking; inject where code would call ``time.sleep``."""
        self.advance(seconds)

    def wall(self) -> float:
        """Epoch seconds corresponding to the current reading."""
        return self._now + self._wall_offset


def _check_status(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if type(value) is not int or not 200 <= value <= 599:
        raise ValueError(f"Behaviour.{attribute.name} must be an int in 200..599, got {value!r}")


def _check_delay(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (math.isfinite(value) and value >= 0)
    ):
        raise ValueError(f"Behaviour.{attribute.name} must be seconds >= 0, got {value!r}")


def _check_retry_after(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return
    if isinstance(value, str) and _header_safe(value):
        return
    raise ValueError(
        f"Behaviour.{attribute.name} must be None, a number or a one-line str, got {value!r}"
    )


def _check_rate(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"Behaviour.{attribute.name} must be a number in [0, 1], got {value!r}")


def _check_flag(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"Behaviour.{attribute.name} must be a bool, got {value!r}")


def _check_content_type(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value or not _header_safe(value):
        raise ValueError(f"Behaviour.{attribute.name} must be a one-line str, got {value!r}")


def _check_headers(_: Any, attribute: attrs.Attribute[Any], value: tuple[Any, ...]) -> None:
    for item in value:
        ok = (
            isinstance(item, tuple)
            and len(item) == 2
            and all(isinstance(part, str) for part in item)
            and item[0]
            and ":" not in item[0]
            and " " not in item[0]
            and _header_safe(item[0])
            and _header_safe(item[1])
        )
        if not ok:
            raise ValueError(f"Behaviour.{attribute.name}: invalid header {item!r}")


def _header_safe(text: str) -> bool:
    return "\r" not in text and "\n" not in text and text.isascii()


def _to_body(value: bytes | str | None) -> bytes | None:
    if isinstance(value, str):
        return value.encode("utf-8")
    if value is None or isinstance(value, bytes):
        return value
    raise ValueError(f"Behaviour.body must be bytes, str or None, got {value!r}")


def _to_headers(
    value: Mapping[str, str] | Iterable[tuple[str, str]],
) -> tuple[tuple[str, str], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    return tuple((name, value) for name, value in items)


def _one_fault(instance: Behaviour, _: attrs.Attribute[Any], __: object) -> None:
    faults = [
        name
        for name in ("hang", "close_mid_response", "close_before_response")
        if getattr(instance, name)
    ]
    if len(faults) > 1:
        raise ValueError(f"Behaviour: choose at most one fault, got {', '.join(faults)}")


@attrs.frozen
class Behaviour:
    """What a ``Backend`` does with a request; immutable, so swapping it is atomic.

    ``delay`` is in seconds and does not block other connections. At most one fault may be set:
    ``hang`` records the request and never answers; ``close_mid_response`` sends the headers
    (``content-length: 1000``) and 10 body bytes, then closes; ``close_before_response`` records
    the request and closes without a byte. ``body=None`` means the JSON body
    ``{"backend": <name>, "n": <request number>}``.

    ``trickle_head`` and ``trickle_body`` (seconds) send the response's head, or its body, one
    byte at a time with that pause after each: every read returns quickly, only the whole is
    slow (a slow-loris upstream, a congested link).

    ``fail_rate`` (0..1) makes a flaky instance: that share of requests, drawn from the
    backend's seeded RNG (``Backend(seed=...)``, so a run is repeatable for the same sequence
    of requests), is answered with ``fail_status`` (default 503) instead of ``status``.
    """

    status: int = attrs.field(default=200, validator=_check_status)
    delay: float = attrs.field(default=0.0, validator=_check_delay)
    trickle_head: float = attrs.field(default=0.0, validator=_check_delay)
    trickle_body: float = attrs.field(default=0.0, validator=_check_delay)
    retry_after: float | str | None = attrs.field(default=None, validator=_check_retry_after)
    body: bytes | None = attrs.field(default=None, converter=_to_body)
    hang: bool = attrs.field(default=False, validator=_check_flag)
    close_mid_response: bool = attrs.field(default=False, validator=_check_flag)
    close_before_response: bool = attrs.field(default=False, validator=[_check_flag, _one_fault])
    headers: tuple[tuple[str, str], ...] = attrs.field(
        default=(), converter=_to_headers, validator=_check_headers
    )
    content_type: str = attrs.field(default="application/json", validator=_check_content_type)
    fail_rate: float = attrs.field(default=0.0, validator=_check_rate)
    fail_status: int = attrs.field(default=503, validator=_check_status)


@attrs.frozen
class Recorded:
    """One request as the backend read it; recorded only once its body was fully read.

    ``path`` excludes the query string (kept in ``query``); header names are lower-case and
    repeated headers are joined with ``", "``; ``t`` is ``time.monotonic()`` at recording.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    t: float
    query: str = ""


def _check_loopback(host: str) -> str:
    try:
        loopback = ipaddress.IPv4Address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"Backend host must be an IPv4 loopback address (127/8), got {host!r}")
    return host


def _new_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # SO_REUSEADDR: rebinding a port with connections in TIME_WAIT (restart, accept()).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def closed_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` where nothing listens right now (connections are refused).

    The port is released before returning, so another process could take it; prefer
    ``held_closed_port`` when the test runs long.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_check_loopback(host), 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def held_closed_port(host: str = "127.0.0.1") -> Iterator[int]:
    """Yield a port that is bound but not listening: refused, and nobody else can take it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_check_loopback(host), 0))
        yield sock.getsockname()[1]


_Request = tuple[str, str, dict[str, str], bytes, bool]


class _LoopServer(abc.ABC):
    """A loopback listener serving from its own event loop in a daemon thread.

    The thread makes ``Backend`` and ``FaultProxy`` usable from sync and async tests alike and
    keeps a blocked test from stalling them. Subclasses start serving in ``_open`` and close
    their connections in ``_drop_all``; ``_main`` runs until ``stop()``, then closes the rest.
    """

    #: Bind with ``SO_REUSEPORT`` (lets a refused port be taken back while reserved).
    _reuse_port = False

    def __init__(self, name: str, host: str, port: int) -> None:
        self.name = name
        self._host = _check_loopback(host)
        self._port = port
        self._thread: threading.Thread | None = None
        self._start_error: BaseException | None = None
        # Owned by the loop thread once started.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._server: asyncio.Server | None = None
        self._placeholder: socket.socket | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    def _label(self) -> str:
        return f"{type(self).__name__} {self.name!r}"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind and start serving; returns once connections are handled."""
        if self._thread is not None:
            raise RuntimeError(f"{self._label()} is already started")
        sock = _new_socket(self._host, self._port, reuse_port=self._reuse_port)
        self._port = sock.getsockname()[1]
        self._start_error = None
        ready = threading.Event()
        thread = threading.Thread(
            target=self._run,
            args=(sock, ready),
            name=f"meshclient-{type(self).__name__.lower()}-{self.name}",
        )
        thread.daemon = True
        self._thread = thread
        thread.start()
        if not ready.wait(_CONTROL_TIMEOUT) or self._start_error is not None:
            error = self._start_error
            self.stop()
            raise RuntimeError(f"{self._label()} failed to start") from error
        return self

    def stop(self) -> None:
        """Close the listener and every open connection, then join the thread. Idempotent."""
        thread = self._thread
        if thread is None:
            return
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop already finished
                loop.call_soon_threadsafe(stopping.set)
        thread.join(_CONTROL_TIMEOUT)
        if thread.is_alive():
            raise RuntimeError(f"{self._label()} did not stop within {_CONTROL_TIMEOUT}s")
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port == 0:
            raise RuntimeError(f"{self._label()} has no port before start()")
        return self._port

    @property
    def address(self) -> str:
        return f"{self._host}:{self.port}"

    @property
    def listening(self) -> bool:
        return self._thread is not None and self._server is not None

    # -- event-loop side ---------------------------------------------------------------------

    def _control(self, make: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
        loop = self._loop
        if self._thread is None or loop is None or not loop.is_running():
            raise RuntimeError(f"{self._label()} is not running")
        if threading.current_thread() is self._thread:
            raise RuntimeError(
                f"{type(self).__name__} control methods cannot be called from its own loop"
            )
        return asyncio.run_coroutine_threadsafe(make(), loop).result(_CONTROL_TIMEOUT)

    def _run(self, sock: socket.socket, ready: threading.Event) -> None:
        asyncio.run(self._main(sock, ready))

    async def _main(self, sock: socket.socket, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            await self._open(sock)
        except BaseException as exc:
            sock.close()
            self._start_error = exc
            ready.set()
            return
        ready.set()
        await self._stopping.wait()
        server = self._server
        self._server = None
        if server is not None:
            server.close()
        if self._placeholder is not None:
            self._placeholder.close()
            self._placeholder = None
        await self._drop_all()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    @abc.abstractmethod
    async def _open(self, sock: socket.socket) -> None:
        """Start serving on ``sock`` (or hold it, for a server that starts refusing)."""

    @abc.abstractmethod
    async def _drop_all(self) -> None:
        """Close every connection the server has open."""


class Backend(_LoopServer):
    """A scriptable HTTP/1.1 server on loopback, running its own event loop in a daemon thread.

    ``behave()`` sets the steady behaviour; ``script()`` queues one-shot behaviours
    for the next requests. Keep-alive, pipelining, ``Content-Length`` and chunked request bodies
    are supported; malformed requests close the connection. ``POST /__behave`` (JSON keyword
    arguments of ``behave``), ``GET /__stats`` and ``POST /__reset`` are answered directly and
    neither recorded nor counted (disable with ``admin=False``).
    """

    def __init__(
        self,
        name: str = "backend",
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        record: bool = True,
        admin: bool = True,
        ssl_context: ssl.SSLContext | None = None,
        seed: int | None = 0,
    ) -> None:
        if not name or not _header_safe(name):
            raise ValueError(f"Backend name must be a non-empty one-line ASCII str, got {name!r}")
        super().__init__(name, host, port)
        self._record = record
        #: Serve HTTPS with this server-side context (e.g. from ``trustme``) instead of HTTP.
        self._ssl_context = ssl_context
        self._admin = admin
        self._name_json = json.dumps(name).encode("ascii")
        self._behaviour = Behaviour()
        self._script: deque[Behaviour] = deque()
        #: Draws ``fail_rate`` failures; seeded so a flaky backend fails the same requests.
        self._rng = random.Random(seed)
        self._failing: tuple[Behaviour | None, Behaviour] = (None, Behaviour())
        # One condition guards the counters, the recording and the script queue.
        self._cond = threading.Condition(threading.Lock())
        self._requests: list[Recorded] = []
        self._count = 0
        self._connections_opened = 0
        # Owned by the loop thread once started.
        self._listener: socket.socket | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._prefix_cache: tuple[Behaviour | None, bytes] = (None, b"")

    def refuse(self, *, drop_connections: bool = True) -> None:
        """Stop listening: new connections are refused, as on a closed port.

        The port stays reserved (bound, not listening), so ``accept()`` reliably reopens the
        same port. ``drop_connections`` also closes open connections, like a dead process;
        pass ``False`` to let keep-alive connections carry on.
        """
        self._control(lambda: self._refuse(drop_connections))

    def accept(self) -> None:
        """Listen again on the same port after ``refuse()``."""
        self._control(self._accept)

    def drop_connections(self) -> None:
        """Close every open client connection but keep listening (e.g. a proxy's idle cut)."""
        self._control(self._drop_all)

    @staticmethod
    def reserve_closed_port(host: str = "127.0.0.1") -> int:
        """Same as ``closed_port()``: a port on which connections are refused."""
        return closed_port(host)

    # -- behaviour and recording -------------------------------------------------------------

    def behave(
        self,
        *,
        status: int = 200,
        delay: float = 0.0,
        trickle_head: float = 0.0,
        trickle_body: float = 0.0,
        retry_after: float | str | None = None,
        body: bytes | str | None = None,
        hang: bool = False,
        close_mid_response: bool = False,
        close_before_response: bool = False,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        content_type: str = "application/json",
        fail_rate: float = 0.0,
        fail_status: int = 503,
    ) -> Behaviour:
        """Replace the steady behaviour (and drop any ``script``); no arguments = healthy."""
        behaviour = Behaviour(
            status=status,
            delay=delay,
            trickle_head=trickle_head,
            trickle_body=trickle_body,
            retry_after=retry_after,
            body=body,
            hang=hang,
            close_mid_response=close_mid_response,
            close_before_response=close_before_response,
            headers=headers,
            content_type=content_type,
            fail_rate=fail_rate,
            fail_status=fail_status,
        )
        with self._cond:
            self._script.clear()
            self._behaviour = behaviour
        return behaviour

    def script(self, *behaviours: Behaviour) -> None:
        """Queue one-shot behaviours for the next requests, in order, before the steady one."""
        with self._cond:
            self._script.extend(behaviours)

    @property
    def behaviour(self) -> Behaviour:
        return self._behaviour

    @property
    def requests(self) -> list[Recorded]:
        """A snapshot of the recorded requests, oldest first."""
        with self._cond:
            return list(self._requests)

    def count(self, method: str | None = None, path: str | None = None) -> int:
        """Requests received (optionally only those matching ``method`` and/or ``path``)."""
        with self._cond:
            if method is None and path is None:
                return self._count
            if not self._record:
                raise RuntimeError("count() with filters needs Backend(record=True)")
            return sum(
                1
                for r in self._requests
                if (method is None or r.method == method) and (path is None or r.path == path)
            )

    def reset(self) -> None:
        """Forget recorded requests and restart the count; the behaviour is kept."""
        with self._cond:
            self._requests.clear()
            self._count = 0

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> None:
        """Block until ``n`` requests were received, so tests synchronise without sleeping."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._count >= n, timeout):
                raise TimeoutError(
                    f"Backend {self.name!r}: {self._count} of {n} requests after {timeout}s"
                )

    # -- addresses ------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return self._host

    @property
    def url(self) -> str:
        scheme = "http" if self._ssl_context is None else "https"
        return f"{scheme}://{self.address}"

    @property
    def connections_opened(self) -> int:
        """Connections accepted since construction (to check connection reuse)."""
        return self._connections_opened

    @property
    def open_connections(self) -> int:
        return len(self._writers)

    def __repr__(self) -> str:
        port = self._port or "unbound"
        return f"<Backend {self.name!r} {self._host}:{port} {self._behaviour!r}>"

    # -- event-loop side ----------------------------------------------------------------------

    async def _open(self, sock: socket.socket) -> None:
        await self._listen(sock)

    async def _listen(self, sock: socket.socket) -> None:
        self._server = await asyncio.start_server(
            self._handle, sock=sock, limit=_HEAD_LIMIT, backlog=1024, ssl=self._ssl_context
        )
        self._listener = sock

    async def _refuse(self, drop_connections: bool) -> None:
        server, listener = self._server, self._listener
        if server is not None and listener is not None:
            if hasattr(socket, "SO_REUSEPORT"):
                # Bind the placeholder before closing the listener: no window in which
                # another process could take the port. Both need SO_REUSEPORT to coexist.
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                self._placeholder = _new_socket(self._host, self._port, reuse_port=True)
                server.close()
            else:
                server.close()
                self._placeholder = _new_socket(self._host, self._port, reuse_port=False)
            self._server = self._listener = None
        if drop_connections:
            await self._drop_all()

    async def _accept(self) -> None:
        placeholder = self._placeholder
        if self._server is not None or placeholder is None:
            return
        self._placeholder = None
        if hasattr(socket, "SO_REUSEPORT"):
            placeholder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 0)
        try:
            await self._listen(placeholder)
        except BaseException:
            placeholder.close()
            raise

    async def _drop_all(self) -> None:
        writers = list(self._writers)
        for writer in writers:
            writer.transport.abort()
        await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self._connections_opened += 1
        try:
            await self._serve_connection(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass  # the client went away or sent garbage: just close
        finally:
            try:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
            finally:
                self._writers.discard(writer)
                self._tasks.discard(task)

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        for remaining in range(_MAX_REQUESTS_PER_CONNECTION - 1, -1, -1):
            request = await self._read_request(reader, writer)
            if request is None:
                return
            method, target, headers, body, keep_alive = request
            keep_alive = keep_alive and remaining > 0
            path, _, query = target.partition("?")
            if self._admin and path in _ADMIN_PATHS:
                writer.write(self._admin_response(method, path, body, keep_alive))
                await writer.drain()
                if not keep_alive:
                    return
                continue
            n, behaviour = self._note(method, path, query, headers, body)
            if behaviour.hang:
                await _black_hole(reader)
                return
            if behaviour.close_before_response:
                return
            if behaviour.delay:
                await asyncio.sleep(behaviour.delay)
            if behaviour.close_mid_response:
                writer.write(self._head(behaviour, 1000, keep_alive=True) + b"x" * 10)
                await writer.drain()
                return
            response = self._response(behaviour, n, method, keep_alive)
            if behaviour.trickle_head or behaviour.trickle_body:
                await _trickle(writer, response, behaviour)
            else:
                writer.write(response)
                await writer.drain()
            if not keep_alive:
                return

    async def _read_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> _Request | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None  # clean EOF between requests
        lines = head[:-4].split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or parts[2] not in (b"HTTP/1.1", b"HTTP/1.0"):
            return None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name[-1:] in (b" ", b"\t"):
                return None
            key = name.lower().decode("latin-1")
            text = value.strip().decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        connection = headers.get("connection", "").lower()
        if parts[2] == b"HTTP/1.1":
            keep_alive = "close" not in connection
        else:
            keep_alive = "keep-alive" in connection
        if headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        transfer_encoding = headers.get("transfer-encoding")
        if transfer_encoding is not None:
            if transfer_encoding.lower() != "chunked":
                return None
            body = await _read_chunked(reader)
            if body is None:
                return None
        elif "content-length" in headers:
            length = int(headers["content-length"])
            if not 0 <= length <= _MAX_BODY:
                return None
            body = await reader.readexactly(length) if length else b""
        else:
            body = b""
        method = parts[0].decode("latin-1")
        return method, parts[1].decode("latin-1"), headers, body, keep_alive

    def _note(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Behaviour]:
        """Record one fully read request and pick the behaviour that answers it."""
        now = time.monotonic()
        with self._cond:
            self._count += 1
            n = self._count
            if self._record:
                self._requests.append(Recorded(method, path, headers, body, now, query))
            behaviour = self._script.popleft() if self._script else self._behaviour
            if behaviour.fail_rate and self._rng.random() < behaviour.fail_rate:
                behaviour = self._failing_twin(behaviour)
            self._cond.notify_all()
        return n, behaviour

    def _failing_twin(self, behaviour: Behaviour) -> Behaviour:
        """``behaviour`` answering ``fail_status`` (cached: the response head cache keys on it)."""
        source, twin = self._failing
        if source is not behaviour:
            twin = attrs.evolve(behaviour, status=behaviour.fail_status, fail_rate=0.0)
            self._failing = (behaviour, twin)
        return twin

    def _head(self, behaviour: Behaviour, length: int | None, *, keep_alive: bool) -> bytes:
        cached, prefix = self._prefix_cache
        if cached is not behaviour:
            status = behaviour.status
            lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}"]
            if length is not None:
                lines.append(f"content-type: {behaviour.content_type}")
            lines.append(f"x-backend: {self.name}")
            if behaviour.retry_after is not None:
                lines.append(f"retry-after: {behaviour.retry_after}")
            lines.extend(f"{name}: {value}" for name, value in behaviour.headers)
            prefix = ("\r\n".join(lines) + "\r\n").encode("latin-1")
            self._prefix_cache = (behaviour, prefix)
        if length is not None:
            prefix += b"content-length: %d\r\n" % length
        return prefix + (b"\r\n" if keep_alive else b"connection: close\r\n\r\n")

    def _response(self, behaviour: Behaviour, n: int, method: str, keep_alive: bool) -> bytes:
        if behaviour.status in _NO_BODY_STATUSES:
            return self._head(behaviour, None, keep_alive=keep_alive)
        body = behaviour.body
        if body is None:
            body = b'{"backend": %s, "n": %d}' % (self._name_json, n)
        head = self._head(behaviour, len(body), keep_alive=keep_alive)
        return head if method == "HEAD" else head + body

    def _admin_response(self, method: str, path: str, body: bytes, keep_alive: bool) -> bytes:
        status, payload = 200, dict[str, Any](backend=self.name)
        if path == "/__stats" and method == "GET":
            payload.update(count=self.count(), connections_opened=self._connections_opened)
        elif path == "/__reset" and method == "POST":
            self.reset()
        elif path == "/__behave" and method == "POST":
            try:
                arguments = json.loads(body or b"{}")
                if not isinstance(arguments, dict):
                    raise TypeError("the body must be a JSON object")
                payload["behaviour"] = repr(self.behave(**arguments))
            except (ValueError, TypeError) as exc:
                status, payload = 400, {"error": str(exc)}
        else:
            status, payload = 405, {"error": f"{method} not allowed on {path}"}
        data = json.dumps(payload).encode("utf-8")
        head = f"HTTP/1.1 {status} {_REASONS[status]}\r\ncontent-type: application/json\r\n"
        head += f"content-length: {len(data)}\r\n"
        head += "\r\n" if keep_alive else "connection: close\r\n\r\n"
        return head.encode("latin-1") + data


# -- fault proxy --------------------------------------------------------------------------------

#: ``FaultProxy`` modes.
_PASS: Final = "pass"
_RESET: Final = "reset"
_BLACKHOLE: Final = "blackhole"
_REFUSE: Final = "refuse"
_PROXY_MODES: Final = (_PASS, _RESET, _BLACKHOLE, _REFUSE)
_PROXY_CHUNK = 65536
#: Upstream connect timeout; a slow upstream connect is the upstream's fault, not the proxy's.
_PROXY_CONNECT_TIMEOUT = 5.0


def _split_address(upstream: str | tuple[str, int]) -> tuple[str, int]:
    if isinstance(upstream, tuple):
        host, port = upstream
    elif isinstance(upstream, str):
        host, sep, text = upstream.rpartition(":")
        if not sep or not text.isdigit():
            raise ValueError(f"FaultProxy upstream must be 'host:port', got {upstream!r}")
        port = int(text)
    else:
        raise TypeError(
            f"FaultProxy upstream must be 'host:port' or (host, port), got {upstream!r}"
        )
    if not isinstance(host, str) or not host or type(port) is not int or not 0 < port < 65536:
        raise ValueError(f"FaultProxy upstream must be 'host:port', got {upstream!r}")
    return host, port


def _check_proxy_mode(mode: object, latency: object) -> float:
    if mode not in _PROXY_MODES:
        raise ValueError(f"FaultProxy mode must be one of {', '.join(_PROXY_MODES)}, got {mode!r}")
    if (
        isinstance(latency, bool)
        or not isinstance(latency, int | float)
        or not (math.isfinite(latency) and latency >= 0)
    ):
        raise ValueError(f"FaultProxy latency must be seconds >= 0, got {latency!r}")
    return float(latency)


def _rst(transport: asyncio.BaseTransport) -> None:
    """Close with a TCP RST rather than a FIN (SO_LINGER 0), discarding unsent data."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    assert isinstance(transport, asyncio.WriteTransport)
    transport.abort()


class _TrackedProtocol(asyncio.StreamReaderProtocol):
    """A client connection of a ``FaultProxy``, known to it from the moment it is made (before
    its handler task runs), so ``stop`` and ``"refuse"`` reach every one of them."""

    def __init__(self, proxy: FaultProxy) -> None:
        super().__init__(asyncio.StreamReader(limit=_PROXY_CHUNK), proxy._handle)
        self._proxy = proxy
        self._tracked: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._tracked = transport
        self._proxy._accepted += 1
        self._proxy._connections[transport] = asyncio.get_running_loop().create_future()
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            super().connection_lost(exc)
        finally:
            if self._tracked is not None:
                closed = self._proxy._connections.pop(self._tracked, None)
                if closed is not None and not closed.done():
                    closed.set_result(None)


class FaultProxy(_LoopServer):
    """A TCP proxy on loopback in front of one upstream, with faults switchable at runtime.

    It runs its own event loop in a daemon thread, like ``Backend``, and knows nothing about
    HTTP: it moves bytes. Modes (``behave(mode, latency=...)``), checked for every chunk, so
    a switch also applies to connections already open:

    - ``"pass"``: forward both ways; ``latency`` seconds > 0 delays every byte coming back
      from the upstream by that much (a one-way delay line: a request/response exchange takes
      ``latency`` longer, whatever the number of chunks).
    - ``"reset"``: a new connection is accepted, then closed at once with a TCP RST; an open
      one is reset as soon as either side sends something.
    - ``"blackhole"``: connections are accepted and read, and nothing is ever answered (open
      ones stop forwarding in both directions): the client waits for its own timeout.
    - ``"refuse"``: the listener is closed (the port stays reserved, as ``Backend.refuse``),
      so connections are refused; open connections are reset, like a machine that went away.

    An upstream that cannot be reached makes the proxy reset the client's connection.
    """

    # The listener is closed and re-bound on the reserved port as the mode changes.
    _reuse_port = hasattr(socket, "SO_REUSEPORT")

    def __init__(
        self,
        upstream: str | tuple[str, int],
        *,
        name: str = "proxy",
        mode: str = _PASS,
        latency: float = 0.0,
        port: int = 0,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(name, host, port)
        self._upstream = _split_address(upstream)
        self._latency = _check_proxy_mode(mode, latency)
        self._mode = mode
        self._accepted = 0
        #: Client connections open now → resolved once closed.
        self._connections: dict[asyncio.BaseTransport, asyncio.Future[None]] = {}

    def behave(self, mode: str = _PASS, *, latency: float = 0.0) -> None:
        """Switch mode (see the class); in effect for every byte moved after this returns.

        No arguments: a transparent proxy again (listening again after ``"refuse"``).
        """
        seconds = _check_proxy_mode(mode, latency)
        self._control(lambda: self._switch(mode, seconds))

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def latency(self) -> float:
        return self._latency

    # -- addresses and figures ---------------------------------------------------------------

    @property
    def upstream(self) -> str:
        host, port = self._upstream
        return f"{host}:{port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def connections_accepted(self) -> int:
        """Client connections accepted since construction, whatever the mode did with them."""
        return self._accepted

    @property
    def open_connections(self) -> int:
        """Client connections open now."""
        return len(self._connections)

    def __repr__(self) -> str:
        port = self._port or "unbound"
        return (
            f"<FaultProxy {self.name!r} {self._host}:{port} -> {self.upstream}"
            f" mode={self._mode!r} latency={self._latency!r}>"
        )

    # -- event-loop side ---------------------------------------------------------------------

    async def _open(self, sock: socket.socket) -> None:
        if self._mode == _REFUSE:
            self._placeholder = sock
        else:
            await self._listen(sock)

    async def _listen(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _TrackedProtocol(self), sock=sock, backlog=1024
        )

    async def _switch(self, mode: str, latency: float) -> None:
        self._mode, self._latency = mode, latency
        server = self._server
        if mode == _REFUSE:
            if server is not None:
                self._server = None
                if hasattr(socket, "SO_REUSEPORT"):
                    # The listener was bound with SO_REUSEPORT: the placeholder takes the port
                    # before the listener closes, so no other process can in between.
                    self._placeholder = _new_socket(self._host, self._port, reuse_port=True)
                    server.close()
                else:
                    server.close()
                    self._placeholder = _new_socket(self._host, self._port, reuse_port=False)
            await self._drop_all()
        elif server is None and self._placeholder is not None:
            placeholder, self._placeholder = self._placeholder, None
            try:
                await self._listen(placeholder)
            except BaseException:
                placeholder.close()
                raise

    async def _drop_all(self) -> None:
        """Reset every client connection and wait until they are all closed."""
        connections = list(self._connections.items())
        for transport, _ in connections:
            _rst(transport)
        if connections:
            await asyncio.wait([closed for _, closed in connections], timeout=_CONTROL_TIMEOUT)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        upstream: asyncio.StreamWriter | None = None
        try:
            mode = self._mode
            if mode == _BLACKHOLE:
                await _black_hole(reader)
                return
            if mode != _PASS:  # reset, or refuse with a connection accepted just before
                _rst(writer.transport)
                return
            try:
                async with asyncio.timeout(_PROXY_CONNECT_TIMEOUT):
                    up_reader, upstream = await asyncio.open_connection(*self._upstream)
            except (OSError, TimeoutError):
                _rst(writer.transport)  # the upstream is down: so is this connection
                return
            await self._relay(reader, writer, up_reader, upstream)
        except (OSError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # ``stop()``: this task is the top of its stack, and asyncio's stream callback
            # would log a cancelled handler as an error (3.11).
            pass
        finally:
            try:
                if upstream is not None:
                    upstream.transport.abort()
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
            finally:
                self._tasks.discard(task)

    async def _relay(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        upstream: asyncio.StreamWriter,
    ) -> None:
        """Move bytes both ways until either side closes; the mode is read per chunk."""
        outbound = asyncio.create_task(self._outbound(reader, writer, upstream))
        inbound = asyncio.create_task(self._inbound(up_reader, writer, upstream))
        try:
            done, _ = await asyncio.wait({outbound, inbound}, return_when=asyncio.FIRST_COMPLETED)
            if outbound in done and outbound.result():
                # The client finished sending (half-close): let the answer come back.
                await inbound
        finally:
            for part in (outbound, inbound):
                part.cancel()
            await asyncio.gather(outbound, inbound, return_exceptions=True)

    async def _outbound(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstream: asyncio.StreamWriter,
    ) -> bool:
        """Client to upstream; ``True`` when the client half-closed its side."""
        while True:
            data = await reader.read(_PROXY_CHUNK)
            mode = self._mode
            if mode == _BLACKHOLE:
                if not data:
                    return False
                continue
            if mode != _PASS:
                _rst(writer.transport)
                return False
            if not data:
                if upstream.can_write_eof():
                    upstream.write_eof()
                return True
            upstream.write(data)
            await upstream.drain()

    async def _inbound(
        self,
        up_reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstream: asyncio.StreamWriter,
    ) -> None:
        """Upstream to client, through a delay line when ``latency`` is set."""
        loop = asyncio.get_running_loop()
        line: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                arrived, data = await line.get()
                if not data:
                    return
                wait = arrived + self._latency - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                mode = self._mode
                if mode == _BLACKHOLE:
                    continue
                if mode != _PASS:
                    _rst(writer.transport)
                    return
                writer.write(data)
                await writer.drain()

        delivery = asyncio.create_task(deliver())
        try:
            while not delivery.done():
                data = await up_reader.read(_PROXY_CHUNK)
                line.put_nowait((loop.time(), data))
                if not data:
                    break
            await delivery
        finally:
            delivery.cancel()
            await asyncio.gather(delivery, return_exceptions=True)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes | None:
    """Read a chunked body (RFC 9112 §7.1); None if malformed or larger than the limit."""
    parts: list[bytes] = []
    total = 0
    # Every chunk but the last carries >= 1 byte, so the size limit bounds this loop.
    for _ in range(_MAX_BODY + 1):
        line = await reader.readuntil(b"\r\n")
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size < 0:
            return None
        if size == 0:
            for _ in range(_MAX_TRAILER_LINES):
                if await reader.readuntil(b"\r\n") == b"\r\n":
                    return b"".join(parts)
            return None
        total += size
        if total > _MAX_BODY:
            return None
        data = await reader.readexactly(size + 2)
        if data[-2:] != b"\r\n":
            return None
        parts.append(data[:-2])
    return None


async def _trickle(writer: asyncio.StreamWriter, response: bytes, behaviour: Behaviour) -> None:
    """Send ``response`` a byte at a time, pausing after each byte of the head or body."""
    split = response.index(b"\r\n\r\n") + 4
    for i in range(len(response)):
        writer.write(response[i : i + 1])
        await writer.drain()
        pause = behaviour.trickle_head if i < split else behaviour.trickle_body
        if pause:
            await asyncio.sleep(pause)


async def _black_hole(reader: asyncio.StreamReader) -> None:
    """Swallow whatever the client sends until it (or ``stop()``) closes the connection."""
    for _ in range(_MAX_BODY):
        if not await reader.read(65536):
            return


def main(argv: Sequence[str] | None = None) -> int:
    """Serve one ``Backend`` in the foreground until SIGTERM or SIGINT (for the benchmarks).

    Prints ``ready <port>`` on stdout once listening and nothing else there afterwards.
    """
    parser = argparse.ArgumentParser(prog="python -m meshclient.testing", description=main.__doc__)
    parser.add_argument("--port", type=int, default=0, help="0 lets the OS choose")
    parser.add_argument("--name", default="backend", help="sent back in x-backend")
    parser.add_argument("--host", default="127.0.0.1", help="an IPv4 loopback address")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before answering")
    parser.add_argument("--status", type=int, default=200)
    parser.add_argument(
        "--fail-rate", type=float, default=0.0, help="share of requests answered --fail-status"
    )
    parser.add_argument("--fail-status", type=int, default=503)
    parser.add_argument("--seed", type=int, default=0, help="seeds the --fail-rate draws")
    parser.add_argument(
        "--record", action="store_true", help="keep every request in memory (off: count only)"
    )
    args = parser.parse_args(argv)
    # Block the signals before the server thread exists (it inherits the mask), then wait
    # for them synchronously: no handler, no race between a check and a wait.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    for signum in stop_signals:
        # An ignored signal is discarded before sigwait() can see it, and shells start
        # background jobs with SIGINT ignored.
        signal.signal(signum, signal.SIG_DFL)
    backend = Backend(args.name, port=args.port, host=args.host, record=args.record, seed=args.seed)
    backend.behave(
        status=args.status,
        delay=args.delay,
        fail_rate=args.fail_rate,
        fail_status=args.fail_status,
    )
    with backend:
        print(f"ready {backend.port}", flush=True)
        signal.sigwait(stop_signals)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
