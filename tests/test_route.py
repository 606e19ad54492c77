"""A route is one service's live state in one client: discovery updates keep what was learned
about endpoints that stay, retire what goes, report what was rejected; pass-through hosts get
routes of their own, bounded, without the deadline header. No sockets: a MockTransport bottom,
a discovery the test drives by hand, and virtual time."""

from __future__ import annotations

import logging
import math
import random
from collections import Counter
from typing import Any

import httpx
import pytest

import meshclient
from meshclient._mesh import PASSTHROUGH_ROUTES, Mesh
from meshclient.discovery import DiscoveryUpdates
from meshclient.hooks import DiscoveryEntryRejected, DiscoveryFailed, DiscoveryUpdated, Event
from meshclient.stack import CallModule
from meshclient.testing import FakeClock

A, B, C = "127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003"
NO_RETRY = meshclient.Policy(retry=meshclient.Retry(attempts=1))
#: What the route itself puts in every endpoint's entry of ``snapshot()``.
ENDPOINT_KEYS = ("address", "weight", "outstanding", "latency_estimate", "latency_samples")


class Manual(meshclient.Discovery):
    """A registry the test speaks for: ``publish``, ``fail`` and ``reject`` by hand."""

    updates: DiscoveryUpdates

    def start(self, updates: DiscoveryUpdates) -> None:
        self.updates = updates

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return "manual"

    def publish(self, *endpoints: meshclient.Endpoint | str) -> None:
        parse = meshclient.Endpoint.parse
        self.updates([e if isinstance(e, meshclient.Endpoint) else parse(e) for e in endpoints])


class Bottom:
    """The MockTransport handler: each attempt takes ``rtt`` virtual seconds; counts hosts."""

    def __init__(self, clock: FakeClock, rtt: float = 0.05, status: int = 200) -> None:
        self.clock = clock
        self.rtt = rtt
        self.status = status
        self.seen: Counter[str] = Counter()
        self.headers: list[httpx.Headers] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.clock.advance(self.rtt)
        self.seen[request.url.netloc.decode()] += 1
        self.headers.append(request.headers)
        return httpx.Response(self.status)


def transport(
    services: dict[str, Any],
    bottom: Bottom,
    *,
    events: list[Event] | None = None,
    **kwargs: Any,
) -> meshclient.MeshTransport:
    return meshclient.MeshTransport(
        services,
        transport=httpx.MockTransport(bottom),
        clock=bottom.clock,
        rng=random.Random(7),
        telemetry=meshclient.Telemetry(hooks=[] if events is None else [events.append]),
        **kwargs,
    )


def route_entries(snapshot: dict[str, Any]) -> list[dict[str, Any]]:
    return [{key: entry[key] for key in ENDPOINT_KEYS} for entry in snapshot["endpoints"]]


# -- discovery updates ---------------------------------------------------------------------


def test_an_update_keeps_what_was_learned_about_endpoints_that_stay() -> None:
    """Latency samples survive an update, a new weight is taken, a new endpoint starts from the
    balancer's default estimate, and a removed endpoint gets no request after the update."""
    clock = FakeClock(100.0)
    bottom = Bottom(clock)
    registry = Manual()
    balancer = meshclient.RoundRobin()  # every endpoint in turn, whatever its latency
    service = meshclient.Service(registry, balancer=balancer, outlier=None)
    events: list[Event] = []
    mesh = transport({"users": service}, bottom, events=events, policy=NO_RETRY)
    registry.publish(A, B)
    with httpx.Client(transport=mesh) as http:
        for _ in range(20):
            http.get("http://users/")
        assert set(bottom.seen) == {A, B}
        learned = {e["address"]: e for e in route_entries(mesh.snapshot()["services"]["users"])}
        assert learned[A]["latency_samples"] > 0
        registry.publish(meshclient.Endpoint("127.0.0.1", 8001, weight=2.0), C)
        after = route_entries(mesh.snapshot()["services"]["users"])
        assert after == [
            {**learned[A], "weight": 2.0},  # same samples, same estimate: the clock stood still
            {
                "address": C,
                "weight": 1.0,
                "outstanding": 0,
                "latency_estimate": pytest.approx(balancer.default_rtt),
                "latency_samples": 0,
            },
        ]
        bottom.seen.clear()
        for _ in range(20):
            http.get("http://users/")
    assert B not in bottom.seen
    assert set(bottom.seen) == {A, C}
    assert [e for e in events if isinstance(e, DiscoveryUpdated)] == [
        DiscoveryUpdated(service="users", source="manual", endpoints=2),
        DiscoveryUpdated(service="users", source="manual", endpoints=2),
    ]


