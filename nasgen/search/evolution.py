"""Regularized evolution (Real et al. 2019) whose mutations are uniform conditional draws.

A mutation picks a window of layer positions of the parent and draws the
child uniformly among the architectures of the space (and its ``--where``)
that agree with the parent outside the window
(:class:`nasgen.space.conditional.ConditionalSpace`), so every child is a
valid architecture. A window reaching the end lets the depth change.

References:
    E. Real, A. Aggarwal, Y. Huang, Q. V. Le. Regularized Evolution for Image
    Classifier Architecture Search. AAAI 2019.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Sequence

import numpy as np

from nasgen.common.errors import NasgenError, RejectionBudgetError
from nasgen.space.conditional import ConditionalSpace
from nasgen.space.definition import Architecture

__all__ = ["EvolutionConfig", "mutate", "select_parent"]


@dataclass(frozen=True)
class EvolutionConfig:
    """The settings of regularized evolution.

    Attributes:
        population_size: P, how many of the most recent finished trials form the
            population (older ones age out); the first P trials are uniform draws.
        tournament_size: S, how many population members a tournament samples; the best is the parent.
        max_window: the widest window of positions a mutation redraws.
        one_dimension: the probability that a mutation redraws the window in one
            dimension only (one chain; the depth and the other dimensions stay),
            where the space has more than one chain: a smaller step.
    """

    # defaults from the sweep in bench/results/search.md (regularized evolution against random search)
    population_size: int = 10
    tournament_size: int = 2
    max_window: int = 3
    one_dimension: float = 0.0

    def __post_init__(self) -> None:
        for name in ("population_size", "tournament_size", "max_window"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise NasgenError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.one_dimension, bool) or not isinstance(self.one_dimension, (int, float, np.floating)) \
                or not 0.0 <= self.one_dimension <= 1.0:
            raise NasgenError(f"one_dimension must be a probability in [0, 1], got {self.one_dimension!r}")
        if self.tournament_size > self.population_size:
            raise NasgenError(f"tournament_size ({self.tournament_size}) must be at most population_size "
                              f"({self.population_size})")


def select_parent(values: Sequence[float], config: EvolutionConfig, rng: np.random.Generator,
                  maximize: bool = False) -> int:
    """Tournament selection: the index of the best of ``tournament_size`` members sampled without replacement.

    Args:
        values: the objective value of each population member (oldest first).
        config: the evolution settings.
        rng: the generator.
        maximize: whether larger values are better.

    >>> select_parent([3.0, 1.0, 2.0], EvolutionConfig(3, 3), np.random.default_rng(0))
    1
    """
    picks = rng.choice(len(values), size=min(config.tournament_size, len(values)), replace=False)
    key = (lambda i: values[i]) if maximize else (lambda i: -values[i])
    return int(max(picks.tolist(), key=key))


def mutate(conditional: ConditionalSpace, parent: Architecture, config: EvolutionConfig, rng: np.random.Generator,
           tries: int = 8, avoid: Collection[Architecture] = ()) -> Architecture:
    """A child of ``parent``: a uniform conditional draw over a random window, new if it can be.

    The window starts at a uniform position ``0..L`` (``L`` only when the space
    allows more layers: the child grows) and is 1..``max_window`` wide; a window
    reaching the end first picks the child's number of layers uniformly among
    those the window allows. A draw
    equal to the parent is redrawn with a fresh window, up to ``tries`` times,
    so the child is uniform among the architectures of its window that differ
    from the parent. A draw in ``avoid`` (the architectures a search has
    already evaluated) is redrawn the same way: re-evaluating one spends a
    trial and learns nothing.

    Raises:
        ArchitectureError: ``parent`` is not in the space.

    >>> from nasgen import SearchSpace, SpaceTables, Architecture
    >>> conditional = ConditionalSpace(SpaceTables(SearchSpace((30,), (20,), 1, 3)))
    >>> parent = Architecture(kernel=((5,), (7,)), stride=((1,), (1,)))
    >>> child = mutate(conditional, parent, EvolutionConfig(), np.random.default_rng(0))
    >>> child != parent and conditional.count(child, 0, 3) > 0
    True
    """
    N, L = conditional.space.max_layers, parent.layers
    chains = conditional.chains
    child = parent
    for _ in range(tries):
        width = int(rng.integers(1, config.max_window + 1))
        if len(chains) > 1 and config.one_dimension > 0 and rng.random() < config.one_dimension:
            # one chain's layers start..start+width-1 redrawn; the depth and the other dimensions stay
            dims = chains[int(rng.integers(0, len(chains)))]
            start = int(rng.integers(0, L))
            try:
                child = conditional.sample(parent, start, min(L, start + width), samples=1, seed=rng, dims=dims)[0]
            except RejectionBudgetError:
                continue
            if child != parent and child not in avoid:
                return child
            continue
        start = int(rng.integers(0, L + 1 if L < N else L))
        stop = min(N, start + width)
        try:
            # a window reaching the end picks the child's depth uniformly among those it allows, then a uniform
            # member of that depth: uniform over all members would almost never leave the space's commonest depth
            depths = conditional.feasible_layers(parent, start, stop)
            depth = int(depths[int(rng.integers(0, len(depths)))])
            child = conditional.sample(parent, start, stop, samples=1, seed=rng, layers=depth)[0]
        except RejectionBudgetError:
            continue  # the constraints leave (almost) nothing in this window: another window
        if child != parent and child not in avoid:
            return child
    return child
