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
state, not call history. ``CallStats`` also keeps a time series per service (one point per
``step`` seconds over the last ``history`` seconds: request rate, success rate, p99), which
the page draws as inline SVG charts, the picture of the Hystrix dashboard. The page shows
fields it does not know (as ``name=value`` in a last column that wraps), so it keeps working
as the snapshot grows, and no table grows wider than its card.

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
#: Seconds of time series kept per service (the charts' width), and seconds per point.
DEFAULT_HISTORY: Final = 300.0
DEFAULT_STEP: Final = 1.0
#: Latency histogram of one time-series point: bins grow by 5 % from 100 µs, so a p99 read
#: from it is at most 5 % high (and never above the slowest call of the point).
_BIN_BASE: Final = 1e-4
_BIN_GROWTH: Final = math.log(1.05)
_MAX_BIN: Final = 400  # 1e-4 * 1.05**400 s: about 8 days, past any sane latency


def _bin(seconds: float) -> int:
    if not seconds > _BIN_BASE:  # also NaN
        return 0
    return min(_MAX_BIN, math.ceil(math.log(seconds / _BIN_BASE) / _BIN_GROWTH))


def _bin_top(index: int) -> float:
    return _BIN_BASE * math.exp(index * _BIN_GROWTH)


class _Point:
    """One step of one service's time series: calls, successes, a latency histogram."""

    __slots__ = ("bins", "calls", "index", "ok", "slowest")

    def __init__(self, index: int) -> None:
        self.index = index
        self.calls = 0
        self.ok = 0
        self.slowest = 0.0
        self.bins: dict[int, int] = {}

    def add(self, ok: bool, seconds: float) -> None:
        self.calls += 1
        self.ok += ok
        if seconds > self.slowest:
            self.slowest = seconds
        b = _bin(seconds)
        self.bins[b] = self.bins.get(b, 0) + 1

    def p99(self) -> float | None:
        if not self.calls:
            return None
        rank = max(1, math.ceil(0.99 * self.calls))
        seen = 0
        for b in sorted(self.bins):
            seen += self.bins[b]
            if seen >= rank:
                return min(_bin_top(b), self.slowest)
        return self.slowest  # pragma: no cover - the bins hold every call


class SupportsSnapshot(Protocol):
    """Anything with ``snapshot()``: ``meshclient.Client``, ``AsyncClient``, a mesh transport."""

    def snapshot(self) -> dict[str, Any]: ...


