"""An npz's arrays sized from their headers, before numpy reads (and allocates) any of them.

``numpy.load`` allocates an array of the shape its ``.npy`` header declares before it reads the data, and a
zip member decompresses to whatever size its record says: a 600-byte file can ask for 10**13 entries and a
few megabytes can decompress to gigabytes. :func:`check_npz_sizes` reads only the zip directory and the
headers and refuses, in one line, anything over the memory limit or larger than the data that backs it.
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from nasgen.common.errors import NasgenError
from nasgen.common.memory import human_bytes, memory_limit_bytes

__all__ = ["check_npz_sizes"]

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"


def _npz_member(names: Sequence[str], key: str) -> str | None:
    # numpy.savez writes KEY.npy; NpzFile also finds a member named KEY itself.
    for name in (key + ".npy", key):
        if name in names:
            return name
    return None


def check_npz_sizes(path: str | os.PathLike, keys: Sequence[str], *, limit: int | None = None,
                    what: str = "the file", error: type[NasgenError] = NasgenError) -> dict[str, tuple]:
    """Check an npz's members against the memory limit from their headers alone, before any array is read.

    Each member's decompressed size (the zip's own record, which also bounds
    what decompressing it can produce) and the shape and dtype its ``.npy``
    header declares are read without loading the data; an array whose header
    declares more bytes than its member holds, or members that together
    would need more than the limit, are refused.

    Args:
        path: the ``.npz`` file.
        keys: the arrays that will be read (others in the file are not).
        limit: bytes; None is :func:`nasgen.common.memory.memory_limit_bytes`.
        what: how a message names the file's kind.
        error: the :class:`~nasgen.common.errors.NasgenError` subclass to raise (a data file's
            :class:`~nasgen.common.errors.DataError`, for example).

    Returns:
        ``{key: (shape, dtype)}`` as the headers declare them.

    Raises:
        NasgenError: (``error``) a missing file, a ``.npy`` file (one array, not an npz), a file that is not a zip,
            missing keys, an unreadable or object-dtype header, or sizes over the limit.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.npz"
    >>> np.savez(p, x=np.zeros((3, 4), np.uint8))
    >>> check_npz_sizes(p, ("x",))
    {'x': ((3, 4), dtype('uint8'))}
    """
    path = Path(path)
    limit = memory_limit_bytes() if limit is None else limit
    try:
        with open(path, "rb") as handle:
            magic = handle.read(6)
    except FileNotFoundError:
        raise error(f"data file {path} does not exist") from None
    except IsADirectoryError:
        raise error(f"data file {path} is a directory; give an .npz file") from None
    except OSError as exc:
        raise error(f"cannot read data file {path}: {exc.strerror}") from None
    if magic == _NPY_MAGIC:
        raise error(f"{path} is a single .npy array, not an .npz holding {', '.join(keys)} "
                        "(write one with numpy.savez)")
    if magic[:4] != _ZIP_MAGIC:
        raise error(f"{path} is not an .npz file (not a zip archive); {what} holds {', '.join(keys)}")
    declared: dict[str, tuple] = {}
    total = 0
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            members = {key: _npz_member(names, key) for key in keys}
            missing = sorted(key for key, name in members.items() if name is None)
            if missing:
                raise error(f"{path} lacks {missing}; {what} holds {', '.join(keys)}")
            for key, name in members.items():
                info = archive.getinfo(name)
                if info.file_size > limit:
                    raise error(
                        f"{path}: {key} decompresses to {human_bytes(info.file_size)}, over the memory limit of "
                        f"{human_bytes(limit)} (NASGEN_MEMORY_LIMIT)")
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                    elif version in ((2, 0), (3, 0)):
                        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
                    else:  # pragma: no cover - read_magic refuses other versions itself
                        raise ValueError(f"npy format version {version}")
                    header_size = member.tell()
                if dtype.hasobject:
                    raise error(f"{path} holds object arrays ({key}), which are refused (allow_pickle=False)")
                # Python integers: a header such as (2**40, 2**40) must not wrap the way an int64 product would.
                size = math.prod(shape) * dtype.itemsize
                if size > info.file_size - header_size:
                    raise error(
                        f"{path}: {key}'s header declares shape {shape} of {dtype} ({human_bytes(size)}) but the "
                        f"member holds {human_bytes(max(info.file_size - header_size, 0))} of data")
                total += size
                declared[key] = (shape, dtype)
    except NasgenError:
        raise
    except (OSError, zipfile.BadZipFile, EOFError, ValueError, KeyError, NotImplementedError) as exc:
        raise error(f"{path} is not a readable .npz file ({type(exc).__name__}: {str(exc)[:200]})") from None
    if total > limit:
        raise error(f"{path} holds {human_bytes(total)} of arrays, over the memory limit of {human_bytes(limit)} "
                        "(NASGEN_MEMORY_LIMIT)")
    return declared
