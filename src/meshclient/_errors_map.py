"""httpcore's errors as the httpx errors users catch, and what each kind of failure means.

Three questions are asked of an attempt's error, all by its httpx class:

- was the request never written (``NEVER_SENT``)? Then it may go anywhere again, any method;
- may it be sent again at all (``RESENDABLE``)? Network and timeout failures, a connection
  that broke mid-response; not a bad URL or a malformed request, which fail the same way
  wherever they go;
- does it count against the endpoint (``is_endpoint_fault``)? As ``RESENDABLE`` but without
  a full local pool, which says nothing about the endpoint.
"""

from __future__ import annotations

from typing import Final

import httpcore
import httpx

__all__ = ["NEVER_SENT", "RESENDABLE", "is_endpoint_fault", "to_httpx"]

#: Failures before any byte of the request was written: safe to send anywhere, any method.
NEVER_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: Failures worth another attempt (for a request that may be sent twice, or one never sent).
RESENDABLE: Final = (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError)

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


def to_httpx(exc: Exception) -> Exception:
    """The httpx error for an httpcore one (the same object for anything else)."""
    for cls in type(exc).__mro__:
        mapped = _MAP.get(cls)
        if mapped is not None:
            new = mapped(str(exc))
            new.__cause__ = exc
            return new
    return exc


def is_endpoint_fault(error: BaseException) -> bool:
    """Whether ``error`` says the endpoint failed (not the local pool, not the request)."""
    return isinstance(error, RESENDABLE) and not isinstance(error, httpx.PoolTimeout)
