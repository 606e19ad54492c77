"""``EtcdDiscovery``: endpoints under an etcd key prefix, listed once and then watched.

It talks to etcd's v3 JSON gateway (``/v3/kv/range``, ``/v3/watch``) with httpx, so it needs
no gRPC stack (the ``etcd3`` package on PyPI is unmaintained and clashes with OpenTelemetry's
protobuf). Gateway conventions: keys and values are base64, 64-bit integers are JSON strings,
fields with default values are left out (a PUT event has no ``"type"``, an empty range no
``"kvs"``), and every message of a streaming call is wrapped in ``{"result": ...}``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import socket
import ssl
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import httpx

from .._validate import check_positive
from ._base import Endpoint
from ._document import endpoint_from_document
from ._watch import Backoff, Run, Watcher, check_backoff

__all__ = ["EtcdDiscovery", "EtcdError", "Gateway", "check_urls", "prefix_range_end"]

#: TCP keep-alive on gateway connections, so a watch on a peer that vanished without a FIN
#: (host down, network cut) fails within about a minute instead of hanging for hours.
_KEEPALIVE_OPTIONS = [
    (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
    *(
        (socket.IPPROTO_TCP, getattr(socket, name), value)
        for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3))
        if hasattr(socket, name)
    ),
]

Verify = ssl.SSLContext | str | bool


class EtcdError(Exception):
    """etcd answered, but not with what was asked for (an error message, a canceled watch)."""


def prefix_range_end(prefix: bytes) -> bytes:
    """The ``range_end`` that selects every key starting with ``prefix`` (etcd's rule).

    The prefix with its last byte incremented; trailing ``0xff`` bytes are dropped first, and
    a prefix of only ``0xff`` bytes (or empty) gives ``b"\\0"``: every key from ``prefix`` on.
    """
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return b"\0"
    return stripped[:-1] + bytes([stripped[-1] + 1])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise EtcdError(f"expected a base64 string from the gateway, got {text!r}")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EtcdError(f"bad base64 from the gateway: {text[:40]!r}") from exc


def check_urls(owner: str, url: str | Sequence[str]) -> tuple[str, ...]:
    """One gateway URL or several (members of one cluster, tried in turn after a failure)."""
    urls = (url,) if isinstance(url, str) else tuple(url)
    if not urls:
        raise ValueError(f"{owner}.url must name at least one etcd URL, got {url!r}")
    for item in urls:
        if not isinstance(item, str) or not item.startswith(("http://", "https://")):
            raise ValueError(
                f"{owner}.url must be 'http://host:port' or 'https://host:port', got {item!r}"
            )
    return tuple(item.rstrip("/") for item in urls)


class Gateway:
    """A small client of etcd's v3 JSON gateway: one httpx client, the cluster's URLs in turn."""

    def __init__(self, urls: Sequence[str], *, timeout: float, verify: Verify = True) -> None:
        self._urls = tuple(urls)
        self._index = 0
        self.timeout = timeout
        transport = httpx.HTTPTransport(verify=verify, socket_options=_KEEPALIVE_OPTIONS)
        # trust_env=False: a registry on loopback or a private network must not be sent
        # through an HTTP proxy configured for the outside world.
        self.client = httpx.Client(transport=transport, timeout=timeout, trust_env=False)

    @property
    def url(self) -> str:
        return self._urls[self._index]

    def rotate(self) -> None:
        """After a failure: the next member of the cluster, if there are several."""
        self._index = (self._index + 1) % len(self._urls)

    def call(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST one unary gateway call; ``EtcdError`` for anything but a JSON success."""
        response = self.client.post(self.url + path, json=body)
        return _decode(path, response.status_code, response.content)

    @contextlib.contextmanager
    def stream(self, path: str, body: Mapping[str, Any]) -> Iterator[httpx.Response]:
        """POST a streaming call; no read timeout (a watch is idle while nothing changes)."""
        timeout = httpx.Timeout(self.timeout, read=None)
        with self.client.stream("POST", self.url + path, json=body, timeout=timeout) as response:
            if response.status_code != 200:
                _decode(path, response.status_code, response.read())
            yield response

    def close(self) -> None:
        self.client.close()


def _decode(path: str, status: int, content: bytes) -> dict[str, Any]:
    try:
        data = json.loads(content)
    except ValueError:
        data = None
    if status != 200 or not isinstance(data, dict) or "error" in data:
        detail = data.get("message") or data.get("error") if isinstance(data, dict) else None
        text = detail or content[:200].decode("utf-8", "replace")
        raise EtcdError(f"{path}: HTTP {status}: {text}")
    return data


class _WatchState:
    """One run's progress, and what its thread shares with ``close()`` (the watch's socket)."""

    __slots__ = ("lock", "revision", "socket")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.socket: socket.socket | None = None
        #: The next revision to watch from; None: list the prefix first.
        self.revision: int | None = None


_COMPACTED = "compacted"


class EtcdDiscovery(Watcher):
    """The endpoints registered under an etcd key prefix, e.g.
    ``EtcdDiscovery("http://127.0.0.1:2379", prefix="/services/users/")``.

    Every key under ``prefix`` holds one endpoint document (JSON: ``{"address": "10.0.0.5",
    "port": 8001, "weight": 1, "zone": "a", "metadata": {...}}``; see ``docs/discovery.md``),
    as ``EtcdRegistration`` writes it. The backend lists the prefix, publishes the set, then
    watches from the next revision and publishes the whole set again after every change.

    - A broken connection or an etcd error is reported (the last good set stays) and the
      watch resumes from the last revision seen, after full-jitter backoff from ``backoff``
      (0.25 s) up to ``max_backoff`` (10 s), trying the next URL if several were given.
    - When that revision has been compacted away, etcd cancels the watch: the prefix is
      listed again and watched from the new revision.
    - A value that is not a valid endpoint document is reported and left out. Two keys with
      the same address are one endpoint (the first key in key order gives weight and zone):
      several workers of one server may each register it.
    - ``timeout`` (5 s) bounds each request and the connect of the watch; the watch itself
      has no read timeout (TCP keep-alive notices a vanished peer).
    - ``verify``: as httpx's, for an ``https://`` gateway.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        prefix: str,
        *,
        timeout: float = 5.0,
        backoff: float = 0.25,
        max_backoff: float = 10.0,
        verify: Verify = True,
    ) -> None:
        super().__init__()
        self.urls = check_urls("EtcdDiscovery", url)
        if not isinstance(prefix, str) or not prefix:
            raise ValueError(
                f"EtcdDiscovery.prefix must be a non-empty str such as '/services/users/', "
                f"got {prefix!r}"
            )
        check_positive("EtcdDiscovery", "timeout", timeout)
        self.prefix = prefix
        self.timeout = float(timeout)
        self.backoff, self.max_backoff = check_backoff("EtcdDiscovery", backoff, max_backoff)
        self.verify = verify
        self._key = prefix.encode()
        self._range = {"key": _b64(self._key), "range_end": _b64(prefix_range_end(self._key))}

    def describe(self) -> str:
        return f"etcd {self.urls[0]}{' (+more)' if len(self.urls) > 1 else ''} {self.prefix}"

    def __repr__(self) -> str:
        url = self.urls[0] if len(self.urls) == 1 else list(self.urls)
        return f"EtcdDiscovery({url!r}, prefix={self.prefix!r})"

    # -- the run ---------------------------------------------------------------------------

    def _begin(self, run: Run) -> None:
        run.state = _WatchState()

    def _interrupt(self, run: Run) -> None:
        state: _WatchState = run.state
        with state.lock:
            sock = state.socket
        if sock is not None:
            # Unblocks the thread's read at once; closing the socket from here would not.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _watch(self, run: Run) -> None:
        gateway = Gateway(self.urls, timeout=self.timeout, verify=self.verify)
        backoff = Backoff(self.backoff, self.max_backoff)
        entries: dict[bytes, Endpoint] = {}
        state: _WatchState = run.state
        try:
            while run.running:
                try:
                    if state.revision is None:
                        state.revision = self._list(gateway, run, entries)
                        backoff.reset()
                    self._follow(gateway, run, entries, state, backoff)
                except (httpx.HTTPError, EtcdError, ValueError, KeyError, TypeError) as exc:
                    if not run.running:
                        return  # close() shut the watch's socket: not a registry failure
                    run.error(exc)
                    gateway.rotate()
                    run.sleep(backoff.next())
        finally:
            gateway.close()

    def _list(self, gateway: Gateway, run: Run, entries: dict[bytes, Endpoint]) -> int:
        """Read the whole prefix, publish it; the revision to watch from."""
        data = gateway.call("/v3/kv/range", self._range)
        listed: dict[bytes, Endpoint] = {}
        for kv in data.get("kvs", ()):
            self._put(run, listed, kv)
        entries.clear()
        entries.update(listed)
        self._publish(run, entries)
        return int(data["header"]["revision"]) + 1

    def _follow(
        self,
        gateway: Gateway,
        run: Run,
        entries: dict[bytes, Endpoint],
        state: _WatchState,
        backoff: Backoff,
    ) -> None:
        """Watch from ``state.revision`` until the stream ends, advancing it as events arrive.

        Returns after a compaction (with ``state.revision`` None: list again) or when stopped;
        raises when the stream breaks or ends (a reconnect resumes where it got to).
        """
        assert state.revision is not None
        revision = state.revision
        create = {**self._range, "start_revision": str(revision), "progress_notify": True}
        request = {"create_request": create}
        with gateway.stream("/v3/watch", request) as response:
            stream = response.extensions.get("network_stream")
            with state.lock:
                state.socket = stream.get_extra_info("socket") if stream is not None else None
            try:
                if not run.running:
                    return
                for line in response.iter_lines():
                    if not line.strip():
                        continue
                    message = json.loads(line)
                    if "error" in message:
                        raise EtcdError(f"watch stream: {message['error']}")
                    result = message.get("result") or {}
                    if result.get("canceled"):
                        if int(result.get("compact_revision", 0)) > 0:
                            state.revision = None  # history is gone: list again
                            return
                        raise EtcdError(f"watch canceled: {result.get('cancel_reason', '?')}")
                    if result.get("created"):
                        backoff.reset()
                    events = result.get("events")
                    if events:
                        for event in events:
                            kv = event["kv"]
                            if event.get("type") == "DELETE":
                                entries.pop(_unb64(kv["key"]), None)
                            else:
                                self._put(run, entries, kv)
                            revision = max(revision, int(kv["mod_revision"]) + 1)
                        self._publish(run, entries)
                        state.revision = revision  # the set now reflects every event up to here
                    elif not result.get("created") and "header" in result:
                        # A progress notification: nothing under the prefix changed up to here.
                        revision = max(revision, int(result["header"]["revision"]) + 1)
                        state.revision = revision
            finally:
                with state.lock:
                    state.socket = None
        raise EtcdError("the watch stream ended")

    def _put(self, run: Run, entries: dict[bytes, Endpoint], kv: Mapping[str, Any]) -> None:
        key = _unb64(kv["key"])
        value = _unb64(kv.get("value", ""))
        try:
            endpoint = endpoint_from_document(json.loads(value))
        except (UnicodeDecodeError, ValueError) as exc:
            entries.pop(key, None)
            entry = {
                "key": key.decode("utf-8", "replace"),
                "value": value[:200].decode("utf-8", "replace"),
            }
            reason = str(exc) if not isinstance(exc, json.JSONDecodeError) else f"not JSON: {exc}"
            run.invalid(entry, reason)
            return
        entries[key] = endpoint

    @staticmethod
    def _publish(run: Run, entries: Mapping[bytes, Endpoint]) -> None:
        merged: dict[tuple[str, int], Endpoint] = {}
        for key in sorted(entries):
            endpoint = entries[key]
            merged.setdefault((endpoint.host, endpoint.port), endpoint)
        run.publish(merged.values())
