"""Save and restore trained weights (any nnx state or JAX pytree) with orbax; checkpoints that stand alone.

A checkpoint directory holds one sub-directory per integer step, managed by
``orbax.checkpoint.CheckpointManager``. Each step holds two orbax items: the
state (``default``, a PyTree item) and ``nasgen_model``, a JSON item with the
model spec, search space and architecture of every network found in the
state; once orbax has committed the step, :data:`FILES_RECORD` holds the
sha256 of every file of both. So a step can be rebuilt into its network(s)
with nothing but the directory (:func:`load_model`), and a tampered or
truncated step is refused with :class:`CheckpointError` before orbax reads
it.

>>> import tempfile
>>> import jax.numpy as jnp
>>> from flax import nnx
>>> from nasgen.nn.models import build_model
>>> from nasgen.nn.spec import ModelSpec
>>> spec = ModelSpec.from_options("resnet18", width_multiplier=1 / 16)
>>> model = build_model(spec, None, None, rngs=nnx.Rngs(0))
>>> directory = tempfile.mkdtemp()
>>> _ = save(directory, 10, model)
>>> latest_step(directory)
10
>>> loaded = load_model(directory)   # rebuilt from the checkpoint alone
>>> model.eval()
>>> bool(jnp.all(loaded(jnp.ones((2, 28, 28, 1))) == model(jnp.ones((2, 28, 28, 1)))))
True

What can be saved: an ``nnx.Module``, an ``nnx.Optimizer``, a dict or list of
them (e.g. ``{"model": model, "optimizer": optimizer}``), an ``nnx.State``,
or any pytree of arrays and scalars. Modules are saved as ``nnx.state(...)``
(parameters, batch statistics, RNG state, optimizer moments).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

import jax
import orbax.checkpoint as ocp
from flax import nnx

from nasgen.common.atomic import write_atomic
from nasgen.common.errors import CheckpointError, NasgenError
from nasgen.nn.spec import ModelSpec
from nasgen.space.definition import Architecture, SearchSpace

__all__ = [
    "SavedNetwork",
    "save",
    "restore",
    "latest_step",
    "all_steps",
    "load_model",
    "load_models",
    "saved_networks",
    "find_networks",
]

STATE_ITEM = "default"
"""The orbax item of the arrays; the name single-item managers used, so older checkpoints stay readable."""

MODEL_ITEM = "nasgen_model"
"""The orbax JSON item with the networks' paths, specs, spaces and architectures."""

FILES_RECORD = "nasgen_files.json"
"""Written into a step's directory once orbax has committed it: the sha256 of every file of its two items.

A restore checks them before orbax reads anything, so a flipped, truncated or
deleted file is refused in one line rather than failing inside orbax's
asynchronous reads.
"""

_FORMAT = 1


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


def _manager(directory: Path, *, create: bool, keep: int | None = None) -> ocp.CheckpointManager:
    # Retention is orbax's own: max_to_keep deletes the oldest steps once a
    # new one is committed. Naming the handlers lets the manager read a
    # step's metadata (shapes) without restoring it.
    options = ocp.CheckpointManagerOptions(create=create, max_to_keep=keep)
    handlers = {STATE_ITEM: ocp.PyTreeCheckpointHandler(), MODEL_ITEM: ocp.JsonCheckpointHandler()}
    return ocp.CheckpointManager(directory, options=options, item_handlers=handlers)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first[:300]}"


