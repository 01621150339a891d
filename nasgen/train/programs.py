"""Compiling the training step's XLA programs, storing them across processes and keeping them within one.

XLA options for the step on a CPU (:data:`STEP_COMPILER_OPTIONS`), JAX's
persistent compilation cache (:func:`enable_compilation_cache`), nasgen's own
store of traced steps under ``CACHE/steps`` (``jax.export`` serialisations,
checked against what the run expects before use: :func:`store_program`,
:func:`load_program`) and the programs a process keeps for reuse
(:data:`STEPS_KEPT`). Nothing read from the cache is unpickled or run as
Python; cache directories are created 0700 and refused when another user
could write them (:func:`check_private`).
"""

from __future__ import annotations

import collections
import functools
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import numpy as np

from nasgen.common.atomic import write_atomic
from nasgen.common.errors import NasgenError, RunError

__all__ = [
    "STEPS_KEPT",
    "STEP_COMPILER_OPTIONS",
    "STEP_DIR",
    "STEP_SUFFIX",
    "check_private",
    "check_step_cache",
    "clear_step_programs",
    "compile_program",
    "default_compiler_options",
    "enable_compilation_cache",
    "export_program",
    "keep_step_programs",
    "kept_step_programs",
    "load_program",
    "lower_exported",
    "named_program",
    "private_directory",
    "program_header",
    "store_program",
]

logger = logging.getLogger("nasgen.train.programs")


STEP_DIR = "steps"
"""Subdirectory of the compilation cache holding compiled training steps (see :class:`FusedStep`)."""

STEP_SUFFIX = ".jaxexport"
"""Suffix of a stored step (:func:`store_program`); the pickled ``.xla`` executables of older versions are never read."""

STEP_MAGIC = b"nasgen step export\n"
STEP_FORMAT = 2
MAX_STEP_BYTES = 2**31
"""The largest stored step nasgen reads (a full-width M = 20 ResNet-18 step is a few megabytes of StableHLO)."""

STEP_COMPILER_OPTIONS: dict[str, Any] = {"xla_cpu_experimental_ynn_fusion_type": ""}
"""XLA options for the training step's programs on a CPU (:class:`FusedStep`'s default there).

No YNNPACK library fusions: XLA's CPU backend otherwise hands the
convolutions, dots and reductions (BatchNorm's sums: about 2,800 of them in
the M = 20 ResNet step) to YNNPACK, each of which builds its runtime on the
program's first call. Without them (M = 20, 4 programs, one run) the first
step lost its 3.4 s of set-up, a warm start (stored executables) took 6.9 s
against 11.8 s, and a step 0.94x the time (one process, steps alternated),
for a cold compile 1.1x as long (``bench/results/train.md``). Other
platforms get XLA's defaults.
"""


def default_compiler_options(array: Any) -> dict[str, Any]:
    """:data:`STEP_COMPILER_OPTIONS` for work on ``array``'s devices if they are CPUs, else none (XLA's defaults).

    None either where this XLA does not know one of them (a later jax may
    drop an experimental option): checked once per process and device.
    """
    if not isinstance(array, jax.Array):
        return {}
    device = next(iter(array.sharding.device_set))
    options = tuple(sorted(STEP_COMPILER_OPTIONS.items()))
    return dict(options) if device.platform == "cpu" and _accepted(options, device) else {}


@functools.cache
def _accepted(options: tuple, device: Any) -> bool:
    """Whether XLA compiles for ``device`` with ``options`` (a trivial program, once per process)."""
    try:
        jax.jit(lambda x: x + 1).lower(jax.device_put(np.float32(0), device)).compile(dict(options))
    except jax.errors.JaxRuntimeError as exc:
        if _unknown_option(exc):
            return False
        raise
    return True


def _unknown_option(exc: BaseException) -> bool:
    """Whether XLA refused a compile because it does not know an option."""
    return "compile option" in str(exc)


def named_program(step: Callable, key: str | None) -> Callable:
    """``step`` under the name ``nasgen_step_KEY``, which names its XLA program.

    The name is part of JAX's persistent-cache key, so a program nasgen
    stores itself is found in JAX's cache only under the same nasgen key
    (when nasgen's own entry is missing or damaged), never from another
    step that happens to lower to the same module.
    """

    def program(*args):
        return step(*args)

    program.__name__ = program.__qualname__ = f"nasgen_step_{key}" if key else "nasgen_step"
    return program




def compile_program(lowered: Any, options: dict[str, Any] | None = None) -> Any:
    """XLA-compile a lowered step with the compiler ``options``; served by JAX's persistent cache when it holds it.

    Raises:
        NasgenError: XLA does not know one of ``options`` (a name that is not
            a field of its DebugOptions).
    """
    try:
        return lowered.compile(dict(options or {}))
    except jax.errors.JaxRuntimeError as exc:
        if not options or not _unknown_option(exc):
            raise
        reason = str(exc).strip().splitlines()[0]
        raise NasgenError(f"compiler_options {options!r}: XLA refused them ({reason}); valid names are "
                          f"fields of XLA's DebugOptions, such as xla_cpu_enable_fast_math") from None


