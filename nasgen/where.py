"""The ``--where`` expression language: user constraints over an architecture.

An expression is parsed with :mod:`ast` and checked against a whitelist; it is
never passed to ``eval``. The names it may use:

* ``k[l][d]``, ``s[l][d]``: kernel and stride of layer ``l`` (0-based) in
  dimension ``d``. On an inactive layer (``l >= layers``) both are 0.
* ``size[l][d]``: the size after layer ``l`` (after its convolution and, if the
  space pools, its pool). On an inactive layer it is the output size, since an
  inactive layer passes its input through unchanged.
* ``layers``: the number of active layers.
* ``k[l]``, ``s[l]``, ``size[l]`` (a whole layer, one value per dimension) only
  as the argument of ``sum``, ``max`` or ``min``.

Operators: integer literals, ``+ - * // %``, unary ``-``, comparisons (chains
allowed), ``and``, ``or``, ``not``, and the functions ``sum``, ``max``,
``min`` (of a list ``[a, b, ...]``, of a whole layer, or of two or more
arguments) and ``abs``. ``x // 0`` is 0 and ``x % 0`` is ``x``, so that a
division by the stride of an inactive layer is defined.

This module does not import z3: the CLI validates expressions before the
solver loads. The solver lowers an expression through :meth:`Where.fold` with
its own algebra; :meth:`Where.evaluate` is the pure-Python reference.

>>> where = parse_where("layers == 2 and k[0][0] > s[0][0] + 2")
>>> where.names()
['k', 'layers', 's']
"""

from __future__ import annotations

import ast
import operator
from dataclasses import dataclass, field
from typing import Any, Iterable, NoReturn, Protocol, Sequence

from nasgen.space import Architecture, NasgenError, SearchSpace

__all__ = ["Where", "WhereError", "parse_where", "parse_where_all", "evaluate_all"]

VARIABLES = ("k", "s", "size")
FUNCTIONS = ("sum", "max", "min", "abs")
_COMPARE = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}
_ARITH = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.FloorDiv: "//", ast.Mod: "%"}
_VALID = "names k[l][d], s[l][d], size[l][d], layers; functions sum, max, min, abs"

#: Bounds on one expression, checked before and right after Python's parser (whose recursion
#: 20,000 unary minuses or 3,000 terms would exhaust): characters, syntax-tree nodes, nesting depth.
MAX_WHERE_CHARS = 2000
MAX_WHERE_NODES = 1000
MAX_WHERE_DEPTH = 100


class WhereError(NasgenError):
    """A ``--where`` expression that is malformed or does not fit the search space."""


# The checked tree. Nodes are tuples tagged by their first item:
#   ("const", v) ("layers",) ("var", name, l, d) ("row", name, l)
#   ("neg", x) ("arith", op, a, b) ("call", fn, [args]) ("cmp", op, a, b)
#   ("and", [xs]) ("or", [xs]) ("not", x)
Node = tuple


class Algebra(Protocol):
    """What :meth:`Where.fold` needs: one method per node kind."""

    def const(self, value: int) -> Any: ...
    def layers(self) -> Any: ...
    def var(self, name: str, layer: int, dim: int) -> Any: ...
    def neg(self, x: Any) -> Any: ...
    def arith(self, op: str, a: Any, b: Any) -> Any: ...
    def call(self, fn: str, args: list) -> Any: ...
    def compare(self, op: str, a: Any, b: Any) -> Any: ...
    def and_(self, xs: list) -> Any: ...
    def or_(self, xs: list) -> Any: ...
    def not_(self, x: Any) -> Any: ...


_ARITH_FN = {"+": operator.add, "-": operator.sub, "*": operator.mul}
_COMPARE_FN = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
              "==": operator.eq, "!=": operator.ne}