def test_a_new_endpoint_estimate_starts_when_it_joins_and_decays_from_there() -> None:
    """The starting estimate is stamped with the time the endpoint joined: read later, it has
    decayed by exactly the time since (``rtt * exp(-idle / decay)``)."""
    clock = FakeClock(100.0)
    registry = Manual()
    balancer = meshclient.PeakEwma(default_rtt=0.2, decay=10.0)
    mesh = transport({"users": meshclient.Service(registry, balancer=balancer)}, Bottom(clock))
    registry.publish(A)
    clock.advance(10.0)
    [entry] = route_entries(mesh.snapshot()["services"]["users"])
    assert entry["latency_estimate"] == pytest.approx(0.2 * math.exp(-10.0 / 10.0))
    mesh.close()


def test_zones_come_from_each_update_even_for_endpoints_that_stay() -> None:
    clock = FakeClock(100.0)
    bottom = Bottom(clock)
    registry = Manual()
    service = meshclient.Service(registry, zone="a", outlier=None)
    mesh = transport({"users": service}, bottom, policy=NO_RETRY)
    registry.publish(
        meshclient.Endpoint("127.0.0.1", 8001, zone="a"),
        meshclient.Endpoint("127.0.0.1", 8002, zone="b"),
    )
    with httpx.Client(transport=mesh) as http:
        for _ in range(10):
            http.get("http://users/")
        assert set(bottom.seen) == {A}
        registry.publish(  # the same two endpoints, moved
            meshclient.Endpoint("127.0.0.1", 8001, zone="b"),
            meshclient.Endpoint("127.0.0.1", 8002, zone="a"),
        )
        bottom.seen.clear()
        for _ in range(10):
            http.get("http://users/")
    assert set(bottom.seen) == {B}


def test_discovery_trouble_is_reported_naming_service_source_entry_and_reason() -> None:
    """A failed read keeps the set and says how many endpoints stay; a rejected entry is left
    out and counted; both reach hooks and the snapshot's discovery entry."""
    clock = FakeClock(100.0)
    registry = Manual()
    events: list[Event] = []
    mesh = transport({"users": meshclient.Service(registry)}, Bottom(clock), events=events)
    registry.publish(A, B, C)
    registry.updates.invalid({"host": 5}, "host is not a string")
    registry.updates.error(ConnectionRefusedError("registry down"))
    assert events == [
        DiscoveryUpdated(service="users", source="manual", endpoints=3),
        DiscoveryEntryRejected(
            service="users", source="manual", entry="{'host': 5}", reason="host is not a string"
        ),
        DiscoveryFailed(
            service="users",
            source="manual",
            error="ConnectionRefusedError: registry down",
            endpoints=3,
        ),
    ]
    discovery = mesh.snapshot()["services"]["users"]["discovery"]
    assert discovery["source"] == "manual"
    assert (discovery["endpoints"], discovery["errors"], discovery["invalid_entries"]) == (3, 1, 1)
    assert [e["address"] for e in mesh.snapshot()["services"]["users"]["endpoints"]] == [A, B, C]
    mesh.close()


# -- policy and pass-through -----------------------------------------------------------------


def test_the_effective_policy_is_service_over_client_over_defaults() -> None:
    """users: its own retry (2 attempts) and the client's timeout; orders: the client's
    timeout and the library's default retry (3 attempts)."""
    clock = FakeClock(100.0)
    bottom = Bottom(clock, rtt=0.0, status=503)
    own = meshclient.Policy(retry=meshclient.Retry(attempts=2, backoff=0.0, max_backoff=0.0))
    services = {
        "users": meshclient.Service([A], policy=own),
        "orders": meshclient.Service([B]),
    }
    mesh = transport(services, bottom, policy=meshclient.Policy(timeout=2.0))
    with httpx.Client(transport=mesh) as http:
        assert http.get("http://users/").status_code == 503
        assert http.get("http://orders/").status_code == 503
    assert bottom.seen == {A: 2, B: 3}
    first_attempts = [bottom.headers[0], bottom.headers[2]]
    assert [h["x-meshclient-timeout-ms"] for h in first_attempts] == ["2000", "2000"]


