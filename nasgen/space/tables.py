"""Counting, ranking and enumerating a search space exactly: the dynamic program's tables.

A non-square space factorises: for a fixed number of layers L, an
architecture is one independent chain per dimension, so
``count(L) = prod_d chains_d(L)`` and a uniform architecture is L drawn with
probability ``count(L) / total`` and then one uniform chain per dimension.
Chains are counted and unranked on a per-dimension graph of sizes by the
compiled kernel (``nasgen.space._kernel``); a square space (one kernel and stride
shared by all dimensions) uses one joint graph over size tuples instead.

Enumeration order (the order of ``enumerate_architectures`` and of ranks):
by number of layers, then by dimension 0's chain, then dimension 1's, and so
on (the whole space's chain for square spaces). Chains are ordered by the
sizes after each layer (lexicographically, smaller first), then by the
(stride, kernel) choices of the last layer, then the one before, back to the
first; (stride, kernel) pairs are ordered by stride, then kernel.

Uniform draws from the tables are in :mod:`nasgen.space.draws` (reached through
:meth:`SpaceTables.sample_arrays` and :func:`nasgen.sample_arrays`); the canonical
bit-vectors and Adj_T in :mod:`nasgen.space.encoding`; files in :mod:`nasgen.space.arrays_io`.
"""

from __future__ import annotations

import bisect
import functools
from dataclasses import dataclass
from typing import Iterator, NamedTuple, Sequence

import numpy as np

from nasgen.common.errors import ArchitectureError, NasgenError
from nasgen.common.memory import human_bytes, memory_limit_bytes
from nasgen.space import backend, draws
from nasgen.space.definition import Architecture, SearchSpace, conv_output_size
from nasgen.space.encoding import arrays_to_architectures, to_arrays

__all__ = [
    "ChainStructure",
    "LayerDomain",
    "SpaceTables",
    "architecture_at",
    "count",
    "count_by_layers",
    "enumerate_architectures",
    "enumerate_arrays",
    "layer_domains",
    "rank",
    "space_structure",
]

_UNBOUNDED = 2**62
_MAX_JOINT_STATES = 200_000


def _rules(space: SearchSpace) -> backend.Rules:
    kmin, kmax = space.kernel_range or (1, _UNBOUNDED)
    smin, smax = space.stride_range or (1, _UNBOUNDED)
    return backend.Rules(kmin, kmax, smin, smax, backend.RELATION_CODES[space.relation],
                          int(space.rounding == "floor"))


class ChainStructure(NamedTuple):
    """What a space's exact tables are built from: a chain graph, its end states, components and rules.

    Attributes:
        graph: the :class:`nasgen.space.backend.ChainGraph` (several disjoint parts for a non-square space).
        ends: (E,) int64, the end states (the output size of each part).
        components: the independent chains of an architecture (one per dimension, or one joint chain).
        rules: the (kernel, stride) rules of the rule-computed edges.
    """

    graph: backend.ChainGraph
    ends: np.ndarray
    components: backend.Components
    rules: backend.Rules


def space_structure(space: SearchSpace) -> ChainStructure:
    """The unrestricted chain structure of ``space``: one graph part per distinct dimension, or one joint graph.

    Raises:
        NasgenError: a square space with more than 200,000 joint shapes.
    """
    rules = _rules(space)
    if space.square and space.dims > 1:
        return _build_joint(space, rules)
    return _build_dimensions(space, rules)


def _limbs(value: int, W: int) -> list[int]:
    return [(value >> (64 * i)) & (2**64 - 1) for i in range(W)]


def _from_limbs(limbs) -> int:
    return sum(int(v) << (64 * i) for i, v in enumerate(limbs))