def export_program(step: Callable, key: str | None, args: Sequence[Any]) -> Any:
    """Trace and lower ``step`` for ``args`` (arrays or shape structs, with their shardings) as a ``jax.export.Exported``.

    The export is the program as StableHLO with its argument and result
    shapes, shardings and trees: :func:`store_program` writes it, and
    :func:`lower_exported` lowers it (without tracing anything again) for
    :func:`compile_program`.
    """
    from jax import export

    return export.export(jax.jit(named_program(step, key)))(*args)


def lower_exported(exported: Any, key: str | None, args: Sequence[Any]) -> Any:
    """The lowered program that calls ``exported`` on ``args``: cheap, whatever the number of networks in it.

    Fresh or loaded from the cache, every step is compiled from this
    lowering, so a stored step and a fresh one are the same XLA program.
    """
    return jax.jit(named_program(exported.call, key)).trace(*args).lower()


def program_header(key: str, identity: str, args: Sequence[Any]) -> dict[str, Any]:
    """What a stored step must match to be used: its key and everything the key stands for that can be checked.

    ``identity`` (the run's :meth:`~nasgen.train.config.TrainConfig.step_identity`),
    the platform, device count and mesh of the arguments, the library
    versions and the arguments' shapes, dtypes and shardings.
    """
    from nasgen.train.runtime import library_versions

    leaves = jax.tree.leaves(args)
    shardings = [getattr(leaf, "sharding", None) for leaf in leaves]
    devices = sorted({d.id for s in shardings if s is not None for d in s.device_set})
    mesh = next((dict(s.mesh.shape) for s in shardings if hasattr(s, "mesh")), {})
    platform = next((next(iter(s.device_set)).platform for s in shardings if s is not None), jax.default_backend())
    return {
        "format": STEP_FORMAT, "key": key, "identity": hashlib.sha256(identity.encode()).hexdigest(),
        "platform": platform, "devices": devices, "mesh": mesh, "versions": library_versions(),
        "arguments": [[list(leaf.shape), str(leaf.dtype), str(sharding)] for leaf, sharding in zip(leaves, shardings)],
    }


def store_program(path: Path, exported: Any, header: dict[str, Any]) -> None:
    """Write ``exported`` with its ``header`` to ``path`` (staged and renamed: never half a file).

    The file is :data:`STEP_MAGIC`, the header (with the payload's sha256) as
    one JSON line, then ``Exported.serialize()``'s bytes (a flatbuffer of StableHLO and
    metadata: data, nothing that runs when read). A cache that cannot be
    written only costs the next process a trace.
    """
    try:
        payload = bytes(exported.serialize())
        # The checksum catches a damaged file (a flipped byte in StableHLO could still deserialise);
        # it is no protection against a forger: that is the private directory's job.
        stored = dict(header, payload_sha256=hashlib.sha256(payload).hexdigest())
        write_atomic(path, STEP_MAGIC + json.dumps(stored, sort_keys=True).encode() + b"\n" + payload)
    except (NasgenError, ValueError, NotImplementedError) as exc:
        logger.info("the training step was not stored in %s (%s); the next process traces it again", path, exc)


def load_program(path: Path, header: dict[str, Any]) -> Any:
    """The ``jax.export.Exported`` stored at ``path`` if its header is ``header``; else None, with one log line.

    Nothing in the file runs: the header is JSON and the program a
    ``jax.export`` serialisation, which :func:`lower_exported` lowers and
    XLA compiles like a fresh one. A missing file is None without a
    line; an entry of another configuration, device count, mesh, platform
    or library version, or a damaged one, is None with a line saying why
    (the caller traces and stores the step again).

    Raises:
        RunError: the entry is owned by another user or writable by group or
            others (see :func:`check_private`).
    """
    from jax import export

    if not path.exists():
        return None
    check_private(path, "compiled-step cache entry")
    try:
        with open(path, "rb") as handle:
            blob = handle.read(MAX_STEP_BYTES + 1)
    except OSError as exc:
        return _stale(path, f"unreadable: {exc.strerror}")
    if len(blob) > MAX_STEP_BYTES:
        return _stale(path, f"larger than {MAX_STEP_BYTES} bytes")
    if not blob.startswith(STEP_MAGIC):
        return _stale(path, "not a nasgen step export (an older format, or another file)")
    line, _, payload = blob[len(STEP_MAGIC):].partition(b"\n")
    try:
        stored = json.loads(line)
    except (UnicodeDecodeError, ValueError):
        return _stale(path, "its header is not JSON")
    if not isinstance(stored, dict):
        return _stale(path, "its header is not a JSON object")
    if stored.pop("payload_sha256", None) != hashlib.sha256(payload).hexdigest():
        return _stale(path, "damaged (its checksum does not match)")
    differ = sorted(name for name in set(header) | set(stored) if stored.get(name) != header.get(name))
    if differ:
        return _stale(path, f"made for another {', '.join(differ)}")
    try:
        exported = export.deserialize(bytearray(payload))
    except Exception as exc:  # a damaged flatbuffer: jax raises several types
        return _stale(path, f"damaged ({type(exc).__name__})")
    avals = [[list(a.shape), str(a.dtype)] for a in exported.in_avals]
    if avals != [argument[:2] for argument in header["arguments"]] or exported.nr_devices != len(header["devices"]):
        return _stale(path, "its program takes other arguments or devices than its header says")
    return exported


