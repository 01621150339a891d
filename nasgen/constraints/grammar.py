"""The ``--where`` grammar: an expression's Python syntax tree checked against a whitelist.

:func:`parse_tree` turns the text into the checked tree that
:mod:`nasgen.constraints.language` evaluates; nothing is passed to ``eval``.
The tree's nodes are tuples tagged by their first item::

    ("const", v) ("layers",) ("model", "params" | "flops") ("var", name, l, d) ("row", name, l)
    ("neg", x) ("arith", op, a, b) ("call", fn, [args]) ("cmp", op, a, b)
    ("and", [xs]) ("or", [xs]) ("not", x)
    ("in", x, [("const", v), ...])           x in (v, ...); "x not in (...)" is ("not", ("in", ...))
    ("all", body) ("any", body)              body reads ("cell", name): k, s, size at the position at hand

``all`` and ``any`` are expanded into ``var`` nodes for a given space by
:func:`nasgen.constraints.language.expand`.
"""

from __future__ import annotations

import ast
import math
from typing import NoReturn

from nasgen.common.errors import WhereError

__all__ = ["FUNCTIONS", "MAX_WHERE_CHARS", "MAX_WHERE_DEPTH", "MAX_WHERE_NODES", "MODEL_NAMES", "Node",
           "QUANTIFIERS", "VARIABLES", "parse_tree"]

VARIABLES = ("k", "s", "size")
#: Names that stand for a figure of the whole network (need model options).
MODEL_NAMES = ("params", "flops")
FUNCTIONS = ("sum", "prod", "max", "min", "abs")
#: ``all(body)`` and ``any(body)``: the body over every active layer and dimension.
QUANTIFIERS = ("all", "any")
_SEQUENCE_ONLY = ("sum", "prod")
_COMPARE = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}
_ARITH = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.FloorDiv: "//", ast.Mod: "%"}
_VALID = ("names k[l][d], s[l][d], size[l][d], layers, params, flops; functions sum, prod, max, min, abs; "
          "x in (a, b, ...); all(...) and any(...) of a condition on bare k, s, size")

#: Bounds on one expression, checked before and right after Python's parser (whose recursion
#: 20,000 unary minuses or 3,000 terms would exhaust): characters, syntax-tree nodes, nesting depth.
MAX_WHERE_CHARS = 2000
MAX_WHERE_NODES = 1000
MAX_WHERE_DEPTH = 100

Node = tuple


