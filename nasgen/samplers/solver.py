"""The paper's z3 methods: All, Limited-M and Limited_Uniform-M (UniWit), and z3 model counting.

The search space becomes a z3 formula F (Calhas et al. 2022, Section 3). Its
decision variables are the *sampling set*: for every layer position and
dimension the B bits of the kernel and the B bits of the stride
(B = ``space.bit_width``), then one activation boolean per layer (x_l implies
x_{l-1}; the first n are on), in the order of the canonical bit-vector.
Inactive layers are forced to k = s = 0 and pass their size through, so one
architecture is exactly one assignment of the sampling set. Enumeration,
blocking clauses and XOR hashes use only that set; sizes and table selectors
are auxiliary and determined by it.

Without pruning, kernels and strides are bit-vectors of ``2 * B + 2`` bits
built from those bits, sizes are bit-vector variables bounded by the input
(no product of two sizes wraps around, no value is negative when read as
signed), exact division is a product (``x = (c - 1) * s + k``) and floor
rounding is ``(c - 1) * s <= x - k < c * s``.

With pruning, :func:`nasgen.space.tables.layer_domains` first restricts every layer
position to the sizes and (k, s) pairs that lie on some input-to-output
chain, and each position becomes a table of its transitions: a propositional
formula with the same models (for very large inputs the arithmetic is kept
and the domains are added as disjunctions).

z3's ``QF_BV`` solver bit-blasts all of it into its incremental SAT core.

References:
    S. Chakraborty, K. S. Meel, M. Y. Vardi. A scalable and nearly uniform
    generator of SAT witnesses. CAV 2013 (UniWit).
    D. Calhas, V. Manquinho, I. Lynce. Automatic generation of neural
    architecture search spaces. 2022, Sections 3 and 4.
"""

from __future__ import annotations

import contextlib
import math
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import z3

from nasgen.space.definition import Architecture, SearchSpace, conv_output_size
from nasgen.common.errors import WhereError
from nasgen.constraints.language import OperatorAlgebra, Where, parse_where_all
from nasgen.common.errors import SolverError, SolverTimeout

__all__ = [
    "METHODS",
    "START_XORS",
    "SamplerStatistics",
    "SolverSampler",
    "SolverVariables",
    "count_solutions",
    "uniwit_pivot",
]

METHODS = ("all", "limited", "uniwit")
START_XORS = ("paper", "count")

# Above this many transition-table rows (all positions together), pruning
# uses the arithmetic with the domains as disjunctions instead of tables.
_TABLE_ROW_LIMIT = 20000

# A --where is lowered onto signed bit-vectors wide enough for its largest intermediate value
# (Where.magnitude). Wider than this, or with more multiplier cost (the number of *, // and %
# times the width squared: a bit-blasted multiplier has about width**2 gates), is refused up
# front: a 1 KB product of 150 factors would take minutes and gigabytes to bit-blast.
MAX_WHERE_BITS = 256
MAX_WHERE_MULTIPLIER_COST = 2**18

# UniWit gives up on one sample after this many failed attempts in a row
# (an empty cell each time); with any non-trivial space this never happens.
_MAX_FAILURES_IN_A_ROW = 200

Constraint = Callable[["SolverVariables"], Any]


@dataclass(frozen=True)
class SolverVariables:
    """The variables of F, handed to a user ``constraint`` callable.

    Every integer is an unsigned z3 bit-vector of ``width`` bits whose value
    stays below ``2 ** (width - 2)``, so z3py's signed comparisons (``<``,
    ``>=``) are safe on them; for sums or products of many of them, widen
    first with ``z3.ZeroExt``.

    Attributes:
        kernel: ``kernel[l][d]``, 0 on an inactive layer.
        stride: ``stride[l][d]``, 0 on an inactive layer.
        conv: ``conv[l][d]``, the size after layer l's convolution (before its pool).
        size: ``size[l][d]``, the size after layer l (conv then pool); an
            inactive layer passes its input size through, so it equals the
            output size.
        active: ``active[l]``, z3 booleans, true for l < number of layers.
        layers: the number of active layers, a bit-vector expression.
        width: bit width of every integer above.
    """

    kernel: tuple[tuple[Any, ...], ...]
    stride: tuple[tuple[Any, ...], ...]
    conv: tuple[tuple[Any, ...], ...]
    size: tuple[tuple[Any, ...], ...]
    active: tuple[Any, ...]
    layers: Any
    width: int


def uniwit_pivot(sampling_bits: int, pivot_k: float = 2.0) -> int:
    """UniWit's pivot ``floor(2 * |V| ** (1 / k))`` for a sampling set of ``|V|`` bits.

    >>> uniwit_pivot(93)
    19
    """
    return int(2 * sampling_bits ** (1.0 / pivot_k))


