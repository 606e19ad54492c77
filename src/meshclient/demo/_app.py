"""``python -m meshclient.demo``: the command line, the run and the clean-up."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..dashboard import Dashboard
from . import _view
from ._mesh import HOST, Mesh, default_specs
from ._traffic import Side, drive, httpx_side, mesh_side

__all__ = ["main"]

#: Seconds between live-view refreshes and between plain progress lines.
LIVE_REFRESH = 0.5
PLAIN_EVERY = 2.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m meshclient.demo",
        description=(
            "Start a small mesh on 127.0.0.1 (users: 3 instances, one slow, one flaky; "
            "orders: 2 instances, one dies mid-run and comes back) and send the same "
            "open-loop traffic through plain httpx with tenacity retries and through "
            "meshclient, then compare them."
        ),
    )
    parser.add_argument("--duration", type=float, default=20.0, help="seconds (default 20)")
    parser.add_argument(
        "--rate", type=float, default=100.0, help="calls/s through each client (default 100)"
    )
    parser.add_argument(
        "--no-live", action="store_true", help="plain progress lines instead of a live table"
    )
    parser.add_argument(
        "--no-dashboard", action="store_true", help="do not serve the live dashboard"
    )
    parser.add_argument(
        "--dashboard-port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)"
    )
    return parser


class _DashboardServer:
    """uvicorn serving the dashboard from a thread on 127.0.0.1."""

    def __init__(self, dashboard: Dashboard, port: int) -> None:
        import uvicorn

        self.dashboard = dashboard
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((HOST, port))
        self.url = f"http://{HOST}:{self._sock.getsockname()[1]}/"
        config = uvicorn.Config(
            dashboard,
            log_level="error",
            lifespan="off",
            timeout_graceful_shutdown=1,
            access_log=False,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._sock]},
            name="meshclient-demo-dashboard",
            daemon=True,
        )

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and self._thread.is_alive():
            if time.monotonic() > deadline:
                raise RuntimeError("the dashboard server did not start within 10 s")
            time.sleep(0.01)

    def stop(self) -> None:
        self.dashboard.close()
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(5)
        self._sock.close()


def _ejection_counter(sides: Sequence[Side]) -> Callable[[], dict[str, int | None]]:
    """Samples each snapshot; counts ejections if the snapshot reports endpoint health.

    Prefers a counter the snapshot keeps (``ejections``); otherwise counts transitions into
    an ejected state between samples. ``None``: the snapshot has no health fields (yet).
    """
    seen: dict[str, dict[str, bool]] = {s.label: {} for s in sides}
    transitions: dict[str, int] = dict.fromkeys(seen, 0)
    counters: dict[str, int | None] = dict.fromkeys(seen)
    reported: dict[str, bool] = dict.fromkeys(seen, False)

    def sample() -> dict[str, int | None]:
        for side in sides:
            snapshot = getattr(side.client, "snapshot", None)
            if snapshot is None:
                continue
            with contextlib.suppress(Exception):
                total: int | None = None
                for service in snapshot().get("services", {}).values():
                    for ep in (_view.with_health(service, e) for e in service["endpoints"]):
                        if "ejections" in ep:
                            total = (total or 0) + int(ep["ejections"])
                        health = ep.get("health")
                        if health is None:
                            continue
                        reported[side.label] = True
                        ejected = "eject" in _view.health_text(ep).lower()
                        address = str(ep.get("address"))
                        if ejected and not seen[side.label].get(address, False):
                            transitions[side.label] += 1
                        seen[side.label][address] = ejected
                if total is not None:
                    reported[side.label] = True
                    counters[side.label] = max(total, counters[side.label] or 0)
        return {
            label: (counters[label] if counters[label] is not None else transitions[label])
            if reported[label]
            else None
            for label in seen
        }

    return sample


@contextlib.contextmanager
def _live_view(enabled: bool, render: Callable[[], Any]) -> Iterator[Callable[[], None] | None]:
    """A ``rich`` Live display (transient) if ``enabled``; yields its refresh function."""
    if not enabled:
        yield None
        return
    from rich.live import Live

    with Live(render(), transient=True, auto_refresh=False) as live:
        yield lambda: live.update(render(), refresh=True)


def _rich_available() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def _render_live(sides: Sequence[Side], started: float, duration: float, phase: list[str]) -> Any:
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    elapsed = min(time.perf_counter() - started, duration)
    bar = Table.grid(padding=(0, 1))
    bar.add_row(
        ProgressBar(total=duration, completed=elapsed, width=40),
        Text(f"{elapsed:4.1f}/{duration:.0f} s"),
        Text(phase[-1] if phase else "", style="yellow"),
    )
    table = Table(title="per endpoint (last 3 s)", title_justify="left")
    for column in ("endpoint", "role", "state"):
        table.add_column(column)
    with_health = []
    for side in sides:
        has_snapshot = getattr(side.client, "snapshot", None) is not None
        with_health.append(has_snapshot)
        table.add_column(f"{side.label}\nshare", justify="right")
        table.add_column("latency" if not has_snapshot else "latency est.", justify="right")
        if has_snapshot:
            table.add_column("health", justify="right")
    for row in _view.endpoint_rows(sides, elapsed):
        if row[2] == "DOWN":
            row[2] = "[red]DOWN[/red]"
        table.add_row(*row)
    lines = Text(_view.progress_line(elapsed, duration, sides))
    return Group(bar, table, lines)


def _print_summary(summaries: list[_view.Summary], interrupted: bool, rich_ok: bool) -> None:
    title = "summary" + (" (interrupted)" if interrupted else "")
    header = ["", *(s.label for s in summaries)]
    rows = _view.summary_rows(summaries)
    if rich_ok:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, title_justify="left")
        table.add_column("")
        for s in summaries:
            table.add_column(s.label, justify="right")
        for row in rows:
            table.add_row(*row)
        Console().print(table)
    else:
        print(f"\n{title}\n" + _view.plain_table(header, rows))
    print(
        "load amplification = requests the backends received / calls made; "
        "latency counts from each call's scheduled start"
    )
    for s in summaries:
        if s.errors:
            kinds = ", ".join(f"{k} x{n}" for k, n in s.errors.most_common(4))
            print(f"{s.label} failures: {kinds}")


async def _run(
    args: argparse.Namespace,
    sides: list[Side],
    live: bool,
    rich_ok: bool,
) -> tuple[bool, dict[str, int | None]]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    interrupted = False

    def on_signal() -> None:
        nonlocal interrupted
        interrupted = True
        stop.set()
        # A second Ctrl-C falls back to the default: KeyboardInterrupt, still cleaned up.
        loop.remove_signal_handler(signal.SIGINT)

    loop.add_signal_handler(signal.SIGINT, on_signal)
    loop.add_signal_handler(signal.SIGTERM, on_signal)
    # Announced only now: a Ctrl-C from here on ends the run with its summary.
    print(
        f"sending {args.rate:.0f} calls/s through each client for {args.duration:g} s "
        "(3 of 4 to users, 1 of 4 to orders)",
        flush=True,
    )
    phase: list[str] = []
    started = time.perf_counter()
    duration = args.duration

    def on_event(at: float, message: str) -> None:
        phase.append(message)
        if not live:
            print(f"[{at:5.1f} s] {message}", flush=True)

    schedule: list[tuple[float, Callable[[], None], str]] = []
    for instance in sides[0].mesh.instances:
        down = instance.spec.down
        if down is None:
            continue
        name = instance.spec.name
        meshes = [side.mesh for side in sides]

        def kill(name: str = name, meshes: list[Mesh] = meshes) -> None:
            for mesh in meshes:
                mesh.kill(name)

        def revive(name: str = name, meshes: list[Mesh] = meshes) -> None:
            for mesh in meshes:
                mesh.revive(name)

        schedule.append((down[0] * duration, kill, f"{name} died (connections refused)"))
        schedule.append((down[1] * duration, revive, f"{name} is back"))

    sample_ejections = _ejection_counter(sides)
    ejections: dict[str, int | None] = {}
    with _live_view(live, lambda: _render_live(sides, started, duration, phase)) as refresh:

        async def ticker() -> None:
            last_plain = 0.0
            for _ in range(int(duration / LIVE_REFRESH) + 1000):
                await asyncio.sleep(LIVE_REFRESH)
                ejections.update(sample_ejections())
                if refresh is not None:
                    refresh()
                elapsed = time.perf_counter() - started
                if refresh is None and elapsed - last_plain >= PLAIN_EVERY:
                    last_plain = elapsed
                    print(_view.progress_line(elapsed, duration, sides), flush=True)

        ticking = asyncio.create_task(ticker())
        try:
            await drive(
                sides,
                rate=args.rate,
                duration=duration,
                schedule=schedule,
                on_event=on_event,
                stop=stop,
            )
        finally:
            ticking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticking
            ejections.update(sample_ejections())
            for side in sides:
                with contextlib.suppress(Exception):
                    await side.close()
    with contextlib.suppress(ValueError, RuntimeError):
        loop.remove_signal_handler(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGTERM)
    return interrupted, ejections


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not 0 < args.duration <= 3600:
        _parser().error(f"--duration must be in (0, 3600] seconds, got {args.duration}")
    if not 1 <= args.rate <= 2000:
        _parser().error(f"--rate must be in [1, 2000] calls/s, got {args.rate}")
    rich_ok = _rich_available()
    live = rich_ok and not args.no_live and sys.stdout.isatty()
    specs = default_specs()
    meshes = [Mesh("httpx", specs), Mesh("meshclient", specs)]
    server: _DashboardServer | None = None
    status = 0
    try:
        print(
            "meshclient demo: starting 2 x 5 backend processes on 127.0.0.1 "
            "(one copy of the mesh per client)",
            flush=True,
        )
        for mesh in meshes:
            mesh.start()
        sides = [httpx_side(meshes[0]), mesh_side(meshes[1])]
        for instance in meshes[0].instances:
            print(f"  {instance.spec.service:7} {instance.spec.name:9} {instance.spec.role}")
        if not args.no_dashboard:
            server = _start_dashboard(sides[1], args.dashboard_port)
        interrupted, ejections = asyncio.run(_run(args, sides, live, rich_ok))
        _print_summary(_view.summarise(sides, ejections), interrupted, rich_ok)
        status = 130 if interrupted else 0
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        status = 130
    finally:
        # Clean-up must finish: a second Ctrl-C here would leak processes.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            if server is not None:
                server.stop()
            for mesh in meshes:
                mesh.stop()
        finally:
            signal.signal(signal.SIGINT, previous)
    return status


def _start_dashboard(side: Side, port: int) -> _DashboardServer | None:
    try:
        import uvicorn  # noqa: F401
    except ImportError:
        print("dashboard: install uvicorn (pip install 'meshclient[demo]') to serve it")
        return None
    dashboard = Dashboard({side.label: side.client}, stats={side.label: side.stats})
    server = _DashboardServer(dashboard, port)
    server.start()
    print(f"dashboard: {server.url}  (live while the demo runs)", flush=True)
    return server
