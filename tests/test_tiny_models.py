"""Tiny offline VLMs: every architecture builds, reloads through the Auto classes, and is reproducible."""

from __future__ import annotations

import json

import pytest

from prompt_reliability.scoring.tiny_models import (
    ARCHITECTURES,
    TINY_MANIFEST,
    TinyModelError,
    build_tiny_model,
    tiny_spec,
)

pytest.importorskip("transformers")


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_reloads_with_auto_classes_and_renders_image_first(tiny_models, arch):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder = tiny_models[arch]
    processor = AutoProcessor.from_pretrained(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder)
    spec = json.loads((folder / TINY_MANIFEST).read_text())
    assert spec["arch"] == arch and spec["seed"] == 0
    assert model.config.model_type == arch, "tiny architectures are named by their transformers model_type"
    assert spec["parameters"] == sum(p.numel() for p in model.parameters()) < 1_000_000
    assert len(processor.tokenizer) <= model.get_input_embeddings().num_embeddings
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Say U or S first."}]}]
    rendered = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert rendered.index("Say U or S first.") > 0 and not rendered.endswith("Say U or S first.")
    assert (folder / "model.safetensors").exists() and not list(folder.glob("*.bin")) and not list(folder.glob("*.pkl"))


def test_same_seed_same_files_other_seed_other_weights(tmp_path, tiny_models):
    build_tiny_model(tmp_path / "again", "qwen2_vl", seed=0)
    build_tiny_model(tmp_path / "other", "qwen2_vl", seed=1)
    original = (tiny_models["qwen2_vl"] / "model.safetensors").read_bytes()
    assert (tmp_path / "again" / "model.safetensors").read_bytes() == original
    assert (tmp_path / "other" / "model.safetensors").read_bytes() != original
    assert (tmp_path / "again" / "tokenizer.json").read_text() == (tiny_models["qwen2_vl"] / "tokenizer.json").read_text()


def test_rebuild_replaces_the_folder_whole(tmp_path):
    target = tmp_path / "m"
    build_tiny_model(target, "llava", seed=0)
    (target / "stray.txt").write_text("left from an older build")
    build_tiny_model(target, "llava", seed=0, shape={"layers": 1})
    assert not (target / "stray.txt").exists()
    assert json.loads((target / TINY_MANIFEST).read_text())["shape"]["layers"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name != "m"], "no temporary folder is left behind"


def test_bad_requests_name_the_field():
    with pytest.raises(TinyModelError, match="unknown tiny architecture 'qwen9'.*qwen2_vl"):
        tiny_spec("qwen9")
    with pytest.raises(TinyModelError, match=r"unknown keys \['width'\]"):
        tiny_spec("llava", shape={"width": 3})
    with pytest.raises(TinyModelError, match="hidden .* must divide by heads"):
        tiny_spec("llava", shape={"hidden": 30, "heads": 4})


def test_config_schema_offers_every_tiny_architecture(repo):
    import yaml

    schema = yaml.safe_load((repo / "workflow/schemas/config.schema.yaml").read_text())
    assert schema["definitions"]["tiny_model"]["properties"]["arch"]["enum"] == list(ARCHITECTURES)


def test_paper_config_names_the_tiny_stand_in_of_every_model(repo):
    import re

    import yaml

    text = (repo / "config/paper.yaml").read_text()
    stand_ins = dict(re.findall(r"^  (\w+):\s+# tests: tiny (\w+)$", text, flags=re.M))
    assert set(stand_ins) == set(yaml.safe_load(text)["models"])
    assert set(stand_ins.values()) <= set(ARCHITECTURES)
    assert stand_ins["qwen3vl_30b_a3b"] == "qwen3_vl_moe" and stand_ins["minicpm_v4_6"] == "minicpmv4_6"


def test_shape_defaults_are_the_schemas_and_cover_every_size(repo):
    # the schema is the one place of the defaults: a config without `shape` and a library call without
    # one build the same model; a partial shape keeps the schema's other sizes
    import yaml

    from prompt_reliability.base.config import validate_config
    from prompt_reliability.scoring.tiny_models import TinyShape, default_shape

    shape = yaml.safe_load((repo / "workflow/schemas/config.schema.yaml").read_text())[
        "definitions"]["tiny_model"]["properties"]["shape"]
    assert list(default_shape()) == list(TinyShape.__dataclass_fields__) == list(shape["properties"])
    assert tiny_spec("llava")["shape"] == default_shape()
    assert tiny_spec("llava", shape={"layers": 1})["shape"] == {**default_shape(), "layers": 1}
    filled = validate_config({"shape": {"layers": 1}}, {"type": "object", "properties": {"shape": shape}})
    assert filled["shape"] == tiny_spec("llava", shape={"layers": 1})["shape"]
