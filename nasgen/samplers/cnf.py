"""A search space as CNF (DIMACS) whose sampling set is exactly the canonical bit-vector.

The CNF is built directly from the dynamic program's pruned domains
(:func:`nasgen.space.tables.layer_domains`), not by bit-blasting arithmetic: every
layer position l and dimension d is a small circuit of one-hot tables.

Variables 1..V are the sampling set, in canonical bit-vector order (README,
"The canonical bit-vector"): for l = 0..N-1 and d = 0..K-1 the B bits of
``k[l][d]`` (least significant first) then the B bits of ``s[l][d]``; then
the N activation bits (``active[l]`` true iff l < number of layers). So
variable ``v <= V`` is bit ``v - 1`` of the canonical vector, and an
external tool's solution decodes without the map (the map is written as
comments all the same). Inactive layers have k = s = 0.

Auxiliary variables (all above V), for each position and dimension:

* ``kval[k]`` / ``sval[s]``: the kernel (stride) bits spell k (s), for every
  value in the pruned domain; ``sge[v]``: s >= v (order encoding).
* ``at[x]``: the size entering the layer is x (one-hot; the input size is a
  constant at l = 0).
* ``wval[w]``, ``wge[w]``: w = x - k, from one row ``at[x] and kval[k]`` per
  pair with k <= x.
* ``cval[c]``: the size after the convolution, c = w // s + 1 (floor; a
  w-interval per (s, c)) or w = (c - 1) * s (exact).
* ``yval[y]``: the size after the pool; ``pass[y]``: the layer is inactive
  and passes y through; the next position's ``at[y]`` is ``yval[y] or pass[y]``.

Every auxiliary variable is *defined* (an equivalence, Tseitin style) from
the sampling variables, so each architecture is exactly one model of the
whole CNF: projected and unprojected model counts agree, and samplers that
take no sampling set (CMSGen) still draw whole architectures. ``--where``
constraints are lowered through z3 (``simplify`` then ``bit-blast``, never
``solve-eqs`` or ``propagate-values``, which can eliminate sampling
variables) and turned into clauses by :func:`_tseitin` here, again with
equivalences, over the sampling bits and the one-hot sizes.

The header comments (``c nasgen ...``) record the space and the ``--where``
expressions, so ``nasgen decode`` needs only the CNF and the solutions.
"""

from __future__ import annotations

import io
import json
import os
import re
from dataclasses import dataclass, field
from typing import IO, Iterable, Iterator, Sequence

import numpy as np

from nasgen.common.errors import ArchitectureError, NasgenError
from nasgen.space.definition import Architecture, SearchSpace, check_membership, conv_output_size
from nasgen.common.errors import CnfError

__all__ = ["Cnf", "encode_space", "write_dimacs", "read_dimacs", "parse_solutions",
           "decode_solutions", "FORMAT_VERSION"]

FORMAT_VERSION = 1


