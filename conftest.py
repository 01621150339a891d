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
