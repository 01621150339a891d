"""The fused M = 20 ResNet step's compile time now, against the step as it was when issue 14 was filed, in one run.

Issue 14's figure: the fused M = 20, width-1/4 ResNet-18 step took about
250 s to compile on the machine it was filed on, and must compile in at most
60 s cold and 10 s from the persistent cache, "measured in the same run",
with the step no slower. Machines differ (the one a later session gets may
be faster or slower than the one the figure came from), so this script
measures both sides on the machine it runs on:

- **filed**: the code of the commit the issue was filed against (default
  ``644fc29``), checked out into a temporary ``git worktree``, its Cython
  kernel built there, run in a fresh process: one fused ``train_step``
  (``nnx.jit``) called through ``nnx.cached_partial`` as that commit's
  training loop and bench did; compile = first call less the median step.
- **now, cold**: ``bench_train.py --compile-child --fused-step`` in a fresh
  process with an empty persistent cache (``FusedStep``: tracing, lowering
  and compiling, ``--groups`` programs), compile = constructing it plus its
  first call less the median step.
- **now, warm**: the same in new processes on the filled cache.

Each round runs the three in that order; with ``--rounds N`` the table
gives medians over rounds. Both sides use random images of MNIST's shape
(the step's time does not depend on the values) and batch 512.

Run: ``python bench/bench_compile_filed.py [--rounds 1] [--repeats 2] [--groups 4] [--commit 644fc29] [--out FILE]``
(needs the git history and Cython, to build the filed commit's kernel).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_train import _append_result

ROOT = Path(__file__).resolve().parent.parent

FILED_CHILD = r"""
import json, os, statistics, sys, time
import jax, jax.numpy as jnp, numpy as np
from flax import nnx
# The filed commit's own module names (its flat layout): this runs inside its worktree.
from nasgen.core import sample
from nasgen.models import RESNET_SPACE
from nasgen.train import TrainConfig, _create, train_step

samples, width, steps = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
archs = sample(RESNET_SPACE, samples, seed=42, replace=False)
config = TrainConfig(architectures=archs, model="resnet18", dataset="mnist", width_multiplier=width)
rng = np.random.default_rng(0)
x = jnp.asarray(rng.random((config.batch_size, 28, 28, 1), dtype=np.float32))
y = jnp.asarray(rng.integers(0, 10, config.batch_size).astype(np.int32))
t = time.perf_counter()
mixture, optimizer = _create(json.dumps(config.to_dict(), sort_keys=True), 1, 10)
jax.block_until_ready(nnx.state(mixture))
create_s = time.perf_counter() - t
mixture.train()
step = nnx.cached_partial(train_step, mixture, optimizer)
t, cpu = time.perf_counter(), time.process_time()
jax.block_until_ready(step(x, y))
first, first_cpu = time.perf_counter() - t, time.process_time() - cpu
times = []
for _ in range(steps):
    t = time.perf_counter()
    jax.block_until_ready(step(x, y))
    times.append(time.perf_counter() - t)
step_s = statistics.median(times)
print(json.dumps({"create_s": create_s, "compile_s": max(0.0, first - step_s), "build_cpu_s": first_cpu,
                  "step_s": step_s, "batch": config.batch_size}))
"""


def _last_json(done: subprocess.CompletedProcess, what: str) -> dict:
    if done.returncode != 0:
        raise SystemExit(f"{what} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _clean_env() -> dict:
    """This environment without a JAX cache directory or a PYTHONPATH of its own (each child sets what it needs)."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "JAX_COMPILATION_CACHE_DIR")}


def checkout_filed(commit: str, into: Path) -> Path:
    """``commit`` as a detached worktree under ``into``, with its Cython kernel built in place."""
    try:
        import Cython  # noqa: F401  (the filed commit's kernel is built from its own .pyx)
    except ImportError:
        raise SystemExit("this benchmark builds the filed commit's Cython kernel: pip install cython") from None
    tree = into / "filed"
    done = subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), commit],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"cannot check out commit {commit!r}: {done.stderr.strip()}")
    # Built in a directory of its own: the filed commit's pyproject.toml is not
    # accepted by today's setuptools, and its setup.py needs only csrc/.
    build = into / "build"
    (build / "nasgen").mkdir(parents=True)
    shutil.copytree(tree / "csrc", build / "csrc")
    shutil.copy(tree / "setup.py", build / "setup.py")
    done = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=build,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"building commit {commit}'s kernel failed:\n{done.stderr[-2000:]}")
    for built in (build / "nasgen").glob("_kernel*"):
        shutil.copy(built, tree / "nasgen" / built.name)
    return tree


