"""Few-shot demonstrations (issue 14): lock-split samples only, never the scored one, seeded, in the cache metadata."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import REPO, synthetic_manifest_file, validated_model

from prompt_reliability.base import io
from prompt_reliability.scoring.cache import score_to_cache
from prompt_reliability.scoring.few_shot import FewShotError, plan_demonstrations

FORMAT = {"with_query": "{template}\nQuery: {query}", "without_query": "{template}"}
TEMPLATE = "Is this image-query pair Unsafe (U) or Safe (S)? Start with the label."



def _manifest(workdir: Path, images: bool = True) -> Path:
    return synthetic_manifest_file(workdir, seed=5, train=8, test=4, images=images)


@pytest.mark.parametrize("shots", [1, 2])
def test_demonstrations_are_lock_samples_never_the_scored_one(tmp_path, shots):
    manifest = pl.read_parquet(_manifest(tmp_path, images=False))
    plan = plan_demonstrations(manifest, "train", shots, seed=0)
    lock_ids = set(manifest.filter(pl.col("split") == "train")["sample_id"])
    labels = dict(zip(manifest["sample_id"], manifest["label"]))
    for sample_id in manifest["sample_id"]:
        demos = plan.for_sample(sample_id)
        ids = [d.sample_id for d in demos]
        assert sample_id not in ids and set(ids) <= lock_ids and len(set(ids)) == 2 * shots
        assert sorted(labels[i] for i in ids) == [0] * shots + [1] * shots  # balanced
        assert all(d.label == labels[d.sample_id] for d in demos)
    # the default demonstrations replaced for exactly the lock samples that are among them
    default = plan.default_ids
    replaced = [s for s in manifest["sample_id"] if [d.sample_id for d in plan.for_sample(s)] != default]
    assert sorted(replaced) == sorted(default)
    # seeded: same seed same plan; evaluation labels do not matter
    flipped = manifest.with_columns(pl.when(pl.col("split") == "test").then(1 - pl.col("label")).otherwise(pl.col("label"))
                                    .cast(pl.Int8).alias("label"))
    assert plan_demonstrations(flipped, "train", shots, seed=0) == plan
    assert len({tuple(plan_demonstrations(manifest, "train", shots, seed=s).default_ids) for s in range(6)}) > 1


def test_too_few_lock_samples_is_an_error(tmp_path):
    manifest = pl.read_parquet(_manifest(tmp_path, images=False))
    with pytest.raises(FewShotError, match="needs at least"):
        plan_demonstrations(manifest, "train", 4, seed=0)


@pytest.fixture
def qwen(tiny_models) -> Path:
    return tiny_models["qwen2_vl"]  # the session's tiny models (conftest), read only


def _score(workdir, manifest, model_dir, name, **cfg):
    return score_to_cache(model="tiny", model_cfg={**validated_model({"backend": "hf", "path": str(model_dir)}), **cfg}, dataset="synth", family="A",
                          manifest_path=str(manifest), prompt_dir=str(REPO / "prompts"), families=["A"], prompt_format=FORMAT,
                          output=str(workdir / f"{name}.parquet"), work_dir=str(workdir / "chunks"))


def test_few_shot_scoring_records_its_demonstrations(tmp_path, qwen):
    pytest.importorskip("transformers")
    manifest = _manifest(tmp_path)
    few_shot = {"manifest": str(manifest), "split": "train", "shots": 1, "seed": 0, "template": TEMPLATE}
    plain = _score(tmp_path, manifest, qwen, "plain")
    shared = _score(tmp_path, manifest, qwen, "shared", few_shot=few_shot)
    reference = _score(tmp_path, manifest, qwen, "reference", few_shot=few_shot, engine="reference", batch_size=3)
    np.testing.assert_allclose(reference["p_unsafe"].to_numpy(), shared["p_unsafe"].to_numpy(), atol=1e-5)
    assert np.abs(shared["p_unsafe"].to_numpy() - plain["p_unsafe"].to_numpy()).max() > 1e-3
    meta = io.read_parquet_metadata(tmp_path / "shared.parquet")["few_shot"]
    rows = pl.read_parquet(manifest)
    lock_ids = set(rows.filter(pl.col("split") == "train")["sample_id"])
    assert len(meta["demonstration_ids"]) == 2 and set(meta["demonstration_ids"]) <= lock_ids
    assert sorted(meta["substituted"]) == sorted(meta["demonstration_ids"])
    for sample_id, ids in meta["substituted"].items():
        assert sample_id not in ids and set(ids) <= lock_ids


def test_rendered_prompt_shows_demonstrations_before_the_scored_sample(tmp_path, qwen):
    from transformers import AutoProcessor

    from prompt_reliability.scoring.hf_engines import render_chat

    processor = AutoProcessor.from_pretrained(qwen)
    text = render_chat(processor, "SCORED", [("DEMO-ONE", "U"), ("DEMO-TWO", "S")])
    assert text.count("<|image_pad|>") == 3
    assert text.index("DEMO-ONE") < text.index("DEMO-TWO") < text.index("SCORED")
    assert "assistant\nU<|im_end|>" in text and text.endswith("assistant\n")


@pytest.mark.parametrize("arch", ["qwen2_5_vl", "qwen3_vl", "llava", "gemma3", "idefics3", "mllama", "internvl"])
def test_few_shot_on_every_architecture_engines_agree(tmp_path, tiny_models, arch):
    manifest = _manifest(tmp_path)
    few_shot = {"manifest": str(manifest), "split": "train", "shots": 1, "seed": 0, "template": TEMPLATE}
    shared = _score(tmp_path, manifest, tiny_models[arch], "shared", few_shot=few_shot)
    reference = _score(tmp_path, manifest, tiny_models[arch], "reference", few_shot=few_shot, engine="reference", batch_size=4)
    np.testing.assert_allclose(reference["p_unsafe"].to_numpy(), shared["p_unsafe"].to_numpy(), atol=1e-5)


def test_checkpoint_key_holds_the_demonstrations(tmp_path, qwen):
    """Chunks of another demonstration plan (seed) are stale, never resumed."""
    from prompt_reliability.scoring.backends import hf

    manifest = _manifest(tmp_path)
    keys = []
    for seed in (0, 1):
        cfg = {**validated_model({"backend": "hf", "path": str(qwen)}), "few_shot": {"manifest": str(manifest), "split": "train", "shots": 1,
                                                                 "seed": seed, "template": TEMPLATE}}
        from prompt_reliability.data.prompts import load_registry
        from prompt_reliability.scoring.cache import ScoringJob, manifest_hash

        rows = pl.read_parquet(manifest)
        job = ScoringJob("tiny", cfg, "synth", "A", rows, manifest_hash(rows), load_registry(REPO / "prompts", ["A"]), FORMAT,
                         tmp_path / "chunks")
        settings = hf.hf_settings("tiny", cfg)
        vlm, provenance = hf.open_vlm(job, settings)
        hf._FewShot(job, vlm, settings, provenance)
        keys.append(hf.chunk_key_parts(job, provenance))
    assert keys[0]["few_shot"]["seed"] == 0 and keys[0] != keys[1]
