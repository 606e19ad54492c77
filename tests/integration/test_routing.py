"""Logical URLs, endpoint choice and pass-through hosts against real servers on 127.0.0.1."""

from __future__ import annotations

import threading

import httpx

import meshclient

from helpers import join


def test_logical_url_and_host_header_stay_logical(mesh, backends) -> None:
    a, b, c = backends
    client = mesh(services={"users": [a.address, b.address, c.address]})
    response = client.get("http://users/v1/users/42?x=1")
    assert response.status_code == 200
    assert str(response.url) == "http://users/v1/users/42?x=1"
    assert str(response.request.url) == "http://users/v1/users/42?x=1"
    served = [r for backend in backends for r in backend.requests]
    assert len(served) == 1
    assert served[0].headers["host"] == "users"
    assert (served[0].path, served[0].query) == ("/v1/users/42", "x=1")


def test_caller_request_is_not_mutated(mesh, backends) -> None:
    a, _, _ = backends
    a.behave(status=503)
    client = mesh(services={"users": [backend.address for backend in backends]})
    request = client.client.build_request("GET", "http://users/ping", headers={"x-a": "1"})
    before = (str(request.url), list(request.headers.raw), dict(request.extensions))
    client.send(request)
    assert (str(request.url), list(request.headers.raw), dict(request.extensions)) == before


def test_service_names_match_case_insensitively(mesh, backend_factory) -> None:
    a = backend_factory("a")
    client = mesh(services={"Users": [a.address]})
    assert client.get("http://USERS/").headers["x-backend"] == "a"


def test_unknown_host_passes_through_under_client_policy(mesh, backend_factory):
    a = backend_factory("a")
    a.behave(status=503)
    client = mesh(policy=meshclient.Policy(retry=meshclient.Retry(attempts=2)))
    response = client.get(f"http://127.0.0.1:{a.port}/direct")
    assert response.status_code == 503
    assert a.count() == 2
    assert a.address in client.snapshot()["passthrough"]


def test_traffic_spreads_over_all_endpoints(mesh, backends) -> None:
    client = mesh(services={"users": [b.address for b in backends]})
    for _ in range(60):
        assert client.get("http://users/").status_code == 200
    assert all(backend.count() > 0 for backend in backends)
    assert sum(backend.count() for backend in backends) == 60


def test_weights_from_discovery_are_honoured(mesh, backend_factory) -> None:
    a, b = backend_factory("a"), backend_factory("b")
    service = meshclient.Service(
        meshclient.StaticDiscovery(
            [
                meshclient.Endpoint("127.0.0.1", a.port, weight=3.0),
                meshclient.Endpoint("127.0.0.1", b.port),
            ]
        ),
        balancer=meshclient.RoundRobin(),
    )
    client = mesh(services={"users": service})
    for _ in range(40):
        client.get("http://users/")
    assert (a.count(), b.count()) == (30, 10)


def test_accounting_is_zero_after_concurrent_sync_calls(backends) -> None:
    """Outstanding counts stay exact when one sync client is shared by many threads."""
    with meshclient.Client(services={"users": [b.address for b in backends]}) as client:
        errors: list[BaseException] = []

        def work() -> None:
            try:
                for _ in range(25):
                    client.get("http://users/").raise_for_status()
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, daemon=True) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            join(thread, "a thread making 25 calls", limit=30)
        assert errors == []
        assert sum(backend.count() for backend in backends) == 200
        endpoints = client.snapshot()["services"]["users"]["endpoints"]
        assert [e["outstanding"] for e in endpoints] == [0, 0, 0]


def test_streamed_response_releases_on_close(mesh, backend_factory) -> None:
    a = backend_factory("a")
    with meshclient.Client(services={"users": [a.address]}) as client:
        with client.stream("GET", "http://users/") as response:
            assert client.snapshot()["services"]["users"]["endpoints"][0]["outstanding"] == 1
            response.read()
        assert client.snapshot()["services"]["users"]["endpoints"][0]["outstanding"] == 0


def test_httpx_request_error_catches_mesh_errors() -> None:
    assert issubclass(meshclient.MeshError, httpx.RequestError)
    assert issubclass(meshclient.DeadlineExceeded, httpx.TimeoutException)
