"""Shared fixtures: loopback backends, a refused port, the CI "no skips" switch, hypothesis.

With ``MESHCLIENT_REQUIRE_REAL=1`` (set by CI) a skipped test is reported as failed: CI has
every real component installed, so a skip there means a broken setup, not a missing tool. That
holds for every kind of skip: in a test or a fixture, a ``skip``/``skipif`` mark, and a skip
while collecting (``pytest.importorskip`` or ``pytest.skip(allow_module_level=True)`` in a
module or a conftest), which becomes a collection error.
Tests that need a real component (etcd, dnsmasq, ...) call ``require_real(component, reason)``
instead of ``pytest.skip``. It is a fixture returning the helper, because ``from conftest
import ...`` picks whichever ``conftest`` module was imported last (tests/integration has one).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from typing import Any

import hypothesis
import pytest

from meshclient.testing import Backend, FakeClock, held_closed_port

REQUIRE_REAL = "MESHCLIENT_REQUIRE_REAL"

hypothesis.settings.register_profile("dev", deadline=None)
hypothesis.settings.register_profile("ci", deadline=None, derandomize=True, max_examples=200)
# `nox -s mutants`: the same few examples on every run, so a mutant's verdict is reproducible.
hypothesis.settings.register_profile(
    "mutants", deadline=None, derandomize=True, database=None, max_examples=25
)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def real_required() -> bool:
    return os.environ.get(REQUIRE_REAL) == "1"


def _require_real(component: str, reason: str) -> None:
    """Skip locally, fail in CI: call where a real ``component`` is unavailable."""
    message = f"{component} unavailable: {reason}"
    if real_required():
        pytest.fail(f"{message} ({REQUIRE_REAL}=1 forbids skipping)", pytrace=False)
    pytest.skip(message)


def _skip_reason(longrepr: object) -> str:
    reason = longrepr[2] if isinstance(longrepr, tuple) else longrepr
    return str(reason).removeprefix("Skipped: ")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Under MESHCLIENT_REQUIRE_REAL=1 turn every skip (not xfail) into a failure."""
    report = yield
    if report.skipped and not hasattr(report, "wasxfail") and real_required():
        reason = _skip_reason(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, but {REQUIRE_REAL}=1 forbids skipping: {reason}"
    return report


class _NoSkipsWhileCollecting:
    """Under MESHCLIENT_REQUIRE_REAL=1 a module or directory skipped while it was collected
    (``importorskip`` or ``skip(allow_module_level=True)`` at import) is a collection error.

    A plugin object, not a conftest hook: pytest calls a conftest's hooks for a directory only
    once every conftest on its path has loaded, so a skip raised by importing a conftest in
    a subdirectory would never reach a hook written here.
    """

    @pytest.hookimpl(wrapper=True)
    def pytest_make_collect_report(
        self, collector: pytest.Collector
    ) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
        report = yield
        if report.skipped and real_required():
            reason = _skip_reason(report.longrepr)
            report.outcome = "failed"
            report.longrepr = (
                f"{collector.nodeid or collector.name} skipped while collecting, "
                f"but {REQUIRE_REAL}=1 forbids skipping: {reason}"
            )
        return report


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(_NoSkipsWhileCollecting(), "meshclient-no-skips-while-collecting")


@pytest.fixture(scope="session")
def require_real() -> Callable[[str, str], None]:
    """``require_real("etcd", "etcd-server is not installed")``: skip locally, fail in CI."""
    return _require_real


@pytest.fixture
def clock() -> FakeClock:
    """Virtual time for the engine's pure tests: it moves only when a test advances it."""
    return FakeClock(100.0)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def backend_factory() -> Iterator[Callable[..., Backend]]:
    """Start ``Backend``s by name (``make("a", port=..., record=...)``); all stop at teardown."""
    started: list[Backend] = []

    def make(name: str | None = None, **kwargs: Any) -> Backend:
        backend = Backend(name or f"backend-{len(started)}", **kwargs)
        backend.start()
        started.append(backend)
        return backend

    yield make
    for backend in reversed(started):
        backend.stop()


@pytest.fixture
def backends(backend_factory: Callable[..., Backend]) -> list[Backend]:
    """Three healthy started backends named "a", "b" and "c"."""
    return [backend_factory(name) for name in ("a", "b", "c")]


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A 127.0.0.1 port that refuses connections and stays reserved for the whole test."""
    with held_closed_port() as port:
        yield port
