"""Snakemake adapter: mean - selected deltas on ECE, NLL, AUROC and AUPRC across pairs."""
from prompt_reliability.s0_base.logs import log_to
from prompt_reliability.s4_report.figures.reliability import write_deltas_figure

with log_to(snakemake.log[0]):
    write_deltas_figure(snakemake.input.table, snakemake.output.figure)
