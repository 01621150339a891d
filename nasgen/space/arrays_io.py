"""Architectures on disk: JSON Lines, compressed numpy arrays and Parquet, read and written as (layers, kernel, stride).

Three formats hold the same data:

* JSON Lines (``.jsonl``, the default): one ``{"layers": L, "kernel": [[..]], "stride": [[..]]}`` per line,
  readable by anything;
* compressed arrays (``.npz``): ``layers`` (M,), ``kernel`` and ``stride`` (M, N, K), in the smallest
  unsigned integer dtype that holds them; about 7 times smaller than JSON Lines and read back in a
  fraction of the time;
* Parquet (``.parquet``, with pyarrow): one flat row per architecture, ``layers``, ``k{l}_{d}``,
  ``s{l}_{d}`` (see :mod:`nasgen.space.parquet`), for pandas, polars and DuckDB.

:class:`ArchitectureWriter` writes either to a temporary file beside the target and renames it into
place when the run ends (completed or interrupted), so a refused or killed run never leaves a
half-written target behind and an interrupted one leaves a valid file with every completed sample.
"""

from __future__ import annotations

import io
import json
import math
import os
import stat
import sys
import time
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import IO, Iterable

import numpy as np

from nasgen.common.atomic import StagedFile, os_reason, signals_deferred, write_all
from nasgen.common.errors import ArchitectureError, NasgenError
from nasgen.common.memory import human_bytes, memory_limit_bytes
from nasgen.space.definition import MAX_INT, Architecture, SearchSpace, architectures_from_lines, check_membership
from nasgen.space.encoding import empty_arrays
from nasgen.space.membership import space_arrays
from nasgen.space.parquet import MAGIC as PARQUET_MAGIC
from nasgen.space.parquet import ParquetSink, iter_parquet_arrays

__all__ = ["FORMATS", "ArchitectureWriter", "arrays_to_jsonl_lines", "bounded_lines", "format_for", "iter_arrays",
           "max_line_bytes", "read_architectures", "read_arrays", "read_bounded_text", "write_architectures",
           "write_arrays"]

FORMATS = ("jsonl", "npz", "parquet")


def format_for(path: str | os.PathLike | None, fmt: str | None = None) -> str:
    """The format to write: ``fmt`` if given, else from the file name (``.npz`` -> npz, otherwise jsonl).

    Raises:
        NasgenError: an unknown format, or ``npz`` to standard output.
    """
    if fmt is not None and fmt not in FORMATS:
        raise NasgenError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt is None:
        name = "" if path in (None, "-") else str(path)
        fmt = "npz" if name.endswith(".npz") else "parquet" if name.endswith(".parquet") else "jsonl"
    if fmt != "jsonl" and path in (None, "-"):
        raise NasgenError(f"{fmt} output needs a file (-o F.{fmt}); standard output takes JSON Lines")
    return fmt


def _smallest_dtype(*arrays: np.ndarray) -> np.dtype:
    biggest = max((int(a.max()) for a in arrays if a.size), default=0)
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        if biggest <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise ArchitectureError("a kernel or stride does not fit in 64 bits")  # pragma: no cover - refused earlier


_NPZ_NAMES = ("layers", "kernel", "stride")


def _open_npz(handle) -> zipfile.ZipFile:
    # What np.savez_compressed writes, at zlib level 1 instead of 6: ten times faster (1.3 s against
    # 12.7 s for 1.5 million 8-layer 2-D architectures) for files 16% larger, so that a run stopped by
    # --timeout finishes writing promptly.
    return zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1)