def test_only_mesh_services_get_the_deadline_header() -> None:
    """A pass-through host is not part of the mesh: it is not told the caller's deadline."""
    clock = FakeClock(100.0)
    bottom = Bottom(clock)
    policy = meshclient.Policy(timeout=2.0)
    with httpx.Client(transport=transport({"users": [A]}, bottom, policy=policy)) as http:
        http.get("http://users/")
        http.get("http://example.com:8080/")
    to_users, to_host = bottom.headers
    assert to_users["x-meshclient-timeout-ms"] == "2000"
    assert "x-meshclient-timeout-ms" not in to_host
    assert bottom.seen == {A: 1, "example.com:8080": 1}


class Pools:
    """A pool factory that records which endpoint pools are made and which retired."""

    def __init__(self) -> None:
        self.made: Counter[str] = Counter()
        self.retired: Counter[str] = Counter()

    def pools(self, host: str, port: int) -> tuple[Any, Any]:
        address = f"{host}:{port}"
        self.made[address] += 1
        pool = Pool(self, address)
        return pool, pool

    def open_shards(self) -> list[Any]:
        return []


class Pool:
    def __init__(self, factory: Pools, address: str) -> None:
        self.factory = factory
        self.address = address

    def retire(self) -> None:
        self.factory.retired[self.address] += 1


def pooled_mesh(services: dict[str, Any], pools: Pools) -> Mesh:
    return Mesh(
        services,
        policy=None,
        stack=None,
        telemetry=None,
        deadline_header=None,
        factory=pools,  # type: ignore[arg-type]
        transport=None,
        mounts=None,
        clock=FakeClock(100.0),
        rng=random.Random(7),
    )


def test_removed_endpoints_pools_retire_and_remaining_ones_keep_theirs() -> None:
    pools = Pools()
    registry = Manual()
    mesh = pooled_mesh({"users": meshclient.Service(registry)}, pools)
    registry.publish(A, B)
    registry.publish(A, C)
    assert pools.made == {A: 1, B: 1, C: 1}  # A's pools were kept, not made again
    assert pools.retired == {B: 1}  # one object for plain and TLS: retired once
    mesh.close()


def test_pass_through_routes_are_bounded_least_recently_used_first() -> None:
    """Past ``PASSTHROUGH_ROUTES`` hosts, the one unused longest is evicted and its pools
    retire; a host called again meanwhile stays; an evicted host gets a new route."""
    pools = Pools()
    mesh = pooled_mesh({}, pools)

    def call(host: str) -> None:
        mesh.call(httpx.Request("GET", f"http://{host}/"))

    hosts = [f"h{i}.example" for i in range(PASSTHROUGH_ROUTES)]
    for host in hosts:
        call(host)
    call(hosts[0])  # used again: now hosts[1] is the least recently used
    assert not pools.retired
    call("one-more.example")
    assert pools.retired == {"h1.example:80": 1}
    remembered = mesh.snapshot()["passthrough"]
    assert len(remembered) == PASSTHROUGH_ROUTES
    assert "h1.example:80" not in remembered
    assert {"h0.example:80", "one-more.example:80"} <= set(remembered)
    call(hosts[1])
    assert pools.made["h1.example:80"] == 2
    assert pools.retired == {"h1.example:80": 1, "h2.example:80": 1}
    mesh.close()


def test_a_module_whose_close_raises_is_logged_and_the_others_still_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    closed: list[str] = []

    class Closes(CallModule):
        def __init__(self, role: str, fail: bool) -> None:
            self.role = role
            self.fail = fail

        def close(self) -> None:
            closed.append(self.role)
            if self.fail:
                raise RuntimeError("bug in close")

    stack = meshclient.DEFAULT_STACK.insert_before("fallback", Closes("first", True))
    stack = stack.insert_after("first", Closes("second", False))
    mesh = transport({"users": [A]}, Bottom(FakeClock()), stack=stack)
    with caplog.at_level(logging.ERROR, logger="meshclient"):
        mesh.close()
    assert closed == ["first", "second"]
    [record] = [r for r in caplog.records if "closing module" in r.getMessage()]
    assert record.getMessage() == (
        "meshclient: closing module <Closes role='first'> raised; ignored"
    )
    assert record.exc_info is not None
    assert "bug in close" in str(record.exc_info[1])


