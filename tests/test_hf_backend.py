"""The hf backend end to end (without Snakemake): cache contract, provenance, checkpoints, resume."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from conftest import REPO, validated_dataset, validated_model
from polars.testing import assert_frame_equal

from prompt_reliability.base import io
from prompt_reliability.base.config import ConfigError
from prompt_reliability.data.datasets import build_manifest
from prompt_reliability.data.prompts import load_registry
from prompt_reliability.scoring.backends import hf as hf_backend
from prompt_reliability.scoring.cache import (
    ScoreCacheError,
    ScoringJob,
    manifest_hash,
    score_to_cache,
)
from prompt_reliability.scoring.chunks import KEY_FILE, ChunkStore
from prompt_reliability.scoring.label_tokens import LabelTokenError

pytest.importorskip("transformers")

FORMAT = {"with_query": "{template}\nQuery: {query}", "without_query": "{template}"}


def write_manifest(workdir: Path, n: int = 6, seed: int = 0) -> Path:
    splits = {"train": {"n": n // 2}, "test": {"n": n - n // 2}}
    manifest = build_manifest("synth", validated_dataset({"adapter": "synthetic", "seed": seed, "image_size": 32,
                                                          "splits": splits}), workdir / "images")
    io.write_parquet(manifest, workdir / "manifest.parquet")
    return workdir / "manifest.parquet"


def score_args(workdir: Path, model_dir: Path, family: str = "A", prompt_dir: Path = REPO / "prompts", **cfg) -> dict:
    return dict(model="tiny", model_cfg=validated_model({"backend": "hf", "path": str(model_dir), **cfg}, "tiny"), dataset="synth", family=family,
                manifest_path=str(workdir / "manifest.parquet"), prompt_dir=str(prompt_dir), families=["A", "B", "C"],
                prompt_format=FORMAT, output=str(workdir / f"{family}.parquet"), work_dir=str(workdir / "chunks"))


def job_for(args: dict) -> ScoringJob:
    manifest = pl.read_parquet(args["manifest_path"])
    return ScoringJob(args["model"], args["model_cfg"], args["dataset"], args["family"], manifest, manifest_hash(manifest),
                      load_registry(args["prompt_dir"], args["families"]), args["prompt_format"], Path(args["work_dir"]))


def test_cache_holds_raw_logits_their_softmax_and_provenance(tmp_path, tiny_models):
    write_manifest(tmp_path)
    cache = score_to_cache(**score_args(tmp_path, tiny_models["qwen2_vl"], chunk_size=4, batch_size=2))
    assert cache.height == 6 * 5 and cache["prompt_id"].unique().sort().to_list() == ["A1", "A2", "A3", "A4", "A5"]
    z_u, z_s = cache["logit_u"].to_numpy(), cache["logit_s"].to_numpy()
    np.testing.assert_allclose(cache["p_unsafe"].to_numpy(), np.exp(z_u) / (np.exp(z_u) + np.exp(z_s)), rtol=1e-12)
    assert cache["label_mass"].is_between(0, 1).all() and cache["top_token"].null_count() == 0
    meta = io.read_parquet_metadata(tmp_path / "A.parquet")
    assert meta["backend"] == "hf" and meta["engine"] == "shared_prefix" and meta["model_type"] == "qwen2_vl"
    assert meta["model_id"] == str(tiny_models["qwen2_vl"]) and meta["revision"] is None and "commit_hash" in meta
    assert meta["model_fingerprint"].startswith("local:")
    assert meta["dtype"] == "float32" and meta["device"] == "cpu"
    assert meta["image_processor"] == "Qwen2VLImageProcessor" and meta["image_processor_backend"] in ("torchvision", "pil")
    assert meta["prompt_text_hash"] == load_registry(REPO / "prompts", ["A"]).text_hash("A")
    assert meta["label_token_ids"]["unsafe"]["token"] == "U" and meta["label_token_ids"]["safe"]["token"] == "S"
    assert {"torch", "transformers", "tokenizers", "torchvision"} <= set(meta["package_versions"])
    assert meta["run"]["samples_scored"] == 6 and meta["run"]["samples_resumed"] == 0
    assert not (tmp_path / "chunks" / "tiny" / "synth" / "A").exists(), "checkpoints go once the cache is written"


def test_reference_engine_gives_the_same_cache(tmp_path, tiny_models):
    write_manifest(tmp_path)
    shared = score_to_cache(**score_args(tmp_path, tiny_models["mllama"], family="B"))
    reference = score_to_cache(**score_args(tmp_path, tiny_models["mllama"], family="B", engine="reference", batch_size=3))
    assert io.read_parquet_metadata(tmp_path / "B.parquet")["engine"] == "reference"
    np.testing.assert_allclose(reference["p_unsafe"].to_numpy(), shared["p_unsafe"].to_numpy(), rtol=0, atol=1e-5)
    assert reference.select("sample_id", "prompt_id").equals(shared.select("sample_id", "prompt_id"))


DRIVER = textwrap.dedent("""
    import json, sys, time
    from prompt_reliability.scoring import hf_engines
    from prompt_reliability.base.logs import job_log
    from prompt_reliability.scoring.cache import score_to_cache

    args, delay, log = json.loads(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    if delay:  # widen the window in which the test kills this process: sleep after every chunk
        scorer = hf_engines.SCORERS["shared_prefix"]
        def slow(*a, **k):
            out = scorer(*a, **k)
            time.sleep(delay)
            return out
        hf_engines.SCORERS["shared_prefix"] = slow
    with job_log(log, capture_stderr=True):
        score_to_cache(**args)
""")


def run_driver(tmp_path: Path, args: dict, delay: float, log: str) -> subprocess.Popen:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, str(driver), json.dumps(args), str(delay), str(tmp_path / log)], env=env)


def test_killed_job_resumes_to_the_uninterrupted_cache(tmp_path, tiny_models):
    write_manifest(tmp_path, n=12)
    args = score_args(tmp_path, tiny_models["qwen2_vl"], chunk_size=2, batch_size=2)
    expected = score_to_cache(**{**args, "output": str(tmp_path / "expected.parquet"), "work_dir": str(tmp_path / "other")})

    process = run_driver(tmp_path, args, delay=2.0, log="killed.log")
    chunk_root = tmp_path / "chunks" / "tiny" / "synth" / "A"
    deadline = time.monotonic() + 240
    while len(list(chunk_root.glob("*/chunk-*.parquet"))) < 2:
        assert process.poll() is None, "the scoring process ended before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint appeared in time"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done = len(list(chunk_root.glob("*/chunk-*.parquet")))
    assert 2 <= done < 6 and not Path(args["output"]).exists()

    rerun = run_driver(tmp_path, args, delay=0, log="resumed.log")
    assert rerun.wait(timeout=300) == 0
    resumed = pl.read_parquet(args["output"])
    assert_frame_equal(resumed, expected, check_exact=True)
    assert not resumed.select("sample_id", "prompt_id").is_duplicated().any()
    log = (tmp_path / "resumed.log").read_text()
    assert f"{done} of 6 chunks done before" in log and f"({2 * done} resumed from chunks)" in log
    assert "sample/s" in log


def _poison(store_dir: Path) -> None:
    """Overwrite every checkpoint's logits with 99 (keeping its metadata), to see whether it is reused."""
    for path in store_dir.glob("chunk-*.parquet"):
        io.write_parquet(pl.read_parquet(path).with_columns(pl.lit(99.0).alias("logit_u")), path,
                         io.read_parquet_metadata(path))


def test_checkpoints_are_reused_only_for_the_same_model_prompts_and_data(tmp_path, tiny_models):
    from prompt_reliability.scoring.tiny_models import build_tiny_model

    write_manifest(tmp_path, n=4)
    args = score_args(tmp_path, tiny_models["llava"], chunk_size=2)
    rows, _ = hf_backend.score(job_for(args))
    (key_dir,) = (tmp_path / "chunks" / "tiny" / "synth" / "A").iterdir()
    _poison(key_dir)
    again, provenance = hf_backend.score(job_for(args))
    assert (again["logit_u"] == 99.0).all() and provenance["run"]["samples_resumed"] == 4, "same job: checkpoints reused"

    prompts = tmp_path / "prompts"
    shutil.copytree(REPO / "prompts", prompts)
    family = yaml.safe_load((prompts / "A.yaml").read_text())
    family["templates"][0]["text"] += " Be brief."
    (prompts / "A.yaml").write_text(yaml.safe_dump(family))
    model_copy = tmp_path / "model-seed-1"
    build_tiny_model(model_copy, "llava", seed=1)
    manifest = pl.read_parquet(tmp_path / "manifest.parquet")
    changed_manifest = tmp_path / "changed.parquet"
    io.write_parquet(manifest.with_columns(pl.when(pl.col("sample_id") == manifest["sample_id"][0]).then(pl.lit("Why?"))
                                           .otherwise(pl.col("query")).alias("query")), changed_manifest)
    for changed in ({**args, "prompt_dir": str(prompts)},
                    {**args, "manifest_path": str(changed_manifest)},
                    {**args, "model_cfg": {**args["model_cfg"], "path": str(model_copy)}},
                    {**args, "model_cfg": {**args["model_cfg"], "engine": "reference"}}):
        _poison(key_dir)
        fresh, provenance = hf_backend.score(job_for(changed))
        assert not (fresh["logit_u"] == 99.0).any() and provenance["run"]["samples_resumed"] == 0
        assert not key_dir.exists(), "a stale checkpoint folder is deleted, never read"
        (key_dir,) = (tmp_path / "chunks" / "tiny" / "synth" / "A").iterdir()
    assert json.loads((key_dir / KEY_FILE).read_text())["settings"]["engine"] == "reference"


def test_bad_label_fails_before_any_scoring(tmp_path, tiny_models):
    write_manifest(tmp_path)
    args = score_args(tmp_path, tiny_models["qwen2_vl"], labels={"unsafe": "UNSAFE!", "safe": "S"})
    with pytest.raises(LabelTokenError, match="model 'tiny': the label 'UNSAFE!' is 7 tokens"):
        score_to_cache(**args)
    assert not list((tmp_path / "chunks").rglob("chunk-*")) and not Path(args["output"]).exists()


def test_unloadable_model_names_model_and_path(tmp_path):
    write_manifest(tmp_path)
    with pytest.raises(ScoreCacheError, match=r"model 'tiny': cannot load '/no/such/model' \(Hub id"):
        score_to_cache(**score_args(tmp_path, Path("/no/such/model")))


def test_settings_are_the_validated_config(repo):
    """Defaults and checks live in the schema (parse time); hf_settings only resolves the path."""
    schema = yaml.safe_load((repo / "workflow/schemas/config.schema.yaml").read_text())
    properties = schema["definitions"]["hf_model"]["properties"]
    assert not hasattr(hf_backend, "HF_DEFAULTS")
    settings = hf_backend.hf_settings("m", validated_model({"backend": "hf", "path": "x"}))
    assert {k: settings[k] for k in ("engine", "dtype", "batch_size", "chunk_size", "trust_remote_code")} == {
        k: properties[k]["default"] for k in ("engine", "dtype", "batch_size", "chunk_size", "trust_remote_code")}
    for bad, message in (({"path": "x", "engine": "fast"}, "'models.m.engine' is 'fast'"),
                         ({"path": "x", "dtype": "int8"}, "'models.m.dtype' is 'int8'"),
                         ({"path": "x", "batch_size": 0}, "'models.m.batch_size' is 0; it must be >= 1")):
        with pytest.raises(ConfigError, match=message):
            validated_model({"backend": "hf", **bad})


def test_fingerprint_follows_the_files(tmp_path, tiny_models):
    folder = tmp_path / "m"
    shutil.copytree(tiny_models["llava"], folder)
    before = hf_backend.model_fingerprint(folder, None)
    assert hf_backend.model_fingerprint(folder, None) == before
    (folder / "chat_template.jinja").write_text((folder / "chat_template.jinja").read_text() + " ")
    assert hf_backend.model_fingerprint(folder, None) != before
    assert hf_backend.model_fingerprint("org/model", "abc123") == "hub:org/model@abc123"
    assert hf_backend.model_fingerprint("org/model", None, "v2") == "hub:org/model@v2"


def test_chunk_store_drops_stale_keys_and_half_written_files(tmp_path):
    root = tmp_path / "job"
    old = ChunkStore(root, {"model": "a"}, n_samples=5, size=2)
    old.save(0, 2, pl.DataFrame({"x": [1, 2]}))
    (old.dir / ".chunk-000000002-000000004.parquet.abc.tmp").write_text("killed mid-write")
    same = ChunkStore(root, {"model": "a"}, n_samples=5, size=2)
    assert same.bounds == [(0, 2), (2, 4), (4, 5)] and same.done() == [(0, 2)] and same.todo() == [(2, 4), (4, 5)]
    assert not list(same.dir.glob("*.tmp"))
    with pytest.raises(ValueError, match=r"chunks \[\(2, 4\), \(4, 5\)\] are missing"):
        same.load_all()
    new = ChunkStore(root, {"model": "b"}, n_samples=5, size=2)
    assert not old.dir.exists() and new.done() == []


def test_model_without_chat_template_is_refused_by_name(tmp_path, tiny_models):
    folder = tmp_path / "base-model"
    shutil.copytree(tiny_models["llava"], folder)
    (folder / "chat_template.jinja").unlink()
    write_manifest(tmp_path)
    with pytest.raises(ScoreCacheError, match=r"model 'tiny' \(.*base-model\): the processor has no chat template"):
        score_to_cache(**score_args(tmp_path, folder))


def test_unreadable_image_names_dataset_sample_and_file(tmp_path, tiny_models):
    write_manifest(tmp_path)
    manifest = pl.read_parquet(tmp_path / "manifest.parquet")
    Path(manifest["image_path"][1]).write_bytes(b"not a png")
    with pytest.raises(ScoreCacheError, match=rf"dataset 'synth', sample '{manifest['sample_id'][1]}': cannot read image"):
        score_to_cache(**score_args(tmp_path, tiny_models["llava"], chunk_size=1))
    # the sample before it was checkpointed: a rerun after the fix resumes there
    assert len(list((tmp_path / "chunks").rglob("chunk-*.parquet"))) == 1


@pytest.mark.parametrize("arch", ["qwen3_vl_moe", "minicpmv4_6", "minicpmv4_7"])
def test_new_architectures_resume_from_their_chunks_to_the_same_rows(tmp_path, tiny_models, arch):
    """The backend on the architectures whose engine path differs (sparse MLP; packed pixels, linear-attention
    cache, full-length logits; canvas M-RoPE): a lost chunk is re-scored, the others are read back, same rows."""
    write_manifest(tmp_path, n=6)
    args = score_args(tmp_path, tiny_models[arch], family="C", chunk_size=2, batch_size=2)
    first, provenance = hf_backend.score(job_for(args))
    assert provenance["model_type"] == arch and provenance["run"]["samples_scored"] == 6
    assert first.height == 6 * 5 and first["label_mass"].is_between(0, 1).all()
    (key_dir,) = (tmp_path / "chunks" / "tiny" / "synth" / "C").iterdir()
    chunks = sorted(key_dir.glob("chunk-*.parquet"))
    assert len(chunks) == 3
    chunks[1].unlink()
    again, provenance = hf_backend.score(job_for(args))
    assert provenance["run"]["samples_resumed"] == 4 and provenance["run"]["samples_scored"] == 2
    assert_frame_equal(again, first, check_exact=True)
    reference, _ = hf_backend.score(job_for({**args, "model_cfg": {**args["model_cfg"], "engine": "reference"},
                                             "work_dir": str(tmp_path / "reference")}))
    np.testing.assert_allclose(reference["logit_u"].to_numpy(), first["logit_u"].to_numpy(), rtol=0, atol=1e-4)
