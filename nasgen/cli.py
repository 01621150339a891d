"""The ``nasgen`` command line: the parser and ``main``; every subcommand lives in ``nasgen/commands/``.

Every user mistake ends in one line, ``nasgen: error: ...``, and exit code 2.
Each module in :data:`COMMAND_MODULES` defines ``register(subparsers)`` and
imports what it needs (z3, JAX) inside its handler, so ``nasgen count``
starts fast.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from typing import Sequence

from nasgen.space import NasgenError

#: Modules that add subcommands: each defines ``register(subparsers)``.
COMMAND_MODULES = (
    "nasgen.commands.count",
    "nasgen.commands.sample",
    "nasgen.commands.adj",
    "nasgen.commands.show",
    "nasgen.commands.train_cmds",
    "nasgen.commands.cnf",
    "nasgen.commands.check",
    "nasgen.commands.bench",
)


#: optional packages -> (the name to install, the extra that brings it)
OPTIONAL_PACKAGES = {
    "z3": ("z3-solver", "solver"),
    "jax": ("jax", "train"),
    "jaxlib": ("jax", "train"),
    "flax": ("flax", "train"),
    "optax": ("optax", "train"),
    "orbax": ("orbax-checkpoint", "train"),
    "tqdm": ("tqdm", "train"),
    "matplotlib": ("matplotlib", "train"),
    "sklearn": ("scikit-learn", "train"),
    "pyunigen": ("pyunigen", "samplers"),
    "pycmsgen": ("pycmsgen", "samplers"),
    "pyapproxmc": ("pyapproxmc", "samplers"),
    "dask": ("dask[distributed]", "samplers"),
    "distributed": ("dask[distributed]", "samplers"),
}


def missing_package_message(exc: ModuleNotFoundError) -> str | None:
    """One line telling how to install the optional package ``exc`` names, or None if it is not one of ours."""
    top = (exc.name or "").split(".")[0]
    if top not in OPTIONAL_PACKAGES:
        return None
    package, extra = OPTIONAL_PACKAGES[top]
    return f"this command needs the optional package {package}: pip install \"nasgen[{extra}]\""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit code 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"nasgen: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    from nasgen import __version__

    parser = _Parser(
        prog="nasgen",
        description="Neural-architecture search spaces from the arithmetic of convolution.",
    )
    parser.add_argument("--version", action="version", version=f"nasgen {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _terminate(signum, frame):  # pragma: no cover - exercised through subprocess tests
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 success, 2 user error, 130 interrupted)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.command_line = ["nasgen", *argv]  # recorded beside the outputs
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return int(args.handler(args) or 0)
    except NasgenError as exc:
        print(f"nasgen: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nasgen: interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as exc:
        message = missing_package_message(exc)
        if message is None:
            raise
        print(f"nasgen: error: {message}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
