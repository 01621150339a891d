"""``nasgen check``: is a file of architectures a uniform sample of its space?

The dynamic program gives exact marginal probabilities of a uniform
architecture even for spaces of 10^18 architectures: chains are counted
forward from the input (``f[j][u]``, chains of j layers reaching state u) and
backward to the output (``g[r][v]``, the kernel's table), so the probability
that layer l maps u to v with pair (k, s), given L layers, is
``f[l][u] * g[L - l - 1][v] / chains(L)``; with ``P(L) = count(L) / count``
that gives, per layer position and dimension (per layer for square spaces):

* the number of layers;
* the (kernel, stride) pair of each layer position (an inactive layer is its
  own category);
* the size after each layer (the output size once the chain has ended);
* the pairs of two adjacent layers (when there are few enough categories);
* the whole space, one category per architecture (merged into bins by rank),
  when the space is small enough to enumerate;
* repeats: for independent draws, the number of repeated architectures
  against its exact expectation; for distinct draws, that there are none.

Each marginal is a Pearson chi-square test on exact expected counts, with
every category whose expected count is below 5 merged into one (and that one
into the smallest other if it is still below 5). The p-values are
Holm-corrected together; the verdict is "uniform" when no corrected p-value
is at or below the level. ``overall_p`` is the smallest corrected p-value.

Probabilities are computed in float64 (relative error about 1e-15), which is
far below anything a chi-square test with 10^7 draws could see.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from nasgen.common.errors import ArchitectureError, NasgenError
from nasgen.samplers.sample_files import iter_sample_file
from nasgen.samplers.verdicts import MIN_EXPECTED, CheckResult, TestResult, chi_square, holm
from nasgen.space.definition import Architecture, SearchSpace, check_membership
from nasgen.space.draws import check_depth_weights, depth_probabilities

__all__ = ["CheckResult", "TestResult", "check_chunks", "check_uniformity", "iter_sample_file",
           "validate_arrays",
           "MIN_EXPECTED", "WHOLE_SPACE_LIMIT"]

#: Spaces with at most this many architectures also get the whole-space test.
WHOLE_SPACE_LIMIT = 1_000_000
#: Adjacent-layer tests are skipped when one would need more transitions than this.
ADJACENT_LIMIT = 200_000


# -- reading and validating samples ------------------------------------------------------


def validate_arrays(space: SearchSpace, layers, kernel, stride):
    """Sizes after each layer, vectorised, and the index of the first architecture outside the space.

    Returns:
        ``(sizes (M, N, K), first_bad)``: ``sizes[i, l]`` is the size after
        layer l (the output size for l >= layers[i]); ``first_bad`` is None
        when every architecture belongs to the space.
    """
    M, N, K = kernel.shape
    kmin, kmax = space.kernel_range or (1, 1 << 62)
    smin, smax = space.stride_range or (1, 1 << 62)
    x = np.tile(np.array(space.input_shape, dtype=np.int64), (M, 1))
    ok = (layers >= space.min_layers) & (layers <= space.max_layers)
    sizes = np.zeros((M, N, K), dtype=np.int64)
    for l in range(N):
        on = (layers > l)[:, None]
        k, s = kernel[:, l], stride[:, l]
        good = (k >= 1) & (s >= 1) & (k <= x) & (s <= x) & (k >= kmin) & (k <= kmax) & (s >= smin) & (s <= smax)
        if space.relation == "gt":
            good &= k > s
        elif space.relation == "ge":
            good &= k >= s
        span = x - k
        safe_s = np.where(s >= 1, s, 1)
        if space.rounding == "exact":
            good &= span % safe_s == 0
        y = np.where(good, span // safe_s + 1, 0)
        if space.pool is not None:
            pk = np.array([p[0] for p in space.pool], dtype=np.int64)
            ps = np.array([p[1] for p in space.pool], dtype=np.int64)
            good &= y >= pk
            if space.rounding == "exact":
                good &= (y - pk) % ps == 0
            y = np.where(good, (y - pk) // ps + 1, 0)
        if space.square:
            good &= (k == k[:, :1]) & (s == s[:, :1])
        ok &= np.where(on[:, 0], good.all(axis=1), (k == 0).all(axis=1) & (s == 0).all(axis=1))
        x = np.where(on, y, x)
        sizes[:, l] = x
    ok &= (x == np.array(space.output_shape)).all(axis=1)
    bad = np.flatnonzero(~ok)
    return sizes, (int(bad[0]) if len(bad) else None)


# -- statistics -----------------------------------------------------------------------------------


# -- categories -------------------------------------------------------------------------------


class _Categories:
    """How draws become categories: pair codes, size codes and the ids that compress pair codes.

    A (kernel, stride) pair is the code ``k * base + s`` (0: an inactive layer);
    a component's sizes are the mixed-radix code of its dimensions' sizes; the
    adjacent test's key is ``id(pair l) * width + id(pair l + 1)``, ids indexing the
    sorted pair codes of the chain graph (0: inactive, ``width - 1``: a pair
    outside the graph, which only a draw outside the constrained space can use).
    """

    def __init__(self, space: SearchSpace, tables) -> None:
        graph = tables.graph
        self.base = int(max(space.input_shape)) + 1
        self.components = [(int(c), int(tables.components.kd[c]), int(tables.components.dim0[c]))
                           for c in range(len(tables.components.start))]
        self.size_ok = {c: self.base ** kd < 2**62 for c, kd, _ in self.components}
        self.pair_owner, pair_k, pair_s = _graph_pairs(graph, tables.rules)
        codes = pair_k * self.base + pair_s
        self.codes = np.unique(codes)
        self.pair_id = np.searchsorted(self.codes, codes) + 1
        self.width = len(self.codes) + 2
        self.adjacent_ok = self.width * self.width < 2**62

    def pair_code(self, kernel, stride) -> np.ndarray:
        return kernel * self.base + stride

    def ids(self, codes: np.ndarray) -> np.ndarray:
        at = np.searchsorted(self.codes, codes)
        found = (at < len(self.codes)) & (self.codes[np.minimum(at, len(self.codes) - 1)] == codes)
        return np.where(codes == 0, 0, np.where(found, at + 1, self.width - 1))

    def size_code(self, sizes: np.ndarray) -> np.ndarray:
        """(M, kd) sizes -> (M,) codes."""
        code = np.zeros(len(sizes), dtype=np.int64)
        for j in range(sizes.shape[1] - 1, -1, -1):
            code = code * self.base + sizes[:, j]
        return code


def _graph_pairs(graph, rules):
    """(owner edge, kernel, stride) of every pair of every edge of ``graph``, rule-computed or listed."""
    from nasgen.space import backend

    E = graph.edges
    src = np.repeat(np.arange(graph.states), np.diff(graph.edge_ptr))
    first = graph.edge_pairs if len(graph.edge_pairs) else np.full(E, -1, dtype=np.int64)
    listed = first >= 0
    total = int(graph.edge_mult.sum())
    if total > PAIR_LIMIT:
        raise _TooLarge(f"the chain graph has {total} (kernel, stride) pairs, more than {PAIR_LIMIT}")
    owner = np.repeat(np.arange(E), graph.edge_mult)
    kernel = np.zeros(total, dtype=np.int64)
    stride = np.zeros(total, dtype=np.int64)
    offsets = np.concatenate(([0], np.cumsum(graph.edge_mult)))
    rule_edges = np.flatnonzero(~listed)
    if len(rule_edges):
        k, s = backend.list_pairs(graph.sizes[src[rule_edges]], graph.edge_conv[rule_edges], rules,
                                  int(graph.edge_mult[rule_edges].sum()))
        where = np.flatnonzero(~listed[owner])  # the rule-computed edges' pairs, in edge order
        kernel[where], stride[where] = k, s
    for e in np.flatnonzero(listed).tolist():
        m, f = int(graph.edge_mult[e]), int(first[e])
        kernel[offsets[e]:offsets[e + 1]] = graph.pair_kernel[f:f + m]
        stride[offsets[e]:offsets[e + 1]] = graph.pair_stride[f:f + m]
    return owner, kernel, stride


class _TooLarge(Exception):
    """An exact marginal that would need more memory than the check allows (the tests are skipped)."""


#: The marginals are computed from every (kernel, stride) pair of the chain graph: at most this many.
PAIR_LIMIT = 2 * 10**7
#: Constrained spaces with rejected atoms get exact marginals by enumeration up to this many candidates.
ENUMERATE_LIMIT = 2 * 10**6


# -- observed counts, chunk by chunk ----------------------------------------------------------


class _Counts:
    """Category counts of a stream of draws: every test's histogram, repeats, and --where violations."""

    def __init__(self, space: SearchSpace, categories: _Categories, where=(), model=None) -> None:
        self.space, self.cat, self.where, self.model = space, categories, list(where), model
        self.draws = 0
        self.violations = 0
        self.layers = np.zeros(space.max_layers + 1, dtype=np.int64)
        self._parts: dict[tuple, list] = {}
        self._keys: list[np.ndarray] = []
        self._key_counts: list[np.ndarray] = []
        self._pending = 0

    def _add(self, test: tuple, keys: np.ndarray, weight: float = 1.0) -> None:
        if not len(keys):
            return
        values, counts = np.unique(keys, return_counts=True)
        parts = self._parts.setdefault(test, [])
        parts.append((values, counts * weight))
        if len(parts) > 16:  # arrays, merged now and then: no Python loop over the keys of every chunk
            self._parts[test] = [self._merged(parts)]

    @staticmethod
    def _merged(parts):
        values = np.concatenate([v for v, _ in parts])
        weights = np.concatenate([w for _, w in parts])
        keys, inverse = np.unique(values, return_inverse=True)
        return keys, np.bincount(inverse.ravel(), weights=weights, minlength=len(keys))

    @property
    def histograms(self) -> dict[tuple, dict[int, float]]:
        """Every test's counts, ``{test: {category key: count}}``."""
        out = {}
        for test, parts in self._parts.items():
            keys, weights = self._merged(parts)
            out[test] = dict(zip(keys.tolist(), weights.tolist()))
        return out

    def add(self, layers, kernel, stride, sizes, weight: float = 1.0, keep_keys: bool = True) -> None:
        """Count one chunk; ``sizes`` as :func:`validate_arrays` gives them (only the active layers read)."""
        from nasgen.constraints.language import evaluate_all_arrays, parse_where_all

        cat = self.cat
        M = len(layers)
        self.draws += M
        self.layers += np.bincount(layers, minlength=len(self.layers))[: len(self.layers)]
        if self.where:
            ok = evaluate_all_arrays(parse_where_all(self.where), layers, kernel, stride, self.space, self.model)
            self.violations += int((~ok).sum())
        deepest = int(layers.max()) if M else 0
        for c, kd, d0 in cat.components:
            previous = None
            for l in range(deepest):
                on = layers > l
                code = cat.pair_code(kernel[on, l, d0], stride[on, l, d0])
                self._add(("pair", l, c), code, weight)
                if cat.size_ok[c]:
                    self._add(("size", l, c), cat.size_code(sizes[on, l, d0:d0 + kd]), weight)
                ids = np.zeros(M, dtype=np.int64)
                ids[on] = cat.ids(code)
                if previous is not None and cat.adjacent_ok:
                    both = layers > l - 1  # rows active at l - 1; at l they may have ended (id 0)
                    self._add(("adjacent", l - 1, c), previous[both] * cat.width + ids[both], weight)
                previous = ids
        if keep_keys:
            vectors = _packed_keys(self.space, layers, kernel, stride)
            keys, counts = np.unique(vectors, return_counts=True)
            self._keys.append(keys)
            self._key_counts.append(counts)
            self._pending += len(keys)
            if self._pending > 4 * max(len(self._keys[0]), 1 << 16) or len(self._keys) > 64:
                self._merge()

    def _merge(self) -> None:
        if len(self._keys) <= 1:
            return
        keys = np.concatenate(self._keys)
        counts = np.concatenate(self._key_counts)
        order = np.argsort(keys, kind="stable")
        keys, counts = keys[order], counts[order]
        starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
        self._keys, self._key_counts = [keys[starts]], [np.add.reduceat(counts, starts)]
        self._pending = len(self._keys[0])

    def distinct(self) -> tuple[np.ndarray, np.ndarray]:
        """(sorted distinct packed architectures, how many times each was drawn)."""
        self._merge()
        if not self._keys:
            return np.zeros(0, dtype=np.void), np.zeros(0, dtype=np.int64)
        return self._keys[0], self._key_counts[0]


