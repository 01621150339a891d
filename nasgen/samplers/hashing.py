"""Hashing samplers and counters on the space's CNF: UniGen3, CMSGen and ApproxMC.

Each backend runs in a child process, so that a wall-clock ``timeout`` holds
(neither binding takes one) and so that one pyunigen ``Sampler`` or
pyapproxmc ``Counter`` object serves exactly one call, as the bindings
require. The child encodes the CNF itself (:func:`nasgen.samplers.cnf.encode_space`)
and sends back the sampling-set values of each model as bits; the parent
decodes them to ``(layers, kernel, stride)`` arrays in canonical order.

* ``unigen`` (pyunigen): near-uniform with UniGen3's guarantee: for every
  architecture a, ``Pr[a] <= (1 + epsilon) / |R_F|`` ... more exactly the
  (epsilon, delta) bounds of Soos, Gocht and Meel (CAV 2020). One call draws
  several samples, each from a cell of a random XOR hash; this package asks
  for them in rounds (each round its own Sampler object and seed), so samples
  stream out round by round. UniGen starts from the exact count when the
  tables know it (:func:`exact_count`, passed as ``cell_hash_count``) and
  from one ApproxMC count otherwise, shared by all rounds; it hashes over an
  independent support of the canonical bits (:func:`independent_support`)
  and the child fills in the other bits. As nasgen calls it (``multisample``
  off), UniGen returns one sample per random XOR cell, and below its
  threshold (a few dozen architectures) it enumerates the whole space and
  draws from it uniformly with replacement (``src/sampler.cpp`` of
  meelgroup/unigen). Distinct draws drop repeats across rounds.
* ``cmsgen`` (pycmsgen): fast, *no uniformity guarantee* (``nasgen check``
  rejects it on small spaces). It takes no sampling set; its models decode
  correctly because every auxiliary variable of nasgen's CNF is defined by
  the sampling variables (one model per architecture).
* ``approxmc`` (pyapproxmc): an (epsilon, delta) estimate of the count:
  ``Pr[count / (1 + epsilon) <= estimate <= count * (1 + epsilon)] >= 1 - delta``.

References:
    M. Soos, S. Gocht, K. S. Meel. Tinted, detached, and lazy CNF-XOR
    solving and its applications to counting and sampling. CAV 2020 (UniGen3).
    P. Golia, M. Soos, S. Chakraborty, K. S. Meel. Designing samplers is easy:
    the boon of testers. FMCAD 2021 (CMSGen).
    M. Soos, K. S. Meel. BIRD: engineering an efficient CNF-XOR SAT solver
    and its applications to approximate model counting. AAAI 2019 (ApproxMC4).
"""

from __future__ import annotations

import importlib
import multiprocessing
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

from nasgen.common.errors import NasgenError
from nasgen.space.definition import SearchSpace
from nasgen.space.encoding import decode_bits

__all__ = ["HashingSampler", "ApproxCount", "approx_count", "require_package",
           "exact_count", "independent_support", "cell_hash_of", "INSTALL_HINT"]

INSTALL_HINT = 'pip install "nasgen[samplers]"'
_PACKAGES = {"unigen": "pyunigen", "cmsgen": "pycmsgen", "approxmc": "pyapproxmc"}


def require_package(method: str) -> None:
    """Raise HashingError (one line, with the install command) if ``method``'s package is missing."""
    name = _PACKAGES[method]
    try:
        importlib.import_module(name)
    except ImportError:
        raise HashingError(f"method {method!r} needs the {name} package, which is not installed: "
                           f"{INSTALL_HINT}") from None


# -- the child process ------------------------------------------------------------------


def _model_bits(model: Sequence[int], sampling: int) -> bytes:
    """Literals (any order, any superset of 1..V) -> V bytes of 0/1."""
    out = bytearray(sampling)
    for lit in model:
        v = abs(lit)
        if v <= sampling and lit > 0:
            out[v - 1] = 1
    return bytes(out)


