"""Snakemake adapter: mean - selected deltas on ECE, NLL, AUROC and AUPRC across pairs."""
from prompt_reliability.logs import log_to
from prompt_reliability.plots.reliability import write_deltas_figure

with log_to(snakemake.log[0]):
    write_deltas_figure(snakemake.input.table, snakemake.output.figure)
