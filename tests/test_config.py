"""Bad configuration fails at construction with a message naming the field and the value."""

from __future__ import annotations

import httpx
import pytest

import meshclient


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
            lambda: meshclient.Client(transport=httpx.HTTPTransport()),
            TypeError,
            "would bypass the mesh",
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


def test_client_connection_settings_reach_the_endpoint_pools() -> None:
    limits = httpx.Limits(max_connections=12, max_keepalive_connections=3, keepalive_expiry=7)
    with meshclient.Client(
        services={"users": ["127.0.0.1:9"]}, limits=limits, http2=True, verify=False
    ) as client:
        pool = client._mesh_transport._mesh.routes["users"].picker.endpoints[0].pool
        pool.acquire()
        shard = pool.shards[0]
        assert pool.max_shards == 2  # 12 connections / 8 streams per HTTP/2 shard
        assert shard._keepalive_expiry == 7
        assert shard._http2 is True
        assert shard._ssl_context.verify_mode.name == "CERT_NONE"


def test_http1_endpoint_gets_one_connection_per_shard_up_to_max_connections() -> None:
    limits = httpx.Limits(max_connections=3)
    with meshclient.Client(services={"users": ["127.0.0.1:9"]}, limits=limits) as client:
        pool = client._mesh_transport._mesh.routes["users"].picker.endpoints[0].pool
        assert [pool.acquire() for _ in range(5)] == [0, 1, 2, 0, 1]
        assert all(shard._max_connections == 1 for shard in pool.shards)
        for index in (1, 0, 2):
            pool.release(index)
        assert pool.acquire() == 2  # the most recently freed shard first: warm connections


def test_explicit_proxy_is_used_by_endpoint_pools() -> None:
    with meshclient.Client(
        services={"users": ["127.0.0.1:9"]}, proxy="http://127.0.0.1:3128"
    ) as client:
        pool = client._mesh_transport._mesh.routes["users"].picker.endpoints[0].pool
        pool.acquire()
        assert type(pool.shards[0]).__name__ == "HTTPProxy"


def test_environment_proxy_respects_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.2")
    with meshclient.Client(services={"a": ["127.0.0.1:9"], "b": ["127.0.0.2:9"]}) as client:
        routes = client._mesh_transport._mesh.routes
        proxied, direct = routes["a"].picker.endpoints[0].pool, routes["b"].picker.endpoints[0].pool
        proxied.acquire()
        direct.acquire()
        assert type(proxied.shards[0]).__name__ == "HTTPProxy"
        assert type(direct.shards[0]).__name__ == "ConnectionPool"