def _limbs_for(value: int) -> int:
    return max(1, (value.bit_length() + 63) // 64)


class SpaceTables:
    """The exact tables of one search space: counts, and everything needed to sample, rank and enumerate.

    Building them runs the kernel's dynamic program once (milliseconds for
    most spaces); the object is owned by the caller, who keeps it for as long
    as it draws from the space. The module-level functions (:func:`count`,
    :func:`sample`, ...) build a fresh one on each call.

    Args:
        space: the search space.
        structure: the chain structure to count over (default: the space's own,
            :func:`space_structure`); :mod:`nasgen.constraints.constrained` passes one
            restricted by absorbed ``--where`` atoms.
        allowed_layers: optional (N + 1,) bools: numbers of layers to keep
            (the others count 0).

    Raises:
        NasgenError: the tables would not fit in the memory limit
            (:func:`memory_limit_bytes`).

    >>> tables = SpaceTables(SearchSpace((30,), (20,), 2, 5, pool=(2, 1)))
    >>> tables.count, tables.count_by_layers
    (33, {2: 7, 3: 15, 4: 10, 5: 1})
    >>> tables.rank(*tables.unrank([5, 0, 32]))
    [5, 0, 32]
    """

    def __init__(self, space: SearchSpace, structure: ChainStructure | None = None, allowed_layers=None) -> None:
        if not isinstance(space, SearchSpace):
            raise NasgenError(f"SpaceTables takes a SearchSpace, got {type(space).__name__}")
        _check_memory(space)
        if structure is None:
            structure = space_structure(space)
        N = space.max_layers
        W = 1
        while True:
            g, overflowed = backend.count_table(structure.graph, structure.ends, N, W)
            if not overflowed:
                break
            W *= 2
        self.space = space
        self.structure = structure
        self.graph = structure.graph
        self.components = structure.components
        self.rules = structure.rules
        self.g = g  # (N+1, S, W) uint64 limbs: chains of j steps from each state to the output
        starts = structure.components.start.tolist()
        #: chains[c][L]: chains of L layers of component c, as Python ints
        if W == 1:  # one limb: numpy's tolist() gives the Python ints directly
            self.chains = tuple(map(tuple, g[:, starts, 0].T.tolist()))
        else:
            self.chains = tuple(tuple(_from_limbs(g[L, s]) for L in range(N + 1)) for s in starts)
        by_layers = {}
        for L in range(space.min_layers, N + 1):
            total = 1
            for c in self.chains:
                total *= c[L]
            by_layers[L] = total if allowed_layers is None or allowed_layers[L] else 0
        self.by_layers = by_layers

    def __repr__(self) -> str:
        return f"SpaceTables({self.space.describe()}, count={self.count})"

    # -- counts ---------------------------------------------------------------

    @property
    def count(self) -> int:
        """Exact number of architectures (an arbitrary-precision int)."""
        return sum(self.by_layers.values())

    @property
    def count_by_layers(self) -> dict[int, int]:
        """Exact number of architectures for each number of layers L in n..N (a copy)."""
        return dict(self.by_layers)

    @functools.cached_property
    def cum(self) -> np.ndarray:
        """The prefix weights that unranking needs (built on first use: counting does not need them)."""
        return backend.cumulative_weights(self.graph, self.g)

    def layer_tables(self):
        """(feasible L values, inclusive prefix counts as limbs, the same prefix as Python ints)."""
        return self._layer_tables

    @functools.cached_property
    def _layer_tables(self):
        values = [L for L, c in self.by_layers.items() if c]
        prefix, acc = [], 0
        for L in values:
            acc += self.by_layers[L]
            prefix.append(acc)
        W = _limbs_for(acc)
        cum = np.array([_limbs(v, W) for v in prefix], dtype=np.uint64).reshape(len(prefix), W)
        return np.array(values, dtype=np.int64), cum, prefix

    # -- sampling -------------------------------------------------------------

    def iter_sample_arrays(self, samples: int, seed=0, replace: bool = False, chunk: int = 65536,
                           depth_weights: str = "space", threads: int | None = None):
        """Yield (layers, kernel, stride) chunks of a uniform sample; see :meth:`sample_arrays`.

        Chunks are produced lazily, so a caller streaming them to disk keeps
        every completed chunk if interrupted. The concatenated chunks depend on
        neither ``chunk`` nor ``threads``.
        """
        return draws.iter_uniform_arrays(self, samples, seed=seed, replace=replace, chunk=chunk,
                                         depth_weights=depth_weights, threads=threads)

    def sample_arrays(self, samples: int, seed=0, replace: bool = False, depth_weights: str = "space",
                      threads: int | None = None):
        """Draw architectures exactly uniformly into numpy arrays.

        Args:
            samples: M, how many to draw.
            seed: None (fresh entropy), a non-negative int or a ``numpy.random.Generator``,
                as scikit-learn's ``random_state``; same int, same draws.
            replace: False (the default) for min(M, count) distinct architectures
                in uniformly random order (all of them, shuffled, when M >= count);
                True for M independent draws.
            depth_weights: ``"space"`` (every architecture equally likely) or ``"uniform"``
                (the number of layers uniform among the non-empty depths, then uniform within it).
            threads: threads drawing, 1..1024, or None for the cores this process may use;
                the draws are the same for every value (draw i depends on the seed and i only).

        Returns:
            ``(layers (M,), kernel (M, N, K), stride (M, N, K))`` int64 arrays;
            rows past ``layers[i]`` are zero.

        Raises:
            NasgenError: the space is empty, a bad thread count, or the arrays would not fit in memory.
        """
        return draws.uniform_arrays(self, samples, seed=seed, replace=replace, depth_weights=depth_weights,
                                    threads=threads)

    def sample(self, samples: int, seed=0, replace: bool = False, depth_weights: str = "space") -> list[Architecture]:
        """Draw ``samples`` architectures exactly uniformly (see :meth:`sample_arrays`)."""
        return arrays_to_architectures(*self.sample_arrays(samples, seed=seed, replace=replace,
                                                           depth_weights=depth_weights))

    # -- ranks and enumeration -------------------------------------------------

    def unrank(self, ranks: Sequence[int], threads: int = 1):
        """Positions in the enumeration order -> (layers, kernel, stride) arrays (``threads`` unrank in parallel).

        Raises:
            NasgenError: a rank outside 0..count-1.
        """
        total = self.count
        ranks = [int(r) for r in ranks]
        for r in ranks:
            if not 0 <= r < total:
                raise NasgenError(f"rank {r} is outside 0..{total - 1}")
        return _unrank(self, ranks, threads)

    def rank(self, layers, kernel, stride) -> list[int]:
        """Positions in the enumeration order of architectures given as arrays: the inverse of :meth:`unrank`.

        Raises:
            ArchitectureError: an architecture is not in the space.
        """
        return _rank(self, np.asarray(layers), np.asarray(kernel), np.asarray(stride))

    def architecture_at(self, rank: int) -> Architecture:
        """The architecture at position ``rank`` of the enumeration order."""
        return arrays_to_architectures(*self.unrank([rank]))[0]

    def enumerate_arrays(self, batch: int = 4096, threads: int = 1) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Every architecture in the documented order, as (layers, kernel, stride) batches (unranked by ``threads``)."""
        total = self.count
        for start in range(0, total, batch):
            yield _unrank(self, range(start, min(total, start + batch)), threads)

    def layer_domains(self) -> list[list["LayerDomain"]]:
        """Pruned domains per layer position and dimension; see :func:`layer_domains`."""
        return _layer_domains(self)


def _check_memory(space: SearchSpace) -> None:
    biggest = max(space.input_shape)
    edges = sum(i * (i + 1) // 2 for i in set(space.input_shape))
    states = sum(set(space.input_shape))
    estimate = 8 * (edges * (space.max_layers + 4) + states * (space.max_layers + 2))
    limit = memory_limit_bytes()
    if estimate > limit:
        raise NasgenError(
            f"input size {biggest} needs about {human_bytes(estimate)} of tables, more than the "
            f"{human_bytes(limit)} limit: use smaller sizes or fewer layers "
            "(or raise NASGEN_MEMORY_LIMIT, e.g. NASGEN_MEMORY_LIMIT=16G)"
        )


def _pool_arrays(space: SearchSpace):
    if space.pool is None:
        return [0] * space.dims, [1] * space.dims
    return [p[0] for p in space.pool], [p[1] for p in space.pool]


def _build_dimensions(space: SearchSpace, rules: backend.Rules) -> ChainStructure:
    pool_k, pool_s = _pool_arrays(space)
    parts, offsets, ends, starts = [], {}, [], []
    offset = 0
    for d in range(space.dims):
        key = (space.input_shape[d], space.output_shape[d], pool_k[d], pool_s[d])
        if key not in offsets:
            part = backend.build_dimension_graph(*key, rules)
            offsets[key] = offset
            ends.append(offset + space.output_shape[d] - 1)
            parts.append(part)
            offset += part.states
        starts.append(offsets[key] + space.input_shape[d] - 1)
    components = backend.make_components(starts, [1] * space.dims, list(range(space.dims)))
    if len(parts) == 1:  # the common case: nothing to concatenate
        return ChainStructure(parts[0], np.array(ends, dtype=np.int64), components, rules)
    state_offsets = np.cumsum([0] + [p.states for p in parts[:-1]])
    edge_offsets = np.cumsum([0] + [p.edges for p in parts[:-1]])
    graph = backend.make_graph(
        np.concatenate([p.sizes for p in parts]),
        np.concatenate([[0]] + [p.edge_ptr[1:] + o for p, o in zip(parts, edge_offsets)]),
        np.concatenate([p.edge_conv for p in parts]),
        np.concatenate([p.edge_dst + o for p, o in zip(parts, state_offsets)]),
        np.concatenate([p.edge_mult for p in parts]),
    )
    return ChainStructure(graph, np.array(ends, dtype=np.int64), components, rules)


def _build_joint(space: SearchSpace, rules: backend.Rules) -> ChainStructure:
    pool_k, pool_s = _pool_arrays(space)
    start = tuple(space.input_shape)
    index = {start: 0}
    order = [start]
    edge_ptr, conv, dst, mult = [0], [], [], []
    i = 0
    while i < len(order):
        edges = backend.joint_edges(order[i], pool_k, pool_s, rules)
        for y in sorted(edges):
            v, m = edges[y]
            if v not in index:
                if len(order) >= _MAX_JOINT_STATES:
                    raise NasgenError(
                        f"the square space reaches more than {_MAX_JOINT_STATES} joint shapes: "
                        "use smaller sizes or kernel/stride ranges"
                    )
                index[v] = len(order)
                order.append(v)
            conv.append(y)
            dst.append(index[v])
            mult.append(m)
        edge_ptr.append(len(conv))
        i += 1
    K = space.dims
    ends = [index[tuple(space.output_shape)]] if tuple(space.output_shape) in index else []
    graph = backend.make_graph(
        np.array(order, dtype=np.int64).reshape(len(order), K),
        np.array(edge_ptr, dtype=np.int64),
        np.array(conv, dtype=np.int64).reshape(len(conv), K),
        np.array(dst, dtype=np.int64),
        np.array(mult, dtype=np.int64),
    )
    return ChainStructure(graph, np.array(ends, dtype=np.int64), backend.make_components([0], [K], [0]), rules)


def count(space: SearchSpace) -> int:
    """Exact number of architectures in ``space`` (an arbitrary-precision int).

    Counting under ``--where`` constraints is :func:`nasgen.count` (defined in
    :mod:`nasgen.constraints.constrained`, a higher tier).

    Raises:
        NasgenError: the tables would not fit in the memory limit.

    >>> count(SearchSpace((30, 30), (20, 20), min_layers=2, max_layers=2))
    81
    """
    return SpaceTables(space).count


def count_by_layers(space: SearchSpace) -> dict[int, int]:
    """Exact number of architectures for each number of layers L in n..N.

    >>> count_by_layers(SearchSpace((30,), (20,), 2, 5, pool=(2, 1)))
    {2: 7, 3: 15, 4: 10, 5: 1}
    """
    return SpaceTables(space).count_by_layers


def _unrank(tables: SpaceTables, ranks: Sequence[int], threads: int = 1):
    """Global ranks -> (layers, kernel, stride) arrays, in the documented enumeration order."""
    space = tables.space
    values, _, prefix = tables.layer_tables()
    values = values.tolist()
    C = len(tables.components.start)
    W = tables.g.shape[2]
    layers = np.zeros(len(ranks), dtype=np.int64)
    digits = np.zeros((len(ranks), C, W), dtype=np.uint64)
    for i, rank in enumerate(ranks):
        li = bisect.bisect_right(prefix, rank)
        L = values[li]
        rest = rank - (prefix[li - 1] if li else 0)
        layers[i] = L
        for c in range(C - 1, -1, -1):
            rest, digit = divmod(rest, tables.chains[c][L])
            digits[i, c] = _limbs(digit, W)
    kernel, stride = backend.unrank_batch(tables.graph, tables.rules, tables.components, tables.cum, layers, digits,
                                           (space.max_layers, space.dims), threads=threads)
    return layers, kernel, stride


def _rank(tables: SpaceTables, layers: np.ndarray, kernel: np.ndarray, stride: np.ndarray) -> list[int]:
    """The inverse of :func:`_unrank`: walk each chain through the graph, undoing the mixed-radix digits.

    Unranking takes, at each step, the edge whose cumulative weight covers the
    rank, then the pair index as the rank modulo the edge's multiplicity; so a
    chain's rank is ``before(e) + rest * m(e) + j`` folded from the last layer.
    """
    space = tables.space
    graph, cum = tables.graph, tables.cum
    sizes, edge_ptr, edge_conv, edge_dst, edge_mult = graph.sizes, graph.edge_ptr, graph.edge_conv, graph.edge_dst, \
        graph.edge_mult
    values, _, prefix = tables.layer_tables()
    values = values.tolist()
    N, K = space.max_layers, space.dims
    if layers.ndim != 1 or kernel.shape != (len(layers), N, K) or stride.shape != kernel.shape:
        raise ArchitectureError(
            f"rank takes layers (M,), kernel and stride (M, {N}, {K}) arrays, got {layers.shape}, "
            f"{kernel.shape} and {stride.shape}"
        )
    pair_index: dict[tuple[int, int], dict] = {}
    out = []
    for i in range(len(layers)):
        L = int(layers[i])
        if L not in values:
            raise ArchitectureError(f"architecture {i} has {L} layers; the space has architectures of {values} layers")
        acc = 0
        for c, start in enumerate(tables.components.start.tolist()):
            kd, d0 = int(tables.components.kd[c]), int(tables.components.dim0[c])
            u, steps = start, []
            for l in range(L):
                k, s = kernel[i, l, d0:d0 + kd].tolist(), stride[i, l, d0:d0 + kd].tolist()
                bad = ArchitectureError(f"architecture {i} layer {l}: kernel {k} and stride {s} are not in the space")
                if len(set(k)) != 1 or len(set(s)) != 1 or k[0] < 1 or s[0] < 1:
                    raise bad
                conv = [conv_output_size(int(x), k[0], s[0], space.rounding) for x in sizes[u].tolist()]
                lo, hi = int(edge_ptr[u]), int(edge_ptr[u + 1])
                e = next((e for e in range(lo, hi) if None not in conv and edge_conv[e].tolist() == conv), None)
                if e is None:
                    raise bad
                table = pair_index.get((u, e))
                if table is None:
                    table = {pair: j for j, pair in enumerate(_edge_pairs(graph, tables.rules, u, e))}
                    pair_index[(u, e)] = table
                j = table.get((k[0], s[0]))
                if j is None:
                    raise bad
                before = _from_limbs(cum[L - l - 1, e - 1]) if e > lo else 0
                steps.append((before, int(edge_mult[e]), j))
                u = int(edge_dst[e])
            if not tables.g[0, u].any():
                raise ArchitectureError(f"architecture {i} does not end at the output shape")
            digit = 0
            for before, m, j in reversed(steps):
                digit = before + digit * m + j
            acc = acc * tables.chains[c][L] + digit
        li = values.index(L)
        out.append((prefix[li - 1] if li else 0) + acc)
    return out


def _edge_pairs(graph: backend.ChainGraph, rules: backend.Rules, u: int, e: int) -> list[tuple[int, int]]:
    """The (kernel, stride) pairs of edge e from state u, in their rank order."""
    first, m = int(graph.edge_pairs[e]) if len(graph.edge_pairs) else -1, int(graph.edge_mult[e])
    if first >= 0:
        return list(zip(graph.pair_kernel[first:first + m].tolist(), graph.pair_stride[first:first + m].tolist()))
    return [backend.pair_at(graph.sizes[u], graph.edge_conv[e], rules, j) for j in range(m)]

def enumerate_arrays(space: SearchSpace, batch: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every architecture in the documented order, as (layers, kernel, stride) batches."""
    return SpaceTables(space).enumerate_arrays(batch)


def enumerate_architectures(space: SearchSpace) -> Iterator[Architecture]:
    """Every architecture of ``space`` once, lazily, in the documented deterministic order.

    >>> [a.kernel for a in enumerate_architectures(SearchSpace((5,), (3,), 1, 1))]
    [((3,),)]
    """
    for arrays in enumerate_arrays(space):
        yield from arrays_to_architectures(*arrays)


def architecture_at(space: SearchSpace, rank: int) -> Architecture:
    """The architecture at position ``rank`` of the enumeration order."""
    return SpaceTables(space).architecture_at(rank)


def rank(space: SearchSpace, arch: Architecture) -> int:
    """The position of ``arch`` in the enumeration order: the inverse of :func:`architecture_at`.

    >>> space = SearchSpace((30,), (20,), 2, 5, pool=(2, 1))
    >>> rank(space, architecture_at(space, 17))
    17

    Raises:
        ArchitectureError: ``arch`` is not in the space.
    """
    return SpaceTables(space).rank(*to_arrays(space, [arch]))[0]


@dataclass(frozen=True)
class LayerDomain:
    """Values one layer position can take in one dimension on some input-to-output chain.

    Attributes:
        sizes_in: sizes entering the layer.
        pairs: (kernel, stride) pairs.
        sizes_conv: sizes after the convolution (before the pool).
        sizes_out: sizes after the layer (after the pool).
    """

    sizes_in: frozenset
    pairs: frozenset
    sizes_conv: frozenset
    sizes_out: frozenset


def layer_domains(space: SearchSpace) -> list[list[LayerDomain]]:
    """Pruned domains for every layer position l < N and dimension d.

    A value is kept if it lies on at least one chain of L layers, for some L
    in [max(n, l+1), N] for which the whole space has an architecture of L
    layers. Positions that no such L reaches get empty domains.
    """
    return SpaceTables(space).layer_domains()


def _layer_domains(tables: SpaceTables) -> list[list[LayerDomain]]:
    # The kernel marks, per position, the pairs and sizes of edges that lie on a chain of a
    # feasible length (one pass over the reachable edges; pairs by difference arrays).
    space = tables.space
    N = space.max_layers
    feasible = np.zeros(N + 1, dtype=bool)
    for L, c in tables.by_layers.items():
        feasible[L] = c > 0
    out = [[None] * space.dims for _ in range(N)]
    for c, start in enumerate(tables.components.start.tolist()):
        kd, dim0 = int(tables.components.kd[c]), int(tables.components.dim0[c])
        marks = backend.layer_domain_tables(tables.graph, tables.rules, tables.g, start, feasible)
        for l in range(N):
            ks, ss = np.nonzero(marks.pairs[l])
            pairs = frozenset(zip(ks.tolist(), ss.tolist()))
            for d in range(kd):
                out[l][dim0 + d] = LayerDomain(
                    sizes_in=frozenset(np.flatnonzero(marks.size_in[l, d]).tolist()),
                    pairs=pairs,
                    sizes_conv=frozenset(np.flatnonzero(marks.size_conv[l, d]).tolist()),
                    sizes_out=frozenset(np.flatnonzero(marks.size_out[l, d]).tolist()),
                )
    return out