def parse_tree(expr: str) -> Node:
    """Parse and whitelist-check one ``--where`` expression into its checked tree.

    :func:`nasgen.constraints.language.parse_where` wraps the tree in a ``Where``.

    Args:
        expr: e.g. ``"k[0][0] >= 3 and layers == 2"``.

    Returns:
        The checked tree (see the module docstring); indices are checked
        against a space later, when the space is known.

    Raises:
        WhereError: a one-line message naming the syntax error, the unknown
            name, or the construct that is not allowed.

    >>> parse_tree("k[0][0] in (5, 3)")
    ('in', ('var', 'k', 0, 0), [('const', 3), ('const', 5)])
    >>> parse_tree("all(k % 2 == 1)")
    ('all', ('cmp', '==', ('arith', '%', ('cell', 'k'), ('const', 2)), ('const', 1)))
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
    return _Checker(shown).boolean(parsed.body)


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
        self.cells = False  # inside the body of all(...) or any(...): bare k, s, size are cells
        self.cells_read = False

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
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in QUANTIFIERS:
            return self._quantifier(node)
        if isinstance(node, ast.Compare) and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
            return self._membership(node)
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
            value = node.value
            # 2e9 reads better than 2000000000 in a FLOPs budget; only whole values are integers.
            if isinstance(value, float) and math.isfinite(value) and value.is_integer():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int):
                self.fail(node, f"the literal {node.value!r} is not allowed (only integers)")
            return ("const", value)
        if isinstance(node, ast.Name):
            if self.cells and node.id in ("layers",) + MODEL_NAMES:
                self.fail(node, f"{node.id} is not per position: inside all(...) and any(...) only k, s and size "
                                "(of the layer and dimension at hand), integers and arithmetic are allowed")
            if node.id == "layers":
                return ("layers",)
            if node.id in MODEL_NAMES:
                return ("model", node.id)
            if node.id in VARIABLES:
                if self.cells:
                    self.cells_read = True
                    return ("cell", node.id)
                self.fail(node, f"{node.id} needs a layer and a dimension index, as in {node.id}[0][0] "
                                f"(bare {node.id} only inside all(...) or any(...))")
            if node.id in FUNCTIONS + QUANTIFIERS:
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
        if self.cells:
            self.fail(node, "inside all(...) and any(...), k, s and size stand for the layer and dimension at hand: "
                            "write k, not k[0][0] (an indexed position is not per position)")
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
        if fn in QUANTIFIERS:
            self.fail(node, f"{fn}(...) is a condition; it is used where an integer is needed")
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
        if fn in _SEQUENCE_ONLY:
            self.fail(node, f"{fn} takes one argument: a list [a, b, ...] or a whole layer such as k[0]")
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
            if fn not in _SEQUENCE_ONLY:
                self.fail(node, f"{fn} of a single value needs a list or a whole layer; write {fn}(a, b) or {fn}([a, b])")
            return [("var", name, layer, dim)]
        if fn in _SEQUENCE_ONLY:
            return [self.integer(node)]
        self.fail(node, f"{fn} needs a list, a whole layer such as k[0], or two or more arguments")

    def _membership(self, node: ast.Compare) -> Node:
        """``x in (a, b, ...)`` and ``x not in (...)``: membership in a literal tuple of integers."""
        if len(node.ops) != 1:
            self.fail(node, "'in' cannot be chained with other comparisons (join them with 'and')")
        values = node.comparators[0]
        if not isinstance(values, (ast.Tuple, ast.List)):
            self.fail(values, "'in' needs a literal tuple of integers such as (3, 5, 7) (one value: (3,))")
        if not values.elts:
            self.fail(values, "x in () is empty (always false): list one or more integers, as in "
                              "k[0][0] in (3, 5, 7)")
        literals = set()
        for element in values.elts:
            item = self.integer(element)
            if item[0] == "neg" and item[1][0] == "const":
                item = ("const", -item[1][1])
            if item[0] != "const":
                self.fail(element, "'in' takes integer literals only, as in k[0][0] in (3, 5, 7)")
            literals.add(item[1])
        member = ("in", self.integer(node.left), [("const", v) for v in sorted(literals)])
        return ("not", member) if isinstance(node.ops[0], ast.NotIn) else member

    def _quantifier(self, node: ast.Call) -> Node:
        """``all(body)`` / ``any(body)``: the body reads bare k, s, size of each active layer and dimension."""
        fn = node.func.id
        if self.cells:
            self.fail(node, f"{fn}(...) cannot be nested inside all(...) or any(...)")
        if not node.args:
            self.fail(node, f"{fn}() is empty: give it a condition on k, s or size, as in {fn}(k % 2 == 1)")
        if node.keywords or len(node.args) != 1 or isinstance(node.args[0], ast.Starred):
            self.fail(node, f"{fn} takes one condition on k, s or size, as in {fn}(k % 2 == 1)")
        self.cells, self.cells_read = True, False
        try:
            body = self.boolean(node.args[0])
        finally:
            self.cells = False
        if not self.cells_read:
            self.fail(node, f"{fn}(...) reads none of k, s and size, so it is not per position: write a condition "
                            f"on the layer at hand, as in {fn}(k % 2 == 1)")
        return (fn, body)

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
        ast.List: "a list outside sum/max/min/in",
        ast.Tuple: "a tuple outside sum/max/min/in",
        ast.Slice: "a slice",
    }
    for kind, text in names.items():
        if isinstance(node, kind):
            return text
    return type(node).__name__


