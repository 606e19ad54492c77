"""``DnsDiscovery``: endpoints from DNS A/AAAA records (plus a port) or SRV records.

dnspython is an optional dependency (``pip install 'meshclient[dns]'``), imported when a
``DnsDiscovery`` is built. The stub resolver of the C library (``getaddrinfo``) is not used:
it hides TTLs, caches for its own reasons and cannot read SRV records.
"""

from __future__ import annotations

import importlib
import ipaddress
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from .._validate import check_positive
from ._base import Endpoint
from ._watch import Backoff, Run, Watcher, check_backoff

__all__ = ["DnsDiscovery", "NoAddress", "SrvRecord", "refresh_delay", "srv_endpoints"]

_RECORD_TYPES = ("A", "AAAA")
#: The share of a weight-0 SRV target beside weighted ones: 1/100 of the smallest weight.
ZERO_WEIGHT_SHARE = 0.01


class SrvRecord(NamedTuple):
    """One SRV answer (RFC 2782); ``target`` without the trailing dot."""

    priority: int
    weight: int
    port: int
    target: str


class NoAddress(Exception):
    """A name (an SRV target) has no address record: an unusable entry, not a DNS failure."""


def refresh_delay(ttl: float, min_ttl: float, max_ttl: float) -> float:
    """Seconds until the next lookup: the record's TTL within ``[min_ttl, max_ttl]``."""
    return min(max(ttl, min_ttl), max_ttl)


def _srv_weights(weights: Sequence[int]) -> list[float]:
    """SRV weights as ``Endpoint.weight`` (which must be > 0), per RFC 2782.

    All 0: equal shares (weight 1 each). Some 0 beside positive weights: RFC 2782 gives a
    weight-0 target "a very small chance of being selected", so it gets 1/100 of the
    smallest positive weight.
    """
    positive = [w for w in weights if w > 0]
    if not positive:
        return [1.0] * len(weights)
    floor = min(positive) * ZERO_WEIGHT_SHARE
    return [float(w) if w > 0 else floor for w in weights]


def srv_endpoints(
    records: Iterable[SrvRecord], addresses: Callable[[str], Sequence[str]]
) -> tuple[list[Endpoint], list[tuple[object, str]]]:
    """The endpoints SRV ``records`` stand for, and the records left out (with why).

    Only the lowest priority value with at least one usable target is used (a higher value
    is a fallback, RFC 2782). Each target's SRV weight is split evenly over its addresses
    (from ``addresses(target)``, which raises ``NoAddress`` for a name without any); two
    records reaching the same address and port add up. A target of ``"."`` means "no
    service here" and is left out.
    """
    by_priority: dict[int, list[SrvRecord]] = {}
    for record in records:
        by_priority.setdefault(record.priority, []).append(record)
    rejected: list[tuple[object, str]] = []
    for priority in sorted(by_priority):
        group = by_priority[priority]
        weights = _srv_weights([record.weight for record in group])
        merged: dict[tuple[str, int], float] = {}
        metadata: dict[tuple[str, int], dict[str, str]] = {}
        for record, weight in zip(group, weights, strict=True):
            if record.target in ("", "."):
                rejected.append((record, 'target "." : the service is not offered here'))
                continue
            try:
                found = sorted(set(addresses(record.target)))
            except NoAddress as exc:
                rejected.append((record, f"target {record.target} has no address: {exc}"))
                continue
            for address in found:
                key = (address, record.port)
                merged[key] = merged.get(key, 0.0) + weight / len(found)
                metadata.setdefault(key, {"srv_target": record.target})
        if merged:
            endpoints = [
                Endpoint(host, port, weight=weight, metadata=metadata[host, port])
                for (host, port), weight in sorted(merged.items())
            ]
            return endpoints, rejected
    return [], rejected


def _load_dnspython() -> tuple[Any, Any]:
    try:
        resolver = importlib.import_module("dns.resolver")
        exception = importlib.import_module("dns.exception")
    except ImportError as exc:
        raise ImportError(
            "DnsDiscovery needs dnspython: pip install 'meshclient[dns]' "
            "(or pip install 'dnspython>=2.6')"
        ) from exc
    return resolver, exception


