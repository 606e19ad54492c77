import meshclient


def test_public_surface_is_exactly_all() -> None:
    exported = {name for name in dir(meshclient) if not name.startswith("_")}
    modules = {"discovery", "testing"}
    assert exported - modules == set(meshclient.__all__)


def test_all_is_sorted() -> None:
    assert meshclient.__all__ == sorted(meshclient.__all__)
