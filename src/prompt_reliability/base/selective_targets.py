"""Selective-prediction targets and coverage grid from config, checked before any job runs.

Kept free of heavy imports: the workflow imports it at parse time (``selective.smk``) so that a
target naming a missing range or an off-grid coverage fails before any job, naming the config key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from prompt_reliability.base.errors import ConfigError

RISKS = ("error", "nll", "ece")
GRID_TOL = 1e-9  # two coverages closer than this are the same grid point
KEY = "analysis.selective"


@dataclass(frozen=True)
class Target:
    """One summary of a risk-coverage curve: an AURC over ``[low, high]`` or the risk at ``low == high``."""

    name: str
    risk: str
    low: float
    high: float

    @property
    def is_point(self) -> bool:
        return self.low == self.high


def coverage_grid(values: Sequence[float]) -> np.ndarray:
    """Sorted grid without repeats (the default lists 0.90 and 0.95 twice)."""
    grid = np.sort(np.asarray(values, dtype=np.float64))
    return grid[np.concatenate([[True], np.diff(grid) > GRID_TOL])]


def parse_targets(names: Sequence[str], ranges: Mapping[str, Sequence[float]], coverages: Sequence[float]) -> list[Target]:
    """Targets from their names, checked against the AURC ranges and the coverage grid."""
    grid = coverage_grid(coverages)

    def on_grid(c: float) -> bool:
        return bool(np.any(np.abs(grid - c) <= GRID_TOL))

    for name, bounds in ranges.items():
        low, high = bounds
        if not low < high:
            raise ConfigError(f"config key '{KEY}.aurc_ranges.{name}' is {list(bounds)}; it needs [low, high] with low < high")
        if not (on_grid(low) and on_grid(high)):
            raise ConfigError(f"config key '{KEY}.aurc_ranges.{name}' is {list(bounds)}, but both ends must be points of "
                              f"'{KEY}.coverage' (AURC integrates over grid points only); add them to the grid")
    targets = []
    for name in names:
        aurc = re.fullmatch(rf"aurc_({'|'.join(RISKS)})_([a-z0-9]+)", name)
        point = re.fullmatch(rf"({'|'.join(RISKS)})@(\d+(?:\.\d+)?)", name)
        if aurc:
            if aurc[2] not in ranges:
                raise ConfigError(f"config key '{KEY}.targets' names {name!r}, but range {aurc[2]!r} is not under "
                                  f"'{KEY}.aurc_ranges' (have {sorted(ranges)})")
            targets.append(Target(name, aurc[1], float(ranges[aurc[2]][0]), float(ranges[aurc[2]][1])))
        elif point:
            coverage = float(point[2]) / 100.0
            if not on_grid(coverage):
                raise ConfigError(f"config key '{KEY}.targets' names {name!r}, but coverage {coverage:g} is not in "
                                  f"'{KEY}.coverage'; add it to the grid")
            targets.append(Target(name, point[1], coverage, coverage))
        else:
            raise ConfigError(f"config key '{KEY}.targets' has {name!r}; targets are 'aurc_<risk>_<range>' or "
                              f"'<risk>@<percent>' with risk one of {list(RISKS)}")
    return targets


def check_selective_config(settings: Mapping[str, Any]) -> None:
    """Fail at parse time (before any job) when targets, ranges and grid do not fit together."""
    parse_targets(settings["targets"], settings["aurc_ranges"], settings["coverage"])
