"""The discovery seam: backends publish immutable endpoint sets; the client swaps them in."""

from __future__ import annotations

import abc
import ipaddress
import math
import re
from collections.abc import Callable, Iterable
from typing import Any

import attrs

__all__ = ["Discovery", "Endpoint", "parse_endpoints"]

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


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        labels = host.lower().rstrip(".").split(".")
        return bool(host) and all(_HOST_LABEL.match(label) for label in labels)
    return True


@attrs.frozen
class Endpoint:
    """One network address of a service; ``weight`` scales its share of traffic."""

    host: str = attrs.field(validator=_check_host)
    port: int = attrs.field(validator=_check_port)
    weight: float = attrs.field(default=1.0, validator=_check_weight)

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

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


class Discovery(abc.ABC):
    """Publishes the current endpoint set of one service.

    ``start`` hands over a callback that takes each new set as an immutable tuple; a backend
    that watches a registry calls it from any thread whenever the set changes.
    """

    @abc.abstractmethod
    def start(self, on_update: Callable[[tuple[Endpoint, ...]], None]) -> None: ...

    @abc.abstractmethod
    def close(self) -> None:
        """Stop watching the registry."""
