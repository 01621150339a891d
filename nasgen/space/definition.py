"""Search spaces and architectures: the data model and the shape arithmetic.

A convolution with kernel ``k`` and stride ``s`` maps a size ``x`` to
``y = (x - k) / s + 1`` (Calhas et al. 2022, Eq. 1). A :class:`SearchSpace`
holds everything that defines the set of conv chains mapping an input shape to
an output shape; an :class:`Architecture` is one member of such a set.

Everything here is plain Python with no compiled code, no numpy and no solver,
so that it can serve as the independent reference the kernels are tested
against.
"""

from __future__ import annotations

import json
import operator
import re
from dataclasses import dataclass, field
from collections.abc import Iterable
from typing import Any

from nasgen.common.errors import ArchitectureError, NasgenError, SpaceError

__all__ = [
    "SearchSpace",
    "Architecture",
    "conv_output_size",
    "parse_json",
    "MAX_INT",
    "ROUNDINGS",
    "RELATIONS",
]

ROUNDINGS = ("exact", "floor")
RELATIONS = ("gt", "ge", "any")


def conv_output_size(size: int, kernel: int, stride: int, rounding: str) -> int | None:
    """Output size of a valid-padding window op, or None when it does not apply.

    Args:
        size: input size along one dimension (>= 1).
        kernel: window size (>= 1).
        stride: step (>= 1).
        rounding: ``"exact"`` requires ``(size - kernel) % stride == 0`` (the
            paper's Eq. 1, no input element dropped); ``"floor"`` is the real
            valid-padding arithmetic ``floor((size - kernel) / stride) + 1``.

    Returns:
        The output size, or None if ``kernel > size`` or (exact) the division
        is not exact.

    >>> conv_output_size(30, 5, 1, "exact")
    26
    >>> conv_output_size(7, 1, 2, "floor")
    4
    """
    if kernel > size or kernel < 1 or stride < 1:
        return None
    span = size - kernel
    if rounding == "exact" and span % stride:
        return None
    return span // stride + 1


def _relation_holds(kernel: int, stride: int, relation: str) -> bool:
    if relation == "gt":
        return kernel > stride
    if relation == "ge":
        return kernel >= stride
    return True


#: The largest integer a size, layer count, kernel, stride or range bound may take: the compiled
#: kernel works in 64-bit integers and multiplies two sizes, so every size stays below 2**31.
MAX_INT = 2**31 - 1

#: The most digits of an integer in any JSON nasgen reads (architectures, sidecars); Python's own
#: limit (4,300 digits) ends in a ValueError instead of a message.
MAX_JSON_INT_DIGITS = 40


def _integer(value: Any) -> int | None:
    """``value`` as an int if it is an integer type (int, numpy integer), else None; bools are not integers."""
    if isinstance(value, bool) or type(value).__name__ in ("bool", "bool_"):
        return None
    if isinstance(value, int):
        return int(value)
    if hasattr(value, "__index__") and not isinstance(value, (str, bytes)):
        try:
            return operator.index(value)
        except TypeError:
            return None
    return None


def _positive_int(value: Any, what: str) -> int:
    """``value`` checked to be an integer in 1..MAX_INT (no bool, float or string)."""
    number = _integer(value)
    if number is None:
        raise SpaceError(f"{what} must be a positive integer, got {_shown(value)}")
    if not 1 <= number <= MAX_INT:
        raise SpaceError(f"{what} must be a positive integer (1..{MAX_INT}), got {_shown(number)}")
    return number


def _shown(value: Any, limit: int = 40) -> str:
    """A short repr for messages (a 400-digit integer is cut, not printed)."""
    text = repr(value) if not isinstance(value, int) or value.bit_length() < 128 else f"a {len(str(value))}-digit integer"
    return text if len(text) <= limit else text[:limit] + "..."


def _sequence(values: Any, what: str, expected: str) -> list:
    """``values`` as a list, refusing strings and mappings (whose iteration would be characters or keys)."""
    if isinstance(values, (str, bytes, dict, set, frozenset)) or not isinstance(values, Iterable):
        raise SpaceError(f"{what} must be {expected}, got {_shown(values)}")
    items = list(values)
    if len(items) > 64:
        raise SpaceError(f"{what} has {len(items)} entries; at most 64 are allowed")
    return items


def _shape(values: Any, what: str) -> tuple[int, ...]:
    if _integer(values) is not None:
        values = [values]
    items = _sequence(values, what, "a list of positive integers")
    if not items:
        raise SpaceError(f"{what} needs at least one dimension, got an empty shape")
    return tuple(_positive_int(v, f"{what} dimension {d}") for d, v in enumerate(items))


