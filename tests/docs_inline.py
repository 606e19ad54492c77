"""Run the inline code of one docs page as a new user would type it: ``python docs_inline.py
PAGE USERS_ADDRESS``, in a fresh interpreter (``tests/test_docs.py`` starts it).

Prose quotes code in backticks: ``Retry(attempts=3)``, ``client.snapshot()``,
``from meshclient.middleware import DeadlineMiddleware``. Each such span is checked here:

- an expression with a call, or a name or dotted name the namespace below knows, is
  evaluated; a call with ``...`` placeholders (``Service(..., balancer=...)``) is not run,
  but its callee must exist and accept the keywords it is shown with;
- a dotted name that starts with ``meshclient.`` must resolve after ``import meshclient``
  *alone* (a reader who types ``meshclient.dashboard.app(client)`` after ``import
  meshclient`` gets an AttributeError: ``meshclient.dashboard`` is a submodule nobody
  imported), unless the whole span names an importable module;
- an ``import`` or ``from ... import`` statement is executed;
- ``except X`` evaluates ``X``;
- a telemetry name (a value in ``meshclient._names``) is a name, not code.

Anything else (prose words, header names, shell commands, formulas) is not Python and is left
alone. Prints one JSON list of ``[span, problem]`` for the spans that failed.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import re
import sys
from pathlib import Path
from typing import Any

import meshclient

#: What ``import meshclient`` alone provides, taken before anything else is imported.
BASE = frozenset(dir(meshclient))

import attrs  # noqa: E402
import httpx  # noqa: E402
import opentelemetry.trace  # noqa: E402, F401 (makes opentelemetry.trace reachable as docs write it)
import pybreaker  # noqa: E402
import tenacity  # noqa: E402
from opentelemetry.trace import NoOpTracerProvider  # noqa: E402

from meshclient import _names  # noqa: E402

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.DOTALL | re.MULTILINE)
SPAN = re.compile(r"(?<![`}])`([^`\n]+)`(?!`)")
UNIT = re.compile(r"\{\w+\}")

#: Spans that parse as Python but are prose: formulas and signatures shown for their shape.
NOT_CODE = {
    "[0, min(max_backoff, backoff * 2**(n-1))]": "the backoff formula",
    "f(request, error)": "the shape of a fallback function",
}


def inline_spans(text: str) -> list[str]:
    """Inline code spans of a Markdown page, outside fenced code blocks."""
    return SPAN.findall(FENCE.sub("", text))


def namespace(users: str) -> dict[str, Any]:
    """Names a reader of the docs has: the modules, public names, one sample client."""
    import time

    import opentelemetry.sdk.trace.sampling
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    ns: dict[str, Any] = {}
    for module in ("tenacity", "meshclient.testing", "meshclient.hooks", "meshclient.middleware"):
        mod = importlib.import_module(module)
        ns.update({name: getattr(mod, name) for name in mod.__all__})
    ns.update({name: getattr(meshclient, name) for name in meshclient.__all__})
    ns.update(vars(opentelemetry.sdk.trace.sampling))
    from meshclient import dashboard

    ns.update({"CallStats": dashboard.CallStats, "Dashboard": dashboard.Dashboard})
    ns.update(
        {
            "meshclient": meshclient,
            "httpx": httpx,
            "tenacity": tenacity,
            "pybreaker": pybreaker,
            "attrs": attrs,
            "time": time,
            "opentelemetry": opentelemetry,
            "NoOpTracerProvider": NoOpTracerProvider,
            "HTTPXClientInstrumentor": HTTPXClientInstrumentor,
            "dashboard": dashboard,
            # The objects the prose talks about (``client.snapshot()``, ``stats.series()``).
            "client": meshclient.Client(services={"users": [users]}),
            "stats": dashboard.CallStats(),
        }
    )
    return ns


def _chain(node: ast.AST) -> list[str] | None:
    """``a.b.c`` as ``["a", "b", "c"]``; ``None`` for anything else."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id, *reversed(parts)]
    return None


def _is_module(dotted: str) -> bool:
    try:
        return importlib.util.find_spec(dotted) is not None
    except (ImportError, ValueError):
        return False