class OperatorAlgebra:
    """The :class:`Algebra` methods for values that overload Python's operators.

    Python ints and z3 bit-vectors share ``-x``, ``+ - *`` and the six
    comparisons; subclasses give ``floor_div`` and ``floor_mod`` (Python's
    ``//`` and ``%`` with ``x // 0 == 0`` and ``x % 0 == x``) and the rest.
    """

    def neg(self, x: Any) -> Any:
        return -x

    def arith(self, op: str, a: Any, b: Any) -> Any:
        if op in _ARITH_FN:
            return _ARITH_FN[op](a, b)
        return self.floor_div(a, b) if op == "//" else self.floor_mod(a, b)

    def compare(self, op: str, a: Any, b: Any) -> Any:
        return _COMPARE_FN[op](a, b)

    def floor_div(self, a: Any, b: Any) -> Any:
        raise NotImplementedError

    def floor_mod(self, a: Any, b: Any) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class Where:
    """One parsed, whitelisted constraint.

    Attributes:
        text: the expression as the user wrote it.
        tree: the checked expression tree (see the module source for its form).
    """

    text: str
    tree: Node = field(repr=False, compare=False)

    def names(self) -> list[str]:
        """The variable names the expression uses, sorted."""
        found: set[str] = set()
        for node in _walk(self.tree):
            if node[0] in ("var", "row"):
                found.add(node[1])
            elif node[0] == "layers":
                found.add("layers")
        return sorted(found)

    def check(self, space: SearchSpace) -> None:
        """Raise WhereError unless every index fits ``space``.

        Raises:
            WhereError: a layer index >= N or a dimension index >= K.
        """
        for node in _walk(self.tree):
            if node[0] not in ("var", "row"):
                continue
            name, layer = node[1], node[2]
            if layer >= space.max_layers:
                raise WhereError(
                    f"where expression {self._shown()}: layer index {layer} in {name}[{layer}] is out of range; "
                    f"the space has at most {space.max_layers} layers, so valid layer indices are 0..{space.max_layers - 1}"
                )
            if node[0] == "var" and node[3] >= space.dims:
                raise WhereError(
                    f"where expression {self._shown()}: dimension index {node[3]} in {name}[{layer}][{node[3]}] "
                    f"is out of range; the space has {space.dims} dimensions, valid indices are 0..{space.dims - 1}"
                )

    def fold(self, algebra: Algebra, space: SearchSpace) -> Any:
        """Evaluate the tree bottom-up with ``algebra``; rows expand to ``space.dims`` values."""
        self.check(space)
        return _fold(self.tree, algebra, space.dims)

    def evaluate(self, arch: Architecture, space: SearchSpace) -> bool:
        """Whether ``arch`` (a member of ``space``) satisfies the expression.

        The pure-Python reference semantics that the z3 lowering must match.

        Raises:
            WhereError: an index out of range for ``space``.
            ArchitectureError: ``arch`` is not a member of ``space``.

        >>> space = SearchSpace((30,), (20,), min_layers=2, max_layers=2)
        >>> arch = Architecture(kernel=((5,), (7,)), stride=((1,), (1,)))
        >>> parse_where("k[1][0] > k[0][0]").evaluate(arch, space)
        True
        """
        return bool(self.fold(_PythonAlgebra(arch, space), space))

    def magnitude(self, space: SearchSpace) -> int:
        """An upper bound on the absolute value of every integer the expression computes.

        The solver sizes its signed bit-vectors from this bound, so no
        intermediate value can overflow.
        """
        self.check(space)
        return _magnitude(self.tree, space)

    def _shown(self) -> str:
        return repr(" ".join(self.text.split()))


def parse_where(expr: str) -> Where:
    """Parse and whitelist-check one ``--where`` expression.

    Args:
        expr: e.g. ``"k[0][0] >= 3 and layers == 2"``.

    Returns:
        A :class:`Where`; indices are checked against a space later, by
        :meth:`Where.check` (the space is not known when the CLI parses).

    Raises:
        WhereError: a one-line message naming the syntax error, the unknown
            name, or the construct that is not allowed.

    >>> parse_where("max(k[0]) < 4").text
    'max(k[0]) < 4'
    """
    if not isinstance(expr, str) or not expr.strip():
        raise WhereError(f"where expression {expr!r} is empty: write a condition such as 'k[0][0] > 2'")
    shown = repr(" ".join(expr.split()))
    if len(shown) > 80:
        shown = shown[:60] + "..." + shown[-12:]
    if len(expr) > MAX_WHERE_CHARS:
        raise WhereError(f"where expression {shown} is {len(expr)} characters long; at most {MAX_WHERE_CHARS} "
                         "are allowed (split it into several --where, which must all hold)")
    try:
        # Newlines inside a --where are just spaces to the user.
        parsed = ast.parse(" ".join(expr.split()), mode="eval")
    except SyntaxError as exc:
        column = f" at column {exc.offset}" if exc.offset else ""
        raise WhereError(f"where expression {shown}: syntax error{column} ({exc.msg})") from None
    except (RecursionError, MemoryError):
        raise WhereError(f"where expression {shown} nests too deeply (at most {MAX_WHERE_DEPTH} levels)") from None
    _check_size(parsed.body, shown)
    tree = _Checker(shown).boolean(parsed.body)
    return Where(text=expr, tree=tree)