class _NpzSpill:
    """Chunks of an npz being written, kept compressed in an unnamed temporary file until the run ends.

    An npz member starts with its array's shape and dtype, known only when the
    last chunk is in; so each chunk is deflated into a temporary file in the
    target's folder (unnamed: the system removes it when the process ends, kill -9
    included) and the members are streamed from it at the end, one chunk at a time.
    Memory stays at one chunk however many architectures are written.
    """

    def __init__(self, folder: Path) -> None:
        self.file = tempfile.TemporaryFile(dir=folder)
        # per chunk: (rows, dtype, [(offset, length) of layers, kernel, stride]); about 150 bytes per chunk
        self.chunks: list[tuple[int, np.dtype, list[tuple[int, int]]]] = []
        self.tail: tuple[int, ...] | None = None
        self.rows = 0

    def add(self, layers: np.ndarray, kernel: np.ndarray, stride: np.ndarray) -> None:
        if self.tail is None:
            self.tail = kernel.shape[1:]
        elif kernel.shape[1:] != self.tail:
            raise ArchitectureError(f"chunks of different shapes {self.tail} and {kernel.shape[1:]} in one npz file")
        dtype = _smallest_dtype(layers, kernel, stride)
        places = []
        for array in (layers, kernel, stride):
            packed = zlib.compress(np.ascontiguousarray(array, dtype=dtype).tobytes(), 1)
            places.append((self.file.tell(), len(packed)))
            write_all(self.file.fileno(), packed)
            self.file.seek(0, os.SEEK_END)
        self.chunks.append((len(layers), dtype, places))
        self.rows += len(layers)

    def write_npz(self, target) -> None:
        """Stream the npz (members layers, kernel, stride in the smallest dtype that holds every chunk) to ``target``."""
        dtype = max((d for _, d, _ in self.chunks), key=lambda d: d.itemsize, default=np.dtype(np.uint8))
        tail = self.tail if self.tail is not None else (0, 0)
        # buffered: a raw file's write may be short, and zipfile does not look at what write returns
        buffered = io.BufferedWriter(target, buffer_size=1 << 20)
        with _open_npz(buffered) as archive:
            for which, name in enumerate(_NPZ_NAMES):
                shape = (self.rows,) if which == 0 else (self.rows, *tail)
                with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array_header_1_0(
                        member, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape})
                    for _, chunk_dtype, places in self.chunks:
                        offset, length = places[which]
                        self.file.seek(offset)
                        raw = np.frombuffer(zlib.decompress(self.file.read(length)), dtype=chunk_dtype)
                        member.write(raw.astype(dtype, copy=False).tobytes())
        buffered.flush()
        buffered.detach()  # the staged file stays open for its commit

    def close(self) -> None:
        self.file.close()


def write_arrays(path: str | os.PathLike, layers, kernel, stride) -> None:
    """Write (layers (M,), kernel (M, N, K), stride (M, N, K)) as a compressed ``.npz``, atomically.

    Raises:
        NasgenError: the file cannot be written (named, with the OS reason).
    """
    layers, kernel, stride = (np.asarray(a) for a in (layers, kernel, stride))
    with ArchitectureWriter(path, fmt="npz") as writer:
        writer.write(layers, kernel, stride)


def arrays_to_jsonl_lines(layers, kernel, stride) -> list[str]:
    """JSON Lines rendering of (layers, kernel, stride) arrays, one string (without newline) per architecture.

    >>> arrays_to_jsonl_lines(np.array([1]), np.array([[[5], [0]]]), np.array([[[1], [0]]]))
    ['{"layers": 1, "kernel": [[5]], "stride": [[1]]}']
    """
    lines = []
    for L, k, s in zip(layers.tolist(), kernel.tolist(), stride.tolist()):
        lines.append(json.dumps({"layers": L, "kernel": k[:L], "stride": s[:L]}))
    return lines


def _jsonl_text(layers: np.ndarray, kernel: np.ndarray, stride: np.ndarray) -> str:
    return "".join(line + "\n" for line in arrays_to_jsonl_lines(layers, kernel, stride))


def read_architectures(path, space: SearchSpace | None = None) -> list[Architecture]:
    """Read a JSON Lines file of architectures; with ``space``, check every architecture belongs to it.

    Args:
        path: the file.
        space: the space the architectures must belong to (None: no check).

    Returns:
        The architectures, in file order.

    Raises:
        NasgenError: unreadable file, or a malformed line or one longer than :func:`max_line_bytes`
            (named by its number).
        ArchitectureError: with ``space``, an architecture outside it (named by its number).
    """
    try:
        with open(path, "rb") as handle:
            # each line at most max_line_bytes(): a file without line ends (/dev/zero) is one line of error
            text = (line.decode("utf-8") for line in bounded_lines(handle, str(path)))
            archs = list(architectures_from_lines(text, source=str(path)))
    except OSError as exc:
        raise NasgenError(f"cannot read {path}: {os_reason(exc)}") from None
    except UnicodeDecodeError:
        raise NasgenError(f"{path} is not a UTF-8 JSON Lines file") from None
    if space is not None:
        for number, arch in enumerate(archs, start=1):
            try:
                check_membership(space, arch)
            except ArchitectureError as exc:
                raise ArchitectureError(f"{path} architecture {number}: {exc}") from None
    return archs