@dataclass
class Cnf:
    """One space as clauses.

    Attributes:
        space: the search space.
        where: the ``--where`` expressions folded in (their text).
        num_vars: the number of variables.
        clauses: lists of non-zero ints (DIMACS literals).
        sampling: the sampling set, variables 1..V in canonical bit order.
        sizes: ``sizes[l][d]`` maps a size to the variable meaning "the size
            after layer l in dimension d is that size" (inactive layers pass
            their input size through).
    """

    space: SearchSpace
    where: tuple = ()
    num_vars: int = 0
    clauses: list = field(default_factory=list)
    sampling: list = field(default_factory=list)
    sizes: list = field(default_factory=list)

    # -- variable layout -------------------------------------------------------

    def kernel_var(self, layer: int, dim: int, bit: int) -> int:
        """Variable of bit ``bit`` (LSB = 0) of ``k[layer][dim]``."""
        B = self.space.bit_width
        return 1 + (layer * self.space.dims + dim) * 2 * B + bit

    def stride_var(self, layer: int, dim: int, bit: int) -> int:
        """Variable of bit ``bit`` of ``s[layer][dim]``."""
        return self.kernel_var(layer, dim, bit) + self.space.bit_width

    def active_var(self, layer: int) -> int:
        """Variable that is true iff ``layer`` < the number of layers."""
        space = self.space
        return 1 + space.max_layers * space.dims * 2 * space.bit_width + layer

    def new_var(self) -> int:
        self.num_vars += 1
        return self.num_vars

    def add(self, clause: Sequence[int]) -> None:
        self.clauses.append(list(clause))

    def define_and(self, lits: Sequence[int]) -> int:
        """A fresh variable equivalent to the conjunction of ``lits``."""
        v = self.new_var()
        for lit in lits:
            self.clauses.append([-v, lit])
        self.clauses.append([v] + [-lit for lit in lits])
        return v

    def define_or(self, lits: Sequence[int]) -> int:
        """A fresh variable equivalent to the disjunction of ``lits`` (false when empty)."""
        v = self.new_var()
        for lit in lits:
            self.clauses.append([v, -lit])
        self.clauses.append([-v] + list(lits))
        return v

    # -- output --------------------------------------------------------------

    def comment_map(self) -> list[str]:
        """Comment lines naming every sampling variable."""
        space, lines = self.space, []
        for l in range(space.max_layers):
            for d in range(space.dims):
                for b in range(space.bit_width):
                    lines.append(f"c nasgen var {self.kernel_var(l, d, b)} kernel {l} {d} {b}")
                for b in range(space.bit_width):
                    lines.append(f"c nasgen var {self.stride_var(l, d, b)} stride {l} {d} {b}")
        for l in range(space.max_layers):
            lines.append(f"c nasgen var {self.active_var(l)} active {l}")
        return lines


# -- encoding ------------------------------------------------------------------


def encode_space(space: SearchSpace, where: Iterable = ()) -> Cnf:
    """The CNF of ``space`` (and every ``--where`` expression).

    Args:
        space: the search space.
        where: ``--where`` expressions (strings or parsed ``Where``); they need z3.

    Returns:
        A :class:`Cnf` whose models projected on variables 1..V are exactly
        the canonical bit-vectors of the space's architectures that satisfy
        every expression (one model per architecture: every other variable
        is defined by them).

    Raises:
        NasgenError: the space is empty, or too large for the tables.
        nasgen.constraints.language.WhereError: an expression that does not fit the space.

    >>> cnf = encode_space(SearchSpace((30,), (20,), 2, 2))
    >>> len(cnf.sampling), cnf.num_vars > len(cnf.sampling)
    (22, True)
    """
    from nasgen.space.tables import SpaceTables
    from nasgen.constraints.language import parse_where_all

    wheres = parse_where_all(where)
    for w in wheres:
        w.check(space)
    tables = SpaceTables(space)
    if tables.count == 0:
        raise NasgenError(f"the space {space.describe()} is empty: there is nothing to encode; "
                          "widen the layer bounds, ranges or relation")
    N, K, B = space.max_layers, space.dims, space.bit_width
    cnf = Cnf(space=space, where=tuple(w.text for w in wheres))
    cnf.num_vars = N * K * 2 * B + N
    cnf.sampling = list(range(1, cnf.num_vars + 1))
    domains = tables.layer_domains()
    _encode_activations(cnf, space)
    atoms, rest = _split_atoms(wheres, space)
    _encode_layer_atoms(cnf, space, atoms.get(("layers",), []))
    TRUE = cnf.new_var()
    cnf.add([TRUE])
    at = [{space.input_shape[d]: TRUE} for d in range(K)]
    for l in range(N):
        row = []
        for d in range(K):
            allowed = {name: atoms.get((name, l, d), []) for name in ("k", "s", "size")}
            row.append(_encode_position(cnf, space, l, d, domains[l][d], at[d], TRUE, allowed))
            if space.square and d > 0:
                _tie_to_first_dimension(cnf, l, d)
        at = row
        cnf.sizes.append(row)
    for d in range(K):
        final = at[d].get(space.output_shape[d])
        # The output is unreachable only when --where atoms rule out every chain: the CNF is then unsatisfiable.
        cnf.add([final] if final is not None else [-TRUE])
    if rest:
        _add_wheres(cnf, rest)
    return cnf


