"""Specification of ``meshclient.dashboard``: the ASGI app, its SSE stream, the time series,
and the page in a real headless Chromium (Debian's ``chromium`` driven by Playwright).

The browser tests save screenshots under ``build/test-artifacts/`` (git-ignored), for a person
to look at; what the tests assert is the layout (nothing wider than its card) and the data.
"""

from __future__ import annotations

import json
import math
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import meshclient
from meshclient.dashboard import CallStats, Dashboard, app
from meshclient.testing import Backend, FakeClock

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "build" / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
]


class FakeClient:
    """Anything with ``snapshot()`` can be shown; this one returns what the test sets."""

    def __init__(self, snapshot: dict[str, Any]) -> None:
        self.value = snapshot

    def snapshot(self) -> dict[str, Any]:
        return self.value


SNAPSHOT: dict[str, Any] = {
    "services": {
        "users": {
            "balancer": "PeakEwma(decay=10.0, default_rtt=0.03)",
            "retry_budget": {"deposits": 10.0, "withdrawals": 1.0, "balance": 101.0},
            "endpoints": [
                {"address": "127.0.0.1:1", "outstanding": 2, "latency_estimate": 0.004},
                {
                    "address": "127.0.0.1:2",
                    "outstanding": 0,
                    "latency_estimate": math.inf,
                    "health": {"state": "ejected", "until": 12.5},
                    "ejections": 3,
                },
            ],
            "breaker": {"state": "closed"},
        }
    },
    "passthrough": {},
}


def asgi_client(dashboard: Dashboard, root_path: str = "") -> httpx.Client:
    transport = httpx.ASGITransport(app=dashboard, root_path=root_path)  # type: ignore[arg-type]
    return httpx.Client(transport=transport, base_url="http://dashboard")  # type: ignore[arg-type]


def run_sync(dashboard: Dashboard, path: str, root_path: str = "") -> httpx.Response:
    import asyncio

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=dashboard, root_path=root_path)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://dashboard") as c:
            return await c.get(path)

    return asyncio.run(go())


def test_page_is_self_contained() -> None:
    """No external fetches: inline CSS and JS, and a data: favicon (no 404 in the console)."""
    response = run_sync(app(FakeClient(SNAPSHOT)), "/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert '<link rel="icon" href="data:,">' in page
    assert "http://" not in page
    assert "https://" not in page
    assert "<script src" not in page
    assert "stylesheet" not in page


def test_snapshot_json_carries_the_snapshot_and_nulls_non_finite_numbers() -> None:
    stats = CallStats()
    stats.record("users", True, 0.010)
    response = run_sync(app(FakeClient(SNAPSHOT), stats=stats), "/snapshot.json")
    document = json.loads(response.text)  # strict JSON: no Infinity/NaN tokens
    (client,) = document["clients"]
    users = client["snapshot"]["services"]["users"]
    assert users["endpoints"][1]["latency_estimate"] is None
    assert users["endpoints"][1]["health"] == {"state": "ejected", "until": 12.5}
    assert client["stats"]["users"]["calls"] == 1


def test_a_failing_snapshot_is_reported_not_raised() -> None:
    class Broken:
        def snapshot(self) -> dict[str, Any]:
            raise RuntimeError("boom")

    document = Dashboard({"broken": Broken()}).payload()
    assert document["clients"][0]["snapshot"] is None
    assert "boom" in document["clients"][0]["error"]


def test_mounted_under_a_prefix_redirects_and_serves_relative_paths() -> None:
    dashboard = app(FakeClient(SNAPSHOT))
    bare = run_sync(dashboard, "/mesh", root_path="/mesh")
    assert bare.status_code == 307
    assert bare.headers["location"] == "/mesh/"
    assert run_sync(dashboard, "/mesh/", root_path="/mesh").status_code == 200
    assert run_sync(dashboard, "/mesh/snapshot.json", root_path="/mesh").status_code == 200


def test_unknown_paths_and_methods() -> None:
    dashboard = app(FakeClient(SNAPSHOT))
    assert run_sync(dashboard, "/nope").status_code == 404

    import asyncio

    async def post() -> int:
        transport = httpx.ASGITransport(app=dashboard)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://d") as c:
            return (await c.post("/")).status_code

    assert asyncio.run(post()) == 405


def test_construction_rejects_things_without_snapshot() -> None:
    with pytest.raises(TypeError, match="snapshot"):
        Dashboard({"x": object()})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="interval"):
        Dashboard(FakeClient(SNAPSHOT), interval=0)


