"""Constrained spaces: ``--where`` absorbed into the exact tables where it can be, rejection for the rest.

The conjunction of ``--where`` expressions is split into *atoms* (the
operands of the top-level ``and``s, with ``max(...) <= e`` and
``min(...) >= e`` split into one comparison per argument). Each atom is one
of:

* a **layers atom** (it reads only ``layers``, or nothing): it restricts the
  distribution of the number of layers;
* a **position atom** (it reads ``k``, ``s`` and ``size`` of one layer
  position ``l``, and only dimensions of one independent chain: one
  dimension, or every dimension of a square space): it restricts which
  (kernel, stride) pairs and sizes layer ``l`` may use. The chain graph is
  unrolled over positions ``0..l`` (states become (position, size)), and at
  position ``l`` each edge keeps only the pairs that satisfy the atom, as an
  explicit pair table. On chains with ``L <= l`` layers the atom reads the
  inactive values (k = s = 0, size = the output size), which either allow
  those L or forbid them. ``all(body)`` is one position atom per position
  (``k[l][d] == 0 or body[l][d]``), and a comparison of ``layers`` with a
  constant that only asks whether layer ``l`` is active (``layers <= l``) is
  read as ``k[l][d] == 0`` (an active kernel is at least 1), so such guards
  stay position atoms;
* a **rejected atom** (anything else: several positions or chains, sums and
  products over layers, ``params``, ``flops``, ``layers`` mixed with sizes):
  evaluated vectorised (:meth:`nasgen.constraints.language.Where.evaluate_arrays`) on
  draws from the restricted exact sampler and applied by rejection.

Absorption keeps counting and sampling exact; rejection of independent
uniform draws from the restricted space is exactly uniform on the
constrained set (dropping repeats gives distinct samples in uniformly random
order). Counting with rejected atoms is exact when the restricted space is
small enough to enumerate and filter (:data:`ENUMERATE_LIMIT`), otherwise an
estimate with a 95% Wilson score interval from a seeded run of draws.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from nasgen.space import backend
from nasgen.space.draws import SampleStream, check_depth_weights, check_samples, check_threads, seed_sequence
from nasgen.space.tables import ChainStructure, SpaceTables, space_structure
from nasgen.common.errors import EmptySpaceError, NasgenError
from nasgen.space.definition import SearchSpace
from nasgen.constraints.language import (ArrayAlgebra, Node, Where, evaluate_all_arrays, expand, fold,
                                         parse_where_all, walk)
from nasgen.common.errors import RejectionBudgetError
from nasgen.common.stats import wilson_interval

__all__ = [
    "Atom",
    "restrict",
    "ConstrainedSpace",
    "CountResult",
    "DEFAULT_MAX_DRAWS",
    "ENUMERATE_LIMIT",
    "split_atoms",
]

#: Count exactly by enumerate-and-filter when the restricted space has at most this many members.
ENUMERATE_LIMIT = 10**8
#: Default budget of candidate draws for sampling by rejection.
DEFAULT_MAX_DRAWS = 10**7
#: Sample from the filtered members when the restricted space has at most this many.
SMALL_SPACE = 10**6
#: Default number of draws for an estimated count.
DEFAULT_ESTIMATE_DRAWS = 10**6
_CHUNK = 1 << 16


@dataclass(frozen=True)
class Atom:
    """One conjunct of the ``--where`` constraints.

    Attributes:
        text: the atom rendered back as an expression (for messages and reports).
        tree: its checked expression tree.
        kind: ``"layers"``, ``"position"`` or ``"rejected"``.
        layer: the layer position of a position atom, else None.
        component: the chain (index into the space's components) of a position atom, else None.
    """

    text: str
    tree: Node = field(repr=False)
    kind: str
    layer: int | None = None
    component: int | None = None

    def where(self) -> Where:
        return Where(text=self.text, tree=self.tree)


# -- splitting ---------------------------------------------------------------


def _render(node: Node) -> str:
    tag = node[0]
    if tag == "const":
        return str(node[1])
    if tag == "layers":
        return "layers"
    if tag == "model":
        return node[1]
    if tag == "var":
        return f"{node[1]}[{node[2]}][{node[3]}]"
    if tag == "row":
        return f"{node[1]}[{node[2]}]"
    if tag == "neg":
        return f"-{_wrap(node[1])}"
    if tag == "arith":
        return f"{_wrap(node[2])} {node[1]} {_wrap(node[3])}"
    if tag == "call":
        if node[1] == "abs":
            return f"abs({_render(node[2][0])})"
        return f"{node[1]}([{', '.join(_render(a) for a in node[2])}])"
    if tag == "cmp":
        return f"{_wrap(node[2])} {node[1]} {_wrap(node[3])}"
    if tag == "in":
        return _render_membership(node, "in")
    if tag in ("and", "or"):
        return f" {tag} ".join(_wrap(c) for c in node[1])
    if tag == "cell":
        return node[1]
    if tag in ("all", "any"):
        return f"{tag}({_render(node[1])})"
    if node[1][0] == "in":
        return _render_membership(node[1], "not in")
    return f"not {_wrap(node[1])}"


def _render_membership(node: Node, op: str) -> str:
    values = ", ".join(str(v) for _, v in node[2])
    return f"{_wrap(node[1])} {op} ({values}{',' if len(node[2]) == 1 else ''})"


def _wrap(node: Node) -> str:
    text = _render(node)
    return f"({text})" if node[0] in ("arith", "cmp", "in", "and", "or", "not", "neg") else text


def _arguments(call: Node, dims: int) -> list[Node]:
    out = []
    for child in call[2]:
        if child[0] == "row":
            out.extend(("var", child[1], child[2], d) for d in range(dims))
        else:
            out.append(child)
    return out


def _is_call(node: Node, fn: str) -> bool:
    return node[0] == "call" and node[1] == fn


def _conjuncts(node: Node, dims: int) -> Iterator[Node]:
    """The top-level conjuncts, with max(...) <= e and min(...) >= e split per argument."""
    if node[0] == "and":
        for child in node[1]:
            yield from _conjuncts(child, dims)
        return
    if node[0] == "cmp":
        _, op, a, b = node
        if (_is_call(a, "max") and op in ("<", "<=")) or (_is_call(a, "min") and op in (">", ">=")):
            for x in _arguments(a, dims):
                yield from _conjuncts(("cmp", op, x, b), dims)
            return
        if (_is_call(b, "max") and op in (">", ">=")) or (_is_call(b, "min") and op in ("<", "<=")):
            for x in _arguments(b, dims):
                yield from _conjuncts(("cmp", op, a, x), dims)
            return
    yield node


def _component_of_dimension(space: SearchSpace) -> list[int]:
    if space.square and space.dims > 1:
        return [0] * space.dims
    return list(range(space.dims))


def split_atoms(wheres: Iterable[str | Where], space: SearchSpace, model: Any = None) -> list[Atom]:
    """Split the conjunction of ``wheres`` into classified atoms.

    ``all(body)`` splits into one atom per position (``k[l][d] == 0 or body[l][d]``); a
    comparison of ``layers`` with a constant inside an atom of position l that only asks
    whether layer l is active (``layers <= l``, ``layers > l``, ...) is read as ``k[l][d] == 0``
    or ``k[l][d] != 0``, so ``layers <= l or k[l][d] % 2 == 1`` is a position atom too.

    Raises:
        WhereError: an index out of range for ``space``, or ``params``/``flops``
            without the model options.
    """
    wheres = parse_where_all(wheres)
    component = _component_of_dimension(space)
    atoms = []
    for where in wheres:
        where.check(space)
        where.check_model(model)
        for conjunct in _conjuncts(where.tree, space.dims):
            expanded = expand(conjunct, space.max_layers, space.dims)
            if expanded is conjunct or conjunct[0] == "all":
                parts = [(_render(tree), tree) for tree in _conjuncts(expanded, space.dims)]
            else:  # any(...), or all(...) under or/not: one atom, shown as written
                parts = [(_render(conjunct), expanded)]
            atoms.extend(_classify(text, tree, space, component) for text, tree in parts)
    return atoms


def _classify(text: str, tree: Node, space: SearchSpace, component: list[int]) -> Atom:
    positions, components, dims, reads_layers, reads_model = set(), set(), set(), False, False
    for node in walk(tree):
        if node[0] == "var":
            positions.add(node[2])
            components.add(component[node[3]])
            dims.add(node[3])
        elif node[0] == "row":
            positions.add(node[2])
            components.update(component)
            dims.update(range(space.dims))
        elif node[0] == "layers":
            reads_layers = True
        elif node[0] == "model":
            reads_model = True
    if not positions and not reads_model:
        return Atom(text, tree, "layers")
    if reads_model or len(positions) != 1 or len(components) != 1:
        return Atom(text, tree, "rejected")
    layer = next(iter(positions))
    if reads_layers:
        local = _localise_layers(tree, layer, min(dims), space)
        if local is None:
            return Atom(text, tree, "rejected")
        tree = local
    return Atom(text, tree, "position", layer=layer, component=components.pop())


_TRUE, _FALSE = ("cmp", "==", ("const", 0), ("const", 0)), ("cmp", "!=", ("const", 0), ("const", 0))
_FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
_HOLDS = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
          ">=": lambda a, b: a >= b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b}


def _localise_layers(node: Node, layer: int, dim: int, space: SearchSpace) -> Node | None:
    """``node`` with each ``layers OP c`` that depends only on whether ``layer`` is active rewritten as
    ``k[layer][dim] != 0`` (active) or ``== 0`` (inactive, since an active kernel is at least 1), or as a
    constant; None when ``layers`` is read any other way."""
    if node[0] == "layers":
        return None
    if node[0] == "cmp" and ("layers",) in (node[2], node[3]):
        _, op, a, b = node
        if a != ("layers",):
            op, a, b = _FLIPPED[op], b, a
        if b[0] != "const":
            return None
        depths = range(space.min_layers, space.max_layers + 1)
        inactive = {_HOLDS[op](L, b[1]) for L in depths if L <= layer}
        active = {_HOLDS[op](L, b[1]) for L in depths if L > layer}
        if len(inactive) > 1 or len(active) > 1:
            return None
        if len(inactive | active) == 1:
            return _TRUE if True in active | inactive else _FALSE
        return ("cmp", "!=" if True in active else "==", ("var", "k", layer, dim), ("const", 0))
    parts = []
    for part in node:
        if isinstance(part, tuple):
            part = _localise_layers(part, layer, dim, space)
        elif isinstance(part, list):
            part = [_localise_layers(c, layer, dim, space) for c in part]
            if None in part:
                return None
        if part is None:
            return None
        parts.append(part)
    return tuple(parts)
# -- evaluating atoms on columns ---------------------------------------------


class _ColumnAlgebra(ArrayAlgebra):
    """Evaluates a position atom on candidate (pair, size) columns of one layer position."""

    def __init__(self, columns: dict, count: int, exact_ints: bool) -> None:
        self.columns = columns
        self.count = count
        self.dtype = object if exact_ints else np.int64

    def layers(self):  # pragma: no cover - position atoms never read layers
        raise AssertionError("a position atom read layers")

    def var(self, name: str, layer: int, dim: int) -> np.ndarray:
        return self.columns[name, dim].astype(self.dtype)


def _evaluate_columns(atom: Atom, space: SearchSpace, columns: dict, count: int) -> np.ndarray:
    algebra = _ColumnAlgebra(columns, count, exact_ints=atom.where().magnitude(space) >= 2**62)
    result = fold(atom.tree, algebra, space.dims)
    return np.broadcast_to(np.asarray(result, dtype=bool), (count,)).copy()


def _layer_mask(atoms: Sequence[Atom], space: SearchSpace) -> np.ndarray:
    """allowed[L] for L in 0..N: in [n, N], every layers atom holds, and every position atom at l >= L
    holds on the inactive values of layer l."""
    N = space.max_layers
    allowed = np.zeros(N + 1, dtype=bool)
    allowed[space.min_layers:] = True
    values = np.arange(N + 1, dtype=np.int64)
    zeros = np.zeros((N + 1, N, space.dims), dtype=np.int64)
    for atom in atoms:
        if atom.kind == "layers":
            allowed &= atom.where().evaluate_arrays(values, zeros, zeros, space)
        elif atom.kind == "position":
            columns = {}
            for d in range(space.dims):
                columns["k", d] = columns["s", d] = np.zeros(1, dtype=np.int64)
                columns["size", d] = np.array([space.output_shape[d]], dtype=np.int64)
            if not _evaluate_columns(atom, space, columns, 1)[0]:
                allowed[: atom.layer + 1] = False
    return allowed


# -- restricted tables -------------------------------------------------------


#: A position atom past layer 0 lists every pair of its component's graph; beyond this many it is rejected instead.
MAX_EXPLICIT_PAIRS = 2 * 10**7


def _affordable(atoms: list[Atom], base: ChainStructure) -> list[Atom]:
    """Atoms, with position atoms whose pair tables would be too large turned into rejected atoms.

    At layer 0 only the start state's pairs are listed (at most about x^2 / 2);
    deeper, up to every pair of the component's graph part (about I^3 / 6 in
    one dimension with floor rounding), which is bounded here.
    """
    graph = base.graph
    total = int(graph.edge_mult.sum())
    out = []
    for atom in atoms:
        if atom.kind == "position" and atom.layer > 0 and total > MAX_EXPLICIT_PAIRS:
            atom = Atom(atom.text, atom.tree, "rejected")
        out.append(atom)
    return out


def _edges_of(graph: backend.ChainGraph, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(edge indices, their source states) of ``states``, in state order then edge order."""
    starts, stops = graph.edge_ptr[states], graph.edge_ptr[states + 1]
    counts = stops - starts
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(counts)[:-1])), counts)
    return np.arange(total, dtype=np.int64) + offsets, np.repeat(states, counts)


