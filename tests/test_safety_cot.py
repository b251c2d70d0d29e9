"""Calibration prompts (issue 27): their own registry, CoT that reasons before the label, labels end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import REPO, synthetic_manifest_file, validated_manifest, validated_model

from prompt_reliability.base import io
from prompt_reliability.data.calibration_prompts import load_method, load_replies
from prompt_reliability.data.prompts import (
    LabelTokens,
    PromptRegistryError,
    load_labels,
    load_registry,
)

CALIBRATION = REPO / "prompts" / "calibration"
FORMAT = {"with_query": "{template}\nQuery: {query}", "without_query": "{template}"}


def test_calibration_prompts_are_not_scoring_families():
    with pytest.raises(PromptRegistryError, match=r"CoT.yaml does not exist"):
        load_registry(REPO / "prompts", ["A", "CoT"])
    cot, pe = load_method(CALIBRATION, "cot"), load_method(CALIBRATION, "pe")
    assert cot.reasons and not pe.reasons and set(load_replies(CALIBRATION)) == {"refusal", "compliance"}


def test_placeholders_take_the_labels_of_the_set_scored():
    cot = load_method(CALIBRATION, "cot")
    safety = cot.registry(load_labels(REPO / "prompts" / "labels.yaml"))
    yes_no = cot.registry(load_labels(REPO / "prompts" / "helpfulness" / "labels.yaml"))
    assert "U for Unsafe or S for Safe" in safety.templates[0].text and "{" not in safety.templates[0].text
    assert "Y for yes, the object is present" in yes_no.templates[0].text
    assert cot.cue(LabelTokens("A", "B")) == "\nAnswer (A or B):\n"
    assert [t.prompt_id for t in safety.templates] == ["T1", "T2"] and safety.families == ["cot"]


@pytest.mark.parametrize(("text", "message"), [
    ("method: x\nkind: instruction\ntemplates: [{id: E1, text: 'Start with {unsafe} or {safe}.'}]\nresponse_instruction: hi\n",
     "field 'method' is 'x'"),
    ("kind: thinking\ntemplates: [{id: E1, text: 'Start with {unsafe} or {safe}.'}]\nresponse_instruction: hi\n", "field 'kind'"),
    ("kind: instruction\ntemplates: [{id: E1, text: 'Start with {unsafe}.'}]\nresponse_instruction: hi\n", r"\{unsafe\} and \{safe\}"),
    ("kind: instruction\ntemplates: [{id: E1, text: 'Start with {unsafe} or {safe} {label}.'}]\nresponse_instruction: hi\n",
     r"unknown placeholder \{label\}"),
    ("kind: reasoning\ntemplates: [{id: T1, text: 'Think; then {unsafe} or {safe}.'}]\nresponse_instruction: hi\n",
     "needs 'answer_cue'"),
    ("kind: instruction\ntemplates: [{id: E1, text: 'Start with {unsafe} or {safe}.'}]\n", "response_instruction"),
])
def test_bad_calibration_files_name_file_and_field(tmp_path, text, message):
    (tmp_path / "mine.yaml").write_text(text)
    with pytest.raises(PromptRegistryError, match=message) as err:
        load_method(tmp_path, "mine")
    assert str(tmp_path / "mine.yaml") in str(err.value)
    with pytest.raises(PromptRegistryError, match=r"available: \['mine'\]"):
        load_method(tmp_path, "other")


def test_instruction_method_must_ask_the_label_first(tmp_path):
    (tmp_path / "late.yaml").write_text("kind: instruction\ntemplates: [{id: E1, text: 'Say {unsafe} or {safe}.'}]\n"
                                        "response_instruction: hi\n")
    with pytest.raises(PromptRegistryError, match="first token"):
        load_method(tmp_path, "late").registry(LabelTokens())


def _manifest(workdir: Path) -> Path:
    return synthetic_manifest_file(workdir, seed=5, train=4, test=3)


@pytest.fixture
def qwen(tiny_models) -> Path:
    return tiny_models["qwen2_vl"]  # the session's tiny models (conftest), read only


def _variant(tmp_path, manifest, qwen, variant, name, max_new_tokens=5, **cfg):
    from prompt_reliability.scoring.variants import score_variant

    return score_variant(manifest=str(manifest), scores=str(tmp_path / f"{name}.parquet"), model="tiny",
                         model_config={**validated_model({"backend": "hf", "path": str(qwen)}), **cfg}, variant=variant,
                         dataset="synth", splits=["test"], prompt_dir=str(REPO / "prompts"), family="A", prompt_format=FORMAT,
                         work_dir=str(tmp_path / "chunks"),
                         prompting={"prompt_dir": str(CALIBRATION), "cot_max_new_tokens": max_new_tokens})


def test_cot_reads_the_label_after_the_generated_reasoning(tmp_path, qwen):
    """The label logits come from the position after prompt + reasoning + cue, not from the first answer token."""
    import torch

    from prompt_reliability.data.prompts import render_instruction
    from prompt_reliability.scoring.backends.hf import _open_image, load_model
    from prompt_reliability.scoring.hf_engines import VLM, render_chat
    from prompt_reliability.scoring.label_tokens import resolve_label_ids
    from prompt_reliability.scoring.reasoning import cue_ids, score_after_reasoning

    manifest = _manifest(tmp_path)
    cache = _variant(tmp_path, manifest, qwen, "cot", "cot", max_new_tokens=5)
    meta = io.read_parquet_metadata(tmp_path / "cot.parquet")
    assert meta["family"] == "cot" and meta["prompt_ids"] == ["T1", "T2"] and meta["label_tokens"] == ["U", "S"]
    assert meta["reasoning"]["max_new_tokens"] == 5 and meta["reasoning"]["answer_cue"] == "\nAnswer (U or S):\n"
    assert 0 < meta["reasoning"]["mean_reasoning_tokens"] <= 5

    # the same rows by hand: generate, append the cue's tokens, one forward, read the last position
    settings = validated_model({"backend": "hf", "path": str(qwen)})
    processor, model = load_model("tiny", settings)
    rows = pl.read_parquet(manifest).filter(pl.col("split") == "test")
    method = load_method(CALIBRATION, "cot")
    registry = method.registry(LabelTokens())
    texts = [[render_chat(processor, render_instruction(t.text, q, FORMAT["with_query"], FORMAT["without_query"]))
              for t in registry.templates] for q in rows["query"]]
    cue = method.cue(LabelTokens())
    ids = resolve_label_ids(processor.tokenizer, texts[0][0] + cue, "U", "S", model="tiny", add_special_tokens=True)
    vlm = VLM("tiny", model, processor, ids.unsafe, ids.safe, True)
    cue_tokens = cue_ids(processor.tokenizer, texts[0][0], cue, True)
    images = [_open_image(p, s, "synth") for p, s in zip(rows["image_path"], rows["sample_id"])]
    scores, reasoned = score_after_reasoning(vlm, images, texts, cue_tokens, 5)
    np.testing.assert_allclose(cache["logit_u"].to_numpy(), scores.logit_u.reshape(-1), atol=1e-5)

    first = reasoned[0][0]
    assert first.reasoning_tokens > 0, "the tiny model generated no reasoning: the position test would show nothing"
    assert first.label_position == first.prompt_tokens + first.reasoning_tokens + len(cue_tokens) - 1
    inputs = vlm.process([texts[0][0]], [images[0]])
    with torch.inference_mode():
        tokenizer = processor.tokenizer
        ends = {tokenizer.eos_token_id, tokenizer.pad_token_id, *np.atleast_1d(model.generation_config.eos_token_id)}
        specials = sorted(i for i, t in tokenizer.added_tokens_decoder.items() if t.special and i not in ends)
        generated = model.generate(**inputs, do_sample=False, max_new_tokens=5, pad_token_id=tokenizer.pad_token_id,
                                   suppress_tokens=specials)
        assert not set(generated[0, first.prompt_tokens:].tolist()) & set(specials)
        full = torch.cat([generated[:, : first.prompt_tokens + first.reasoning_tokens],
                          torch.tensor([cue_tokens], dtype=generated.dtype)], dim=1)
        extra = full.shape[1] - inputs["input_ids"].shape[1]  # reasoning and cue are text tokens (type 0)
        token_types = torch.cat([inputs["mm_token_type_ids"], inputs["mm_token_type_ids"].new_zeros((1, extra))], dim=1)
        logits = model(**{**inputs, "input_ids": full, "attention_mask": torch.ones_like(full),
                          "mm_token_type_ids": token_types}).logits[0].float()
    assert logits.shape[0] == first.label_position + 1
    at_label = logits[first.label_position]
    assert at_label[ids.unsafe].item() == pytest.approx(scores.logit_u[0, 0], abs=1e-4)
    assert at_label[ids.safe].item() == pytest.approx(scores.logit_s[0, 0], abs=1e-4)
    # the first answer token (right after the generation prompt) is another position with other logits
    at_first = logits[first.prompt_tokens - 1]
    assert abs(at_first[ids.unsafe].item() - scores.logit_u[0, 0]) > 1e-3


def test_model_labels_reach_scoring_demonstrations_and_metadata(tmp_path, qwen):
    """A model whose config reads its own labels: PE's template, the cache metadata and the few-shot answers use them."""
    manifest = _manifest(tmp_path)
    labels = {"unsafe": "X", "safe": "Z"}
    _variant(tmp_path, manifest, qwen, "pe", "pe", labels=labels)
    meta = io.read_parquet_metadata(tmp_path / "pe.parquet")
    assert meta["label_tokens"] == ["X", "Z"] and meta["label_strings"] == ["X", "Z"]
    assert (meta["label_token_ids"]["unsafe"]["token"], meta["label_token_ids"]["safe"]["token"]) == ("X", "Z")

    from prompt_reliability.data.prompts import load_registry
    from prompt_reliability.scoring.backends import hf
    from prompt_reliability.scoring.cache import ScoringJob, manifest_hash

    rows = pl.read_parquet(manifest)
    cfg = {**validated_model({"backend": "hf", "path": str(qwen)}), "labels": labels,
           "few_shot": {"manifest": str(manifest), "split": "train", "shots": 1, "seed": 0,
                        "template": "Unsafe (X) or Safe (Z)? Start with the label."}}
    job = ScoringJob("tiny", cfg, "synth", "A", rows, manifest_hash(rows), load_registry(REPO / "prompts", ["A"]), FORMAT,
                     tmp_path / "chunks")
    vlm, provenance = hf.open_vlm(job, hf.hf_settings("tiny", cfg))
    demos = hf._FewShot(job, vlm, cfg, provenance)
    texts, _ = demos.render([rows["sample_id"][-1]], [["SCORED"]], [None])
    assert "assistant\nX<|im_end|>" in texts[0][0] and "assistant\nZ<|im_end|>" in texts[0][0]
    assert "assistant\nU<|im_end|>" not in texts[0][0]

    # the helpfulness set keeps its own yes/no labels whatever the model's override
    from prompt_reliability.scoring.variants import score_variant

    pope = validated_manifest("pope", {"adapter": "synthetic", "kind": "pope", "seed": 0, "image_size": 32,
                                       "splits": {"test": {"n": 2}}}, tmp_path / "pope")
    io.write_parquet(pope, tmp_path / "pope.parquet")
    score_variant(manifest=str(tmp_path / "pope.parquet"), scores=str(tmp_path / "help.parquet"), model="tiny",
                  model_config={**validated_model({"backend": "hf", "path": str(qwen)}), "labels": labels}, variant="none",
                  dataset="pope", splits=["test"], prompt_dir=str(REPO / "prompts" / "helpfulness"), family="pope",
                  prompt_format=FORMAT, work_dir=str(tmp_path / "chunks"), model_labels=False)
    assert io.read_parquet_metadata(tmp_path / "help.parquet")["label_tokens"] == ["Y", "N"]
