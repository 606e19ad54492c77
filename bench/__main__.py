"""``python -m bench [--quick] [--only NAME] [--out PATH]``: run the scenarios, print a table.

Writes ``docs/_generated/bench-results.json`` (or ``--out``), which the docs render. Exits 0
whatever the acceptance checks say: the harness reports, it is not a test. It exits non-zero
only for bad arguments.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from . import (
    async_throughput,
    cut_off,
    discovery,
    health_faults,
    retry_storm,
    stack_cost,
    sync_overhead,
    tail_latency,
    telemetry_cost,
)
from .machine import ForeignCpu
from .report import ScenarioResult, git_dirty, render, write_json

#: Where the docs' benchmark page reads the latest run (committed after a full run).
RESULTS = Path(__file__).resolve().parent.parent / "docs" / "_generated" / "bench-results.json"
#: Cores' worth of CPU used by other processes above which a scenario's numbers are suspect.
BUSY_MACHINE = 0.10

SCENARIOS: dict[str, Callable[..., ScenarioResult]] = {
    sync_overhead.NAME: sync_overhead.run,
    stack_cost.NAME: stack_cost.run,
    telemetry_cost.NAME: telemetry_cost.run,
    async_throughput.NAME: async_throughput.run,
    tail_latency.NAME: tail_latency.run,
    cut_off.NAME: cut_off.run,
    retry_storm.NAME: retry_storm.run,
    health_faults.OUTAGE_NAME: health_faults.run_partial_outage,
    health_faults.BLACK_HOLE_NAME: health_faults.run_black_hole,
    discovery.NAME: discovery.run,
}


def _scenario_name(text: str) -> str:
    name = text.strip().lower().replace("-", "_")
    if name not in SCENARIOS:
        raise argparse.ArgumentTypeError(
            f"unknown scenario {text!r}; choose from {', '.join(SCENARIOS)}"
        )
    return name


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorten every scenario (smoke run)")
    parser.add_argument(
        "--only",
        type=_scenario_name,
        action="append",
        metavar="NAME",
        help=f"run only this scenario (repeatable): {', '.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="JSON results path (the docs read the default)"
    )
    args = parser.parse_args(argv)
    # SIGTERM (e.g. a CI timeout) unwinds like Ctrl-C, so backend processes are still stopped.
    signal.signal(signal.SIGTERM, _terminate)
    names = args.only or list(SCENARIOS)
    mode = "quick" if args.quick else "full"
    print(f"meshclient benchmarks ({mode}): {', '.join(names)}", flush=True)
    results: list[ScenarioResult] = []
    dirty_at_start = git_dirty()
    started = time.perf_counter()
    for name in names:
        began = time.perf_counter()
        meter = ForeignCpu()
        meter.start()
        try:
            result = SCENARIOS[name](quick=args.quick)
        except Exception:
            result = ScenarioResult(name, "failed to run", [], error=traceback.format_exc())
            print(result.error, file=sys.stderr)
        result.seconds = time.perf_counter() - began
        foreign = meter.stop()
        result.params["foreign_cpu_cores"] = foreign
        if foreign is not None and foreign > BUSY_MACHINE:
            result.notes.insert(
                0,
                f"WARNING: other processes used {foreign:.2f} cores on average during this "
                f"scenario ({os.cpu_count()} cores): its numbers are not trustworthy",
            )
        results.append(result)
        print("\n" + render(result), flush=True)
    checks = [check for result in results for check in result.checks]
    failed = [result.name for result in results if result.error]
    passed = sum(check.passed for check in checks)
    print(
        f"\n{passed}/{len(checks)} acceptance checks passed"
        + (f"; scenarios that failed to run: {', '.join(failed)}" if failed else "")
        + f"; {time.perf_counter() - started:.0f} s total"
    )
    dirty = write_json(args.out, results, quick=args.quick, dirty_at_start=dirty_at_start)
    if dirty:
        print(f"note: uncommitted library changes were measured (not HEAD): {', '.join(dirty)}")
    print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
