"""What the demo prints: a live view while it runs and a side-by-side summary at the end.

With ``rich`` installed and stdout a terminal, the live view is a ``rich.live.Live`` display
(transient: it disappears when the run ends, leaving only the summary). Otherwise, e.g. in
CI or with ``--no-live``, a plain line every two seconds. The summary is a ``rich`` table
when rich is installed, aligned plain text otherwise.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ._traffic import Side, percentile

__all__ = ["Summary", "endpoint_rows", "progress_line", "summarise", "summary_rows"]

#: Seconds of recent calls behind the live "share" and "latency" columns.
RECENT = 3.0


def _ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.1f} ms"


def _pct(value: float) -> str:
    return "-" if math.isnan(value) else f"{value * 100:.1f} %"


def progress_line(elapsed: float, duration: float, sides: Sequence[Side]) -> str:
    parts = []
    for side in sides:
        calls = side.calls
        ok = sum(c.ok for c in calls)
        rate = ok / len(calls) if calls else math.nan
        p99 = percentile(side.latencies(), 99)
        parts.append(f"{side.label}: {len(calls)} calls, {_pct(rate)} ok, p99 {_ms(p99)}")
    return f"[{elapsed:5.1f}/{duration:.0f} s] " + " | ".join(parts)


def _snapshot_endpoints(side: Side) -> dict[str, dict[str, Any]]:
    """Endpoint entries of the side's snapshot by address (empty for plain httpx)."""
    snapshot = getattr(side.client, "snapshot", None)
    if snapshot is None:
        return {}
    try:
        services = snapshot().get("services", {})
    except Exception:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for service in services.values():
        for ep in service.get("endpoints", []):
            out[str(ep.get("address"))] = with_health(service, ep)
    return out


def with_health(service: dict[str, Any], endpoint: dict[str, Any]) -> dict[str, Any]:
    """The endpoint entry with a ``health`` field, if the snapshot reports health anywhere.

    Health may come per endpoint (``health``) or per service (``health.out_of_rotation``,
    listing only the endpoints that are not admitted).
    """
    if "health" in endpoint or not isinstance(service.get("health"), dict):
        return endpoint
    for entry in service["health"].get("out_of_rotation") or []:
        if isinstance(entry, dict) and entry.get("address") == endpoint.get("address"):
            return {**endpoint, "health": entry}
    return {**endpoint, "health": "admitted"}


def health_text(entry: dict[str, Any] | None) -> str:
    """A snapshot endpoint's health, whatever shape it has; ``-`` when not reported."""
    if not entry:
        return "-"
    health = entry.get("health")
    if health is None:
        return "-"
    if isinstance(health, dict):
        return str(health.get("state", health))
    return str(health)


def endpoint_rows(sides: Sequence[Side], now: float) -> list[list[str]]:
    """Per instance: role, up/down, and per side its share of recent traffic and latency."""
    rows: list[list[str]] = []
    mesh_entries = [_snapshot_endpoints(side) for side in sides]
    recent = [
        [c for c in side.calls if c.at >= now - RECENT and c.backend is not None] for side in sides
    ]
    for index, instance in enumerate(sides[0].mesh.instances):
        spec = instance.spec
        row = [spec.name, spec.role, "up" if instance.up else "DOWN"]
        for side, calls, entries in zip(sides, recent, mesh_entries, strict=True):
            mine = side.mesh.instances[index]
            in_service = [c for c in calls if c.service == spec.service]
            served = [c for c in in_service if c.backend == spec.name]
            share = len(served) / len(in_service) if in_service else math.nan
            entry = entries.get(mine.address)
            if entry is not None and entry.get("latency_estimate") is not None:
                latency = _ms(float(entry["latency_estimate"]))
            else:
                latency = _ms(sum(c.latency for c in served) / len(served)) if served else "-"
            row += [_pct(share), latency]
            if entries:
                row.append(health_text(entry))
        rows.append(row)
    return rows


class Summary:
    """The numbers of one side at the end of the run."""

    def __init__(self, side: Side) -> None:
        calls = side.calls
        self.label = side.label
        self.calls = len(calls)
        self.ok = sum(c.ok for c in calls)
        latencies = side.latencies()
        self.p50 = percentile(latencies, 50)
        self.p99 = percentile(latencies, 99)
        self.mean = sum(latencies) / len(latencies) if latencies else math.nan
        self.backend_requests = sum(i.served() for i in side.mesh.instances)
        by_service = Counter(c.service for c in calls)
        ok_by_service = Counter(c.service for c in calls if c.ok)
        self.success_by_service = {
            s: ok_by_service[s] / n for s, n in sorted(by_service.items(), reverse=True)
        }
        slow = {i.spec.name for i in side.mesh.instances if i.spec.delay > 0}
        users = [c for c in calls if c.service == "users" and c.backend]
        self.slow_share = (
            sum(c.backend in slow for c in users) / len(users) if users and slow else math.nan
        )
        self.errors = Counter(c.error for c in calls if c.error)
        self.ejections: int | None = None

    @property
    def success_rate(self) -> float:
        return self.ok / self.calls if self.calls else math.nan

    @property
    def amplification(self) -> float:
        return self.backend_requests / self.calls if self.calls else math.nan


def summarise(sides: Sequence[Side], ejections: dict[str, int | None]) -> list[Summary]:
    out = []
    for side in sides:
        summary = Summary(side)
        summary.ejections = ejections.get(side.label)
        out.append(summary)
    return out


def summary_rows(summaries: Sequence[Summary]) -> list[list[str]]:
    """Metric rows, one column per side."""
    rows = [
        ["calls", *(str(s.calls) for s in summaries)],
        ["success rate", *(_pct(s.success_rate) for s in summaries)],
    ]
    rows.extend(
        [f"  {service}", *(_pct(s.success_by_service.get(service, math.nan)) for s in summaries)]
        for service in summaries[0].success_by_service
    )
    rows += [
        ["latency p50", *(_ms(s.p50) for s in summaries)],
        ["latency p99", *(_ms(s.p99) for s in summaries)],
        ["latency mean", *(_ms(s.mean) for s in summaries)],
        ["users calls to the slow one", *(_pct(s.slow_share) for s in summaries)],
        ["load amplification"]
        + ["-" if math.isnan(s.amplification) else f"{s.amplification:.2f}x" for s in summaries],
        [
            "endpoint ejections",
            *("n/a" if s.ejections is None else str(s.ejections) for s in summaries),
        ],
    ]
    return rows


def plain_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])
