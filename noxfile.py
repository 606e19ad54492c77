"""Tasks: `nox -s tests` (the CI suite), `tests_oldest`, `lint`, `typecheck`, `build`, `bench`,
`demo`, `docs`."""

from __future__ import annotations

import nox

PYPROJECT = nox.project.load_toml("pyproject.toml")


def group(name: str) -> list[str]:
    return list(nox.project.dependency_groups(PYPROJECT, name))


nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole test suite against real servers on 127.0.0.1."""
    session.install("-e", ".", *group("test"))
    session.run("pytest", *session.posargs, success_codes=[0])


#: OpenTelemetry packages the suite needs besides the API, at the API's lowest allowed release:
#: the SDK and the OTLP exporter are released with the API, the httpx instrumentation beside it.
OTEL_OLDEST = {
    "opentelemetry-api": "1.30.0",
    "opentelemetry-sdk": "1.30.0",
    "opentelemetry-exporter-otlp-proto-http": "1.30.0",
    "opentelemetry-proto": "1.30.0",
    "opentelemetry-instrumentation-httpx": "0.51b0",
}
#: Tests that check a third-party library's behaviour today, for a page that describes it
#: (not meshclient's behaviour); they need its newest release.
NEWEST_ONLY = [
    # migrating.md: how tenacity 9.1.3+ shares statistics between calls of a decorated function
    "tests/test_docs_numbers.py::test_tenacity_decorator_runs_each_call_on_a_copy_sharing_one_statistics_dict",
]


def lowest(requirements: list[str]) -> list[str]:
    """Each requirement pinned to its lower bound: ``httpx>=0.28,<0.29`` -> ``httpx==0.28``."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    pins = []
    for text in requirements:
        requirement = Requirement(text)
        floors = [Version(s.version) for s in requirement.specifier if s.operator in {">=", "=="}]
        if not floors:
            raise ValueError(f"{text!r} in pyproject.toml has no lower bound")
        pins.append(f"{requirement.name}=={max(floors)}")
    return pins


@nox.session(python=PYTHON)
def tests_oldest(session: nox.Session) -> None:
    """The whole suite against the oldest releases pyproject.toml allows (CI runs it too).

    Every run-time dependency and every extra's at its lower bound (httpx, httpcore, the
    OpenTelemetry API and SDK, tenacity, attrs, anyio, dnspython, ...); test tools at their
    newest. `nox -s tests` in a fresh virtualenv (as in CI) is the newest allowed of all.
    """
    from packaging.version import Version

    project = PYPROJECT["project"]
    runtime = [*project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        runtime += extra
    floors = dict(pin.split("==") for pin in lowest(runtime))
    if Version(floors["opentelemetry-api"]) != Version(OTEL_OLDEST["opentelemetry-api"]):
        session.error("pyproject.toml's opentelemetry-api floor moved: update OTEL_OLDEST")
    pins = [f"{name}=={version}" for name, version in sorted({**floors, **OTEL_OLDEST}.items())]
    session.install("-e", ".", *group("test"), *pins)
    # What pip resolved is what was asked for (a pin it could not honour fails the install).
    session.run("python", "-c", CHECK_PINS, *pins)
    deselect = [arg for test in NEWEST_ONLY for arg in ("--deselect", test)]
    session.run("pytest", *deselect, *session.posargs)


CHECK_PINS = """
import sys
from importlib.metadata import version
from packaging.requirements import Requirement
from packaging.version import Version

found = []
for pin in sys.argv[1:]:
    requirement = Requirement(pin)
    wanted = Version(next(iter(requirement.specifier)).version)
    have = Version(version(requirement.name))
    found.append(f"{requirement.name} {have}")
    if have != wanted:
        sys.exit(f"{requirement.name}: {have} installed, {wanted} wanted")
print("oldest allowed:", ", ".join(found))
"""


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install(*group("lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".", *group("typecheck"))
    session.run("mypy", "--strict", "src")


@nox.session(python=PYTHON)
def build(session: nox.Session) -> None:
    """The wheel and the sdist in dist/, checked with twine, the wheel installed and imported."""
    import shutil
    from pathlib import Path

    session.install(*group("build"))
    shutil.rmtree("dist", ignore_errors=True)
    session.run("python", "-m", "build", "--outdir", "dist", ".")
    artifacts = sorted(str(path) for path in Path("dist").iterdir())
    session.run("twine", "check", "--strict", *artifacts)
    wheel = next(path for path in artifacts if path.endswith(".whl"))
    session.install("--force-reinstall", f"{wheel}[dns]")
    session.run(
        "python",
        "-c",
        "import importlib.metadata as m, meshclient, meshclient.discovery;"
        " print('installed', m.version('meshclient'), 'from', meshclient.__file__)",
    )
    print("\n".join(["built:", *artifacts]))


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Ratios against raw httpx measured in the same run; the docs render its JSON."""
    session.install(".", *group("bench"))
    # matplotlib (the CDF plot) writes its cache here rather than into $HOME.
    session.env["MPLCONFIGDIR"] = session.create_tmp()
    session.run("python", "-m", "bench", *session.posargs)


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """A local mesh; the same traffic through httpx and meshclient (`-- --duration 60`)."""
    session.install("-e", ".[demo]")
    session.run("python", "-m", "meshclient.demo", *session.posargs)


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """The documentation, offline, warnings as errors: build/docs/index.html."""
    session.install("-e", ".", *group("docs"))
    session.run(
        "sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "build/docs", *session.posargs
    )


@nox.session(python=PYTHON)
def mutants(session: nox.Session) -> None:
    """Mutation testing of the decision modules and the engine (issue 13); not run by CI.

    mutmut mutates what `[tool.mutmut]` in pyproject.toml names and runs, for each mutant, only
    the fast socket-free tests that execute the mutated function. Prints per module: mutants,
    killed, timed out, survived, listed equivalents and the kill rate; writes the survivors that
    tests/mutants-equivalent.txt does not list to build/mutants/survivors.txt. Fails when a
    module kills under 90 % or a survivor is neither killed nor listed.

    `nox -s mutants` starts afresh (about 15 min on 2 cores); `nox -s mutants -- NAME...`
    re-tests only the named mutants (globs as in `mutmut run`), keeping the other results.
    """
    import os
    import shutil

    session.install("-e", ".", *group("mutants"))
    if not session.posargs:
        shutil.rmtree("mutants", ignore_errors=True)
    # Fixed, fewer hypothesis examples: the same verdict on every run, in a tenth of the time.
    session.env["HYPOTHESIS_PROFILE"] = "mutants"
    children = str(os.cpu_count() or 1)
    session.run("mutmut", "run", "--max-children", children, *session.posargs)

    session.run("python", "scripts/mutants_report.py")