def independent_support(cnf, conflicts: int = 2000, give_up_after: int = 3) -> list[int]:
    """A subset S of ``cnf.sampling`` that determines every other sampling variable (Padoa's method).

    Variable v is *defined* by S' in F iff F(X) and F(X') and X|S' = X'|S' and
    v and not v' is unsatisfiable. Sampling variables are tried last
    canonical bit first (activations, then the deepest layer's bits), each
    against all others still kept, on one incremental solver over two copies
    of the CNF: a first pass with 50 conflicts per call settles constants and
    easy definitions, a second gives the undecided ``conflicts`` each and
    stops after ``give_up_after`` more undecided answers. A variable stays
    when its call is satisfiable or undecided, so the answer is always an
    independent support, perhaps not a minimal one. The budget counts
    conflicts, not seconds, so the support (and so the draws of a seed) does
    not depend on the machine's load.

    Hashing over S instead of all canonical bits keeps UniGen's guarantee
    (projection on S is one-to-one on the architectures, so the count and
    the cells are the same) and makes its XOR rows short and over decision
    variables only.

    Args:
        cnf: a :class:`nasgen.samplers.cnf.Cnf` (its auxiliary variables are defined, as nasgen writes them).
        conflicts: conflict limit of each call of the second pass.
        give_up_after: undecided answers after which the second pass stops.

    Returns:
        The support, sorted ascending.

    References:
        A. Ivrii, S. Malik, K. S. Meel, M. Y. Vardi. On computing minimal
        independent support and its applications to sampling and counting.
        Constraints 21(1), 2016.
    """
    import pycmsgen

    n = cnf.num_vars
    solver = pycmsgen.Solver(seed=0)
    solver.add_clauses(cnf.clauses)
    solver.add_clauses([[lit + n if lit > 0 else lit - n for lit in clause] for clause in cnf.clauses])
    equal = {}
    for v in cnf.sampling:
        e = equal[v] = 2 * n + v
        solver.add_clause([-e, -v, v + n])
        solver.add_clause([-e, v, -(v + n)])
    kept = set(cnf.sampling)
    # The second pass shrinks the 3-D 4-layer support from 35 to 27 variables, halving UniGen's time.
    undecided = list(reversed(cnf.sampling))
    for limit, patience in ((min(conflicts, 50), None), (conflicts, give_up_after)):
        pending, undecided = undecided, []
        for v in pending:
            if patience is not None and len(undecided) >= patience:
                break
            assumptions = [equal[u] for u in kept if u != v]
            # The two copies are symmetric, so one polarity is enough.
            sat, _ = solver.solve(assumptions + [v, -(v + n)], confl_limit=limit)
            if sat is False:
                kept.discard(v)
            elif sat is None:
                undecided.append(v)
    return sorted(kept)


class _Completer:
    """Turns values of an independent support into the whole canonical bit-vector (one solver call each)."""

    def __init__(self, cnf, support: list[int]) -> None:
        self.sampling = len(cnf.sampling)
        self.full = len(support) == self.sampling
        if not self.full:
            import pycmsgen

            self.solver = pycmsgen.Solver(seed=0)
            self.solver.add_clauses(cnf.clauses)

    def bits(self, model: Sequence[int]) -> bytes:
        if self.full:
            return _model_bits(model, self.sampling)
        sat, solution = self.solver.solve(list(model))
        # The support defines every sampling variable, so the completion exists and is unique.
        assert sat, "a UniGen sample on the support has no completion"
        return bytes(1 if solution[v] else 0 for v in range(1, self.sampling + 1))


def cell_hash_of(count: int) -> tuple[int, int]:
    """An exact count as UniGen's (cell count, hash count) pair: cell * 2**hashes rounds to ``count``.

    UniGen uses only ``hashes + log2(cell)`` (its first XOR count is
    ``round(hashes + log2(cell) + log2(1.8) - log2(threshold)) - 2``), so a
    cell of 2**19..2**20 loses nothing that matters and fits the binding's C long.
    """
    hashes = max(0, count.bit_length() - 20)
    cell = (count + (1 << hashes >> 1)) >> hashes
    return cell, hashes


def _child(conn, method: str, space_dict: dict, where: list, seed: int, samples: int | None,
           options: dict) -> None:
    """Run one backend and send ("encoded", seconds, vars, clauses), ("chunk", bytes, n), ("done", stats)."""
    try:
        from nasgen.samplers.cnf import encode_space

        space = SearchSpace.from_dict(space_dict)
        t0 = time.perf_counter()
        cnf = encode_space(space, where)
        conn.send(("encoded", time.perf_counter() - t0, cnf.num_vars, len(cnf.clauses)))
        if method == "approxmc":
            _child_approxmc(conn, cnf, seed, options)
        elif method == "unigen":
            _child_unigen(conn, cnf, seed, samples, options)
        elif method == "cmsgen":
            _child_cmsgen(conn, cnf, seed, samples)
        else:  # pragma: no cover - the parent validates the method
            raise AssertionError(method)
    except NasgenError as exc:
        conn.send(("error", str(exc)))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def _child_approxmc(conn, cnf, seed: int, options: dict) -> None:
    """Count once and send ("done", {"cell", "hashes"})."""
    import pyapproxmc

    counter = pyapproxmc.Counter(seed=seed, epsilon=options["epsilon"], delta=options["delta"])
    counter.add_clauses(cnf.clauses)
    cell, hashes = counter.count(cnf.sampling)
    conn.send(("done", {"cell": cell, "hashes": hashes}))