# -- what a module is built with -------------------------------------------------------------


class Watching(CallModule):
    """Records the ``ServiceContext`` it is built with; subscribes to endpoint sets only on
    its first call, after discovery delivered (as a lazily set-up module would)."""

    role = "watching"

    def __init__(self, seen: dict[str, Any]) -> None:
        self.seen = seen

    def build(self, service: Any) -> CallModule:
        self.seen[service.name] = service
        return Subscriber(service, self.seen.setdefault("sets", []))


class Subscriber(CallModule):
    role = "watching"

    def __init__(self, service: Any, sets: list[tuple[str, list[str]]]) -> None:
        self.service = service
        self.sets = sets
        self.subscribed = False

    def on_call(self, call: Any) -> None:
        if not self.subscribed:
            self.subscribed = True
            self.service.on_endpoints(
                lambda endpoints: self.sets.append(
                    (self.service.name, [e.address for e in endpoints])
                )
            )


def test_a_module_sees_its_service_and_endpoint_sets_now_and_on_each_change() -> None:
    """``ServiceContext``: name, pass-through flag, the client's clock and rng, the deadline
    header (mesh services only); ``on_endpoints`` delivers the current set at once, then each
    new one; ``version`` changes with ``available``."""
    clock = FakeClock(100.0)
    registry = Manual()
    seen: dict[str, Any] = {}
    stack = meshclient.DEFAULT_STACK.insert_before("fallback", Watching(seen))
    rng = random.Random(3)
    mesh = meshclient.MeshTransport(
        {"users": meshclient.Service(registry)},
        transport=httpx.MockTransport(Bottom(clock)),
        stack=stack,
        clock=clock,
        rng=rng,
    )
    users = seen["users"]
    assert (users.name, users.passthrough, users.deadline_header) == (
        "users",
        False,
        b"x-meshclient-timeout-ms",
    )
    assert users.clock is clock
    assert users.rng is rng
    assert users.endpoints == users.available == ()
    registry.publish(A, B)
    first = users.version
    assert [e.address for e in users.endpoints] == [A, B]
    assert users.available == users.endpoints
    with httpx.Client(transport=mesh) as http:
        http.get("http://users/")
        assert seen["sets"] == [("users", [A, B])]
        registry.publish(B, C)
        assert users.version != first
        assert [e.address for e in users.available] == [B, C]
        http.get("http://example.com/")
        host = seen["example.com"]
        assert (host.name, host.passthrough, host.deadline_header) == ("example.com", True, None)
    assert seen["sets"] == [
        ("users", [A, B]),
        ("users", [B, C]),
        ("example.com", ["example.com:80"]),
    ]


def test_a_call_answered_locally_ends_only_the_modules_it_went_through() -> None:
    """A module answering without sending ends itself and the modules above it; the module
    just below never saw the call, so its end phase must not run (it would release what it
    never took)."""
    log: list[str] = []

    class Recording(CallModule):
        def __init__(self, role: str, answer: httpx.Response | None = None) -> None:
            self.role = role
            self.answer = answer

        def on_call(self, call: Any) -> httpx.Response | None:
            log.append(f"{self.role}.on_call")
            return self.answer

        def on_call_end(self, call: Any) -> None:
            log.append(f"{self.role}.on_call_end")

    stack = (
        meshclient.DEFAULT_STACK.insert_before("fallback", Recording("above"))
        .insert_after("above", Recording("cache", httpx.Response(200, text="cached")))
        .insert_after("cache", Recording("below"))
    )
    bottom = Bottom(FakeClock(100.0))
    with httpx.Client(transport=transport({"users": [A]}, bottom, stack=stack)) as http:
        assert http.get("http://users/").text == "cached"
    assert log == ["above.on_call", "cache.on_call", "cache.on_call_end", "above.on_call_end"]
    assert not bottom.seen
