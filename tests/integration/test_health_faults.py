"""Endpoint health and admission under real network faults, for the sync and the async client.

Three ``Backend``s, each behind a ``FaultProxy``; the client knows only the proxies. Faults are
switched at runtime (black hole, reset, pass-through) or come from the backends (500, 503).
Timings are configured small so the file is quick, but nothing asserts a duration: the tests
count requests and connections and read states from ``client.snapshot()``, waiting for a state
with a bounded polling loop where time has to pass (an ejection or an open breaker expiring).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest

import meshclient
import meshclient.hooks
from meshclient.testing import Backend, FakeClock, FaultProxy

from helpers import FAST_RETRY, eventually, join

#: The attempt timeout that turns a black hole into a failure.
ATTEMPT = meshclient.Timeout(attempt=0.2)
#: A per-call policy that lifts the client's total timeout.
NO_DEADLINE = meshclient.Policy(timeout=None)


class Instance:
    """One backend and the fault proxy the client talks to."""

    def __init__(self, backend: Backend, proxy: FaultProxy) -> None:
        self.backend = backend
        self.proxy = proxy

    @property
    def address(self) -> str:
        return self.proxy.address


@pytest.fixture
def instances(backend_factory: Callable[..., Backend]) -> Iterator[list[Instance]]:
    """Three healthy instances "a", "b", "c", each behind a pass-through ``FaultProxy``."""
    made = []
    try:
        for name in ("a", "b", "c"):
            backend = backend_factory(name)
            made.append(Instance(backend, FaultProxy(backend.address, name=name).start()))
        yield made
    finally:
        for instance in made:
            instance.proxy.stop()


def outlier(**kwargs: Any) -> meshclient.OutlierDetection:
    """Ejection after 3 failures in a row, no jitter and no latency rule (not under test)."""
    settings: dict[str, Any] = {
        "consecutive_failures": 3,
        "base_ejection": 30.0,
        "max_ejection": 30.0,
        "ejection_jitter": 0.0,
        "latency_factor": None,
    }
    settings.update(kwargs)
    return meshclient.OutlierDetection(**settings)


def users(instances: list[Instance], **kwargs: Any) -> meshclient.Service:
    """Round robin: a sick endpoint stays in turn unless health takes it out."""
    kwargs.setdefault("balancer", meshclient.RoundRobin())
    return meshclient.Service([i.address for i in instances], **kwargs)


def service_state(client: Any) -> dict[str, Any]:
    return client.snapshot()["services"]["users"]  # type: ignore[no-any-return]


def health_of(client: Any, address: str) -> dict[str, Any]:
    for endpoint in service_state(client)["endpoints"]:
        if endpoint["address"] == address:
            return endpoint["health"]  # type: ignore[no-any-return]
    raise AssertionError(f"{address} is not an endpoint of 'users'")


def states(client: Any) -> dict[str, str]:
    return {e["address"]: e["health"]["state"] for e in service_state(client)["endpoints"]}


def failing_call(client: Any, error: type[Exception] = httpx.TransportError) -> Exception:
    with pytest.raises(error) as info:
        client.get("http://users/")
    return info.value


class Events:
    """A hook that keeps every event (hooks run on the calling thread or task)."""

    def __init__(self) -> None:
        self.events: list[meshclient.hooks.Event] = []
        self._lock = threading.Lock()

    def __call__(self, event: meshclient.hooks.Event) -> None:
        with self._lock:
            self.events.append(event)

    def of(self, kind: type[Any]) -> list[Any]:
        with self._lock:
            return [e for e in self.events if isinstance(e, kind)]


# -- ejection -------------------------------------------------------------------------------------


def test_black_holed_instance_is_ejected_after_attempt_timeouts(mesh, instances) -> None:
    hole, *healthy = instances
    hole.proxy.behave("blackhole")  # accepts, reads, never answers
    client = mesh(
        services={"users": users(instances, outlier=outlier())},
        policy=meshclient.Policy(timeout=ATTEMPT, retry=FAST_RETRY),
    )
    for _ in range(9):  # round robin: every third call tries the hole first
        assert client.get("http://users/").status_code == 200
    health = health_of(client, hole.address)
    assert (health["state"], health["reason"]) == ("ejected", "consecutive_failures")
    assert hole.proxy.connections_accepted == 3  # one timed-out attempt each, then ejected
    served = sum(i.backend.count() for i in healthy)
    for _ in range(30):
        assert client.get("http://users/").status_code == 200
    assert hole.proxy.connections_accepted == 3  # avoided: not even a connection
    assert hole.backend.count() == 0
    assert sum(i.backend.count() for i in healthy) == served + 30
    assert client.outstanding() == 0


def test_instance_answering_500_is_ejected_then_gets_only_probes(mesh, instances) -> None:
    sick, *healthy = instances
    sick.backend.behave(status=500)
    # Ejections short enough that probes come during the test, long enough to see them apart.
    detection = outlier(base_ejection=0.05, max_ejection=0.05)
    retry = meshclient.Retry(
        attempts=3, backoff=0.001, max_backoff=0.002, statuses={500, 502, 503, 504}
    )
    client = mesh(
        services={"users": users(instances, outlier=detection)},
        policy=meshclient.Policy(retry=retry),
    )
    for _ in range(9):
        assert client.get("http://users/").status_code == 200  # the 500s are retried elsewhere
    health = health_of(client, sick.address)
    assert (health["state"], health["reason"]) == ("ejected", "consecutive_failures")
    assert service_state(client)["health"]["out_of_rotation"][0]["address"] == sick.address
    # 3 failures ejected it; anything since was a probe (one per repeated ejection), if the
    # ejection already expired during those calls.
    assert sick.backend.count() == 3 + health["ejections_in_a_row"] - 1

    before = sick.backend.count()
    repeat = health["ejections_in_a_row"]
    served = sum(i.backend.count() for i in healthy)
    calls = 0

    def probed_twice() -> bool:
        nonlocal calls
        assert client.get("http://users/").status_code == 200
        calls += 1
        return health_of(client, sick.address)["ejections_in_a_row"] >= repeat + 2

    eventually(probed_twice, "two failed probes")
    # Each failed probe ejects again: the count of ejections in a row counts the probes.
    probes = health_of(client, sick.address)["ejections_in_a_row"] - repeat
    requests = sick.backend.count() - before
    assert 1 <= requests <= probes  # the sick instance got probes and nothing else
    assert sum(i.backend.count() for i in healthy) == served + calls  # every call succeeded
    assert health_of(client, sick.address)["state"] in ("ejected", "probing")
    assert client.outstanding() == 0


def test_everything_down_never_ejects_past_the_cap(mesh, instances) -> None:
    for instance in instances:
        instance.proxy.behave("reset")  # accepted, then reset
    client = mesh(
        services={"users": users(instances, outlier=outlier())},
        policy=meshclient.Policy(retry=FAST_RETRY),
    )
    for _ in range(15):
        failing_call(client)
    health = service_state(client)["health"]
    assert health["max_ejected"] == 1  # max_ejected_share = 0.5 of 3 endpoints
    assert health["ejected"] == 1
    assert health["ejections_skipped"] >= 1  # the others would have been ejected too
    assert health["available"] == 2
    assert sorted(states(client).values()) == ["admitted", "admitted", "ejected"]
    # The two left in rotation still take every attempt; the ejected one none.
    ejected = next(i for i in instances if states(client)[i.address] == "ejected")
    accepted = {i.address: i.proxy.connections_accepted for i in instances}
    for _ in range(4):
        failing_call(client)
    assert ejected.proxy.connections_accepted == accepted[ejected.address]
    assert sum(i.proxy.connections_accepted for i in instances) > sum(accepted.values())


def test_everything_down_without_a_cap_is_panic_mode(mesh, instances) -> None:
    for instance in instances:
        instance.proxy.behave("reset")
    client = mesh(
        services={"users": users(instances, outlier=outlier(max_ejected_share=1.0))},
        policy=meshclient.Policy(retry=FAST_RETRY),
    )
    for _ in range(15):
        failing_call(client)
    health = service_state(client)["health"]
    assert health["ejected"] == 3
    assert health["panic"] is True
    assert health["available"] == 3  # panic: the balancer gets every endpoint back
    accepted = [i.proxy.connections_accepted for i in instances]
    for _ in range(3):
        error = failing_call(client)
        assert not isinstance(error, meshclient.NoEndpointsError)
    assert all(
        i.proxy.connections_accepted > before for i, before in zip(instances, accepted, strict=True)
    )


@pytest.mark.anyio
async def test_cancelled_probe_lets_the_next_call_probe_at_once(instances) -> None:
    """A probe whose caller goes away frees the probe slot (no wait for ``probe_timeout``)."""
    hole, *_ = instances
    hole.proxy.behave("blackhole")
    detection = outlier(base_ejection=0.05, max_ejection=0.05, probe_timeout=30.0)
    async with meshclient.AsyncClient(
        services={"users": users(instances, outlier=detection)},
        policy=meshclient.Policy(timeout=ATTEMPT, retry=FAST_RETRY),
    ) as client:
        for _ in range(9):
            assert (await client.get("http://users/")).status_code == 200
        assert health_of(client, hole.address)["state"] == "ejected"
        with anyio.fail_after(5):  # wait for the ejection to expire
            while time.monotonic() < health_of(client, hole.address)["until"]:
                await anyio.sleep(0.01)
        accepted = hole.proxy.connections_accepted
        repeat = health_of(client, hole.address)["ejections_in_a_row"]
        async with anyio.create_task_group() as tg:
            # No attempt timeout: the probe hangs in the black hole until cancelled.
            tg.start_soon(partial(client.get, "http://users/", policy=NO_DEADLINE))
            with anyio.fail_after(5):
                while not health_of(client, hole.address).get("probe_in_flight"):
                    await anyio.sleep(0.01)
            assert hole.proxy.connections_accepted == accepted + 1
            tg.cancel_scope.cancel()
        health = health_of(client, hole.address)
        assert (health["state"], health["probe_in_flight"]) == ("probing", False)
        assert sum(e["outstanding"] for e in service_state(client)["endpoints"]) == 0
        assert (await client.get("http://users/")).status_code == 200  # probes, then retries
        assert hole.proxy.connections_accepted == accepted + 2
        health = health_of(client, hole.address)
        assert (health["state"], health["ejections_in_a_row"]) == ("ejected", repeat + 1)


# -- breaker and recovery -------------------------------------------------------------------------


def test_everything_down_opens_the_breaker_then_recovery_closes_it(mesh, instances) -> None:
    events = Events()
    for instance in instances:
        instance.proxy.behave("reset")
    breaker_clock = FakeClock()  # the breaker opens for exactly as long as the test says
    breaker = meshclient.CircuitBreaker(
        window_size=10,
        minimum_calls=4,
        failure_rate=0.5,
        open_duration=10.0,
        half_open_calls=2,
        clock=breaker_clock,
    )
    client = mesh(
        services={
            "users": users(
                instances, outlier=outlier(base_ejection=0.05, max_ejection=0.05), breaker=breaker
            )
        },
        policy=meshclient.Policy(retry=FAST_RETRY),
        telemetry=meshclient.Telemetry(hooks=[events]),
    )
    for _ in range(4):
        error = failing_call(client)
        assert not isinstance(error, meshclient.CircuitOpenError)
    assert service_state(client)["breaker"]["state"] == "open"
    assert service_state(client)["health"]["ejected"] == 1  # the cap, as above

    accepted = sum(i.proxy.connections_accepted for i in instances)
    for _ in range(10):
        failing_call(client, meshclient.CircuitOpenError)
    assert sum(i.proxy.connections_accepted for i in instances) == accepted  # no network
    assert sum(i.backend.count() for i in instances) == 0

    for instance in instances:  # recovery
        instance.proxy.behave()
    breaker_clock.advance(10.0)
    assert service_state(client)["breaker"]["state"] == "half_open"
    for _ in range(2):  # the trial calls
        assert client.get("http://users/").status_code == 200
    assert service_state(client)["breaker"]["state"] == "closed"

    def readmitted() -> bool:
        assert client.get("http://users/").status_code == 200
        return set(states(client).values()) == {"admitted"}

    eventually(readmitted, "every endpoint readmitted by a probe")
    health = service_state(client)["health"]
    assert (health["ejected"], health["available"], health["panic"]) == (0, 3, False)
    transitions = [
        (e.from_state, e.to_state) for e in events.of(meshclient.hooks.BreakerTransition)
    ]
    assert transitions == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    readmissions = events.of(meshclient.hooks.EndpointReadmitted)
    ejections = events.of(meshclient.hooks.EndpointEjected)
    assert {e.endpoint for e in readmissions} == {e.endpoint for e in ejections}
    assert client.outstanding() == 0


def test_black_holed_instance_is_readmitted_once_it_answers(mesh, instances) -> None:
    hole, *_ = instances
    hole.proxy.behave("blackhole")
    client = mesh(
        services={
            "users": users(instances, outlier=outlier(base_ejection=0.05, max_ejection=0.05))
        },
        policy=meshclient.Policy(timeout=ATTEMPT, retry=FAST_RETRY),
    )
    for _ in range(9):
        assert client.get("http://users/").status_code == 200
    assert health_of(client, hole.address)["state"] == "ejected"
    hole.proxy.behave()

    def readmitted() -> bool:
        assert client.get("http://users/").status_code == 200
        return health_of(client, hole.address)["state"] == "admitted"

    eventually(readmitted, "the probe readmits the instance")
    assert hole.backend.count() >= 1  # the probe went through
    served = hole.backend.count()
    for _ in range(6):
        assert client.get("http://users/").status_code == 200
    assert hole.backend.count() == served + 2  # back in round robin


# -- bulkhead -------------------------------------------------------------------------------------


def test_full_bulkhead_rejects_naming_the_limit_and_releases_once(mesh, backend_factory) -> None:
    slow = backend_factory("slow")
    slow.behave(hang=True)  # the holder is in flight until its connection is dropped
    bulkhead = meshclient.Bulkhead(max_concurrent=1)
    client = mesh(
        services={"users": meshclient.Service([slow.address], bulkhead=bulkhead)},
        policy=meshclient.Policy(retry=None),
    )
    outcome: list[BaseException | int] = []

    def hold() -> None:
        try:
            outcome.append(client.get("http://users/").status_code)
        except BaseException as exc:
            outcome.append(exc)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    try:
        slow.wait_for_requests(1)
        for _ in range(2):  # a rejection gives back nothing it did not take
            error = failing_call(client, meshclient.BulkheadFullError)
            assert "max_concurrent=1" in str(error)
            assert "'users'" in str(error)
        figures = service_state(client)["bulkhead"]
        assert (figures["active"], figures["rejected"]) == (1, 2)
        assert client.outstanding() == 1
    finally:
        slow.drop_connections()
        join(holder, "the holder, once its connection was dropped")
    assert isinstance(outcome[0], httpx.TransportError)  # the holder failed: slot back anyway
    assert service_state(client)["bulkhead"]["active"] == 0
    assert client.outstanding() == 0
    assert slow.count() == 1  # rejected calls never reached the backend
    slow.behave()
    assert client.get("http://users/").status_code == 200  # the slot is free again
    assert service_state(client)["bulkhead"]["active"] == 0


def bulkhead_of_one(mesh: Any, backend: Backend) -> tuple[Any, meshclient.Bulkhead]:
    bulkhead = meshclient.Bulkhead(max_concurrent=1)
    client = mesh(services={"users": meshclient.Service([backend.address], bulkhead=bulkhead)})
    return client, bulkhead


def test_a_streamed_response_holds_its_bulkhead_slot_until_it_is_closed(
    mesh, backend_factory
) -> None:
    """``client.stream(...)``: the call is in progress while its body is unread."""
    backend = backend_factory("a")
    client, bulkhead = bulkhead_of_one(mesh, backend)
    with client.stream("GET", "http://users/") as streamed:
        assert streamed.status_code == 200
        assert bulkhead.snapshot()["active"] == 1, "slot released before the body was read"
        failing_call(client, meshclient.BulkheadFullError)
        assert backend.count() == 1
        assert b'"backend": "a"' in streamed.read()
    assert bulkhead.snapshot()["active"] == 0
    assert client.get("http://users/").status_code == 200
    assert bulkhead.snapshot() == {
        "max_concurrent": 1,
        "max_queued": 0,
        "active": 0,
        "queued": 0,
        "rejected": 1,
    }


def test_a_response_sent_with_stream_holds_its_bulkhead_slot_until_closed(
    mesh, backend_factory
) -> None:
    """``client.send(request, stream=True)``, closed without reading the body."""
    backend = backend_factory("a")
    client, bulkhead = bulkhead_of_one(mesh, backend)
    streamed = client.send_streamed(client.client.build_request("GET", "http://users/"))
    assert bulkhead.snapshot()["active"] == 1, "slot released before the body was read"
    failing_call(client, meshclient.BulkheadFullError)
    streamed.close()
    assert bulkhead.snapshot()["active"] == 0
    assert client.get("http://users/").status_code == 200
    assert backend.count() == 2
    assert client.outstanding() == 0


def test_queued_call_gives_up_at_its_deadline(mesh, backend_factory) -> None:
    """``queue_timeout=None`` queues until the call's own deadline, not past it."""
    slow = backend_factory("slow")
    slow.behave(hang=True)
    bulkhead = meshclient.Bulkhead(max_concurrent=1, max_queued=1, queue_timeout=None)
    client = mesh(
        services={"users": meshclient.Service([slow.address], bulkhead=bulkhead)},
        policy=meshclient.Policy(retry=None, timeout=meshclient.Timeout(total=0.2)),
    )
    outcomes: dict[str, BaseException | int] = {}

    def call(label: str, **kwargs: Any) -> None:
        try:
            outcomes[label] = client.get("http://users/", **kwargs).status_code
        except BaseException as exc:
            outcomes[label] = exc

    holder = threading.Thread(
        target=call, args=("holder",), kwargs={"policy": NO_DEADLINE}, daemon=True
    )
    waiter = threading.Thread(target=call, args=("waiter",), daemon=True)
    holder.start()
    try:
        slow.wait_for_requests(1)
        waiter.start()
        join(waiter, "the queued call, which should give up at its 0.2 s deadline")
        assert holder.is_alive()  # the slot was never freed: the deadline ended the wait
        assert isinstance(outcomes["waiter"], meshclient.BulkheadFullError)
        assert "deadline" in str(outcomes["waiter"])
        figures = service_state(client)["bulkhead"]
        assert (figures["active"], figures["queued"]) == (1, 0)
    finally:
        slow.drop_connections()
        join(holder, "the holder, once its connection was dropped")
        if waiter.ident is not None:
            join(waiter, "the queued call")
    assert service_state(client)["bulkhead"]["active"] == 0
    assert slow.count() == 1


