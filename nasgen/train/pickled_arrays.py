"""Numpy arrays read from a pickle's opcode stream as data: nothing a file names is imported or called.

nasgen never unpickles a file: a pickle may name any callable, and even a restricted
``pickle.Unpickler`` is the whole pickle machine. The classic ``mnist.pkl.gz`` is a pickle,
though, so :func:`read_pickled_arrays` interprets the few opcodes that a pickle of numeric numpy
arrays in tuples, lists and dicts holds (protocols 0 to 5), written from the format
specification. It keeps the pickle machine's stack, marks and memo, but every value it makes is
data - ``None``, bools, ints, ``str``, ``bytes``, tuples, lists, dicts, numpy dtypes and arrays -
and the only "globals" it knows stand for numpy's own array reconstruction, which it performs
itself from (shape, dtype descriptor, byte order, raw bytes) with ``numpy.frombuffer``:

* ``numpy.core.multiarray._reconstruct`` / ``numpy._core.multiarray._reconstruct`` of
  ``numpy.ndarray``, then BUILD with the array's state (protocols 0 to 4);
* ``numpy.core.numeric._frombuffer`` / ``numpy._core.numeric._frombuffer`` (protocol 5);
* ``numpy.dtype`` of a plain descriptor (``f4``, ``i8``, ``u1``, ``U2``, ...), then BUILD with
  its byte order;
* ``_codecs.encode(text, "latin1")`` and ``builtins.bytes()``: how Python 3 writes an array's
  raw bytes at protocols 0 to 2.

Every other opcode (INST, OBJ, NEWOBJ, EXT1, PERSID, ...) and every other global is refused in
one line that names it, when it is met: a global is never resolved, so nothing it names can run.
Each array's declared size, with everything read before it, is checked against
:func:`nasgen.common.memory.memory_limit_bytes` before the array is allocated.

References:
    Python's ``Lib/pickletools.py``: the annotated specification of every pickle opcode.
    numpy's ``ndarray.__reduce__`` / ``__setstate__`` and ``dtype.__reduce__`` / ``__setstate__``
    (``numpy/_core/src/multiarray/methods.c``, ``descriptor.c``): what an array's pickle holds.
"""

from __future__ import annotations

import codecs
import enum
import math
import re
from collections.abc import Callable, Iterator

import numpy as np

from nasgen.common.errors import DataError

__all__ = ["MAX_NESTING", "read_pickled_arrays"]

#: Containers nested deeper than this are refused (no real array file comes close).
MAX_NESTING = 100
_HIGHEST_PROTOCOL = 5
# What each value on the stack or in the memo is charged against the memory limit, beyond its
# payload: about a small Python object and its references.
_VALUE_OVERHEAD = 64


class _Global(enum.Enum):
    """The only globals a file may name; each stands for an operation this module performs itself."""

    RECONSTRUCT = "numpy array reconstruction"
    NDARRAY = "numpy.ndarray"
    DTYPE = "numpy.dtype"
    FROMBUFFER = "numpy array from a buffer"
    CODECS_ENCODE = "_codecs.encode"
    BYTES = "bytes"


# numpy 1.x names numpy.core, numpy 2 numpy._core; Python 2 and fix_imports write __builtin__.
_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _Global.RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _Global.RECONSTRUCT,
    ("numpy", "ndarray"): _Global.NDARRAY,
    ("numpy", "dtype"): _Global.DTYPE,
    ("numpy.core.numeric", "_frombuffer"): _Global.FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _Global.FROMBUFFER,
    ("_codecs", "encode"): _Global.CODECS_ENCODE,
    ("builtins", "bytes"): _Global.BYTES,
    ("__builtin__", "bytes"): _Global.BYTES,
}

# Plain descriptors only: booleans, integers, floats, complex numbers, fixed-width strings and raw
# records. Anything numpy.dtype would parse beyond these (object, datetime, "f4,i4") is refused.
_DESCRIPTOR = re.compile(r"[biufcSUV][0-9]{1,6}")


