"""Where a service's endpoints come from: static lists, DNS, etcd and files."""

from .._public import publish as _publish
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

# Exported classes and functions say where users import them from (meshclient.Retry, not
# meshclient._retry.Retry), in reprs, tracebacks, pickles and the API reference.
_publish(__name__, __all__, globals())