def restrict(space: SearchSpace, base: ChainStructure, atoms: Sequence[Atom]) -> ChainStructure:
    """Unroll each chain over its restricted positions and keep only the pairs its position atoms allow.

    States of the base graph stay (indices unchanged); each restricted
    component gains states (p, u) for p below its last restricted position
    plus one, reached from its start; its start moves to (0, start).
    """
    by_component: dict[int, dict[int, list[Atom]]] = {}
    for atom in atoms:
        if atom.kind == "position":
            by_component.setdefault(atom.component, {}).setdefault(atom.layer, []).append(atom)
    if not by_component:
        return base
    g = base.graph
    end_set = set(base.ends.tolist())
    sizes, ptr_counts, conv, dst, mult, pairs_at = [g.sizes], [np.diff(g.edge_ptr)], [g.edge_conv], [g.edge_dst], \
        [g.edge_mult], [g.edge_pairs if len(g.edge_pairs) else np.full(g.edges, -1, dtype=np.int64)]
    pair_kernel, pair_stride = [g.pair_kernel], [g.pair_stride]
    n_pairs = len(g.pair_kernel)
    next_state = g.states
    ends = list(base.ends.tolist())
    starts = base.components.start.copy()
    for c, positions in sorted(by_component.items()):
        depth = max(positions) + 1
        kd, dim0 = int(base.components.kd[c]), int(base.components.dim0[c])
        layer_states = [np.array([base.components.start[c]], dtype=np.int64)]
        kept = []  # per position: (edges, sources, new multiplicity, explicit pair start or -1)
        for p in range(depth):
            states = layer_states[p]
            edges, sources = _edges_of(g, states)
            new_mult = g.edge_mult[edges].copy()
            explicit = np.full(len(edges), -1, dtype=np.int64)
            if p in positions and len(edges):
                total = int(new_mult.sum())
                k, s = backend.list_pairs(g.sizes[sources], g.edge_conv[edges], base.rules, total)
                owner = np.repeat(np.arange(len(edges)), new_mult)
                after = g.sizes[g.edge_dst[edges]][owner]
                columns = {}
                for j in range(kd):
                    columns["k", dim0 + j], columns["s", dim0 + j] = k, s
                    columns["size", dim0 + j] = after[:, j]
                keep = np.ones(total, dtype=bool)
                for atom in positions[p]:
                    keep &= _evaluate_columns(atom, space, columns, total)
                new_mult = np.bincount(owner[keep], minlength=len(edges)).astype(np.int64)
                partial = (new_mult > 0) & (new_mult < g.edge_mult[edges])
                if partial.any():
                    chosen = keep & partial[owner]
                    first = np.searchsorted(np.flatnonzero(chosen), np.searchsorted(owner, np.arange(len(edges))))
                    explicit[partial] = n_pairs + first[partial]
                    pair_kernel.append(k[chosen])
                    pair_stride.append(s[chosen])
                    n_pairs += int(chosen.sum())
            live = new_mult > 0
            kept.append((edges[live], sources[live], new_mult[live], explicit[live]))
            layer_states.append(np.unique(g.edge_dst[edges[live]]))
        # Index the unrolled states, then write their edges.
        index = []
        for p in range(depth):
            index.append({int(u): next_state + i for i, u in enumerate(layer_states[p].tolist())})
            next_state += len(layer_states[p])
        for p in range(depth):
            edges, sources, new_mult, explicit = kept[p]
            states = layer_states[p]
            sizes.append(g.sizes[states])
            ptr_counts.append(np.bincount(np.searchsorted(states, sources), minlength=len(states)))
            conv.append(g.edge_conv[edges])
            targets = g.edge_dst[edges]
            if p + 1 < depth:
                targets = np.array([index[p + 1][int(v)] for v in targets.tolist()], dtype=np.int64)
            dst.append(targets)
            mult.append(new_mult)
            pairs_at.append(explicit)
            ends.extend(index[p][u] for u in states.tolist() if u in end_set)
        starts[c] = index[0][int(base.components.start[c])]
    edge_ptr = np.concatenate(([0], np.cumsum(np.concatenate(ptr_counts)))).astype(np.int64)
    graph = backend.make_graph(np.concatenate(sizes), edge_ptr, np.concatenate(conv), np.concatenate(dst),
                                np.concatenate(mult), np.concatenate(pairs_at), np.concatenate(pair_kernel),
                                np.concatenate(pair_stride))
    components = backend.make_components(starts, base.components.kd, base.components.dim0)
    return ChainStructure(graph, np.array(ends, dtype=np.int64), components, base.rules)


