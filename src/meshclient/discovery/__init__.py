"""Where a service's endpoints come from."""

from ._base import Discovery, Endpoint
from ._static import StaticDiscovery

__all__ = ["Discovery", "Endpoint", "StaticDiscovery"]
