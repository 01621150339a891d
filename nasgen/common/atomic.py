"""Writing files so that a reader never sees half of one: stage beside the target, fsync, rename.

Every writer in nasgen goes through :class:`StagedFile` (streamed writes) or :func:`write_atomic`
(one buffer): the data goes to a temporary ``.NAME.*.part`` file in the target's folder, is flushed
to disk, and is renamed onto the target, so a refused, failed or killed run leaves an existing
target as it was. A target that is not a regular file (a FIFO, ``/dev/stdout``) is written in place,
never replaced. :func:`signals_deferred` holds Ctrl-C and SIGTERM around a block that must not be torn.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import stat
import tempfile
import threading
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: staged files are not locked, and none is ever removed as stale
    fcntl = None

from nasgen.common.errors import NasgenError

__all__ = ["StagedFile", "new_file_mode", "os_reason", "remove_stale_staged_files", "signals_deferred", "write_all",
           "write_atomic"]

#: A staged file still being created (not yet locked) is this many seconds old at most; older ones are dead.
_CREATING_SECONDS = 60


def os_reason(exc: OSError) -> str:
    """The OS's own words for ``exc`` (``"No space left on device"``), for one-line messages."""
    return exc.strerror or str(exc) or type(exc).__name__


def _staged_name_pattern(target_name: str) -> re.Pattern:
    # mkstemp's names: the prefix, 8 characters of [a-z0-9_], the suffix; nothing else of another target matches
    return re.compile(rf"\.{re.escape(target_name)}\.[a-z0-9_]{{8}}\.part(\.new)?")


def _try_lock(fd: int) -> bool:
    """Take an exclusive lock on ``fd`` without waiting; False if another open file holds one."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def remove_stale_staged_files(target: str | os.PathLike) -> list[Path]:
    """Remove the staged ``.NAME.*.part`` files that a killed writer of ``target`` left behind.

    Every live :class:`StagedFile` holds an exclusive ``flock`` on its file for as long as it is
    open (a lock the kernel drops when its process dies, kill -9 included), so a ``.part`` file of
    this target that can be locked belongs to no live writer. A file is created as ``.part.new``,
    locked, then renamed to ``.part``: a ``.part.new`` is only removed once it is older than a minute.
    Only this target's own staged files are looked at; other files in the folder are never touched.

    Args:
        target: the file whose staged files to clean up.

    Returns:
        The files removed.

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / ".a.txt.abcd1234.part").write_text("left by a killed run")
    >>> _ = (folder / ".b.txt.abcd1234.part").write_text("another target's")
    >>> [p.name for p in remove_stale_staged_files(folder / "a.txt")], sorted(p.name for p in folder.iterdir())
    (['.a.txt.abcd1234.part'], ['.b.txt.abcd1234.part'])
    """
    if fcntl is None:
        return []
    target = Path(target)
    pattern = _staged_name_pattern(target.name)
    removed = []
    try:
        names = [n for n in os.listdir(target.parent or ".") if pattern.fullmatch(n)]
    except OSError:
        return []  # an unreadable folder: the write itself will say why
    for name in names:
        path = target.parent / name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue  # gone already (its writer committed it), or not ours to open
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                continue
            if name.endswith(".new") and time.time() - info.st_mtime < _CREATING_SECONDS:
                continue  # possibly a writer between creating and locking it
            if not _try_lock(fd):
                continue  # a live writer holds it
            # still the same file under that name (not committed and replaced meanwhile)?
            try:
                same = os.stat(path, follow_symlinks=False).st_ino == info.st_ino
            except FileNotFoundError:
                same = False
            if same:
                path.unlink(missing_ok=True)
                removed.append(path)
        except OSError:
            continue
        finally:
            os.close(fd)
    return removed


def new_file_mode() -> int:
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

    The staged file is ``.NAME.XXXXXXXX.part`` in the target's folder, held under an exclusive
    ``flock`` while it is open; staged files of the same target that no live process holds (left by
    a killed run) are removed first (:func:`remove_stale_staged_files`).

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
            remove_stale_staged_files(target)
            # created as .part.new and renamed to .part once locked: a .part that can be locked is dead
            fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part.new", dir=target.parent)
            self.temp, self.target = Path(name), target
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                part = Path(name[: -len(".new")])
                os.rename(self.temp, part)
                self.temp = part
                os.chmod(fd, stat.S_IMODE(info.st_mode) if info is not None else new_file_mode())
                self.handle = os.fdopen(fd, "wb", buffering=0)
            except BaseException:
                os.close(fd)
                self.temp.unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise NasgenError(f"cannot write {self.path}: {os_reason(exc)}") from None

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
            write_all(self.handle.fileno(), data)
            self._good += len(data)
            self._dirty = False
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise NasgenError(f"cannot write {self.path}: {os_reason(exc)}") from None

    def commit(self) -> None:
        """Flush the file to disk (fsync), close it and rename it onto the target."""
        try:
            if self._dirty and self.temp is not None:
                # an interrupt that lands after the last os.write but before the bookkeeping leaves the
                # whole write on disk: keep it; anything shorter is cut back to the last complete write
                if os.fstat(self.handle.fileno()).st_size != self._good + self._dirty:
                    self.handle.truncate(self._good)
            if self.temp is not None:
                os.fsync(self.handle.fileno())  # the data is on disk before the name points to it
                # renamed while still open, so still locked: no other run can take it for a dead one's
                os.replace(self.temp, self.target)
                self.temp = None
            self.handle.close()
        except BrokenPipeError:
            raise
        except OSError as exc:
            self.discard()
            raise NasgenError(f"cannot write {self.path}: {os_reason(exc)}") from None

    def discard(self) -> None:
        """Remove and close the temporary file; the target stays as it was."""
        if self.temp is not None:
            self.temp.unlink(missing_ok=True)  # removed while still locked, then closed
            self.temp = None
        try:
            self.handle.close()
        except OSError:
            pass  # the data is being thrown away; a failing flush does not matter


def write_all(fd: int, data: bytes) -> None:
    """Write every byte with ``os.write``, so that a short write is followed by the OS's error.

    A buffered file object can take a short write (the disk filled up mid-chunk) as
    success and leave a torn line; ``os.write`` returns the short count and the next
    call raises the real reason (ENOSPC, EFBIG).
    """
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` all at once: staged, fsynced, renamed into place.

    An existing target keeps its mode; a new one gets the usual ``0o666 & ~umask``.

    Raises:
        NasgenError: the target cannot be written (named, with the OS reason); the target is unchanged.

    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> write_atomic(target, "one two")
    >>> target.read_text()
    'one two'
    """
    staged = StagedFile(path)
    try:
        staged.write(data)
    except BaseException:
        staged.discard()
        raise
    staged.commit()
