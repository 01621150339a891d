"""Benchmark of ONNX export (issue 31): export time per model kind, and onnxruntime against Flax.

For every network kind nasgen builds (chains in 1, 2 and 3 dimensions with and
without pooling, ResNet-18 on 28x28x1 and on 224x224x3 at full width) it
prints the median time of :func:`nasgen.nn.export.to_onnx` over the repeats,
beside a baseline measured in the same run on the same model: every array of
``nnx.state(model)`` written raw to one file through the same staged and
fsynced writer, the part of an export no route can skip. Every model
has BatchNorm running statistics and scales moved away from 0 and 1. The
last columns are max |onnxruntime - Flax| on random inputs, for the fixed
batch (2) and for the dynamic-batch graph at batch 3, and, when ``torch``
and ``onnx2torch`` are importable, for the file converted to PyTorch.

    python bench/bench_export.py [--repeats 3] [--output bench/results/export.md]

The target: ResNet-18 at 224x224x3 exports in under 30 s.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
import onnxruntime
from flax import nnx

from nasgen.common.atomic import write_atomic
from nasgen.nn.export import INPUT_NAME, to_onnx
from nasgen.nn.models import ModelSpec, build_model
from nasgen.nn.spec import resnet_space
from nasgen.samplers.registry import sample
from nasgen.space.definition import SearchSpace

ROOT = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 30.0


def cases():
    """(name, spec, space, architecture, image shape) for every model kind."""
    chain_spaces = {
        "chain 1-D": SearchSpace((28,), (7,), 2, 3),
        "chain 1-D, max pool": SearchSpace((28,), (5,), 2, 3, pool=(2, 1)),
        "chain 2-D": SearchSpace((28, 28), (7, 7), 2, 3, rounding="floor"),
        "chain 2-D, max pool": SearchSpace((28, 28), (4, 4), 2, 2, pool=(2, 2), rounding="floor"),
        "chain 3-D": SearchSpace((12, 12, 12), (3, 3, 3), 2, 2, rounding="floor"),
        "chain 3-D, max pool": SearchSpace((12, 12, 12), (3, 3, 3), 2, 2, pool=(2, 1), rounding="floor"),
    }
    for name, space in chain_spaces.items():
        [arch] = sample(space, 1, seed=0)
        yield name, ModelSpec.from_options("chain", width=16), space, arch, (*space.input_shape, 1)
    space = chain_spaces["chain 2-D, max pool"]
    [arch] = sample(space, 1, seed=0)
    yield ("chain 2-D, avg pool, gelu, no norm",
           ModelSpec.from_options("chain", width=16, pooling="avg", activation="gelu", norm=None),
           space, arch, (*space.input_shape, 1))
    for image in ((28, 28, 1), (224, 224, 3)):
        spec = ModelSpec.from_options("resnet18", image_shape=image, init_scale="lecun")
        [arch] = sample(resnet_space(image), 1, seed=0)
        yield f"ResNet-18 {'x'.join(map(str, image))}", spec, None, arch, image


def with_statistics(model, seed: int):
    """Running means and variances, BatchNorm scales and biases away from their initial 0 and 1; eval mode."""
    rng = np.random.default_rng(seed)

    def move(path, value):
        name = str(getattr(path[-1], "key", path[-1]))
        shape = np.shape(value)
        if name == "var":
            return rng.uniform(0.3, 3.0, shape).astype(np.float32)
        if name in ("mean", "bias"):
            return rng.normal(0.0, 0.5, shape).astype(np.float32)
        if name == "scale":
            return rng.uniform(0.5, 1.5, shape).astype(np.float32)
        return value

    for kind in (nnx.BatchStat, nnx.Param):
        nnx.update(model, jax.tree_util.tree_map_with_path(move, nnx.state(model, kind)))
    model.eval()
    return model


def array_entries(model) -> int:
    return sum(np.asarray(leaf).size for leaf in jax.tree.leaves(nnx.state(model)))


def write_arrays(model, path: Path) -> None:
    """The baseline: every array of the model as raw bytes in one file, staged and fsynced as export's file is."""
    write_atomic(path, b"".join(np.asarray(leaf).tobytes() for leaf in jax.tree.leaves(nnx.state(model))))


