"""Throughput of the fused mixture step vs one jitted step per network, and FLOP/s vs the matmul peak.

Two cases (issue 5):

* ``chain``: M = 20 chain networks of the digits space (8x8 -> 2x2, 1..3
  layers, width 16) plus the baseline, batch 64, on the 8x8 digits;
* ``resnet``: M = 20 ResNet-18 variants (7x7 -> 1x1, n = N = 3, exact uniform
  sample, seed 42) plus the original, width multiplier 1/4, batch 512, on
  MNIST (real images when ``--data-dir`` holds MNIST, else random images of
  the same shape: throughput does not depend on pixel values).

For each case, in the same process and on the same batch:

* ``fused``: :func:`nasgen.train.mixture.train_step`, one XLA program that updates all
  M+1 networks and alpha;
* ``sequential``: every network has its own optimiser and its own jitted
  step (own cross-entropy), and the networks are stepped one after another:
  the paper code's scheme without its per-network process overhead.

Images per second count every network: ``batch * (M + 1) / seconds per
round``. FLOP/s use XLA's cost analysis of the compiled fused step and
are compared with the measured peak of a jitted float32 matmul.

``--case pool`` times only the ResNet stem pool's gradient: flax's
``nnx.max_pool`` (JAX's reduce_window rule) against
:func:`nasgen.nn.models.max_pool`, interleaved.

``--case compile`` measures the compile time of the fused M-network ResNet
step (issue 14 item 5), each figure in a fresh child process so that no
in-memory cache helps: (1) cold without the persistent compilation cache
(the figure before this change), (2) cold with the cache on (it fills it),
(3) warm, a new process reading the cache that (2) filled; each split into
tracing + lowering and XLA compilation, beside the step time of the compiled
program; and (4) the sum over the M+1 networks of compiling each network's
own step separately, which shows how much of the fused compile is
superlinear in the program size.

``--case cache`` measures only what a run pays with the persistent cache: one
cold child that fills an empty cache, then ``--repeats`` warm children (new
processes reading it), with the median of the warm ones; the load average
before and after is printed beside the table, because the warm figure is
small enough for other processes to dominate it.

``--case devices`` runs the fused step on 1 and then 2 forced host devices
(a child process with ``--xla_force_host_platform_device_count=2``; batch
sharded over a ``jax.sharding.Mesh``, parameters replicated) and reports the
throughput ratio.

``--case programs`` times the step as one program against ``--groups N``
programs (``FusedStep(programs=N)``) in one process, alternating steps on the
same batch from the same state (their losses must agree to float rounding).
``--case batchnorm`` builds the step with ``nnx.BatchNorm`` and with nasgen's
``BatchNorm`` in one process (``--reverse`` for the other order) and compares
trace, compile and step seconds. ``--case create`` times creating the mixture
(one jit around it, as before, against a program per network), cold and warm.
``--case options`` compiles the step (``--groups N`` programs) with nasgen's
CPU compiler options and with XLA's defaults in one process and alternates
their steps; ``--case cache --xla-defaults`` measures the cache with XLA's
defaults for the same comparison across processes. ``--case convs`` builds the
step (``--groups N`` programs) with the models' small convolutions as dots
(``nasgen.nn.models.conv_general_dilated``) and as lax convolutions in one
process and alternates their steps.

Run: ``python bench/bench_train.py [--case chain|resnet|both|pool|compile|cache|devices|seeds|programs|batchnorm|create|options|convs] [--steps 10]``.
Prints one table of medians; nothing here is imported by the tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nasgen.nn.spec import RESNET_SPACE
from nasgen.samplers.registry import sample
from nasgen.train.config import DIGITS_SPACE, TrainConfig
from nasgen.train.mixture import create_mixture, mixture_gradients, train_step


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


def _one_piece_gradients(mixture, images, labels):
    """mixture_gradients as it was before each network got its own jitted sub-program (the "before" row).

    Numerically the same step; traced as one piece, every BatchNorm update
    walked the whole trace so far, so tracing grew quadratically with M.
    """
    from nasgen.train.mixture import mixture_losses

    logits, losses, network_grads = [], [], []
    inputs = images
    for network in mixture.networks:

        def own_loss(model, inputs=inputs):
            z = model(inputs)
            return optax.softmax_cross_entropy_with_integer_labels(z, labels).mean(), z

        (loss, z), grads = nnx.value_and_grad(own_loss, has_aux=True)(network)
        logits.append(z)
        losses.append(loss)
        network_grads.append(grads)
        inputs, _ = jax.lax.optimization_barrier((inputs, jax.tree.leaves(grads)))

    def alpha_loss(model):
        return mixture_losses(model.alpha[...], logits, labels, model.mixing)[0]

    mixture_loss, grads = nnx.value_and_grad(alpha_loss)(mixture)
    for i, network_grad in enumerate(network_grads):
        grads["networks"][i] = network_grad
    return grads, (mixture_loss, jnp.stack(losses))


def _pure_step(mixture, optimizer, gradients=mixture_gradients):
    """train_step's body as a plain function of the state, for jax.jit's AOT stages; and that state."""
    graphdef, state = nnx.split((mixture, optimizer))

    def pure(state, x, y):
        m, o = nnx.merge(graphdef, state)
        grads, losses = gradients(m, x, y)
        o.update(m, grads)
        return losses, nnx.state((m, o))

    return pure, state


def _fused_flops(mixture, optimizer, x, y) -> float:
    pure, state = _pure_step(mixture, optimizer)
    # XLA's HLO cost analysis of the lowered step (no second compilation).
    cost = jax.jit(pure).lower(state, x, y).cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0]
    return float(cost.get("flops", float("nan")))


def pool_gradient_case(repeats: int = 20) -> dict:
    """The ResNet stem pool's forward+backward: nnx.max_pool vs nasgen.nn.models.max_pool, interleaved."""
    from nasgen.nn.models import max_pool

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
    mixture, optimizer = create_mixture(config, in_channels=x.shape[-1], num_classes=10)
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
    from nasgen.train.mixture import build_optimizer

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
    from nasgen.train.data import load_digits

    archs = sample(DIGITS_SPACE, samples, seed=0, replace=False)
    config = TrainConfig.from_dict({"architectures": archs, "model": "chain", "dataset": "digits"})
    data = load_digits()
    idx = np.random.default_rng(0).permutation(len(data.train_labels))[: config.batch_size]
    return run_case(f"chain M={samples} digits w16", config, data.train_images[idx], data.train_labels[idx], steps)


