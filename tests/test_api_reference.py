"""The public API: every public name is in the API reference (``docs/api/``), and every
exported class and function names the module users import it from, as httpx's do.

The reference is one autodoc directive per public name, so reading the directives is enough
here (no Sphinx in the test environment); ``nox -s docs`` builds it with ``-W`` and makes the
same check against what Sphinx actually documented (``docs/conf.py``).
"""

from __future__ import annotations

import importlib
import pickle
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

import pytest

import meshclient
from meshclient._public import DEFINED_IN

ROOT = Path(__file__).resolve().parents[1]
API_PAGES = sorted((ROOT / "docs" / "api").glob("*.md"))
DIRECTIVE = re.compile(
    r"^\.\. auto(?:module|class|exception|function|data|attribute)::\s+(\S+)", re.MULTILINE
)
#: The public modules whose ``__all__`` is the public API (underscore modules are private).
PUBLIC_MODULES = (
    "meshclient",
    "meshclient.stack",
    "meshclient.hooks",
    "meshclient.middleware",
    "meshclient.discovery",
    "meshclient.testing",
    "meshclient.dashboard",
)


def public_names() -> list[tuple[str, str, Any]]:
    """``(module, name, object)`` for every name of every public module's ``__all__``."""
    return [
        (module_name, name, getattr(module, name))
        for module_name in PUBLIC_MODULES
        for module in [importlib.import_module(module_name)]
        for name in module.__all__
    ]


def exported_classes_and_functions() -> list[tuple[str, str, Any]]:
    return [entry for entry in public_names() if isinstance(entry[2], type | types.FunctionType)]


def documented() -> set[str]:
    return {name for page in API_PAGES for name in DIRECTIVE.findall(page.read_text())}


def reference_name(module_name: str, name: str, obj: Any) -> str:
    """Where the reference documents a public name: a submodule's name that is the very object
    ``meshclient`` exports under the same name is documented once, as ``meshclient.<name>``."""
    if name in meshclient.__all__ and getattr(meshclient, name) is obj:
        return f"meshclient.{name}"
    return f"{module_name}.{name}"


def test_the_reference_has_a_page_per_public_module() -> None:
    assert {f"meshclient.{page.stem}" for page in API_PAGES} >= set(PUBLIC_MODULES[1:])
    assert set(PUBLIC_MODULES) <= documented()


def test_every_public_name_is_in_the_reference() -> None:
    expected = {reference_name(*entry) for entry in public_names()}
    missing = sorted(expected - documented())
    assert missing == [], f"add these to docs/api/*.md: {missing}"


def test_the_reference_documents_nothing_private_or_gone() -> None:
    """Each directive names a public object by a public path (so a rename or a removal that
    the reference missed fails here, before the docs build does)."""
    public = {reference_name(*entry) for entry in public_names()} | set(PUBLIC_MODULES)
    assert sorted(documented() - public) == []


def test_the_public_submodules_are_the_documented_ones() -> None:
    """A new public module (no underscore) of the package needs a page and an entry above."""
    package = Path(meshclient.__file__).parent
    found = {
        f"meshclient.{path.stem if path.is_file() else path.name}"
        for path in package.iterdir()
        if not path.name.startswith("_")
        and (path.suffix == ".py" or (path / "__init__.py").exists())
    }
    # ``meshclient.demo`` is a program (``python -m meshclient.demo``), not an API.
    assert found - {"meshclient.demo"} == set(PUBLIC_MODULES) - {"meshclient"}


@pytest.mark.parametrize(
    ("module_name", "name", "obj"),
    exported_classes_and_functions(),
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_exported_objects_name_their_public_module(module_name: str, name: str, obj: Any) -> None:
    assert f"{obj.__module__}.{obj.__qualname__}" == reference_name(module_name, name, obj)


def test_a_repr_says_what_users_import() -> None:
    assert repr(meshclient.Retry) == "<class 'meshclient.Retry'>"
    assert repr(meshclient.stack.RetryModule) == "<class 'meshclient.stack.RetryModule'>"
    assert meshclient.discovery.EtcdRegistration.__module__ == "meshclient.discovery"
    assert meshclient.DnsDiscovery.__module__ == "meshclient"


@pytest.mark.parametrize(
    "obj",
    sorted({id(e[2]): e[2] for e in exported_classes_and_functions()}.values(), key=repr),
    ids=lambda obj: f"{obj.__module__}.{obj.__qualname__}",
)
def test_exported_classes_and_functions_pickle_by_public_name(obj: Any) -> None:
    assert pickle.loads(pickle.dumps(obj)) is obj


@pytest.mark.parametrize(
    "value",
    [
        meshclient.Retry(attempts=5, backoff=0.1),
        meshclient.Timeout(total=2.0, attempt=0.5),
        meshclient.Policy(timeout=1.0, retry=None, idempotent=True),
        meshclient.OutlierDetection(consecutive_failures=3),
        meshclient.hooks.RetryScheduled("users", "GET", "127.0.0.1:8001", 1, "503", 0.02),
        meshclient.testing.Behaviour(status=503, retry_after=1.0),
        meshclient.Endpoint("127.0.0.1", 8001, weight=2.0, zone="a", metadata={"v": "2"}),
    ],
    ids=lambda value: type(value).__name__,
)
def test_configuration_values_survive_pickling(value: object) -> None:
    """Frozen configuration values cross process boundaries (multiprocessing, a task queue)."""
    assert pickle.loads(pickle.dumps(value)) == value


ERRORS = sorted(
    {
        obj
        for obj in vars(meshclient).values()
        if isinstance(obj, type) and issubclass(obj, meshclient.MeshError)
    },
    key=lambda cls: cls.__name__,
)


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__name__)
def test_errors_survive_pickling_with_what_happened(cls: type[meshclient.MeshError]) -> None:
    error = cls("too late", attempts=2, endpoints=["a:1"], elapsed=1.5)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls
    assert (str(copy), copy.attempts, copy.endpoints, copy.elapsed) == (
        "too late",
        2,
        ("a:1",),
        1.5,
    )


def test_a_rate_limited_error_keeps_its_retry_after() -> None:
    error = meshclient.RateLimitedError("no permit", retry_after=0.25)
    assert pickle.loads(pickle.dumps(error)).retry_after == 0.25


@pytest.mark.parametrize(
    "cls",
    sorted(
        {id(obj): obj for obj in DEFINED_IN if isinstance(obj, type)}.values(),
        key=lambda cls: f"{cls.__module__}.{cls.__qualname__}",
    ),
    ids=lambda cls: f"{cls.__module__}.{cls.__qualname__}",
)
def test_type_hints_resolve_as_in_the_defining_module(cls: type) -> None:
    """``typing.get_type_hints`` (attrs.resolve_types, cattrs) evaluates a class's string
    annotations in ``sys.modules[cls.__module__]``: renaming the module must not break what
    resolved in the module that defines the class."""
    home = vars(sys.modules[DEFINED_IN[cls]])
    try:
        expected = typing.get_type_hints(cls, globalns=home, include_extras=True)
    except NameError:
        pytest.xfail("names imported only for type checking: unresolvable wherever it lives")
    assert typing.get_type_hints(cls, include_extras=True) == expected
