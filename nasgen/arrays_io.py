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

import contextlib
import io
import itertools
import json
import os
import signal
import stat
import sys
import tempfile
import threading
import zipfile
from pathlib import Path

import numpy as np

from nasgen.space import MAX_INT, Architecture, ArchitectureError, NasgenError, SearchSpace

__all__ = ["FORMATS", "ArchitectureWriter", "StagedFile", "format_for", "iter_arrays", "read_arrays", "write_arrays"]

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
    # What np.savez_compressed writes, at zlib level 1 instead of 6: ten times faster (1.3 s against
    # 12.7 s for 1.5 million 8-layer 2-D architectures) for files 16% larger, so that a run stopped by
    # --timeout finishes writing promptly.
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, array in (("layers", layers), ("kernel", kernel), ("stride", stride)):
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array, dtype=dtype), allow_pickle=False)
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


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _new_file_mode() -> int:
    """The mode ``open(path, "w")`` would give a new file: 0o666 less the umask (mkstemp's 0o600 is stricter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def signals_deferred():
    """Hold SIGINT and SIGTERM until the block ends, then deliver them.

    What the block writes is not torn by Ctrl-C (a chunk of architectures
    and its count; a training epoch's log record, checkpoint and pruning),
    and the signal then acts as it would have (the CLI turns both into a
    one-line "interrupted"). Outside the main thread it holds nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, frame: received.append(signum)) for s in signals}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if received:
        signal.raise_signal(received[0])



