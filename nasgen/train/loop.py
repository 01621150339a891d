"""A training run: :class:`TrainingRun` owns an output directory (config, JSONL log, orbax checkpoints,
reports), trains epoch by epoch and resumes a killed run bit for bit; :func:`train` runs one."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Sequence

import jax
import numpy as np
from flax import nnx

from nasgen.common.atomic import signals_deferred
from nasgen.common.errors import NasgenError, RunError
from nasgen.nn.summary import estimate_training_bytes
from nasgen.train import report
from nasgen.train.config import RunOptions, TrainConfig, network_names
from nasgen.train.data import Dataset, batches, load_dataset
from nasgen.train.evaluation import evaluate
from nasgen.train.mixture import create_mixture
from nasgen.train.programs import check_step_cache, enable_compilation_cache
from nasgen.train.rundir import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    LOCK_FILE,
    LOG_FILE,
    Checkpoints,
    RunLock,
    read_config,
    read_metadata,
    resume_epoch,
    utc_now,
    write_json,
)
from nasgen.train.runtime import available_memory, data_mesh, default_step_programs, library_versions
from nasgen.train.step import FusedStep

__all__ = ["TrainingRun", "network_table", "train"]

logger = logging.getLogger("nasgen.train.loop")


class TrainingRun:
    """One mixture-training run bound to its output directory; a context manager.

    Entering validates everything that can be checked without training (the
    directory, the data, the memory the step needs) before it writes
    anything, then takes the directory's lock, writes ``config.json``, builds
    the networks and, when resuming, restores the last consistent epoch (see
    :func:`resume_epoch`). :meth:`run` trains the remaining epochs, committing
    each epoch's log record and checkpoint so that a kill at any instant
    resumes to the same log and numbers, and writes the reports.

    Args:
        config: the run's settings.
        output_dir: where config, log, checkpoints and reports go.
        resume: continue the run already in ``output_dir`` (its config must
            equal ``config``; see :func:`read_config`).
        dataset: an already-loaded :class:`~nasgen.train.data.Dataset` (else it is
            loaded from ``config``); its name labels the reports.
        options: how it runs (:class:`~nasgen.train.config.RunOptions`:
            progress, devices, caches, step programs, plots, the command line
            to record, the end-of-epoch hook).

    Raises:
        RunError: the directory is not usable (one-line message; nothing
            written).
        NasgenError: data or settings that cannot train.
    """

    def __init__(self, config: TrainConfig, output_dir: str | os.PathLike, options: RunOptions = RunOptions(), *,
                 resume: bool = False, dataset: Dataset | None = None) -> None:
        self.config = config
        self.options = options
        self.output_dir = Path(output_dir)
        self.resume = resume
        # None until check() picks the default for the run's devices.
        self.step_programs = options.step_programs
        self._dataset = dataset
        self._checkpoints: Checkpoints | None = None
        self._lock: RunLock | None = None

    # -- directory handling

    def _check_directory(self) -> None:
        out = self.output_dir
        if out.exists() and not out.is_dir():
            raise RunError(f"output directory {out} is a file; give a directory path")
        for parent in out.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise RunError(f"output directory {out} is under {parent}, which is a file; give a directory path")
                break
        if self.resume:
            stored = read_config(out)
            if stored != self.config:
                changed = ", ".join(stored.differences(self.config))
                raise RunError(f"{out} holds a different run (settings differ: {changed}); resume it with its own settings")
            return
        if out.exists() and any(p.name != LOCK_FILE for p in out.iterdir()):
            if (out / CONFIG_FILE).exists():
                try:
                    stored = read_config(out)
                except NasgenError:
                    stored = None
                if stored == self.config:
                    raise RunError(f"{out} already holds this run; pass --resume {out} to continue it, or choose a new --output-dir")
                raise RunError(f"{out} holds a different run; choose a new --output-dir (nothing was overwritten)")
            raise RunError(f"output directory {out} is not empty and holds no nasgen run; choose an empty or new directory")

    def _check_data(self) -> None:
        data = self._dataset
        config = self.config
        space = config.search_space()
        spec = config.model_spec(in_channels=data.channels, num_classes=int(data.num_classes))
        expected = spec.image_shape(space)
        if tuple(data.example_shape) != tuple(expected):
            hint = " (pass --image-shape for another input)" if config.model == "resnet18" else ""
            raise NasgenError(
                f"{config.model} networks here take {'x'.join(map(str, expected))} inputs but "
                f"{data.name} images are {'x'.join(map(str, data.example_shape))}{hint}"
            )
        limit = lambda array, n: array if n is None else array[:n]  # noqa: E731
        self.train_images = limit(data.train_images, config.train_limit)
        self.train_labels = limit(data.train_labels, config.train_limit)
        self.test_images = limit(data.test_images, config.test_limit)
        self.test_labels = limit(data.test_labels, config.test_limit)
        for what, images in (("training", self.train_images), ("test", self.test_images)):
            if not np.isfinite(images).all():
                raise NasgenError(f"{data.name} holds non-finite {what} images (NaN or infinity); clean the data first")
        if len(self.train_labels) < config.batch_size:
            raise NasgenError(
                f"batch size {config.batch_size} is larger than the {len(self.train_labels)} training images"
            )
        if config.batch_size % self.mesh.size:
            raise RunError(
                f"batch size {config.batch_size} does not divide over {self.mesh.size} devices; choose --devices "
                f"among the divisors of {config.batch_size} (or another --batch-size)"
            )

    def _check_memory(self) -> None:
        data = self._dataset
        config = self.config
        spec = config.model_spec(in_channels=int(data.train_images.shape[-1]), num_classes=int(data.num_classes))
        space = config.search_space() if config.model == "chain" else None
        archs = [config.baseline_architecture(), *config.generated_architectures()]
        # Each device holds every network and its share of the batch.
        need = estimate_training_bytes(spec, space, archs, -(-config.batch_size // self.mesh.size))
        have, what = available_memory()
        if have is not None and need > have:
            raise RunError(
                f"this mixture needs about {need / 2**30:.1f} GiB per device for training, more than the "
                f"{have / 2**30:.1f} GiB of {what}; use a smaller --width / --width-multiplier, --batch-size, "
                "fewer networks or more --devices"
            )

    def _open_directory(self) -> None:
        out = self.output_dir
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunError(f"cannot create output directory {out} ({exc.strerror}); choose a writable path") from None
        self._lock = RunLock(out)
        self._lock.acquire()
        # Checked again under the lock: a run that started at the same time
        # and won the lock may have written its config in the meantime.
        self._check_directory()

    def check(self) -> None:
        """Validate the directory, devices, data and memory without writing anything.

        :meth:`__enter__` calls it; a caller that writes files of its own
        before the run (an experiment) calls it first.

        Raises:
            NasgenError: as :class:`TrainingRun`.
        """
        self.mesh = data_mesh(self.options.devices)
        networks = len(network_names(self.config))
        programs = self.step_programs
        if programs is None:
            programs = self.step_programs = default_step_programs(networks, self.mesh.devices.flat[0].platform)
        if isinstance(programs, bool) or not isinstance(programs, int) or not 1 <= programs <= networks:
            raise RunError(f"--step-programs must be an integer from 1 to the number of networks ({networks}), "
                           f"got {programs!r}")
        self._check_directory()
        if self._dataset is None:
            self._dataset = load_dataset(self.config.dataset, self.config.data_dir)
        self._check_data()
        self._check_memory()

    def __enter__(self) -> "TrainingRun":
        self.check()
        log_path = self.output_dir / LOG_FILE
        self._cache_dir = None
        if self.options.compilation_cache is None:
            configured = jax.config.jax_compilation_cache_dir
            self._cache_dir = Path(configured) if configured else None
        elif self.options.compilation_cache not in (False, ""):
            self._cache_dir = enable_compilation_cache(
                None if self.options.compilation_cache is True else self.options.compilation_cache
            )
        if self._cache_dir is not None:
            check_step_cache(self._cache_dir)  # refused before the run writes anything
        self._open_directory()
        try:
            self._enter_locked(log_path)
        except BaseException:
            self._lock.release()
            raise
        return self

    def _enter_locked(self, log_path: Path) -> None:
        data = self._dataset
        records = report.read_log(log_path) if self.resume and log_path.exists() else []
        channels, classes = data.train_images.shape[-1], data.num_classes
        self.mixture, self.optimizer = create_mixture(self.config, in_channels=channels, num_classes=classes)
        self._checkpoints = Checkpoints(self.output_dir / CHECKPOINT_DIR)
        self.start_epoch = 0
        if self.resume:
            self.start_epoch = resume_epoch([r["epoch"] for r in records], self._checkpoints.epochs())
            if self.start_epoch:
                self._checkpoints.restore(self.start_epoch, self.mixture, self.optimizer)
            metadata = read_metadata(self.output_dir)
        else:
            metadata = {"config": self.config.to_dict(), "nasgen_run": 2}
        self._replicate_state()
        session = {
            "started": utc_now(), "ended": None, "start_epoch": self.start_epoch, "devices": self.mesh.size,
            "step_programs": self.step_programs,
            "processes": jax.process_count(), "device_kind": self.mesh.devices.flat[0].device_kind,
            "platform": self.mesh.devices.flat[0].platform, "command": None if self.options.command is None else list(self.options.command), "versions": library_versions(),
        }
        metadata.setdefault("sessions", []).append(session)
        used = dataclasses.replace(
            data, train_images=self.train_images, train_labels=self.train_labels,
            test_images=self.test_images, test_labels=self.test_labels,
        )
        metadata.update(dataset=used.record(), devices=self.mesh.size)
        # Nothing on disk changes before this point, so a refused resume
        # (damaged checkpoint, bad log) leaves the directory as it was.
        if jax.process_index() == 0:
            write_json(self.output_dir / CONFIG_FILE, metadata)
            # Records past the restored epoch are redone by this run.
            report.write_log(log_path, [r for r in records if r["epoch"] <= self.start_epoch])
        if self.resume:
            # Checkpoints past the restored epoch (their records were lost)
            # are redone; old ones a kill kept from pruning go now.
            self._checkpoints.prune(self.start_epoch)
        self._metadata = metadata

    def __exit__(self, *exc_info) -> None:
        self._checkpoints = None
        if self._lock is not None:
            self._lock.release()

    # -- devices

    def _replicate_state(self) -> None:
        """Every device of the mesh holds the whole mixture and optimiser state."""
        from jax.sharding import NamedSharding, PartitionSpec

        replicated = NamedSharding(self.mesh, PartitionSpec())
        state = nnx.state((self.mixture, self.optimizer))
        nnx.update((self.mixture, self.optimizer), jax.device_put(state, replicated))

    def _shard(self, *arrays: np.ndarray) -> list[jax.Array]:
        """Global batch arrays split over the mesh along the batch axis; each host passes only its rows."""
        from jax.sharding import NamedSharding, PartitionSpec

        sharding = NamedSharding(self.mesh, PartitionSpec("data"))
        hosts, host = jax.process_count(), jax.process_index()
        out = []
        for array in arrays:
            rows = len(array) // hosts
            local = array[host * rows : (host + 1) * rows]
            out.append(jax.make_array_from_process_local_data(sharding, local, array.shape))
        return out

    # -- training

    def _commit(self, epoch: int, record: dict) -> None:
        """Make epoch ``epoch`` durable: its log record, then its checkpoint, then pruning.

        Record first: a kill after it and before the checkpoint leaves a
        record without a checkpoint, which the resumed run drops and redoes
        (:func:`resume_epoch`); signals wait until the commit is complete.
        """
        with signals_deferred():
            if jax.process_index() == 0:
                report.append_log(self.output_dir / LOG_FILE, record)
            self._checkpoints.save(epoch, self.mixture, self.optimizer)
            self._checkpoints.prune(epoch)

    def run(self) -> dict:
        """Train the remaining epochs, then write summary, markdown table and plots.

        Calls ``options.on_epoch_end`` with each epoch's log record once it is
        committed (log record and checkpoint on disk).

        Returns:
            The summary dict (see :func:`nasgen.train.report.summarize`).

        Raises:
            RunError: training diverged (a non-finite loss or alpha); the
                epoch that diverged is not committed.
        """
        from tqdm import tqdm

        config = self.config
        names = network_names(config)
        disable = True if self.options.progress is False else None
        epochs = tqdm(
            range(self.start_epoch, config.epochs), initial=self.start_epoch, total=config.epochs,
            desc="epochs", unit="epoch", disable=disable, leave=True,
        )
        self._step = None  # compiled (or loaded) at the first batch
        for epoch in epochs:
            train_losses, mixture_train_loss, seconds = self._train_epoch(epoch, disable)
            record = self._epoch_record(epoch, train_losses, mixture_train_loss, seconds)
            self._commit(epoch + 1, record)
            epochs.set_postfix(best_acc=f"{max(record['test_accuracy']):.4f}",
                               mix_acc=f"{record['mixture_test_accuracy']:.4f}")
            if epochs.disable:
                _log_epoch(record, config.epochs, names)
            if self.options.on_epoch_end is not None:
                self.options.on_epoch_end(record)
        epochs.close()
        return self._write_reports(names)

    def _train_epoch(self, epoch: int, disable: bool | None) -> tuple[np.ndarray, float, dict[str, float]]:
        """Epoch ``epoch``'s steps: each network's mean loss, the mixture's, and the timings.

        The timings are ``compile`` (tracing and compiling the step, or
        loading it, at the first epoch of the process), ``train`` (the steps)
        and ``ended`` (the clock at the end, where evaluation starts).
        """
        from tqdm import tqdm

        config = self.config
        count = len(self.train_labels)
        steps = count // config.batch_size
        images_per_step = config.batch_size * config.num_networks
        self.mixture.train()
        order = batches(count, config.batch_size, config.seed, epoch)
        step_losses = []  # device arrays; summed on the host so no extra XLA program is compiled
        compile_seconds = 0.0
        started = time.perf_counter()
        if self._step is None:
            # Tracing and compiling the step (or loading both from the
            # cache) and its first call are timed on their own, so that
            # img/s and the ETA below are those of the compiled step.
            index = next(order)
            batch = self._shard(self.train_images[index], self.train_labels[index])
            self._step = FusedStep(self.mixture, self.optimizer, *batch, cache_dir=self._cache_dir,
                                   identity=config.step_identity(), programs=self.step_programs)
            losses = self._step(*batch)
            jax.block_until_ready(losses)
            step_losses.append(losses)
            compile_seconds = time.perf_counter() - started
        first = len(step_losses)
        bar = tqdm(total=steps, initial=first, desc=f"epoch {epoch + 1}", unit="step", disable=disable, leave=False)
        if compile_seconds:
            bar.set_postfix(compile=f"{compile_seconds:.1f}s")
        timed_from = time.perf_counter()
        for step, index in enumerate(order, start=first):
            mixture_loss, network_losses = self._step(*self._shard(self.train_images[index], self.train_labels[index]))
            step_losses.append((mixture_loss, network_losses))
            bar.update(1)
            # Reading the loss forces a device sync: do it only now and then.
            if not bar.disable and (step % 10 == 0 or step == steps - 1):
                seconds = time.perf_counter() - timed_from
                bar.set_postfix(
                    loss=f"{float(mixture_loss):.4f}",
                    img_s=f"{(step + 1 - first) * images_per_step / seconds:.0f}",
                    **({"compile": f"{compile_seconds:.1f}s"} if compile_seconds else {}),
                )
        bar.close()
        self._step.sync()
        train_losses = np.mean([np.asarray(n, np.float64) for _, n in step_losses], axis=0)
        mixture_train_loss = float(np.mean([float(m) for m, _ in step_losses]))
        ended = time.perf_counter()
        # The compiling call ran one step too; its share of the step time
        # is estimated from the mean of the other steps.
        timed_steps = steps - first
        mean_step = (ended - timed_from) / timed_steps if timed_steps else 0.0
        if compile_seconds:
            compile_seconds = max(0.0, compile_seconds - mean_step)
        train_seconds = (ended - timed_from) + mean_step * first
        return train_losses, mixture_train_loss, {"compile": compile_seconds, "train": train_seconds, "ended": ended}

    def _epoch_record(self, epoch: int, train_losses: np.ndarray, mixture_train_loss: float,
                      seconds: dict[str, float]) -> dict:
        """Evaluate the epoch's mixture and make its log record; refuse a diverged epoch."""
        config = self.config
        accuracies, mixture_accuracy = self._evaluate()
        eval_seconds = time.perf_counter() - seconds["ended"]
        alpha = np.asarray(self.mixture.alpha[...], np.float64)
        if not (math.isfinite(mixture_train_loss) and np.isfinite(alpha).all() and np.isfinite(train_losses).all()):
            raise RunError(
                f"training diverged in epoch {epoch + 1} (mixture loss {mixture_train_loss}, alpha "
                f"{'finite' if np.isfinite(alpha).all() else 'not finite'}); epoch {epoch + 1} was not saved: "
                "lower --learning-rate or check the data's scale"
            )
        steps = len(self.train_labels) // config.batch_size
        images = steps * config.batch_size * config.num_networks
        train_seconds = seconds["train"]
        return report.epoch_record(
            epoch=epoch + 1, alpha=alpha, train_losses=train_losses, mixture_train_loss=mixture_train_loss,
            test_accuracies=accuracies, mixture_test_accuracy=mixture_accuracy,
            timings={"train_seconds": train_seconds, "compile_seconds": seconds["compile"], "eval_seconds": eval_seconds,
                     "images_per_second": (images / train_seconds) if train_seconds > 0 else 0.0},
        )

    def _evaluate(self) -> tuple[np.ndarray, float]:
        # Evaluation batches are padded to a multiple of the device count.
        batch = min(self.config.eval_batch_size, len(self.test_labels))
        batch = -(-batch // self.mesh.size) * self.mesh.size
        return evaluate(self.mixture, self.test_images, self.test_labels, batch, place=self._shard)

    def _write_reports(self, names: list[str]) -> dict:
        records = report.read_log(self.output_dir / LOG_FILE)
        networks = network_table(self.config, self._dataset)
        summary = report.summarize(
            records, names=names, dataset=self._dataset.name, networks=networks,
            test_size=len(self.test_labels),
        )
        if jax.process_index() == 0:
            report.write_reports(self.output_dir, records, summary, plots=self.options.plots)
            self._metadata["sessions"][-1]["ended"] = utc_now()
            write_json(self.output_dir / CONFIG_FILE, self._metadata)
        return summary


def _log_epoch(record: dict, epochs: int, names: Sequence[str]) -> None:
    best = int(np.argmax(record["test_accuracy"]))
    compile_note = f" (+{record['compile_seconds']:.1f} s compiling)" if record.get("compile_seconds") else ""
    logger.info(
        "epoch %d/%d: mixture loss %.4f, best %s %.4f, mixture %.4f, %.0f img/s, %.1f s%s",
        record["epoch"], epochs, record["mixture_train_loss"], names[best].split()[0], record["test_accuracy"][best],
        record["mixture_test_accuracy"], record["images_per_second"], record["train_seconds"], compile_note,
    )


def network_table(config: TrainConfig, data: Dataset) -> list[dict[str, Any]]:
    """Per network c_0..c_M: its architecture, parameters and FLOPs per example (analytic)."""
    from nasgen.nn.summary import model_stats

    space = config.search_space()
    spec = config.model_spec(in_channels=data.channels, num_classes=int(data.num_classes))
    table = []
    for arch in (config.baseline_architecture(), *config.generated_architectures()):
        total = model_stats(spec, space if config.model == "chain" else None, arch)[-1]
        table.append({"architecture": arch.to_dict(), "params": int(total["params"]), "flops": int(total["flops"])})
    return table


def train(config: TrainConfig, output_dir: str | os.PathLike, options: RunOptions = RunOptions(), *,
          resume: bool = False, dataset: Dataset | None = None) -> dict:
    """Run (or resume) a mixture training and write its reports; returns the summary.

    Args:
        config, output_dir, options, resume, dataset: as for :class:`TrainingRun`.

    Returns:
        The summary (see :func:`nasgen.train.report.summarize`).

    Raises:
        NasgenError: see :class:`TrainingRun` and :meth:`TrainingRun.run`.
    """
    with TrainingRun(config, output_dir, options, resume=resume, dataset=dataset) as run:
        return run.run()
