"""Scenario: dynamic discovery — pick cost by endpoint count, applying big updates, churn.

Three measurements in one table:

- **pick**: one ``Picker.pick`` (what every attempt does) over snapshots of 10, 100, 1 000 and
  10 000 endpoints, per balancer, timed in the calling thread. The pickers are built with
  ``Balancer.prepare`` over ``EndpointState``s with random load and latency, as a live client
  has them. Power-of-two-choices looks at two endpoints whatever the size, so its cost should
  be flat; round robin walks a precomputed schedule, also flat.
- **update**: a client's service receives a 1 000-endpoint set from its discovery (the whole
  path: the service's fan-out, the route keeping live state of endpoints that remain, new
  pools, the balancer's new picker): the time to apply it, and ``tracemalloc``'s count of
  the memory it keeps per endpoint. Then the same set with one endpoint replaced (steady
  churn), and parsing a 1 000-entry discovery file.
- **churn**: three endpoints of a service replaced one at a time, one every 200 ms, under an
  open loop of 300 GETs/s, with ``FileDiscovery`` (atomic renames, checked every 50 ms) as the
  registry. *graceful*: the old endpoint leaves the file, and stops 100 ms later (a rolling
  deploy with deregistration first); *abrupt*: it stops the moment it leaves the file (the
  client learns of it up to 50 ms later). Target: ≥ 99.9 % of calls succeed in both.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import json
import math
import os
import random
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import meshclient
from meshclient._balance import Balancer, LeastLoaded, PeakEwma, RoundRobin
from meshclient._endpoint import EndpointState
from meshclient.discovery import Discovery, DiscoveryUpdates, Endpoint, FileDiscovery
from meshclient.discovery._file import parse_file
from meshclient.testing import Backend

from .loadgen import Event, run_open_loop
from .report import Check, ScenarioResult, median, percentile

NAME = "discovery"
SIZES = (10, 100, 1_000, 10_000)
UPDATE_SIZE = 1_000
#: P2C's pick at 10 000 endpoints may cost at most this many times its cost at 10.
FLAT_RATIO = 1.5
CHURN_RATE = 300.0
CHURN_EVERY = 0.2
CHURN_LIVE = 3
TARGET_SUCCESS = 99.9
FILE_INTERVAL = 0.05
PATH = "/x"

COLUMNS = [
    "measure",
    "balancer",
    "endpoints",
    "ns_per_pick",
    "ms",
    "bytes_per_endpoint",
    "calls",
    "success_%",
    "failed",
    "p99_ms",
]


# ------------------------------------------------------------------------------ pick cost


def _states(n: int, rng: random.Random) -> tuple[EndpointState, ...]:
    """``n`` endpoints with the spread of load and latency a busy client sees."""
    now = time.monotonic()
    states = []
    for i in range(n):
        state = EndpointState(
            f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 8000, 1.0, initial_rtt=0.03, now=now
        )
        state.outstanding = rng.randrange(0, 8)
        state.rtt = rng.uniform(0.005, 0.05)
        state.rtt_samples = 10
        states.append(state)
    return tuple(states)


def _pick_ns(balancer: Balancer, states: tuple[EndpointState, ...], picks: int) -> float:
    picker = balancer.prepare(states)
    pick = picker.pick
    avoid: tuple[EndpointState, ...] = ()
    now = time.monotonic()
    best = math.inf
    for _ in range(5):  # the best of 5 blocks: the least disturbed by the rest of the machine
        started = time.thread_time_ns()
        for _ in range(picks):
            pick(avoid, now)
        best = min(best, (time.thread_time_ns() - started) / picks)
    return best


def _pick_rows(quick: bool) -> tuple[list[dict[str, Any]], dict[str, dict[int, float]]]:
    picks = 20_000 if quick else 200_000
    rng = random.Random(7)
    rows: list[dict[str, Any]] = []
    costs: dict[str, dict[int, float]] = {}
    balancers: list[Callable[[], Balancer]] = [
        lambda: RoundRobin(rng=random.Random(1)),
        lambda: LeastLoaded(rng=random.Random(1)),
        lambda: PeakEwma(rng=random.Random(1)),
    ]
    for size in SIZES:
        states = _states(size, rng)
        for make in balancers:
            balancer = make()
            name = type(balancer).__name__
            ns = _pick_ns(balancer, states, picks)
            costs.setdefault(name, {})[size] = ns
            rows.append({"measure": "pick", "balancer": name, "endpoints": size, "ns_per_pick": ns})
    return rows, costs


# ---------------------------------------------------------------------------- big updates


class _Pushed(Discovery):
    """A discovery the benchmark feeds by hand."""

    def __init__(self) -> None:
        self.updates: DiscoveryUpdates | None = None

    def start(self, updates: DiscoveryUpdates) -> None:
        self.updates = updates

    def close(self) -> None:
        self.updates = None

    def push(self, endpoints: Iterable[Endpoint]) -> None:
        assert self.updates is not None
        self.updates(endpoints)


def _endpoints(n: int, start: int = 0) -> list[Endpoint]:
    return [
        Endpoint(f"10.0.{i >> 8 & 255}.{i & 255}", 8000 + (i >> 16))
        for i in range(start, start + n)
    ]


@contextlib.contextmanager
def _pushed_client() -> Iterator[_Pushed]:
    pushed = _Pushed()
    client = meshclient.Client(services={"svc": meshclient.Service(pushed)})
    try:
        yield pushed
    finally:
        client.close()


def _update_rows(quick: bool) -> list[dict[str, Any]]:
    rounds = 3 if quick else 10
    fresh_ms: list[float] = []
    churn_ms: list[float] = []
    per_endpoint: list[float] = []
    for _ in range(rounds):
        first = _endpoints(UPDATE_SIZE)
        second = [*first[1:], *_endpoints(1, start=UPDATE_SIZE)]
        # Timed without tracemalloc (which slows every allocation down)...
        with _pushed_client() as pushed:
            gc.collect()
            started = time.perf_counter()
            pushed.push(first)
            fresh_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            pushed.push(second)
            churn_ms.append((time.perf_counter() - started) * 1000)
        # ... and measured with it, on a fresh client: what the client keeps for the set. The
        # Endpoint values were allocated before tracing started: they are the registry's.
        with _pushed_client() as pushed:
            gc.collect()
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                pushed.push(first)
                gc.collect()
                per_endpoint.append((tracemalloc.get_traced_memory()[0] - before) / UPDATE_SIZE)
            finally:
                tracemalloc.stop()
    document = json.dumps(
        {"svc": [{"address": e.host, "port": e.port, "zone": "a"} for e in _endpoints(UPDATE_SIZE)]}
    ).encode()
    parse_ms = []
    for _ in range(rounds):
        started = time.perf_counter()
        parse_file(document, "json", "svc")
        parse_ms.append((time.perf_counter() - started) * 1000)
    return [
        {
            "measure": "update: 1 000 new endpoints",
            "endpoints": UPDATE_SIZE,
            "ms": median(fresh_ms),
            "bytes_per_endpoint": median(per_endpoint),
        },
        {
            "measure": "update: 1 of 1 000 replaced",
            "endpoints": UPDATE_SIZE,
            "ms": median(churn_ms),
        },
        {
            "measure": "parse: 1 000-entry JSON file",
            "endpoints": UPDATE_SIZE,
            "ms": median(parse_ms),
        },
    ]


# ----------------------------------------------------------------------------------- churn


def _write(path: Path, backends: Iterable[Backend]) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps({"svc": [b.address for b in backends]}))
    os.replace(temporary, path)


async def _churn(graceful: bool, duration: float, workdir: Path) -> dict[str, Any]:
    pool = [Backend(f"c{i}", record=False).start() for i in range(CHURN_LIVE * 2)]
    live = collections.deque(pool[:CHURN_LIVE])
    idle = collections.deque(pool[CHURN_LIVE:])
    for backend in idle:
        backend.refuse()
    path = workdir / f"churn-{'graceful' if graceful else 'abrupt'}.json"
    _write(path, live)
    replaced = [0]

    def replace() -> None:
        new = idle.popleft()
        new.accept()
        live.append(new)
        old = live.popleft()
        _write(path, live)
        if graceful:
            time.sleep(CHURN_EVERY / 2)
        old.refuse()  # resets its open connections too: in-flight calls are cut
        idle.append(old)
        replaced[0] += 1

    def step() -> Awaitable[None]:
        return asyncio.to_thread(replace)

    discovery = FileDiscovery(path, "svc", interval=FILE_INTERVAL)
    client = meshclient.AsyncClient(
        services={"svc": meshclient.Service(discovery)},
        policy=meshclient.Policy(timeout=meshclient.Timeout(total=2.0)),
    )

    async def call() -> tuple[bool, str | None]:
        response = await client.get("http://svc" + PATH)
        return response.status_code == 200, response.headers.get("x-backend")

    events = [Event(CHURN_EVERY * (i + 1), step) for i in range(int(duration / CHURN_EVERY) - 1)]
    try:
        async with client:
            load = await run_open_loop(call, rate=CHURN_RATE, duration=duration, events=events)
    finally:
        for backend in pool:
            await asyncio.to_thread(backend.stop)
    ok = sorted(r.latency * 1000 for r in load.records if r.ok)
    calls = len(load.records)
    failed = [r for r in load.records if not r.ok]
    return {
        "measure": f"churn: {'graceful' if graceful else 'abrupt'}",
        "endpoints": CHURN_LIVE,
        "calls": calls,
        "success_%": (calls - len(failed)) / calls * 100 if calls else math.nan,
        "failed": len(failed) + load.dropped + load.unfinished,
        "p99_ms": percentile(ok, 99),
        "replacements": replaced[0],
        "error_kinds": dict(collections.Counter(r.error or "not 200" for r in failed)),
    }


# ------------------------------------------------------------------------------------- run


def run(*, quick: bool) -> ScenarioResult:
    duration = 5.0 if quick else 20.0
    result = ScenarioResult(
        NAME,
        "pick cost by endpoint count, applying a 1 000-endpoint update, "
        f"churn (one endpoint replaced every {CHURN_EVERY * 1000:.0f} ms at "
        f"{CHURN_RATE:.0f} calls/s)",
        COLUMNS,
        params={
            "sizes": list(SIZES),
            "update_size": UPDATE_SIZE,
            "churn_rate": CHURN_RATE,
            "churn_every_s": CHURN_EVERY,
            "churn_duration_s": duration,
            "file_interval_s": FILE_INTERVAL,
        },
    )
    pick_rows, costs = _pick_rows(quick)
    result.rows += pick_rows
    result.rows += _update_rows(quick)
    with tempfile.TemporaryDirectory(prefix="meshclient-bench-") as tmp:
        for graceful in (True, False):
            result.rows.append(asyncio.run(_churn(graceful, duration, Path(tmp))))
    for name in ("LeastLoaded", "PeakEwma"):
        cost = costs[name]
        result.checks.append(
            Check(
                f"{name} pick at {SIZES[-1]:,} endpoints / at {SIZES[0]}",
                cost[SIZES[-1]] / cost[SIZES[0]],
                "<=",
                FLAT_RATIO,
                "x",
            )
        )
    for row in result.rows:
        if row["measure"].startswith("churn"):
            result.checks.append(
                Check(f"{row['measure']} success", row["success_%"], ">=", TARGET_SUCCESS, " %")
            )
            result.notes.append(
                f"{row['measure']}: {row['replacements']} replacements"
                + (f"; failures {row['error_kinds']}" if row["error_kinds"] else "")
            )
    result.notes.append(
        "bytes_per_endpoint: memory the client keeps per endpoint after a 1 000-endpoint "
        "update (tracemalloc: endpoint state, pools, picker), Endpoint values excluded"
    )
    return result
