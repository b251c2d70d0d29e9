"""Preflight of hf models: what would fail at load time fails here first, one line per model, without weights."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import validated_model

from prompt_reliability.scoring.preflight import VERIFIED_MODEL_TYPES, PreflightError, check_architecture, run_preflight
from prompt_reliability.scoring.tiny_models import ARCHITECTURES

pytest.importorskip("transformers")

FORMAT = {"with_query": "{template}\nQuery: {query}", "without_query": "{template}"}
# config.json of openbmb/MiniCPM-V-4_5 as far as the preflight reads it: remote code that registers
# no image-text-to-text class
MINICPM_V_4_5 = {"model_type": "minicpmv", "architectures": ["MiniCPMV"],
                 "auto_map": {"AutoConfig": "configuration_minicpm.MiniCPMVConfig",
                              "AutoModel": "modeling_minicpmv.MiniCPMV"}}


def _run(repo, models):
    return run_preflight({name: validated_model({"backend": "hf", **cfg}, name) for name, cfg in models.items()}, repo / "prompts",
                         ["A", "B", "C"], FORMAT)


def test_every_tiny_architecture_passes_without_its_weights(repo, tiny_models, tmp_path):
    models = {}
    for arch in ARCHITECTURES:
        folder = tmp_path / arch
        shutil.copytree(tiny_models[arch], folder, ignore=shutil.ignore_patterns("*.safetensors"))
        models[f"tiny_{arch}"] = {"path": str(folder)}
    facts = _run(repo, models)
    assert set(facts) == set(models)
    for arch in ARCHITECTURES:
        fact = facts[f"tiny_{arch}"]
        assert fact["model_type"] == arch and fact["engine"] == "shared_prefix"
        assert fact["labels"]["strings"] == ["U", "S"] and fact["labels"]["ids"][0] != fact["labels"]["ids"][1]
        assert [t.lstrip("▁Ġ") for t in fact["labels"]["tokens"]] == ["U", "S"]
    assert VERIFIED_MODEL_TYPES == set(ARCHITECTURES)


def test_multi_token_label_fails_naming_model_label_and_fix(repo, tiny_models):
    with pytest.raises(PreflightError) as caught:
        _run(repo, {"qwen": {"path": str(tiny_models["qwen2_vl"]), "labels": {"unsafe": "UNSAFE!", "safe": "S"}}})
    (line,) = caught.value.problems
    assert line.startswith("model 'qwen': the label 'UNSAFE!' is 7 tokens after the generation prompt")
    assert "choose label strings that are single tokens" in line and "(template A1)" in line and "\n" not in line


def test_model_without_chat_template_fails(repo, tiny_models, tmp_path):
    folder = tmp_path / "base"
    shutil.copytree(tiny_models["llava"], folder)
    (folder / "chat_template.jinja").unlink()
    with pytest.raises(PreflightError) as caught:
        _run(repo, {"base": {"path": str(folder)}})
    assert caught.value.problems == [f"model 'base': '{folder}' has no chat template; fix: score the chat (instruct) "
                                     "checkpoint, or put a chat_template.jinja in the model folder"]


def test_unsupported_architecture_fails_without_running_remote_code(repo, tmp_path):
    folder = tmp_path / "minicpm-v-4_5"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(MINICPM_V_4_5))  # no modelling code beside it: none can run
    with pytest.raises(PreflightError) as caught:
        _run(repo, {"minicpm_v4_5": {"path": str(folder), "trust_remote_code": True}})
    (line,) = caught.value.problems
    assert line.startswith("model 'minicpm_v4_5': architecture 'minicpmv' has no image-text-to-text class in transformers")
    assert "auto_map registers only ['AutoConfig', 'AutoModel']" in line and "backend 'import'" in line


def test_all_problems_of_all_models_are_reported_together(repo, tiny_models, tmp_path):
    folder = tmp_path / "minicpm"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(MINICPM_V_4_5))
    with pytest.raises(PreflightError) as caught:
        _run(repo, {"good": {"path": str(tiny_models["gemma3"])},
                    "bad_label": {"path": str(tiny_models["mllama"]), "labels": {"unsafe": "UNSAFE!", "safe": "S"}},
                    "bad_arch": {"path": str(folder)},
                    "missing": {"path": str(tmp_path / "nowhere")}})
    problems = caught.value.problems
    assert [p.split(":")[0] for p in problems] == ["model 'bad_label'", "model 'bad_arch'", "model 'missing'"]
    assert "cannot read config.json" in problems[2] and "Hub id (no such local folder)" in problems[2]
    assert str(caught.value).startswith("preflight found 3 problem(s) before any scoring job")


def test_engine_must_be_verified_on_the_architecture():
    settings = {"engine": "shared_prefix", "trust_remote_code": False, "path": "org/llava-next"}
    problem = check_architecture("ln", {"model_type": "llava_next"}, settings)
    assert problem.startswith("model 'ln': the shared_prefix engine is not verified on architecture 'llava_next'")
    assert "set models.ln.engine: reference" in problem
    assert check_architecture("ln", {"model_type": "llava_next"}, {**settings, "engine": "reference"}) is None
    remote = {"model_type": "custom_vlm", "auto_map": {"AutoModelForImageTextToText": "modeling_x.X"}}
    assert "set models.ln.trust_remote_code: true" in check_architecture("ln", remote, settings)