def _packed_keys(space: SearchSpace, layers, kernel, stride) -> np.ndarray:
    """A 128-bit key per architecture (two seeded linear hashes mod 2^64), sortable with numpy.

    Padding past the last layer is 0 and adds nothing, so the key does not depend
    on how many columns a chunk holds, and its size does not grow with N. Two
    different architectures share a key with probability below 2^-66 (each hash's
    multipliers are random and odd; the entries differ by less than 2^31), so
    among 10^7 draws a false repeat has probability below 10^-6.
    """
    multipliers = _hash_multipliers(space.max_layers, space.dims)
    columns = kernel.shape[1]
    out = np.empty((len(layers), 2), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for h in range(2):
            r = multipliers[h]
            acc = layers.astype(np.uint64) * r[0, 0, 0]
            acc += np.einsum("mnk,nk->m", kernel.astype(np.uint64), r[1:columns + 1, :, 0], dtype=np.uint64)
            acc += np.einsum("mnk,nk->m", stride.astype(np.uint64), r[1:columns + 1, :, 1], dtype=np.uint64)
            out[:, h] = acc
    return out.view(np.dtype((np.void, 16))).ravel()


_MULTIPLIERS: dict = {}


def _hash_multipliers(N: int, K: int) -> np.ndarray:
    if (N, K) not in _MULTIPLIERS:
        rng = np.random.default_rng(0x6E6173)  # fixed: keys are compared within one run only
        _MULTIPLIERS[(N, K)] = rng.integers(0, 2**63, size=(2, N + 1, K, 2), dtype=np.uint64) * np.uint64(2) + \
            np.uint64(1)
    return _MULTIPLIERS[(N, K)]


# -- exact marginals --------------------------------------------------------------------------


def _dp_expected(space: SearchSpace, tables, cat: _Categories, depth_weights: str = "space"
                 ) -> dict[tuple, dict[int, float]]:
    """Exact marginal probabilities of every test from the (restricted) chain graph, by forward-backward.

    For component c, ``f[l][u]`` counts chains of l layers from its start to u and
    ``B[l][v] = [v ends] q(l) + sum over edges v -> w of mult * B[l + 1][w]``, with
    ``q(L) = P(L) / chains_c(L)``: an edge u -> w at layer l carries ``f[l][u] B[l + 1][w]``
    per pair. Both are kept scaled (a log scale per layer), so no count overflows a
    float however deep the space; the work is linear in the number of layers.
    """
    graph = tables.graph
    S = graph.states
    src = np.repeat(np.arange(S), np.diff(graph.edge_ptr))
    dst, mult = graph.edge_dst, graph.edge_mult.astype(np.float64)
    is_end = np.zeros(S)
    is_end[tables.structure.ends] = 1.0
    p_layers = depth_probabilities(tables.by_layers, depth_weights)
    deepest = max(p_layers)
    expected: dict[tuple, dict[int, float]] = {}
    inactive = np.zeros(deepest + 2)
    for L, p in p_layers.items():
        inactive[L:] += p  # P(L <= l): layer l is inactive
    owner, pair_id = cat.pair_owner, cat.pair_id
    pair_codes = cat.codes[pair_id - 1]
    dst_size_code = {}
    for c, kd, d0 in cat.components:
        start = int(tables.components.start[c])
        log_q = np.full(deepest + 2, -np.inf)
        for L, p_L in p_layers.items():
            chains = tables.chains[c][L]
            if chains and depth_weights == "space":
                log_q[L] = math.log(tables.by_layers[L]) - math.log(tables.count) - math.log(chains)
            elif chains:
                log_q[L] = math.log(p_L) - math.log(chains)
        # forward, scaled
        f = np.zeros((deepest + 1, S))
        log_f = np.zeros(deepest + 1)
        f[0, start] = 1.0
        for l in range(deepest):
            nxt = np.bincount(dst, weights=f[l][src] * mult, minlength=S)
            top = nxt.max()
            f[l + 1], log_f[l + 1] = (nxt / top, log_f[l] + math.log(top)) if top > 0 else (nxt, log_f[l])
        # backward, scaled
        back = np.zeros((deepest + 2, S))
        log_back = np.full(deepest + 2, -np.inf)
        for l in range(deepest, -1, -1):
            carried = np.bincount(src, weights=mult * back[l + 1][dst], minlength=S)
            parts = [(log_q[l], is_end)]
            if carried.max() > 0:
                parts.append((log_back[l + 1], carried))
            scale = max(a for a, _ in parts)
            if scale == -np.inf:
                continue
            value = sum(math.exp(a - scale) * v for a, v in parts if a > -np.inf)
            top = value.max()
            back[l], log_back[l] = value / top, scale + math.log(top)
        if cat.size_ok[c] and c not in dst_size_code:
            dst_size_code[c] = cat.size_code(graph.sizes[:, :kd]) if graph.sizes.shape[1] == kd else None
        end_size = int(cat.size_code(np.array([space.output_shape[d0:d0 + kd]], dtype=np.int64))[0])
        for l in range(deepest):
            if log_back[l + 1] == -np.inf:
                continue
            edge_w = f[l][src] * back[l + 1][dst] * math.exp(log_f[l] + log_back[l + 1])
            pair_w = edge_w[owner]
            live = pair_w > 0
            probs = _histogram(pair_codes[live], pair_w[live])
            if inactive[l] > 0:
                probs[0] = probs.get(0, 0.0) + float(inactive[l])
            expected[("pair", l, c)] = probs
            if cat.size_ok[c] and dst_size_code.get(c) is not None:
                probs = _histogram(dst_size_code[c][dst], edge_w * mult)
                if inactive[l] > 0:
                    probs[end_size] = probs.get(end_size, 0.0) + float(inactive[l])
                expected[("size", l, c)] = probs
            if l + 1 < deepest and cat.adjacent_ok:
                joint = _adjacent_joint(graph, src, (f[l], log_f[l]), (back[l + 2], log_back[l + 2]), log_q[l + 1],
                                        is_end, cat)
                if joint is not None:
                    if inactive[l] > 0:
                        joint[0] = joint.get(0, 0.0) + float(inactive[l])
                    expected[("adjacent", l, c)] = joint
    return expected


def _histogram(keys: np.ndarray, weights: np.ndarray) -> dict[int, float]:
    values, inverse = np.unique(keys, return_inverse=True)
    sums = np.bincount(inverse.ravel(), weights=weights, minlength=len(values))
    return dict(zip(values.tolist(), sums.tolist()))


def _adjacent_joint(graph, src, forward, backward, log_q_next, is_end, cat):
    """P(pair at l = a, pair at l + 1 = b) as {a * width + b}: a sum over middle states of outer products.

    ``forward`` is layer l's scaled forward counts and their log scale, ``backward`` layer l + 2's scaled
    backward weights and theirs (see :func:`_dp_expected`).
    """
    from scipy import sparse

    (f_l, log_f), (back_next, log_back_next) = forward, backward
    owner, pair_id, width = cat.pair_owner, cat.pair_id, cat.width
    S = graph.states
    dst = graph.edge_dst
    into = f_l[src[owner]]  # weight of each pair as the layer-l step (its edge's source count)
    live = into > 0
    A = sparse.csr_matrix((into[live], (dst[owner][live], pair_id[live])), shape=(S, width))
    out = back_next[dst[owner]] if log_back_next > -np.inf else np.zeros(len(owner))
    live = out > 0
    scale_out = log_back_next if log_back_next > -np.inf else log_q_next
    if scale_out == -np.inf:
        return None
    rows = [src[owner][live]]
    cols = [pair_id[live]]
    vals = [out[live] * (math.exp(log_back_next - scale_out) if log_back_next > -np.inf else 0.0)]
    if log_q_next > -np.inf:  # chains that end right after layer l: the next layer is inactive (id 0)
        ends = np.flatnonzero(is_end)
        rows.append(ends)
        cols.append(np.zeros(len(ends), dtype=np.int64))
        vals.append(np.full(len(ends), math.exp(log_q_next - scale_out)))
    Bm = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(S, width))
    work = int((np.diff(A.tocsr().indptr) * np.diff(Bm.indptr)).sum())
    if work > ADJACENT_LIMIT * 8:
        return None
    joint = (A.T @ Bm).tocoo()
    if joint.nnz > ADJACENT_LIMIT:
        return None
    scale = math.exp(log_f + scale_out)
    keys = joint.row.astype(np.int64) * width + joint.col
    return dict(zip(keys.tolist(), (joint.data * scale).tolist()))


