"""EtcdDiscovery against a real etcd 3.4 (v3 JSON gateway) on 127.0.0.1."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from discovery_support import (
    CallLoop,
    EtcdServer,
    Recorder,
    client_addresses,
    discovery_state,
    mesh_client,
)

from meshclient import RoundRobin
from meshclient.discovery import Discovery, EtcdDiscovery
from meshclient.testing import Backend, FaultProxy

from helpers import eventually

Record = Callable[[Discovery], Recorder]
QUICK: dict[str, Any] = {"backoff": 0.02, "max_backoff": 0.1, "timeout": 2.0}


def doc(port: int, **fields: Any) -> dict[str, Any]:
    return {"address": "127.0.0.1", "port": port, **fields}


def discovery(url: str, prefix: str, **options: Any) -> EtcdDiscovery:
    return EtcdDiscovery(url, prefix=prefix, **{**QUICK, **options})


@pytest.fixture
def proxy(etcd: EtcdServer) -> Iterator[FaultProxy]:
    """A fault proxy in front of etcd: cut and restore the backend's connection at will."""
    with FaultProxy(f"127.0.0.1:{etcd.client_port}", name="etcd-proxy") as started:
        yield started


def test_lists_then_follows_puts_and_deletes(
    etcd: EtcdServer, etcd_prefix: str, record: Record
) -> None:
    etcd.put(etcd_prefix + "a", doc(8001))
    etcd.put(etcd_prefix + "b", doc(8002, weight=3, zone="z", metadata={"v": "2"}))
    etcd.put(etcd_prefix[:-1] + "-other/c", doc(8009))  # beside the prefix, not under it
    recorder = record(discovery(etcd.url, etcd_prefix))
    eventually(lambda: recorder.addresses() == {"127.0.0.1:8001", "127.0.0.1:8002"}, "listed")
    assert recorder.latest is not None
    second = recorder.latest[1]
    assert (second.weight, second.zone, dict(second.metadata)) == (3, "z", {"v": "2"})
    etcd.put(etcd_prefix + "c", doc(8003))
    eventually(lambda: "127.0.0.1:8003" in (recorder.addresses() or ()), "a put")
    etcd.delete(etcd_prefix + "a")
    eventually(lambda: recorder.addresses() == {"127.0.0.1:8002", "127.0.0.1:8003"}, "a delete")
    etcd.put(etcd_prefix + "b", doc(8002, weight=5))
    eventually(lambda: recorder.latest is not None and recorder.latest[0].weight == 5, "changed")
    assert recorder.errors == []


def test_an_empty_prefix_is_an_empty_set(
    etcd: EtcdServer, etcd_prefix: str, record: Record
) -> None:
    """Nothing registered is etcd's truth: the service is ready, with no endpoints."""
    recorder = record(discovery(etcd.url, etcd_prefix))
    eventually(lambda: recorder.latest == (), "the empty set")
    etcd.put(etcd_prefix + "a", doc(8001))
    eventually(lambda: recorder.addresses() == {"127.0.0.1:8001"}, "the first registration")


def test_bad_documents_are_reported_and_left_out(
    etcd: EtcdServer, etcd_prefix: str, record: Record
) -> None:
    etcd.put(etcd_prefix + "good", doc(8001))
    etcd.put(etcd_prefix + "text", b"127.0.0.1:8002")
    etcd.put(etcd_prefix + "noport", {"address": "127.0.0.1"})
    recorder = record(discovery(etcd.url, etcd_prefix))
    eventually(lambda: recorder.addresses() == {"127.0.0.1:8001"}, "the good one listed")
    eventually(lambda: len(recorder.rejected) == 2, "both bad ones reported")
    keys = {entry["key"] for entry, _ in recorder.rejected}  # type: ignore[index]
    assert keys == {etcd_prefix + "text", etcd_prefix + "noport"}
    # A good value fixes a bad key; a bad value takes a good key out.
    etcd.put(etcd_prefix + "noport", doc(8003))
    etcd.put(etcd_prefix + "good", {"address": "127.0.0.1", "port": 70000})
    eventually(lambda: recorder.addresses() == {"127.0.0.1:8003"}, "fixed and broken")
    assert "port" in recorder.rejected[-1][1]
    assert recorder.errors == []


