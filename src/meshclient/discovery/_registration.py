"""``EtcdRegistration``: a service announces itself in etcd under a lease it keeps alive.

The key lives as long as the lease: renewed every ``ttl / 3`` seconds by a daemon thread,
deleted (and the lease revoked) by ``stop()``, and deleted by etcd itself ``ttl`` seconds
after the process dies without stopping (SIGKILL, a crash, a lost host). ``etcd_lifespan``
(ASGI) and ``etcd_wsgi`` (WSGI) tie a registration to a web application's life.
"""

from __future__ import annotations

import atexit
import logging
import os
import secrets
import threading
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any, Self, TypeVar

import anyio.to_thread
import httpx

from .._validate import check_integer, check_positive
from ._base import Endpoint
from ._document import endpoint_document
from ._etcd import EtcdError, Gateway, Verify, _b64, check_urls
from ._watch import Backoff

__all__ = ["EtcdRegistration", "etcd_lifespan", "etcd_wsgi"]

logger = logging.getLogger("meshclient")

#: Seconds ``with registration:`` (and the app helpers) wait for the first registration
#: before going on without it (it keeps trying in the background).
STARTUP_WAIT = 5.0

_Scope = MutableMapping[str, Any]
_Message = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[_Message], Awaitable[None]]
_ASGIApp = Callable[[_Scope, _Receive, _Send], Awaitable[None]]
_App = TypeVar("_App")


