"""nasgen's version, read from the installed distribution's metadata."""

from importlib import metadata

try:
    __version__ = metadata.version("nasgen")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree that was never installed
    __version__ = "0+unknown"
