"""The memory limit every tier checks its tables, arrays and files against (``NASGEN_MEMORY_LIMIT``)."""

from __future__ import annotations

import os

from nasgen.common.errors import NasgenError

__all__ = ["DEFAULT_MEMORY_LIMIT_BYTES", "human_bytes", "memory_limit_bytes"]

#: Tables larger than this are refused up front unless NASGEN_MEMORY_LIMIT says otherwise.
DEFAULT_MEMORY_LIMIT_BYTES = 4 * 2**30
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def memory_limit_bytes() -> int:
    """The memory limit for tables and sample arrays, read from ``NASGEN_MEMORY_LIMIT`` on each call.

    The variable takes bytes, optionally with a binary unit: ``4G``, ``512M``, ``100000000``.

    Raises:
        NasgenError: the variable is set to something else.

    >>> memory_limit_bytes() == DEFAULT_MEMORY_LIMIT_BYTES or "NASGEN_MEMORY_LIMIT" in os.environ
    True
    """
    text = os.environ.get("NASGEN_MEMORY_LIMIT", "").strip()
    if not text:
        return DEFAULT_MEMORY_LIMIT_BYTES
    number, unit = text, ""
    if text[-1:].upper() == "B":
        number = text[:-1]
    if number[-1:].upper() in _UNITS and number[-1:].isalpha():
        number, unit = number[:-1], number[-1:].upper()
    if not number.isdigit() or len(number) > 15 or int(number) == 0:
        raise NasgenError(
            "NASGEN_MEMORY_LIMIT must be a positive number of bytes with an optional unit K, M, G or T "
            f"(for example 4G or 512M), got {text[:40]!r}"
        )
    return int(number) * _UNITS[unit]


def human_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'``: sizes in messages."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover
