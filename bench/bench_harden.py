"""Deadlines and streaming (issue 13's figures): --timeout T on a space whose preparation is slow, and adj's memory.

Prints a markdown table (median of repeats; the baseline is a checkout of another revision, run in the
same session) and writes it to bench/results/harden.md.

    python bench/bench_harden.py [--repeats 3] [--baseline PATH_TO_OLD_CHECKOUT] [--cap 60]

* ``--timeout 5`` on ``sample -I 1000 -O 1 -N 3 --rounding floor -M 1`` for every method: wall-clock
  seconds of the whole process (interpreter start included) against T + 2 = 7 s. A baseline run is
  killed at ``--cap`` seconds and shown as "> cap".
* ``adj`` on a JSON Lines file of about 99 MB: seconds and peak resident memory (``/usr/bin/time``).
* ``check`` of a 10^7-draw npz under ``NASGEN_MEMORY_LIMIT=1G``: seconds and peak resident memory.
* ``--timeout 1`` on exact rejection sampling and on ``count --where`` (issue 32): seconds against T + 2 = 3 s.
* Peak memory under ``NASGEN_MEMORY_LIMIT=1G`` (issue 32): ``sample -M 1000000000 --with-replacement -o F.npz``
  stopped by ``--timeout 20`` (with the rows it wrote), and ``adj`` of ``--memory-rows`` rows (10^7) as npz and
  as JSON Lines, beside ``adj`` of a tenth as many rows to show memory does not grow with the file.
  ``--memory-only`` runs just these rows; the section is appended to bench/results/harden.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_REJECTED = ["-I", "224,224", "-O", "7,7", "-n", "1", "-N", "5", "--rounding", "floor", "--where",
             "sum(k[0]) + sum(k[1]) == 3"]
#: issue 32's deadlines: exact rejection sampling (default and a large draw budget) and count --where, --timeout 1
TIMEOUT_CONSTRAINED = [["sample", *_REJECTED, "-M", "100", "--timeout", "1"],
                       ["sample", *_REJECTED, "-M", "100", "--max-draws", "100000000", "--timeout", "1"],
                       ["count", *_REJECTED, "--timeout", "1"]]
TIMEOUT_ARGS = ["sample", "-I", "1000", "-O", "1", "-N", "3", "--rounding", "floor", "-M", "1", "--timeout", "5"]


def run_nasgen(args, tree: str | None, cap: float, cwd: str, extra_env: dict | None = None, want_err: bool = False):
    """(seconds, peak KB or None, exit code[, stderr]) of ``python -m nasgen ARGS`` with ``tree`` first on the path."""
    env = dict(os.environ, **(extra_env or {}))
    if tree:
        env["PYTHONPATH"] = tree
    started = time.perf_counter()
    # its own session, so that the cap kills /usr/bin/time and the python under it together
    proc = subprocess.Popen(["/usr/bin/time", "-f", "%M", sys.executable, "-m", "nasgen", *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=cap)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return (float("inf"), None, None, "") if want_err else (float("inf"), None, None)
    elapsed = time.perf_counter() - started
    last = err.strip().splitlines()[-1] if err.strip() else ""
    result = (elapsed, int(last) if last.isdigit() else None, proc.returncode)
    return (*result, err) if want_err else result


SAMPLE_224 = ["sample", "-I", "224,224", "-O", "7,7", "-n", "1", "-N", "5", "--rounding", "floor"]


def memory_section(here: str, rows: int, cap: float, work: str) -> str:
    """Peak resident memory under NASGEN_MEMORY_LIMIT=1G: streaming sample -o F.npz, and adj of big files."""
    limit = {"NASGEN_MEMORY_LIMIT": "1G"}
    out = ["| command (NASGEN_MEMORY_LIMIT=1G) | seconds | peak MB | note |", "| --- | --- | --- | --- |"]
    target = os.path.join(work, "stream.npz")
    seconds, peak, code, err = run_nasgen(SAMPLE_224 + ["-M", "1000000000", "--with-replacement", "-o", target,
                                                        "--timeout", "20"], here, cap + 40, work, limit, want_err=True)
    written = re.search(r"nasgen: (\d+) architectures", err)
    out.append(f"| `sample ... -M 1000000000 --with-replacement -o F.npz --timeout 20` | {seconds:.1f} | "
               f"{peak / 1024:.0f} | exit {code}, {int(written.group(1)) if written else '?':,} rows written |")
    print(out[-1], flush=True)
    for fmt in ("npz", "jsonl"):
        for count in (rows // 10, rows):
            path = os.path.join(work, f"adj{count}.{fmt}")
            subprocess.run([sys.executable, "-m", "nasgen", *SAMPLE_224, "-M", str(count), "--with-replacement",
                            "-o", path], check=True, env={**os.environ, "PYTHONPATH": here}, stderr=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL)
            seconds, peak, code = run_nasgen(["adj", path], here, 20 * cap, work, limit)
            out.append(f"| `adj` of {count:,} rows ({fmt}, {os.path.getsize(path) / 1e6:.0f} MB) | {seconds:.1f} | "
                       f"{peak / 1024:.0f} | exit {code} |")
            print(out[-1], flush=True)  # row by row: a run stopped early still shows what it measured
            os.remove(path)
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", default=None, help="a checkout of the old revision (its nasgen/ is imported)")
    parser.add_argument("--cap", type=float, default=60.0)
    parser.add_argument("--adj-file", default=None, help="a ~99 MB JSON Lines file with its sidecar (made if absent)")
    parser.add_argument("--no-adj", action="store_true", help="only the --timeout rows")
    parser.add_argument("--check-draws", type=int, default=10**7,
                        help="draws of the npz that check reads under NASGEN_MEMORY_LIMIT=1G (0: skip)")
    parser.add_argument("--memory-rows", type=int, default=10**7, help="rows of the big adj files")
    parser.add_argument("--memory-only", action="store_true", help="only the peak-memory rows (appended)")
    options = parser.parse_args()
    here = str(Path(__file__).resolve().parents[1])
    if options.memory_only:
        work = tempfile.mkdtemp(prefix="bench_harden_")
        try:
            table = memory_section(here, options.memory_rows, options.cap, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(table)
        out = Path(here) / "bench" / "results" / "harden.md"
        with open(out, "a", encoding="utf-8") as handle:
            handle.write(f"\n## Peak memory under NASGEN_MEMORY_LIMIT=1G ({datetime.date.today().isoformat()}, "
                         f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, shared with other "
                         "jobs; one run each; peak resident memory from /usr/bin/time -f %M)\n\n" + table + "\n")
        return
    rows = ["| case | this branch (median s) | baseline (median s) | T + 2 |", "| --- | --- | --- | --- |"]
    work = tempfile.mkdtemp(prefix="bench_harden_")
    for method in ("exact", "all", "limited", "uniwit"):
        args = TIMEOUT_ARGS + ["--method", method]
        ours = statistics.median(run_nasgen(args, here, options.cap, work)[0] for _ in range(options.repeats))
        base = "-"
        if options.baseline:
            value = statistics.median(run_nasgen(args, options.baseline, options.cap, work)[0]
                                      for _ in range(options.repeats))
            base = f"> {options.cap:.0f}" if value == float("inf") else f"{value:.2f}"
        rows.append(f"| `--timeout 5 --method {method}` | {ours:.2f} | {base} | {'yes' if ours <= 7 else 'NO'} |")
    adj_file = options.adj_file
    if options.no_adj:
        tree_list = ()
    else:
        tree_list = (("this branch", here), ("baseline", options.baseline))
    if adj_file is None and tree_list:
        adj_file = os.path.join(work, "big.jsonl")
        subprocess.run([sys.executable, "-m", "nasgen", "sample", "-I", "224,224", "-O", "7,7", "-n", "1", "-N", "5",
                        "-M", "780000", "--with-replacement", "-o", adj_file], check=True, env={**os.environ,
                        "PYTHONPATH": here}, stderr=subprocess.DEVNULL)
    if tree_list:
        size = os.path.getsize(adj_file) / 1e6
        rows += ["", f"| `adj` on {size:.0f} MB of JSON Lines | seconds | peak MB |", "| --- | --- | --- |"]
    for label, tree in tree_list:
        if tree is None:
            continue
        runs = [run_nasgen(["adj", adj_file], tree, 10 * options.cap, work) for _ in range(options.repeats)]
        rows.append(f"| {label} | {statistics.median(r[0] for r in runs):.1f} | "
                    f"{statistics.median(r[1] for r in runs) / 1024:.0f} |")
    if options.check_draws:
        # check of a large npz under NASGEN_MEMORY_LIMIT=1G: peak resident memory (issue 32: at most 1.5 GB)
        check_file = os.path.join(work, "check.npz")
        subprocess.run([sys.executable, "-m", "nasgen", "sample", "-I", "224,224", "-O", "7,7", "-n", "1", "-N", "5",
                        "--rounding", "floor", "--where", "k[0][0] <= 7", "-M", str(options.check_draws),
                        "--with-replacement", "-o", check_file], check=True,
                       env={**os.environ, "PYTHONPATH": here}, stderr=subprocess.DEVNULL)
        rows += ["", f"| `check` of {options.check_draws} npz draws, NASGEN_MEMORY_LIMIT=1G | seconds | peak MB |",
                 "| --- | --- | --- |"]
        os.environ["NASGEN_MEMORY_LIMIT"] = "1G"
        for label, tree in (("this branch", here), ("baseline", options.baseline)):
            if tree is None:
                continue
            runs = [run_nasgen(["check", check_file], tree, 20 * options.cap, work) for _ in range(options.repeats)]
            peaks = [r[1] for r in runs if r[1] is not None]
            peak = f"{statistics.median(peaks) / 1024:.0f}" if peaks else "-"
            rows.append(f"| {label} | {statistics.median(r[0] for r in runs):.1f} | {peak} |")
        del os.environ["NASGEN_MEMORY_LIMIT"]
    for args in TIMEOUT_CONSTRAINED:
        # exact rejection sampling and constrained counting against --timeout 1: T + 2 = 3 s
        ours = statistics.median(run_nasgen(args, here, options.cap, work)[0] for _ in range(options.repeats))
        rows.append(f"| `{' '.join(args[-8:])}` | {ours:.2f} | - | {'yes' if ours <= 3 else 'NO'} |")
    table = "\n".join(rows)
    header = (f"# Deadlines and streaming (bench/bench_harden.py)\n\n{platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} CPUs, Python {platform.python_version()}; median of {options.repeats} runs; "
              "wall-clock seconds of the whole process.\n\n")
    print(table)
    out = Path(here) / "bench" / "results" / "harden.md"
    out.write_text(header + table + "\n")


if __name__ == "__main__":
    main()
