"""A live dashboard for meshclient clients: a tiny ASGI app with no dependencies.

Mount it in any ASGI service (Starlette/FastAPI ``app.mount("/mesh", dashboard.app(client))``)
or serve it alone (``uvicorn``). It answers three paths, relative to where it is mounted:

- ``/``: one HTML page, CSS and JavaScript inline, nothing fetched from elsewhere;
- ``/events``: a Server-Sent Events stream, one JSON document per ``interval`` seconds;
- ``/snapshot.json``: the same document once.

The document carries each client's ``client.snapshot()`` (services, retry budgets, endpoints
with load and latency estimate, and whatever health, breaker or bulkhead fields the snapshot
gains) plus, per service, the request rate, success rate and latency percentiles from a
``CallStats`` that the application feeds (``stats.record(...)``), because a snapshot holds live
state, not call history. The page shows fields it does not know as extra columns, so it keeps
working as the snapshot grows.

This is a debugging aid for a trusted network: it has no authentication. Mount it behind
whatever protects your other admin endpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, Final, Protocol

__all__ = ["CallStats", "Dashboard", "app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Seconds of call history behind the rate, success rate and percentiles.
DEFAULT_WINDOW: Final = 10.0
#: Most calls kept per service; older ones are dropped first (bounds memory at high rates).
MAX_SAMPLES: Final = 50_000
#: A stream ends after this many seconds; the browser's EventSource reconnects by itself.
MAX_STREAM_SECONDS: Final = 3600.0


class SupportsSnapshot(Protocol):
    """Anything with ``snapshot()``: ``meshclient.Client``, ``AsyncClient``, a mesh transport."""

    def snapshot(self) -> dict[str, Any]: ...


class CallStats:
    """Outcomes of logical calls per service over a sliding window; thread-safe.

    ``record(service, ok, seconds)`` once per call (after all its attempts); ``summary()``
    gives, per service, the request rate (calls/s over the window), the success rate and
    latency percentiles (seconds) of the calls in the window, and totals since the start.
    """

    def __init__(
        self,
        *,
        window: float = DEFAULT_WINDOW,
        max_samples: int = MAX_SAMPLES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (isinstance(window, int | float) and math.isfinite(window) and window > 0):
            raise ValueError(f"CallStats.window must be seconds > 0, got {window!r}")
        if not (isinstance(max_samples, int) and max_samples > 0):
            raise ValueError(f"CallStats.max_samples must be an int > 0, got {max_samples!r}")
        self._window = float(window)
        self._max = max_samples
        self._clock = clock
        self._started = clock()
        self._lock = threading.Lock()
        self._calls: dict[str, deque[tuple[float, bool, float]]] = {}
        self._totals: dict[str, list[int]] = {}

    def record(self, service: str, ok: bool, seconds: float) -> None:
        """One finished call to ``service``: whether it succeeded and how long it took."""
        now = self._clock()
        with self._lock:
            calls = self._calls.get(service)
            if calls is None:
                calls = self._calls[service] = deque(maxlen=self._max)
                self._totals[service] = [0, 0]
            calls.append((now, ok, seconds))
            totals = self._totals[service]
            totals[0] += 1
            totals[1] += ok

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per service: ``rate``, ``success_rate``, ``p50``/``p90``/``p99`` and totals."""
        now = self._clock()
        cutoff = now - self._window
        span = min(self._window, max(now - self._started, 1e-9))
        out: dict[str, dict[str, Any]] = {}
        with self._lock:
            for service, calls in self._calls.items():
                while calls and calls[0][0] < cutoff:
                    calls.popleft()
                recent = list(calls)
                total, ok_total = self._totals[service]
                out[service] = _summarise(recent, span, total, ok_total)
        return out


def _summarise(
    recent: list[tuple[float, bool, float]], span: float, total: int, ok_total: int
) -> dict[str, Any]:
    latencies = sorted(seconds for _, _, seconds in recent)
    ok = sum(1 for _, good, _ in recent if good)
    return {
        "rate": len(recent) / span,
        "success_rate": ok / len(recent) if recent else None,
        "p50": _percentile(latencies, 50),
        "p90": _percentile(latencies, 90),
        "p99": _percentile(latencies, 99),
        "window_calls": len(recent),
        "calls": total,
        "failures": total - ok_total,
    }


def _percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted values; ``None`` without values."""
    if not ordered:
        return None
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _jsonable(value: Any, depth: int = 0) -> Any:
    """Plain JSON: non-finite floats become ``null`` (JavaScript's JSON.parse rejects them)."""
    if depth > 12:
        return repr(value)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v, depth + 1) for v in value]
    return repr(value)


