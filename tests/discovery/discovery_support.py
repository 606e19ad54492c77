"""What the discovery tests share: real registries (etcd, dnsmasq), a recording
``DiscoveryUpdates``, and a loop of calls that runs while endpoints change.

Servers run as children of the test process (``start_new_session=True``, output to a log
file, stopped by PID and waited for) on 127.0.0.1 ports chosen here. Imported by the tests as
``discovery_support`` (``from conftest import ...`` would pick another directory's conftest).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

import meshclient
from meshclient.discovery import Discovery, Endpoint

#: Seconds a server may take to start or stop before the test fails.
START_LIMIT = 15.0
DNS_DOMAIN = "svc.test"


def free_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    """A port free right now on ``host`` for TCP (and UDP when asked for both)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port: int = tcp.getsockname()[1]
            if kind == socket.SOCK_STREAM:
                return port
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port pair on 127.0.0.1")


class ChildServer:
    """A server process started by the test process, logging to a file, stopped by PID."""

    name = "server"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.log = workdir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def argv(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        assert not self.running, f"{self.name} is already running"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self.starts += 1
        deadline = time.monotonic() + START_LIMIT
        while not self.ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not start; log:\n{self._tail()}")
            time.sleep(0.01)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` to the process (by PID) and wait for it to exit."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            proc.wait(START_LIMIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(START_LIMIT)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def _tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"


class EtcdServer(ChildServer):
    """etcd 3.4 with its v3 JSON gateway on 127.0.0.1, plus the calls the tests need."""

    name = "etcd"

    def __init__(self, workdir: Path, executable: str = "etcd") -> None:
        super().__init__(workdir)
        self.executable = executable
        self.client_port = free_port()
        self.peer_port = free_port()
        self.url = f"http://127.0.0.1:{self.client_port}"
        self.http = httpx.Client(base_url=self.url, trust_env=False, timeout=5.0)

    def argv(self) -> list[str]:
        client = f"http://127.0.0.1:{self.client_port}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        return [
            self.executable,
            "--name=meshclient-test",
            f"--data-dir={self.workdir / 'data'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=meshclient-test={peer}",
            "--initial-cluster-state=new",
            "--heartbeat-interval=10",
            "--election-timeout=100",
            "--logger=zap",
            "--log-level=warn",
        ]

    def ready(self) -> bool:
        try:
            response = self.http.get("/health", timeout=0.5)
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and response.json().get("health") == "true"

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post(path, json=body)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def put(self, key: str, value: object, *, lease: int | None = None) -> int:
        """Put ``value`` (a dict or list is JSON-encoded); the new revision."""
        raw = value if isinstance(value, bytes) else str(value).encode()
        if isinstance(value, dict | list):
            raw = json.dumps(value).encode()
        body: dict[str, Any] = {"key": b64(key), "value": base64.b64encode(raw).decode()}
        if lease is not None:
            body["lease"] = str(lease)
        return int(self.call("/v3/kv/put", body)["header"]["revision"])

    def delete(self, key: str) -> None:
        self.call("/v3/kv/deleterange", {"key": b64(key)})

    def get(self, key: str) -> bytes | None:
        kvs = self.call("/v3/kv/range", {"key": b64(key)}).get("kvs", [])
        return base64.b64decode(kvs[0].get("value", "")) if kvs else None

    def keys(self, prefix: str) -> list[str]:
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        data = self.call("/v3/kv/range", {"key": b64(prefix), "range_end": b64(end)})
        return [base64.b64decode(kv["key"]).decode() for kv in data.get("kvs", [])]

    def revision(self) -> int:
        return int(self.call("/v3/kv/range", {"key": b64("\0")})["header"]["revision"])

    def compact(self) -> int:
        """Compact up to the current revision; returns it."""
        revision = self.revision()
        self.call("/v3/kv/compaction", {"revision": str(revision), "physical": True})
        return revision

    def leases(self) -> set[int]:
        return {int(lease["ID"]) for lease in self.call("/v3/lease/leases", {}).get("leases", [])}

    def close(self) -> None:
        self.stop()
        self.http.close()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class DnsServer(ChildServer):
    """dnsmasq authoritative for ``svc.test`` on a high 127.0.0.1 port.

    A records come from one file per name in a ``hostsdir``, replaced by atomic rename
    (dnsmasq reloads it within milliseconds; an in-place edit is seen half-written). SRV
    records live in the config file, so changing them restarts dnsmasq (~55 ms).
    """

    name = "dnsmasq"

    def __init__(self, workdir: Path, executable: str = "dnsmasq") -> None:
        super().__init__(workdir)
        self.executable = executable
        self.port = free_port(socket.SOCK_DGRAM)
        self.hostsdir = workdir / "hosts"
        self.hostsdir.mkdir()
        self.config = workdir / "dnsmasq.conf"
        self._srv: dict[str, list[tuple[str, int, int, int]]] = {}
        self.set_hosts(f"ready.{DNS_DOMAIN}", ["127.0.0.1"])

    def argv(self) -> list[str]:
        lines = [
            f"port={self.port}",
            "listen-address=127.0.0.1",
            "bind-interfaces",
            "no-resolv",
            "no-hosts",
            f"local=/{DNS_DOMAIN}/",
            "local-ttl=0",
            f"hostsdir={self.hostsdir}",
        ]
        for name, records in self._srv.items():
            lines += [
                f"srv-host={name},{t},{port},{prio},{weight}" for t, port, prio, weight in records
            ]
        self.config.write_text("\n".join(lines) + "\n")
        return [
            self.executable,
            f"--conf-file={self.config}",
            "--keep-in-foreground",
            "--pid-file=",
            "--user=root",
        ]

    def ready(self) -> bool:
        resolver = self.resolver()
        try:
            resolver.resolve(f"ready.{DNS_DOMAIN}", "A", lifetime=0.2)
        except Exception:
            return False
        return True

    def resolver(self) -> Any:
        import dns.resolver

        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = self.port
        resolver.cache = None
        return resolver

    def set_hosts(self, name: str, addresses: Iterable[str]) -> None:
        """``name`` now resolves to ``addresses`` (none: NXDOMAIN), by atomic rename."""
        target = self.hostsdir / name
        temporary = self.hostsdir / f".{name}.{secrets.token_hex(4)}"
        temporary.write_text("".join(f"{address} {name}\n" for address in addresses))
        temporary.rename(target)

    def set_srv(self, name: str, records: Sequence[tuple[str, int, int, int]]) -> None:
        """SRV records ``(target, port, priority, weight)`` for ``name``; restarts dnsmasq."""
        self._srv[name] = list(records)
        if self.running:
            self.stop()
            self.start()

    def discovery_options(self) -> dict[str, Any]:
        return {"nameservers": ["127.0.0.1"], "nameserver_port": self.port}


# ------------------------------------------------------------------------- recording


class Recorder:
    """A ``DiscoveryUpdates`` that records every report, for tests of one backend alone."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sets: list[tuple[Endpoint, ...]] = []
        self.errors: list[BaseException] = []
        self.rejected: list[tuple[object, str]] = []

    def __call__(self, endpoints: Iterable[Endpoint]) -> None:
        with self._lock:
            self.sets.append(tuple(endpoints))

    def error(self, error: BaseException) -> None:
        with self._lock:
            self.errors.append(error)

    def invalid(self, entry: object, reason: str) -> None:
        with self._lock:
            self.rejected.append((entry, reason))

    @property
    def latest(self) -> tuple[Endpoint, ...] | None:
        with self._lock:
            return self.sets[-1] if self.sets else None

    def addresses(self) -> set[str] | None:
        """The addresses of the latest set, or None before the first."""
        latest = self.latest
        return None if latest is None else {endpoint.address for endpoint in latest}

    def counts(self) -> tuple[int, int, int]:
        """Reports so far: (sets, errors, rejected entries)."""
        with self._lock:
            return len(self.sets), len(self.errors), len(self.rejected)


# ------------------------------------------------------------------ calling while it changes


class CallLoop:
    """Idempotent GETs through ``client`` on a thread, as fast as a short pause allows.

    Counts successes and failures (an exception or a non-200 answer) and which backend
    answered (its ``x-backend`` header).
    """

    def __init__(self, client: meshclient.Client, url: str, pause: float = 0.002) -> None:
        self.client = client
        self.url = url
        self.pause = pause
        self.ok = 0
        self.failures: list[str] = []
        self.by_backend: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="call-loop", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                response = self.client.get(self.url)
            except Exception as exc:
                with self._lock:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
            else:
                with self._lock:
                    if response.status_code == 200:
                        self.ok += 1
                        name = response.headers.get("x-backend", "?")
                        self.by_backend[name] = self.by_backend.get(name, 0) + 1
                    else:
                        self.failures.append(f"HTTP {response.status_code}")
            self._stop.wait(self.pause)

    def hits(self, name: str) -> int:
        with self._lock:
            return self.by_backend.get(name, 0)

    def calls(self) -> int:
        with self._lock:
            return self.ok + len(self.failures)

    def __enter__(self) -> CallLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(30.0)
        assert not self._thread.is_alive(), "the call loop did not stop"


def discovery_state(client: meshclient.Client, service: str = "users") -> dict[str, Any]:
    state: dict[str, Any] = client.snapshot()["services"][service]["discovery"]
    return state


def client_addresses(client: meshclient.Client, service: str = "users") -> set[str]:
    """The endpoint addresses the client is balancing over now."""
    endpoints = client.snapshot()["services"][service]["endpoints"]
    return {endpoint["address"] for endpoint in endpoints}


@contextlib.contextmanager
def mesh_client(
    discovery: Discovery, balancer: meshclient.Balancer | None = None
) -> Iterator[meshclient.Client]:
    """A client whose "users" service comes from ``discovery``; closed on exit."""
    service = meshclient.Service(discovery, balancer=balancer)
    client = meshclient.Client(services={"users": service})
    try:
        yield client
    finally:
        client.close()


def python_child(script: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """Run ``script`` in a new Python process (its own session), output to ``log``."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, str(script), *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env=env,
            start_new_session=True,
        )


def stop_child(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    """Signal a child by PID and wait (bounded) for it; its exit status."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(START_LIMIT)
    except subprocess.TimeoutExpired:
        # The test's child scripts dump every thread's stack on SIGUSR1 (faulthandler): the
        # log then says where the child was stuck.
        proc.send_signal(signal.SIGUSR1)
        time.sleep(0.5)
        proc.kill()
        proc.wait(START_LIMIT)
        raise AssertionError(f"child {proc.pid} ignored signal {sig}") from None