def _stale(path: Path, reason: str) -> None:
    logger.warning("compiled step %s not used (%s); tracing and compiling it again", path.name, reason)
    return None


def check_private(path: Path, what: str) -> None:
    """Refuse, in one line, a cache directory or file that another user could have written.

    Raises:
        RunError: ``path`` is owned by another user or writable by its group
            or by others.
    """
    try:
        info = path.stat()
    except OSError as exc:
        raise RunError(f"cannot read the {what} {path} ({exc.strerror})") from None
    if info.st_uid != os.getuid():
        raise RunError(f"the {what} {path} belongs to another user; nasgen uses only caches of its own user "
                       "(set NASGEN_JAX_CACHE to a directory of yours, or pass --no-compile-cache)")
    if info.st_mode & 0o022:
        raise RunError(f"the {what} {path} is writable by {'group and others' if info.st_mode & 0o002 else 'its group'}; "
                       f"make it private (chmod go-w {path}) or pass --no-compile-cache")


def check_step_cache(cache_dir: Path) -> None:
    """Refuse, before a run writes anything, a compiled-step cache that another user could have written.

    Creates ``cache_dir/steps`` 0700 if absent; every entry in it must be
    the user's own and not writable by group or others.

    Raises:
        RunError: see :func:`check_private`.
    """
    directory = private_directory(Path(cache_dir) / STEP_DIR, "compiled-step cache")
    for entry in sorted(directory.glob(f"*{STEP_SUFFIX}")):
        check_private(entry, "compiled-step cache entry")


def private_directory(path: Path, what: str) -> Path:
    """``path``, created 0700 (with its missing parents) if absent, then checked with :func:`check_private`.

    Raises:
        RunError: it cannot be created, or it is not private.
    """
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"cannot create the {what} {path} ({exc.strerror}); pass --no-compile-cache") from None
    check_private(path, what)
    return path


def enable_compilation_cache(directory: str | os.PathLike | None = None) -> Path:
    """Turn on JAX's persistent compilation cache (process-wide) and return its directory.

    A second run of the same mixture (or a resumed one) loads its compiled
    step from disk instead of compiling it again.

    Args:
        directory: where compiled programs go; default ``$NASGEN_JAX_CACHE``,
            else ``~/.cache/nasgen/jax``. Created 0700; one owned by another
            user or writable by group or others is refused.

    Raises:
        RunError: the directory cannot be created or is not private (one line).
    """
    if directory is None:
        directory = os.environ.get("NASGEN_JAX_CACHE") or Path.home() / ".cache" / "nasgen" / "jax"
    path = Path(directory).expanduser()
    private_directory(path, "compilation cache")
    from jax.experimental.compilation_cache import compilation_cache

    jax.config.update("jax_compilation_cache_dir", str(path))
    # JAX decides once per process whether to use the cache; a process that
    # compiled something before this call decides again.
    compilation_cache.reset_cache()
    # Cache every program that took a while (the step), not the many tiny ones.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path




STEPS_KEPT = 4
"""Compiled training steps a process keeps for reuse (the most recently used)."""

_STEP_PROGRAMS: "collections.OrderedDict[tuple, Callable]" = collections.OrderedDict()


def kept_step_programs(kept: tuple | None) -> Any:
    """The compiled step(s) kept under ``kept`` (marked most recently used), or None."""
    if kept is None or kept not in _STEP_PROGRAMS:
        return None
    _STEP_PROGRAMS.move_to_end(kept)
    return _STEP_PROGRAMS[kept]


def keep_step_programs(kept: tuple, programs: Any) -> None:
    _STEP_PROGRAMS[kept] = programs
    while len(_STEP_PROGRAMS) > STEPS_KEPT:
        _STEP_PROGRAMS.popitem(last=False)


def clear_step_programs() -> None:
    """Forget the compiled training steps this process keeps for reuse (frees their memory)."""
    _STEP_PROGRAMS.clear()
