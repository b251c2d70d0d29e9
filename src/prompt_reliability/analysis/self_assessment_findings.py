"""UnSAF's headline findings (sections 4.1-4.2) recomputed from this run's tables, as counts the claims check reads.

Table ``self_assessment_findings``: one row per finding, ``finding, statistic, value, wins, pairs, note``;
``wins`` of ``pairs`` comparisons hold (workflow/claims/unsaf.yaml). The open-ended setting and the
``default`` answering variant unless said otherwise; rows with undefined values are left out.

- ``footrule``: the mean Spearman's footrule between datasets of UnF1 (each setting) against each
  conventional metric of the task answers (Brier, MacroCE, ECE, top-label MCE): a win is a conventional
  metric whose mean footrule is above UnF1's (mean over settings); pairs = conventional metrics with a
  footrule; value = UnF1's mean footrule.
- ``cv_every_n`` and ``cv``: per model, the CV of ECE (task answers) and of UnF1 (open setting), means
  over datasets, at each sample size both have (images for UnF1, items for ECE; a CV of 0, the full set,
  left out). ``cv_every_n``: a win is ECE's CV above UnF1's at every size (the paper's Fig. 3);
  ``cv``: a win is a ratio of the mean CVs >= 10 (the paper's text: "one to two orders of magnitude");
  value = the median ratio over models.
- ``scale``: per dataset, Spearman's rho of UnF1 with the model size over the models whose size is
  public (:func:`spearman`; exact permutation p-value up to 8 models): a win is rho > 0 with p < 0.05;
  value = the mean rho.
- ``instruction``: per (base, instruction-tuned) pair and dataset: a win is a lower timidity of the
  instruction-tuned model; value = the mean timidity difference (instruct - base).
- ``prompt``: per model and dataset, the model is *audacious* when its FA rate ``FA / (FA + TU)`` is
  above its FU rate ``FU / (FU + TA)`` under ``default``, else *timid*; the cautious variant for the
  audacious, the encouraging one for the timid: a win is the expected trade (audacious: FA rate down
  and FU rate up; timid: FU rate down and FA rate up); value = the mean change of UnF1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from prompt_reliability.base import tables

CONVENTIONAL = ("brier", "macro_ce", "ece", "mce_top")
SCHEMA = {"finding": pl.String, "statistic": pl.String, "value": pl.Float64, "wins": pl.Int64, "pairs": pl.Int64,
          "note": pl.String}


def _row(finding: str, statistic: str, value: float, wins: int, pairs: int, note: str = "") -> dict[str, Any]:
    return {"finding": finding, "statistic": statistic, "value": value, "wins": wins, "pairs": pairs,
            "note": note or ("" if pairs else "nothing to compare in this run")}


def _defined(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    return frame.filter(pl.col(column).is_not_null() & pl.col(column).is_not_nan())


def footrule_finding(stability: pl.DataFrame) -> dict[str, Any]:
    means = {m: float(g["footrule"].mean()) for (m,), g in stability.group_by("metric") if g.height}
    unf1 = [v for m, v in means.items() if m in ("unf1_mc", "unf1_open")]
    rivals = {m: means[f"{m}_task"] for m in CONVENTIONAL if f"{m}_task" in means}
    if not unf1 or not rivals:
        return _row("footrule", "conventional metrics with a higher mean footrule than UnF1", float("nan"), 0, 0)
    value = float(np.mean(unf1))
    return _row("footrule", "conventional metrics with a higher mean footrule than UnF1", value,
                sum(v > value for v in rivals.values()), len(rivals),
                "; ".join(f"{m} {v:.2f}" for m, v in rivals.items()))


def _cv_pairs(sample_size: pl.DataFrame) -> dict[str, list[tuple[float, float]]]:
    """Per model, (ECE CV, UnF1 CV) at each sample size both have, means over datasets (a CV of 0 is the full set
    drawn every time, n = all, not robustness: left out)."""
    def mean_cv(metric: str) -> pl.DataFrame:
        rows = _defined(sample_size.filter(pl.col("metric") == metric), "cv").filter(pl.col("cv") > 1e-9)
        return rows.group_by("model", "n").agg(pl.col("cv").mean())

    both = mean_cv("ece_task").join(mean_cv("unf1_open"), on=["model", "n"], suffix="_unf1").sort("model", "n")
    return {m: list(zip(g["cv"], g["cv_unf1"])) for (m,), g in both.group_by("model", maintain_order=True)}


def cv_findings(sample_size: pl.DataFrame) -> list[dict[str, Any]]:
    pairs = _cv_pairs(sample_size)
    ratios = [float(np.mean([a for a, _ in v]) / np.mean([b for _, b in v])) for v in pairs.values()]
    value = float(np.median(ratios)) if ratios else float("nan")
    return [_row("cv_every_n", "models whose ECE CV is above their UnF1 CV at every sample size", value,
                 sum(all(a > b for a, b in v) for v in pairs.values()), len(pairs)),
            _row("cv", "models whose ECE CV is >= 10x their UnF1 CV (mean over sample sizes)", value,
                 sum(r >= 10 for r in ratios), len(ratios))]


EXACT_UP_TO = 8  # models: up to this many, the p-value enumerates every permutation (n! <= 40320)


def spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Spearman's rho (:func:`scipy.stats.spearmanr`) and its two-sided p-value, exact by enumerating every
    permutation of ``y`` for up to :data:`EXACT_UP_TO` points (scipy's t approximation gives p = 0 for a
    perfect rank order of three points, whose exact p is 1/3)."""
    from scipy.stats import rankdata, spearmanr

    result = spearmanr(x, y)
    rho, p = float(result.statistic), float(result.pvalue)
    n = len(x)
    if math.isnan(rho) or n > EXACT_UP_TO:
        return rho, p
    import itertools

    rx, ry = rankdata(x), rankdata(y)
    centred_x, centred_y = rx - rx.mean(), ry - ry.mean()
    norm = math.sqrt(float((centred_x ** 2).sum() * (centred_y ** 2).sum()))
    perms = np.array(list(itertools.permutations(range(n))))
    rhos = (centred_y[perms] @ centred_x) / norm
    return rho, float(np.mean(np.abs(rhos) >= abs(rho) - 1e-12))