def _check_meshclient_chains(tree: ast.AST) -> str | None:
    """Every ``meshclient.x`` in the span must exist after ``import meshclient`` alone."""
    for node in ast.walk(tree):
        chain = _chain(node)
        if chain and len(chain) > 1 and chain[0] == "meshclient" and chain[1] not in BASE:
            if node is tree and _is_module(".".join(chain)):
                continue  # the span names a module, as one imports it
            if not _is_module(f"meshclient.{chain[1]}"):
                return f"meshclient has no attribute {chain[1]!r}"
            return (
                f"meshclient.{chain[1]} is not there after `import meshclient` alone "
                f"(import the submodule, or write `from meshclient.{chain[1]} import ...`)"
            )
    return None


def _is_placeholder(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value is Ellipsis


def _prose_names(node: ast.AST, ns: dict[str, Any]) -> set[str]:
    """Names in ``node`` the namespace does not know."""
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and n.id not in ns}


def _looks_like_a_class(name: str) -> bool:
    return name[:1].isupper() and not name.isupper()


def _evaluate(node: ast.expr, ns: dict[str, Any]) -> Any:
    return eval(compile(ast.Expression(node), "<docs>", "eval"), dict(ns))


def _check_call_shape(call: ast.Call, ns: dict[str, Any]) -> None:
    """The callee exists and takes this many positional arguments and these keywords."""
    callee = _evaluate(call.func, ns)
    # A lone ``...`` stands for "the other arguments", whatever they are.
    positional = [None for arg in call.args if not _is_placeholder(arg)]
    keywords = {k.arg: None for k in call.keywords if k.arg is not None}
    inspect.signature(callee).bind_partial(*positional, **keywords)


def check(span: str, ns: dict[str, Any]) -> str | None:
    """``None`` when the span holds (or is not code); else what is wrong."""
    text = span.strip()
    if text in NOT_CODE or UNIT.fullmatch(text) or text in NAMES:
        return None
    if text.startswith("except "):
        text = text[len("except ") :]
    try:
        body = ast.parse(text, mode="eval").body
    except SyntaxError:
        try:
            module = ast.parse(text, mode="exec")
        except SyntaxError:
            return None  # not Python: a shell command, a header, a formula
        if module.body and all(isinstance(s, ast.Import | ast.ImportFrom) for s in module.body):
            try:
                exec(compile(module, "<docs>", "exec"), dict(ns))
            except Exception as exc:
                return f"{type(exc).__name__}: {exc}"
        return None
    problem = _check_meshclient_chains(body)
    if problem:
        return problem
    chain = _chain(body)
    if chain is not None and len(chain) > 1 and _is_module(".".join(chain)):
        return None  # a module, named as one imports it
    unknown = _prose_names(body, ns)
    if isinstance(body, ast.Call):
        root = _chain(body.func)
        if root is None or root[0] in unknown:
            # A method or function named in passing (``start()``, ``app.run()``); a class
            # name must exist, though.
            if root is not None and _looks_like_a_class(root[0]):
                return f"{root[0]} is not a public name"
            return None
        shape_only = unknown or any(_is_placeholder(n) for n in ast.walk(body))
        try:
            if shape_only:
                _check_call_shape(body, ns)
            else:
                _evaluate(body, ns)
        except TypeError as exc:
            if shape_only or "required" not in str(exc):
                return f"TypeError: {exc}"
            try:  # ``Service(zone="eu")``: keywords shown without the required arguments
                _check_call_shape(body, ns)
            except Exception as exc2:
                return f"{type(exc2).__name__}: {exc2}"
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        return None
    if chain is None or chain[0] in unknown:
        return None  # a literal, an expression over prose names, a field name
    try:
        _evaluate(body, ns)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


NAMES = frozenset(
    value for name, value in vars(_names).items() if name.isupper() and isinstance(value, str)
)


def main() -> int:
    page, users = Path(sys.argv[1]), sys.argv[2]
    ns = namespace(users)
    failures = []
    try:
        for span in inline_spans(page.read_text()):
            problem = check(span, ns)
            if problem is not None:
                failures.append([span, problem])
    finally:
        ns["client"].close()
    print(json.dumps(failures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
