"""Construction-time checks whose messages name the class, the field and the value."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

__all__ = ["check_integer", "check_number", "check_positive", "check_transport", "check_type"]


def check_number(
    owner: str, field: str, value: Any, requirement: str, ok: Callable[[float], bool]
) -> None:
    """Raise unless ``value`` is a real number (not a bool: ``True == 1``) satisfying ``ok``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{owner}.{field} must be {requirement}, got {value!r}")
    if math.isnan(value) or not ok(value):
        raise ValueError(f"{owner}.{field} must be {requirement}, got {value!r}")


def check_integer(
    owner: str, field: str, value: Any, low: int, *, allow_none: bool = False
) -> None:
    """An int (not a bool) >= ``low``, or None when allowed."""
    if value is None and allow_none:
        return
    requirement = f"an int >= {low}" + (" or None" if allow_none else "")
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}.{field} must be {requirement}, got {value!r}")
    if value < low:
        raise ValueError(f"{owner}.{field} must be {requirement}, got {value!r}")


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


def check_transport(field: str, value: Any, expected: type) -> None:
    """``None`` or an httpx transport of the client's kind (sync or async)."""
    if value is not None and not isinstance(value, expected):
        raise TypeError(
            f"Client.{field} must be an httpx.{expected.__name__} or None, got {value!r}"
        )