def scale_finding(table: pl.DataFrame, scales: Mapping[str, float]) -> dict[str, Any]:
    statistic = "datasets where UnF1 rises with model size (Spearman rho > 0, p < 0.05)"
    rows = _defined(table.filter((pl.col("setting") == "open") & (pl.col("variant") == "default")
                                 & pl.col("model").is_in(list(scales))), "unf1")
    rhos, wins = [], 0
    for (_,), part in rows.group_by("dataset", maintain_order=True):
        if part.height < 3:
            continue
        rho, p = spearman([scales[m] for m in part["model"]], part["unf1"].to_numpy())
        if math.isnan(rho):
            continue
        rhos.append(rho)
        wins += rho > 0 and p < 0.05
    return _row("scale", statistic, float(np.mean(rhos)) if rhos else float("nan"), wins, len(rhos))


def instruction_finding(table: pl.DataFrame, pairs: Sequence[Mapping[str, str]]) -> dict[str, Any]:
    statistic = "(base, instruction-tuned) pairs x datasets where the tuned model is more timid (lower timidity)"
    rows = _defined(table.filter((pl.col("setting") == "open") & (pl.col("variant") == "default")), "timidity")
    timidity = {(r["model"], r["dataset"]): r["timidity"] for r in rows.iter_rows(named=True)}
    diffs = [timidity[(p["instruct"], d)] - timidity[(p["base"], d)] for p in pairs
             for d in sorted({d for _, d in timidity}) if (p["base"], d) in timidity and (p["instruct"], d) in timidity]
    return _row("instruction", statistic, float(np.mean(diffs)) if diffs else float("nan"),
                sum(x < 0 for x in diffs), len(diffs))


def _rates(row: Mapping[str, Any]) -> tuple[float, float]:
    fa = row["fa"] / (row["fa"] + row["tu"]) if row["fa"] + row["tu"] else float("nan")
    fu = row["fu"] / (row["fu"] + row["ta"]) if row["fu"] + row["ta"] else float("nan")
    return fa, fu


def prompt_finding(table: pl.DataFrame) -> dict[str, Any]:
    statistic = "models x datasets where the prompt variant trades FA for FU (audacious: cautious; timid: encouraging)"
    rows = {(r["model"], r["dataset"], r["variant"]): r for r in table.filter(pl.col("setting") == "open").iter_rows(
        named=True)}
    wins, changes = 0, []
    for (model, dataset, variant), base in rows.items():
        if variant != "default":
            continue
        fa, fu = _rates(base)
        if math.isnan(fa) or math.isnan(fu):
            continue
        audacious = fa > fu
        other = rows.get((model, dataset, "cautious" if audacious else "encouraging"))
        if other is None:
            continue
        fa2, fu2 = _rates(other)
        if math.isnan(fa2) or math.isnan(fu2):
            continue
        wins += (fa2 < fa and fu2 > fu) if audacious else (fu2 < fu and fa2 > fa)
        changes.append(other["unf1"] - base["unf1"])
    return _row("prompt", statistic, float(np.nanmean(changes)) if changes else float("nan"), wins, len(changes))


def findings(table: pl.DataFrame, stability: pl.DataFrame, sample_size: pl.DataFrame, *, scales: Mapping[str, float],
             instruction_pairs: Sequence[Mapping[str, str]]) -> pl.DataFrame:
    """The findings table (module docstring)."""
    rows = [footrule_finding(stability), *cv_findings(sample_size), scale_finding(table, scales),
            instruction_finding(table, instruction_pairs), prompt_finding(table)]
    return pl.DataFrame(rows, schema=SCHEMA)


def write_findings(self_assessment: str, stability: str, sample_size: str, table: str, csv: str, md: str, *,
                   scales: Mapping[str, float], instruction_pairs: Sequence[Mapping[str, str]]) -> pl.DataFrame:
    """Rule ``self_assessment_findings``."""
    result = findings(pl.read_parquet(self_assessment), pl.read_parquet(stability), pl.read_parquet(sample_size),
                      scales=scales, instruction_pairs=instruction_pairs)
    return tables.write_table(result, table, csv, md, "UnSAF findings recomputed on this run")
