"""Two FastAPI services on 127.0.0.1: "frontend" calls "users" through meshclient.

``meshclient.middleware.DeadlineMiddleware`` on each service makes the calls it makes while
handling a request inherit that request's deadline (``x-meshclient-timeout-ms``, or
``grpc-timeout``) and trace context (``traceparent``). So:

- a caller gives the frontend 300 ms; the frontend's call to users carries what is left of
  them, and when users is too slow the frontend's call ends with ``DeadlineExceeded`` in time
  instead of waiting for users' own timeout;
- the trace id the caller sent arrives at users, two hops away.

Run it: ``python examples/fastapi_service.py`` (needs fastapi and uvicorn). Both services
run in this process under uvicorn, on ports the OS picks.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

import meshclient
from meshclient.middleware import DeadlineMiddleware

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def users_service() -> FastAPI:
    """Answers with the deadline and trace headers it received, after ``?delay=`` seconds."""
    app = FastAPI()

    @app.get("/v1/users/{user_id}")
    async def user(user_id: int, request: Request, delay: float = 0.0) -> dict[str, Any]:
        await asyncio.sleep(delay)
        return {
            "id": user_id,
            "deadline_ms_received": request.headers.get("x-meshclient-timeout-ms"),
            "traceparent_received": request.headers.get("traceparent"),
        }

    app.add_middleware(DeadlineMiddleware)
    return app


def frontend_service(users_address: str) -> FastAPI:
    """Calls users through meshclient; the deadline and trace come from its own request."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with meshclient.AsyncClient(services={"users": [users_address]}) as client:
            app.state.mesh = client
            yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/profile/{user_id}")
    async def profile(user_id: int, request: Request, delay: float = 0.0) -> JSONResponse:
        mesh: meshclient.AsyncClient = request.app.state.mesh
        try:
            response = await mesh.get(f"http://users/v1/users/{user_id}?delay={delay}")
        except meshclient.DeadlineExceeded as exc:
            return JSONResponse({"error": f"users too slow: {exc}"}, status_code=504)
        return JSONResponse({"user": response.json()})

    app.add_middleware(DeadlineMiddleware)
    return app


@contextlib.contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn from a thread on 127.0.0.1; yields its ``host:port``."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    address = f"127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        yield address
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def main() -> None:
    with (
        serve(users_service()) as users,
        serve(frontend_service(users)) as frontend,
        httpx.Client(base_url=f"http://{frontend}", timeout=5.0, trust_env=False) as http,
    ):
        headers = {"x-meshclient-timeout-ms": "300", "traceparent": TRACEPARENT}

        fast = http.get("/profile/42", headers=headers)
        seen = fast.json()["user"]
        print("fast call:", fast.status_code, seen)
        assert fast.status_code == 200
        # users got what was left of the caller's 300 ms, and the caller's trace id.
        assert seen["deadline_ms_received"] is not None
        assert 0 < float(seen["deadline_ms_received"]) <= 300
        assert seen["traceparent_received"] is not None
        assert seen["traceparent_received"].split("-")[1] == TRACE_ID

        began = time.perf_counter()
        slow = http.get("/profile/42", params={"delay": 2.0}, headers=headers)
        elapsed = time.perf_counter() - began
        print(f"slow call: {slow.status_code} after {elapsed:.2f} s: {slow.json()}")
        assert slow.status_code == 504
        assert elapsed < 1.0  # the 300 ms deadline, not users' 2 s


if __name__ == "__main__":
    main()
