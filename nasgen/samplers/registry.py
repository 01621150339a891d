"""One interface for every way of drawing architectures: a frozen config, a registry of methods, one entry point.

A sampling run is described by a :class:`SamplingConfig` (method, samples,
seed, replacement, timeout, ``--where`` constraints and method options),
validated in one place and written beside the run's output. A method is one
class registered by name with :func:`register_method`; :func:`draw` looks it
up and returns a running instance, a context manager whose ``draw()``
generator yields ``(layers, kernel, stride)`` array chunks as they are found.
The CLI (``nasgen sample``), the Python API (:func:`sample`,
:func:`sample_arrays`) and the training pipeline all go through :func:`draw`.

This module imports neither z3 nor jax: a method's module is imported when the
method is first used.

>>> from nasgen.space.definition import SearchSpace
>>> space = SearchSpace((30,), (20,), 2, 2)
>>> config = SamplingConfig(method="exact", samples=4, seed=7)
>>> with draw(space, config) as run:
...     layers = [len(chunk[0]) for chunk in run.draw()]
>>> sum(layers), run.stop_reason
(4, 'complete')
"""

from __future__ import annotations

import importlib
import math
import time
import types
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator, Mapping

import numpy as np

from nasgen.common.errors import SamplingError
from nasgen.constraints.costs import MODEL_OPTIONS, resolve_model
from nasgen.space.definition import SearchSpace

__all__ = [
    "Method",
    "SamplingConfig",
    "draw",
    "is_integer",
    "method_class",
    "method_names",
    "register_method",
    "sample",
    "sample_arrays",
]


#: Methods whose class lives in a module imported on first use: name -> module.
_LAZY_METHODS: dict[str, str] = {
    "exact": "nasgen.samplers.registry",
    "all": "nasgen.samplers.solver",
    "limited": "nasgen.samplers.solver",
    "uniwit": "nasgen.samplers.solver",
    "unigen": "nasgen.samplers.hashing",
    "cmsgen": "nasgen.samplers.hashing",
}
_METHODS: dict[str, type["Method"]] = {}


def register_method(name: str, module: str | None = None):
    """Class decorator registering a sampling method under ``name``.

    Args:
        name: the method's name (``--method NAME``).
        module: only when called without decorating: record that ``module``
            defines the method, so that the registry knows the name before
            importing the module.
    """
    if module is not None:
        _LAZY_METHODS[name] = module
        return None

    def decorate(cls):
        cls.name = name
        _METHODS[name] = cls
        _LAZY_METHODS.setdefault(name, cls.__module__)
        return cls

    return decorate


def method_names() -> tuple[str, ...]:
    """Every registered method name, in registration order."""
    return tuple(_LAZY_METHODS)


def method_class(name: str) -> type["Method"]:
    """The class of method ``name``, importing its module on first use.

    Raises:
        SamplingError: no such method.
    """
    if name not in _METHODS:
        module = _LAZY_METHODS.get(name)
        if module is None:
            raise SamplingError(f"unknown method {name!r}: use one of {', '.join(method_names())}")
        importlib.import_module(module)
        if name not in _METHODS:  # pragma: no cover - a registry entry pointing at the wrong module
            raise SamplingError(f"module {module} does not define method {name!r}")
    return _METHODS[name]


def is_integer(value: Any) -> bool:
    """Whether ``value`` is a Python or numpy integer (a bool is not), for checking method options.

    >>> is_integer(3), is_integer(np.int64(3)), is_integer(True), is_integer(3.0)
    (True, True, False, False)
    """
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


