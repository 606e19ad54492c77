"""The CI switch of ``tests/conftest.py``: under ``MESHCLIENT_REQUIRE_REAL=1`` no skip of any
kind passes silently; without it, skips stay skips.

Each test runs a small suite (pytester, in process) whose conftest is a copy of ours.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

REQUIRE_REAL = "MESHCLIENT_REQUIRE_REAL"
CONFTEST = Path(__file__).with_name("conftest.py").read_text()
#: Every small suite also has a test that passes, so a run that only skips is not empty.
PASSING = "def test_passes():\n    pass\n"

#: Skips raised while a module (or a directory's conftest) is imported, and their reasons.
COLLECTION_SKIPS = {
    "module_skip": (
        {
            "test_module": (
                "import pytest\n"
                "pytest.skip('no etcd here', allow_module_level=True)\n\n"
                "def test_never_collected():\n    pass\n"
            )
        },
        "no etcd here",
    ),
    "importorskip": (
        {
            "test_module": (
                "import pytest\n"
                "pytest.importorskip('meshclient_no_such_module')\n\n"
                "def test_never_collected():\n    pass\n"
            )
        },
        "could not import 'meshclient_no_such_module'*",
    ),
    "conftest_skip": (
        {
            "sub/conftest": (
                "import pytest\npytest.skip('no dnsmasq here', allow_module_level=True)\n"
            ),
            "sub/test_in_sub": "def test_never_collected():\n    pass\n",
        },
        "no dnsmasq here",
    ),
}

#: Skips raised while a test is set up or run, and what the failure says under the switch.
RUN_SKIPS = {
    "skipif_mark": (
        "import pytest\n\n"
        "@pytest.mark.skipif(True, reason='no bind9 here')\n"
        "def test_skipped():\n    pass\n",
        f"*skipped, but {REQUIRE_REAL}=1 forbids skipping: no bind9 here",
    ),
    "module_skipif_mark": (
        "import pytest\n\n"
        "pytestmark = pytest.mark.skipif(True, reason='no chromium here')\n\n"
        "def test_skipped():\n    pass\n",
        f"*skipped, but {REQUIRE_REAL}=1 forbids skipping: no chromium here",
    ),
    "skip_mark": (
        "import pytest\n\n@pytest.mark.skip(reason='later')\ndef test_skipped():\n    pass\n",
        f"*skipped, but {REQUIRE_REAL}=1 forbids skipping: later",
    ),
    "skip_in_test": (
        "import pytest\n\ndef test_skipped():\n    pytest.skip('not here')\n",
        f"*skipped, but {REQUIRE_REAL}=1 forbids skipping: not here",
    ),
    "skip_in_fixture": (
        "import pytest\n\n"
        "@pytest.fixture\n"
        "def tool():\n    pytest.skip('fixture says no')\n\n"
        "def test_skipped(tool):\n    pass\n",
        f"*skipped, but {REQUIRE_REAL}=1 forbids skipping: fixture says no",
    ),
    "require_real": (
        "def test_skipped(require_real):\n"
        "    require_real('etcd', 'etcd-server is not installed')\n",
        f"etcd unavailable: etcd-server is not installed ({REQUIRE_REAL}=1 forbids skipping)",
    ),
}

Run = Callable[..., pytest.RunResult]


@pytest.fixture
def run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Run:
    """Run a suite made of ``files`` (name -> source), with or without the CI switch."""

    def go(files: dict[str, str], *, ci: bool) -> pytest.RunResult:
        pytester.makeconftest(CONFTEST)
        pytester.makepyfile(test_passing=PASSING, **files)
        if ci:
            monkeypatch.setenv(REQUIRE_REAL, "1")
        else:
            monkeypatch.delenv(REQUIRE_REAL, raising=False)
        return pytester.runpytest("-p", "no:cacheprovider", "-rA")

    return go


@pytest.mark.parametrize("kind", COLLECTION_SKIPS)
def test_a_skip_while_collecting_is_a_collection_error_under_the_switch(
    run: Run, kind: str
) -> None:
    files, reason = COLLECTION_SKIPS[kind]
    result = run(files, ci=True)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [f"*skipped while collecting, but {REQUIRE_REAL}=1 forbids skipping: {reason}"]
    )
    assert result.ret == pytest.ExitCode.INTERRUPTED


@pytest.mark.parametrize("kind", COLLECTION_SKIPS)
def test_a_skip_while_collecting_stays_a_skip_without_the_switch(run: Run, kind: str) -> None:
    files, _ = COLLECTION_SKIPS[kind]
    result = run(files, ci=False)
    result.assert_outcomes(passed=1, skipped=1)
    assert result.ret == pytest.ExitCode.OK


@pytest.mark.parametrize("kind", RUN_SKIPS)
def test_a_skip_in_a_test_is_a_failure_under_the_switch(run: Run, kind: str) -> None:
    """A failure, or an error when the skip came while setting the test up."""
    source, message = RUN_SKIPS[kind]
    result = run({"test_module": source}, ci=True)
    outcomes = result.parseoutcomes()
    assert outcomes.get("skipped", 0) == 0, outcomes
    assert (outcomes["passed"], outcomes.get("failed", 0) + outcomes.get("errors", 0)) == (1, 1)
    result.stdout.fnmatch_lines([message])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


@pytest.mark.parametrize("kind", RUN_SKIPS)
def test_a_skip_in_a_test_stays_a_skip_without_the_switch(run: Run, kind: str) -> None:
    source, _ = RUN_SKIPS[kind]
    result = run({"test_module": source}, ci=False)
    result.assert_outcomes(passed=1, skipped=1)


def test_an_expected_failure_is_not_a_skip(run: Run) -> None:
    source = (
        "import pytest\n\n@pytest.mark.xfail(strict=True)\ndef test_xfails():\n    assert False\n"
    )
    result = run({"test_module": source}, ci=True)
    result.assert_outcomes(passed=1, xfailed=1)


def test_require_real_skips_without_the_switch(
    require_real: Callable[[str, str], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(REQUIRE_REAL, raising=False)
    with pytest.raises(pytest.skip.Exception, match="etcd unavailable"):
        require_real("etcd", "binary not found")


def test_require_real_fails_under_the_switch(
    require_real: Callable[[str, str], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(REQUIRE_REAL, "1")
    with pytest.raises(pytest.fail.Exception, match="etcd unavailable"):
        require_real("etcd", "binary not found")
