"""Snakemake adapter: concatenate per-pair pieces into one CSV + Markdown table."""
from pathlib import Path

from prompt_reliability.s0_base.logs import log_to
from prompt_reliability.s4_report.tables import assemble_table

with log_to(snakemake.log[0]):
    assemble_table(snakemake.input.pieces, snakemake.output.csv, snakemake.output.md, title=Path(snakemake.output.csv).stem)
