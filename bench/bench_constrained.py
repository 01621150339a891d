"""Benchmark of constrained sampling (``--where``): absorbed atoms, rejection, and the z3 baseline.

Usage:
    python bench/bench_constrained.py [--repeats 5] [--uniwit-timeout 300] [--output bench/results/constrained.md]

Every figure is a median over repeats, and every ratio is against a baseline
measured in the same run (the unconstrained sampler, the same command without
``--where``, or ``--method uniwit`` with the same ``--where``). The cases are
those of issue 11:

* the ImageNet-sized space ``-I 224,224 -O 7,7 -n 1 -N 5 --rounding floor``
  with ``--where "k[0][0] <= 7"`` (absorbed): exact count, 20 samples by the
  whole ``nasgen sample`` process (< 0.5 s), 10^6 samples into arrays (>= half
  the unconstrained rate);
* the same space with ``--kernel 1:11`` and constraints that cannot be
  absorbed (a sum over two layers, a FLOPs budget): candidate draws evaluated
  per second end to end (>= 5 x 10^5/s) and the accepted count;
* Table 4's cell 3-D, 3 layers, pooled (I = 30, O = 20) under a ``--where``:
  20 samples by ``exact`` against ``uniwit`` (>= 100x).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import types

import numpy as np

from nasgen.constraints.constrained import ConstrainedSpace
from nasgen.samplers.registry import sample_arrays
from nasgen.space.definition import SearchSpace

BIG = SearchSpace((224, 224), (7, 7), 1, 5, rounding="floor")
BIG_ARGS = ["-I", "224,224", "-O", "7,7", "-n", "1", "-N", "5", "--rounding", "floor"]
KERNEL11 = SearchSpace((224, 224), (7, 7), 1, 5, rounding="floor", kernel_range=(1, 11))
MODEL = types.SimpleNamespace(width=64, in_channels=3, num_classes=10, norm="batch", head="logits", pooling="max")
TABLE4 = SearchSpace((30,) * 3, (20,) * 3, 3, 3, pool=(2, 1))
TABLE4_WHERE = ["k[0][0] <= 4", "k[1][1] + k[2][2] <= 8"]


def median_time(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def run_cli(args: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "nasgen", *args], capture_output=True, text=True, check=True)
    return time.perf_counter() - t0, done.stderr.strip()


def cli_case(args: list[str], repeats: int) -> tuple[float, str]:
    times, last = [], ""
    for _ in range(repeats):
        seconds, last = run_cli(args)
        times.append(seconds)
    return statistics.median(times), last


def rejection_rate(space: SearchSpace, where: list[str], draws: int, repeats: int, model=None):
    constrained = ConstrainedSpace(space, where, model=model)
    assert not constrained.all_absorbed
    seconds, result = median_time(lambda: constrained.count(seed=1, draws=draws, enumerate_limit=0), repeats)
    return draws / seconds, result


def uniwit_vs_exact(repeats: int, timeout: float):
    from nasgen.samplers.solver import SolverSampler

    def exact():
        return sample_arrays(TABLE4, 20, where=TABLE4_WHERE, seed=42)

    exact_s, arrays = median_time(exact, repeats)

    def uniwit():
        with SolverSampler(TABLE4, method="uniwit", seed=42, where=TABLE4_WHERE, timeout=timeout) as sampler:
            found = list(sampler.solutions(20))
            return found, sampler.stop_reason

    uniwit_s, (found, reason) = median_time(uniwit, max(1, repeats // 3))
    return exact_s, len(arrays[0]), uniwit_s, len(found), reason


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--uniwit-timeout", type=float, default=300.0)
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "results", "constrained.md"))
    args = parser.parse_args()
    R = args.repeats
    rows = []

    absorbed = ConstrainedSpace(BIG, ["k[0][0] <= 7"])
    assert absorbed.all_absorbed
    count_s, _ = median_time(lambda: ConstrainedSpace(BIG, ["k[0][0] <= 7"]).count(), R)
    rows.append((f"exact count, 224 -> 7 floor, `k[0][0] <= 7` (= {absorbed.tables.count:,})",
                 f"{count_s * 1e3:.1f} ms", "unconstrained count", "-", "-", "exact, every atom absorbed"))

    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "a.jsonl")
        plain_s, _ = cli_case(["sample", *BIG_ARGS, "-M", "20", "-o", out], R)
        where_s, line = cli_case(["sample", *BIG_ARGS, "--where", "k[0][0] <= 7", "-M", "20", "-o", out], R)
    rows.append(("`nasgen sample` process, 20 samples, `--where \"k[0][0] <= 7\"`", f"{where_s:.3f} s",
                 "same command without --where", f"{plain_s:.3f} s", f"{plain_s / where_s:.2f}x", "< 0.5 s"))

    plain_s, _ = median_time(lambda: sample_arrays(BIG, 10**6, replace=True, seed=3), R)
    where_s, arrays = median_time(lambda: sample_arrays(BIG, 10**6, replace=True, seed=3, where="k[0][0] <= 7"), R)
    assert len(arrays[0]) == 10**6 and int(arrays[1][:, 0, 0].max()) <= 7
    rows.append(("10^6 absorbed samples into arrays (with replacement)", f"{1e6 / where_s / 1e6:.2f} M/s",
                 "unconstrained sampler", f"{1e6 / plain_s / 1e6:.2f} M/s", f"{plain_s / where_s:.2f}x",
                 ">= 0.5x"))

    draws = 10**6
    for text, where, model in [("`sum(k[0]) + sum(k[1]) <= 12`", ["sum(k[0]) + sum(k[1]) <= 12"], None),
                               ("`flops <= 2e9` (width 64, 3 input channels)", ["flops <= 2e9"], MODEL)]:
        rate, result = rejection_rate(KERNEL11, where, draws, R, model)
        low, high = result.interval
        rows.append((f"rejection, 224 -> 7 floor `--kernel 1:11`, {text}: candidate draws evaluated end to end",
                     f"{rate / 1e6:.2f} M/s", "-", "-",
                     f"accepted {round(result.acceptance * result.draws):,} of {result.draws:,} "
                     f"(count ~ {result.count:.3g}, 95% [{low:.3g}, {high:.3g}])", ">= 0.5 M/s"))

    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "f.jsonl")
        flops_s, line = cli_case(["sample", *BIG_ARGS, "--kernel", "1:11", "--where", "flops <= 2e9", "--width", "64",
                                  "--in-channels", "3", "-M", "20", "-o", out], R)
    rows.append(("`nasgen sample` process, 20 samples, `--kernel 1:11 --where \"flops <= 2e9\"`", f"{flops_s:.3f} s",
                 "-", "-", line.split("by exact")[0].replace("nasgen: ", "").strip(), "-"))

    exact_s, exact_n, uniwit_s, uniwit_n, reason = uniwit_vs_exact(R, args.uniwit_timeout)
    rows.append((f"Table 4 cell 3-D, 3 layers, pooled, 20 samples, `--where` {' and '.join(TABLE4_WHERE)}",
                 f"{exact_s * 1e3:.1f} ms ({exact_n} found)", "--method uniwit, same --where",
                 f"{uniwit_s:.2f} s ({uniwit_n} found, {reason})", f"{uniwit_s / exact_s:,.0f}x", ">= 100x"))

    lines = [
        "# nasgen constrained-sampling benchmark",
        "",
        "| case | nasgen (median) | baseline | baseline (median) | ratio / result | target |",
        "|---|---|---|---|---|---|",
        *[f"| {' | '.join(row)} |" for row in rows],
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"numpy {np.__version__}; repeats: {R} (uniwit {max(1, R // 3)}); "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Command: `python bench/bench_constrained.py "
        f"--repeats {R}`.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as handle:
        handle.write(text)


if __name__ == "__main__":
    main()