def _encode_activations(cnf: Cnf, space: SearchSpace) -> None:
    """The first n layers are on; x_l implies x_{l-1}; inactive layers are k = s = 0."""
    for l in range(space.max_layers):
        a = cnf.active_var(l)
        if l < space.min_layers:
            cnf.add([a])
        if l > 0:
            cnf.add([-a, cnf.active_var(l - 1)])
        for d in range(space.dims):
            for b in range(space.bit_width):
                cnf.add([-cnf.kernel_var(l, d, b), a])
                cnf.add([-cnf.stride_var(l, d, b), a])


def _tie_to_first_dimension(cnf: Cnf, l: int, d: int) -> None:
    """A square space: layer l's kernel and stride bits in dimension d equal those in dimension 0."""
    for b in range(cnf.space.bit_width):
        for var in (cnf.kernel_var, cnf.stride_var):
            x, y = var(l, d, b), var(l, 0, b)
            cnf.add([x, -y])
            cnf.add([-x, y])


_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
_TEST = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
         ">=": lambda a, b: a >= b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b}


def _split_atoms(wheres, space: SearchSpace) -> tuple[dict, list]:
    """Conjuncts ``var OP constant`` and ``var [not] in (...)`` (var: k, s, size or layers) go into the
    tables; the rest (``all``/``any`` written out over ``space``) through z3.

    Returns:
        ({("k"|"s"|"size", l, d) or ("layers",): [predicate, ...]}, [Where, ...] for z3).
    """
    from nasgen.constraints.language import Where

    atoms: dict = {}
    rest = []
    for w in wheres:
        stack = [w.expand(space)]
        while stack:
            node = stack.pop()
            if node[0] == "and":
                stack.extend(node[1])
                continue
            negated = node[0] == "not" and node[1][0] == "in"
            member = node[1] if negated else node
            if member[0] == "in" and member[1][0] in ("var", "layers"):
                var, values = member[1], frozenset(value for _, value in member[2])
                key = ("layers",) if var[0] == "layers" else (var[1], var[2], var[3])
                atoms.setdefault(key, []).append(lambda x, values=values, negated=negated: (x in values) != negated)
                continue
            if node[0] == "cmp":
                _, op, a, b = node
                if b[0] == "const" and a[0] in ("var", "layers"):
                    var, value = a, b[1]
                elif a[0] == "const" and b[0] in ("var", "layers"):
                    var, value, op = b, a[1], _FLIP[op]
                else:
                    var = None
                if var is not None:
                    key = ("layers",) if var[0] == "layers" else (var[1], var[2], var[3])
                    atoms.setdefault(key, []).append(lambda x, op=op, value=value: _TEST[op](x, value))
                    continue
            rest.append(Where(text=w.text, tree=node))
    return atoms, rest


def _holds(predicates: list, value: int) -> bool:
    return all(p(value) for p in predicates)


def _encode_layer_atoms(cnf: Cnf, space: SearchSpace, predicates: list) -> None:
    """Rule out every number of layers L that fails a ``layers OP c`` atom: not (active[L-1] and not active[L])."""
    N = space.max_layers
    for L in range(space.min_layers, N + 1):
        if _holds(predicates, L):
            continue
        clause = []
        if L >= 1:
            clause.append(-cnf.active_var(L - 1))
        if L < N:
            clause.append(cnf.active_var(L))
        cnf.add(clause)


def _bits_lits(bits: Sequence[int], value: int) -> list[int]:
    return [v if value >> i & 1 else -v for i, v in enumerate(bits)]


