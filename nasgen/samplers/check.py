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
from dataclasses import dataclass, field

import numpy as np

from nasgen.common.errors import ArchitectureError, NasgenError
from nasgen.space.definition import Architecture, SearchSpace, check_membership

__all__ = ["CheckResult", "TestResult", "check_uniformity", "read_samples", "validate_arrays",
           "MIN_EXPECTED", "WHOLE_SPACE_LIMIT"]

#: Categories expected to hold fewer draws than this are merged.
MIN_EXPECTED = 5.0
#: Spaces with at most this many architectures also get the whole-space test.
WHOLE_SPACE_LIMIT = 1_000_000
#: Adjacent-layer tests are skipped when one would need more transitions than this.
ADJACENT_LIMIT = 200_000


@dataclass(frozen=True)
class TestResult:
    """One test: name, chi-square statistic (or a count), degrees of freedom, p-value, Holm-adjusted p."""

    __test__ = False  # not a pytest test class


    name: str
    statistic: float
    df: int
    p_value: float
    p_adjusted: float = float("nan")

    def to_dict(self) -> dict:
        return {"name": self.name, "statistic": self.statistic, "df": self.df, "p_value": self.p_value,
                "p_adjusted": self.p_adjusted}


@dataclass(frozen=True)
class CheckResult:
    """The verdict: ``uniform`` at ``level`` iff every Holm-adjusted p-value is above it."""

    uniform: bool
    overall_p: float
    draws: int
    level: float
    tests: tuple = ()
    skipped: tuple = ()
    notes: tuple = field(default=())

    def to_dict(self) -> dict:
        return {"uniform": self.uniform, "overall_p": self.overall_p, "draws": self.draws, "level": self.level,
                "tests": [t.to_dict() for t in self.tests], "skipped": list(self.skipped)}


# -- reading and validating samples ------------------------------------------------------


def read_samples(path: str, space: SearchSpace):
    """Read a JSON Lines file of architectures into (layers, kernel, stride) arrays, each checked.

    Raises:
        NasgenError: unreadable file, malformed line, or an architecture
            outside ``space`` (naming the line and the first bad layer).
    """
    N, K = space.max_layers, space.dims
    layers, kernel, stride, lines = [], [], [], []
    try:
        handle = open(path, encoding="utf-8")
    except OSError as exc:
        raise NasgenError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        try:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    data = json.loads(line)
                    k, s = data["kernel"], data["stride"]
                    L = len(k)
                    if not 1 <= L <= N or len(s) != L or any(len(r) != K for r in k) or any(len(r) != K for r in s):
                        raise ValueError
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    # The slow path names exactly what is wrong.
                    try:
                        check_membership(space, Architecture.from_json(line))
                    except ArchitectureError as exc:
                        raise ArchitectureError(f"{path} line {number}: {exc}") from None
                    raise ArchitectureError(f"{path} line {number}: not an architecture of this space") from None
                layers.append(L)
                kernel.append(k + [[0] * K] * (N - L))
                stride.append(s + [[0] * K] * (N - L))
                lines.append(number)
        except UnicodeDecodeError:
            raise NasgenError(f"{path} is not a UTF-8 JSON Lines file") from None
    try:
        arrays = (np.array(layers, dtype=np.int64).reshape(-1), np.array(kernel, dtype=np.int64).reshape(-1, N, K),
                  np.array(stride, dtype=np.int64).reshape(-1, N, K))
    except (ValueError, OverflowError):
        raise ArchitectureError(f"{path}: kernels and strides must be integers") from None
    bad = validate_arrays(space, *arrays)[1]
    if bad is not None:
        i = int(bad)
        L = int(arrays[0][i])
        arch_text = json.dumps({"kernel": arrays[1][i, :L].tolist(), "stride": arrays[2][i, :L].tolist()})
        try:
            check_membership(space, Architecture.from_json(arch_text))
        except ArchitectureError as exc:
            raise ArchitectureError(f"{path} line {lines[i]}: the architecture is not in the space "
                                    f"{space.describe()}: {exc}") from None
        raise ArchitectureError(f"{path} line {lines[i]}: the architecture is not in the space")  # pragma: no cover
    return arrays


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


# -- exact tables in float ---------------------------------------------------------------------


