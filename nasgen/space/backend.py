"""The one module that talks to the compiled kernel (or its plain-Python twin).

``NASGEN_PURE_PYTHON=1`` in the environment selects the twin
(``nasgen.space.pykernel``). Without it a missing extension is an error, never a
silent 10-200x slowdown: importing nasgen from a source folder that was not built
(a script run from a clone's root after ``pip install .``) fails with one line
that names the folder and the command that builds the kernel. The rest
of the library calls the functions defined here and never sees a memoryview:
arrays are checked for dtype and shape on the way in (a mismatch raises
``ValueError`` naming the array), converted to contiguous int64/uint64, and
every output array is allocated here and handed to the kernel.

The data that crosses the boundary travels as named tuples: :class:`Rules`
(which (kernel, stride) pairs exist), :class:`ChainGraph` (states, edges and
an optional explicit pair table) and :class:`Components` (where each
independent chain starts and which dimensions it writes).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from nasgen.space import pykernel

if os.environ.get("NASGEN_PURE_PYTHON", "") not in ("", "0"):
    _impl = pykernel
    COMPILED = False
else:
    try:
        from nasgen.space import _kernel as _impl  # type: ignore[attr-defined]

        COMPILED = True
    except ImportError as error:
        _folder = Path(__file__).resolve().parent.parent.parent
        raise ImportError(
            f"nasgen's compiled kernel (nasgen.space._kernel) is not built in {_folder}: run `pip install -e .` "
            f"there to build it (or set NASGEN_PURE_PYTHON=1 for the slow plain-Python twin); {error}"
        ) from None

#: Relation codes of :attr:`Rules.relation`: k > s, k >= s, any.
RELATION_CODES = {"gt": 0, "ge": 1, "any": 2}


class Rules(NamedTuple):
    """Which (kernel, stride) pairs a convolution may use, and how sizes round.

    Attributes:
        kernel_min, kernel_max: kernel bounds (inclusive).
        stride_min, stride_max: stride bounds (inclusive).
        relation: 0 for k > s, 1 for k >= s, 2 for any (see RELATION_CODES).
        floor_mode: 1 for floor rounding, 0 for exact division.
    """

    kernel_min: int
    kernel_max: int
    stride_min: int
    stride_max: int
    relation: int
    floor_mode: int


class ChainGraph(NamedTuple):
    """A chain graph over size states (one dimension, or a tuple of KD sizes for a square space).

    Attributes:
        sizes: (S, KD) int64, the sizes of each state.
        edge_ptr: (S + 1,) int64, CSR offsets of each state's edges.
        edge_conv: (E, KD) int64, the size after the edge's convolution.
        edge_dst: (E,) int64, the state after the edge's pool.
        edge_mult: (E,) int64, how many (k, s) pairs the edge stands for.
        edge_pairs: (E,) int64, -1 where the pairs follow from the rules, or
            the first row of the edge's ``edge_mult[e]`` pairs in the table;
            or (0,) when every edge's pairs follow from the rules (no table).
        pair_kernel, pair_stride: (P,) int64, the explicit pair table.
    """

    sizes: np.ndarray
    edge_ptr: np.ndarray
    edge_conv: np.ndarray
    edge_dst: np.ndarray
    edge_mult: np.ndarray
    edge_pairs: np.ndarray
    pair_kernel: np.ndarray
    pair_stride: np.ndarray

    @property
    def states(self) -> int:
        return self.sizes.shape[0]

    @property
    def edges(self) -> int:
        return self.edge_dst.shape[0]


class Components(NamedTuple):
    """The independent chains of one architecture: C of them.

    Attributes:
        start: (C,) int64, each chain's start state.
        kd: (C,) int64, how many dimensions each chain covers.
        dim0: (C,) int64, the first dimension each chain writes.
    """

    start: np.ndarray
    kd: np.ndarray
    dim0: np.ndarray


def _int_array(a, name: str, ndim: int, dtype=np.int64) -> np.ndarray:
    arr = np.asarray(a)
    if arr.size and arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {arr.shape}")
    if dtype == np.uint64 and arr.size and arr.dtype != np.uint64:
        raise ValueError(f"{name} must be uint64 limbs, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=dtype)


def _i64(a, name: str, ndim: int = 1) -> np.ndarray:
    return _int_array(a, name, ndim)


def _u64(a, name: str, ndim: int) -> np.ndarray:
    return _int_array(a, name, ndim, np.uint64)


def make_rules(values) -> Rules:
    """A :class:`Rules` from six integers (or another Rules)."""
    values = tuple(int(v) for v in values)
    if len(values) != 6:
        raise ValueError(f"rules must be six integers, got {len(values)}")
    rules = Rules(*values)
    if rules.relation not in (0, 1, 2) or rules.floor_mode not in (0, 1):
        raise ValueError(f"rules relation must be 0, 1 or 2 and floor_mode 0 or 1, got {rules}")
    return rules


def make_graph(sizes, edge_ptr, edge_conv, edge_dst, edge_mult, edge_pairs=None, pair_kernel=None,
               pair_stride=None) -> ChainGraph:
    """Check and assemble a :class:`ChainGraph`; without a pair table every edge's pairs follow the rules.

    Raises:
        ValueError: an array of the wrong dtype or shape, or indices out of range, naming the array.
    """
    sizes = _i64(sizes, "sizes", 2)
    edge_ptr = _i64(edge_ptr, "edge_ptr")
    S, KD = sizes.shape
    if edge_ptr.shape != (S + 1,):
        raise ValueError(f"edge_ptr must have shape ({S + 1},) for {S} states, got {edge_ptr.shape}")
    edge_dst = _i64(edge_dst, "edge_dst")
    E = edge_dst.shape[0]
    edge_conv = _i64(np.asarray(edge_conv).reshape(E, KD) if np.size(edge_conv) == E * KD else edge_conv,
                     "edge_conv", 2)
    if edge_conv.shape != (E, KD):
        raise ValueError(f"edge_conv must have shape ({E}, {KD}), got {edge_conv.shape}")
    edge_mult = _i64(edge_mult, "edge_mult")
    if edge_mult.shape != (E,):
        raise ValueError(f"edge_mult must have shape ({E},), got {edge_mult.shape}")
    if S and (edge_ptr[0] != 0 or edge_ptr[-1] != E or np.any(np.diff(edge_ptr) < 0)):
        raise ValueError(f"edge_ptr must rise from 0 to the {E} edges")
    if E and (edge_dst.min() < 0 or edge_dst.max() >= S):
        raise ValueError(f"edge_dst must index the {S} states")
    if E and edge_mult.min() < 1:
        raise ValueError("edge_mult must be positive")
    if edge_pairs is None:
        edge_pairs = pair_kernel = pair_stride = np.zeros(0, dtype=np.int64)
    edge_pairs = _i64(edge_pairs, "edge_pairs")
    pair_kernel = _i64(pair_kernel, "pair_kernel")
    pair_stride = _i64(pair_stride, "pair_stride")
    if edge_pairs.shape not in ((E,), (0,)):
        raise ValueError(f"edge_pairs must have shape ({E},) or (0,) (no pair table), got {edge_pairs.shape}")
    if pair_stride.shape != pair_kernel.shape:
        raise ValueError(f"pair_stride must have the shape of pair_kernel {pair_kernel.shape}, got {pair_stride.shape}")
    explicit = edge_pairs >= 0
    # an empty column (no pair table) has nothing to check; numpy would accept its size-0 mask silently
    if len(edge_pairs) and np.any(edge_pairs[explicit] + edge_mult[explicit] > pair_kernel.shape[0]):
        raise ValueError(f"edge_pairs must index rows of the {pair_kernel.shape[0]}-row pair table")
    return ChainGraph(sizes, edge_ptr, edge_conv, edge_dst, edge_mult, edge_pairs, pair_kernel, pair_stride)


def make_components(start, kd, dim0) -> Components:
    """Check and assemble :class:`Components` (three arrays of one length)."""
    start, kd, dim0 = _i64(start, "comp_start"), _i64(kd, "comp_kd"), _i64(dim0, "comp_dim0")
    if not start.shape == kd.shape == dim0.shape:
        raise ValueError(f"comp_start, comp_kd, comp_dim0 must share one shape, got {start.shape}, {kd.shape}, "
                         f"{dim0.shape}")
    return Components(start, kd, dim0)


def _check_graph(graph) -> ChainGraph:
    if not isinstance(graph, ChainGraph):
        raise ValueError(f"graph must be a ChainGraph (use make_graph), got {type(graph).__name__}")
    return graph


def _check_components(components, graph: ChainGraph) -> Components:
    if not isinstance(components, Components):
        raise ValueError(f"components must be Components (use make_components), got {type(components).__name__}")
    if len(components.start) and (components.start.min() < 0 or components.start.max() >= graph.states):
        raise ValueError(f"comp_start must index the graph's {graph.states} states")
    return components


def pair_count(x, y, rules) -> int:
    """Number of (kernel, stride) pairs mapping sizes x to y (one size per dimension)."""
    x, y = _i64(x, "x"), _i64(y, "y")
    if x.shape != y.shape or not x.size:
        raise ValueError(f"x and y must be non-empty and of one shape, got {x.shape} and {y.shape}")
    return int(_impl.pair_count(x, y, make_rules(rules)))


def pair_at(x, y, rules, j: int) -> tuple[int, int]:
    """The j-th (kernel, stride) pair mapping x to y, pairs ordered by stride, then kernel."""
    x, y = _i64(x, "x"), _i64(y, "y")
    if x.shape != y.shape or not x.size:
        raise ValueError(f"x and y must be non-empty and of one shape, got {x.shape} and {y.shape}")
    return _impl.pair_at(x, y, make_rules(rules), int(j))


def list_pairs(x, y, rules, total: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of every row (x[i] -> y[i]) in order: two (total,) arrays (kernel, stride).

    ``total`` must be the sum of the rows' pair counts (the edges' multiplicities).
    """
    x, y = _i64(x, "x", 2), _i64(y, "y", 2)
    if x.shape != y.shape:
        raise ValueError(f"x and y must share one shape, got {x.shape} and {y.shape}")
    kernel = np.zeros(int(total), dtype=np.int64)
    stride = np.zeros(int(total), dtype=np.int64)
    written = _impl.list_pairs(x, y, make_rules(rules), kernel, stride)
    if written != total:
        raise ValueError(f"the rows hold {written if written >= 0 else 'more than ' + str(total)} pairs, not {total}")
    return kernel, stride