class EtcdRegistration:
    """Keep ``endpoint`` registered under ``prefix`` in etcd while this process runs.

    ``EtcdRegistration("http://127.0.0.1:2379", "/services/users/", "127.0.0.1:8001")``
    writes the endpoint document (``{"address": "127.0.0.1", "port": 8001}``, plus weight,
    zone and metadata when the ``Endpoint`` has them) under the key
    ``/services/users/127.0.0.1:8001/<pid>-<random>``, attached to a lease of ``ttl`` seconds
    (default 10; an int, etcd's unit), renewed every ``ttl / 3`` seconds.

    - ``start()`` returns at once; a daemon thread registers (retrying with backoff while etcd
      is unreachable) and keeps the lease alive. If the lease is lost anyway (etcd unreachable
      for longer than ``ttl``), it registers again under a new lease.
    - ``stop()`` deletes the key and revokes the lease: clients stop sending at once rather
      than after ``ttl``. Called in a forked child of the process that started it, it does
      nothing (the parent's registration is the parent's to end).
    - ``with registration:`` / ``async with registration:`` start, wait up to 5 s for the
      first registration, and stop on exit. ``etcd_lifespan`` and ``etcd_wsgi`` do the same
      for a web application.
    - ``key``: the full key instead of the default. The default is unique per process, so
      several worker processes serving one address each register it, and the address stays
      while any of them lives.
    - ``timeout`` (2 s) bounds each request to etcd.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        prefix: str,
        endpoint: Endpoint | str,
        *,
        ttl: int = 10,
        key: str | None = None,
        timeout: float = 2.0,
        verify: Verify = True,
    ) -> None:
        self.urls = check_urls("EtcdRegistration", url)
        if not isinstance(prefix, str) or not prefix:
            raise ValueError(f"EtcdRegistration.prefix must be a non-empty str, got {prefix!r}")
        if isinstance(endpoint, str):
            endpoint = Endpoint.parse(endpoint)
        elif not isinstance(endpoint, Endpoint):
            raise TypeError(
                f"EtcdRegistration.endpoint must be an Endpoint or 'host:port', got {endpoint!r}"
            )
        check_integer("EtcdRegistration", "ttl", ttl, 1)
        check_positive("EtcdRegistration", "timeout", timeout)
        if key is not None and (not isinstance(key, str) or not key.startswith(prefix)):
            raise ValueError(
                f"EtcdRegistration.key must be a str under the prefix {prefix!r}, got {key!r}"
            )
        self.prefix = prefix
        self.endpoint = endpoint
        self.ttl = ttl
        self.timeout = float(timeout)
        self.verify = verify
        self.key = key or f"{prefix}{endpoint.address}/{os.getpid()}-{secrets.token_hex(4)}"
        #: Lease renewals since ``start()``: evidence that the keep-alive runs.
        self.renewals = 0
        self._value = endpoint_document(endpoint)
        self._lock = threading.Lock()
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._registered = threading.Event()
        self._lease: int | None = None
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"EtcdRegistration({self.urls[0]!r}, key={self.key!r}, ttl={self.ttl!r})"

    @property
    def registered(self) -> bool:
        """Whether the key is in etcd under a live lease, as far as this process knows."""
        return self._registered.is_set()

    @property
    def lease(self) -> int | None:
        """The current lease ID, or None."""
        return self._lease

    @property
    def interval(self) -> float:
        """Seconds between lease renewals: a third of the TTL, so two may fail in a row."""
        return self.ttl / 3

    def start(self) -> None:
        """Register and keep the lease alive on a daemon thread; returns at once."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError(f"{self!r} is already started; stop() it first")
            self._pid = os.getpid()
            self.renewals = 0
            stop = threading.Event()
            thread = threading.Thread(
                target=self._keep,
                args=(stop,),
                name=f"meshclient-etcd-registration {self.key}",
                daemon=True,
            )
            self._stop, self._thread = stop, thread
        thread.start()

    def wait_registered(self, timeout: float = STARTUP_WAIT) -> bool:
        """Wait up to ``timeout`` seconds for the key to be in etcd; whether it is."""
        return self._registered.wait(timeout)

    def stop(self) -> None:
        """Delete the key and revoke the lease (best effort: failures are logged). Idempotent."""
        if os.getpid() != self._pid:
            return  # a forked child: the registration belongs to the parent
        with self._lock:
            stop, thread = self._stop, self._thread
            self._stop = self._thread = None
        if stop is None or thread is None:
            return
        stop.set()
        thread.join(2 * self.timeout + 1.0)
        lease, self._lease = self._lease, None
        self._registered.clear()
        if lease is None:
            return
        gateway = Gateway(self.urls, timeout=self.timeout, verify=self.verify)
        try:
            gateway.call("/v3/kv/deleterange", {"key": _b64(self.key.encode())})
            gateway.call("/v3/lease/revoke", {"ID": str(lease)})
        except (httpx.HTTPError, EtcdError) as exc:
            logger.warning(
                "meshclient: could not remove %s from etcd (%r); it expires with its lease "
                "within %s s",
                self.key,
                exc,
                self.ttl,
            )
        finally:
            gateway.close()

    def __enter__(self) -> Self:
        self.start()
        if not self.wait_registered(STARTUP_WAIT):
            logger.warning(
                "meshclient: %s is not registered after %s s; still trying in the background",
                self.key,
                STARTUP_WAIT,
            )
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await anyio.to_thread.run_sync(self.__enter__)

    async def __aexit__(self, *exc_info: object) -> None:
        await anyio.to_thread.run_sync(self.stop)

    # -- the keep-alive thread ---------------------------------------------------------------

    def _keep(self, stop: threading.Event) -> None:
        gateway = Gateway(self.urls, timeout=self.timeout, verify=self.verify)
        backoff = Backoff(min(0.25, self.interval), self.interval)
        failing = False
        try:
            while not stop.is_set():
                try:
                    if self._lease is None:
                        self._register(gateway)
                    elif self._renew(gateway):
                        self.renewals += 1
                    else:
                        logger.warning(
                            "meshclient: etcd lease of %s expired; registering again", self.key
                        )
                        self._lease = None
                        self._registered.clear()
                        continue
                    if failing:
                        logger.info("meshclient: %s is registered in etcd again", self.key)
                    failing = False
                    backoff.reset()
                    wait = self.interval
                except (httpx.HTTPError, EtcdError, ValueError, KeyError) as exc:
                    if stop.is_set():
                        return
                    if not failing:
                        logger.warning(
                            "meshclient: etcd registration of %s failed (%r); retrying",
                            self.key,
                            exc,
                        )
                    failing = True
                    gateway.rotate()
                    wait = backoff.next()
                stop.wait(wait)
        finally:
            gateway.close()

    def _register(self, gateway: Gateway) -> None:
        granted = gateway.call("/v3/lease/grant", {"TTL": str(self.ttl)})
        lease = int(granted["ID"])
        gateway.call(
            "/v3/kv/put",
            {"key": _b64(self.key.encode()), "value": _b64(self._value), "lease": str(lease)},
        )
        # Only now: a lease whose put failed is left to expire, and the next try starts over.
        self._lease = lease
        self._registered.set()

    def _renew(self, gateway: Gateway) -> bool:
        """One keep-alive; False when etcd no longer knows the lease (it expired)."""
        answer = gateway.call("/v3/lease/keepalive", {"ID": str(self._lease)})
        result = answer.get("result", answer)
        if "error" in result:
            raise EtcdError(f"/v3/lease/keepalive: {result['error']}")
        # An expired or unknown lease comes back without a TTL (0 is a default: left out).
        return int(result.get("TTL", 0)) > 0