class _PendingArray:
    """What ``_reconstruct(ndarray, (0,), b"b")`` makes: an array that BUILD then gives its data."""

    __slots__ = ("array",)

    def __init__(self):
        self.array: np.ndarray | None = None


class _PendingDtype:
    """What ``numpy.dtype(descr, align, copy)`` makes: a dtype that BUILD then gives its byte order."""

    __slots__ = ("built", "dtype")

    def __init__(self, dtype: np.dtype):
        self.dtype = dtype
        self.built = False


class _Malformed(Exception):
    """A stream that is not a well-formed pickle; turned into a DataError naming the source."""


class _Refused(Exception):
    """Something well formed that nasgen does not read; turned into a DataError naming the source."""


# --- the tokenizer: opcode byte -> (name, argument reader) -------------------------------------

Reader = Callable[[bytes, int], "tuple[object, int]"]


def _take(data: bytes, pos: int, size: int) -> tuple[memoryview, int]:
    end = pos + size
    if size < 0 or end > len(data):
        raise _Malformed(f"it ends inside an argument of {size} bytes at byte {pos}")
    return memoryview(data)[pos:end], end


def _fixed(size: int, signed: bool) -> Reader:
    def read(data, pos):
        raw, pos = _take(data, pos, size)
        return int.from_bytes(raw, "little", signed=signed), pos

    return read


def _counted(size: int, signed: bool = False) -> Reader:
    length = _fixed(size, signed)

    def read(data, pos):
        count, pos = length(data, pos)
        return _take(data, pos, count)

    return read


def _line(data: bytes, pos: int) -> tuple[bytes, int]:
    end = data.find(b"\n", pos)
    if end < 0:
        raise _Malformed(f"it ends inside a text argument at byte {pos}")
    return data[pos:end], end + 1


def _two_lines(data: bytes, pos: int) -> tuple[tuple[bytes, bytes], int]:
    first, pos = _line(data, pos)
    second, pos = _line(data, pos)
    return (first, second), pos


def _none(data: bytes, pos: int) -> tuple[None, int]:
    return None, pos


_OPCODES: dict[int, tuple[str, Reader]] = {
    ord(code): entry
    for code, entry in {
        "\x80": ("PROTO", _fixed(1, False)),
        "\x95": ("FRAME", _fixed(8, False)),  # a buffering hint: its length is not needed here
        ".": ("STOP", _none),
        "(": ("MARK", _none),
        "I": ("INT", _line),
        "J": ("BININT", _fixed(4, True)),
        "K": ("BININT1", _fixed(1, False)),
        "M": ("BININT2", _fixed(2, False)),
        "L": ("LONG", _line),
        "\x8a": ("LONG1", _counted(1)),
        "\x8b": ("LONG4", _counted(4, signed=True)),
        "S": ("STRING", _line),
        "T": ("BINSTRING", _counted(4, signed=True)),
        "U": ("SHORT_BINSTRING", _counted(1)),
        "B": ("BINBYTES", _counted(4)),
        "C": ("SHORT_BINBYTES", _counted(1)),
        "\x8e": ("BINBYTES8", _counted(8)),
        "\x96": ("BYTEARRAY8", _counted(8)),
        "V": ("UNICODE", _line),
        "X": ("BINUNICODE", _counted(4)),
        "\x8c": ("SHORT_BINUNICODE", _counted(1)),
        "\x8d": ("BINUNICODE8", _counted(8)),
        "N": ("NONE", _none),
        "\x88": ("NEWTRUE", _none),
        "\x89": ("NEWFALSE", _none),
        "]": ("EMPTY_LIST", _none),
        "l": ("LIST", _none),
        "a": ("APPEND", _none),
        "e": ("APPENDS", _none),
        ")": ("EMPTY_TUPLE", _none),
        "t": ("TUPLE", _none),
        "\x85": ("TUPLE1", _none),
        "\x86": ("TUPLE2", _none),
        "\x87": ("TUPLE3", _none),
        "}": ("EMPTY_DICT", _none),
        "d": ("DICT", _none),
        "s": ("SETITEM", _none),
        "u": ("SETITEMS", _none),
        "c": ("GLOBAL", _two_lines),
        "\x93": ("STACK_GLOBAL", _none),
        "R": ("REDUCE", _none),
        "b": ("BUILD", _none),
        "p": ("PUT", _line),
        "q": ("BINPUT", _fixed(1, False)),
        "r": ("LONG_BINPUT", _fixed(4, False)),
        "\x94": ("MEMOIZE", _none),
        "g": ("GET", _line),
        "h": ("BINGET", _fixed(1, False)),
        "j": ("LONG_BINGET", _fixed(4, False)),
    }.items()
}

