"""Snakemake adapter: head-to-head of calibrated methods against the untreated mean (Table 3)."""
from prompt_reliability.s3_analysis.calibration import write_calibration_summary
from prompt_reliability.s0_base.logs import log_to

with log_to(snakemake.log[0]):
    write_calibration_summary(snakemake.input.table, snakemake.output.csv, snakemake.output.md)
