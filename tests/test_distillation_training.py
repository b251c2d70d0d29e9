"""LoRA distillation training: checkpoints are safetensors + JSON, and a killed job resumes exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest

from prompt_reliability.scoring.distillation import TrainingError, epoch_order, total_steps

TRAINING = {"epochs": 5, "max_steps": 12, "batch_size": 2, "learning_rate": 5e-3, "weight_decay": 0.01,
            "warmup_ratio": 0.1, "max_grad_norm": 1.0, "rank": 4, "alpha": 8, "dropout": 0.1,
            "target_modules": ["q_proj", "v_proj"], "checkpoint_steps": 4, "seed": 3}

# Loads the student, trains from `examples`, and (optionally) SIGKILLs itself after step `kill_at`.
CHILD = textwrap.dedent("""
    import json, logging, os, signal, sys
    import polars as pl, torch
    logging.basicConfig(level=logging.INFO)
    torch.set_num_threads(1)
    from prompt_reliability.scoring.backends.hf import load_model
    from prompt_reliability.scoring.distillation import train_lora
    folder, examples, training, checkpoints, kill_at = sys.argv[1:6]
    processor, model = load_model("student", {"path": folder, "revision": None, "trust_remote_code": False,
                                              "dtype": "float32", "device_map": None})
    model.requires_grad_(False)
    def stop(step):
        if step == int(kill_at):
            os.kill(os.getpid(), signal.SIGKILL)
    train_lora(model, processor, pl.read_parquet(examples), json.loads(training), checkpoints, on_step=stop)
""")


def examples(tmp_path: Path) -> Path:
    from PIL import Image

    rows = []
    for i in range(6):
        path = tmp_path / f"img{i}.png"
        Image.new("RGB", (32, 32), (40 * i, 255 - 30 * i, 100)).save(path)
        rows.append({"image_path": str(path), "instruction": f"Describe picture {i}.", "target": f"A square, number {i}."})
        rows.append({"image_path": str(path), "instruction": "Who owns the square?", "target": "unanswerable"})
    out = tmp_path / "examples.parquet"
    pl.DataFrame(rows).write_parquet(out)
    return out


def train(folder: Path, data: Path, checkpoints: Path, kill_at: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", CHILD, str(folder), str(data), json.dumps(TRAINING), str(checkpoints),
                           str(kill_at)], capture_output=True, text=True, env=env, timeout=300)


def tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    return {name: load_file(folder / name) for name in ("adapter.safetensors", "optimizer.safetensors", "rng.safetensors")}


def test_killed_training_resumes_to_the_uninterrupted_tensors(tmp_path, tiny_models):
    import torch

    from prompt_reliability.scoring.backends.hf import load_model
    from prompt_reliability.scoring.distillation import train_lora

    folder, data = tiny_models["qwen2_vl"], examples(tmp_path)
    killed = train(folder, data, tmp_path / "killed", kill_at=6)  # after checkpoint 4, before 8 and 12
    assert killed.returncode == -9, killed.stderr[-3000:]
    left = sorted(p.name for p in (tmp_path / "killed").iterdir())
    assert left == ["step-000004"]
    resumed = train(folder, data, tmp_path / "killed")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr and "step 4 of 12" in resumed.stderr

    # the uninterrupted run, here (torch on one thread, as in the child processes)
    assert torch.get_num_threads() == 1
    processor, model = load_model("student", {"path": str(folder), "revision": None, "trust_remote_code": False,
                                              "dtype": "float32", "device_map": None})
    model.requires_grad_(False)
    train_lora(model, processor, pl.read_parquet(data), TRAINING, tmp_path / "whole")

    final_whole, final_resumed = tmp_path / "whole" / "step-000012", tmp_path / "killed" / "step-000012"
    expected, got = tensors(final_whole), tensors(final_resumed)
    for name, table in expected.items():
        assert table.keys() == got[name].keys() and table, name
        for key, value in table.items():
            assert torch.equal(value, got[name][key]), f"{name}:{key}"
    assert any(k.endswith("exp_avg_sq") for k in expected["optimizer.safetensors"])
    state_whole, state_resumed = (json.loads((f / "state.json").read_text()) for f in (final_whole, final_resumed))
    assert state_whole["losses"] == state_resumed["losses"] and len(state_whole["losses"]) == 12
    assert state_whole["scheduler"] == state_resumed["scheduler"] and state_whole["step"] == 12
    # checkpoints hold no pickle: every file is safetensors or JSON
    assert {p.suffix for p in final_resumed.iterdir()} == {".safetensors", ".json"}


def test_a_checkpoint_of_other_settings_is_not_resumed(tmp_path, tiny_models):
    import torch

    from prompt_reliability.scoring.backends.hf import load_model
    from prompt_reliability.scoring.distillation import train_lora

    data = pl.read_parquet(examples(tmp_path))
    settings = {"path": str(tiny_models["qwen2_vl"]), "revision": None, "trust_remote_code": False, "dtype": "float32",
                "device_map": None}
    torch.set_num_threads(1)
    processor, model = load_model("student", settings)
    model.requires_grad_(False)
    short = {**TRAINING, "max_steps": 4}
    _, first = train_lora(model, processor, data, short, tmp_path / "ck")
    processor, model = load_model("student", settings)
    model.requires_grad_(False)
    _, second = train_lora(model, processor, data, {**short, "learning_rate": 1e-3}, tmp_path / "ck")
    assert first["resumed_from_step"] == 0 and second["resumed_from_step"] == 0
    assert first["fingerprint"] != second["fingerprint"]


def test_gradient_checkpointing_trains_the_same_adapter(tmp_path, tiny_models):
    import torch

    from prompt_reliability.scoring.backends.hf import load_model
    from prompt_reliability.scoring.distillation import train_lora

    data = pl.read_parquet(examples(tmp_path))
    settings = {"path": str(tiny_models["qwen2_vl"]), "revision": None, "trust_remote_code": False, "dtype": "float32",
                "device_map": None}
    adapters = []
    for checkpointing in (False, True):
        processor, model = load_model("student", settings)
        model.requires_grad_(False)
        trained, summary = train_lora(model, processor, data, {**TRAINING, "max_steps": 3, "dropout": 0.0,
                                                               "gradient_checkpointing": checkpointing},
                                      tmp_path / f"ck{checkpointing}")
        adapters.append({k: v.detach().clone() for k, v in trained.named_parameters() if v.requires_grad})
    assert adapters[0].keys() == adapters[1].keys()
    for key, value in adapters[0].items():  # recomputed activations: the same gradients up to rounding
        assert torch.allclose(value, adapters[1][key], atol=1e-5), key
    assert any(not torch.equal(v, torch.zeros_like(v)) for k, v in adapters[1].items() if "lora_B" in k)


def test_schedule_helpers_and_errors():
    assert sorted(epoch_order(10, 0, 1)) == list(range(10)) and epoch_order(10, 0, 1) == epoch_order(10, 0, 1)
    assert epoch_order(10, 0, 1) != epoch_order(10, 0, 2)
    assert total_steps(10, {**TRAINING, "max_steps": None, "batch_size": 4, "epochs": 5}) == 15
    with pytest.raises(TrainingError, match="image_path, instruction, target"):
        from prompt_reliability.scoring.distillation import train_lora

        train_lora(None, None, pl.DataFrame({"image_path": []}), TRAINING, "/nonexistent")
