"""Figures (matplotlib/seaborn, PNG). One module per analysis; shared style and saving here."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: jobs run without a display
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from prompt_reliability.s0_base.io import atomic_path  # noqa: E402

DPI = 150


def style() -> None:
    sns.set_theme(context="paper", style="whitegrid", palette="colorblind")


def save_figure(fig: plt.Figure, path: str | os.PathLike) -> None:
    """Write ``fig`` as PNG atomically and close it."""
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
