"""The paper's full MNIST run on one GPU: M = 20 + the original, full-width ResNet-18, 10 epochs, batch 512.

Section 6.3 of Calhas et al. 2022 (Table 3); the paper reports about 45 days
for this on one RTX 2080; the goal here is under 10 minutes on one H100.

Usage (MNIST must already be on the machine, e.g. copied from
``nasgen data mnist --cache-dir DIR``; the GPU machine may have no network)::

    python bench/gpu_paper_run.py --data-dir DIR [--output-dir runs/paper-gpu]
        [--samples 20] [--epochs 10] [--method exact] [--width-multiplier 1]

Prints the device, the compile time, the time of every epoch (training
steps; evaluation and checkpoint separately), and the final Table-3 summary.
Needs ``jax[cuda12]`` (or a jax with a GPU backend) in place of the CPU jax.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import jax

from nasgen.core import sample
from nasgen.data import load_mnist
from nasgen.models import RESNET_SPACE
from nasgen.report import SUMMARY_MD
from nasgen.train import TrainConfig, train


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="MNIST directory or file (IDX, npz or mnist.pkl.gz)")
    parser.add_argument("--output-dir", default="runs/paper-gpu")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--width-multiplier", type=float, default=1.0)
    parser.add_argument("--method", choices=("exact", "limited", "uniwit"), default="exact")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--overwrite", action="store_true", help="delete --output-dir first")
    args = parser.parse_args()

    device = jax.devices()[0]
    print(f"device: {device.platform} {device.device_kind}", flush=True)
    if device.platform != "gpu":
        print("warning: no GPU backend; this run will be very slow", file=sys.stderr)
    out = Path(args.output_dir)
    if args.overwrite and out.exists():
        shutil.rmtree(out)

    started = time.perf_counter()
    data = load_mnist(args.data_dir)
    if args.method == "exact":
        archs = sample(RESNET_SPACE, args.samples, seed=args.seed, replace=False)
    else:
        from nasgen.solver import SolverSampler

        with SolverSampler(RESNET_SPACE, method=args.method, seed=args.seed) as sampler:
            archs = list(sampler.solutions(args.samples))
    config = TrainConfig(
        architectures=archs, model="resnet18", dataset="mnist", epochs=args.epochs, batch_size=args.batch_size,
        width_multiplier=args.width_multiplier, seed=args.seed, data_dir=str(args.data_dir),
    )
    print(f"{data.describe()}; {config.num_networks} networks; setup {time.perf_counter() - started:.1f} s", flush=True)

    marks = {"last": time.perf_counter()}

    def on_epoch_end(record: dict) -> None:
        now = time.perf_counter()
        total = now - marks["last"]
        marks["last"] = now
        print(
            f"epoch {record['epoch']:2d}: train {record['train_seconds']:7.1f} s "
            f"({record['images_per_second']:,.0f} img/s over all networks), epoch total {total:7.1f} s, "
            f"best acc {max(record['test_accuracy']):.4f}, baseline {record['test_accuracy'][0]:.4f}, "
            f"mixture {record['mixture_test_accuracy']:.4f}",
            flush=True,
        )

    run_started = time.perf_counter()
    summary = train(config, out, dataset=data, progress=False, on_epoch_end=on_epoch_end)
    elapsed = time.perf_counter() - run_started
    print(f"total training wall time (incl. compile, eval, checkpoints): {elapsed:.1f} s", flush=True)
    print("final test accuracies:", " ".join(f"{a:.4f}" for a in summary["accuracies"]))
    print((out / SUMMARY_MD).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