def write_architectures(target: str | os.PathLike | IO[str], archs: Iterable[Architecture]) -> int:
    """Write architectures as JSON Lines, flushing each line.

    Args:
        target: a path (opened and truncated) or an open text file.
        archs: the architectures.

    Returns:
        How many were written.

    >>> import io
    >>> out = io.StringIO()
    >>> write_architectures(out, [Architecture(((5,),), ((1,),))]), out.getvalue()
    (1, '{"layers": 1, "kernel": [[5]], "stride": [[1]]}\\n')
    """
    if hasattr(target, "write"):
        handle, close = target, False
    else:
        handle, close = open(target, "w", encoding="utf-8"), True
    written = 0
    try:
        for arch in archs:
            handle.write(arch.to_json() + "\n")
            handle.flush()
            written += 1
    finally:
        if close:
            handle.close()
    return written


class ArchitectureWriter:
    """Streams architecture chunks to a JSON Lines or npz file (or JSON Lines to stdout).

    A regular-file target is written through a temporary file in the same
    folder and renamed into place by :meth:`close` (``commit=True``, also on an
    interrupt); ``close(commit=False)`` removes the temporary file and leaves
    any existing target untouched. A device or FIFO target (``/dev/null``) is
    written in place. JSON Lines are flushed after every chunk; if standard
    output is a regular file and a write fails (a full disk), it is cut back
    to the last complete line.

    Args:
        path: the target file, or None / ``"-"`` for standard output.
        fmt: ``"jsonl"`` or ``"npz"``; default from the file name.

    Raises:
        NasgenError: the folder does not exist or cannot be written; later, a
            failed write (named, with the OS reason). A closed standard output
            raises BrokenPipeError (the CLI exits quietly).
    """

    def __init__(self, path: str | os.PathLike | None, fmt: str | None = None) -> None:
        self.format = format_for(path, fmt)
        self.path = None if path in (None, "-") else Path(path)
        self.written = 0
        self._spill: _NpzSpill | None = None
        self._sink: ParquetSink | None = None
        self._spill_seconds = 0.0
        self._file: StagedFile | None = None
        self._stdout_good: int | None = None
        if self.path is None:
            self._stdout_good = _stdout_offset()
            return
        self._file = StagedFile(self.path)
        if self.format == "npz":
            try:
                self._spill = _NpzSpill(self._file.temp.parent if self._file.temp is not None else Path(tempfile.gettempdir()))
            except OSError as exc:
                self._file.discard()
                raise NasgenError(f"cannot write {self.path}: {os_reason(exc)}") from None
        elif self.format == "parquet":
            try:
                self._sink = ParquetSink(self._file.handle)
            except BaseException:
                self._file.discard()
                raise

    def closing_estimate(self) -> float:
        """Seconds :meth:`close` is expected to take, from the time the writes took so far.

        An npz is assembled at the end from its compressed chunks (inflated and deflated
        again: about as long as deflating them took); the other formats finish at once.
        A run with a deadline stops drawing early enough for the file to be written in time.
        """
        return 1.5 * self._spill_seconds

    @property
    def regular_file(self) -> bool:
        """Whether the target is a regular file (only then does a sidecar belong beside it)."""
        return self._file is not None and self._file.regular

    def write(self, layers: np.ndarray, kernel: np.ndarray, stride: np.ndarray) -> None:
        """Append one chunk of architectures (an interrupt waits until the chunk and its count are in)."""
        if len(layers) == 0:
            return
        with signals_deferred():
            self._write(layers, kernel, stride)

    def _write(self, layers: np.ndarray, kernel: np.ndarray, stride: np.ndarray) -> None:
        if self.format == "npz":
            if self._spill is None:
                raise NasgenError("npz output needs a file (-o F.npz); standard output takes JSON Lines")
            try:
                started = time.perf_counter()
                self._spill.add(np.asarray(layers), np.asarray(kernel), np.asarray(stride))
                self._spill_seconds += time.perf_counter() - started
            except OSError as exc:
                raise NasgenError(f"cannot write {self.path}: {os_reason(exc)}") from None
        elif self.format == "parquet":
            self._sink.write(layers, kernel, stride)
        elif self._file is not None:
            self._file.write(_jsonl_text(layers, kernel, stride))
        else:
            self._write_stdout(_jsonl_text(layers, kernel, stride))
        self.written += len(layers)

    def _write_stdout(self, text: str) -> None:
        try:
            sys.stdout.flush()
            try:
                fd = sys.stdout.fileno()
            except (AttributeError, ValueError, io.UnsupportedOperation):
                fd = None  # an in-process caller's StringIO
            if fd is None:
                sys.stdout.write(text)
            else:
                write_all(fd, text.encode(sys.stdout.encoding or "utf-8"))
        except BrokenPipeError:
            raise
        except OSError as exc:
            _cut_stdout(self._stdout_good)
            raise NasgenError(f"cannot write standard output: {os_reason(exc)}") from None
        self._stdout_good = _stdout_offset()

    def close(self, commit: bool = True) -> None:
        """Finish: rename the temporary file into place (``commit``) or remove it."""
        if self._file is None:
            return
        staged, self._file = self._file, None
        spill, self._spill = self._spill, None
        sink, self._sink = self._sink, None
        try:
            if not commit:
                if sink is not None:
                    sink.discard()
                staged.discard()
                return
            try:
                if spill is not None:
                    spill.write_npz(staged.handle)
                if sink is not None:
                    sink.close()
            except OSError as exc:
                if sink is not None:
                    sink.discard()
                staged.discard()
                raise NasgenError(f"cannot write {self.path}: {os_reason(exc)}") from None
            except BaseException:
                if sink is not None:
                    sink.discard()
                staged.discard()
                raise
            staged.commit()
        finally:
            if spill is not None:
                spill.close()

    def __enter__(self) -> "ArchitectureWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # an interrupt keeps what was completed; an error leaves the target as it was
        self.close(commit=exc_type is None or issubclass(exc_type, KeyboardInterrupt))


