"""Sphinx configuration: Sphinx + MyST + furo, built offline with ``-W`` (``nox -s docs``).

Nothing here fetches from the network: no intersphinx, no web fonts, no CDN scripts. A
build-time hook fills in what may or may not exist yet:

- ``benchmarks.md`` gets the results of ``nox -s bench``
  (``docs/_generated/bench-results.json``, committed after a full run) rendered as tables,
  and the tail-latency CDF plot (``docs/_generated/tail-latency-cdf.png``); if either is
  missing, a clearly labelled placeholder.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

project = "meshclient"
author = "the meshclient authors"
copyright = "the meshclient authors"
extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
html_theme = "furo"
html_title = "meshclient"
html_static_path: list[str] = []
exclude_patterns = ["_build", "build", "_generated/*.md", "Thumbs.db", ".DS_Store"]
# furo ships its own fonts stack (system fonts); nothing is fetched at build or view time.
html_theme_options: dict[str, Any] = {}
suppress_warnings: list[str] = []

BENCH_MARKER = "<!-- bench-results -->"
CDF_PNG = HERE / "_generated" / "tail-latency-cdf.png"


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}"
    if isinstance(value, dict | list):
        return ""
    return str(value).replace("|", "\\|")


def _bench_results() -> dict[str, Any] | None:
    path = HERE / "_generated" / "bench-results.json"
    if not path.exists():
        return None
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except ValueError:
        return None
    return data


def bench_markdown() -> str:
    """The results section of ``benchmarks.md``, from the latest ``nox -s bench`` run."""
    parts: list[str] = []
    if CDF_PNG.exists():
        parts.append(
            "```{figure} _generated/tail-latency-cdf.png\n:alt: tail latency CDF\n\n"
            "Tail-latency scenario: latency CDF per balancer (log scale).\n```\n"
        )
    data = _bench_results()
    if data is None:
        parts.append(
            ":::{note}\n**Placeholder: no benchmark results in this build.** Run "
            "`nox -s bench` (it writes `docs/_generated/bench-results.json`) and rebuild "
            "the docs with `nox -s docs`; the tables below are then generated from that "
            "file.\n:::\n"
        )
        return "\n".join(parts)
    env = data.get("environment", {})
    parts.append(
        f"Measured {data.get('created', '?')} on {env.get('cpus', '?')} CPUs, Python "
        f"{env.get('python', '?')}, commit `{env.get('git_head', '?')}`"
        + (" (quick run)" if data.get("quick") else "")
        + ".\n"
    )
    for name, scenario in data.get("scenarios", {}).items():
        parts.append(f"### {name}\n\n{scenario.get('title', '')}\n")
        columns = list(scenario.get("columns", []))
        rows = scenario.get("rows", [])
        if columns and rows:
            parts.append("| " + " | ".join(columns) + " |")
            parts.append("|" + "---|" * len(columns))
            parts.extend(
                "| " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |" for row in rows
            )
            parts.append("")
        for check in scenario.get("checks", []):
            verdict = "pass" if check.get("passed") else "**FAIL**"
            parts.append(
                f"- {verdict}: {check.get('name')}: {_fmt(check.get('value'))}"
                f"{check.get('unit', '')} (target {check.get('op')} {_fmt(check.get('target'))}"
                f"{check.get('unit', '')})"
            )
        parts.append("")
    return "\n".join(parts)


def _source_read(app: Any, docname: str, source: list[str]) -> None:
    if docname == "benchmarks" and BENCH_MARKER in source[0]:
        source[0] = source[0].replace(BENCH_MARKER, bench_markdown())


def setup(app: Any) -> dict[str, Any]:
    app.connect("source-read", _source_read)
    return {"parallel_read_safe": True}
