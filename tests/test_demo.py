"""Specification of the demo (``python -m meshclient.demo``): it runs for the time asked, ends
with the side-by-side summary, and leaves no process behind, also when interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from meshclient.demo import _view
from meshclient.demo._mesh import InstanceSpec, default_specs

from helpers import eventually, reap


def start_demo(log: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "COLUMNS")}
    env["COLUMNS"] = "120"
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "meshclient.demo", *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


def children_of(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields follow the last ')'.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(log: Path, text: str, proc: subprocess.Popen[bytes], limit: float) -> None:
    """Wait until the demo printed ``text``; fail if it exits first or after ``limit`` s."""

    def printed() -> bool:
        assert proc.poll() is None, log.read_text(errors="replace")
        return text in log.read_text(errors="replace")

    eventually(printed, f"the demo printed {text!r}", limit)


def exit_status(proc: subprocess.Popen[bytes], log: Path, limit: float, what: str) -> int:
    """The demo's exit status; fail with its output if it runs ``limit`` s more (a hang)."""
    try:
        return proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what}: still running after {limit} s:\n{log.read_text(errors='replace')}")


def test_default_mesh_has_a_slow_a_flaky_and_a_dying_instance() -> None:
    specs = default_specs()
    users = [s for s in specs if s.service == "users"]
    orders = [s for s in specs if s.service == "orders"]
    assert len(users) == 3
    assert len(orders) == 2
    assert any(s.delay >= 0.05 for s in users)
    assert any(s.fail_rate >= 0.3 for s in users)
    assert any(s.down is not None for s in orders)


def test_demo_runs_for_the_duration_and_ends_with_the_summary(tmp_path: Path) -> None:
    log = tmp_path / "demo.log"
    began = time.monotonic()
    proc = start_demo(log, "--duration", "3", "--no-live")
    try:
        status = exit_status(proc, log, 60, "a 3 s demo")
    finally:
        reap(proc)
    # A lower bound, so a slow machine cannot fail it: the traffic ran for the 3 s asked.
    assert time.monotonic() - began >= 3
    output = log.read_text(errors="replace")
    assert status == 0, output
    for text in (
        "for 3 s",
        "dashboard: http://127.0.0.1:",
        "summary",
        "success rate",
        "latency p99",
        "load amplification",
        "httpx + tenacity",
        "meshclient",
        "orders-2 died",
    ):
        assert text in output, output
    assert "Traceback" not in output, output


def test_ctrl_c_stops_promptly_and_leaves_no_process(tmp_path: Path) -> None:
    log = tmp_path / "demo.log"
    proc = start_demo(log, "--duration", "60", "--no-live")
    try:
        wait_for(log, "calls/s through each client", proc, limit=30)
        children = children_of(proc.pid)
        assert len(children) >= 10, children  # 2 meshes x 5 backend processes
        proc.send_signal(signal.SIGINT)
        # Exit status 130 and the "(interrupted)" summary show that SIGINT, not the end of
        # the 60 s run, stopped it; the limit only bounds a demo that ignores SIGINT.
        status = exit_status(proc, log, 30, "the demo after SIGINT")
        assert status == 130, log.read_text(errors="replace")
    finally:
        reap(proc)
    assert [pid for pid in children if alive(pid)] == []
    output = log.read_text(errors="replace")
    assert "summary (interrupted)" in output, output
    assert "Traceback" not in output, output


def test_summary_rows_compare_the_clients_side_by_side() -> None:
    rows = _view.plain_table(["", "a", "b"], [["calls", "10", "12"], ["p99", "1 ms", "2 ms"]])
    lines = rows.splitlines()
    assert lines[0].split() == ["a", "b"]
    assert lines[2].split() == ["calls", "10", "12"]


def test_instance_spec_is_a_plain_value() -> None:
    spec = InstanceSpec("users", "u", "healthy")
    assert (spec.delay, spec.fail_rate, spec.down) == (0.0, 0.0, None)


def test_health_is_read_per_endpoint_or_per_service() -> None:
    endpoint = {"address": "a:1"}
    assert _view.with_health({}, endpoint) == endpoint  # no health reported: left alone
    service = {"health": {"out_of_rotation": [{"address": "a:1", "state": "ejected"}]}}
    assert _view.health_text(_view.with_health(service, endpoint)) == "ejected"
    assert _view.health_text(_view.with_health(service, {"address": "b:2"})) == "admitted"
    assert _view.health_text({"health": "probing"}) == "probing"
    assert _view.health_text(None) == "-"
