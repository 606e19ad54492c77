"""EtcdRegistration: leases, keep-alive, deregistration, and the ASGI/WSGI helpers.

The process-death tests run the registering service in a child process (uvicorn + Starlette,
or Flask under wsgiref), find it through ``EtcdDiscovery``, call it, then signal it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from discovery_support import (
    EtcdServer,
    client_addresses,
    discovery_state,
    mesh_client,
    python_child,
    stop_child,
)

from meshclient.discovery import (
    Endpoint,
    EtcdDiscovery,
    EtcdRegistration,
    etcd_lifespan,
    etcd_wsgi,
)
from meshclient.testing import FaultProxy

from helpers import WAIT_LIMIT, eventually


@pytest.fixture
def registrations() -> Iterator[Callable[..., EtcdRegistration]]:
    """``make(url, prefix, endpoint, **options)``; every registration is stopped at teardown."""
    made: list[EtcdRegistration] = []

    def make(*args: Any, **options: Any) -> EtcdRegistration:
        registration = EtcdRegistration(*args, **options)
        made.append(registration)
        return registration

    yield make
    for registration in made:
        registration.stop()


def test_registers_under_a_lease_and_deregisters(etcd: EtcdServer, etcd_prefix: str) -> None:
    endpoint = Endpoint("127.0.0.1", 8001, weight=2, zone="a", metadata={"version": "1"})
    registration = EtcdRegistration(etcd.url, etcd_prefix, endpoint, ttl=5)
    with registration:
        assert registration.registered
        assert etcd.keys(etcd_prefix) == [registration.key]
        assert registration.key.startswith(f"{etcd_prefix}127.0.0.1:8001/{os.getpid()}-")
        value = etcd.get(registration.key)
        assert value is not None
        assert json.loads(value) == {
            "address": "127.0.0.1",
            "port": 8001,
            "weight": 2,
            "zone": "a",
            "metadata": {"version": "1"},
        }
        lease = registration.lease
        assert lease in etcd.leases()
    assert etcd.keys(etcd_prefix) == []
    assert lease not in etcd.leases(), "the lease is revoked, not left to expire"
    assert not registration.registered


def test_keep_alive_outlives_the_ttl(
    etcd: EtcdServer, etcd_prefix: str, registrations: Callable[..., EtcdRegistration]
) -> None:
    registration = registrations(etcd.url, etcd_prefix, "127.0.0.1:8001", ttl=1)
    registration.start()
    assert registration.wait_registered()
    lease = registration.lease
    eventually(lambda: registration.renewals >= 4, "four renewals (more than one TTL)")
    assert etcd.keys(etcd_prefix) == [registration.key]
    assert registration.lease == lease, "the same lease, kept alive"


def test_a_lost_lease_is_replaced(
    etcd: EtcdServer, etcd_prefix: str, registrations: Callable[..., EtcdRegistration]
) -> None:
    """The lease revoked behind its back (or expired during a long cut): register again."""
    registration = registrations(etcd.url, etcd_prefix, "127.0.0.1:8001", ttl=3)
    registration.start()
    assert registration.wait_registered()
    lost = registration.lease
    etcd.call("/v3/lease/revoke", {"ID": str(lost)})
    assert etcd.keys(etcd_prefix) == []
    eventually(
        lambda: registration.lease not in (None, lost) and registration.registered,
        "a new lease",
    )
    eventually(lambda: etcd.keys(etcd_prefix) == [registration.key], "the key back")


def test_registers_once_etcd_is_reachable(
    etcd: EtcdServer, etcd_prefix: str, registrations: Callable[..., EtcdRegistration]
) -> None:
    with FaultProxy(f"127.0.0.1:{etcd.client_port}", mode="refuse") as proxy:
        registration = registrations(proxy.url, etcd_prefix, "127.0.0.1:8001", ttl=3)
        registration.start()  # returns at once, etcd or not
        assert not registration.wait_registered(0.2)
        proxy.behave()
        assert registration.wait_registered(WAIT_LIMIT)
        assert etcd.keys(etcd_prefix) == [registration.key]


def test_stop_in_a_forked_child_leaves_the_parents_key(
    etcd: EtcdServer,
    etcd_prefix: str,
    registrations: Callable[..., EtcdRegistration],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """gunicorn workers exit through atexit too: only the registering process deregisters."""
    registration = registrations(etcd.url, etcd_prefix, "127.0.0.1:8001", ttl=3)
    registration.start()
    assert registration.wait_registered()
    parent = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: parent + 1)  # as seen from a forked child
    registration.stop()
    assert etcd.keys(etcd_prefix) == [registration.key]
    monkeypatch.undo()
    registration.stop()
    assert etcd.keys(etcd_prefix) == []


# -- ASGI lifespan, in process ------------------------------------------------------------


async def run_lifespan(app: Any, while_serving: Callable[[], None]) -> None:
    """Drive the ASGI lifespan protocol as a server does: startup, serve, shutdown."""
    to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.create_task(app(scope, to_app.get, from_app.put))
    await to_app.put({"type": "lifespan.startup"})
    started = await asyncio.wait_for(from_app.get(), WAIT_LIMIT)
    assert started["type"] == "lifespan.startup.complete", started
    await asyncio.to_thread(while_serving)
    await to_app.put({"type": "lifespan.shutdown"})
    stopped = await asyncio.wait_for(from_app.get(), WAIT_LIMIT)
    assert stopped["type"] == "lifespan.shutdown.complete", stopped
    await asyncio.wait_for(task, WAIT_LIMIT)


def test_lifespan_registers_after_startup_and_leaves_before_shutdown(
    etcd: EtcdServer, etcd_prefix: str
) -> None:
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette

    seen: list[tuple[str, list[str]]] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        seen.append(("app startup", etcd.keys(etcd_prefix)))
        yield
        seen.append(("app shutdown", etcd.keys(etcd_prefix)))

    registration = EtcdRegistration(etcd.url, etcd_prefix, "127.0.0.1:8001", ttl=5)
    app = etcd_lifespan(Starlette(lifespan=lifespan), registration)

    def serving() -> None:
        seen.append(("serving", etcd.keys(etcd_prefix)))

    asyncio.run(run_lifespan(app, serving))
    assert seen == [
        ("app startup", []),
        ("serving", [registration.key]),
        ("app shutdown", []),
    ]
    assert etcd.keys(etcd_prefix) == []


def test_lifespan_for_an_app_without_lifespan_support(etcd: EtcdServer, etcd_prefix: str) -> None:
    """Django's ASGI handler raises on the lifespan scope: the wrapper answers for it."""

    async def django_like(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError("Django can only handle ASGI/HTTP connections, not lifespan.")

    registration = EtcdRegistration(etcd.url, etcd_prefix, "127.0.0.1:8001", ttl=5)
    app = etcd_lifespan(django_like, registration)
    keys: list[list[str]] = []
    asyncio.run(run_lifespan(app, lambda: keys.append(etcd.keys(etcd_prefix))))
    assert keys == [[registration.key]]
    assert etcd.keys(etcd_prefix) == []


def test_lifespan_wrapper_passes_requests_through(etcd: EtcdServer, etcd_prefix: str) -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("hello")

    registration = EtcdRegistration(etcd.url, etcd_prefix, "127.0.0.1:8001")
    app = etcd_lifespan(Starlette(routes=[Route("/", hello)]), registration)

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://users") as client:
            return await client.get("/")

    assert asyncio.run(get()).text == "hello"
    assert not registration.registered, "no lifespan, no registration"


def test_wsgi_helper_returns_the_app_itself(etcd: EtcdServer, etcd_prefix: str) -> None:
    from flask import Flask

    app = Flask("users")
    registration = EtcdRegistration(etcd.url, etcd_prefix, "127.0.0.1:8001", ttl=5)
    try:
        assert etcd_wsgi(app, registration) is app
        assert registration.wait_registered()
        assert etcd.keys(etcd_prefix) == [registration.key]
    finally:
        registration.stop()
    with pytest.raises(TypeError, match="EtcdRegistration"):
        etcd_wsgi(app, "http://127.0.0.1:2379")  # type: ignore[arg-type]


# -- a service in a child process ----------------------------------------------------------

ASGI_SERVICE = """
import faulthandler, signal, socket, sys
faulthandler.register(signal.SIGUSR1, all_threads=True)
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from meshclient.discovery import EtcdRegistration, etcd_lifespan

url, prefix, ttl = sys.argv[1], sys.argv[2], int(sys.argv[3])
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
port = sock.getsockname()[1]

async def hello(request):
    return PlainTextResponse("hello from the child", headers={"x-backend": "child"})

app = etcd_lifespan(
    Starlette(routes=[Route("/", hello)]),
    EtcdRegistration(url, prefix, f"127.0.0.1:{port}", ttl=ttl),
)
uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning")).run(sockets=[sock])
"""

WSGI_SERVICE = """
import faulthandler, signal, sys, threading
faulthandler.register(signal.SIGUSR1, all_threads=True)
from wsgiref.simple_server import make_server
from flask import Flask
from meshclient.discovery import EtcdRegistration, etcd_wsgi

url, prefix, ttl = sys.argv[1], sys.argv[2], int(sys.argv[3])
app = Flask("child")

@app.get("/")
def hello():
    return "hello from the child", 200, {"x-backend": "child"}

server = make_server("127.0.0.1", 0, app)
app = etcd_wsgi(app, EtcdRegistration(url, prefix, f"127.0.0.1:{server.server_port}", ttl=ttl))
# SIGTERM ends serve_forever (as gunicorn and waitress stop on it), then the interpreter exits
# normally and atexit deregisters. (Raising SystemExit from the handler would be swallowed by
# wsgiref if it landed while a request is handled.)
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
server.serve_forever()
"""


def serve_child(kind: str, etcd: EtcdServer, prefix: str, ttl: int, tmp_path: Path) -> Any:
    script = tmp_path / f"{kind}_service.py"
    script.write_text(textwrap.dedent(ASGI_SERVICE if kind == "asgi" else WSGI_SERVICE))
    return python_child(script, tmp_path / f"{kind}.log", etcd.url, prefix, str(ttl))


@pytest.mark.parametrize(
    ("kind", "sig", "ttl"),
    [
        # Killed: nothing runs in the child; the lease expires within its TTL.
        ("asgi", signal.SIGKILL, 1),
        # Stopped: deregistered at once. A 60 s TTL cannot explain the key vanishing within
        # the wait limit, so it is the deregistration that removed it.
        ("asgi", signal.SIGTERM, 60),
        ("wsgi", signal.SIGTERM, 60),
    ],
    ids=["asgi-SIGKILL", "asgi-SIGTERM", "wsgi-SIGTERM"],
)
def test_a_registered_service_vanishes_when_its_process_ends(
    kind: str,
    sig: int,
    ttl: int,
    etcd: EtcdServer,
    etcd_prefix: str,
    tmp_path: Path,
) -> None:
    child = serve_child(kind, etcd, etcd_prefix, ttl, tmp_path)
    try:
        discovery = EtcdDiscovery(etcd.url, etcd_prefix, backoff=0.02, max_backoff=0.1)
        with mesh_client(discovery) as client:
            eventually(lambda: len(client_addresses(client)) == 1, "the child registered")
            response = client.get("http://users/")
            assert (response.status_code, response.text) == (200, "hello from the child")
            status = stop_child(child, sig)
            # uvicorn re-raises SIGTERM once it has shut down; the Flask child exits with 0.
            assert status in {-sig, 0} if sig == signal.SIGTERM else status == -sig
            eventually(lambda: client_addresses(client) == set(), "the child gone from the set")
            assert etcd.keys(etcd_prefix) == []
            assert discovery_state(client)["errors"] == 0
    finally:
        if child.poll() is None:
            stop_child(child, signal.SIGKILL)
    log = (tmp_path / f"{kind}.log").read_text()
    assert "Traceback" not in log, log
