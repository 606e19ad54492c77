"""Scenario 1: client CPU per sequential sync GET on one keep-alive connection.

Clients against one backend process: raw ``httpx.Client``; meshclient's default stack
(balancer, retries with budget, accounting, deadline, endpoint health; tracing API without an
SDK); and the same with endpoint health off (``Service(outlier=None)``), for the cost of
health tracking. (The OpenTelemetry SDK and the hand-composed peer are ``telemetry_cost``.)

Method, shared with ``telemetry_cost`` and ``stack_cost``: after a warm-up of every variant,
the variants run interleaved, one short block of sequential calls each per round, so drift
(CPU frequency, noisy neighbours) hits them alike, in orders balanced so that each variant
follows every other equally often (``balanced_orders``). The table
gives each variant's median block; a ratio or difference between two variants is the median
over rounds of the per-round ratio or difference of their blocks (the blocks of one round run
within milliseconds, so a slow phase of the machine cancels out instead of landing on one
side of the comparison).
CPU is ``time.process_time()`` (the whole client process, every thread);
``time.thread_time()`` of the calling thread is kept alongside.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx

import meshclient

from .machine import client_cpu, server_cpus
from .procs import backends
from .report import Check, ScenarioResult, median

NAME = "sync_overhead"
#: Rounds between two full garbage collections of an interleaved measurement.
COLLECT_EVERY = 100
TARGET_RATIO = 1.10
#: Endpoint health may cost at most this much CPU per call over the stack without it.
TARGET_HEALTH_RATIO = 1.05
PATH = "/x"

Get = Callable[[], httpx.Response]


@dataclass
class Block:
    """One block of sequential calls, per call: process CPU, calling-thread CPU, wall (µs)."""

    cpu_us: float
    thread_us: float
    wall_us: float
    bad: int


@dataclass
class Variant:
    get: Get
    #: Called at the end of every block, inside the measurement: work a variant defers to
    #: another thread (an SDK's batch export) is then paid by the block that caused it.
    flush: Callable[[], object] | None = None


def block(variant: Variant, calls: int) -> Block:
    """``calls`` sequential GETs (then ``flush``), measured."""
    bad = 0
    get = variant.get
    cpu0, thread0, wall0 = time.process_time(), time.thread_time(), time.perf_counter()
    for _ in range(calls):
        if get().status_code != 200:
            bad += 1
    if variant.flush is not None:
        variant.flush()
    wall = time.perf_counter() - wall0
    cpu, thread = time.process_time() - cpu0, time.thread_time() - thread0
    return Block(cpu / calls * 1e6, thread / calls * 1e6, wall / calls * 1e6, bad)


def balanced_orders(n: int) -> list[list[int]]:
    """A Williams design over ``n`` variants: ``n`` orders (``2n`` when ``n`` is odd) in which
    every variant comes first equally often and follows every other variant equally often.

    A block inherits caches, branch history and heap from the block before it, and a variant
    that shares code with its predecessor (two clients over the same SDK) runs warmer than one
    that follows a stranger. A rotation keeps most neighbours the same in every round, so that
    carry-over lands on some variants and not others; this design spreads it over all alike.
    """
    first = [0]
    low, high = 1, n - 1
    for position in range(1, n):
        if position % 2:
            first.append(low)
            low += 1
        else:
            first.append(high)
            high -= 1
    orders = [[(i + shift) % n for i in first] for shift in range(n)]
    if n % 2:
        orders += [order[::-1] for order in orders]
    return orders


def interleave(
    variants: dict[str, Variant], *, rounds: int, calls: int, warmup: int
) -> dict[str, list[Block]]:
    """Warm every variant up, then ``rounds`` rounds of one block each, in balanced orders."""
    for variant in variants.values():
        block(variant, warmup)
    samples: dict[str, list[Block]] = {name: [] for name in variants}
    names = list(variants)
    orders = balanced_orders(len(names))
    for r in range(rounds):
        if r % COLLECT_EVERY == 0:
            # A clean heap now and then; garbage a block makes is collected (and paid for)
            # within the blocks, as it is in an application.
            gc.collect()
        for i in orders[r % len(orders)]:
            samples[names[i]].append(block(variants[names[i]], calls))
    return samples


def paired(
    samples: dict[str, list[Block]],
    a: str,
    b: str,
    op: Callable[[float, float], float],
    field: str = "cpu_us",
) -> float:
    """Median over rounds of ``op(a's block, b's block)`` on ``field``."""
    return median(
        [
            op(getattr(x, field), getattr(y, field))
            for x, y in zip(samples[a], samples[b], strict=True)
        ]
    )


def ratio(x: float, y: float) -> float:
    return x / y


def difference(x: float, y: float) -> float:
    return x - y


def rows(samples: dict[str, list[Block]], reference: str) -> list[dict[str, Any]]:
    """One table row per variant; ratios and overheads paired per round with ``reference``."""
    out = []
    for name, blocks in samples.items():
        cpus = [b.cpu_us for b in blocks]
        cpu = median(cpus)
        out.append(
            {
                "variant": name,
                "cpu_us_per_call": cpu,
                "thread_cpu_us_per_call": median([b.thread_us for b in blocks]),
                "wall_us_per_call": median([b.wall_us for b in blocks]),
                "ratio_vs_raw": paired(samples, name, reference, ratio),
                "overhead_us": paired(samples, name, reference, difference),
                "thread_overhead_us": paired(samples, name, reference, difference, "thread_us"),
                "round_spread_%": (max(cpus) - min(cpus)) / cpu * 100,
                "non_200": sum(b.bad for b in blocks),
            }
        )
    return out


#: The columns every CPU-per-call scenario starts with (see ``rows``).
CPU_COLUMNS = [
    "variant",
    "cpu_us_per_call",
    "thread_cpu_us_per_call",
    "wall_us_per_call",
    "ratio_vs_raw",
    "overhead_us",
]


def sizes(*, quick: bool) -> tuple[int, int, int]:
    """Rounds, calls per round and warm-up calls of an interleaved CPU measurement.

    Many very short rounds rather than a few long ones: on a shared machine the CPU's speed
    drifts by tens of percent within a second, so a round must be short (5 calls of each
    variant, ~10 ms) to see one speed for all its variants; the median of thousands of
    per-round differences is then stable to a few microseconds.
    """
    return (200, 5, 200) if quick else (2000, 5, 1000)


def run(*, quick: bool) -> ScenarioResult:
    rounds, calls, warmup = sizes(quick=quick)
    result = ScenarioResult(
        NAME,
        "sequential sync GETs, one keep-alive connection, client CPU per call",
        [*CPU_COLUMNS, "round_spread_%"],
        params={"rounds": rounds, "calls_per_round": calls, "warmup_calls": warmup},
    )
    with (
        client_cpu(),
        backends([{"name": "b1", "cpus": server_cpus()}]) as (backend,),
        ExitStack() as stack,
    ):
        policy = meshclient.Policy(timeout=meshclient.Timeout(total=5.0))
        raw = stack.enter_context(httpx.Client())
        mesh = stack.enter_context(
            meshclient.Client(services={"svc": [backend.addr]}, policy=policy)
        )
        no_health = stack.enter_context(
            meshclient.Client(
                services={"svc": meshclient.Service([backend.addr], outlier=None)}, policy=policy
            )
        )
        raw_url, mesh_url = backend.url + PATH, "http://svc" + PATH
        variants = {
            "raw httpx": Variant(lambda: raw.get(raw_url)),
            "meshclient": Variant(lambda: mesh.get(mesh_url)),
            "meshclient, health off": Variant(lambda: no_health.get(mesh_url)),
        }
        samples = interleave(variants, rounds=rounds, calls=calls, warmup=warmup)
        served = backend.count()
    result.rows = rows(samples, "raw httpx")
    by_name = {row["variant"]: row for row in result.rows}
    result.checks.append(
        Check(
            "meshclient CPU / raw httpx",
            by_name["meshclient"]["ratio_vs_raw"],
            "<=",
            TARGET_RATIO,
            "x",
        )
    )
    health = paired(samples, "meshclient", "meshclient, health off", ratio)
    result.checks.append(
        Check("health on / health off CPU", health, "<=", TARGET_HEALTH_RATIO, "x")
    )
    result.extra["health_on_minus_off_us"] = paired(
        samples, "meshclient", "meshclient, health off", difference
    )
    result.notes.append(
        f"ratios and overheads: median over {rounds} rounds of the per-round ratio/difference "
        f"with raw httpx; health on costs "
        f"{result.extra['health_on_minus_off_us']:+.1f} µs per call over health off; "
        f"backend served {served} requests"
    )
    bad = sum(row["non_200"] for row in result.rows)
    if bad:
        result.notes.append(f"{bad} non-200 answers: the measurement is suspect")
    return result
