"""Specification of the test tools in ``meshclient.testing``: the fake clock and ``Backend``."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest

import meshclient.testing
from meshclient.testing import Backend, Behaviour, FakeClock, FaultProxy, closed_port

from helpers import eventually, reap

MakeBackend = Callable[..., Backend]


def client(**kwargs: Any) -> httpx.Client:
    """A plain httpx client that ignores proxy settings from the environment."""
    return httpx.Client(trust_env=False, **kwargs)


def async_client(**kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(trust_env=False, **kwargs)


def raw_exchange(backend: Backend, data: bytes, *, until_eof: bool = True) -> bytes:
    """Send raw bytes and collect the reply until the server closes (5 s bound)."""
    with socket.create_connection(("127.0.0.1", backend.port), timeout=5) as sock:
        sock.sendall(data)
        chunks = []
        for _ in range(1000):
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            if not until_eof:
                break
        return b"".join(chunks)


# -- FakeClock ----------------------------------------------------------------------------------


def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock(10.0)
    assert clock() == 10.0
    assert clock.advance(2.5) == 12.5
    clock.sleep(0.5)
    assert clock() == 13.0
    clock.set(5.0)
    assert clock() == 5.0


def test_fake_clock_wall_time_moves_in_step() -> None:
    clock = FakeClock(wall_start=1000.0)
    clock.advance(3)
    assert clock.wall() == 1003.0


def test_fake_clock_refuses_negative_advance() -> None:
    with pytest.raises(ValueError, match="seconds must be >= 0"):
        FakeClock().advance(-1)


# -- healthy behaviour ------------------------------------------------------------------------


def test_healthy_backend_names_itself_and_counts(backend_factory: MakeBackend) -> None:
    backend = backend_factory("a")
    with client() as http:
        first = http.get(f"{backend.url}/users/1?full=1")
        second = http.get(f"{backend.url}/users/2")
    assert first.status_code == 200
    assert first.headers["x-backend"] == "a"
    assert first.json() == {"backend": "a", "n": 1}
    assert second.json() == {"backend": "a", "n": 2}
    recorded = backend.requests[0]
    assert (recorded.method, recorded.path, recorded.query) == ("GET", "/users/1", "full=1")
    assert recorded.headers["host"] == backend.address
    assert backend.count() == 2
    assert backend.count(path="/users/2") == 1


def test_addresses_are_loopback(backend_factory: MakeBackend) -> None:
    backend = backend_factory("a")
    assert backend.address == f"127.0.0.1:{backend.port}"
    assert backend.url == f"http://127.0.0.1:{backend.port}"


def test_non_loopback_host_is_rejected() -> None:
    with pytest.raises(ValueError, match="loopback"):
        Backend("x", host="10.0.0.1")


def test_backends_fixture_gives_three_named_backends(backends: list[Backend]) -> None:
    assert [b.name for b in backends] == ["a", "b", "c"]
    assert len({b.port for b in backends}) == 3


def test_reset_forgets_requests_but_keeps_behaviour(backend_factory: MakeBackend) -> None:
    backend = backend_factory()
    backend.behave(status=201)
    with client() as http:
        http.get(backend.url)
        backend.reset()
        response = http.get(backend.url)
    assert response.status_code == 201
    assert response.json()["n"] == 1
    assert backend.count() == 1


# -- scripted behaviour ---------------------------------------------------------------------


def test_status_with_retry_after(backend_factory: MakeBackend) -> None:
    backend = backend_factory()
    backend.behave(status=503, retry_after=2)
    with client() as http:
        response = http.get(backend.url)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"


def test_custom_body_and_headers(backend_factory: MakeBackend) -> None:
    backend = backend_factory()
    backend.behave(body="hello", content_type="text/plain", headers={"x-extra": "1"})
    with client() as http:
        response = http.get(backend.url)
    assert response.text == "hello"
    assert response.headers["content-type"] == "text/plain"
    assert response.headers["x-extra"] == "1"


def test_script_runs_once_then_steady_behaviour_resumes(backend_factory: MakeBackend) -> None:
    backend = backend_factory()
    backend.script(Behaviour(status=503), Behaviour(status=502))
    with client() as http:
        statuses = [http.get(backend.url).status_code for _ in range(3)]
    assert statuses == [503, 502, 200]


def test_behave_drops_pending_script(backend_factory: MakeBackend) -> None:
    backend = backend_factory()
    backend.script(Behaviour(status=503))
    backend.behave(status=204)
    with client() as http:
        assert http.get(backend.url).status_code == 204


def test_no_body_statuses_and_head_keep_framing(backend_factory: MakeBackend) -> None:
    """204 and HEAD answers carry no body, so the next response on the connection parses."""
    backend = backend_factory()
    with client() as http:
        head = http.head(backend.url)
        backend.behave(status=204)
        empty = http.get(backend.url)
        backend.behave()
        after = http.get(backend.url)
    assert head.content == b""
    assert int(head.headers["content-length"]) > 0
    assert empty.content == b""
    assert after.json()["n"] == 3
    assert backend.connections_opened == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"status": 99}, "status"),
        ({"delay": -1}, "delay"),
        ({"hang": True, "close_mid_response": True}, "at most one fault"),
        ({"headers": {"bad\nname": "x"}}, "header"),
        ({"retry_after": "1\r\nx: y"}, "retry_after"),
        ({"fail_rate": 1.5}, "fail_rate"),
        ({"fail_rate": True}, "fail_rate"),
        ({"fail_status": 700}, "fail_status"),
    ],
)
def test_invalid_behaviour_names_the_field(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Behaviour(**kwargs)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_delay_does_not_hold_up_other_connections(backend_factory: MakeBackend) -> None:
    """A delayed answer arrives after a later request on another connection was answered."""
    backend = backend_factory()
    backend.script(Behaviour(delay=0.5))
    finished: list[str] = []

    async def fetch(label: str, http: httpx.AsyncClient) -> None:
        await http.get(backend.url)
        finished.append(label)

    async with async_client() as slow, async_client() as fast, anyio.create_task_group() as tg:
        started = time.monotonic()
        tg.start_soon(fetch, "slow", slow)
        await anyio.to_thread.run_sync(backend.wait_for_requests, 1)
        await fetch("fast", fast)
    assert finished == ["fast", "slow"]
    # A lower bound (the promised delay): a slow machine can only make it larger.
    assert time.monotonic() - started >= 0.45


def test_hang_answers_never_so_the_client_times_out(backend_factory: MakeBackend) -> None:
    backend = backend_factory()
    backend.behave(hang=True)
    with client(timeout=httpx.Timeout(5.0, read=0.2)) as http, pytest.raises(httpx.ReadTimeout):
        http.get(backend.url)
    assert backend.count() == 1


def test_close_mid_response_fails_while_reading_the_body(backend_factory: MakeBackend) -> None:
    backend = backend_factory()
    backend.behave(close_mid_response=True)
    with client() as http, http.stream("GET", backend.url) as response:
        assert response.status_code == 200
        assert response.headers["content-length"] == "1000"
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            response.read()


def test_close_before_response_is_a_protocol_error(backend_factory: MakeBackend) -> None:
    backend = backend_factory()
    backend.behave(close_before_response=True)
    with client() as http, pytest.raises(httpx.RemoteProtocolError):
        http.post(backend.url, content=b"once")
    assert [r.body for r in backend.requests] == [b"once"]


# -- connections --------------------------------------------------------------------------


def test_refuse_then_accept_on_the_same_port(backend_factory: MakeBackend) -> None:
    backend = backend_factory()
    port = backend.port
    backend.refuse()
    assert not backend.listening
    with client() as http, pytest.raises(httpx.ConnectError):
        http.get(backend.url)
    backend.accept()
    with client() as http:
        assert http.get(backend.url).status_code == 200
    assert backend.port == port


def test_refuse_can_keep_open_connections(backend_factory: MakeBackend) -> None:
    backend = backend_factory()
    with client() as http:
        http.get(backend.url)
        backend.refuse(drop_connections=False)
        assert http.get(backend.url).status_code == 200
        with client() as fresh, pytest.raises(httpx.ConnectError):
            fresh.get(backend.url)


def test_drop_connections_forces_a_reconnect(backend_factory: MakeBackend) -> None:
    backend = backend_factory()
    with client() as http:
        http.get(backend.url)
        backend.drop_connections()
        assert backend.open_connections == 0
        assert http.get(backend.url).status_code == 200
    assert backend.connections_opened == 2


def test_stop_closes_open_connections(backend_factory: MakeBackend) -> None:
    backend = backend_factory()
    backend.behave(hang=True)
    with socket.create_connection(("127.0.0.1", backend.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        backend.wait_for_requests(1)
        backend.stop()
        try:
            data = sock.recv(1024)
        except ConnectionResetError:
            data = b""
    assert data == b""


def test_restart_serves_on_the_same_port(backend_factory: MakeBackend) -> None:
    backend = backend_factory()
    port = backend.port
    backend.stop()
    backend.start()
    with client() as http:
        assert http.get(backend.url).status_code == 200
    assert backend.port == port


def test_closed_port_fixture_refuses(closed_port: int) -> None:
    with client() as http, pytest.raises(httpx.ConnectError):
        http.get(f"http://127.0.0.1:{closed_port}/")


def test_closed_port_function_returns_an_unused_port() -> None:
    assert 0 < closed_port() < 65536
    assert 0 < Backend.reserve_closed_port() < 65536


def test_keep_alive_reuses_one_connection(backend_factory: MakeBackend) -> None:
    backend = backend_factory()
    with client() as http:
        numbers = [http.get(backend.url).json()["n"] for _ in range(50)]
    assert numbers == list(range(1, 51))
    assert backend.connections_opened == 1


def test_connection_close_is_respected(backend_factory: MakeBackend) -> None:
    backend = backend_factory()
    with client() as http:
        responses = [http.get(backend.url, headers={"connection": "close"}) for _ in range(3)]
    assert all(r.headers["connection"] == "close" for r in responses)
    assert backend.connections_opened == 3


def test_http_1_0_closes_after_the_response(backend_factory: MakeBackend) -> None:
    backend = backend_factory()
    reply = raw_exchange(backend, b"GET /old HTTP/1.0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"connection: close" in reply


def test_pipelined_requests_are_answered_in_order(backend_factory: MakeBackend) -> None:
    backend = backend_factory()
    request = b"GET /%d HTTP/1.1\r\nhost: x\r\n\r\n"
    last = b"GET /3 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    reply = raw_exchange(backend, request % 1 + request % 2 + last)
    assert reply.count(b"HTTP/1.1 200 OK") == 3
    assert reply.index(b'"n": 1') < reply.index(b'"n": 2') < reply.index(b'"n": 3')
    assert [r.path for r in backend.requests] == ["/1", "/2", "/3"]


def test_malformed_request_closes_without_recording(backend_factory: MakeBackend) -> None:
    backend = backend_factory()
    assert raw_exchange(backend, b"NONSENSE\r\n\r\n") == b""
    assert raw_exchange(backend, b"GET / HTTP/1.1\r\ncontent-length: x\r\n\r\n") == b""
    assert backend.count() == 0


# -- request bodies --------------------------------------------------------------------------


def test_chunked_post_is_recorded_once_fully_read(backend_factory: MakeBackend) -> None:
    backend = backend_factory()

    def body() -> Iterator[bytes]:
        yield b"hello "
        yield b"chunked "
        yield b"world"

    with client() as http:
        response = http.post(f"{backend.url}/submit", content=body())
    assert response.status_code == 200
    assert backend.count(method="POST", path="/submit") == 1
    (recorded,) = backend.requests
    assert recorded.headers["transfer-encoding"] == "chunked"
    assert recorded.body == b"hello chunked world"


def test_content_length_post_is_recorded_once(backend_factory: MakeBackend) -> None:
    backend = backend_factory()
    with client() as http:
        http.post(backend.url, json={"k": "v"})
    assert backend.count(method="POST") == 1
    assert json.loads(backend.requests[0].body) == {"k": "v"}


def test_wait_for_requests_times_out(backend_factory: MakeBackend) -> None:
    with pytest.raises(TimeoutError, match="0 of 1"):
        backend_factory().wait_for_requests(1, timeout=0.01)


@pytest.mark.anyio
async def test_async_clients_are_served_concurrently(backend_factory: MakeBackend) -> None:
    backend = backend_factory()
    statuses: list[int] = []

    async def fetch(http: httpx.AsyncClient) -> None:
        statuses.append((await http.get(backend.url)).status_code)

    async with async_client() as http, anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(fetch, http)
    assert statuses == [200] * 20
    assert backend.count() == 20


# -- admin endpoints and the process entry point ---------------------------------------------


def test_admin_endpoints_change_behaviour_and_are_not_counted(backend_factory: MakeBackend) -> None:
    backend = backend_factory()
    with client() as http:
        changed = http.post(f"{backend.url}/__behave", json={"status": 503, "retry_after": 1})
        failing = http.get(backend.url)
        stats = http.get(f"{backend.url}/__stats").json()
        invalid = http.post(f"{backend.url}/__behave", json={"status": 42})
        unknown = http.post(f"{backend.url}/__behave", json={"colour": "red"})
    assert changed.status_code == 200
    assert (failing.status_code, failing.headers["retry-after"]) == (503, "1")
    assert stats["count"] == 1
    assert invalid.status_code == 400
    assert "status" in invalid.json()["error"]
    assert unknown.status_code == 400
    assert backend.count() == 1


def test_process_entry_point_serves_until_sigterm(tmp_path: Path) -> None:
    package_root = Path(meshclient.testing.__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(package_root)}
    with (tmp_path / "stderr.log").open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "meshclient.testing", "--name", "p", "--status", "201"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            start_new_session=True,
        )
    try:
        assert process.stdout is not None
        readable, _, _ = select.select([process.stdout], [], [], 20)
        assert readable, "no 'ready' line within 20 s"
        word, port = process.stdout.readline().decode().split()
        assert word == "ready"
        url = f"http://127.0.0.1:{port}"
        with client() as http:
            first = http.get(url)
            http.post(f"{url}/__behave", json={"status": 200})
            second = http.get(url)
            stats = http.get(f"{url}/__stats").json()
        assert (first.status_code, first.headers["x-backend"]) == (201, "p")
        assert second.status_code == 200
        assert stats["count"] == 2
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        reap(process)
        if process.stdout is not None:
            process.stdout.close()
    assert b"Traceback" not in (tmp_path / "stderr.log").read_bytes()


def _flaky_statuses(backend: Backend, n: int) -> list[int]:
    with client() as http:
        return [http.get(backend.url).status_code for _ in range(n)]


def test_fail_rate_answers_that_share_with_fail_status(backend_factory: MakeBackend) -> None:
    """A flaky instance: about ``fail_rate`` of the requests get ``fail_status``, the rest 200."""
    backend = backend_factory("flaky", seed=7)
    backend.behave(fail_rate=0.3, fail_status=503, delay=0.0)
    statuses = _flaky_statuses(backend, 200)
    assert set(statuses) == {200, 503}
    assert 0.2 <= statuses.count(503) / len(statuses) <= 0.4


def test_fail_rate_is_repeatable_for_the_same_seed(backend_factory: MakeBackend) -> None:
    first = backend_factory("one", seed=3)
    second = backend_factory("two", seed=3)
    for backend in (first, second):
        backend.behave(fail_rate=0.5, fail_status=502)
    assert _flaky_statuses(first, 40) == _flaky_statuses(second, 40)


def test_fail_rate_extremes(backend_factory: MakeBackend) -> None:
    backend = backend_factory("extremes")
    backend.behave(fail_rate=1.0, fail_status=500)
    assert set(_flaky_statuses(backend, 5)) == {500}
    backend.behave(fail_rate=0.0, status=201)
    assert set(_flaky_statuses(backend, 5)) == {201}


def test_process_entry_point_takes_a_fail_rate(tmp_path: Path) -> None:
    package_root = Path(meshclient.testing.__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(package_root)}
    argv = [sys.executable, "-m", "meshclient.testing", "--fail-rate", "1", "--fail-status", "502"]
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, start_new_session=True
    )
    try:
        assert process.stdout is not None
        readable, _, _ = select.select([process.stdout], [], [], 20)
        assert readable, "no 'ready' line within 20 s"
        port = process.stdout.readline().decode().split()[1]
        with client() as http:
            assert http.get(f"http://127.0.0.1:{port}/").status_code == 502
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        reap(process)
        if process.stdout is not None:
            process.stdout.close()


# -- FaultProxy ---------------------------------------------------------------------------------


@pytest.fixture
def proxy_factory() -> Iterator[Callable[..., FaultProxy]]:
    """Start ``FaultProxy``s in front of an upstream; all stop at teardown."""
    started: list[FaultProxy] = []

    def make(upstream: Backend | str, **kwargs: Any) -> FaultProxy:
        address = upstream.address if isinstance(upstream, Backend) else upstream
        proxy = FaultProxy(address, **kwargs).start()
        started.append(proxy)
        return proxy

    yield make
    for proxy in reversed(started):
        proxy.stop()


MakeProxy = Callable[..., FaultProxy]


def raw_reply(port: int, data: bytes = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n") -> bytes | None:
    """Send ``data`` on a fresh connection; the reply until EOF, or ``None`` on a reset.

    A reset can arrive before ``connect()`` returns (the server accepts and resets at once
    while this thread waits for the CPU), so it counts wherever it lands.
    """
    chunks = []
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(data)
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    except ConnectionResetError:
        return None
    return b"".join(chunks)


def test_proxy_passes_requests_through(backend_factory: MakeBackend, proxy_factory: MakeProxy):
    backend = backend_factory("a")
    proxy = proxy_factory(backend, name="p")
    with client() as http:
        responses = [http.get(f"{proxy.url}/users/{n}") for n in range(3)]
        posted = http.post(proxy.url, content=b"x" * 200_000)
    assert [r.json()["n"] for r in responses] == [1, 2, 3]
    assert responses[0].headers["x-backend"] == "a"
    assert posted.status_code == 200
    assert backend.requests[-1].body == b"x" * 200_000
    assert proxy.connections_accepted == backend.connections_opened == 1  # keep-alive
    assert (proxy.mode, proxy.latency, proxy.upstream) == ("pass", 0.0, backend.address)
    assert proxy.address == f"127.0.0.1:{proxy.port}"


def test_proxy_relays_the_upstream_closing(backend_factory: MakeBackend, proxy_factory: MakeProxy):
    backend = backend_factory()
    proxy = proxy_factory(backend)
    reply = raw_reply(proxy.port, b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    assert reply is not None
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
    assert reply.endswith(b'"n": 1}')


def test_proxy_latency_delays_answers(backend_factory: MakeBackend, proxy_factory: MakeProxy):
    backend = backend_factory()
    proxy = proxy_factory(backend, latency=0.3)
    with client() as http:
        started = time.monotonic()
        assert http.get(proxy.url).status_code == 200
        # Lower bounds (the configured latency): a slow machine can only make them larger.
        assert time.monotonic() - started >= 0.3
        proxy.behave()  # back to no delay, on the same connection
        assert http.get(proxy.url).json()["n"] == 2
        proxy.behave(latency=0.2)
        started = time.monotonic()
        assert http.get(proxy.url).json()["n"] == 3
        assert time.monotonic() - started >= 0.2
    assert proxy.connections_accepted == 1


def test_proxy_reset_mode_resets_new_connections(
    backend_factory: MakeBackend, proxy_factory: MakeProxy
):
    backend = backend_factory()
    proxy = proxy_factory(backend, mode="reset")
    assert raw_reply(proxy.port) is None
    with client() as http:
        with pytest.raises((httpx.NetworkError, httpx.RemoteProtocolError)):
            http.get(proxy.url)
        proxy.behave()
        assert http.get(proxy.url).status_code == 200
    assert backend.count() == 1
    assert proxy.connections_accepted >= 2


def test_proxy_blackhole_accepts_and_never_answers(
    backend_factory: MakeBackend, proxy_factory: MakeProxy
):
    backend = backend_factory()
    proxy = proxy_factory(backend)
    timeout = httpx.Timeout(5.0, read=0.2)
    with client(timeout=timeout) as http:
        assert http.get(proxy.url).status_code == 200
        proxy.behave("blackhole")
        with pytest.raises(httpx.ReadTimeout):
            http.get(proxy.url)  # an open connection stops forwarding
        with client(timeout=timeout) as fresh, pytest.raises(httpx.ReadTimeout):
            fresh.get(proxy.url)  # a new one is accepted and read, never answered
    assert backend.count() == 1
    assert proxy.connections_accepted == 2
    proxy.behave()
    with client() as http:
        assert http.get(proxy.url).status_code == 200


def test_proxy_refuse_closes_the_port_and_reopens_it(
    backend_factory: MakeBackend, proxy_factory: MakeProxy
):
    backend = backend_factory()
    proxy = proxy_factory(backend)
    port = proxy.port
    with client() as http:
        assert http.get(proxy.url).status_code == 200
        proxy.behave("refuse")
        assert not proxy.listening
        assert proxy.open_connections == 0  # open connections went with it
        with pytest.raises(httpx.ConnectError):
            http.get(proxy.url)
        proxy.behave()
        assert http.get(proxy.url).status_code == 200
    assert proxy.port == port
    assert backend.count() == 2


def test_proxy_started_refusing(backend_factory: MakeBackend, proxy_factory: MakeProxy):
    proxy = proxy_factory(backend_factory(), mode="refuse")
    with client() as http, pytest.raises(httpx.ConnectError):
        http.get(proxy.url)
    proxy.behave()
    with client() as http:
        assert http.get(proxy.url).status_code == 200


def test_proxy_resets_clients_when_the_upstream_is_down(proxy_factory: MakeProxy, closed_port: int):
    proxy = proxy_factory(f"127.0.0.1:{closed_port}")
    assert raw_reply(proxy.port) is None
    assert proxy.connections_accepted == 1


@pytest.mark.anyio
async def test_proxy_serves_async_clients_concurrently(
    backend_factory: MakeBackend, proxy_factory: MakeProxy
):
    backend = backend_factory()
    backend.behave(delay=0.2)
    proxy = proxy_factory(backend)
    statuses: list[int] = []

    async def fetch(http: httpx.AsyncClient) -> None:
        statuses.append((await http.get(proxy.url)).status_code)

    async with async_client() as http, anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(fetch, http)
    assert statuses == [200] * 10
    assert proxy.connections_accepted == 10


def test_proxy_stop_closes_connections(backend_factory: MakeBackend, proxy_factory: MakeProxy):
    backend = backend_factory()
    proxy = proxy_factory(backend, mode="blackhole")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        eventually(lambda: proxy.open_connections == 1, "the proxy holds the connection")
        proxy.stop()
        try:
            data = sock.recv(1024)
        except ConnectionResetError:
            data = b""
    assert data == b""
    with client() as http, pytest.raises(httpx.ConnectError):
        http.get(proxy.url)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("127.0.0.1:1",), {"mode": "drop"}, "mode must be one of"),
        (("127.0.0.1:1",), {"latency": -1}, "latency"),
        (("127.0.0.1:1",), {"latency": True}, "latency"),
        (("nowhere",), {}, "host:port"),
        (("127.0.0.1:99999",), {}, "host:port"),
        (("127.0.0.1:1",), {"host": "10.0.0.1"}, "loopback"),
    ],
)
def test_proxy_rejects_invalid_settings(
    args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        FaultProxy(*args, **kwargs)


def test_proxy_behave_validates_and_needs_a_running_proxy(
    backend_factory: MakeBackend, proxy_factory: MakeProxy
):
    proxy = proxy_factory(backend_factory())
    with pytest.raises(ValueError, match="mode"):
        proxy.behave("slow")
    assert proxy.mode == "pass"
    proxy.stop()
    with pytest.raises(RuntimeError, match="not running"):
        proxy.behave("reset")
