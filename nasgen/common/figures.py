"""Saving matplotlib figures for papers: PNG at 200 dpi or vector PDF/SVG, written atomically.

Shared by the training reports (:mod:`nasgen.train.report`) and ``nasgen bench``
(:mod:`nasgen.samplers.benchmark`). Nothing here imports matplotlib; figures are ``matplotlib.figure.Figure`` objects, never
pyplot's, so a caller's backend and pyplot state are left alone (``Figure.savefig`` picks the writer for the format).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from nasgen.common.atomic import write_atomic
from nasgen.common.errors import NasgenError

__all__ = ["FIGURE_FORMATS", "PNG_DPI", "check_figure_format", "save_figure"]

#: The formats ``--figure-format`` takes: one raster, two vector.
FIGURE_FORMATS = ("png", "pdf", "svg")

#: Resolution of PNG figures: 200 dots per inch, sharp in print at a column's width.
PNG_DPI = 200


def check_figure_format(figure_format: Any) -> str:
    """``figure_format`` if it is one of :data:`FIGURE_FORMATS`.

    Raises:
        NasgenError: any other value (one line naming the valid ones).

    >>> check_figure_format("pdf")
    'pdf'
    """
    if figure_format not in FIGURE_FORMATS:
        raise NasgenError(f"figure format {figure_format!r} is not one of {', '.join(FIGURE_FORMATS)}")
    return figure_format


def save_figure(figure: Any, path: str | os.PathLike, figure_format: str = "png") -> Path:
    """Write ``figure`` to ``path`` in ``figure_format``, replacing any old file atomically.

    PNG is drawn at :data:`PNG_DPI`; PDF and SVG are vector (their text stays
    text) and carry no creation date, so the same figure gives the same bytes.

    Args:
        figure: a ``matplotlib.figure.Figure``.
        path: the file to write (its suffix is not looked at).
        figure_format: one of :data:`FIGURE_FORMATS`.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        NasgenError: an unknown format, or a path that cannot be written (target unchanged).
    """
    check_figure_format(figure_format)
    metadata = {"png": None, "pdf": {"CreationDate": None}, "svg": {"Date": None}}[figure_format]
    buffer = io.BytesIO()
    figure.savefig(buffer, format=figure_format, dpi=PNG_DPI, metadata=metadata)
    write_atomic(path, buffer.getvalue())
    return Path(path)
