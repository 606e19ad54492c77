"""Inherited deadlines: the scope, and the relative-time headers that carry them."""

from __future__ import annotations

import time

import pytest

import meshclient
from meshclient._context import parse_grpc_timeout, parse_milliseconds, timeout_from_headers

from helpers import assert_budget_left


def test_no_scope_no_deadline() -> None:
    assert meshclient.time_left() is None


def test_scope_sets_and_restores() -> None:
    started = time.monotonic()
    with meshclient.deadline_scope(2.0):
        left = meshclient.time_left()
        assert_budget_left(left, 2.0, time.monotonic() - started)
    assert meshclient.time_left() is None


def test_nested_scopes_take_the_tightest() -> None:
    started = time.monotonic()
    with meshclient.deadline_scope(0.5):
        with meshclient.deadline_scope(10.0):
            assert_budget_left(meshclient.time_left(), 0.5, time.monotonic() - started)
        inner = time.monotonic()
        with meshclient.deadline_scope(0.1):
            assert_budget_left(meshclient.time_left(), 0.1, time.monotonic() - inner)
        with meshclient.deadline_scope(None):  # the outer deadline again
            assert_budget_left(meshclient.time_left(), 0.5, time.monotonic() - started)


def test_time_left_goes_negative() -> None:
    with meshclient.deadline_scope(0):
        time.sleep(0.001)
        left = meshclient.time_left()
        assert left is not None
        assert left < 0


@pytest.mark.parametrize("bad", ["soon", True, float("nan")])
def test_scope_rejects_what_is_not_seconds(bad: object) -> None:
    scope = meshclient.deadline_scope(bad)  # type: ignore[arg-type]
    with pytest.raises((TypeError, ValueError), match="seconds"):
        scope.__enter__()


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("250", 0.25), ("0", 0.0), ("1.5", 0.0015), ("-1", None), ("inf", None), ("x", None)],
)
def test_milliseconds(value: str, seconds: float | None) -> None:
    assert parse_milliseconds(value) == seconds


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("1H", 3600.0),
        ("2M", 120.0),
        ("5S", 5.0),
        ("100m", 0.1),
        ("250u", 0.00025),
        ("7n", 7e-9),
        ("123456789m", None),  # more than 8 digits
        ("10", None),
        ("m", None),
        ("1x", None),
        ("-1S", None),
    ],
)
def test_grpc_timeout(value: str, seconds: float | None) -> None:
    assert parse_grpc_timeout(value) == pytest.approx(seconds)


def test_headers_shortest_wins() -> None:
    headers = {"x-meshclient-timeout-ms": "900", "grpc-timeout": "5S"}
    assert timeout_from_headers(headers.get) == 0.9
    assert timeout_from_headers(headers.get, header=None) == 5.0
    assert timeout_from_headers(headers.get, header=None, grpc_timeout=False) is None
