"""What every watching backend shares: one daemon thread per run, a stop flag, jittered backoff.

A *run* is one ``start(updates)`` … ``close()`` of a backend. Its thread gets the run's own
``_Run`` (stop flag and reporting gate), so a thread that outlives ``close()`` (stuck in a
network call longer than the join timeout) can never report into a later run, and a backend
can be started again at once.
"""

from __future__ import annotations

import abc
import logging
import random
import threading
from collections.abc import Iterable
from typing import Any

from .._validate import check_positive
from ._base import Discovery, DiscoveryUpdates, Endpoint

__all__ = ["JOIN_TIMEOUT", "Backoff", "Run", "Watcher", "check_backoff"]

logger = logging.getLogger("meshclient")

#: Seconds ``close()`` waits for a backend's thread to finish its current step.
JOIN_TIMEOUT = 2.0
#: Seconds (base, cap) before a crashed watch starts over.
_CRASH_BACKOFF, _CRASH_BACKOFF_MAX = 1.0, 30.0


def check_backoff(owner: str, backoff: float, max_backoff: float) -> tuple[float, float]:
    """Validate a backoff base and cap (seconds), naming the class and the field."""
    check_positive(owner, "backoff", backoff)
    check_positive(owner, "max_backoff", max_backoff)
    if max_backoff < backoff:
        raise ValueError(
            f"{owner}.max_backoff must be >= backoff ({backoff!r}), got {max_backoff!r}"
        )
    return float(backoff), float(max_backoff)


class Backoff:
    """Full-jitter exponential backoff: failure ``n`` waits ``uniform(0, min(cap, base*2**(n-1)))``.

    Full jitter spreads the reconnects of many clients that lost the same registry at the same
    moment over the whole interval, so a restarted registry is not hit by all of them at once.
    """

    __slots__ = ("_failures", "_rng", "base", "cap")

    def __init__(self, base: float, cap: float, rng: random.Random | None = None) -> None:
        self.base = base
        self.cap = cap
        self._rng = rng or random.Random()
        self._failures = 0

    def next(self) -> float:
        """Seconds to wait after one more consecutive failure."""
        self._failures += 1
        ceiling = min(self.cap, self.base * 2 ** min(self._failures - 1, 32))
        return self._rng.uniform(0.0, ceiling)

    def reset(self) -> None:
        """A success: the next failure waits the shortest again."""
        self._failures = 0


class Run:
    """One run of a backend: its stop flag and the gate its reports go through."""

    __slots__ = ("_updates", "state", "stop")

    def __init__(self, updates: DiscoveryUpdates) -> None:
        self._updates = updates
        self.stop = threading.Event()
        #: Whatever the backend keeps for this run (set by ``_begin`` or ``_watch``).
        self.state: Any = None

    @property
    def running(self) -> bool:
        return not self.stop.is_set()

    def sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` or until stopped; ``True`` if the run should go on."""
        return not self.stop.wait(seconds)

    def publish(self, endpoints: Iterable[Endpoint]) -> None:
        if not self.stop.is_set():
            self._updates(endpoints)

    def error(self, error: BaseException) -> None:
        if not self.stop.is_set():
            self._updates.error(error)

    def invalid(self, entry: object, reason: str) -> None:
        if not self.stop.is_set():
            self._updates.invalid(entry, reason)


class Watcher(Discovery):
    """A ``Discovery`` that watches its registry on a daemon thread, one thread per run.

    Subclasses implement ``_watch(run)`` (loop until ``run.stop`` is set, reporting through
    ``run``) and may override ``_begin(run)`` (synchronous work in ``start``, which must be
    quick) and ``_interrupt(run)`` (unblock the thread when ``close()`` is called).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._run: Run | None = None
        self._thread: threading.Thread | None = None

    def start(self, updates: DiscoveryUpdates) -> None:
        """Start watching on a new daemon thread and return at once."""
        with self._lock:
            if self._run is not None:
                raise RuntimeError(f"{self.describe()} is already started; close() it first")
            run = Run(updates)
            thread = threading.Thread(
                target=self._main,
                args=(run,),
                name=f"meshclient-discovery {self.describe()}",
                daemon=True,
            )
            self._run, self._thread = run, thread
        # Outside the lock: ``_begin`` may report, and reports call into the service.
        try:
            self._begin(run)
        except BaseException:
            with self._lock:
                if self._run is run:
                    self._run = self._thread = None
            raise
        if run.running:
            thread.start()

    def close(self) -> None:
        """Stop the thread; no report of this run reaches ``updates`` once this returns.

        Waits up to ``JOIN_TIMEOUT`` seconds for the thread to finish its current step; a
        thread still blocked in a network call after that is abandoned (a daemon thread, its
        reports gated off) and ends by itself when the call times out.
        """
        with self._lock:
            run, thread = self._run, self._thread
            self._run = self._thread = None
        if run is None or thread is None:
            return
        run.stop.set()
        try:
            self._interrupt(run)
        except Exception:
            logger.debug("meshclient: interrupting %s raised", self.describe(), exc_info=True)
        if thread is not threading.current_thread() and thread.ident is not None:
            thread.join(JOIN_TIMEOUT)
            if thread.is_alive():
                logger.warning(
                    "meshclient: discovery %s did not stop within %s s; its thread is left "
                    "to finish on its own (its reports are ignored)",
                    self.describe(),
                    JOIN_TIMEOUT,
                )

    @property
    def running(self) -> bool:
        """Whether the backend is started (between ``start`` and ``close``)."""
        return self._run is not None

    def _begin(self, run: Run) -> None:
        """Synchronous part of ``start`` (default: nothing)."""

    def _interrupt(self, run: Run) -> None:
        """Unblock the run's thread after ``run.stop`` was set (default: nothing)."""

    @abc.abstractmethod
    def _watch(self, run: Run) -> None:
        """Watch the registry until ``run.stop`` is set; never raise for registry failures."""

    def _main(self, run: Run) -> None:
        # ``_watch`` handles registry failures itself; an exception here is a bug. It is
        # reported (the last set stays) and the watch starts over after a pause, so one bad
        # surprise does not freeze a service's endpoints for the life of the process.
        backoff = Backoff(_CRASH_BACKOFF, _CRASH_BACKOFF_MAX)
        while run.running:
            try:
                self._watch(run)
            except Exception as exc:
                logger.exception("meshclient: discovery %s crashed; restarting", self.describe())
                run.error(exc)
                run.sleep(backoff.next())
            else:
                return