@dataclass(frozen=True)
class SamplingConfig:
    """The settings of one sampling run, validated on construction.

    Attributes:
        method: a registered method name (``exact``, ``all``, ``limited``, ``uniwit``, ...).
        samples: M, how many architectures (None: every one, for methods that enumerate).
        seed: a non-negative int, or None for fresh entropy (resolved to an int by :func:`draw`,
            which records the int it used in ``run.config``).
        replace: False (default): distinct architectures; True: independent draws.
        timeout: wall-clock seconds for the whole run, or None.
        where: ``--where`` expressions, all of which must hold.
        options: method-specific settings; each method lists the keys it takes in ``option_names``.

    Raises:
        SamplingError: on any invalid field, naming it and what would be valid.
    """

    method: str = "exact"
    samples: int | None = None
    seed: int | None = 0
    replace: bool = False
    timeout: float | None = None
    where: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.method, str):
            raise SamplingError(f"method must be a name, got {self.method!r:.60}")
        cls = method_class(self.method)
        if self.samples is not None and not (is_integer(self.samples) and self.samples >= 0):
            raise SamplingError(f"samples (--samples) must be an integer >= 0, got {str(self.samples)[:60]!r}")
        if self.samples is None and cls.needs_samples:
            raise SamplingError(f"method {self.method!r} needs a number of samples (--samples M)")
        if self.seed is not None and not (is_integer(self.seed) and 0 <= self.seed < 2**63):
            raise SamplingError(f"seed (--seed) must be an integer in 0..2**63-1 (or None), got {str(self.seed)[:60]!r}")
        if not isinstance(self.replace, (bool, np.bool_)):
            raise SamplingError(f"replace must be True or False, got {self.replace!r:.60}")
        if self.replace and not cls.supports_replacement:
            raise SamplingError(f"method {self.method!r} never repeats an architecture: drop --with-replacement")
        if self.timeout is not None:
            if isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float)) or not (
                    math.isfinite(self.timeout) and self.timeout > 0):
                raise SamplingError(f"timeout (--timeout) must be a finite number of seconds > 0, got {str(self.timeout)[:60]!r}")
        if isinstance(self.where, str) or not all(isinstance(w, str) for w in self.where):
            raise SamplingError("where must be a sequence of expression strings")
        if self.where and not cls.supports_where:
            raise SamplingError(f"method {self.method!r} does not take --where constraints")
        if not isinstance(self.options, Mapping):
            raise SamplingError(f"options must be a mapping, got {type(self.options).__name__}")
        unknown = sorted(set(self.options) - set(cls.option_names))
        if unknown:
            valid = ", ".join(cls.option_names) or "none"
            raise SamplingError(f"method {self.method!r} takes no option {unknown[0]!r} (it takes: {valid})")
        options = cls.check_options(dict(self.options))
        object.__setattr__(self, "samples", None if self.samples is None else int(self.samples))
        object.__setattr__(self, "seed", None if self.seed is None else int(self.seed))
        object.__setattr__(self, "replace", bool(self.replace))
        object.__setattr__(self, "where", tuple(self.where))
        object.__setattr__(self, "options", types.MappingProxyType(options))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` inverts it."""
        return {
            "method": self.method,
            "samples": self.samples,
            "seed": self.seed,
            "replace": self.replace,
            "timeout": self.timeout,
            "where": list(self.where),
            "options": dict(self.options),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SamplingConfig":
        """The config a :meth:`to_dict` dict (or a sidecar's ``sampling`` object) describes.

        Raises:
            SamplingError: not a mapping, unknown keys, or invalid values.
        """
        if not isinstance(data, Mapping):
            raise SamplingError(f"a sampling config must be a JSON object, got {type(data).__name__}")
        known = {"method", "samples", "seed", "replace", "timeout", "where", "options"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SamplingError(f"unknown sampling config key {unknown[0]!r} (valid: {', '.join(sorted(known))})")
        values = dict(data)
        if "where" in values and isinstance(values["where"], list):
            values["where"] = tuple(values["where"])
        return cls(**values)

    def with_seed(self, seed: int) -> "SamplingConfig":
        """A copy with another seed."""
        return SamplingConfig(**{**self.to_dict(), "seed": seed, "where": self.where})


class Method:
    """Base class of a sampling method: owns its resources, yields array chunks.

    Subclasses set the class attributes, override :meth:`draw` (a generator of
    ``(layers (m,), kernel (m, N, K), stride (m, N, K))`` int64 chunks) and,
    where options need checks, :meth:`check_options`. While or after drawing,
    ``stop_reason`` says why the run ended and ``statistics`` holds
    method-specific figures (JSON-ready numbers).
    """

    name: ClassVar[str] = ""
    #: keys of ``SamplingConfig.options`` the method takes
    option_names: ClassVar[tuple[str, ...]] = ()
    needs_samples: ClassVar[bool] = True
    supports_where: ClassVar[bool] = False
    supports_replacement: ClassVar[bool] = True
    #: one line for ``--help``
    help: ClassVar[str] = ""

    def __init__(self, space: SearchSpace, config: SamplingConfig) -> None:
        self.space = space
        self.config = config
        self.stop_reason: str | None = None
        self.statistics: dict[str, Any] = {}
        #: the exact size of the (constrained) space when the method knows it, else None
        self.count: int | None = None

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Validate and normalise method options (raise :class:`SamplingError`); default: as given."""
        return options

    def draw(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        """Release what the method holds (a solver, a child process)."""

    def __enter__(self) -> "Method":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def draw(space: SearchSpace, config: SamplingConfig) -> Method:
    """A ready-to-run instance of ``config.method`` on ``space``: use it as a context manager.

    A config whose seed is None gets a fresh random seed here; the instance's
    ``config`` records it, so the run can be repeated.

    Raises:
        SamplingError: the config does not fit the space.
    """
    if not isinstance(space, SearchSpace):
        raise SamplingError(f"draw takes a SearchSpace, got {type(space).__name__}")
    if not isinstance(config, SamplingConfig):
        raise SamplingError(f"draw takes a SamplingConfig, got {type(config).__name__}")
    if config.seed is None:
        config = config.with_seed(int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> 1))
    return method_class(config.method)(space, config)


def _api_config(method: str, samples, seed, replace, where, timeout, options) -> tuple[SamplingConfig, Any]:
    """The config for an API call; a Generator seed is turned into an int drawn from it."""
    if isinstance(seed, np.random.Generator):
        seed = int(seed.integers(0, 2**63))
    if isinstance(where, str):
        where = (where,)
    return SamplingConfig(method=method, samples=samples, seed=seed, replace=replace, timeout=timeout,
                          where=tuple(where), options=options)


def sample_arrays(space: SearchSpace, samples: int | None, *, method: str = "exact", seed=0, replace: bool = False,
                  where=(), timeout: float | None = None, **options):
    """Draw architectures with any method into ``(layers (M,), kernel (M, N, K), stride (M, N, K))`` arrays.

    Args:
        space: the search space.
        samples: M (None: every architecture, for methods that enumerate).
        method: a registered method name (:func:`method_names`).
        seed: None (fresh entropy), a non-negative int or a ``numpy.random.Generator``.
        replace: False (default) for distinct architectures, True for independent draws.
        where: a ``--where`` expression or a sequence of them.
        timeout: wall-clock seconds, or None.
        **options: method options (see each method's ``option_names``).

    Raises:
        NasgenError: an invalid setting, or a space the method cannot draw from.
    """
    from nasgen.space.encoding import empty_arrays

    config = _api_config(method, samples, seed, replace, where, timeout, options)
    with draw(space, config) as run:
        chunks = list(run.draw())
    if not chunks:
        return empty_arrays(space)
    return tuple(np.concatenate(parts) for parts in zip(*chunks))


def sample(space: SearchSpace, samples: int | None, *, method: str = "exact", seed=0, replace: bool = False,
           where=(), timeout: float | None = None, **options):
    """Draw architectures with any method as a list of :class:`~nasgen.space.definition.Architecture`.

    The same arguments as :func:`sample_arrays`; the default is exactly uniform
    and distinct, as on the command line.

    >>> from nasgen.space.definition import SearchSpace
    >>> archs = sample(SearchSpace((30,), (20,), 2, 2), 20, seed=1)   # more than the 9 there are
    >>> len(archs), len(set(archs))
    (9, 9)
    """
    from nasgen.space.encoding import arrays_to_architectures

    return arrays_to_architectures(*sample_arrays(space, samples, method=method, seed=seed, replace=replace,
                                                  where=where, timeout=timeout, **options))


# -- the built-in methods --------------------------------------------------------


@register_method("exact")
class ExactMethod(Method):
    """Exactly uniform draws from the dynamic program's tables (:class:`nasgen.space.tables.SpaceTables`).

    ``--where`` constraints go through :class:`nasgen.constraints.constrained.ConstrainedSpace`:
    atoms the tables can absorb restrict them (still exact, no rejection); the
    rest are applied by rejection on draws of the restricted tables, within
    the ``max_draws`` budget. ``statistics`` reports ``draws``, ``accepted``
    and ``acceptance``; a run that exhausts the budget ends with
    ``stop_reason == "budget"`` and keeps what it found. The option
    ``depth_weights`` (``"space"``, the default, or ``"uniform"``: every
    non-empty depth equally likely, then uniform within it; see
    :mod:`nasgen.space.draws`) chooses how the number of layers is drawn.
    """

    help = "exactly uniform, by dynamic programming (default; about a million draws a second)"
    option_names = ("chunk", "max_draws", "model", "depth_weights", "threads")
    supports_where = True

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        chunk = options.get("chunk", 16384)
        if not (is_integer(chunk) and chunk >= 1):
            raise SamplingError(f"option chunk must be a positive integer, got {chunk!r:.60}")
        max_draws = options.get("max_draws", 1)
        if not (is_integer(max_draws) and max_draws >= 1):
            raise SamplingError(f"option max_draws (--max-draws) must be a positive integer, got {str(max_draws)[:60]!r}")
        if "model" in options:
            options = {**options, "model": dict(model_options(options["model"]))}
        if "depth_weights" in options:
            from nasgen.space.draws import check_depth_weights

            check_depth_weights(options["depth_weights"])
        if options.get("threads") is not None:  # None: the cores this process may use; the draws do not depend on it
            from nasgen.space.draws import check_threads

            options = {**options, "threads": check_threads(options["threads"])}
        return {**options, "chunk": int(chunk)} if "chunk" in options else options

    def __init__(self, space: SearchSpace, config: SamplingConfig) -> None:
        from nasgen.space.tables import SpaceTables

        super().__init__(space, config)
        self._deadline = None if config.timeout is None else time.monotonic() + config.timeout
        self.constrained = None
        if config.where:
            from nasgen.constraints.constrained import ConstrainedSpace

            model = config.options.get("model")
            self.constrained = ConstrainedSpace(space, config.where, model=None if model is None else chain_spec(model))
            self.tables = self.constrained.tables
            if self.tables.count == 0:  # refused before any output is opened
                self.constrained._require_nonempty(0)
            self.count = self.constrained.tables.count if self.constrained.all_absorbed else None
        else:
            self.tables = SpaceTables(space)
            self.count = self.tables.count

    def draw(self):
        from nasgen.common.errors import RejectionBudgetError
        from nasgen.constraints.constrained import DEFAULT_MAX_DRAWS

        config = self.config
        chunk = config.options.get("chunk", 16384)
        depth_weights = config.options.get("depth_weights", "space")
        if self.constrained is None:
            samples = self.count if config.samples is None else config.samples
            chunks = self.tables.iter_sample_arrays(samples, seed=config.seed, replace=config.replace, chunk=chunk,
                                                    depth_weights=depth_weights, threads=config.options.get("threads"))
        else:
            samples = self.tables.count if config.samples is None else config.samples
            chunks = self.constrained.iter_sample_arrays(
                samples, seed=config.seed, replace=config.replace, chunk=max(chunk, 65536),
                max_draws=config.options.get("max_draws", DEFAULT_MAX_DRAWS), statistics=self.statistics,
                deadline=self._deadline, depth_weights=depth_weights, threads=config.options.get("threads"))
        try:
            for part in chunks:
                yield part
                # --timeout covers the exact method too: checked between chunks
                if self._deadline is not None and time.monotonic() >= self._deadline:
                    self.stop_reason = "timeout"
                    return
            # rejection (or the enumeration before it) stops by itself at the deadline, between batches
            self.stop_reason = self.statistics.pop("stop", "complete")
        except RejectionBudgetError as exc:
            self.stop_reason = "budget"
            self.statistics["message"] = str(exc)


def model_options(given: Mapping[str, Any]) -> dict[str, Any]:
    """Check the chain model's options for ``params``/``flops`` (defaults are :class:`ModelSpec`'s).

    Raises:
        SamplingError: not a mapping, or an unknown key.
        NasgenError: an invalid value (from :meth:`ModelSpec.from_options`).
    """
    if not isinstance(given, Mapping):
        raise SamplingError(f"option model must be a mapping of model options, got {type(given).__name__}")
    unknown = sorted(set(given) - set(MODEL_OPTIONS))
    if unknown:
        raise SamplingError(f"unknown model option {unknown[0]!r} (valid: {', '.join(MODEL_OPTIONS)})")
    chain_spec(given)
    return dict(given)


def chain_spec(given: Mapping[str, Any]):
    """The :class:`~nasgen.nn.spec.ModelSpec` of a chain with the ``given`` options (validated)."""
    return resolve_model(dict(given))
