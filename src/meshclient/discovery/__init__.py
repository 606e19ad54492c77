"""Where a service's endpoints come from: static lists, DNS, etcd and files."""

from ._base import Discovery, DiscoveryUpdates, Endpoint
from ._dns import DnsDiscovery
from ._etcd import EtcdDiscovery
from ._file import FileDiscovery
from ._registration import EtcdRegistration, etcd_lifespan, etcd_wsgi
from ._static import StaticDiscovery

__all__ = [
    "Discovery",
    "DiscoveryUpdates",
    "DnsDiscovery",
    "Endpoint",
    "EtcdDiscovery",
    "EtcdRegistration",
    "FileDiscovery",
    "StaticDiscovery",
    "etcd_lifespan",
    "etcd_wsgi",
]
