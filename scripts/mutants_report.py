"""The report of `nox -s mutants`: per module mutants, killed, timed out, survived, listed
equivalents and the kill rate, from mutmut's result files (`mutants/**/*.meta`).

Survivors that tests/mutants-equivalent.txt does not list go to build/mutants/survivors.txt as
`module:line: old → new`, the form that file takes (with `— reason` added). Exits 1 when a
module kills under 90 %, a survivor is unlisted or a mutant was not run. Run from the repository
root; `--module NAME` reports only the named modules (for instance while mutmut still runs).
"""

from __future__ import annotations

import argparse
import ast
import difflib
import functools
import json
import sys
import tomllib
from pathlib import Path

# mutmut's verdicts by exit code (mutmut/stats.py); a mutant killed at the CPU limit
# (SIGXCPU, then SIGKILL) has timed out.
KILLED, TIMED_OUT, UNTESTED = {1, 3}, {36, 24, -24, 152, 255, -9}, {5, 33}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", action="append", help="a file name such as _bulkhead.py")
    parser.add_argument("--out", default="build/mutants/survivors.txt", help="survivors file")
    args = parser.parse_args()
    pyproject = tomllib.loads(Path("pyproject.toml").read_text())
    modules = [Path(m) for m in pyproject["tool"]["mutmut"]["only_mutate"]]
    if args.module:
        modules = [m for m in modules if m.name in args.module]

    def functions(path: Path) -> dict[str, tuple[int, int]]:
        """The lines (first = `def`, last) of every function and method of a file, by the name
        mutmut gives it (`x_function`, `xǁClassǁmethod`); generated copies keep their own."""
        found: dict[str, tuple[int, int]] = {}
        for node in ast.parse(path.read_text()).body:
            members = node.body if isinstance(node, ast.ClassDef) else [node]
            prefix = f"x\u01c1{node.name}\u01c1" if isinstance(node, ast.ClassDef) else "x_"
            for item in members:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    name = item.name if "__mutmut_" in item.name else prefix + item.name
                    found[name] = (item.lineno, item.end_lineno or item.lineno)
        return found

    @functools.cache
    def generated(path: Path) -> tuple[list[str], dict[str, tuple[int, int]], dict[str, int]]:
        """A mutated file's lines and functions, and the `def` line of each original function."""
        mutated = Path("mutants", path)
        defs = {name: first for name, (first, _) in functions(path).items()}
        return mutated.read_text().splitlines(), functions(mutated), defs

    def describe(path: Path, key: str) -> tuple[int, str]:
        """The source line a mutant changes and the change, as `old → new`."""
        lines, spans, defs = generated(path)
        name = key.rpartition(".")[2]
        mangled = name.rpartition("__mutmut_")[0]

        def body(generated_name: str) -> list[str]:
            first, last = spans[generated_name]
            text = lines[first - 1 : last]
            return [text[0].replace(generated_name, "f", 1), *text[1:]]

        orig, mutant = body(f"{mangled}__mutmut_orig"), body(name)
        matcher = difflib.SequenceMatcher(a=orig, b=mutant, autojunk=False)
        for tag, a0, a1, b0, b1 in matcher.get_opcodes():
            if tag != "equal":
                old = " ⏎ ".join(line.strip() for line in orig[a0:a1]) or "(nothing)"
                new = " ⏎ ".join(line.strip() for line in mutant[b0:b1]) or "(removed)"
                return defs[mangled] + a0, f"{old} → {new}".replace("def f(", "def (")
        return defs[mangled], "(no change in the text)"

    # tests/mutants-equivalent.txt: `module:line: old → new — why it cannot change behaviour`.
    listed: list[tuple[str, int, str]] = []
    equivalents_file = Path("tests/mutants-equivalent.txt")
    for raw in equivalents_file.read_text().splitlines() if equivalents_file.exists() else []:
        if raw.strip() and not raw.startswith("#"):
            module, line, rest = raw.split(":", 2)
            listed.append((module, int(line), rest.strip()))
    used: set[int] = set()

    def listed_as_equivalent(module: str, line: int, change: str) -> bool:
        """Listed with a reason: on this line, or elsewhere in the module if the line moved."""
        candidates = [
            i
            for i, (m, _, rest) in enumerate(listed)
            if m == module and rest.startswith(f"{change} — ") and rest[len(change) + 3 :].strip()
        ]
        exact = [i for i in candidates if listed[i][1] == line]
        chosen = (exact or [i for i in candidates if i not in used] or [None])[0]
        if chosen is None:
            return False
        used.add(chosen)
        return True

    rows: list[tuple[object, ...]] = []
    survivors: list[tuple[int, str]] = []
    below: list[str] = []
    removed = 0
    for path in modules:
        first = len(survivors)
        meta = json.loads(Path(f"mutants/{path}.meta").read_text())["exit_code_by_key"]
        defs = generated(path)[2]
        for key in [k for k in meta if k.rpartition(".")[2].rpartition("__mutmut_")[0] not in defs]:
            del meta[key]  # its function left the source after the run
            removed += 1
        names = ("pending", "killed", "timeout", "survived", "untested", "equivalent")
        counts = dict.fromkeys(names, 0)
        for key, code in sorted(meta.items()):
            if code is None:  # mutmut has not run it (yet)
                counts["pending"] += 1
                continue
            if code in KILLED:
                counts["killed"] += 1
                continue
            if code in TIMED_OUT:
                counts["timeout"] += 1
                continue
            line, change = describe(path, key)
            if listed_as_equivalent(path.name, line, change):
                counts["equivalent"] += 1
                continue
            counts["survived"] += 1
            untested = code in UNTESTED
            counts["untested"] += untested
            label = "untested" if untested else "survived" if code == 0 else f"exit code {code}"
            where = f"{path.name}:{line}: {change}"
            survivors.append((line, f"{where}    # {label}: mutmut show '{key}'"))
        scored = len(meta) - counts["equivalent"] - counts["pending"]
        rate = (counts["killed"] + counts["timeout"]) / scored if scored else 1.0
        below += [path.name] if rate < 0.9 else []
        rows.append((path.name, len(meta), *counts.values(), f"{rate:.1%}"))
        survivors[first:] = sorted(survivors[first:])  # by line within the module

    header = (
        "module",
        "mutants",
        "not run",
        "killed",
        "timed out",
        "survived",
        "of which untested",
    )
    header += ("equivalent", "kill rate")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).rjust(width) for cell, width in zip(row, widths, strict=True)))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(f"{text}\n" for _, text in survivors))
    print(f"{len(survivors)} survivors not listed as equivalent: {out}")
    if removed:
        print(f"{removed} mutants of functions removed from the source since the run: left out")
    for i, (module, line, rest) in enumerate(listed):
        if i not in used and module in {path.name for path in modules}:
            print(f"stale in {equivalents_file}: {module}:{line}: {rest}")
    pending = sum(int(str(row[2])) for row in rows)
    if below or survivors or pending:
        print(
            f"under 90 % killed: {below or 'none'}; {len(survivors)} survivors unlisted; "
            f"{pending} not run"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
