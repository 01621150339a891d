"""The ``--where`` expression language: user constraints over an architecture.

An expression is parsed with :mod:`ast` and checked against a whitelist; it is
never passed to ``eval``. The names it may use:

* ``k[l][d]``, ``s[l][d]``: kernel and stride of layer ``l`` (0-based) in
  dimension ``d``. On an inactive layer (``l >= layers``) both are 0.
* ``size[l][d]``: the size after layer ``l`` (after its convolution and, if the
  space pools, its pool). On an inactive layer it is the output size, since an
  inactive layer passes its input through unchanged.
* ``layers``: the number of active layers.
* ``params``, ``flops``: the trainable parameters and the inference FLOPs (one
  example) of the ``chain`` model built from the architecture, under model
  options given by the caller (``width``, ``in_channels``, ``num_classes``,
  ``norm``, ``head``, ``pooling``; the figures of ``nasgen show --model
  chain``, computed analytically by :func:`nasgen.constraints.costs.chain_costs`).
* ``k[l]``, ``s[l]``, ``size[l]`` (a whole layer, one value per dimension) only
  as the argument of ``sum``, ``prod``, ``max`` or ``min``.

Operators: integer literals (a float literal such as ``2e9`` is allowed when
its value is a whole number), ``+ - * // %``, unary ``-``, comparisons (chains
allowed), ``and``, ``or``, ``not``, and the functions ``sum``, ``prod``
(of a list ``[a, b, ...]`` or of a whole layer), ``max``, ``min`` (of a list,
of a whole layer, or of two or more arguments) and ``abs``. ``x // 0`` is 0
and ``x % 0`` is ``x``, so that a division by the stride of an inactive layer
is defined.

Membership: ``x in (a, b, ...)`` holds when the integer ``x`` equals one of
the integer literals (at least one); ``x not in (...)`` is its negation.

Every active layer: ``all(body)`` and ``any(body)`` take a condition ``body``
that reads bare ``k``, ``s`` and ``size`` (no indices, no ``layers``,
``params`` or ``flops``, no nested ``all``/``any``). Write ``body[l][d]`` for
the body with ``k``, ``s``, ``size`` read as ``k[l][d]``, ``s[l][d]``,
``size[l][d]``; with N the space's most layers and K its dimensions:

* ``all(body)`` holds when ``body[l][d]`` holds for every ``l < layers`` and
  every ``d < K`` (so on a network of zero layers it holds);
* ``any(body)`` holds when ``body[l][d]`` holds for some ``l < layers`` and
  some ``d < K``.

Active layers are those with ``k[l][d] != 0`` (an active kernel is at least
1, an inactive layer reads 0), so :func:`expand` writes ``all(body)`` as the
conjunction over ``l < N``, ``d < K`` of ``k[l][d] == 0 or body[l][d]`` and
``any(body)`` as the disjunction of ``k[l][d] != 0 and body[l][d]``: each
conjunct of ``all`` reads one position, the form the exact tables absorb.

:meth:`Where.evaluate` is the reference on one architecture;
:meth:`Where.evaluate_arrays` evaluates the same semantics on a batch of
sample arrays with numpy.

This module does not import z3: the CLI validates expressions before the
solver loads. The solver lowers an expression through :meth:`Where.fold` with
its own algebra; :meth:`Where.evaluate` is the pure-Python reference.

>>> where = parse_where("layers == 2 and k[0][0] > s[0][0] + 2")
>>> where.names()
['k', 'layers', 's']
"""

from __future__ import annotations

import functools
import math
import operator
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Protocol, Sequence

import numpy as np

from nasgen.common.errors import WhereError
from nasgen.constraints.costs import MODEL_OPTIONS, chain_costs, cost_bound, layer_sizes, resolve_model
from nasgen.constraints.grammar import (FUNCTIONS, MAX_WHERE_CHARS, MAX_WHERE_DEPTH, MAX_WHERE_NODES, MODEL_NAMES,
                                        QUANTIFIERS, VARIABLES, Node, parse_tree)
from nasgen.space.definition import Architecture, SearchSpace

__all__ = ["Algebra", "ArrayAlgebra", "FUNCTIONS", "MAX_WHERE_CHARS", "MAX_WHERE_DEPTH", "MAX_WHERE_NODES",
           "MODEL_NAMES", "Node", "OperatorAlgebra", "QUANTIFIERS", "VARIABLES", "Where", "evaluate_all",
           "evaluate_all_arrays", "expand", "fold", "parse_where", "parse_where_all", "walk"]

