"""Where a service's endpoints come from."""

from ._base import Discovery, DiscoveryUpdates, Endpoint
from ._static import StaticDiscovery

__all__ = ["Discovery", "DiscoveryUpdates", "Endpoint", "StaticDiscovery"]
