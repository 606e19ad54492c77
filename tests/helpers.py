"""Helpers shared by the tests; every wait here is bounded, so a broken promise fails, not hangs.

Import them with ``from helpers import ...`` (``tests/`` is on ``sys.path``). Helpers that
users' own test suites need too (``FakeClock``, ``Backend``, ``FaultProxy``) live in
``meshclient.testing`` instead.
"""

from __future__ import annotations

import contextlib
import random
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import meshclient
from meshclient.stack import Call, CallModule

__all__ = [
    "FAST_RETRY",
    "RETRY3",
    "WAIT_LIMIT",
    "CallEnds",
    "ConstantRandom",
    "assert_budget_left",
    "eventually",
    "join",
    "reap",
    "serve_asgi",
    "serve_wsgi",
    "service",
    "shut_down",
]

#: Seconds any condition a test waits for may take before the test fails.
WAIT_LIMIT = 10.0

#: Three attempts with a backoff short enough not to slow the suite down.
FAST_RETRY = meshclient.Retry(attempts=3, backoff=0.001, max_backoff=0.002)
#: ``FAST_RETRY`` as a policy.
RETRY3 = meshclient.Policy(retry=FAST_RETRY)


class CallEnds(CallModule):
    """Keeps every call it saw end, to read the fields the engine promises modules."""

    role = "call_ends"

    def __init__(self) -> None:
        self.calls: list[Call] = []

    def on_call_end(self, call: Call) -> None:
        self.calls.append(call)


def assert_budget_left(left: float | None, budget: float, spent: float) -> None:
    """``left`` is what remains of a ``budget`` of seconds that was set, and then read, within
    a stretch of ``spent`` seconds: so ``budget - spent <= left <= budget``.

    No wall-clock threshold: ``spent`` is measured around the code under test, so a slow
    machine widens the range instead of failing the test.
    """
    assert left is not None, "no deadline was in force"
    # 1e-9: float rounding of sums of clock readings, not time.
    assert budget - spent - 1e-9 <= left <= budget + 1e-9, (
        f"{left} s left of a {budget} s budget set within the last {spent} s"
    )


def eventually(condition: Callable[[], bool], what: str, limit: float = WAIT_LIMIT) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"still not true after {limit} s: {what}")
        time.sleep(0.005)


def join(thread: threading.Thread, what: str, limit: float = WAIT_LIMIT) -> None:
    """``thread.join()`` that fails naming ``what`` instead of hanging past ``limit`` seconds."""
    thread.join(limit)
    if thread.is_alive():
        raise AssertionError(f"thread still running after {limit} s: {what}")


def reap(process: subprocess.Popen[Any], limit: float = WAIT_LIMIT) -> None:
    """Kill ``process`` if it still runs and wait for it to exit, at most ``limit`` seconds."""
    if process.poll() is None:
        process.kill()
    try:
        process.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"process {process.pid} still running {limit} s after SIGKILL"
        ) from None


class ConstantRandom(random.Random):
    """An RNG whose ``random()`` always returns ``value``: a draw the test chooses."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def service(*addresses: str, **kwargs: Any) -> meshclient.Service:
    """``Service`` over static ``host:port`` addresses, e.g. ``service(a.address, b.address)``."""
    return meshclient.Service(list(addresses), **kwargs)


@contextlib.contextmanager
def serve_asgi(app: Any, limit: float = WAIT_LIMIT) -> Iterator[str]:
    """Serve an ASGI ``app`` with uvicorn from a thread on 127.0.0.1; yields ``host:port``.

    Starting and stopping are bounded by ``limit`` seconds each.
    """
    import uvicorn  # the demo extra: only the tests that serve ASGI need it

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True
    )
    thread.start()
    try:
        eventually(lambda: server.started or not thread.is_alive(), "uvicorn started", limit)
        assert server.started, "uvicorn stopped before it started serving"
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        join(thread, "uvicorn stopping", limit)
        sock.close()


def shut_down(
    server: socketserver.BaseServer, thread: threading.Thread, what: str, limit: float = WAIT_LIMIT
) -> None:
    """Stop a ``socketserver`` server whose ``serve_forever()`` runs in ``thread``, and close
    it; bounded, where ``server.shutdown()`` alone waits without a limit."""
    stopper = threading.Thread(target=server.shutdown, name=f"{what}-stop", daemon=True)
    stopper.start()
    join(stopper, f"{what} stopping", limit)
    join(thread, f"{what} stopping", limit)
    server.server_close()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_wsgi(app: Any, limit: float = WAIT_LIMIT) -> Iterator[str]:
    """Serve a WSGI ``app`` with wsgiref from a thread on 127.0.0.1; yields ``host:port``."""
    server: WSGIServer = make_server("127.0.0.1", 0, app, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="wsgiref", daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_port}"
    finally:
        shut_down(server, thread, "wsgiref", limit)
