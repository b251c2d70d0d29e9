"""Snakemake adapter: assemble and validate the score matrix of one (model, dataset)."""
from prompt_reliability.s0_base.logs import log_to
from prompt_reliability.s2_scoring.matrix import write_matrix

with log_to(snakemake.log[0]) as log:
    matrix = write_matrix(snakemake.input.manifest, snakemake.input.caches, snakemake.output.matrix)
    log.info("wrote %s: %d samples x %d prompts", snakemake.output.matrix, matrix.height, matrix.width - 3)