@dataclasses.dataclass(frozen=True)
class SavedNetwork:
    """How to rebuild one network of a checkpoint: where its state is, and what it is.

    Attributes:
        path: the network's place in the saved tree, as dot-joined keys
            (``""`` for a bare module, ``"model"`` for ``{"model": net, ...}``,
            ``"mixture.networks.3"`` for the fourth network of a mixture).
        spec: its :class:`~nasgen.nn.spec.ModelSpec`.
        space: its search space (None: the spec's default, resnet18 only).
        arch: its architecture (None: the original ResNet-18).
    """

    path: str
    spec: ModelSpec
    space: SearchSpace | None
    arch: Architecture | None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON; :meth:`from_dict` inverts it."""
        return {
            "path": self.path,
            "spec": self.spec.to_dict(),
            "space": None if self.space is None else self.space.to_dict(),
            "arch": None if self.arch is None else self.arch.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Any) -> "SavedNetwork":
        """Raises NasgenError for anything but a :meth:`to_dict` dict."""
        if not isinstance(data, dict) or set(data) != {"path", "spec", "space", "arch"} or not isinstance(data["path"], str):
            raise NasgenError("a saved network must be an object with path, spec, space and arch")
        return cls(
            data["path"],
            ModelSpec.from_dict(data["spec"]),
            None if data["space"] is None else SearchSpace.from_dict(data["space"]),
            None if data["arch"] is None else Architecture.from_dict(data["arch"]),
        )


def find_networks(state: Any) -> list[SavedNetwork]:
    """Every network built by :func:`nasgen.nn.models.build_model` inside ``state``, with its path.

    Args:
        state: a module, or a dict/list/tuple of modules (e.g. ``{"mixture":
            mixture, "optimizer": optimizer}``); anything else holds none.

    Returns:
        One :class:`SavedNetwork` per :class:`~nasgen.nn.models.ConvChain` or
        :class:`~nasgen.nn.models.ResNet18`, in the order the state lists them.
    """
    from nasgen.nn.models import ConvChain, ResNet18

    found: list[SavedNetwork] = []

    def visit(node: Any, prefix: tuple[str, ...]) -> None:
        if isinstance(node, nnx.Module):
            inside: list[tuple[str, ...]] = []
            for path, module in sorted(nnx.iter_modules(node), key=lambda item: len(item[0])):
                path = tuple(str(p) for p in path)
                if any(path[: len(p)] == p for p in inside):
                    continue  # a block inside a network already found
                if isinstance(module, ConvChain):
                    inside.append(path)
                    found.append(SavedNetwork(".".join(prefix + path), module.spec, module.space, module.arch))
                elif isinstance(module, ResNet18):
                    inside.append(path)
                    found.append(SavedNetwork(".".join(prefix + path), module.spec, None, module.arch))
        elif isinstance(node, dict):
            for key, value in node.items():
                visit(value, prefix + (str(key),))
        elif isinstance(node, (list, tuple)):
            for index, value in enumerate(node):
                visit(value, prefix + (str(index),))

    visit(state, ())
    return sorted(found, key=lambda n: [int(p) if p.isdigit() else p for p in n.path.split(".")] if n.path else [])


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
    # The stored tree may hold more than the target (a model restored
    # without its optimizer); everything the target has must be stored.
    for path in sorted(want.keys() - have.keys()):
        top = sorted({p[0] for p in have if p})
        hint = f" (its top-level entries: {', '.join(top)}; restore a part with path=...)" if top else ""
        return f"the target has {'.'.join(path)} but the checkpoint does not{hint}"
    for path in sorted(want):
        if want[path] != have[path]:
            return f"{'.'.join(path)} is stored with shape {have[path]} but the target has shape {want[path]}"
    return None


def _step_value(step: Any) -> int:
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(f"checkpoint step must be a non-negative integer, got {step!r}")
    return step


def save(
    directory: str | os.PathLike,
    step: int,
    state: Any,
    *,
    overwrite: bool = False,
    keep: int | None = None,
    networks: Sequence[SavedNetwork] | None = None,
) -> Path:
    """Save ``state`` as checkpoint ``step`` under ``directory``, with what rebuilds its networks.

    Args:
        directory: the checkpoint directory (created if missing).
        step: a non-negative integer, e.g. the training step or epoch.
        state: an ``nnx.Module``/``nnx.Optimizer`` (or a dict/list of them),
            an ``nnx.State``, or any pytree of arrays.
        overwrite: replace an existing checkpoint of the same step instead
            of refusing.
        keep: keep only the ``keep`` highest steps (orbax's ``max_to_keep``:
            older steps are deleted once the new one is committed); None keeps
            everything.
        networks: what to record for :func:`load_model`; None finds every
            network built by :func:`~nasgen.nn.models.build_model` in ``state``
            (:func:`find_networks`); pass them explicitly when ``state`` is a
            plain pytree.

    Returns:
        The path of the step's checkpoint directory.

    Raises:
        CheckpointError: if ``step`` or ``keep`` is invalid, or ``step`` is
            already saved and ``overwrite`` is False.
    """
    step = _step_value(step)
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
        raise CheckpointError(f"keep must be a positive integer or None, got {keep!r}")
    if networks is None:
        networks = find_networks(state)
    tree = _as_state(state)
    networks_json = [n.to_dict() for n in networks]
    record = {
        "format": _FORMAT,
        "networks": networks_json,
        "networks_sha256": hashlib.sha256(json.dumps(networks_json, sort_keys=True).encode()).hexdigest(),
    }
    path = _directory(directory)
    with _manager(path, create=True, keep=keep) as manager:
        if step in manager.all_steps():
            if not overwrite:
                raise CheckpointError(
                    f"checkpoint step {step} already exists in {path}: choose another step or pass overwrite=True"
                )
            manager.delete(step)
        # force: orbax's own policy silently skips any step below the latest;
        # nasgen has already decided (the step is new or was just deleted).
        items = {STATE_ITEM: ocp.args.PyTreeSave(tree), MODEL_ITEM: ocp.args.JsonSave(record)}
        saved = manager.save(step, args=ocp.args.Composite(**items), force=True)
        manager.wait_until_finished()
    assert saved, "orbax skipped a save that nasgen asked for"
    step_dir = path / str(step)
    files = {"format": _FORMAT, "sha256": _file_digests(step_dir)}
    write_atomic(step_dir / FILES_RECORD, json.dumps(files, sort_keys=True))
    return step_dir


def _file_digests(step_dir: Path) -> dict[str, str]:
    digests = {}
    for item in (STATE_ITEM, MODEL_ITEM):
        for file in sorted((step_dir / item).rglob("*")):
            if file.is_file():
                digest = hashlib.sha256()
                with open(file, "rb") as handle:
                    for chunk in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(chunk)
                digests[file.relative_to(step_dir).as_posix()] = digest.hexdigest()
    return digests


def _verify_files(step_dir: Path, where: str) -> None:
    """Refuse a step whose files differ from the ones its save wrote (when it recorded them)."""
    record_path = step_dir / FILES_RECORD
    if not record_path.exists():
        return  # an older checkpoint, or a kill between orbax's commit and this record
    try:
        record = json.loads(record_path.read_text())
        expected = record["sha256"]
        assert isinstance(expected, dict)
    except (OSError, ValueError, KeyError, TypeError, AssertionError):
        raise CheckpointError(f"{where} has a damaged {FILES_RECORD}") from None
    try:
        found = _file_digests(step_dir)
    except OSError as exc:
        raise CheckpointError(f"{where} cannot be read ({exc.strerror}: {exc.filename})") from None
    for name in sorted(expected.keys() - found.keys()):
        raise CheckpointError(f"{where} is incomplete: {name} is missing")
    for name in sorted(found):
        if expected.get(name) != found[name]:
            change = "was added" if name not in expected else "differs from what was saved (sha256 mismatch)"
            raise CheckpointError(f"{where} is damaged: {name} {change}")


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


def _read_record(manager: ocp.CheckpointManager, path: Path, step: int) -> dict[str, Any] | None:
    if not (path / str(step) / MODEL_ITEM).exists():
        return None  # saved before nasgen recorded its networks
    try:
        record = manager.restore(step, args=ocp.args.Composite(**{MODEL_ITEM: ocp.args.JsonRestore()}))[MODEL_ITEM]
    except Exception as exc:  # noqa: BLE001 - any failure to read it is a damaged checkpoint
        raise CheckpointError(f"checkpoint step {step} in {path} has an unreadable {MODEL_ITEM} record ({_one_line(exc)})") from None
    ok = (
        isinstance(record, dict)
        and record.get("format") == _FORMAT
        and isinstance(record.get("networks"), list)
        and record.get("networks_sha256")
        == hashlib.sha256(json.dumps(record["networks"], sort_keys=True).encode()).hexdigest()
    )
    if not ok:
        raise CheckpointError(f"checkpoint step {step} in {path} has a damaged or tampered {MODEL_ITEM} record")
    return record


def _subtree(tree: Any, keys: Sequence[str], where: str) -> Any:
    for key in keys:
        if not isinstance(tree, dict) or key not in tree:
            raise CheckpointError(f"{where} has no entry {'.'.join(keys)}")
        tree = tree[key]
    return tree


def _nest(keys: Sequence[str], tree: Any) -> Any:
    for key in reversed(keys):
        tree = {key: tree}
    return tree


def _stored_tree(manager: ocp.CheckpointManager, path: Path, step: int) -> Any:
    try:
        metadata = manager.item_metadata(step)[STATE_ITEM]
    except Exception as exc:  # noqa: BLE001 - a damaged step can fail in many ways inside orbax
        raise CheckpointError(f"checkpoint step {step} in {path} is damaged or incomplete ({_one_line(exc)})") from None
    if metadata is None:
        raise CheckpointError(f"checkpoint step {step} in {path} holds no saved arrays")
    return getattr(metadata, "tree", metadata)


def restore(
    directory: str | os.PathLike, step: int | None = None, target: Any = None, *, path: str | None = None
) -> Any:
    """Restore checkpoint ``step`` (default: the latest) from ``directory``, all of it or a part.

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

            The target may hold only part of the checkpoint: ``{"model":
            model}`` restores the model alone from a ``{"model", "optimizer"}``
            checkpoint, and nothing else is read.
        path: restore the stored subtree at this dot-joined path (e.g.
            ``"model"`` or ``"mixture.networks.3"``) into ``target``.

    Returns:
        The restored tree, or ``target`` updated in place.

    Raises:
        CheckpointError: if there is no such checkpoint, it does not match
            ``target`` (different architecture or options), or it is
            damaged (a file missing, added or differing from the sha256
            recorded when it was saved, or unreadable).
    """
    directory_path = _directory(directory)
    steps = all_steps(directory_path)
    if not steps:
        raise CheckpointError(f"no checkpoint found in {directory_path}")
    if step is None:
        step = steps[-1]
    step = _step_value(step)
    if step not in steps:
        raise CheckpointError(f"no checkpoint step {step} in {directory_path}; saved steps: {steps}")
    keys = [] if not path else path.split(".")
    where = f"checkpoint step {step} in {directory_path}"
    graph_target = target is not None and _contains_graph_node(target)
    _verify_files(directory_path / str(step), where)
    with _manager(directory_path, create=False) as manager:
        stored = _stored_tree(manager, directory_path, step)
        stored_part = _subtree(stored, keys, where)
        if target is None:
            abstract = None
        else:
            abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _as_state(target))
            # Compare against the stored metadata first: orbax would also refuse
            # a mismatch, but only after starting its asynchronous reads, whose
            # abandoned coroutines then surface as unraisable-exception warnings.
            problem = _mismatch(stored_part, abstract)
            if problem is not None:
                raise CheckpointError(
                    f"{where} does not match the target (build it with the same architecture and options): {problem}"
                )
        try:
            if abstract is None:
                # Shapes and dtypes from the stored metadata: restoring with
                # no item at all makes orbax warn about missing shardings.
                abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), stored_part)
            item = _nest(keys, abstract)
            args = ocp.args.PyTreeRestore(
                item=item, restore_args=ocp.checkpoint_utils.construct_restore_args(item), partial_restore=True
            )
            restored = manager.restore(step, args=ocp.args.Composite(**{STATE_ITEM: args}))[STATE_ITEM]
        except CheckpointError:
            raise
        except Exception as exc:  # noqa: BLE001 - truncated or corrupt files fail in many ways inside orbax
            raise CheckpointError(f"{where} is damaged or incomplete ({_one_line(exc)})") from None
    restored = _subtree(restored, keys, where) if keys else restored
    if graph_target:
        nnx.update(target, restored)
        return target
    return restored


def saved_networks(directory: str | os.PathLike, step: int | None = None) -> list[SavedNetwork]:
    """The networks a checkpoint step records (spec, space, architecture, path), without reading arrays.

    Raises:
        CheckpointError: no such step, a damaged record, or a step saved
            without one (before nasgen recorded networks).
    """
    directory_path = _directory(directory)
    steps = all_steps(directory_path)
    if not steps:
        raise CheckpointError(f"no checkpoint found in {directory_path}")
    step = steps[-1] if step is None else _step_value(step)
    if step not in steps:
        raise CheckpointError(f"no checkpoint step {step} in {directory_path}; saved steps: {steps}")
    _verify_files(directory_path / str(step), f"checkpoint step {step} in {directory_path}")
    with _manager(directory_path, create=False) as manager:
        record = _read_record(manager, directory_path, step)
    if record is None:
        raise CheckpointError(
            f"checkpoint step {step} in {directory_path} records no networks (saved by an older nasgen); "
            "rebuild the network and use restore(..., target=...)"
        )
    try:
        return [SavedNetwork.from_dict(entry) for entry in record["networks"]]
    except NasgenError as exc:
        raise CheckpointError(f"checkpoint step {step} in {directory_path} has an invalid network record: {exc}") from None


def load_models(directory: str | os.PathLike, step: int | None = None) -> list[nnx.Module]:
    """Rebuild every network a checkpoint step records, with its saved weights, from the directory alone.

    Each network is built abstractly (no initialisation is computed) from
    its recorded spec, space and architecture, then its arrays are restored
    into it; the optimizer state and any other part of the checkpoint is not
    read. The networks are returned in eval mode (BatchNorm uses its saved
    running averages); call ``.train()`` to train them further.

    Args:
        directory: the checkpoint directory.
        step: the step; None means the latest.

    Returns:
        The networks, in the order of :func:`saved_networks`.

    Raises:
        CheckpointError: see :func:`saved_networks` and :func:`restore`.
    """
    from nasgen.nn.models import build_model

    networks = saved_networks(directory, step)
    if step is None:
        step = latest_step(directory)
    models = []
    for network in networks:
        try:
            abstract = nnx.eval_shape(
                lambda: build_model(network.spec, network.space, network.arch, rngs=nnx.Rngs(0))
            )
        except NasgenError as exc:
            raise CheckpointError(f"checkpoint step {step}: network {network.path or '(root)'} cannot be rebuilt: {exc}") from None
        model = restore(directory, step, target=abstract, path=network.path or None)
        model.eval()
        models.append(model)
    return models


def load_model(directory: str | os.PathLike, step: int | None = None) -> nnx.Module:
    """The one network a checkpoint step records, rebuilt with its weights (see :func:`load_models`).

    Raises:
        CheckpointError: as :func:`load_models`, or if the step records
            several networks (use :func:`load_models`).
    """
    models = load_models(directory, step)
    if len(models) != 1:
        raise CheckpointError(
            f"the checkpoint in {_directory(directory)} records {len(models)} networks; use load_models"
        )
    return models[0]