def _range(values: Any, what: str) -> tuple[int, int] | None:
    if values is None:
        return None
    items = _sequence(values, f"{what} range", "a (min, max) pair of integers")
    if len(items) != 2:
        raise SpaceError(f"{what} range must be a (min, max) pair of integers, got {_shown(values)}")
    low = _positive_int(items[0], f"{what} range minimum")
    high = _positive_int(items[1], f"{what} range maximum")
    if low > high:
        raise SpaceError(f"{what} range {low}:{high} is empty: the minimum must be <= the maximum")
    return (low, high)


def _choice(value: Any, choices: tuple[str, ...], what: str) -> str:
    if not isinstance(value, str) or value not in choices:
        raise SpaceError(f"{what} {_shown(value)} is not one of {', '.join(choices)}")
    return value


@dataclass(frozen=True)
class SearchSpace:
    """The set of conv chains that map ``input_shape`` to ``output_shape``.

    Args:
        input_shape: I = (I_1..I_K), positive integers.
        output_shape: O = (O_1..O_K), same K, with I_d >= O_d.
        min_layers: n, at least 1.
        max_layers: N, at least n.
        pool: None, one ``(kernel, stride)`` pair applied after every
            convolution in every dimension, or one pair per dimension.
        rounding: ``"exact"`` (Eq. 1, divisions exact) or ``"floor"``.
        relation: kernel/stride relation, ``"gt"`` (k > s), ``"ge"`` or ``"any"``.
        kernel_range: optional inclusive ``(min, max)`` for every kernel.
        stride_range: optional inclusive ``(min, max)`` for every stride.
        square: every layer uses one kernel and one stride in all dimensions.

    Raises:
        SpaceError: on any invalid field, with a one-line message.

    >>> space = SearchSpace((30,), (20,), min_layers=2, max_layers=2)
    >>> space.dims, space.max_layers
    (1, 2)
    """

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    min_layers: int = 1
    max_layers: int = 1
    pool: tuple[tuple[int, int], ...] | None = None
    rounding: str = "exact"
    relation: str = "gt"
    kernel_range: tuple[int, int] | None = None
    stride_range: tuple[int, int] | None = None
    square: bool = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        inp = _shape(self.input_shape, "input shape")
        out = _shape(self.output_shape, "output shape")
        if len(inp) != len(out):
            raise SpaceError(
                f"input shape has {len(inp)} dimensions but output shape has {len(out)}: "
                "both must have the same number of dimensions"
            )
        for d, (i, o) in enumerate(zip(inp, out)):
            if i < o:
                raise SpaceError(
                    f"input size {i} is smaller than output size {o} in dimension {d}: "
                    "convolutions only shrink, so each input size must be >= its output size"
                )
        n = _positive_int(self.min_layers, "min layers (n)")
        big_n = _positive_int(self.max_layers, "max layers (N)")
        if n > big_n:
            raise SpaceError(f"min layers n={n} is larger than max layers N={big_n}: need 1 <= n <= N")
        _choice(self.rounding, ROUNDINGS, "rounding")
        _choice(self.relation, RELATIONS, "relation")
        if not isinstance(self.square, bool) and type(self.square).__name__ not in ("bool", "bool_"):
            raise SpaceError(f"square must be True or False, got {_shown(self.square)}")
        pool = self._normalise_pool(self.pool, len(inp))
        if pool is not None:
            for d, ((pk, _), i) in enumerate(zip(pool, inp)):
                if pk > i:
                    raise SpaceError(
                        f"pool kernel {pk} is larger than input size {i} in dimension {d}: "
                        f"a pool kernel must be <= {i}"
                    )
        set_(self, "input_shape", inp)
        set_(self, "output_shape", out)
        set_(self, "min_layers", n)
        set_(self, "max_layers", big_n)
        set_(self, "pool", pool)
        set_(self, "kernel_range", _range(self.kernel_range, "kernel"))
        set_(self, "stride_range", _range(self.stride_range, "stride"))
        set_(self, "square", bool(self.square))

    @staticmethod
    def _normalise_pool(pool: Any, dims: int) -> tuple[tuple[int, int], ...] | None:
        if pool is None:
            return None
        items = _sequence(pool, "pool", "a (kernel, stride) pair of integers, or one pair per dimension")
        if len(items) == 2 and all(_integer(v) is not None for v in items):
            items = [items] * dims
        if len(items) != dims:
            raise SpaceError(
                f"pool gives {len(items)} (kernel, stride) pairs for {dims} dimensions: "
                "give one pair, or one per dimension"
            )
        out = []
        for d, pair in enumerate(items):
            pair = _sequence(pair, f"pool for dimension {d}", "a (kernel, stride) pair of integers")
            if len(pair) != 2:
                raise SpaceError(f"pool for dimension {d} must be a (kernel, stride) pair, got {_shown(pair)}")
            pk, ps = pair
            out.append((_positive_int(pk, "pool kernel"), _positive_int(ps, "pool stride")))
        return tuple(out)

    # -- derived facts -------------------------------------------------------

    @property
    def dims(self) -> int:
        """K, the number of spatial dimensions."""
        return len(self.input_shape)

    @property
    def bit_width(self) -> int:
        """B, bits per kernel or stride in the canonical bit-vector."""
        return max(self.input_shape).bit_length()

    @property
    def vector_bits(self) -> int:
        """Length of the canonical bit-vector: N*K*2*B + N."""
        return self.max_layers * self.dims * 2 * self.bit_width + self.max_layers

    def layer_pairs(self, size: int) -> Iterable[tuple[int, int]]:
        """Every (kernel, stride) a layer whose input size is ``size`` may use, in (stride, kernel) order.

        This is the plain definition (no arithmetic shortcuts); the kernels
        compute the same set faster.
        """
        k_lo, k_hi = self.kernel_range or (1, size)
        s_lo, s_hi = self.stride_range or (1, size)
        for s in range(max(1, s_lo), min(size, s_hi) + 1):
            for k in range(max(1, k_lo), min(size, k_hi) + 1):
                if _relation_holds(k, s, self.relation):
                    yield k, s

    def apply_layer(self, size: int, kernel: int, stride: int, dim: int) -> int | None:
        """Size after one conv layer (and the pool, if any) in dimension ``dim``, or None."""
        y = conv_output_size(size, kernel, stride, self.rounding)
        if y is None or self.pool is None:
            return y
        pk, ps = self.pool[dim]
        return conv_output_size(y, pk, ps, self.rounding)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description; ``SearchSpace.from_dict`` inverts it."""
        return {
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "min_layers": self.min_layers,
            "max_layers": self.max_layers,
            "pool": None if self.pool is None else [list(p) for p in self.pool],
            "rounding": self.rounding,
            "relation": self.relation,
            "kernel_range": None if self.kernel_range is None else list(self.kernel_range),
            "stride_range": None if self.stride_range is None else list(self.stride_range),
            "square": self.square,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SearchSpace":
        """The space a :meth:`to_dict` dict describes.

        Raises:
            SpaceError: not a dict, unknown or missing fields, or invalid values.
        """
        if not isinstance(data, dict):
            raise SpaceError(f"a search space must be a JSON object with input_shape and output_shape, "
                             f"got {type(data).__name__}")
        missing = [name for name in ("input_shape", "output_shape") if name not in data]
        if missing:
            raise SpaceError(f"the search space lacks the field {missing[0]!r}")
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise SpaceError(f"unknown search-space fields {sorted(unknown)}; valid fields: {sorted(known)}")
        return cls(**data)

    def describe(self) -> str:
        """A short human-readable summary, e.g. for progress messages."""
        fmt = "x".join
        text = (
            f"{fmt(map(str, self.input_shape))} -> {fmt(map(str, self.output_shape))}, "
            f"{self.min_layers}..{self.max_layers} layers, {self.rounding}, k {self.relation} s"
        )
        if self.pool is not None:
            text += ", pool " + ",".join(f"({k},{s})" for k, s in self.pool)
        if self.kernel_range:
            text += f", kernel {self.kernel_range[0]}:{self.kernel_range[1]}"
        if self.stride_range:
            text += f", stride {self.stride_range[0]}:{self.stride_range[1]}"
        if self.square:
            text += ", square"
        return text


def _int_grid(values: Any, what: str) -> tuple[tuple[int, ...], ...]:
    if not isinstance(values, (list, tuple)):
        raise ArchitectureError(f"{what} must be a list of layers, each a list of per-dimension integers")
    rows = []
    for l, row in enumerate(values):
        if type(row) is int or (not isinstance(row, (list, tuple)) and _integer(row) is not None):
            row = [row]
        if not isinstance(row, (list, tuple)) or not row:
            raise ArchitectureError(f"{what} of layer {l} must be a non-empty list of integers, got {row!r}")
        cells = []
        for v in row:
            number = v if type(v) is int else _integer(v)  # the common case first: this runs per cell of a file
            if number is None or not 1 <= number <= MAX_INT:
                raise ArchitectureError(f"{what} of layer {l} must hold integers in 1..{MAX_INT}, got {_shown(v)}")
            cells.append(number)
        rows.append(tuple(cells))
    return tuple(rows)


@dataclass(frozen=True)
class Architecture:
    """One conv chain: a kernel and a stride per layer and dimension.

    Args:
        kernel: ``kernel[l][d]`` for layers l = 0..L-1 and dimensions d.
        stride: same layout as ``kernel``.

    >>> arch = Architecture(kernel=((5,), (7,)), stride=((1,), (1,)))
    >>> arch.layers, arch.to_json()
    (2, '{"layers": 2, "kernel": [[5], [7]], "stride": [[1], [1]]}')
    """

    kernel: tuple[tuple[int, ...], ...]
    stride: tuple[tuple[int, ...], ...] = field(default=())

    def __post_init__(self) -> None:
        kernel = _int_grid(self.kernel, "kernel")
        stride = _int_grid(self.stride, "stride")
        if not kernel:
            raise ArchitectureError("an architecture needs at least one layer")
        if len(kernel) != len(stride):
            raise ArchitectureError(f"kernel has {len(kernel)} layers but stride has {len(stride)}")
        dims = {len(row) for row in kernel + stride}
        if len(dims) != 1:
            raise ArchitectureError("every layer's kernel and stride must give the same number of dimensions")
        object.__setattr__(self, "kernel", kernel)
        object.__setattr__(self, "stride", stride)

    @property
    def layers(self) -> int:
        return len(self.kernel)

    @property
    def dims(self) -> int:
        return len(self.kernel[0])

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": self.layers,
            "kernel": [list(r) for r in self.kernel],
            "stride": [list(r) for r in self.stride],
        }

    def to_json(self) -> str:
        """One line of the JSON Lines format nasgen reads and writes."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Any) -> "Architecture":
        if not isinstance(data, dict) or "kernel" not in data or "stride" not in data:
            raise ArchitectureError(
                'an architecture must be a JSON object {"layers": L, "kernel": [[...]], "stride": [[...]]}'
            )
        arch = cls(kernel=data["kernel"], stride=data["stride"])
        if "layers" in data and data["layers"] != arch.layers:
            raise ArchitectureError(f'"layers" says {data["layers"]} but kernel lists {arch.layers} layers')
        return arch

    @classmethod
    def from_json(cls, line: str | bytes) -> "Architecture":
        """The architecture one JSON Lines line holds.

        Raises:
            ArchitectureError: not valid JSON, nested deeper than :data:`MAX_JSON_DEPTH`, an
                integer of more than :data:`MAX_JSON_INT_DIGITS` digits, or not an architecture.
        """
        try:
            data = parse_json(line)
        except NasgenError as exc:
            raise ArchitectureError(str(exc)) from None
        return cls.from_dict(data)

    def shapes(self, space: SearchSpace) -> list[tuple[int, ...]]:
        """Spatial shape after each layer (conv then pool), starting with the input.

        Raises:
            ArchitectureError: naming the first layer and dimension where the
                shapes go wrong, or a final shape that is not the output shape.
        """
        check_membership(space, self)
        return _trace(space, self)

    def conv_shapes(self, space: SearchSpace) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
        """Per layer, the shape after the convolution and the shape after the pool."""
        check_membership(space, self)
        rows = []
        current = space.input_shape
        for l in range(self.layers):
            conv = tuple(
                conv_output_size(x, k, s, space.rounding)
                for x, k, s in zip(current, self.kernel[l], self.stride[l])
            )
            pooled = tuple(space.apply_layer(x, k, s, d) for d, (x, k, s) in enumerate(zip(current, self.kernel[l], self.stride[l])))
            rows.append((conv, pooled))
            current = pooled
        return rows