# -- the constrained space ---------------------------------------------------


@dataclass(frozen=True)
class CountResult:
    """The size of a constrained space.

    Attributes:
        count: the exact count, or the point estimate rounded to an integer.
        exact: whether ``count`` is exact.
        interval: (low, high) 95% interval of an estimate (integers), None when exact.
        draws: candidate draws of the estimate (0 when exact).
        acceptance: accepted / draws of the estimate (None when exact).
        restricted: the exact count of the space with only the absorbed atoms.
        stop: ``"complete"``, or ``"timeout"`` when the deadline cut the count short: then
            ``interval`` is what the work done proves (hard bounds after a cut enumeration,
            a 95% Wilson interval from the draws made before the deadline).
        enumerated: members of the restricted space filtered before a deadline cut the enumeration.
    """

    count: int
    exact: bool
    interval: tuple[int, int] | None = None
    draws: int = 0
    acceptance: float | None = None
    restricted: int = 0
    stop: str = "complete"
    enumerated: int = 0

    def to_dict(self) -> dict:
        out = {"count": self.count, "exact": self.exact}
        if not self.exact:
            out.update(interval=list(self.interval), draws=self.draws, acceptance=self.acceptance)
        if self.stop != "complete":
            out.update(stop=self.stop, enumerated=self.enumerated)
        return out