# The checked tree's nodes are listed in nasgen.constraints.grammar; folds and evaluators see trees
# that expand() has rid of all/any (and so of their cells).


class Algebra(Protocol):
    """What :meth:`Where.fold` needs: one method per node kind."""

    def const(self, value: int) -> Any: ...
    def layers(self) -> Any: ...
    def model(self, name: str) -> Any: ...
    def var(self, name: str, layer: int, dim: int) -> Any: ...
    def neg(self, x: Any) -> Any: ...
    def arith(self, op: str, a: Any, b: Any) -> Any: ...
    def call(self, fn: str, args: list) -> Any: ...
    def compare(self, op: str, a: Any, b: Any) -> Any: ...
    def and_(self, xs: list) -> Any: ...
    def or_(self, xs: list) -> Any: ...
    def not_(self, x: Any) -> Any: ...
    def member(self, x: Any, values: list[int]) -> Any: ...


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

    def member(self, x: Any, values: list[int]) -> Any:
        """``x in values``: the disjunction of ``x == v``."""
        return self.or_([self.compare("==", x, self.const(v)) for v in values])

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
        for node in walk(self.tree):
            if node[0] in ("var", "row", "cell"):
                found.add(node[1])
            elif node[0] == "layers":
                found.add("layers")
            elif node[0] == "model":
                found.add(node[1])
        return sorted(found)

    def check(self, space: SearchSpace) -> None:
        """Raise WhereError unless every index fits ``space``.

        Raises:
            WhereError: a layer index >= N or a dimension index >= K.
        """
        for node in walk(self.tree):
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

    def expand(self, space: SearchSpace) -> Node:
        """The tree with every ``all``/``any`` written out over ``space``'s positions (see :func:`expand`).

        Raises:
            WhereError: an index out of range for ``space``.
        """
        self.check(space)
        return expand(self.tree, space.max_layers, space.dims)

    def fold(self, algebra: Algebra, space: SearchSpace) -> Any:
        """Evaluate the tree bottom-up with ``algebra``; ``all``/``any`` expand over ``space``, rows to ``space.dims`` values."""
        return fold(self.expand(space), algebra, space.dims)

    def evaluate(self, arch: Architecture, space: SearchSpace, model: Any = None) -> bool:
        """Whether ``arch`` (a member of ``space``) satisfies the expression.

        The pure-Python reference semantics that the z3 lowering and
        :meth:`evaluate_arrays` must match.

        Args:
            arch: the architecture.
            space: its search space.
            model: the model options ``params`` and ``flops`` need (an object
                with the attributes in ``MODEL_OPTIONS``, such as a ModelSpec);
                unused by expressions without them.

        Raises:
            WhereError: an index out of range for ``space``, or ``params`` /
                ``flops`` without ``model``.
            ArchitectureError: ``arch`` is not a member of ``space``.

        >>> space = SearchSpace((30,), (20,), min_layers=2, max_layers=2)
        >>> arch = Architecture(kernel=((5,), (7,)), stride=((1,), (1,)))
        >>> parse_where("k[1][0] > k[0][0]").evaluate(arch, space)
        True
        """
        self.check_model(model)
        return bool(self.fold(_PythonAlgebra(arch, space, model), space))

    def evaluate_arrays(self, layers, kernel, stride, space: SearchSpace, model: Any = None,
                        sizes=None) -> np.ndarray:
        """:meth:`evaluate` on a batch of sample arrays, vectorised with numpy.

        Args:
            layers: (M,) active layer counts.
            kernel, stride: (M, N, K) zero-padded arrays of members of ``space``.
            space: the search space.
            model: as for :meth:`evaluate`.
            sizes: optional (M, N, K) sizes after each layer from
                :func:`layer_sizes` (computed when not given).

        Returns:
            (M,) bool array, element i equal to ``evaluate`` on architecture i.

        Raises:
            WhereError: as for :meth:`evaluate`.
        """
        self.check(space)
        self.check_model(model)
        algebra = ArrayAlgebra(layers, kernel, stride, space, model, sizes,
                                exact_ints=self.magnitude(space, model) >= 2**62)
        result = self.fold(algebra, space)
        return np.broadcast_to(np.asarray(result, dtype=bool), (len(algebra.layers_),)).copy()

    def check_model(self, model: Any) -> None:
        """Raise WhereError if the expression uses ``params`` or ``flops`` and ``model`` lacks their options."""
        used = [n for n in self.names() if n in MODEL_NAMES]
        if not used:
            return
        if isinstance(model, Mapping):
            model = resolve_model(model)  # a dict of some options: the rest take the chain's defaults
        missing = [o for o in MODEL_OPTIONS if model is None or not hasattr(model, o)]
        if missing:
            raise WhereError(
                f"where expression {self._shown()}: {' and '.join(used)} need{'s' if len(used) == 1 else ''} "
                "the chain model's options "
                f"(missing: {', '.join(missing)}); on the command line give --width (and --in-channels, "
                "--num-classes, --norm, --head, --pooling as needed)"
            )

    def magnitude(self, space: SearchSpace, model: Any = None) -> int:
        """An upper bound on the absolute value of every integer the expression computes.

        The solver sizes its signed bit-vectors from this bound, so no
        intermediate value can overflow.
        """
        return _magnitude(self.expand(space), space, model)

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
    return Where(text=expr, tree=parse_tree(expr))


def parse_where_all(exprs: Iterable[str | Where]) -> list[Where]:
    """Parse several expressions (already-parsed ones pass through)."""
    return [e if isinstance(e, Where) else parse_where(e) for e in exprs]


def evaluate_all(wheres: Sequence[Where], arch: Architecture, space: SearchSpace, model: Any = None) -> bool:
    """True when ``arch`` satisfies every expression (the conjunction, as repeated ``--where``)."""
    return all(w.evaluate(arch, space, model) for w in wheres)


def evaluate_all_arrays(wheres: Sequence[Where], layers, kernel, stride, space: SearchSpace,
                        model: Any = None) -> np.ndarray:
    """(M,) bools: which rows of the sample arrays satisfy every expression."""
    keep = np.ones(len(layers), dtype=bool)
    if wheres:
        sizes = None
        if any("size" in w.names() for w in wheres):
            sizes = layer_sizes(layers, kernel, stride, space)
        for w in wheres:
            keep &= w.evaluate_arrays(layers, kernel, stride, space, model, sizes=sizes)
    return keep


def walk(node: Node) -> Iterable[Node]:
    """Every node of a checked expression tree, ``node`` first, depth first (rows are leaves).

    Args:
        node: a checked tree (:attr:`Where.tree`) or any subtree of one.

    Yields:
        The nodes, each a tuple tagged by its first item (see the module source).

    >>> [n[0] for n in walk(parse_where("k[0][0] > 2").tree)]
    ['cmp', 'var', 'const']
    """
    yield node
    tag = node[0]
    if tag in ("neg", "not"):
        yield from walk(node[1])
    elif tag in ("arith", "cmp"):
        yield from walk(node[2])
        yield from walk(node[3])
    elif tag in ("and", "or"):
        for child in node[1]:
            yield from walk(child)
    elif tag in ("call", "in"):
        if tag == "in":
            yield from walk(node[1])
        for child in node[2]:
            yield from walk(child)
    elif tag in QUANTIFIERS:
        yield from walk(node[1])


def expand(node: Node, max_layers: int, dims: int) -> Node:
    """``node`` with every ``all(body)`` and ``any(body)`` written out over the positions of a space.

    ``all(body)`` becomes ``("and", [k[l][d] == 0 or body[l][d] for l < max_layers, d < dims])`` and
    ``any(body)`` becomes ``("or", [k[l][d] != 0 and body[l][d] ...])``, where ``body[l][d]`` is the
    body with its cells read at ``[l][d]`` (see the module docstring for why ``k[l][d] == 0`` is
    "layer l is inactive"). A tree without them is returned as it is (the same object).

    Args:
        node: a checked tree.
        max_layers, dims: N and K of the space.

    Returns:
        A tree without ``all``, ``any`` and ``cell`` nodes.

    >>> expand(parse_where("all(k > 2)").tree, 1, 1)
    ('and', [('or', [('cmp', '==', ('var', 'k', 0, 0), ('const', 0)), ('cmp', '>', ('var', 'k', 0, 0), ('const', 2))])])
    """
    if not any(n[0] in QUANTIFIERS for n in walk(node)):
        return node
    tag = node[0]
    if tag in QUANTIFIERS:
        parts = []
        for layer in range(max_layers):
            for dim in range(dims):
                active = ("cmp", "!=" if tag == "any" else "==", ("var", "k", layer, dim), ("const", 0))
                body = _read_cells(node[1], layer, dim)
                parts.append(("and", [active, body]) if tag == "any" else ("or", [active, body]))
        return ("and" if tag == "all" else "or", parts)
    return tuple([expand(c, max_layers, dims) for c in part] if isinstance(part, list)
                 else expand(part, max_layers, dims) if isinstance(part, tuple) else part for part in node)