# The rest of the pickle opcodes, named only to refuse them in words.
_REFUSED_OPCODES = {
    ord(code): name
    for code, name in {
        "i": "INST", "o": "OBJ", "\x81": "NEWOBJ", "\x92": "NEWOBJ_EX", "\x82": "EXT1", "\x83": "EXT2",
        "\x84": "EXT4", "P": "PERSID", "Q": "BINPERSID", "0": "POP", "1": "POP_MARK", "2": "DUP",
        "F": "FLOAT", "G": "BINFLOAT", "\x8f": "EMPTY_SET", "\x90": "ADDITEMS", "\x91": "FROZENSET",
        "\x97": "NEXT_BUFFER", "\x98": "READONLY_BUFFER",
    }.items()
}


def _tokens(data: bytes) -> Iterator[tuple[str, object, int]]:
    """``(opcode name, raw argument, byte offset)`` for each opcode up to and including STOP."""
    pos = 0
    while True:
        if pos >= len(data):
            raise _Malformed(f"it ends at byte {pos} without a STOP opcode (a truncated file?)")
        code = data[pos]
        if code not in _OPCODES:
            if code in _REFUSED_OPCODES:
                raise _Refused(f"pickle opcode {_REFUSED_OPCODES[code]} at byte {pos} is refused: "
                                "nasgen reads only numpy arrays in tuples, lists and dicts")
            raise _Malformed(f"byte {pos} (0x{code:02x}) is not a pickle opcode")
        name, read = _OPCODES[code]
        argument, after = read(data, pos + 1)
        yield name, argument, pos
        if name == "STOP":
            return
        pos = after


# --- the interpreter ----------------------------------------------------------------------------

def _shown(text: str) -> str:
    """A name from a file, safe to put in a one-line message."""
    return text if text.isprintable() and len(text) <= 100 else ascii(text[:100])