def _stdout_offset() -> int | None:
    """The position of standard output when it is a regular file (so a failed write can be cut back), else None."""
    try:
        fd = sys.stdout.fileno()
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        sys.stdout.flush()
        return os.lseek(fd, 0, os.SEEK_CUR)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


def _cut_stdout(offset: int | None) -> None:
    """Truncate a regular-file standard output back to ``offset`` (the end of the last complete line)."""
    if offset is None:
        return
    try:
        os.ftruncate(sys.stdout.fileno(), offset)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        pass  # best effort: the error itself is reported either way


def max_line_bytes() -> int:
    """The longest line nasgen reads from a JSON Lines file: a 64th of the memory limit (16 MiB at 1G).

    A line is read at most this long and refused past it, so a file without line ends
    (``/dev/zero``) ends in one line of error instead of a MemoryError.
    """

    return max(1 << 16, memory_limit_bytes() // 64)


def bounded_lines(handle, source: str, first: bytes = b""):
    """Yield the lines of a binary file (the first prefixed by ``first``), each at most :func:`max_line_bytes`.

    Raises:
        NasgenError: a line longer than that, named by its number.
    """

    limit = max_line_bytes()
    number = 0
    while True:
        line = handle.readline(limit + 1 - len(first)) if number == 0 else handle.readline(limit + 1)
        if number == 0:
            line = first + line
        number += 1
        if not line:
            return
        if len(line) > limit or (len(line) == limit and not line.endswith(b"\n")):
            raise NasgenError(f"{source} line {number} is longer than {human_bytes(limit)} (a 64th of "
                              "NASGEN_MEMORY_LIMIT): not a JSON Lines file of architectures")
        yield line


def read_bounded_text(path: str | os.PathLike, what: str) -> str:
    """The UTF-8 text of a small file (a space as JSON, a sidecar), refused past :func:`max_line_bytes`.

    Reads at most that many bytes plus one, so ``/dev/zero`` or a huge file ends in one line of error
    instead of a MemoryError.

    Args:
        path: the file.
        what: how messages name it (for example ``"--space"``).

    Returns:
        The file's text.

    Raises:
        NasgenError: unreadable, not UTF-8, or longer than :func:`max_line_bytes`.

    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     file = pathlib.Path(folder, "space.json")
    ...     _ = file.write_text('{"input_shape": [30]}')
    ...     read_bounded_text(file, "--space")
    '{"input_shape": [30]}'
    """
    limit = max_line_bytes()
    try:
        if Path(path).is_dir():
            raise NasgenError(f"{what}: cannot read {path}: it is a directory")
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise NasgenError(f"{what}: cannot read {path} ({os_reason(exc)}); give JSON or a JSON file") from None
    if len(data) > limit:
        raise NasgenError(f"{what}: {path} is longer than {human_bytes(limit)} (a 64th of NASGEN_MEMORY_LIMIT): "
                          "not a JSON file nasgen reads")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise NasgenError(f"{what}: {path} is not UTF-8 text") from None


def _read_bounded(handle, head: bytes, source: str) -> bytes:
    """The rest of ``handle`` after ``head``, refused in one line if it is bigger than the memory limit."""

    limit = memory_limit_bytes()
    try:
        size = os.fstat(handle.fileno()).st_size
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        size = 0
    data = head + handle.read(limit + 1 - len(head)) if size <= limit else b""
    if size > limit or len(data) > limit:
        raise NasgenError(f"{source} is bigger than the {human_bytes(limit)} limit (NASGEN_MEMORY_LIMIT)")
    return data


class _NpyMember:
    """One ``.npy`` member of an open npz, its header read and checked, its rows read on demand.

    The header is read before any data: numpy would otherwise allocate what a
    600-byte file declares; the declared size must equal what the member holds.
    """

    def __init__(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: str) -> None:
        self.name = info.filename[: -len(".npy")]
        self.stream = archive.open(info)
        version = np.lib.format.read_magic(self.stream)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        self.shape, fortran_order, self.dtype = read_header(self.stream)
        header_bytes = self.stream.tell()
        if self.dtype.hasobject or self.dtype.kind not in "iu":
            raise NasgenError(f"{source}: the array {self.name!r} holds {self.dtype}, not integers")
        if fortran_order and len(self.shape) > 1:
            raise NasgenError(f"{source}: the array {self.name!r} is stored in Fortran order; nasgen reads C order")
        declared = math.prod(self.shape) * self.dtype.itemsize
        if declared != info.file_size - header_bytes:
            raise NasgenError(f"{source}: the array {self.name!r} declares shape {self.shape} of {self.dtype} "
                              f"({declared} bytes) but holds {info.file_size - header_bytes} bytes")
        self.row_bytes = math.prod(self.shape[1:]) * self.dtype.itemsize

    def read_rows(self, rows: int) -> np.ndarray:
        """The next ``rows`` rows as an int64 array (rows, *shape[1:])."""
        wanted = rows * self.row_bytes
        parts, got = [], 0
        while got < wanted:
            part = self.stream.read(min(wanted - got, 1 << 24))
            if not part:
                raise EOFError(f"the array {self.name!r} ends early")
            parts.append(part)
            got += len(part)
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        return np.frombuffer(data, dtype=self.dtype).reshape(rows, *self.shape[1:]).astype(np.int64)


def _npz_chunks(handle, head: bytes, source: str, chunk: int, whole_bounded: bool):
    """The (layers, kernel, stride) chunks of an npz, read a chunk of rows at a time from each member.

    A seekable file is read in place, so memory stays at one chunk (plus zlib's window) however many
    rows it holds; standard input is read whole first, bounded by the memory limit. With
    ``whole_bounded`` (a caller that keeps every row), the arrays' stated sizes are checked against the
    limit before anything is inflated.
    """
    limit = memory_limit_bytes()
    if handle.seekable():
        handle.seek(0)
        archive_file = handle
    else:
        archive_file = io.BytesIO(_read_bounded(handle, head, source))
    try:
        with zipfile.ZipFile(archive_file) as archive:
            infos = {info.filename: info for info in archive.infolist()}
            # the sizes the zip directory states, checked before anything is inflated (a zip bomb stops here)
            unpacked = sum(info.file_size for info in infos.values())
            if whole_bounded and unpacked > limit:
                raise NasgenError(f"{source} holds {human_bytes(unpacked)} of arrays, more than the "
                                  f"{human_bytes(limit)} limit (NASGEN_MEMORY_LIMIT): read it in chunks "
                                  "with iter_arrays")
            missing = [name for name in _NPZ_NAMES if f"{name}.npy" not in infos]
            if missing:
                raise NasgenError(f"{source} is an npz file without the array {missing[0]!r} "
                                  "(nasgen writes layers, kernel and stride)")
            layers, kernel, stride = (_NpyMember(archive, infos[f"{name}.npy"], source) for name in _NPZ_NAMES)
            if (len(layers.shape) != 1 or len(kernel.shape) != 3 or stride.shape != kernel.shape
                    or kernel.shape[0] != layers.shape[0]):
                raise NasgenError(f"{source}: layers must be (M,) and kernel, stride (M, N, K) integer arrays, got "
                                  f"{layers.shape} {layers.dtype}, {kernel.shape} {kernel.dtype}, "
                                  f"{stride.shape} {stride.dtype}")
            total, (_, N, K) = layers.shape[0], kernel.shape
            if total and K < 1:
                raise NasgenError(f"{source}: kernels and strides must be integers in 0..{MAX_INT} (0 past an "
                                  "architecture's last layer) in at least one dimension")
            for start in range(0, total, chunk):
                rows = min(chunk, total - start)
                part = (layers.read_rows(rows), kernel.read_rows(rows), stride.read_rows(rows))
                _check_npz_chunk(*part, source)
                yield part
    except NasgenError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError, NotImplementedError, zlib.error) as exc:
        raise NasgenError(f"{source} is not a readable npz file ({str(exc)[:200]})") from None


