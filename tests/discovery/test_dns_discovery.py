"""DnsDiscovery against a real dnsmasq on 127.0.0.1: A/AAAA, SRV, outages, live changes."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from discovery_support import (
    CallLoop,
    DnsServer,
    Recorder,
    client_addresses,
    discovery_state,
    free_port,
    mesh_client,
)

from meshclient import RoundRobin
from meshclient.discovery import Discovery, DnsDiscovery
from meshclient.testing import Backend

from helpers import eventually

Record = Callable[[Discovery], Recorder]
#: Quick refreshes and retries: dnsmasq answers with TTL 0, so ``min_ttl`` paces the lookups.
QUICK: dict[str, Any] = {"min_ttl": 0.02, "backoff": 0.02, "max_backoff": 0.1, "timeout": 0.5}


def dns(dnsmasq: DnsServer, name: str, port: int = 8001, **options: Any) -> DnsDiscovery:
    options = {"record_types": ("A",), **QUICK, **dnsmasq.discovery_options(), **options}
    return DnsDiscovery(name, port=port, **options)


def srv(dnsmasq: DnsServer, name: str, **options: Any) -> DnsDiscovery:
    options = {"record_types": ("A",), **QUICK, **dnsmasq.discovery_options(), **options}
    return DnsDiscovery.srv(name, **options)


def test_a_records_are_followed(dnsmasq: DnsServer, dns_name: str, record: Record) -> None:
    dnsmasq.set_hosts(dns_name, ["127.0.0.2", "127.0.0.3"])
    recorder = record(dns(dnsmasq, dns_name))
    eventually(lambda: recorder.addresses() == {"127.0.0.2:8001", "127.0.0.3:8001"}, "first set")
    dnsmasq.set_hosts(dns_name, ["127.0.0.3", "127.0.0.4"])
    eventually(lambda: recorder.addresses() == {"127.0.0.3:8001", "127.0.0.4:8001"}, "changed")
    assert recorder.errors == []


def test_a_and_aaaa_together(dnsmasq: DnsServer, dns_name: str, record: Record) -> None:
    dnsmasq.set_hosts(dns_name, ["127.0.0.2", "::1"])
    recorder = record(dns(dnsmasq, dns_name, record_types=("A", "AAAA")))
    eventually(lambda: recorder.addresses() == {"127.0.0.2:8001", "[::1]:8001"}, "both families")


def test_one_family_missing_is_not_an_error(
    dnsmasq: DnsServer, dns_name: str, record: Record
) -> None:
    """No AAAA record beside the A records: the A records are the set."""
    dnsmasq.set_hosts(dns_name, ["127.0.0.2"])
    recorder = record(dns(dnsmasq, dns_name, record_types=("A", "AAAA")))
    eventually(lambda: len(recorder.sets) >= 3, "a few refreshes")
    assert recorder.addresses() == {"127.0.0.2:8001"}
    assert recorder.errors == []


def test_a_name_that_never_resolved_publishes_nothing(
    dnsmasq: DnsServer, dns_name: str, record: Record
) -> None:
    recorder = record(dns(dnsmasq, dns_name))
    eventually(lambda: len(recorder.errors) >= 2, "NXDOMAIN reported (and retried)")
    assert type(recorder.errors[0]).__name__ == "NXDOMAIN"
    assert recorder.sets == []
    dnsmasq.set_hosts(dns_name, ["127.0.0.2"])
    eventually(lambda: recorder.addresses() == {"127.0.0.2:8001"}, "the name appearing")


def test_a_name_that_vanishes_keeps_the_last_good_set(
    dnsmasq: DnsServer, dns_name: str, record: Record
) -> None:
    dnsmasq.set_hosts(dns_name, ["127.0.0.2", "127.0.0.3"])
    recorder = record(dns(dnsmasq, dns_name))
    eventually(lambda: recorder.latest is not None, "first set")
    dnsmasq.set_hosts(dns_name, [])
    eventually(lambda: len(recorder.errors) >= 1, "NXDOMAIN reported")
    assert {frozenset(e.address for e in s) for s in recorder.sets} == {
        frozenset({"127.0.0.2:8001", "127.0.0.3:8001"})
    }, "never an empty or smaller set"


def test_srv_priority_and_weight(dnsmasq: DnsServer, dns_name: str, record: Record) -> None:
    name = f"_http._tcp.{dns_name}"
    for i, address in enumerate(["127.0.0.2", "127.0.0.3", "127.0.0.4"], start=1):
        dnsmasq.set_hosts(f"n{i}.{dns_name}", [address])
    dnsmasq.set_srv(
        name,
        [
            (f"n1.{dns_name}", 8001, 10, 60),
            (f"n2.{dns_name}", 8002, 10, 20),
            (f"n3.{dns_name}", 8003, 20, 5),
        ],
    )
    recorder = record(srv(dnsmasq, name))
    eventually(lambda: recorder.latest is not None, "first set")
    assert recorder.latest is not None
    assert {(e.address, e.weight) for e in recorder.latest} == {
        ("127.0.0.2:8001", 60.0),
        ("127.0.0.3:8002", 20.0),
    }
    assert {e.metadata["srv_target"] for e in recorder.latest} == {
        f"n1.{dns_name}",
        f"n2.{dns_name}",
    }
    # The priority-10 targets lose their addresses: priority 20 takes over.
    dnsmasq.set_hosts(f"n1.{dns_name}", [])
    dnsmasq.set_hosts(f"n2.{dns_name}", [])
    eventually(lambda: recorder.addresses() == {"127.0.0.4:8003"}, "the fallback priority")
    reasons = {reason for _, reason in recorder.rejected}
    assert any(f"n1.{dns_name}" in reason for reason in reasons)
    assert len(recorder.rejected) == 2, "an unusable record is reported once, not per refresh"


def test_srv_records_changed_by_restart(dnsmasq: DnsServer, dns_name: str, record: Record) -> None:
    name = f"_http._tcp.{dns_name}"
    dnsmasq.set_hosts(f"n1.{dns_name}", ["127.0.0.2"])
    dnsmasq.set_srv(name, [(f"n1.{dns_name}", 8001, 1, 0)])
    recorder = record(srv(dnsmasq, name))
    eventually(lambda: recorder.addresses() == {"127.0.0.2:8001"}, "first set")
    dnsmasq.set_srv(name, [(f"n1.{dns_name}", 8001, 1, 0), (f"n1.{dns_name}", 8002, 1, 0)])
    eventually(
        lambda: recorder.addresses() == {"127.0.0.2:8001", "127.0.0.2:8002"}, "the new record"
    )
    assert recorder.latest is not None
    assert all(e.weight == 1.0 for e in recorder.latest), "all-zero weights share equally"


def test_close_stops_and_start_again_works(
    dnsmasq: DnsServer, dns_name: str, record: Record
) -> None:
    dnsmasq.set_hosts(dns_name, ["127.0.0.2"])
    discovery = dns(dnsmasq, dns_name)
    first = record(discovery)
    eventually(lambda: first.latest is not None, "first run's set")
    discovery.close()
    frozen = first.counts()
    second = record(discovery)
    dnsmasq.set_hosts(dns_name, ["127.0.0.3"])
    eventually(lambda: second.addresses() == {"127.0.0.3:8001"}, "the second run's set")
    assert first.counts() == frozen, "the closed run reported nothing more"


# -- a client calling while DNS changes ---------------------------------------------------


@contextlib.contextmanager
def same_port_backends(
    factory: Callable[..., Backend], hosts: list[str]
) -> Iterator[tuple[int, dict[str, Backend]]]:
    """A ``Backend`` on each loopback address, all on one port (A records carry no port)."""
    for _ in range(20):
        port = free_port(host=hosts[0])
        started: dict[str, Backend] = {}
        try:
            for host in hosts:
                started[host] = factory(f"b-{host}", host=host, port=port)
        except (OSError, RuntimeError):
            for backend in started.values():
                backend.stop()
            continue
        yield port, started
        return
    raise RuntimeError("no port free on every loopback address")


def test_endpoints_appear_and_vanish_under_calls(
    dnsmasq: DnsServer, dns_name: str, backend_factory: Callable[..., Backend]
) -> None:
    """A records change under a steady stream of GETs: every call succeeds."""
    hosts = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
    with same_port_backends(backend_factory, hosts) as (port, backends):
        dnsmasq.set_hosts(dns_name, hosts[:2])
        # Round robin: every endpoint in the set gets calls, which the test checks.
        with mesh_client(dns(dnsmasq, dns_name, port=port), RoundRobin()) as client:
            eventually(lambda: discovery_state(client)["ready"], "the first DNS answer")
            with CallLoop(client, "http://users/") as calls:
                for current in (hosts[1:3], hosts[2:4], hosts[3:4], hosts[:2]):
                    dnsmasq.set_hosts(dns_name, current)
                    wanted = {f"{host}:{port}" for host in current}
                    eventually(lambda w=wanted: client_addresses(client) == w, f"set {current}")
                    for host in current:
                        name, before = backends[host].name, calls.hits(backends[host].name)
                        eventually(
                            lambda n=name, b=before: calls.hits(n) > b, f"calls reaching {host}"
                        )
        assert calls.failures == []
        assert calls.ok > 0


def test_dns_server_down_keeps_the_set_and_calls_succeed(
    dnsmasq: DnsServer, dns_name: str, backend_factory: Callable[..., Backend]
) -> None:
    hosts = ["127.0.0.2", "127.0.0.3"]
    with same_port_backends(backend_factory, hosts) as (port, _):
        dnsmasq.set_hosts(dns_name, hosts)
        with mesh_client(dns(dnsmasq, dns_name, port=port)) as client:
            eventually(lambda: discovery_state(client)["ready"], "the first DNS answer")
            wanted = {f"{host}:{port}" for host in hosts}
            with CallLoop(client, "http://users/") as calls:
                dnsmasq.kill()
                eventually(lambda: discovery_state(client)["errors"] >= 2, "lookups failing")
                during = calls.calls()
                eventually(lambda: calls.calls() > during + 50, "calls while DNS is down")
                assert client_addresses(client) == wanted
                dnsmasq.start()
                dnsmasq.set_hosts(dns_name, hosts[:1])
                eventually(
                    lambda: client_addresses(client) == {f"{hosts[0]}:{port}"},
                    "updates again after the restart",
                )
            assert calls.failures == []


@pytest.mark.usefixtures("dnspython")
@pytest.mark.parametrize("kind", ["a", "srv"])
def test_start_returns_before_a_slow_server_answers(kind: str, record: Record) -> None:
    """A nameserver that never answers (a bound, silent UDP port) does not block start."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        options: dict[str, Any] = {
            "nameservers": ["127.0.0.1"],
            "nameserver_port": silent.getsockname()[1],
            "timeout": 0.3,
            "backoff": 0.05,
            "max_backoff": 0.1,
        }
        discovery = (
            DnsDiscovery("users.svc.test", port=8001, **options)
            if kind == "a"
            else DnsDiscovery.srv("_http._tcp.users.svc.test", **options)
        )
        recorder = record(discovery)
        assert recorder.counts() == (0, 0, 0)  # start() returned before any answer
        eventually(lambda: len(recorder.errors) >= 1, "the timeout reported")
        assert type(recorder.errors[0]).__name__ in {"LifetimeTimeout", "Timeout"}
        assert recorder.sets == []