def _text(value, what: str) -> str:
    """A str, or Python 2's byte string (SHORT_BINSTRING) read as latin-1."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, str):
        return value
    raise _Malformed(f"{what} is a {type(value).__name__}, not a string")


def _integer(value, what: str) -> int:
    if type(value) is not int:  # bools and anything else
        raise _Malformed(f"{what} is a {type(value).__name__}, not an integer")
    return value


def _flag(value, what: str) -> bool:
    if type(value) is bool or (type(value) is int and value in (0, 1)):  # Python 2 wrote 0 and 1
        return bool(value)
    raise _Malformed(f"{what} is {_shown(repr(value))}, not a boolean")


def _tuple(value, length: int | tuple[int, ...], what: str) -> tuple:
    lengths = (length,) if isinstance(length, int) else length
    if type(value) is not tuple or len(value) not in lengths:
        shown = type(value).__name__ if type(value) is not tuple else f"a tuple of {len(value)}"
        raise _Malformed(f"{what} must be a tuple of {' or '.join(map(str, lengths))} items, got {shown}")
    return value


def _dtype_of(value, what: str) -> np.dtype:
    if not isinstance(value, _PendingDtype):
        raise _Malformed(f"{what} is a {type(value).__name__}, not a numpy dtype")
    return value.dtype


class _Machine:
    """The pickle machine's stack, marks and memo, over data only."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0
        self.stack: list = []
        self.marks: list[list] = []
        self.memo: dict[int, object] = {}

    # memory ------------------------------------------------------------------------------------
    def charge(self, size: int, what: Callable[[], str]) -> None:
        from nasgen.common.memory import human_bytes

        self.used += size
        if self.used > self.limit:
            raise _Refused(f"{what()} passes the memory limit of {human_bytes(self.limit)} "
                            f"(NASGEN_MEMORY_LIMIT) with what is read before it")

    def push(self, value, payload: int = 0) -> None:
        self.charge(_VALUE_OVERHEAD + payload, lambda: f"a value of {payload} bytes")
        self.stack.append(value)

    def pop(self):
        if not self.stack:
            raise _Malformed("an opcode takes a value from an empty stack")
        return self.stack.pop()

    def pop_mark(self) -> list:
        if not self.marks:
            raise _Malformed("an opcode needs a MARK that is not there")
        items, self.stack = self.stack, self.marks.pop()
        return items

    # globals and calls -------------------------------------------------------------------------
    def resolve(self, module: str, name: str) -> _Global:
        found = _GLOBALS.get((module, name))
        if found is None:
            raise _Refused(f"global {_shown(module)}.{_shown(name)} is forbidden: "
                            "nasgen reads only numpy arrays from a pickle and never imports or calls what it names")
        return found

    def call(self, function, arguments):
        if not isinstance(function, _Global):
            raise _Malformed(f"REDUCE calls a {type(function).__name__}, not a global")
        if type(arguments) is not tuple:
            raise _Malformed(f"REDUCE's arguments are a {type(arguments).__name__}, not a tuple")
        if function is _Global.RECONSTRUCT:
            subtype, _, _ = _tuple(arguments, 3, "_reconstruct's arguments")
            if subtype is not _Global.NDARRAY:
                raise _Malformed("_reconstruct builds something other than numpy.ndarray")
            return _PendingArray()
        if function is _Global.DTYPE:
            descriptor = _text(_tuple(arguments, 3, "numpy.dtype's arguments")[0], "a dtype descriptor")
            if not _DESCRIPTOR.fullmatch(descriptor):
                raise _Refused(f"numpy dtype {_shown(descriptor)!r} is refused: nasgen reads "
                                "only booleans, integers, floats, complex numbers, strings and raw records")
            try:
                dtype = np.dtype(descriptor)
            except TypeError:  # "b2", "i3": no such type
                raise _Malformed(f"dtype {descriptor!r} does not exist") from None
            if dtype.itemsize == 0:
                raise _Malformed(f"dtype {descriptor} has no size")
            return _PendingDtype(dtype)
        if function is _Global.FROMBUFFER:
            buffer, dtype, shape, order, *axis_order = _tuple(arguments, (4, 5), "_frombuffer's arguments")
            return self.array(shape, _dtype_of(dtype, "_frombuffer's dtype"), _text(order, "an array order"),
                              buffer, axis_order[0] if axis_order else None)
        if function is _Global.CODECS_ENCODE:
            text, encoding = _tuple(arguments, 2, "_codecs.encode's arguments")
            if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
                raise _Malformed("_codecs.encode is used for something other than latin-1 bytes")
            try:
                encoded = text.encode("latin-1")
            except UnicodeEncodeError:
                raise _Malformed("_codecs.encode's text is not latin-1") from None
            self.charge(len(encoded), lambda: f"a byte string of {len(encoded)} bytes")
            return encoded
        if function is _Global.BYTES:
            _tuple(arguments, 0, "bytes's arguments")
            return b""
        raise _Malformed(f"{function.value} is called directly")

    def build(self, target, state) -> None:
        if isinstance(target, _PendingArray) and target.array is None:
            state = _tuple(state, (4, 5), "an array's state")
            if len(state) == 5:
                if _integer(state[0], "an array state's version") != 1:
                    raise _Malformed(f"array state version {state[0]} is not 1")
                state = state[1:]
            shape, dtype, fortran, raw = state
            order = "F" if _flag(fortran, "an array's Fortran flag") else "C"
            target.array = self.array(shape, _dtype_of(dtype, "an array's dtype"), order, raw, None)
        elif isinstance(target, _PendingDtype) and not target.built:
            state = _tuple(state, (8, 9), "a dtype's state")
            version, byteorder, subarray, names, fields, itemsize, _, _, *metadata = state
            if (version, len(state)) not in ((3, 8), (4, 9)):
                raise _Malformed(f"dtype state version {_shown(repr(version))} with {len(state)} items")
            if subarray is not None:
                raise _Refused("a dtype with a subarray shape is refused")
            if metadata and metadata[0] is not None and type(metadata[0]) is not dict:
                raise _Malformed("a dtype's metadata is not a dict")  # a dict is read and not kept
            if names is not None and (type(names) is not tuple or type(fields) is not dict):
                raise _Malformed("a dtype's field names or fields are malformed")
            # A record dtype's fields are not rebuilt: its records stay raw bytes (kind V).
            byteorder = _text(byteorder, "a dtype's byte order")
            if byteorder not in ("<", ">", "|", "="):
                raise _Malformed(f"byte order {_shown(byteorder)!r} is not one of < > | =")
            if _integer(itemsize, "a dtype's item size") not in (-1, target.dtype.itemsize):
                raise _Malformed(f"dtype {target.dtype.str} states an item size of {itemsize}")
            if byteorder in "<>":
                target.dtype = target.dtype.newbyteorder(byteorder)
            target.built = True
        else:
            raise _Malformed(f"BUILD sets the state of a {type(target).__name__}, which nasgen does not build")

    def array(self, shape, dtype: np.dtype, order: str, raw, axis_order) -> np.ndarray:
        """An array from its shape, dtype, memory order and raw bytes, copied out of the file's bytes."""
        if type(shape) is not tuple or len(shape) > 32:
            raise _Malformed(f"an array's shape is a {type(shape).__name__}, not a tuple of at most 32 sizes")
        shape = tuple(_integer(n, "an array dimension") for n in shape)
        if any(n < 0 for n in shape):
            raise _Malformed(f"array shape {shape} has a negative dimension")
        if type(raw) not in (bytes, bytearray):
            raise _Refused(f"an array's data is a {type(raw).__name__}, not raw bytes "
                            "(an object array?): nasgen reads only numeric arrays")
        if order not in ("C", "F") and not (order == "K" and axis_order is not None):
            raise _Malformed(f"array order {_shown(order)!r} is not C or F")
        if axis_order is not None:
            axis_order = tuple(_integer(n, "an axis") for n in _tuple(axis_order, len(shape), "an axis order"))
            if sorted(axis_order) != list(range(len(shape))):
                raise _Malformed(f"axis order {axis_order} is not a permutation of the array's axes")
            order = "C"
        count = math.prod(shape)
        size = count * dtype.itemsize

        def declared() -> str:
            from nasgen.common.memory import human_bytes

            return f"an array of shape {shape} and dtype {dtype} ({human_bytes(size)})"

        self.charge(size, declared)
        if len(raw) != size:
            raise _Refused(f"{declared()} comes with {len(raw)} bytes of data, not {size}")
        array = np.frombuffer(raw, dtype=dtype, count=count).reshape(shape, order=order)
        if axis_order is not None:
            array = array.transpose(axis_order)
        return array.copy(order="K")  # owns its memory, writable, in the file's memory order

    # the opcodes -------------------------------------------------------------------------------
    def run(self, data: bytes):
        for name, argument, pos in _tokens(data):
            try:
                if name == "STOP":
                    if self.marks or len(self.stack) != 1:
                        raise _Malformed("STOP leaves other than one value on the stack")
                    return self.stack[0]
                self.step(name, argument)
            except _Malformed as exc:
                raise _Malformed(f"{name} at byte {pos}: {exc}") from None
        raise AssertionError("_tokens ends with STOP")  # pragma: no cover

    def step(self, name: str, argument) -> None:
        if name == "PROTO":
            if argument > _HIGHEST_PROTOCOL:
                raise _Malformed(f"protocol {argument} is newer than {_HIGHEST_PROTOCOL}")
        elif name == "FRAME":
            pass
        elif name == "MARK":
            self.charge(_VALUE_OVERHEAD, lambda: "a MARK")
            self.marks.append(self.stack)
            self.stack = []
        elif name in ("BININT", "BININT1", "BININT2"):
            self.push(argument)
        elif name == "INT":
            if argument in (b"00", b"01"):  # protocol 0 writes False and True this way
                self.push(argument == b"01")
            else:
                self.push(self.parse_int(argument))
        elif name == "LONG":
            self.push(self.parse_int(argument[:-1] if argument.endswith(b"L") else argument))
        elif name in ("LONG1", "LONG4"):
            self.push(int.from_bytes(argument, "little", signed=True), len(argument))
        elif name in ("BINSTRING", "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8"):
            self.push(bytes(argument), len(argument))  # Python 2's str is read as bytes
        elif name == "BYTEARRAY8":
            self.push(bytearray(argument), len(argument))
        elif name == "STRING":
            if len(argument) < 2 or argument[0] != argument[-1] or argument[:1] not in (b"'", b'"'):
                raise _Malformed("the string is not quoted")
            self.push(codecs.escape_decode(argument[1:-1])[0], len(argument))
        elif name in ("BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8"):
            self.push(self.decode(bytes(argument), "utf-8"), len(argument))
        elif name == "UNICODE":
            self.push(self.decode(argument, "raw-unicode-escape"), len(argument))
        elif name == "NONE":
            self.push(None)
        elif name in ("NEWTRUE", "NEWFALSE"):
            self.push(name == "NEWTRUE")
        elif name == "EMPTY_LIST":
            self.push([])
        elif name == "LIST":
            self.push(self.pop_mark())
        elif name == "APPEND":
            value = self.pop()
            self.list_on_top().append(value)
        elif name == "APPENDS":
            values = self.pop_mark()
            self.list_on_top().extend(values)
        elif name == "EMPTY_TUPLE":
            self.push(())
        elif name == "TUPLE":
            self.push(tuple(self.pop_mark()))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            count = int(name[-1])
            if len(self.stack) < count:
                raise _Malformed("too few values on the stack")
            items = tuple(self.stack[-count:])
            del self.stack[-count:]
            self.push(items)
        elif name == "EMPTY_DICT":
            self.push({})
        elif name == "DICT":
            items = self.pop_mark()
            self.push(self.set_items({}, items))
        elif name == "SETITEM":
            value, key = self.pop(), self.pop()
            self.set_items(self.dict_on_top(), [key, value])
        elif name == "SETITEMS":
            items = self.pop_mark()
            self.set_items(self.dict_on_top(), items)
        elif name == "GLOBAL":
            module, qualified = (self.decode(part, "utf-8") for part in argument)
            self.push(self.resolve(module, qualified))
        elif name == "STACK_GLOBAL":
            qualified, module = self.pop(), self.pop()
            if type(module) is not str or type(qualified) is not str:
                raise _Malformed("STACK_GLOBAL's module and name are not strings")
            self.push(self.resolve(module, qualified))
        elif name == "REDUCE":
            arguments = self.pop()
            self.push(self.call(self.pop(), arguments))
        elif name == "BUILD":
            state = self.pop()
            if not self.stack:
                raise _Malformed("BUILD has nothing to build")
            self.build(self.stack[-1], state)
        elif name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            if not self.stack:
                raise _Malformed("there is nothing to memoize")
            index = len(self.memo) if name == "MEMOIZE" else self.parse_int(argument) if name == "PUT" else argument
            if index not in self.memo:
                self.charge(_VALUE_OVERHEAD, lambda: "a memo entry")
            self.memo[index] = self.stack[-1]
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            index = self.parse_int(argument) if name == "GET" else argument
            if index not in self.memo:
                raise _Malformed(f"memo entry {index} was never stored")
            self.push(self.memo[index])
        else:  # every name in _OPCODES has a branch above
            raise AssertionError(name)  # pragma: no cover

    # helpers -----------------------------------------------------------------------------------
    @staticmethod
    def parse_int(text: bytes) -> int:
        try:
            return int(text)
        except ValueError:  # not a number, or more digits than Python converts
            raise _Malformed(f"{_shown(text[:40].decode('latin-1'))!r} is not an integer") from None

    @staticmethod
    def decode(raw: bytes, encoding: str) -> str:
        try:
            return raw.decode(encoding, "surrogatepass") if encoding == "utf-8" else raw.decode(encoding)
        except UnicodeDecodeError as exc:
            raise _Malformed(f"text that is not {encoding} ({exc.reason})") from None

    def list_on_top(self) -> list:
        if not self.stack or type(self.stack[-1]) is not list:
            raise _Malformed("there is no list to append to")
        return self.stack[-1]

    def dict_on_top(self) -> dict:
        if not self.stack or type(self.stack[-1]) is not dict:
            raise _Malformed("there is no dict to set items in")
        return self.stack[-1]

    @staticmethod
    def set_items(target: dict, items: list) -> dict:
        if len(items) % 2:
            raise _Malformed("an odd number of keys and values")
        for key, value in zip(items[::2], items[1::2]):
            if type(key) not in (str, bytes, int, bool) and key is not None:
                raise _Malformed(f"a dict key is a {type(key).__name__}")
            target[key] = value
        return target


