"""The demo's local mesh: backend processes on 127.0.0.1 that misbehave on schedule.

Each instance is a ``python -m meshclient.testing`` child process (its own session, so a
Ctrl-C in the terminal reaches only the demo, which then stops every child by PID and waits
for it). Logs go to files in a temporary directory, never to a pipe nobody reads.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["HOST", "Instance", "InstanceSpec", "Mesh", "default_specs"]

HOST = "127.0.0.1"
#: Seconds to wait for a child's ``ready <port>`` line, and for a stopped child to exit.
START_TIMEOUT = 15.0
STOP_TIMEOUT = 3.0
_POLL = 0.01


@dataclass(frozen=True)
class InstanceSpec:
    """One instance of a service and how it misbehaves."""

    service: str
    name: str
    role: str
    delay: float = 0.0
    fail_rate: float = 0.0
    #: Fractions of the run during which the instance is down (refusing connections).
    down: tuple[float, float] | None = None


def default_specs() -> list[InstanceSpec]:
    """users: 3 instances (one +50 ms, one answering 30 % 503s); orders: 2, one dies and returns."""
    return [
        InstanceSpec("users", "users-1", "healthy"),
        InstanceSpec("users", "users-2", "slow +50 ms", delay=0.05),
        InstanceSpec("users", "users-3", "flaky 30 % 503", fail_rate=0.3),
        InstanceSpec("orders", "orders-1", "healthy"),
        InstanceSpec("orders", "orders-2", "dies, comes back", down=(0.3, 0.6)),
    ]


@dataclass
class Instance:
    """A running (or, while down, stopped) instance; its port survives restarts."""

    spec: InstanceSpec
    log_dir: Path
    seed: int
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    #: Requests served by earlier lives of this instance (a restart resets its own count).
    served_before: int = 0
    restarts: int = 0
    up: bool = False
    _log: Path = field(init=False)

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def spawn(self) -> None:
        spec = self.spec
        self._log = self.log_dir / f"{spec.name}.{self.restarts}.log"
        argv = [sys.executable, "-m", "meshclient.testing", "--host", HOST]
        argv += ["--port", str(self.port), "--name", spec.name, "--delay", repr(spec.delay)]
        argv += ["--fail-rate", repr(spec.fail_rate), "--seed", str(self.seed)]
        with self._log.open("wb") as log:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self) -> None:
        proc = self.proc
        assert proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            for line in self._log.read_text(errors="replace").splitlines():
                if line.startswith("ready "):
                    self.port = int(line.split()[1])
                    self.up = True
                    return
            if proc.poll() is not None:
                break
            time.sleep(_POLL)
        tail = self._log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"demo backend {self.spec.name} did not start: {tail}")

    def served(self) -> int:
        """Requests this instance served over all its lives (admin requests excluded)."""
        return self.served_before + (self._count() if self.up else 0)

    def _count(self) -> int:
        try:
            with urllib.request.urlopen(f"http://{self.address}/__stats", timeout=2) as response:
                return int(json.loads(response.read())["count"])
        except (OSError, ValueError, KeyError):
            return 0

    def kill(self) -> None:
        """The instance dies: its port refuses connections until ``revive``."""
        if self.up:
            self.served_before += self._count()
        self.up = False
        self.stop()

    def revive(self) -> None:
        self.restarts += 1
        self.spawn()
        self.wait_ready()

    def stop(self) -> None:
        """SIGTERM by PID and wait; SIGKILL if it does not exit in time. Idempotent."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)


class Mesh:
    """One copy of every instance in ``specs``; a context manager that stops them all."""

    def __init__(self, label: str, specs: Sequence[InstanceSpec], *, seed: int = 1) -> None:
        self.label = label
        self.log_dir = Path(tempfile.mkdtemp(prefix=f"meshclient-demo-{label}-"))
        self.instances = [
            Instance(spec, self.log_dir, seed=seed + i) for i, spec in enumerate(specs)
        ]
        # Kills and revivals run in worker threads; the lock keeps one from starting a
        # process after ``stop`` (which would leak it).
        self._lock = threading.Lock()
        self._closed = False

    def start(self) -> None:
        with self._lock:
            for instance in self.instances:
                instance.spawn()
            for instance in self.instances:
                instance.wait_ready()

    def kill(self, name: str) -> None:
        with self._lock:
            if not self._closed:
                self.by_name()[name].kill()

    def revive(self, name: str) -> None:
        with self._lock:
            if not self._closed:
                self.by_name()[name].revive()

    def stop(self) -> None:
        with self._lock:
            self._closed = True
            for instance in self.instances:
                instance.stop()
        shutil.rmtree(self.log_dir, ignore_errors=True)

    def addresses(self, service: str) -> list[str]:
        return [i.address for i in self.instances if i.spec.service == service]

    def services(self) -> list[str]:
        return list(dict.fromkeys(i.spec.service for i in self.instances))

    def by_name(self) -> dict[str, Instance]:
        return {i.spec.name: i for i in self.instances}

    def pids(self) -> list[int]:
        return [pid for i in self.instances if (pid := i.pid) is not None]