def _read_cells(node: Node, layer: int, dim: int) -> Node:
    """``node`` with every ``("cell", name)`` replaced by ``("var", name, layer, dim)``."""
    if node[0] == "cell":
        return ("var", node[1], layer, dim)
    return tuple([_read_cells(c, layer, dim) for c in part] if isinstance(part, list)
                 else _read_cells(part, layer, dim) if isinstance(part, tuple) else part for part in node)


def fold(node: Node, alg: Algebra, dims: int) -> Any:
    """Evaluate a checked tree bottom-up with ``alg``: one :class:`Algebra` call per node.

    Unlike :meth:`Where.fold` it checks no index against a space: callers
    that fold a subtree of a checked :class:`Where` (an atom) use it.

    Args:
        node: a checked tree or subtree.
        alg: the algebra that gives each node kind its value.
        dims: K, the number of dimensions a whole-layer row (``k[l]``) expands to.

    Returns:
        Whatever ``alg`` returns for the root.

    >>> fold(parse_where("2 + 3 * 4 == 14").tree, ArrayAlgebra([1], [[[0]]], [[[0]]], None, None, None), 1)
    True
    """
    tag = node[0]
    if tag == "const":
        return alg.const(node[1])
    if tag == "layers":
        return alg.layers()
    if tag == "model":
        return alg.model(node[1])
    if tag == "var":
        return alg.var(node[1], node[2], node[3])
    if tag == "neg":
        return alg.neg(fold(node[1], alg, dims))
    if tag == "arith":
        return alg.arith(node[1], fold(node[2], alg, dims), fold(node[3], alg, dims))
    if tag == "call":
        args = []
        for child in node[2]:
            if child[0] == "row":
                args.extend(alg.var(child[1], child[2], d) for d in range(dims))
            else:
                args.append(fold(child, alg, dims))
        return alg.call(node[1], args)
    if tag == "cmp":
        return alg.compare(node[1], fold(node[2], alg, dims), fold(node[3], alg, dims))
    if tag == "in":
        return alg.member(fold(node[1], alg, dims), [value for _, value in node[2]])
    if tag == "and":
        return alg.and_([fold(c, alg, dims) for c in node[1]])
    if tag == "or":
        return alg.or_([fold(c, alg, dims) for c in node[1]])
    assert tag == "not", f"{tag} nodes must be expanded before folding"
    return alg.not_(fold(node[1], alg, dims))


def _magnitude(node: Node, space: SearchSpace, model: Any = None) -> int:
    tag = node[0]
    if tag == "const":
        return abs(node[1])
    if tag == "layers":
        return space.max_layers
    if tag == "model":
        return cost_bound(space, model)
    if tag in ("var", "row"):
        return max(space.input_shape)
    if tag == "neg":
        return _magnitude(node[1], space, model)
    if tag == "arith":
        a, b = _magnitude(node[2], space, model), _magnitude(node[3], space, model)
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
            m = _magnitude(child, space, model)
            parts.extend([m] * (space.dims if child[0] == "row" else 1))
        if node[1] == "sum":
            return sum(parts)
        if node[1] == "prod":
            return math.prod(max(p, 1) for p in parts)
        return max(parts)
    if tag == "cmp":
        return max(_magnitude(node[2], space, model), _magnitude(node[3], space, model))
    if tag == "in":
        return max([_magnitude(node[1], space, model)] + [abs(value) for _, value in node[2]])
    if tag in ("and", "or"):
        return max(_magnitude(c, space, model) for c in node[1])
    return _magnitude(node[1], space, model)


def floor_div(a: int, b: int) -> int:
    """Python's ``//`` with ``x // 0 == 0`` (the language's rule)."""
    return 0 if b == 0 else a // b


def floor_mod(a: int, b: int) -> int:
    """Python's ``%`` with ``x % 0 == x`` (the language's rule)."""
    return a if b == 0 else a % b


class _PythonAlgebra(OperatorAlgebra):
    """Evaluates on one architecture: the reference semantics."""

    def __init__(self, arch: Architecture, space: SearchSpace, model: Any = None) -> None:
        shapes = arch.shapes(space)
        self.arch, self.space, self.model_options = arch, space, model
        self.active = arch.layers
        self.values = {"k": arch.kernel, "s": arch.stride, "size": shapes[1:]}
        self.output = space.output_shape

    def const(self, value: int) -> int:
        return value

    def layers(self) -> int:
        return self.active

    def model(self, name: str) -> int:
        N, K = self.space.max_layers, self.space.dims
        kernel = np.zeros((1, N, K), dtype=np.int64)
        stride = np.zeros((1, N, K), dtype=np.int64)
        kernel[0, : self.active] = self.arch.kernel
        stride[0, : self.active] = self.arch.stride
        params, flops = chain_costs([self.active], kernel, stride, self.space, self.model_options, exact_ints=True)
        return int((params if name == "params" else flops)[0])

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
        return {"sum": sum, "prod": math.prod, "max": max, "min": min}[fn](args)

    def and_(self, xs: list) -> bool:
        return all(xs)

    def or_(self, xs: list) -> bool:
        return any(xs)

    def not_(self, x: bool) -> bool:
        return not x

    def member(self, x: int, values: list[int]) -> bool:
        return x in values