def _finished(value, source: str, done: dict[int, object], depth: int = 0):
    """The value with every pending array and dtype replaced by what BUILD made of it.

    ``done`` maps each container already finished (by id) to its result, so a value the memo
    shares many times is finished once: nested pairs ``t = (t, t)`` stay linear, not exponential.
    """
    if depth > MAX_NESTING:
        raise DataError(f"{source}: containers nest deeper than {MAX_NESTING} levels")
    if isinstance(value, _PendingArray):
        if value.array is None:
            raise DataError(f"{source}: an array is never given its data (a BUILD is missing)")
        return value.array
    if isinstance(value, _PendingDtype):
        return value.dtype
    if isinstance(value, _Global):
        raise DataError(f"{source}: the pickle holds the global {value.value} itself, not an array")
    if type(value) not in (tuple, list, dict):
        return value
    if id(value) in done:
        return done[id(value)]
    if type(value) is tuple:
        result = tuple(_finished(item, source, done, depth + 1) for item in value)
    elif type(value) is list:
        result = done[id(value)] = []  # registered first: a list may hold itself
        result.extend(_finished(item, source, done, depth + 1) for item in value)
    else:
        result = done[id(value)] = {}
        result.update((key, _finished(item, source, done, depth + 1)) for key, item in value.items())
    done[id(value)] = result
    return result


