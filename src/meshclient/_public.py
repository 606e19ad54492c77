"""Exported objects name the public module users import them from, as httpx's do."""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

#: The module that defines each object ``publish`` renamed (the docs build reads source order
#: and ``#:`` comments from there).
DEFINED_IN: dict[object, str] = {}


def publish(module: str, names: Iterable[str], namespace: Mapping[str, Any]) -> None:
    """Set ``__module__`` of the classes and functions ``names`` of ``namespace`` to ``module``.

    Reprs, tracebacks, pickles and the API reference then say ``meshclient.Retry`` rather than
    ``meshclient._retry.Retry``. An object is renamed while it still names a private module (a
    ``._`` in the name) or a submodule of ``module``: ``meshclient`` runs this after importing
    ``meshclient.stack`` and ``meshclient.discovery``, so a name exported at both levels ends
    as ``meshclient.X``, and a submodule never takes a name back from ``meshclient``.

    ``typing.get_type_hints(cls)`` evaluates a class's string annotations (``from __future__
    import annotations``) in the namespace of the module ``cls.__module__`` names, which does
    not import what the defining module did: a class's own annotations are therefore resolved
    first, in its defining module. Where that fails (a name imported only for type checking),
    they stay strings, as unresolvable as they were before.
    """
    for name in names:
        obj = namespace[name]
        if not isinstance(obj, type | types.FunctionType):
            continue
        current: str = obj.__module__
        if "._" not in current and not current.startswith(module + "."):
            continue
        if isinstance(obj, type):
            _resolve_annotations(obj)
        DEFINED_IN.setdefault(obj, current)
        obj.__module__ = module


def _resolve_annotations(cls: type) -> None:
    own = inspect.get_annotations(cls)
    if not own or not any(isinstance(value, str) for value in own.values()):
        return
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except Exception:
        return
    cls.__annotations__ = {name: hints.get(name, value) for name, value in own.items()}
