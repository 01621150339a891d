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
from typing import Any

from nasgen.common.atomic import write_atomic
from nasgen.common.errors import NasgenError
from nasgen.samplers.registry import SamplingConfig
from nasgen.space.definition import Architecture
from nasgen.train.config import RunOptions, TrainConfig
from nasgen.train.data import Dataset

__all__ = ["EXPERIMENT_FILE", "ARCHITECTURES_FILE", "RUN_DIR", "paper_mnist", "sample_resnet_architectures"]

EXPERIMENT_FILE = "experiment.json"
ARCHITECTURES_FILE = "architectures.jsonl"
RUN_DIR = "run"

_DEFAULT_SAMPLING = SamplingConfig(method="exact", samples=20, seed=42)


def sample_resnet_architectures(sampling: SamplingConfig) -> list[Architecture]:
    """M distinct architectures of the ResNet-18 downsampling space, through :func:`nasgen.samplers.registry.draw`.

    Args:
        sampling: the method (any registered one, :func:`nasgen.samplers.registry.method_names`,
            e.g. ``"exact"`` (exactly uniform), ``"limited"`` (z3's first M,
            the paper's Limited-M) or ``"uniwit"`` (the paper's
            Limited_Uniform-M)), the number M of architectures (at least 1)
            and the sampler's seed. Its other fields must keep their defaults
            (``experiment.json`` records these three).

    Raises:
        NasgenError: a count that is not positive, a field the experiment does
            not record, or a method that stopped before drawing M architectures.

    >>> from nasgen.samplers.registry import SamplingConfig
    >>> len(sample_resnet_architectures(SamplingConfig("exact", samples=2, seed=1)))
    2
    """
    from nasgen.space.encoding import arrays_to_architectures
    from nasgen.nn.spec import RESNET_SPACE
    from nasgen.samplers.registry import draw

    samples, method = sampling.samples, sampling.method
    if samples is None or samples < 1:
        raise NasgenError(f"--samples must be a positive integer, got {samples!r}")
    unrecorded = [name for name in ("replace", "timeout", "where", "options")
                  if getattr(sampling, name) != getattr(_DEFAULT_SAMPLING, name)]
    if unrecorded:
        raise NasgenError(f"paper-mnist samples with the method's defaults; {', '.join(unrecorded)} cannot be set")
    with draw(RESNET_SPACE, sampling) as run:
        archs = [a for chunk in run.draw() for a in arrays_to_architectures(*chunk)]
    if len(archs) < samples:
        raise NasgenError(
            f"the {method} sampler stopped after {len(archs)} of {samples} architectures ({run.stop_reason})"
        )
    return archs


def paper_mnist(output_dir: str | os.PathLike, sampling: SamplingConfig | None = None, *,
                settings: dict[str, Any] | None = None, resume: bool = False, fetch: bool = False,
                options: RunOptions = RunOptions(), dataset: Dataset | None = None) -> dict:
    """Run (or resume) the paper's MNIST experiment; returns the run's summary.

    Writes ``architectures.jsonl`` and ``experiment.json`` (method, samples,
    seed) into ``output_dir`` and the training run into ``output_dir/run``.

    Args:
        output_dir: a new or empty directory (or, with ``resume``, the one a
            killed experiment used).
        sampling: how the M architectures are drawn (see
            :func:`sample_resnet_architectures`); None: the exact sampler,
            M = 20, seed 42.
        settings: ``config.json`` settings to change from the paper's (e.g.
            ``{"epochs": 2, "width_multiplier": 0.25}``); not ``model`` or ``dataset``.
        resume: continue the experiment in ``output_dir`` (its settings must
            not change).
        fetch: download MNIST into ``settings["data_dir"]`` (or the default
            cache) when it is not there.
        options: how the training runs (:class:`~nasgen.train.config.RunOptions`);
            its ``log`` takes the download's progress messages.
        dataset: already-loaded MNIST (else it is loaded, or fetched).

    Returns:
        The summary of the run (see :func:`nasgen.train.report.summarize`).

    Raises:
        NasgenError: a used directory, missing MNIST, bad settings.
    """
    from nasgen.train.loop import TrainingRun
    from nasgen.train.rundir import read_config

    sampling = _DEFAULT_SAMPLING if sampling is None else sampling
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
        config, data, archs = TrainConfig.from_dict(stored), dataset, None
    else:
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise NasgenError(f"output directory {root} is not empty; choose a new or empty directory (nothing was overwritten)")
        data = dataset if dataset is not None else _mnist(settings, fetch, options)
        archs = sample_resnet_architectures(sampling)
        config = TrainConfig.from_dict(dict(settings, model="resnet18", dataset="mnist",
                                            architectures=[a.to_dict() for a in archs]))
    run = TrainingRun(config, root / RUN_DIR, options, resume=resume, dataset=data)
    if not resume:
        # Directory, devices, data and memory are checked before the
        # experiment writes its first file.
        run.check()
        _write_experiment(root, archs, sampling)
    with run:
        return run.run()


def _mnist(settings: dict[str, Any], fetch: bool, options: RunOptions) -> Dataset:
    """MNIST from ``settings["data_dir"]`` (or the default cache), fetched first when ``fetch`` says so.

    Loaded before sampling so that missing data fails before any work; the
    training reuses these arrays. A fetch records its directory in ``settings``.
    """
    from nasgen.common.errors import DataError
    from nasgen.train.data import default_cache_dir, fetch_mnist, load_mnist

    try:
        return load_mnist(settings.get("data_dir") or default_cache_dir())
    except DataError:
        if not fetch:
            raise
        settings["data_dir"] = str(fetch_mnist(settings.get("data_dir"), log=options.log or (lambda message: None)))
        return load_mnist(settings["data_dir"])


def _write_experiment(root: Path, archs: list[Architecture], sampling: SamplingConfig) -> None:
    """``architectures.jsonl`` and ``experiment.json`` (method, samples, seed) of a new experiment in ``root``."""
    from nasgen.space.arrays_io import write_architectures

    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NasgenError(f"cannot create output directory {root} ({exc.strerror}); choose a writable path") from None
    write_architectures(root / ARCHITECTURES_FILE, archs)
    write_atomic(root / EXPERIMENT_FILE, json.dumps({
        "experiment": "paper-mnist", "method": sampling.method, "samples": sampling.samples,
        "sample_seed": sampling.seed,
    }, indent=1) + "\n")
