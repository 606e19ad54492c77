"""The code in the docs runs: every ```python block of docs/*.md and README.md, against real
loopback backends, and every piece of code quoted inline in the prose.

Blocks of one page run in order in one fresh interpreter (later blocks may use what earlier
ones defined). The addresses the docs use — ``127.0.0.1:8001``-``8003`` for "users" and
``127.0.0.1:9001``-``9002`` for "orders" — are rewritten to ``Backend``s started here. A
block that cannot run on its own (a fragment of a larger project) is written as
```{code-block} python instead, which the docs render the same way.

Inline code (``Retry(attempts=3)``, ``client.snapshot()``, ``from meshclient.middleware import
DeadlineMiddleware``) is checked by ``tests/docs_inline.py`` in a fresh interpreter, as a
reader would type it after ``import meshclient``: see its docstring for the rules.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshclient.testing import Backend

ROOT = Path(__file__).resolve().parents[1]
PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
FENCE = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
ADDRESS = re.compile(r"127\.0\.0\.1:(8001|8002|8003|9001|9002)\b")


def python_blocks(page: Path) -> list[str]:
    return FENCE.findall(page.read_text())


PAGES_WITH_CODE = [page for page in PAGES if python_blocks(page)]


@pytest.fixture(scope="module")
def addresses() -> Iterator[dict[str, str]]:
    """Placeholder port in the docs -> a running loopback backend's address."""
    backends = {
        port: Backend(f"{'users' if port.startswith('8') else 'orders'}-{port[-1]}").start()
        for port in ("8001", "8002", "8003", "9001", "9002")
    }
    try:
        yield {port: backend.address for port, backend in backends.items()}
    finally:
        for backend in backends.values():
            backend.stop()


def test_the_docs_have_code_to_run() -> None:
    names = {page.name for page in PAGES_WITH_CODE}
    assert {"quickstart.md", "recipes.md", "testing.md", "README.md"} <= names


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda p: p.name)
def test_page_code_runs(page: Path, addresses: dict[str, str], tmp_path: Path) -> None:
    blocks = python_blocks(page)
    code = "\n\n".join(
        f"# --- {page.name}, block {i + 1} ---\n{block}" for i, block in enumerate(blocks)
    )
    code = ADDRESS.sub(lambda m: addresses[m.group(1)], code)
    # A page that defines pytest tests (with fixtures) runs under pytest, which also runs
    # its module-level code; any other page runs as a script.
    script = tmp_path / f"test_{page.stem}_code.py"
    script.write_text(code)
    runner = ["-m", "pytest", "-q", "-p", "no:cacheprovider"] if "def test_" in code else []
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(
        [sys.executable, *runner, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, f"{page.name}:\n{result.stdout}\n{result.stderr}"


INLINE_CHECKER = Path(__file__).resolve().parent / "docs_inline.py"


def inline_failures(page: Path, users: str) -> list[list[str]]:
    result = subprocess.run(
        [sys.executable, str(INLINE_CHECKER), str(page), users],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert result.returncode == 0, result.stderr
    failures: list[list[str]] = json.loads(result.stdout.strip().splitlines()[-1])
    return failures


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_inline_code_in_the_prose_works_as_written(page: Path, addresses: dict[str, str]) -> None:
    assert inline_failures(page, addresses["8001"]) == []


def test_the_inline_check_catches_what_a_reader_would_trip_on(
    addresses: dict[str, str], tmp_path: Path
) -> None:
    """The checker itself: each of these spans is wrong in a way a reader would find out."""
    page = tmp_path / "wrong.md"
    wrong = [
        "meshclient.dashboard.app(client)",  # a submodule `import meshclient` does not load
        "meshclient.testing.Backend",
        "meshclient.Nope",
        "Retry(attemps=3)",  # a misspelt keyword
        "Retry(attempts=0)",  # a value the constructor refuses
        "Service(..., balancer_x=...)",  # a keyword the signature lacks, placeholders aside
        "Polcy(timeout=1)",  # a class that does not exist
        "from meshclient.middleware import Nope",
        "except meshclient.CircuitOpenErr",
    ]
    fine = [
        "meshclient.Timeout(total=2.0, attempt=0.5)",
        "client.snapshot()",
        "meshclient.middleware",
        "from meshclient.middleware import DeadlineMiddleware",
        "Service(..., balancer=...)",
        "except meshclient.CircuitOpenError",
        "start()",  # a method named in passing
        "meshclient.retry_budget.exhausted",  # a telemetry name
        "x-meshclient-timeout-ms: 300",  # not Python
    ]
    page.write_text(
        "Some prose.\n\n"
        + "\n".join(f"- `{span}`" for span in [*wrong, *fine])
        + "\n\n```python\nmeshclient.Nope  # inside a code block: not inline\n```\n"
    )
    failures = inline_failures(page, addresses["8001"])
    assert [span for span, _ in failures] == wrong