@pytest.mark.anyio
async def test_cancelled_holder_releases_its_bulkhead_slot_exactly_once(backend_factory) -> None:
    hanging = backend_factory("hanging")
    hanging.behave(hang=True)
    bulkhead = meshclient.Bulkhead(max_concurrent=1, max_queued=1, queue_timeout=None)
    service = meshclient.Service([hanging.address], bulkhead=bulkhead)
    async with meshclient.AsyncClient(
        services={"users": service}, policy=meshclient.Policy(retry=None)
    ) as client:

        def occupancy() -> tuple[int, int]:
            figures = client.snapshot()["services"]["users"]["bulkhead"]
            return figures["active"], figures["queued"]

        async with anyio.create_task_group() as tg:
            tg.start_soon(client.get, "http://users/")  # the holder
            await anyio.to_thread.run_sync(hanging.wait_for_requests, 1)
            tg.start_soon(client.get, "http://users/")  # queued behind it
            with anyio.fail_after(5):
                while occupancy() != (1, 1):
                    await anyio.sleep(0.01)
            with pytest.raises(meshclient.BulkheadFullError, match="max_concurrent=1"):
                await client.get("http://users/")  # queue full as well
            tg.cancel_scope.cancel()  # cancels the holder and the queued call
        assert occupancy() == (0, 0)
        endpoint = client.snapshot()["services"]["users"]["endpoints"][0]
        assert endpoint["outstanding"] == 0
        assert hanging.count() == 1  # the queued call never got a slot
        hanging.behave()
        assert (await client.get("http://users/")).status_code == 200
        assert occupancy() == (0, 0)


