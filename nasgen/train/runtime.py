"""What a run finds on the machine: its memory, devices, mesh, hosts, library versions and CPU."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import jax
import numpy as np

from nasgen.common.errors import RunError

if TYPE_CHECKING:
    from jax.sharding import Mesh

__all__ = [
    "NETWORKS_PER_PROGRAM",
    "available_memory",
    "data_mesh",
    "default_step_programs",
    "library_versions",
    "machine_identity",
    "maybe_initialize_distributed",
]


def available_memory() -> tuple[int | None, str]:
    """Bytes one device can hold, and what that figure is."""
    device = jax.local_devices()[0]
    try:
        stats = device.memory_stats()
    except Exception:  # backends without memory statistics (the CPU one) raise or return None
        stats = None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"]), f"{device.device_kind} memory"
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "available host memory"
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "available host memory"
    except (OSError, ValueError, AttributeError):
        return None, "unknown"




NETWORKS_PER_PROGRAM = 5
"""About how many networks each of the training step's programs holds on a CPU (:func:`default_step_programs`)."""


def default_step_programs(networks: int, platform: str) -> int:
    """How many programs a run's training step is compiled as when the user does not say (``--step-programs``).

    On a CPU, about :data:`NETWORKS_PER_PROGRAM` networks per program
    (``max(1, round(networks / 5))``: 4 at M = 20, 1 up to M = 6): at M = 20 on
    the 2-core machine, 4 programs compiled cold in 0.7x the time of one,
    loaded from the cache in about 0.2x, and stepped in 0.83x (one process,
    steps alternated; ``bench/results/train.md``). On other platforms one
    program (nothing measured there says splitting helps).

    >>> default_step_programs(21, "cpu"), default_step_programs(3, "cpu"), default_step_programs(21, "gpu")
    (4, 1, 1)
    """
    if platform != "cpu":
        return 1
    return max(1, round(networks / NETWORKS_PER_PROGRAM))


def data_mesh(devices: int | None = None) -> Mesh:
    """A one-axis ``("data",)`` mesh over the devices that share each batch.

    Args:
        devices: how many of this host's devices to use (default: all). On
            several hosts (after ``jax.distributed.initialize()``) every
            device of every host is used and ``devices`` must be None.

    Raises:
        RunError: ``devices`` is not a positive integer up to the local count.
    """
    from jax.sharding import Mesh

    local = jax.local_devices()
    if devices is None:
        chosen = jax.devices() if jax.process_count() > 1 else local
    else:
        if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
            raise RunError(f"--devices must be a positive integer, got {devices!r}")
        if jax.process_count() > 1:
            raise RunError("--devices is for one host; a multi-host run uses every device of every host")
        if devices > len(local):
            raise RunError(f"--devices {devices} is more than the {len(local)} {local[0].platform} device(s) present")
        chosen = local[:devices]
    return Mesh(np.asarray(chosen), ("data",))


def maybe_initialize_distributed() -> bool:
    """Call ``jax.distributed.initialize()`` when a multi-host environment is set; True if it was.

    The environment is JAX's own: ``JAX_COORDINATOR_ADDRESS`` with
    ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` (or a cluster JAX detects
    itself, such as SLURM, when ``NASGEN_DISTRIBUTED=1``).
    """
    if os.environ.get("JAX_COORDINATOR_ADDRESS") or os.environ.get("NASGEN_DISTRIBUTED") == "1":
        if not jax.distributed.is_initialized():
            jax.distributed.initialize()
        return True
    return False

def library_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {}
    for name in ("nasgen", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def machine_identity() -> list:
    """What a compiled program depends on beyond its source: the devices, the host CPU, XLA's flags.

    A stored executable (see :class:`FusedStep`) is machine code for these
    devices; the host CPU's feature flags (``/proc/cpuinfo``) tell apart CPUs
    whose instruction sets differ.
    """
    devices = jax.devices()
    cpu = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            cpu = next((line for line in info if line.startswith(("flags", "Features"))), "")
    except OSError:
        import platform

        cpu = platform.processor() or platform.machine()
    return [devices[0].platform, devices[0].client.platform_version, sorted({d.device_kind for d in devices}),
            len(devices), jax.process_count(), cpu.strip(), os.environ.get("XLA_FLAGS", ""),
            str(jax.config.jax_default_matmul_precision), bool(jax.config.jax_enable_x64)]
