"""The paper's search space as a z3 formula F, with its sampling set, decoding, blocking clauses and XOR rows.

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

z3's ``QF_BV`` solver bit-blasts all of it into its incremental SAT core
(:class:`nasgen.samplers.solver.SolverSampler` owns the solver).

References:
    D. Calhas, V. Manquinho, I. Lynce. Automatic generation of neural
    architecture search spaces. 2022, Section 3.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import z3

from nasgen.common.errors import SolverError
from nasgen.constraints.language import Where
from nasgen.samplers.z3algebra import lower_where
from nasgen.space.definition import Architecture, SearchSpace, conv_output_size

__all__ = ["Constraint", "Formula", "SolverStop", "SolverVariables", "clause"]

# Above this many transition-table rows (all positions together), pruning
# uses the arithmetic with the domains as disjunctions instead of tables.
_TABLE_ROW_LIMIT = 20000

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


class SolverStop(Exception):
    """A control-flow signal inside the z3 sampler, never seen by a user: the run stops, for ``reason``.

    Raised by :meth:`Formula.check_deadline` (``"timeout"``) while the formula
    is built and by the sampler's queries (``"timeout"``, ``"budget"``,
    ``"interrupted"``, ``"unknown"``); :class:`nasgen.samplers.solver.SolverSampler`
    catches it and records ``reason`` as its ``stop_reason``. Not a
    :class:`~nasgen.common.errors.NasgenError`: it is not an error.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Formula:
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

    It provides the terms a ``--where`` is lowered onto (it is a
    :class:`~nasgen.samplers.z3algebra.Z3Terms`: ``ctx``, ``width``,
    ``kernel``, ``stride``, ``size``, ``layers``).

    Args:
        space: the search space.
        prune: restrict every position to the dynamic program's domains first
            (tables, or the arithmetic with the domains as disjunctions when the
            tables would pass ``_TABLE_ROW_LIMIT`` rows).
        wheres: parsed ``--where`` expressions, already checked against ``space``.
        constraint: an optional callable receiving :class:`SolverVariables`.
        ctx: the z3 context to build in.
        deadline: ``time.monotonic()`` seconds after which building stops
            with :class:`SolverStop` ("timeout"); None for no limit.

    Attributes:
        assertions: the formula's z3 booleans (F is their conjunction).
        sampling: the sampling set, z3 booleans in canonical bit-vector order.
        encoding: ``"table"`` or ``"arithmetic"``.

    Raises:
        SolverStop: the deadline passed while building.
        SolverError: ``constraint`` returned something other than z3 booleans of ``ctx``.

    >>> formula = Formula(SearchSpace((30,), (20,), 2, 2), True, [], None, z3.Context())
    >>> len(formula.sampling), formula.encoding
    (22, 'table')
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
        self._declare_sampling_set()
        self._declare_terms()
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
            self.assertions.append(lower_where(where, self, space))
        if constraint is not None:
            self.assertions.extend(_user_constraints(constraint, self.variables, ctx))

    def _declare_sampling_set(self) -> None:
        """The sampling set in canonical bit-vector order, and ``packed``, its one-term decoding.

        Per layer and dimension B kernel bits then B stride bits (LSB first);
        then the N activation bits. One model evaluation of ``packed`` decodes
        an architecture.
        """
        N, K, B, ctx = self.space.max_layers, self.space.dims, self.bits, self.ctx
        self.active = tuple(z3.Bool(f"x_{l}", ctx) for l in range(N))
        self.kernel_bits = [[[z3.Bool(f"k_{l}_{d}_{i}", ctx) for i in range(B)] for d in range(K)] for l in range(N)]
        self.stride_bits = [[[z3.Bool(f"s_{l}_{d}_{i}", ctx) for i in range(B)] for d in range(K)] for l in range(N)]
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

    def _declare_terms(self) -> None:
        """Kernels and strides built from the sampling bits; sizes as bit-vector variables; ``layers``."""
        N, K, ctx = self.space.max_layers, self.space.dims, self.ctx
        self.kernel = tuple(tuple(self._number(self.kernel_bits[l][d]) for d in range(K)) for l in range(N))
        self.stride = tuple(tuple(self._number(self.stride_bits[l][d]) for d in range(K)) for l in range(N))
        bv = lambda name: z3.BitVec(name, self.width, ctx)  # noqa: E731
        self.conv = tuple(tuple(bv(f"c_{l}_{d}") for d in range(K)) for l in range(N))
        self.size = tuple(tuple(bv(f"y_{l}_{d}") for d in range(K)) for l in range(N))
        one, zero = self.const(1), self.const(0)
        self.layers = z3.Sum([z3.If(a, one, zero) for a in self.active])
        self.variables = SolverVariables(self.kernel, self.stride, self.conv, self.size,
                                         self.active, self.layers, self.width)

    def check_deadline(self) -> None:
        """Raise SolverStop("timeout") once the run's deadline has passed (building a big formula takes seconds)."""
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise SolverStop("timeout")

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
            at.append([self._encode_table_position(l, d, domains[l][d], at[l][d], link_sizes) for d in range(K)])
        for d in range(K):
            final = at[N][d].get(space.output_shape[d])
            add(final if final is not None else z3.BoolVal(False, ctx))

    def _encode_table_position(self, l: int, d: int, domain: Any, before: dict, link_sizes: bool) -> dict:
        """Layer l in dimension d as a table of transitions from the one-hot sizes ``before``; returns those after."""
        space, add, ctx = self.space, self.assertions.append, self.ctx
        self.check_deadline()
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
        return after

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
    """Raise SolverStop("timeout") inside the block if it runs past ``deadline`` (``time.monotonic()`` seconds).

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
        raise SolverStop("timeout")

    def ring(signum, frame):
        raise SolverStop("timeout")

    previous = signal.signal(signal.SIGALRM, ring)
    try:
        signal.setitimer(signal.ITIMER_REAL, left)
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


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


