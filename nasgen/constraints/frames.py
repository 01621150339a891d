"""Sampled architectures as analysis tables: per-architecture costs and a flat pandas DataFrame.

:func:`costs` gives the chain model's trainable parameters and inference FLOPs of every architecture
(the figures ``--where "params <= ..."`` constrains, equal to the built Flax model's); :func:`to_dataframe`
lays (layers, kernel, stride) arrays out as one row per architecture with flat columns, the sizes after
every layer, and optionally those costs::

    layers  k0_0  s0_0  k0_1  s0_1  ...  size0_0  size0_1  ...  params  flops

pandas is imported on first use (the ``tables`` extra).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from nasgen.common.errors import NasgenError
from nasgen.constraints.costs import chain_costs, layer_sizes
from nasgen.space.definition import SearchSpace

__all__ = ["costs", "to_dataframe"]


def _model_spec(model: Any):
    """A chain ModelSpec from a ModelSpec, a mapping of chain options, or None (the defaults)."""
    from nasgen.nn.spec import ModelSpec

    if model is None:
        return ModelSpec.from_options("chain")
    if isinstance(model, ModelSpec):
        if model.kind != "chain":
            raise NasgenError(f"costs are computed for the chain model; got a {model.kind} spec")
        return model
    if isinstance(model, Mapping):
        return ModelSpec.from_options("chain", **dict(model))
    raise NasgenError(f"model must be a ModelSpec or a mapping of chain options, got {type(model).__name__}")


def _arrays(space: SearchSpace, arrays) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    try:
        layers, kernel, stride = (np.asarray(a, dtype=np.int64) for a in arrays)
    except (TypeError, ValueError):
        raise NasgenError("arrays must be (layers (M,), kernel (M, N, K), stride (M, N, K)) integer arrays") from None
    if layers.ndim != 1 or kernel.ndim != 3 or kernel.shape != stride.shape or len(kernel) != len(layers):
        raise NasgenError(f"arrays must be (layers (M,), kernel (M, N, K), stride (M, N, K)); got shapes "
                          f"{layers.shape}, {kernel.shape}, {stride.shape}")
    if kernel.shape[2] != space.dims or kernel.shape[1] > space.max_layers:
        raise NasgenError(f"arrays of {kernel.shape[1]} layers x {kernel.shape[2]} dimensions do not fit the "
                          f"space ({space.max_layers} layers x {space.dims} dimensions)")
    if kernel.shape[1] < space.max_layers:
        pad = ((0, 0), (0, space.max_layers - kernel.shape[1]), (0, 0))
        kernel, stride = np.pad(kernel, pad), np.pad(stride, pad)
    return layers, kernel, stride


def costs(space: SearchSpace, arrays, model: Any = None) -> dict[str, np.ndarray]:
    """Trainable parameters and inference FLOPs of the chain model of every architecture.

    Args:
        space: the search space the architectures belong to.
        arrays: ``(layers (M,), kernel (M, N, K), stride (M, N, K))``, zero on inactive layers (what
            :func:`nasgen.sample_arrays` and :func:`nasgen.read_arrays` return).
        model: the chain's options: a :class:`~nasgen.nn.spec.ModelSpec`, a mapping such as
            ``{"width": 32, "num_classes": 10}``, or None for ModelSpec's defaults.

    Returns:
        ``{"params": (M,), "flops": (M,)}`` integer arrays (int64, or Python integers past 2**62).

    Raises:
        NasgenError: arrays of the wrong shape for the space, or invalid model options.

    >>> import nasgen
    >>> space = nasgen.SearchSpace((8,), (2,), 1, 2)
    >>> arrays = nasgen.sample_arrays(space, 3, seed=0)
    >>> figures = costs(space, arrays, model={"width": 4, "num_classes": 3})
    >>> sorted(figures), figures["params"].shape
    (['flops', 'params'], (3,))
    """
    layers, kernel, stride = _arrays(space, arrays)
    params, flops = chain_costs(layers, kernel, stride, space, _model_spec(model))
    return {"params": params, "flops": flops}


def to_dataframe(arrays, space: SearchSpace, costs: Any = None, sizes: bool = True):
    """One row per architecture with flat columns, for pandas/polars/DuckDB analysis.

    Args:
        arrays: ``(layers (M,), kernel (M, N, K), stride (M, N, K))``, zero on inactive layers.
        space: their search space.
        costs: add ``params`` and ``flops`` columns for these chain options (a ModelSpec, a mapping, or
            ``True`` for ModelSpec's defaults); None leaves them out.
        sizes: add ``size{l}_{d}``, the size after layer ``l`` (conv, then the space's pool) in
            dimension ``d``, the output size on inactive layers (as ``--where``'s ``size[l][d]``).

    Returns:
        A pandas DataFrame: ``layers``, then ``k{l}_{d}``, ``s{l}_{d}`` per layer and dimension (0 on
        inactive layers), then the sizes, then ``params`` and ``flops``.

    Raises:
        NasgenError: arrays of the wrong shape, or invalid model options.

    >>> import nasgen
    >>> space = nasgen.SearchSpace((8,), (2,), 1, 2)
    >>> frame = to_dataframe(nasgen.sample_arrays(space, 4, seed=0), space, costs={"width": 4})
    >>> list(frame.columns)
    ['layers', 'k0_0', 's0_0', 'k1_0', 's1_0', 'size0_0', 'size1_0', 'params', 'flops']
    """
    import pandas as pd

    layers, kernel, stride = _arrays(space, arrays)
    M, N, K = kernel.shape
    columns: dict[str, np.ndarray] = {"layers": layers}
    for l in range(N):
        for d in range(K):
            columns[f"k{l}_{d}"] = kernel[:, l, d]
            columns[f"s{l}_{d}"] = stride[:, l, d]
    if sizes:
        after = layer_sizes(layers, kernel, stride, space)
        for l in range(N):
            for d in range(K):
                columns[f"size{l}_{d}"] = after[:, l, d]
    if costs is not None and costs is not False:
        params, flops = chain_costs(layers, kernel, stride, space, _model_spec(None if costs is True else costs))
        columns["params"], columns["flops"] = params, flops
    return pd.DataFrame(columns, copy=False)