def build_dimension_graph(size_in: int, size_out: int, pool_k: int, pool_s: int, rules) -> ChainGraph:
    """The chain graph of one dimension (states: sizes 1..size_in; see the kernel's docstring)."""
    size_in = int(size_in)
    if size_in < 1:
        raise ValueError(f"size_in must be positive, got {size_in}")
    capacity = size_in * (size_in + 1) // 2
    edge_ptr = np.zeros(size_in + 1, dtype=np.int64)
    # np.empty, not np.zeros: the kernel writes the first E entries of each, and a large zeroed block
    # is faulted in page by page where an empty one is reused from the heap.
    conv = np.empty(capacity, dtype=np.int64)
    dst = np.empty(capacity, dtype=np.int64)
    mult = np.empty(capacity, dtype=np.int64)
    E = _impl.build_dimension_graph(size_in, int(size_out), int(pool_k), int(pool_s), make_rules(rules),
                                    edge_ptr, conv, dst, mult)
    sizes = np.arange(1, size_in + 1, dtype=np.int64).reshape(size_in, 1)
    # The kernel built these arrays itself: no boundary checks (they are O(edges) passes), and the first E
    # entries of each buffer are used in place, without copies.
    empty = np.zeros(0, dtype=np.int64)
    return ChainGraph(sizes, edge_ptr, conv[:E].reshape(E, 1), dst[:E], mult[:E], empty, empty, empty)


