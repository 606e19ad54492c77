from __future__ import annotations

from collections.abc import Iterable

from ._base import Discovery, DiscoveryUpdates, Endpoint, parse_endpoints

__all__ = ["StaticDiscovery"]


class StaticDiscovery(Discovery):
    """A fixed list of endpoints, e.g. ``StaticDiscovery(["127.0.0.1:8001", "127.0.0.1:8002"])``."""

    def __init__(self, endpoints: Iterable[Endpoint | str]) -> None:
        self.endpoints = parse_endpoints(endpoints)
        if not self.endpoints:
            raise ValueError("StaticDiscovery.endpoints must name at least one endpoint, got []")

    def start(self, updates: DiscoveryUpdates) -> None:
        updates(self.endpoints)

    def close(self) -> None:
        """Nothing to stop: the list never changes."""

    def describe(self) -> str:
        return "static"

    def __repr__(self) -> str:
        return f"StaticDiscovery({[e.address for e in self.endpoints]!r})"
