import types

import meshclient


def test_public_surface_is_exactly_all() -> None:
    """Every public name is in ``__all__``; public submodules (hooks, testing, ...) aside."""
    exported = {name for name in dir(meshclient) if not name.startswith("_")}
    modules = {name for name in exported if isinstance(getattr(meshclient, name), types.ModuleType)}
    assert exported - modules == set(meshclient.__all__)


def test_all_is_sorted() -> None:
    assert meshclient.__all__ == sorted(meshclient.__all__)