def _check_npz_chunk(layers: np.ndarray, kernel: np.ndarray, stride: np.ndarray, source: str) -> None:
    if layers.size and (int(layers.min()) < 1 or int(layers.max()) > kernel.shape[1]):
        raise NasgenError(f"{source}: a layer count is outside 1..{kernel.shape[1]}")
    if kernel.size and (int(min(kernel.min(), stride.min())) < 0 or int(max(kernel.max(), stride.max())) > MAX_INT):
        raise NasgenError(f"{source}: kernels and strides must be integers in 0..{MAX_INT} (0 past an "
                          "architecture's last layer) in at least one dimension")


def _open_source(path: str | os.PathLike):
    """(binary file object, name for messages) for a path or ``"-"`` (standard input)."""
    if str(path) == "-":
        return sys.stdin.buffer, "standard input"
    source = str(path)
    try:
        if Path(path).is_dir():
            raise NasgenError(f"cannot read {source}: it is a directory")
        return open(path, "rb"), source
    except OSError as exc:
        raise NasgenError(f"cannot read {source}: {os_reason(exc)}") from None


def _arrays_of(archs: list, space: SearchSpace | None, check: bool, source: str, first: int):
    """A chunk of Architecture objects as arrays: shaped for ``space`` (checked unless not ``check``) or for itself."""
    if space is not None and any(a.dims != space.dims for a in archs):
        number, arch = next((n, a) for n, a in enumerate(archs, start=first) if a.dims != space.dims)
        try:
            check_membership(space, arch)
        except ArchitectureError as exc:
            raise ArchitectureError(f"{source} architecture {number}: {exc}") from None
    dims = archs[0].dims
    if any(a.dims != dims for a in archs):
        raise ArchitectureError(f"{source}: architectures of different numbers of dimensions")
    deepest = max(a.layers for a in archs)
    layers = np.array([a.layers for a in archs], dtype=np.int64)
    kernel = np.zeros((len(archs), deepest, dims), dtype=np.int64)
    stride = np.zeros_like(kernel)
    for i, a in enumerate(archs):
        kernel[i, : a.layers] = a.kernel
        stride[i, : a.layers] = a.stride
    if space is not None:
        return space_arrays(space, layers, kernel, stride, check=check, first=first, source=source)
    return layers, kernel, stride


