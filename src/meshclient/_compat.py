"""Every private name of httpx and OpenTelemetry that meshclient relies on, in one place.

Each is used because no public equivalent exists:

- ``URLPattern``: httpx's matching of ``mounts=`` keys (``"all://"``, ``"https://*.example"``),
  so a meshclient client picks the transport for a URL exactly as httpx would.
- ``get_environment_proxies``: httpx's reading of ``HTTP_PROXY``/``NO_PROXY``, so meshclient's
  own pools honour ``trust_env`` as ``httpx.HTTPTransport`` does.
- ``UseClientDefault`` and the argument type aliases of ``httpx._types``: the types of the
  request methods' keywords, so meshclient's signatures match httpx's exactly.
- ``URL._uri_reference``: an attempt's URL is the caller's with the endpoint's host and port;
  ``URL.copy_with`` parses the whole URL again (about 20 us per attempt), ``url_at`` swaps the
  two fields of the parsed form (about 1 us).
- The OpenTelemetry context keys that instrumentations set to suppress nested HTTP spans.
- ``opentelemetry.trace._TRACER_PROVIDER``: whether a tracer provider was installed. With none,
  a span from the global (proxy) tracer is a no-op reached through four calls; checking first
  saves them on every call of an application that runs without an SDK.

``tests/test_compat.py`` checks that each still exists and behaves as relied on, so an httpx or
OpenTelemetry release that moves one fails there with a clear message, not deep in a request.
"""

from __future__ import annotations

from typing import Final

import httpx

try:
    from httpx._client import UseClientDefault
    from httpx._types import (
        AuthTypes,
        CookieTypes,
        HeaderTypes,
        QueryParamTypes,
        RequestContent,
        RequestData,
        RequestExtensions,
        RequestFiles,
        TimeoutTypes,
    )
    from httpx._utils import URLPattern, get_environment_proxies
except ImportError as exc:  # pragma: no cover - only on an httpx release that moved them
    raise ImportError(
        "meshclient needs httpx's URLPattern, get_environment_proxies, UseClientDefault and "
        f"request argument types (httpx._utils, httpx._client, httpx._types), which this "
        f"httpx release moved: {exc}. "
        "Install an httpx version listed in meshclient's dependencies."
    ) from exc

try:
    from opentelemetry import trace as _trace_api
    from opentelemetry.context import (
        _SUPPRESS_HTTP_INSTRUMENTATION_KEY,
        _SUPPRESS_INSTRUMENTATION_KEY,
    )

    _trace_api._TRACER_PROVIDER  # noqa: B018 - fail here, at import, if it moved
except (ImportError, AttributeError) as exc:  # pragma: no cover - an API release moved them
    raise ImportError(
        "meshclient needs OpenTelemetry's instrumentation suppression keys "
        "(opentelemetry.context) and its global tracer provider (opentelemetry.trace), which "
        f"this opentelemetry-api release moved: {exc}"
    ) from exc

__all__ = [
    "SUPPRESS_HTTP_INSTRUMENTATION",
    "tracer_provider_installed",
    "url_at",
    "SUPPRESS_INSTRUMENTATION",
    "AuthTypes",
    "CookieTypes",
    "HeaderTypes",
    "QueryParamTypes",
    "RequestContent",
    "RequestData",
    "RequestExtensions",
    "RequestFiles",
    "TimeoutTypes",
    "URLPattern",
    "UseClientDefault",
    "get_environment_proxies",
]

SUPPRESS_INSTRUMENTATION: Final = _SUPPRESS_INSTRUMENTATION_KEY
SUPPRESS_HTTP_INSTRUMENTATION: Final = _SUPPRESS_HTTP_INSTRUMENTATION_KEY

_DEFAULT_PORTS: Final = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def url_at(url: httpx.URL, host: str, port: int) -> httpx.URL:
    """``url.copy_with(host=host, port=port)``, without parsing ``url`` again."""
    reference = url._uri_reference
    moved = httpx.URL.__new__(httpx.URL)
    moved._uri_reference = reference._replace(
        host=host.lower(), port=None if port == _DEFAULT_PORTS.get(reference.scheme) else port
    )
    return moved


def tracer_provider_installed() -> bool:
    """Whether a global tracer provider was set (the proxy tracer then delegates to it)."""
    return _trace_api._TRACER_PROVIDER is not None
