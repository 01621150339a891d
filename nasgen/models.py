"""Flax NNX networks built from architectures: K-D conv chains and ResNet-18.

Two families turn an :class:`~nasgen.space.Architecture` into a trainable
network:

* :class:`ConvChain` stacks one valid-padding convolution per layer of the
  architecture (plus the space's pooling, if any), so that the feature map
  after the chain has exactly the space's output shape O.
* :class:`ResNet18` is ResNet-18 on 28x28 input whose three downsampling
  blocks take their (kernel, stride) from an architecture of
  :data:`RESNET_SPACE` (7x7 -> 1x1 in three layers), the redefined block of
  Calhas et al. 2022, Figure 3b.

Every model validates its architecture with
:func:`nasgen.space.check_membership` before any JAX tracing, so a bad
architecture fails with an :class:`~nasgen.space.ArchitectureError` naming
the first layer where the shapes go wrong.

Inputs are channels-last, like flax: ``(batch, *spatial, channels)``.

References:
    Calhas, Manquinho, Lynce. Automatic Generation of Neural Architecture
    Search Spaces. 2022, section 5.2 and Figure 3.
    He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition. 2016.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from nasgen.space import (
    Architecture,
    NasgenError,
    SearchSpace,
    SpaceError,
    check_membership,
)

__all__ = [
    "ConvChain",
    "ResNet18",
    "BasicBlock",
    "DownsamplingBlock",
    "RESNET_SPACE",
    "RESNET_BASELINE_SPACE",
    "ORIGINAL_RESNET_ARCH",
    "RESNET_INPUT_SHAPE",
    "RESNET_STAGE_WIDTHS",
    "MODEL_KINDS",
    "BN_MOMENTUM",
    "RESNET_INIT_SCALE",
    "kernel_initializer",
    "max_pool",
    "NORMS",
    "HEADS",
    "POOLINGS",
    "build_model",
    "resnet_widths",
]

NORMS = ("batch", None)
HEADS = ("logits", "features")
POOLINGS = ("max", "avg")
MODEL_KINDS = ("chain", "resnet18")

BN_MOMENTUM = 0.99
"""Default BatchNorm momentum (flax's): running = m * running + (1 - m) * batch.

PyTorch's default corresponds to 0.9 here (its ``momentum=0.1``).
"""

RESNET_INIT_SCALE = 0.01
"""Default ``init_scale`` of :class:`ResNet18`: kernels start at variance ``0.01 / fan_in``.

Every ResNet convolution is followed by BatchNorm, so its kernel's scale does
not change the function, only how far one optimiser step moves it: Adam's
steps have a size set by the learning rate alone, so a smaller kernel turns
more per step. At the paper's learning rate 1e-4, LeCun-scale kernels
(``init_scale=1``, flax's default) train slowly: in a 2-epoch MNIST run of
the original network at width 1/4 (batch 512, data order of seed 42) the test accuracy
was 0.905 at scale 1, 0.949 at 1/3 (PyTorch's default), 0.964-0.968 at 0.1,
0.974-0.975 at 0.03 and 0.979 at 0.01. The head gets the same scale, so the
initial logits are near zero. See docs/training.md.
"""

RESNET_INPUT_SHAPE = (28, 28)
"""Spatial input shape of :class:`ResNet18`; the stem maps it to 7x7."""

RESNET_STAGE_WIDTHS = (64, 128, 256, 512)
"""Channel widths of ResNet-18's four stages at width multiplier 1."""

RESNET_SPACE = SearchSpace(
    (7, 7), (1, 1), min_layers=3, max_layers=3, rounding="floor", relation="gt"
)
"""The space the three generated downsampling blocks are drawn from.

7x7 -> 1x1 with n = N = 3 and floor rounding (valid padding). The relation
is ``"gt"`` (k > s) as in the paper's code, so a sampled block never skips
input elements; the paper's baseline (k, s) = (1, 2) is therefore not a
member (see :data:`RESNET_BASELINE_SPACE`).
"""

RESNET_BASELINE_SPACE = dataclasses.replace(RESNET_SPACE, relation="any")
"""RESNET_SPACE without the kernel/stride relation: it admits the original (1, 2).

:class:`ResNet18` checks its architecture against this space, so both the
baseline and every member of :data:`RESNET_SPACE` are accepted.
"""

ORIGINAL_RESNET_ARCH = Architecture(kernel=((1, 1),) * 3, stride=((2, 2),) * 3)
"""The paper's "original" ResNet-18 (c_0): (k, s) = (1, 2) in all three blocks, 7 -> 4 -> 2 -> 1."""


def _check_option(value, valid: Sequence, what: str) -> None:
    if value not in valid:
        shown = ", ".join(repr(v) for v in valid)
        raise NasgenError(f"{what} {value!r} is not one of {shown}")


def _positive(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise NasgenError(f"{what} must be a positive integer, got {value!r}")
    return value


def _momentum(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise NasgenError(f"bn_momentum must be a number in [0, 1), got {value!r}")
    return float(value)


def kernel_initializer(init_scale: float | None) -> Callable:
    """Kernel initialiser for convolutions and dense layers.

    ``None`` is flax's default (LeCun normal, variance ``1 / fan_in``); a
    number is ``variance_scaling(init_scale, "fan_in", "uniform")``, a uniform
    draw of variance ``init_scale / fan_in`` (1/3 is PyTorch's default).
    """
    if init_scale is None:
        return nnx.initializers.lecun_normal()
    if isinstance(init_scale, bool) or not isinstance(init_scale, (int, float)) or not init_scale > 0:
        raise NasgenError(f"init_scale must be a positive number or None, got {init_scale!r}")
    return nnx.initializers.variance_scaling(float(init_scale), "fan_in", "uniform")


def max_pool(
    x: jax.Array,
    window_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: str | Sequence[tuple[int, int]] = "VALID",
) -> jax.Array:
    """Max pooling over the spatial axes of ``(batch, *spatial, channels)``, with a cheap gradient.

    The values are ``nnx.max_pool``'s, and so is the gradient: each output's
    cotangent goes to the first maximum of its window in row-major window
    order (ties included), as XLA's select-and-scatter does. JAX
    differentiates ``reduce_window`` through a variadic reduce-window over
    four index tensors and a scatter; here the backward pass is one strided
    comparison and one interior-padded add per window offset, which XLA
    fuses. On the ResNet-18 stem pool (512x14x14x16, 3x3, stride 2) the
    gradient takes a quarter of the time (bench/bench_train.py, docs/training.md).

    Args:
        x: ``(batch, *spatial, channels)``.
        window_shape: one window size per spatial axis.
        strides: one stride per spatial axis (default 1).
        padding: ``"VALID"``, ``"SAME"`` or one ``(low, high)`` pair per
            spatial axis; padding never wins the max.
    """
    strides = tuple(strides) if strides is not None else (1,) * len(window_shape)
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(x.shape[1:-1], window_shape, strides, padding)
    return _max_pool(x, tuple(window_shape), strides, tuple(tuple(p) for p in padding))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool(x, window_shape, strides, padding):
    return lax.reduce_window(
        x, -jnp.inf, lax.max, (1, *window_shape, 1), (1, *strides, 1), ((0, 0), *padding, (0, 0))
    )


def _max_pool_fwd(x, window_shape, strides, padding):
    y = _max_pool(x, window_shape, strides, padding)
    return y, (x, y)


def _max_pool_bwd(window_shape, strides, padding, residuals, g):
    x, y = residuals
    zero = jnp.zeros((), g.dtype)
    padded = lax.pad(x, jnp.array(-jnp.inf, x.dtype), ((0, 0, 0), *((lo, hi, 0) for lo, hi in padding), (0, 0, 0)))
    sizes = padded.shape[1:-1]
    taken = jnp.zeros(y.shape, bool)
    grad = jnp.zeros(padded.shape, g.dtype)
    for offset in itertools.product(*(range(w) for w in window_shape)):
        # The inputs at this offset of every window, and whether each is its
        # window's first maximum; their cotangents are spread back into place.
        ends = tuple(o + (n - 1) * s + 1 for o, n, s in zip(offset, y.shape[1:-1], strides))
        values = lax.slice(padded, (0, *offset, 0), (x.shape[0], *ends, x.shape[-1]), (1, *strides, 1))
        first = (values == y) & ~taken
        taken = taken | first
        spread = ((0, 0, 0), *((o, n - e, s - 1) for o, n, e, s in zip(offset, sizes, ends, strides)), (0, 0, 0))
        grad = grad + lax.pad(jnp.where(first, g, zero), zero, spread)
    starts = (0, *(lo for lo, _ in padding), 0)
    limits = (x.shape[0], *(n - hi for n, (_, hi) in zip(sizes, padding)), x.shape[-1])
    return (lax.slice(grad, starts, limits),)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def _check_input(x: jax.Array, spatial: tuple[int, ...], channels: int, model: str) -> None:
    # Shapes are static under tracing, so this check costs nothing at run time
    # and turns an opaque XLA shape error into a message that names the fix.
    expected = (*spatial, channels)
    if x.ndim != len(expected) + 1 or tuple(x.shape[1:]) != expected:
        raise NasgenError(
            f"{model} expects input of shape (batch, {', '.join(map(str, expected))}), "
            f"got {tuple(x.shape)}"
        )


class ConvChain(nnx.Module):
    """A chain of valid-padding K-D convolutions, one per layer of an architecture.

    Layer l is ``conv(kernel[l], stride[l], padding VALID) -> [BatchNorm] ->
    activation -> [pool]``, where the pool is the space's ``(kernel, stride)``
    per dimension, also with valid padding. Because valid padding is exactly
    ``floor((x - k) / s) + 1``, the spatial shape after the chain is the space's
    output shape O for every member of the space, under both roundings.

    Args:
        space: the search space; K = ``space.dims`` spatial dimensions.
        arch: a member of ``space``.
        num_classes: number of logits of the head.
        in_channels: channels of the input.
        width: channels of every convolution.
        activation: elementwise function applied after each conv (and norm).
        norm: ``"batch"`` for BatchNorm after each convolution, or None.
        head: ``"logits"`` flattens the (O, width) feature map into one
            linear layer giving ``(batch, num_classes)``; ``"features"``
            returns the feature map ``(batch, *O, width)``.
        pooling: ``"max"`` or ``"avg"``, the window op used for the space's
            pool (ignored when the space has none).
        bn_momentum: BatchNorm running-average momentum (see
            :data:`BN_MOMENTUM`).
        init_scale: kernel initialisation of the convolutions and the head
            (see :func:`kernel_initializer`; None is flax's LeCun normal).
        rngs: ``nnx.Rngs`` for parameter initialisation.

    Raises:
        ArchitectureError: if ``arch`` is not a member of ``space`` (before
            any JAX tracing; the message names the first wrong layer).
        NasgenError: for an invalid option.

    >>> from flax import nnx
    >>> space = SearchSpace((12,), (4,), min_layers=2, max_layers=2)
    >>> arch = Architecture(kernel=((3,), (4,)), stride=((1,), (2,)))
    >>> model = ConvChain(space, arch, width=4, rngs=nnx.Rngs(0))
    >>> model(jnp.zeros((2, 12, 1))).shape
    (2, 10)
    """

    def __init__(
        self,
        space: SearchSpace,
        arch: Architecture,
        *,
        num_classes: int = 10,
        in_channels: int = 1,
        width: int = 16,
        activation: Callable[[jax.Array], jax.Array] = nnx.relu,
        norm: str | None = "batch",
        head: str = "logits",
        pooling: str = "max",
        bn_momentum: float = BN_MOMENTUM,
        init_scale: float | None = None,
        rngs: nnx.Rngs,
    ) -> None:
        _check_option(norm, NORMS, "norm")
        init = kernel_initializer(init_scale)
        bn_momentum = _momentum(bn_momentum)
        _check_option(head, HEADS, "head")
        _check_option(pooling, POOLINGS, "pooling")
        _positive(num_classes, "num_classes")
        _positive(in_channels, "in_channels")
        _positive(width, "width")
        if not isinstance(space, SearchSpace):
            raise NasgenError(f"space must be a SearchSpace, got {type(space).__name__}")
        if not isinstance(arch, Architecture):
            raise NasgenError(f"arch must be an Architecture, got {type(arch).__name__}")
        check_membership(space, arch)

        self.space = space
        self.arch = arch
        self.in_channels = in_channels
        self.width = width
        self.num_classes = num_classes
        self.activation = activation
        self.norm = norm
        self.head_kind = head
        self.pooling = pooling
        # With BatchNorm right after it, a conv bias is redundant (BN's own
        # bias absorbs it), so leave it out as ResNet does.
        use_bias = norm is None
        convs = []
        norms = []
        features = in_channels
        for kernel, stride in zip(arch.kernel, arch.stride):
            convs.append(
                nnx.Conv(features, width, kernel, stride, padding="VALID", use_bias=use_bias,
                         kernel_init=init, rngs=rngs)
            )
            if norm == "batch":
                norms.append(nnx.BatchNorm(width, momentum=bn_momentum, rngs=rngs))
            features = width
        self.convs = nnx.List(convs)
        self.norms = nnx.List(norms)
        if head == "logits":
            self.head = nnx.Linear(math.prod(space.output_shape) * width, num_classes, kernel_init=init, rngs=rngs)
        else:
            self.head = None

    def __call__(self, x: jax.Array) -> jax.Array:
        """Run the chain.

        Args:
            x: ``(batch, *space.input_shape, in_channels)``.

        Returns:
            ``(batch, num_classes)`` logits, or the ``(batch, *space.output_shape,
            width)`` feature map when ``head="features"``.

        Raises:
            NasgenError: if ``x`` has the wrong shape.
        """
        _check_input(x, self.space.input_shape, self.in_channels, "ConvChain")
        pool = self.space.pool
        window_op = max_pool if self.pooling == "max" else nnx.avg_pool
        for l, conv in enumerate(self.convs):
            x = conv(x)
            if self.norms:
                x = self.norms[l](x)
            x = self.activation(x)
            if pool is not None:
                x = window_op(
                    x,
                    window_shape=tuple(k for k, _ in pool),
                    strides=tuple(s for _, s in pool),
                    padding="VALID",
                )
        if self.head is None:
            return x
        return self.head(x.reshape(x.shape[0], -1))


def resnet_widths(width_multiplier: float) -> tuple[int, ...]:
    """Channel widths of the four ResNet-18 stages for a width multiplier.

    Each width is ``max(1, round(w * width_multiplier))``; the stem has the
    first stage's width.

    >>> resnet_widths(0.25)
    (16, 32, 64, 128)
    """
    if isinstance(width_multiplier, bool) or not isinstance(width_multiplier, (int, float)) or not width_multiplier > 0:
        raise NasgenError(f"width_multiplier must be a positive number, got {width_multiplier!r}")
    return tuple(max(1, int(round(w * width_multiplier))) for w in RESNET_STAGE_WIDTHS)


class BasicBlock(nnx.Module):
    """ResNet's basic block with an identity shortcut.

    ``relu(x + bn(conv3x3(relu(bn(conv3x3(x))))))``, SAME padding, stride 1.
    """

    def __init__(self, features: int, *, bn_momentum: float = BN_MOMENTUM,
                 init_scale: float | None = RESNET_INIT_SCALE, rngs: nnx.Rngs) -> None:
        init = kernel_initializer(init_scale)
        self.conv1 = nnx.Conv(features, features, (3, 3), 1, padding="SAME", use_bias=False,
                              kernel_init=init, rngs=rngs)
        self.bn1 = nnx.BatchNorm(features, momentum=bn_momentum, rngs=rngs)
        self.conv2 = nnx.Conv(features, features, (3, 3), 1, padding="SAME", use_bias=False,
                              kernel_init=init, rngs=rngs)
        self.bn2 = nnx.BatchNorm(features, momentum=bn_momentum, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = nnx.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return nnx.relu(x + y)


class DownsamplingBlock(nnx.Module):
    """The redefined ResNet downsampling block (Calhas et al. 2022, Figure 3b).

    The input splits: the main path is ``conv(k, s, VALID) -> BN -> ReLU ->
    conv(3x3, stride 1, SAME) -> BN``; the shortcut is ``conv(k, s, VALID) ->
    BN``. Their sum goes through a ReLU. Both (k, s) convolutions share the
    block's kernel and stride, so both paths land on the same spatial shape.

    Args:
        in_features: input channels.
        out_features: output channels.
        kernel: per-dimension kernel of the generated layer.
        stride: per-dimension stride of the generated layer.
        bn_momentum: BatchNorm running-average momentum.
        init_scale: kernel initialisation (see :func:`kernel_initializer`).
        rngs: ``nnx.Rngs`` for initialisation.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel: Sequence[int],
        stride: Sequence[int],
        *,
        bn_momentum: float = BN_MOMENTUM,
        init_scale: float | None = RESNET_INIT_SCALE,
        rngs: nnx.Rngs,
    ) -> None:
        kernel, stride = tuple(kernel), tuple(stride)
        init = kernel_initializer(init_scale)
        self.conv1 = nnx.Conv(in_features, out_features, kernel, stride, padding="VALID", use_bias=False,
                              kernel_init=init, rngs=rngs)
        self.bn1 = nnx.BatchNorm(out_features, momentum=bn_momentum, rngs=rngs)
        self.conv2 = nnx.Conv(out_features, out_features, (3, 3), 1, padding="SAME", use_bias=False,
                              kernel_init=init, rngs=rngs)
        self.bn2 = nnx.BatchNorm(out_features, momentum=bn_momentum, rngs=rngs)
        self.shortcut_conv = nnx.Conv(
            in_features, out_features, kernel, stride, padding="VALID", use_bias=False, kernel_init=init, rngs=rngs
        )
        self.shortcut_bn = nnx.BatchNorm(out_features, momentum=bn_momentum, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = nnx.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        shortcut = self.shortcut_bn(self.shortcut_conv(x))
        return nnx.relu(y + shortcut)


class ResNet18(nnx.Module):
    """ResNet-18 on 28x28 input with generated downsampling blocks.

    Stem: 7x7 stride-2 conv (padding 3) -> BN -> ReLU -> 3x3 stride-2 max pool
    (padding 1), which maps 28x28 to 7x7. Stage 1 is two basic blocks; stages
    2, 3 and 4 each start with a :class:`DownsamplingBlock` whose (k_l, s_l)
    is layer l of ``arch`` (so 7x7 shrinks to 1x1 over the three stages),
    followed by one basic block. Global average pooling and a linear layer
    give the logits.

    Args:
        arch: an architecture of :data:`RESNET_SPACE` (or of
            :data:`RESNET_BASELINE_SPACE`); None gives the paper's original
            network, :data:`ORIGINAL_RESNET_ARCH`.
        width_multiplier: scales the stage widths 64, 128, 256, 512 (see
            :func:`resnet_widths`); 1.0 is the standard network.
        num_classes: number of logits.
        in_channels: channels of the input image.
        bn_momentum: BatchNorm running-average momentum (see
            :data:`BN_MOMENTUM`).
        init_scale: kernel initialisation of every convolution and the
            head (see :func:`kernel_initializer` and
            :data:`RESNET_INIT_SCALE`; None is flax's LeCun normal).
        rngs: ``nnx.Rngs`` for initialisation.

    Raises:
        ArchitectureError: if ``arch`` does not map 7x7 to 1x1 in three
            floor-rounded valid-padding layers (before any JAX tracing).
        NasgenError: for an invalid option.

    >>> from flax import nnx
    >>> model = ResNet18(width_multiplier=1 / 16, rngs=nnx.Rngs(0))
    >>> model(jnp.zeros((2, 28, 28, 1))).shape
    (2, 10)
    """

    def __init__(
        self,
        arch: Architecture | None = None,
        *,
        width_multiplier: float = 1.0,
        num_classes: int = 10,
        in_channels: int = 1,
        bn_momentum: float = BN_MOMENTUM,
        init_scale: float | None = RESNET_INIT_SCALE,
        rngs: nnx.Rngs,
    ) -> None:
        bn_momentum = _momentum(bn_momentum)
        init = kernel_initializer(init_scale)
        if arch is None:
            arch = ORIGINAL_RESNET_ARCH
        if not isinstance(arch, Architecture):
            raise NasgenError(f"arch must be an Architecture or None, got {type(arch).__name__}")
        check_membership(RESNET_BASELINE_SPACE, arch)
        _positive(num_classes, "num_classes")
        _positive(in_channels, "in_channels")
        widths = resnet_widths(width_multiplier)

        self.arch = arch
        self.widths = widths
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.stem_conv = nnx.Conv(
            in_channels, widths[0], (7, 7), 2, padding=((3, 3), (3, 3)), use_bias=False, kernel_init=init, rngs=rngs
        )
        self.stem_bn = nnx.BatchNorm(widths[0], momentum=bn_momentum, rngs=rngs)
        blocks = [BasicBlock(widths[0], bn_momentum=bn_momentum, init_scale=init_scale, rngs=rngs) for _ in range(2)]
        for l in range(3):
            blocks.append(
                DownsamplingBlock(
                    widths[l], widths[l + 1], arch.kernel[l], arch.stride[l], bn_momentum=bn_momentum,
                    init_scale=init_scale, rngs=rngs,
                )
            )
            blocks.append(BasicBlock(widths[l + 1], bn_momentum=bn_momentum, init_scale=init_scale, rngs=rngs))
        self.blocks = nnx.List(blocks)
        self.head = nnx.Linear(widths[-1], num_classes, kernel_init=init, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Logits for a batch of images.

        Args:
            x: ``(batch, 28, 28, in_channels)``.

        Returns:
            ``(batch, num_classes)`` logits.

        Raises:
            NasgenError: if ``x`` has the wrong shape.
        """
        _check_input(x, RESNET_INPUT_SHAPE, self.in_channels, "ResNet18")
        x = nnx.relu(self.stem_bn(self.stem_conv(x)))
        x = max_pool(x, window_shape=(3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for block in self.blocks:
            x = block(x)
        x = jnp.mean(x, axis=(1, 2))
        return self.head(x)


def _check_resnet_space(space: SearchSpace) -> None:
    shape_ok = space.input_shape == (7, 7) and space.output_shape == (1, 1)
    layers_ok = space.min_layers == space.max_layers == 3
    if not (shape_ok and layers_ok and space.rounding == "floor"):
        raise SpaceError(
            f"a resnet18 model needs a 7x7 -> 1x1 space with n = N = 3 and floor rounding "
            f"(like nasgen.models.RESNET_SPACE), got {space.describe()}"
        )


def build_model(
    kind: str,
    space: SearchSpace | None,
    arch: Architecture | None,
    *,
    num_classes: int = 10,
    in_channels: int = 1,
    width: int = 16,
    width_multiplier: float = 1.0,
    bn_momentum: float = BN_MOMENTUM,
    init_scale: float | None | str = "default",
    rngs: nnx.Rngs,
    **options,
) -> nnx.Module:
    """Build a model of one kind from a space and an architecture.

    A model is fully determined by (kind, space, architecture JSON, these
    options, the seed of ``rngs``), which is what a training run records.

    Args:
        kind: ``"chain"`` (:class:`ConvChain`) or ``"resnet18"`` (:class:`ResNet18`).
        space: the search space. For ``"resnet18"`` it may be None; otherwise
            it must be a 7x7 -> 1x1, n = N = 3, floor-rounding space such as
            :data:`RESNET_SPACE`, and ``arch`` must be a member of it or be
            :data:`ORIGINAL_RESNET_ARCH` (the baseline c_0).
        arch: the architecture; for ``"resnet18"``, None means the original.
        num_classes: number of logits.
        in_channels: input channels.
        width: channels of every chain convolution (``"chain"`` only).
        width_multiplier: ResNet stage-width multiplier (``"resnet18"`` only).
        bn_momentum: BatchNorm running-average momentum, both kinds (see
            :data:`BN_MOMENTUM`).
        init_scale: kernel initialisation, both kinds (see
            :func:`kernel_initializer`); ``"default"`` is each kind's own
            default: flax's LeCun normal for chains,
            :data:`RESNET_INIT_SCALE` for ResNet-18.
        rngs: ``nnx.Rngs`` for initialisation.
        **options: further keyword options of :class:`ConvChain`
            (``activation``, ``norm``, ``head``, ``pooling``).

    Returns:
        The initialised ``nnx.Module``.

    Raises:
        NasgenError: for an unknown kind or option.
        SpaceError: for a space that does not fit the kind.
        ArchitectureError: for an architecture outside the space.

    >>> from flax import nnx
    >>> model = build_model("resnet18", RESNET_SPACE, None, width_multiplier=0.125, rngs=nnx.Rngs(0))
    >>> type(model).__name__
    'ResNet18'
    """
    _check_option(kind, MODEL_KINDS, "model kind")
    if init_scale == "default":
        init_scale = None if kind == "chain" else RESNET_INIT_SCALE
    if kind == "chain":
        if space is None or arch is None:
            raise NasgenError("a chain model needs both a search space and an architecture")
        return ConvChain(
            space, arch, num_classes=num_classes, in_channels=in_channels, width=width,
            bn_momentum=bn_momentum, init_scale=init_scale, rngs=rngs, **options,
        )
    if options:
        raise NasgenError(
            f"options {sorted(options)} apply to chain models only; resnet18 takes width_multiplier"
        )
    if space is not None:
        _check_resnet_space(space)
        if arch is not None and arch != ORIGINAL_RESNET_ARCH:
            check_membership(space, arch)
    return ResNet18(
        arch, width_multiplier=width_multiplier, num_classes=num_classes, in_channels=in_channels,
        bn_momentum=bn_momentum, init_scale=init_scale, rngs=rngs,
    )
