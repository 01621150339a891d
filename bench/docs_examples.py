"""Run every shell and Python example of README.md and docs/*.md in document order and report which fail.

Issue 31 item 6 asks that every block run in the test suite; not every block runs yet, so this script
reports where they stand until the suite can take them over (as tests/test_docs.py, with the same rules):

* the blocks of one file run one after another in one fresh folder (a later block may read what an earlier
  one wrote), Python blocks sharing one namespace, like a notebook;
* a block that cannot run here (a GPU run, an install) carries ``<!-- not run: the reason -->`` on the line
  just above its fence, and is listed with its reason;
* fences in other languages (``text``, ``json``) are not code.

Run: ``python bench/docs_examples.py [FILE.md ...]`` (default: README.md and docs/*.md). It runs the
project's own documentation, never data; nothing here is imported by the tests.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNNABLE = {"python": "python", "bash": "bash", "sh": "bash", "shell": "bash"}
_FENCE = re.compile(r"^```(\w*)[^\n]*$")
_NOT_RUN = re.compile(r"^<!--\s*not run:\s*(.+?)\s*-->\s*$")


def blocks(path: Path) -> list[dict]:
    """Fenced code blocks of a Markdown file: language, first line, code, and the reason it is not run."""
    found, lines = [], path.read_text().splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        start, language = i, match.group(1).lower()
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            i += 1
        marker = _NOT_RUN.match(lines[start - 1]) if start else None
        found.append({"language": language, "line": start + 1, "code": "\n".join(lines[start + 1:i]),
                      "not_run": marker.group(1) if marker else None})
        i += 1
    return found


def run_file(path: Path, timeout: float) -> list[tuple[str, str, str]]:
    """(where, result, detail) for every runnable block of ``path``, run in document order in a fresh folder."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    namespace: dict = {"__name__": "__docs__"}
    rows = []
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="nasgen-docs-") as folder:
        os.chdir(folder)
        try:
            for block in blocks(path):
                runner = RUNNABLE.get(block["language"])
                if runner is None:
                    continue
                where = f"{path.name}:{block['line']}"
                if block["not_run"]:
                    rows.append((where, "not run", block["not_run"]))
                    continue
                started = time.perf_counter()
                if runner == "bash":
                    try:
                        done = subprocess.run(["bash", "-euo", "pipefail", "-c", block["code"]], cwd=folder, env=env,
                                              capture_output=True, text=True, timeout=timeout)
                        ok, detail = done.returncode == 0, (done.stderr.strip().splitlines() or [""])[-1][:160]
                    except subprocess.TimeoutExpired:
                        ok, detail = False, f"still running after {timeout:g} s"
                else:
                    try:
                        with contextlib.redirect_stdout(io.StringIO()):
                            exec(compile(block["code"], where, "exec"), namespace)  # safe: the project's own docs, not data
                        ok, detail = True, ""
                    except Exception as error:  # noqa: BLE001 - any failure of an example is reported
                        ok, detail = False, f"{type(error).__name__}: {str(error)[:140]}"
                seconds = time.perf_counter() - started
                rows.append((where, "ok" if ok else "FAILS", f"{seconds:.1f} s" + (f"; {detail}" if not ok else "")))
        finally:
            os.chdir(cwd)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help="Markdown files (default: README.md and docs/*.md)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds a shell block may take")
    args = parser.parse_args(argv)
    files = [p.resolve() for p in args.files] or [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    print("| block | result | detail |\n|---|---|---|")
    failures = 0
    for path in files:
        for where, result, detail in run_file(path, args.timeout):
            failures += result == "FAILS"
            print(f"| {where} | {result} | {detail.replace('|', '/')} |", flush=True)
    print(f"\n{failures} blocks fail")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
