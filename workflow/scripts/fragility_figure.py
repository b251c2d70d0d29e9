"""Snakemake adapter: rates by cross-prompt spread decile of one evaluation pair."""
from prompt_reliability.logs import log_to
from prompt_reliability.plots.fragility import write_decile_figure

with log_to(snakemake.log[0]):
    write_decile_figure(snakemake.input.table, snakemake.output.figure)
