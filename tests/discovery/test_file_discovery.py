"""FileDiscovery against real files: atomic renames, in-place edits, missing and broken files."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from discovery_support import CallLoop, Recorder, client_addresses, discovery_state, mesh_client

from meshclient import RoundRobin
from meshclient.discovery import Discovery, FileDiscovery
from meshclient.testing import Backend

from helpers import eventually

Record = Callable[[Discovery], Recorder]
FAST = 0.01  # seconds between checks of the file


def write_atomically(path: Path, text: str) -> None:
    """Write a sibling file, then rename it over ``path`` (what config tools do)."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    temporary.replace(path)


def users(path: Path, *entries: object) -> None:
    write_atomically(path, json.dumps({"users": list(entries)}))


def test_first_set_is_published_by_start(tmp_path: Path, record: Record) -> None:
    """A local file is read in ``start``: the service is ready before ``start`` returns."""
    path = tmp_path / "eps.json"
    users(path, "127.0.0.1:8001", {"address": "127.0.0.1", "port": 8002, "zone": "b"})
    recorder = record(FileDiscovery(path, "users", interval=FAST))
    assert recorder.addresses() == {"127.0.0.1:8001", "127.0.0.1:8002"}
    assert recorder.latest is not None
    assert recorder.latest[1].zone == "b"


def test_atomic_rename_is_picked_up(tmp_path: Path, record: Record) -> None:
    path = tmp_path / "eps.json"
    users(path, "127.0.0.1:8001")
    recorder = record(FileDiscovery(path, "users", interval=FAST))
    users(path, "127.0.0.1:8001", "127.0.0.1:8002")
    eventually(lambda: recorder.addresses() == {"127.0.0.1:8001", "127.0.0.1:8002"}, "added")
    users(path, "127.0.0.1:8002")
    eventually(lambda: recorder.addresses() == {"127.0.0.1:8002"}, "removed")


def test_same_size_in_place_edits_are_picked_up(tmp_path: Path, record: Record) -> None:
    """Two writes of equal size within one clock tick look alike to stat: content decides."""
    path = tmp_path / "eps.toml"
    path.write_text('users = ["127.0.0.1:8001"]\n')
    recorder = record(FileDiscovery(path, "users", interval=FAST))
    for port in (8002, 8003, 8004):
        path.write_text(f'users = ["127.0.0.1:{port}"]\n')
        eventually(lambda p=port: recorder.addresses() == {f"127.0.0.1:{p}"}, f"port {port}")


def test_unchanged_file_is_not_published_again(tmp_path: Path, record: Record) -> None:
    path = tmp_path / "eps.json"
    users(path, "127.0.0.1:8001")
    recorder = record(FileDiscovery(path, "users", interval=FAST))
    users(path, "127.0.0.1:8001")  # new inode, same bytes
    users(path, "127.0.0.1:8002")
    eventually(lambda: recorder.addresses() == {"127.0.0.1:8002"}, "the second change")
    assert len(recorder.sets) == 2


def test_missing_file_keeps_the_last_good_set(tmp_path: Path, record: Record) -> None:
    path = tmp_path / "eps.json"
    users(path, "127.0.0.1:8001")
    recorder = record(FileDiscovery(path, "users", interval=FAST))
    path.unlink()
    eventually(lambda: recorder.counts()[1] == 1, "the missing file reported")
    assert isinstance(recorder.errors[0], FileNotFoundError)
    users(path, "127.0.0.1:8002")
    eventually(lambda: recorder.addresses() == {"127.0.0.1:8002"}, "the file back")
    sets, errors, _ = recorder.counts()
    assert (sets, errors) == (2, 1), "one report per failure, not one per check"
    assert all(recorder.sets), "no empty set was ever published"


