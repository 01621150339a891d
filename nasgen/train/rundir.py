"""A training run's directory: its config, the lock that keeps a second run out, and its checkpoints.

Everything written here goes through :mod:`nasgen.common.atomic`, so a reader
(or a run resumed after a kill) sees an old file or a new one, never half of one.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from nasgen.common.atomic import write_atomic
from nasgen.common.errors import NasgenError, RunError
from nasgen.train.config import TrainConfig, exception_reason

if TYPE_CHECKING:
    from flax import nnx

    from nasgen.train.mixture import Mixture

__all__ = [
    "CHECKPOINT_DIR",
    "CONFIG_FILE",
    "LOCK_FILE",
    "LOG_FILE",
    "Checkpoints",
    "RunLock",
    "read_config",
    "read_metadata",
    "resume_epoch",
    "utc_now",
    "write_json",
]


CONFIG_FILE = "config.json"
LOG_FILE = "log.jsonl"
CHECKPOINT_DIR = "checkpoints"
LOCK_FILE = ".nasgen.lock"


def read_config(output_dir: str | os.PathLike) -> TrainConfig:
    """The config of the run stored in ``output_dir``.

    Raises:
        RunError: no readable ``config.json`` there, or one that does not hold
            a training config (one-line message).
    """
    path = Path(output_dir) / CONFIG_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{output_dir} holds no training run (no {CONFIG_FILE}); nothing to resume") from None
    except (OSError, ValueError) as exc:  # ValueError: bad JSON or not UTF-8
        reason = exc.strerror if isinstance(exc, OSError) else str(exc).splitlines()[0]
        raise RunError(f"{path} is unreadable ({reason}); cannot resume this run") from None
    settings = data.get("config") if isinstance(data, dict) else None
    if not isinstance(settings, dict):
        raise RunError(f"{path} does not hold a nasgen training run (expected an object with a \"config\" object)")
    try:
        return TrainConfig.from_dict(settings)
    except NasgenError as exc:
        raise RunError(f"{path} holds invalid settings: {exc}") from None


def read_metadata(output_dir: Path) -> dict:
    """All of a run's ``config.json``: the settings, sessions and dataset; call after :func:`read_config` validated it."""
    return json.loads((output_dir / CONFIG_FILE).read_text(encoding="utf-8"))


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` through :func:`~nasgen.common.atomic.write_atomic`.

    A reader (or a run resumed after a kill) sees the old file or the new one, never half of one.

    Raises:
        NasgenError: the file cannot be written (the target is unchanged).
        ValueError: ``data`` holds a non-finite float (JSON has none).

    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "a.json"
    >>> write_json(target, {"epochs": 2})
    >>> json.loads(target.read_text())
    {'epochs': 2}
    """
    write_atomic(path, json.dumps(data, indent=1, allow_nan=False) + "\n")


class Checkpoints:
    """One checkpoint per finished epoch, through :mod:`nasgen.train.checkpoint` (orbax).

    The state is ``{"mixture": ..., "optimizer": ...}``: parameters, BatchNorm
    statistics, alpha, the optimiser's moments and step count. Epoch e's data
    order is a function of (seed, e) alone, so this is all a resumed run needs
    to continue exactly. Only the newest ``keep`` epochs stay on disk (a
    full-width 21-network mixture is gigabytes per checkpoint).
    """

    def __init__(self, directory: Path, keep: int = 2) -> None:
        self.directory = directory
        self.keep = keep

    def epochs(self) -> list[int]:
        from nasgen.train.checkpoint import all_steps

        try:
            return all_steps(self.directory)
        except Exception as exc:  # orbax raises many types for a damaged directory
            raise RunError(f"cannot list the checkpoints in {self.directory} ({exception_reason(exc)})") from None

    def save(self, epoch: int, mixture: Mixture, optimizer: nnx.Optimizer) -> None:
        from nasgen.train.checkpoint import save

        # Retention is orbax's max_to_keep: once this epoch is committed the
        # oldest epochs beyond ``keep`` are deleted.
        save(self.directory, epoch, {"mixture": mixture, "optimizer": optimizer}, overwrite=True, keep=self.keep)

    def prune(self, newest: int) -> None:
        """Delete any epoch after ``newest`` (left by a run that is redoing them) and torn saves.

        Old epochs are not this method's business: :meth:`save` keeps the
        ``keep`` newest through orbax's ``max_to_keep``.
        """
        for epoch in self.epochs():
            if epoch > newest:
                shutil.rmtree(self.directory.resolve() / str(epoch), ignore_errors=True)
        # What a save killed half-way leaves behind (orbax's temporary directories).
        if self.directory.is_dir():
            for path in self.directory.iterdir():
                if ".orbax-checkpoint-tmp" in path.name:
                    shutil.rmtree(path, ignore_errors=True)

    def restore(self, epoch: int, mixture: Mixture, optimizer: nnx.Optimizer) -> None:
        from nasgen.train.checkpoint import restore

        try:
            restore(self.directory, epoch, target={"mixture": mixture, "optimizer": optimizer})
        except NasgenError as exc:
            raise RunError(f"cannot resume: {exc}") from None
        except Exception as exc:  # a truncated or tampered checkpoint: orbax's own error types
            raise RunError(
                f"cannot resume: checkpoint {epoch} in {self.directory} is damaged ({exception_reason(exc)}); "
                f"delete {self.directory / str(epoch)} to resume from the epoch before it"
            ) from None



def resume_epoch(logged: Sequence[int], checkpointed: Sequence[int]) -> int:
    """The epoch a resumed run continues from: log and checkpoints agree up to it.

    A commit writes epoch e's log record, then its checkpoint, then prunes old
    checkpoints; a run killed between any two of these leaves a log record
    without a checkpoint, or a checkpoint whose older neighbours are still
    there. The run resumes from the newest checkpoint whose epoch and every
    earlier one are in the log (0: start afresh, which also reproduces the
    run), so the log, checkpoints and final numbers equal an uninterrupted
    run's.

    Args:
        logged: the epochs of the log records, in file order.
        checkpointed: the epochs with a complete checkpoint.

    Returns:
        The epoch to restore (0 for none).

    >>> resume_epoch([1, 2, 3], [2, 3])
    3
    >>> resume_epoch([1, 2], [2, 3])  # the record of epoch 3 is missing: redo it
    2
    >>> resume_epoch([1, 2, 3, 4], [3])  # epoch 4 was logged but not saved
    3
    """
    contiguous = 0
    for expected, epoch in enumerate(logged, start=1):
        if epoch != expected:
            break
        contiguous = epoch
    return max([e for e in checkpointed if e <= contiguous], default=0)


class RunLock:
    """An exclusive ``fcntl.flock`` on ``LOCK_FILE`` in the output directory.

    Two runs started into one directory at once would interleave their logs
    and checkpoints; the second to arrive is refused in one line. The lock
    goes with the process (the kernel drops it on exit, even on a kill), so a
    stale lock file never blocks a resume.
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_FILE
        self._handle = None

    def acquire(self) -> None:
        import fcntl

        try:
            handle = open(self.path, "a", encoding="utf-8")
        except OSError as exc:
            raise RunError(f"cannot write in {self.path.parent} ({exc.strerror}); choose a writable --output-dir") from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise RunError(
                f"another nasgen run is using {self.path.parent} (it holds {self.path}); wait for it or choose "
                "another --output-dir"
            ) from None
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing drops the flock
            self._handle = None


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
