"""A sync meshclient.Client against three local instances: one slow, one failing.

Run it: ``python examples/sync_client.py``. It starts its own loopback backends
(``meshclient.testing.Backend``), so it needs nothing else.
"""

from __future__ import annotations

import collections
import time

import meshclient
from meshclient.testing import Backend

CALLS = 300


def main() -> None:
    with Backend("users-1") as fast, Backend("users-2") as slow, Backend("users-3") as sick:
        slow.behave(delay=0.05)  # 50 ms late on every request
        sick.behave(status=503)  # answers 503 to everything
        client = meshclient.Client(
            services={"users": [fast.address, slow.address, sick.address]},
            policy=meshclient.Policy(timeout=meshclient.Timeout(total=2.0, attempt=0.5)),
        )
        with client:
            served: collections.Counter[str] = collections.Counter()
            failures = 0
            began = time.perf_counter()
            for i in range(CALLS):
                response = client.get(f"http://users/v1/users/{i}")
                if response.status_code == 200:
                    served[response.headers["x-backend"]] += 1
                else:
                    failures += 1
            elapsed = time.perf_counter() - began
            print(f"{CALLS} GETs in {elapsed:.2f} s, {failures} failed")
            for name, count in sorted(served.items()):
                print(f"  {name}: {count / CALLS:6.1%} of the answers")
            budget = client.snapshot()["services"]["users"]["retry_budget"]
            print(f"retry budget: {budget}")
            for endpoint in client.snapshot()["services"]["users"]["endpoints"]:
                print(
                    f"  {endpoint['address']}: latency estimate "
                    f"{endpoint['latency_estimate'] * 1000:.1f} ms"
                )
            # The 503s were retried on the other instances (GET is idempotent) ...
            assert failures == 0, failures
            # ... and the balancer learned to avoid the slow one.
            assert served["users-2"] < CALLS / 3


if __name__ == "__main__":
    main()
