"""A ``--where`` expression lowered onto z3 bit-vectors: one algebra for the solver's formula and for the CNF.

:class:`Z3Algebra` folds a checked :class:`~nasgen.constraints.language.Where`
into a z3 boolean over the terms of one architecture that a formula provides
(:class:`Z3Terms`): the z3 sampler's formula
(:class:`nasgen.samplers.formula.Formula`) provides bit-vectors built from its
sampling bits, the CNF encoder (:mod:`nasgen.samplers.cnf`) bit-vectors built
from the CNF's own variables. Values are signed bit-vectors wide enough for
every intermediate value (:meth:`~nasgen.constraints.language.Where.magnitude`),
so nothing wraps around; :func:`check_where_cost` refuses up front an
expression too wide or too costly to bit-blast.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

import z3

from nasgen.common.errors import SolverError, WhereError
from nasgen.constraints.language import OperatorAlgebra, Where
from nasgen.space.definition import SearchSpace

__all__ = ["MAX_WHERE_BITS", "MAX_WHERE_MULTIPLIER_COST", "Z3Algebra", "Z3Terms", "check_where_cost", "lower_where"]

# A --where is lowered onto signed bit-vectors wide enough for its largest intermediate value
# (Where.magnitude). Wider than this, or with more multiplier cost (the number of *, // and %
# times the width squared: a bit-blasted multiplier has about width**2 gates), is refused up
# front: a 1 KB product of 150 factors would take minutes and gigabytes to bit-blast.
MAX_WHERE_BITS = 256
MAX_WHERE_MULTIPLIER_COST = 2**18


class Z3Terms(Protocol):
    """What :class:`Z3Algebra` reads from a formula: its z3 context and one architecture's terms.

    Every term is an unsigned z3 bit-vector of ``width`` bits whose value
    stays below ``2 ** (width - 2)`` (so reading it as signed is safe).

    Attributes:
        ctx: the z3 context every term lives in.
        width: the bit width of the terms.
        kernel, stride: ``kernel[l][d]``, ``stride[l][d]``; 0 on an inactive layer.
        size: ``size[l][d]``, the size after layer l (conv then pool); the
            output size on an inactive layer.
        layers: the number of active layers.
    """

    ctx: z3.Context
    width: int
    kernel: Sequence[Sequence[Any]]
    stride: Sequence[Sequence[Any]]
    size: Sequence[Sequence[Any]]
    layers: Any


def lower_where(where: Where, terms: Z3Terms, space: SearchSpace) -> z3.BoolRef:
    """The z3 boolean that holds exactly when the architecture ``terms`` describe satisfies ``where``.

    Args:
        where: a parsed expression.
        terms: the formula's terms (see :class:`Z3Terms`).
        space: the search space ``terms`` encode.

    Returns:
        A z3 boolean in ``terms.ctx``.

    Raises:
        WhereError: an index out of range for ``space``.
        SolverError: ``params`` or ``flops``, which z3 cannot express.

    >>> from nasgen.constraints.language import parse_where
    >>> space = SearchSpace((30,), (20,), 1, 1)
    >>> ctx = z3.Context()
    >>> class Terms:
    ...     ctx, width = ctx, 8
    ...     kernel, stride = [[z3.BitVec("k", 8, ctx)]], [[z3.BitVec("s", 8, ctx)]]
    ...     size, layers = [[z3.BitVecVal(20, 8, ctx)]], z3.BitVecVal(1, 8, ctx)
    >>> z3.simplify(lower_where(parse_where("size[0][0] == 20 and layers == 1"), Terms, space))
    True
    """
    return where.fold(Z3Algebra(terms, where.magnitude(space)), space)


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
    products, stack = 0, [where.expand(space)]
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


class Z3Algebra(OperatorAlgebra):
    """Lowers a :class:`Where` onto a formula's terms with signed bit-vectors wide enough for every intermediate.

    Args:
        formula: the terms to read (see :class:`Z3Terms`).
        magnitude: a bound on every intermediate value's absolute value
            (:meth:`Where.magnitude`); the bit-vectors get ``bit_length + 2``
            bits (a spare and a sign bit), at least ``formula.width``.
    """

    def __init__(self, formula: Z3Terms, magnitude: int) -> None:
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