def _trace(space: SearchSpace, arch: Architecture) -> list[tuple[int, ...]]:
    shapes = [space.input_shape]
    current = space.input_shape
    for l in range(arch.layers):
        current = tuple(
            space.apply_layer(x, k, s, d)
            for d, (x, k, s) in enumerate(zip(current, arch.kernel[l], arch.stride[l]))
        )
        shapes.append(current)
    return shapes


def check_membership(space: SearchSpace, arch: Architecture) -> None:
    """Raise ArchitectureError unless ``arch`` is a member of ``space``.

    The message names the first layer (1-based, as a person counts) and
    dimension where the architecture leaves the space.
    """
    if arch.dims != space.dims:
        raise ArchitectureError(f"architecture has {arch.dims} dimensions but the space has {space.dims}")
    if not space.min_layers <= arch.layers <= space.max_layers:
        raise ArchitectureError(
            f"architecture has {arch.layers} layers but the space allows "
            f"{space.min_layers}..{space.max_layers}"
        )
    current = list(space.input_shape)
    for l in range(arch.layers):
        ks, ss = arch.kernel[l], arch.stride[l]
        if space.square and (len(set(ks)) > 1 or len(set(ss)) > 1):
            raise ArchitectureError(f"layer {l + 1}: the space is square but kernel {list(ks)} / stride {list(ss)} differ across dimensions")
        for d in range(space.dims):
            x, k, s = current[d], ks[d], ss[d]
            if not _pair_allowed(space, x, k, s):
                raise ArchitectureError(
                    f"layer {l + 1}, dimension {d}: kernel {k} stride {s} is not allowed on size {x} "
                    f"(need k <= {x}, s <= {x}, k {_REL_TEXT[space.relation]} s"
                    + (f", kernel in {space.kernel_range[0]}:{space.kernel_range[1]}" if space.kernel_range else "")
                    + (f", stride in {space.stride_range[0]}:{space.stride_range[1]}" if space.stride_range else "")
                    + ")"
                )
            y = conv_output_size(x, k, s, space.rounding)
            if y is None:
                raise ArchitectureError(
                    f"layer {l + 1}, dimension {d}: ({x} - {k}) is not divisible by stride {s} (exact rounding)"
                )
            v = space.apply_layer(x, k, s, d)
            if v is None:
                pk, ps = space.pool[d]
                raise ArchitectureError(
                    f"layer {l + 1}, dimension {d}: the pool ({pk}, {ps}) does not fit the size {y} after the convolution"
                )
            current[d] = v
    if tuple(current) != space.output_shape:
        raise ArchitectureError(
            f"after layer {arch.layers} the shape is {tuple(current)}, not the output shape {space.output_shape}"
        )