class _Tables:
    """Forward and backward chain counts (float64) of one space's graph components."""

    def __init__(self, space: SearchSpace) -> None:
        from nasgen.space.tables import SpaceTables

        compiled = SpaceTables(space)
        self.space = space
        self.compiled = compiled
        graph = compiled.graph
        sizes, edge_ptr, edge_dst, edge_mult = graph.sizes, graph.edge_ptr, graph.edge_dst, graph.edge_mult
        self.sizes = sizes.reshape(len(sizes), -1)
        S = self.sizes.shape[0]
        self.S = S
        g = compiled.g.astype(np.float64)
        self.g = sum(g[..., w] * 2.0 ** (64 * w) for w in range(g.shape[2]))  # (N+1, S)
        src = np.repeat(np.arange(S), np.diff(edge_ptr))
        N = space.max_layers
        self.total = compiled.count
        self.p_layers = {L: c / self.total for L, c in compiled.by_layers.items()}
        self.forward = {}
        for start in set(compiled.components.start.tolist()):
            f = np.zeros((N + 1, S))
            f[0, start] = 1.0
            for j in range(N):
                f[j + 1] = np.bincount(edge_dst, weights=f[j][src] * edge_mult, minlength=S)
            self.forward[start] = f
        self._transitions: dict = {}
        # State lookup: size tuple -> state index, per component (states reachable from its start).
        self.lookup = {}
        for start in set(compiled.components.start.tolist()):
            reach = self.forward[start].sum(axis=0) > 0
            self.lookup[start] = {tuple(self.sizes[u].tolist()): u for u in np.flatnonzero(reach)}

    def components(self):
        c = self.compiled
        for i in range(len(c.components.start)):
            yield int(c.components.start[i]), int(c.components.kd[i]), int(c.components.dim0[i]), i

    def chains(self, comp: int, L: int) -> float:
        return self.g[L, int(self.compiled.components.start[comp])]

    def transitions(self, start: int, l: int):
        """Every (u, k, s, v) a chain of the component can take at layer position l, as arrays."""
        key = (start, l)
        if key not in self._transitions:
            self._transitions[key] = self._build_transitions(start, l)
        return self._transitions[key]

    def _build_transitions(self, start: int, l: int):
        space = self.space
        f = self.forward[start][l]
        lookup = self.lookup[start]
        us, ks, ss, vs = [], [], [], []
        kmin, kmax = space.kernel_range or (1, 1 << 62)
        smin, smax = space.stride_range or (1, 1 << 62)
        for u in np.flatnonzero(f > 0):
            x = self.sizes[u]
            top = int(x.min())
            k, s = np.meshgrid(np.arange(1, top + 1), np.arange(1, top + 1), indexing="ij")
            k, s = k.ravel(), s.ravel()
            good = (k >= kmin) & (k <= kmax) & (s >= smin) & (s <= smax)
            if space.relation == "gt":
                good &= k > s
            elif space.relation == "ge":
                good &= k >= s
            k, s = k[good], s[good]
            ys = []
            good = np.ones(len(k), dtype=bool)
            for d in range(len(x)):
                span = x[d] - k
                if space.rounding == "exact":
                    good &= span % s == 0
                y = span // s + 1
                if space.pool is not None:
                    dim = int(self._dim_of(start)) + d
                    pk, ps = space.pool[dim]
                    good &= y >= pk
                    if space.rounding == "exact":
                        good &= (y - pk) % ps == 0
                    y = np.where(y >= pk, (y - pk) // ps + 1, 0)
                ys.append(y)
            idx = np.flatnonzero(good)
            if len(x) == 1:
                table = np.full(int(x[0]) + 2, -1, dtype=np.int64)
                for size, v in lookup.items():
                    if size[0] < len(table):
                        table[size[0]] = v
                v = table[np.clip(ys[0][idx], 0, len(table) - 1)]
            else:
                v = np.array([lookup.get(tuple(int(y[i]) for y in ys), -1) for i in idx], dtype=np.int64)
            keep = v >= 0
            idx, v = idx[keep], v[keep]
            us.append(np.full(len(idx), u))
            ks.append(k[idx])
            ss.append(s[idx])
            vs.append(v)
        cat = lambda parts: np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)  # noqa: E731
        return cat(us), cat(ks), cat(ss), cat(vs)

    def _dim_of(self, start: int) -> int:
        c = self.compiled
        return int(c.components.dim0[list(c.components.start).index(start)])


# -- statistics -----------------------------------------------------------------------------------


def _chi_square(name: str, observed: np.ndarray, probabilities: np.ndarray, draws: int) -> TestResult | None:
    """Pearson's chi-square with sparse categories merged; None when fewer than two categories remain."""
    from scipy.stats import chi2

    expected = probabilities * draws
    order = np.argsort(expected)
    expected, observed = expected[order], observed[order]
    small = expected < MIN_EXPECTED
    cells_e = list(expected[~small])
    cells_o = list(observed[~small])
    if small.any():
        rest_e, rest_o = float(expected[small].sum()), float(observed[small].sum())
        if rest_e >= MIN_EXPECTED or not cells_e:
            cells_e.append(rest_e)
            cells_o.append(rest_o)
        else:
            cells_e[0] += rest_e
            cells_o[0] += rest_o
    cells_e, cells_o = np.array(cells_e), np.array(cells_o, dtype=np.float64)
    cells_o, cells_e = cells_o[cells_e > 0], cells_e[cells_e > 0]
    if len(cells_e) < 2:
        return None
    statistic = float(((cells_o - cells_e) ** 2 / cells_e).sum())
    df = len(cells_e) - 1
    return TestResult(name, statistic, df, float(chi2.sf(statistic, df)))