def _resnet_case(steps: int, samples: int, data_dir: str | None, width: float) -> dict:
    archs = sample(RESNET_SPACE, samples, seed=42, replace=False)
    config = TrainConfig.from_dict({"architectures": archs, "model": "resnet18", "dataset": "mnist",
                                  "width_multiplier": width})
    source = "random"
    try:
        from nasgen.train.data import load_dataset

        data = load_dataset("mnist", data_dir)
        idx = np.random.default_rng(0).permutation(len(data.train_labels))[: config.batch_size]
        x, y = data.train_images[idx], data.train_labels[idx]
        source = "mnist"
    except Exception:  # no MNIST here: random images of the same shape time the same
        rng = np.random.default_rng(0)
        x = rng.random((config.batch_size, 28, 28, 1), dtype=np.float32)
        y = rng.integers(0, 10, config.batch_size).astype(np.int32)
    return run_case(f"resnet18 M={samples} x{width:g} {source}", config, x, y, steps)


def _resnet_inputs(samples: int, width: float, batch: int = 512):
    archs = sample(RESNET_SPACE, samples, seed=42)
    config = TrainConfig.from_dict({"architectures": archs, "model": "resnet18", "dataset": "mnist",
                                    "width_multiplier": width, "batch_size": batch})
    rng = np.random.default_rng(0)
    x = rng.random((config.batch_size, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, config.batch_size).astype(np.int32)
    return config, jnp.asarray(x), jnp.asarray(y)


def compile_child(samples: int, width: float, cache: str | None, per_network: bool, one_piece: bool = False,
                  fused_step: bool = False, steps: int = 3, groups: int = 1, xla_defaults: bool = False) -> dict:
    """In this (fresh) process: the fused step's trace+lower and compile times, and its step time."""
    from nasgen.train.programs import enable_compilation_cache
    from nasgen.train.step import FusedStep

    cache_path = enable_compilation_cache(cache) if cache else None
    config, x, y = _resnet_inputs(samples, width)
    t = time.perf_counter()
    mixture, optimizer = create_mixture(config, in_channels=1, num_classes=10)
    jax.block_until_ready(nnx.state(mixture))
    create_s = time.perf_counter() - t
    mixture.train()
    result = {"samples": samples, "networks": samples + 1, "create_s": create_s}
    if fused_step:
        cpu = time.process_time()
        # What a training run does: nasgen.train.step.FusedStep, which with a
        # cache directory loads the stored compiled step instead of tracing and compiling it.
        t = time.perf_counter()
        step = FusedStep(mixture, optimizer, x, y, cache_dir=cache_path, identity=config.step_identity(),
                         programs=groups, compiler_options={} if xla_defaults else None)
        result["lower_s"] = time.perf_counter() - t
        t = time.perf_counter()
        jax.block_until_ready(step(x, y))
        first = time.perf_counter() - t
        result["build_cpu_s"] = time.process_time() - cpu  # constructing it and its first call
        times = []
        for _ in range(steps):
            t = time.perf_counter()
            jax.block_until_ready(step(x, y))
            times.append(time.perf_counter() - t)
        result["step_s"] = statistics.median(times)
        result["compile_s"] = max(0.0, first - result["step_s"])
        result["loaded_from_cache"] = step.loaded_from_cache
        # CPU seconds of this process for loading/tracing, compiling and the
        # timed steps: less sensitive than wall time to other processes.
        result["cpu_s"] = time.process_time() - cpu
        return result
    if per_network:
        from nasgen.train.mixture import build_optimizer

        tx = build_optimizer(config.optimizer, config.learning_rate, config.weight_decay)
        lower = compile_ = 0.0
        for net in mixture.networks:
            opt = nnx.Optimizer(net, tx, wrt=nnx.Param)
            graphdef, state = nnx.split((net, opt))

            def single(state, x, y, graphdef=graphdef):
                m, o = nnx.merge(graphdef, state)

                def loss_fn(model):
                    return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

                loss, grads = nnx.value_and_grad(loss_fn)(m)
                o.update(m, grads)
                return loss, nnx.state((m, o))

            t = time.perf_counter()
            lowered = jax.jit(single).lower(state, x, y)
            lower += time.perf_counter() - t
            t = time.perf_counter()
            lowered.compile()
            compile_ += time.perf_counter() - t
        result.update(lower_s=lower, compile_s=compile_)
        return result
    pure, state = _pure_step(mixture, optimizer, _one_piece_gradients if one_piece else mixture_gradients)
    t = time.perf_counter()
    traced = jax.jit(pure).trace(state, x, y)
    result["trace_s"] = time.perf_counter() - t
    lowered = traced.lower()
    result["lower_s"] = time.perf_counter() - t
    t = time.perf_counter()
    compiled = lowered.compile()
    result["compile_s"] = time.perf_counter() - t
    jax.block_until_ready(compiled(state, x, y))  # first touch of its buffers, untimed
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        jax.block_until_ready(compiled(state, x, y))
        times.append(time.perf_counter() - t)
    result["step_s"] = statistics.median(times)
    return result


def _child(args: list[str], env: dict | None = None) -> dict:
    import subprocess

    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, check=False)
    if done.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compile_case(samples: int, width: float, per_network: bool) -> list[str]:
    """The compile table: cold without cache, cold with cache, warm from cache, (per-network sum)."""
    import tempfile

    common = ["--compile-child", "--samples", str(samples), "--width-multiplier", str(width)]
    with tempfile.TemporaryDirectory(prefix="nasgen-jax-cache-") as cache:
        rows = [
            ("before: one-piece trace, no cache", _child(common + ["--one-piece"])),
            ("per-network sub-traces, no cache", _child(common)),
            ("FusedStep, cache on, cold (fills it)", _child(common + ["--fused-step", "--cache", cache])),
            ("FusedStep, warm: new process, same cache", _child(common + ["--fused-step", "--cache", cache])),
        ]
        if per_network:
            rows.append((f"each of the {samples + 1} networks' own step, compiled separately (sum)",
                         _child(common + ["--per-network"])))
    before = rows[0][1]["lower_s"] + rows[0][1]["compile_s"]
    lines = [
        f"Fused ResNet-18 step, M = {samples} (+ c0), width x{width:g}, batch 512, each row a fresh process. "
        "Rows 1-2: jax.jit(...).trace/.lower/.compile of the step; rows 3-4: nasgen.train.step.FusedStep as a run "
        "uses it (trace+lower column: tracing and exporting, or loading the exported step; XLA compile column: "
        "its first call less one step):",
        "",
        "| variant | trace s | trace+lower s | XLA compile s | total s | vs before | step s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        total = r["lower_s"] + r["compile_s"]
        step = f"{r['step_s']:.3f}" if "step_s" in r else "NA"
        trace = f"{r['trace_s']:.1f}" if "trace_s" in r else "NA"
        lines.append(f"| {name} | {trace} | {r['lower_s']:.1f} | {r['compile_s']:.1f} | {total:.1f} | "
                     f"{before / total:.2f}x | {step} |")
    return lines


def cache_case(samples: int, width: float, repeats: int, groups: int = 1, xla_defaults: bool = False) -> list[str]:
    """Cold start that fills an empty persistent cache, then ``repeats`` warm starts (new processes)."""
    import tempfile

    common = ["--compile-child", "--samples", str(samples), "--width-multiplier", str(width), "--fused-step",
              "--groups", str(groups)] + (["--xla-defaults"] if xla_defaults else [])
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="nasgen-jax-cache-") as cache:
        cold = _child(common + ["--cache", cache])
        warm = [_child(common + ["--cache", cache]) for _ in range(repeats)]
    load_after = os.getloadavg()
    if not all(w["loaded_from_cache"] for w in warm):
        raise SystemExit("a warm child did not load the stored step from the cache")

    def total(r):
        return r["lower_s"] + r["compile_s"]

    def start(r):  # what a run pays before its first step: creating the mixture too
        return r["create_s"] + total(r)

    median = {key: statistics.median(w[key] for w in warm) for key in ("create_s", "lower_s", "compile_s", "step_s")}
    warm_totals = sorted(total(w) for w in warm)
    return [
        f"Fused ResNet-18 step, M = {samples} (+ c0), width x{width:g}, batch 512, nasgen.train.step.FusedStep with the "
        + (f"step split into {groups} programs over groups of networks plus alpha's (`programs={groups}`), "
           if groups > 1 else "")
        + ("XLA's default compiler options (`compiler_options={}`: YNNPACK fusions), " if xla_defaults
           else "nasgen's compiler options (`STEP_COMPILER_OPTIONS`: no YNNPACK fusions), ")
        + f"persistent cache, each row a fresh process (load average {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after); make = constructing the FusedStep (tracing, lowering and compiling it, or "
        "loading the stored executable), first call = its first step less the median step (kernels' first-run "
        "set-up, first touch of its buffers):",
        "",
        "| variant | make s | first call s | total s | creating the mixture s "
        "| start-up (create + total) s | step s |",
        "|---|---|---|---|---|---|---|",
        f"| cold, empty cache (fills it) | {cold['lower_s']:.1f} | {cold['compile_s']:.1f} | {total(cold):.1f} | "
        f"{cold['create_s']:.1f} | {start(cold):.1f} | {cold['step_s']:.3f} |",
        f"| warm, median of {repeats} new processes | {median['lower_s']:.1f} | {median['compile_s']:.1f} | "
        f"{statistics.median(warm_totals):.1f} | {median['create_s']:.1f} | "
        f"{statistics.median(start(w) for w in warm):.1f} | {median['step_s']:.3f} |",
        "",
        f"Warm totals, sorted: {', '.join(f'{t:.1f}' for t in warm_totals)} s.",
    ]


