"""Scenario: what the stack costs per call, over ``httpx.MockTransport`` (no network at all).

Variants, interleaved as in ``sync_overhead`` (CPU per sequential call, median of per-round
differences): plain ``httpx.Client(transport=MockTransport(...))``; meshclient over the same
transport (a logical service of two endpoints, the default stack); the same with one no-op call
module, with one no-op attempt module, and with a ``RateLimiter`` that never limits. Without
sockets, what remains is meshclient's own work per call, and each module's.
"""

from __future__ import annotations

from contextlib import ExitStack

import httpx

import meshclient
from meshclient.stack import Attempt, AttemptModule, Call, CallModule

from .machine import client_cpu
from .report import Check, ScenarioResult
from .sync_overhead import CPU_COLUMNS, Variant, difference, interleave, paired, rows, sizes

NAME = "stack_cost"
#: meshclient over a MockTransport, CPU per call, at most this times plain httpx over it.
TARGET_MOCK_RATIO = 1.5
#: Microseconds per call one no-op module may add; the rate limiter's share.
TARGET_NOOP_US = 2.0
TARGET_RATE_LIMIT_US = 3.0
ENDPOINTS = ["127.0.0.1:8001", "127.0.0.1:8002"]


def _answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=b"ok")


class NoopCall(CallModule):
    role = "noop_call"

    def on_call(self, call: Call) -> None:
        return None

    def on_call_end(self, call: Call) -> None:
        return None


class NoopAttempt(AttemptModule):
    role = "noop_attempt"

    def on_attempt(self, attempt: Attempt) -> None:
        return None

    def on_attempt_end(self, attempt: Attempt) -> None:
        return None


def run(*, quick: bool) -> ScenarioResult:
    rounds, calls, warmup = sizes(quick=quick)
    result = ScenarioResult(
        NAME,
        "sequential sync GETs over httpx.MockTransport, client CPU per call",
        [*CPU_COLUMNS, "round_spread_%"],
        params={"rounds": rounds, "calls_per_round": calls, "warmup_calls": warmup},
    )
    default = meshclient.DEFAULT_STACK
    with client_cpu(), ExitStack() as stack:

        def mesh(stack_: meshclient.Stack = default, **service: object) -> meshclient.Client:
            return stack.enter_context(
                meshclient.Client(
                    services={"svc": meshclient.Service(ENDPOINTS, **service)},  # type: ignore[arg-type]
                    stack=stack_,
                    transport=httpx.MockTransport(_answer),
                )
            )

        plain = stack.enter_context(httpx.Client(transport=httpx.MockTransport(_answer)))
        clients = {
            "httpx + MockTransport": (plain, "http://svc/x"),
            "meshclient + MockTransport": (mesh(), "http://svc/x"),
            "+ no-op call module": (
                mesh(default.insert_after("retry", NoopCall())),
                "http://svc/x",
            ),
            "+ no-op attempt module": (
                mesh(default.insert_after("attempt_timeout", NoopAttempt())),
                "http://svc/x",
            ),
            "+ RateLimiter": (mesh(rate_limit=meshclient.RateLimiter(1e9)), "http://svc/x"),
        }
        variants = {
            name: Variant(lambda client=client, url=url: client.get(url))
            for name, (client, url) in clients.items()
        }
        samples = interleave(variants, rounds=rounds, calls=calls, warmup=warmup)
    result.rows = rows(samples, "httpx + MockTransport")
    by_name = {row["variant"]: row for row in result.rows}
    result.checks.append(
        Check(
            "meshclient / httpx over MockTransport, CPU",
            by_name["meshclient + MockTransport"]["ratio_vs_raw"],
            "<=",
            TARGET_MOCK_RATIO,
            "x",
        )
    )
    base = "meshclient + MockTransport"
    for variant, target in (
        ("+ no-op call module", TARGET_NOOP_US),
        ("+ no-op attempt module", TARGET_NOOP_US),
        ("+ RateLimiter", TARGET_RATE_LIMIT_US),
    ):
        cost = paired(samples, variant, base, difference)
        result.extra[f"{variant} us"] = cost
        result.checks.append(Check(f"{variant[2:]}: CPU per call", cost, "<=", target, " µs"))
    result.notes.append(
        "module costs: median over rounds of the per-round CPU difference with the default "
        "stack; a difference within the rounds' spread is noise, not a cost"
    )
    return result
