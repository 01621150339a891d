"""End-to-end experiments from the paper, as library functions the CLI and the benches call.

:func:`paper_mnist` is section 6.3 of Calhas et al. 2022: sample M ResNet-18
downsampling schedules (7x7 -> 1x1, n = N = 3), train them and the original
ResNet-18 as one softmax mixture on MNIST with the paper's settings, and
write the Table-3 report. ``nasgen experiment paper-mnist`` and
``bench/gpu_paper_run.py`` both run it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from nasgen.common.errors import NasgenError
from nasgen.space.definition import Architecture

__all__ = ["EXPERIMENT_FILE", "ARCHITECTURES_FILE", "RUN_DIR", "paper_mnist", "sample_resnet_architectures"]

EXPERIMENT_FILE = "experiment.json"
ARCHITECTURES_FILE = "architectures.jsonl"
RUN_DIR = "run"


def sample_resnet_architectures(method: str, samples: int, seed: int) -> list[Architecture]:
    """M distinct architectures of the ResNet-18 downsampling space, through :func:`nasgen.samplers.registry.draw`.

    Args:
        method: any registered sampling method (:func:`nasgen.samplers.registry.method_names`),
            e.g. ``"exact"`` (exactly uniform), ``"limited"`` (z3's first M,
            the paper's Limited-M) or ``"uniwit"`` (the paper's
            Limited_Uniform-M).
        samples: M, at least 1.
        seed: the sampler's seed.

    Raises:
        NasgenError: an unknown method, a non-positive count, or a method that
            stopped before drawing M architectures.
    """
    from nasgen.space.encoding import arrays_to_architectures
    from nasgen.nn.models import RESNET_SPACE
    from nasgen.samplers.registry import SamplingConfig, draw

    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise NasgenError(f"--samples must be a positive integer, got {samples!r}")
    config = SamplingConfig(method=method, samples=samples, seed=seed)
    with draw(RESNET_SPACE, config) as run:
        archs = [a for chunk in run.draw() for a in arrays_to_architectures(*chunk)]
    if len(archs) < samples:
        raise NasgenError(
            f"the {method} sampler stopped after {len(archs)} of {samples} architectures ({run.stop_reason})"
        )
    return archs


def paper_mnist(
    output_dir: str | os.PathLike,
    *,
    method: str = "exact",
    samples: int = 20,
    sample_seed: int = 42,
    settings: dict[str, Any] | None = None,
    resume: bool = False,
    fetch: bool = False,
    log: Callable[[str], None] | None = None,
    **run_options: Any,
) -> dict:
    """Run (or resume) the paper's MNIST experiment; returns the run's summary.

    Writes ``architectures.jsonl`` and ``experiment.json`` (method, samples,
    seed) into ``output_dir`` and the training run into ``output_dir/run``.

    Args:
        output_dir: a new or empty directory (or, with ``resume``, the one a
            killed experiment used).
        method, samples, sample_seed: how the M architectures are drawn (see
            :func:`sample_resnet_architectures`).
        settings: :class:`~nasgen.train.run.TrainConfig` fields to change from the
            paper's (e.g. ``{"epochs": 2, "width_multiplier": 0.25,
            "data_dir": "..."}``); ``model`` and ``dataset`` are fixed.
        resume: continue the experiment in ``output_dir`` (its settings must
            not change).
        fetch: download MNIST into ``settings["data_dir"]`` (or the default
            cache) when it is not there.
        log: where progress messages go (``fetch_mnist``'s).
        run_options: passed to :func:`nasgen.train.run.train` (``progress``,
            ``devices``, ``compilation_cache``, ``command``, ``on_epoch_end``,
            ``dataset`` for already-loaded MNIST).

    Returns:
        The summary of the run (see :func:`nasgen.train.report.summarize`).

    Raises:
        NasgenError: a used directory, missing MNIST, bad settings.
    """
    from nasgen.common.errors import DataError
    from nasgen.train.data import default_cache_dir, fetch_mnist, load_mnist
    from nasgen.train.run import TrainConfig, TrainingRun, read_config

    settings = dict(settings or {})
    for fixed in ("model", "dataset", "architectures"):
        if fixed in settings:
            raise NasgenError(f"paper-mnist fixes {fixed}; it cannot be set")
    root = Path(output_dir)
    if resume:
        stored = read_config(root / RUN_DIR).to_dict()
        changed = sorted(k for k, v in settings.items() if stored.get(k) != v)
        if changed:
            raise NasgenError(f"--resume continues the experiment in {root} with its own settings; drop {', '.join(changed)}")
        config = TrainConfig.from_dict(stored)
    else:
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise NasgenError(f"output directory {root} is not empty; choose a new or empty directory (nothing was overwritten)")
        data = run_options.get("dataset")
        if data is None:
            # Loaded before sampling so that missing data fails before any
            # work; the training below reuses these arrays.
            try:
                data = load_mnist(settings.get("data_dir") or default_cache_dir())
            except DataError:
                if not fetch:
                    raise
                settings["data_dir"] = str(fetch_mnist(settings.get("data_dir"), log=log or (lambda message: None)))
                data = load_mnist(settings["data_dir"])
            run_options["dataset"] = data
        archs = sample_resnet_architectures(method, samples, sample_seed)
        config = TrainConfig.from_dict(dict(settings, model="resnet18", dataset="mnist",
                                            architectures=[a.to_dict() for a in archs]))
    on_epoch_end = run_options.pop("on_epoch_end", None)
    run = TrainingRun(config, root / RUN_DIR, resume=resume, **run_options)
    if not resume:
        # Directory, devices, data and memory are checked before the
        # experiment writes its first file.
        run.check()
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NasgenError(f"cannot create output directory {root} ({exc.strerror}); choose a writable path") from None
        from nasgen.space.arrays_io import write_architectures

        write_architectures(root / ARCHITECTURES_FILE, archs)
        (root / EXPERIMENT_FILE).write_text(json.dumps({
            "experiment": "paper-mnist", "method": method, "samples": samples, "sample_seed": sample_seed,
        }, indent=1) + "\n", encoding="utf-8")
    with run:
        return run.run(on_epoch_end=on_epoch_end)