def test_call_stats_window_rate_success_and_percentiles() -> None:
    clock = FakeClock()
    stats = CallStats(window=10.0, clock=clock)
    clock.advance(10.0)
    for i in range(100):
        stats.record("users", i % 10 != 0, (i + 1) / 1000)
    summary = stats.summary()["users"]
    assert summary["rate"] == pytest.approx(10.0)  # 100 calls over a 10 s window
    assert summary["success_rate"] == pytest.approx(0.9)
    assert summary["p50"] == pytest.approx(0.050)
    assert summary["p99"] == pytest.approx(0.099)
    clock.advance(11.0)
    later = stats.summary()["users"]
    assert later["window_calls"] == 0
    assert later["p50"] is None
    assert (later["calls"], later["failures"]) == (100, 10)


def test_series_has_one_point_per_complete_step_and_quiet_steps_as_zero_rate() -> None:
    clock = FakeClock()
    stats = CallStats(history=60.0, step=1.0, clock=clock)
    clock.set(100.5)
    for i in range(10):
        stats.record("users", i != 0, 0.010)
    clock.advance(2.0)  # step 101 has no calls; step 102 is the current, incomplete one
    stats.record("users", True, 0.020)
    series = stats.series()["users"]
    assert series["step"] == 1.0
    assert series["points"] == [[1.0, 10.0, 0.9, pytest.approx(0.010)], [0.0, 0.0, None, None]]
    clock.advance(1.0)
    ages = [point[0] for point in stats.series()["users"]["points"]]
    assert ages == [2.0, 1.0, 0.0]


def test_series_p99_is_at_most_five_percent_above_the_exact_one() -> None:
    clock = FakeClock()
    stats = CallStats(clock=clock)
    latencies = [0.001 * 1.013**i for i in range(500)]
    for seconds in latencies:
        stats.record("users", True, seconds)
    clock.advance(1.0)
    ((_, _, _, p99),) = stats.series()["users"]["points"]
    exact = sorted(latencies)[math.ceil(0.99 * len(latencies)) - 1]
    assert exact <= p99 <= exact * 1.05
    assert p99 <= max(latencies)


def test_series_keeps_history_over_step_points_whatever_the_traffic() -> None:
    clock = FakeClock()
    stats = CallStats(history=30.0, step=2.0, clock=clock)
    for _ in range(1000):
        stats.record("users", True, 0.001)
        clock.advance(0.5)
    points = stats.series()["users"]["points"]
    assert len(points) == 15
    assert points[0][0] == 28.0
    assert all(point[1] == 2.0 for point in points)  # 4 calls per 2 s step


def test_series_validation() -> None:
    with pytest.raises(ValueError, match="step"):
        CallStats(step=0)
    with pytest.raises(ValueError, match="history"):
        CallStats(history=0.5, step=1.0)


def test_payload_carries_the_series() -> None:
    stats = CallStats()
    stats.record("users", True, 0.010)
    document = Dashboard({"demo": FakeClient(SNAPSHOT)}, stats={"demo": stats}).payload()
    assert document["clients"][0]["series"]["users"]["step"] == 1.0
    assert Dashboard(FakeClient(SNAPSHOT)).payload()["clients"][0]["series"] is None


# -- a real server and a real browser ------------------------------------------------------


