"""What an attempt sends, and by when: its URL, its extensions, its deadline.

The caller's request is never changed: an attempt to a mesh service goes to the chosen
endpoint's address while its ``Host`` header (copied with the rest of the headers) and, for
``https``, the name its certificate is checked against stay the logical service name.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Final

import httpcore
import httpx
import sniffio

from ._call import Attempt
from ._compat import url_at

__all__ = [
    "DEADLINE",
    "DISCARD_READ_LIMIT",
    "async_network_backend",
    "attempt_extensions",
    "attempt_url",
    "sync_network_backend",
]

#: The ``time.monotonic()`` deadline of the attempt whose bytes are moving in this context
#: (``None``: none). Set by the driver around sending and around each read of the body, so
#: the pools' network backend (``_async/_network.py``) can clip every operation to it.
DEADLINE: Final[ContextVar[float | None]] = ContextVar("meshclient.attempt_deadline", default=None)

#: A discarded response body up to this size is read so its connection can be reused.
DISCARD_READ_LIMIT: Final = 64 * 1024
_HTTP: Final = b"http"


def attempt_extensions(attempt: Attempt) -> dict[str, Any]:
    """The request's extensions, with httpx's timeouts clipped to the attempt's time left and,
    for ``https`` to a mesh service, the logical name for the certificate check."""
    call = attempt.call
    request = call.request
    extensions = request.extensions
    deadline = attempt.deadline
    tls_name = not call.passthrough and request.url.raw_scheme != _HTTP
    if deadline is None and not tls_name:
        return extensions
    extensions = dict(extensions)
    if deadline is not None:
        left = deadline - call.clock()
        if left < 0.0:
            left = 0.0
        clipped = {}
        for key, value in extensions.get("timeout", {}).items():
            clipped[key] = left if value is None or value > left else value
        extensions["timeout"] = clipped
    if tls_name:
        extensions["sni_hostname"] = request.url.host
    return extensions


def attempt_url(attempt: Attempt) -> httpx.URL:
    """The URL of the physical request: the endpoint's address for a mesh service."""
    call = attempt.call
    url = call.request.url
    if call.passthrough:
        return url
    endpoint = attempt.endpoint
    assert endpoint is not None
    return url_at(url, endpoint.host, endpoint.port)


def async_network_backend() -> httpcore.AsyncNetworkBackend:
    """What httpcore uses by default: trio's backend under trio, anyio's otherwise."""
    if sniffio.current_async_library() == "trio":
        return httpcore.TrioBackend()
    return httpcore.AnyIOBackend()


def sync_network_backend() -> httpcore.NetworkBackend:
    return httpcore.SyncBackend()