def _holm(tests: list[TestResult]) -> list[TestResult]:
    m = len(tests)
    order = sorted(range(m), key=lambda i: tests[i].p_value)
    adjusted = [0.0] * m
    running = 0.0
    for rank_, i in enumerate(order):
        running = max(running, min(1.0, (m - rank_) * tests[i].p_value))
        adjusted[i] = running
    return [TestResult(t.name, t.statistic, t.df, t.p_value, a) for t, a in zip(tests, adjusted)]


def check_uniformity(space: SearchSpace, arrays, level: float = 0.001, replace: bool = True,
                     whole_space_limit: int = WHOLE_SPACE_LIMIT) -> CheckResult:
    """Test whether ``arrays`` (layers, kernel, stride) are uniform draws from ``space``.

    Args:
        space: the search space.
        arrays: ``(layers (M,), kernel (M, N, K), stride (M, N, K))``.
        level: the significance level of the overall verdict.
        replace: True for independent draws (repeats are tested against their
            expectation); False for distinct draws (any repeat fails).
        whole_space_limit: enumerate spaces up to this size for the whole-space test.

    Returns:
        A :class:`CheckResult`.

    Raises:
        NasgenError: an empty sample, a bad level, or an architecture outside the space.
    """
    try:
        from scipy.stats import poisson
    except ImportError:
        raise NasgenError('nasgen check needs scipy, which is not installed: pip install "nasgen[samplers]"') from None

    if not 0 < level < 1:
        raise NasgenError(f"--level must be in (0, 1), got {level}")
    layers, kernel, stride = (np.asarray(a, dtype=np.int64) for a in arrays)
    M = len(layers)
    if M == 0:
        raise NasgenError("the samples file holds no architectures: nothing to check")
    if kernel.shape[1:] != (space.max_layers, space.dims):
        raise NasgenError(f"the samples have shape {kernel.shape[1:]} per architecture; the space needs "
                          f"({space.max_layers}, {space.dims})")
    sizes, bad = validate_arrays(space, layers, kernel, stride)
    if bad is not None:
        raise ArchitectureError(f"architecture {bad} is not in the space {space.describe()}")
    tables = _Tables(space)
    tests: list[TestResult] = []
    skipped: list[str] = []

    def add(result, name):
        if result is None:
            skipped.append(f"{name} (one category)")
        else:
            tests.append(result)

    N = space.max_layers
    values = sorted(tables.p_layers)
    probs = np.array([tables.p_layers[L] for L in values])
    observed = np.array([(layers == L).sum() for L in values], dtype=np.float64)
    add(_chi_square("layers", observed, probs, M), "layers")
    pair_base = int(max(space.input_shape)) + 1
    for start, kd, dim0, comp in tables.components():
        for l in range(N):
            label = f"[layer {l}]" if kd > 1 else f"[layer {l}, dim {dim0}]"
            pL = {L: p for L, p in tables.p_layers.items() if p > 0}
            u, k, s, v = tables.transitions(start, l)
            f = tables.forward[start][l]
            # Weight of each transition: sum over L > l of P(L) f[l][u] g[L-l-1][v] / chains(L).
            w = np.zeros(len(u))
            inactive = sum(p for L, p in pL.items() if L <= l)
            for L, p in pL.items():
                if L > l:
                    w += p * f[u] * tables.g[L - l - 1, v] / tables.chains(comp, L)
            codes = k * pair_base + s
            pair_p = np.bincount(codes, weights=w, minlength=pair_base * pair_base)
            pair_p[0] += inactive
            obs_codes = kernel[:, l, dim0] * pair_base + stride[:, l, dim0]
            pair_o = np.bincount(obs_codes, minlength=pair_base * pair_base).astype(np.float64)
            support = pair_p > 0
            add(_chi_square(f"pair{label} (kernel, stride)", pair_o[support], pair_p[support], M),
                f"pair{label}")
            size_p = np.bincount(v, weights=w, minlength=tables.S)
            end = tables.lookup[start][tuple(space.output_shape[dim0:dim0 + kd])]
            size_p[end] += inactive
            state_of = tables.lookup[start]
            obs_states = np.array([state_of.get(tuple(r), -1) for r in sizes[:, l, dim0:dim0 + kd].tolist()])
            size_o = np.bincount(obs_states, minlength=tables.S).astype(np.float64)
            support = size_p > 0
            add(_chi_square(f"size{label}", size_o[support], size_p[support], M), f"size{label}")
            if l + 1 < N:
                result = _adjacent(tables, start, comp, l, (u, k, s, v), pL, kernel, stride, dim0, M, pair_base)
                if result == "skipped":
                    skipped.append(f"adjacent{label} and next (too many categories)")
                else:
                    add(result, f"adjacent{label} and next")
    vectors = _pack(space, layers, kernel, stride)
    keys, counts = np.unique(vectors, axis=0, return_counts=True)
    distinct = len(keys)
    C = tables.total
    if C <= whole_space_limit:
        tests_whole = _whole_space(tables.compiled, keys, counts, M, C)
        if tests_whole is not None:
            tests.append(tests_whole)
        else:
            skipped.append("whole space (one bin)")
    else:
        skipped.append(f"whole space ({C} architectures, more than {whole_space_limit})")
    repeats = M - distinct
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
            from scipy.stats import norm

            p = float(2 * norm.sf(abs(z)))
        tests.append(TestResult(f"repeats (expected {expected_repeats:.4g})", float(repeats), 0, p))
    else:
        tests.append(TestResult("repeats (distinct draws: expected 0)", float(repeats), 0,
                                1.0 if repeats == 0 else 0.0))
    tests = _holm(tests)
    overall = min(t.p_adjusted for t in tests)
    return CheckResult(uniform=overall > level, overall_p=overall, draws=M, level=level, tests=tuple(tests),
                       skipped=tuple(skipped))