def test_unparsable_file_keeps_the_last_good_set(tmp_path: Path, record: Record) -> None:
    path = tmp_path / "eps.json"
    users(path, "127.0.0.1:8001")
    recorder = record(FileDiscovery(path, "users", interval=FAST))
    write_atomically(path, '{"users": ["127.0.0.1:8002"')
    eventually(lambda: recorder.counts()[1] == 1, "the broken file reported")
    assert "not valid JSON" in str(recorder.errors[0])
    write_atomically(path, '{"orders": []}')
    eventually(lambda: recorder.counts()[1] == 2, "the missing service reported")
    assert recorder.addresses() == {"127.0.0.1:8001"}
    assert len(recorder.sets) == 1


def test_missing_at_start_is_an_error_and_not_ready(tmp_path: Path, record: Record) -> None:
    path = tmp_path / "eps.json"
    recorder = record(FileDiscovery(path, "users", interval=FAST))
    assert recorder.counts() == (0, 1, 0)
    users(path, "127.0.0.1:8001")
    eventually(lambda: recorder.addresses() == {"127.0.0.1:8001"}, "the file created")


def test_invalid_entries_are_reported_and_left_out(tmp_path: Path, record: Record) -> None:
    path = tmp_path / "eps.json"
    users(path, "127.0.0.1:8001", "localhost", {"address": "127.0.0.1", "port": 8002, "weight": 0})
    recorder = record(FileDiscovery(path, "users", interval=FAST))
    assert recorder.addresses() == {"127.0.0.1:8001"}
    assert [entry for entry, _ in recorder.rejected] == [
        "localhost",
        {"address": "127.0.0.1", "port": 8002, "weight": 0},
    ]


def test_close_stops_reports_and_start_again_works(tmp_path: Path, record: Record) -> None:
    path = tmp_path / "eps.json"
    users(path, "127.0.0.1:8001")
    discovery = FileDiscovery(path, "users", interval=FAST)
    first = record(discovery)
    discovery.close()
    assert not discovery.running
    users(path, "127.0.0.1:8002")
    path.unlink()
    second = record(discovery)  # started again after close
    assert second.counts() == (0, 1, 0)
    users(path, "127.0.0.1:8003")
    eventually(lambda: second.addresses() == {"127.0.0.1:8003"}, "the second run sees changes")
    assert first.counts() == (1, 0, 0), "the closed run reported nothing more"


def test_starting_twice_without_close_is_refused(tmp_path: Path, record: Record) -> None:
    path = tmp_path / "eps.json"
    users(path, "127.0.0.1:8001")
    discovery = FileDiscovery(path, "users", interval=FAST)
    record(discovery)
    with pytest.raises(RuntimeError, match="already started"):
        record(discovery)


def test_endpoints_replaced_one_by_one_under_calls(
    tmp_path: Path, backend_factory: Callable[..., Backend]
) -> None:
    """Each endpoint is replaced by a new one while a client calls: no call fails."""
    path = tmp_path / "eps.json"
    live = [backend_factory(f"gen0-{i}") for i in range(3)]
    users(path, *(b.address for b in live))
    # Round robin: every endpoint in the set gets calls, which the test checks.
    with mesh_client(FileDiscovery(path, "users", interval=FAST), RoundRobin()) as client:
        assert discovery_state(client)["ready"]
        with CallLoop(client, "http://users/") as calls:
            for i in range(3):
                old = live.pop(0)
                new = backend_factory(f"gen1-{i}")
                live.append(new)
                users(path, *(b.address for b in live))
                wanted = {b.address for b in live}
                eventually(lambda w=wanted: client_addresses(client) == w, "the client's set")
                eventually(lambda n=new.name: calls.hits(n) > 0, f"calls reaching {new.name}")
                old.stop()  # gone from the set first, then gone for real
            eventually(lambda: calls.calls() > 300, "calls after the last change")
        assert calls.failures == []
        assert all(calls.hits(b.name) > 0 for b in live)


def test_client_sees_the_file_path_in_its_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "eps.json"
    users(path, "127.0.0.1:8001")
    with mesh_client(FileDiscovery(os.fspath(path), "users")) as client:
        state = discovery_state(client)
        assert state["source"] == f"file {path}#users"
        assert (state["ready"], state["endpoints"], state["errors"]) == (True, 1, 0)
