"""Snakemake adapter: rates by cross-prompt spread decile of one evaluation pair."""
from prompt_reliability.s0_base.logs import log_to
from prompt_reliability.s4_report.figures.fragility import write_decile_figure

with log_to(snakemake.log[0]):
    write_decile_figure(snakemake.input.table, snakemake.output.figure)
