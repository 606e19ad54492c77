"""How busy the rest of the machine was while a scenario ran (Linux ``/proc/stat``).

Benchmarks on a 2-core machine are only meaningful when nothing else competes for the CPU.
``ForeignCpu`` measures the CPU time used by every process other than this one and its reaped
children (the backends, stopped and waited for within the scenario), so a report can say when
its numbers were taken on a busy machine.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["ForeignCpu", "client_cpu", "server_cpus"]

_STAT = Path("/proc/stat")


def _busy_seconds() -> float | None:
    """CPU seconds spent not idle, all cores together, since boot (None if unknown)."""
    try:
        fields = _STAT.read_text().splitlines()[0].split()
    except OSError:
        return None
    if fields[0] != "cpu":
        return None
    values = [int(v) for v in fields[1:]]
    # user nice system idle iowait irq softirq steal (guest time is already in user).
    busy = sum(values[:8]) - values[3] - values[4]
    return busy / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class ForeignCpu:
    """``start()`` then ``stop()``: average cores used by other processes in between."""

    def __init__(self) -> None:
        self._busy0: float | None = None
        self._own0 = 0.0
        self._wall0 = 0.0

    def start(self) -> None:
        self._busy0 = _busy_seconds()
        self._own0 = _own_seconds()
        self._wall0 = os.times().elapsed

    def stop(self) -> float | None:
        busy1 = _busy_seconds()
        if self._busy0 is None or busy1 is None:
            return None
        wall = os.times().elapsed - self._wall0
        if wall <= 0:
            return None
        foreign = (busy1 - self._busy0) - (_own_seconds() - self._own0)
        return max(0.0, foreign / wall)


def _cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def server_cpus() -> set[int]:
    """The CPUs the backends of a CPU-per-call scenario run on: all but the client's."""
    cpus = _cpus()
    return set(cpus[1:]) if len(cpus) > 1 else set(cpus)


@contextlib.contextmanager
def client_cpu() -> Iterator[None]:
    """Run this process on one CPU of its own while a CPU-per-call scenario measures it.

    Sequential calls alternate between the client and its backend; with both free to move,
    the scheduler's migrations and shared caches add tens of percent of noise per round on a
    2-core machine. Pinned apart, each keeps its core warm.
    """
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {_cpus()[0]})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)