_DEVICES_CHILD = "--devices-child"


def devices_child(samples: int, width: float, devices: int, steps: int) -> dict:
    """Fused-step seconds with the batch sharded over ``devices`` (parameters replicated)."""
    from jax.sharding import NamedSharding, PartitionSpec

    from nasgen.train.runtime import data_mesh

    mesh = data_mesh(devices)
    config, x, y = _resnet_inputs(samples, width)
    mixture, optimizer = create_mixture(config, in_channels=1, num_classes=10)
    mixture.train()
    state = nnx.state((mixture, optimizer))
    nnx.update((mixture, optimizer), jax.device_put(state, NamedSharding(mesh, PartitionSpec())))
    batch = NamedSharding(mesh, PartitionSpec("data"))
    xb, yb = jax.device_put(x, batch), jax.device_put(y, batch)
    step = nnx.cached_partial(train_step, mixture, optimizer)
    jax.block_until_ready(step(xb, yb))
    jax.block_until_ready(step(xb, yb))
    seconds = _median_seconds(lambda: step(xb, yb), steps)
    return {"devices": devices, "step_s": seconds, "img_s": len(y) * (samples + 1) / seconds}


def devices_case(samples: int, width: float, steps: int) -> list[str]:
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    common = [_DEVICES_CHILD, "--samples", str(samples), "--width-multiplier", str(width), "--steps", str(steps)]
    one = _child(common + ["--devices", "1"], env)
    two = _child(common + ["--devices", "2"], env)
    return [
        f"Fused ResNet-18 step, M = {samples} (+ c0), width x{width:g}, batch 512, 2 forced host devices "
        f"(one process), median of {steps} steps:",
        "",
        "| devices | s/step | img/s | vs 1 device |",
        "|---|---|---|---|",
        f"| 1 | {one['step_s']:.3f} | {one['img_s']:.0f} | 1.00x |",
        f"| 2 | {two['step_s']:.3f} | {two['img_s']:.0f} | {one['step_s'] / two['step_s']:.2f}x |",
    ]


