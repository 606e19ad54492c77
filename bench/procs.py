"""Backend processes (``python -m meshclient.testing``) for the benchmarks.

Each backend runs in its own process so the client's CPU time (``time.process_time()``) is
measured alone. The backend's stdout goes to a log file (polled for ``ready <port>``), never a
pipe; every backend is stopped by PID and waited for.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

__all__ = ["BackendProc", "backends"]

HOST = "127.0.0.1"
#: Seconds to wait for ``ready <port>`` and for a stopped backend to exit.
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
_POLL_INTERVAL = 0.005


class BackendProc:
    """One ``meshclient.testing`` backend process on loopback, with its admin API."""

    def __init__(
        self,
        name: str,
        log_dir: Path,
        *,
        delay: float = 0.0,
        status: int = 200,
        cpus: set[int] | None = None,
    ) -> None:
        self.name = name
        #: CPUs the process may run on (``None``: any).
        self.cpus = cpus
        self.delay = delay
        self.status = status
        self._log_dir = log_dir
        self._proc: subprocess.Popen[bytes] | None = None
        self._admin: httpx.Client | None = None
        self.port = 0

    @property
    def addr(self) -> str:
        """``host:port``, as meshclient's static discovery takes it."""
        return f"{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.addr}"

    def spawn(self) -> None:
        """Start the process; ``wait_ready`` finishes the start (so several start together)."""
        out = self._log_dir / f"{self.name}.out"
        err = self._log_dir / f"{self.name}.err"
        argv = [sys.executable, "-m", "meshclient.testing", "--host", HOST, "--port", "0"]
        argv += ["--name", self.name, "--delay", repr(self.delay), "--status", str(self.status)]
        with out.open("wb") as stdout, err.open("wb") as stderr:
            # The child keeps its own copies of the descriptors.
            cpus = self.cpus
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
                preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus),
            )

    def wait_ready(self) -> None:
        assert self._proc is not None
        out = self._log_dir / f"{self.name}.out"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            for line in out.read_text(errors="replace").splitlines():
                if line.startswith("ready "):
                    self.port = int(line.split()[1])
                    self._admin = httpx.Client(base_url=self.url, trust_env=False, timeout=5.0)
                    return
            if self._proc.poll() is not None:
                break
            time.sleep(_POLL_INTERVAL)
        err = (self._log_dir / f"{self.name}.err").read_text(errors="replace")
        raise RuntimeError(f"backend {self.name} did not become ready: {err[-2000:]}")

    def stop(self) -> None:
        """SIGTERM by PID, then wait (SIGKILL if it does not exit in time)."""
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)

    # -- admin API (answered by the backend directly; neither recorded nor counted) --------

    def count(self) -> int:
        """Requests served so far (admin requests excluded)."""
        assert self._admin is not None
        response = self._admin.get("/__stats")
        response.raise_for_status()
        return int(response.json()["count"])

    def behave(self, **kwargs: Any) -> None:
        """Set the steady behaviour (``status``, ``delay``, ``retry_after``, ...)."""
        assert self._admin is not None
        response = self._admin.post("/__behave", json=kwargs)
        response.raise_for_status()


@contextlib.contextmanager
def backends(specs: Sequence[dict[str, Any]]) -> Iterator[list[BackendProc]]:
    """Start one process per spec (``name`` plus ``BackendProc`` keywords); stop them all after.

    Logs live in a temporary directory, removed afterwards unless something failed.
    """
    log_dir = Path(tempfile.mkdtemp(prefix="meshclient-bench-"))
    procs = [BackendProc(log_dir=log_dir, **spec) for spec in specs]
    ok = False
    try:
        for proc in procs:
            proc.spawn()
        for proc in procs:
            proc.wait_ready()
        yield procs
        ok = True
    finally:
        for proc in procs:
            proc.stop()
        if ok:
            shutil.rmtree(log_dir, ignore_errors=True)
        else:
            print(f"bench: backend logs kept in {log_dir}", file=sys.stderr)
