"""Every name meshclient emits or reads: span attributes, metric names, span events, headers.

One module, so the docs (``docs/telemetry.md``) and dashboards have a single source, and a
rename is one edit. HTTP names follow the stable OpenTelemetry HTTP client semantic
conventions; meshclient's own names start with ``meshclient.``.
"""

from __future__ import annotations

from typing import Final

# -- instrumentation scope -----------------------------------------------------------------

SCOPE: Final = "meshclient"

# -- span and metric attributes: OpenTelemetry semantic conventions ------------------------

HTTP_REQUEST_METHOD: Final = "http.request.method"
HTTP_REQUEST_METHOD_ORIGINAL: Final = "http.request.method_original"
HTTP_RESPONSE_STATUS_CODE: Final = "http.response.status_code"
HTTP_REQUEST_RESEND_COUNT: Final = "http.request.resend_count"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
NETWORK_PEER_ADDRESS: Final = "network.peer.address"
NETWORK_PEER_PORT: Final = "network.peer.port"
URL_FULL: Final = "url.full"
URL_SCHEME: Final = "url.scheme"
ERROR_TYPE: Final = "error.type"

# -- meshclient's own attributes -------------------------------------------------------------

#: The logical service (a configured service name, or the host of a pass-through request).
SERVICE: Final = "meshclient.service"
#: How a logical call ended: one of the ``OUTCOME_*`` values.
OUTCOME: Final = "meshclient.outcome"
#: Physical attempts a logical call made.
ATTEMPTS: Final = "meshclient.attempts"
#: Seconds left of the call's deadline when it started (absent without a deadline).
DEADLINE_REMAINING: Final = "meshclient.deadline.remaining"
#: ``True`` when the deadline came from the caller's caller (a deadline header).
DEADLINE_INHERITED: Final = "meshclient.deadline.inherited"
#: Seconds waited before a retry.
RETRY_DELAY: Final = "meshclient.retry.delay"
#: The attempt (1-based) that is being retried.
ATTEMPT: Final = "meshclient.attempt"
#: Why an endpoint was ejected or a breaker changed state.
REASON: Final = "meshclient.reason"
#: Where a service's endpoints come from (``Discovery.describe()``).
DISCOVERY_SOURCE: Final = "meshclient.discovery.source"
#: Breaker states before and after a transition.
BREAKER_FROM: Final = "meshclient.breaker.from"
BREAKER_TO: Final = "meshclient.breaker.to"

OUTCOME_SUCCESS: Final = "success"
OUTCOME_SERVER_ERROR: Final = "server_error"
OUTCOME_ERROR: Final = "error"
OUTCOME_CANCELLED: Final = "cancelled"

#: ``error.type`` when no more specific value is known (semantic conventions' fallback).
ERROR_OTHER: Final = "_OTHER"

# -- span events on the logical call's span ----------------------------------------------------

EVENT_RETRY: Final = "meshclient.retry"
EVENT_BUDGET_EXHAUSTED: Final = "meshclient.retry_budget.exhausted"
EVENT_DEADLINE_EXCEEDED: Final = "meshclient.deadline.exceeded"

# -- metrics ---------------------------------------------------------------------------------

#: Histogram, seconds, one record per attempt (semantic conventions).
METRIC_ATTEMPT_DURATION: Final = "http.client.request.duration"
#: Histogram, seconds, one record per logical call.
METRIC_CALL_DURATION: Final = "meshclient.call.duration"
#: Counter of retries scheduled.
METRIC_RETRIES: Final = "meshclient.retries"
#: Counter of retries refused by an empty retry budget.
METRIC_BUDGET_EXHAUSTED: Final = "meshclient.retry_budget.exhausted"
#: Observable up-down counter of attempts in flight, per endpoint.
METRIC_IN_FLIGHT: Final = "meshclient.requests.in_flight"
#: Observable gauge of endpoints the balancer can pick, per service.
METRIC_ENDPOINTS_AVAILABLE: Final = "meshclient.endpoints.available"
#: Counter of endpoint ejections (outlier detection).
METRIC_EJECTIONS: Final = "meshclient.endpoint.ejections"
#: Counter of circuit breaker state transitions.
METRIC_BREAKER_TRANSITIONS: Final = "meshclient.breaker.transitions"
#: Counter of endpoint sets a service's discovery delivered that changed the set.
METRIC_DISCOVERY_UPDATES: Final = "meshclient.discovery.updates"
#: Counter of failed reads of a service's registry (the last good set stayed in use).
METRIC_DISCOVERY_ERRORS: Final = "meshclient.discovery.errors"
#: Counter of registry entries left out because they were unusable.
METRIC_DISCOVERY_INVALID: Final = "meshclient.discovery.invalid"

#: Advisory bucket boundaries of the duration histograms (semantic conventions), seconds.
DURATION_BUCKETS: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)

# -- headers ---------------------------------------------------------------------------------

#: Sent on every attempt to a mesh service: milliseconds the caller will still wait.
DEADLINE_HEADER: Final = "x-meshclient-timeout-ms"
#: Also read by the middleware: gRPC's relative timeout (``100m``, ``5S``, ...).
GRPC_TIMEOUT_HEADER: Final = "grpc-timeout"
#: Also read by the middleware: the timeout Envoy gives the upstream request.
ENVOY_TIMEOUT_HEADER: Final = "x-envoy-expected-rq-timeout-ms"

# -- what the retry module decided about an attempt (``Attempt.decision``) -----------------------

DECISION_RETRY: Final = "retry"
DECISION_BUDGET: Final = "budget_exhausted"
DECISION_DEADLINE: Final = "deadline"
