"""Architectures on disk: JSON Lines and compressed numpy arrays, read and written as (layers, kernel, stride).

Two formats hold the same data:

* JSON Lines (``.jsonl``, the default): one ``{"layers": L, "kernel": [[..]], "stride": [[..]]}`` per line,
  readable by anything;
* compressed arrays (``.npz``): ``layers`` (M,), ``kernel`` and ``stride`` (M, N, K), in the smallest
  unsigned integer dtype that holds them; about 7 times smaller than JSON Lines and read back in a
  fraction of the time.

:class:`ArchitectureWriter` writes either to a temporary file beside the target and renames it into
place when the run ends (completed or interrupted), so a refused or killed run never leaves a
half-written target behind and an interrupted one leaves a valid file with every completed sample.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import IO

import numpy as np

from nasgen.space import ArchitectureError, NasgenError, SearchSpace, architectures_from_lines

__all__ = ["FORMATS", "ArchitectureWriter", "format_for", "read_arrays", "write_arrays"]

FORMATS = ("jsonl", "npz")


def format_for(path: str | os.PathLike | None, fmt: str | None = None) -> str:
    """The format to write: ``fmt`` if given, else from the file name (``.npz`` -> npz, otherwise jsonl).

    Raises:
        NasgenError: an unknown format, or ``npz`` to standard output.
    """
    if fmt is not None and fmt not in FORMATS:
        raise NasgenError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt is None:
        fmt = "npz" if path not in (None, "-") and str(path).endswith(".npz") else "jsonl"
    if fmt == "npz" and path in (None, "-"):
        raise NasgenError("npz output needs a file (-o F.npz); standard output takes JSON Lines")
    return fmt


def _smallest_dtype(*arrays: np.ndarray) -> np.dtype:
    biggest = max((int(a.max()) for a in arrays if a.size), default=0)
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        if biggest <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise ArchitectureError("a kernel or stride does not fit in 64 bits")  # pragma: no cover - refused earlier


def _npz_bytes(layers: np.ndarray, kernel: np.ndarray, stride: np.ndarray) -> bytes:
    dtype = _smallest_dtype(layers, kernel, stride)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, layers=layers.astype(dtype), kernel=kernel.astype(dtype), stride=stride.astype(dtype))
    return buffer.getvalue()


def write_arrays(path: str | os.PathLike, layers, kernel, stride) -> None:
    """Write (layers (M,), kernel (M, N, K), stride (M, N, K)) as a compressed ``.npz``, atomically.

    Raises:
        NasgenError: the file cannot be written (named, with the OS reason).
    """
    layers, kernel, stride = (np.asarray(a) for a in (layers, kernel, stride))
    with ArchitectureWriter(path, fmt="npz") as writer:
        writer.write(layers, kernel, stride)


def _jsonl_lines(layers: np.ndarray, kernel: np.ndarray, stride: np.ndarray) -> str:
    lines = []
    for L, k, s in zip(layers.tolist(), kernel.tolist(), stride.tolist()):
        lines.append(json.dumps({"layers": L, "kernel": k[:L], "stride": s[:L]}))
    return "".join(line + "\n" for line in lines)


class ArchitectureWriter:
    """Streams architecture chunks to a JSON Lines or npz file (or JSON Lines to stdout).

    A file target is written through a temporary file in the same folder and
    renamed into place by :meth:`close` (``commit=True``, also on an
    interrupt); ``close(commit=False)`` removes the temporary file and leaves
    any existing target untouched. JSON Lines are flushed after every chunk.

    Args:
        path: the target file, or None / ``"-"`` for standard output.
        fmt: ``"jsonl"`` or ``"npz"``; default from the file name.

    Raises:
        NasgenError: the folder does not exist or cannot be written.
    """

    def __init__(self, path: str | os.PathLike | None, fmt: str | None = None) -> None:
        self.format = format_for(path, fmt)
        self.path = None if path in (None, "-") else Path(path)
        self.written = 0
        self._chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._temp: Path | None = None
        self._handle: IO[str] | None = None
        if self.path is None:
            self._handle = sys.stdout
            return
        folder = self.path.parent if str(self.path.parent) else Path(".")
        try:
            if self.path.is_dir():
                raise NasgenError(f"cannot write {self.path}: it is a directory")
            fd, name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".part", dir=folder)
        except OSError as exc:
            raise NasgenError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        self._temp = Path(name)
        if self.format == "jsonl":
            self._handle = os.fdopen(fd, "w", encoding="utf-8")
        else:
            os.close(fd)

    def write(self, layers: np.ndarray, kernel: np.ndarray, stride: np.ndarray) -> None:
        """Append one chunk of architectures."""
        if len(layers) == 0:
            return
        if self.format == "npz":
            self._chunks.append((layers, kernel, stride))
        else:
            try:
                self._handle.write(_jsonl_lines(layers, kernel, stride))
                self._handle.flush()
            except OSError as exc:
                raise NasgenError(f"cannot write {self.path or 'standard output'}: {exc.strerror or exc}") from None
        self.written += len(layers)

    def close(self, commit: bool = True) -> None:
        """Finish: rename the temporary file into place (``commit``) or remove it."""
        if self.path is None:
            if self._handle is not None:
                self._handle.flush()
            self._handle = None
            return
        if self._temp is None:
            return
        temp, self._temp = self._temp, None
        try:
            if commit and self.format == "npz":
                if self._chunks:
                    arrays = [np.concatenate(parts) for parts in zip(*self._chunks)]
                else:
                    arrays = [np.zeros(0, dtype=np.uint8), np.zeros((0, 0, 0), dtype=np.uint8),
                              np.zeros((0, 0, 0), dtype=np.uint8)]
                temp.write_bytes(_npz_bytes(*arrays))
            if self._handle is not None:
                self._handle.close()
                self._handle = None
            if commit:
                os.replace(temp, self.path)
        except OSError as exc:
            raise NasgenError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        finally:
            temp.unlink(missing_ok=True)  # already renamed away when committed

    def __enter__(self) -> "ArchitectureWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # an interrupt keeps what was completed; an error leaves the target as it was
        self.close(commit=exc_type is None or issubclass(exc_type, KeyboardInterrupt))


def _pad(layers: np.ndarray, kernel: np.ndarray, stride: np.ndarray, space: SearchSpace | None):
    if space is None:
        return layers, kernel, stride
    M, N, K = kernel.shape
    if K != space.dims and M:
        raise ArchitectureError(f"the architectures have {K} dimensions; the space has {space.dims}")
    if N > space.max_layers and M and int(layers.max()) > space.max_layers:
        raise ArchitectureError(
            f"an architecture has {int(layers.max())} layers; the space allows at most {space.max_layers}")
    out = []
    for a in (kernel, stride):
        b = np.zeros((M, space.max_layers, space.dims), dtype=np.int64)
        n = min(N, space.max_layers)
        if M and K == space.dims:
            b[:, :n] = a[:, :n]
        out.append(b)
    return layers, out[0], out[1]


def _read_npz(data: bytes, source: str):
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            missing = [name for name in ("layers", "kernel", "stride") if name not in npz.files]
            if missing:
                raise NasgenError(f"{source} is an npz file without the array {missing[0]!r} "
                                  "(nasgen writes layers, kernel and stride)")
            arrays = [np.asarray(npz[name]) for name in ("layers", "kernel", "stride")]
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise NasgenError(f"{source} is not a readable npz file ({exc})") from None
    layers, kernel, stride = arrays
    if (layers.ndim != 1 or kernel.ndim != 3 or stride.shape != kernel.shape or len(kernel) != len(layers)
            or any(a.dtype.kind not in "iu" for a in arrays)):
        raise NasgenError(f"{source}: layers must be (M,) and kernel, stride (M, N, K) integer arrays, got "
                          f"{layers.shape} {layers.dtype}, {kernel.shape} {kernel.dtype}, {stride.shape} {stride.dtype}")
    if layers.size and (int(layers.min()) < 1 or int(layers.max()) > kernel.shape[1]):
        raise NasgenError(f"{source}: a layer count is outside 1..{kernel.shape[1]}")
    return tuple(a.astype(np.int64) for a in arrays)


def read_arrays(path: str | os.PathLike, space: SearchSpace | None = None):
    """Read architectures from a JSON Lines or ``.npz`` file (``"-"``: standard input) into arrays.

    The format is recognised from the content (an npz file is a zip archive).
    With ``space``, every architecture is checked to belong to it and the arrays
    are shaped (M, N, K) for the space; without, N is the longest architecture.

    Returns:
        (layers (M,), kernel (M, N, K), stride (M, N, K)) int64 arrays.

    Raises:
        NasgenError: an unreadable or malformed file, named with the first bad line or array.
        ArchitectureError: with ``space``, an architecture outside it.
    """
    from nasgen.core import to_arrays
    from nasgen.space import check_membership

    source = "standard input" if str(path) == "-" else str(path)
    try:
        data = sys.stdin.buffer.read() if str(path) == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise NasgenError(f"cannot read {source}: {exc.strerror or exc}") from None
    if data[:4] == b"PK\x03\x04":
        layers, kernel, stride = _read_npz(data, source)
        if space is not None:
            from nasgen.core import arrays_to_architectures

            for number, arch in enumerate(arrays_to_architectures(layers, kernel, stride), start=1):
                try:
                    check_membership(space, arch)
                except ArchitectureError as exc:
                    raise ArchitectureError(f"{source} architecture {number}: {exc}") from None
        return _pad(layers, kernel, stride, space)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise NasgenError(f"{source} is neither an npz file nor UTF-8 JSON Lines") from None
    archs = list(architectures_from_lines(text.splitlines(), source=source))
    if space is not None:
        for number, arch in enumerate(archs, start=1):
            try:
                check_membership(space, arch)
            except ArchitectureError as exc:
                raise ArchitectureError(f"{source} architecture {number}: {exc}") from None
        return to_arrays(space, archs)
    dims = archs[0].dims if archs else 1
    if any(a.dims != dims for a in archs):
        raise ArchitectureError(f"{source}: architectures of different numbers of dimensions")
    deepest = max((a.layers for a in archs), default=1)
    layers = np.array([a.layers for a in archs], dtype=np.int64)
    kernel = np.zeros((len(archs), deepest, dims), dtype=np.int64)
    stride = np.zeros_like(kernel)
    for i, a in enumerate(archs):
        kernel[i, : a.layers] = a.kernel
        stride[i, : a.layers] = a.stride
    return layers, kernel, stride
