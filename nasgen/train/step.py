"""The fused training step as compiled programs over the mixture's flat state (:class:`FusedStep`)."""

from __future__ import annotations

import functools
import hashlib
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nasgen.common.errors import NasgenError
from nasgen.train.mixture import Mixture, mixture_gradients, mixture_losses, network_gradients
from nasgen.train.programs import (
    STEP_DIR,
    STEP_SUFFIX,
    compile_program,
    default_compiler_options,
    export_program,
    keep_step_programs,
    kept_step_programs,
    load_program,
    lower_exported,
    private_directory,
    program_header,
    store_program,
)
from nasgen.train.runtime import library_versions, machine_identity

__all__ = ["FusedStep"]


def _network_of(path) -> int | None:
    """Which network a leaf of the (mixture, optimiser) state belongs to (None: alpha, counters)."""
    keys = [getattr(k, "key", getattr(k, "idx", None)) for k in path]
    for name, index in zip(keys, keys[1:]):
        if name == "networks" and isinstance(index, int):
            return index
    return None


def _restrict(tree: Any, members: Sequence[int], alpha: bool) -> Any:
    """``tree`` (parameters, gradients or optimiser state, as pure arrays) for ``members`` and alpha only."""
    if isinstance(tree, nnx.State):
        out = {}
        for name, value in tree.items():
            if name == "networks":
                out[name] = nnx.State({i: value[i] for i in members})
            elif name == "alpha":
                if alpha:
                    out[name] = value
            else:
                out[name] = _restrict(value, members, alpha)
        return nnx.State(out)
    if isinstance(tree, tuple):
        parts = [_restrict(part, members, alpha) for part in tree]
        return type(tree)(*parts) if hasattr(tree, "_fields") else tuple(parts)
    return tree


def _update_part(mixture: "Mixture", optimizer: nnx.Optimizer, grads: nnx.State, members: Sequence[int],
                 alpha: bool) -> None:
    """``optimizer.update`` restricted to the networks ``members`` (and alpha if ``alpha``), step counter aside.

    ``nnx.Optimizer.update`` on the part of the parameters, of ``grads`` and
    of the optimiser state that belongs to them: the optimiser is elementwise
    per leaf (its count is shared and advanced the same way by every part),
    so the part's new values are those of a whole update. A part's program
    then traces (and XLA compiles) the update of its own leaves only.
    """
    params = _restrict(nnx.as_pure(nnx.state(mixture, optimizer.wrt)), members, alpha)
    opt_state = _restrict(nnx.as_pure(optimizer.opt_state), members, alpha)
    updates, new_opt_state = optimizer.tx.update(nnx.as_pure(grads), opt_state, params)
    nnx.update(mixture, optax.apply_updates(params, updates))
    nnx.update(optimizer.opt_state, nnx.state(new_opt_state))


def _group_step(merged: Callable, rest: list[int], members: tuple[int, ...], keep: list[int], read: list,
                images: jax.Array, labels: jax.Array):
    """One group's program: its networks' gradients (one after another) and their optimiser update.

    ``merged(read, indices)`` rebuilds the mixture and optimiser from the leaves
    the program reads; returns ``((logits, losses), new leaves of keep)``.
    """
    mixture, optimizer = merged(read, keep + rest)
    grads, logits, losses, inputs = {}, [], [], images
    for i in members:
        (loss, z), grads[i] = network_gradients(mixture.networks[i], inputs, labels)
        logits.append(z)
        losses.append(loss)
        inputs, _ = jax.lax.optimization_barrier((inputs, jax.tree.leaves(grads[i])))
    _update_part(mixture, optimizer, nnx.State({"networks": nnx.State(grads)}), members, alpha=False)
    new = jax.tree.leaves(nnx.state((mixture, optimizer)))
    return (jnp.stack(logits), jnp.stack(losses)), [new[k] for k in keep]


