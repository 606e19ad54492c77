"""The default stack: the one place the order of the request path is written down.

Outermost first. Each position has a reason, given beside it; ``docs/request-flow.md`` draws
the same order. ``Client(stack=...)`` and ``Service(stack=...)`` take an edited copy, e.g.
``DEFAULT_STACK.insert_after("balancer", my_module)``.
"""

from __future__ import annotations

from typing import Final

from ._modules import (
    AttemptTelemetryModule,
    AttemptTimeoutModule,
    BalancerModule,
    BreakerModule,
    CallTelemetryModule,
    DeadlineModule,
    FallbackModule,
    HealthModule,
    RetryModule,
    service_param,
)
from ._stack import AdmissionModule, Stack

__all__ = ["DEFAULT_STACK"]

DEFAULT_STACK: Final = Stack(
    [
        # -- once per call --------------------------------------------------------------------
        # Outermost, so a fallback can answer for any failure below, admission refusals too.
        FallbackModule(),
        # Sees the call's final outcome after every attempt, backoff and wait below it.
        CallTelemetryModule(),
        # Fixes the deadline before anything waits, so queues, backoff and attempts are bounded.
        DeadlineModule(),
        # Admission rejects before any work is spent and is never retried; cheapest first.
        # Adaptive throttling sees every call, the breaker's rejections included.
        AdmissionModule("throttle", service_param("throttle")),
        # An open breaker fails fast before a bulkhead slot or a rate permit is taken.
        BreakerModule(),
        # Concurrency limit: a queued call waits within its deadline, holding nothing else.
        AdmissionModule("bulkhead", service_param("bulkhead")),
        # Pacing last: a call only waits for a permit once it may run at all.
        AdmissionModule("rate_limit", service_param("rate_limit")),
        # Above every attempt module, so each attempt is picked afresh and avoids endpoints
        # this call failed on; below admission, so a retry is never admitted twice.
        RetryModule(),
        # -- once per attempt -----------------------------------------------------------------
        # One span per physical try, its trace context injected before anything below signs
        # or sends the headers.
        AttemptTelemetryModule(),
        # The discovery snapshot -> one endpoint; it learns from every attempt's latency.
        BalancerModule(),
        # Below the balancer: may redirect one attempt to probe an ejected endpoint, and sees
        # the outcome of every attempt, timeouts included.
        HealthModule(),
        # Innermost, so health and retries see its timeouts as the attempt's outcome.
        AttemptTimeoutModule(),
    ]
)
