"""REPORT.md's section of the simulated VSCBench study (tables: analysis/vscbench_findings.py)."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from prompt_reliability.base import tables


def vscbench_markdown(findings: pl.DataFrame, tradeoff: pl.DataFrame | None, figures: Sequence[str]) -> str:
    """The findings as counts, the paper's IAR configuration against the uncalibrated model, the figures."""
    lines = ["## VSCBench at its own scale (simulated)", "",
             ("Simulated VLMs (`safety_simulation`, prompt_reliability.scoring.safety_simulator) answer a simulated "
              "VSCBench; their judged responses give SRA per subset, category and method, and the paper's findings "
              "are recomputed as counts (claims: workflow/claims/vscbench.yaml). The profiles are shaped after the "
              "paper's printed figures: this checks that the pipeline recovers the effects the simulator builds in, "
              "not how real models behave."), "",
             tables.to_markdown(findings.select("finding", "wins", "pairs", "value", "statistic")), ""]
    if tradeoff is not None:
        keep = tradeoff.filter(pl.col("method").is_in(["none", "cot", "pe", "fewshot-1", "fewshot-2", "iar-L14-s1.5"]))
        lines += ["Image-centric SRA and helpfulness per method (IAR at the paper's layer 14, strength 1.5; the whole "
                  "sweep is in `vscbench_tradeoff`, `pareto` marks each model's front):", "",
                  tables.to_markdown(keep.select("model", "method", "sra_s", "sra_u", "sra_a", "helpfulness",
                                                 "d_helpfulness", "pareto")), ""]
    lines += [f"![{f}]({f})" for f in figures]
    return "\n".join(lines) + "\n"