_SEEDS_CHILD = "--seeds-child"


def seeds_child(samples: int, width: float, keep: bool) -> dict:
    """``train_seeds`` over seeds 42 and 43 in this (fresh) process, a fresh persistent cache, tiny data.

    The data are random 28x28x1 images (1,024 to train: two steps of 512; 512
    to test) in an npz, so the seconds are those of starting each seed's run:
    creating the mixture, the step's compile or load, evaluation. With
    ``keep`` false the process keeps no compiled step (``STEPS_KEPT = 0``, the
    behaviour before the in-process reuse): the second seed loads the step
    from the persistent cache the first one filled.
    """
    import tempfile

    import nasgen.train.programs as programs
    from nasgen.train.config import RunOptions
    from nasgen.train.data import load_npz_dataset
    from nasgen.train.loop import train
    from nasgen.train.rundir import LOG_FILE

    if not keep:
        programs.STEPS_KEPT = 0
    archs = sample(RESNET_SPACE, samples, seed=42)
    config = TrainConfig.from_dict({"architectures": archs, "model": "resnet18", "dataset": "mnist",
                                    "width_multiplier": width, "batch_size": 512, "epochs": 1})
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="nasgen-seeds-") as tmp:
        npz = Path(tmp) / "random28.npz"
        np.savez(npz, x_train=rng.random((1024, 28, 28, 1), dtype=np.float32),
                 y_train=rng.integers(0, 10, 1024), x_test=rng.random((512, 28, 28, 1), dtype=np.float32),
                 y_test=rng.integers(0, 10, 512))
        dataset = load_npz_dataset(npz)
        config = dataclasses.replace(config, dataset=str(npz))
        seconds, records = [], []
        for seed in (42, 43):  # what train_seeds does, timed per seed
            t = time.perf_counter()
            options = RunOptions(progress=False, plots=False, compilation_cache=Path(tmp) / "cache")
            train(dataclasses.replace(config, seed=seed), Path(tmp) / f"seed-{seed}", options, dataset=dataset)
            seconds.append(time.perf_counter() - t)
            log = (Path(tmp) / f"seed-{seed}" / LOG_FILE).read_text().splitlines()
            records.append(json.loads(log[-1]))
    return {"keep": keep, "run_s": seconds, "compile_s": [r["compile_seconds"] for r in records]}