# -- fallbacks ------------------------------------------------------------------------------------


def fallback_forms(mesh: Any) -> list[str]:
    """A plain function for both clients; a coroutine function too for the async one."""
    return ["function"] if mesh.kind == "sync" else ["function", "coroutine"]


def make_fallback(form: str, seen: list[Exception]) -> Callable[..., Any]:
    def answer(request: httpx.Request, error: Exception) -> httpx.Response:
        seen.append(error)
        return httpx.Response(200, json={"fallback": type(error).__name__})

    if form == "function":
        return answer

    async def coroutine(request: httpx.Request, error: Exception) -> httpx.Response:
        return answer(request, error)

    return coroutine


def test_fallback_answers_for_an_open_breaker_only(mesh, instances) -> None:
    for form in fallback_forms(mesh):
        for instance in instances:
            instance.backend.behave()
            instance.backend.reset()
        seen: list[Exception] = []
        breaker = meshclient.CircuitBreaker(window_size=4, minimum_calls=2, open_duration=30.0)
        client = mesh(
            services={"users": users(instances, breaker=breaker, outlier=None)},
            policy=meshclient.Policy(retry=None, fallback=make_fallback(form, seen)),
        )
        for _ in range(3):
            response = client.get("http://users/")
            assert response.json()["backend"] in ("a", "b", "c")
        assert seen == []  # never called on success
        for instance in instances:
            instance.backend.behave(status=500)
        for _ in range(2):  # a 500 is a response, not a failure: no fallback, breaker counts it
            assert client.get("http://users/").status_code == 500
        assert seen == []
        assert breaker.state == "open"
        sent = sum(i.backend.count() for i in instances)
        response = client.get("http://users/")
        assert response.json() == {"fallback": "CircuitOpenError"}, form
        assert [type(e) for e in seen] == [meshclient.CircuitOpenError]
        assert sum(i.backend.count() for i in instances) == sent


