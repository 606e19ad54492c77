"""An async meshclient.AsyncClient: concurrent calls, a deadline, and an instance that dies.

Run it: ``python examples/async_client.py``. It starts its own loopback backends
(``meshclient.testing.Backend``), so it needs nothing else.
"""

from __future__ import annotations

import asyncio
import time

import httpx

import meshclient
from meshclient.testing import Backend


async def fetch_all(client: meshclient.AsyncClient, n: int) -> int:
    """``n`` concurrent GETs; returns how many succeeded."""
    responses = await asyncio.gather(
        *(client.get(f"http://orders/v1/orders/{i}") for i in range(n)), return_exceptions=True
    )
    return sum(1 for r in responses if not isinstance(r, BaseException) and r.status_code == 200)


async def main() -> None:
    with Backend("orders-1") as one, Backend("orders-2") as two, Backend("hanging") as hang:
        hang.behave(hang=True)  # accepts requests, never answers
        async with meshclient.AsyncClient(
            services={
                "orders": [one.address, two.address],
                "reports": [hang.address],
            },
            policy=meshclient.Policy(timeout=meshclient.Timeout(total=1.0, attempt=0.3)),
        ) as client:
            ok = await fetch_all(client, 100)
            print(f"both instances up: {ok}/100 succeeded")
            assert ok == 100

            two.refuse()  # the instance dies: connections refused
            ok = await fetch_all(client, 100)
            print(f"one instance refusing connections: {ok}/100 succeeded (re-sent elsewhere)")
            assert ok == 100
            two.accept()

            # A total deadline bounds every attempt and every backoff: the call ends on time
            # with DeadlineExceeded (an httpx.TimeoutException) however many tries remain.
            deadline = meshclient.Policy(timeout=meshclient.Timeout(total=0.5, attempt=0.3))
            began = time.perf_counter()
            try:
                await client.get("http://reports/daily", policy=deadline)
            except httpx.TimeoutException as exc:
                elapsed = time.perf_counter() - began
                print(f"hanging service: {type(exc).__name__} after {elapsed:.2f} s ({exc})")
                assert elapsed < 1.0
            else:
                raise AssertionError("a hanging service must time out")


if __name__ == "__main__":
    asyncio.run(main())
