"""Throughput of the fused mixture step vs one jitted step per network, and FLOP/s vs the matmul peak.

Two cases (issue 5):

* ``chain``: M = 20 chain networks of the digits space (8x8 -> 2x2, 1..3
  layers, width 16) plus the baseline, batch 64, on the 8x8 digits;
* ``resnet``: M = 20 ResNet-18 variants (7x7 -> 1x1, n = N = 3, exact uniform
  sample, seed 42) plus the original, width multiplier 1/4, batch 512, on
  MNIST (real images when ``--data-dir`` holds MNIST, else random images of
  the same shape: throughput does not depend on pixel values).

For each case, in the same process and on the same batch:

* ``fused``: :func:`nasgen.train.train_step`, one XLA program that updates all
  M+1 networks and alpha;
* ``sequential``: every network has its own optimiser and its own jitted
  step (own cross-entropy), and the networks are stepped one after another:
  the paper code's scheme without its per-network process overhead.

Images per second count every network: ``batch * (M + 1) / seconds per
round``. FLOP/s use XLA's cost analysis of the compiled fused step and
are compared with the measured peak of a jitted float32 matmul.

``--case pool`` times only the ResNet stem pool's gradient: flax's
``nnx.max_pool`` (JAX's reduce_window rule) against
:func:`nasgen.models.max_pool`, interleaved.

Run: ``python bench/bench_train.py [--case chain|resnet|both|pool] [--steps 10]``.
Prints one table of medians; nothing here is imported by the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nasgen.core import sample
from nasgen.models import RESNET_SPACE
from nasgen.train import DIGITS_SPACE, TrainConfig, _create, mixture_gradients, train_step


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    """Median FLOP/s of a jitted n x n float32 matmul."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    f = jax.jit(lambda x, y: x @ y)
    f(a, b).block_until_ready()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f(a, b).block_until_ready()
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times)


def _median_seconds(fn, steps: int) -> float:
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _fused_flops(mixture, optimizer, x, y) -> float:
    graphdef, state = nnx.split((mixture, optimizer))

    def pure(state, x, y):
        # The body of train_step, as a plain jax.jit function whose compiled
        # form exposes XLA's cost analysis.
        m, o = nnx.merge(graphdef, state)
        grads, losses = mixture_gradients(m, x, y)
        o.update(m, grads)
        return losses, nnx.state((m, o))

    # XLA's HLO cost analysis of the lowered step (no second compilation).
    cost = jax.jit(pure).lower(state, x, y).cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0]
    return float(cost.get("flops", float("nan")))


def pool_gradient_case(repeats: int = 20) -> dict:
    """The ResNet stem pool's forward+backward: nnx.max_pool vs nasgen.models.max_pool, interleaved."""
    from nasgen.models import max_pool

    x = jax.random.normal(jax.random.key(0), (512, 14, 14, 16), jnp.float32)
    padding = ((1, 1), (1, 1))

    def compiled(pool):
        f = jax.jit(jax.grad(lambda a: (pool(a, (3, 3), (2, 2), padding) ** 2).sum()))
        jax.block_until_ready(f(x))
        return lambda: f(x)

    flax_grad, nasgen_grad = compiled(nnx.max_pool), compiled(max_pool)
    flax_times, nasgen_times = [], []
    for _ in range(repeats):
        flax_times.append(_median_seconds(flax_grad, 1))
        nasgen_times.append(_median_seconds(nasgen_grad, 1))
    return {"flax_s": statistics.median(flax_times), "nasgen_s": statistics.median(nasgen_times), "repeats": repeats}


def _single_step_factory():
    @nnx.jit
    def single_step(model, optimizer, x, y):
        def loss_fn(m):
            return optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    return single_step


def run_case(name: str, config: TrainConfig, x: np.ndarray, y: np.ndarray, steps: int) -> dict:
    mixture, optimizer = _create(json.dumps(config.to_dict(), sort_keys=True), x.shape[-1], 10)
    mixture.train()
    xb, yb = jnp.asarray(x), jnp.asarray(y)
    networks = len(mixture.networks)

    # Both variants call their nnx.jit steps through nnx.cached_partial, as the
    # training loop does, so neither pays a graph traversal per call.
    fused_step = nnx.cached_partial(train_step, mixture, optimizer)
    t = time.perf_counter()
    jax.block_until_ready(fused_step(xb, yb))
    fused_compile = time.perf_counter() - t
    flops = _fused_flops(mixture, optimizer, xb, yb)

    # One optimiser and one jitted step per network, stepped one after another.
    from nasgen.train import build_optimizer

    tx = build_optimizer(config.optimizer, config.learning_rate, config.weight_decay)
    single_step = _single_step_factory()
    optimizers = [nnx.Optimizer(net, tx, wrt=nnx.Param) for net in mixture.networks]
    single_steps = [nnx.cached_partial(single_step, net, opt) for net, opt in zip(mixture.networks, optimizers)]
    t = time.perf_counter()
    for step in single_steps:
        jax.block_until_ready(step(xb, yb))
    sequential_compile = time.perf_counter() - t

    def round_():
        return [step(xb, yb) for step in single_steps]

    # One untimed call of each after compiling: the first run of an executable
    # also pays for first-touch page faults of its scratch memory.
    jax.block_until_ready(fused_step(xb, yb))
    jax.block_until_ready(round_())

    # Interleaved (fused, sequential, fused, ...) so that load from other
    # processes on a shared machine hits both variants alike.
    fused_times, sequential_times = [], []
    for _ in range(steps):
        fused_times.append(_median_seconds(lambda: fused_step(xb, yb), 1))
        sequential_times.append(_median_seconds(round_, 1))
    fused, sequential = statistics.median(fused_times), statistics.median(sequential_times)
    images = len(y) * networks
    return {
        "case": name,
        "networks": networks,
        "batch": len(y),
        "fused_s": fused,
        "sequential_s": sequential,
        "fused_img_s": images / fused,
        "sequential_img_s": images / sequential,
        "speedup": sequential / fused,
        # Each round's sequential time over the fused time measured next to it.
        "paired": sorted(q / f for f, q in zip(fused_times, sequential_times)),
        "fused_compile_s": fused_compile,
        "sequential_compile_s": sequential_compile,
        "flops_per_step": flops,
        "flop_s": flops / fused,
    }


