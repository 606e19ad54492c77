"""A meshclient hook that keeps what the health machinery decided, for the report.

Fed every event of one client (``Telemetry(hooks=[log])``); it keeps counters and the few
ejection and readmission records with their time since ``start()``, so memory stays bounded
by what happened, not by the number of calls.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from meshclient import hooks

__all__ = ["HookLog"]

#: At most this many ejection/readmission records are kept (the counters keep counting).
MAX_RECORDS = 200


class HookLog:
    """Counts attempts per endpoint name, retries and budget refusals; logs ejections."""

    def __init__(self, names: dict[str, str]) -> None:
        #: ``host:port`` -> a readable backend name.
        self.names = names
        self.start()

    def start(self) -> None:
        """Zero the counters and the clock (again after a warm-up)."""
        self.t0 = time.perf_counter()
        self.attempts: Counter[str] = Counter()
        self.retries = 0
        self.budget_refusals = 0
        self.ejections: list[dict[str, Any]] = []
        self.readmissions: list[dict[str, Any]] = []
        self.ejection_count = 0
        self.readmission_count = 0

    def _now(self) -> float:
        return round(time.perf_counter() - self.t0, 3)

    def __call__(self, event: hooks.Event, /) -> None:
        if isinstance(event, hooks.AttemptFinished):
            self.attempts[self.names.get(event.endpoint, event.endpoint)] += 1
        elif isinstance(event, hooks.RetryScheduled):
            self.retries += 1
        elif isinstance(event, hooks.BudgetExhausted):
            self.budget_refusals += 1
        elif isinstance(event, hooks.EndpointEjected):
            self.ejection_count += 1
            if len(self.ejections) < MAX_RECORDS:
                self.ejections.append(
                    {
                        "t": self._now(),
                        "endpoint": self.names.get(event.endpoint, event.endpoint),
                        "reason": event.reason,
                        "duration_s": round(event.duration, 2),
                    }
                )
        elif isinstance(event, hooks.EndpointReadmitted):
            self.readmission_count += 1
            if len(self.readmissions) < MAX_RECORDS:
                self.readmissions.append(
                    {"t": self._now(), "endpoint": self.names.get(event.endpoint, event.endpoint)}
                )

    def first_ejection(self, name: str) -> float | None:
        """Seconds from ``start()`` to ``name``'s first ejection, or None."""
        return next((e["t"] for e in self.ejections if e["endpoint"] == name), None)

    def summary(self) -> dict[str, Any]:
        return {
            "attempts": dict(self.attempts),
            "retries": self.retries,
            "budget_refusals": self.budget_refusals,
            "ejections": self.ejections,
            "readmissions": self.readmissions,
            "ejection_count": self.ejection_count,
            "readmission_count": self.readmission_count,
        }
