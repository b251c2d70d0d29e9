"""Snakemake adapter: risk-coverage figure of one evaluation pair (full range and zooms)."""
from prompt_reliability.s0_base.logs import log_to
from prompt_reliability.s4_report.figures.selective import write_risk_coverage_figure

with log_to(snakemake.log[0]):
    w = snakemake.wildcards
    write_risk_coverage_figure(
        snakemake.input.curves,
        snakemake.output.figure,
        snakemake.params.analysis["selective"]["aurc_ranges"],
        title=f"{w.model} / {w.dataset} / {w.split}",
    )
