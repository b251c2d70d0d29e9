"""Snakemake adapter: Figure 4 of one evaluation pair."""
from prompt_reliability.s0_base.logs import log_to
from prompt_reliability.s4_report.figures.topk import write_topk_pair_figure

with log_to(snakemake.log[0]):
    write_topk_pair_figure(snakemake.input.table, snakemake.output.figure)
