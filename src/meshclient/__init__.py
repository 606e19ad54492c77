"""meshclient: a fat-client RPC library on httpx — discovery, balancing, retries, deadlines.

Public submodules: ``meshclient.stack`` (writing and placing modules of the request path),
``meshclient.hooks`` (instrumentation events), ``meshclient.middleware`` (deadline and trace
propagation for servers), ``meshclient.testing`` (loopback backends, a fake clock),
``meshclient.discovery`` (DNS, etcd, file and static sources, registration),
``meshclient.dashboard`` (a live view of a client's state).
"""

from . import hooks as hooks
from . import stack as stack
from ._async._transport import AsyncMeshTransport
from ._balance import Balancer, LeastLoaded, PeakEwma, RoundRobin
from ._breaker import CircuitBreaker
from ._bulkhead import Bulkhead, BulkheadFullError
from ._call import Attempt, Call
from ._client import AsyncClient, Client
from ._context import deadline_scope, time_left
from ._deadline import Timeout
from ._defaults import DEFAULT_STACK
from ._exceptions import (
    CircuitOpenError,
    DeadlineExceeded,
    MeshError,
    NoEndpointsError,
    ThrottledError,
)
from ._health import OutlierDetection
from ._policy import Policy
from ._public import publish as _publish
from ._ratelimit import RateLimitedError, RateLimiter
from ._retry import Retry, RetryBudget
from ._service import Service
from ._stack import Admission, AdmissionModule, AttemptModule, CallModule, Stack
from ._sync._transport import MeshTransport
from ._telemetry import Telemetry
from ._throttle import AdaptiveThrottle
from .discovery import (
    Discovery,
    DiscoveryUpdates,
    DnsDiscovery,
    Endpoint,
    EtcdDiscovery,
    FileDiscovery,
    StaticDiscovery,
)

__all__ = [
    "AdaptiveThrottle",
    "Admission",
    "AdmissionModule",
    "AsyncClient",
    "AsyncMeshTransport",
    "Attempt",
    "AttemptModule",
    "Balancer",
    "Bulkhead",
    "BulkheadFullError",
    "Call",
    "CallModule",
    "CircuitBreaker",
    "CircuitOpenError",
    "Client",
    "DEFAULT_STACK",
    "DeadlineExceeded",
    "Discovery",
    "DiscoveryUpdates",
    "DnsDiscovery",
    "Endpoint",
    "EtcdDiscovery",
    "FileDiscovery",
    "LeastLoaded",
    "MeshError",
    "MeshTransport",
    "NoEndpointsError",
    "OutlierDetection",
    "PeakEwma",
    "Policy",
    "RateLimitedError",
    "RateLimiter",
    "Retry",
    "RetryBudget",
    "RoundRobin",
    "Service",
    "Stack",
    "StaticDiscovery",
    "Telemetry",
    "ThrottledError",
    "Timeout",
    "deadline_scope",
    "time_left",
]

# Exported classes and functions say where users import them from (meshclient.Retry, not
# meshclient._retry.Retry), in reprs, tracebacks, pickles and the API reference.
_publish(__name__, __all__, globals())
