"""httpcore's errors as the httpx errors users catch, and which ones mean "never sent"."""

from __future__ import annotations

from typing import Final

import httpcore
import httpx

__all__ = ["NEVER_SENT", "to_httpx"]

#: Failures before any byte of the request was written: safe to send anywhere, any method.
NEVER_SENT: Final = (httpcore.ConnectError, httpcore.ConnectTimeout, httpcore.PoolTimeout)

_MAP: Final[dict[type[Exception], type[httpx.TransportError]]] = {
    httpcore.ConnectTimeout: httpx.ConnectTimeout,
    httpcore.ReadTimeout: httpx.ReadTimeout,
    httpcore.WriteTimeout: httpx.WriteTimeout,
    httpcore.PoolTimeout: httpx.PoolTimeout,
    httpcore.TimeoutException: httpx.TimeoutException,
    httpcore.ConnectError: httpx.ConnectError,
    httpcore.ReadError: httpx.ReadError,
    httpcore.WriteError: httpx.WriteError,
    httpcore.NetworkError: httpx.NetworkError,
    httpcore.ProxyError: httpx.ProxyError,
    httpcore.UnsupportedProtocol: httpx.UnsupportedProtocol,
    httpcore.RemoteProtocolError: httpx.RemoteProtocolError,
    httpcore.LocalProtocolError: httpx.LocalProtocolError,
    httpcore.ProtocolError: httpx.ProtocolError,
}


def to_httpx(exc: BaseException) -> BaseException:
    """The httpx error for an httpcore one (the same object for anything else)."""
    for cls in type(exc).__mro__:
        mapped = _MAP.get(cls)
        if mapped is not None:
            new = mapped(str(exc))
            new.__cause__ = exc
            return new
    return exc