def _child_unigen(conn, cnf, seed: int, samples: int, options: dict) -> None:
    """UniGen rounds, each its own Sampler and seed, until the parent asks for no more."""
    import pyunigen

    t0 = time.perf_counter()
    support = independent_support(cnf) if options.get("support", True) else list(cnf.sampling)
    completer = _Completer(cnf, support)
    conn.send(("support", time.perf_counter() - t0, len(support)))
    exact = options.get("count")
    if exact == 0:
        # UniGen exits the process on an unsatisfiable formula: say so here instead.
        conn.send(("done", {}))
        return
    cell_hash = cell_hash_of(exact) if exact is not None else None
    round_ = 0
    while True:
        want = min(samples, options["round"])
        sampler = pyunigen.Sampler(seed=seed + round_, epsilon=options["epsilon"], delta=options["delta"])
        for clause in cnf.clauses:
            sampler.add_clause(clause)
        kwargs = {"cell_hash_count": cell_hash} if cell_hash is not None else {}
        cell, hashes, models = sampler.sample(num=want, sampling_set=support, **kwargs)
        cell_hash = (cell, hashes)
        del sampler
        payload = b"".join(completer.bits(m) for m in models)
        conn.send(("chunk", payload, len(models), {"cell": cell, "hashes": hashes, "round": round_}))
        round_ += 1
        # The parent says how many more it needs (0: stop).
        samples = conn.recv()
        if not samples:
            break
    conn.send(("done", {}))


def _child_cmsgen(conn, cnf, seed: int, samples: int) -> None:
    """CMSGen models in chunks, until the formula runs dry or the parent asks for no more."""
    import pycmsgen

    V = len(cnf.sampling)
    solver = pycmsgen.Solver(seed=seed)
    solver.add_clauses(cnf.clauses)
    while True:
        buffer, n = [], 0
        for _ in range(samples):
            sat, solution = solver.solve()
            if not sat:
                break
            buffer.append(bytes(1 if solution[v] else 0 for v in range(1, V + 1)))
            n += 1
        conn.send(("chunk", b"".join(buffer), n, {}))
        if n == 0:
            break
        samples = conn.recv()
        if not samples:
            break
    conn.send(("done", {}))


_CONTEXT = None


def _context():
    """A forkserver context (fork is unsafe once JAX or z3 threads run; spawn re-imports every time)."""
    global _CONTEXT
    if _CONTEXT is None:
        methods = multiprocessing.get_all_start_methods()
        _CONTEXT = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        if "forkserver" in methods:
            _CONTEXT.set_forkserver_preload(["nasgen.samplers.hashing", "nasgen.samplers.cnf", "nasgen.space.tables"])
    return _CONTEXT


class _Child:
    """One child process and its pipe; ``receive`` honours a deadline."""

    def __init__(self, method, space, where, seed, samples, options) -> None:
        ctx = _context()
        self.conn, child_conn = ctx.Pipe()
        self.process = ctx.Process(target=_child, args=(child_conn, method, space.to_dict(), list(where), seed,
                                                        samples, options), daemon=True)
        self.process.start()
        child_conn.close()

    def receive(self, deadline: float | None):
        """The next message, or None at the deadline (the child is then stopped)."""
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not self.conn.poll(left):
            self.stop()
            return None
        try:
            message = self.conn.recv()
        except EOFError:
            code = self.process.exitcode
            raise HashingError(f"the sampler process ended without an answer (exit code {code})") from None
        if message[0] == "error":
            self.stop()
            raise HashingError(message[1])
        return message

    def send(self, value) -> None:
        try:
            self.conn.send(value)
        except (BrokenPipeError, OSError):
            pass

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(5)
        self.conn.close()