def parse_where_all(exprs: Iterable[str | Where]) -> list[Where]:
    """Parse several expressions (already-parsed ones pass through)."""
    return [e if isinstance(e, Where) else parse_where(e) for e in exprs]


def evaluate_all(wheres: Sequence[Where], arch: Architecture, space: SearchSpace) -> bool:
    """True when ``arch`` satisfies every expression (the conjunction, as repeated ``--where``)."""
    return all(w.evaluate(arch, space) for w in wheres)


def _check_size(root: ast.AST, shown: str) -> None:
    """Refuse a syntax tree with more than MAX_WHERE_NODES nodes or deeper than MAX_WHERE_DEPTH, without recursing."""
    nodes, stack = 0, [(root, 1)]
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > MAX_WHERE_NODES:
            raise WhereError(f"where expression {shown} has more than {MAX_WHERE_NODES} terms and operators; "
                             "use sum(k[l]) or split it into several --where")
        if depth > MAX_WHERE_DEPTH:
            raise WhereError(f"where expression {shown} nests more than {MAX_WHERE_DEPTH} levels deep "
                             "(a chain a + b + ... counts one level per operator; use sum([...]))")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node)
                     if not isinstance(child, (ast.expr_context, ast.operator, ast.unaryop, ast.cmpop, ast.boolop)))