class Server:
    """uvicorn serving ``dashboard`` from a thread on 127.0.0.1 (an OS-chosen port)."""

    def __init__(self, dashboard: Dashboard) -> None:
        import uvicorn

        self.dashboard = dashboard
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/"
        config = uvicorn.Config(
            dashboard, lifespan="off", log_level="error", timeout_graceful_shutdown=1
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.dashboard.close()
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()
        assert not self.thread.is_alive()


@pytest.fixture
def live_mesh(
    backend_factory: Callable[..., Backend],
) -> Iterator[tuple[meshclient.Client, CallStats]]:
    """A client calling 3 loopback backends (one slow) from a thread, ~200 calls/s, bounded."""
    backends = [backend_factory(f"users-{i}", record=False) for i in range(3)]
    backends[2].behave(delay=0.02)
    client = meshclient.Client(services={"users": [b.address for b in backends]})
    stats = CallStats()
    stop = threading.Event()

    def traffic() -> None:
        for _ in range(20_000):  # at most ~100 s at this pace; the test stops it sooner
            if stop.is_set():
                return
            began = time.perf_counter()
            try:
                ok = client.get("http://users/v1/users/1").status_code == 200
            except httpx.HTTPError:
                ok = False
            stats.record("users", ok, time.perf_counter() - began)
            time.sleep(0.005)

    worker = threading.Thread(target=traffic, daemon=True)
    worker.start()
    try:
        yield client, stats
    finally:
        stop.set()
        worker.join(10)
        client.close()


def test_sse_stream_sends_fresh_snapshots(live_mesh: tuple[meshclient.Client, CallStats]) -> None:
    client, stats = live_mesh
    dashboard = Dashboard({"demo": client}, stats={"demo": stats}, interval=0.1)
    with Server(dashboard) as server, httpx.Client(trust_env=False, timeout=5) as http:
        documents: list[dict[str, Any]] = []
        with http.stream("GET", server.url + "events") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if line.startswith("data: "):
                    documents.append(json.loads(line[6:]))
                if len(documents) == 3:
                    break
    calls = [d["clients"][0]["stats"]["users"]["calls"] for d in documents]
    assert calls[0] < calls[-1], calls
    endpoints = documents[-1]["clients"][0]["snapshot"]["services"]["users"]["endpoints"]
    assert len(endpoints) == 3


@pytest.fixture(scope="module")
def chromium(require_real: Callable[[str, str], None]) -> Iterator[Any]:
    """Debian's Chromium under Playwright; skipped locally, a failure in CI, when missing."""
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        require_real("chromium", f"{CHROMIUM} not found (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require_real("playwright", "pip install playwright (pinned in the test group)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def test_page_shows_live_numbers_in_chromium_without_console_errors(
    chromium: Any, live_mesh: tuple[meshclient.Client, CallStats]
) -> None:
    client, stats = live_mesh
    dashboard = Dashboard({"demo": client}, stats={"demo": stats}, interval=0.25)
    with Server(dashboard) as server:
        page = chromium.new_page()
        problems: list[str] = []
        page.on("console", lambda m: m.type in ("error", "warning") and problems.append(m.text))
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
        try:
            page.goto(server.url, wait_until="load", timeout=10_000)
            page.wait_for_function(
                "Number(document.getElementById('updates').textContent) >= 2", timeout=10_000
            )
            calls = page.locator('[data-service="users"] [data-field="calls"]')
            first = int(calls.inner_text())
            page.wait_for_function(
                f"""Number(document.querySelector('[data-service="users"] [data-field="calls"]')
                    .textContent) > {first}""",
                timeout=10_000,
            )
            assert page.locator('[data-service="users"] tbody tr').count() == 3
            assert page.locator("#status").inner_text() == "live"
            latency = page.locator('[data-service="users"] [data-field="latency"]').first
            assert latency.inner_text().endswith("ms")
        finally:
            page.close()
    assert problems == []


def test_page_renders_health_and_unknown_fields_in_chromium(chromium: Any) -> None:
    """Health per endpoint, health per service, and fields the page does not know."""
    snapshot = json.loads(json.dumps(SNAPSHOT, default=str).replace("Infinity", "null"))
    snapshot["services"]["orders"] = {
        "endpoints": [
            {"address": "127.0.0.1:3", "outstanding": 1, "latency_estimate": 0.002},
            {"address": "127.0.0.1:4", "outstanding": 0, "latency_estimate": 0.5},
        ],
        "health": {
            "ejected": 1,
            "panic": False,
            "out_of_rotation": [{"address": "127.0.0.1:4", "state": "probing"}],
        },
        "bulkhead": {"in_use": 3, "max_concurrent": 10},
    }
    dashboard = Dashboard({"fake": FakeClient(snapshot)}, interval=0.2)
    with Server(dashboard) as server:
        page = chromium.new_page()
        problems: list[str] = []
        page.on("console", lambda m: m.type in ("error", "warning") and problems.append(m.text))
        page.on("pageerror", lambda e: problems.append(str(e)))
        try:
            page.goto(server.url, wait_until="load", timeout=10_000)
            page.wait_for_function(
                "Number(document.getElementById('updates').textContent) >= 1", timeout=10_000
            )
            users = page.locator('[data-service="users"]')
            health = users.locator('[data-field="health"]').all_inner_texts()
            assert health == ["\u2013", "ejected"]
            assert users.locator('[data-field="more"]').all_inner_texts() == ["", "ejections=3"]
            assert users.locator('[data-field="breaker"]').inner_text() == "closed"
            orders = page.locator('[data-service="orders"]')
            assert orders.locator('[data-field="health"]').all_inner_texts() == [
                "admitted",
                "probing",
            ]
            extra = orders.locator('[data-field="service-extra"]').inner_text()
            assert "in_use=3" in extra
            assert "ejected 1" in orders.locator('[data-field="health-summary"]').inner_text()
            assert orders.locator('[data-field="rate"]').inner_text() == "\u2013"
        finally:
            page.close()
    assert problems == []


#: A snapshot that stresses the layout: long IPv6 addresses and service names, health with
#: reasons, fields the page does not know, a panicking service.
WIDE_SNAPSHOT: dict[str, Any] = {
    "services": {
        "payments-authorisation-eu-west": {
            "balancer": "PeakEwma(decay=10.0, default_rtt=0.03)",
            "retry_budget": {"deposits": 1200.0, "withdrawals": 37.0, "balance": 303.0},
            "discovery": {"source": "dns", "ready": True, "endpoints": 4, "errors": 2},
            "health": {"endpoints": 4, "available": 4, "ejected": 2, "panic": True},
            "endpoints": [
                {
                    "address": f"[2001:db8:85a3:8d3:1319:8a2e:370:{7340 + i}]:8443",
                    "weight": 1.0,
                    "outstanding": 12 * i,
                    "latency_estimate": 0.0123 * (i + 1),
                    "latency_samples": 123456,
                    "health": {"state": "ejected", "reason": "consecutive_failures"}
                    if i % 2
                    else {"state": "admitted"},
                    "zone": "europe-west1-b",
                    "ejections_total": 17,
                    "connections_open": 100,
                }
                for i in range(4)
            ],
            "breaker": {"state": "half_open"},
        }
    },
    "passthrough": {},
}

LAYOUT_PROBLEMS = """() => {
  const problems = [];
  const page = document.documentElement;
  if (page.scrollWidth > window.innerWidth)
    problems.push("page " + page.scrollWidth + " > " + window.innerWidth);
  for (const card of document.querySelectorAll(".card")) {
    const name = card.dataset.service;
    const style = getComputedStyle(card);
    const inner = card.getBoundingClientRect().right - parseFloat(style.borderRightWidth)
                  - parseFloat(style.paddingRight);
    if (card.scrollWidth > card.clientWidth)
      problems.push(name + ": card " + card.scrollWidth + " > " + card.clientWidth);
    for (const table of card.querySelectorAll("table")) {
      if (table.scrollWidth > card.clientWidth)
        problems.push(name + ": table " + table.scrollWidth + " > " + card.clientWidth);
      if (table.getBoundingClientRect().right > inner + 0.5)
        problems.push(name + ": table right " + table.getBoundingClientRect().right
                      + " > " + inner);
    }
  }
  return problems;
}"""


@pytest.mark.parametrize("width", [1280, 1920])
def test_page_layout_and_charts_at_common_widths_in_chromium(
    chromium: Any, live_mesh: tuple[meshclient.Client, CallStats], width: int
) -> None:
    """Charts of rate, success and p99 fill in with traffic; no table is wider than its card."""
    client, stats = live_mesh
    dashboard = Dashboard(
        {"demo": client, "wide": FakeClient(WIDE_SNAPSHOT)},
        stats={"demo": stats},
        interval=0.25,
    )
    with Server(dashboard) as server:
        page = chromium.new_page(viewport={"width": width, "height": 1000})
        problems: list[str] = []
        page.on("console", lambda m: m.type in ("error", "warning") and problems.append(m.text))
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
        try:
            page.goto(server.url, wait_until="load", timeout=10_000)
            users = '[data-client="demo"] [data-service="users"]'
            # Complete 1 s steps: the third point arrives about 3 s after traffic started.
            page.wait_for_function(
                f"""(charts => charts.length === 3
                      && charts.every(svg => Number(svg.dataset.points) >= 3))(
                    [...document.querySelectorAll('{users} svg[data-chart]')])""",
                timeout=20_000,
            )
            for kind in ("rate", "success", "p99"):
                chart = page.locator(f'{users} svg[data-chart="{kind}"]')
                assert chart.count() == 1
                assert chart.locator("path").get_attribute("d").count("L") >= 3
                box = chart.bounding_box()
                assert box is not None
                assert box["width"] > 100
                assert box["height"] > 30
            rate = page.locator(f'{users} [data-field="chart-rate"]').inner_text()
            assert float(rate) > 0
            assert page.locator(f'{users} [data-field="chart-success"]').inner_text() == "100.0 %"
            assert page.locator(f'{users} [data-field="chart-p99"]').inner_text().endswith("ms")
            wide = page.locator('[data-client="wide"] [data-service]')
            assert wide.locator("svg").count() == 0  # no CallStats: no charts
            assert "PANIC" in wide.locator('[data-field="health-summary"]').inner_text()
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"dashboard-{width}.png"), full_page=True)
            assert page.evaluate(LAYOUT_PROBLEMS) == []
        finally:
            page.close()
    assert problems == []
