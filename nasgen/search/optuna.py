"""Optuna integration: an exactly uniform (or evolving) sampler of architectures, and ``suggest_architecture``.

An architecture is recorded in a trial as ordinary parameters with one fixed
set of names per space: ``layers``, and ``kernel_{l}_{d}`` and ``stride_{l}_{d}``
for each layer ``l`` it has and each dimension ``d`` (``study.trials_dataframe()``
shows them as columns; :func:`architecture_from_trial` rebuilds the
architecture from them).

* Under :class:`NasgenSampler` the parameters are relative parameters with
  fixed integer distributions (:func:`architecture_distributions`): the sampler
  decides the whole architecture at once, exactly uniformly from the
  constrained space (``strategy="uniform"``) or by regularized evolution
  (``strategy="evolution"``, children are uniform conditional draws around a
  parent). Other parameters of the trial go to an independent sampler.
* Under any other sampler (random, TPE, ...) :func:`suggest_architecture`
  asks the sampler for one float in [0, 1) per decision, named ``nasgen_u_layers``
  and ``nasgen_u_{l}_{c}`` (layer ``l`` of chain ``c``), fixed per space, and
  turns each into a choice by the inverse of the exact conditional
  distribution (the number of layers weighted by its count, then each layer's
  (kernel, stride) weighted by the number of completions it leaves). So every
  architecture is valid; ``RandomSampler`` then induces the exactly uniform
  distribution (up to the 2^-53 resolution of each float); TPE learns over
  these quantiles, which are ordered like the choices (by size after the
  layer, then stride, then kernel). The decided architecture is recorded under
  the names above with single-valued distributions (Optuna stores them
  without consulting the sampler). Constraints applied by rejection that the
  decoded architecture fails are met by a uniform draw seeded by the floats.

References:
    L. Li, A. Talwalkar. Random Search and Reproducibility for Neural Architecture Search. UAI 2019.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, IntDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.trial import FrozenTrial, TrialState

from nasgen.common.errors import ArchitectureError, NasgenError
from nasgen.constraints.conditional import conditional_space
from nasgen.search.evolution import EvolutionConfig, mutate, select_parent
from nasgen.space import backend
from nasgen.space.conditional import ConditionalSpace
from nasgen.space.definition import Architecture, SearchSpace

__all__ = [
    "NasgenSampler",
    "STRATEGIES",
    "architecture_distributions",
    "architecture_from_params",
    "architecture_from_trial",
    "suggest_architecture",
]

#: The strategies of :class:`NasgenSampler`.
STRATEGIES = ("uniform", "evolution")
#: The prefix of the per-decision floats suggest_architecture asks other samplers for.
_DRIVER_PREFIX = "nasgen_u_"


def _param_names(space: SearchSpace, layers: int) -> list[str]:
    names = ["layers"]
    for l in range(layers):
        for d in range(space.dims):
            names += [f"kernel_{l}_{d}", f"stride_{l}_{d}"]
    return names


def architecture_distributions(conditional: ConditionalSpace) -> dict[str, IntDistribution]:
    """The fixed distributions of an architecture's parameters in a space (its pruned layer domains).

    Returns:
        ``{"layers": IntDistribution(n, N), "kernel_{l}_{d}": ..., "stride_{l}_{d}": ...}``
        covering every value an architecture of the space can take.

    >>> from nasgen import SearchSpace, SpaceTables
    >>> sorted(architecture_distributions(ConditionalSpace(SpaceTables(SearchSpace((30,), (20,), 1, 1)))).items())
    [('kernel_0_0', IntDistribution(high=11, log=False, low=11, step=1)), ('layers', IntDistribution(high=1, log=False, low=1, step=1)), ('stride_0_0', IntDistribution(high=1, log=False, low=1, step=1))]
    """
    space = conditional.space
    out: dict[str, IntDistribution] = {"layers": IntDistribution(space.min_layers, space.max_layers)}
    for l, per_dim in enumerate(conditional.tables.layer_domains()):
        for d, domain in enumerate(per_dim):
            if not domain.pairs:
                continue
            kernels = [k for k, _ in domain.pairs]
            strides = [s for _, s in domain.pairs]
            out[f"kernel_{l}_{d}"] = IntDistribution(min(kernels), max(kernels))
            out[f"stride_{l}_{d}"] = IntDistribution(min(strides), max(strides))
    return out


def architecture_params(arch: Architecture) -> dict[str, int]:
    """An architecture as trial parameters (``layers``, ``kernel_{l}_{d}``, ``stride_{l}_{d}``)."""
    params = {"layers": arch.layers}
    for l in range(arch.layers):
        for d in range(arch.dims):
            params[f"kernel_{l}_{d}"] = arch.kernel[l][d]
            params[f"stride_{l}_{d}"] = arch.stride[l][d]
    return params


def architecture_from_params(params: dict[str, Any]) -> Architecture:
    """Rebuild an architecture from trial parameters.

    Raises:
        ArchitectureError: a missing or non-integer parameter.

    >>> architecture_from_params({"layers": 1, "kernel_0_0": 11, "stride_0_0": 1}).to_json()
    '{"layers": 1, "kernel": [[11]], "stride": [[1]]}'
    """
    if "layers" not in params or "kernel_0_0" not in params and params.get("layers"):
        raise ArchitectureError("the trial holds no architecture: it has no 'layers' and 'kernel_0_0' parameters "
                                "(was suggest_architecture called?)")
    layers = int(params["layers"])
    dims = sum(1 for name in params if name.startswith("kernel_0_"))
    try:
        kernel = [[int(params[f"kernel_{l}_{d}"]) for d in range(dims)] for l in range(layers)]
        stride = [[int(params[f"stride_{l}_{d}"]) for d in range(dims)] for l in range(layers)]
    except KeyError as missing:
        raise ArchitectureError(f"the trial's architecture lacks the parameter {missing.args[0]}") from None
    return Architecture(kernel=kernel, stride=stride)


def architecture_from_trial(trial: FrozenTrial | optuna.trial.Trial) -> Architecture:
    """The architecture :func:`suggest_architecture` recorded in a trial (frozen or running).

    Raises:
        ArchitectureError: the trial holds no architecture.
    """
    return architecture_from_params(trial.params)


class NasgenSampler(BaseSampler):
    """An Optuna sampler that decides a trial's architecture from nasgen's exact tables.

    ``strategy="uniform"``: every trial's architecture is an exactly uniform draw
    from the (constrained) space, a function of ``seed`` and the trial number
    alone (so it is the same under ``n_jobs`` threads, several processes sharing
    a storage, or a resumed study). ``strategy="evolution"``: regularized
    evolution; the first ``population_size`` trials are uniform, then each child
    is a uniform conditional draw around the best of a tournament among the
    ``population_size`` most recently finished trials.

    Parameters that are not part of the architecture go to ``independent_sampler``
    (default ``RandomSampler(seed)``).

    Args:
        space: the search space.
        where: ``--where`` constraints (a string or a sequence).
        strategy: ``"uniform"`` or ``"evolution"``.
        seed: a non-negative int, or None for fresh entropy (then kept in ``self.seed``).
        independent_sampler: the Optuna sampler of the other parameters.
        model: the chain model's options when ``where`` reads ``params`` or ``flops``.
        evolution: the :class:`~nasgen.search.evolution.EvolutionConfig`.

    Raises:
        NasgenError: a bad strategy or seed; EmptySpaceError: an empty space or ``where``.

    >>> from nasgen import SearchSpace
    >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
    >>> space = SearchSpace((30,), (20,), 1, 3)
    >>> study = optuna.create_study(sampler=NasgenSampler(space, seed=0))
    >>> study.optimize(lambda trial: suggest_architecture(trial, space).layers, n_trials=3)
    >>> archs = [architecture_from_trial(t) for t in study.trials]
    >>> len(archs), all(arch.shapes(space)[-1] == (20,) for arch in archs)   # every trial a member of the space
    (3, True)
    """

    def __init__(self, space: SearchSpace, where: str | Iterable[str] = (), strategy: str = "uniform",
                 seed: int | None = None, independent_sampler: BaseSampler | None = None, model: Any = None,
                 evolution: EvolutionConfig | None = None) -> None:
        if strategy not in STRATEGIES:
            raise NasgenError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1, np.uint32)[0])
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise NasgenError(f"seed must be a non-negative integer or None, got {seed!r}")
        self.space = space
        self.where = (where,) if isinstance(where, str) else tuple(where)
        self.strategy = strategy
        self.seed = int(seed)
        self.evolution = evolution or EvolutionConfig()
        self.conditional = conditional_space(space, self.where, model=model, max_draws=10**5)
        self.distributions = architecture_distributions(self.conditional)
        self.independent_sampler = independent_sampler or RandomSampler(seed=self.seed)

    def __str__(self) -> str:
        return f"NasgenSampler({self.strategy})"

    # -- the architecture of a trial --------------------------------------------

    def generator(self, number: int) -> np.random.Generator:
        """The generator of trial ``number``: a function of (seed, number) only."""
        return np.random.default_rng(np.random.SeedSequence([self.seed, int(number)]))

    def uniform_architecture(self, number: int) -> Architecture:
        """The exactly uniform architecture the uniform strategy gives trial ``number``."""
        layers, kernel, stride = self.conditional.sample_space_arrays(1, seed=self.generator(number))
        L = int(layers[0])
        return Architecture(kernel=kernel[0, :L].tolist(), stride=stride[0, :L].tolist())

    def _evolved_architecture(self, study: optuna.Study, trial: FrozenTrial) -> Architecture:
        if len(study.directions) > 1:
            raise NasgenError("the evolution strategy optimises one objective; use strategy='uniform' for several")
        rng = self.generator(trial.number)
        finished = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                    if "layers" in t.params and t.value is not None and math.isfinite(t.value)]
        if len(finished) < self.evolution.population_size:
            return self.uniform_architecture(trial.number)
        # ageing: the population is the most recently finished trials, whatever their value
        finished.sort(key=lambda t: (t.datetime_complete, t.number))
        population = finished[-self.evolution.population_size:]
        maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        parent = population[select_parent([t.value for t in population], self.evolution, rng, maximize)]
        # every architecture the study has tried or is trying: a child among them would spend a trial for nothing
        seen = {architecture_from_trial(t) for t in study.get_trials(deepcopy=False)
                if t.number != trial.number and "layers" in t.params}
        return mutate(self.conditional, architecture_from_trial(parent), self.evolution, rng, avoid=seen)

    # -- the BaseSampler interface ---------------------------------------------------

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return dict(self.distributions)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space:
            return {}
        if self.strategy == "uniform":
            arch = self.uniform_architecture(trial.number)
        else:
            arch = self._evolved_architecture(study, trial)
        return architecture_params(arch)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self.independent_sampler.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.independent_sampler.before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self.independent_sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        # Optuna reseeds before n_jobs threads start: the architectures stay a function of (seed, trial number)
        self.independent_sampler.reseed_rng()


def suggest_architecture(trial: optuna.trial.Trial, space: SearchSpace, where: str | Iterable[str] = (),
                         model: Any = None) -> Architecture:
    """Suggest an architecture of ``space`` (under ``where``) in an Optuna objective, and record it.

    Under :class:`NasgenSampler` the sampler's architecture; under any other
    sampler, the architecture its per-decision floats select (see the module
    docstring for the distribution each sampler induces). Either way it is an
    architecture of the space, recorded as the trial's ``layers``,
    ``kernel_{l}_{d}`` and ``stride_{l}_{d}`` parameters.

    Args:
        trial: the running trial.
        space: the search space.
        where: ``--where`` constraints; under NasgenSampler they must be the sampler's.
        model: the chain model's options when ``where`` reads ``params`` or ``flops``.

    Returns:
        The :class:`~nasgen.space.definition.Architecture`.

    Raises:
        NasgenError: ``space`` or ``where`` differ from the NasgenSampler's; EmptySpaceError: an empty space.

    >>> from nasgen import SearchSpace
    >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
    >>> space = SearchSpace((30,), (20,), 1, 3)
    >>> study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    >>> study.optimize(lambda trial: suggest_architecture(trial, space).layers, n_trials=2)
    >>> sorted(k for k in study.trials[0].params if not k.startswith("nasgen_u_"))
    ['kernel_0_0', 'kernel_1_0', 'kernel_2_0', 'layers', 'stride_0_0', 'stride_1_0', 'stride_2_0']
    """
    where = (where,) if isinstance(where, str) else tuple(where)
    sampler = trial.study.sampler
    if isinstance(sampler, NasgenSampler):
        if sampler.space != space or sampler.where != where:
            raise NasgenError(f"the study's NasgenSampler draws from {sampler.space.describe()} where "
                              f"{list(sampler.where)}; suggest_architecture asked for {space.describe()} where "
                              f"{list(where)}: give both the same space and constraints")
        layers = trial.suggest_int("layers", sampler.distributions["layers"].low, sampler.distributions["layers"].high)
        for name in _param_names(space, layers)[1:]:
            dist = sampler.distributions[name]
            trial.suggest_int(name, dist.low, dist.high)
        return architecture_from_trial(trial)
    conditional = _conditional_for(space, where, model)
    arch = _decode(conditional, trial)
    for name, value in architecture_params(arch).items():
        trial.suggest_int(name, value, value)  # single-valued: recorded without consulting the sampler
    return arch


_CONDITIONALS: dict[tuple, ConditionalSpace] = {}


def _conditional_for(space: SearchSpace, where: tuple, model: Any) -> ConditionalSpace:
    """One ConditionalSpace per (space, where) for the life of the process: the tables are built once."""
    key = (space, where, repr(model))
    conditional = _CONDITIONALS.get(key)
    if conditional is None:
        conditional = conditional_space(space, where, model=model, max_draws=10**5)
        if len(_CONDITIONALS) > 16:
            _CONDITIONALS.clear()
        _CONDITIONALS[key] = conditional
    return conditional


def _quantile(trial: optuna.trial.Trial, name: str) -> float:
    return min(trial.suggest_float(_DRIVER_PREFIX + name, 0.0, 1.0), math.nextafter(1.0, 0.0))


def _pick(weights: list[int], u: float) -> int:
    """The index whose cumulative weight interval holds u * total (exact: u is a dyadic rational)."""
    total = sum(weights)
    numerator, denominator = u.as_integer_ratio()
    target = numerator * total // denominator
    acc = 0
    for i, w in enumerate(weights):
        acc += w
        if target < acc:
            return i
    return len(weights) - 1


def _decode(conditional: ConditionalSpace, trial: optuna.trial.Trial) -> Architecture:
    """The architecture the trial's per-decision floats select (inverse of the exact conditional distribution)."""
    t, space = conditional.tables, conditional.space
    conditional.require_nonempty()
    values = [L for L, c in t.by_layers.items() if c]
    L = values[_pick([t.by_layers[v] for v in values], _quantile(trial, "layers"))]
    graph, g = t.graph, t.g
    kernel = [[0] * space.dims for _ in range(L)]
    stride = [[0] * space.dims for _ in range(L)]
    for c, (start, kd, dim0) in enumerate(zip(t.components.start.tolist(), t.components.kd.tolist(),
                                              t.components.dim0.tolist())):
        state = start
        for l in range(L):
            remaining = L - l
            lo, hi = int(graph.edge_ptr[state]), int(graph.edge_ptr[state + 1])
            after = [_int(g[remaining - 1, int(graph.edge_dst[e])]) for e in range(lo, hi)]
            weights = [int(graph.edge_mult[e]) * a for e, a in zip(range(lo, hi), after)]
            u = _quantile(trial, f"{l}_{c}")
            i = _pick(weights, u)
            edge = lo + i
            before = sum(weights[:i])
            numerator, denominator = u.as_integer_ratio()
            target = numerator * sum(weights) // denominator
            j = min((target - before) // after[i], int(graph.edge_mult[edge]) - 1)
            k, s = _edge_pair(t, state, edge, j)
            for d in range(dim0, dim0 + kd):
                kernel[l][d], stride[l][d] = k, s
            state = int(graph.edge_dst[edge])
    arch = Architecture(kernel=kernel, stride=stride)
    if conditional.accept is not None and not bool(conditional.accept(*_arrays(space, arch))[0]):
        # a constraint applied by rejection fails: a uniform member, seeded by the floats (so still reproducible)
        seed = [int(v * 2**53) for k, v in sorted(trial.params.items()) if k.startswith(_DRIVER_PREFIX)]
        layers, ks, ss = conditional.sample_space_arrays(1, seed=np.random.default_rng(seed))
        arch = Architecture(kernel=ks[0, :layers[0]].tolist(), stride=ss[0, :layers[0]].tolist())
    return arch


def _int(limbs) -> int:
    return sum(int(v) << (64 * i) for i, v in enumerate(limbs))


def _edge_pair(tables, state: int, edge: int, j: int) -> tuple[int, int]:
    graph = tables.graph
    first = int(graph.edge_pairs[edge]) if len(graph.edge_pairs) else -1
    if first >= 0:
        return int(graph.pair_kernel[first + j]), int(graph.pair_stride[first + j])
    return backend.pair_at(graph.sizes[state], graph.edge_conv[edge], tables.rules, j)


def _arrays(space: SearchSpace, arch: Architecture):
    N, K = space.max_layers, space.dims
    kernel = np.zeros((1, N, K), dtype=np.int64)
    stride = np.zeros((1, N, K), dtype=np.int64)
    kernel[0, :arch.layers] = arch.kernel
    stride[0, :arch.layers] = arch.stride
    return np.array([arch.layers], dtype=np.int64), kernel, stride