class CallStats:
    """Outcomes of logical calls per service over a sliding window; thread-safe.

    ``record(service, ok, seconds)`` once per call (after all its attempts); ``summary()``
    gives, per service, the request rate (calls/s over the window), the success rate and
    latency percentiles (seconds) of the calls in the window, and totals since the start;
    ``series()`` gives the time series the dashboard draws: one point per ``step`` seconds
    over the last ``history`` seconds (memory per service is bounded by ``history / step``
    points of at most a few hundred histogram bins each, whatever the call rate).
    """

    def __init__(
        self,
        *,
        window: float = DEFAULT_WINDOW,
        max_samples: int = MAX_SAMPLES,
        history: float = DEFAULT_HISTORY,
        step: float = DEFAULT_STEP,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (isinstance(window, int | float) and math.isfinite(window) and window > 0):
            raise ValueError(f"CallStats.window must be seconds > 0, got {window!r}")
        if not (isinstance(max_samples, int) and max_samples > 0):
            raise ValueError(f"CallStats.max_samples must be an int > 0, got {max_samples!r}")
        if not (isinstance(step, int | float) and math.isfinite(step) and 0.1 <= step <= 60):
            raise ValueError(f"CallStats.step must be seconds in [0.1, 60], got {step!r}")
        if not (
            isinstance(history, int | float)
            and math.isfinite(history)
            and step <= history <= 10_000 * step
        ):
            raise ValueError(
                f"CallStats.history must be seconds in [step, 10 000 x step], got {history!r}"
            )
        self._window = float(window)
        self._max = max_samples
        self._step = float(step)
        self._points = max(1, round(history / step))
        self._clock = clock
        self._started = clock()
        self._lock = threading.Lock()
        self._calls: dict[str, deque[tuple[float, bool, float]]] = {}
        self._totals: dict[str, list[int]] = {}
        self._series: dict[str, deque[_Point]] = {}

    def record(self, service: str, ok: bool, seconds: float) -> None:
        """One finished call to ``service``: whether it succeeded and how long it took."""
        now = self._clock()
        index = math.floor(now / self._step)
        with self._lock:
            calls = self._calls.get(service)
            if calls is None:
                calls = self._calls[service] = deque(maxlen=self._max)
                self._totals[service] = [0, 0]
                self._series[service] = deque(maxlen=self._points + 1)
            calls.append((now, ok, seconds))
            totals = self._totals[service]
            totals[0] += 1
            totals[1] += ok
            points = self._series[service]
            if not points or points[-1].index < index:
                points.append(_Point(index))
            points[-1].add(ok, seconds)

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

    def series(self) -> dict[str, dict[str, Any]]:
        """Per service: ``step`` (seconds per point) and ``points``, oldest first.

        A point is ``[age, rate, success_rate, p99]``: ``age`` is how many seconds before now
        its step ended (0 for the last complete step), ``rate`` calls/s, ``success_rate`` in
        [0, 1] and ``p99`` seconds, both ``None`` for a step without calls. Only complete steps
        are given, from the first one with a call; steps without calls count as rate 0.
        """
        now = self._clock()
        current = math.floor(now / self._step)
        first_wanted = current - self._points
        out: dict[str, dict[str, Any]] = {}
        with self._lock:
            for service, points in self._series.items():
                by_index = {p.index: p for p in points if first_wanted <= p.index < current}
                rows: list[list[float | None]] = []
                if by_index:
                    for index in range(min(by_index), current):
                        age = (current - 1 - index) * self._step
                        point = by_index.get(index)
                        if point is None:
                            rows.append([age, 0.0, None, None])
                        else:
                            rows.append(
                                [age, point.calls / self._step, point.ok / point.calls, point.p99()]
                            )
                out[service] = {"step": self._step, "points": rows}
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
            entry["series"] = stats.series() if stats is not None else None
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
        --warn:#d29922; --bad:#f85149; --line:#2a3541; --plot:#111a22; --rate:#58a6ff;
        --p99:#d2a8ff; }
* { box-sizing: border-box; }
body { margin:0; padding:1rem 1.5rem; background:var(--bg); color:var(--fg);
       font:14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; }
h1 { font-size:1.2rem; margin:0 0 .25rem; }
h2 { font-size:1rem; margin:0; overflow-wrap:anywhere; }
header { display:flex; flex-wrap:wrap; gap:1rem; align-items:baseline; margin-bottom:1rem; }
#status { color:var(--dim); }
#status.live { color:var(--ok); }
#status.down { color:var(--bad); }
.client > h2 { color:var(--dim); font-weight:normal; margin:1rem 0 .5rem; }
.services { display:grid; gap:1rem;
            grid-template-columns:repeat(auto-fill, minmax(min(100%, 540px), 1fr)); }
.card { background:var(--card); border:1px solid var(--line); border-radius:8px;
        padding:.8rem 1rem; min-width:0; }
.card .sub { color:var(--dim); font-size:.8rem; overflow-wrap:anywhere; }
.metrics { display:grid; grid-template-columns:repeat(4, minmax(0, 1fr)); gap:.5rem;
           margin:.7rem 0; }
.metric .v { font-size:1.3rem; font-variant-numeric:tabular-nums; overflow-wrap:anywhere; }
.metric .k { color:var(--dim); font-size:.75rem; }
.charts { display:grid; grid-template-columns:repeat(3, minmax(0, 1fr)); gap:.6rem;
          margin:.2rem 0 .8rem; }
.chart .k { display:flex; justify-content:space-between; gap:.3rem; color:var(--dim);
            font-size:.75rem; }
.chart .k b { color:var(--fg); font-weight:normal; font-variant-numeric:tabular-nums; }
.chart svg { display:block; width:100%; height:56px; background:var(--plot);
             border-radius:4px; }
.chart svg path { fill:none; stroke-width:1.5; stroke-linejoin:round; stroke-linecap:round;
                  vector-effect:non-scaling-stroke; }
.chart .axis { display:flex; justify-content:space-between; color:var(--dim);
               font-size:.7rem; }
table { width:100%; border-collapse:collapse; font-variant-numeric:tabular-nums; }
th, td { text-align:right; padding:.2rem .4rem; border-top:1px solid var(--line);
         white-space:nowrap; }
th:first-child, td:first-child { text-align:left; }
td.text { white-space:normal; overflow-wrap:break-word; }
td.more { text-align:left; font-size:.8rem; color:var(--dim); overflow-wrap:anywhere; }
td.addr { white-space:normal; overflow-wrap:anywhere; min-width:7em; }
th { color:var(--dim); font-weight:normal; font-size:.75rem; white-space:normal; }
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
const KNOWN_SERVICE = new Set(["balancer", "retry_budget", "endpoints", "breaker", "bulkhead",
                               "discovery", "health"]);
const KNOWN_ENDPOINT = new Set(["address", "weight", "outstanding", "latency_estimate",
                                "latency_samples", "health"]);
const DASH = "\\u2013";
const W = 300, H = 56;  // the charts' viewBox; CSS stretches it to the card's width
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
function ago(s) { return s >= 120 ? Math.round(s / 60) + " min" : Math.round(s) + " s"; }
function text(v) {
  if (v === null || v === undefined) return DASH;
  if (isNum(v)) return Number.isInteger(v) ? String(v) : v.toFixed(3);
  if (typeof v === "object") {
    if ("state" in v)
      return String(v.state) + (v.reason ? " (" + String(v.reason).replace(/_/g, " ") + ")" : "");
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
// One time series as an inline SVG line (nothing fetched): x is the age of each point,
// now at the right edge; a step without a value (no calls) breaks the line.
function chart(kind, title, series, column, fmt, color, scale) {
  const points = (series && Array.isArray(series.points)) ? series.points : [];
  const step = series && isNum(series.step) ? series.step : 1;
  const values = points.filter(p => isNum(p[column]));
  const oldest = points.length ? points[0][0] + step : 0;
  const span = Math.max(10 * step, oldest);  // grows with the history, up to all of it
  const [lo, hi] = scale(values.map(p => p[column]));
  let d = "", open = false;
  for (const p of points) {
    const v = p[column];
    if (!isNum(v)) { open = false; continue; }
    const x = (W - (p[0] / span) * W).toFixed(1);
    const y = (H - 2 - ((v - lo) / (hi - lo || 1)) * (H - 4)).toFixed(1);
    d += (open ? "L" : "M") + x + " " + y + (open ? "" : " L" + x + " " + y) + " ";
    open = true;
  }
  const last = values.length ? values[values.length - 1][column] : undefined;
  const box = el("div", {class: "chart"});
  box.append(el("div", {class: "k"}, el("span", {}, title),
                el("b", {"data-field": "chart-" + kind}, fmt(last))));
  const holder = el("div", {});
  // Markup from numbers only: parsing it puts the elements in the SVG namespace.
  holder.innerHTML = '<svg data-chart="' + kind + '" data-points="' + values.length +
    '" viewBox="0 0 ' + W + " " + H + '" preserveAspectRatio="none" role="img">' +
    '<path stroke="' + color + '" d="' + d.trim() + '"></path></svg>';
  box.append(holder.firstChild,
             el("div", {class: "axis"}, el("span", {}, "\\u2212" + ago(span)),
                el("span", {}, "max " + fmt(hi)), el("span", {}, "now")));
  return box;
}
function upFromZero(vs) {
  const top = vs.length ? Math.max(...vs) : 0;
  return [0, top > 0 ? top * 1.1 : 1];
}
function successScale(vs) {
  const low = vs.length ? Math.min(...vs) : 1;
  return [Math.min(0.9, Math.floor(low * 10) / 10), 1];
}
function discoveryText(d) {
  if (!d || typeof d !== "object") return "";
  const parts = [String(d.source || "discovery")];
  if (isNum(d.endpoints)) parts.push(d.endpoints + " endpoints");
  if (d.ready === false) parts.push("waiting for a first set");
  if (isNum(d.errors) && d.errors > 0) parts.push(d.errors + " errors");
  return parts.join(", ");
}
function healthSummary(h) {
  if (!h || typeof h !== "object") return ["", ""];
  const parts = [];
  if (isNum(h.available) && isNum(h.endpoints))
    parts.push("available " + h.available + "/" + h.endpoints);
  if (isNum(h.ejected)) parts.push("ejected " + h.ejected);
  if (h.panic) parts.push("PANIC: every endpoint in use");
  const cls = h.panic ? "bad" : isNum(h.ejected) && h.ejected > 0 ? "warn" : "";
  return [parts.join(" \\u00b7 "), cls];
}
function serviceCard(name, svc, stats, series) {
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
  if (series) {
    card.append(el("div", {class: "charts"},
      chart("rate", "requests/s", series, 1, v => num(v, 1), "var(--rate)", upFromZero),
      chart("success", "success", series, 2, pct, "var(--ok)", successScale),
      chart("p99", "p99 latency", series, 3, ms, "var(--p99)", upFromZero)));
  }
  const disc = discoveryText(svc.discovery);
  const [hs, hsCls] = healthSummary(svc.health);
  if (disc || hs) {
    card.append(el("div", {class: "sub " + hsCls, "data-field": "health-summary"},
                   [disc, hs].filter(Boolean).join(" \\u00b7 ")));
  }
  const extraService = Object.keys(svc).filter(k => !KNOWN_SERVICE.has(k));
  if (svc.bulkhead !== undefined) extraService.unshift("bulkhead");
  if (extraService.length) {
    card.append(el("div", {class: "sub", "data-field": "service-extra"},
      extraService.map(k => k + ": " + text(svc[k])).join(" \\u00b7 ")));
  }
  const eps = Array.isArray(svc.endpoints) ? svc.endpoints : [];
  // Fields the page does not know go in one last column as name=value, which wraps, so a
  // snapshot that grows never makes the table wider than its card.
  const more = eps.some(ep => Object.keys(ep).some(k => !KNOWN_ENDPOINT.has(k)));
  const totalOut = eps.reduce((a, ep) => a + (isNum(ep.outstanding) ? ep.outstanding : 0), 0);
  const head = el("tr", {}, el("th", {}, "endpoint"), el("th", {}, "load"),
                  el("th", {}, "latency est."), el("th", {}, "samples"), el("th", {}, "health"),
                  ...(more ? [el("th", {}, "more")] : []));
  const rows = eps.map(ep => {
    const [h, cls] = healthText(svc, ep);
    const share = totalOut > 0 && isNum(ep.outstanding) ? ep.outstanding / totalOut : 0;
    const extra = Object.keys(ep).filter(k => !KNOWN_ENDPOINT.has(k))
      .map(k => k + "=" + text(ep[k])).join(" ");
    return el("tr", {"data-endpoint": text(ep.address)},
      el("td", {class: "addr"}, text(ep.address)),
      el("td", {"data-field": "outstanding"},
         el("span", {class: "bar", style: "width:" + Math.round(share * 40) + "px"}),
         " " + num(ep.outstanding)),
      el("td", {"data-field": "latency"}, ms(ep.latency_estimate)),
      el("td", {"data-field": "samples"}, num(ep.latency_samples)),
      el("td", {class: "text " + cls, "data-field": "health"}, h),
      ...(more ? [el("td", {class: "text more", "data-field": "more"}, extra)] : []));
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
    const series = c.series || {};
    const grid = el("div", {class: "services"});
    const names = Object.keys(services);
    for (const s of Object.keys(stats)) if (!names.includes(s)) names.push(s);
    for (const s of names)
      grid.append(serviceCard(s, services[s] || {}, stats[s], c.series ? series[s] || {} : null));
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