class Dashboard:
    """The ASGI app; see the module docstring. One instance can serve any number of pages.

    ``clients`` is one client or a mapping of display names to clients; ``stats`` is one
    ``CallStats`` (shared by every client) or a mapping with the same names as ``clients``.
    """

    def __init__(
        self,
        clients: SupportsSnapshot | Mapping[str, SupportsSnapshot],
        *,
        stats: CallStats | Mapping[str, CallStats] | None = None,
        interval: float = 1.0,
        title: str = "meshclient",
        max_stream_seconds: float = MAX_STREAM_SECONDS,
    ) -> None:
        if isinstance(clients, Mapping):
            self._clients = dict(clients)
        else:
            self._clients = {"client": clients}
        for name, client in self._clients.items():
            if not callable(getattr(client, "snapshot", None)):
                raise TypeError(f"Dashboard clients[{name!r}] has no snapshot(), got {client!r}")
        if stats is None or isinstance(stats, CallStats):
            self._stats = dict.fromkeys(self._clients, stats)
        else:
            self._stats = {name: stats.get(name) for name in self._clients}
        if not (isinstance(interval, int | float) and 0.05 <= interval <= 60):
            raise ValueError(f"Dashboard.interval must be seconds in [0.05, 60], got {interval!r}")
        self.interval = float(interval)
        self.title = title
        self.max_stream_seconds = float(max_stream_seconds)
        self._closed = threading.Event()

    def close(self) -> None:
        """End every open stream within one ``interval`` (call before stopping the server)."""
        self._closed.set()

    def payload(self) -> dict[str, Any]:
        """The document streamed to the page: every client's snapshot and call statistics."""
        clients = []
        for name, client in self._clients.items():
            entry: dict[str, Any] = {"name": name}
            try:
                entry["snapshot"] = client.snapshot()
            except Exception as exc:  # a broken snapshot must not end the stream
                entry["snapshot"] = None
                entry["error"] = f"snapshot() failed: {exc!r}"
            stats = self._stats.get(name)
            entry["stats"] = stats.summary() if stats is not None else None
            clients.append(entry)
        document: dict[str, Any] = _jsonable(
            {"time": time.time(), "interval": self.interval, "clients": clients}
        )
        return document

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind == "lifespan":
            await _lifespan(receive, send)
            return
        if kind != "http":
            raise RuntimeError(f"meshclient.dashboard serves HTTP only, got {kind!r}")
        root = scope.get("root_path", "")
        path = scope.get("path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        method = scope.get("method", "GET")
        if method not in ("GET", "HEAD"):
            await _respond(send, 405, b"method not allowed\n", "text/plain", [(b"allow", b"GET")])
            return
        if path == "":
            location = (root + "/").encode("latin-1")
            await _respond(send, 307, b"", "text/plain", [(b"location", location)])
        elif path in ("/", "/index.html"):
            body = _PAGE.replace("__TITLE__", _escape(self.title)).encode("utf-8")
            await _respond(send, 200, body, "text/html; charset=utf-8", head=method == "HEAD")
        elif path == "/snapshot.json":
            body = json.dumps(self.payload()).encode("utf-8")
            await _respond(send, 200, body, "application/json", head=method == "HEAD")
        elif path == "/events":
            await self._stream(receive, send)
        else:
            await _respond(send, 404, b"not found\n", "text/plain")

    async def _stream(self, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache"),
                    (b"x-accel-buffering", b"no"),
                ],
            }
        )
        gone = asyncio.Event()

        async def watch() -> None:
            # Until the client goes away; anything else it sends on a GET is ignored.
            with contextlib.suppress(Exception):
                for _ in range(1_000_000):
                    if (await receive())["type"] == "http.disconnect":
                        break
            gone.set()

        watcher = asyncio.create_task(watch())
        loop = asyncio.get_running_loop()
        ends = loop.time() + self.max_stream_seconds
        try:
            await send(
                {"type": "http.response.body", "body": b"retry: 2000\n\n", "more_body": True}
            )
            ticks = math.ceil(self.max_stream_seconds / self.interval) + 1
            for _ in range(ticks):
                if gone.is_set() or self._closed.is_set() or loop.time() >= ends:
                    break
                data = json.dumps(self.payload(), separators=(",", ":"))
                event = f"data: {data}\n\n".encode()
                await send({"type": "http.response.body", "body": event, "more_body": True})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(gone.wait(), self.interval)
            if not gone.is_set():
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the connection broke while sending
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


def app(
    clients: SupportsSnapshot | Mapping[str, SupportsSnapshot],
    *,
    stats: CallStats | Mapping[str, CallStats] | None = None,
    interval: float = 1.0,
    title: str = "meshclient",
) -> Dashboard:
    """The dashboard ASGI app for one client or ``{"name": client, ...}``."""
    return Dashboard(clients, stats=stats, interval=interval, title=title)