# -- the check ---------------------------------------------------------------------------------


def check_uniformity(space: SearchSpace, arrays, level: float = 0.001, replace: bool = True,
                     whole_space_limit: int = WHOLE_SPACE_LIMIT, where=(), model=None,
                     depth_weights: str = "space") -> CheckResult:
    """Test whether ``arrays`` (layers, kernel, stride) are uniform draws from ``space`` (under ``where``).

    Args:
        space: the search space.
        arrays: ``(layers (M,), kernel (M, n, K), stride (M, n, K))`` with n <= N.
        level: the significance level of the overall verdict.
        replace: True for independent draws (repeats are tested against their
            expectation); False for distinct draws (any repeat fails).
        whole_space_limit: enumerate spaces up to this size for the whole-space test.
        where: ``--where`` constraints the draws were made under: the tests use the
            constrained space's exact marginals.
        model: the chain model's options for ``params``/``flops`` in ``where``.
        depth_weights: the distribution the draws were meant to follow: ``"space"`` (uniform) or
            ``"uniform"`` (every non-empty depth equally likely, then uniform within it; see
            :mod:`nasgen.space.draws`).

    Returns:
        A :class:`CheckResult`.

    Raises:
        NasgenError: an empty sample, a bad level, or an architecture outside the space.

    >>> space = SearchSpace((30,), (20,), 2, 3)
    >>> from nasgen.space.tables import SpaceTables
    >>> draws = SpaceTables(space).sample_arrays(2000, seed=1, replace=True)
    >>> check_uniformity(space, draws).uniform
    True
    """
    return check_chunks(space, [arrays], level=level, replace=replace, whole_space_limit=whole_space_limit,
                        where=where, model=model, depth_weights=depth_weights)


