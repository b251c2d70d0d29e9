"""Snakemake adapter: Figure 4 over all evaluation pairs and their mean."""
from prompt_reliability.logs import log_to
from prompt_reliability.plots.topk import write_topk_pairs_figure

with log_to(snakemake.log[0]):
    write_topk_pairs_figure(snakemake.input.table, snakemake.output.figure)