def _encode_position(cnf: Cnf, space: SearchSpace, l: int, d: int, domain, at_in: dict, TRUE: int,
                     allowed: dict) -> dict:
    """Clauses of layer position l in dimension d; returns the one-hot size after it (size -> var).

    ``allowed`` maps "k", "s" and "size" to predicates from ``--where`` atoms
    on this position; an inactive layer (k = s = 0, size = the output size)
    that fails one is ruled out. The circuit is built in stages, each adding
    its variables and clauses in turn (the order fixes the CNF's numbering).
    """
    active = cnf.active_var(l)
    if not (_holds(allowed["k"], 0) and _holds(allowed["s"], 0) and _holds(allowed["size"], space.output_shape[d])):
        cnf.add([active])
    values = _PositionValues(cnf, space, l, d, domain, allowed)
    values.add_relation_clauses()
    # w = x - k, then c from w and s, then y from c through the pool.
    difference = _Difference(cnf, values, active, sorted(x for x in at_in if x in domain.sizes_in), at_in, TRUE)
    cval = _encode_conv(cnf, space, domain, values, difference)
    after_lits = _encode_pool(cnf, space, d, domain, cval, allowed)
    yvals = [v[0] for v in after_lits.values()]
    cnf.add([-active] + yvals)
    if l >= space.min_layers:
        for x, var in at_in.items():
            lits = [-active] + ([] if var == TRUE else [var])
            after_lits.setdefault(x, []).append(cnf.define_and(lits))
    return {y: (lits[0] if len(lits) == 1 else cnf.define_or(lits)) for y, lits in sorted(after_lits.items())}


class _PositionValues:
    """One position's kernel and stride values in the domain: ``kval[k]``, ``sval[s]`` and the order ``s >= v``."""

    def __init__(self, cnf: Cnf, space: SearchSpace, l: int, d: int, domain, allowed: dict) -> None:
        B = space.bit_width
        self.cnf, self.space = cnf, space
        kbits = [cnf.kernel_var(l, d, b) for b in range(B)]
        sbits = [cnf.stride_var(l, d, b) for b in range(B)]
        pairs = domain.pairs
        self.kernels = sorted({k for k, _ in pairs if _holds(allowed["k"], k)})
        self.strides = sorted({s for _, s in pairs if _holds(allowed["s"], s)})
        self.kval = {k: cnf.define_and(_bits_lits(kbits, k)) for k in self.kernels}
        self.sval = {s: cnf.define_and(_bits_lits(sbits, s)) for s in self.strides}
        # sge[i]: s >= strides[i]; a stride above every domain value is impossible.
        self.sge = [0] * len(self.strides)
        nxt = None
        for i in range(len(self.strides) - 1, -1, -1):
            lits = [self.sval[self.strides[i]]] + ([nxt] if nxt is not None else [])
            self.sge[i] = cnf.define_or(lits)
            nxt = self.sge[i]

    def s_at_least(self, v: int) -> int | None:
        """Literal for s >= v (None: always true over the domain, 0: never)."""
        i = int(np.searchsorted(self.strides, v))
        if i == 0:
            return None
        return 0 if i == len(self.strides) else self.sge[i]

    def add_relation_clauses(self) -> None:
        """The kernel/stride relation (the ranges are already inside the domain)."""
        relation = self.space.relation
        for k in self.kernels:
            bound = k if relation == "gt" else k + 1 if relation == "ge" else None
            if bound is not None:
                lit = self.s_at_least(bound)
                if lit is None:
                    self.cnf.add([-self.kval[k]])
                elif lit:
                    self.cnf.add([-self.kval[k], -lit])


class _Difference:
    """``wval[w]`` (w = x - k) and the order ``wge[w]`` (w >= v), one row per (x, k) with k <= x."""

    def __init__(self, cnf: Cnf, values: _PositionValues, active: int, sizes_in: list, at_in: dict,
                 TRUE: int) -> None:
        wrows: dict[int, list[int]] = {}
        for x in sizes_in:
            # A stride must not exceed the size it applies to.
            lit = values.s_at_least(x + 1)
            if lit is None:
                cnf.add([-at_in[x], -active])
            elif lit:
                cnf.add([-at_in[x], -active, -lit])
            for k in values.kernels:
                if k > x:
                    break
                lits = [active, values.kval[k]] + ([] if at_in[x] == TRUE else [at_in[x]])
                wrows.setdefault(x - k, []).append(cnf.define_and(lits))
        self.ws = sorted(wrows)
        self.wval = {w: cnf.define_or(wrows[w]) for w in self.ws}
        self.wge: dict[int, int] = {}
        nxt = None
        for w in reversed(self.ws):
            self.wge[w] = cnf.define_or([self.wval[w]] + ([nxt] if nxt is not None else []))
            nxt = self.wge[w]

    def at_least(self, v: int) -> int:
        """Literal for "w is defined and w >= v" (0: never)."""
        i = int(np.searchsorted(self.ws, v))
        return 0 if i == len(self.ws) else self.wge[self.ws[i]]