def _chain_case(steps: int, samples: int) -> dict:
    from nasgen.data import load_digits

    archs = sample(DIGITS_SPACE, samples, seed=0, replace=False)
    config = TrainConfig(architectures=archs, model="chain", dataset="digits")
    data = load_digits()
    idx = np.random.default_rng(0).permutation(len(data.train_labels))[: config.batch_size]
    return run_case(f"chain M={samples} digits w16", config, data.train_images[idx], data.train_labels[idx], steps)


def _resnet_case(steps: int, samples: int, data_dir: str | None, width: float) -> dict:
    archs = sample(RESNET_SPACE, samples, seed=42, replace=False)
    config = TrainConfig(architectures=archs, model="resnet18", dataset="mnist", width_multiplier=width)
    source = "random"
    try:
        from nasgen.data import load_dataset

        data = load_dataset("mnist", data_dir)
        idx = np.random.default_rng(0).permutation(len(data.train_labels))[: config.batch_size]
        x, y = data.train_images[idx], data.train_labels[idx]
        source = "mnist"
    except Exception:  # no MNIST here: random images of the same shape time the same
        rng = np.random.default_rng(0)
        x = rng.random((config.batch_size, 28, 28, 1), dtype=np.float32)
        y = rng.integers(0, 10, config.batch_size).astype(np.int32)
    return run_case(f"resnet18 M={samples} x{width:g} {source}", config, x, y, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=("chain", "resnet", "both", "pool"), default="both")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant (median reported)")
    parser.add_argument("--samples", type=int, default=20, help="M, generated networks")
    parser.add_argument("--width-multiplier", type=float, default=0.25)
    parser.add_argument("--data-dir", default=None, help="MNIST for the resnet case")
    parser.add_argument("--out", default=None, help="also append the table to this markdown file")
    args = parser.parse_args()

    if args.case == "pool":
        r = pool_gradient_case()
        line = (f"ResNet stem max pool (512x14x14x16, 3x3 stride 2) value+gradient, median of {r['repeats']} "
                f"interleaved: nnx.max_pool {r['flax_s'] * 1e3:.2f} ms, nasgen.models.max_pool "
                f"{r['nasgen_s'] * 1e3:.2f} ms, {r['flax_s'] / r['nasgen_s']:.2f}x")
        print(line)
        _append_result(args.out, "", line)
        return
    peak = matmul_peak()
    rows = []
    if args.case in ("chain", "both"):
        rows.append(_chain_case(args.steps, args.samples))
    if args.case in ("resnet", "both"):
        rows.append(_resnet_case(max(3, args.steps // 2), args.samples, args.data_dir, args.width_multiplier))
    print(f"device: {jax.devices()[0].device_kind}, {jax.device_count()} device(s); XLA float32 matmul peak "
          f"(2048^3, median of 10): {peak / 1e9:.1f} GFLOP/s")
    header = ("case", "nets", "batch", "fused s/step", "seq s/round", "fused img/s", "seq img/s",
              "fused/seq speedup", "compile fused s", "compile seq s", "GFLOP/step", "GFLOP/s", "of peak")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['networks']} | {r['batch']} | {r['fused_s']:.4f} | {r['sequential_s']:.4f} | "
            f"{r['fused_img_s']:.0f} | {r['sequential_img_s']:.0f} | {r['speedup']:.2f}x | "
            f"{r['fused_compile_s']:.1f} | {r['sequential_compile_s']:.1f} | {r['flops_per_step'] / 1e9:.3f} | "
            f"{r['flop_s'] / 1e9:.1f} | {r['flop_s'] / peak:.1%} |"
        )
    lines.append("")
    for r in rows:
        paired = ", ".join(f"{v:.2f}" for v in r["paired"])
        lines.append(f"{r['case']}: sequential/fused per interleaved round, sorted: {paired}")
    print("\n".join(lines))
    _append_result(args.out, f"; matmul peak {peak / 1e9:.1f} GFLOP/s", "\n".join(lines))


def _append_result(path: str | None, note: str, body: str) -> None:
    """Append ``body`` under a line naming this command, the time and the CPU count (nothing if no path)."""
    if path is None:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"`python bench/bench_train.py {' '.join(sys.argv[1:])}` "
                f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs){note}\n\n{body}\n\n")


if __name__ == "__main__":
    main()
