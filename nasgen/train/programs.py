"""Compiling the training step's XLA programs, storing them across processes and keeping them within one.

XLA options for the step on a CPU (:data:`STEP_COMPILER_OPTIONS`), JAX's
persistent compilation cache (:func:`enable_compilation_cache`), nasgen's own
store of compiled steps under ``CACHE/steps`` (:func:`compile_program`,
:func:`load_program`) and the programs a process keeps for reuse
(:data:`STEPS_KEPT`).
"""

from __future__ import annotations

import collections
import functools
import hashlib
import os
import pickle
import threading
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np

from nasgen.common.errors import NasgenError, RunError

__all__ = [
    "STEPS_KEPT",
    "STEP_COMPILER_OPTIONS",
    "STEP_DIR",
    "STEP_SUFFIX",
    "clear_step_programs",
    "compile_program",
    "default_compiler_options",
    "enable_compilation_cache",
    "keep_step_programs",
    "kept_step_programs",
    "load_program",
    "named_program",
]


STEP_DIR = "steps"
"""Subdirectory of the compilation cache holding compiled training steps (see :class:`FusedStep`)."""

STEP_SUFFIX = ".xla"
_STEP_MAGIC = b"nasgen compiled step 1\n"

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


_CACHE_HITS = threading.local()


def _note_cache_hit(event: str, **kwargs) -> None:
    if event == "/jax/compilation_cache/cache_hits":
        _CACHE_HITS.seen = True


@functools.cache
def _listen_for_cache_hits() -> None:
    """Have JAX report its persistent-cache hits to the thread that compiles (once per process)."""
    jax.monitoring.register_event_listener(_note_cache_hit)


def compile_program(lowered: Any, path: Path | None, options: dict[str, Any] | None = None) -> Any:
    """XLA-compile a lowered step; store the executable at ``path`` (if given) for later processes.

    The file is :data:`_STEP_MAGIC`, the sha256 of the rest, then a pickle of
    ``jax.experimental.serialize_executable.serialize``'s executable and
    argument and result trees. Written to a temporary file and renamed, so a
    reader never sees half a file; a cache that cannot be written only costs
    the next process a compile. A program that JAX's persistent cache
    supplied is not stored: serialised again, such an executable lacks its
    kernels (jax 0.10 on CPU: "Function ... not found" when the reloaded copy
    runs), so a damaged entry is removed and the step keeps coming from
    JAX's cache (lowered, then loaded) until a real compile replaces it.

    ``options`` are XLA compiler options; one that XLA does not know is a
    :class:`NasgenError`.
    """
    _listen_for_cache_hits()
    _CACHE_HITS.seen = False
    try:
        compiled = lowered.compile(dict(options or {}))
    except jax.errors.JaxRuntimeError as exc:
        if not options or not _unknown_option(exc):
            raise
        reason = str(exc).strip().splitlines()[0]
        raise NasgenError(f"compiler_options {options!r}: XLA refused them ({reason}); valid names are "
                          f"fields of XLA's DebugOptions, such as xla_cpu_enable_fast_math") from None
    if path is not None and _CACHE_HITS.seen:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass
    elif path is not None:
        try:
            from jax.experimental import serialize_executable

            payload = pickle.dumps(serialize_executable.serialize(compiled), protocol=pickle.HIGHEST_PROTOCOL)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_bytes(_STEP_MAGIC + hashlib.sha256(payload).digest() + payload)
            os.replace(tmp, path)
        except (OSError, ValueError, NotImplementedError, pickle.PicklingError):
            pass  # not serialisable here (or not writable): later processes compile it again
    return compiled


def load_program(path: Path) -> Any:
    """The compiled step stored at ``path`` (see :func:`compile_program`), or None if it is damaged.

    The checksum catches truncated or corrupted files. Like JAX's own
    persistent cache, the file holds an executable: the cache directory must
    be one the user trusts.
    """
    from jax.experimental import serialize_executable

    try:
        blob = path.read_bytes()
        head = len(_STEP_MAGIC)
        digest, payload = blob[head:head + 32], blob[head + 32:]
        if not blob.startswith(_STEP_MAGIC) or hashlib.sha256(payload).digest() != digest:
            return None
        return serialize_executable.deserialize_and_load(*pickle.loads(payload))
    except Exception:  # an entry this jax cannot load: compile instead
        return None


def enable_compilation_cache(directory: str | os.PathLike | None = None) -> Path:
    """Turn on JAX's persistent compilation cache (process-wide) and return its directory.

    A second run of the same mixture (or a resumed one) loads its compiled
    step from disk instead of compiling it again.

    Args:
        directory: where compiled programs go; default ``$NASGEN_JAX_CACHE``,
            else ``~/.cache/nasgen/jax``.
    """
    if directory is None:
        directory = os.environ.get("NASGEN_JAX_CACHE") or Path.home() / ".cache" / "nasgen" / "jax"
    path = Path(directory).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"cannot create the compilation cache {path} ({exc.strerror}); pass --no-compile-cache") from None
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
