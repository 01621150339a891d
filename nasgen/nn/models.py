"""Flax NNX networks built from architectures: K-D conv chains and ResNet-18.

Two families turn an :class:`~nasgen.space.definition.Architecture` into a trainable
network:

* :class:`ConvChain` stacks one valid-padding convolution per layer of the
  architecture (plus the space's pooling, if any), so that the feature map
  after the chain has exactly the space's output shape O.
* :class:`ResNet18` is ResNet-18 for any H x W x C input whose three
  downsampling blocks take their (kernel, stride) from an architecture of
  :func:`resnet_space` for that input (:data:`RESNET_SPACE`, 7x7 -> 1x1 in
  three layers, on MNIST), the redefined block of Calhas et al. 2022,
  Figure 3b.

Both are built from a :class:`~nasgen.nn.spec.ModelSpec`, the jax-free
record of a model's kind and options (:func:`build_model`). Every model
validates its architecture with
:func:`nasgen.space.definition.check_membership` before any JAX tracing, so a bad
architecture fails with an :class:`~nasgen.space.definition.ArchitectureError` naming
the first layer where the shapes go wrong.

Inputs are channels-last, like flax: ``(batch, *spatial, channels)``.

References:
    Calhas, Manquinho, Lynce. Automatic Generation of Neural Architecture
    Search Spaces. 2022, section 5.2 and Figure 3.
    He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition. 2016.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

from nasgen.nn.spec import (
    ACTIVATIONS,
    BN_MOMENTUM,
    LECUN,
    ORIGINAL_RESNET_ARCH,
    RESNET_INIT_SCALE,
    RESNET_STEM,
    ModelSpec,
    check_init_scale,
    check_resnet_space,
    require_spec,
    resnet_baseline_space,
    resnet_widths,
)
from nasgen.common.errors import NasgenError
from nasgen.space.definition import Architecture, SearchSpace, check_membership

__all__ = [
    "BasicBlock",
    "BatchNorm",
    "ConvChain",
    "DownsamplingBlock",
    "ResNet18",
    "batch_norm_train",
    "build_model",
    "kernel_initializer",
    "max_pool",
]

_ACTIVATION_FUNCTIONS = {name: getattr(nnx, name) for name in ACTIVATIONS}


def kernel_initializer(init_scale: float | str) -> Callable:
    """Kernel initialiser for convolutions and dense layers.

    Args:
        init_scale: :data:`~nasgen.nn.spec.LECUN` for flax's default (LeCun
            normal, variance ``1 / fan_in``), or a number s for
            ``variance_scaling(s, "fan_in", "uniform")``, a uniform draw of
            variance ``s / fan_in`` (1/3 is PyTorch's default).

    Raises:
        NasgenError: for anything else.
    """
    scale = check_init_scale(init_scale)
    if scale == LECUN:
        return nnx.initializers.lecun_normal()
    return nnx.initializers.variance_scaling(scale, "fan_in", "uniform")


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


# The most entries (input positions x outputs x window offsets) of the 0/1
# matrix with which conv_general_dilated gathers a small convolution's windows.
SELECTION_LIMIT = 1 << 16


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, precision=None, **kwargs):
    """``lax.conv_general_dilated``, with small convolutions on a CPU computed as two dots.

    Every ``nnx.Conv`` of the models takes this as its ``conv_general_dilated``.
    XLA's CPU compiler swaps a convolution's operands when its window covers
    more positions than its input (a 3x3 SAME convolution on the 1x1 or 2x2
    maps of ResNet-18's last stages on MNIST, and the input gradient of a
    layer whose output is smaller than its kernel), and the swapped
    convolution is no longer one its Eigen kernels take: XLA generates a
    plain loop nest for each one (about 14 per network), which is slow to
    run and to compile. Such a convolution is here, on a CPU, a dot of the
    input with a constant 0/1 matrix that gathers each output's window
    (offsets that only ever see padding left out), then a dot with the
    kernel; its gradients are dots too. Same values (to float rounding);
    other convolutions, other platforms, dilations and feature groups go to
    ``lax.conv_general_dilated`` unchanged.
    """
    plan = _selection_plan(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
                           feature_group_count, kwargs)
    if plan is None:
        return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                        dimension_numbers, feature_group_count, precision=precision, **kwargs)
    selection, live, out_spatial = plan
    selection = selection.astype(lhs.dtype)
    batch, channels, features = lhs.shape[0], lhs.shape[-1], rhs.shape[-1]
    positions, outputs, taps = selection.shape
    # Each output's window, gathered exactly: one 1 per (output, offset) column.
    windows = jnp.einsum("bpc,pqt->bqtc", lhs.reshape(batch, positions, channels), selection,
                         precision=lax.Precision.HIGHEST)
    kernel = rhs.reshape(-1, channels, features)
    if len(live) < kernel.shape[0]:
        kernel = jnp.stack([kernel[t] for t in live])
    y = jnp.dot(windows.reshape(batch * outputs, taps * channels), kernel.reshape(taps * channels, features),
                precision=precision)
    return y.reshape(batch, *out_spatial, features)


def _selection_plan(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
                    feature_group_count, kwargs):
    """``(selection, live offsets, output spatial shape)`` for a convolution to compute as dots, or None."""
    spatial = lhs.ndim - 2
    if (jax.default_backend() != "cpu" or feature_group_count != 1 or any(v is not None for v in kwargs.values())
            or any(d not in (None, 1) for d in (lhs_dilation or ()) + (rhs_dilation or ()))
            or not jnp.issubdtype(lhs.dtype, jnp.floating) or lhs.dtype != rhs.dtype):
        return None
    numbers = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    channels_last = (0, spatial + 1, *range(1, spatial + 1))
    if (numbers.lhs_spec != channels_last or numbers.out_spec != channels_last
            or numbers.rhs_spec != (spatial + 1, spatial, *range(spatial))):
        return None
    in_spatial, window = tuple(lhs.shape[1:-1]), tuple(rhs.shape[:-2])
    strides = tuple(window_strides)
    pads = lax.padtype_to_pads(in_spatial, window, strides, padding) if isinstance(padding, str) else padding
    pads = tuple((int(lo), int(hi)) for lo, hi in pads)
    out_spatial = _output_spatial(in_spatial, window, strides, pads)
    size = math.prod(window)
    if min(out_spatial, default=1) < 1 or size <= min(math.prod(in_spatial), math.prod(out_spatial)):
        return None  # XLA keeps this one's operands in place: its Eigen convolution is fine
    positions = math.prod(in_spatial)
    # The gathering dot costs positions / features times the kernel's dot, and
    # its windows take outputs x window x channels: both kept small.
    if positions > 4 * rhs.shape[-1] or positions * math.prod(out_spatial) * size > SELECTION_LIMIT:
        return None
    return _selection(in_spatial, window, strides, pads)


def _output_spatial(in_spatial, window, strides, pads) -> tuple[int, ...]:
    return tuple((n + lo + hi - k) // s + 1 for n, k, s, (lo, hi) in zip(in_spatial, window, strides, pads))


@functools.lru_cache(maxsize=256)
def _selection(in_spatial, window, strides, pads):
    out_spatial = _output_spatial(in_spatial, window, strides, pads)
    outputs = np.array(list(np.ndindex(*out_spatial)), dtype=np.int64).reshape(-1, len(in_spatial))
    offsets = np.array(list(np.ndindex(*window)), dtype=np.int64).reshape(-1, len(in_spatial))
    # Input position read by output q at window offset t, per spatial axis.
    position = (outputs[:, None, :] * np.array(strides) + offsets[None, :, :] - np.array([lo for lo, _ in pads]))
    inside = np.all((position >= 0) & (position < np.array(in_spatial)), axis=-1)
    selection = np.zeros((math.prod(in_spatial), len(outputs), len(offsets)), np.float32)
    q, t = np.nonzero(inside)
    selection[np.ravel_multi_index(tuple(position[q, t].T), in_spatial), q, t] = 1
    live = tuple(int(t) for t in np.flatnonzero(inside.any(axis=0)))
    selection = selection[:, :, list(live)]
    selection.setflags(write=False)
    return selection, live, out_spatial


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def batch_norm_train(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float):
    """Training-mode batch normalisation over every axis but the last, with its gradient written out.

    The same values as ``nnx.BatchNorm`` in training mode (mean and
    ``max(0, E[x^2] - E[x]^2)`` as the variance, flax's fast variance), as one
    op whose backward pass is the textbook two reductions and one elementwise
    pass instead of what autodiff derives from the forward primitives. The
    traced and compiled training step is smaller and traces faster (see
    docs/training.md, "Compilation cache").

    Args:
        x: ``(..., features)``, float32.
        scale, bias: ``(features,)``.
        epsilon: added to the variance.

    Returns:
        ``(y, mean, var)``: the normalised, scaled and shifted ``x``, and the
        batch statistics (for the running averages; gradients through them
        are exact too).
    """
    y, mean, var, _ = _batch_norm_forward(x, scale, bias, epsilon)
    return y, mean, var


def _batch_norm_forward(x, scale, bias, epsilon):
    axes = tuple(range(x.ndim - 1))
    mean = x.mean(axes)
    var = jnp.maximum(0.0, (x * x).mean(axes) - mean * mean)
    inv = lax.rsqrt(var + epsilon)
    # flax's order of operations: (x - mean) * (rsqrt(var + eps) * scale) + bias
    y = (x - mean) * (inv * scale) + bias
    return y, mean, var, inv


def _batch_norm_fwd(x, scale, bias, epsilon):
    y, mean, var, inv = _batch_norm_forward(x, scale, bias, epsilon)
    return (y, mean, var), (x, scale, mean, var, inv)


def _batch_norm_bwd(epsilon, residuals, cotangents):
    x, scale, mean, var, inv = residuals
    dy, dmean, dvar = cotangents
    axes = tuple(range(x.ndim - 1))
    count = math.prod(x.shape[:-1])
    centred = x - mean
    xhat = centred * inv
    dbias = dy.sum(axes)
    dscale = (dy * xhat).sum(axes)
    # d/dx of y through x, mean and var, then the statistics' own cotangents
    # (zero in training, where they only feed the running averages). Where the
    # variance was clipped at 0, no gradient passes through it (as autodiff of
    # the maximum gives).
    unclipped = var > 0
    dx = (scale * inv / count) * (count * dy - dbias - xhat * jnp.where(unclipped, dscale, 0.0))
    dx = dx + dmean / count + jnp.where(unclipped, dvar, 0.0) * (2.0 / count) * centred
    return dx, dscale, dbias


batch_norm_train.defvjp(_batch_norm_fwd, _batch_norm_bwd)


class BatchNorm(nnx.BatchNorm):
    """``nnx.BatchNorm`` whose training-mode pass is :func:`batch_norm_train`.

    The same variables, defaults and values as ``nnx.BatchNorm`` (a
    checkpoint of either restores into the other); in training mode, for
    float32 inputs normalised over every axis but the last with a scale and a
    bias (as every nasgen model uses it), the forward and backward passes are
    one custom-gradient op and the running averages are set without flax's
    per-call sharding check. Anything else is ``nnx.BatchNorm`` itself.
    """

    def __call__(self, x: jax.Array, use_running_average: bool | None = None, *, mask: jax.Array | None = None):
        running = self.use_running_average if use_running_average is None else use_running_average
        plain = (
            running or mask is not None or self.axis_name is not None or self.scale is None or self.bias is None
            or self.axis not in (-1, x.ndim - 1) or not self.use_fast_variance or x.dtype != jnp.float32
            or self.dtype not in (None, jnp.float32) or self.param_dtype != jnp.float32
        )
        if plain:
            return super().__call__(x, use_running_average, mask=mask)
        y, mean, var = batch_norm_train(x, self.scale.get_value(), self.bias.get_value(), self.epsilon)
        momentum = self.momentum
        # set_value without an index: flax's `variable[...] = value` asks a
        # tracer for its sharding, which walks the trace built so far.
        self.mean.set_value(lax.stop_gradient(momentum * self.mean.get_value() + (1 - momentum) * mean))
        self.var.set_value(lax.stop_gradient(momentum * self.var.get_value() + (1 - momentum) * var))
        return y


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
        spec: a ``"chain"`` :class:`~nasgen.nn.spec.ModelSpec` (width,
            norm, head, pooling, activation, num_classes, in_channels,
            bn_momentum, init_scale). With ``head="logits"`` the (O, width)
            feature map is flattened into one linear layer giving ``(batch,
            num_classes)``; ``"features"`` returns ``(batch, *O, width)``.
        space: the search space; K = ``space.dims`` spatial dimensions.
        arch: a member of ``space``.
        rngs: ``nnx.Rngs`` for parameter initialisation.

    Raises:
        ArchitectureError: if ``arch`` is not a member of ``space`` (before
            any JAX tracing; the message names the first wrong layer).
        NasgenError: for a spec of the wrong kind or a non-space/architecture.

    >>> from flax import nnx
    >>> space = SearchSpace((12,), (4,), min_layers=2, max_layers=2)
    >>> arch = Architecture(kernel=((3,), (4,)), stride=((1,), (2,)))
    >>> model = ConvChain(ModelSpec.from_options("chain", width=4), space, arch, rngs=nnx.Rngs(0))
    >>> model(jnp.zeros((2, 12, 1))).shape
    (2, 10)
    """

    def __init__(self, spec: ModelSpec, space: SearchSpace, arch: Architecture, *, rngs: nnx.Rngs) -> None:
        if not isinstance(spec, ModelSpec) or spec.kind != "chain":
            raise NasgenError(f"ConvChain needs a chain ModelSpec, got {spec!r}")
        if not isinstance(space, SearchSpace):
            raise NasgenError(f"space must be a SearchSpace, got {type(space).__name__}")
        if not isinstance(arch, Architecture):
            raise NasgenError(f"arch must be an Architecture, got {type(arch).__name__}")
        check_membership(space, arch)
        init = kernel_initializer(spec.init_scale)

        self.spec = spec
        self.space = space
        self.arch = arch
        self.activation = _ACTIVATION_FUNCTIONS[spec.activation]
        # With BatchNorm right after it, a conv bias is redundant (BN's own
        # bias absorbs it), so leave it out as ResNet does.
        use_bias = spec.norm is None
        convs = []
        norms = []
        features = spec.in_channels
        for kernel, stride in zip(arch.kernel, arch.stride):
            convs.append(
                nnx.Conv(features, spec.width, kernel, stride, padding="VALID", use_bias=use_bias,
                         kernel_init=init, conv_general_dilated=conv_general_dilated, rngs=rngs)
            )
            if spec.norm == "batch":
                norms.append(BatchNorm(spec.width, momentum=spec.bn_momentum, rngs=rngs))
            features = spec.width
        self.convs = nnx.List(convs)
        self.norms = nnx.List(norms)
        if spec.head == "logits":
            self.head = nnx.Linear(math.prod(space.output_shape) * spec.width, spec.num_classes,
                                   kernel_init=init, rngs=rngs)
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
        _check_input(x, self.space.input_shape, self.spec.in_channels, "ConvChain")
        pool = self.space.pool
        window_op = max_pool if self.spec.pooling == "max" else nnx.avg_pool
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


class BasicBlock(nnx.Module):
    """ResNet's basic block with an identity shortcut.

    ``relu(x + bn(conv3x3(relu(bn(conv3x3(x))))))``, SAME padding, stride 1.
    """

    def __init__(self, features: int, *, bn_momentum: float = BN_MOMENTUM,
                 init_scale: float | None = RESNET_INIT_SCALE, rngs: nnx.Rngs) -> None:
        init = kernel_initializer(init_scale)
        self.conv1 = nnx.Conv(features, features, (3, 3), 1, padding="SAME", use_bias=False,
                              kernel_init=init,
                              conv_general_dilated=conv_general_dilated, rngs=rngs)
        self.bn1 = BatchNorm(features, momentum=bn_momentum, rngs=rngs)
        self.conv2 = nnx.Conv(features, features, (3, 3), 1, padding="SAME", use_bias=False,
                              kernel_init=init,
                              conv_general_dilated=conv_general_dilated, rngs=rngs)
        self.bn2 = BatchNorm(features, momentum=bn_momentum, rngs=rngs)

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
                              kernel_init=init,
                              conv_general_dilated=conv_general_dilated, rngs=rngs)
        self.bn1 = BatchNorm(out_features, momentum=bn_momentum, rngs=rngs)
        self.conv2 = nnx.Conv(out_features, out_features, (3, 3), 1, padding="SAME", use_bias=False,
                              kernel_init=init,
                              conv_general_dilated=conv_general_dilated, rngs=rngs)
        self.bn2 = BatchNorm(out_features, momentum=bn_momentum, rngs=rngs)
        self.shortcut_conv = nnx.Conv(
            in_features, out_features, kernel, stride, padding="VALID", use_bias=False, kernel_init=init,
            conv_general_dilated=conv_general_dilated, rngs=rngs,
        )
        self.shortcut_bn = BatchNorm(out_features, momentum=bn_momentum, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = nnx.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        shortcut = self.shortcut_bn(self.shortcut_conv(x))
        return nnx.relu(y + shortcut)


class ResNet18(nnx.Module):
    """ResNet-18 for any input image, with generated downsampling blocks.

    Stem: 7x7 stride-2 conv (padding 3) -> BN -> ReLU -> 3x3 stride-2 max pool
    (padding 1), which maps H x W to ceil(H/4) x ceil(W/4) (28x28 to 7x7).
    Stage 1 is two basic blocks; stages 2, 3 and 4 each start with a
    :class:`DownsamplingBlock` whose (k_l, s_l) is layer l of ``arch``,
    followed by one basic block. Global average pooling and a linear layer
    give the logits. ``arch`` is an architecture of
    :func:`~nasgen.nn.spec.resnet_space` for the input (7x7 -> 1x1 on
    MNIST), or the original (1, 2) blocks.

    Args:
        spec: a ``"resnet18"`` :class:`~nasgen.nn.spec.ModelSpec`
            (input_shape, in_channels, width_multiplier, num_classes,
            bn_momentum, init_scale).
        arch: an architecture of ``resnet_baseline_space(spec.input_shape)``;
            None gives the paper's original network,
            :data:`~nasgen.nn.spec.ORIGINAL_RESNET_ARCH`.
        rngs: ``nnx.Rngs`` for initialisation.

    Raises:
        ArchitectureError: if ``arch`` does not map the stem's output to the
            original network's output in three floor-rounded valid-padding
            layers (before any JAX tracing).
        NasgenError: for a spec of the wrong kind.

    >>> from flax import nnx
    >>> model = ResNet18(ModelSpec.from_options("resnet18", width_multiplier=1 / 16), rngs=nnx.Rngs(0))
    >>> model(jnp.zeros((2, 28, 28, 1))).shape
    (2, 10)
    """

    def __init__(self, spec: ModelSpec, arch: Architecture | None = None, *, rngs: nnx.Rngs) -> None:
        if not isinstance(spec, ModelSpec) or spec.kind != "resnet18":
            raise NasgenError(f"ResNet18 needs a resnet18 ModelSpec, got {spec!r}")
        if arch is None:
            arch = ORIGINAL_RESNET_ARCH
        if not isinstance(arch, Architecture):
            raise NasgenError(f"arch must be an Architecture or None, got {type(arch).__name__}")
        check_membership(resnet_baseline_space(spec.input_shape), arch)
        init = kernel_initializer(spec.init_scale)
        widths = resnet_widths(spec.width_multiplier)
        momentum, scale = spec.bn_momentum, spec.init_scale

        self.spec = spec
        self.arch = arch
        self.widths = widths
        window, stride, pad = RESNET_STEM["conv"]
        self.stem_conv = nnx.Conv(
            spec.in_channels, widths[0], (window, window), stride, padding=((pad, pad), (pad, pad)),
            use_bias=False, kernel_init=init, conv_general_dilated=conv_general_dilated, rngs=rngs,
        )
        self.stem_bn = BatchNorm(widths[0], momentum=momentum, rngs=rngs)
        blocks = [BasicBlock(widths[0], bn_momentum=momentum, init_scale=scale, rngs=rngs) for _ in range(2)]
        for l in range(3):
            blocks.append(
                DownsamplingBlock(
                    widths[l], widths[l + 1], arch.kernel[l], arch.stride[l], bn_momentum=momentum,
                    init_scale=scale, rngs=rngs,
                )
            )
            blocks.append(BasicBlock(widths[l + 1], bn_momentum=momentum, init_scale=scale, rngs=rngs))
        self.blocks = nnx.List(blocks)
        self.head = nnx.Linear(widths[-1], spec.num_classes, kernel_init=init, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Logits for a batch of images.

        Args:
            x: ``(batch, *spec.input_shape, in_channels)``.

        Returns:
            ``(batch, num_classes)`` logits.

        Raises:
            NasgenError: if ``x`` has the wrong shape.
        """
        _check_input(x, self.spec.input_shape, self.spec.in_channels, "ResNet18")
        x = nnx.relu(self.stem_bn(self.stem_conv(x)))
        window, stride, pad = RESNET_STEM["pool"]
        x = max_pool(x, window_shape=(window, window), strides=(stride, stride), padding=((pad, pad), (pad, pad)))
        for block in self.blocks:
            x = block(x)
        x = jnp.mean(x, axis=(1, 2))
        return self.head(x)


def build_model(spec: ModelSpec, space: SearchSpace | None, arch: Architecture | None, *, rngs: nnx.Rngs) -> nnx.Module:
    """Build the network of a spec from a space and an architecture.

    A model is fully determined by (spec, space, architecture, the seed of
    ``rngs``), which is what a training run and a checkpoint record.

    Args:
        spec: the :class:`~nasgen.nn.spec.ModelSpec`.
        space: the search space. For ``"resnet18"`` it may be None (then
            :func:`~nasgen.nn.spec.resnet_space` of the spec's input);
            otherwise it must be that space (any relation or bounds), and
            ``arch`` must be a member of it or be
            :data:`~nasgen.nn.spec.ORIGINAL_RESNET_ARCH` (the baseline c_0).
        arch: the architecture; for ``"resnet18"``, None means the original.
        rngs: ``nnx.Rngs`` for initialisation.

    Returns:
        The initialised ``nnx.Module`` (:class:`ConvChain` or :class:`ResNet18`).

    Raises:
        NasgenError: ``spec`` is not a ModelSpec.
        SpaceError: for a space that does not fit the kind.
        ArchitectureError: for an architecture outside the space.

    >>> from flax import nnx
    >>> from nasgen.nn.spec import RESNET_SPACE
    >>> spec = ModelSpec.from_options("resnet18", width_multiplier=0.125)
    >>> type(build_model(spec, RESNET_SPACE, None, rngs=nnx.Rngs(0))).__name__
    'ResNet18'
    """
    spec = require_spec(spec, "build_model")
    if spec.kind == "chain":
        if space is None or arch is None:
            raise NasgenError("a chain model needs both a search space and an architecture")
        return ConvChain(spec, space, arch, rngs=rngs)
    if space is not None:
        check_resnet_space(space, spec.input_shape)
        if arch is not None and arch != ORIGINAL_RESNET_ARCH:
            check_membership(space, arch)
    return ResNet18(spec, arch, rngs=rngs)
