"""What a client starts it stops: shared discovery, listeners, pass-through hosts, connections."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

import meshclient
from meshclient import _mesh
from meshclient.hooks import BreakerTransition, Event

from helpers import eventually


class Registry(meshclient.Discovery):
    """A discovery a test drives by hand, counting how often it is started and closed."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = list(addresses)
        self.starts = 0
        self.closes = 0
        self.updates: Any = None

    def start(self, updates: Any) -> None:
        self.starts += 1
        self.updates = updates
        updates([meshclient.Endpoint.parse(a) for a in self.addresses])

    def close(self) -> None:
        self.closes += 1
        self.updates = None

    def publish(self, *addresses: str) -> None:
        self.updates([meshclient.Endpoint.parse(a) for a in addresses])


def addresses(client: meshclient.Client) -> list[str]:
    endpoints = client.snapshot()["services"]["users"]["endpoints"]
    return sorted(endpoint["address"] for endpoint in endpoints)


def test_a_shared_service_starts_its_discovery_once_and_stops_with_the_last_client() -> None:
    registry = Registry("127.0.0.1:8001")
    service = meshclient.Service(registry)
    first = meshclient.Client(services={"users": service})
    second = meshclient.Client(services={"users": service})
    assert registry.starts == 1
    registry.publish("127.0.0.1:8001", "127.0.0.1:8002")
    assert addresses(first) == addresses(second) == ["127.0.0.1:8001", "127.0.0.1:8002"]
    first.close()
    assert registry.closes == 0
    registry.publish("127.0.0.1:8003")
    assert addresses(second) == ["127.0.0.1:8003"]
    second.close()
    assert registry.closes == 1
    with meshclient.Client(services={"users": service}) as third:  # starts again
        assert registry.starts == 2
        assert addresses(third) == ["127.0.0.1:8001"]


def test_a_client_joining_late_gets_the_newest_set() -> None:
    registry = Registry("127.0.0.1:8001")
    service = meshclient.Service(registry)
    with meshclient.Client(services={"users": service}):
        registry.publish("127.0.0.1:8002")
        with meshclient.Client(services={"users": service}) as late:
            assert addresses(late) == ["127.0.0.1:8002"]


def test_a_closed_client_hears_no_more_of_a_shared_breaker(backend_factory) -> None:
    backend = backend_factory("failing")
    backend.behave(status=500)
    breaker = meshclient.CircuitBreaker(window_size=2, minimum_calls=2)
    service = meshclient.Service([backend.address], breaker=breaker)
    heard: dict[str, list[Event]] = {"closed": [], "open": []}

    def client(name: str) -> meshclient.Client:
        return meshclient.Client(
            services={"users": service},
            policy=meshclient.Policy(retry=None),
            telemetry=meshclient.Telemetry(hooks=[heard[name].append]),
        )

    client("closed").close()
    with client("open") as still_open:
        for _ in range(2):
            still_open.get("http://users/")
    assert breaker.state == "open"
    assert [type(e) for e in heard["open"] if isinstance(e, BreakerTransition)] == [
        BreakerTransition
    ]
    assert not [e for e in heard["closed"] if isinstance(e, BreakerTransition)]


def test_pass_through_hosts_are_bounded_and_evicted_ones_close_their_connections(
    monkeypatch: pytest.MonkeyPatch, backend_factory
) -> None:
    monkeypatch.setattr(_mesh, "PASSTHROUGH_ROUTES", 2)
    backends = [backend_factory(f"b{i}") for i in range(3)]
    with meshclient.Client() as client:
        for backend in backends:
            assert client.get(backend.url).status_code == 200
        assert len(client.snapshot()["passthrough"]) == 2
        eventually(lambda: backends[0].open_connections == 0, "the evicted host's connection")
        assert [b.open_connections for b in backends[1:]] == [1, 1]
        assert client.get(backends[0].url).status_code == 200  # and it comes back when called


def test_a_service_closed_mid_call_lets_the_call_finish(backend_factory) -> None:
    backend = backend_factory("big")
    backend.behave(body=b"x" * 1_000_000)  # far more than one read: the body stays unread
    registry = Registry(backend.address)
    with (
        meshclient.Client(services={"users": meshclient.Service(registry)}) as client,
        client.stream("GET", "http://users/") as response,
    ):
        registry.publish("127.0.0.1:9")  # the endpoint in use leaves the service
        chunks = response.iter_raw()  # kept: a dropped iterator would close the response
        first = next(chunks)
        assert backend.open_connections == 1  # its connection lives until the response closes
        assert len(first + b"".join(chunks)) == 1_000_000  # and the call reads to the end
    eventually(lambda: backend.open_connections == 0, "the removed endpoint's connection")


def test_an_async_client_closes_evicted_connections_on_its_event_loop(
    monkeypatch: pytest.MonkeyPatch, backend_factory
) -> None:
    monkeypatch.setattr(_mesh, "PASSTHROUGH_ROUTES", 1)
    first, second = backend_factory("a"), backend_factory("b")

    async def main() -> None:
        async with meshclient.AsyncClient() as client:
            assert (await client.get(first.url)).status_code == 200
            assert (await client.get(second.url)).status_code == 200
            for _ in range(200):  # bounded: the close runs as a task on this loop
                if first.open_connections == 0:
                    break
                await asyncio.sleep(0.01)
            assert first.open_connections == 0

    asyncio.run(main())
    eventually(lambda: second.open_connections == 0, "closed with the client")


def test_a_removed_endpoint_gets_no_new_requests(backend_factory) -> None:
    old, new = backend_factory("old"), backend_factory("new")
    registry = Registry(old.address)
    with meshclient.Client(services={"users": meshclient.Service(registry)}) as client:
        client.get("http://users/")
        registry.publish(new.address)
        for _ in range(5):
            client.get("http://users/")
    assert (old.count(), new.count()) == (1, 5)


def test_the_mesh_transport_in_a_plain_httpx_client(backend_factory) -> None:
    backend = backend_factory("b")
    transport = meshclient.MeshTransport({"users": [backend.address]})
    with httpx.Client(mounts={"all://users": transport}) as client:
        assert client.get("http://users/").status_code == 200
    eventually(lambda: backend.open_connections == 0, "closed with the httpx client")
