"""Counting, sampling and enumerating a search space exactly; bit-vectors and Adj_T.

A non-square space factorises: for a fixed number of layers L, an
architecture is one independent chain per dimension, so
``count(L) = prod_d chains_d(L)`` and a uniform architecture is L drawn with
probability ``count(L) / total`` and then one uniform chain per dimension.
Chains are counted and unranked on a per-dimension graph of sizes by the
compiled kernel (``nasgen._kernel``); a square space (one kernel and stride
shared by all dimensions) uses one joint graph over size tuples instead.

Enumeration order (the order of ``enumerate_architectures`` and of ranks):
by number of layers, then by dimension 0's chain, then dimension 1's, and so
on (the whole space's chain for square spaces). Chains are ordered by the
sizes after each layer (lexicographically, smaller first), then by the
(stride, kernel) choices of the last layer, then the one before, back to the
first; (stride, kernel) pairs are ordered by stride, then kernel.
"""

from __future__ import annotations

import bisect
import functools
import json
import os
from dataclasses import dataclass
from typing import IO, Iterable, Iterator, Sequence

import numpy as np

from nasgen import _backend
from nasgen.space import (
    Architecture,
    ArchitectureError,
    NasgenError,
    SearchSpace,
    architectures_from_lines,
    check_membership,
)

__all__ = [
    "LayerDomain",
    "adj_t",
    "count",
    "count_by_layers",
    "encode",
    "enumerate_architectures",
    "enumerate_arrays",
    "hamming_matrix",
    "layer_domains",
    "read_architectures",
    "sample",
    "sample_arrays",
    "write_architectures",
    "MEMORY_LIMIT_BYTES",
]

#: Tables larger than this are refused up front (override with NASGEN_MEMORY_LIMIT in bytes).
MEMORY_LIMIT_BYTES = int(os.environ.get("NASGEN_MEMORY_LIMIT", 4 * 2**30))
_UNBOUNDED = 2**62
_RELATION_CODE = {"gt": 0, "ge": 1, "any": 2}
_MAX_JOINT_STATES = 200_000


def _rules(space: SearchSpace) -> tuple[int, int, int, int, int, int]:
    kmin, kmax = space.kernel_range or (1, _UNBOUNDED)
    smin, smax = space.stride_range or (1, _UNBOUNDED)
    return (kmin, kmax, smin, smax, _RELATION_CODE[space.relation], int(space.rounding == "floor"))


def _limbs(value: int, W: int) -> list[int]:
    return [(value >> (64 * i)) & (2**64 - 1) for i in range(W)]


def _from_limbs(limbs) -> int:
    return sum(int(v) << (64 * i) for i, v in enumerate(limbs))