class _Formula:
    """F for one space in its own z3 context, with the sampling set and decoding.

    The sampling set is a list of z3 booleans (kernel and stride bits, then
    activations); every kernel and stride the rest of the formula sees is
    built from those bits, so the bits are the only decision variables that
    matter and blocking clauses are plain clauses over them.

    Without pruning, sizes are bit-vector variables tied by the paper's
    arithmetic. With pruning, every layer position is a table of the
    transitions (size in, k, s, size out) inside the pruned domains, with
    one-hot size booleans linking consecutive layers: a purely propositional
    formula that z3's incremental SAT core handles fast.
    """

    def __init__(self, space: SearchSpace, prune: bool, wheres: Sequence[Where],
                 constraint: Constraint | None, ctx: z3.Context, deadline: float | None = None) -> None:
        self.space = space
        self.deadline = deadline
        self.ctx = ctx
        self.prune = prune
        self.bits = space.bit_width
        # The arithmetic multiplies two sizes: 2B bits, plus a spare and a sign bit.
        self.width = 2 * self.bits + 2
        N, K, B = space.max_layers, space.dims, self.bits
        self.active = tuple(z3.Bool(f"x_{l}", ctx) for l in range(N))
        self.kernel_bits = [[[z3.Bool(f"k_{l}_{d}_{i}", ctx) for i in range(B)] for d in range(K)] for l in range(N)]
        self.stride_bits = [[[z3.Bool(f"s_{l}_{d}_{i}", ctx) for i in range(B)] for d in range(K)] for l in range(N)]
        # The sampling set in canonical bit-vector order: per layer and
        # dimension B kernel bits then B stride bits (LSB first); then the N
        # activation bits. One model evaluation of `packed` decodes an
        # architecture.
        self.sampling: list = []
        for l in range(N):
            for d in range(K):
                self.sampling += self.kernel_bits[l][d] + self.stride_bits[l][d]
        self.sampling += list(self.active)
        one_bit, zero_bit = z3.BitVecVal(1, 1, ctx), z3.BitVecVal(0, 1, ctx)
        pieces = [z3.If(b, one_bit, zero_bit) for b in self.sampling]
        self.packed = pieces[0] if len(pieces) == 1 else z3.Concat(pieces[::-1])
        self._positive = [b.as_ast() for b in self.sampling]
        self._negations = [z3.Not(b) for b in self.sampling]
        self._negative = [b.as_ast() for b in self._negations]
        self.kernel = tuple(tuple(self._number(self.kernel_bits[l][d]) for d in range(K)) for l in range(N))
        self.stride = tuple(tuple(self._number(self.stride_bits[l][d]) for d in range(K)) for l in range(N))
        bv = lambda name: z3.BitVec(name, self.width, ctx)  # noqa: E731
        self.conv = tuple(tuple(bv(f"c_{l}_{d}") for d in range(K)) for l in range(N))
        self.size = tuple(tuple(bv(f"y_{l}_{d}") for d in range(K)) for l in range(N))
        one, zero = self.const(1), self.const(0)
        self.layers = z3.Sum([z3.If(a, one, zero) for a in self.active])
        self.variables = SolverVariables(self.kernel, self.stride, self.conv, self.size,
                                         self.active, self.layers, self.width)
        self.assertions: list = []
        self._pair_cache: dict[int, frozenset] = {}
        needs_sizes = bool(wheres) or constraint is not None
        self._encode_activations()
        self.check_deadline()
        if prune:
            # layer_domains is plain Python over numpy (no z3 objects), so an alarm may safely
            # interrupt it; everything that builds z3 terms checks the deadline between steps.
            with _alarm_at(deadline):
                domains = _layer_domains(space)
            self.check_deadline()
        else:
            domains = None
        # Tables are the fast encoding for the paper's sizes; for big inputs a
        # table of every (size, k, s) row explodes, and the arithmetic with
        # the domains as disjunctions is smaller.
        self.encoding = "arithmetic"
        if domains is not None and self._table_rows(domains) <= _TABLE_ROW_LIMIT:
            self.encoding = "table"
            self._encode_tables(domains, link_sizes=needs_sizes)
        else:
            self._encode_arithmetic(domains)
        for where in wheres:
            self.check_deadline()
            self.assertions.append(where.fold(_Z3Algebra(self, where.magnitude(space)), space))
        if constraint is not None:
            self.assertions.extend(_user_constraints(constraint, self.variables, ctx))

    def check_deadline(self) -> None:
        """Raise _Stop("timeout") once the run's deadline has passed (building a big formula takes seconds)."""
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise _Stop("timeout")

    def const(self, value: int) -> Any:
        return z3.BitVecVal(value, self.width, self.ctx)

    def _number(self, bits: list) -> Any:
        """The unsigned bit-vector of ``width`` bits whose low bits are ``bits`` (LSB first)."""
        one_bit, zero_bit = z3.BitVecVal(1, 1, self.ctx), z3.BitVecVal(0, 1, self.ctx)
        pieces = [z3.If(b, one_bit, zero_bit) for b in bits]
        value = pieces[0] if len(pieces) == 1 else z3.Concat(pieces[::-1])
        return z3.ZeroExt(self.width - len(bits), value)

    def _encode_activations(self) -> None:
        add, N, n = self.assertions.append, self.space.max_layers, self.space.min_layers
        for l in range(N):
            if l < n:
                add(self.active[l])
            if l > 0:
                add(z3.Implies(self.active[l], self.active[l - 1]))
            # Inactive layers are canonical: k = s = 0, so one architecture is one model.
            for d in range(self.space.dims):
                for b in self.kernel_bits[l][d] + self.stride_bits[l][d]:
                    add(z3.Implies(b, self.active[l]))

    # -- without pruning: the paper's arithmetic ---------------------------------

    def _table_rows(self, domains: list) -> int:
        """An upper bound on the rows of every transition table together."""
        return sum(len(dom.sizes_in) * len(dom.pairs) for row in domains for dom in row)

    def _encode_arithmetic(self, domains: list | None = None) -> None:
        space, add = self.space, self.assertions.append
        for l in range(space.max_layers):
            for d in range(space.dims):
                self.check_deadline()
                x = self.const(space.input_shape[d]) if l == 0 else self.size[l - 1][d]
                k, s, conv, y = self.kernel[l][d], self.stride[l][d], self.conv[l][d], self.size[l][d]
                on = self._arithmetic_layer(d, x, k, s, conv, y)
                if domains is not None:
                    on = z3.And(on, self._domain_layer(domains[l][d], x, k, s, conv, y))
                add(z3.If(self.active[l], on, z3.And(conv == x, y == x)))
                if space.square and d > 0:
                    add(k == self.kernel[l][0])
                    add(s == self.stride[l][0])
        for d in range(space.dims):
            add(self.size[space.max_layers - 1][d] == self.const(space.output_shape[d]))

    def _arithmetic_layer(self, d: int, x: Any, k: Any, s: Any, conv: Any, y: Any) -> Any:
        """One active layer in one dimension by the paper's arithmetic (Eq. 1)."""
        space, c, ule = self.space, self.const, z3.ULE
        # Every size is bounded by x, so (out - 1) * s stays under x * x < 2**(width - 2).
        on = [ule(c(1), k), ule(c(1), s), ule(k, x), ule(s, x),
              ule(c(1), conv), ule(conv, x), ule(c(1), y), ule(y, conv)]
        if space.relation == "gt":
            on.append(z3.ULT(s, k))
        elif space.relation == "ge":
            on.append(ule(s, k))
        if space.kernel_range:
            on += [ule(c(space.kernel_range[0]), k), ule(k, c(space.kernel_range[1]))]
        if space.stride_range:
            on += [ule(c(space.stride_range[0]), s), ule(s, c(space.stride_range[1]))]
        on += self._window(x, k, s, conv)
        if space.pool is None:
            on.append(y == conv)
        else:
            pk, ps = space.pool[d]
            on += [ule(c(pk), conv)] + self._window(conv, c(pk), c(ps), y)
        return z3.And(on)

    def _domain_layer(self, domain: Any, x: Any, k: Any, s: Any, conv: Any, y: Any) -> Any:
        """The pruned domains as disjunctions: each value must lie on some input-to-output chain."""
        c = self.const
        if not domain.pairs:
            return z3.BoolVal(False, self.ctx)
        # Kernels and strides separately: a sound superset of the pair set
        # (the arithmetic decides), with far fewer terms than one per pair.
        # Half a million pairs take seconds to split: plain Python, so the alarm may interrupt it.
        with _alarm_at(self.deadline):
            kernels, strides = {p[0] for p in domain.pairs}, {p[1] for p in domain.pairs}
        parts = []
        for var, values in ((x, domain.sizes_in), (k, kernels), (s, strides), (conv, domain.sizes_conv),
                            (y, domain.sizes_out)):
            self.check_deadline()
            parts.append(z3.Or([var == c(v) for v in sorted(values)]))
        return z3.And(parts)

    def _window(self, x: Any, k: Any, s: Any, out: Any) -> list:
        """``out`` is the valid-padding output size of window (k, s) on x."""
        one = self.const(1)
        if self.space.rounding == "exact":
            # Exact division as a product, which bit-blasts far better than bvudiv.
            return [x == (out - one) * s + k]
        return [z3.ULE((out - one) * s, x - k), z3.ULT(x - k, out * s)]

    # -- with pruning: transition tables --------------------------------------------

    def _encode_tables(self, domains: list, link_sizes: bool) -> None:
        """Every layer position as a table of transitions inside the pruned domains.

        The dynamic program's domains hold every value on some input-to-output
        chain, so the tables lose no architecture; each row is checked with
        the space's own arithmetic, so they add none.
        """
        space, add, ctx = self.space, self.assertions.append, self.ctx
        N, K = space.max_layers, space.dims
        # at[l][d][v]: the size after layer l in dimension d is v (one-hot).
        # Layer -1 is the input; an inactive layer keeps its input size.
        at = [[{space.input_shape[d]: z3.BoolVal(True, ctx)} for d in range(K)]]
        for l in range(N):
            row_at = []
            for d in range(K):
                self.check_deadline()
                domain = domains[l][d]
                before = at[l][d]
                after: dict[int, Any] = {}
                rows = []
                for size, size_var in sorted(before.items()):
                    allowed = self._pairs_on(size)
                    for kernel, stride in sorted(domain.pairs):
                        if (kernel, stride) not in allowed:
                            continue
                        y = space.apply_layer(size, kernel, stride, d)
                        if y is None or y not in domain.sizes_out:
                            continue
                        rows.append((size, size_var, kernel, stride, y))
                        after.setdefault(y, None)
                can_rest = l >= space.min_layers
                if can_rest:
                    for size in before:
                        after.setdefault(size, None)
                for v in after:
                    after[v] = z3.Bool(f"at_{l}_{d}_{v}", ctx)
                # At most one size per position, so consecutive tables agree.
                values = list(after.values())
                for i in range(len(values)):
                    for j in range(i + 1, len(values)):
                        add(z3.Or(z3.Not(values[i]), z3.Not(values[j])))
                chosen = []
                for r, (size, size_var, kernel, stride, y) in enumerate(rows):
                    if r % 512 == 511:
                        self.check_deadline()
                    e = z3.Bool(f"t_{l}_{d}_{r}", ctx)
                    chosen.append(e)
                    add(z3.Implies(e, z3.And([self.active[l], size_var, after[y]]
                                             + self._bits_equal(self.kernel_bits[l][d], kernel)
                                             + self._bits_equal(self.stride_bits[l][d], stride))))
                    if link_sizes:
                        add(z3.Implies(e, z3.And(self.conv[l][d] == self.const(
                            conv_output_size(size, kernel, stride, space.rounding)),
                            self.size[l][d] == self.const(y))))
                add(z3.Implies(self.active[l], z3.Or(chosen) if chosen else z3.BoolVal(False, ctx)))
                if can_rest:
                    for size, size_var in before.items():
                        add(z3.Implies(z3.And(z3.Not(self.active[l]), size_var), after[size]))
                        if link_sizes:
                            add(z3.Implies(z3.And(z3.Not(self.active[l]), size_var), z3.And(
                                self.conv[l][d] == self.const(size), self.size[l][d] == self.const(size))))
                if space.square and d > 0:
                    for a, b in zip(self.kernel_bits[l][d] + self.stride_bits[l][d],
                                    self.kernel_bits[l][0] + self.stride_bits[l][0]):
                        add(a == b)
                row_at.append(after)
            at.append(row_at)
        for d in range(K):
            final = at[N][d].get(space.output_shape[d])
            add(final if final is not None else z3.BoolVal(False, ctx))

    def _bits_equal(self, bits: list, value: int) -> list:
        return [b if value >> i & 1 else z3.Not(b) for i, b in enumerate(bits)]

    def _pairs_on(self, size: int) -> frozenset:
        if size not in self._pair_cache:
            self._pair_cache[size] = frozenset(self.space.layer_pairs(size))
        return self._pair_cache[size]

    # -- decoding, blocking, hashing ---------------------------------------------------

    def decode(self, model: z3.ModelRef) -> int:
        """The canonical bit-vector (as an int) of the model's architecture."""
        return model.eval(self.packed, model_completion=True).as_long()

    def architecture(self, vector: int) -> Architecture:
        """Unpack a canonical bit-vector into an Architecture."""
        B, N, K = self.bits, self.space.max_layers, self.space.dims
        mask = (1 << B) - 1
        activations = vector >> (N * K * 2 * B)
        layers = sum(activations >> l & 1 for l in range(N))
        kernel, stride = [], []
        for l in range(layers):
            base = l * K * 2 * B
            kernel.append(tuple(vector >> (base + 2 * B * d) & mask for d in range(K)))
            stride.append(tuple(vector >> (base + 2 * B * d + B) & mask for d in range(K)))
        return Architecture(kernel=tuple(kernel), stride=tuple(stride))

    def blocking_clause(self, vector: int) -> Any:
        """The clause over the sampling set that excludes exactly this canonical bit-vector."""
        literals = [self._negative[i] if vector >> i & 1 else self._positive[i] for i in range(len(self.sampling))]
        return clause(self.ctx, literals)

    def xor_constraint(self, mask: int, parity: int) -> Any:
        """``XOR of the sampling bits selected by mask == parity`` (one row of an H_xor hash)."""
        chosen = [b for i, b in enumerate(self.sampling) if mask >> i & 1]
        if not chosen:
            return z3.BoolVal(parity == 0, self.ctx)
        acc = chosen[0]
        for bit in chosen[1:]:
            acc = z3.Xor(acc, bit)
        return acc if parity else z3.Not(acc)


