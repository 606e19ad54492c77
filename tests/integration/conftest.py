"""One test body for both clients: ``mesh`` builds a sync or an async meshclient client.

The async client runs in an event loop on a portal thread, so tests read the same for
both; async-only behaviour (task cancellation) has its own tests.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import anyio.from_thread
import httpx
import pytest

import meshclient


class Streamed:
    """A delivered response whose body is still unread, read the same way for both clients."""

    def __init__(self, portal: Any, response: httpx.Response) -> None:
        self._portal = portal
        self.response = response

    @property
    def status_code(self) -> int:
        return self.response.status_code

    def read(self) -> bytes:
        """Read the whole body (httpx closes the response once it is read)."""
        if self._portal is None:
            return self.response.read()
        return self._portal.call(self.response.aread)  # type: ignore[no-any-return]

    def close(self) -> None:
        if self._portal is None:
            self.response.close()
        else:
            self._portal.call(self.response.aclose)


class Driver:
    """Calls a sync or an async client through one blocking interface."""

    def __init__(self, kind: str, portal: Any, client: Any) -> None:
        self.kind = kind
        self._portal = portal
        self.client = client

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        call = functools.partial(self.client.request, method, url, **kwargs)
        return call() if self._portal is None else self._portal.call(call)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def send(self, request: httpx.Request) -> httpx.Response:
        call = functools.partial(self.client.send, request)
        return call() if self._portal is None else self._portal.call(call)

    def send_streamed(self, request: httpx.Request) -> Streamed:
        """``client.send(request, stream=True)``: the body is left unread."""
        call = functools.partial(self.client.send, request, stream=True)
        response = call() if self._portal is None else self._portal.call(call)
        return Streamed(self._portal, response)

    @contextlib.contextmanager
    def stream(self, method: str, url: str, **kwargs: Any) -> Iterator[Streamed]:
        """``client.stream(...)``: the body is read only if the test reads it."""
        if self._portal is None:
            with self.client.stream(method, url, **kwargs) as response:
                yield Streamed(None, response)
        else:
            manager = self.client.stream(method, url, **kwargs)
            with self._portal.wrap_async_context_manager(manager) as response:
                yield Streamed(self._portal, response)

    def get_within(self, seconds: float, url: str, **kwargs: Any) -> httpx.Response:
        """A GET inside ``meshclient.deadline_scope(seconds)``, entered in the task that runs
        the call (the inherited deadline of a request being handled)."""
        if self._portal is None:
            with meshclient.deadline_scope(seconds):
                return self.client.get(url, **kwargs)  # type: ignore[no-any-return]

        async def call() -> httpx.Response:
            with meshclient.deadline_scope(seconds):
                return await self.client.get(url, **kwargs)  # type: ignore[no-any-return]

        return self._portal.call(call)  # type: ignore[no-any-return]

    def body(self, *chunks: bytes) -> Any:
        """A one-shot streaming body of the kind this client sends (a generator)."""
        if self._portal is None:
            return iter(chunks)

        async def agen() -> Any:
            for chunk in chunks:
                yield chunk

        return agen()

    def snapshot(self) -> dict[str, Any]:
        return self.client.snapshot()  # type: ignore[no-any-return]

    def outstanding(self) -> int:
        snap = self.snapshot()
        return sum(
            endpoint["outstanding"]
            for group in (snap["services"], snap["passthrough"])
            for service in group.values()
            for endpoint in service["endpoints"]
        )


class MeshFactory:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._drivers: list[Driver] = []
        self._portal_cm: Any = None
        self._portal: Any = None

    def __call__(self, **kwargs: Any) -> Driver:
        if self.kind == "sync":
            driver = Driver("sync", None, meshclient.Client(**kwargs))
        else:
            if self._portal is None:
                self._portal_cm = anyio.from_thread.start_blocking_portal("asyncio")
                self._portal = self._portal_cm.__enter__()

            async def build() -> meshclient.AsyncClient:
                return meshclient.AsyncClient(**kwargs)

            driver = Driver("async", self._portal, self._portal.call(build))
        self._drivers.append(driver)
        return driver

    def close(self) -> None:
        for driver in self._drivers:
            if self._portal is None:
                driver.client.close()
            else:
                self._portal.call(driver.client.aclose)
        if self._portal_cm is not None:
            self._portal_cm.__exit__(None, None, None)


@pytest.fixture(params=["sync", "async"])
def mesh(request: pytest.FixtureRequest) -> Iterator[MeshFactory]:
    """Builds meshclient clients of one kind; every test using it runs for both kinds."""
    factory = MeshFactory(request.param)
    yield factory
    factory.close()
