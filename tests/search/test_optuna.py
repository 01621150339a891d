"""nasgen.search.optuna: NasgenSampler and suggest_architecture against enumeration, storages and threads."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from scipy.stats import chisquare

optuna = pytest.importorskip("optuna")  # the optuna extra (in the test extra, so CI has it)

from nasgen import Architecture, SearchSpace  # noqa: E402
from nasgen.common.errors import ArchitectureError, EmptySpaceError, NasgenError  # noqa: E402
from nasgen.constraints.language import parse_where  # noqa: E402
from nasgen.search.evolution import EvolutionConfig  # noqa: E402
from nasgen.search.optuna import (  # noqa: E402
    NasgenSampler,
    architecture_from_trial,
    suggest_architecture,
)
from tests.conftest import brute_force_space  # noqa: E402

LEVEL = 0.001
SMALL = SearchSpace((12, 10), (6, 5), 1, 3, rounding="floor", kernel_range=(2, 4), stride_range=(1, 2))
WHERE = ["k[0][0] + k[1][1] <= 6"]  # two positions: applied by rejection


@pytest.fixture(autouse=True)
def quiet_optuna():
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _members(space, where=()):
    wheres = [parse_where(w) for w in where]
    return [a for a in brute_force_space(space) if all(w.evaluate(a, space) for w in wheres)]


def _chi_square(archs, members):
    index = {a: i for i, a in enumerate(members)}
    observed = np.zeros(len(members))
    for a in archs:
        assert a in index, f"{a} is not in the space"
        observed[index[a]] += 1
    return chisquare(observed).pvalue


def _objective(space, where=()):
    def objective(trial):
        arch = suggest_architecture(trial, space, where)
        return float(sum(k for row in arch.kernel for k in row)) + arch.layers
    return objective


def test_uniform_strategy_is_uniform_and_a_function_of_seed_and_trial_number():
    members = _members(SMALL, WHERE)
    assert 20 < len(members) < 200
    sampler = NasgenSampler(SMALL, WHERE, seed=3)
    draws = [sampler.uniform_architecture(number) for number in range(40 * len(members))]
    assert _chi_square(draws, members) > LEVEL
    study = optuna.create_study(sampler=sampler)
    study.optimize(_objective(SMALL, WHERE), n_trials=60)
    assert [architecture_from_trial(t) for t in study.trials] == draws[:60]
    columns = study.trials_dataframe().columns
    assert {"params_layers", "params_kernel_0_0", "params_stride_0_1"} <= set(columns)


@pytest.mark.parametrize("make_sampler", [lambda: optuna.samplers.RandomSampler(seed=1),
                                          lambda: optuna.samplers.TPESampler(seed=1, n_startup_trials=20)],
                         ids=["random", "tpe"])
def test_other_samplers_give_valid_architectures_with_fixed_names(make_sampler):
    members = set(_members(SMALL, WHERE))
    study = optuna.create_study(sampler=make_sampler())
    study.optimize(_objective(SMALL, WHERE), n_trials=80)
    names = set()
    for t in study.trials:
        assert architecture_from_trial(t) in members
        names.update(t.params)
    # the decisions are a fixed set of names (not one per state, as hand-written conditionals give)
    drivers = {n for n in names if n.startswith("nasgen_u_")}
    assert drivers <= {"nasgen_u_layers"} | {f"nasgen_u_{l}_{c}" for l in range(3) for c in range(2)}
    assert names - drivers <= {"layers"} | {f"{p}_{l}_{d}" for p in ("kernel", "stride") for l in range(3)
                                            for d in range(2)}


def test_random_sampler_through_suggest_architecture_is_uniform():
    members = _members(SMALL)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2))
    study.optimize(_objective(SMALL), n_trials=15 * len(members))
    assert _chi_square([architecture_from_trial(t) for t in study.trials], members) > LEVEL


def test_evolution_is_valid_reproducible_and_mutates_near_the_parent():
    members = set(_members(SMALL, WHERE))

    def run():
        sampler = NasgenSampler(SMALL, WHERE, strategy="evolution", seed=5, evolution=EvolutionConfig(10, 3))
        study = optuna.create_study(sampler=sampler)
        study.optimize(_objective(SMALL, WHERE), n_trials=60)
        return [architecture_from_trial(t) for t in study.trials]

    first, second = run(), run()
    assert first == second
    assert all(a in members for a in first)
    assert len(set(first[10:])) > 5  # children are not copies of one parent


def test_threads_and_other_parameters():
    sampler = NasgenSampler(SMALL, seed=4)
    study = optuna.create_study(sampler=sampler)

    def objective(trial):
        arch = suggest_architecture(trial, SMALL)
        rate = trial.suggest_float("learning_rate", 1e-4, 1e-1, log=True)
        return arch.layers * rate

    study.optimize(objective, n_trials=30, n_jobs=2)
    assert len(study.trials) == 30
    for t in study.trials:
        assert architecture_from_trial(t) == sampler.uniform_architecture(t.number)
        assert 1e-4 <= t.params["learning_rate"] <= 1e-1
    evolving = optuna.create_study(sampler=NasgenSampler(SMALL, strategy="evolution", seed=4,
                                                          evolution=EvolutionConfig(5, 2)))
    evolving.optimize(objective, n_trials=30, n_jobs=2)
    members = set(_members(SMALL))
    assert all(architecture_from_trial(t) in members for t in evolving.trials)


def test_journal_storage_shared_by_two_processes(tmp_path):
    journal = tmp_path / "study.log"
    script = textwrap.dedent(f"""
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend
        from nasgen import SearchSpace
        from nasgen.search.optuna import NasgenSampler, suggest_architecture
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        space = SearchSpace.from_dict({SMALL.to_dict()!r})
        storage = JournalStorage(JournalFileBackend({str(journal)!r}))
        study = optuna.create_study(study_name="shared", storage=storage, load_if_exists=True,
                                    sampler=NasgenSampler(space, seed=9))
        study.optimize(lambda t: suggest_architecture(t, space).layers, n_trials=15)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()[-2000:]
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(study_name="shared", storage=JournalStorage(JournalFileBackend(str(journal))))
    trials = study.trials
    assert sorted(t.number for t in trials) == list(range(30))
    sampler = NasgenSampler(SMALL, seed=9)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert all(architecture_from_trial(t) == sampler.uniform_architecture(t.number) for t in trials)


def test_bad_input():
    with pytest.raises(EmptySpaceError):
        NasgenSampler(SMALL, ["k[0][0] > 30"])
    with pytest.raises(NasgenError, match="strategy must be one of"):
        NasgenSampler(SMALL, strategy="tpe")
    study = optuna.create_study(sampler=NasgenSampler(SMALL, seed=0))
    other = SearchSpace((12, 10), (6, 5), 1, 2, rounding="floor")
    with pytest.raises(NasgenError, match="give both the same space"):
        study.optimize(lambda t: suggest_architecture(t, other).layers, n_trials=1)
    bare = optuna.create_study()
    bare.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    with pytest.raises(ArchitectureError, match="holds no architecture"):
        architecture_from_trial(bare.trials[0])


def test_import_nasgen_does_not_import_optuna():
    code = "import sys, nasgen; assert 'optuna' not in sys.modules, 'optuna imported'"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_architecture_round_trip_through_params():
    arch = Architecture(kernel=((3, 2), (4, 4)), stride=((1, 1), (2, 1)))
    from nasgen.search.optuna import architecture_from_params, architecture_params

    assert architecture_from_params(architecture_params(arch)) == arch
