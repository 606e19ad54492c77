"""Per-call behaviour: what to retry, how long to wait, whether a request is idempotent.

A ``Policy`` is a frozen value whose fields default to *unset*. Policies layer field by
field: per call over service over client over the library defaults, so a per-call
``Policy(idempotent=True)`` keeps the service's timeouts and retries.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, Final, TypeAlias

import attrs
import httpx

from ._deadline import Timeout
from ._retry import Retry

__all__ = ["DEFAULT_POLICY", "POLICY_EXTENSION", "UNSET", "Policy", "Unset"]

#: ``request.extensions`` key carrying a per-call policy (the channel httpx uses for ``timeout``).
POLICY_EXTENSION: Final = "meshclient.policy"


class Unset(enum.Enum):
    """Marks a policy field that inherits from the layer below; ``None`` means "off"."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = Unset.UNSET

TimeoutField: TypeAlias = Timeout | Unset | None
RetryField: TypeAlias = Retry | Unset | None
IdempotentField: TypeAlias = bool | Unset
#: ``fallback(request, error)`` → a response to use instead, or ``None`` to raise ``error``
#: (with an ``AsyncClient`` it may be a coroutine function).
Fallback: TypeAlias = Callable[[httpx.Request, Exception], Any]
FallbackField: TypeAlias = Fallback | Unset | None


def _to_timeout(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Timeout(total=value)
    return value


def _check_timeout(_inst: object, _attr: object, value: object) -> None:
    if not isinstance(value, Timeout | Unset) and value is not None:
        raise TypeError(
            f"Policy.timeout must be a Timeout, a number of seconds or None, got {value!r}"
        )


def _check_retry(_inst: object, _attr: object, value: object) -> None:
    if not isinstance(value, Retry | Unset) and value is not None:
        raise TypeError(f"Policy.retry must be a Retry or None, got {value!r}")


def _check_fallback(_inst: object, _attr: object, value: object) -> None:
    if value is not None and not isinstance(value, Unset) and not callable(value):
        raise TypeError(
            f"Policy.fallback must be a callable (request, error) -> response or None, "
            f"got {value!r}"
        )


def _check_idempotent(_inst: object, _attr: object, value: object) -> None:
    if not isinstance(value, bool | Unset):
        raise TypeError(f"Policy.idempotent must be True or False, got {value!r}")


@attrs.frozen
class Policy:
    """How a call behaves; unset fields inherit, ``None`` turns a feature off.

    ``timeout``: a ``Timeout`` (a number means ``Timeout(total=number)``).
    ``retry``: a ``Retry``; ``None`` sends every request once.
    ``idempotent``: ``True`` lets a request that reached a server be sent again; unset
    decides by method (GET, HEAD, OPTIONS, PUT, DELETE, TRACE) and ``Idempotency-Key``.
    ``fallback``: called with the request and the error when a call fails (open breaker,
    full bulkhead, throttled, attempts exhausted on an error); its response, if not
    ``None``, is returned instead of raising.
    """

    timeout: TimeoutField = attrs.field(
        default=UNSET, converter=_to_timeout, validator=_check_timeout
    )
    retry: RetryField = attrs.field(default=UNSET, validator=_check_retry)
    idempotent: IdempotentField = attrs.field(default=UNSET, validator=_check_idempotent)
    fallback: FallbackField = attrs.field(default=UNSET, validator=_check_fallback)

    def over(self, base: Policy) -> Policy:
        """This policy's set fields, the rest from ``base``."""
        return Policy(
            timeout=base.timeout if self.timeout is UNSET else self.timeout,
            retry=base.retry if self.retry is UNSET else self.retry,
            idempotent=base.idempotent if self.idempotent is UNSET else self.idempotent,
            fallback=base.fallback if self.fallback is UNSET else self.fallback,
        )


#: The library's defaults: 3 attempts with the ``Retry`` defaults, httpx's own timeouts.
DEFAULT_POLICY: Final = Policy(timeout=None, retry=Retry(), idempotent=UNSET, fallback=None)
