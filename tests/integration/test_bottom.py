"""An open bottom: ``transport=`` and ``mounts=`` with httpx's meaning, beneath the mesh.

A host that is not a service reaches the given transport exactly as plain httpx would send
it; for a logical service the mesh still picks, retries and observes, and the transport gets
each physical attempt addressed to the chosen endpoint with ``Host`` = the logical name. So
``httpx.MockTransport``, ``ASGITransport`` and ``WSGITransport`` all work under the mesh.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

import httpx
import pytest

import meshclient

RETRY = meshclient.Policy(retry=meshclient.Retry(attempts=3, backoff=0.001, max_backoff=0.002))
ENDPOINTS = ["127.0.0.1:8001", "127.0.0.1:8002"]


class Recorder:
    """A MockTransport handler answering a script of statuses, recording what it was sent."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        status = self.statuses.pop(0) if self.statuses else 200
        return httpx.Response(status, json={"seen": str(request.url)})


def test_a_service_over_a_mock_transport_gets_one_request_per_attempt() -> None:
    handler = Recorder(503, 200)
    with meshclient.Client(
        services={"users": meshclient.Service(ENDPOINTS, balancer=meshclient.RoundRobin())},
        policy=RETRY,
        transport=httpx.MockTransport(handler),
    ) as client:
        response = client.get("http://users/v1/users/42?x=1")
    assert response.status_code == 200
    assert str(response.url) == "http://users/v1/users/42?x=1"  # the caller's URL stays logical
    first, second = handler.requests
    assert {first.url.netloc.decode(), second.url.netloc.decode()} == set(ENDPOINTS)
    for request in (first, second):
        assert request.url.raw_path == b"/v1/users/42?x=1"
        assert request.headers["host"] == "users"
        assert "x-meshclient-timeout-ms" not in request.headers  # no deadline was set


def test_a_host_that_is_not_a_service_reaches_the_transport_as_plain_httpx_sends_it() -> None:
    def send(client_class: Callable[..., httpx.Client]) -> httpx.Request:
        handler = Recorder()
        with client_class(
            transport=httpx.MockTransport(handler),
            base_url="http://testserver",
            headers={"x-team": "a"},
            cookies={"session": "s"},
        ) as client:
            client.post("/v1/items", params={"q": "1"}, json={"name": "ada"})
        (request,) = handler.requests
        return request

    plain, meshed = send(httpx.Client), send(meshclient.Client)
    assert (meshed.method, meshed.url, meshed.content) == (plain.method, plain.url, plain.content)
    assert meshed.headers.multi_items() == plain.headers.multi_items()


def test_mounts_pick_the_transport_by_the_logical_url() -> None:
    users, orders, others = Recorder(), Recorder(), Recorder()
    with meshclient.Client(
        services={"users": ENDPOINTS, "orders": ENDPOINTS},
        transport=httpx.MockTransport(others),
        mounts={
            "all://users": httpx.MockTransport(users),
            "http://orders": httpx.MockTransport(orders),
            "all://elsewhere.test": None,  # None: the client's default transport
        },
    ) as client:
        client.get("http://users/")
        client.get("http://orders/")
        client.get("http://elsewhere.test/")
        client.get("http://another.test/")
    assert [len(r.requests) for r in (users, orders, others)] == [1, 1, 2]
    assert users.requests[0].url.netloc.decode() in ENDPOINTS


def test_closing_the_client_closes_its_transports() -> None:
    closed: list[str] = []

    class Closing(httpx.MockTransport):
        def __init__(self, name: str) -> None:
            super().__init__(Recorder())
            self.name = name

        def close(self) -> None:
            closed.append(self.name)

    with meshclient.Client(transport=Closing("default"), mounts={"all://x": Closing("x")}):
        pass
    assert sorted(closed) == ["default", "x"]