def clause(ctx: z3.Context, literals: Sequence) -> z3.BoolRef:
    """The disjunction of boolean ASTs (``.as_ast()`` pointers), built through the C API.

    z3py's ``Or`` coerces every argument, which costs more than the SAT query
    itself on small spaces.
    """
    array = (z3.Ast * len(literals))(*literals)
    return z3.BoolRef(z3.Z3_mk_or(ctx.ref(), len(literals), array), ctx)


@contextlib.contextmanager
def _alarm_at(deadline: float | None):
    """Raise _Stop("timeout") inside the block if it runs past ``deadline`` (``time.monotonic()`` seconds).

    Uses a SIGALRM timer, so only in the main thread and only when no other
    timer is running; elsewhere the block runs to its end and the caller's
    next deadline check stops the run. The block must not create z3 objects:
    an exception raised between two of z3py's C calls could leave a
    reference count wrong.
    """
    usable = (deadline is not None and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread()
              and signal.getitimer(signal.ITIMER_REAL)[0] == 0)
    if not usable:
        yield
        return
    left = deadline - time.monotonic()
    if left <= 0:
        raise _Stop("timeout")

    def ring(signum, frame):
        raise _Stop("timeout")

    previous = signal.signal(signal.SIGALRM, ring)
    try:
        signal.setitimer(signal.ITIMER_REAL, left)
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check_where_cost(where: Where, space: SearchSpace) -> None:
    """Refuse a ``--where`` whose z3 lowering would be too wide or too costly to bit-blast.

    Raises:
        WhereError: wider than :data:`MAX_WHERE_BITS` bits, or more multiplier cost
            than :data:`MAX_WHERE_MULTIPLIER_COST`; the message names both figures.
    """
    bits = max(2 * space.bit_width + 2, where.magnitude(space).bit_length() + 2)
    shown = repr(" ".join(where.text.split()))
    if len(shown) > 80:
        shown = shown[:60] + "..." + shown[-12:]
    if bits > MAX_WHERE_BITS:
        raise WhereError(f"where expression {shown} computes values up to {bits} bits wide; at most "
                         f"{MAX_WHERE_BITS} bits fit the solver (fewer factors or smaller constants)")
    products, stack = 0, [where.tree]
    while stack:
        node = stack.pop()
        if node[0] == "arith" and node[1] in ("*", "//", "%"):
            products += 1
        stack.extend(child for child in node[1:] if isinstance(child, tuple))
        for child in node[1:]:
            if isinstance(child, list):
                stack.extend(child)
    if products * bits * bits > MAX_WHERE_MULTIPLIER_COST:
        raise WhereError(f"where expression {shown} needs {products} multiplications or divisions of {bits}-bit "
                         f"numbers, more than the solver can bit-blast quickly (products * bits**2 <= "
                         f"{MAX_WHERE_MULTIPLIER_COST}); use fewer factors")


