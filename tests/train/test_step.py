"""nasgen.train.step / nasgen.train.programs: the fused step, its programs, their cache in and across processes."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nasgen.common.errors import NasgenError
from nasgen.train.programs import clear_step_programs
from nasgen.train.runtime import default_step_programs

from .conftest import (ARCHS, cli_main, fused_step, run_numbers, run_quietly, tiny_cli_args, tiny_config,
                       without_timings)


# -- the stored step in the compilation cache -----------------------------------------------------


def _cold_entry(config, digits, out, cache):
    """A cold run of ``config`` with ``cache``: its stored step entry (the one file of its key)."""
    from nasgen.train.programs import STEP_DIR, STEP_SUFFIX

    before = set((cache / STEP_DIR).glob(f"*{STEP_SUFFIX}")) if (cache / STEP_DIR).exists() else set()
    clear_step_programs()  # a cold start: not the step an earlier test left in this process
    summary = run_quietly(config, out, dataset=digits, compilation_cache=cache)
    stored = set((cache / STEP_DIR).glob(f"*{STEP_SUFFIX}")) - before
    assert len(stored) == 1
    return stored.pop(), summary


def _warm(config, digits, out, cache, monkeypatch):
    """A run as a new process would make it (nothing kept in memory) in which tracing the networks fails."""
    import nasgen.train.mixture as mixture_module
    import nasgen.train.step as step_module

    def no_tracing(*args, **kwargs):
        raise AssertionError("the step was traced again instead of taken from the cache")

    clear_step_programs()
    with monkeypatch.context() as patch:
        patch.setattr(mixture_module, "network_gradients", no_tracing)
        patch.setattr(step_module, "network_gradients", no_tracing)
        patch.setattr(step_module, "export_program", no_tracing)
        return run_quietly(config, out, dataset=digits, compilation_cache=cache)


def test_a_warm_run_uses_the_stored_step_and_gives_the_same_numbers(tmp_path, digits, monkeypatch):
    from nasgen.train.programs import STEP_MAGIC

    cache = tmp_path / "cache"
    config = tiny_config(epochs=1)
    entry, cold = _cold_entry(config, digits, tmp_path / "cold", cache)
    warm = _warm(config, digits, tmp_path / "warm", cache, monkeypatch)
    assert run_numbers(tmp_path / "warm") == run_numbers(tmp_path / "cold")
    assert without_timings(warm) == without_timings(cold)
    # Without the cache the same step is traced and compiled in-process: same numbers.
    clear_step_programs()
    run_quietly(config, tmp_path / "plain", dataset=digits, compilation_cache=False)
    assert run_numbers(tmp_path / "plain") == run_numbers(tmp_path / "cold")
    # A damaged or truncated entry (its checksum, its flatbuffer) is traced again and replaced, not an error.
    good = entry.read_bytes()
    for n, damaged in enumerate((b"not a compiled step", good[: len(good) // 2], good[:-1] + bytes([good[-1] ^ 1]))):
        entry.write_bytes(damaged)
        clear_step_programs()
        run_quietly(config, tmp_path / f"repaired{n}", dataset=digits, compilation_cache=cache)
        assert run_numbers(tmp_path / f"repaired{n}") == run_numbers(tmp_path / "cold")
        assert entry.read_bytes().startswith(STEP_MAGIC)  # replaced by a fresh export (the warm run below uses it)
    _warm(config, digits, tmp_path / "warm-again", cache, monkeypatch)  # the replaced entry is used
    assert run_numbers(tmp_path / "warm-again") == run_numbers(tmp_path / "cold")


def test_a_planted_pickle_or_another_configurations_entry_never_runs_and_is_replaced(tmp_path, digits, caplog):
    # What issue 32 found: a pickle planted as the cached step ran os.system on the next run. Here a pickle
    # that would create a marker file stands in every file the run could read for its step (the entry of its
    # key, and the pickled .xla executable of the format before); nothing may run and the run must finish with
    # the numbers of a clean run.
    import hashlib
    import logging
    import os
    import pickle

    from nasgen.train.programs import STEP_MAGIC

    cache = tmp_path / "cache"
    config = tiny_config(epochs=1)
    entry, _ = _cold_entry(config, digits, tmp_path / "cold", cache)
    marker = tmp_path / "the-pickle-ran"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    planted = pickle.dumps(Payload())
    assert not marker.exists()
    pickle.loads(planted)  # the payload works: loading it once here creates the marker
    assert marker.exists()
    marker.rmdir()
    for path in (entry, entry.with_suffix(".xla")):
        # The old format's magic and a sha256 of the payload that matches, as a forger would write it.
        path.write_bytes(b"nasgen compiled step 1\n" + hashlib.sha256(planted).digest() + planted)
    with caplog.at_level(logging.INFO, logger="nasgen.train.programs"):
        clear_step_programs()
        run_quietly(config, tmp_path / "planted", dataset=digits, compilation_cache=cache)
    assert not marker.exists()
    assert run_numbers(tmp_path / "planted") == run_numbers(tmp_path / "cold")
    lines = [r.getMessage() for r in caplog.records if r.name == "nasgen.train.programs"]
    assert len(lines) == 1 and "not a nasgen step export" in lines[0], lines
    assert entry.read_bytes().startswith(STEP_MAGIC)
    # A valid entry of another configuration placed under this one's key is not trusted: the header says
    # which settings differ, the step is traced again and the numbers are this configuration's own.
    other = tiny_config(epochs=1, bn_momentum=0.5)
    other_entry, _ = _cold_entry(other, digits, tmp_path / "other-cold", cache)
    other_entry.write_bytes(entry.read_bytes())
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="nasgen.train.programs"):
        clear_step_programs()
        run_quietly(other, tmp_path / "other-again", dataset=digits, compilation_cache=cache)
    assert run_numbers(tmp_path / "other-again") == run_numbers(tmp_path / "other-cold")
    lines = [r.getMessage() for r in caplog.records if r.name == "nasgen.train.programs"]
    assert len(lines) == 1 and "made for another identity, key" in lines[0], lines


def test_cache_directories_are_private_and_others_are_refused_in_one_line(tmp_path, capsys, monkeypatch):
    import os
    import stat

    from nasgen.train.programs import STEP_DIR

    cache = tmp_path / "new" / "cache"
    args = tiny_cli_args(tmp_path)
    args[args.index("--epochs") + 1] = "1"
    args.remove("--no-compile-cache")
    monkeypatch.setenv("NASGEN_JAX_CACHE", str(cache))
    code, _, err = cli_main(args + ["--output-dir", str(tmp_path / "ok")], capsys)
    assert code == 0, err
    for directory in (cache, cache / STEP_DIR):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    entry = next((cache / STEP_DIR).iterdir())
    owner = entry.stat().st_uid
    refusals = {"a group-writable entry": "is writable by its group",
                "a world-writable cache": "is writable by group and others",
                "another user's cache": "belongs to another user"}
    for n, (what, message) in enumerate(refusals.items()):
        cache.chmod(0o700), entry.chmod(0o600)
        with monkeypatch.context() as patch:
            if what == "a group-writable entry":
                entry.chmod(0o664)
            elif what == "a world-writable cache":
                cache.chmod(0o777)
            else:  # as if the files were another user's (the test cannot chown without root)
                patch.setattr(os, "getuid", lambda: owner + 1)
            code, _, err = cli_main(args + ["--output-dir", str(tmp_path / f"refused{n}")], capsys)
        assert code == 2 and err.count("\n") == 1 and message in err and "--no-compile-cache" in err, (what, err)
        assert not (tmp_path / f"refused{n}").exists(), what  # refused before anything was written


def test_a_fused_step_compiles_once_from_freshly_created_state(tmp_path, digits):
    # A mixture fresh from create_mixture holds uncommitted arrays and the step returns
    # committed ones; both calls must run the same compiled program, which JAX's
    # persistent cache shows as exactly one stored step.
    import jax.numpy as jnp

    from nasgen.train.mixture import create_mixture
    from nasgen.train.programs import enable_compilation_cache
    from nasgen.train.step import FusedStep

    before = (jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs)
    cache = enable_compilation_cache(tmp_path / "cache")
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # store even a quick compile
    try:
        config = tiny_config()
        identity = json.dumps(config.to_dict(), sort_keys=True)
        mixture, optimizer = create_mixture(config, in_channels=digits.channels, num_classes=int(digits.num_classes))
        mixture.train()
        x = jnp.asarray(digits.train_images[: config.batch_size])
        y = jnp.asarray(digits.train_labels[: config.batch_size])
        clear_step_programs()  # compiled here, not reused from an earlier test in this process
        step = FusedStep(mixture, optimizer, x, y, cache_dir=cache, identity=identity)
        for _ in range(2):
            step(x, y)
        assert len(list(cache.glob("jit_nasgen_step*"))) == 1
    finally:
        jax.config.update("jax_compilation_cache_dir", before[0])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", before[1])


def test_a_fused_step_of_the_same_structure_reuses_the_compiled_program(digits):
    # The next seed of --seeds (or another train() call in a notebook) reuses the
    # compiled step in memory instead of loading or compiling it again; its numbers
    # are its own mixture's, as nnx.jit's train_step computes them.
    from nasgen.train.mixture import create_mixture, train_step
    from nasgen.train.step import FusedStep

    x = jnp.asarray(digits.train_images[:32])
    y = jnp.asarray(digits.train_labels[:32])

    def fused(config):
        mixture, optimizer = create_mixture(config, in_channels=digits.channels, num_classes=int(digits.num_classes))
        mixture.train()
        return FusedStep(mixture, optimizer, x, y, identity=config.step_identity())

    def by_train_step(config):
        mixture, optimizer = create_mixture(config, in_channels=digits.channels, num_classes=int(digits.num_classes))
        mixture.train()
        losses = train_step(mixture, optimizer, x, y)
        return losses, jax.tree.leaves(nnx.state((mixture, optimizer)))

    clear_step_programs()
    first = fused(tiny_config())
    assert not first.reused
    first(x, y)
    second = fused(tiny_config(seed=8))
    assert second.reused
    losses = second(x, y)
    expected_losses, expected_leaves = by_train_step(tiny_config(seed=8))
    np.testing.assert_allclose(np.asarray(losses[1]), np.asarray(expected_losses[1]), rtol=1e-5, atol=1e-6)
    for got, want in zip(second.leaves, expected_leaves, strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)
    # The first seed's own state was not touched by the second's steps.
    first_losses = first(x, y)
    assert not np.allclose(np.asarray(first_losses[1]), np.asarray(losses[1]))
    assert not fused(tiny_config(learning_rate=1e-3)).reused  # another step: compiled anew
    clear_step_programs()
    assert not fused(tiny_config(seed=8)).reused


def test_the_step_on_a_cpu_compiles_without_ynnpack_fusions_and_updates_the_same(digits):
    # nasgen's CPU default (STEP_COMPILER_OPTIONS) reaches XLA: its program has no
    # YNNPACK fusion, where XLA's own defaults ({}) hand it the convolutions and
    # reductions. Both compute the same update, to float rounding.
    from nasgen.train.programs import STEP_COMPILER_OPTIONS

    clear_step_programs()
    ours, x, y = fused_step(tiny_config(), digits)
    xla, _, _ = fused_step(tiny_config(), digits, compiler_options={})
    assert ours.compiler_options == STEP_COMPILER_OPTIONS and xla.compiler_options == {}
    assert not xla.reused  # other options: another program than the one kept in the process
    assert "ynn_fusion" not in ours._call.as_text()
    assert "ynn_fusion" in xla._call.as_text()
    for _ in range(2):
        ours_losses, xla_losses = ours(x, y), xla(x, y)
        np.testing.assert_allclose(np.asarray(ours_losses[1]), np.asarray(xla_losses[1]), rtol=1e-5, atol=1e-6)
    for got, want in zip(ours.leaves, xla.leaves, strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-6)


def test_compiler_options_that_xla_does_not_know(digits, monkeypatch):
    # nasgen's own default is left out where this XLA lacks it (a later jax may
    # drop an experimental option); one a caller asks for is a clear error.
    import nasgen.train.programs as programs
    from nasgen.train.evaluation import evaluate
    from nasgen.train.step import FusedStep

    monkeypatch.setattr(programs, "STEP_COMPILER_OPTIONS", {"xla_cpu_no_such_option": True})
    clear_step_programs()
    step, x, y = fused_step(tiny_config(), digits)
    assert np.all(np.isfinite(np.asarray(step(x, y)[1])))
    accuracies, _ = evaluate(step._objects[0], digits.test_images[:50], digits.test_labels[:50], 32)
    assert accuracies.shape == (len(ARCHS) + 1,) and np.all((0 <= accuracies) & (accuracies <= 1))
    with pytest.raises(NasgenError, match="compiler_options .*xla_cpu_nor_this_one"):
        fused_step(tiny_config(seed=9), digits, compiler_options={"xla_cpu_nor_this_one": True})
    with pytest.raises(NasgenError, match="compiler_options must be a dict"):
        FusedStep(*step._objects, x, y, compiler_options="fast")
    clear_step_programs()


@pytest.mark.parametrize("optimizer", ["adam-l2", "adamw"])
def test_a_step_split_into_programs_updates_like_the_one_program_step(tmp_path, digits, optimizer):
    # Groups of networks in programs of their own plus alpha's: every leaf of the
    # mixture and the optimiser after three steps equals the one-program step's;
    # a new FusedStep (as in a new process) loads every part from the cache.
    from nasgen.train.mixture import create_mixture
    from nasgen.train.step import FusedStep

    config = tiny_config(optimizer=optimizer, weight_decay=0.01)
    x = jnp.asarray(digits.train_images[:32])
    y = jnp.asarray(digits.train_labels[:32])

    def three_steps(programs, cache=None):
        mixture, optimizer_ = create_mixture(config, in_channels=digits.channels,
                                             num_classes=int(digits.num_classes))
        mixture.train()
        step = FusedStep(mixture, optimizer_, x, y, cache_dir=cache, identity=config.step_identity(),
                         programs=programs)
        losses = [step(x, y) for _ in range(3)]
        step.sync()
        return step, losses, jax.tree.leaves(nnx.state((mixture, optimizer_)))

    clear_step_programs()
    _, one_losses, one = three_steps(1)
    networks = len(config.architectures) + 1
    for programs in (2, networks):
        step, losses, split = three_steps(programs, tmp_path / "cache")
        assert step.programs == programs and not step.loaded_from_cache
        for got, want in zip(losses, one_losses, strict=True):
            np.testing.assert_allclose(np.asarray(got[0]), np.asarray(want[0]), rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(np.asarray(got[1]), np.asarray(want[1]), rtol=1e-5, atol=1e-7)
        for a, b in zip(split, one, strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
    clear_step_programs()
    step, _, again = three_steps(networks, tmp_path / "cache")
    assert step.loaded_from_cache and not step.reused
    for a, b in zip(again, split, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(NasgenError, match="programs must be an integer from 1 to the number of networks"):
        three_steps(networks + 1)


def test_a_run_with_a_split_step_logs_the_one_program_numbers(tmp_path, digits):
    config = tiny_config(epochs=2)
    run_quietly(config, tmp_path / "one", dataset=digits, compilation_cache=False)
    run_quietly(config, tmp_path / "split", dataset=digits, compilation_cache=False, step_programs=3)
    one, split = run_numbers(tmp_path / "one"), run_numbers(tmp_path / "split")
    assert [sorted(r) for r in split] == [sorted(r) for r in one]
    for a, b in zip(split, one, strict=True):
        for key, value in b.items():
            if isinstance(value, str) or value is None:
                assert a[key] == value, key
            else:  # numbers and lists of numbers: equal to float rounding
                np.testing.assert_allclose(np.asarray(a[key], float), np.asarray(value, float), rtol=1e-4, atol=1e-6,
                                           err_msg=key)
    config_json = json.loads((tmp_path / "split" / "config.json").read_text())
    assert config_json["sessions"][-1]["step_programs"] == 3
    # Not given: chosen for the devices (3 networks on a CPU: one program) and recorded as a number.
    config_json = json.loads((tmp_path / "one" / "config.json").read_text())
    assert config_json["sessions"][-1]["step_programs"] == default_step_programs(3, "cpu") == 1
