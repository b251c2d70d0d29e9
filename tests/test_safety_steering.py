"""Activation steering (issue 14): lock-split-only vectors, exact alpha = 0, a real effect otherwise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import REPO, synthetic_manifest_file, validated_model

from prompt_reliability.base import io
from prompt_reliability.scoring import steering, steering_vectors
from prompt_reliability.scoring.cache import score_to_cache

pytest.importorskip("transformers")

FORMAT = {"with_query": "{template}\nQuery: {query}", "without_query": "{template}"}


@pytest.fixture
def tiny(tiny_models) -> dict[str, Path]:
    return {arch: tiny_models[arch] for arch in ("qwen2_vl", "llava")}  # the session's (conftest), read only


def _manifest(workdir: Path) -> Path:
    return synthetic_manifest_file(workdir, seed=3, train=6, test=4)


REPLIES = REPO / "prompts" / "calibration" / "replies.yaml"


def _vectors(workdir: Path, manifest: Path, model_dir: Path, out: str, layers=(1, 2), vector="inputs"):
    return steering_vectors.write_steering_vectors(
        manifest=str(manifest), vectors=str(workdir / out), model="tiny", model_config=validated_model({"backend": "hf", "path": str(model_dir)}),
        prompt_dir=str(REPO / "prompts"), families=["A"], family="A", prompt_format=FORMAT, split="train", layers=list(layers),
        vector=vector, dataset="synth", replies=str(REPLIES))


def _score(workdir: Path, manifest: Path, model_dir: Path, name: str, **cfg) -> pl.DataFrame:
    return score_to_cache(model="tiny", model_cfg={**validated_model({"backend": "hf", "path": str(model_dir)}), **cfg}, dataset="synth", family="A",
                          manifest_path=str(manifest), prompt_dir=str(REPO / "prompts"), families=["A"], prompt_format=FORMAT,
                          output=str(workdir / f"{name}.parquet"), work_dir=str(workdir / "chunks"))


@pytest.mark.parametrize("vector", ["responses", "inputs"])
def test_vectors_read_the_lock_split_only(tmp_path, tiny, vector):
    manifest = _manifest(tmp_path)
    first = _vectors(tmp_path, manifest, tiny["qwen2_vl"], "v.safetensors", vector=vector)
    # flip every evaluation label and change the evaluation queries: the vectors must not move
    flipped = pl.read_parquet(manifest).with_columns(
        pl.when(pl.col("split") == "test").then(1 - pl.col("label")).otherwise(pl.col("label")).cast(pl.Int8).alias("label"),
        pl.when(pl.col("split") == "test").then(pl.lit("something else entirely")).otherwise(pl.col("query")).alias("query"))
    io.write_parquet(flipped, tmp_path / "flipped.parquet")
    second = _vectors(tmp_path, tmp_path / "flipped.parquet", tiny["qwen2_vl"], "w.safetensors", vector=vector)
    for layer in (1, 2):
        np.testing.assert_array_equal(first[layer], second[layer])
        np.testing.assert_array_equal(steering.load_vector(tmp_path / "v.safetensors", layer), first[layer])
        assert np.linalg.norm(first[layer]) > 0
    # flipping a lock label does move them
    lock_flip = pl.read_parquet(manifest).with_columns(
        pl.when(pl.col("sample_id") == "synth-train-00000").then(1 - pl.col("label")).otherwise(pl.col("label")).cast(pl.Int8).alias("label"))
    io.write_parquet(lock_flip, tmp_path / "lockflip.parquet")
    third = _vectors(tmp_path, tmp_path / "lockflip.parquet", tiny["qwen2_vl"], "x.safetensors", vector=vector)
    assert not np.array_equal(third[1], first[1])
    meta = steering.read_provenance(tmp_path / "v.safetensors")
    assert meta["split"] == "train" and meta["n_safe"] == 3 and meta["n_unsafe"] == 3 and meta["layers"] == [1, 2]
    assert meta["model_fingerprint"].startswith("local:") and meta["prompt_id"] == "A1"


def test_vector_is_mean_unsafe_minus_mean_safe_of_hidden_states(tmp_path, tiny):
    """Cross-check against transformers' own output_hidden_states[L] at the last position."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from prompt_reliability.data.prompts import load_registry, render_instruction
    from prompt_reliability.scoring.hf_engines import (
        adds_special_tokens,
        render_chat,
    )

    manifest = _manifest(tmp_path)
    vectors = _vectors(tmp_path, manifest, tiny["llava"], "v.safetensors", layers=(1,), vector="inputs")
    processor = AutoProcessor.from_pretrained(tiny["llava"])
    model = AutoModelForImageTextToText.from_pretrained(tiny["llava"]).eval()
    template = load_registry(REPO / "prompts", ["A"]).family("A")[0].text
    rows = pl.read_parquet(manifest).filter(pl.col("split") == "train")
    hidden = []
    from PIL import Image
    for query, path in zip(rows["query"], rows["image_path"]):
        text = render_chat(processor, render_instruction(template, query, FORMAT["with_query"], FORMAT["without_query"]))
        batch = processor(text=[text], images=[[Image.open(path).convert("RGB")]], return_tensors="pt",
                          add_special_tokens=adds_special_tokens(processor, text))
        with torch.inference_mode():
            hidden.append(model(**batch, output_hidden_states=True).hidden_states[1][0, -1].numpy())
    h, y = np.array(hidden, dtype=np.float64), rows["label"].to_numpy()
    np.testing.assert_allclose(vectors[1], h[y == 1].mean(0) - h[y == 0].mean(0), rtol=1e-4, atol=1e-5)


