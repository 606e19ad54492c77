"""The private httpx and OpenTelemetry names meshclient uses still exist and behave as relied on.

If one of these fails after an upgrade, the dependency moved or changed a private name that
``meshclient/_compat.py`` documents; fix it there, the only place that reads them.
"""

from __future__ import annotations

import importlib
import sys

import httpx
import pytest
from opentelemetry.context import get_current
from opentelemetry.instrumentation.utils import (
    suppress_http_instrumentation,
    suppress_instrumentation,
)

from meshclient import _compat


def test_url_patterns_match_and_order_as_httpx_mounts_do() -> None:
    patterns = {
        key: _compat.URLPattern(key) for key in ("all://", "http://users", "all://*.svc.test")
    }
    assert max(patterns.values()).pattern == "all://"  # the catch-all is tried last
    assert patterns["http://users"].matches(httpx.URL("http://users/x"))
    assert not patterns["http://users"].matches(httpx.URL("https://users/x"))
    assert patterns["all://*.svc.test"].matches(httpx.URL("https://a.svc.test/"))


def test_environment_proxies_are_read_as_httpx_reads_them(monkeypatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.2")
    proxies = _compat.get_environment_proxies()
    assert proxies["http://"] == "http://127.0.0.1:3128"
    assert proxies["all://127.0.0.2"] is None


def test_the_client_default_marker_has_its_type() -> None:
    assert isinstance(httpx.USE_CLIENT_DEFAULT, _compat.UseClientDefault)


def test_suppression_keys_are_the_ones_instrumentations_set() -> None:
    with suppress_instrumentation():
        assert get_current().get(_compat.SUPPRESS_INSTRUMENTATION) is True
    with suppress_http_instrumentation():
        assert get_current().get(_compat.SUPPRESS_HTTP_INSTRUMENTATION) is True


@pytest.mark.parametrize(
    "url", ["http://users/v1/x?q=1#frag", "https://Users:8443/a%20b", "http://users:80/", "ws://u/"]
)
@pytest.mark.parametrize(
    ("host", "port"), [("127.0.0.1", 8001), ("::1", 9), ("Node-1.svc", 80), ("10.0.0.1", 443)]
)
def test_a_url_moved_to_an_endpoint_equals_what_copy_with_builds(url, host, port) -> None:
    original = httpx.URL(url)
    moved = _compat.url_at(original, host, port)
    expected = original.copy_with(host=host, port=port)
    assert moved == expected
    assert str(moved) == str(expected)
    assert (moved.raw_host, moved.port, moved.raw_path) == (
        expected.raw_host,
        expected.port,
        expected.raw_path,
    )
    assert original == httpx.URL(url)  # the caller's URL is untouched


def test_a_moved_name_fails_at_import_with_a_clear_message(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "httpx._utils", None)  # as if httpx moved the module
    try:
        with pytest.raises(ImportError, match="meshclient needs httpx's URLPattern"):
            importlib.reload(_compat)
    finally:
        monkeypatch.undo()
        importlib.reload(_compat)