def test_the_attempt_deadline_reaches_a_transport_as_httpx_timeouts() -> None:
    seen: list[dict[str, float | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(200)

    with meshclient.Client(
        services={"users": ENDPOINTS},
        transport=httpx.MockTransport(handler),
        policy=meshclient.Policy(timeout=meshclient.Timeout(attempt=0.5)),
        timeout=5.0,
    ) as client:
        client.get("http://users/")
    (timeouts,) = seen
    assert all(0 < value <= 0.5 for value in timeouts.values() if value is not None)


def test_a_wsgi_application_under_the_mesh_sees_the_logical_host() -> None:
    seen: list[tuple[str, str, str]] = []
    statuses = iter(["503 Service Unavailable", "200 OK"])

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        seen.append((environ["HTTP_HOST"], environ["SERVER_PORT"], environ["PATH_INFO"]))
        start_response(next(statuses), [("content-type", "text/plain")])
        return [b"hello from wsgi"]

    with meshclient.Client(
        services={"users": ENDPOINTS}, policy=RETRY, transport=httpx.WSGITransport(app=app)
    ) as client:
        response = client.get("http://users/hello")
    assert response.text == "hello from wsgi"
    assert [host for host, _, _ in seen] == ["users", "users"]
    assert sorted(port for _, port, _ in seen) == ["8001", "8002"]
    assert {path for _, _, path in seen} == {"/hello"}


def test_an_asgi_application_under_the_mesh_sees_the_logical_host() -> None:
    seen: list[tuple[bytes, tuple[str, int]]] = []
    statuses = iter([503, 200])

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = dict(scope["headers"])
        seen.append((headers[b"host"], tuple(scope["server"])))
        await send(
            {
                "type": "http.response.start",
                "status": next(statuses),
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": b"hello from asgi"})

    async def main() -> httpx.Response:
        async with meshclient.AsyncClient(
            services={"users": ENDPOINTS}, policy=RETRY, transport=httpx.ASGITransport(app=app)
        ) as client:
            return await client.get("http://users/hello")

    response = asyncio.run(main())
    assert response.text == "hello from asgi"
    assert [host for host, _ in seen] == [b"users", b"users"]
    assert sorted(server for _, server in seen) == [("127.0.0.1", 8001), ("127.0.0.1", 8002)]


def test_an_async_mock_transport_under_the_mesh() -> None:
    handler = Recorder(502, 200)

    async def main() -> httpx.Response:
        async with meshclient.AsyncClient(
            services={"users": ENDPOINTS}, policy=RETRY, transport=httpx.MockTransport(handler)
        ) as client:
            return await client.get("http://users/")

    assert asyncio.run(main()).status_code == 200
    assert len(handler.requests) == 2


@pytest.mark.parametrize("url", ["ftp://example.test/", "http:///x"])
def test_bad_urls_raise_the_error_plain_httpx_raises(url: str) -> None:
    with httpx.Client() as plain, pytest.raises(httpx.UnsupportedProtocol) as expected:
        plain.get(url)
    with meshclient.Client() as client, pytest.raises(type(expected.value)) as got:
        client.get(url)
    assert str(got.value) == str(expected.value)


def test_a_bad_proxy_raises_the_error_plain_httpx_raises() -> None:
    with pytest.raises(ValueError, match="Unknown scheme for proxy URL") as expected:
        httpx.Client(proxy="ftp://127.0.0.1:1")
    with pytest.raises(ValueError, match="Unknown scheme") as got:
        meshclient.Client(proxy="ftp://127.0.0.1:1")
    assert str(got.value) == str(expected.value)


def test_an_unreachable_proxy_fails_with_httpx_own_class(closed_port: int) -> None:
    proxy = f"http://127.0.0.1:{closed_port}"
    with httpx.Client(proxy=proxy) as plain, pytest.raises(httpx.HTTPError) as expected:
        plain.get("http://127.0.0.1:9/")
    with (
        meshclient.Client(proxy=proxy, policy=meshclient.Policy(retry=None)) as client,
        pytest.raises(httpx.HTTPError) as got,
    ):
        client.get("http://127.0.0.1:9/")
    assert type(got.value) is type(expected.value)