def test_response_vector_is_refusal_minus_compliance_over_reply_tokens(tmp_path, tiny):
    """The paper's IAR, against transformers' own output_hidden_states[L] over the reply's tokens, by hand."""
    import torch
    import yaml
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from prompt_reliability.data.prompts import load_registry, render_instruction
    from prompt_reliability.scoring.hf_engines import adds_special_tokens, render_chat

    manifest = _manifest(tmp_path)
    # layer 1 of 2: hidden_states[L] is decoder layer L's output except for the last layer (final norm applied)
    vectors = _vectors(tmp_path, manifest, tiny["qwen2_vl"], "v.safetensors", layers=(1,), vector="responses")
    processor = AutoProcessor.from_pretrained(tiny["qwen2_vl"])
    model = AutoModelForImageTextToText.from_pretrained(tiny["qwen2_vl"]).eval()
    template = load_registry(REPO / "prompts", ["A"]).family("A")[0].text
    replies = yaml.safe_load(REPLIES.read_text())
    rows = pl.read_parquet(manifest).filter((pl.col("split") == "train") & (pl.col("label") == 1))
    means = {kind: {1: []} for kind in ("refusal", "compliance")}
    for query, path in zip(rows["query"], rows["image_path"]):
        text = render_chat(processor, render_instruction(template, query, FORMAT["with_query"], FORMAT["without_query"]))
        image = [[Image.open(path).convert("RGB")]]
        special = adds_special_tokens(processor, text)
        start = processor(text=[text], images=image, return_tensors="pt", add_special_tokens=special)["input_ids"].shape[1]
        for kind in means:
            batch = processor(text=[text + replies[kind].strip()], images=image, return_tensors="pt", add_special_tokens=special)
            with torch.inference_mode():
                states = model(**batch, output_hidden_states=True).hidden_states
            assert batch["input_ids"].shape[1] > start
            means[kind][1].append(states[1][0, start:].double().mean(0).numpy())
    for layer in (1,):
        expected = np.mean(means["refusal"][layer], axis=0) - np.mean(means["compliance"][layer], axis=0)
        np.testing.assert_allclose(vectors[layer], expected, rtol=1e-4, atol=1e-5)
    meta = steering.read_provenance(tmp_path / "v.safetensors")
    assert meta["vector"] == "responses" and meta["position"] == "reply tokens (teacher-forced)"


@pytest.mark.parametrize("arch", ["qwen2_vl", "llava"])
def test_alpha_zero_reproduces_unsteered_scores_exactly(tmp_path, tiny, arch):
    manifest = _manifest(tmp_path)
    _vectors(tmp_path, manifest, tiny[arch], "v.safetensors", layers=(1,))
    plain = _score(tmp_path, manifest, tiny[arch], "plain")
    zero = _score(tmp_path, manifest, tiny[arch], "zero", steering={"vectors": str(tmp_path / "v.safetensors"), "layer": 1, "alpha": 0.0})
    np.testing.assert_array_equal(zero["logit_u"].to_numpy(), plain["logit_u"].to_numpy())
    np.testing.assert_array_equal(zero["logit_s"].to_numpy(), plain["logit_s"].to_numpy())
    steered = _score(tmp_path, manifest, tiny[arch], "steered",
                     steering={"vectors": str(tmp_path / "v.safetensors"), "layer": 1, "alpha": 2.0})
    delta = np.abs(steered["p_unsafe"].to_numpy() - plain["p_unsafe"].to_numpy())
    assert delta.max() > 1e-3
    meta = io.read_parquet_metadata(tmp_path / "steered.parquet")
    assert meta["steering"]["layer"] == 1 and meta["steering"]["alpha"] == 2.0 and meta["steering"]["vector_provenance"]["split"] == "train"
    # the reference engine sees the same steered model
    reference = _score(tmp_path, manifest, tiny[arch], "steered_ref", engine="reference",
                       steering={"vectors": str(tmp_path / "v.safetensors"), "layer": 1, "alpha": 2.0})
    np.testing.assert_allclose(reference["p_unsafe"].to_numpy(), steered["p_unsafe"].to_numpy(), atol=1e-5)


def test_layer_out_of_range_names_the_config_key(tmp_path, tiny):
    manifest = _manifest(tmp_path)
    with pytest.raises(steering.SteeringError, match="safety_calibration.steering.layers"):
        _vectors(tmp_path, manifest, tiny["qwen2_vl"], "v.safetensors", layers=(9,))


@pytest.mark.parametrize("arch", ["qwen2_5_vl", "qwen3_vl", "gemma3", "idefics3", "mllama", "internvl"])
def test_steering_hook_on_every_architecture(tmp_path, tiny_models, arch):
    manifest = _manifest(tmp_path)
    _vectors(tmp_path, manifest, tiny_models[arch], "v.safetensors", layers=(2,))
    vectors = str(tmp_path / "v.safetensors")
    plain = _score(tmp_path, manifest, tiny_models[arch], "plain")
    zero = _score(tmp_path, manifest, tiny_models[arch], "zero", steering={"vectors": vectors, "layer": 2, "alpha": 0.0})
    np.testing.assert_array_equal(zero["logit_u"].to_numpy(), plain["logit_u"].to_numpy())
    steered = _score(tmp_path, manifest, tiny_models[arch], "steered", steering={"vectors": vectors, "layer": 2, "alpha": 3.0})
    assert np.abs(steered["logit_u"].to_numpy() - plain["logit_u"].to_numpy()).max() > 1e-4
