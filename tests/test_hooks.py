"""Hooks: frozen events in the order decisions are made; a raising hook never breaks a call."""

from __future__ import annotations

import logging
from collections.abc import Callable

import attrs
import pytest

import meshclient
from meshclient.hooks import (
    AttemptFinished,
    BreakerTransition,
    BudgetExhausted,
    DiscoveryUpdated,
    EndpointEjected,
    EndpointReadmitted,
    Event,
    LoggingHook,
    RetryScheduled,
)
from meshclient.testing import Backend, Behaviour

from helpers import RETRY3


def client_with(
    backend: Backend, *hooks: Callable[[Event], None], **kwargs: object
) -> meshclient.Client:
    return meshclient.Client(
        services={"users": meshclient.Service([backend.address], **kwargs)},  # type: ignore[arg-type]
        policy=RETRY3,
        telemetry=meshclient.Telemetry(hooks=hooks),
    )


def test_events_arrive_in_decision_order(backend_factory: Callable[..., Backend]) -> None:
    backend = backend_factory("a")
    backend.script(Behaviour(status=503))
    events: list[Event] = []
    with client_with(backend, events.append) as client:
        assert client.get("http://users/").status_code == 200
    discovered, first, retry, second = events
    assert discovered == DiscoveryUpdated(service="users", source="static", endpoints=1)
    assert isinstance(first, AttemptFinished)
    assert (first.service, first.method, first.endpoint) == ("users", "GET", backend.address)
    assert (first.attempt, first.status_code, first.error_type) == (1, 503, "503")
    assert isinstance(retry, RetryScheduled)
    assert (retry.attempt, retry.reason, retry.endpoint) == (1, "503", backend.address)
    assert 0 <= retry.delay <= 0.002
    assert isinstance(second, AttemptFinished)
    assert (second.attempt, second.status_code, second.error_type) == (2, 200, None)
    assert second.duration >= 0


def test_budget_refusal_follows_the_attempt(backend_factory: Callable[..., Backend]) -> None:
    backend = backend_factory("a")
    backend.behave(status=503)
    events: list[Event] = []
    empty = meshclient.RetryBudget(ratio=0.0, min_per_second=0.0)
    with client_with(backend, events.append, retry_budget=empty) as client:
        assert client.get("http://users/").status_code == 503
    assert [type(e) for e in events] == [DiscoveryUpdated, AttemptFinished, BudgetExhausted]
    assert events[2] == BudgetExhausted(service="users", method="GET", attempt=1, reason="503")


def test_a_raising_hook_is_logged_once_and_disabled(
    backend_factory: Callable[..., Backend], caplog: pytest.LogCaptureFixture
) -> None:
    backend = backend_factory("a")
    calls: list[Event] = []
    seen: list[Event] = []

    def broken(event: Event) -> None:
        calls.append(event)
        raise RuntimeError("boom")

    with client_with(backend, broken, seen.append) as client:
        for _ in range(3):
            assert client.get("http://users/").status_code == 200
    assert len(calls) == 1  # the first event: the service's endpoints were discovered
    assert len(seen) == 4  # the other hook keeps running
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "disabled" in errors[0].getMessage()


def test_events_are_frozen_values() -> None:
    event = EndpointReadmitted(service="users", endpoint="127.0.0.1:1")
    assert event == EndpointReadmitted(service="users", endpoint="127.0.0.1:1")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.service = "other"  # type: ignore[misc]


def test_logging_hook_levels(caplog: pytest.LogCaptureFixture) -> None:
    hook = LoggingHook()
    caplog.set_level(logging.DEBUG, logger="meshclient")
    hook(AttemptFinished("users", "GET", "127.0.0.1:1", 1, 200, None, 0.002))
    hook(RetryScheduled("users", "GET", "127.0.0.1:1", 1, "503", 0.01))
    hook(BudgetExhausted("users", "GET", 2, "ReadTimeout"))
    hook(EndpointEjected("users", "127.0.0.1:1", "5 consecutive failures", 5.0))
    hook(EndpointReadmitted("users", "127.0.0.1:1"))
    hook(BreakerTransition("users", "closed", "open", "failure rate 60%"))
    assert [r.levelname for r in caplog.records] == [
        "DEBUG",
        "INFO",
        "WARNING",
        "WARNING",
        "INFO",
        "WARNING",
    ]
    assert "retrying in 10.0 ms" in caplog.records[1].getMessage()
    assert "closed -> open (failure rate 60%)" in caplog.records[5].getMessage()


def test_logging_hook_on_a_client(
    backend_factory: Callable[..., Backend], caplog: pytest.LogCaptureFixture
) -> None:
    backend = backend_factory("a")
    backend.script(Behaviour(status=503))
    caplog.set_level(logging.INFO, logger="meshclient")
    with client_with(backend, LoggingHook()) as client:
        client.get("http://users/")
    (record,) = caplog.records
    assert "GET users attempt 1" in record.getMessage()


def test_telemetry_rejects_what_is_not_a_hook() -> None:
    with pytest.raises(TypeError, match=r"Telemetry\.hooks"):
        meshclient.Telemetry(hooks=[42])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"Telemetry\.tracer_provider"):
        meshclient.Telemetry(tracer_provider="global")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="telemetry"):
        meshclient.Client(telemetry=object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="deadline_header"):
        meshclient.Client(deadline_header="bad header")
