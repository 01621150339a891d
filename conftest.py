"""Session-wide test settings that must exist before any module imports jax.

XLA's CPU backend spends most of a small model's test in LLVM's optimisation
passes (a width-1/16 ResNet-18 mixture: 24 s of a 30 s test compiling three
programs). The tests check what the programs compute, not how fast the code
XLA emits runs, so they compile at backend optimisation level 0 (measured:
30 s -> 23 s for ``test_resnet18_on_32x32x3_images_from_an_npz``). Timing
figures come from ``bench/``, which uses XLA's defaults. ``NASGEN_TEST_XLA_OPT=1``
keeps XLA's default level.
"""

import os

if not os.environ.get("NASGEN_TEST_XLA_OPT"):
    _flag = "--xla_backend_optimization_level=0"
    if _flag not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()

# One persistent compilation cache for the whole test session (every xdist
# worker, and the subprocesses tests start, inherit it from the controller):
# the same small programs (a tiny mixture's step, its evaluation) are compiled
# by dozens of tests; from the second test on they are read from disk.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    _cache = tempfile.mkdtemp(prefix="nasgen-test-jax-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
