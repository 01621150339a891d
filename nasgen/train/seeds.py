"""The same mixture trained once per seed, with mean and standard deviation across seeds (the paper's Table 3)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Sequence

from nasgen.common.atomic import write_atomic
from nasgen.common.errors import NasgenError, RunError
from nasgen.train import report
from nasgen.train.config import RunOptions, TrainConfig, exception_reason
from nasgen.train.data import Dataset
from nasgen.train.loop import train
from nasgen.train.rundir import CONFIG_FILE, write_json

__all__ = ["SEEDS_FILE", "SEEDS_SUMMARY_JSON", "SEEDS_SUMMARY_MD", "parse_seeds", "read_seed_manifest", "train_seeds"]


SEEDS_FILE = "seeds.json"
SEEDS_SUMMARY_JSON = "seeds-summary.json"
SEEDS_SUMMARY_MD = "seeds-summary.md"


def parse_seeds(text: str | Sequence[int]) -> list[int]:
    """``"42,43,44"`` (or a list) -> distinct non-negative integer seeds.

    Raises:
        NasgenError: not a comma-separated list of distinct non-negative integers.
    """
    parts = [p.strip() for p in text.split(",")] if isinstance(text, str) else list(text)
    seeds = []
    for part in parts:
        try:
            if isinstance(part, bool) or isinstance(part, float):
                raise ValueError
            value = int(part)
        except (TypeError, ValueError):
            raise NasgenError(f"--seeds must be comma-separated non-negative integers like 42,43,44, got {text!r}") from None
        if value < 0 or value >= 2**63:
            raise NasgenError(f"--seeds must be non-negative integers below 2**63, got {value}")
        seeds.append(value)
    if not seeds or len(set(seeds)) != len(seeds):
        raise NasgenError(f"--seeds must list at least one seed, each once, got {text!r}")
    return seeds


def train_seeds(config: TrainConfig, output_dir: str | os.PathLike, seeds: Sequence[int],
                options: RunOptions = RunOptions(), *, resume: bool = False, dataset: Dataset | None = None) -> dict:
    """Train the same mixture once per seed and report mean and std across seeds (the paper's Table 3).

    Each seed's run is a complete run directory ``output_dir/seed-N`` (its
    own log, checkpoints, reports, resumable on its own); ``seeds.json``
    names the seeds and the shared settings, and ``seeds-summary.json`` /
    ``seeds-summary.md`` hold the figures across seeds (see
    :func:`nasgen.train.report.seed_summary`), and ``seeds-accuracy.FORMAT``
    each network's accuracy per seed (unless ``options.plots`` is False; see
    :func:`nasgen.train.report.plot_seed_figure`).

    Args:
        config: the settings; its ``seed`` is replaced by each of ``seeds``.
        output_dir: a new or empty directory (or, with ``resume``, the one a
            killed multi-seed run used).
        seeds: distinct non-negative seeds.
        resume: continue the runs in ``output_dir``; runs not yet started
            start.
        options: how every seed's run runs (see :class:`~nasgen.train.config.RunOptions`).
        dataset: already-loaded data for every seed (else each run loads ``config.dataset``).

    Returns:
        The across-seed summary.

    Raises:
        RunError: an unusable directory; any error of :func:`train`.
    """
    seeds = parse_seeds(seeds)
    out = Path(output_dir)
    manifest = {"seeds": seeds, "config": dataclasses.replace(config, seed=seeds[0]).to_dict()}
    if resume:
        stored = read_seed_manifest(out)
        if stored != manifest:
            raise RunError(f"{out} holds a different multi-seed run; resume it with its own settings")
    else:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise RunError(f"output directory {out} is not empty; choose a new or empty directory (nothing was overwritten)")
        # Every seed's settings are validated before anything is written.
        for seed in seeds:
            dataclasses.replace(config, seed=seed)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunError(f"cannot create output directory {out} ({exc.strerror}); choose a writable path") from None
        write_json(out / SEEDS_FILE, manifest)
    summaries = {}
    for seed in seeds:
        run_dir = out / f"seed-{seed}"
        again = resume and (run_dir / CONFIG_FILE).exists()
        summaries[seed] = train(dataclasses.replace(config, seed=seed), run_dir, options, resume=again, dataset=dataset)
    aggregate = report.seed_summary(summaries)
    write_json(out / SEEDS_SUMMARY_JSON, aggregate)
    write_atomic(out / SEEDS_SUMMARY_MD, report.markdown_seed_summary(aggregate))
    figure_format = report.plot_format(options.plots)
    if figure_format is not None:
        report.write_seed_plot(out, summaries, figure_format)
    return aggregate


def read_seed_manifest(output_dir: str | os.PathLike) -> dict:
    """The ``seeds.json`` of a multi-seed run: ``{"seeds": [...], "config": {...}}``.

    Raises:
        RunError: no readable manifest there.
    """
    path = Path(output_dir) / SEEDS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{output_dir} holds no multi-seed run (no {SEEDS_FILE})") from None
    except (OSError, ValueError) as exc:
        raise RunError(f"{path} is unreadable ({exception_reason(exc)})") from None
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict) or not isinstance(data.get("seeds"), list):
        raise RunError(f"{path} does not hold a multi-seed run")
    return {"seeds": parse_seeds(data["seeds"]), "config": TrainConfig.from_dict(data["config"]).to_dict()}
