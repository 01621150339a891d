"""Save and restore trained weights (any nnx state or JAX pytree) with orbax.

A checkpoint directory holds one sub-directory per integer step, managed by
``orbax.checkpoint.CheckpointManager``. A model is rebuilt from its
architecture JSON, model options and seed (see :func:`nasgen.models.build_model`)
and its weights are then restored into it:

>>> import tempfile
>>> from flax import nnx
>>> from nasgen.models import ModelSpec, build_model
>>> spec = ModelSpec.from_options("resnet18", width_multiplier=1 / 16)
>>> model = build_model(spec, None, None, rngs=nnx.Rngs(0))
>>> directory = tempfile.mkdtemp()
>>> _ = save(directory, 10, model)
>>> latest_step(directory)
10
>>> fresh = build_model(spec, None, None, rngs=nnx.Rngs(1))
>>> _ = restore(directory, target=fresh)  # fresh now holds model's weights

What can be saved: an ``nnx.Module``, an ``nnx.Optimizer``, a dict or list of
them (e.g. ``{"model": model, "optimizer": optimizer}``), an ``nnx.State``,
or any pytree of arrays and scalars. Modules are saved as ``nnx.state(...)``
(parameters, batch statistics, RNG state, optimizer moments).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import nnx

from nasgen.space import NasgenError

__all__ = ["CheckpointError", "save", "restore", "latest_step", "all_steps"]


class CheckpointError(NasgenError):
    """A checkpoint that is missing, already exists, or does not fit its target."""


def _contains_graph_node(tree: Any) -> bool:
    is_node = lambda x: isinstance(x, nnx.Pytree)  # noqa: E731 - a predicate, read inline
    return any(is_node(leaf) for leaf in jax.tree.leaves(tree, is_leaf=is_node))


def _as_state(tree: Any) -> Any:
    # nnx.state accepts a Module/Optimizer or plain containers of them and
    # returns their Variables as one pytree; anything else is a pytree already.
    return nnx.state(tree) if _contains_graph_node(tree) else tree


def _directory(directory: str | os.PathLike) -> Path:
    # orbax wants absolute paths.
    return Path(directory).expanduser().resolve()


def _manager(directory: Path, *, create: bool) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(create=create, max_to_keep=None)
    # Naming the handler lets the manager read a step's metadata (shapes)
    # without restoring it.
    return ocp.CheckpointManager(directory, options=options, item_handlers=ocp.StandardCheckpointHandler())


def _key_text(entry: Any) -> str:
    for attribute in ("key", "idx", "name"):
        if hasattr(entry, attribute):
            return str(getattr(entry, attribute))
    return str(entry)


def _shapes_by_path(tree: Any) -> dict[tuple[str, ...], tuple[int, ...]]:
    # Stored trees have string keys ("0", "value") where a live nnx state has
    # ints and attributes, so compare paths as tuples of strings.
    return {
        tuple(_key_text(entry) for entry in path): tuple(leaf.shape)
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
    }


def _mismatch(stored: Any, abstract: Any) -> str | None:
    """Describe the first difference between stored metadata and the target, or None."""
    have = _shapes_by_path(stored)
    want = _shapes_by_path(abstract)
    for path in sorted(want.keys() - have.keys()):
        return f"the target has {'.'.join(path)} but the checkpoint does not"
    for path in sorted(have.keys() - want.keys()):
        return f"the checkpoint has {'.'.join(path)} but the target does not"
    for path in sorted(want):
        if want[path] != have[path]:
            return f"{'.'.join(path)} is stored with shape {have[path]} but the target has shape {want[path]}"
    return None


def _step_value(step: Any) -> int:
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(f"checkpoint step must be a non-negative integer, got {step!r}")
    return step


def save(
    directory: str | os.PathLike, step: int, state: Any, *, overwrite: bool = False, keep: int | None = None
) -> Path:
    """Save ``state`` as checkpoint ``step`` under ``directory``.

    Args:
        directory: the checkpoint directory (created if missing).
        step: a non-negative integer, e.g. the training step or epoch.
        state: an ``nnx.Module``/``nnx.Optimizer`` (or a dict/list of them),
            an ``nnx.State``, or any pytree of arrays.
        overwrite: replace an existing checkpoint of the same step instead
            of refusing.
        keep: after the new checkpoint is complete on disk, delete all but
            the ``keep`` highest steps; None keeps everything.

    Returns:
        The path of the step's checkpoint directory.

    Raises:
        CheckpointError: if ``step`` or ``keep`` is invalid, or ``step`` is
            already saved and ``overwrite`` is False.
    """
    step = _step_value(step)
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
        raise CheckpointError(f"keep must be a positive integer or None, got {keep!r}")
    path = _directory(directory)
    with _manager(path, create=True) as manager:
        if step in manager.all_steps():
            if not overwrite:
                raise CheckpointError(
                    f"checkpoint step {step} already exists in {path}: choose another step or pass overwrite=True"
                )
            manager.delete(step)
        # force: orbax's own policy silently skips any step below the latest;
        # nasgen has already decided (the step is new or was just deleted).
        saved = manager.save(step, args=ocp.args.StandardSave(_as_state(state)), force=True)
        manager.wait_until_finished()
        if keep is not None:
            for old_step in sorted(manager.all_steps())[:-keep]:
                manager.delete(old_step)
    assert saved, "orbax skipped a save that nasgen asked for"
    return path / str(step)


def all_steps(directory: str | os.PathLike) -> list[int]:
    """The steps saved under ``directory``, ascending (empty if there is none)."""
    path = _directory(directory)
    if not path.is_dir():
        return []
    with _manager(path, create=False) as manager:
        return sorted(manager.all_steps())


def latest_step(directory: str | os.PathLike) -> int | None:
    """The largest step saved under ``directory``, or None if there is none."""
    steps = all_steps(directory)
    return steps[-1] if steps else None


def restore(directory: str | os.PathLike, step: int | None = None, target: Any = None) -> Any:
    """Restore checkpoint ``step`` (default: the latest) from ``directory``.

    Args:
        directory: the checkpoint directory.
        step: the step to restore; None means :func:`latest_step`.
        target: what to restore into.

            * None: return the stored tree as nested dicts of arrays (an
              nnx state comes back as ``{..., "kernel": {"value": array}}``).
            * an ``nnx.Module``/``nnx.Optimizer`` or a dict/list of them: the
              arrays are written into it in place (``nnx.update``) and it is
              returned. Build it with the same architecture and options; an
              abstract model from ``nnx.eval_shape`` also works.
            * any other pytree (an ``nnx.State``, arrays or
              ``jax.ShapeDtypeStruct`` leaves): a tree of the same structure
              is returned.

    Returns:
        The restored tree, or ``target`` updated in place.

    Raises:
        CheckpointError: if there is no such checkpoint, or it does not
            match ``target`` (different architecture or options).
    """
    path = _directory(directory)
    steps = all_steps(path)
    if not steps:
        raise CheckpointError(f"no checkpoint found in {path}")
    if step is None:
        step = steps[-1]
    step = _step_value(step)
    if step not in steps:
        raise CheckpointError(f"no checkpoint step {step} in {path}; saved steps: {steps}")
    graph_target = target is not None and _contains_graph_node(target)
    with _manager(path, create=False) as manager:
        if target is None:
            return manager.restore(step, args=ocp.args.StandardRestore())
        reference = _as_state(target)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, reference)
        # Compare against the stored metadata first: orbax would also refuse
        # a mismatch, but only after starting its asynchronous reads, whose
        # abandoned coroutines then surface as unraisable-exception warnings.
        problem = _mismatch(manager.item_metadata(step), abstract)
        if problem is not None:
            raise CheckpointError(
                f"checkpoint step {step} in {path} does not match the target "
                f"(build it with the same architecture and options): {problem}"
            )
        restored = manager.restore(step, args=ocp.args.StandardRestore(abstract))
    if graph_target:
        nnx.update(target, restored)
        return target
    return restored

