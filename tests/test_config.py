"""Bad configuration fails at construction with a message naming the field and the value."""

from __future__ import annotations

import ssl
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import trustme

import meshclient
from meshclient.testing import Backend

from helpers import eventually


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: meshclient.Timeout(total=0), ValueError, "Timeout.total must be a number > 0"),
        (lambda: meshclient.Timeout(attempt=-1), ValueError, "Timeout.attempt must be .* -1"),
        (lambda: meshclient.Timeout(total=float("nan")), ValueError, "Timeout.total .* nan"),
        (lambda: meshclient.Policy(timeout="1s"), TypeError, "Policy.timeout .* '1s'"),
        (lambda: meshclient.Policy(retry=3), TypeError, "Policy.retry must be a Retry .* 3"),
        (lambda: meshclient.Policy(idempotent="yes"), TypeError, "Policy.idempotent .* 'yes'"),
        (lambda: meshclient.Endpoint("127.0.0.1", 0), ValueError, "Endpoint.port .* 0"),
        (lambda: meshclient.Endpoint("bad host", 80), ValueError, "Endpoint.host .* 'bad host'"),
        (lambda: meshclient.Endpoint("h", 80, weight=0), ValueError, "Endpoint.weight .* 0"),
        (lambda: meshclient.StaticDiscovery([]), ValueError, "at least one endpoint"),
        (lambda: meshclient.StaticDiscovery(["nohost"]), ValueError, "'host:port', got 'nohost'"),
        (lambda: meshclient.StaticDiscovery("h:1"), TypeError, "list of 'host:port'"),
        (
            lambda: meshclient.StaticDiscovery(["h:1", "h:1"]),
            ValueError,
            "'h:1' is listed twice",
        ),
        (
            lambda: meshclient.Service(["h:1"], balancer="p2c"),
            TypeError,
            "Service.balancer must be Balancer, got 'p2c'",
        ),
        (
            lambda: meshclient.Service(["h:1"], policy=1.0),
            TypeError,
            "Service.policy must be Policy, got 1.0",
        ),
        (
            lambda: meshclient.Client(services={"users": "127.0.0.1:1"}),
            TypeError,
            r"services\['users'\] must be a Service",
        ),
        (
            lambda: meshclient.Client(services={"users": ["127.0.0.1:99999"]}),
            ValueError,
            r"services\['users'\]: Endpoint.port .* 99999",
        ),
        (
            lambda: meshclient.Client(services=["users"]),
            TypeError,
            "services must be a mapping",
        ),
        (
            lambda: meshclient.Client(policy=meshclient.Retry()),
            TypeError,
            "Client.policy must be Policy",
        ),
        (
            lambda: meshclient.Client(transport=httpx.AsyncHTTPTransport()),
            TypeError,
            r"Client.transport must be an httpx.BaseTransport or None, got <httpx.AsyncHTTP",
        ),
        (
            lambda: meshclient.Client(stack=list(meshclient.DEFAULT_STACK)),
            TypeError,
            "Client.stack must be Stack",
        ),
    ],
)
def test_bad_configuration_names_field_and_value(build, error, message) -> None:
    with pytest.raises(error, match=message):
        build()


def test_number_timeout_means_total() -> None:
    assert meshclient.Policy(timeout=0.5).timeout == meshclient.Timeout(total=0.5)


def test_policy_layers_field_by_field() -> None:
    client = meshclient.Policy(timeout=2.0, retry=meshclient.Retry(attempts=5))
    call = meshclient.Policy(idempotent=True)
    merged = call.over(client)
    assert merged == meshclient.Policy(
        timeout=meshclient.Timeout(total=2.0), retry=meshclient.Retry(attempts=5), idempotent=True
    )


def test_none_turns_a_feature_off_rather_than_inheriting() -> None:
    merged = meshclient.Policy(retry=None).over(meshclient.Policy(retry=meshclient.Retry()))
    assert merged.retry is None


def test_max_connections_bounds_the_connections_to_one_endpoint(backend_factory) -> None:
    backend = backend_factory("slow")
    backend.behave(delay=0.2)
    limits = httpx.Limits(max_connections=3)
    with (
        meshclient.Client(services={"users": [backend.address]}, limits=limits) as client,
        ThreadPoolExecutor(8) as pool,
    ):
        statuses = list(pool.map(lambda _: client.get("http://users/").status_code, range(8)))
    assert statuses == [200] * 8
    assert backend.connections_opened == 3


def test_idle_connections_beyond_the_keepalive_limit_are_closed(backend_factory) -> None:
    """``max_keepalive_connections`` counts per endpoint: 8 calls at once leave 2 open."""
    backend = backend_factory("slow")
    backend.behave(delay=0.2)
    limits = httpx.Limits(max_connections=20, max_keepalive_connections=2)
    with (
        meshclient.Client(services={"users": [backend.address]}, limits=limits) as client,
        ThreadPoolExecutor(8) as pool,
    ):
        list(pool.map(lambda _: client.get("http://users/"), range(8)))
        assert backend.connections_opened == 8
        eventually(lambda: backend.open_connections == 2, "6 idle connections closed")


def test_keepalive_expiry_reaches_the_endpoint_pools(backend_factory) -> None:
    # Long enough that the first two calls reuse the connection on a loaded machine too
    # (0.05 s left only 50 ms between them).
    backend = backend_factory("b")
    limits = httpx.Limits(keepalive_expiry=0.5)
    with meshclient.Client(services={"users": [backend.address]}, limits=limits) as client:
        client.get("http://users/")
        client.get("http://users/")
        assert backend.connections_opened == 1
        time.sleep(0.8)  # past the expiry: the idle connection is not reused
        client.get("http://users/")
        assert backend.connections_opened == 2


def test_verify_false_accepts_an_untrusted_certificate() -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("users").configure_cert(context)  # a CA the client never trusts
    with Backend("tls", ssl_context=context) as backend:
        with (
            meshclient.Client(services={"users": [backend.address]}) as strict,
            pytest.raises(httpx.ConnectError, match="certificate"),
        ):
            strict.get("https://users/")
        with meshclient.Client(services={"users": [backend.address]}, verify=False) as lax:
            assert lax.get("https://users/").status_code == 200


def test_explicit_proxy_carries_the_requests(backend_factory) -> None:
    proxy = backend_factory("proxy")
    with meshclient.Client(services={"users": ["127.0.0.1:9"]}, proxy=proxy.url) as client:
        assert client.get("http://users/x").status_code == 200
    # An HTTP proxy gets the absolute form of the endpoint's URL; Host stays logical.
    (request,) = proxy.requests
    assert request.path == "http://127.0.0.1:9/x"
    assert request.headers["host"] == "users"


def test_environment_proxy_respects_no_proxy(monkeypatch, backend_factory) -> None:
    proxy = backend_factory("proxy")
    direct = backend_factory("direct", host="127.0.0.2")
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.2")
    with meshclient.Client(services={"a": ["127.0.0.1:9"], "b": [direct.address]}) as client:
        assert client.get("http://a/").status_code == 200
        assert client.get("http://b/").status_code == 200
    assert [r.path for r in proxy.requests] == ["http://127.0.0.1:9/"]
    assert direct.count() == 1
