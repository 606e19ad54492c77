"""Everything for writing, placing and reading modules of the request path.

``meshclient.DEFAULT_STACK`` is the stack every client uses; the module classes here are its
parts, by role (outermost first)::

    fallback           FallbackModule          Policy.fallback answers for a failed call
    call_telemetry     CallTelemetryModule     one span and one duration per call
    deadline           DeadlineModule          call.deadline from Timeout.total / inherited
    throttle           AdmissionModule         Service.throttle
    breaker            BreakerModule           Service.breaker
    bulkhead           AdmissionModule         Service.bulkhead
    rate_limit         AdmissionModule         Service.rate_limit
    retry              RetryModule             Policy.retry within Service.retry_budget
    attempt_telemetry  AttemptTelemetryModule  one span per attempt, trace context injected
    balancer           BalancerModule          Service.balancer picks attempt.endpoint
    health             HealthModule            Service.outlier ejects and probes endpoints
    attempt_timeout    AttemptTimeoutModule    attempt.deadline from Timeout.attempt

Write a module by subclassing ``CallModule`` (once per call) or ``AttemptModule`` (once per
attempt) and overriding the phases you need; ``docs/modules.md`` has worked examples.
"""

from ._call import Attempt, Call
from ._defaults import DEFAULT_STACK
from ._endpoint import EndpointState
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
from ._public import publish as _publish
from ._stack import (
    ATTEMPT,
    CALL,
    Admission,
    AdmissionModule,
    AttemptModule,
    CallModule,
    Module,
    ServiceContext,
    Sleep,
    Stack,
    Wait,
)

__all__ = [
    "ATTEMPT",
    "CALL",
    "DEFAULT_STACK",
    "Admission",
    "AdmissionModule",
    "Attempt",
    "AttemptModule",
    "AttemptTelemetryModule",
    "AttemptTimeoutModule",
    "BalancerModule",
    "BreakerModule",
    "Call",
    "CallModule",
    "CallTelemetryModule",
    "DeadlineModule",
    "EndpointState",
    "FallbackModule",
    "HealthModule",
    "Module",
    "RetryModule",
    "ServiceContext",
    "Sleep",
    "Stack",
    "Wait",
    "service_param",
]

# Exported classes and functions say where users import them from (meshclient.Retry, not
# meshclient._retry.Retry), in reprs, tracebacks, pickles and the API reference.
_publish(__name__, __all__, globals())