class _Checker:
    """Turns a Python AST into the checked tree, rejecting anything off the whitelist."""

    def __init__(self, shown: str) -> None:
        self.shown = shown

    def fail(self, node: ast.AST, what: str) -> NoReturn:
        column = getattr(node, "col_offset", None)
        where = f" at column {column + 1}" if column is not None else ""
        raise WhereError(f"where expression {self.shown}: {what}{where}; allowed: {_VALID}, integers, "
                         "+ - * // %, comparisons, and/or/not")

    def boolean(self, node: ast.AST) -> Node:
        if isinstance(node, ast.BoolOp):
            tag = "and" if isinstance(node.op, ast.And) else "or"
            return (tag, [self.boolean(v) for v in node.values])
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return ("not", self.boolean(node.operand))
        if isinstance(node, ast.Compare):
            operands = [self.integer(node.left)] + [self.integer(c) for c in node.comparators]
            parts = []
            for i, op in enumerate(node.ops):
                if type(op) not in _COMPARE:
                    self.fail(node, f"the comparison {type(op).__name__} is not allowed")
                parts.append(("cmp", _COMPARE[type(op)], operands[i], operands[i + 1]))
            return parts[0] if len(parts) == 1 else ("and", parts)
        if self._is_integer_shaped(node):
            self.fail(node, "an integer is used where a condition is needed (compare it, e.g. '... > 0')")
        self.fail(node, f"{_describe(node)} is not allowed")

    def integer(self, node: ast.AST) -> Node:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int):
                self.fail(node, f"the literal {node.value!r} is not allowed (only integers)")
            return ("const", node.value)
        if isinstance(node, ast.Name):
            if node.id == "layers":
                return ("layers",)
            if node.id in VARIABLES:
                self.fail(node, f"{node.id} needs a layer and a dimension index, as in {node.id}[0][0]")
            if node.id in FUNCTIONS:
                self.fail(node, f"the function {node.id} must be called")
            self.fail(node, f"unknown name {node.id!r}")
        if isinstance(node, ast.Subscript):
            name, layer, dim = self._subscript(node)
            if dim is None:
                self.fail(node, f"{name}[{layer}] is a whole layer; index a dimension ({name}[{layer}][0]) "
                                "or pass it to sum, max or min")
            return ("var", name, layer, dim)
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.USub):
                return ("neg", self.integer(node.operand))
            if isinstance(node.op, ast.UAdd):
                return self.integer(node.operand)
            self.fail(node, f"the operator {type(node.op).__name__} is not allowed on integers")
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, ast.Div):
                self.fail(node, "'/' is not allowed (use // for integer division)")
            if type(node.op) not in _ARITH:
                self.fail(node, f"the operator {type(node.op).__name__} is not allowed")
            return ("arith", _ARITH[type(node.op)], self.integer(node.left), self.integer(node.right))
        if isinstance(node, ast.Call):
            return self._call(node)
        if isinstance(node, (ast.BoolOp, ast.Compare)) or (
            isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)
        ):
            self.fail(node, "a condition is used where an integer is needed")
        self.fail(node, f"{_describe(node)} is not allowed")

    def _subscript(self, node: ast.Subscript) -> tuple[str, int, int | None]:
        base, index = node.value, node.slice
        if isinstance(base, ast.Subscript):
            if not (isinstance(base.value, ast.Name) and base.value.id in VARIABLES):
                self.fail(node, "only k, s and size can be indexed")
            return base.value.id, self._index(base.slice, base), self._index(index, node)
        if isinstance(base, ast.Name) and base.id in VARIABLES:
            return base.id, self._index(index, node), None
        if isinstance(base, ast.Name) and base.id not in ("layers",) + FUNCTIONS:
            self.fail(node, f"unknown name {base.id!r}")
        self.fail(node, "only k, s and size can be indexed")

    def _index(self, index: ast.AST, node: ast.AST) -> int:
        if isinstance(index, ast.Constant) and isinstance(index.value, int) and not isinstance(index.value, bool):
            if index.value < 0:
                self.fail(node, "negative indices are not allowed (layers and dimensions count from 0)")
            return index.value
        self.fail(node, "an index must be a non-negative integer literal")

    def _call(self, node: ast.Call) -> Node:
        if not isinstance(node.func, ast.Name):
            self.fail(node, f"calling {_describe(node.func)} is not allowed")
        fn = node.func.id
        if fn not in FUNCTIONS:
            self.fail(node, f"the function {fn!r} is not allowed")
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            self.fail(node, f"{fn} takes plain positional arguments only")
        args = node.args
        if fn == "abs":
            if len(args) != 1:
                self.fail(node, "abs takes exactly one argument")
            return ("call", "abs", [self.integer(args[0])])
        if len(args) == 1:
            return ("call", fn, self._sequence(args[0], fn))
        if fn == "sum":
            self.fail(node, "sum takes one argument: a list [a, b, ...] or a whole layer such as k[0]")
        if not args:
            self.fail(node, f"{fn} needs arguments")
        return ("call", fn, [self.integer(a) for a in args])

    def _sequence(self, node: ast.AST, fn: str) -> list[Node]:
        if isinstance(node, (ast.List, ast.Tuple)):
            if not node.elts:
                self.fail(node, f"{fn} of an empty list is not allowed")
            return [self.integer(e) for e in node.elts]
        if isinstance(node, ast.Subscript):
            name, layer, dim = self._subscript(node)
            if dim is None:
                return [("row", name, layer)]
            if fn != "sum":
                self.fail(node, f"{fn} of a single value needs a list or a whole layer; write {fn}(a, b) or {fn}([a, b])")
            return [("var", name, layer, dim)]
        if fn == "sum":
            return [self.integer(node)]
        self.fail(node, f"{fn} needs a list, a whole layer such as k[0], or two or more arguments")

    @staticmethod
    def _is_integer_shaped(node: ast.AST) -> bool:
        return isinstance(node, (ast.Constant, ast.Name, ast.Subscript, ast.BinOp, ast.Call)) or (
            isinstance(node, ast.UnaryOp) and not isinstance(node.op, ast.Not)
        )


def _describe(node: ast.AST) -> str:
    names = {
        ast.Attribute: "attribute access",
        ast.Lambda: "a lambda",
        ast.IfExp: "a conditional expression",
        ast.Dict: "a dict",
        ast.Set: "a set",
        ast.ListComp: "a comprehension",
        ast.GeneratorExp: "a comprehension",
        ast.SetComp: "a comprehension",
        ast.DictComp: "a comprehension",
        ast.Await: "await",
        ast.Yield: "yield",
        ast.NamedExpr: "assignment",
        ast.Starred: "unpacking",
        ast.JoinedStr: "a string",
        ast.List: "a list outside sum/max/min",
        ast.Tuple: "a tuple outside sum/max/min",
        ast.Slice: "a slice",
    }
    for kind, text in names.items():
        if isinstance(node, kind):
            return text
    return type(node).__name__


