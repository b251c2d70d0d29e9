"""Figures (PNG), one module per analysis; shared style, figure creation and saving here.

Figures are built with matplotlib's object API (``Figure``, never ``pyplot``): pyplot's global
figure registry is not thread-safe, and the functions here may be called from threads (a library
user's; in a workflow each job runs alone in a worker process). Layout
is matplotlib's constrained layout, computed once while saving (no second ``bbox_inches="tight"``
pass). The style is applied with the first figure (:func:`new_figure`).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from prompt_reliability.base.io import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 130
# Drawing is not thread-safe in matplotlib (its mathtext parser, used for log-scale tick labels,
# keeps shared state): threads of one process draw one figure at a time.
_DRAWING = threading.Lock()
# Colour-blind-safe palette (the "colorblind" order of common plotting libraries).
PALETTE = ["#0173b2", "#de8f05", "#029e73", "#d55e00", "#cc78bc", "#ca9161", "#fbafe4", "#949494", "#ece133", "#56b4e9"]
GOOD, BAD = PALETTE[0], PALETTE[1]

_STYLE = {
    "axes.grid": True,
    "grid.color": "0.9",
    "axes.edgecolor": "0.7",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "font.size": 9,
    "axes.titlesize": 9.5,
    "axes.labelsize": 9,
    "figure.titlesize": 11,
    "legend.frameon": False,
    "legend.fontsize": 8,
    "lines.markersize": 4,
}
_styled = False


def new_figure(**kwargs) -> Figure:
    """A matplotlib ``Figure`` (not registered with pyplot) in the house style.

    matplotlib is imported here, on the first figure, not with this package: the Snakemake process
    imports every rule's module while it parses the workflow, and draws nothing itself.
    """
    global _styled
    import matplotlib
    from matplotlib.figure import Figure

    if not _styled:
        from cycler import cycler

        matplotlib.rcParams.update({**_STYLE, "axes.prop_cycle": cycler(color=PALETTE)})
        _styled = True
    return Figure(**kwargs)


def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] | None = None, **kwargs) -> tuple[Figure, object]:
    """A new figure (not registered with pyplot, constrained layout) and its axes, like ``pyplot.subplots``."""
    fig = new_figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots(nrows, ncols, **kwargs)


def pair_labels(rows, splits_vary: bool | None = None) -> list[str]:
    """``model / dataset`` per (model, dataset, split) row, ``/ split`` added only when splits differ."""
    rows = list(rows)
    if splits_vary is None:
        splits_vary = len({r[2] for r in rows}) > 1
    return [f"{m} / {d}" + (f" / {s}" if splits_vary else "") for m, d, s in rows]


def save_figure(fig: Figure, path: str | os.PathLike) -> None:
    """Write ``fig`` as PNG atomically, cropped to what is drawn: legends placed beside the axes
    (answer types, top-k over pairs) are kept whole instead of cut at the figure's edge."""
    with _DRAWING, atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.1)