def joint_edges(x, pool_k, pool_s, rules) -> dict:
    """Edges of one joint (square) state: conv-size tuple -> [pooled-size tuple, pair count]."""
    x, pool_k, pool_s = _i64(x, "x"), _i64(pool_k, "pool_k"), _i64(pool_s, "pool_s")
    if not x.shape == pool_k.shape == pool_s.shape:
        raise ValueError(f"x, pool_k and pool_s must share one shape, got {x.shape}, {pool_k.shape}, {pool_s.shape}")
    return _impl.joint_edges(x, pool_k, pool_s, make_rules(rules))


def count_table(graph: ChainGraph, ends, max_layers: int, W: int) -> tuple[np.ndarray, bool]:
    """g[r, u] = chains of exactly r layers from u to an end state: ((max_layers+1, S, W) uint64, overflowed)."""
    graph = _check_graph(graph)
    ends = _i64(ends, "ends")
    if ends.size and (ends.min() < 0 or ends.max() >= graph.states):
        raise ValueError(f"ends must index the graph's {graph.states} states")
    g = np.zeros((int(max_layers) + 1, graph.states, int(W)), dtype=np.uint64)
    overflowed = _impl.count_table(graph.edge_ptr, graph.edge_dst, graph.edge_mult, ends, g)
    return g, bool(overflowed)


