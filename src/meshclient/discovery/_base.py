"""The discovery seam: backends publish immutable endpoint sets; the client swaps them in.

A backend implements ``Discovery``: ``start(updates)`` begins watching its registry and
``close()`` stops. It reports through ``updates`` (a ``DiscoveryUpdates``), from any thread:

- ``updates(endpoints)``: the whole current set (not a delta). Endpoints that stay keep their
  live state (latency estimate, health) and their connections;
- ``updates.error(exc)``: the registry could not be read (down, timed out, garbage). The last
  good set stays in use: a registry outage never empties or shrinks a service;
- ``updates.invalid(entry, reason)``: one entry was unusable and is left out (logged and
  counted), so one bad record never takes down the rest.

``start`` must not block for long: a backend that watches does so on its own thread (or
timer), so neither a sync caller nor an event loop ever waits on the registry.
"""

from __future__ import annotations

import abc
import ipaddress
import math
import re
import types
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import attrs

__all__ = ["Discovery", "DiscoveryUpdates", "Endpoint", "parse_endpoints"]

_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


def _check_host(_inst: Any, _attr: Any, value: Any) -> None:
    if not isinstance(value, str) or not _valid_host(value):
        raise ValueError(f"Endpoint.host must be an IP address or a host name, got {value!r}")


def _check_port(_inst: Any, _attr: Any, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise ValueError(f"Endpoint.port must be an int in 1..65535, got {value!r}")


def _check_weight(_inst: Any, _attr: Any, value: Any) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"Endpoint.weight must be a number > 0, got {value!r}")


def _check_zone(_inst: Any, _attr: Any, value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError(f"Endpoint.zone must be a non-empty string or None, got {value!r}")


def _to_metadata(value: Any) -> Mapping[str, str]:
    """A read-only copy: an endpoint set is immutable, its metadata too."""
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise TypeError(f"Endpoint.metadata must be a mapping of str to str, got {value!r}")
    return types.MappingProxyType(dict(value))


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        labels = host.lower().rstrip(".").split(".")
        return bool(host) and all(_HOST_LABEL.match(label) for label in labels)
    return True


@attrs.frozen
class Endpoint:
    """One network address of a service.

    ``weight`` scales its share of traffic (1.0 = normal); ``zone`` names where it runs (a
    zone, rack or region, for zone-aware routing); ``metadata`` is free-form labels from the
    registry (a version, a canary flag), read-only.
    """

    host: str = attrs.field(validator=_check_host)
    port: int = attrs.field(validator=_check_port)
    weight: float = attrs.field(default=1.0, validator=_check_weight)
    zone: str | None = attrs.field(default=None, validator=_check_zone)
    metadata: Mapping[str, str] = attrs.field(
        factory=dict, converter=_to_metadata, hash=False, repr=lambda m: repr(dict(m))
    )

    @property
    def address(self) -> str:
        """``host:port`` (``[host]:port`` for IPv6), as snapshots and errors name it."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __reduce__(self) -> tuple[Any, ...]:
        # The read-only metadata view does not pickle; the values it shows do.
        return (Endpoint, (self.host, self.port, self.weight, self.zone, dict(self.metadata)))

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """``"host:port"`` or ``"[v6]:port"``; raises ``ValueError`` naming the text."""
        if not isinstance(text, str):
            raise TypeError(f"an endpoint must be a 'host:port' string, got {text!r}")
        host, sep, port = text.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not sep or not port.isdigit() or not host:
            raise ValueError(f"an endpoint must look like 'host:port', got {text!r}")
        return cls(host=host, port=int(port))


def parse_endpoints(items: Iterable[Endpoint | str]) -> tuple[Endpoint, ...]:
    """Endpoints from strings or ``Endpoint`` values, duplicates rejected."""
    if isinstance(items, str | bytes):
        raise TypeError(f"endpoints must be a list of 'host:port' strings, got {items!r}")
    parsed = tuple(item if isinstance(item, Endpoint) else Endpoint.parse(item) for item in items)
    seen: set[tuple[str, int]] = set()
    for endpoint in parsed:
        key = (endpoint.host, endpoint.port)
        if key in seen:
            raise ValueError(f"endpoint {endpoint.address!r} is listed twice")
        seen.add(key)
    return parsed


class DiscoveryUpdates(Protocol):
    """Where a ``Discovery`` reports; every method may be called from any thread."""

    def __call__(self, endpoints: Iterable[Endpoint]) -> None:
        """The registry's whole current set."""

    def error(self, error: BaseException) -> None:
        """The registry could not be read; the last good set stays in use."""

    def invalid(self, entry: object, reason: str) -> None:
        """``entry`` was unusable (``reason`` says why) and was left out of the set."""


class Discovery(abc.ABC):
    """Publishes the endpoint sets of one service (see the module docstring for the rules).

    One ``Discovery`` serves one ``Service``; the service starts it when its first client
    needs it and closes it when its last client closes, and may start it again later.
    """

    @abc.abstractmethod
    def start(self, updates: DiscoveryUpdates) -> None:
        """Begin publishing to ``updates``; return promptly."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop watching the registry (no more reports after this returns)."""

    def describe(self) -> str:
        """A short name of the source for snapshots and errors, e.g. ``"dns users.svc"``."""
        return repr(self)
