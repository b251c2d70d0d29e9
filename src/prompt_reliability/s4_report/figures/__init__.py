"""Figures (PNG), one module per analysis; shared style, figure creation and saving here.

Figures are built with matplotlib's object API (``Figure``, never ``pyplot``): analysis jobs run as
threads of the Snakemake process, and pyplot's global figure registry is not thread-safe.
The style is set once, when this package is imported.
"""

from __future__ import annotations

import os
from pathlib import Path

import seaborn as sns
from matplotlib.figure import Figure

from prompt_reliability.s0_base.io import atomic_path

DPI = 150

sns.set_theme(context="paper", style="whitegrid", palette="colorblind")


def subplots(nrows: int = 1, ncols: int = 1, **kwargs) -> tuple[Figure, object]:
    """A new figure (not registered with pyplot) and its axes, like ``pyplot.subplots``."""
    fig = Figure(figsize=kwargs.pop("figsize", None))
    return fig, fig.subplots(nrows, ncols, **kwargs)


def save_figure(fig: Figure, path: str | os.PathLike) -> None:
    """Write ``fig`` as PNG atomically."""
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