def check_chunks(space: SearchSpace, chunks, level: float = 0.001, replace: bool = True,
                 whole_space_limit: int = WHOLE_SPACE_LIMIT, where=(), model=None, source: str = "the sample",
                 depth_weights: str = "space") -> CheckResult:
    """:func:`check_uniformity` over an iterable of array chunks, read once, in memory bounded by a chunk.

    Each chunk's architectures are checked to belong to the space as they come
    (the first one outside it is named with its position in the stream).
    """
    from nasgen.constraints.constrained import ConstrainedSpace

    try:
        from scipy.stats import chi2  # noqa: F401 - the tests need it
    except ImportError:
        raise NasgenError('nasgen check needs scipy, which is not installed: pip install "nasgen[samplers]"') from None
    if not 0 < level < 1:
        raise NasgenError(f"--level must be in (0, 1), got {level}")
    check_depth_weights(depth_weights)
    if where:
        constrained = ConstrainedSpace(space, where, model=model)
        tables = constrained.tables
        all_absorbed = constrained.all_absorbed
    else:  # no constraint: the space's own tables (nothing to split, whatever the depth)
        from nasgen.space.tables import SpaceTables

        constrained, tables, all_absorbed = None, SpaceTables(space), True
    skipped: list[str] = []
    try:
        cat = _Categories(space, tables)
    except _TooLarge as exc:
        raise NasgenError(f"cannot check this space: {exc}") from None
    counts = _Counts(space, cat, where, model)
    position = 0
    for layers, kernel, stride in chunks:
        layers, kernel, stride = (np.asarray(a, dtype=np.int64) for a in (layers, kernel, stride))
        if kernel.shape[2:] != (space.dims,) or kernel.shape[1] > space.max_layers and kernel[:, space.max_layers:].any():
            raise ArchitectureError(f"{source} holds architectures of shape {kernel.shape[1:]} (layers, dims); the "
                                    f"space {space.describe()} has at most {space.max_layers} layers in {space.dims} "
                                    "dimensions")
        if not len(layers):
            continue
        deepest = max(1, min(int(layers.max()), kernel.shape[1]))
        # columns past the deepest architecture must be empty; the rest is checked layer by layer
        tail = np.flatnonzero(kernel[:, deepest:].any(axis=(1, 2)) | stride[:, deepest:].any(axis=(1, 2)))
        kernel, stride = kernel[:, :deepest], stride[:, :deepest]
        sizes, bad = validate_arrays(space, layers, kernel, stride)
        if bad is not None or len(tail):
            bad = min([bad] if bad is not None else [] + tail[:1].tolist()) if bad is not None else int(tail[0])
            _raise_outside(space, source, position + bad, layers[bad], kernel[bad], stride[bad])
        counts.add(layers, kernel, stride, sizes)
        position += len(layers)
    M = counts.draws
    if M == 0:
        raise NasgenError(f"{source} holds no architectures: nothing to check")
    # the expected side: exact tables, or the enumerated constrained members, or nothing
    expected, size = None, None
    members = None
    if depth_weights != "space" and not all_absorbed:
        raise NasgenError(f"depth weights {depth_weights!r} are checked only under constraints the tables absorb "
                          f"(as the exact sampler draws them): {' and '.join(where)} is applied by rejection")
    if all_absorbed:
        size = tables.count
        if size:
            expected = _dp_expected(space, tables, cat, depth_weights)
    elif tables.count <= ENUMERATE_LIMIT:
        expected, size, members = _enumerated_expected(space, constrained, cat, where, model)
    else:
        skipped.append(f"every marginal, repeats and whole-space test: the constraints {' and '.join(where)} are "
                       f"applied by rejection on a restriction of {tables.count} architectures, more than "
                       f"{ENUMERATE_LIMIT} to enumerate for exact marginals")
    tests: list[TestResult] = []
    if where:
        tests.append(TestResult(f"--where holds ({counts.violations} of {M} draws violate it)",
                                float(counts.violations), 0, 1.0 if counts.violations == 0 else 0.0))
    if size == 0:
        tests.append(TestResult("constrained space is empty, yet there are draws", float(M), 0, 0.0))
    if expected is not None:
        setting = _Setting(space, cat, tables, replace, whole_space_limit, depth_weights)
        outcome = _Outcome(tests, skipped)
        _marginal_tests(setting, counts, expected, size, outcome)
        _space_tests(setting, counts, size, members, outcome)
    if not tests:
        raise NasgenError(f"no test applies to {source}: " + "; ".join(skipped))
    tests = holm(tests)
    overall = min(t.p_adjusted for t in tests)
    return CheckResult(uniform=overall > level, overall_p=overall, draws=M, level=level, tests=tuple(tests),
                       skipped=tuple(skipped))


