"""Timeouts: a total budget for the whole call and a bound for each attempt.

A deadline is an absolute clock value (trio/anyio style), so nested bounds compose by
taking the earliest, and every attempt's httpx timeouts are clipped to what is left
(``_attempts.attempt_extensions``).
"""

from __future__ import annotations

from typing import Any, Final

import attrs

from ._validate import check_positive

__all__ = ["MAX_TIMEOUT", "Timeout"]


#: The longest timeout accepted, in seconds (about 11.6 days): anything longer is a mistake, and
#: far longer values overflow the millisecond deadline header.
MAX_TIMEOUT: Final = 1e6


def _positive_or_none(field: str) -> Any:
    def validate(_inst: object, _attr: object, value: object) -> None:
        check_positive("Timeout", field, value, allow_none=True)
        if value is not None and value > MAX_TIMEOUT:  # type: ignore[operator]
            raise ValueError(
                f"Timeout.{field} must be a number of seconds <= {MAX_TIMEOUT:g}, got {value!r}"
            )

    return validate


@attrs.frozen
class Timeout:
    """Time limits in seconds; ``None`` means no limit of that kind.

    ``total`` bounds the whole call, backoff included, and ends it with ``DeadlineExceeded``.
    ``attempt`` bounds one physical try, so a slow endpoint costs one attempt, not the call.
    """

    total: float | None = attrs.field(default=None, validator=_positive_or_none("total"))
    attempt: float | None = attrs.field(default=None, validator=_positive_or_none("attempt"))
