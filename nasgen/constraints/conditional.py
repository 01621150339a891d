"""Uniform conditional draws under ``--where``: absorbed atoms restrict the tables, the rest reject.

:class:`nasgen.space.conditional.ConditionalSpace` draws exactly uniformly
from exact tables. A constrained space (:class:`ConstrainedSpace`) gives it
the tables restricted by the absorbed atoms, and its ``accept`` for the atoms
applied by rejection: rejecting independent uniform draws of the restricted
conditional set leaves independent uniform draws of the constrained one.
"""

from __future__ import annotations

from typing import Any, Iterable

from nasgen.constraints.constrained import ConstrainedSpace
from nasgen.space.conditional import DEFAULT_MAX_DRAWS, ConditionalSpace
from nasgen.space.definition import SearchSpace
from nasgen.space.tables import SpaceTables

__all__ = ["conditional_space"]


def conditional_space(space: SearchSpace, where: str | Iterable[str] = (), model: Any = None,
                      max_draws: int = DEFAULT_MAX_DRAWS) -> ConditionalSpace:
    """The :class:`ConditionalSpace` of ``space`` under the ``where`` constraints.

    Args:
        space: the search space.
        where: constraint expressions (a string or a sequence), all of which must hold.
        model: the chain model's options when ``where`` reads ``params`` or ``flops``.
        max_draws: the budget of candidate draws per call for atoms applied by rejection.

    Returns:
        A :class:`ConditionalSpace` over the restricted tables, with ``accept`` set when
        some atom is applied by rejection.

    Raises:
        WhereError: an expression that does not fit the space.
        EmptySpaceError: the constrained space is empty (as far as the absorbed atoms tell).

    >>> conditional = conditional_space(SearchSpace((30,), (20,), 2, 2), "k[0][0] <= 3")
    >>> sorted({a.kernel[0][0] for a in conditional.sample(conditional.sample(
    ...     conditional.tables.architecture_at(0), 0, 2)[0], 0, 2, samples=50)})
    [2, 3]
    """
    wheres = (where,) if isinstance(where, str) else tuple(where)
    if not wheres:
        conditional = ConditionalSpace(SpaceTables(space), max_draws=max_draws)
    else:
        constrained = ConstrainedSpace(space, wheres, model=model)
        accept = None if constrained.all_absorbed else constrained.accept
        conditional = ConditionalSpace(constrained.tables, accept=accept, max_draws=max_draws)
    conditional.require_nonempty()
    return conditional
