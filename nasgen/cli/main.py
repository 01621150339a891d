"""The ``nasgen`` command line: the parser and ``main``; every subcommand lives in ``nasgen/commands/``.

Every user mistake ends in one line, ``nasgen: error: ...``, and exit code 2.
Each module in :data:`COMMAND_MODULES` defines ``register(subparsers)`` and
imports what it needs (z3, JAX) inside its handler, so ``nasgen count``
starts fast.
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import signal
import sys
from typing import Sequence

from nasgen.common.errors import NasgenError

#: Modules that add subcommands: each defines ``register(subparsers)``.
COMMAND_MODULES = (
    "nasgen.cli.count",
    "nasgen.cli.sample",
    "nasgen.cli.adj",
    "nasgen.cli.show",
    "nasgen.cli.train",
    "nasgen.cli.cnf",
    "nasgen.cli.check",
    "nasgen.cli.bench",
    "nasgen.cli.search",
    "nasgen.cli.export",
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
    "optuna": ("optuna", "optuna"),
    "pyunigen": ("pyunigen", "samplers"),
    "pycmsgen": ("pycmsgen", "samplers"),
    "pyapproxmc": ("pyapproxmc", "samplers"),
    "dask": ("dask[distributed]", "samplers"),
    "distributed": ("dask[distributed]", "samplers"),
    "onnx": ("onnx", "export"),
    "onnxruntime": ("onnxruntime", "export"),
    "pyarrow": ("pyarrow", "tables"),
    "pandas": ("pandas", "tables"),
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
    from nasgen.common.version import __version__

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


#: exit code for a closed standard output, as a shell reports a process killed by SIGPIPE (128 + 13)
EXIT_CLOSED_PIPE = 141


def _silence_stdout() -> None:
    """Point file descriptor 1 at /dev/null so the interpreter's final flush of a closed or full stdout is quiet.

    Python's documentation of SIGPIPE recommends this for BrokenPipeError.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        pass  # stdout is not a file descriptor (an in-process caller's StringIO): nothing will flush it


def _say(message: str) -> None:
    try:
        print(message, file=sys.stderr)
    except (OSError, ValueError):
        pass  # stderr itself is closed: the exit code still tells


def _flush_stdout(report: bool = True) -> int | None:
    """Flush stdout; the exit code to use when that fails (with one error line if ``report``), else None."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_CLOSED_PIPE
    except (OSError, ValueError) as exc:
        _silence_stdout()
        if report:
            _say(f"nasgen: error: cannot write standard output: {getattr(exc, 'strerror', None) or exc}")
        return 2
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code.

    0 success, 2 user error (one line on stderr), 130 interrupted, 141 standard output closed.
    """
    try:
        parser = build_parser()
    except KeyboardInterrupt:  # Ctrl-C while the command modules load
        _say("nasgen: interrupted")
        return 130
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.command_line = ["nasgen", *argv]  # recorded beside the outputs
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        code = int(args.handler(args) or 0)
        return _flush_stdout() or code
    except NasgenError as exc:
        _flush_stdout(report=False)  # one line: the error already says what went wrong
        _say(f"nasgen: error: {exc}")
        return 2
    except KeyboardInterrupt:
        _flush_stdout(report=False)
        _say("nasgen: interrupted")
        return 130
    except ModuleNotFoundError as exc:
        message = missing_package_message(exc)
        if message is None:
            raise
        _say(f"nasgen: error: {message}")
        return 2
    except BrokenPipeError:
        # the reader of our standard output went away (nasgen sample | head): a quiet exit
        _silence_stdout()
        return EXIT_CLOSED_PIPE
    except OSError as exc:
        # an I/O fault no command turned into a message of its own: name the file and the reason
        if getattr(exc, "filename", None):
            _flush_stdout(report=False)
            _say(f"nasgen: error: cannot access {exc.filename}: {exc.strerror or exc}")
            return 2
        # no file named: almost always a print to a full or failing standard output, which a flush confirms
        code = _flush_stdout()
        if code is None:
            _say(f"nasgen: error: {exc.strerror or exc}")
        return code or 2
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
