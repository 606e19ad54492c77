"""Write the sync request path from the async one: ``python scripts/unasync.py [--check]``.

``src/meshclient/_async/`` is the source; each module there becomes its twin in
``src/meshclient/_sync/`` by plain token replacements (``await x`` -> ``x``,
``aclose`` -> ``close``, ...), then ``ruff format``. With ``--check`` nothing is written and
the exit status says whether the sync files are up to date (``tests/test_unasync.py`` runs
it), so the two drivers cannot drift apart.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "src" / "meshclient" / "_async"
TARGET = ROOT / "src" / "meshclient" / "_sync"

#: Keyword forms first, then whole identifiers.
KEYWORDS = [
    (re.compile(r"\basync def\b"), "def"),
    (re.compile(r"\basync for\b"), "for"),
    (re.compile(r"\basync with\b"), "with"),
    (re.compile(r"\bawait "), ""),
]
IDENTIFIERS = {
    "AsyncMeshTransport": "MeshTransport",
    "AsyncBaseTransport": "BaseTransport",
    "AsyncByteStream": "SyncByteStream",
    "AsyncResponseStream": "ResponseStream",
    "AsyncDeadlineBackend": "DeadlineBackend",
    "AsyncDeadlineStream": "DeadlineStream",
    "AsyncNetworkBackend": "NetworkBackend",
    "AsyncNetworkStream": "NetworkStream",
    "async_network_backend": "sync_network_backend",
    "AsyncIterator": "Iterator",
    "handle_async_request": "handle_request",
    "__aiter__": "__iter__",
    "aclose": "close",
    "wait_async": "wait",
    "__anext__": "__next__",
    "StopAsyncIteration": "StopIteration",
}
_IDENTIFIER = re.compile(r"\b(" + "|".join(map(re.escape, IDENTIFIERS)) + r")\b")
#: Helpers written twice (``_io.py`` and friends): ``name_async`` becomes ``name_sync``.
_TWIN = re.compile(r"\b(\w+)_async\b")
_DOCSTRING = re.compile(r'\A"""(.*?)"""', re.DOTALL)
_ASYNCHRONOUS = "asynchronous=True"


def unasync(text: str, name: str) -> str:
    header = f"Generated from ``_async/{name}`` by ``scripts/unasync.py``: edit that file instead."
    body = _DOCSTRING.sub(f'"""{header}"""', text, count=1)
    for pattern, replacement in KEYWORDS:
        body = pattern.sub(replacement, body)
    body = _IDENTIFIER.sub(lambda match: IDENTIFIERS[match.group(1)], body)
    body = _TWIN.sub(r"\1_sync", body)
    return body.replace(_ASYNCHRONOUS, "asynchronous=False")


def formatted(text: str, path: Path) -> str:
    """``text`` with its imports sorted and formatted, as ``nox -s lint`` wants it."""
    for command in (["check", "--select", "I", "--fix-only", "--exit-zero"], ["format"]):
        text = subprocess.run(
            [sys.executable, "-m", "ruff", *command, "--stdin-filename", str(path), "-"],
            input=text,
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        ).stdout
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="write nothing; fail on drift")
    args = parser.parse_args(argv)
    stale = []
    for source in sorted(SOURCE.glob("*.py")):
        if source.name == "__init__.py":
            continue
        target = TARGET / source.name
        text = formatted(unasync(source.read_text(), source.name), target)
        if target.exists() and target.read_text() == text:
            continue
        stale.append(target)
        if not args.check:
            target.write_text(text)
    for target in stale:
        verb = "out of date" if args.check else "written"
        print(f"{target.relative_to(ROOT)}: {verb}")
    if args.check and stale:
        print("run: python scripts/unasync.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