class StagedFile:
    """A file written beside its target under a temporary name and renamed into place by :meth:`commit`.

    A target that exists and is not a regular file (``/dev/full``, a FIFO) is
    not staged: renaming onto it would replace the device node, so it is
    opened and written in place and :attr:`regular` is False.

    Args:
        path: the target.

    Raises:
        NasgenError: the target is a directory, or its folder is missing, not a
            folder or not writable (named, with the OS reason).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.temp: Path | None = None
        self._good = 0  # bytes known to be complete: what an interrupted write is cut back to
        self._dirty: int | bool = False  # the length of a write in progress
        try:
            target = Path(os.path.realpath(self.path))  # write through a symlink, not over it
            try:
                info = target.stat()
            except FileNotFoundError:
                info = None
            if info is not None and stat.S_ISDIR(info.st_mode):
                raise NasgenError(f"cannot write {self.path}: it is a directory")
            self.regular = info is None or stat.S_ISREG(info.st_mode)
            if not self.regular:
                self.handle = open(target, "wb", buffering=0)
                return
            fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
            self.temp, self.target = Path(name), target
            try:
                os.chmod(fd, stat.S_IMODE(info.st_mode) if info is not None else _new_file_mode())
                self.handle = os.fdopen(fd, "wb", buffering=0)
            except BaseException:
                os.close(fd)
                self.temp.unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise NasgenError(f"cannot write {self.path}: {_reason(exc)}") from None

    def write(self, data: str | bytes) -> None:
        """Write and flush ``data`` (text as UTF-8); an OS error becomes a NasgenError naming the target.

        A write cut short (an interrupt, a full disk) is cut back at :meth:`commit` to the end of the
        last complete ``write``, so a committed file never ends in a torn line. A closed pipe stays
        BrokenPipeError.
        """
        if isinstance(data, str):
            data = data.encode("utf-8")
        try:
            self._dirty = len(data)
            _write_all(self.handle.fileno(), data)
            self._good += len(data)
            self._dirty = False
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise NasgenError(f"cannot write {self.path}: {_reason(exc)}") from None

    def commit(self) -> None:
        """Close the file and rename it onto the target."""
        try:
            if self._dirty and self.temp is not None:
                # an interrupt that lands after the last os.write but before the bookkeeping leaves the
                # whole write on disk: keep it; anything shorter is cut back to the last complete write
                if os.fstat(self.handle.fileno()).st_size != self._good + self._dirty:
                    self.handle.truncate(self._good)
            self.handle.close()
            if self.temp is not None:
                os.replace(self.temp, self.target)
                self.temp = None
        except BrokenPipeError:
            raise
        except OSError as exc:
            self.discard()
            raise NasgenError(f"cannot write {self.path}: {_reason(exc)}") from None

    def discard(self) -> None:
        """Close and remove the temporary file; the target stays as it was."""
        try:
            self.handle.close()
        except OSError:
            pass  # the data is being thrown away; a failing flush does not matter
        if self.temp is not None:
            self.temp.unlink(missing_ok=True)
            self.temp = None


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
        self._chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._file: StagedFile | None = None
        self._stdout_good: int | None = None
        if self.path is None:
            self._stdout_good = _stdout_offset()
            return
        self._file = StagedFile(self.path)

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
            # kept in the smallest dtype until the end: an eighth of int64's memory for most spaces
            dtype = _smallest_dtype(layers, kernel, stride)
            self._chunks.append(tuple(np.asarray(a).astype(dtype) for a in (layers, kernel, stride)))
        elif self._file is not None:
            self._file.write(_jsonl_lines(layers, kernel, stride))
        else:
            self._write_stdout(_jsonl_lines(layers, kernel, stride))
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
                _write_all(fd, text.encode(sys.stdout.encoding or "utf-8"))
        except BrokenPipeError:
            raise
        except OSError as exc:
            _cut_stdout(self._stdout_good)
            raise NasgenError(f"cannot write standard output: {_reason(exc)}") from None
        self._stdout_good = _stdout_offset()

    def close(self, commit: bool = True) -> None:
        """Finish: rename the temporary file into place (``commit``) or remove it."""
        if self._file is None:
            return
        staged, self._file = self._file, None
        if not commit:
            staged.discard()
            return
        try:
            if self.format == "npz":
                if self._chunks:
                    arrays = [np.concatenate(parts) for parts in zip(*self._chunks)]
                else:
                    arrays = [np.zeros(0, dtype=np.uint8), np.zeros((0, 0, 0), dtype=np.uint8),
                              np.zeros((0, 0, 0), dtype=np.uint8)]
                staged.write(_npz_bytes(*arrays))
        except BaseException:
            staged.discard()
            raise
        staged.commit()

    def __enter__(self) -> "ArchitectureWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # an interrupt keeps what was completed; an error leaves the target as it was
        self.close(commit=exc_type is None or issubclass(exc_type, KeyboardInterrupt))


def _write_all(fd: int, data: bytes) -> None:
    """Write every byte with ``os.write``, so that a short write is followed by the OS's error.

    A buffered file object can take a short write (the disk filled up mid-chunk) as
    success and leave a torn line; ``os.write`` returns the short count and the next
    call raises the real reason (ENOSPC, EFBIG).
    """
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


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


def _read_npz(data: bytes, source: str):
    from nasgen.core import human_bytes, memory_limit_bytes

    limit = memory_limit_bytes()
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            # the sizes the zip directory states, checked before anything is inflated (a zip bomb stops here)
            unpacked = sum(info.file_size for info in archive.infolist())
        if unpacked > limit:
            raise NasgenError(f"{source} holds {human_bytes(unpacked)} of arrays, more than the {human_bytes(limit)} "
                              "limit (NASGEN_MEMORY_LIMIT)")
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            missing = [name for name in ("layers", "kernel", "stride") if name not in npz.files]
            if missing:
                raise NasgenError(f"{source} is an npz file without the array {missing[0]!r} "
                                  "(nasgen writes layers, kernel and stride)")
            arrays = [np.asarray(npz[name]) for name in ("layers", "kernel", "stride")]
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError, NotImplementedError) as exc:
        raise NasgenError(f"{source} is not a readable npz file ({str(exc)[:200]})") from None
    layers, kernel, stride = arrays
    if (layers.ndim != 1 or kernel.ndim != 3 or stride.shape != kernel.shape or len(kernel) != len(layers)
            or any(a.dtype.kind not in "iu" for a in arrays)):
        raise NasgenError(f"{source}: layers must be (M,) and kernel, stride (M, N, K) integer arrays, got "
                          f"{layers.shape} {layers.dtype}, {kernel.shape} {kernel.dtype}, {stride.shape} {stride.dtype}")
    if layers.size and (int(layers.min()) < 1 or int(layers.max()) > kernel.shape[1]):
        raise NasgenError(f"{source}: a layer count is outside 1..{kernel.shape[1]}")
    if kernel.size and (kernel.shape[2] < 1 or int(min(kernel.min(), stride.min())) < 0
                        or int(max(kernel.max(), stride.max())) > MAX_INT):
        raise NasgenError(f"{source}: kernels and strides must be integers in 0..{MAX_INT} (0 past an "
                          "architecture's last layer) in at least one dimension")
    return tuple(a.astype(np.int64) for a in arrays)


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
        raise NasgenError(f"cannot read {source}: {_reason(exc)}") from None


def _arrays_of(archs: list, space: SearchSpace | None, check: bool, source: str, first: int):
    """A chunk of Architecture objects as arrays: shaped for ``space`` (checked unless not ``check``) or for itself."""
    from nasgen.core import to_arrays
    from nasgen.space import check_membership

    if space is not None:
        if check:
            for number, arch in enumerate(archs, start=first):
                try:
                    check_membership(space, arch)
                except ArchitectureError as exc:
                    raise ArchitectureError(f"{source} architecture {number}: {exc}") from None
        try:
            return to_arrays(space, archs)
        except ArchitectureError as exc:
            raise ArchitectureError(f"{source}: {exc}") from None
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
    return layers, kernel, stride


def iter_arrays(path: str | os.PathLike, space: SearchSpace | None = None, chunk: int = 4096, check: bool = True):
    """Read architectures from a JSON Lines or ``.npz`` file (``"-"``: standard input) chunk by chunk.

    JSON Lines are read a line at a time, so memory stays proportional to
    ``chunk`` however large the file; an npz file is read whole (it is
    compressed, and its stated size is checked against the memory limit first).

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
        ArchitectureError: with ``space``, an architecture outside it.
    """
    handle, source = _open_source(path)
    try:
        try:
            head = handle.read(4)
            if head == b"PK\x03\x04":
                arrays = _read_npz(head + handle.read(), source)
                if space is not None and len(arrays[0]) and arrays[1].shape[2] != space.dims:
                    raise ArchitectureError(f"{source}: the architectures have {arrays[1].shape[2]} dimensions; "
                                            f"the space has {space.dims}")
                from nasgen.core import arrays_to_architectures

                for start in range(0, len(arrays[0]), chunk):
                    part = [a[start:start + chunk] for a in arrays]
                    if space is None:
                        yield tuple(part)
                    else:
                        yield _arrays_of(arrays_to_architectures(*part), space, check, source, start + 1)
                return
            archs: list[Architecture] = []
            first = 1
            lines = itertools.chain([head + handle.readline()], handle) if head else iter(())
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
            raise NasgenError(f"cannot read {source}: {_reason(exc)}") from None
    finally:
        if handle is not sys.stdin.buffer:
            handle.close()


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
    from nasgen.core import empty_arrays

    chunks = list(iter_arrays(path, space=space, chunk=65536))
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
