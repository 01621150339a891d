"""``nasgen.count``: the exact number of architectures of a space, optionally under ``--where`` constraints.

It lives in the constraints tier because counting under constraints needs
:class:`nasgen.constraints.constrained.ConstrainedSpace`; the space tier's own
:func:`nasgen.space.tables.count` counts the unconstrained space.
"""

from __future__ import annotations

from typing import Any, Sequence

from nasgen.common.errors import NasgenError
from nasgen.space.definition import SearchSpace
from nasgen.space.tables import SpaceTables

__all__ = ["count"]


def count(space: SearchSpace, where: str | Sequence[str] = (), model: Any = None) -> int:
    """Exact number of architectures in ``space`` (an arbitrary-precision int), optionally under ``--where``.

    Args:
        space: the search space.
        where: constraint expressions (a string or a sequence), all of which must hold.
        model: the chain model's options (a ModelSpec) when ``where`` reads ``params`` or ``flops``.

    Returns:
        The exact count.

    Raises:
        NasgenError: a bad expression, or constraints whose count could only be
            estimated (then use ``nasgen.constraints.constrained.ConstrainedSpace(space,
            where).count()``, which returns the estimate with its interval).

    >>> count(SearchSpace((30, 30), (20, 20), min_layers=2, max_layers=2))
    81
    >>> count(SearchSpace((30, 30), (20, 20), min_layers=2, max_layers=2), where="k[0][0] <= 3")
    18
    """
    if not where:
        return SpaceTables(space).count
    # imported here so that ``import nasgen`` (and ``nasgen count`` without --where) skips the --where language
    from nasgen.constraints.constrained import ConstrainedSpace

    result = ConstrainedSpace(space, (where,) if isinstance(where, str) else where, model=model).count()
    if not result.exact:
        raise NasgenError(
            f"the count under these constraints can only be estimated (about {result.count}, 95% interval "
            f"{list(result.interval)}): use nasgen.constraints.constrained.ConstrainedSpace(space, where).count() "
            "for the estimate"
        )
    return result.count