def _layer_domains(space: SearchSpace):
    from nasgen.space.tables import layer_domains

    return layer_domains(space)


def _user_constraints(constraint: Constraint, variables: SolverVariables, ctx: z3.Context) -> list:
    result = constraint(variables)
    items = list(result) if isinstance(result, (list, tuple)) else [result]
    for item in items:
        if not (z3.is_expr(item) and z3.is_bool(item)):
            raise SolverError(
                f"the constraint function returned {type(item).__name__}; it must return a z3 boolean "
                "expression or a list of them, built from the variables it receives"
            )
        if item.ctx != ctx:
            raise SolverError("the constraint function built an expression in another z3 context; "
                              "build it only from the variables it receives")
    return items


class _Z3Algebra(OperatorAlgebra):
    """Lowers a :class:`Where` onto F with signed bit-vectors wide enough for every intermediate."""

    def __init__(self, formula: _Formula, magnitude: int) -> None:
        self.f = formula
        self.width = max(formula.width, magnitude.bit_length() + 2)

    def _int(self, value: Any) -> Any:
        return z3.ZeroExt(self.width - self.f.width, value) if self.width > self.f.width else value

    def const(self, value: int) -> Any:
        return z3.BitVecVal(value, self.width, self.f.ctx)

    def layers(self) -> Any:
        return self._int(self.f.layers)

    def model(self, name: str) -> Any:
        raise SolverError(f"the z3 methods cannot express {name} (the network's cost): use --method exact, which "
                          "applies it by rejection")

    def var(self, name: str, layer: int, dim: int) -> Any:
        table = {"k": self.f.kernel, "s": self.f.stride, "size": self.f.size}[name]
        return self._int(table[layer][dim])

    def floor_div(self, a: Any, b: Any) -> Any:
        # bvsdiv truncates toward zero; Python floors. x // 0 is 0 by the language's rule.
        zero = self.const(0)
        q, r = a / b, z3.SRem(a, b)
        floored = z3.If(z3.And(r != zero, (r < zero) != (b < zero)), q - 1, q)
        return z3.If(b == zero, zero, floored)

    def floor_mod(self, a: Any, b: Any) -> Any:
        # bvsmod takes the divisor's sign, as Python's % does; x % 0 is x.
        return z3.If(b == self.const(0), a, a % b)

    def call(self, fn: str, args: list) -> Any:
        if fn == "abs":
            x = args[0]
            return z3.If(x < self.const(0), -x, x)
        if fn == "sum":
            return z3.Sum(args) if len(args) > 1 else args[0]
        if fn == "prod":
            product = args[0]
            for x in args[1:]:
                product = product * x
            return product
        best = args[0]
        for x in args[1:]:
            best = z3.If(x > best, x, best) if fn == "max" else z3.If(x < best, x, best)
        return best

    def and_(self, xs: list) -> Any:
        return z3.And(xs)

    def or_(self, xs: list) -> Any:
        return z3.Or(xs)

    def not_(self, x: Any) -> Any:
        return z3.Not(x)


