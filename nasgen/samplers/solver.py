"""The paper's z3 methods: All, Limited-M and Limited_Uniform-M (UniWit), and z3 model counting.

The search space becomes a z3 formula F (Calhas et al. 2022, Section 3;
:class:`nasgen.samplers.formula.Formula`) whose sampling set is the
canonical bit-vector. :class:`SolverSampler` owns one z3 solver over F:
enumeration blocks every model found, UniWit adds random XOR rows over the
sampling set in a scope it pops after each cell. The methods ``all``,
``limited`` and ``uniwit`` of :func:`nasgen.samplers.registry.draw` are the
adapters at the end of this module.

References:
    S. Chakraborty, K. S. Meel, M. Y. Vardi. A scalable and nearly uniform
    generator of SAT witnesses. CAV 2013 (UniWit).
    D. Calhas, V. Manquinho, I. Lynce. Automatic generation of neural
    architecture search spaces. 2022, Sections 3 and 4.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

import z3

from nasgen.common.errors import EmptySpaceError, SamplingError, SolverError, SolverTimeout
from nasgen.constraints.language import Where, parse_where_all
from nasgen.samplers.formula import Constraint, Formula, SolverStop, SolverVariables
from nasgen.samplers.registry import Method, SamplingConfig, is_integer, register_method
from nasgen.samplers.z3algebra import check_where_cost
from nasgen.space.definition import Architecture, SearchSpace

__all__ = [
    "METHODS",
    "START_XORS",
    "AllMethod",
    "LimitedMethod",
    "SamplerStatistics",
    "SolverSampler",
    "UniWitMethod",
    "count_solutions",
    "uniwit_pivot",
]

METHODS = ("all", "limited", "uniwit")
START_XORS = ("paper", "count")

# UniWit gives up on one sample after this many failed attempts in a row
# (an empty cell each time); with any non-trivial space this never happens.
_MAX_FAILURES_IN_A_ROW = 200


def uniwit_pivot(sampling_bits: int, pivot_k: float = 2.0) -> int:
    """UniWit's pivot ``floor(2 * |V| ** (1 / k))`` for a sampling set of ``|V|`` bits.

    >>> uniwit_pivot(93)
    19
    """
    return int(2 * sampling_bits ** (1.0 / pivot_k))


@dataclass
class SamplerStatistics:
    """Counters of one sampler: z3 queries, failed UniWit attempts, XORs per successful hashed draw."""

    queries: int = 0
    failures: int = 0
    xors: list = field(default_factory=list)


class SolverSampler:
    """Enumerate or sample a search space's architectures with z3; owns one z3 solver.

    Args:
        space: the search space.
        method: ``"all"`` (every architecture, z3's order), ``"limited"`` (the
            first M in z3's order: the paper's biased baseline) or
            ``"uniwit"`` (the paper's Limited_Uniform-M, near-uniform).
        seed: seeds the Python generator of hash coefficients and picks, and
            z3's ``random_seed``, ``sat.random_seed``, ``smt.random_seed``.
        where: ``--where`` expressions (strings or parsed :class:`Where`),
            all of which must hold.
        constraint: optional callable receiving :class:`SolverVariables` and
            returning a z3 boolean or a list of them.
        prune: restrict domains with :func:`nasgen.space.tables.layer_domains` first.
        timeout: wall-clock seconds for the whole run (None: no limit).
        query_rlimit: z3 resource limit per solver query (None: no limit);
            unlike ``timeout`` it gives the same result on any machine.
        with_replacement: uniwit only: independent draws instead of blocking
            each drawn architecture so that all M are distinct.
        pivot_k: UniWit's k in ``pivot = 2 |V| ** (1 / k)``.
        start_xors: ``"paper"`` starts every draw with no XOR constraint and
            adds one at a time; ``"count"`` starts near
            ``log2(remaining / pivot)`` using the exact count (falls back to
            ``"paper"`` when ``where`` or ``constraint`` make it unknown).

    Raises:
        SolverError: an unknown method or start, or a bad constraint function.
        nasgen.constraints.language.WhereError: an expression that does not fit the space.

    >>> space = SearchSpace((30,), (20,), min_layers=2, max_layers=2)
    >>> with SolverSampler(space, method="all") as sampler:
    ...     archs = list(sampler.solutions())
    >>> len(archs), sampler.stop_reason
    (9, 'complete')
    """

    def __init__(self, space: SearchSpace, method: str = "uniwit", seed: int = 0,
                 where: Iterable[str | Where] = (), constraint: Constraint | None = None,
                 prune: bool = True, timeout: float | None = None, query_rlimit: int | None = None,
                 with_replacement: bool = False, pivot_k: float = 2.0, start_xors: str = "paper") -> None:
        if method not in METHODS:
            raise SolverError(f"unknown method {method!r}: use one of {', '.join(METHODS)}")
        if start_xors not in START_XORS:
            raise SolverError(f"unknown start_xors {start_xors!r}: use one of {', '.join(START_XORS)}")
        if with_replacement and method != "uniwit":
            raise SolverError("with_replacement applies to method 'uniwit' only; 'all' and 'limited' never repeat")
        if not pivot_k > 0:
            raise SolverError(f"pivot_k must be positive, got {pivot_k}")
        if timeout is not None and not timeout > 0:
            raise SolverError(f"timeout must be a positive number of seconds, got {timeout}")
        if query_rlimit is not None and (isinstance(query_rlimit, bool) or int(query_rlimit) < 1):
            raise SolverError(f"query_rlimit must be a positive integer, got {query_rlimit}")
        self.space = space
        self.method = method
        self.seed = int(seed)
        # The deadline covers everything from here: formula building, pruning, domains, queries.
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self.wheres = parse_where_all(where)
        for w in self.wheres:
            w.check(space)
            check_where_cost(w, space)
        self.prune = bool(prune)
        self.timeout = timeout
        self.query_rlimit = None if query_rlimit is None else int(query_rlimit)
        self.with_replacement = bool(with_replacement)
        self.pivot_k = float(pivot_k)
        self.start_xors = start_xors
        self.found = 0
        self.stop_reason: str | None = None
        self.statistics = SamplerStatistics()
        self._rng = random.Random(self.seed)
        self._ctx = z3.Context()
        self._known_count = None
        self._closed = False
        try:
            self._formula = Formula(space, self.prune, self.wheres, constraint, self._ctx, self._deadline)
            self._formula.check_deadline()  # handing a big formula to the solver takes a second of its own
        except SolverStop:
            # Out of time while building: the sampler exists, and its runs stop at once with "timeout".
            self._formula = self._solver = None
            return
        self._solver = z3.SolverFor("QF_BV", ctx=self._ctx)
        # z3 takes a 32-bit unsigned seed; a solver parameter without a module
        # prefix reaches both its SAT and SMT cores (a "sat."/"smt." prefix is
        # rejected here and set_param would change every other z3 user too).
        self._solver.set("random_seed", self.seed % (1 << 32))
        # A compacted model costs more to build than the SAT query itself on
        # these formulas; we only evaluate the sampling set in it.
        self._solver.set("model.compact", False)
        if self.query_rlimit is not None:
            self._solver.set("rlimit", self.query_rlimit)
        self._solver.add(self._formula.assertions)
        if start_xors == "count" and not self.wheres and constraint is None:
            from nasgen.space.tables import count

            self._known_count = count(space)

    # -- resource handling ---------------------------------------------------

    def __enter__(self) -> "SolverSampler":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Release the z3 solver and context."""
        self._closed = True
        self._solver = None
        self._formula = None

    def _built(self) -> Formula:
        if self._formula is None:
            raise SolverTimeout("the sampler ran out of time while building its formula"
                                if not self._closed else "this SolverSampler is closed")
        return self._formula

    @property
    def sampling_bits(self) -> int:
        """|V|, the size of the sampling set (kernel and stride bits plus activations)."""
        return len(self._built().sampling)

    @property
    def pivot(self) -> int:
        """UniWit's pivot for this space."""
        return uniwit_pivot(self.sampling_bits, self.pivot_k)

    @property
    def encoding(self) -> str:
        """``"table"`` (pruned, propositional) or ``"arithmetic"`` (the paper's, with or without domains)."""
        return self._built().encoding

    @property
    def variables(self) -> SolverVariables:
        """The formula's variables (constraints go through ``constraint``).

        With the pruned table encoding and no constraint, ``conv`` and
        ``size`` are left unconstrained (nothing reads them); kernels,
        strides, activations and ``layers`` always hold.
        """
        return self._built().variables

    # -- public iteration ----------------------------------------------------

    def solutions(self, samples: int | None = None) -> Iterator[Architecture]:
        """Yield architectures one at a time, each as soon as z3 finds it.

        Side effects: with ``all``, ``limited`` and ``uniwit`` without
        replacement, every yielded architecture is blocked in the solver for
        good, so a second call continues where the first stopped. On return
        ``stop_reason`` says why the run ended: ``"samples"`` (M reached),
        ``"complete"`` (every architecture was yielded), ``"unsat"`` (the
        space with its constraints has none), ``"timeout"``, ``"budget"`` (a
        query hit ``query_rlimit``), ``"failed"`` (uniwit drew empty cells
        too often in a row), ``"interrupted"`` or ``"stopped"`` (the caller
        closed the generator early).

        Args:
            samples: M, how many to yield; None (``all`` only) for every one.

        Raises:
            SolverError: ``samples`` missing for limited/uniwit, or negative.
            KeyboardInterrupt: re-raised after recording ``"interrupted"``;
                everything yielded before it stays valid.
        """
        if self._closed:
            raise SolverError("this SolverSampler is closed; create a new one")
        if samples is None and self.method != "all":
            raise SolverError(f"method {self.method!r} needs a number of samples (M); only 'all' runs without one")
        if samples is not None and (isinstance(samples, bool) or int(samples) < 0):
            raise SolverError(f"samples must be a non-negative integer, got {samples}")
        return self._run(None if samples is None else int(samples))

    def _run(self, samples: int | None) -> Iterator[Architecture]:
        self.stop_reason = None
        if self._formula is None:
            self.stop_reason = "timeout"  # the deadline passed while the formula was being built
            return
        produced = 0
        try:
            if self.method == "uniwit":
                draws = self._uniwit()
            else:
                draws = self._enumerate()
            while samples is None or produced < samples:
                vector = next(draws, None)
                if vector is None:
                    return
                produced += 1
                self.found += 1
                yield self._formula.architecture(vector)
            self.stop_reason = "samples"
        except SolverStop as stop:
            self.stop_reason = stop.reason
            if stop.reason == "interrupted":
                raise KeyboardInterrupt from None
        except KeyboardInterrupt:
            self.stop_reason = "interrupted"
            raise
        finally:
            if self.stop_reason is None:
                self.stop_reason = "stopped"  # the caller closed the generator early

    # -- queries ----------------------------------------------------------------

    def _check(self) -> bool:
        """One z3 query: True for sat, False for unsat; raises SolverStop otherwise."""
        if self._deadline is not None:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise SolverStop("timeout")
            self._solver.set("timeout", max(1, int(left * 1000)))
        self.statistics.queries += 1
        # z3 reports an exhausted rlimit inside a push scope as "canceled",
        # like a Ctrl-C; the resource counter tells the two apart.
        used_before = self._rlimit_count() if self.query_rlimit is not None else 0
        result = self._solver.check()
        if result == z3.sat:
            return True
        if result == z3.unsat:
            return False
        reason = self._solver.reason_unknown()
        if self._deadline is not None and time.monotonic() >= self._deadline or "timeout" in reason:
            raise SolverStop("timeout")
        if "resource" in reason or "rlimit" in reason:
            raise SolverStop("budget")
        if self.query_rlimit is not None and self._rlimit_count() - used_before >= self.query_rlimit:
            raise SolverStop("budget")
        if "cancel" in reason or "interrupt" in reason:
            raise SolverStop("interrupted")
        raise SolverStop("unknown")

    def _rlimit_count(self) -> int:
        try:
            return int(self._solver.statistics().get_key_value("rlimit count"))
        except (z3.Z3Exception, KeyError):
            return 0

    def _next_model(self) -> int | None:
        """The next model's canonical bit-vector, blocked before it is returned; None when unsat."""
        if not self._check():
            return None
        vector = self._formula.decode(self._solver.model())
        self._solver.add(self._formula.blocking_clause(vector))
        return vector

    def _enumerate(self) -> Iterator[int]:
        """The paper's All / Limited-M: z3's own order, each model blocked."""
        while True:
            vector = self._next_model()
            if vector is None:
                self.stop_reason = "complete" if self.found else "unsat"
                return
            yield vector

    def _bounded(self, limit: int, hash_rows: Sequence[tuple[int, int]]) -> list[int]:
        """UniWit's BoundedSAT: up to ``limit`` models of F and the XOR rows, in a scope popped after."""
        self._solver.push()
        try:
            for mask, parity in hash_rows:
                self._solver.add(self._formula.xor_constraint(mask, parity))
            cell: list[int] = []
            while len(cell) < limit:
                vector = self._next_model()
                if vector is None:
                    break
                cell.append(vector)
            return cell
        finally:
            self._solver.pop()

    def _uniwit(self) -> Iterator[int]:
        """Limited_Uniform-M: UniWit draws (Chakraborty, Meel and Vardi 2013, Algorithm 1).

        Each draw: if F has at most ``pivot`` models, pick one uniformly; else
        for m = m0, m0 + 1, ... conjoin m random XOR rows (H_xor: each
        sampling bit in a row with probability 1/2, random parity) and count
        the cell up to pivot + 1; the first m whose cell holds 1..pivot models
        gives a uniform pick from the cell. An empty cell is a failure and the
        draw starts again with fresh hashes.
        """
        pivot, nbits = self.pivot, self.sampling_bits
        blocked = 0
        # A lower bound on |F| that stays valid while draws are blocked; saves
        # re-counting the unhashed formula before every draw.
        lower = 0
        while True:
            if lower - blocked <= pivot:
                whole = self._bounded(4 * (pivot + 1), ())
                blocked, lower = 0, len(whole)
                if not whole:
                    self.stop_reason = "complete" if self.found else "unsat"
                    return
                if len(whole) <= pivot:
                    vector = self._rng.choice(whole)
                    self.statistics.xors.append(0)
                    if not self.with_replacement:
                        self._solver.add(self._formula.blocking_clause(vector))
                        blocked += 1
                        lower = 0  # recount: the whole set is small now
                    yield vector
                    continue
            vector = self._hashed_draw(pivot, nbits, lower - blocked)
            if vector is None:
                self.stop_reason = "failed"
                return
            if not self.with_replacement:
                self._solver.add(self._formula.blocking_clause(vector))
                blocked += 1
            yield vector

    def _first_xors(self, pivot: int, remaining_lower: int) -> int:
        if self._known_count is None:
            return 1
        remaining = self._known_count - (0 if self.with_replacement else self.found)
        remaining = max(remaining, remaining_lower, 1)
        # One XOR below the expected fit, so the search still climbs to it.
        return max(1, math.ceil(math.log2(max(remaining / pivot, 1.0))) - 1)

    def _hashed_draw(self, pivot: int, nbits: int, remaining_lower: int) -> int | None:
        for _ in range(_MAX_FAILURES_IN_A_ROW):
            m = self._first_xors(pivot, remaining_lower)
            while m <= nbits:
                rows = [(self._rng.getrandbits(nbits), self._rng.getrandbits(1)) for _ in range(m)]
                cell = self._bounded(pivot + 1, rows)
                if 1 <= len(cell) <= pivot:
                    self.statistics.xors.append(m)
                    return self._rng.choice(cell)
                if not cell:
                    break
                m += 1
            self.statistics.failures += 1
        return None


def count_solutions(space: SearchSpace, where: Iterable[str | Where] = (), constraint: Constraint | None = None,
                    timeout: float | None = None, prune: bool = True, query_rlimit: int | None = None) -> int:
    """Count a space's architectures by z3 model enumeration (with optional user constraints).

    Args:
        space: the search space.
        where: ``--where`` expressions, all of which must hold.
        constraint: optional z3 constraint callable (see :class:`SolverSampler`).
        timeout: wall-clock seconds (None: no limit).
        prune: restrict domains with the dynamic program first.
        query_rlimit: z3 resource limit per query.

    Returns:
        The number of architectures satisfying every constraint.

    Raises:
        SolverTimeout: the time or budget ran out; the message gives the
            number counted so far (a lower bound).

    >>> count_solutions(SearchSpace((30,), (20,), min_layers=2, max_layers=2), where=["k[0][0] > 5"])
    5
    """
    with SolverSampler(space, method="all", where=where, constraint=constraint, prune=prune,
                       timeout=timeout, query_rlimit=query_rlimit) as sampler:
        total = sum(1 for _ in sampler.solutions())
        if sampler.stop_reason not in ("complete", "unsat"):
            raise SolverTimeout(
                f"z3 count stopped ({sampler.stop_reason}) after {total} architectures: "
                "that is only a lower bound; give a longer --timeout or a larger budget"
            )
        return total


# -- the sampling-method interface ------------------------------------------------------------


class _SolverMethod(Method):
    """The paper's z3 modes through :class:`nasgen.samplers.solver.SolverSampler`, one architecture per chunk."""

    option_names = ("prune", "query_rlimit")
    supports_where = True
    supports_replacement = False

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        if "prune" in options and not isinstance(options["prune"], bool):
            raise SamplingError(f"option prune must be true or false, got {options['prune']!r:.60}")
        rlimit = options.get("query_rlimit")
        if rlimit is not None and not (is_integer(rlimit) and rlimit >= 1):
            raise SamplingError(f"option query_rlimit must be a positive integer, got {str(rlimit)[:60]!r}")
        pivot_k = options.get("pivot_k", 2.0)
        if isinstance(pivot_k, bool) or not isinstance(pivot_k, (int, float)) or not (
                math.isfinite(pivot_k) and 0.1 <= pivot_k <= 1e6):
            raise SamplingError(f"option pivot_k must be a number in 0.1..1e6, got {str(pivot_k)[:60]!r}")
        start = options.get("start_xors", "paper")
        if start not in ("paper", "count"):
            raise SamplingError(f"option start_xors must be 'paper' or 'count', got {start!r:.60}")
        return options

    def __init__(self, space: SearchSpace, config: SamplingConfig) -> None:
        super().__init__(space, config)
        options = dict(config.options)
        self._sampler = SolverSampler(
            space, method=config.method, seed=config.seed % 2**63, where=list(config.where),
            prune=options.pop("prune", True), timeout=config.timeout, with_replacement=config.replace,
            **options)

    def draw(self):
        from nasgen.space.encoding import to_arrays

        try:
            for arch in self._sampler.solutions(self.config.samples):
                yield to_arrays(self.space, [arch])
        finally:
            self.stop_reason = self._sampler.stop_reason
            stats = self._sampler.statistics
            self.statistics = {"queries": stats.queries, "failures": stats.failures, "xors": list(stats.xors)}
        if self.stop_reason == "unsat":
            # the same error, and so the same exit code, as the exact method's on an empty space
            constrained = " with the --where constraints" if self.config.where else ""
            raise EmptySpaceError(f"the space {self.space.describe()}{constrained} is empty: no architecture "
                                  "satisfies it; widen the layer bounds, ranges, relation or constraints")

    def close(self) -> None:
        self._sampler.close()


@register_method("all")
class AllMethod(_SolverMethod):
    help = "every architecture in z3's order (the paper's All)"
    needs_samples = False


@register_method("limited")
class LimitedMethod(_SolverMethod):
    help = "the first M architectures in z3's order (the paper's biased Limited-M)"


@register_method("uniwit")
class UniWitMethod(_SolverMethod):
    help = "near-uniform by z3 and XOR hashing (the paper's Limited_Uniform-M, UniWit)"
    option_names = ("prune", "query_rlimit", "pivot_k", "start_xors")
    supports_replacement = True
