"""Snakemake adapter: build one dataset manifest."""
from pathlib import Path

from prompt_reliability.s0_base import io
from prompt_reliability.s1_data.datasets import build_manifest, split_counts
from prompt_reliability.s0_base.logs import log_to

with log_to(snakemake.log[0]) as log:
    manifest = build_manifest(
        snakemake.wildcards.dataset,
        snakemake.params.dataset_config,
        Path(snakemake.params.image_dir),
        snakemake.input.get("score_files", []),
    )
    io.write_parquet(manifest, snakemake.output.manifest)
    log.info("wrote %s: %s", snakemake.output.manifest, split_counts(manifest))