def _raise_outside(space, source, index, L, kernel, stride):
    L = int(L)
    text = json.dumps({"kernel": kernel[:L].tolist(), "stride": stride[:L].tolist()})
    try:
        check_membership(space, Architecture.from_json(text))
    except ArchitectureError as exc:
        raise ArchitectureError(f"{source} architecture {index + 1}: {exc}") from None
    raise ArchitectureError(f"{source} architecture {index + 1} is not in the space {space.describe()}")


def _enumerated_expected(space, constrained, cat, where, model):
    """Exact marginals of a constrained space with rejected atoms: every member enumerated, filtered, counted."""
    tables = constrained.tables
    members = _Counts(space, cat)
    kept_keys = []
    for layers, kernel, stride in tables.enumerate_arrays(batch=1 << 16):
        keep = constrained.accept(layers, kernel, stride)
        if keep.any():
            layers, kernel, stride = layers[keep], kernel[keep], stride[keep]
            sizes, _ = validate_arrays(space, layers, kernel, stride)
            members.add(layers, kernel, stride, sizes, keep_keys=False)
            kept_keys.append(_packed_keys(space, layers, kernel, stride))
    size = members.draws
    if not size:
        return None, 0, None
    idle = np.cumsum(members.layers)  # members with L <= l: inactive at layer l
    expected = {}
    for test, histogram in members.histograms.items():
        kind, l, c = test
        histogram = dict(histogram)
        if idle[l]:
            kd, d0 = cat.components[c][1], cat.components[c][2]
            key = 0 if kind != "size" else int(
                cat.size_code(np.array([space.output_shape[d0:d0 + kd]], dtype=np.int64))[0])
            histogram[key] = histogram.get(key, 0.0) + float(idle[l])
        expected[test] = {k: v / size for k, v in histogram.items()}
    expected["layers"] = {L: n / size for L, n in enumerate(members.layers.tolist()) if n}
    return expected, size, np.sort(np.concatenate(kept_keys))