def median_seconds(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def onnxruntime_difference(model, path: Path, batch: int, image) -> float:
    x = np.random.default_rng(batch).normal(size=(batch, *image)).astype(np.float32)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {INPUT_NAME: x})
    return float(np.abs(got - np.asarray(forward(model, x))).max())


def torch_difference(model, path: Path, image) -> float | None:
    """max |PyTorch (onnx2torch) - Flax| on a batch of 3, or None without torch and onnx2torch."""
    try:
        import onnx2torch
        import torch
    except ImportError:
        return None
    x = np.random.default_rng(7).normal(size=(3, *image)).astype(np.float32)
    network = onnx2torch.convert(str(path)).eval()
    with torch.no_grad():
        got = network(torch.from_numpy(x)).numpy()
    return float(np.abs(got - np.asarray(forward(model, x))).max())


@nnx.jit
def forward(model, x):
    return model(x)


@functools.partial(nnx.jit, static_argnums=(0, 1, 2))
def build(spec, space, arch):
    return build_model(spec, space, arch, rngs=nnx.Rngs(0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "export.md"))
    args = parser.parse_args()
    rows = []
    torch_checked = False
    with tempfile.TemporaryDirectory() as directory:
        fixed, dynamic = Path(directory) / "fixed.onnx", Path(directory) / "dynamic.onnx"
        for name, spec, space, arch, image in cases():
            model = with_statistics(build(spec, space, arch), seed=len(name))
            export = median_seconds(lambda: to_onnx(model, fixed, (2, *image)), args.repeats)
            baseline = median_seconds(lambda: write_arrays(model, Path(directory) / "raw.bin"), args.repeats)
            to_onnx(model, dynamic, (2, *image), dynamic_batch=True)
            differences = (onnxruntime_difference(model, fixed, 2, image),
                           onnxruntime_difference(model, dynamic, 3, image))
            in_torch = torch_difference(model, dynamic, image)
            torch_checked |= in_torch is not None
            rows.append((name, array_entries(model), fixed.stat().st_size, export, baseline, *differences,
                         in_torch))
            print(f"{name}: export {export:.3f} s, max |diff| {max(differences):.2g}", file=sys.stderr, flush=True)
    lines = [
        "# ONNX export (issue 31)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"jax {jax.__version__}, onnxruntime {onnxruntime.__version__}, shared with other jobs. "
        f"Command: `python bench/bench_export.py --repeats {args.repeats}`.",
        "",
        f"Export: `nasgen.nn.export.to_onnx` to a file, median of {args.repeats}; baseline: every array of the model "
        "(parameters and BatchNorm statistics) written raw to one file through the same staged, fsynced writer, "
        "median of the same repeats; ratio = export / baseline. max |diff|: onnxruntime against the "
        "Flax model in eval mode (BatchNorm running statistics moved from 0 and 1) on N(0, 1) inputs, fixed batch 2 "
        "and the dynamic-batch graph at batch 3"
        + ("; PyTorch: the dynamic graph through onnx2torch at batch 3." if torch_checked else
           "; PyTorch: not checked (torch or onnx2torch not importable)."),
        "",
        "| model | array entries | file (MB) | export (s) | raw arrays to a file (s) | ratio | max \\|diff\\| fixed "
        "| max \\|diff\\| dynamic | max \\|diff\\| PyTorch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, params, size, export, baseline, fixed_diff, dynamic_diff, in_torch in rows:
        shown = "-" if in_torch is None else f"{in_torch:.2g}"
        lines.append(f"| {name} | {params:,} | {size / 1e6:.2f} | {export:.3f} | {baseline:.4f} | "
                     f"{export / baseline:.1f}x | {fixed_diff:.2g} | {dynamic_diff:.2g} | {shown} |")
    big = rows[-1]
    worst = max(max(r[5], r[6], r[7] or 0.0) for r in rows)
    lines += [
        "",
        f"ResNet-18 at 224x224x3: export {big[3]:.2f} s (target < {TARGET_SECONDS:.0f} s: "
        f"{'met' if big[3] < TARGET_SECONDS else 'NOT met'}); largest max |diff| over every kind: {worst:.2g} "
        f"(target <= 1e-4: {'met' if worst <= 1e-4 else 'NOT met'}).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    write_atomic(args.output, text)


if __name__ == "__main__":
    main()