# ------------------------------------------------------------------------------ web apps


def etcd_lifespan(app: _ASGIApp, registration: EtcdRegistration) -> _ASGIApp:
    """Wrap an ASGI app so it is registered while it serves: ``app = etcd_lifespan(app, reg)``.

    Registers after the app's own startup has completed (so the app is ready for traffic)
    and deregisters when shutdown begins, before the app's own shutdown (so clients stop
    sending before it stops answering). Works with Starlette, FastAPI and any ASGI app whose
    server runs the lifespan protocol (uvicorn, hypercorn); for an app that does not speak
    lifespan (Django's ASGI handler), the wrapper answers the protocol itself.
    """

    async def wrapped(scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        seen: list[str] = []
        registered = False

        async def receive_() -> _Message:
            message = await receive()
            seen.append(message["type"])
            if message["type"] == "lifespan.shutdown" and registered:
                await anyio.to_thread.run_sync(registration.stop)
            return message

        sent: list[str] = []

        async def send_(message: _Message) -> None:
            nonlocal registered
            sent.append(message["type"])
            if message["type"] == "lifespan.startup.complete":
                await registration.__aenter__()
                registered = True
            await send(message)

        try:
            await app(scope, receive_, send_)
        except Exception:
            if sent:
                raise
            # The app does not speak lifespan: run the protocol for the registration alone.
            logger.debug("meshclient: %r has no lifespan support; registering anyway", app)
            await _own_lifespan(registration, receive, send, started="lifespan.startup" in seen)
        finally:
            if registered and "lifespan.shutdown" not in seen:
                await anyio.to_thread.run_sync(registration.stop)

    return wrapped


async def _own_lifespan(
    registration: EtcdRegistration, receive: _Receive, send: _Send, *, started: bool
) -> None:
    if not started:
        await receive()  # lifespan.startup
    await registration.__aenter__()
    try:
        await send({"type": "lifespan.startup.complete"})
        while (await receive())["type"] != "lifespan.shutdown":
            pass
    finally:
        await anyio.to_thread.run_sync(registration.stop)
    await send({"type": "lifespan.shutdown.complete"})


def etcd_wsgi(app: _App, registration: EtcdRegistration) -> _App:
    """Register now, deregister at interpreter exit; returns ``app`` itself, unchanged.

    WSGI has no startup or shutdown hooks, so this ties the registration to the process:
    ``app = etcd_wsgi(Flask(__name__), registration)`` in the module the server imports.
    A normal exit (Ctrl-C, SIGTERM handled by gunicorn or waitress) runs ``atexit`` and
    deregisters at once; a killed process disappears when its lease expires. With
    ``gunicorn --preload`` the master registers once for all workers; without it, each worker
    registers its own key for the shared address (one endpoint for clients).
    """
    if not isinstance(registration, EtcdRegistration):
        raise TypeError(f"etcd_wsgi needs an EtcdRegistration, got {registration!r}")
    registration.start()
    atexit.register(registration.stop)
    return app