def hold(client: Any, responses: list[httpx.Response]) -> None:
    responses.append(client.get("http://users/"))


def test_fallback_answers_for_a_full_bulkhead(mesh, backend_factory) -> None:
    for form in fallback_forms(mesh):
        slow = backend_factory(f"slow-{form}")
        slow.behave(hang=True)
        seen: list[Exception] = []
        client = mesh(
            services={
                "users": meshclient.Service(
                    [slow.address], bulkhead=meshclient.Bulkhead(max_concurrent=1)
                )
            },
            policy=meshclient.Policy(retry=None, fallback=make_fallback(form, seen)),
        )
        held: list[httpx.Response] = []
        holder = threading.Thread(target=hold, args=(client, held), daemon=True)
        holder.start()
        try:
            slow.wait_for_requests(1)
            response = client.get("http://users/")
            assert response.json() == {"fallback": "BulkheadFullError"}, form
            assert [type(e) for e in seen] == [meshclient.BulkheadFullError]
        finally:
            slow.drop_connections()  # the holder fails with a transport error...
            join(holder, "the holder, once its connection was dropped")
        # ... and gets the fallback too (attempts exhausted on an error).
        assert held[0].json()["fallback"] in ("RemoteProtocolError", "ReadError")
        assert len(seen) == 2
        assert service_state(client)["bulkhead"]["active"] == 0
        slow.behave()
        seen.clear()
        assert client.get("http://users/").json()["backend"] == f"slow-{form}"
        assert seen == []


