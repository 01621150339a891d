"""The one module that talks to the compiled kernel (or its plain-Python twin).

``NASGEN_PURE_PYTHON=1`` in the environment selects the twin
(``nasgen._pykernel``); so does a missing extension, with a warning. The rest
of the library calls the functions re-exported here and never sees a
memoryview: arrays are checked for dtype and contiguity on the way in.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from nasgen import _pykernel

if os.environ.get("NASGEN_PURE_PYTHON", "") not in ("", "0"):
    _impl = _pykernel
    COMPILED = False
else:
    try:
        from nasgen import _kernel as _impl  # type: ignore[attr-defined]

        COMPILED = True
    except ImportError:  # pragma: no cover - only without a build
        warnings.warn("nasgen._kernel is not built; using the slow plain-Python twin", RuntimeWarning)
        _impl = _pykernel
        COMPILED = False


def _i64(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.int64)


def _u64(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.uint64)


def pair_count(x, y, rules) -> int:
    return int(_impl.pair_count(_i64(x), _i64(y), rules))


def pair_at(x, y, rules, j: int) -> tuple[int, int]:
    return _impl.pair_at(_i64(x), _i64(y), rules, int(j))


def build_dimension_graph(size_in: int, size_out: int, pool_k: int, pool_s: int, rules):
    return _impl.build_dimension_graph(int(size_in), int(size_out), int(pool_k), int(pool_s), rules)


def joint_edges(x, pool_k, pool_s, rules) -> dict:
    return _impl.joint_edges(_i64(x), _i64(pool_k), _i64(pool_s), rules)


def count_table(edge_ptr, edge_dst, edge_mult, ends, max_layers: int, W: int):
    return _impl.count_table(_i64(edge_ptr), _i64(edge_dst), _i64(edge_mult), _i64(ends), int(max_layers), int(W))


def cumulative_weights(edge_ptr, edge_dst, edge_mult, g):
    return _impl.cumulative_weights(_i64(edge_ptr), _i64(edge_dst), _i64(edge_mult), _u64(g))


def _graph(graph):
    sizes, edge_ptr, edge_conv, edge_dst, edge_mult, cum = graph
    return (_i64(sizes), _i64(edge_ptr), _i64(edge_conv), _i64(edge_dst), _i64(edge_mult), _u64(cum))


def unrank_batch(graph, rules, comp_start, comp_kd, comp_dim0, layers, ranks, max_layers: int, dims: int):
    """Unrank per-component chain ranks (M, C, W) into zero-padded (M, N, K) kernel and stride arrays."""
    M = len(layers)
    kernel = np.zeros((M, max_layers, dims), dtype=np.int64)
    stride = np.zeros((M, max_layers, dims), dtype=np.int64)
    _impl.unrank_batch(_graph(graph), rules, _i64(comp_start), _i64(comp_kd), _i64(comp_dim0), _i64(layers),
                       _u64(ranks), kernel, stride)
    return kernel, stride


def sample_batch(graph, rules, comp_start, comp_kd, comp_dim0, g, layer_values, layer_cum, state: int,
                 samples: int, max_layers: int, dims: int):
    """Draw ``samples`` uniform architectures; returns (layers, kernel, stride, next_state)."""
    layers = np.zeros(samples, dtype=np.int64)
    kernel = np.zeros((samples, max_layers, dims), dtype=np.int64)
    stride = np.zeros((samples, max_layers, dims), dtype=np.int64)
    new_state = _impl.sample_batch(_graph(graph), rules, _i64(comp_start), _i64(comp_kd), _i64(comp_dim0), _u64(g),
                                   _i64(layer_values), _u64(layer_cum), int(state) & (2**64 - 1), layers, kernel,
                                   stride)
    return layers, kernel, stride, int(new_state)


def encode_bits(layers, kernel, stride, bit_width: int) -> np.ndarray:
    return _impl.encode_bits(_i64(layers), _i64(kernel), _i64(stride), int(bit_width))


def adjacent_distance_sum(vectors) -> int:
    return int(_impl.adjacent_distance_sum(_u64(vectors)))


def hamming_matrix(vectors) -> np.ndarray:
    return _impl.hamming_matrix(_u64(vectors))
