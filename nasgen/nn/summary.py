"""A Keras-like model view: per layer, output shape, parameter count and FLOPs.

Everything here is computed analytically from the architecture and the model
options, without building the network, so ``nasgen show --model ...`` is
cheap even for full-width ResNet-18. The tests check every figure against
the real Flax model (parameter shapes, ``jax.eval_shape``) and the FLOPs
against XLA's cost analysis of the compiled forward pass.

FLOPs conventions (one example, inference mode, as XLA's cost analysis
counts them):

* convolution and dense layers: 2 per multiply-add, counting only kernel
  taps that fall inside the input (taps on zero padding are not computed by
  XLA), plus 1 per output element for a bias;
* BatchNorm with running statistics: 3 per element (subtract, scale, shift)
  plus 2 per channel (``var + eps`` and the scale factor);
* ReLU, residual addition: 1 per element;
* max pool: ``window - 1`` comparisons per output; average pool and global
  average pool: ``window`` (``window - 1`` additions and a division) per
  output, except that averaging a single position costs nothing.

These figures equal XLA's count for each module compiled on its own. For a
whole compiled network XLA may count a little more (about 1% for a narrow
ResNet-18, 0.1% at full width), because its fusion passes can duplicate
cheap elementwise work into several consumers.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from nasgen.nn.spec import (
    ORIGINAL_RESNET_ARCH,
    RESNET_STEM,
    ModelSpec,
    check_resnet_space,
    require_spec,
    resnet_baseline_space,
    resnet_space,
    resnet_widths,
)
from nasgen.common.errors import NasgenError
from nasgen.space.definition import Architecture, SearchSpace, check_membership, conv_output_size

__all__ = ["model_stats", "summarize", "conv_taps", "training_memory", "estimate_training_bytes"]

FLOAT_BYTES = 4
"""Bytes of one float32 parameter, statistic or activation."""


def conv_taps(size: int, kernel: int, stride: int, pad_low: int, output: int) -> int:
    """Number of (output position, kernel tap) pairs that read a real input element.

    Args:
        size: input size along one dimension.
        kernel: kernel size.
        stride: stride.
        pad_low: zero padding before the first element.
        output: number of output positions.

    Returns:
        The count of in-bounds taps summed over output positions; equals
        ``output * kernel`` for valid padding.

    >>> conv_taps(10, 3, 1, 1, 10)  # SAME: the two edge outputs lose one tap each
    28
    """
    total = 0
    for position in range(output):
        start = position * stride - pad_low
        total += max(0, min(start + kernel, size) - max(start, 0))
    return total


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    # Output size and low-side padding of XLA/flax "SAME".
    output = -(-size // stride)
    pad_total = max((output - 1) * stride + kernel - size, 0)
    return output, pad_total // 2


class _Rows:
    """Collects table rows while tracking the current activation shape."""

    def __init__(self, spatial: Sequence[int], channels: int) -> None:
        self.rows: list[dict[str, Any]] = []
        self.spatial = tuple(spatial)
        self.channels = channels
        self.add("input", "Input", params=0, flops=0)

    @property
    def elements(self) -> int:
        return math.prod(self.spatial) * self.channels

    def add(self, name: str, kind: str, *, params: int, flops: int, batch_stats: int = 0) -> None:
        self.rows.append(
            {
                "name": name,
                "type": kind,
                "output_shape": (*self.spatial, self.channels),
                "params": params,
                "batch_stats": batch_stats,
                "flops": flops,
            }
        )

    def conv(
        self,
        name: str,
        features: int,
        kernel: Sequence[int],
        stride: Sequence[int],
        padding: str | Sequence[tuple[int, int]],
        *,
        bias: bool,
    ) -> None:
        out_spatial, taps = [], 1
        for d, (x, k, s) in enumerate(zip(self.spatial, kernel, stride)):
            if padding == "VALID":
                y, low = conv_output_size(x, k, s, "floor"), 0
                assert y is not None, f"{name}: kernel {k} does not fit size {x}"
            elif padding == "SAME":
                y, low = _same_padding(x, k, s)
            else:
                low, high = padding[d]
                y = (x + low + high - k) // s + 1
            taps *= conv_taps(x, k, s, low, y)
            out_spatial.append(y)
        in_channels = self.channels
        params = math.prod(kernel) * in_channels * features + (features if bias else 0)
        self.spatial, self.channels = tuple(out_spatial), features
        flops = 2 * taps * in_channels * features + (self.elements if bias else 0)
        pad_text = padding if isinstance(padding, str) else "pad " + ",".join(str(p[0]) for p in padding)
        self.add(name, f"Conv {_grid(kernel)} /{_grid(stride)} {pad_text}", params=params, flops=flops)

    def batch_norm(self, name: str, extra: Sequence[str] = ()) -> None:
        # Running averages (mean, var) are state, not trainable parameters.
        flops = 3 * self.elements + 2 * self.channels + len(extra) * self.elements
        kind = " + ".join(("BatchNorm", *extra))
        self.add(name, kind, params=2 * self.channels, batch_stats=2 * self.channels, flops=flops)

    def pool(self, name: str, kind: str, window: Sequence[int], stride: Sequence[int], pads: Sequence[tuple[int, int]]) -> None:
        self.spatial = tuple(
            (x + low + high - k) // s + 1 for x, k, s, (low, high) in zip(self.spatial, window, stride, pads)
        )
        area = math.prod(window)
        per_output = area - 1 if kind == "max" else area
        pad_text = "VALID" if not any(low or high for low, high in pads) else "pad " + ",".join(str(p[0]) for p in pads)
        label = "MaxPool" if kind == "max" else "AvgPool"
        self.add(name, f"{label} {_grid(window)} /{_grid(stride)} {pad_text}", params=0, flops=per_output * self.elements)


def _grid(values: Sequence[int]) -> str:
    return "x".join(map(str, values))


def _chain_rows(spec: ModelSpec, space: SearchSpace, arch: Architecture) -> list[dict[str, Any]]:
    check_membership(space, arch)
    rows = _Rows(space.input_shape, spec.in_channels)
    for l, (kernel, stride) in enumerate(zip(arch.kernel, arch.stride)):
        rows.conv(f"convs.{l}", spec.width, kernel, stride, "VALID", bias=spec.norm is None)
        if spec.norm == "batch":
            rows.batch_norm(f"norms.{l}", extra=(spec.activation,))
        else:
            # Fold the activation into the conv row: it has no module of its own.
            last = rows.rows[-1]
            last["type"] += f" + {spec.activation}"
            last["flops"] += rows.elements
        if space.pool is not None:
            rows.pool(
                f"pool.{l}",
                spec.pooling,
                [k for k, _ in space.pool],
                [s for _, s in space.pool],
                [(0, 0)] * space.dims,
            )
    assert rows.spatial == space.output_shape, "chain arithmetic disagrees with check_membership"
    if spec.head == "logits":
        features = rows.elements
        rows.spatial, rows.channels = (), spec.num_classes
        rows.add(
            "head",
            "Flatten + Linear",
            params=features * spec.num_classes + spec.num_classes,
            flops=2 * features * spec.num_classes + spec.num_classes,
        )
    return rows.rows


def _resnet_rows(spec: ModelSpec, arch: Architecture) -> list[dict[str, Any]]:
    check_membership(resnet_baseline_space(spec.input_shape), arch)
    widths = resnet_widths(spec.width_multiplier)
    rows = _Rows(spec.input_shape, spec.in_channels)
    window, stride, pad = RESNET_STEM["conv"]
    rows.conv("stem_conv", widths[0], (window,) * 2, (stride,) * 2, ((pad, pad),) * 2, bias=False)
    rows.batch_norm("stem_bn", extra=("relu",))
    window, stride, pad = RESNET_STEM["pool"]
    rows.pool("max_pool", "max", (window,) * 2, (stride,) * 2, ((pad, pad),) * 2)
    index = 0

    def basic_block(features: int) -> None:
        nonlocal index
        name = f"blocks.{index}"
        rows.conv(f"{name}.conv1", features, (3, 3), (1, 1), "SAME", bias=False)
        rows.batch_norm(f"{name}.bn1", extra=("relu",))
        rows.conv(f"{name}.conv2", features, (3, 3), (1, 1), "SAME", bias=False)
        rows.batch_norm(f"{name}.bn2", extra=("add", "relu"))
        index += 1

    basic_block(widths[0])
    basic_block(widths[0])
    for l in range(3):
        name = f"blocks.{index}"
        block_input = (rows.spatial, rows.channels)
        rows.conv(f"{name}.conv1", widths[l + 1], arch.kernel[l], arch.stride[l], "VALID", bias=False)
        rows.batch_norm(f"{name}.bn1", extra=("relu",))
        rows.conv(f"{name}.conv2", widths[l + 1], (3, 3), (1, 1), "SAME", bias=False)
        rows.batch_norm(f"{name}.bn2")
        main_path = (rows.spatial, rows.channels)
        rows.spatial, rows.channels = block_input
        rows.conv(f"{name}.shortcut_conv", widths[l + 1], arch.kernel[l], arch.stride[l], "VALID", bias=False)
        rows.batch_norm(f"{name}.shortcut_bn", extra=("add", "relu"))
        assert (rows.spatial, rows.channels) == main_path
        index += 1
        basic_block(widths[l + 1])
    assert rows.spatial == resnet_space(spec.input_shape).output_shape
    # Averaging a single position is the identity, which XLA drops; over more
    # positions it is (n - 1) additions and one division per channel.
    flops = rows.elements if math.prod(rows.spatial) > 1 else 0
    rows.spatial = ()
    rows.add("global_avg_pool", "GlobalAvgPool", params=0, flops=flops)
    rows.channels = spec.num_classes
    rows.add(
        "head", "Linear", params=widths[-1] * spec.num_classes + spec.num_classes,
        flops=2 * widths[-1] * spec.num_classes + spec.num_classes,
    )
    return rows.rows




def model_stats(
    spec: ModelSpec,
    space: SearchSpace | None = None,
    arch: Architecture | None = None,
) -> list[dict[str, Any]]:
    """Per layer of the model, its output shape, parameters and FLOPs, then a total.

    The model is described, not built: this function imports no JAX and
    takes microseconds even for full-width ResNet-18.

    Args:
        spec: the :class:`~nasgen.nn.spec.ModelSpec` (for resnet18 it
            holds the input image shape).
        space: the search space (for resnet18: None or
            ``resnet_space(spec.input_shape)``, any relation).
        arch: the architecture (for resnet18: None means the original).

    Returns:
        A list of dicts with keys ``name`` (the module's path in the nnx
        model, e.g. ``"blocks.2.conv1"``), ``type``, ``output_shape`` (one
        example, channels last, no batch axis), ``params`` (trainable),
        ``batch_stats`` (BatchNorm running mean and variance) and ``flops``
        (one example, inference). The first row is the input; the last row
        is named ``"total"`` and holds the sums and the output shape.

    Raises:
        ArchitectureError: if ``arch`` is not in ``space``.
        SpaceError, NasgenError: for a space or spec that does not fit.

    >>> rows = model_stats(ModelSpec.from_options("resnet18"), None, None)
    >>> rows[-1]["params"]
    9799114
    >>> model_stats(ModelSpec.from_options("resnet18", image_shape=(224, 224, 3)))[-1]["params"]
    9805386
    """
    spec = require_spec(spec, "model_stats")
    if spec.kind == "chain":
        if space is None or arch is None:
            raise NasgenError("a chain model needs both a search space and an architecture")
        rows = _chain_rows(spec, space, arch)
    else:
        if space is not None:
            check_resnet_space(space, spec.input_shape)
            if arch is not None and arch != ORIGINAL_RESNET_ARCH:
                check_membership(space, arch)
        rows = _resnet_rows(spec, ORIGINAL_RESNET_ARCH if arch is None else arch)
    rows.append(
        {
            "name": "total",
            "type": "",
            "output_shape": rows[-1]["output_shape"],
            "params": sum(r["params"] for r in rows),
            "batch_stats": sum(r["batch_stats"] for r in rows),
            "flops": sum(r["flops"] for r in rows),
        }
    )
    return rows


def summarize(
    spec: ModelSpec,
    space: SearchSpace | None = None,
    arch: Architecture | None = None,
) -> str:
    """A Keras-like table of :func:`model_stats`, ready to print.

    Args:
        spec, space, arch: as for :func:`model_stats`.

    Returns:
        Multi-line text: a header, one line per layer, and totals.

    Raises:
        Same as :func:`model_stats`.

    >>> from nasgen.space.definition import Architecture, SearchSpace
    >>> space = SearchSpace((12,), (4,), min_layers=2, max_layers=2)
    >>> arch = Architecture(kernel=((3,), (4,)), stride=((1,), (2,)))
    >>> print(summarize(ModelSpec.from_options("chain", width=4), space, arch).splitlines()[-2])
    FLOPs per example (inference): 1,322
    """
    rows = model_stats(require_spec(spec, "summarize"), space, arch)
    body, total = rows[:-1], rows[-1]
    if spec.kind == "chain":
        title = f"Model: ConvChain, {space.describe()}, width {spec.width}"
    else:
        title = f"Model: {spec.describe()}"
    shown_arch = arch if arch is not None else ORIGINAL_RESNET_ARCH
    header = ("Layer", "Type", "Output shape", "Params", "FLOPs")
    table = [header] + [
        (r["name"], r["type"], _shape_text(r["output_shape"]), f"{r['params']:,}", f"{r['flops']:,}") for r in body
    ]
    widths_col = [max(len(row[c]) for row in table) for c in range(len(header))]

    def line(row: Sequence[str]) -> str:
        cells = [row[c].ljust(widths_col[c]) if c < 3 else row[c].rjust(widths_col[c]) for c in range(len(row))]
        return "  ".join(cells).rstrip()

    rule = "-" * len(line(header))
    text = [title, f"Architecture: {shown_arch.to_json()}", rule, line(header), rule]
    text += [line(row) for row in table[1:]]
    text += [
        "=" * len(rule),
        f"Trainable params: {total['params']:,}",
        f"Non-trainable (BatchNorm running statistics): {total['batch_stats']:,}",
        f"FLOPs per example (inference): {total['flops']:,}",
        f"Output shape: {_shape_text(total['output_shape'])}",
    ]
    return "\n".join(text)


def _shape_text(shape: Sequence[int]) -> str:
    return str(tuple(shape))


def training_memory(
    spec: ModelSpec,
    space: SearchSpace | None,
    archs: Sequence[Architecture | None],
    batch_size: int,
    *,
    optimizer_slots: int = 2,
) -> dict[str, int]:
    """Analytic bytes a training step of these networks holds at once, by kind, from :func:`model_stats`.

    * ``parameters``: trainable parameters and BatchNorm statistics;
    * ``optimizer``: one gradient plus ``optimizer_slots`` moments per
      parameter (Adam and AdamW keep two);
    * ``activations``: every layer's output for the batch, twice (the
      forward values kept for the backward pass and their gradients), for
      every network, as the fused step of a mixture may hold them all;
    * ``inputs``: one batch of images;
    * ``total``: the sum.

    Everything is float32. XLA may fuse some layers' outputs away or keep
    extra buffers, so this is an estimate of the right size, meant to refuse
    runs that cannot fit (``--width 100000``) before anything is compiled.

    Args:
        spec: the networks' :class:`~nasgen.nn.spec.ModelSpec`.
        space: their search space (see :func:`model_stats`).
        archs: one architecture per network (None: the original ResNet-18).
        batch_size: training examples per step.
        optimizer_slots: per-parameter optimizer moments.

    Returns:
        A dict of byte counts with the keys above.

    Raises:
        NasgenError: for an empty ``archs`` or a batch size that is not a
            positive integer, and what :func:`model_stats` raises.

    >>> mnist = ModelSpec.from_options("resnet18", width_multiplier=0.25)
    >>> training_memory(mnist, None, [None], 512)["parameters"]  # 4 x (615,802 parameters + 2,400 statistics)
    2472808
    """
    archs = _check_memory_inputs(archs, batch_size, optimizer_slots)
    params = stats = activations = 0
    for arch in archs:
        rows = model_stats(spec, space, arch)
        params += rows[-1]["params"]
        stats += rows[-1]["batch_stats"]
        activations += sum(math.prod(r["output_shape"]) for r in rows[1:-1])
    inputs = batch_size * math.prod(spec.image_shape(space))
    memory = {
        "parameters": FLOAT_BYTES * (params + stats),
        "optimizer": FLOAT_BYTES * params * (1 + optimizer_slots),
        "activations": FLOAT_BYTES * 2 * batch_size * activations,
        "inputs": FLOAT_BYTES * inputs,
    }
    memory["total"] = sum(memory.values())
    return memory


def _check_memory_inputs(archs: Sequence[Architecture | None], batch_size: int, optimizer_slots: int) -> list:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise NasgenError(f"batch size must be a positive integer, got {batch_size!r}")
    if isinstance(optimizer_slots, bool) or not isinstance(optimizer_slots, int) or optimizer_slots < 0:
        raise NasgenError(f"optimizer_slots must be a non-negative integer, got {optimizer_slots!r}")
    archs = list(archs)
    if not archs:
        raise NasgenError("estimating training memory needs at least one architecture")
    return archs


def estimate_training_bytes(
    spec: ModelSpec,
    space: SearchSpace | None,
    archs: Sequence[Architecture | None],
    batch_size: int,
) -> int:
    """Bytes one training step of these networks needs: parameters, optimizer state and activations.

    The ``"total"`` of :func:`training_memory`; analytic, imports no JAX,
    and takes microseconds, so a run can be refused before compiling.

    >>> spec = ModelSpec.from_options("chain", width=100000)
    >>> from nasgen.space.definition import SearchSpace, Architecture
    >>> space = SearchSpace((8, 8), (2, 2), min_layers=2, max_layers=2)
    >>> arch = Architecture(kernel=((3, 3), (4, 4)), stride=((1, 1), (2, 2)))
    >>> estimate_training_bytes(spec, space, [arch], 64) > 2**40  # over a terabyte
    True
    """
    return training_memory(spec, space, archs, batch_size)["total"]