async def _lifespan(receive: Receive, send: Send) -> None:
    for _ in range(2):  # startup, then shutdown
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: str,
    extra: list[tuple[bytes, bytes]] | None = None,
    *,
    head: bool = False,
) -> None:
    headers = [
        (b"content-type", content_type.encode("latin-1")),
        (b"content-length", str(len(body)).encode("ascii")),
        (b"cache-control", b"no-store"),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


def _escape(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


_PAGE: Final = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>__TITLE__ dashboard</title>
<style>
:root { --bg:#0f1419; --card:#182029; --fg:#e6e6e6; --dim:#8a96a3; --ok:#3fb950;
        --warn:#d29922; --bad:#f85149; --line:#2a3541; }
* { box-sizing: border-box; }
body { margin:0; padding:1rem 1.5rem; background:var(--bg); color:var(--fg);
       font:14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; }
h1 { font-size:1.2rem; margin:0 0 .25rem; }
h2 { font-size:1rem; margin:0; }
header { display:flex; gap:1rem; align-items:baseline; margin-bottom:1rem; }
#status { color:var(--dim); }
#status.live { color:var(--ok); }
#status.down { color:var(--bad); }
.client > h2 { color:var(--dim); font-weight:normal; margin:1rem 0 .5rem; }
.services { display:grid; grid-template-columns:repeat(auto-fill, minmax(420px, 1fr)); gap:1rem; }
.card { background:var(--card); border:1px solid var(--line); border-radius:8px;
        padding:.8rem 1rem; }
.card .sub { color:var(--dim); font-size:.8rem; }
.metrics { display:grid; grid-template-columns:repeat(4, 1fr); gap:.5rem; margin:.7rem 0; }
.metric .v { font-size:1.3rem; font-variant-numeric:tabular-nums; }
.metric .k { color:var(--dim); font-size:.75rem; }
table { width:100%; border-collapse:collapse; font-variant-numeric:tabular-nums; }
th, td { text-align:right; padding:.2rem .4rem; border-top:1px solid var(--line);
         white-space:nowrap; }
th:first-child, td:first-child { text-align:left; }
th { color:var(--dim); font-weight:normal; font-size:.75rem; }
.ok { color:var(--ok); } .warn { color:var(--warn); } .bad { color:var(--bad); }
.err { color:var(--bad); }
.bar { display:inline-block; height:.5rem; background:#3b82f6; border-radius:2px;
       vertical-align:middle; }
</style>
</head>
<body>
<header>
  <h1>__TITLE__ dashboard</h1>
  <span id="status">connecting…</span>
  <span class="sub">updates: <span id="updates">0</span></span>
</header>
<main id="clients"></main>
<script>
"use strict";
const KNOWN_SERVICE = new Set(["balancer", "retry_budget", "endpoints", "breaker", "bulkhead"]);
const KNOWN_ENDPOINT = new Set(["address", "weight", "outstanding", "latency_estimate",
                                "latency_samples", "health"]);
const DASH = "\u2013";
let updates = 0;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : String(c));
  return node;
}
function isNum(v) { return typeof v === "number" && isFinite(v); }
function ms(v) { return isNum(v) ? (v * 1000).toFixed(v < 0.01 ? 2 : 1) + " ms" : DASH; }
function pct(v) { return isNum(v) ? (v * 100).toFixed(1) + " %" : DASH; }
function num(v, d) { return isNum(v) ? v.toFixed(d === undefined ? 0 : d) : DASH; }
function text(v) {
  if (v === null || v === undefined) return DASH;
  if (isNum(v)) return Number.isInteger(v) ? String(v) : v.toFixed(3);
  if (typeof v === "object") {
    if ("state" in v) return String(v.state);
    return Object.entries(v).filter(([, x]) => typeof x !== "object")
      .map(([k, x]) => k + "=" + text(x)).join(" ") || "…";
  }
  return String(v);
}
function healthOf(svc, ep) {
  // Per endpoint ("health"), or per service ("health.out_of_rotation" lists the endpoints
  // that are not admitted); absent when the snapshot has no health at all.
  if (ep.health !== undefined) return ep.health;
  const h = svc.health;
  if (!h || typeof h !== "object") return undefined;
  const out = Array.isArray(h.out_of_rotation) ? h.out_of_rotation : [];
  return out.find(e => e && e.address === ep.address) || "admitted";
}
function healthText(svc, ep) {
  const h = healthOf(svc, ep);
  if (h === undefined || h === null) return [DASH, ""];
  const s = text(h);
  const cls = /eject|open|down|unhealthy|fail/i.test(s) ? "bad" :
              /prob|half|degrad|suspect/i.test(s) ? "warn" : "ok";
  return [s, cls];
}
function metric(key, value, field, cls) {
  return el("div", {class: "metric"},
            el("div", {class: "v " + (cls || ""), "data-field": field}, value),
            el("div", {class: "k"}, key));
}
function serviceCard(name, svc, stats) {
  const card = el("section", {class: "card", "data-service": name});
  card.append(el("h2", {}, name),
              el("div", {class: "sub"}, svc.balancer ? text(svc.balancer) : ""));
  const st = stats || {};
  const sr = st.success_rate;
  const srCls = !isNum(sr) ? "" : sr >= 0.999 ? "ok" : sr >= 0.95 ? "warn" : "bad";
  const budget = svc.retry_budget || {};
  card.append(el("div", {class: "metrics"},
    metric("requests/s", num(st.rate, 1), "rate"),
    metric("success", pct(sr), "success", srCls),
    metric("p50", ms(st.p50), "p50"),
    metric("p99", ms(st.p99), "p99"),
    metric("calls", num(st.calls), "calls"),
    metric("retry budget", num(budget.balance), "budget"),
    metric("retries (window)", num(budget.withdrawals), "withdrawals"),
    metric("breaker", svc.breaker === undefined ? DASH : text(svc.breaker), "breaker")));
  const extraService = Object.keys(svc).filter(k => !KNOWN_SERVICE.has(k));
  if (svc.bulkhead !== undefined) extraService.unshift("bulkhead");
  if (extraService.length) {
    card.append(el("div", {class: "sub", "data-field": "service-extra"},
      extraService.map(k => k + ": " + text(svc[k])).join(" · ")));
  }
  const eps = Array.isArray(svc.endpoints) ? svc.endpoints : [];
  const extra = [];
  for (const ep of eps) for (const k of Object.keys(ep))
    if (!KNOWN_ENDPOINT.has(k) && !extra.includes(k) && typeof ep[k] !== "object") extra.push(k);
  const totalOut = eps.reduce((a, ep) => a + (isNum(ep.outstanding) ? ep.outstanding : 0), 0);
  const head = el("tr", {}, el("th", {}, "endpoint"), el("th", {}, "load"), el("th", {}, ""),
                  el("th", {}, "latency est."), el("th", {}, "samples"), el("th", {}, "health"),
                  ...extra.map(k => el("th", {}, k.replace(/_/g, " "))));
  const rows = eps.map(ep => {
    const [h, cls] = healthText(svc, ep);
    const share = totalOut > 0 && isNum(ep.outstanding) ? ep.outstanding / totalOut : 0;
    return el("tr", {"data-endpoint": text(ep.address)},
      el("td", {}, text(ep.address)),
      el("td", {"data-field": "outstanding"}, num(ep.outstanding)),
      el("td", {}, el("span", {class: "bar", style: "width:" + Math.round(share * 60) + "px"})),
      el("td", {"data-field": "latency"}, ms(ep.latency_estimate)),
      el("td", {"data-field": "samples"}, num(ep.latency_samples)),
      el("td", {class: cls, "data-field": "health"}, h),
      ...extra.map(k => el("td", {}, text(ep[k]))));
  });
  card.append(el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows)));
  return card;
}
function render(doc) {
  const root = document.getElementById("clients");
  const frag = document.createDocumentFragment();
  for (const c of doc.clients || []) {
    const box = el("div", {class: "client", "data-client": c.name});
    box.append(el("h2", {}, c.name));
    if (c.error) box.append(el("div", {class: "err"}, c.error));
    const services = (c.snapshot && c.snapshot.services) || {};
    const stats = c.stats || {};
    const grid = el("div", {class: "services"});
    const names = Object.keys(services);
    for (const s of Object.keys(stats)) if (!names.includes(s)) names.push(s);
    for (const s of names) grid.append(serviceCard(s, services[s] || {}, stats[s]));
    box.append(grid);
    frag.append(box);
  }
  root.replaceChildren(frag);
  updates += 1;
  document.getElementById("updates").textContent = String(updates);
}
function connect() {
  const status = document.getElementById("status");
  const source = new EventSource("events");
  source.onopen = () => { status.textContent = "live"; status.className = "live"; };
  source.onmessage = (event) => {
    try { render(JSON.parse(event.data)); }
    catch (err) { status.textContent = "bad data: " + err; status.className = "down"; }
  };
  source.onerror = () => { status.textContent = "reconnecting…"; status.className = "down"; };
}
connect();
</script>
</body>
</html>
"""
