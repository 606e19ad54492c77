"""meshclient: a fat-client RPC library on httpx — discovery, balancing, retries, deadlines."""

from ._balance import Balancer, LeastLoaded, PeakEwma, RoundRobin
from ._client import AsyncClient, Client
from ._deadline import Timeout
from ._exceptions import CircuitOpenError, DeadlineExceeded, MeshError, NoEndpointsError
from ._policy import Policy
from ._retry import Retry, RetryBudget
from ._service import Service
from ._transport import AsyncMeshTransport, MeshTransport
from .discovery import Discovery, Endpoint, StaticDiscovery

__all__ = [
    "AsyncClient",
    "AsyncMeshTransport",
    "Balancer",
    "CircuitOpenError",
    "Client",
    "DeadlineExceeded",
    "Discovery",
    "Endpoint",
    "LeastLoaded",
    "MeshError",
    "MeshTransport",
    "NoEndpointsError",
    "PeakEwma",
    "Policy",
    "Retry",
    "RetryBudget",
    "RoundRobin",
    "Service",
    "StaticDiscovery",
    "Timeout",
]
