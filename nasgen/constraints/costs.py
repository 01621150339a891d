"""The chain model's cost model: sizes after every layer, trainable parameters and inference FLOPs, per architecture.

These are the figures that ``size[l][d]``, ``params`` and ``flops`` read in
the ``--where`` language (:mod:`nasgen.constraints.language`), computed for a
whole batch of sample arrays at once. ``params`` and ``flops`` are those of
the ``chain`` model (valid-padding convolutions, optional BatchNorm, the
activation, the space's pool after every layer, an optional linear head) and
equal the total row of ``nasgen.nn.summary.model_stats(space, arch,
model="chain", ...)`` (``nasgen show --model chain``).

The model options are given either as a :class:`nasgen.nn.spec.ModelSpec`
(or any object with the attributes in :data:`MODEL_OPTIONS`) or as a dict of
some of those options, the rest taking ``ModelSpec``'s chain defaults.

>>> from nasgen.space.definition import SearchSpace
>>> space = SearchSpace((30,), (20,), min_layers=2, max_layers=2)
>>> layers, kernel, stride = [2], [[[7], [5]]], [[[1], [1]]]
>>> layer_sizes(layers, kernel, stride, space).ravel().tolist()
[24, 20]
>>> params, flops = chain_costs(layers, kernel, stride, space, {"width": 4, "norm": None})
>>> params.tolist()   # 7*1*4 + 4, then 5*4*4 + 4, then the head 20*4*10 + 10
[926]
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from nasgen.space.definition import SearchSpace

__all__ = ["MODEL_OPTIONS", "chain_costs", "cost_bound", "layer_sizes", "resolve_model"]

#: The chain model's options that ``params`` and ``flops`` read (fields of :class:`nasgen.nn.spec.ModelSpec`).
MODEL_OPTIONS = ("width", "in_channels", "num_classes", "norm", "head", "pooling")


def resolve_model(model: Any) -> Any:
    """The model options as an object with the attributes in :data:`MODEL_OPTIONS`.

    Args:
        model: None, a :class:`~nasgen.nn.spec.ModelSpec` (or any object with
            those attributes, returned as given), or a mapping of some of the
            options (the others take the chain model's defaults).

    Returns:
        None for None, else an object with every attribute in :data:`MODEL_OPTIONS`.

    Raises:
        NasgenError: a mapping with an unknown option or an invalid value
            (from :meth:`nasgen.nn.spec.ModelSpec.from_options`).

    >>> resolve_model({"width": 8}).width, resolve_model({"width": 8}).num_classes
    (8, 10)
    """
    if not isinstance(model, Mapping):
        return model
    from nasgen.common.errors import NasgenError
    from nasgen.nn.spec import ModelSpec

    unknown = sorted(set(model) - set(MODEL_OPTIONS))
    if unknown:
        raise NasgenError(f"unknown model option {unknown[0]!r} (valid: {', '.join(MODEL_OPTIONS)})")
    return ModelSpec.from_options("chain", **dict(model))


def cost_bound(space: SearchSpace, model: Any) -> int:
    """An upper bound on the chain model's parameters and FLOPs over every architecture of ``space``.

    Args:
        space: the search space.
        model: the model options (see :func:`resolve_model`), or None.

    Returns:
        The bound (0 when ``model`` is None).

    >>> cost_bound(SearchSpace((30,), (20,), 2, 2), {"width": 4}) > 942
    True
    """
    model = resolve_model(model)
    if model is None:
        return 0
    width, classes = int(model.width), int(model.num_classes)
    channels = max(int(model.in_channels), width)
    area = math.prod(p[0] for p in space.pool) if space.pool else 0
    # y * k <= x * x per dimension for a valid window, and every size is at most the input's.
    taps = math.prod(x * x for x in space.input_shape)
    per_layer = 2 * taps * channels * width + (8 + area) * taps * width + 2 * width
    head = 2 * math.prod(space.output_shape) * channels * classes + classes
    return (space.max_layers + 1) * per_layer + head


def layer_sizes(layers, kernel, stride, space: SearchSpace) -> np.ndarray:
    """Sizes after each layer (conv, then pool), for zero-padded sample arrays of members of ``space``.

    Args:
        layers: (M,) active layer counts.
        kernel, stride: (M, N, K) arrays, zero on inactive layers.
        space: the search space they belong to.

    Returns:
        (M, N, K) int64: ``size[l][d]`` as the ``--where`` language defines
        it (the output size on an inactive layer).

    >>> space = SearchSpace((30,), (20,), min_layers=1, max_layers=2)
    >>> layer_sizes([1], [[[11], [0]]], [[[1], [0]]], space).ravel().tolist()
    [20, 20]
    """
    layers = np.asarray(layers, dtype=np.int64)
    kernel = np.asarray(kernel, dtype=np.int64)
    stride = np.asarray(stride, dtype=np.int64)
    M, N, K = kernel.shape
    sizes = np.empty((M, N, K), dtype=np.int64)
    current = np.broadcast_to(np.array(space.input_shape, dtype=np.int64), (M, K))
    output = np.array(space.output_shape, dtype=np.int64)
    for l in range(N):
        active = (layers > l)[:, None]
        s = np.where(active, stride[:, l], 1)
        # Members have k <= x, so floor division is also the exact-rounding size.
        conv = (current - np.where(active, kernel[:, l], 0)) // s + 1
        if space.pool is not None:
            pool_k = np.array([p[0] for p in space.pool], dtype=np.int64)
            pool_s = np.array([p[1] for p in space.pool], dtype=np.int64)
            conv = (conv - pool_k) // pool_s + 1
        current = np.where(active, conv, output)
        sizes[:, l] = current
    return sizes


def chain_costs(layers, kernel, stride, space: SearchSpace, model: Any, exact_ints: bool = False):
    """Trainable parameters and inference FLOPs (one example) of the ``chain`` model, per architecture.

    The same figures as ``nasgen.nn.summary.model_stats(space, arch, model="chain", ...)``'s
    total row, computed for a whole batch.

    Args:
        layers: (M,) active layer counts.
        kernel, stride: (M, N, K) zero-padded arrays of members of ``space``.
        space: their search space.
        model: a :class:`~nasgen.nn.spec.ModelSpec` (or any object with the
            attributes in :data:`MODEL_OPTIONS`: width, in_channels,
            num_classes, norm (``"batch"`` or None), head (``"logits"`` or
            ``"features"``), pooling (``"max"`` or ``"avg"``)), or a dict of
            some of them (the rest take the chain model's defaults).
        exact_ints: compute with Python integers (numpy object arrays, a
            vectorised pass per layer) instead of int64 in the compiled
            kernel; chosen anyway when the figures could pass 2**62.

    Returns:
        (params (M,), flops (M,)) integer arrays.

    Raises:
        NasgenError: a dict of model options with an unknown or invalid option.

    >>> space = SearchSpace((30,), (20,), min_layers=1, max_layers=2)
    >>> params, flops = chain_costs([1], [[[11], [0]]], [[[1], [0]]], space, {"width": 2, "head": "features"})
    >>> params.tolist(), flops.tolist()   # 11*2 weights + BatchNorm's 2*2; 2*20*11*2 + 4*(20*2) + 2*2
    ([26], [1044])
    """
    model = resolve_model(model)
    if not exact_ints and cost_bound(space, model) < 2**62:
        return _compiled_chain_costs(layers, kernel, stride, space, model)
    return _exact_chain_costs(layers, kernel, stride, space, model)


def _compiled_chain_costs(layers, kernel, stride, space: SearchSpace, model: Any):
    """:func:`chain_costs` in the compiled kernel: one pass per architecture, no (M, K) temporaries, int64."""
    from nasgen.space import backend

    K = space.dims
    pool = space.pool or [(1, 1)] * K
    area = math.prod(p[0] for p in pool)
    pool_cost = -1 if space.pool is None else (area - 1 if model.pooling == "max" else area)
    options = [int(model.width), int(model.in_channels), int(model.num_classes), int(model.norm == "batch"),
               int(model.head == "logits"), pool_cost, math.prod(space.output_shape)]
    return backend.chain_costs(layers, kernel, stride, space.input_shape, [p[0] for p in pool],
                               [p[1] for p in pool], options)


def _exact_chain_costs(layers, kernel, stride, space: SearchSpace, model: Any):
    """:func:`chain_costs` with Python integers in numpy object arrays: exact at any magnitude."""
    dtype = object
    layers = np.asarray(layers, dtype=np.int64)
    kernel = np.asarray(kernel, dtype=np.int64).astype(dtype)
    stride = np.asarray(stride, dtype=np.int64).astype(dtype)
    M, N, K = kernel.shape
    width, in_channels = int(model.width), int(model.in_channels)
    params = np.zeros(M, dtype=dtype)
    flops = np.zeros(M, dtype=dtype)
    current = np.broadcast_to(np.array(space.input_shape, dtype=np.int64).astype(dtype), (M, K))
    for l in range(N):
        active = layers > l
        channels = in_channels if l == 0 else width
        k = np.where(active[:, None], kernel[:, l], 1)
        s = np.where(active[:, None], stride[:, l], 1)
        conv = (current - k) // s + 1
        layer_params, layer_flops, conv = _layer_costs(conv, k, channels, space, model)
        params = params + np.where(active, layer_params, 0)
        flops = flops + np.where(active, layer_flops, 0)
        current = np.where(active[:, None], conv, current)
    if model.head == "logits":
        classes = int(model.num_classes)
        features = math.prod(space.output_shape) * np.where(layers > 0, width, in_channels).astype(dtype)
        params = params + features * classes + classes
        flops = flops + 2 * features * classes + classes
    return params, flops


def _layer_costs(conv, k, channels: int, space: SearchSpace, model: Any):
    """One layer's (params, flops, size after its pool) from its conv output sizes ``conv`` and kernels ``k``."""
    width = int(model.width)
    elements = np.prod(conv, axis=1) * width
    layer_params = np.prod(k, axis=1) * channels * width
    layer_flops = 2 * np.prod(conv * k, axis=1) * channels * width
    if model.norm == "batch":
        # BatchNorm: 3 per element and 2 per channel; the activation: 1 per element.
        layer_params = layer_params + 2 * width
        layer_flops = layer_flops + 4 * elements + 2 * width
    else:
        # A bias, then the activation: 1 per element each.
        layer_params = layer_params + width
        layer_flops = layer_flops + 2 * elements
    if space.pool is not None:
        pool_k = np.array([p[0] for p in space.pool], dtype=np.int64)
        pool_s = np.array([p[1] for p in space.pool], dtype=np.int64)
        conv = (conv - pool_k) // pool_s + 1
        area = int(np.prod(pool_k))
        per_output = area - 1 if model.pooling == "max" else area
        layer_flops = layer_flops + per_output * np.prod(conv, axis=1) * width
    return layer_params, layer_flops, conv