@dataclass(frozen=True)
class _Setting:
    """What the tests of one check share: the space, its categories and tables, and how the draws were made."""

    space: SearchSpace
    cat: "_Categories"
    tables: Any
    replace: bool
    whole_space_limit: int
    depth_weights: str


@dataclass(frozen=True)
class _Outcome:
    """The tests run so far and the ones skipped (with why), filled in place."""

    tests: list
    skipped: list


def _marginal_tests(setting: _Setting, counts, expected, size, outcome: _Outcome) -> None:
    space, cat, tables, depth_weights = setting.space, setting.cat, setting.tables, setting.depth_weights
    tests, skipped, M = outcome.tests, outcome.skipped, counts.draws
    if "layers" in expected:
        layer_p = expected["layers"]
    else:
        layer_p = depth_probabilities(tables.by_layers, depth_weights)
    observed = {L: float(n) for L, n in enumerate(counts.layers.tolist()) if n}
    _add_test(tests, skipped, "layers", observed, layer_p, M)
    inactive_obs = np.cumsum(counts.layers)  # draws with L <= l: layer l inactive
    histograms = counts.histograms
    for test in sorted(expected, key=lambda t: (t[1], t[0], t[2]) if t != "layers" else (-1, "", 0)):
        if test == "layers":
            continue
        kind, l, c = test
        kd, d0 = cat.components[c][1], cat.components[c][2]
        label = f"[layer {l}]" if kd > 1 else f"[layer {l}, dim {d0}]"
        observed = dict(histograms.get(test, {}))
        idle = float(inactive_obs[l]) if l < len(inactive_obs) else float(M)
        if kind == "pair":
            if idle:
                observed[0] = observed.get(0, 0.0) + idle
            name = f"pair{label} (kernel, stride)"
        elif kind == "size":
            if idle:
                end = int(cat.size_code(np.array([space.output_shape[d0:d0 + kd]], dtype=np.int64))[0])
                observed[end] = observed.get(end, 0.0) + idle
            name = f"size{label}"
        else:
            if idle:
                observed[0] = observed.get(0, 0.0) + idle
            name = (f"adjacent pairs[layers {l}, {l + 1}]" if kd > 1 else f"adjacent pairs[layers {l}, {l + 1}, dim {d0}]")
        _add_test(tests, skipped, name, observed, expected[test], M)
    for c, kd, d0 in cat.components:
        if not cat.size_ok[c]:
            skipped.append(f"size tests of dims {d0}..{d0 + kd - 1} (too many size categories)")
        if not cat.adjacent_ok:
            skipped.append("adjacent-layer tests (too many pair categories)")