def exact_count(space: SearchSpace, where: Sequence[str] = ()) -> int | None:
    """The exact number of architectures satisfying ``where``, or None when only an estimate is cheap.

    Exact without ``where``, and with a ``where`` that :class:`nasgen.constraints.constrained.ConstrainedSpace`
    absorbs into the tables or whose restricted space is small enough to enumerate.
    """
    from nasgen.space.tables import SpaceTables

    if not where:
        return SpaceTables(space).count
    from nasgen.constraints.constrained import ConstrainedSpace

    try:
        constrained = ConstrainedSpace(space, where)
    except NasgenError:  # e.g. an atom on params or flops, which needs model options: ApproxMC counts instead
        return None
    # Enumerating and filtering 10^5 architectures takes well under a second; beyond, ApproxMC is cheaper.
    if constrained.all_absorbed or constrained.tables.count <= 10**5:
        result = constrained.count(enumerate_limit=10**5)
        return result.count if result.exact else None
    return None


def _seed32(seed) -> int:
    return int(np.random.SeedSequence(seed).generate_state(1, np.uint32)[0]) if seed is not None else 0


@dataclass
class HashingStatistics:
    """Numbers of one run: encoding time and size, rounds, ApproxMC's cell and hash counts."""

    encode_s: float = 0.0
    variables: int = 0
    clauses: int = 0
    rounds: int = 0
    draws: int = 0
    repeats_dropped: int = 0
    cell: int | None = None
    xors: list = field(default_factory=list)
    count_source: str | None = None
    support: int | None = None
    support_s: float = 0.0

    def as_dict(self) -> dict:
        return {"encode_s": self.encode_s, "variables": self.variables, "clauses": self.clauses,
                "rounds": self.rounds, "draws": self.draws, "repeats_dropped": self.repeats_dropped,
                "cell": self.cell, "xors": list(self.xors), "count_source": self.count_source,
                "support": self.support, "support_s": self.support_s}