def _parquet_chunks(handle, head: bytes, source: str, space: SearchSpace | None, check: bool, chunk: int):
    """The chunks of a Parquet file (read a row group at a time; standard input is read whole first)."""
    if handle.seekable():
        handle.seek(0)
    else:
        limit = memory_limit_bytes()
        data = head + handle.read(limit + 1)
        if len(data) > limit:
            raise NasgenError(f"{source}: a Parquet stream larger than the {human_bytes(limit)} memory limit: "
                              "give it as a file, which is read a row group at a time")
        handle = io.BytesIO(data)
    first = 1
    for part in iter_parquet_arrays(handle, source, chunk):
        if space is None:
            yield part
        else:
            yield space_arrays(space, *part, check=check, first=first, source=source)
        first += len(part[0])


def iter_arrays(path: str | os.PathLike, space: SearchSpace | None = None, chunk: int = 4096, check: bool = True):
    """Read architectures from a JSON Lines, ``.npz`` or Parquet file (``"-"``: standard input) chunk by chunk.

    Memory stays proportional to ``chunk`` however large the file: JSON Lines are
    read a line at a time (each at most :func:`max_line_bytes`), an npz file a
    chunk of rows at a time from each of its arrays (standard input is read whole
    first, within the memory limit), Parquet a row group at a time. Membership
    is checked on whole chunks of arrays (:mod:`nasgen.space.membership`).

    Args:
        path: the file, or ``"-"``.
        space: shape the arrays (M, N, K) for this space; with ``check``, also refuse
            an architecture outside it. Without a space each chunk's N is its longest architecture.
        chunk: architectures per chunk.
        check: with ``space``, check membership (else only that the arrays fit the space).

    Yields:
        (layers (m,), kernel (m, N, K), stride (m, N, K)) int64 arrays.

    Raises:
        NasgenError: an unreadable or malformed file, named with the first bad line or array.
        ArchitectureError: with ``space``, an architecture outside it (named by its number).
    """
    return _iter_arrays(path, space, chunk, check, whole_bounded=False)