class DnsDiscovery(Watcher):
    """Endpoints from DNS: ``DnsDiscovery("users.svc.test", port=8001)`` (A/AAAA records,
    every address on ``port``) or ``DnsDiscovery.srv("_http._tcp.users.svc.test")`` (SRV).

    - Lookups repeat after the answer's TTL, kept within ``min_ttl`` (1 s) and ``max_ttl``
      (60 s); a TTL of 0 means ``min_ttl``.
    - Any failure (timeout, SERVFAIL, NXDOMAIN, no records) is reported and the last good set
      stays; the lookup is retried after full-jitter backoff from ``backoff`` (0.25 s) to
      ``max_backoff`` (10 s). A name that never resolved publishes nothing (the service is not
      ready) until it does.
    - ``record_types`` = ("A", "AAAA"): which address records to ask for (either may be
      absent; both absent is a failure). ``("A",)`` halves the queries on IPv4-only networks.
    - SRV: only the lowest priority value that has a resolvable target is used; a target's
      weight becomes ``Endpoint.weight`` (split over its addresses). Weight 0: all-zero
      weights share equally, a zero beside positive weights gets 1/100 of the smallest one
      (RFC 2782's "very small chance"). A target without an address is reported as an
      invalid entry and left out.
    - ``nameservers`` (IP addresses) and ``nameserver_port`` (53) pick the servers to ask;
      by default the system's (``/etc/resolv.conf``). Nothing is cached in-process.
    - ``timeout`` (2 s) bounds each lookup (dnspython's ``lifetime``).
    """

    def __init__(
        self,
        name: str,
        port: int | None = None,
        *,
        srv: bool = False,
        record_types: Sequence[str] = _RECORD_TYPES,
        nameservers: Sequence[str] | None = None,
        nameserver_port: int = 53,
        timeout: float = 2.0,
        min_ttl: float = 1.0,
        max_ttl: float = 60.0,
        backoff: float = 0.25,
        max_backoff: float = 10.0,
    ) -> None:
        super().__init__()
        self._resolver_module, self._dns_exception = _load_dnspython()
        if not isinstance(name, str) or not name.strip("."):
            raise ValueError(f"DnsDiscovery.name must be a DNS name, got {name!r}")
        if srv:
            if port is not None:
                raise ValueError(
                    f"DnsDiscovery.port must be None for SRV records (they carry the port), "
                    f"got {port!r}"
                )
        elif isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"DnsDiscovery.port must be an int in 1..65535, got {port!r}")
        record_types = tuple(record_types)
        if not record_types or not set(record_types) <= set(_RECORD_TYPES):
            raise ValueError(
                f"DnsDiscovery.record_types must be ('A',), ('AAAA',) or ('A', 'AAAA'), "
                f"got {record_types!r}"
            )
        if nameservers is not None:
            nameservers = list(nameservers)
            for server in nameservers:
                try:
                    ipaddress.ip_address(server)
                except ValueError:
                    raise ValueError(
                        f"DnsDiscovery.nameservers must be IP addresses, got {server!r}"
                    ) from None
            if not nameservers:
                raise ValueError("DnsDiscovery.nameservers must not be empty (None: the system's)")
        if (
            isinstance(nameserver_port, bool)
            or not isinstance(nameserver_port, int)
            or not 0 < nameserver_port < 65536
        ):
            raise ValueError(
                f"DnsDiscovery.nameserver_port must be an int in 1..65535, got {nameserver_port!r}"
            )
        check_positive("DnsDiscovery", "timeout", timeout)
        check_positive("DnsDiscovery", "min_ttl", min_ttl)
        check_positive("DnsDiscovery", "max_ttl", max_ttl)
        if max_ttl < min_ttl:
            raise ValueError(
                f"DnsDiscovery.max_ttl must be >= min_ttl ({min_ttl!r}), got {max_ttl!r}"
            )
        self.name = name
        self.port = port
        self.srv_records = srv
        self.record_types = record_types
        self.nameservers = nameservers
        self.nameserver_port = nameserver_port
        self.timeout = float(timeout)
        self.min_ttl = float(min_ttl)
        self.max_ttl = float(max_ttl)
        self.backoff, self.max_backoff = check_backoff("DnsDiscovery", backoff, max_backoff)

    @classmethod
    def srv(cls, name: str, **options: Any) -> DnsDiscovery:
        """Endpoints from the SRV records of ``name`` (e.g. ``"_http._tcp.users.svc.test"``)."""
        return cls(name, srv=True, **options)

    def describe(self) -> str:
        if self.srv_records:
            return f"dns srv {self.name}"
        return f"dns {self.name}:{self.port}"

    def __repr__(self) -> str:
        if self.srv_records:
            return f"DnsDiscovery.srv({self.name!r})"
        return f"DnsDiscovery({self.name!r}, port={self.port!r})"

    # -- the run ---------------------------------------------------------------------------

    def _new_resolver(self) -> Any:
        resolver = self._resolver_module.Resolver(configure=self.nameservers is None)
        if self.nameservers is not None:
            resolver.nameservers = self.nameservers
            resolver.port = self.nameserver_port
        resolver.cache = None  # the TTL is honoured here; a cache would only delay changes
        resolver.lifetime = self.timeout
        resolver.timeout = self.timeout
        return resolver

    def _watch(self, run: Run) -> None:
        backoff = Backoff(self.backoff, self.max_backoff)
        resolver: Any = None
        reported: set[tuple[object, str]] = set()
        while run.running:
            try:
                if resolver is None:
                    resolver = self._new_resolver()
                endpoints, rejected, ttl = self._lookup(resolver, run)
            except self._dns_exception.DNSException as exc:
                if not run.running:
                    return
                run.error(exc)
                run.sleep(backoff.next())
                continue
            backoff.reset()
            # An unusable record is reported when it appears, not at every refresh.
            current = set(rejected)
            for entry, reason in rejected:
                if (entry, reason) not in reported:
                    run.invalid(entry, reason)
            reported = current
            run.publish(endpoints)
            run.sleep(refresh_delay(ttl, self.min_ttl, self.max_ttl))

    def _lookup(
        self, resolver: Any, run: Run
    ) -> tuple[list[Endpoint], list[tuple[object, str]], float]:
        """One refresh: the endpoints, the records left out and the smallest TTL seen."""
        if not self.srv_records:
            assert self.port is not None
            found, ttl = self._addresses(resolver, self.name)
            return [Endpoint(address, self.port) for address in sorted(found)], [], ttl
        answer = resolver.resolve(self.name, "SRV", search=True)
        ttls = [float(answer.rrset.ttl)]
        records = [
            SrvRecord(r.priority, r.weight, r.port, r.target.to_text(omit_final_dot=True))
            for r in answer
        ]
        resolver_errors = self._resolver_module

        def target_addresses(target: str) -> list[str]:
            if not run.running:
                raise self._dns_exception.DNSException("stopped")
            try:
                addresses, target_ttl = self._addresses(resolver, target)
            except (resolver_errors.NXDOMAIN, resolver_errors.NoAnswer) as exc:
                raise NoAddress(str(exc)) from None
            ttls.append(target_ttl)
            return addresses

        endpoints, rejected = srv_endpoints(records, target_addresses)
        if not endpoints:
            raise self._dns_exception.DNSException(
                f"no usable SRV target for {self.name} "
                f"({len(records)} record(s), {len(rejected)} left out)"
            )
        return endpoints, rejected, min(ttls)

    def _addresses(self, resolver: Any, name: str) -> tuple[list[str], float]:
        """The A/AAAA addresses of ``name`` and their smallest TTL; raises if there are none."""
        found: list[str] = []
        ttl = math.inf
        missing: Exception | None = None
        for rdtype in self.record_types:
            try:
                answer = resolver.resolve(name, rdtype, search=True)
            except self._resolver_module.NoAnswer as exc:  # this family only: try the other
                missing = exc
                continue
            found.extend(record.address for record in answer)
            ttl = min(ttl, float(answer.rrset.ttl))
        if not found:
            assert missing is not None
            raise missing
        return found, ttl
