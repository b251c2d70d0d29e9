"""Snakemake adapter: Figure 4 over all evaluation pairs and their mean."""
from prompt_reliability.s0_base.logs import log_to
from prompt_reliability.s4_report.figures.topk import write_topk_pairs_figure

with log_to(snakemake.log[0]):
    write_topk_pairs_figure(snakemake.input.table, snakemake.output.figure)