def _alpha_step(merged: Callable, keep: list[int], read: list, logits: list, losses: list, labels: jax.Array):
    """Alpha's program: the mixture loss from every group's logits, alpha's update and the step counter."""
    mixture, optimizer = merged(read, keep)
    logits = [z for part in logits for z in part]
    mixture_loss, grad = jax.value_and_grad(
        lambda alpha: mixture_losses(alpha, logits, labels, mixture.mixing)[0])(mixture.alpha[...])
    _update_part(mixture, optimizer, nnx.State({"alpha": grad, "networks": nnx.State({})}), (), alpha=True)
    optimizer.step[...] += 1
    new = jax.tree.leaves(nnx.state((mixture, optimizer)))
    return (mixture_loss, jnp.concatenate(losses)), [new[k] for k in keep]


class FusedStep:
    """The fused :func:`train_step` as a function of the flat state, traced once per mixture.

    Called with one batch, it updates its own copy of the mixture's and the
    optimiser's arrays; :meth:`sync` writes them back into the nnx objects
    (before evaluation and checkpoints). It is compiled when it is made.
    With a ``cache_dir`` and an ``identity``, the traced program is stored
    under ``cache_dir/steps`` as a ``jax.export`` serialisation (StableHLO
    and metadata: data that nothing runs when it is read), keyed by the
    mixture's structure, the batch's shapes and shardings, the devices, mesh
    and platform, the library versions, the compiler options and the host
    CPU, with a header that a loaded entry must match (see
    :func:`~nasgen.train.programs.load_program`): a later process (a resumed
    run, the same mixture again) lowers the stored program instead of
    tracing the M+1 networks through Flax, and XLA compiles it, from JAX's
    persistent cache where that holds it. With an ``identity``, the process also
    keeps the compiled step (the last :data:`STEPS_KEPT`; see
    :func:`clear_step_programs`): a later FusedStep of the same structure in
    the same process (the next seed of ``--seeds``, another ``train`` call in
    a notebook) reuses it without loading or compiling anything
    (:attr:`reused`).

    Args:
        mixture, optimizer: the live objects (``mixture`` in train mode).
        images, labels: one batch (shapes, dtypes and shardings matter).
        cache_dir: JAX's compilation cache directory, or None for none.
        identity: text that determines the mixture and its optimiser (a
            run's config JSON); part of the cache key with the shapes, the
            shardings, the library versions and the source of the modules
            that define the step.
        programs: split the step into this many XLA programs over
            consecutive groups of networks, plus one for alpha (1: one
            program). Each group's program computes its networks' gradients
            and applies the optimiser to their leaves only; alpha's program
            takes every network's logits. The optimiser is elementwise per
            leaf, so the update is the one-program step's (to float
            rounding). XLA's CPU executable loader and its thunk graph grow
            faster than a program's size, so several smaller programs load
            from the cache much faster (``bench/results/train.md``).
        compiler_options: XLA options for every program (part of the cache
            key); None: :data:`STEP_COMPILER_OPTIONS` on a CPU whose XLA
            knows them, XLA's defaults otherwise; ``{}``:
            XLA's defaults.

    Raises:
        NasgenError: ``programs`` not between 1 and the number of networks,
            or ``compiler_options`` not a mapping of option names to values.
    """

    def __init__(self, mixture: "Mixture", optimizer: nnx.Optimizer, images: jax.Array, labels: jax.Array,
                 cache_dir: Path | None = None, identity: str = "", programs: int = 1,
                 compiler_options: dict[str, Any] | None = None) -> None:
        if compiler_options is None:
            self.compiler_options = default_compiler_options(images)
        elif isinstance(compiler_options, dict) and all(isinstance(name, str) for name in compiler_options):
            self.compiler_options = dict(compiler_options)
        else:
            raise NasgenError(f"compiler_options must be a dict of XLA option names to values or None, "
                              f"got {compiler_options!r}")
        self._objects = (mixture, optimizer)
        graphdef, state = nnx.split(self._objects)
        leaves, self._treedef = jax.tree.flatten(state)
        # Committed to where they are, like the step's outputs: uncommitted
        # arrays (those of an un-sharded nnx.jit with no array inputs) lower
        # to a different program than the committed ones the first step
        # returns, so the second call compiled (and cached) the whole step a
        # second time.
        leaves = jax.device_put(leaves, [leaf.sharding for leaf in leaves])
        self.leaves = leaves
        treedef = self._treedef

        def step(leaves, images, labels):
            mixture, optimizer = nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves))
            grads, losses = mixture_gradients(mixture, images, labels)
            optimizer.update(mixture, grads)
            return losses, jax.tree.leaves(nnx.state((mixture, optimizer)))

        self.loaded_from_cache = False
        self.reused = False
        networks = len(mixture.networks)
        if isinstance(programs, bool) or not isinstance(programs, int) or not 1 <= programs <= networks:
            raise NasgenError(f"programs must be an integer from 1 to the number of networks ({networks}), "
                              f"got {programs!r}")
        self.programs = programs
        self._identity = identity
        key = self._key(identity, leaves, images, labels) if identity else None
        if programs > 1:
            self._split(graphdef, treedef, networks, key, cache_dir, images, labels)
            return
        # The compiled step is a pure function of (leaves, batch): any FusedStep
        # of the same identity, shapes, shardings and graph (nnx's own jit key)
        # can call it.
        kept = (key, graphdef, 1) if key is not None else None
        self._call = kept_step_programs(kept)
        if self._call is not None:
            self.reused = True
            return
        self._call, = self._programs([(key, step, (leaves, images, labels))], cache_dir)
        if kept is not None:
            keep_step_programs(kept, self._call)

    def _programs(self, parts: Sequence[tuple[str | None, Callable, tuple]], cache_dir: Path | None) -> list:
        """Compiled programs for ``parts``, each ``(key, function, args)``: loaded from ``cache_dir`` or traced.

        A part whose stored export (:func:`~nasgen.train.programs.load_program`)
        matches what this run expects is not traced; any other is traced and
        exported on this thread (tracing is Python) and stored under its key.
        Either way the export is lowered and XLA-compiled on two worker
        threads (XLA releases the GIL), so one part compiles while the next
        is traced; JAX's persistent cache serves the compilation where it
        holds it. Sets :attr:`loaded_from_cache` (True if no part was traced).
        """
        from concurrent.futures import ThreadPoolExecutor

        directory = None if cache_dir is None else private_directory(Path(cache_dir) / STEP_DIR, "compiled-step cache")
        loaded, futures = [], []
        with ThreadPoolExecutor(2) as pool:
            try:
                for key, function, args in parts:
                    path = None if directory is None or key is None else directory / f"{key}{STEP_SUFFIX}"
                    header = None if path is None else program_header(key, self._identity, args)
                    exported = None if path is None else load_program(path, header)
                    loaded.append(exported is not None)
                    if exported is None:
                        exported = export_program(function, key, args)
                        if path is not None:
                            store_program(path, exported, header)
                    lowered = lower_exported(exported, key, args)
                    futures.append(pool.submit(compile_program, lowered, self.compiler_options))
                programs = [future.result() for future in futures]
            except BaseException:  # an interrupt or a failed part: start no further work
                for future in futures:
                    future.cancel()
                raise
        self.loaded_from_cache = all(loaded)
        return programs

    def _split(self, graphdef, treedef, networks: int, key: str | None, cache_dir: Path | None,
               images: jax.Array, labels: jax.Array) -> None:
        """The step as one program per group of networks and one for alpha (see ``programs``)."""
        paths = [path for path, _ in jax.tree_util.tree_flatten_with_path(jax.tree.unflatten(treedef, self.leaves))[0]]
        owners = [_network_of(path) for path in paths]
        groups = [tuple(int(i) for i in part) for part in np.array_split(np.arange(networks), self.programs)]
        self._owned = [[k for k, owner in enumerate(owners) if owner in group] for group in groups]
        self._rest = [k for k, owner in enumerate(owners) if owner is None]
        # Another FusedStep of this structure in this process compiled it already.
        kept = (key, graphdef, self.programs) if key is not None else None
        found = kept_step_programs(kept)
        if found is not None:
            self._group_calls, self._alpha_call = found
            self.reused = True
            return

        # A part's program takes only the leaves it reads: its networks' and the
        # shared ones (alpha, counters). The others stand in as shapes only,
        # never read (an operation on one fails the trace); with every leaf as
        # an input, each part's signature, lowering and call handled all of them.
        shapes = [jax.ShapeDtypeStruct(leaf.shape, leaf.dtype) for leaf in self.leaves]

        def merged(read, reads):
            leaves = list(shapes)
            for k, value in zip(reads, read):
                leaves[k] = value
            return nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves))

        group_step = functools.partial(_group_step, merged, self._rest)

        def part_key(name: str) -> str | None:
            # Named by what the part computes, so that splits sharing a group share its program.
            return None if key is None else hashlib.sha256(f"{key} {name}".encode()).hexdigest()[:32]

        self._group_calls = self._programs(
            [(part_key(f"group {members}"), functools.partial(group_step, members, keep),
              (self._reading(g), images, labels)) for g, (members, keep) in enumerate(zip(groups, self._owned))],
            cache_dir)
        loaded = self.loaded_from_cache
        # Alpha's program takes the groups' logits and losses, as they come out of them.
        parts = [jax.tree.map(lambda out: jax.ShapeDtypeStruct(out.shape, out.dtype, sharding=out.sharding),
                              call.out_info[0]) for call in self._group_calls]
        logits, losses = [part[0] for part in parts], [part[1] for part in parts]
        name = part_key(f"alpha {groups}")
        alpha = functools.partial(_alpha_step, merged, self._rest)
        self._alpha_call, = self._programs([(name, alpha, (self._reading(None), logits, losses, labels))], cache_dir)
        self.loaded_from_cache = loaded and self.loaded_from_cache
        if kept is not None:
            keep_step_programs(kept, (self._group_calls, self._alpha_call))

    def _reading(self, group: int | None) -> list[jax.Array]:
        """The leaves that a group's program (None: alpha's) takes: its own, then the shared ones."""
        own = [] if group is None else self._owned[group]
        return [self.leaves[k] for k in own + self._rest]

    def _split_call(self, images: jax.Array, labels: jax.Array):
        new = list(self.leaves)
        logits, losses = [], []
        for g, (call, keep) in enumerate(zip(self._group_calls, self._owned)):
            (z, loss), out = call(self._reading(g), images, labels)
            logits.append(z)
            losses.append(loss)
            for k, value in zip(keep, out):
                new[k] = value
        losses, out = self._alpha_call(self._reading(None), logits, losses, labels)
        for k, value in zip(self._rest, out):
            new[k] = value
        self.leaves = new
        return losses

    def _key(self, identity: str, leaves, images, labels) -> str:
        import nasgen.nn.models
        import nasgen.nn.spec
        import nasgen.train.mixture
        import nasgen.train.programs

        digest = hashlib.sha256()
        # The modules whose code the step runs: a change to any of them is a different program.
        modules = (sys.modules[__name__], nasgen.train.mixture, nasgen.train.programs, nasgen.nn.models, nasgen.nn.spec)
        sources = [Path(module.__file__).read_bytes() for module in modules]
        parts = [identity, library_versions(), [hashlib.sha256(source).hexdigest() for source in sources], machine_identity(),
                 repr(sorted(self.compiler_options.items()))]
        for array in (*leaves, images, labels):
            parts.append((tuple(array.shape), str(array.dtype), str(getattr(array, "sharding", None))))
        # The devices, mesh and platform the program is compiled for, spelled out (a sharding's text alone
        # did not tell a 2-device step from a 1-device one).
        header = program_header("", identity, (leaves, images, labels))
        parts.append((header["platform"], header["devices"], sorted(header["mesh"].items())))
        digest.update(repr(parts).encode())
        return digest.hexdigest()[:32]

    def __call__(self, images: jax.Array, labels: jax.Array):
        """One step; returns ``(mixture_loss, network_losses)``."""
        if self.programs > 1:
            return self._split_call(images, labels)
        losses, self.leaves = self._call(self.leaves, images, labels)
        return losses

    def sync(self) -> None:
        """Write the step's arrays back into the mixture and optimiser objects."""
        nnx.update(self._objects, jax.tree.unflatten(self._treedef, self.leaves))