def _encode_conv(cnf: Cnf, space: SearchSpace, domain, values: _PositionValues, difference: _Difference) -> dict:
    """``cval[c]``: c = w // s + 1 (floor) or w = (c - 1) * s (exact), only for c in the domain."""
    crows: dict[int, list[int]] = {}
    max_w = difference.ws[-1] if difference.ws else -1
    for s in values.strides:
        for c in range(1, max_w // s + 2):
            if c not in domain.sizes_conv:
                continue
            lo, hi = (c - 1) * s, c * s  # floor: lo <= w < hi
            if space.rounding == "exact":
                if lo not in difference.wval:
                    continue
                lits = [values.sval[s], difference.wval[lo]]
            else:
                low, high = difference.at_least(lo), difference.at_least(hi)
                if low == 0 or low == high:
                    continue
                lits = [values.sval[s], low] + ([-high] if high else [])
            crows.setdefault(c, []).append(cnf.define_and(lits))
    return {c: cnf.define_or(rows) for c, rows in sorted(crows.items())}


def _encode_pool(cnf: Cnf, space: SearchSpace, d: int, domain, cval: dict, allowed: dict) -> dict:
    """The pool maps c to y: {y: [literal]}; c values the pool rejects, or outside the domain, are ruled out."""
    yrows: dict[int, list[int]] = {}
    for c, var in cval.items():
        y = c
        if space.pool is not None:
            pk, ps = space.pool[d]
            y = conv_output_size(c, pk, ps, space.rounding)
        if y is None or y not in domain.sizes_out or not _holds(allowed["size"], y):
            cnf.add([-var])
            continue
        yrows.setdefault(y, []).append(var)
    return {y: [cnf.define_or(v)] if len(v) > 1 else list(v) for y, v in yrows.items()}


# -- where constraints through z3 ---------------------------------------------------


class _CnfTerms:
    """The CNF's own variables as the z3 terms a ``--where`` is lowered onto (a :class:`~nasgen.samplers.z3algebra.Z3Terms`).

    Kernels and strides are sums of their bits' weights, sizes sums over the
    one-hot size variables; every boolean is named ``v<variable>`` so that
    the bit-blasted result maps back to CNF variables (:attr:`bools`).
    """

    def __init__(self, cnf: Cnf, z3) -> None:
        space = cnf.space
        self.ctx = z3.Context()
        self.width = 2 * space.bit_width + 2
        N, K, B = space.max_layers, space.dims, space.bit_width
        self.bools: dict[int, object] = {}
        one, zero = z3.BitVecVal(1, self.width, self.ctx), z3.BitVecVal(0, self.width, self.ctx)

        def boolean(var: int):
            if var not in self.bools:
                self.bools[var] = z3.Bool(f"v{var}", self.ctx)
            return self.bools[var]

        def number(vars_: list[int]):
            return z3.Sum([z3.If(boolean(v), z3.BitVecVal(1 << i, self.width, self.ctx), zero)
                           for i, v in enumerate(vars_)])

        self.kernel = tuple(tuple(number([cnf.kernel_var(l, d, b) for b in range(B)]) for d in range(K))
                            for l in range(N))
        self.stride = tuple(tuple(number([cnf.stride_var(l, d, b) for b in range(B)]) for d in range(K))
                            for l in range(N))
        self.size = tuple(tuple(z3.Sum([z3.If(boolean(v), z3.BitVecVal(y, self.width, self.ctx), zero)
                                        for y, v in cnf.sizes[l][d].items()]) for d in range(K))
                          for l in range(N))
        self.layers = z3.Sum([z3.If(boolean(cnf.active_var(l)), one, zero) for l in range(N)])


def _add_wheres(cnf: Cnf, wheres) -> None:
    try:
        import z3
    except ImportError:
        raise NasgenError('--where in a CNF needs z3, which is not installed: pip install "nasgen[solver]"') from None

    from nasgen.samplers.z3algebra import lower_where

    terms = _CnfTerms(cnf, z3)
    goal = z3.Goal(ctx=terms.ctx)
    for w in wheres:
        goal.add(lower_where(w, terms, cnf.space))
    # simplify + bit-blast only: solve-eqs / propagate-values could eliminate sampling variables.
    tactic = z3.Then(z3.Tactic("simplify", ctx=terms.ctx), z3.Tactic("bit-blast", ctx=terms.ctx),
                     z3.Tactic("simplify", ctx=terms.ctx))
    result = tactic(goal)
    assert len(result) == 1
    names = {f"v{v}": v for v in terms.bools}
    _tseitin(cnf, list(result[0]), names, z3)


def _tseitin(cnf: Cnf, formulas: list, names: dict, z3) -> None:
    """Add boolean z3 ``formulas`` as clauses, every subterm defined by an equivalence."""
    memo: dict[int, int] = {}
    TRUE = cnf.new_var()
    cnf.add([TRUE])

    def lit(e) -> int:
        key = e.get_id()
        if key in memo:
            return memo[key]
        if z3.is_true(e):
            out = TRUE
        elif z3.is_false(e):
            out = -TRUE
        elif z3.is_not(e):
            out = -lit(e.arg(0))
        elif z3.is_const(e) and e.decl().kind() == z3.Z3_OP_UNINTERPRETED:
            name = e.decl().name()
            # Constants other than ours would be free variables: they never appear, since every
            # bit-vector in a where expression is built from the CNF's own booleans.
            assert name in names, name
            out = names[name]
        elif z3.is_and(e):
            out = cnf.define_and([lit(a) for a in e.children()])
        elif z3.is_or(e):
            out = cnf.define_or([lit(a) for a in e.children()])
        elif z3.is_implies(e):
            out = cnf.define_or([-lit(e.arg(0)), lit(e.arg(1))])
        elif z3.is_eq(e) or e.decl().kind() == z3.Z3_OP_IFF:
            out = _iff(cnf, lit(e.arg(0)), lit(e.arg(1)))
        elif z3.is_app_of(e, z3.Z3_OP_XOR):
            acc = lit(e.arg(0))
            for a in e.children()[1:]:
                acc = -_iff(cnf, acc, lit(a))
            out = acc
        elif z3.is_app_of(e, z3.Z3_OP_ITE):
            c, t, f = lit(e.arg(0)), lit(e.arg(1)), lit(e.arg(2))
            v = cnf.new_var()
            cnf.clauses += [[-c, -t, v], [-c, t, -v], [c, -f, v], [c, f, -v]]
            out = v
        elif z3.is_distinct(e) and e.num_args() == 2:
            out = -_iff(cnf, lit(e.arg(0)), lit(e.arg(1)))
        else:  # pragma: no cover - bit-blasting leaves only the connectives above
            raise AssertionError(f"unexpected term after bit-blasting: {e.decl()}")
        memo[key] = out
        return out

    for f in formulas:
        if z3.is_and(f):
            for a in f.children():
                cnf.add([lit(a)])
        elif z3.is_or(f):
            cnf.add([lit(a) for a in f.children()])
        else:
            cnf.add([lit(f)])


def _iff(cnf: Cnf, a: int, b: int) -> int:
    v = cnf.new_var()
    cnf.clauses += [[-v, -a, b], [-v, a, -b], [v, a, b], [v, -a, -b]]
    return v


# -- DIMACS -------------------------------------------------------------------------


def write_dimacs(cnf: Cnf, target: str | os.PathLike | IO[str]) -> None:
    """Write ``cnf`` as DIMACS with the nasgen header, the variable map and ``c ind ... 0``.

    A path is written to a temporary file first and renamed into place, so an
    interrupted run leaves no half-written CNF.
    """
    text = dimacs_text(cnf)
    if hasattr(target, "write"):
        target.write(text)
        return
    from nasgen.common.atomic import write_atomic

    # staged and renamed like every nasgen file: an existing CNF keeps its mode, a new one gets the umask's
    try:
        write_atomic(target, text)
    except CnfError:
        raise
    except NasgenError as exc:
        raise CnfError(str(exc)) from None


def dimacs_text(cnf: Cnf) -> str:
    """The DIMACS text of ``cnf`` (see :func:`write_dimacs`)."""
    out = io.StringIO()
    out.write(f"c nasgen cnf {FORMAT_VERSION}\n")
    out.write("c nasgen space " + json.dumps(cnf.space.to_dict(), separators=(",", ":")) + "\n")
    for w in cnf.where:
        out.write("c nasgen where " + json.dumps(w) + "\n")
    out.write(f"c nasgen sampling {len(cnf.sampling)}\n")
    out.write("\n".join(cnf.comment_map()) + "\n")
    for start in range(0, len(cnf.sampling), 20):
        out.write("c ind " + " ".join(map(str, cnf.sampling[start:start + 20])) + " 0\n")
    out.write(f"p cnf {cnf.num_vars} {len(cnf.clauses)}\n")
    out.write("".join(" ".join(map(str, c)) + " 0\n" for c in cnf.clauses))
    return out.getvalue()


@dataclass(frozen=True)
class DimacsHeader:
    """What ``nasgen decode`` needs from a CNF: the space, the where texts and the variable map."""

    space: SearchSpace
    where: tuple
    kernel: dict  # var -> (layer, dim, bit)
    stride: dict
    active: dict  # var -> layer
    num_vars: int


_MAP = re.compile(r"^c nasgen var (\d+) (kernel|stride) (\d+) (\d+) (\d+)$|^c nasgen var (\d+) active (\d+)$")


def read_dimacs(path: str | os.PathLike) -> DimacsHeader:
    """Read the nasgen header and variable map of a CNF written by :func:`write_dimacs`.

    Raises:
        CnfError: unreadable file, not DIMACS, or no nasgen header (the
            message says what is missing).
    """
    from nasgen.common.errors import SpaceError

    space, where, num_vars = None, [], None
    kernel, stride, active = {}, {}, {}
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                line = line.strip()
                if line.startswith("p "):
                    parts = line.split()
                    if len(parts) != 4 or parts[1] != "cnf" or not all(p.isdigit() for p in parts[2:]):
                        raise CnfError(f"{path} line {number}: malformed problem line {line!r}; "
                                       "expected 'p cnf VARIABLES CLAUSES'")
                    num_vars = int(parts[2])
                    break
                if not line.startswith("c nasgen "):
                    continue
                if line.startswith("c nasgen space "):
                    try:
                        space = SearchSpace.from_dict(json.loads(line[len("c nasgen space "):]))
                    except (json.JSONDecodeError, TypeError, SpaceError) as exc:
                        raise CnfError(f"{path} line {number}: the space comment is malformed ({exc})") from None
                elif line.startswith("c nasgen where "):
                    try:
                        where.append(json.loads(line[len("c nasgen where "):]))
                    except json.JSONDecodeError:
                        raise CnfError(f"{path} line {number}: the where comment is malformed") from None
                elif line.startswith("c nasgen var "):
                    m = _MAP.match(line)
                    if m is None:
                        raise CnfError(f"{path} line {number}: malformed variable map line {line!r}")
                    if m.group(1):
                        target = kernel if m.group(2) == "kernel" else stride
                        target[int(m.group(1))] = (int(m.group(3)), int(m.group(4)), int(m.group(5)))
                    else:
                        active[int(m.group(6))] = int(m.group(7))
    except OSError as exc:
        raise CnfError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CnfError(f"{path} is not a text DIMACS file") from None
    if num_vars is None:
        raise CnfError(f"{path} is not a DIMACS CNF: no 'p cnf' line")
    if space is None:
        raise CnfError(f"{path} has no 'c nasgen space' comment: decode needs a CNF written by 'nasgen cnf'")
    expected = space.vector_bits
    if len(kernel) + len(stride) + len(active) != expected:
        raise CnfError(f"{path} maps {len(kernel) + len(stride) + len(active)} sampling variables; "
                       f"its space needs {expected}")
    return DimacsHeader(space, tuple(where), kernel, stride, active, num_vars)


def parse_solutions(lines: Iterable[str], source: str = "solutions") -> Iterator[tuple[int, dict]]:
    """Models from a solver's output: yields (line number, {variable: value}).

    Accepts SAT-competition output (``v`` lines, possibly several per model,
    each model ending in 0; ``s`` and ``c`` lines are skipped), plain lines of
    literals ending in 0, and UniGen's ``v1 -2 ... 0:COUNT`` (the count is
    dropped: each line is one model).

    Raises:
        CnfError: a token that is not an integer literal (named by line).
    """
    current: dict[int, bool] = {}
    start = None
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line[0] in "cs%":
            continue
        if line[0] == "v":
            line = line[1:]
        line = re.sub(r"\s0\s*:\s*\d+\s*$", " 0", line)
        for token in line.split():
            try:
                value = int(token)
            except ValueError:
                raise CnfError(f"{source} line {number}: {token!r} is not a literal; "
                               "expected integers like '1 -2 3 0'") from None
            if start is None:
                start = number
            if value == 0:
                yield start, current
                current, start = {}, None
            else:
                current[abs(value)] = value > 0
    if current:
        raise CnfError(f"{source} line {start}: the last model does not end with 0")


def decode_solutions(header: DimacsHeader, models: Iterable[tuple[int, dict]],
                     source: str = "solutions") -> Iterator[Architecture]:
    """Turn models into architectures of ``header.space``, each checked for membership.

    Raises:
        CnfError: a model missing a sampling variable, with activations that
            are not a prefix, or decoding to an architecture outside the space
            or failing a ``--where`` expression (named by line).
    """
    from nasgen.constraints.language import evaluate_all, parse_where_all

    space = header.space
    wheres = parse_where_all(header.where)
    N, K = space.max_layers, space.dims
    for number, model in models:
        missing = [v for v in list(header.kernel) + list(header.stride) + list(header.active) if v not in model]
        if missing:
            raise CnfError(f"{source} line {number}: the model has no value for sampling variable {missing[0]} "
                           f"(a model must assign all {space.vector_bits} variables of 'c ind')")
        kernel = [[0] * K for _ in range(N)]
        stride = [[0] * K for _ in range(N)]
        for var, (l, d, b) in header.kernel.items():
            kernel[l][d] |= model[var] << b
        for var, (l, d, b) in header.stride.items():
            stride[l][d] |= model[var] << b
        on = [model[v] for v, _ in sorted(header.active.items(), key=lambda item: item[1])]
        layers = sum(on)
        if on != [True] * layers + [False] * (N - layers):
            raise CnfError(f"{source} line {number}: the activation bits {''.join('1' if a else '0' for a in on)} "
                           "are not a prefix of ones: not a model of this CNF")
        try:
            arch = Architecture(kernel=kernel[:layers], stride=stride[:layers])
            check_membership(space, arch)
        except ArchitectureError as exc:
            raise CnfError(f"{source} line {number}: the model decodes to an architecture outside the space: {exc}") \
                from None
        if any(kernel[l][d] or stride[l][d] for l in range(layers, N) for d in range(K)):
            raise CnfError(f"{source} line {number}: an inactive layer has a non-zero kernel or stride")
        if wheres and not evaluate_all(wheres, arch, space):
            raise CnfError(f"{source} line {number}: the architecture fails the CNF's --where constraints")
        yield arch
