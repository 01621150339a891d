"""Uniform conditional draws: the architectures of a space that agree with a given one outside a window.

Given an architecture ``A`` of L layers and a window of layer positions
``start <= l < stop`` (``0 <= start < stop <= N``), the *conditional set* is
every architecture ``B`` of the space that agrees with ``A`` at every position
outside the window: where ``A`` has a layer there, ``B`` has the same kernel
and stride; where ``A`` has none, ``B`` has none. So

* a window in the middle (``stop < L``) keeps the number of layers and the
  layers after the window; the sizes inside the window may change, as long as
  the fixed layers after it still lead to the output shape;
* a window that reaches the end (``stop >= L``) lets the number of layers be
  anything in ``[max(start, n), min(stop, N)]``: drawing it is completing the
  prefix ``A[:start]`` (:meth:`ConditionalSpace.complete` is this case with
  ``stop = N``);
* ``A`` itself is always in its conditional set.

For a fixed number of layers the chains of a non-square space's dimensions
are independent, so the set factorises per chain (per dimension, or one joint
chain for a square space). Each chain's window is a walk of ``w`` steps from
the state the fixed prefix reaches to a state from which the fixed suffix
reaches the output: a count table whose end states are those states (built
by the kernel's ``count_table``, cached) gives exact counts, and the kernel's
``sample_batch`` draws uniform chains from it. A window at the end uses the
space's own tables. So draws are exactly uniform over the conditional set and
run at the exact sampler's speed; constraints that the tables do not absorb
(``--where`` atoms applied by rejection) filter the draws through ``accept``,
which keeps them uniform on the constrained conditional set.

>>> from nasgen import SearchSpace, SpaceTables, Architecture
>>> tables = SpaceTables(SearchSpace((30,), (20,), 2, 3))
>>> parent = Architecture(kernel=((5,), (7,)), stride=((1,), (1,)))
>>> conditional = ConditionalSpace(tables)
>>> conditional.count(parent, 0, 1)   # layer 0 must take 30 to 26 (layer 1 then gives 20): k=5 s=1 only
1
>>> [a.layers for a in conditional.sample(parent, 1, 3, samples=4, seed=0)]   # the end: 2 or 3 layers
[3, 3, 3, 3]
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from nasgen.common.errors import ArchitectureError, EmptySpaceError, NasgenError, RejectionBudgetError
from nasgen.space import backend
from nasgen.space.definition import Architecture
from nasgen.space.draws import check_samples, seed_state
from nasgen.space.encoding import arrays_to_architectures, to_arrays
from nasgen.space.tables import SpaceTables

__all__ = ["ConditionalSpace", "DEFAULT_MAX_DRAWS", "ENUMERATE_LIMIT"]

#: The largest restricted space :meth:`ConditionalSpace.count` enumerates when ``accept`` is given.
ENUMERATE_LIMIT = 10**6
#: Default budget of candidate draws when ``accept`` rejects some of them.
DEFAULT_MAX_DRAWS = 10**6
#: How many window count tables to keep (each is (w + 1) x states limbs plus the edge prefix weights).
_CACHE_SIZE = 128
#: How many plans (and architecture walks) to keep: an evolutionary search redraws around a few parents.
_PLAN_CACHE_SIZE = 1024
_CHUNK = 1 << 14


def _to_limbs(value: int, words: int) -> list[int]:
    return [(value >> (64 * i)) & (2**64 - 1) for i in range(words)]


def _from_limbs(limbs) -> int:
    return sum(int(v) << (64 * i) for i, v in enumerate(limbs))


def _words_for(value: int) -> int:
    return max(1, (value.bit_length() + 63) // 64)


def _remember(cache: dict, key, value, size: int = _PLAN_CACHE_SIZE) -> None:
    """Store ``value`` under ``key``, dropping the oldest entry once ``cache`` holds ``size``."""
    if len(cache) >= size:
        cache.pop(next(iter(cache)))
    cache[key] = value


class ConditionalSpace:
    """Uniform draws among the architectures that agree with a given one outside a window of positions.

    The object keeps per-state edge lookups and a cache of window count
    tables, so a caller drawing many times (an evolutionary search) builds
    each once.

    Args:
        tables: the exact tables of the space (or of a space restricted by
            absorbed ``--where`` atoms: ``ConstrainedSpace(...).tables``).
        accept: optional ``accept(layers, kernel, stride) -> (M,) bools`` for
            constraints applied by rejection (``ConstrainedSpace(...).accept``).
        max_draws: the budget of candidate draws per call when ``accept`` is given.

    Raises:
        NasgenError: ``tables`` is not a :class:`~nasgen.space.tables.SpaceTables`.

    >>> from nasgen import SearchSpace, SpaceTables
    >>> ConditionalSpace(SpaceTables(SearchSpace((30,), (20,), 2, 3))).space.max_layers
    3
    """

    def __init__(self, tables: SpaceTables, accept: Callable | None = None,
                 max_draws: int = DEFAULT_MAX_DRAWS) -> None:
        if not isinstance(tables, SpaceTables):
            raise NasgenError(f"ConditionalSpace takes SpaceTables, got {type(tables).__name__}")
        self.tables = tables
        self.space = tables.space
        self.accept = accept
        self.max_draws = max_draws
        self._pair_sets: dict[int, frozenset] = {}
        # caches that depend only on the tables: one step from every state, the end states of a fixed
        # suffix, and count tables keyed by (window width, end states) rather than by architecture
        self._step_vectors: dict[tuple[int, int], np.ndarray] = {}
        self._edge_keys: tuple | None = None
        self._ends: dict[tuple, tuple] = {}
        self._window_tables: dict[tuple, tuple] = {}
        # caches keyed by architecture: its walk through the chain graph, and whole plans
        self._walks: dict[Architecture, list] = {}
        self._bases: dict[Architecture, tuple] = {}
        self._plans: dict[tuple, tuple] = {}
        self._space_plan: tuple | None = None
        comps = tables.components
        self._components = [(int(s), int(k), int(d)) for s, k, d in zip(comps.start, comps.kd, comps.dim0)]

    @property
    def chains(self) -> list[tuple[int, ...]]:
        """The dimensions of each independent chain (one per dimension, or all of a square space's in one)."""
        return [tuple(range(dim0, dim0 + kd)) for _, kd, dim0 in self._components]

    # -- walking an architecture through the chain graph ----------------------

    def _pair_on_edge(self, edge: int, kernel: int, stride: int) -> bool:
        graph, rules = self.tables.graph, self.tables.rules
        first = int(graph.edge_pairs[edge]) if len(graph.edge_pairs) and edge >= 0 else -1
        if first < 0:  # the edge (-1: any such edge) holds every pair the rules allow that gives its size
            if not (rules.kernel_min <= kernel <= rules.kernel_max and rules.stride_min <= stride <= rules.stride_max):
                return False
            return rules.relation == 2 or kernel > stride or (rules.relation == 1 and kernel == stride)
        pairs = self._pair_sets.get(edge)
        if pairs is None:
            m = int(graph.edge_mult[edge])
            pairs = frozenset(zip(graph.pair_kernel[first:first + m].tolist(),
                                  graph.pair_stride[first:first + m].tolist()))
            self._pair_sets[edge] = pairs
        return (kernel, stride) in pairs

    def _step(self, state: int, kernel: int, stride: int) -> int | None:
        """The state after one layer of (kernel, stride) from ``state``, or None when the layer is not allowed."""
        after = int(self._step_vector(kernel, stride)[state])
        return None if after < 0 else after

    def _step_vector(self, kernel: int, stride: int) -> np.ndarray:
        """(S + 1,) the state after one layer of (kernel, stride) from every state; -1 where it is not allowed.

        The last entry maps -1 (no state) to -1, so vectors compose by indexing.
        """
        key = (kernel, stride)
        vector = self._step_vectors.get(key)
        if vector is not None:
            return vector
        graph = self.tables.graph
        span = graph.sizes - kernel  # (S, KD)
        ok = (span >= 0).all(axis=1) & (kernel >= 1) & (stride >= 1)
        if self.space.rounding == "exact":
            ok &= (span % max(stride, 1) == 0).all(axis=1)
        conv = np.where(ok[:, None], span // max(stride, 1) + 1, 0)
        edge = self._edge_index(conv, ok)
        vector = np.full(graph.states + 1, -1, dtype=np.int64)
        found = np.flatnonzero(edge >= 0)
        explicit = graph.edge_pairs[edge[found]] >= 0 if len(graph.edge_pairs) else np.zeros(len(found), bool)
        if len(found) and self._pair_on_edge(-1, kernel, stride):  # the rules' edges: one check for all
            vector[found[~explicit]] = graph.edge_dst[edge[found[~explicit]]]
        for state in found[explicit].tolist():  # edges with their own pair lists (absorbed constraints)
            if self._pair_on_edge(int(edge[state]), kernel, stride):
                vector[state] = int(graph.edge_dst[edge[state]])
        self._step_vectors[key] = vector
        return vector

    def _edge_index(self, conv: np.ndarray, ok: np.ndarray) -> np.ndarray:
        """(S,) for each state, its edge whose convolution size is ``conv[state]`` (-1 for none or not ``ok``)."""
        graph = self.tables.graph
        if self._edge_keys is None:
            # one integer per (state, convolution sizes), mixed radix, sorted once: lookups are a searchsorted
            base = int(max(graph.sizes.max(initial=0), graph.edge_conv.max(initial=0))) + 1
            powers = base ** np.arange(graph.sizes.shape[1], dtype=np.int64)
            assert graph.states * base ** graph.sizes.shape[1] < 2**62
            owner = np.repeat(np.arange(graph.states, dtype=np.int64), np.diff(graph.edge_ptr))
            keys = owner * base ** graph.sizes.shape[1] + graph.edge_conv @ powers
            order = np.argsort(keys, kind="stable")
            self._edge_keys = (keys[order], order, powers, base ** graph.sizes.shape[1])
        sorted_keys, order, powers, stride_of_state = self._edge_keys
        query = np.arange(graph.states, dtype=np.int64) * stride_of_state + conv @ powers
        position = np.minimum(np.searchsorted(sorted_keys, query), max(len(sorted_keys) - 1, 0))
        if not len(sorted_keys):
            return np.full(graph.states, -1, dtype=np.int64)
        found = ok & (sorted_keys[position] == query)
        return np.where(found, order[position], -1)

    def _suffix_ends(self, suffix: tuple) -> tuple[int, ...]:
        """The states from which the fixed layers ``suffix`` reach the output (cached per suffix)."""
        ends = self._ends.get(suffix)
        if ends is None:
            current = np.arange(self.tables.graph.states, dtype=np.int64)
            for kernel, stride in suffix:
                current = self._step_vector(kernel, stride)[current]
            at_output = np.append(self.tables.g[0].any(axis=1), False)
            ends = tuple(np.flatnonzero(at_output[current]).tolist())
            if len(self._ends) >= _PLAN_CACHE_SIZE:
                self._ends.pop(next(iter(self._ends)))
            self._ends[suffix] = ends
        return ends

    def _walk(self, state: int, layers: list[tuple[int, int]]) -> int | None:
        for kernel, stride in layers:
            state = self._step(state, kernel, stride)
            if state is None:
                return None
        return state

    @staticmethod
    def _component_layers(arch: Architecture, kd: int, dim0: int, lo: int, hi: int) -> list[tuple[int, int]] | None:
        """(kernel, stride) of one chain at positions lo..hi-1; None where a square chain's dimensions differ."""
        out = []
        for l in range(lo, hi):
            ks, ss = set(arch.kernel[l][dim0:dim0 + kd]), set(arch.stride[l][dim0:dim0 + kd])
            if len(ks) != 1 or len(ss) != 1:
                return None
            out.append((ks.pop(), ss.pop()))
        return out

    def _check_window(self, arch: Architecture, start: int, stop: int) -> None:
        N = self.space.max_layers
        for value, name in ((start, "start"), (stop, "stop")):
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
                raise NasgenError(f"the window {name} must be an integer, got {value!r}")
        if not 0 <= start < stop <= N:
            raise NasgenError(f"the window must satisfy 0 <= start < stop <= {N} (the space's most layers), "
                              f"got start={start}, stop={stop}")
        if not isinstance(arch, Architecture):
            raise ArchitectureError(f"the conditional draw takes an Architecture, got {type(arch).__name__}")
        if arch.dims != self.space.dims or arch.layers > N:
            raise ArchitectureError(f"the architecture has {arch.layers} layers and {arch.dims} dimensions; the "
                                    f"space {self.space.describe()} allows at most {N} layers of {self.space.dims}")

    def _outside(self, arch: Architecture, what: str) -> ArchitectureError:
        if what == "prefix":
            return ArchitectureError(f"no architecture of the space {self.space.describe()} starts with the prefix "
                                     f"{arch.to_json()}")
        return ArchitectureError(f"the {what} {arch.to_json()} is not in the space {self.space.describe()}")

    # -- the plan of a conditional draw ------------------------------------------

    def _plan(self, arch: Architecture, start: int, stop: int, prefix_only: bool = False, layers: int | None = None,
              dims=None):
        """What a draw needs: ("fixed",) | ("end", values, weights, states, draw args) | ("middle", w, chains).

        Plans are cached per (architecture, window, prefix_only, layers, dims): an
        evolutionary search asks for the same parent and window many times.
        """
        key = (arch, start, stop, prefix_only, layers, dims)
        try:
            plan = self._plans.get(key)
        except TypeError:  # an unhashable argument: let the checks below name it
            plan, key = None, None
        if plan is None:
            plan = self._make_plan(arch, start, stop, prefix_only, layers, self._chains_of(dims))
            if key is not None:
                _remember(self._plans, key, plan)
        return plan

    def _chains_of(self, dims) -> tuple[int, ...] | None:
        """The chains that redraw exactly the dimensions ``dims`` (None: every chain)."""
        if dims is None:
            return None
        K = self.space.dims
        try:
            wanted = {int(d) for d in dims}
        except (TypeError, ValueError):
            raise NasgenError(f"dims must be None or a sequence of dimensions 0..{K - 1}, got {dims!r}") from None
        if not wanted or not wanted <= set(range(K)):
            raise NasgenError(f"dims must name some of the dimensions 0..{K - 1}, got {dims!r}")
        chains = []
        for c, (_, kd, dim0) in enumerate(self._components):
            covered = set(range(dim0, dim0 + kd)) & wanted
            if covered and len(covered) != kd:
                raise NasgenError(f"dimensions {sorted(range(dim0, dim0 + kd))} of the space {self.space.describe()} "
                                  f"form one chain (a square space): dims must hold all of them or none")
            if covered:
                chains.append(c)
        return None if len(chains) == len(self._components) else tuple(chains)

    def _make_plan(self, arch: Architecture, start: int, stop: int, prefix_only: bool, layers: int | None,
                   redrawn: tuple[int, ...] | None = None):
        self._check_window(arch, start, stop)
        t = self.tables
        L = arch.layers
        what = "prefix" if prefix_only else "architecture"
        if not prefix_only:
            self._check_member(arch)
        if start > L or (redrawn is not None and start >= L):
            # positions L..start-1 are outside the window and empty (or, redrawing only some dimensions, the
            # window holds no layer: the other dimensions fix the depth): only arch itself agrees
            return ("fixed",)
        if redrawn is not None:  # some dimensions only: the depth stays, so this is a window inside L layers
            stop = min(stop, L)
        walks = self._walk_architecture(arch)
        states = []
        for walked, _ in walks:
            if len(walked) <= start:
                raise self._outside(arch, what)
            states.append(walked[start])
        if stop >= L and redrawn is None:
            values, weights = [], []
            for total_layers in range(max(start, self.space.min_layers), min(stop, self.space.max_layers) + 1):
                if not t.by_layers.get(total_layers) or (layers is not None and total_layers != layers):
                    continue
                weight = 1
                for state in states:
                    weight *= _from_limbs(t.g[total_layers - start, state])
                if weight:
                    values.append(total_layers - start)
                    weights.append(weight)
            if not weights:
                raise self._outside(arch, what)
            prefix, acc = [], 0
            for w in weights:
                acc += w
                prefix.append(acc)
            words = _words_for(acc)
            layer_cum = np.array([_to_limbs(v, words) for v in prefix], dtype=np.uint64).reshape(len(prefix), words)
            comps = backend.make_components(states, [c[1] for c in self._components], [c[2] for c in self._components])
            prepared = backend.prepare_draw(t.graph, t.rules, comps, t.cum, t.g, values, layer_cum,
                                            (self.space.max_layers - start, self.space.dims))
            return ("end", values, weights, states, prepared)
        window = stop - start
        chains = []
        for c, (_, kd, dim0) in enumerate(self._components):
            if redrawn is not None and c not in redrawn:
                continue
            g, cum = self._window_table(window, self._suffix_ends(tuple(walks[c][1][stop:L])))
            if not g[window, states[c]].any():
                raise self._outside(arch, what)
            comps = backend.make_components([states[c]], [kd], [dim0])
            prepared = backend.prepare_draw(t.graph, t.rules, comps, cum, g, [window], g[window, states[c]][None, :],
                                            (window, self.space.dims))
            chains.append((states[c], kd, dim0, g, prepared))
        return ("middle", window, chains)

    def _walk_architecture(self, arch: Architecture) -> list[tuple[list[int], list[tuple[int, int]]]]:
        """Per chain: the states after each of arch's first layers (as far as they are allowed) and its layers."""
        walks = self._walks.get(arch)
        if walks is None:
            walks = []
            for first_state, kd, dim0 in self._components:
                states, layers = [first_state], []
                for l in range(arch.layers):
                    pair = self._component_layers(arch, kd, dim0, l, l + 1)
                    if pair is None:
                        break
                    layers.append(pair[0])
                    after = self._step(states[-1], *pair[0])
                    if after is None:
                        break
                    states.append(after)
                walks.append((states, layers))
            _remember(self._walks, arch, walks)
        return walks

    def _check_member(self, arch: Architecture) -> None:
        """Raise unless ``arch`` is in the (restricted and accepted) space."""
        t = self.tables
        if not t.by_layers.get(arch.layers):
            raise self._outside(arch, "architecture")
        for states, _ in self._walk_architecture(arch):
            if len(states) != arch.layers + 1 or not t.g[0, states[-1]].any():
                raise self._outside(arch, "architecture")
        if self.accept is not None and not bool(self.accept(*self._arrays([arch]))[0]):
            raise self._outside(arch, "architecture (it fails the constraints)")

    def _window_table(self, window: int, ends: tuple[int, ...]):
        """Counts of ``window``-step chains into the states ``ends``, and their edge weights (cached, LRU).

        The table counts from every state, so it depends only on the window's
        width and the end states, not on the architecture around the window.
        """
        key = (window, ends)
        hit = self._window_tables.pop(key, None)
        if hit is not None:
            self._window_tables[key] = hit  # most recently used last
            return hit
        graph = self.tables.graph
        words = 1
        while True:
            counts, overflowed = backend.count_table(graph, np.array(ends, dtype=np.int64), window, words)
            if not overflowed:
                break
            words *= 2
        entry = (counts, backend.cumulative_weights(graph, counts))
        if len(self._window_tables) >= _CACHE_SIZE:
            self._window_tables.pop(next(iter(self._window_tables)))
        self._window_tables[key] = entry
        return entry

    # -- counting and drawing ----------------------------------------------------

    def restricted_count(self, arch: Architecture, start: int, stop: int, dims=None) -> int:
        """The size of the conditional set before ``accept`` (exact; equal to :meth:`count` without it)."""
        plan = self._plan(arch, start, stop, dims=dims)
        return self._plan_count(plan)

    @staticmethod
    def _plan_count(plan) -> int:
        if plan[0] == "fixed":
            return 1
        if plan[0] == "end":
            return sum(plan[2])
        total = 1
        for chain in plan[2]:
            state, g = chain[0], chain[3]
            total *= _from_limbs(g[plan[1], state])
        return total

    def count(self, arch: Architecture, start: int, stop: int, dims=None) -> int:
        """The exact number of architectures of the space that agree with ``arch`` outside ``start..stop-1``.

        Args:
            arch: an architecture of the space.
            start, stop: the window of positions ``start <= l < stop`` (``0 <= start < stop <= N``).
            dims: None (the window redraws every dimension), or the dimensions it redraws: the
                others agree with ``arch`` at every position, so the depth stays ``arch.layers``.
                They must be whole chains (all of a square space's dimensions, or none).

        Returns:
            The count (``arch`` included). With ``accept`` it counts by filtering the
            enumerated set, so it is meant for small sets.

        Raises:
            ArchitectureError: ``arch`` is not in the space.
            NasgenError: a window outside ``0 <= start < stop <= N``.
        """
        plan = self._plan(arch, start, stop, dims=dims)
        total = self._plan_count(plan)
        if self.accept is None:
            return total
        if self.tables.count > ENUMERATE_LIMIT:
            raise NasgenError(f"counting under constraints applied by rejection enumerates the space, which has "
                              f"{self.tables.count} members (more than {ENUMERATE_LIMIT}): use restricted_count")
        found = 0
        base = self._arrays([arch])
        for layers, kernel, stride in self.tables.enumerate_arrays():
            agree = _agree_outside((layers, kernel, stride), base, (start, stop), dims)
            if agree.any():
                found += int((agree & self.accept(layers, kernel, stride)).sum())
        return found

    def sample_arrays(self, arch: Architecture, start: int, stop: int, samples: int = 1, seed=0,
                      layers: int | None = None, dims=None):
        """Draw ``samples`` independent, exactly uniform members of the conditional set as arrays.

        Args:
            arch: an architecture of the space (of its ``--where`` too, with ``accept``).
            start, stop: the window of positions ``start <= l < stop`` (``0 <= start < stop <= N``).
            samples: M, how many independent draws (repeats possible).
            seed: None, a non-negative int or a ``numpy.random.Generator``; same int, same draws.
            layers: for a window that reaches the end, draw only among the members of this many
                layers (uniformly among them); ignored for a window in the middle.
            dims: the dimensions the window redraws, as :meth:`count` takes them (None: all).

        Returns:
            ``(layers (M,), kernel (M, N, K), stride (M, N, K))`` int64 arrays, rows past ``layers[i]`` zero.

        Raises:
            ArchitectureError: ``arch`` is not in the space (or fails the constraints).
            NasgenError: a bad window or sample count.
            RejectionBudgetError: with ``accept``, the draw budget ran out first.

        >>> from nasgen import SearchSpace, SpaceTables, Architecture
        >>> conditional = ConditionalSpace(SpaceTables(SearchSpace((30,), (20,), 2, 2)))
        >>> layers, kernel, stride = conditional.sample_arrays(Architecture(((5,), (7,)), ((1,), (1,))), 0, 2, 3)
        >>> kernel.shape
        (3, 2, 1)
        """
        samples = check_samples(samples)
        plan = self._plan(arch, start, stop, layers=layers, dims=dims)
        return self._collect(arch, plan, start, stop, samples, seed)

    def sample(self, arch: Architecture, start: int, stop: int, samples: int = 1, seed=0,
               layers: int | None = None, dims=None) -> list[Architecture]:
        """Like :meth:`sample_arrays`, as a list of :class:`~nasgen.space.definition.Architecture`."""
        return arrays_to_architectures(*self.sample_arrays(arch, start, stop, samples, seed, layers, dims))

    def feasible_layers(self, arch: Architecture, start: int, stop: int, dims=None) -> list[int]:
        """The numbers of layers the conditional set holds (more than one only for a window reaching the end)."""
        plan = self._plan(arch, start, stop, dims=dims)
        if plan[0] == "end":
            return [start + v for v in plan[1]]
        return [arch.layers]

    def complete(self, prefix: Architecture, samples: int = 1, seed=0) -> list[Architecture]:
        """Draw uniformly among the architectures of the space whose first layers are ``prefix``.

        Args:
            prefix: the first ``p`` layers (any number ``p <= N``, not itself an architecture of the space).
            samples, seed: as :meth:`sample_arrays`.

        Raises:
            ArchitectureError: no architecture of the space starts with ``prefix``.

        >>> from nasgen import SearchSpace, SpaceTables, Architecture
        >>> conditional = ConditionalSpace(SpaceTables(SearchSpace((30,), (20,), 2, 3)))
        >>> [a.kernel[0] for a in conditional.complete(Architecture(((3,),), ((1,),)), samples=2, seed=0)]
        [(3,), (3,)]
        """
        samples = check_samples(samples)
        start = prefix.layers if isinstance(prefix, Architecture) else 0
        if start >= self.space.max_layers:
            # the whole architecture is given: its only completion is itself
            self._check_window(prefix, 0, self.space.max_layers)
            self._check_member(prefix)
            return [prefix] * samples
        plan = self._plan(prefix, start, self.space.max_layers, prefix_only=True)
        return arrays_to_architectures(*self._collect(prefix, plan, start, self.space.max_layers, samples, seed))

    def sample_space_arrays(self, samples: int = 1, seed=0):
        """Draw ``samples`` independent, exactly uniform architectures of the whole (constrained) space.

        The same draw as a window covering every position (``0..N``), with no
        architecture to agree with; constraints applied by rejection filter it
        with ``accept`` (no enumeration, so it suits one draw per call).

        Raises:
            EmptySpaceError: the space is empty.
            RejectionBudgetError: with ``accept``, the draw budget ran out first.

        >>> from nasgen import SearchSpace, SpaceTables
        >>> layers, _, _ = ConditionalSpace(SpaceTables(SearchSpace((30,), (20,), 2, 3))).sample_space_arrays(4, 0)
        >>> set(layers.tolist()) <= {2, 3}
        True
        """
        samples = check_samples(samples)
        self.require_nonempty()
        plan = self._space_plan
        if plan is None:
            values, weights = [], []
            for total_layers, count in self.tables.by_layers.items():
                if count:
                    values.append(total_layers)
                    weights.append(count)
            layer_cum = np.array([_to_limbs(v, _words_for(sum(weights))) for v in np.cumsum(weights, dtype=object)],
                                 dtype=np.uint64).reshape(len(weights), -1)
            comps = backend.make_components([c[0] for c in self._components], [c[1] for c in self._components],
                                            [c[2] for c in self._components])
            t = self.tables
            prepared = backend.prepare_draw(t.graph, t.rules, comps, t.cum, t.g, values, layer_cum,
                                            (self.space.max_layers, self.space.dims))
            plan = ("end", values, weights, [c[0] for c in self._components], prepared)
            self._space_plan = plan
        return self._collect(None, plan, 0, self.space.max_layers, samples, seed)

    def require_nonempty(self) -> None:
        """Raise :class:`~nasgen.common.errors.EmptySpaceError` (one line) when the restricted space is empty."""
        if self.tables.count == 0:
            raise EmptySpaceError(f"the space {self.space.describe()} (with its constraints) is empty: "
                                  "no architecture maps the input to the output")

    # -- the draws -----------------------------------------------------------------

    def _arrays(self, archs: list[Architecture]):
        return to_arrays(self.space, archs)

    def _base_arrays(self, arch: Architecture):
        """``_arrays([arch])``, cached per architecture (read only: draws copy them)."""
        base = self._bases.get(arch)
        if base is None:
            base = self._arrays([arch])
            _remember(self._bases, arch, base)
        return base

    def _collect(self, arch, plan, start, stop, samples, seed):
        if self.accept is None:
            state = (seed_state(seed), 0)  # the stream's key and its next draw's index
            arrays, _ = self._draw(arch, plan, start, stop, samples, state)
            return arrays
        parts, found = [], 0
        for layers, kernel, stride in self._draw_chunks(arch, plan, start, stop, seed, self.max_draws):
            keep = np.flatnonzero(self.accept(layers, kernel, stride))[: samples - found]
            if len(keep):
                parts.append((layers[keep], kernel[keep], stride[keep]))
                found += len(keep)
            if found == samples:
                break
        if found < samples:
            raise RejectionBudgetError(
                f"{self.max_draws} candidate draws {'of the space' if arch is None else 'around ' + arch.to_json()} gave {found} of {samples} architectures "
                "that satisfy the constraints: use a wider window or raise max_draws")
        if not parts:
            return self._arrays([])
        return tuple(np.concatenate(p) for p in zip(*parts))

    def _draw_chunks(self, arch, plan, start, stop, seed, budget):
        state = (seed_state(seed), 0)  # the stream's key and its next draw's index
        done, size = 0, 64
        while done < budget:
            # small first chunks: one draw (a trial's architecture) should not pay for 16,384 candidates
            n = min(size, budget - done)
            arrays, state = self._draw(arch, plan, start, stop, n, state)
            done += n
            size = min(4 * size, _CHUNK)
            yield arrays

    def _draw(self, arch: Architecture | None, plan, start: int, stop: int, samples: int, state: int):
        """``samples`` uniform draws of the plan, as arrays, and the generator state after them."""
        N, K = self.space.max_layers, self.space.dims
        if arch is None:  # the whole space (start = 0): nothing of a base architecture is kept
            base_layers, base_kernel, base_stride = (np.zeros(1, np.int64), np.zeros((1, N, K), np.int64),
                                                     np.zeros((1, N, K), np.int64))
        else:
            base_layers, base_kernel, base_stride = self._base_arrays(arch)
        if plan[0] == "fixed" or samples == 0:
            return (np.repeat(base_layers, samples), np.repeat(base_kernel, samples, axis=0),
                    np.repeat(base_stride, samples, axis=0)), state
        if plan[0] == "end":
            drawn, k, s, state = backend.draw_prepared(plan[4], state, samples)
            if start == 0:
                return (drawn, k, s), state
            kernel = np.zeros((samples, N, K), dtype=np.int64)
            stride = np.zeros((samples, N, K), dtype=np.int64)
            kernel[:, :start] = base_kernel[0, :start]
            stride[:, :start] = base_stride[0, :start]
            kernel[:, start:] = k
            stride[:, start:] = s
            return (drawn + start, kernel, stride), state
        _, window, chains = plan
        layers = np.repeat(base_layers, samples)
        kernel = np.repeat(base_kernel, samples, axis=0)
        stride = np.repeat(base_stride, samples, axis=0)
        for _, kd, dim0, _, prepared in chains:
            _, k, s, state = backend.draw_prepared(prepared, state, samples)
            kernel[:, start:start + window, dim0:dim0 + kd] = k[:, :, dim0:dim0 + kd]
            stride[:, start:start + window, dim0:dim0 + kd] = s[:, :, dim0:dim0 + kd]
        return (layers, kernel, stride), state


def _agree_outside(arrays, base, window: tuple[int, int], dims=None) -> np.ndarray:
    """(M,) bools: rows of ``arrays`` that agree with the ``base`` row outside the ``window`` (start, stop)
    (and, with ``dims``, in every other dimension at every position); both are (layers, kernel, stride)."""
    (layers, kernel, stride), (base_layers, base_kernel, base_stride), (start, stop) = arrays, base, window
    N, K = kernel.shape[1], kernel.shape[2]
    outside = np.ones(N, dtype=bool)
    outside[start:stop] = False
    present = np.arange(N)[None, :] < layers[:, None]
    base_present = np.arange(N)[None, :] < base_layers[:, None]
    same = (present == base_present) & (kernel == base_kernel).all(axis=2) & (stride == base_stride).all(axis=2)
    agree = same[:, outside].all(axis=1)
    if dims is not None:
        fixed = np.setdiff1d(np.arange(K), np.asarray(list(dims), dtype=np.int64))
        agree &= (layers == base_layers) & (kernel[:, :, fixed] == base_kernel[:, :, fixed]).all(axis=(1, 2)) \
            & (stride[:, :, fixed] == base_stride[:, :, fixed]).all(axis=(1, 2))
    return agree