def filed_child(tree: Path, samples: int, width: float, steps: int) -> dict:
    env = {**_clean_env(), "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, "-c", FILED_CHILD, str(samples), str(width), str(steps)],
                          cwd=tree, env=env, capture_output=True, text=True, check=False)
    return _last_json(done, "the filed step")


def now_child(samples: int, width: float, groups: int, cache: Path) -> dict:
    args = [sys.executable, str(ROOT / "bench" / "bench_train.py"), "--compile-child", "--fused-step",
            "--samples", str(samples), "--width-multiplier", str(width), "--groups", str(groups),
            "--cache", str(cache)]
    done = subprocess.run(args, env=_clean_env(), capture_output=True, text=True, check=False)
    result = _last_json(done, "the current step")
    result["compile_s"] = result["lower_s"] + result["compile_s"]  # constructing the FusedStep + first call
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commit", default="644fc29", help="the commit issue 14 was filed against")
    parser.add_argument("--samples", type=int, default=20, help="M, generated networks")
    parser.add_argument("--width-multiplier", type=float, default=0.25)
    parser.add_argument("--groups", type=int, default=4, help="programs of the current step (FusedStep programs=)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of filed, cold, warm (medians over rounds)")
    parser.add_argument("--repeats", type=int, default=2, help="warm processes per round")
    parser.add_argument("--steps", type=int, default=3, help="timed steps of the filed step (median)")
    parser.add_argument("--out", default=None, help="also append the table to this markdown file")
    args = parser.parse_args()
    for name in ("samples", "groups", "rounds", "repeats", "steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")

    rows = {"filed": [], "cold": [], "warm": []}
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="nasgen-filed-") as tmp:
        tmp = Path(tmp)
        tree = checkout_filed(args.commit, tmp)
        try:
            for round_ in range(args.rounds):
                rows["filed"].append(filed_child(tree, args.samples, args.width_multiplier, args.steps))
                cache = tmp / f"cache-{round_}"
                rows["cold"].append(now_child(args.samples, args.width_multiplier, args.groups, cache))
                for _ in range(args.repeats):
                    warm = now_child(args.samples, args.width_multiplier, args.groups, cache)
                    if not warm["loaded_from_cache"]:
                        raise SystemExit("a warm process did not load the stored step from the cache")
                    rows["warm"].append(warm)
                load.append(os.getloadavg()[0])
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                           capture_output=True, check=False)

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in rows[name])

    filed_compile, filed_step = median("filed", "compile_s"), median("filed", "step_s")
    label = {"filed": f"filed ({args.commit}): one nnx.jit train_step",
             "cold": f"now: FusedStep, {args.groups} program{'s' if args.groups > 1 else ''}, cold (empty cache)",
             "warm": "now: FusedStep, warm (new process, filled cache)"}
    lines = [
        f"Fused ResNet-18 step, M = {args.samples} (+ c0), width x{args.width_multiplier:g}, batch 512, "
        f"random images of MNIST's shape, each row a fresh process, {args.rounds} round(s) of filed / cold / "
        f"{args.repeats} warm (medians over rounds; load average {', '.join(f'{x:.2f}' for x in load)}); compile = "
        "building the step (trace, lower, XLA compile, or loading the stored program) plus its first call less "
        "the median step; CPU s: this process's CPU time from building the step to the end of its first call:",
        "",
        "| variant | compile s | filed's compile / this | CPU s, build + first step | step s | this step / filed's "
        "| creating the mixture s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("filed", "cold", "warm"):
        compile_s, step_s = median(name, "compile_s"), median(name, "step_s")
        lines.append(f"| {label[name]} | {compile_s:.1f} | {filed_compile / compile_s:.2f}x | "
                     f"{median(name, 'build_cpu_s'):.1f} | {step_s:.3f} | {step_s / filed_step:.2f}x | "
                     f"{median(name, 'create_s'):.1f} |")
    every = {name: ", ".join(f"{r['compile_s']:.1f}" for r in rows[name]) for name in rows}
    lines += ["", "All compile s, in order: " + "; ".join(f"{name} {values}" for name, values in every.items())]
    print("\n".join(lines))
    _append_result(args.out, "", "\n".join(lines))


if __name__ == "__main__":
    main()
