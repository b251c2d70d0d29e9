"""Snakemake adapter: D10 - D1 gaps of every pair and family view."""
from prompt_reliability.s0_base.logs import log_to
from prompt_reliability.s4_report.figures.fragility import write_gaps_figure

with log_to(snakemake.log[0]):
    write_gaps_figure(snakemake.input.table, snakemake.output.figure)