_REDUCE = {"sum": np.add, "prod": np.multiply, "max": np.maximum, "min": np.minimum}


class ArrayAlgebra(OperatorAlgebra):
    """Evaluates on a batch of sample arrays: the reference semantics, one numpy operation per node.

    Values are (M,) integer arrays (int64, or Python ints in object arrays
    when the expression's magnitude could pass 2**62) or plain Python ints for
    constants; conditions are (M,) bool arrays. :meth:`Where.evaluate_arrays`
    folds a whole expression with it; a subclass that overrides :meth:`var`
    (and :meth:`layers`) evaluates on other columns, such as the candidate
    (kernel, stride, size) columns of one layer position.

    Args:
        layers: (M,) active layer counts.
        kernel, stride: (M, N, K) zero-padded sample arrays.
        space: their search space (read by ``size`` and the costs).
        model: the model options ``params`` and ``flops`` read (see
            :func:`nasgen.constraints.costs.resolve_model`), or None.
        sizes: (M, N, K) sizes from :func:`~nasgen.constraints.costs.layer_sizes`, or None
            (computed on the first read of ``size``).
        exact_ints: compute in Python integers (object arrays) rather than int64.

    >>> algebra = ArrayAlgebra([2, 1], [[[5], [3]], [[7], [0]]], [[[1], [1]], [[2], [0]]], None, None, None)
    >>> algebra.var("k", 1, 0).tolist()   # layer 1 is inactive in the second architecture
    [3, 0]
    """

    def __init__(self, layers, kernel, stride, space: SearchSpace, model: Any, sizes,
                 exact_ints: bool = False) -> None:
        self.layers_ = np.asarray(layers, dtype=np.int64)
        self.dtype = object if exact_ints else np.int64
        self.values = {}
        if sizes is not None:
            self.values["size"] = np.asarray(sizes)
        self.kernel, self.stride = np.asarray(kernel), np.asarray(stride)
        self.space, self.model_options = space, model
        self.exact_ints = exact_ints

    def const(self, value: int) -> int:
        return value

    def layers(self) -> np.ndarray:
        return self.layers_.astype(self.dtype)

    def model(self, name: str) -> np.ndarray:
        costs = self._costs
        return costs[0] if name == "params" else costs[1]

    @functools.cached_property
    def _costs(self):
        return chain_costs(self.layers_, self.kernel, self.stride, self.space, self.model_options,
                           exact_ints=self.exact_ints)

    def var(self, name: str, layer: int, dim: int) -> np.ndarray:
        if name == "size":
            if "size" not in self.values:  # sizes cost a pass over the layers: only when read
                self.values["size"] = layer_sizes(self.layers_, self.kernel, self.stride, self.space)
            column = self.values["size"][:, layer, dim]
        else:
            # Inactive layers read 0 whatever the padding holds.
            column = np.where(self.layers_ > layer, (self.kernel if name == "k" else self.stride)[:, layer, dim], 0)
        return column.astype(self.dtype, copy=False)

    def floor_div(self, a: Any, b: Any) -> Any:
        zero = np.equal(b, 0)
        return np.where(zero, 0, np.floor_divide(a, np.where(zero, 1, b)))

    def floor_mod(self, a: Any, b: Any) -> Any:
        zero = np.equal(b, 0)
        return np.where(zero, a, np.remainder(a, np.where(zero, 1, b)))

    def call(self, fn: str, args: list) -> Any:
        if fn == "abs":
            return np.abs(args[0])
        return functools.reduce(_REDUCE[fn], args)

    def and_(self, xs: list) -> Any:
        return functools.reduce(np.logical_and, xs)

    def or_(self, xs: list) -> Any:
        return functools.reduce(np.logical_or, xs)

    def not_(self, x: Any) -> Any:
        return np.logical_not(x)

    def member(self, x: Any, values: list[int]) -> Any:
        return np.isin(x, np.asarray(values, dtype=object if self.dtype is object else np.int64))
