"""Whatever happens to calls, everything the stack takes is given back exactly once.

Hypothesis drives random sequences of attempt outcomes (statuses, network errors, timeouts
past the deadline, callers that go away) through the default stack with every admission rule
on, over a MockTransport and a fake clock, for the sync and the async engine. After each call:
no bulkhead slot, breaker trial permit or outstanding request is held; every module that
started a call or an attempt ended it once; the budget saw one deposit per call that reached
the retry module and one withdrawal per retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from typing import Any

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

import meshclient
from meshclient.stack import Attempt, AttemptModule, Call, CallModule
from meshclient.testing import FakeClock

ENDPOINTS = ["127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003"]

OUTCOMES = st.one_of(
    st.sampled_from([200, 200, 404, 500, 502, 503, 504]).map(lambda s: ("status", s)),
    st.just(("retry_after", 0.05)),
    st.sampled_from(["connect", "read", "reset", "timeout", "cancel"]).map(lambda e: (e, None)),
)
#: Per call: the outcomes of its attempts (missing ones answer 200), then idle time after it.
CALLS = st.lists(
    st.tuples(st.lists(OUTCOMES, max_size=4), st.sampled_from([0.0, 0.0, 0.5, 6.0])),
    min_size=1,
    max_size=12,
)


class CallPairs(CallModule):
    """Counts the calls that reach one position of the stack, and their ends."""

    def __init__(self, role: str, counts: Counter[str]) -> None:
        self.role = role
        self.counts = counts

    def on_call(self, call: Call) -> None:
        self.counts[f"{self.role}.start"] += 1

    def on_call_end(self, call: Call) -> None:
        self.counts[f"{self.role}.end"] += 1


class AttemptPairs(AttemptModule):
    """Counts the attempts that reach one position of the stack, and their ends."""

    def __init__(self, role: str, counts: Counter[str]) -> None:
        self.role = role
        self.counts = counts

    def on_attempt(self, attempt: Attempt) -> None:
        self.counts[f"{self.role}.start"] += 1

    def on_attempt_end(self, attempt: Attempt) -> None:
        self.counts[f"{self.role}.end"] += 1


class World:
    """One mesh with every admission rule on, and the script its bottom plays."""

    def __init__(self, asynchronous: bool) -> None:
        self.clock = FakeClock(1000.0)
        self.counts: Counter[str] = Counter()
        self.script: list[tuple[str, Any]] = []
        self.sent = 0
        self.bulkhead = meshclient.Bulkhead(1)
        self.breaker = meshclient.CircuitBreaker(
            window_size=4, minimum_calls=2, open_duration=5.0, half_open_calls=1, clock=self.clock
        )
        self.throttle = meshclient.AdaptiveThrottle(clock=self.clock, rng=random.Random(3))
        # The budget's own clock never moves: its window holds every deposit of the run.
        self.budget = meshclient.RetryBudget(ratio=0.5, min_per_second=0.5, clock=FakeClock())
        stack = (
            meshclient.DEFAULT_STACK.insert_before("fallback", CallPairs("top", self.counts))
            .insert_after("retry", CallPairs("below_retry", self.counts))
            .insert_before("attempt_telemetry", AttemptPairs("attempt_top", self.counts))
            .insert_after("attempt_timeout", AttemptPairs("attempt_bottom", self.counts))
        )
        service = meshclient.Service(
            ENDPOINTS,
            bulkhead=self.bulkhead,
            breaker=self.breaker,
            throttle=self.throttle,
            retry_budget=self.budget,
        )
        policy = meshclient.Policy(
            timeout=1.0, retry=meshclient.Retry(attempts=3, backoff=0.01, max_backoff=0.02)
        )
        common: dict[str, Any] = {
            "policy": policy,
            "stack": stack,
            "clock": self.clock,
            "rng": random.Random(5),
        }
        if asynchronous:
            self.transport: Any = meshclient.AsyncMeshTransport(
                {"users": service}, transport=httpx.MockTransport(self.async_handler), **common
            )
        else:
            self.transport = meshclient.MeshTransport(
                {"users": service}, transport=httpx.MockTransport(self.handler), **common
            )

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        kind, value = self.script.pop(0) if self.script else ("status", 200)
        if kind == "status":
            return httpx.Response(value)
        if kind == "retry_after":
            return httpx.Response(503, headers={"retry-after": str(value)})
        if kind == "connect":
            raise httpx.ConnectError("refused", request=request)
        if kind == "read":
            raise httpx.ReadTimeout("slow", request=request)
        if kind == "reset":
            raise httpx.RemoteProtocolError("reset mid-response", request=request)
        if kind == "timeout":
            self.clock.advance(1.5)  # past the call's 1 s deadline
            raise httpx.ReadTimeout("slow", request=request)
        raise KeyboardInterrupt  # "cancel": the caller goes away mid-attempt

    async def async_handler(self, request: httpx.Request) -> httpx.Response:
        try:
            return self.handler(request)
        except KeyboardInterrupt:
            raise asyncio.CancelledError from None

    def check(self) -> None:
        """Nothing is held between calls; every start has its end."""
        assert self.bulkhead.snapshot()["active"] == 0
        assert self.bulkhead.snapshot()["queued"] == 0
        breaker = self.breaker.snapshot()
        assert breaker.get("trial_permits_out", 0) == 0
        endpoints = self.transport.snapshot()["services"]["users"]["endpoints"]
        assert [e["outstanding"] for e in endpoints] == [0] * len(ENDPOINTS)
        for role in ("top", "below_retry", "attempt_top", "attempt_bottom"):
            assert self.counts[f"{role}.start"] == self.counts[f"{role}.end"], role
        budget = self.budget.snapshot()
        assert budget["deposits"] == self.counts["below_retry.start"]
        assert budget["withdrawals"] == self.sent - self.counts["attempt_top.calls"]


def run_sync(world: World, calls: list[tuple[list[tuple[str, Any]], float]]) -> None:
    with httpx.Client(transport=world.transport) as http:
        for script, idle in calls:
            world.script = list(script)
            before = world.sent
            with contextlib.suppress(httpx.HTTPError, KeyboardInterrupt):
                http.get("http://users/")
            world.counts["attempt_top.calls"] += world.sent > before
            world.check()
            world.clock.advance(idle)


async def run_async(world: World, calls: list[tuple[list[tuple[str, Any]], float]]) -> None:
    async with httpx.AsyncClient(transport=world.transport) as http:
        for script, idle in calls:
            world.script = list(script)
            before = world.sent
            with contextlib.suppress(httpx.HTTPError, asyncio.CancelledError):
                await http.get("http://users/")
            world.counts["attempt_top.calls"] += world.sent > before
            world.check()
            world.clock.advance(idle)


@settings(max_examples=150)
@given(CALLS)
def test_sync_engine_gives_back_everything_it_takes(calls) -> None:
    run_sync(World(asynchronous=False), calls)


@settings(max_examples=150)
@given(CALLS)
def test_async_engine_gives_back_everything_it_takes(calls) -> None:
    asyncio.run(run_async(World(asynchronous=True), calls))