def seeds_case(samples: int, width: float) -> list[str]:
    common = [_SEEDS_CHILD, "--samples", str(samples), "--width-multiplier", str(width)]
    before = _child(common + ["--no-keep"])
    now = _child(common)
    lines = [
        f"`--seeds 42,43` as `train_seeds` runs it: ResNet-18 mixture, M = {samples} (+ c0), width x{width:g}, "
        "batch 512, one epoch of two steps on random 28x28x1 data, each row a fresh process with an empty "
        "persistent cache (seed 42 fills it); run s = the seed's whole `train` call:",
        "",
        "| variant | seed 42 run s | seed 42 compile s | seed 43 run s | seed 43 compile s | seed 43 vs before |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in (("before: no compiled step kept (STEPS_KEPT = 0)", before), ("now: the process keeps it", now)):
        lines.append(f"| {name} | {r['run_s'][0]:.1f} | {r['compile_s'][0]:.1f} | {r['run_s'][1]:.1f} | "
                     f"{r['compile_s'][1]:.1f} | {before['run_s'][1] / r['run_s'][1]:.2f}x |")
    return lines


def _alternate(base: dict, other: dict, steps: int, x, y) -> tuple[float, list[float]]:
    """Run ``steps`` steps of two rows' steps alternately on one batch (seconds and losses kept in the rows).

    Returns the largest difference between their network losses at any step
    (the first, already in the rows, included) and the sorted per-step time
    ratios ``other / base``.
    """
    for _ in range(steps):
        for row in (base, other):
            t = time.perf_counter()
            losses = jax.block_until_ready(row["step"](x, y))
            row["times"].append(time.perf_counter() - t)
            row["losses"].append(losses)
    gap = max(float(np.abs(np.asarray(a[1]) - np.asarray(b[1])).max())
              for a, b in zip(base["losses"], other["losses"], strict=True))
    return gap, sorted(b / a for a, b in zip(base["times"], other["times"], strict=True))


def _made_row(make: Callable[[], Any], x, y) -> dict:
    """A row for :func:`_alternate`: the step ``make()`` returns, timed to make (wall and CPU s) and to its first step."""
    t, cpu = time.perf_counter(), time.process_time()
    step = make()
    made, made_cpu = time.perf_counter() - t, time.process_time() - cpu
    first = jax.block_until_ready(step(x, y))
    return {"step": step, "make_s": made, "make_cpu_s": made_cpu, "start_s": time.perf_counter() - t, "times": [],
            "losses": [first]}


def _alternated_line(ratio: str, ratios: list[float], gap: float, steps: int, compared: str = "programs'") -> str:
    """The line under an alternated comparison: its per-step ratios, sorted, and the largest loss difference."""
    return (f"{ratio} per alternated step, sorted: {', '.join(f'{r:.2f}' for r in ratios)}; largest difference "
            f"between the two {compared} network losses over the {steps + 1} steps: {gap:.2e}.")


def programs_case(samples: int, width: float, programs: int, steps: int) -> list[str]:
    """The step as 1 program and as ``programs`` programs, in this process, steps alternated on one batch.

    Both start from the same mixture and optimiser state, so their losses
    must agree to float rounding at every step; the seconds compare the
    two structures on the same machine at the same moments (no persistent
    cache: each row's start is a cold trace and compile in this process; the
    second row's trace benefits from JAX's warm in-process caches).
    """
    from nasgen.train.programs import clear_step_programs
    from nasgen.train.step import FusedStep

    config, x, y = _resnet_inputs(samples, width)
    mixture, optimizer = create_mixture(config, in_channels=1, num_classes=10)
    mixture.train()
    clear_step_programs()
    rows = {}
    for count in (1, programs):
        t = time.perf_counter()
        step = FusedStep(mixture, optimizer, x, y, programs=count)
        first = step(x, y)
        jax.block_until_ready(first)
        rows[count] = {"step": step, "start_s": time.perf_counter() - t, "times": [], "losses": [first]}
    one, split = rows[1], rows[programs]
    gap, ratios = _alternate(one, split, steps, x, y)
    one_s, split_s = statistics.median(one["times"]), statistics.median(split["times"])
    return [
        f"Fused ResNet-18 step, M = {samples} (+ c0), width x{width:g}, batch 512, one process: the step as one "
        f"program and as {programs} (`FusedStep(programs=...)`), {steps} steps of each, alternated; start = "
        "construct + first step, no persistent cache:",
        "",
        "| programs | start s | median s/step | vs 1 program |",
        "|---|---|---|---|",
        f"| 1 | {one['start_s']:.1f} | {one_s:.3f} | 1.00x |",
        f"| {programs} | {split['start_s']:.1f} | {split_s:.3f} | {split_s / one_s:.2f}x |",
        "",
        _alternated_line(f"{programs} programs / 1", ratios, gap, steps, "structures'"),
    ]


def options_case(samples: int, width: float, programs: int, steps: int) -> list[str]:
    """The step compiled with nasgen's CPU options and with XLA's defaults, in this process, steps alternated.

    Both start from the same mixture and optimiser state on one batch; start
    = construct (trace, lower, compile; no persistent cache) + first step.
    """
    from nasgen.train.programs import STEP_COMPILER_OPTIONS, clear_step_programs
    from nasgen.train.step import FusedStep

    config, x, y = _resnet_inputs(samples, width)
    mixture, optimizer = create_mixture(config, in_channels=1, num_classes=10)
    mixture.train()
    clear_step_programs()
    rows = {name: _made_row(lambda: FusedStep(mixture, optimizer, x, y, programs=programs,
                                              compiler_options=options), x, y)
            for name, options in (("XLA's defaults ({})", {}), ("nasgen (STEP_COMPILER_OPTIONS)", None))}
    xla, ours = rows.values()
    gap, ratios = _alternate(xla, ours, steps, x, y)
    xla_s = statistics.median(xla["times"])
    return [
        f"Fused ResNet-18 step, M = {samples} (+ c0), width x{width:g}, batch 512, {programs} program(s), one "
        f"process: compiled with XLA's default options and with nasgen's ({STEP_COMPILER_OPTIONS}), {steps} steps "
        "of each, alternated; make = construct (trace, lower, compile, no persistent cache), start = make + first "
        "step (the second row's trace benefits from JAX's warm in-process caches):",
        "",
        "| compiler options | make s | start s | first call less a step s | median s/step | vs XLA's defaults |",
        "|---|---|---|---|---|---|",
        *(f"| {name} | {row['make_s']:.1f} | {row['start_s']:.1f} | "
          f"{row['start_s'] - row['make_s'] - statistics.median(row['times']):.1f} | "
          f"{statistics.median(row['times']):.3f} | {statistics.median(row['times']) / xla_s:.2f}x |"
          for name, row in rows.items()),
        "",
        _alternated_line("nasgen / XLA's defaults", ratios, gap, steps),
    ]


def convs_case(samples: int, width: float, programs: int, steps: int) -> list[str]:
    """The step with the models' small convolutions as dots and as lax convolutions, in this process, alternated.

    ``nasgen.nn.models.conv_general_dilated`` computes, on a CPU, a convolution
    whose window covers more positions than its input or output as two dots
    (XLA's CPU compiler swaps the operands of such a convolution and then
    generates a plain loop nest for it). The baseline row builds the same
    step with that turned off (every convolution a lax convolution). Both
    start from the same mixture and optimiser state on one batch; JAX's
    caches are cleared between the two builds; make = construct (trace,
    lower, compile; no persistent cache), with its process CPU seconds.
    """
    import nasgen.nn.models as models
    from nasgen.train.programs import clear_step_programs
    from nasgen.train.step import FusedStep

    config, x, y = _resnet_inputs(samples, width)
    mixture, optimizer = create_mixture(config, in_channels=1, num_classes=10)
    mixture.train()
    plan = models._selection_plan
    rows = {}
    try:
        for name, chosen in (("lax convolutions (before)", lambda *args: None), ("small ones as dots (now)", plan)):
            models._selection_plan = chosen
            clear_step_programs()
            jax.clear_caches()
            rows[name] = _made_row(lambda: FusedStep(mixture, optimizer, x, y, programs=programs), x, y)
    finally:
        models._selection_plan = plan
    before, now = rows.values()
    gap, ratios = _alternate(before, now, steps, x, y)
    before_s = statistics.median(before["times"])
    return [
        f"Fused ResNet-18 step, M = {samples} (+ c0), width x{width:g}, batch 512, {programs} program(s), one "
        f"process: small convolutions as lax convolutions and as dots (`nasgen.nn.models.conv_general_dilated`), "
        f"{steps} steps of each, alternated; make = construct (trace, lower, compile, no persistent cache), "
        "JAX's caches cleared before each:",
        "",
        "| convolutions | make s | make CPU s | median s/step | vs before |",
        "|---|---|---|---|---|",
        *(f"| {name} | {row['make_s']:.1f} | {row['make_cpu_s']:.1f} | {statistics.median(row['times']):.3f} | "
          f"{statistics.median(row['times']) / before_s:.2f}x |" for name, row in rows.items()),
        "",
        _alternated_line("now / before", ratios, gap, steps),
    ]


def batchnorm_case(samples: int, width: float, steps: int, reverse: bool = False) -> list[str]:
    """The fused step built with nnx.BatchNorm and with nasgen's BatchNorm, in this process, steps alternated.

    Each is traced, lowered and compiled (process CPU seconds beside the
    wall seconds); JAX's in-process caches make whichever is built second
    trace faster, so run it twice with ``--reverse`` to see both orders.
    """
    import nasgen.nn.models as models
    from nasgen.train.programs import clear_step_programs
    from nasgen.train.step import FusedStep

    config, x, y = _resnet_inputs(samples, width)
    ours = models.BatchNorm
    order = [("nnx.BatchNorm", nnx.BatchNorm), ("nasgen BatchNorm", ours)]
    if reverse:
        order.reverse()
    rows = {}
    try:
        for name, cls in order:
            models.BatchNorm = cls  # what the model classes build
            mixture, optimizer = create_mixture(config, in_channels=1, num_classes=10)
            mixture.train()
            clear_step_programs()
            step = FusedStep(mixture, optimizer, x, y)
            t, cpu = time.perf_counter(), time.process_time()
            lowered = step._call.trace(step.leaves, x, y).lower()
            trace = (time.perf_counter() - t, time.process_time() - cpu)
            t, cpu = time.perf_counter(), time.process_time()
            compiled = lowered.compile()
            compile_ = (time.perf_counter() - t, time.process_time() - cpu)
            losses, leaves = compiled(step.leaves, x, y)
            jax.block_until_ready(leaves)
            rows[name] = {"compiled": compiled, "leaves": leaves, "trace": trace, "compile": compile_,
                          "times": [], "first": np.asarray(losses[1])}
    finally:
        models.BatchNorm = ours
    for _ in range(steps):
        for row in rows.values():
            t = time.perf_counter()
            _, row["leaves"] = row["compiled"](row["leaves"], x, y)
            jax.block_until_ready(row["leaves"])
            row["times"].append(time.perf_counter() - t)
    flax_, nasgen_ = rows["nnx.BatchNorm"], rows["nasgen BatchNorm"]
    ratios = sorted(b / a for a, b in zip(flax_["times"], nasgen_["times"], strict=True))
    lines = [
        f"Fused ResNet-18 step, M = {samples} (+ c0), width x{width:g}, batch 512, one process, built in the order "
        f"{' then '.join(name for name, _ in order)}; {steps} steps of each, alternated:",
        "",
        "| BatchNorm | trace+lower s (CPU s) | XLA compile s (CPU s) | median s/step |",
        "|---|---|---|---|",
    ]
    for name, row in rows.items():
        lines.append(f"| {name} | {row['trace'][0]:.1f} ({row['trace'][1]:.1f}) | {row['compile'][0]:.1f} "
                     f"({row['compile'][1]:.1f}) | {statistics.median(row['times']):.3f} |")
    gap = float(np.abs(flax_["first"] - nasgen_["first"]).max())
    lines += ["", f"nasgen / nnx per alternated step, sorted: {', '.join(f'{r:.2f}' for r in ratios)}; first "
              f"step's network losses differ by {gap:.2e}."]
    return lines


_CREATE_CHILD = "--create-child"


def create_child(samples: int, width: float, cache: str, one_jit: bool) -> dict:
    """Seconds to create the M = ``samples`` mixture in this (fresh) process with the persistent cache ``cache``.

    ``one_jit``: the creation before 2026-11-29, every network's
    initialisation and the optimiser's state under one ``nnx.jit``; otherwise
    :func:`nasgen.train.mixture.create_mixture` (a program per network). Also the
    sha256 of every created array, to show both give the same values.
    """
    import hashlib

    import nasgen.train.mixture as training
    from nasgen.train.programs import enable_compilation_cache

    enable_compilation_cache(cache)
    config, _, _ = _resnet_inputs(samples, width)
    t = time.perf_counter()
    if one_jit:
        @functools.partial(nnx.jit, static_argnums=(0,))
        def create(config_json, seeds):
            config = TrainConfig.from_dict(json.loads(config_json))
            mixture = training.build_mixture(config, in_channels=1, num_classes=10, seeds=seeds)
            tx = training.build_optimizer(config.optimizer, config.learning_rate, config.weight_decay)
            return mixture, nnx.Optimizer(mixture, tx, wrt=nnx.Param)

        created = create(json.dumps(config.to_dict(), sort_keys=True), jnp.asarray(training.network_seeds(config)))
    else:
        created = training.create_mixture(config, in_channels=1, num_classes=10)
    leaves = jax.block_until_ready(jax.tree.leaves(nnx.state(created)))
    seconds = time.perf_counter() - t
    digest = hashlib.sha256(b"".join(np.asarray(leaf).tobytes() for leaf in leaves)).hexdigest()[:16]
    return {"create_s": seconds, "sha256": digest}


def create_case(samples: int, width: float) -> list[str]:
    """Creating the mixture, one jit against a program per network: cold (empty cache) then warm, fresh processes."""
    import tempfile

    common = [_CREATE_CHILD, "--samples", str(samples), "--width-multiplier", str(width)]
    rows = {}
    for name, extra in (("one jit (before)", ["--one-jit"]), ("a program per network (now)", [])):
        with tempfile.TemporaryDirectory(prefix="nasgen-jax-cache-") as cache:
            cold = _child(common + extra + ["--cache", cache])
            warm = _child(common + extra + ["--cache", cache])
        rows[name] = (cold, warm)
    (before_cold, before_warm), (now_cold, now_warm) = rows.values()
    same = len({r["sha256"] for pair in rows.values() for r in pair}) == 1
    return [
        f"Creating the ResNet-18 mixture, M = {samples} (+ c0), width x{width:g}, and its Adam state; each cell a "
        "fresh process, cold = empty persistent cache, warm = the next process on that cache:",
        "",
        "| creation | cold s | warm s |",
        "|---|---|---|",
        f"| one jit (before) | {before_cold['create_s']:.1f} | {before_warm['create_s']:.1f} |",
        f"| a program per network (now) | {now_cold['create_s']:.1f} ({now_cold['create_s'] / before_cold['create_s']:.2f}x) "
        f"| {now_warm['create_s']:.1f} ({now_warm['create_s'] / before_warm['create_s']:.2f}x) |",
        "",
        f"Every created array identical in all four processes (sha256): {'yes' if same else 'NO'}.",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=("chain", "resnet", "both", "pool", "compile", "cache", "devices", "seeds", "programs", "batchnorm", "create", "options", "convs"), default="both")
    parser.add_argument("--compile-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(_DEVICES_CHILD, action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(_SEEDS_CHILD, action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-keep", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(_CREATE_CHILD, action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--one-jit", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--reverse", action="store_true", help="batchnorm case: build nasgen's BatchNorm first")
    parser.add_argument("--cache", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--one-piece", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--fused-step", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--per-network", action="store_true",
                        help="compile case: also the sum of compiling each network's own step")
    parser.add_argument("--devices", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3, help="cache case: warm processes (median reported)")
    parser.add_argument("--xla-defaults", action="store_true",
                        help="cache case: compile with XLA's default options (FusedStep compiler_options={})")
    parser.add_argument("--groups", type=int, default=1,
                        help="cache case: the step as this many programs over groups of networks (FusedStep programs=)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant (median reported)")
    parser.add_argument("--samples", type=int, default=20, help="M, generated networks")
    parser.add_argument("--width-multiplier", type=float, default=0.25)
    parser.add_argument("--data-dir", default=None, help="MNIST for the resnet case")
    parser.add_argument("--out", default=None, help="also append the table to this markdown file")
    args = parser.parse_args()

    if args.compile_child:
        print(json.dumps(compile_child(args.samples, args.width_multiplier, args.cache, args.per_network,
                                       args.one_piece, args.fused_step, groups=args.groups,
                                       xla_defaults=args.xla_defaults)))
        return
    if args.devices_child:
        print(json.dumps(devices_child(args.samples, args.width_multiplier, args.devices, args.steps)))
        return
    if args.create_child:
        print(json.dumps(create_child(args.samples, args.width_multiplier, args.cache, args.one_jit)))
        return
    if args.seeds_child:
        print(json.dumps(seeds_child(args.samples, args.width_multiplier, not args.no_keep)))
        return
    if args.case in ("compile", "cache", "devices", "seeds", "programs", "batchnorm", "create", "options", "convs"):
        if args.case == "convs":
            lines = convs_case(args.samples, args.width_multiplier, args.groups, args.steps)
        elif args.case == "options":
            lines = options_case(args.samples, args.width_multiplier, args.groups, args.steps)
        elif args.case == "create":
            lines = create_case(args.samples, args.width_multiplier)
        elif args.case == "batchnorm":
            lines = batchnorm_case(args.samples, args.width_multiplier, args.steps, args.reverse)
        elif args.case == "programs":
            lines = programs_case(args.samples, args.width_multiplier, max(2, args.groups), args.steps)
        elif args.case == "seeds":
            lines = seeds_case(args.samples, args.width_multiplier)
        elif args.case == "compile":
            lines = compile_case(args.samples, args.width_multiplier, args.per_network)
        elif args.case == "cache":
            lines = cache_case(args.samples, args.width_multiplier, args.repeats, args.groups, args.xla_defaults)
        else:
            lines = devices_case(args.samples, args.width_multiplier, args.steps)
        print("\n".join(lines))
        _append_result(args.out, "", "\n".join(lines))
        return
    if args.case == "pool":
        r = pool_gradient_case()
        line = (f"ResNet stem max pool (512x14x14x16, 3x3 stride 2) value+gradient, median of {r['repeats']} "
                f"interleaved: nnx.max_pool {r['flax_s'] * 1e3:.2f} ms, nasgen.nn.models.max_pool "
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
        f.write(f"`python bench/{Path(sys.argv[0]).name} {' '.join(sys.argv[1:])}` "
                f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs, load average "
                f"{os.getloadavg()[0]:.2f} at the end){note}\n\n{body}\n\n")


if __name__ == "__main__":
    main()