def open_breaker_client(mesh_or_client: Callable[..., Any], backend: Backend, fallback: Any) -> Any:
    """A client whose breaker opens on the first 500, with ``fallback``; the breaker is open."""
    backend.behave(status=500)
    breaker = meshclient.CircuitBreaker(window_size=1, minimum_calls=1, open_duration=30.0)
    client = mesh_or_client(
        services={"users": meshclient.Service([backend.address], breaker=breaker)},
        policy=meshclient.Policy(retry=None, fallback=fallback),
    )
    assert client.get("http://users/").status_code == 500
    assert breaker.state == "open"
    return client


def test_fallback_returning_none_reraises_and_a_non_response_is_refused(
    mesh, backend_factory
) -> None:
    answers: Iterator[Any] = iter([None, {"not": "a response"}])
    client = open_breaker_client(mesh, backend_factory(), lambda request, error: next(answers))
    failing_call(client, meshclient.CircuitOpenError)  # None: the error stands
    with pytest.raises(TypeError, match=r"must return an httpx\.Response or None"):
        client.get("http://users/")


def test_sync_client_refuses_a_coroutine_fallback(backend_factory) -> None:
    async def fallback(request: httpx.Request, error: Exception) -> httpx.Response:
        raise AssertionError("never awaited")

    client = open_breaker_client(meshclient.Client, backend_factory(), fallback)
    try:
        with pytest.raises(TypeError, match=r"needs meshclient\.AsyncClient") as info:
            client.get("http://users/")
        assert isinstance(info.value.__cause__, meshclient.CircuitOpenError)
    finally:
        client.close()


