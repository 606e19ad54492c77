"""Construction-time checks whose messages name the class, the field and the value."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["check_positive", "check_type"]


def check_positive(owner: str, field: str, value: Any, *, allow_none: bool = False) -> None:
    """A finite number > 0 (seconds, counts); bools are rejected because ``True == 1``."""
    if value is None and allow_none:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        extra = " or None" if allow_none else ""
        raise ValueError(f"{owner}.{field} must be a number > 0{extra}, got {value!r}")


def check_type(owner: str, field: str, value: Any, expected: type | tuple[type, ...]) -> None:
    if not isinstance(value, expected):
        names = (
            " or ".join(t.__name__ for t in expected)
            if isinstance(expected, tuple)
            else expected.__name__
        )
        raise TypeError(f"{owner}.{field} must be {names}, got {value!r}")