def _adjacent(tables: _Tables, start, comp, l, first, pL, kernel, stride, dim0, M, pair_base):
    """Joint test of layers l and l + 1's pairs (one component)."""
    u1, k1, s1, v1 = first
    u2, k2, s2, v2 = tables.transitions(start, l + 1)
    if len(u1) * 8 > ADJACENT_LIMIT or len(u2) * 8 > ADJACENT_LIMIT:
        return "skipped"
    f = tables.forward[start][l]
    code1 = k1 * pair_base + s1
    code2 = k2 * pair_base + s2
    P = pair_base * pair_base
    joint: dict[tuple[int, int], float] = {}
    by_state: dict[int, list[int]] = {}
    for i, u in enumerate(u2.tolist()):
        by_state.setdefault(u, []).append(i)
    for i in range(len(u1)):
        base = f[u1[i]]
        v = int(v1[i])
        for L, p in pL.items():
            if L == l + 1:
                key = (int(code1[i]), 0)
                joint[key] = joint.get(key, 0.0) + p * base * tables.g[0, v] / tables.chains(comp, L)
            elif L > l + 1:
                for j in by_state.get(v, ()):
                    key = (int(code1[i]), int(code2[j]))
                    joint[key] = joint.get(key, 0.0) + p * base * tables.g[L - l - 2, v2[j]] / tables.chains(comp, L)
        if len(joint) > ADJACENT_LIMIT:
            return "skipped"
    inactive = sum(p for L, p in pL.items() if L <= l)
    if inactive:
        joint[(0, 0)] = joint.get((0, 0), 0.0) + inactive
    keys = list(joint)
    probs = np.array([joint[key] for key in keys])
    index = {a * P + b: i for i, (a, b) in enumerate(keys)}
    obs = (kernel[:, l, dim0] * pair_base + stride[:, l, dim0]) * P + (kernel[:, l + 1, dim0] * pair_base
                                                                       + stride[:, l + 1, dim0])
    observed = np.zeros(len(keys))
    for code, n in zip(*np.unique(obs, return_counts=True)):
        observed[index[int(code)]] += n
    label = f"[layers {l}, {l + 1}]" if tables.compiled.components.kd[comp] > 1 else f"[layers {l}, {l + 1}, dim {dim0}]"
    return _chi_square(f"adjacent pairs{label}", observed, probs, M)


def _pack(space: SearchSpace, layers, kernel, stride) -> np.ndarray:
    from nasgen.space.tables import encode

    return encode(space, (layers, kernel, stride))


def _whole_space(tables, keys: np.ndarray, counts: np.ndarray, M: int, C: int) -> TestResult | None:
    """One category per architecture, merged into bins of consecutive ranks of expected count >= 5."""
    space = tables.space
    # Packed canonical vectors back to arrays, to rank them.
    bits = np.unpackbits(keys.view(np.uint8), axis=1, bitorder="little")[:, : space.vector_bits]
    from nasgen.samplers.hashing import decode_bits

    ranks = np.array(tables.rank(*decode_bits(space, bits)), dtype=object)
    width = max(1, math.ceil(MIN_EXPECTED * C / M))
    bins = math.ceil(C / width)
    observed = np.zeros(bins)
    for r, n in zip(ranks, counts):
        observed[int(r) // width] += n
    sizes = np.full(bins, width, dtype=np.float64)
    sizes[-1] = C - width * (bins - 1)
    return _chi_square("whole space" + (f" (bins of {width})" if width > 1 else ""), observed, sizes / C, M)