def read_pickled_arrays(data: bytes, *, source: str = "pickle"):
    """The value a pickle of numpy arrays holds, read as data: no global it names is imported or called.

    Args:
        data: the pickle's bytes (decompressed), any protocol from 0 to 5.
        source: what to call the data in messages (a path).

    Returns:
        ``None``, a bool, int, str, bytes, bytearray, numpy dtype or numpy array, or a tuple, list
        or dict of these. Arrays are C- or Fortran-ordered as written, writable, and own their memory.

    Raises:
        DataError: in one line, naming the first thing refused - an opcode or global other than
            those of a numeric array pickle (see the module docstring), a non-numeric or object
            array, an array larger than the memory limit (``NASGEN_MEMORY_LIMIT``, with what was
            read before it), data shorter or longer than an array's declared size, or a malformed
            or truncated stream.

    >>> read_pickled_arrays(b"(K\\x01U\\x02u1]K\\x03at.")  # MARK, 1, b"u1", [3], TUPLE, STOP
    (1, b'u1', [3])
    >>> read_pickled_arrays(b"cos\\nsystem\\n(S'true'\\ntR.")
    Traceback (most recent call last):
        ...
    nasgen.common.errors.DataError: pickle: global os.system is forbidden: nasgen reads only numpy arrays from a pickle and never imports or calls what it names
    """
    from nasgen.common.memory import memory_limit_bytes

    machine = _Machine(memory_limit_bytes())
    try:
        value = machine.run(data if type(data) is bytes else bytes(data))
    except _Malformed as exc:
        raise DataError(f"{source} is not a readable pickle of numpy arrays: {exc}") from None
    except _Refused as exc:
        raise DataError(f"{source}: {exc}") from None
    return _finished(value, source, {})
