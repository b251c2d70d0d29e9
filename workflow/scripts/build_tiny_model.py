"""Snakemake adapter: build one tiny offline VLM into its model folder."""
from prompt_reliability.s0_base.logs import log_to
from prompt_reliability.s2_scoring.tiny_models import build_tiny_model

with log_to(snakemake.log[0]) as log:
    spec = build_tiny_model(snakemake.output.model, **snakemake.params.tiny)
    log.info("built %s: %s", snakemake.output.model, spec)