def _add_test(tests, skipped, name, observed: dict, probabilities: dict, M: int) -> None:
    keys = sorted(set(observed) | set(probabilities))
    obs = np.array([observed.get(k, 0.0) for k in keys])
    prob = np.array([probabilities.get(k, 0.0) for k in keys])
    impossible = obs[prob <= 0].sum()
    if impossible > 0:  # draws in a category the space (under the constraints) cannot produce
        tests.append(TestResult(f"{name} ({int(impossible)} draws where none can be)", float(impossible), 0, 0.0))
        return
    result = chi_square(name, obs[prob > 0], prob[prob > 0], M)
    if result is None:
        skipped.append(f"{name} (one category)")
    else:
        tests.append(result)


def _whole_space_test(ranks, key_counts, width: int, probabilities, M: int, outcome: _Outcome) -> None:
    """Chi-square of the draws over bins of ``width`` architectures in key order (ranks: each distinct draw's)."""
    observed = np.bincount(ranks // width, weights=key_counts, minlength=len(probabilities)).astype(np.float64)
    result = chi_square("whole space" + (f" (bins of {width})" if width > 1 else ""), observed, probabilities, M)
    if result is None:
        outcome.skipped.append("whole space (one bin)")
    else:
        outcome.tests.append(result)


def _space_tests(setting: _Setting, counts, C, members, outcome: _Outcome) -> None:
    """The whole-space test (small spaces) and the repeats test against the exact expectation."""
    from scipy.stats import norm, poisson

    keys, key_counts = counts.distinct()
    M = counts.draws
    if setting.depth_weights != "space":
        _weighted_space_tests(setting, keys, key_counts, M, outcome)
        return
    tables, replace, whole_space_limit = setting.tables, setting.replace, setting.whole_space_limit
    tests, skipped = outcome.tests, outcome.skipped
    if C <= whole_space_limit:
        if members is None:
            members = np.sort(np.concatenate([_packed_keys(tables.space, *arrays)
                                              for arrays in tables.enumerate_arrays(batch=1 << 16)]))
        # one category per architecture, numbered in key order (any fixed numbering gives equal bins)
        ranks = np.searchsorted(members, keys)
        width = max(1, math.ceil(MIN_EXPECTED * C / M))
        bins = math.ceil(C / width)
        sizes = np.full(bins, width, dtype=np.float64)
        sizes[-1] = C - width * (bins - 1)
        _whole_space_test(ranks, key_counts, width, sizes / C, M, outcome)
    else:
        skipped.append(f"whole space ({C} architectures, more than {whole_space_limit})")
    repeats = M - len(keys)
    if replace:
        # Expected number of distinct values among M uniform draws from C, exactly.
        q = 1.0 - 1.0 / C
        expected_distinct = C * -math.expm1(M * math.log1p(-1.0 / C)) if C > 1 else 1.0
        expected_repeats = M - expected_distinct
        if expected_repeats < 50:
            # Repeats are close to Poisson; too many repeats is the departure that matters.
            p = float(poisson.sf(repeats - 1, expected_repeats)) if repeats > 0 else 1.0
        else:
            var = C * (C - 1) * (1 - 2.0 / C) ** M + C * q ** M - C * C * q ** (2 * M)
            z = (repeats - expected_repeats) / math.sqrt(max(var, 1e-300))
            p = float(2 * norm.sf(abs(z)))
        tests.append(TestResult(f"repeats (expected {expected_repeats:.4g})", float(repeats), 0, p))
    else:
        tests.append(TestResult("repeats (distinct draws: expected 0)", float(repeats), 0,
                                1.0 if repeats == 0 else 0.0))


def _weighted_space_tests(setting: _Setting, keys, key_counts, M, outcome: _Outcome) -> None:
    """The whole-space and repeats tests when an architecture of depth L has probability P(L) / count(L).

    Whole space: members in key order, binned as in the uniform case, each bin's probability the sum of its
    members'. Repeats: with n_L members of probability q_L = P(L) / n_L each, the expected number of unseen
    architectures is sum_L n_L (1 - q_L)^M and its variance follows from the pairs' joint probabilities.
    """
    from scipy.stats import norm, poisson

    tables, replace, whole_space_limit = setting.tables, setting.replace, setting.whole_space_limit
    tests, skipped = outcome.tests, outcome.skipped
    p_layers = depth_probabilities(tables.by_layers, setting.depth_weights)
    C = tables.count
    if C <= whole_space_limit:
        parts = [(_packed_keys(tables.space, *arrays), arrays[0]) for arrays in tables.enumerate_arrays(batch=1 << 16)]
        member_keys = np.concatenate([k for k, _ in parts])
        member_p = np.concatenate([np.array([p_layers[L] / tables.by_layers[L] for L in layers.tolist()])
                                   for _, layers in parts])
        order = np.argsort(member_keys)
        member_keys, member_p = member_keys[order], member_p[order]
        ranks = np.searchsorted(member_keys, keys)
        width = max(1, math.ceil(MIN_EXPECTED / max(M * float(member_p.min()), 1e-300)))
        width = min(width, C)
        _whole_space_test(ranks, key_counts, width, np.add.reduceat(member_p, np.arange(0, C, width)), M, outcome)
    else:
        skipped.append(f"whole space ({C} architectures, more than {whole_space_limit})")
    repeats = M - len(keys)
    if not replace:
        tests.append(TestResult("repeats (distinct draws: expected 0)", float(repeats), 0, 1.0 if repeats == 0 else 0.0))
        return
    groups = [(tables.by_layers[L], p / tables.by_layers[L]) for L, p in p_layers.items()]
    unseen = [n * math.exp(M * math.log1p(-q)) if q < 1 else 0.0 for n, q in groups]
    expected_repeats = M - (C - sum(unseen))
    if expected_repeats < 50:
        p = float(poisson.sf(repeats - 1, expected_repeats)) if repeats > 0 else 1.0
    else:
        pairs = 0.0
        for i, (n_i, q_i) in enumerate(groups):
            for j, (n_j, q_j) in enumerate(groups):
                both = n_i * (n_i - 1) if i == j else n_i * n_j
                pairs += both * max(0.0, 1 - q_i - q_j) ** M
        var = sum(unseen) + pairs - sum(unseen) ** 2
        z = (repeats - expected_repeats) / math.sqrt(max(var, 1e-300))
        p = float(2 * norm.sf(abs(z)))
    tests.append(TestResult(f"repeats (expected {expected_repeats:.4g})", float(repeats), 0, p))
