"""Per-endpoint live state shared by the balancer, accounting and (later) health.

One ``EndpointState`` exists per endpoint address of a service and survives discovery
updates for as long as the address stays in the set, so latency estimates and load are
not lost when the endpoint list changes.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

__all__ = ["EndpointState"]


class EndpointState:
    """Mutable counters of one endpoint; writes happen under ``lock``, reads are lock-free."""

    __slots__ = (
        "address",
        "health",
        "host",
        "lock",
        "outstanding",
        "pool",
        "port",
        "raw_host",
        "rtt",
        "rtt_samples",
        "rtt_stamp",
        "tls_pool",
        "waiting",
        "waiting_since",
        "weight",
        "zone",
    )

    def __init__(self, host: str, port: int, weight: float, *, initial_rtt: float, now: float):
        self.host = host
        self.port = port
        self.address = f"{host}:{port}"
        self.raw_host = host.encode("ascii")
        #: Relative share of traffic from discovery (1.0 = normal).
        self.weight = weight
        #: Where the endpoint runs, from discovery (``None``: unknown).
        self.zone: str | None = None
        #: Attempts sent to this endpoint whose response has not been closed yet.
        self.outstanding = 0
        #: Peak-EWMA latency estimate in seconds, as of ``rtt_stamp`` (clock seconds).
        self.rtt = initial_rtt
        self.rtt_stamp = now
        #: Number of latency samples observed; 0 means ``rtt`` is only a starting guess.
        self.rtt_samples = 0
        #: Attempts sent and not answered yet, oldest first (answered ones leave lazily), and
        #: when the oldest was sent: its age is a lower bound of the endpoint's latency now.
        self.waiting: deque[Any] = deque()
        self.waiting_since: float | None = None
        self.lock = threading.Lock()
        #: Connection pools for http and https (often the same object), set by the transport.
        self.pool: Any = None
        self.tls_pool: Any = None
        #: Outlier-detection record owned by the route's ``HealthTracker`` (``_health``), if any.
        self.health: Any = None

    def __repr__(self) -> str:
        return f"<EndpointState {self.address} outstanding={self.outstanding} rtt={self.rtt:.4f}>"
