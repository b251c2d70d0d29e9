"""Moved to :mod:`prompt_reliability.s0_base.selective_targets` (checked with the config at parse time)."""

from prompt_reliability.s0_base.selective_targets import GRID_TOL, KEY, RISKS, Target, check_selective_config, coverage_grid, parse_targets

__all__ = ["GRID_TOL", "KEY", "RISKS", "Target", "check_selective_config", "coverage_grid", "parse_targets"]
