"""Tasks: `nox -s tests` (the CI suite), `lint`, `typecheck`, `bench`, `demo`, `docs`."""

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
