"""Scenario results: a plain-text table on stdout and a JSON file."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "Check",
    "ScenarioResult",
    "git_dirty",
    "median",
    "percentile",
    "render",
    "write_json",
]


@dataclass
class Check:
    """One acceptance check: ``value`` compared with ``target`` (``"<="`` or ``">="``)."""

    name: str
    value: float
    op: str
    target: float
    unit: str = ""

    @property
    def passed(self) -> bool:
        if math.isnan(self.value):
            return False
        return self.value <= self.target if self.op == "<=" else self.value >= self.target

    def describe(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        value, target = _fmt(self.value) + self.unit, _fmt(self.target) + self.unit
        return f"{verdict}  {self.name}: {value} (target {self.op} {target})"


@dataclass
class ScenarioResult:
    """What a scenario measured: one row per variant, its checks, and free-form notes."""

    name: str
    title: str
    columns: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["checks"] = [{**asdict(c), "passed": c.passed} for c in self.checks]
        return data


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (``q`` in 0..100)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if value == 0:
            return "0"
        magnitude = abs(value)
        if magnitude >= 1000:
            return f"{value:,.0f}"
        if magnitude >= 100:
            return f"{value:.1f}"
        if magnitude >= 1:
            return f"{value:.2f}"
        return f"{value:.3f}"
    return str(value)


def _align(cells: Sequence[str], widths: Sequence[int]) -> str:
    """First column left-aligned (the variant), numbers right-aligned."""
    return "  ".join(
        cell.ljust(w) if i == 0 else cell.rjust(w)
        for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
    )


def render(result: ScenarioResult) -> str:
    """The scenario as a block of text: title, aligned table, checks, notes."""
    lines = [f"== {result.name}: {result.title} ({result.seconds:.1f} s)"]
    if result.error:
        lines.append(f"   ERROR: {result.error.strip().splitlines()[-1]}")
    if result.rows:
        cells = [[_fmt(row.get(col, "")) for col in result.columns] for row in result.rows]
        widths = [
            max(len(col), *(len(row[i]) for row in cells)) for i, col in enumerate(result.columns)
        ]
        lines.append("   " + _align(result.columns, widths))
        lines.append("   " + "  ".join("-" * w for w in widths))
        lines.extend("   " + _align(row, widths) for row in cells)
    lines.extend(f"   {check.describe()}" for check in result.checks)
    lines.extend(f"   note: {note}" for note in result.notes)
    return "\n".join(lines)


_DISTRIBUTIONS = ("meshclient", "httpx", "httpcore", "tenacity", "pybreaker", "opentelemetry-sdk")


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout


def _git_head() -> str:
    return _git("rev-parse", "--short", "HEAD").strip() or "-"


def git_dirty() -> list[str]:
    """Library files that differ from HEAD: the numbers are for the working tree, not HEAD."""
    status = _git("status", "--porcelain", "--", "src")
    return [line[3:] for line in status.splitlines() if line.strip()]


def write_json(
    path: Path,
    results: Sequence[ScenarioResult],
    *,
    quick: bool,
    dirty_at_start: Sequence[str] = (),
) -> list[str]:
    """Write the results; return the library files that differed from HEAD (start or end)."""
    dirty = sorted(set(dirty_at_start) | set(git_dirty()))
    payload = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "quick": quick,
        "environment": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "git_head": _git_head(),
            "git_dirty_src": dirty,
            "versions": {dist: _version(dist) for dist in _DISTRIBUTIONS},
        },
        "scenarios": {result.name: result.to_json() for result in results},
    }
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return dirty
