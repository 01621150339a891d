"""The paper's full MNIST run on one or more GPUs: M = 20 + the original, full-width ResNet-18, 10 epochs, batch 512.

Section 6.3 of Calhas et al. 2022 (Table 3); the paper reports about 45 days
for this on one RTX 2080; the goal here is under 10 minutes including
compilation on one H100/H200.

It runs :func:`nasgen.train.experiments.paper_mnist`, the same pipeline as
``nasgen experiment paper-mnist``: architectures drawn through
:func:`nasgen.samplers.registry.draw`, the fused mixture step data-parallel over every
local device (``--devices`` to use fewer; a ``jax.sharding.Mesh``, parameters
replicated), JAX's persistent compilation cache on (``--cache-dir``; a second
run loads the compiled step instead of compiling it).

Usage (MNIST must already be on the machine, e.g. copied from
``nasgen data mnist --cache-dir DIR``; the GPU machine may have no network)::

    python bench/gpu_paper_run.py --data-dir DIR [--output-dir runs/paper-gpu]
        [--samples 20] [--epochs 10] [--method exact] [--width-multiplier 1]
        [--devices N] [--cache-dir DIR | --no-compile-cache]

Prints the devices, the compile time, the time of every epoch (training
steps; evaluation separately), and the final Table-3 summary beside the
paper's figures. Needs a jax with a GPU backend (``jax[cuda12]``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import jax

from nasgen.train.data import load_mnist
from nasgen.train.experiments import paper_mnist
from nasgen.train.report import SUMMARY_MD
from nasgen.samplers.registry import SamplingConfig
from nasgen.train.config import RunOptions
from nasgen.train.runtime import maybe_initialize_distributed

# Table 3 of the paper (MNIST, M = 20, 10 epochs): the original ResNet-18, and
# mean / std / best / worst of the generated networks (Limited_Uniform-M).
PAPER_TABLE_3 = {"baseline": 0.9843, "mean": 0.9856, "std": 0.0028, "best": 0.9903, "worst": 0.9801}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="MNIST directory or file (IDX, npz or mnist.pkl.gz)")
    parser.add_argument("--output-dir", default="runs/paper-gpu")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--width-multiplier", type=float, default=1.0)
    parser.add_argument("--method", default="exact", help="a nasgen.samplers.registry method (default exact)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--devices", type=int, default=None, help="local devices sharing each batch (default all)")
    parser.add_argument("--cache-dir", default=None, help="persistent compilation cache (default ~/.cache/nasgen/jax)")
    parser.add_argument("--no-compile-cache", action="store_true")
    parser.add_argument("--overwrite", action="store_true", help="delete --output-dir first")
    args = parser.parse_args()

    maybe_initialize_distributed()
    devices = jax.devices()
    print(f"devices: {len(devices)} x {devices[0].platform} {devices[0].device_kind} "
          f"({jax.process_count()} process(es))", flush=True)
    if devices[0].platform != "gpu":
        print("warning: no GPU backend; this run will be very slow (nothing here measures the GPU goal)",
              file=sys.stderr)
    out = Path(args.output_dir)
    if args.overwrite and out.exists():
        shutil.rmtree(out)

    started = time.perf_counter()
    data = load_mnist(args.data_dir)
    print(f"{data.describe()}; loaded in {time.perf_counter() - started:.1f} s", flush=True)
    marks = {"last": time.perf_counter()}

    def on_epoch_end(record: dict) -> None:
        now = time.perf_counter()
        total, marks["last"] = now - marks["last"], now
        print(
            f"epoch {record['epoch']:2d}: compile {record['compile_seconds']:6.1f} s, train "
            f"{record['train_seconds']:7.1f} s ({record['images_per_second']:,.0f} img/s over all networks), "
            f"eval {record['eval_seconds']:5.1f} s, epoch total {total:7.1f} s, best acc "
            f"{max(record['test_accuracy']):.4f}, baseline {record['test_accuracy'][0]:.4f}, "
            f"mixture {record['mixture_test_accuracy']:.4f}",
            flush=True,
        )

    settings = {"epochs": args.epochs, "batch_size": args.batch_size, "width_multiplier": args.width_multiplier,
                "seed": args.seed, "data_dir": str(args.data_dir)}
    cache = False if args.no_compile_cache else (args.cache_dir or True)
    run_started = time.perf_counter()
    options = RunOptions(progress=False, on_epoch_end=on_epoch_end, devices=args.devices, compilation_cache=cache,
                         command=sys.argv)
    sampling = SamplingConfig(method=args.method, samples=args.samples, seed=args.seed)
    summary = paper_mnist(out, sampling, settings=settings, options=options, dataset=data)
    elapsed = time.perf_counter() - run_started
    print(f"total wall time (sampling, compile, training, eval, checkpoints): {elapsed:.1f} s; "
          f"compile {summary['compile_seconds']:.1f} s", flush=True)
    generated = summary["generated"]
    print("against the paper's Table 3 (MNIST):")
    print(f"  baseline      {summary['baseline_accuracy']:.4f}  (paper {PAPER_TABLE_3['baseline']:.4f})")
    if generated:
        print(f"  generated mean {generated['mean']:.4f} (paper {PAPER_TABLE_3['mean']:.4f}), "
              f"std {generated['std']:.4f} (paper {PAPER_TABLE_3['std']:.4f}), "
              f"best {generated['best']:.4f} (paper {PAPER_TABLE_3['best']:.4f}), "
              f"worst {generated['worst']:.4f} (paper {PAPER_TABLE_3['worst']:.4f})")
    print((out / "run" / SUMMARY_MD).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
