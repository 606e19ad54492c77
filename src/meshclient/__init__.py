"""meshclient: a fat-client RPC library on httpx — discovery, balancing, retries, deadlines.

Telemetry: OpenTelemetry spans and metrics, hooks (``meshclient.hooks``), and deadline and
trace propagation across services (``meshclient.middleware``).
"""

from ._balance import Balancer, LeastLoaded, PeakEwma, RoundRobin
from ._breaker import CircuitBreaker
from ._bulkhead import Bulkhead, BulkheadFullError
from ._client import AsyncClient, Client
from ._context import deadline_scope, time_left
from ._deadline import Timeout
from ._exceptions import (
    CircuitOpenError,
    DeadlineExceeded,
    MeshError,
    NoEndpointsError,
    ThrottledError,
)
from ._health import OutlierDetection
from ._policy import Policy
from ._retry import Retry, RetryBudget
from ._service import Service
from ._telemetry import Telemetry
from ._throttle import AdaptiveThrottle
from ._transport import AsyncMeshTransport, MeshTransport
from .discovery import Discovery, Endpoint, StaticDiscovery

__all__ = [
    "AdaptiveThrottle",
    "AsyncClient",
    "AsyncMeshTransport",
    "Balancer",
    "Bulkhead",
    "BulkheadFullError",
    "CircuitBreaker",
    "CircuitOpenError",
    "Client",
    "DeadlineExceeded",
    "Discovery",
    "Endpoint",
    "LeastLoaded",
    "MeshError",
    "MeshTransport",
    "NoEndpointsError",
    "OutlierDetection",
    "PeakEwma",
    "Policy",
    "Retry",
    "RetryBudget",
    "RoundRobin",
    "Service",
    "StaticDiscovery",
    "Telemetry",
    "ThrottledError",
    "Timeout",
    "deadline_scope",
    "time_left",
]
