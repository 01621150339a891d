"""``nasgen search``: run an Optuna study of the user's objective over a (constrained) space.

Each finished trial is streamed as one JSON line on standard output (trial
number, state, value, architecture, and the error of a failed trial). With a
``--storage`` the study is kept there, and running the same command again
resumes it: only the trials that ``--trials`` still asks for are run (trials
that finished, failed or were pruned count; a trial left running by an
interrupted process is not re-run).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import sys
from typing import Any, Callable

from nasgen.cli.common import add_space_arguments, space_from_args
from nasgen.common.errors import NasgenError
from nasgen.search.evolution import EvolutionConfig  # numpy only: the optuna side is imported in the command


def positive_int(text: str) -> int:
    """An argparse type: a positive integer, or a one-line error naming what is valid."""
    value = text.strip()
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text[:40]!r}")
    return int(value)


def register(subparsers) -> None:
    p = subparsers.add_parser("search", help="search a space with Optuna: uniform random search or evolution")
    add_space_arguments(p)
    p.add_argument("--where", action="append", default=[], metavar="EXPR",
                   help="constraint every architecture must satisfy (repeatable; as nasgen sample)")
    p.add_argument("--strategy", choices=("uniform", "evolution"), default="uniform",
                   help="uniform: exactly uniform random search; evolution: regularized evolution (default uniform)")
    p.add_argument("--trials", type=positive_int, required=True, help="trials the study should hold in all")
    p.add_argument("--objective", required=True, metavar="MODULE:FUNCTION",
                   help="the function to optimise: FUNCTION(architecture) or FUNCTION(architecture, trial) -> float "
                        "(MODULE is imported from the current folder or the Python path)")
    p.add_argument("--direction", choices=("minimize", "maximize"), default="minimize", help="(default minimize)")
    p.add_argument("--storage", default=None,
                   help="an Optuna storage URL (sqlite:///study.db) or a journal file path shared by processes "
                        "(default: in memory, not resumable)")
    p.add_argument("--study", default="nasgen", help="the study's name in the storage (default nasgen)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler (default 0)")
    defaults = EvolutionConfig()
    p.add_argument("--population", type=positive_int, default=defaults.population_size,
                   help=f"evolution: population size (default {defaults.population_size})")
    p.add_argument("--tournament", type=positive_int, default=defaults.tournament_size,
                   help=f"evolution: tournament size (default {defaults.tournament_size})")
    p.set_defaults(handler=run)


def load_objective(text: str) -> Callable:
    """``MODULE:FUNCTION`` -> the function (the module is imported: it is the user's own code, named by them).

    Raises:
        NasgenError: a malformed name, a module that cannot be imported, or a missing function.
    """
    module_name, sep, function_name = text.partition(":")
    if not sep or not module_name or not function_name:
        raise NasgenError(f"--objective must be MODULE:FUNCTION (for example my_objectives:accuracy), got {text!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise NasgenError(f"cannot import the objective's module {module_name!r}: {exc}") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise NasgenError(f"the module {module_name!r} has no function {function_name!r}")
    return function


def _takes_trial(function: Callable) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in positional)


def open_storage(url: str | None):
    """None (in memory), an Optuna storage URL, or a journal file path -> an Optuna storage.

    Raises:
        NasgenError: the storage cannot be opened, in one line.
    """
    import optuna

    if url is None:
        return None
    try:
        if "://" in url:
            return optuna.storages.get_storage(url)
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        folder = os.path.dirname(os.path.abspath(url))
        if not os.path.isdir(folder):
            raise NasgenError(f"cannot open the storage {url}: the folder {folder} does not exist")
        return JournalStorage(JournalFileBackend(url))
    except NasgenError:
        raise
    except Exception as exc:  # Optuna and SQLAlchemy raise many kinds: one line names the storage and the reason
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NasgenError(f"cannot open the storage {url}: {reason[:300]}") from None


def _row(trial) -> dict[str, Any]:
    from nasgen.search.optuna import architecture_from_trial

    row: dict[str, Any] = {"trial": trial.number, "state": trial.state.name, "value": trial.value}
    try:
        row["architecture"] = architecture_from_trial(trial).to_dict()
    except NasgenError:
        row["architecture"] = None
    if "error" in trial.user_attrs:
        row["error"] = trial.user_attrs["error"]
    return row


def run(args) -> int:
    import optuna

    from nasgen.search.optuna import NasgenSampler, suggest_architecture

    # everything a user can get wrong is checked before the storage is touched
    space = space_from_args(args)
    where = tuple(args.where)
    function = load_objective(args.objective)
    with_trial = _takes_trial(function)
    if args.tournament > args.population:
        raise NasgenError(f"--tournament ({args.tournament}) must be at most --population ({args.population})")
    sampler = NasgenSampler(space, where, strategy=args.strategy, seed=args.seed,
                            evolution=EvolutionConfig(args.population, args.tournament))
    storage = open_storage(args.storage)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our rows say what each trial did
    try:
        study = optuna.create_study(study_name=args.study, storage=storage, sampler=sampler,
                                    direction=args.direction, load_if_exists=True)
    except ValueError as exc:
        raise NasgenError(f"cannot use the study {args.study!r}: {str(exc).splitlines()[0]}") from None
    if study.direction.name.lower() != args.direction:
        raise NasgenError(f"the study {args.study!r} in {args.storage} is to {study.direction.name.lower()}, "
                          f"not {args.direction}: give --direction {study.direction.name.lower()}")
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    done = len(study.get_trials(deepcopy=False, states=finished))
    remaining = args.trials - done

    def objective(trial):
        arch = suggest_architecture(trial, space, where)
        try:
            value = function(arch, trial) if with_trial else function(arch)
        except Exception as exc:
            # the trial fails with its message and the study goes on
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:500])
            raise
        return value

    def stream(study, trial):
        print(json.dumps(_row(trial)), flush=True)

    if remaining > 0:
        study.optimize(objective, n_trials=remaining, catch=(Exception,), callbacks=[stream])
    trials = study.get_trials(deepcopy=False, states=finished)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = ""
    if complete:
        best_trial = study.best_trial
        best = f"; best value {best_trial.value} (trial {best_trial.number})"
    failed = sum(t.state == optuna.trial.TrialState.FAIL for t in trials)
    print(f"nasgen: study {args.study!r}: {len(trials)} of {args.trials} trials finished ({max(remaining, 0)} run now, "
          f"{failed} failed) by {args.strategy} (seed {args.seed}){best}", file=sys.stderr)
    return 0