# -- adaptive throttling --------------------------------------------------------------------------


def test_adaptive_throttle_rejects_locally_when_the_backend_refuses_work(
    mesh, backend_factory
) -> None:
    overloaded = backend_factory("overloaded")
    overloaded.behave(status=503)
    throttle = meshclient.AdaptiveThrottle(k=2.0, rng=random.Random(7))
    client = mesh(
        services={"users": meshclient.Service([overloaded.address], throttle=throttle)},
        policy=meshclient.Policy(retry=None),
    )
    calls, errors = 60, []
    for _ in range(calls):
        try:
            assert client.get("http://users/").status_code == 503
        except meshclient.ThrottledError as exc:
            errors.append(str(exc))
    throttled = len(errors)
    assert throttled > 0
    assert "'users'" in errors[0]
    assert overloaded.count() == calls - throttled < calls  # rejected locally, never sent
    figures = service_state(client)["throttle"]
    assert figures["throttled_total"] == throttled
    assert figures["accepts"] == 0
    assert figures["requests"] == calls
    assert client.outstanding() == 0


def test_adaptive_throttle_lets_everything_through_when_the_backend_accepts(
    mesh, backend_factory
) -> None:
    backend = backend_factory("fine")
    throttle = meshclient.AdaptiveThrottle(k=2.0, rng=random.Random(7))
    client = mesh(
        services={"users": meshclient.Service([backend.address], throttle=throttle)},
        policy=meshclient.Policy(retry=None),
    )
    for _ in range(30):
        assert client.get("http://users/").status_code == 200
    assert backend.count() == 30
    assert service_state(client)["throttle"]["throttled_total"] == 0