def _limbs_for(value: int) -> int:
    return max(1, (value.bit_length() + 63) // 64)


@dataclass(frozen=True, eq=False)
class _Compiled:
    """The tables of one space: a graph (possibly several disjoint ones), counts and prefix weights."""

    space: SearchSpace
    base_graph: tuple  # sizes, edge_ptr, edge_conv, edge_dst, edge_mult
    g: np.ndarray  # (N+1, S, W) uint64
    comp_start: np.ndarray
    comp_kd: np.ndarray
    comp_dim0: np.ndarray
    rules: tuple
    chains: tuple  # chains[c][L] as Python ints
    by_layers: dict  # L -> count (Python int)

    @functools.cached_property
    def graph(self) -> tuple:
        """The graph with its prefix weights (built on first use: counting does not need them)."""
        _, edge_ptr, _, edge_dst, edge_mult = self.base_graph
        return self.base_graph + (_backend.cumulative_weights(edge_ptr, edge_dst, edge_mult, self.g),)

    @property
    def total(self) -> int:
        return sum(self.by_layers.values())

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


def _check_memory(space: SearchSpace) -> None:
    biggest = max(space.input_shape)
    edges = sum(i * (i + 1) // 2 for i in set(space.input_shape))
    states = sum(set(space.input_shape))
    estimate = 8 * (edges * (space.max_layers + 4) + states * (space.max_layers + 2))
    if estimate > MEMORY_LIMIT_BYTES:
        raise NasgenError(
            f"input size {biggest} needs about {estimate / 2**30:.1f} GiB of tables, more than the "
            f"{MEMORY_LIMIT_BYTES / 2**30:.1f} GiB limit: use smaller sizes or fewer layers "
            "(or raise NASGEN_MEMORY_LIMIT)"
        )


def _pool_arrays(space: SearchSpace):
    if space.pool is None:
        return [0] * space.dims, [1] * space.dims
    return [p[0] for p in space.pool], [p[1] for p in space.pool]


def _build_dimensions(space: SearchSpace, rules):
    pool_k, pool_s = _pool_arrays(space)
    parts, offsets, ends = [], {}, []
    offset = 0
    for d in range(space.dims):
        key = (space.input_shape[d], space.output_shape[d], pool_k[d], pool_s[d])
        if key in offsets:
            continue
        part = _backend.build_dimension_graph(space.input_shape[d], space.output_shape[d], pool_k[d], pool_s[d], rules)
        offsets[key] = (offset, len(parts))
        ends.append(offset + space.output_shape[d] - 1)
        parts.append(part)
        offset += part[0].shape[0]
    starts, kd, dim0 = [], [], []
    for d in range(space.dims):
        key = (space.input_shape[d], space.output_shape[d], pool_k[d], pool_s[d])
        starts.append(offsets[key][0] + space.input_shape[d] - 1)
        kd.append(1)
        dim0.append(d)
    if len(parts) == 1:  # the common case: nothing to concatenate
        return parts[0], np.array(ends, dtype=np.int64), starts, kd, dim0
    sizes = np.concatenate([p[0] for p in parts])
    edge_ptr, conv, dst, mult = [np.zeros(1, dtype=np.int64)], [], [], []
    edge_offset = 0
    state_offset = 0
    for p in parts:
        edge_ptr.append(p[1][1:] + edge_offset)
        conv.append(p[2])
        dst.append(p[3] + state_offset)
        mult.append(p[4])
        edge_offset += len(p[3])
        state_offset += p[0].shape[0]
    graph = (sizes, np.concatenate(edge_ptr), np.concatenate(conv), np.concatenate(dst), np.concatenate(mult))
    return graph, np.array(ends, dtype=np.int64), starts, kd, dim0


def _build_joint(space: SearchSpace, rules):
    pool_k, pool_s = _pool_arrays(space)
    start = tuple(space.input_shape)
    index = {start: 0}
    order = [start]
    edge_ptr, conv, dst, mult = [0], [], [], []
    i = 0
    while i < len(order):
        edges = _backend.joint_edges(order[i], pool_k, pool_s, rules)
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
    graph = (
        np.array(order, dtype=np.int64).reshape(len(order), K),
        np.array(edge_ptr, dtype=np.int64),
        np.array(conv, dtype=np.int64).reshape(len(conv), K),
        np.array(dst, dtype=np.int64),
        np.array(mult, dtype=np.int64),
    )
    return graph, np.array(ends, dtype=np.int64), [0], [K], [0]


@functools.lru_cache(maxsize=16)
def _compile(space: SearchSpace) -> _Compiled:
    _check_memory(space)
    rules = _rules(space)
    if space.square and space.dims > 1:
        graph, ends, starts, kd, dim0 = _build_joint(space, rules)
    else:
        graph, ends, starts, kd, dim0 = _build_dimensions(space, rules)
    _, edge_ptr, _, edge_dst, edge_mult = graph
    N = space.max_layers
    W = 1
    while True:
        g, overflowed = _backend.count_table(edge_ptr, edge_dst, edge_mult, ends, N, W)
        if not overflowed:
            break
        W *= 2
    chains = tuple(tuple(_from_limbs(g[L, s]) for L in range(N + 1)) for s in starts)
    by_layers = {}
    for L in range(space.min_layers, N + 1):
        total = 1
        for c in chains:
            total *= c[L]
        by_layers[L] = total
    return _Compiled(
        space=space,
        base_graph=graph,
        g=g,
        comp_start=np.array(starts, dtype=np.int64),
        comp_kd=np.array(kd, dtype=np.int64),
        comp_dim0=np.array(dim0, dtype=np.int64),
        rules=rules,
        chains=chains,
        by_layers=by_layers,
    )


def count(space: SearchSpace) -> int:
    """Exact number of architectures in ``space`` (an arbitrary-precision int).

    >>> count(SearchSpace((30, 30), (20, 20), min_layers=2, max_layers=2))
    81
    """
    return _compile(space).total


def count_by_layers(space: SearchSpace) -> dict[int, int]:
    """Exact number of architectures for each number of layers L in n..N.

    >>> count_by_layers(SearchSpace((30,), (20,), 2, 5, pool=(2, 1)))
    {2: 7, 3: 15, 4: 10, 5: 1}
    """
    return dict(_compile(space).by_layers)


def _seed_state(seed) -> int:
    return int(np.random.SeedSequence(seed).generate_state(1, np.uint64)[0])


def _require_nonempty(compiled: _Compiled) -> None:
    if compiled.total == 0:
        raise NasgenError(
            f"the space {compiled.space.describe()} is empty: no architecture maps the input to the output; "
            "widen the layer bounds, ranges or relation"
        )


def _unrank(compiled: _Compiled, ranks: Sequence[int]):
    """Global ranks -> (layers, kernel, stride) arrays, in the documented enumeration order."""
    space = compiled.space
    values, _, prefix = compiled.layer_tables()
    values = values.tolist()
    C = len(compiled.comp_start)
    W = compiled.g.shape[2]
    layers = np.zeros(len(ranks), dtype=np.int64)
    digits = np.zeros((len(ranks), C, W), dtype=np.uint64)
    for i, rank in enumerate(ranks):
        li = bisect.bisect_right(prefix, rank)
        L = values[li]
        rest = rank - (prefix[li - 1] if li else 0)
        layers[i] = L
        for c in range(C - 1, -1, -1):
            rest, digit = divmod(rest, compiled.chains[c][L])
            digits[i, c] = _limbs(digit, W)
    kernel, stride = _backend.unrank_batch(compiled.graph, compiled.rules, compiled.comp_start, compiled.comp_kd,
                                           compiled.comp_dim0, layers, digits, space.max_layers, space.dims)
    return layers, kernel, stride


def _arrays_to_architectures(layers, kernel, stride) -> list[Architecture]:
    out = []
    for L, k, s in zip(layers.tolist(), kernel.tolist(), stride.tolist()):
        out.append(Architecture(kernel=k[:L], stride=s[:L]))
    return out


class _Stream:
    """Seeded stream of independent uniform draws, identical however it is chunked."""

    def __init__(self, compiled: _Compiled, seed):
        self.compiled = compiled
        self.state = _seed_state(seed)
        self.values, self.cum, _ = compiled.layer_tables()

    def draw(self, samples: int):
        c = self.compiled
        layers, kernel, stride, self.state = _backend.sample_batch(
            c.graph, c.rules, c.comp_start, c.comp_kd, c.comp_dim0, c.g, self.values, self.cum, self.state,
            samples, c.space.max_layers, c.space.dims)
        return layers, kernel, stride


def iter_sample_arrays(space: SearchSpace, samples: int, seed=0, replace: bool = True, chunk: int = 65536):
    """Yield (layers, kernel, stride) chunks of a uniform sample; see :func:`sample_arrays`.

    Chunks are produced lazily, so a caller streaming them to disk keeps
    every completed chunk if interrupted. The concatenated chunks do not
    depend on ``chunk``.
    """
    compiled = _compile(space)
    _require_nonempty(compiled)
    if samples < 0:
        raise NasgenError(f"the number of samples must be >= 0, got {samples}")
    total = compiled.total
    if not replace and min(samples, total) * 8 * (3 + space.max_layers * space.dims) > MEMORY_LIMIT_BYTES:
        raise NasgenError(
            f"{min(samples, total)} distinct architectures would not fit in memory "
            f"({MEMORY_LIMIT_BYTES / 2**30:.1f} GiB limit): ask for fewer, or draw with replacement in a stream"
        )
    if replace:
        stream = _Stream(compiled, seed)
        done = 0
        while done < samples:
            n = min(chunk, samples - done)
            yield stream.draw(n)
            done += n
        return
    if 2 * samples >= total:
        # Dense case: a uniformly ordered choice of distinct ranks.
        rng = np.random.default_rng(seed)
        ranks = rng.permutation(total)[: min(samples, total)].tolist()
        for start in range(0, len(ranks), chunk):
            yield _unrank(compiled, ranks[start:start + chunk])
        return
    # Sparse case: uniform draws, dropping repeats. Sequential rejection of repeats is
    # exactly sampling without replacement, in a uniformly random order.
    stream = _Stream(compiled, seed)
    seen: set[bytes] = set()
    bits = space.bit_width
    while len(seen) < samples:
        need = samples - len(seen)
        layers, kernel, stride = stream.draw(min(chunk, need + need // 8 + 16))
        rows = _backend.encode_bits(layers, kernel, stride, bits)
        keep = []
        for i, row in enumerate(rows):
            key = row.tobytes()
            if key not in seen:
                seen.add(key)
                keep.append(i)
                if len(seen) == samples:
                    break
        if keep:
            idx = np.array(keep)
            yield layers[idx], kernel[idx], stride[idx]


def sample_arrays(space: SearchSpace, samples: int, seed=0, replace: bool = True):
    """Draw architectures exactly uniformly into numpy arrays.

    Args:
        space: the search space.
        samples: M, how many to draw.
        seed: anything ``numpy.random.SeedSequence`` accepts; same seed, same draws.
        replace: True for independent draws; False for M distinct
            architectures in uniformly random order (all of them, shuffled,
            when M >= count).

    Returns:
        ``(layers (M,), kernel (M, N, K), stride (M, N, K))`` int64 arrays;
        rows past ``layers[i]`` are zero.

    Raises:
        NasgenError: if the space is empty.
    """
    row_bytes = 8 * (1 + 2 * space.max_layers * space.dims)
    if samples * row_bytes > MEMORY_LIMIT_BYTES:
        raise NasgenError(
            f"{samples} samples need {samples * row_bytes / 2**30:.1f} GiB of arrays, more than the "
            f"{MEMORY_LIMIT_BYTES / 2**30:.1f} GiB limit: draw them in chunks with iter_sample_arrays"
        )
    # One chunk for independent draws: the stream is the same however it is chunked.
    chunk = max(samples, 1) if replace else 65536
    chunks = list(iter_sample_arrays(space, samples, seed=seed, replace=replace, chunk=chunk))
    N, K = space.max_layers, space.dims
    if not chunks:
        return (np.zeros(0, dtype=np.int64), np.zeros((0, N, K), dtype=np.int64), np.zeros((0, N, K), dtype=np.int64))
    return tuple(np.concatenate(parts) for parts in zip(*chunks))


def sample(space: SearchSpace, samples: int, seed=0, replace: bool = True) -> list[Architecture]:
    """Draw ``samples`` architectures exactly uniformly (see :func:`sample_arrays`).

    >>> space = SearchSpace((30,), (20,), 2, 2)
    >>> [a.layers for a in sample(space, 3, seed=1)]
    [2, 2, 2]
    """
    return _arrays_to_architectures(*sample_arrays(space, samples, seed=seed, replace=replace))


def enumerate_arrays(space: SearchSpace, batch: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every architecture in the documented order, as (layers, kernel, stride) batches."""
    compiled = _compile(space)
    total = compiled.total
    for start in range(0, total, batch):
        yield _unrank(compiled, range(start, min(total, start + batch)))


def enumerate_architectures(space: SearchSpace) -> Iterator[Architecture]:
    """Every architecture of ``space`` once, lazily, in the documented deterministic order.

    >>> [a.kernel for a in enumerate_architectures(SearchSpace((5,), (3,), 1, 1))]
    [((3,),)]
    """
    for arrays in enumerate_arrays(space):
        yield from _arrays_to_architectures(*arrays)


def architecture_at(space: SearchSpace, rank: int) -> Architecture:
    """The architecture at position ``rank`` of the enumeration order."""
    compiled = _compile(space)
    if not 0 <= rank < compiled.total:
        raise NasgenError(f"rank {rank} is outside 0..{compiled.total - 1}")
    return _arrays_to_architectures(*_unrank(compiled, [rank]))[0]


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
    compiled = _compile(space)
    sizes, edge_ptr, edge_conv, edge_dst, edge_mult, _ = compiled.graph
    N = space.max_layers
    feasible = [L for L, c in compiled.by_layers.items() if c]
    out = [[None] * space.dims for _ in range(N)]
    for c, start in enumerate(compiled.comp_start.tolist()):
        kd, dim0 = int(compiled.comp_kd[c]), int(compiled.comp_dim0[c])
        frontier = {start}
        for l in range(N):
            s_in, pairs, s_conv, s_out = set(), set(), set(), set()
            nxt = set()
            for u in frontier:
                for e in range(edge_ptr[u], edge_ptr[u + 1]):
                    v = int(edge_dst[e])
                    nxt.add(v)
                    if not any(L > l and compiled.g[L - l - 1, v].any() for L in feasible):
                        continue
                    s_in.add(tuple(sizes[u].tolist()))
                    s_conv.add(tuple(edge_conv[e].tolist()))
                    s_out.add(tuple(sizes[v].tolist()))
                    for j in range(int(edge_mult[e])):
                        pairs.add(_backend.pair_at(sizes[u], edge_conv[e], compiled.rules, j))
            frontier = nxt
            for d in range(kd):
                out[l][dim0 + d] = LayerDomain(
                    sizes_in=frozenset(t[d] for t in s_in),
                    pairs=frozenset(pairs),
                    sizes_conv=frozenset(t[d] for t in s_conv),
                    sizes_out=frozenset(t[d] for t in s_out),
                )
    return out


# -- bit-vectors and Adj_T ---------------------------------------------------


def to_arrays(space: SearchSpace, archs: Iterable[Architecture]):
    """Architectures -> zero-padded (layers, kernel, stride) arrays of shape (M,), (M, N, K), (M, N, K)."""
    archs = list(archs)
    N, K = space.max_layers, space.dims
    layers = np.zeros(len(archs), dtype=np.int64)
    kernel = np.zeros((len(archs), N, K), dtype=np.int64)
    stride = np.zeros((len(archs), N, K), dtype=np.int64)
    for i, a in enumerate(archs):
        if a.dims != K or a.layers > N:
            raise ArchitectureError(
                f"architecture {i} has {a.layers} layers and {a.dims} dimensions; "
                f"the space allows at most {N} layers and has {K} dimensions"
            )
        layers[i] = a.layers
        kernel[i, : a.layers] = a.kernel
        stride[i, : a.layers] = a.stride
    limit = 1 << space.bit_width
    if kernel.size and (kernel.max() >= limit or stride.max() >= limit):
        raise ArchitectureError(f"a kernel or stride does not fit in the space's {space.bit_width}-bit encoding")
    return layers, kernel, stride


def encode(space: SearchSpace, archs) -> np.ndarray:
    """Canonical bit-vectors, packed little-endian into uint64 words: shape (M, ceil(bits/64)).

    ``archs`` is a list of Architecture or a (layers, kernel, stride) tuple of arrays.
    """
    arrays = archs if isinstance(archs, tuple) else to_arrays(space, archs)
    return _backend.encode_bits(*arrays, space.bit_width)


def adj_t_vectors(vectors: np.ndarray) -> float:
    """Mean Hamming distance between consecutive packed vectors; 0.0 for fewer than two."""
    if len(vectors) < 2:
        return 0.0
    return _backend.adjacent_distance_sum(vectors) / (len(vectors) - 1)


def adj_t(space: SearchSpace, archs) -> float:
    """The paper's Adj_T (Eq. 2): mean popcount(c_m XOR c_{m+1}) over the M-1 consecutive pairs.

    >>> space = SearchSpace((30,), (20,), 2, 2)
    >>> a = Architecture(((5,), (7,)), ((1,), (1,)))
    >>> b = Architecture(((7,), (5,)), ((1,), (1,)))
    >>> adj_t(space, [a, b, a])
    4.0
    """
    return adj_t_vectors(encode(space, archs))


def hamming_matrix(space: SearchSpace, archs) -> np.ndarray:
    """All pairwise Hamming distances between canonical vectors, shape (M, M)."""
    return _backend.hamming_matrix(encode(space, archs))


# -- files -------------------------------------------------------------------


def read_architectures(path, space: SearchSpace | None = None) -> list[Architecture]:
    """Read a JSON Lines file; with ``space``, check every architecture belongs to it.

    Raises:
        NasgenError: unreadable file, or a malformed line (named by its number).
    """
    try:
        with open(path, encoding="utf-8") as handle:
            archs = list(architectures_from_lines(handle, source=str(path)))
    except OSError as exc:
        raise NasgenError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise NasgenError(f"{path} is not a UTF-8 JSON Lines file") from None
    if space is not None:
        for number, arch in enumerate(archs, start=1):
            try:
                check_membership(space, arch)
            except ArchitectureError as exc:
                raise ArchitectureError(f"{path} architecture {number}: {exc}") from None
    return archs


def write_architectures(target: str | os.PathLike | IO[str], archs: Iterable[Architecture]) -> int:
    """Write architectures as JSON Lines, flushing each line; returns how many were written."""
    if hasattr(target, "write"):
        handle, close = target, False
    else:
        handle, close = open(target, "w", encoding="utf-8"), True
    written = 0
    try:
        for arch in archs:
            handle.write(arch.to_json() + "\n")
            handle.flush()
            written += 1
    finally:
        if close:
            handle.close()
    return written


def arrays_to_jsonl_lines(layers, kernel, stride) -> list[str]:
    """Fast JSON Lines rendering of sample arrays."""
    lines = []
    for L, k, s in zip(layers.tolist(), kernel.tolist(), stride.tolist()):
        lines.append(json.dumps({"layers": L, "kernel": k[:L], "stride": s[:L]}))
    return lines
