"""Sphinx configuration: Sphinx + MyST + furo, built offline with ``-W`` (``nox -s docs``).

Nothing here fetches from the network: no intersphinx, no web fonts, no CDN scripts. A
build-time hook fills in what may or may not exist yet:

- ``benchmarks.md`` gets the results of ``nox -s bench``
  (``docs/_generated/bench-results.json``, committed after a full run) rendered as tables,
  and the tail-latency CDF plot (``docs/_generated/tail-latency-cdf.png``); if either is
  missing, a clearly labelled placeholder.

The API reference (``docs/api/``) is autodoc over the installed package, one directive per
public name. A check at the end of reading fails the build (a warning, under ``-W``) when a
name of ``meshclient.__all__`` or of a public submodule's ``__all__`` was not documented;
``tests/test_api_reference.py`` makes the same check on the sources without Sphinx.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
from pathlib import Path
from typing import Any

from sphinx.util import logging

LOGGER = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent

project = "meshclient"
author = "the meshclient authors"
copyright = "the meshclient authors"
extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
html_theme = "furo"
html_title = "meshclient"
html_static_path: list[str] = []
exclude_patterns = ["_build", "build", "_generated/*.md", "Thumbs.db", ".DS_Store"]
# furo ships its own fonts stack (system fonts); nothing is fetched at build or view time.
html_theme_options: dict[str, Any] = {}
suppress_warnings: list[str] = []

# The API reference: members in the order the source defines them, undocumented ones included
# (their signatures are reference too). The pages ask for ``:show-inheritance:`` where a base
# class says something (``MeshError`` is an ``httpx.TransportError``).
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": True}
autodoc_typehints = "signature"
#: Public modules whose ``__all__`` the reference must cover (``meshclient`` first: a name it
#: shares with a submodule is documented once, as ``meshclient.X``).
PUBLIC_MODULES = (
    "meshclient",
    "meshclient.stack",
    "meshclient.hooks",
    "meshclient.middleware",
    "meshclient.discovery",
    "meshclient.testing",
    "meshclient.dashboard",
)

BENCH_MARKER = "<!-- bench-results -->"
CDF_PNG = HERE / "_generated" / "tail-latency-cdf.png"


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}"
    if isinstance(value, dict | list):
        return ""
    return str(value).replace("|", "\\|")


def _bench_results() -> dict[str, Any] | None:
    path = HERE / "_generated" / "bench-results.json"
    if not path.exists():
        return None
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except ValueError:
        return None
    return data


def bench_markdown() -> str:
    """The results section of ``benchmarks.md``, from the latest ``nox -s bench`` run."""
    parts: list[str] = []
    if CDF_PNG.exists():
        parts.append(
            "```{figure} _generated/tail-latency-cdf.png\n:alt: tail latency CDF\n\n"
            "Tail-latency scenario: latency CDF per balancer (log scale).\n```\n"
        )
    data = _bench_results()
    if data is None:
        parts.append(
            ":::{note}\n**Placeholder: no benchmark results in this build.** Run "
            "`nox -s bench` (it writes `docs/_generated/bench-results.json`) and rebuild "
            "the docs with `nox -s docs`; the tables below are then generated from that "
            "file.\n:::\n"
        )
        return "\n".join(parts)
    env = data.get("environment", {})
    parts.append(
        f"Measured {data.get('created', '?')} on {env.get('cpus', '?')} CPUs, Python "
        f"{env.get('python', '?')}, commit `{env.get('git_head', '?')}`"
        + (" (quick run)" if data.get("quick") else "")
        + ".\n"
    )
    for name, scenario in data.get("scenarios", {}).items():
        parts.append(f"### {name}\n\n{scenario.get('title', '')}\n")
        columns = list(scenario.get("columns", []))
        rows = scenario.get("rows", [])
        if columns and rows:
            parts.append("| " + " | ".join(columns) + " |")
            parts.append("|" + "---|" * len(columns))
            parts.extend(
                "| " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |" for row in rows
            )
            parts.append("")
        for check in scenario.get("checks", []):
            verdict = "pass" if check.get("passed") else "**FAIL**"
            parts.append(
                f"- {verdict}: {check.get('name')}: {_fmt(check.get('value'))}"
                f"{check.get('unit', '')} (target {check.get('op')} {_fmt(check.get('target'))}"
                f"{check.get('unit', '')})"
            )
        parts.append("")
    return "\n".join(parts)


def _source_read(app: Any, docname: str, source: list[str]) -> None:
    if docname == "benchmarks" and BENCH_MARKER in source[0]:
        source[0] = source[0].replace(BENCH_MARKER, bench_markdown())


def undocumented_public_names(documented: set[str]) -> list[str]:
    """Public names (``module.name``) that are in no object description of ``documented``.

    A submodule's name that is the very object ``meshclient`` exports under the same name
    counts as documented when ``meshclient.<name>`` is.
    """
    top = importlib.import_module("meshclient")
    missing = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            full = f"{module_name}.{name}"
            shared = name in top.__all__ and getattr(top, name) is getattr(module, name)
            if full not in documented and not (shared and f"meshclient.{name}" in documented):
                missing.append(full)
    return missing


def _class_named(path: list[str]) -> type | None:
    """The class ``a.b.C`` names (the longest importable prefix is the module), or ``None``."""
    for split in range(len(path) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(path[:split]))
        except ImportError:
            continue
        for part in path[split:]:
            obj = getattr(obj, part, None)
        return obj if isinstance(obj, type) else None
    return None


def _inherited_from_elsewhere(app: Any, what: str, name: str, obj: Any, *args: Any) -> None:
    """A member without a docstring of its own that autodoc would fill from a base class
    outside meshclient (``Client.get`` from ``httpx.Client.get``) points to that member instead:
    httpx's docstrings are Markdown written for httpx's own site, not reStructuredText."""
    lines: list[str] = args[-1]
    if what == "data":
        # A constant has no docstring of its own: autodoc would show its type's (``str``'s,
        # ``Stack``'s); the page says what it is instead.
        if lines and inspect.getdoc(type(obj)) == "\n".join(lines).strip():
            lines[:] = []
        return
    if what not in {"method", "attribute", "property"} or not lines:
        return
    if getattr(inspect.unwrap(getattr(obj, "fget", obj)), "__doc__", None):
        return
    *owner_path, attr = name.split(".")
    owner = _class_named(owner_path)
    if owner is None:
        return
    for base in owner.__mro__[1:]:
        if attr in vars(base):
            if not base.__module__.startswith("meshclient"):
                where = f"{base.__module__}.{base.__qualname__}.{attr}"
                lines[:] = [f"As ``{where}``{_extra(obj, vars(base)[attr])}."]
            return


def _extra(obj: Any, inherited: Any) -> str:
    """The parameters ``obj`` adds to the method it overrides, as a clause of its line."""
    try:
        ours = inspect.signature(obj).parameters
        theirs = inspect.signature(inherited).parameters
    except (TypeError, ValueError):
        return ""
    added = [
        f"``{name}``" for name, p in ours.items() if name not in theirs and p.kind != p.VAR_KEYWORD
    ]
    return f"; also takes {', '.join(added)}" if added else ""


def _public_base(base: Any) -> Any:
    """What ``Bases:`` shows for ``base``: a meshclient class by its public name (a private one
    as its nearest public ancestor), a class from elsewhere by its full name (``httpx.Client``,
    not ``Client`` beside ``meshclient.Client``)."""
    if not isinstance(base, type):
        return base
    if base.__module__.startswith("meshclient"):
        for cls in base.__mro__:
            if cls in PUBLIC_NAMES:
                return f":py:class:`{PUBLIC_NAMES[cls]}`"
            if not cls.__module__.startswith("meshclient"):
                base = cls
                break
        else:
            return base
    return f":py:class:`{base.__module__}.{base.__qualname__}`"


def _bases(app: Any, name: str, obj: Any, options: Any, bases: list[Any]) -> None:
    bases[:] = [_public_base(base) for base in bases]


def _check_api_reference(app: Any, env: Any) -> None:
    documented = set(env.get_domain("py").objects)
    for full in undocumented_public_names(documented):
        LOGGER.warning("public name %s is missing from the API reference (docs/api/)", full)


#: Public path of each object ``meshclient`` renamed (``meshclient.Retry``), for ``Bases:``.
PUBLIC_NAMES: dict[object, str] = {}
#: The same by defining path: ``meshclient._retry.Retry`` -> ``meshclient.Retry``.
PUBLIC_PATHS: dict[str, str] = {}


def _document_from_defining_modules() -> None:
    """Give the published objects their defining modules back, for this build only.

    ``meshclient.Retry.__module__`` is ``"meshclient"`` (so reprs and pickles say what users
    import), but autodoc reads member order and ``#:`` attribute comments from the source of
    ``__module__``. The pages name every object by its public path all the same."""
    from meshclient._public import DEFINED_IN

    for obj, module in DEFINED_IN.items():
        PUBLIC_NAMES[obj] = f"{obj.__module__}.{obj.__qualname__}"
        PUBLIC_PATHS[f"{module}.{obj.__qualname__}"] = PUBLIC_NAMES[obj]
        obj.__module__ = module


def _public_path(target: str) -> str | None:
    """``meshclient._policy.Policy.over`` -> ``meshclient.Policy.over``; ``None`` if public."""
    parts = target.split(".")
    for end in range(len(parts), 1, -1):
        public = PUBLIC_PATHS.get(".".join(parts[:end]))
        if public is not None:
            return ".".join([public, *parts[end:]])
    return None


def _public_references(app: Any, doctree: Any) -> None:
    """Links from signatures (``policy: Policy | None``) name the public path, not the
    defining module's, so they resolve to the documented object and say so when hovered."""
    from sphinx.addnodes import pending_xref

    for node in doctree.findall(pending_xref):
        public = _public_path(node.get("reftarget", ""))
        if node.get("refdomain") == "py" and public is not None:
            node["reftarget"] = public


def _drop_private_aliases(app: Any, env: Any) -> None:
    """autodoc registers each published object under its defining path too (``:canonical:``);
    the inventory and the index list public paths only."""
    objects = env.get_domain("py").objects
    for name in [name for name in objects if _public_path(name) is not None]:
        del objects[name]


def setup(app: Any) -> dict[str, Any]:
    _document_from_defining_modules()
    app.connect("source-read", _source_read)
    app.connect("autodoc-process-docstring", _inherited_from_elsewhere)
    app.connect("autodoc-process-bases", _bases)
    app.connect("doctree-read", _public_references)
    app.connect("env-check-consistency", _check_api_reference)
    app.connect("env-check-consistency", _drop_private_aliases)
    return {"parallel_read_safe": True}
