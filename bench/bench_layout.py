"""Module boundaries in figures (issue 28): module sizes, long functions and functions with many parameters.

Counts every ``def`` in ``nasgen/`` (methods too; ``self``/``cls`` not counted as parameters) with ``ast``:
functions over 60 lines, functions with more than 8 parameters, and modules over 800 lines, for this tree
and, with ``--baseline REV``, for a git revision read with ``git archive`` (nothing is built or imported).

Run: ``python bench/bench_layout.py [--baseline 8118c83] [--list]``. Nothing here is imported by the tests.
"""

from __future__ import annotations

import argparse
import ast
import io
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def stats(files: dict[str, str]) -> dict:
    """{'long': [(lines, name)], 'wide': [(params, name)], 'big': [(lines, module)]} of ``{path: source}``."""
    long_, wide, big = [], [], []
    for path, source in sorted(files.items()):
        if len(source.splitlines()) > 800:
            big.append((len(source.splitlines()), path))
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            a = node.args
            params = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs) + bool(a.vararg) + bool(a.kwarg)
            if a.args and a.args[0].arg in ("self", "cls"):
                params -= 1
            lines = node.end_lineno - node.lineno + 1
            if lines > 60:
                long_.append((lines, f"{path}:{node.name}"))
            if params > 8:
                wide.append((params, f"{path}:{node.name}"))
    return {"long": sorted(long_, reverse=True), "wide": sorted(wide, reverse=True), "big": sorted(big, reverse=True)}


def tree_files() -> dict[str, str]:
    return {str(p.relative_to(ROOT)): p.read_text() for p in (ROOT / "nasgen").rglob("*.py")}


def revision_files(rev: str) -> dict[str, str]:
    data = subprocess.run(["git", "archive", rev, "nasgen"], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return {m.name: archive.extractfile(m).read().decode() for m in archive if m.isfile() and m.name.endswith(".py")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=None, help="a git revision to count beside this tree")
    parser.add_argument("--list", action="store_true", help="also list the functions and modules counted")
    args = parser.parse_args(argv)
    columns = [("this tree", stats(tree_files()))]
    if args.baseline:
        columns.insert(0, (args.baseline, stats(revision_files(args.baseline))))
    print("| figure | " + " | ".join(name for name, _ in columns) + " |")
    print("|---|" + "---|" * len(columns))
    for key, label in (("long", "functions over 60 lines"), ("wide", "functions with more than 8 parameters"),
                       ("big", "modules over 800 lines")):
        print(f"| {label} | " + " | ".join(str(len(s[key])) for _, s in columns) + " |")
    if args.list:
        for name, s in columns:
            for key in ("long", "wide", "big"):
                for value, where in s[key]:
                    print(f"{name}: {key} {value} {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