def _check_table(g, graph: ChainGraph, name: str = "g") -> np.ndarray:
    g = _u64(g, name, 3)
    if g.shape[1] != graph.states or g.shape[0] < 1 or g.shape[2] < 1:
        raise ValueError(f"{name} must have shape (layers + 1, {graph.states}, W), got {g.shape}")
    return g


def cumulative_weights(graph: ChainGraph, g) -> np.ndarray:
    """cum[r-1, e]: inclusive prefix over e's state's edges of m * g[r-1, dst] ((R, E, W) uint64)."""
    graph = _check_graph(graph)
    g = _check_table(g, graph)
    cum = np.zeros((g.shape[0] - 1, graph.edges, g.shape[2]), dtype=np.uint64)
    _impl.cumulative_weights(graph.edge_ptr, graph.edge_dst, graph.edge_mult, g, cum)
    return cum


def _check_cum(cum, graph: ChainGraph, max_layers: int) -> np.ndarray:
    cum = _u64(cum, "cum", 3)
    if cum.shape[0] < max_layers or cum.shape[1] != graph.edges:
        raise ValueError(f"cum must have shape (>= {max_layers}, {graph.edges}, W), got {cum.shape}")
    return cum


def unrank_batch(graph: ChainGraph, rules, components: Components, cum, layers, ranks, shape: tuple[int, int],
                 threads: int = 1):
    """Unrank per-component chain ranks (M, C, W) into zero-padded (M, N, K) kernel and stride arrays.

    ``threads`` contiguous ranges of rows run in parallel (the result does not depend on it).
    """
    max_layers, dims = shape
    graph = _check_graph(graph)
    components = _check_components(components, graph)
    layers = _i64(layers, "layers")
    ranks = _u64(ranks, "ranks", 3)
    M = len(layers)
    if ranks.shape[:2] != (M, len(components.start)):
        raise ValueError(f"ranks must have shape ({M}, {len(components.start)}, W), got {ranks.shape}")
    if M and (layers.min() < 0 or layers.max() > max_layers):
        raise ValueError(f"layers must lie in 0..{max_layers}")
    cum = _check_cum(cum, graph, max_layers)
    if ranks.shape[2] != cum.shape[2]:
        raise ValueError(f"ranks must have the {cum.shape[2]} limbs of cum, got {ranks.shape[2]}")
    kernel = np.zeros((M, max_layers, dims), dtype=np.int64)
    stride = np.zeros((M, max_layers, dims), dtype=np.int64)
    rules = make_rules(rules)

    def work(start: int, stop: int) -> None:
        _impl.unrank_batch(graph, rules, components, cum, layers[start:stop], ranks[start:stop], kernel[start:stop],
                           stride[start:stop])

    run_ranges(work, M, threads)
    return kernel, stride


#: fewer draws than this per thread are not worth a thread (a thread's start costs about as much as 500 draws)
MIN_DRAWS_PER_THREAD = 4096


