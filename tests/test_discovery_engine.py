"""What the engine does with discovery: wait for a first set, name what went wrong, keep
calls in their zone, forget nothing that stays."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

import httpx
import pytest

import meshclient

from helpers import WAIT_LIMIT


class Later(meshclient.Discovery):
    """Publishes its set from a thread after ``delay`` seconds, or once ``after`` is set; or
    only fails, if told to."""

    def __init__(
        self,
        addresses: list[str],
        delay: float = 0.0,
        fail: bool = False,
        after: threading.Event | None = None,
    ) -> None:
        self.endpoints = [meshclient.Endpoint.parse(a) for a in addresses]
        self.delay = delay
        self.fail = fail
        self.after = after
        self.stop = threading.Event()

    def start(self, updates: Any) -> None:
        def run() -> None:
            if self.stop.wait(self.delay):
                return
            if self.after is not None and not self.after.wait(WAIT_LIMIT):
                return
            if self.fail:
                updates.error(ConnectionRefusedError("registry down"))
            else:
                updates(self.endpoints)

        threading.Thread(target=run, daemon=True).start()

    def close(self) -> None:
        self.stop.set()

    def describe(self) -> str:
        return "later"


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, text=request.url.netloc.decode())


def test_a_call_waits_for_the_first_endpoint_set() -> None:
    service = meshclient.Service(Later(["127.0.0.1:8001"], delay=0.2))
    with meshclient.Client(services={"users": service}, transport=httpx.MockTransport(ok)) as c:
        assert c.get("http://users/").text == "127.0.0.1:8001"


def test_an_async_call_waits_for_the_first_endpoint_set_without_blocking_its_loop() -> None:
    """The set is published only after the loop ticked five times while the call waited: a
    call that blocked its loop would never see it and fail after ``ready_timeout``."""
    ticked = threading.Event()

    async def ticker() -> None:
        for _ in range(5):
            await asyncio.sleep(0.01)
        ticked.set()

    async def main() -> str:
        service = meshclient.Service(Later(["127.0.0.1:8001"], after=ticked), ready_timeout=5.0)
        task = asyncio.create_task(ticker())
        async with meshclient.AsyncClient(
            services={"users": service}, transport=httpx.MockTransport(ok)
        ) as client:
            text = (await client.get("http://users/")).text
        task.cancel()
        return text

    assert asyncio.run(main()) == "127.0.0.1:8001"


def test_a_service_that_never_resolves_names_itself_its_source_and_its_last_error() -> None:
    service = meshclient.Service(Later([], delay=0.01, fail=True), ready_timeout=0.3)
    with (
        meshclient.Client(services={"users": service}, transport=httpx.MockTransport(ok)) as c,
        pytest.raises(meshclient.NoEndpointsError) as info,
    ):
        c.get("http://users/")
    message = str(info.value)
    assert "'users'" in message
    assert "(later) has produced no endpoint set yet" in message
    assert "registry down" in message


def test_the_wait_for_a_first_set_ends_with_the_call_deadline() -> None:
    service = meshclient.Service(Later(["127.0.0.1:8001"], delay=30.0), ready_timeout=30.0)
    with (
        meshclient.Client(
            services={"users": service},
            transport=httpx.MockTransport(ok),
            policy=meshclient.Policy(timeout=0.2),
        ) as c,
        pytest.raises(meshclient.MeshError) as info,
    ):
        c.get("http://users/")
    assert isinstance(info.value, meshclient.DeadlineExceeded | meshclient.NoEndpointsError)
    assert info.value.elapsed < 30.0


ZONED = [
    meshclient.Endpoint("127.0.0.1", 8001, zone="a"),
    meshclient.Endpoint("127.0.0.1", 8002, zone="a"),
    meshclient.Endpoint("127.0.0.1", 8003, zone="b"),
    meshclient.Endpoint("127.0.0.1", 8004, zone="b"),
]


def zoned_client(handler: Any, endpoints: list[meshclient.Endpoint], **kwargs: Any) -> Any:
    service = meshclient.Service(endpoints, zone="a", **kwargs)
    return meshclient.Client(
        services={"users": service},
        transport=httpx.MockTransport(handler),
        policy=meshclient.Policy(retry=meshclient.Retry(attempts=2, backoff=0, max_backoff=0)),
    )


def test_calls_stay_in_their_zone() -> None:
    seen: Counter[str] = Counter()

    def handler(request: httpx.Request) -> httpx.Response:
        seen[request.url.netloc.decode()] += 1
        return httpx.Response(200)

    with zoned_client(handler, ZONED) as client:
        for _ in range(40):
            client.get("http://users/")
    assert set(seen) == {"127.0.0.1:8001", "127.0.0.1:8002"}


def test_calls_spill_over_when_too_few_of_their_zone_can_take_them() -> None:
    seen: Counter[str] = Counter()

    failing = {"127.0.0.1:8001", "127.0.0.1:8005"}

    def handler(request: httpx.Request) -> httpx.Response:
        address = request.url.netloc.decode()
        seen[address] += 1
        return httpx.Response(500 if address in failing else 200)

    # Zone a lists three endpoints; once two are ejected, one of three is too few to stay.
    endpoints = [*ZONED, meshclient.Endpoint("127.0.0.1", 8005, zone="a")]
    detection = meshclient.OutlierDetection(consecutive_failures=1, max_ejected_share=0.5)
    balancer = meshclient.RoundRobin()  # every endpoint of the zone in turn: both get ejected
    with zoned_client(handler, endpoints, outlier=detection, balancer=balancer) as client:
        for _ in range(6):
            client.get("http://users/")
        health = client.snapshot()["services"]["users"]["health"]
        assert health["ejected"] == 2
        seen.clear()
        for _ in range(40):
            client.get("http://users/")
    assert seen["127.0.0.1:8003"] + seen["127.0.0.1:8004"] > 0
    assert not failing & set(seen)


def test_a_retry_leaves_the_zone_once_every_endpoint_there_failed_the_call() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        address = request.url.netloc.decode()
        seen.append(address)
        return httpx.Response(503 if address == "127.0.0.1:8001" else 200)

    endpoints = [ZONED[0], ZONED[2]]  # one endpoint in zone a, one in b
    with zoned_client(handler, endpoints, outlier=None) as client:
        assert client.get("http://users/").status_code == 200
    assert seen == ["127.0.0.1:8001", "127.0.0.1:8003"]