class HashingSampler:
    """UniGen3 or CMSGen draws of a space's architectures; owns one child process at a time.

    Args:
        space: the search space.
        method: ``"unigen"`` or ``"cmsgen"``.
        samples: M, how many to draw.
        seed: seed of the backend (the same seed gives the same draws).
        replace: True for independent draws; False (default) for distinct
            architectures (repeats are dropped and drawn again).
        timeout: wall-clock seconds for the whole run, encoding included (None: no limit).
        where: ``--where`` expressions.
        epsilon, delta: UniGen's tolerance and confidence.
        round_size: samples asked of one pyunigen call (one streamed chunk).
        independent_support_enabled: UniGen hashes over an independent support of the
            canonical bits (:func:`independent_support`) rather than all of them; False
            only to measure the difference.
        exact_count_enabled: UniGen starts from the exact count where :func:`exact_count`
            knows it; False (ApproxMC's estimate, as pyunigen does alone) only to measure.

    ``stop_reason`` after :meth:`draw`: ``"samples"`` (M drawn), ``"timeout"``,
    ``"exhausted"`` (no more distinct architectures: the space, with its
    ``where``, has fewer than M), ``"unsat"`` (no architecture at all) or
    ``"interrupted"``.

    Attributes:
        known_count: the exact number of architectures satisfying ``where``
            when :func:`exact_count` knows it (always without ``where``), else None.

    Raises:
        HashingError: the package is missing, or a setting is invalid.
    """

    option_names = ("epsilon", "delta", "round_size")
    needs_samples = True
    supports_where = True

    def __init__(self, space: SearchSpace, method: str, samples: int, seed=0, replace: bool = False,
                 timeout: float | None = None, where: Sequence[str] = (), epsilon: float = 0.8,
                 delta: float = 0.2, round_size: int = 1000, independent_support_enabled: bool = True,
                 exact_count_enabled: bool = True) -> None:
        if method not in ("unigen", "cmsgen"):
            raise HashingError(f"unknown hashing method {method!r}: use unigen or cmsgen")
        if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 0:
            raise HashingError(f"the number of samples must be a non-negative integer, got {samples!r}")
        if timeout is not None and not timeout > 0:
            raise HashingError(f"timeout must be a positive number of seconds, got {timeout}")
        if not 0 < epsilon:
            raise HashingError(f"epsilon must be positive, got {epsilon}")
        if not 0 < delta < 1:
            raise HashingError(f"delta must be in (0, 1), got {delta}")
        if round_size < 1:
            raise HashingError(f"round_size must be >= 1, got {round_size}")
        require_package(method)
        from nasgen.constraints.language import parse_where_all

        wheres = parse_where_all(where)
        for w in wheres:
            w.check(space)
        self.space = space
        self.method = method
        self.samples = int(samples)
        self.seed = _seed32(seed)
        self.replace = bool(replace)
        self.timeout = timeout
        self.where = tuple(w.text for w in wheres)
        self.options = {"epsilon": float(epsilon), "delta": float(delta), "round": int(round_size)}
        self.stop_reason: str | None = None
        self.statistics = HashingStatistics()
        self._child: _Child | None = None
        # UniGen starts from the exact count instead of from ApproxMC's estimate, and distinct draws stop
        # at it instead of waiting for stale rounds.
        self.known_count = exact_count(space, self.where)
        if method == "unigen":
            self.options["count"] = self.known_count if exact_count_enabled else None
            self.options["support"] = bool(independent_support_enabled)

    def __enter__(self) -> "HashingSampler":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stop the child process if one runs."""
        if self._child is not None:
            self._child.stop()
            self._child = None

    def draw(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Yield (layers, kernel, stride) chunks as the backend produces them (see the class)."""
        self.stop_reason = None
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        if self.samples == 0:
            self.stop_reason = "samples"
            return
        seen: set[bytes] = set()
        produced = 0
        V = self.space.vector_bits
        per_round = self.samples if self.method == "unigen" else min(self.samples, 256)
        child = self._child = _Child(self.method, self.space, self.where, self.seed, per_round, self.options)
        stale_rounds = 0
        try:
            while True:
                message = child.receive(deadline)
                if message is None:
                    self.stop_reason = "timeout"
                    return
                if self._record_progress(message):
                    continue
                if message[0] == "done":
                    self.stop_reason = self.stop_reason or ("unsat" if produced == 0 else "exhausted")
                    return
                _, payload, n, info = message
                self._record_round(n, info)
                if n == 0:
                    child.send(0)
                    continue
                rows = np.frombuffer(payload, dtype=np.uint8).reshape(n, V)
                keep = self._new_rows(rows, produced, seen)
                stale_rounds = stale_rounds + 1 if not keep else 0
                if keep:
                    produced += len(keep)
                    yield decode_bits(self.space, rows[keep])
                self.stop_reason = self._stop_reason_after(produced, stale_rounds)
                if self.stop_reason is not None:
                    child.send(0)
                    return
                missing = self.samples - produced
                child.send(max(missing, 1) if self.method == "unigen" else min(max(missing, 16), 256))
        except KeyboardInterrupt:
            self.stop_reason = "interrupted"
            raise
        finally:
            if self.stop_reason is None:
                self.stop_reason = "stopped"
            self.close()

    def _record_progress(self, message: tuple) -> bool:
        """Record an "encoded" or "support" message in ``statistics``; False for any other message."""
        if message[0] == "encoded":
            _, seconds, nvars, nclauses = message
            self.statistics.encode_s, self.statistics.variables = seconds, nvars
            self.statistics.clauses = nclauses
            return True
        if message[0] == "support":
            _, seconds, size = message
            self.statistics.support_s, self.statistics.support = seconds, size
            self.statistics.count_source = "approxmc" if self.options["count"] is None else "exact"
            return True
        return False

    def _record_round(self, n: int, info: dict) -> None:
        self.statistics.rounds += 1
        self.statistics.draws += n
        if "cell" in info:
            self.statistics.cell = info["cell"]
            self.statistics.xors.append(info["hashes"])

    def _new_rows(self, rows: np.ndarray, produced: int, seen: set) -> list[int]:
        """Indices of the rows to yield: up to the samples still missing, repeats dropped unless ``replace``."""
        keep = []
        for i in range(len(rows)):
            if produced + len(keep) >= self.samples:
                break
            if not self.replace:
                key = rows[i].tobytes()
                if key in seen:
                    self.statistics.repeats_dropped += 1
                    continue
                seen.add(key)
            keep.append(i)
        return keep

    def _stop_reason_after(self, produced: int, stale_rounds: int) -> str | None:
        """Why the run ends after a chunk ("samples" or "exhausted"), or None to ask for more."""
        if self.samples - produced <= 0:
            return "samples"
        if not self.replace and self.known_count is not None and produced >= self.known_count:
            return "exhausted"
        if stale_rounds >= 50:
            # Fifty rounds in a row with nothing new: the space has no more distinct architectures.
            return "exhausted"
        return None