def test_two_keys_for_one_address_are_one_endpoint(
    etcd: EtcdServer, etcd_prefix: str, record: Record
) -> None:
    """Several workers of one server may each register it: one endpoint, first key wins."""
    etcd.put(etcd_prefix + "w1", doc(8001, weight=2))
    etcd.put(etcd_prefix + "w2", doc(8001, weight=9))
    recorder = record(discovery(etcd.url, etcd_prefix))
    eventually(lambda: recorder.latest is not None, "listed")
    assert recorder.latest is not None
    assert [(e.address, e.weight) for e in recorder.latest] == [("127.0.0.1:8001", 2)]
    etcd.delete(etcd_prefix + "w1")
    eventually(lambda: recorder.latest is not None and recorder.latest[0].weight == 9, "w2 remains")
    assert recorder.rejected == []


def test_resumes_from_the_last_revision_after_a_cut(
    etcd: EtcdServer,
    etcd_prefix: str,
    proxy: FaultProxy,
    record: Record,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Changes made while the connection was down arrive once it is back; none is lost."""
    etcd.put(etcd_prefix + "a", doc(8001))
    backend = discovery(proxy.url, etcd_prefix)
    listings = count_listings(backend, monkeypatch)
    recorder = record(backend)
    eventually(lambda: recorder.addresses() == {"127.0.0.1:8001"}, "listed")
    proxy.behave("refuse")
    eventually(lambda: len(recorder.errors) >= 2, "the cut reported")
    etcd.put(etcd_prefix + "b", doc(8002))
    etcd.delete(etcd_prefix + "a")
    assert recorder.addresses() == {"127.0.0.1:8001"}, "the last good set while cut off"
    proxy.behave()
    eventually(lambda: recorder.addresses() == {"127.0.0.1:8002"}, "caught up")
    assert all(recorder.sets), "never an empty set"
    assert listings == [1], "the watch resumed; nothing was listed again"


def count_listings(backend: EtcdDiscovery, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Numbers each full listing of the prefix the backend makes."""
    listings: list[int] = []
    original = backend._list

    def counted(*args: Any) -> int:
        listings.append(len(listings) + 1)
        return original(*args)

    monkeypatch.setattr(backend, "_list", counted)
    return listings


def test_the_resume_point_follows_the_events(
    etcd: EtcdServer,
    etcd_prefix: str,
    proxy: FaultProxy,
    record: Record,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """History compacted up to the last event seen: a reconnect resumes without listing."""
    backend = discovery(proxy.url, etcd_prefix)
    listings = count_listings(backend, monkeypatch)
    recorder = record(backend)
    eventually(lambda: recorder.latest == (), "listed")
    etcd.put(etcd_prefix + "a", doc(8001))
    eventually(lambda: recorder.addresses() == {"127.0.0.1:8001"}, "the event seen")
    etcd.put(etcd_prefix[:-1] + "-other/x", doc(8009))  # a revision outside the prefix
    etcd.compact()  # history before it is gone; the resume point (just after "a") is it
    proxy.behave("refuse")
    eventually(lambda: len(recorder.errors) >= 1, "the cut reported")
    etcd.put(etcd_prefix + "b", doc(8002))
    proxy.behave()
    eventually(lambda: recorder.addresses() == {"127.0.0.1:8001", "127.0.0.1:8002"}, "resumed")
    assert listings == [1]


def test_relists_when_the_revision_was_compacted(
    etcd: EtcdServer,
    etcd_prefix: str,
    proxy: FaultProxy,
    record: Record,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Resuming from a compacted revision gets a canceled watch: list again, watch again."""
    etcd.put(etcd_prefix + "a", doc(8001))
    backend = discovery(proxy.url, etcd_prefix)
    listings = count_listings(backend, monkeypatch)
    recorder = record(backend)
    eventually(lambda: recorder.addresses() == {"127.0.0.1:8001"}, "listed")
    proxy.behave("refuse")
    eventually(lambda: len(recorder.errors) >= 1, "the cut reported")
    etcd.put(etcd_prefix + "b", doc(8002))
    etcd.delete(etcd_prefix + "a")
    etcd.put(etcd_prefix + "c", doc(8003))
    etcd.compact()
    proxy.behave()
    eventually(lambda: recorder.addresses() == {"127.0.0.1:8002", "127.0.0.1:8003"}, "listed again")
    etcd.put(etcd_prefix + "d", doc(8004))
    eventually(lambda: "127.0.0.1:8004" in (recorder.addresses() or ()), "watching again")
    # Only the cut is an error (a reconnect may still be failing as the proxy heals), never
    # the compaction: that would be an EtcdError.
    assert all(isinstance(e, httpx.TransportError) for e in recorder.errors), recorder.errors
    assert listings == [1, 2], "listed at start and once after the compaction, no more"


def test_start_returns_at_once_when_etcd_hangs(
    etcd: EtcdServer, etcd_prefix: str, proxy: FaultProxy, record: Record
) -> None:
    proxy.behave("blackhole")
    recorder = record(discovery(proxy.url, etcd_prefix, timeout=0.3))
    assert recorder.counts() == (0, 0, 0)  # start() returned before etcd said anything
    eventually(lambda: len(recorder.errors) >= 1, "the timeout reported")
    assert type(recorder.errors[0]).__name__ == "ReadTimeout"
    proxy.behave()
    eventually(lambda: recorder.latest == (), "listed once etcd answers")


def test_tries_the_next_url(etcd: EtcdServer, etcd_prefix: str, record: Record) -> None:
    """Several URLs (members of one cluster): a dead one is skipped."""
    etcd.put(etcd_prefix + "a", doc(8001))
    with FaultProxy(f"127.0.0.1:{etcd.client_port}", mode="refuse") as dead:
        recorder = record(EtcdDiscovery([dead.url, etcd.url], etcd_prefix, **QUICK))
        eventually(lambda: recorder.addresses() == {"127.0.0.1:8001"}, "listed from the second")


def test_close_stops_a_watch_and_start_again_works(
    etcd: EtcdServer, etcd_prefix: str, record: Record
) -> None:
    etcd.put(etcd_prefix + "a", doc(8001))
    backend = discovery(etcd.url, etcd_prefix)
    first = record(backend)
    eventually(lambda: first.latest is not None, "first run listed")
    backend.close()  # the watch is blocked reading: close() must unblock it
    assert not backend.running
    etcd.put(etcd_prefix + "b", doc(8002))
    second = record(backend)
    eventually(lambda: second.addresses() == {"127.0.0.1:8001", "127.0.0.1:8002"}, "second run")
    assert first.counts() == (1, 0, 0), "the closed run reported nothing more"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_etcd_dies_mid_run_calls_keep_succeeding(
    sig: int,
    etcd: EtcdServer,
    etcd_prefix: str,
    backend_factory: Callable[..., Backend],
) -> None:
    """etcd killed: the last good set stays and calls succeed; restarted: updates resume.

    SIGTERM makes the gateway end the watch with one ``{"error": ...}`` line and a clean end
    of stream; SIGKILL cuts the connection.
    """
    a, b, c = (backend_factory(name) for name in ("a", "b", "c"))
    etcd.put(etcd_prefix + "a", {"address": a.host, "port": a.port})
    etcd.put(etcd_prefix + "b", {"address": b.host, "port": b.port})
    with mesh_client(discovery(etcd.url, etcd_prefix), RoundRobin()) as client:
        eventually(lambda: discovery_state(client)["ready"], "the first listing")
        with CallLoop(client, "http://users/") as calls:
            etcd.stop(sig)
            eventually(lambda: discovery_state(client)["errors"] >= 2, "etcd failures reported")
            during = calls.calls()
            eventually(lambda: calls.calls() > during + 50, "calls while etcd is down")
            assert client_addresses(client) == {a.address, b.address}
            etcd.start()
            etcd.put(etcd_prefix + "c", {"address": c.host, "port": c.port})
            eventually(lambda: calls.hits("c") > 0, "calls reaching the endpoint added after")
        assert calls.failures == []
        assert client_addresses(client) == {a.address, b.address, c.address}