_REL_TEXT = {"gt": ">", "ge": ">=", "any": "any"}


def _pair_allowed(space: SearchSpace, size: int, k: int, s: int) -> bool:
    """Whether (k, s) is a pair the space offers a layer on ``size`` (divisibility aside)."""
    if not (1 <= k <= size and 1 <= s <= size and _relation_holds(k, s, space.relation)):
        return False
    if space.kernel_range and not space.kernel_range[0] <= k <= space.kernel_range[1]:
        return False
    return not (space.stride_range and not space.stride_range[0] <= s <= space.stride_range[1])


# A run of more digits than any integer nasgen reads; searched for before parsing (at C speed,
# where a parse_int hook would call Python once per integer). Digits inside a string also match:
# no nasgen file holds such a string.
_LONG_DIGITS = re.compile("[0-9]{%d,}" % (MAX_JSON_INT_DIGITS + 1))
_LONG_DIGITS_BYTES = re.compile(b"[0-9]{%d,}" % (MAX_JSON_INT_DIGITS + 1))


def _no_constant(name: str) -> Any:
    raise NasgenError(f"{name} is not a JSON number")


def parse_json(text: str | bytes) -> Any:
    """``json.loads`` with bounds: integer digits, nesting depth, no NaN or Infinity.

    Python's parser converts integers of up to 4,300 digits (a huge integer
    would overflow numpy later, a longer one ends in ValueError) and recurses
    once per nesting level (a 100,000-deep array ends in RecursionError); both
    become one-line errors here. The depth bound is the interpreter's recursion
    limit, far above the 3 levels of an architecture and 4 of a sidecar.

    Raises:
        NasgenError: invalid JSON or a bound exceeded, in one line.

    >>> parse_json('{"layers": 1, "kernel": [[3]], "stride": [[1]]}')["kernel"]
    [[3]]
    """
    long_digits = (_LONG_DIGITS if isinstance(text, str) else _LONG_DIGITS_BYTES).search(text)
    if long_digits:
        raise NasgenError(f"a number of {len(long_digits.group())} digits (at most {MAX_JSON_INT_DIGITS} are read)")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise NasgenError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    except UnicodeDecodeError:
        raise NasgenError("not UTF-8 text") from None
    except RecursionError:
        raise NasgenError("JSON nested too deeply (an architecture is 3 levels deep)") from None


def architectures_from_lines(lines: Iterable[str], source: str = "input") -> Iterable[Architecture]:
    """Parse JSON Lines, skipping blank lines; errors name the line number."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield Architecture.from_json(line)
        except ArchitectureError as exc:
            raise ArchitectureError(f"{source} line {number}: {exc}") from None
