"""docs/install.md and CHANGELOG.md say what pyproject.toml says: the supported versions, the
extras, the version being released."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
INSTALL = (ROOT / "docs" / "install.md").read_text()
CHANGELOG = (ROOT / "CHANGELOG.md").read_text()


def requirements() -> list[Requirement]:
    extras = [text for extra in PROJECT["optional-dependencies"].values() for text in extra]
    return [Requirement(text) for text in [*PROJECT["dependencies"], *extras]]


def section(text: str, heading: str) -> str:
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


@pytest.mark.parametrize("requirement", requirements(), ids=str)
def test_the_supported_versions_table_gives_every_lower_bound(requirement: Requirement) -> None:
    table = section(INSTALL, "Supported versions")
    floor = next(s.version for s in requirement.specifier if s.operator == ">=")
    assert f">={floor}" in table or f"{floor} and newer" in table or f"from {floor}" in table


def test_the_extras_table_lists_exactly_the_extras() -> None:
    rows = re.findall(r"^\| `(\w+)` \|", section(INSTALL, "Extras"), re.MULTILINE)
    assert sorted(rows) == sorted(PROJECT["optional-dependencies"])


def test_the_python_floor_is_the_one_pyproject_requires() -> None:
    floor = PROJECT["requires-python"].removeprefix(">=")
    assert f"| Python | {floor} and newer |" in INSTALL


def test_the_changelog_has_a_section_for_this_version() -> None:
    assert re.search(rf"^## \[{re.escape(PROJECT['version'])}\] - ", CHANGELOG, re.MULTILINE)


def test_the_wheel_the_page_names_is_this_version() -> None:
    assert f"meshclient-{PROJECT['version']}-py3-none-any.whl" in INSTALL
