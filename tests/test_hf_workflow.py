"""The hf path through Snakemake: tiny model built by the workflow, scored, killed, resumed, provenance kept."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import polars as pl
import pytest
from conftest import (
    BIN,
    REPO,
    dry_run_jobs,
    run_snakemake,
    snakemake_env,
    torch_threads,
    validated_model,
    write_config,
)
from polars.testing import assert_frame_equal

from prompt_reliability.base import io
from prompt_reliability.scoring.cache import score_to_cache

pytestmark = pytest.mark.workflow
pytest.importorskip("transformers")

TINY = {"arch": "qwen2_vl", "seed": 3}
CONFIG = {
    "datasets": {"synth": {"adapter": "synthetic", "seed": 1, "image_size": 32,
                           "splits": {"train": {"n": 16}, "test": {"n": 16}}}},
    "models": {"tiny": {"backend": "hf", "tiny": TINY, "chunk_size": 4, "batch_size": 3}},
    "lock": {"dataset": "synth"},
    "evaluate": [{"dataset": "synth"}],
}
BLOCKED_SAMPLE = 8  # chunks [0, 4) and [4, 8) finish, then the job waits on this sample's image


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory):
    """The tiny hf model's scoring killed mid-job, then resumed: ``(workdir, chunks done per family at the kill)``.

    The tests below each read one consequence of it."""
    workdir = tmp_path_factory.mktemp("hf-kill")
    config_file = write_config(workdir, CONFIG)
    # the manifest and its check (which opens every image) come first: the check is an ancient()
    # input of scoring, so the blocked image below stops the scoring jobs only
    run_snakemake(workdir, "--configfile", str(config_file), "--cores", "1", "results/data/synth.parquet",
                  "results/checks/synth.json")
    manifest = pl.read_parquet(workdir / "results/data/synth.parquet")

    # Freeze every scoring job at a known point: the image of one sample becomes a named pipe, whose
    # open() blocks until someone writes to it. Then kill Snakemake and its jobs, as a crash would.
    image = workdir / manifest["image_path"][BLOCKED_SAMPLE]
    png = image.read_bytes()
    image.unlink()
    os.mkfifo(image)
    cmd = [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--configfile", str(config_file),
           "--cores", "2"]
    crashed = subprocess.Popen(cmd, cwd=workdir, env=snakemake_env(workdir), start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    chunks = workdir / "results/scores/.chunks/tiny/synth"
    deadline = time.monotonic() + 300
    while not any(len(list(family.glob("*/chunk-*.parquet"))) == 2 for family in chunks.glob("*")):
        assert crashed.poll() is None, "snakemake stopped before the scoring job reached the blocked image"
        assert time.monotonic() < deadline, "no scoring job reached the blocked image in time"
        time.sleep(0.1)
    os.killpg(crashed.pid, signal.SIGKILL)
    crashed.wait()
    killed = {family.name: len(list(family.glob("*/chunk-*.parquet"))) for family in chunks.glob("*")}
    assert max(killed.values()) == 2 and not list((workdir / "results/scores/tiny/synth").glob("*.parquet"))
    image.unlink()
    image.write_bytes(png)

    run_snakemake(workdir, "--configfile", str(config_file), "--unlock")
    # the scoring stage and the first analysis on it (the embedded-default test runs every analysis
    # on tiny hf scores); targets first: --configfile takes every word after it
    run_snakemake(workdir, *RESUMED, "--configfile", str(config_file), "--cores", "2", "--rerun-incomplete")
    return workdir, killed


RESUMED = ["scores", "results/tables/per_prompt.csv"]


def test_the_resumed_run_is_complete_and_leaves_no_checkpoints(resumed_run):
    workdir, _ = resumed_run
    assert dry_run_jobs(workdir, *RESUMED, "--configfile", str(workdir / "config.yaml")) == {}
    assert not list((workdir / "results/scores/.chunks").rglob("chunk-*")), "checkpoints are removed once the caches are written"


@pytest.mark.parametrize("family", ["A", "B", "C"])
def test_each_family_resumes_from_the_chunks_written_before_the_kill(resumed_run, family):
    workdir, killed = resumed_run
    log = (workdir / f"results/logs/scores/tiny/synth/{family}.log").read_text()
    assert "sample/s" in log and "evals/s, mean label_mass" in log
    done = killed.get(family, 0)
    assert f"{done} of 8 chunks done before" in log and f"({4 * done} resumed from chunks)" in log


@pytest.mark.parametrize("family", ["A", "B", "C"])
def test_the_resumed_cache_records_its_provenance(resumed_run, family):
    workdir, _ = resumed_run
    assert io.read_json(workdir / "results/models/tiny/tiny_model.json")["arch"] == "qwen2_vl"
    meta = io.read_parquet_metadata(workdir / f"results/scores/tiny/synth/{family}.parquet")
    assert meta["backend"] == "hf" and meta["engine"] == "shared_prefix" and meta["tiny"] == TINY
    assert meta["model_path"] == "results/models/tiny" and meta["model_fingerprint"].startswith("local:")
    assert meta["dtype"] == "float32" and meta["device"] == "cpu" and meta["image_processor_backend"]
    assert meta["label_token_ids"]["unsafe"]["token"] == "U" and meta["prompt_text_hash"]
    assert {"torch", "transformers"} <= set(meta["package_versions"])


@pytest.mark.parametrize("family", ["A", "B", "C"])
def test_the_resumed_cache_equals_an_uninterrupted_run(resumed_run, family, tmp_path, monkeypatch):
    workdir, _ = resumed_run
    monkeypatch.chdir(workdir)  # manifest image paths are relative to the working directory
    # the same scores as one uninterrupted run of the same model, prompts and data, with torch on
    # as many threads as the workflow's worker gave it (a float sum's order depends on the threads)
    model_cfg = validated_model({"backend": "hf", "path": str(workdir / "results/models/tiny"), "chunk_size": 4,
                                 "batch_size": 3}, "tiny")
    with torch_threads(model_cfg["resources"]["cpus_per_task"]):
        expected = score_to_cache(
            model="tiny", model_cfg=model_cfg, dataset="synth", family=family,
            manifest_path=workdir / "results/data/synth.parquet", prompt_dir=REPO / "prompts",
            families=["A", "B", "C"],
            prompt_format={"with_query": "{template}\nQuery: {query}", "without_query": "{template}"},
            output=tmp_path / f"expected-{family}.parquet", work_dir=tmp_path / "expected-chunks")
    assert_frame_equal(pl.read_parquet(workdir / f"results/scores/tiny/synth/{family}.parquet"), expected,
                       check_exact=True)


def test_the_matrix_and_the_first_table_follow_the_resumed_caches(resumed_run):
    workdir, _ = resumed_run
    matrix = pl.read_parquet(workdir / "results/matrix/tiny/synth.parquet")
    assert matrix.height == 32 and matrix.width == 3 + 15
    assert (workdir / "results/tables/per_prompt.csv").exists()