def _walk(node: Node) -> Iterable[Node]:
    yield node
    tag = node[0]
    if tag in ("neg", "not"):
        yield from _walk(node[1])
    elif tag in ("arith", "cmp"):
        yield from _walk(node[2])
        yield from _walk(node[3])
    elif tag in ("and", "or"):
        for child in node[1]:
            yield from _walk(child)
    elif tag == "call":
        for child in node[2]:
            yield from _walk(child)


def _fold(node: Node, alg: Algebra, dims: int) -> Any:
    tag = node[0]
    if tag == "const":
        return alg.const(node[1])
    if tag == "layers":
        return alg.layers()
    if tag == "var":
        return alg.var(node[1], node[2], node[3])
    if tag == "neg":
        return alg.neg(_fold(node[1], alg, dims))
    if tag == "arith":
        return alg.arith(node[1], _fold(node[2], alg, dims), _fold(node[3], alg, dims))
    if tag == "call":
        args = []
        for child in node[2]:
            if child[0] == "row":
                args.extend(alg.var(child[1], child[2], d) for d in range(dims))
            else:
                args.append(_fold(child, alg, dims))
        return alg.call(node[1], args)
    if tag == "cmp":
        return alg.compare(node[1], _fold(node[2], alg, dims), _fold(node[3], alg, dims))
    if tag == "and":
        return alg.and_([_fold(c, alg, dims) for c in node[1]])
    if tag == "or":
        return alg.or_([_fold(c, alg, dims) for c in node[1]])
    assert tag == "not", tag
    return alg.not_(_fold(node[1], alg, dims))


def _magnitude(node: Node, space: SearchSpace) -> int:
    tag = node[0]
    if tag == "const":
        return abs(node[1])
    if tag == "layers":
        return space.max_layers
    if tag in ("var", "row"):
        return max(space.input_shape)
    if tag == "neg":
        return _magnitude(node[1], space)
    if tag == "arith":
        a, b = _magnitude(node[2], space), _magnitude(node[3], space)
        op = node[1]
        if op in "+-":
            return a + b
        if op == "*":
            return a * b
        if op == "//":
            return a
        return max(a, b)
    if tag == "call":
        parts = []
        for child in node[2]:
            m = _magnitude(child, space)
            parts.extend([m] * (space.dims if child[0] == "row" else 1))
        return sum(parts) if node[1] == "sum" else max(parts)
    if tag == "cmp":
        return max(_magnitude(node[2], space), _magnitude(node[3], space))
    if tag in ("and", "or"):
        return max(_magnitude(c, space) for c in node[1])
    return _magnitude(node[1], space)


def floor_div(a: int, b: int) -> int:
    """Python's ``//`` with ``x // 0 == 0`` (the language's rule)."""
    return 0 if b == 0 else a // b


def floor_mod(a: int, b: int) -> int:
    """Python's ``%`` with ``x % 0 == x`` (the language's rule)."""
    return a if b == 0 else a % b


class _PythonAlgebra(OperatorAlgebra):
    """Evaluates on one architecture: the reference semantics."""

    def __init__(self, arch: Architecture, space: SearchSpace) -> None:
        shapes = arch.shapes(space)
        self.active = arch.layers
        self.values = {"k": arch.kernel, "s": arch.stride, "size": shapes[1:]}
        self.output = space.output_shape

    def const(self, value: int) -> int:
        return value

    def layers(self) -> int:
        return self.active

    def var(self, name: str, layer: int, dim: int) -> int:
        if layer < self.active:
            return self.values[name][layer][dim]
        return self.output[dim] if name == "size" else 0

    def floor_div(self, a: int, b: int) -> int:
        return floor_div(a, b)

    def floor_mod(self, a: int, b: int) -> int:
        return floor_mod(a, b)

    def call(self, fn: str, args: list) -> int:
        if fn == "abs":
            return abs(args[0])
        return {"sum": sum, "max": max, "min": min}[fn](args)

    def and_(self, xs: list) -> bool:
        return all(xs)

    def or_(self, xs: list) -> bool:
        return any(xs)

    def not_(self, x: bool) -> bool:
        return not x