@dataclass(frozen=True)
class ApproxCount:
    """ApproxMC's answer: ``estimate = cell * 2 ** hashes``, within the (epsilon, delta) bounds.

    Attributes:
        estimate: the estimated number of architectures.
        cell, hashes: ApproxMC's cell count and number of XOR hashes.
        epsilon, delta: the guarantee: with probability at least 1 - delta,
            ``count / (1 + epsilon) <= estimate <= (1 + epsilon) * count``.
        encode_s, solve_s: seconds to build the CNF and to count.
    """

    estimate: int
    cell: int
    hashes: int
    epsilon: float
    delta: float
    encode_s: float
    solve_s: float

    @property
    def bounds(self) -> tuple[float, float]:
        """The interval the true count lies in with probability >= 1 - delta."""
        return self.estimate / (1 + self.epsilon), self.estimate * (1 + self.epsilon)


def approx_count(space: SearchSpace, where: Sequence[str] = (), epsilon: float = 0.8, delta: float = 0.2,
                 seed=0, timeout: float | None = None) -> ApproxCount:
    """Estimate the number of architectures (with ``where``) by ApproxMC on the CNF.

    Raises:
        HashingError: missing package, bad epsilon/delta, or the timeout ran out.
    """
    if not epsilon > 0:
        raise HashingError(f"epsilon must be positive, got {epsilon}")
    if not 0 < delta < 1:
        raise HashingError(f"delta must be in (0, 1), got {delta}")
    if timeout is not None and not timeout > 0:
        raise HashingError(f"timeout must be a positive number of seconds, got {timeout}")
    require_package("approxmc")
    from nasgen.constraints.language import parse_where_all

    wheres = parse_where_all(where)
    for w in wheres:
        w.check(space)
    t0 = time.monotonic()
    deadline = None if timeout is None else t0 + timeout
    child = _Child("approxmc", space, [w.text for w in wheres], _seed32(seed), None,
                   {"epsilon": float(epsilon), "delta": float(delta)})
    try:
        encoded = child.receive(deadline)
        done = encoded and child.receive(deadline)
    finally:
        child.stop()
    if not encoded or not done:
        raise HashingError(f"approxmc did not finish within --timeout {timeout} s; give a longer timeout "
                           "or a larger epsilon")
    encode_s = encoded[1]
    stats = done[1]
    return ApproxCount(estimate=stats["cell"] * 2 ** stats["hashes"], cell=stats["cell"], hashes=stats["hashes"],
                       epsilon=float(epsilon), delta=float(delta), encode_s=encode_s,
                       solve_s=time.monotonic() - t0 - encode_s)


# -- the sampling-method interface ------------------------------------------------------------

from nasgen.common.errors import SamplingError
from nasgen.samplers.registry import Method, register_method
from nasgen.common.errors import HashingError


class _HashingMethod(Method):
    """A hashing backend behind :func:`nasgen.samplers.registry.draw`."""

    supports_where = True
    option_names = ()

    def __init__(self, space: SearchSpace, config) -> None:
        super().__init__(space, config)
        options = dict(config.options)
        self._sampler = HashingSampler(space, self.name, config.samples, seed=config.seed, replace=config.replace,
                                       timeout=config.timeout, where=config.where, **options)
        self.count = self._sampler.known_count

    @classmethod
    def check_options(cls, options: dict) -> dict:
        for name in ("epsilon", "delta"):
            value = options.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not 0 < value < (1 if name == "delta" else float("inf"))):
                valid = "in (0, 1)" if name == "delta" else "> 0"
                raise SamplingError(f"option {name} must be a number {valid}, got {str(value)[:60]!r}")
        size = options.get("round_size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1):
            raise SamplingError(f"option round_size must be a positive integer, got {str(size)[:60]!r}")
        return options

    def draw(self):
        try:
            yield from self._sampler.draw()
        finally:
            self.stop_reason = self._sampler.stop_reason
            self.statistics = self._sampler.statistics.as_dict()

    def close(self) -> None:
        self._sampler.close()


@register_method("unigen")
class UniGenMethod(_HashingMethod):
    help = "near-uniform by UniGen3 (XOR hashing with Gauss-Jordan elimination) on the CNF; needs nasgen[samplers]"
    option_names = ("epsilon", "delta", "round_size")


@register_method("cmsgen")
class CMSGenMethod(_HashingMethod):
    help = "fast CMSGen draws on the CNF with NO uniformity guarantee (nasgen check rejects it); needs nasgen[samplers]"