class ConstrainedSpace:
    """A search space under ``--where`` constraints: exact tables for what is absorbed, rejection for the rest.

    Args:
        space: the search space.
        where: expressions (strings or parsed), all of which must hold.
        model: the chain model's options, needed by ``params`` and ``flops``
            (a ModelSpec or any object with ``nasgen.constraints.costs.MODEL_OPTIONS``).
        base: the space's unrestricted :class:`~nasgen.space.tables.ChainStructure` (built when not given).

    Raises:
        WhereError: an expression that does not fit the space or lacks model options.
    """

    def __init__(self, space: SearchSpace, where: Iterable[str | Where] = (), model: Any = None,
                 base: ChainStructure | None = None) -> None:
        self.space = space
        self.model = model
        atoms = split_atoms(where, space, model)
        if base is None:
            base = space_structure(space)
        self.atoms = _affordable(atoms, base)
        self.rejected = [a.where() for a in self.atoms if a.kind == "rejected"]
        allowed = _layer_mask(self.atoms, space)
        #: the exact tables of the space restricted by the absorbed atoms
        self.tables = SpaceTables(space, restrict(space, base, self.atoms), allowed)

    @property
    def absorbed(self) -> list[Atom]:
        return [a for a in self.atoms if a.kind != "rejected"]

    @property
    def all_absorbed(self) -> bool:
        return not self.rejected

    def accept(self, layers, kernel, stride) -> np.ndarray:
        """(M,) bools: which draws satisfy the rejected atoms."""
        return evaluate_all_arrays(self.rejected, layers, kernel, stride, self.space, self.model)

    def count(self, seed=0, draws: int = DEFAULT_ESTIMATE_DRAWS, enumerate_limit: int = ENUMERATE_LIMIT,
              deadline: float | None = None) -> CountResult:
        """The number of architectures satisfying every constraint.

        Exact when every atom was absorbed, or when the restricted space has at
        most ``enumerate_limit`` members (they are enumerated and filtered);
        otherwise an estimate from ``draws`` seeded uniform draws with a 95%
        Wilson interval scaled by the restricted count.

        Args:
            seed: the seed of an estimate's draws.
            draws: how many draws an estimate makes.
            enumerate_limit: the largest restricted space enumerated and filtered.
            deadline: a ``time.monotonic()`` time; work is checked against it after
                every batch, and a count cut short ends with ``stop == "timeout"``
                and an interval from the work done (see :class:`CountResult`).

        >>> space = SearchSpace((30,), (20,), 1, 3)
        >>> result = ConstrainedSpace(space, ["sum(k[0]) + sum(k[1]) == 7"]).count()
        >>> result.count, result.exact, result.stop
        (4, True, 'complete')
        """
        restricted = self.tables.count
        if self.all_absorbed or restricted == 0:
            return CountResult(restricted, True, restricted=restricted)
        if restricted <= enumerate_limit:
            total = enumerated = 0
            for layers, kernel, stride in self.tables.enumerate_arrays(batch=_CHUNK):
                total += int(self.accept(layers, kernel, stride).sum())
                enumerated += len(layers)
                if deadline is not None and time.monotonic() >= deadline and enumerated < restricted:
                    # what was enumerated is exact; the rest may all pass or all fail
                    low, high = total, total + restricted - enumerated
                    return CountResult(count=round(restricted * total / enumerated), exact=False,
                                       interval=(low, high), draws=0, acceptance=total / enumerated,
                                       restricted=restricted, stop="timeout", enumerated=enumerated)
            return CountResult(total, True, restricted=restricted)
        _check_positive(draws, "draws")
        stream = SampleStream(self.tables, seed)
        accepted = done = 0
        stop = "complete"
        while done < draws:
            n = min(_CHUNK * 4 if deadline is None else _CHUNK, draws - done)
            accepted += int(self.accept(*stream.draw(n)).sum())
            done += n
            if deadline is not None and time.monotonic() >= deadline and done < draws:
                stop = "timeout"
                break
        low, high = wilson_interval(accepted, done)
        return CountResult(
            count=round(restricted * accepted / done),
            exact=False,
            interval=(math.floor(restricted * low), math.ceil(restricted * high)),
            draws=done,
            acceptance=accepted / done,
            restricted=restricted,
            stop=stop,
        )

    def iter_sample_arrays(self, samples: int, seed=0, replace: bool = False, chunk: int = _CHUNK,
                           max_draws: int = DEFAULT_MAX_DRAWS, statistics: dict | None = None,
                           enumerate_limit: int = SMALL_SPACE, deadline: float | None = None,
                           depth_weights: str = "space", threads: int | None = None):
        """Yield (layers, kernel, stride) chunks of a uniform sample of the constrained space.

        With every atom absorbed this is the exact sampler of the restricted
        tables. Otherwise, when the restricted space has at most
        ``enumerate_limit`` members they are enumerated and filtered, and the
        sample is drawn from the members; beyond that, independent uniform
        draws of the restricted space are filtered by the rejected atoms (and
        repeats dropped for distinct samples), chunk by chunk.

        Args:
            samples: M, how many to draw (distinct: at most the constrained count).
            seed: None, a non-negative int or a numpy Generator; same int, same draws.
            replace: False (default) for distinct architectures in uniformly
                random order; True for independent draws.
            chunk: candidate draws per batch.
            max_draws: the budget of candidate draws for rejection.
            statistics: a dict updated in place with ``draws``, ``accepted``
                and ``acceptance`` as the run goes.
            enumerate_limit: the largest restricted space filtered in full.
            deadline: a ``time.monotonic()`` time: checked after every batch of
                candidates (or of enumerated members); past it the generator ends
                early with what it has yielded, and ``statistics["stop"]`` is ``"timeout"``.
            depth_weights: ``"space"`` (uniform over the constrained space) or ``"uniform"`` (every
                non-empty depth equally likely, then uniform within it): with every atom absorbed; refused
                when atoms are applied by rejection (the depths' shares of the constrained space are not
                known in advance then).
            threads: threads drawing (and enumerating) each batch, 1..1024 (None: the cores this
                process may use); the sample does not depend on it.

        Raises:
            NasgenError: the constrained space is empty, a bad budget, or uniform depth weights under
                rejection.
            RejectionBudgetError: the budget ran out first; its message says how
                many were found, the acceptance measured, and which method to use.
        """
        _check_positive(max_draws, "max_draws")
        samples = check_samples(samples)
        check_depth_weights(depth_weights)
        threads = check_threads(threads)
        stats = statistics if statistics is not None else {}
        stats.update(draws=0, accepted=0, acceptance=None)
        restricted = self.tables.count
        if self.all_absorbed or restricted == 0:
            self._require_nonempty(restricted)
            for out in self.tables.iter_sample_arrays(samples, seed=seed, replace=replace, chunk=chunk,
                                                      depth_weights=depth_weights, threads=threads):
                stats["draws"] += len(out[0])
                stats["accepted"] += len(out[0])
                stats["acceptance"] = 1.0
                yield out
            return
        if depth_weights != "space":
            rejected = " and ".join(a.text for a in self.atoms if a.kind == "rejected")
            raise NasgenError(
                f"depth weights {depth_weights!r} need constraints the tables absorb: {rejected} is applied by "
                "rejection, so the depths' shares of the constrained space are not known in advance; use depth "
                "weights 'space' or an absorbed form of the constraint (see the README's Constraints)")
        if restricted <= enumerate_limit:
            members = []
            for arrays in self.tables.enumerate_arrays(batch=chunk, threads=threads):
                keep = self.accept(*arrays)
                members.append(tuple(a[keep] for a in arrays))
                if _past(deadline):  # the members are not all known: no uniform draw is possible yet
                    stats["stop"] = "timeout"
                    return
            members = tuple(np.concatenate(parts) for parts in zip(*members))
            total = len(members[0])
            stats.update(draws=restricted, accepted=total, acceptance=total / restricted)
            self._require_nonempty(total)
            rng = np.random.default_rng(seed_sequence(seed))
            picks = rng.integers(0, total, size=samples) if replace else rng.permutation(total)[:samples]
            for start in range(0, len(picks), chunk):
                part = picks[start:start + chunk]
                yield tuple(a[part] for a in members)
            return
        stream = SampleStream(self.tables, seed)
        seen: set[bytes] = set()
        found = 0
        bits = self.space.bit_width
        while found < samples:
            if stats["draws"] >= max_draws:
                raise RejectionBudgetError(
                    f"the draw budget of {max_draws} candidates ran out with {found} of {samples} architectures "
                    f"found (acceptance {_acceptance_text(stats)}): raise max_draws (--max-draws) or use "
                    "--method unigen"
                )
            n = min(chunk, max_draws - stats["draws"])
            layers, kernel, stride = stream.draw(n, threads)
            keep = self.accept(layers, kernel, stride)
            stats["draws"] += n
            stats["accepted"] += int(keep.sum())
            stats["acceptance"] = stats["accepted"] / stats["draws"]
            idx = np.flatnonzero(keep)
            if not replace and len(idx):
                rows = backend.encode_bits(layers[idx], kernel[idx], stride[idx], bits)
                fresh = []
                for i, row in zip(idx.tolist(), rows):
                    key = row.tobytes()
                    if key not in seen:
                        seen.add(key)
                        fresh.append(i)
                idx = np.array(fresh, dtype=np.int64)
            idx = idx[: samples - found]
            if len(idx):
                found += len(idx)
                yield layers[idx], kernel[idx], stride[idx]
            if found < samples and _past(deadline):
                stats["stop"] = "timeout"
                return

    def _require_nonempty(self, count: int) -> None:
        """Raise EmptySpaceError (one line) when ``count`` says the constrained space is empty."""
        if count == 0:
            raise EmptySpaceError(f"the constrained space is empty: no architecture of {self.space.describe()} "
                              f"satisfies {' and '.join(a.text for a in self.atoms)}")


def _past(deadline: float | None) -> bool:
    """Whether the ``time.monotonic()`` deadline (None: none) has passed."""
    return deadline is not None and time.monotonic() >= deadline


def _acceptance_text(stats: dict) -> str:
    if not stats["draws"]:
        return "not measured"
    return f"{stats['accepted']}/{stats['draws']} = {stats['accepted'] / stats['draws']:.3g}"


def _check_positive(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise NasgenError(f"{name} must be a positive integer, got {value!r}")