class _Stop(Exception):
    """Internal: a query ended without sat/unsat (timeout, budget, interrupt)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class SamplerStatistics:
    """Counters of one sampler: z3 queries, failed UniWit attempts, XORs per successful hashed draw."""

    queries: int = 0
    failures: int = 0
    xors: list = field(default_factory=list)


class SolverSampler:
    """Enumerate or sample a search space's architectures with z3; owns one z3 solver.

    Args:
        space: the search space.
        method: ``"all"`` (every architecture, z3's order), ``"limited"`` (the
            first M in z3's order: the paper's biased baseline) or
            ``"uniwit"`` (the paper's Limited_Uniform-M, near-uniform).
        seed: seeds the Python generator of hash coefficients and picks, and
            z3's ``random_seed``, ``sat.random_seed``, ``smt.random_seed``.
        where: ``--where`` expressions (strings or parsed :class:`Where`),
            all of which must hold.
        constraint: optional callable receiving :class:`SolverVariables` and
            returning a z3 boolean or a list of them.
        prune: restrict domains with :func:`nasgen.space.tables.layer_domains` first.
        timeout: wall-clock seconds for the whole run (None: no limit).
        query_rlimit: z3 resource limit per solver query (None: no limit);
            unlike ``timeout`` it gives the same result on any machine.
        with_replacement: uniwit only: independent draws instead of blocking
            each drawn architecture so that all M are distinct.
        pivot_k: UniWit's k in ``pivot = 2 |V| ** (1 / k)``.
        start_xors: ``"paper"`` starts every draw with no XOR constraint and
            adds one at a time; ``"count"`` starts near
            ``log2(remaining / pivot)`` using the exact count (falls back to
            ``"paper"`` when ``where`` or ``constraint`` make it unknown).

    Raises:
        SolverError: an unknown method or start, or a bad constraint function.
        nasgen.constraints.language.WhereError: an expression that does not fit the space.

    >>> space = SearchSpace((30,), (20,), min_layers=2, max_layers=2)
    >>> with SolverSampler(space, method="all") as sampler:
    ...     archs = list(sampler.solutions())
    >>> len(archs), sampler.stop_reason
    (9, 'complete')
    """

    def __init__(self, space: SearchSpace, method: str = "uniwit", seed: int = 0,
                 where: Iterable[str | Where] = (), constraint: Constraint | None = None,
                 prune: bool = True, timeout: float | None = None, query_rlimit: int | None = None,
                 with_replacement: bool = False, pivot_k: float = 2.0, start_xors: str = "paper") -> None:
        if method not in METHODS:
            raise SolverError(f"unknown method {method!r}: use one of {', '.join(METHODS)}")
        if start_xors not in START_XORS:
            raise SolverError(f"unknown start_xors {start_xors!r}: use one of {', '.join(START_XORS)}")
        if with_replacement and method != "uniwit":
            raise SolverError("with_replacement applies to method 'uniwit' only; 'all' and 'limited' never repeat")
        if not pivot_k > 0:
            raise SolverError(f"pivot_k must be positive, got {pivot_k}")
        if timeout is not None and not timeout > 0:
            raise SolverError(f"timeout must be a positive number of seconds, got {timeout}")
        if query_rlimit is not None and (isinstance(query_rlimit, bool) or int(query_rlimit) < 1):
            raise SolverError(f"query_rlimit must be a positive integer, got {query_rlimit}")
        self.space = space
        self.method = method
        self.seed = int(seed)
        # The deadline covers everything from here: formula building, pruning, domains, queries.
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self.wheres = parse_where_all(where)
        for w in self.wheres:
            w.check(space)
            check_where_cost(w, space)
        self.prune = bool(prune)
        self.timeout = timeout
        self.query_rlimit = None if query_rlimit is None else int(query_rlimit)
        self.with_replacement = bool(with_replacement)
        self.pivot_k = float(pivot_k)
        self.start_xors = start_xors
        self.found = 0
        self.stop_reason: str | None = None
        self.statistics = SamplerStatistics()
        self._rng = random.Random(self.seed)
        self._ctx = z3.Context()
        self._known_count = None
        self._closed = False
        try:
            self._formula = _Formula(space, self.prune, self.wheres, constraint, self._ctx, self._deadline)
            self._formula.check_deadline()  # handing a big formula to the solver takes a second of its own
        except _Stop:
            # Out of time while building: the sampler exists, and its runs stop at once with "timeout".
            self._formula = self._solver = None
            return
        self._solver = z3.SolverFor("QF_BV", ctx=self._ctx)
        # z3 takes a 32-bit unsigned seed; a solver parameter without a module
        # prefix reaches both its SAT and SMT cores (a "sat."/"smt." prefix is
        # rejected here and set_param would change every other z3 user too).
        self._solver.set("random_seed", self.seed % (1 << 32))
        # A compacted model costs more to build than the SAT query itself on
        # these formulas; we only evaluate the sampling set in it.
        self._solver.set("model.compact", False)
        if self.query_rlimit is not None:
            self._solver.set("rlimit", self.query_rlimit)
        self._solver.add(self._formula.assertions)
        if start_xors == "count" and not self.wheres and constraint is None:
            from nasgen.space.tables import count

            self._known_count = count(space)

    # -- resource handling ---------------------------------------------------

    def __enter__(self) -> "SolverSampler":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Release the z3 solver and context."""
        self._closed = True
        self._solver = None
        self._formula = None

    def _built(self) -> _Formula:
        if self._formula is None:
            raise SolverTimeout("the sampler ran out of time while building its formula"
                                if not self._closed else "this SolverSampler is closed")
        return self._formula

    @property
    def sampling_bits(self) -> int:
        """|V|, the size of the sampling set (kernel and stride bits plus activations)."""
        return len(self._built().sampling)

    @property
    def pivot(self) -> int:
        """UniWit's pivot for this space."""
        return uniwit_pivot(self.sampling_bits, self.pivot_k)

    @property
    def encoding(self) -> str:
        """``"table"`` (pruned, propositional) or ``"arithmetic"`` (the paper's, with or without domains)."""
        return self._built().encoding

    @property
    def variables(self) -> SolverVariables:
        """The formula's variables (constraints go through ``constraint``).

        With the pruned table encoding and no constraint, ``conv`` and
        ``size`` are left unconstrained (nothing reads them); kernels,
        strides, activations and ``layers`` always hold.
        """
        return self._built().variables

    # -- public iteration ----------------------------------------------------

    def solutions(self, samples: int | None = None) -> Iterator[Architecture]:
        """Yield architectures one at a time, each as soon as z3 finds it.

        Side effects: with ``all``, ``limited`` and ``uniwit`` without
        replacement, every yielded architecture is blocked in the solver for
        good, so a second call continues where the first stopped. On return
        ``stop_reason`` says why the run ended: ``"samples"`` (M reached),
        ``"complete"`` (every architecture was yielded), ``"unsat"`` (the
        space with its constraints has none), ``"timeout"``, ``"budget"`` (a
        query hit ``query_rlimit``), ``"failed"`` (uniwit drew empty cells
        too often in a row), ``"interrupted"`` or ``"stopped"`` (the caller
        closed the generator early).

        Args:
            samples: M, how many to yield; None (``all`` only) for every one.

        Raises:
            SolverError: ``samples`` missing for limited/uniwit, or negative.
            KeyboardInterrupt: re-raised after recording ``"interrupted"``;
                everything yielded before it stays valid.
        """
        if self._closed:
            raise SolverError("this SolverSampler is closed; create a new one")
        if samples is None and self.method != "all":
            raise SolverError(f"method {self.method!r} needs a number of samples (M); only 'all' runs without one")
        if samples is not None and (isinstance(samples, bool) or int(samples) < 0):
            raise SolverError(f"samples must be a non-negative integer, got {samples}")
        return self._run(None if samples is None else int(samples))

    def _run(self, samples: int | None) -> Iterator[Architecture]:
        self.stop_reason = None
        if self._formula is None:
            self.stop_reason = "timeout"  # the deadline passed while the formula was being built
            return
        produced = 0
        try:
            if self.method == "uniwit":
                draws = self._uniwit()
            else:
                draws = self._enumerate()
            while samples is None or produced < samples:
                vector = next(draws, None)
                if vector is None:
                    return
                produced += 1
                self.found += 1
                yield self._formula.architecture(vector)
            self.stop_reason = "samples"
        except _Stop as stop:
            self.stop_reason = stop.reason
            if stop.reason == "interrupted":
                raise KeyboardInterrupt from None
        except KeyboardInterrupt:
            self.stop_reason = "interrupted"
            raise
        finally:
            if self.stop_reason is None:
                self.stop_reason = "stopped"  # the caller closed the generator early

    # -- queries ----------------------------------------------------------------

    def _check(self) -> bool:
        """One z3 query: True for sat, False for unsat; raises _Stop otherwise."""
        if self._deadline is not None:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise _Stop("timeout")
            self._solver.set("timeout", max(1, int(left * 1000)))
        self.statistics.queries += 1
        # z3 reports an exhausted rlimit inside a push scope as "canceled",
        # like a Ctrl-C; the resource counter tells the two apart.
        used_before = self._rlimit_count() if self.query_rlimit is not None else 0
        result = self._solver.check()
        if result == z3.sat:
            return True
        if result == z3.unsat:
            return False
        reason = self._solver.reason_unknown()
        if self._deadline is not None and time.monotonic() >= self._deadline or "timeout" in reason:
            raise _Stop("timeout")
        if "resource" in reason or "rlimit" in reason:
            raise _Stop("budget")
        if self.query_rlimit is not None and self._rlimit_count() - used_before >= self.query_rlimit:
            raise _Stop("budget")
        if "cancel" in reason or "interrupt" in reason:
            raise _Stop("interrupted")
        raise _Stop("unknown")

    def _rlimit_count(self) -> int:
        try:
            return int(self._solver.statistics().get_key_value("rlimit count"))
        except (z3.Z3Exception, KeyError):
            return 0

    def _next_model(self) -> int | None:
        """The next model's canonical bit-vector, blocked before it is returned; None when unsat."""
        if not self._check():
            return None
        vector = self._formula.decode(self._solver.model())
        self._solver.add(self._formula.blocking_clause(vector))
        return vector

    def _enumerate(self) -> Iterator[int]:
        """The paper's All / Limited-M: z3's own order, each model blocked."""
        while True:
            vector = self._next_model()
            if vector is None:
                self.stop_reason = "complete" if self.found else "unsat"
                return
            yield vector

    def _bounded(self, limit: int, hash_rows: Sequence[tuple[int, int]]) -> list[int]:
        """UniWit's BoundedSAT: up to ``limit`` models of F and the XOR rows, in a scope popped after."""
        self._solver.push()
        try:
            for mask, parity in hash_rows:
                self._solver.add(self._formula.xor_constraint(mask, parity))
            cell: list[int] = []
            while len(cell) < limit:
                vector = self._next_model()
                if vector is None:
                    break
                cell.append(vector)
            return cell
        finally:
            self._solver.pop()

    def _uniwit(self) -> Iterator[int]:
        """Limited_Uniform-M: UniWit draws (Chakraborty, Meel and Vardi 2013, Algorithm 1).

        Each draw: if F has at most ``pivot`` models, pick one uniformly; else
        for m = m0, m0 + 1, ... conjoin m random XOR rows (H_xor: each
        sampling bit in a row with probability 1/2, random parity) and count
        the cell up to pivot + 1; the first m whose cell holds 1..pivot models
        gives a uniform pick from the cell. An empty cell is a failure and the
        draw starts again with fresh hashes.
        """
        pivot, nbits = self.pivot, self.sampling_bits
        blocked = 0
        # A lower bound on |F| that stays valid while draws are blocked; saves
        # re-counting the unhashed formula before every draw.
        lower = 0
        while True:
            if lower - blocked <= pivot:
                whole = self._bounded(4 * (pivot + 1), ())
                blocked, lower = 0, len(whole)
                if not whole:
                    self.stop_reason = "complete" if self.found else "unsat"
                    return
                if len(whole) <= pivot:
                    vector = self._rng.choice(whole)
                    self.statistics.xors.append(0)
                    if not self.with_replacement:
                        self._solver.add(self._formula.blocking_clause(vector))
                        blocked += 1
                        lower = 0  # recount: the whole set is small now
                    yield vector
                    continue
            vector = self._hashed_draw(pivot, nbits, lower - blocked)
            if vector is None:
                self.stop_reason = "failed"
                return
            if not self.with_replacement:
                self._solver.add(self._formula.blocking_clause(vector))
                blocked += 1
            yield vector

    def _first_xors(self, pivot: int, remaining_lower: int) -> int:
        if self._known_count is None:
            return 1
        remaining = self._known_count - (0 if self.with_replacement else self.found)
        remaining = max(remaining, remaining_lower, 1)
        # One XOR below the expected fit, so the search still climbs to it.
        return max(1, math.ceil(math.log2(max(remaining / pivot, 1.0))) - 1)

    def _hashed_draw(self, pivot: int, nbits: int, remaining_lower: int) -> int | None:
        for _ in range(_MAX_FAILURES_IN_A_ROW):
            m = self._first_xors(pivot, remaining_lower)
            while m <= nbits:
                rows = [(self._rng.getrandbits(nbits), self._rng.getrandbits(1)) for _ in range(m)]
                cell = self._bounded(pivot + 1, rows)
                if 1 <= len(cell) <= pivot:
                    self.statistics.xors.append(m)
                    return self._rng.choice(cell)
                if not cell:
                    break
                m += 1
            self.statistics.failures += 1
        return None


def count_solutions(space: SearchSpace, where: Iterable[str | Where] = (), constraint: Constraint | None = None,
                    timeout: float | None = None, prune: bool = True, query_rlimit: int | None = None) -> int:
    """Count a space's architectures by z3 model enumeration (with optional user constraints).

    Args:
        space: the search space.
        where: ``--where`` expressions, all of which must hold.
        constraint: optional z3 constraint callable (see :class:`SolverSampler`).
        timeout: wall-clock seconds (None: no limit).
        prune: restrict domains with the dynamic program first.
        query_rlimit: z3 resource limit per query.

    Returns:
        The number of architectures satisfying every constraint.

    Raises:
        SolverTimeout: the time or budget ran out; the message gives the
            number counted so far (a lower bound).

    >>> count_solutions(SearchSpace((30,), (20,), min_layers=2, max_layers=2), where=["k[0][0] > 5"])
    5
    """
    with SolverSampler(space, method="all", where=where, constraint=constraint, prune=prune,
                       timeout=timeout, query_rlimit=query_rlimit) as sampler:
        total = sum(1 for _ in sampler.solutions())
        if sampler.stop_reason not in ("complete", "unsat"):
            raise SolverTimeout(
                f"z3 count stopped ({sampler.stop_reason}) after {total} architectures: "
                "that is only a lower bound; give a longer --timeout or a larger budget"
            )
        return total