def _iter_arrays(path, space: SearchSpace | None, chunk: int, check: bool, whole_bounded: bool):
    handle, source = _open_source(path)
    try:
        try:
            head = handle.read(4)
            if head == PARQUET_MAGIC:
                yield from _parquet_chunks(handle, head, source, space, check, chunk)
                return
            if head == b"PK\x03\x04":
                first = 1
                for part in _npz_chunks(handle, head, source, chunk, whole_bounded):
                    if space is None:
                        yield part
                    else:
                        yield space_arrays(space, *part, check=check, first=first, source=source)
                    first += len(part[0])
                return
            archs: list[Architecture] = []
            first = 1
            lines = bounded_lines(handle, source, first=head) if head else iter(())
            for number, raw in enumerate(lines, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise NasgenError(f"{source} line {number} is not UTF-8 text (nor is the file an npz archive)") from None
                if not line.strip():
                    continue
                try:
                    archs.append(Architecture.from_json(line))
                except ArchitectureError as exc:
                    raise ArchitectureError(f"{source} line {number}: {exc}") from None
                if len(archs) == chunk:
                    yield _arrays_of(archs, space, check, source, first)
                    first += len(archs)
                    archs = []
            if archs:
                yield _arrays_of(archs, space, check, source, first)
        except OSError as exc:
            raise NasgenError(f"cannot read {source}: {os_reason(exc)}") from None
    finally:
        if handle is not sys.stdin.buffer:
            handle.close()


def read_arrays(path: str | os.PathLike, space: SearchSpace | None = None):
    """Read architectures from a JSON Lines, ``.npz`` or Parquet file (``"-"``: standard input) into arrays.

    The format is recognised from the content (an npz file is a zip archive, Parquet starts with ``PAR1``).
    With ``space``, every architecture is checked to belong to it and the arrays
    are shaped (M, N, K) for the space; without, N is the longest architecture.

    Returns:
        (layers (M,), kernel (M, N, K), stride (M, N, K)) int64 arrays.

    Raises:
        NasgenError: an unreadable or malformed file, named with the first bad line or array.
        ArchitectureError: with ``space``, an architecture outside it.
    """
    # an npz's stated sizes are checked against the memory limit first: every row is kept
    chunks = list(_iter_arrays(path, space, 65536, True, whole_bounded=True))
    if not chunks:
        return empty_arrays(space) if space is not None else (
            np.zeros(0, dtype=np.int64), np.zeros((0, 1, 1), dtype=np.int64), np.zeros((0, 1, 1), dtype=np.int64))
    if len(chunks) == 1:
        return chunks[0]
    if space is None:
        dims = {c[1].shape[2] for c in chunks}
        if len(dims) > 1:
            raise ArchitectureError(f"{path}: architectures of different numbers of dimensions")
        deepest = max(c[1].shape[1] for c in chunks)
        chunks = [(l, *(np.pad(a, ((0, 0), (0, deepest - a.shape[1]), (0, 0))) for a in (k, s)))
                  for l, k, s in chunks]
    return tuple(np.concatenate(parts) for parts in zip(*chunks))