def thread_ranges(total: int, threads: int, least: int = MIN_DRAWS_PER_THREAD) -> list[tuple[int, int]]:
    """Split 0..total into at most ``threads`` contiguous (start, stop) ranges of at least ``least`` items.

    >>> thread_ranges(10000, 3, least=1000), thread_ranges(5000, 4), thread_ranges(0, 2)
    ([(0, 3334), (3334, 6667), (6667, 10000)], [(0, 5000)], [])
    """
    parts = max(1, min(int(threads), total // max(1, least)))
    edges = [-(-total * p // parts) for p in range(parts + 1)]
    return [(a, b) for a, b in zip(edges, edges[1:]) if b > a]


def run_ranges(work, total: int, threads: int, least: int = MIN_DRAWS_PER_THREAD) -> None:
    """Call ``work(start, stop)`` on contiguous ranges of 0..total, on up to ``threads`` threads.

    The compiled kernels release the GIL, so the ranges run in parallel; the
    first exception a range raises is raised here after every range is done.
    """
    ranges = thread_ranges(total, threads, least)
    if len(ranges) <= 1:
        for start, stop in ranges:
            work(start, stop)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(ranges) - 1) as pool:
        futures = [pool.submit(work, start, stop) for start, stop in ranges[1:]]
        work(*ranges[0])  # the calling thread takes the first range
        for future in futures:
            future.result()


class PreparedDraw(NamedTuple):
    """The checked arguments of :func:`sample_batch` that stay fixed from one call to the next.

    A caller drawing a few architectures per call (a search's mutation) checks
    them once with :func:`prepare_draw` and then pays only for the draw
    (:func:`draw_prepared`).
    """

    graph: ChainGraph
    rules: Rules
    components: Components
    cum: np.ndarray
    g: np.ndarray
    layer_values: np.ndarray
    layer_cum: np.ndarray
    max_layers: int
    dims: int


def prepare_draw(graph: ChainGraph, rules, components: Components, cum, g, layer_values, layer_cum,
                 shape: tuple[int, int]) -> PreparedDraw:
    """Check the fixed arguments of :func:`sample_batch` once (raises ValueError as it does).

    ``shape`` is (N, K): the draws' layers (at most the space's) and dimensions.
    """
    max_layers, dims = shape
    graph = _check_graph(graph)
    components = _check_components(components, graph)
    g = _check_table(g, graph)
    cum = _check_cum(cum, graph, max_layers)
    layer_values = _i64(layer_values, "layer_values")
    layer_cum = _u64(layer_cum, "layer_cum", 2)
    if layer_cum.shape[0] != layer_values.shape[0] or not layer_values.size:
        raise ValueError(f"layer_cum must have one row per layer value ({layer_values.shape[0]}), "
                         f"got {layer_cum.shape}")
    if layer_values.min() < 0 or layer_values.max() > min(max_layers, g.shape[0] - 1):
        raise ValueError(f"layer_values must lie in 0..{max_layers}")
    return PreparedDraw(graph, make_rules(rules), components, cum, g, layer_values, layer_cum, int(max_layers),
                        int(dims))


def draw_prepared(prepared: PreparedDraw, state: tuple[int, int], samples: int, threads: int = 1):
    """Draw ``samples`` uniform architectures of a :class:`PreparedDraw`: (layers, kernel, stride, next state).

    ``state`` is (the stream's key, the index of its next draw); the next state is the same key with the
    index moved on by ``samples`` (draw i depends on the key and i only, so ``threads`` does not matter).
    """
    if not isinstance(prepared, PreparedDraw):
        raise ValueError(f"prepared must be a PreparedDraw (use prepare_draw), got {type(prepared).__name__}")
    p = prepared
    layers = np.zeros(int(samples), dtype=np.int64)
    kernel = np.zeros((int(samples), p.max_layers, p.dims), dtype=np.int64)
    stride = np.zeros((int(samples), p.max_layers, p.dims), dtype=np.int64)
    key, first = state
    key, first = int(key) & (2**64 - 1), int(first)

    def work(start: int, stop: int) -> None:
        _impl.sample_batch(p.graph, p.rules, p.components, p.cum, p.g, p.layer_values, p.layer_cum, key,
                           (first + start) & (2**64 - 1), layers[start:stop], kernel[start:stop], stride[start:stop])

    run_ranges(work, int(samples), threads)
    return layers, kernel, stride, (key, first + int(samples))


def sample_batch(graph: ChainGraph, rules, components: Components, cum, g, layer_values, layer_cum, seed: int,
                 samples: int, max_layers: int, dims: int, first: int = 0, threads: int = 1):
    """Draws ``first .. first + samples - 1`` of the stream keyed by ``seed``: (layers, kernel, stride, next index).

    Draw i depends on (seed, i) only (a counter-based generator), so the
    result is the same for every ``threads`` and however a stream is cut
    into batches; ``threads`` contiguous ranges run in parallel.
    """
    prepared = prepare_draw(graph, rules, components, cum, g, layer_values, layer_cum, (max_layers, dims))
    layers, kernel, stride, (_, after) = draw_prepared(prepared, (seed, first), samples, threads)
    return layers, kernel, stride, after


class LayerDomainTables(NamedTuple):
    """Per layer position, the values used on some chain (see :func:`layer_domain_tables`).

    Attributes:
        pairs: (N, X + 1, X + 1) bool, [l, k, s].
        size_in, size_conv, size_out: (N, KD, X + 1) bool, [l, d, size].
    """

    pairs: np.ndarray
    size_in: np.ndarray
    size_conv: np.ndarray
    size_out: np.ndarray


def layer_domain_tables(graph: ChainGraph, rules, g, start: int, feasible) -> LayerDomainTables:
    """Which pairs and sizes each layer position takes on a chain from ``start`` of a feasible length.

    Args:
        graph: the component's chain graph.
        rules: its rules.
        g: its chain counts (N + 1, S, W).
        start: the component's start state.
        feasible: (N + 1,) bools, L with architectures in the whole space.

    Returns:
        A :class:`LayerDomainTables` of boolean masks indexed by size values.
    """
    graph = _check_graph(graph)
    g = _check_table(g, graph)
    N = g.shape[0] - 1
    feasible = np.ascontiguousarray(np.asarray(feasible, dtype=bool), dtype=np.uint8)
    if feasible.shape != (N + 1,):
        raise ValueError(f"feasible must have shape ({N + 1},), got {feasible.shape}")
    if not 0 <= int(start) < graph.states:
        raise ValueError(f"start must index the graph's {graph.states} states, got {start}")
    X = int(graph.sizes.max()) if graph.states else 0
    KD = graph.sizes.shape[1]
    pairs = np.zeros((N, X + 1, X + 1), dtype=np.uint8)
    size_in = np.zeros((N, KD, X + 1), dtype=np.uint8)
    size_conv = np.zeros_like(size_in)
    size_out = np.zeros_like(size_in)
    _impl.layer_domain_tables(graph, make_rules(rules), g, int(start), feasible, pairs, size_in, size_conv, size_out)
    return LayerDomainTables(pairs.view(bool), size_in.view(bool), size_conv.view(bool), size_out.view(bool))


def _check_arrays(layers, kernel, stride):
    layers = _i64(layers, "layers")
    kernel = _i64(kernel, "kernel", 3)
    stride = _i64(stride, "stride", 3)
    if kernel.shape != stride.shape or kernel.shape[0] != layers.shape[0]:
        raise ValueError(f"kernel and stride must both have shape ({layers.shape[0]}, N, K), got {kernel.shape} "
                         f"and {stride.shape}")
    return layers, kernel, stride


def encode_bits(layers, kernel, stride, bit_width: int) -> np.ndarray:
    """Canonical bit-vectors packed into uint64 words: (M, ceil((2 N K bit_width + N) / 64))."""
    layers, kernel, stride = _check_arrays(layers, kernel, stride)
    M, N, K = kernel.shape
    words = (N * K * 2 * int(bit_width) + N + 63) // 64
    out = np.zeros((M, words), dtype=np.uint64)
    _impl.encode_bits(layers, kernel, stride, int(bit_width), out)
    return out


def adjacent_distance_sum(vectors) -> int:
    """Sum over m of popcount(v[m] XOR v[m+1])."""
    return int(_impl.adjacent_distance_sum(_u64(vectors, "vectors", 2)))


def hamming_matrix(vectors) -> np.ndarray:
    """All pairwise Hamming distances, (M, M) int64."""
    vectors = _u64(vectors, "vectors", 2)
    out = np.zeros((vectors.shape[0], vectors.shape[0]), dtype=np.int64)
    _impl.hamming_matrix(vectors, out)
    return out


def chain_costs(layers, kernel, stride, input_shape, pool_k, pool_s, options) -> tuple[np.ndarray, np.ndarray]:
    """Parameters and FLOPs of the chain model per architecture, in int64 ((M,), (M,)).

    ``options``: (width, in_channels, num_classes, batch_norm 0/1, logits head
    0/1, pool cost per output or -1 for no pool, output elements). The caller
    bounds the figures below 2**63 (``nasgen.constraints.language`` does).
    """
    layers, kernel, stride = _check_arrays(layers, kernel, stride)
    input_shape, pool_k, pool_s = _i64(input_shape, "input_shape"), _i64(pool_k, "pool_k"), _i64(pool_s, "pool_s")
    options = _i64(options, "options")
    K = kernel.shape[2]
    if input_shape.shape != (K,) or pool_k.shape != (K,) or pool_s.shape != (K,) or options.shape != (7,):
        raise ValueError(f"input_shape, pool_k and pool_s must have shape ({K},) and options (7,), got "
                         f"{input_shape.shape}, {pool_k.shape}, {pool_s.shape}, {options.shape}")
    if len(layers) and (layers.min() < 0 or layers.max() > kernel.shape[1]):
        raise ValueError(f"layers must lie in 0..{kernel.shape[1]}")
    params = np.zeros(len(layers), dtype=np.int64)
    flops = np.zeros(len(layers), dtype=np.int64)
    _impl.chain_costs(layers, kernel, stride, input_shape, pool_k, pool_s, options, params, flops)
    return params, flops
