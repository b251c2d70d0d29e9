"""LoRA fine-tuning of a student VLM on distillation examples (UnSAF section 5.2), resumable.

The paper: LoRA, 5 epochs, AdamW, a cosine learning-rate schedule. Everything else (rank, alpha,
dropout, target modules, learning rate, batch size, warm-up, weight decay, gradient clipping,
``checkpoint_steps``, seed) comes from config ``distillation.training``.

An example (``analysis.distillation_data``) is one user turn: the image first, then the instruction,
rendered with the student's own chat template; the target (the teacher's questions or answer) and
the end-of-turn token follow. The loss is the mean cross-entropy over target tokens only (prompt and
image tokens are masked). Examples are visited in a seeded permutation per epoch.

**Checkpoints** (``checkpoint_dir/step-NNNNNN/``, every ``checkpoint_steps`` and at the last step,
each written as a whole or not at all): ``adapter.safetensors`` (the LoRA weights),
``optimizer.safetensors`` (AdamW's moments and step per parameter), ``rng.safetensors`` (torch's CPU
and CUDA generator states, which drive dropout) and ``state.json`` (step, epoch, the epoch's data
order and position, scheduler state, optimizer hyper-parameters, the loss curve, and the fingerprint
of the training config and data the checkpoint belongs to). No pickle anywhere: ``torch.load`` is
never called. A killed job started again resumes from its newest checkpoint whose fingerprint
matches, and ends in tensors equal (``torch.equal``) to an uninterrupted run's, given the same
thread count and device. A checkpoint of another config or data is ignored (and logged).

The finished adapter is ``model.save_pretrained`` (``adapter_model.safetensors`` +
``adapter_config.json``) plus ``training.json`` (loss curve, timings, provenance).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from prompt_reliability.base import io
from prompt_reliability.base.logs import progress

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
TRAINING_KEYS = ("epochs", "max_steps", "batch_size", "learning_rate", "weight_decay", "warmup_ratio",
                 "max_grad_norm", "rank", "alpha", "dropout", "target_modules", "seed")
# (checkpoint_steps and gradient_checkpointing are not among them: they change when the job saves and
# how much memory it needs, not what it computes, so a checkpoint resumes across a change of either)
_SEQUENCE_KEYS = ("input_ids", "attention_mask", "labels", "token_type_ids", "mm_token_type_ids")


class TrainingError(ValueError):
    """Bad training input or config; the message names the field and the fix."""


# --- examples -> tensors --------------------------------------------------------------------------


def encode_example(processor, image, instruction: str, target: str) -> dict[str, Any]:
    """One example as model inputs with ``labels`` (-100 over the prompt and image tokens)."""
    import torch

    from prompt_reliability.scoring.hf_engines import adds_special_tokens, render_chat

    prompt = render_chat(processor, instruction)
    inputs = processor(text=[prompt], images=[[image]], return_tensors="pt",
                       add_special_tokens=adds_special_tokens(processor, prompt))
    tokenizer = processor.tokenizer
    answer = tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    answer_ids = torch.tensor([answer], dtype=inputs["input_ids"].dtype)
    n_prompt = inputs["input_ids"].shape[1]
    encoded = {key: value for key, value in inputs.items()}
    encoded["input_ids"] = torch.cat([inputs["input_ids"], answer_ids], dim=1)
    encoded["attention_mask"] = torch.ones_like(encoded["input_ids"])
    encoded["labels"] = torch.cat([torch.full((1, n_prompt), IGNORE_INDEX, dtype=answer_ids.dtype), answer_ids], dim=1)
    for key in ("token_type_ids", "mm_token_type_ids"):  # token-aligned extras: the answer is plain text (0)
        if key in inputs:
            encoded[key] = torch.cat([inputs[key], torch.zeros_like(answer_ids, dtype=inputs[key].dtype)], dim=1)
    return encoded


def collate(rows: Sequence[Mapping[str, Any]], pad_token_id: int) -> dict[str, Any]:
    """Right-padded token tensors; per-image tensors (pixel values, grids) concatenated in row order."""
    import torch

    length = max(row["input_ids"].shape[1] for row in rows)
    batch: dict[str, Any] = {}
    for key in rows[0]:
        if key in _SEQUENCE_KEYS:
            fill = {"input_ids": pad_token_id, "labels": IGNORE_INDEX}.get(key, 0)
            batch[key] = torch.cat([torch.nn.functional.pad(row[key], (0, length - row[key].shape[1]), value=fill)
                                    for row in rows])
        else:
            batch[key] = torch.cat([row[key] for row in rows])
    return batch


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The seeded visiting order of ``n`` examples in ``epoch``."""
    return np.random.default_rng(np.random.SeedSequence([seed, epoch])).permutation(n).tolist()


def fingerprint(training: Mapping[str, Any], examples: pl.DataFrame, image_hashes: Sequence[str], base: str) -> str:
    """What a checkpoint belongs to: the training config, the examples' content and the base model."""
    digest = hashlib.sha256(json.dumps({k: training[k] for k in TRAINING_KEYS}, sort_keys=True).encode())
    digest.update(base.encode())
    for row, image in zip(examples.select("instruction", "target").iter_rows(), image_hashes):
        digest.update(json.dumps([*row, image]).encode())
    return digest.hexdigest()


# --- checkpoints ------------------------------------------------------------------------------------


def _optimizer_tensors(optimizer) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    state = optimizer.state_dict()
    tensors = {f"{index}.{name}": value.detach().cpu().contiguous()
               for index, entry in state["state"].items() for name, value in entry.items()}
    return tensors, state["param_groups"]


def save_checkpoint(folder: Path, model, optimizer, scheduler, state: Mapping[str, Any]) -> None:
    """One checkpoint folder, atomically (module docstring)."""
    import torch
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    optimizer_tensors, param_groups = _optimizer_tensors(optimizer)
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng.update({f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    scheduler_state = scheduler.state_dict()  # plain numbers (lr_lambdas: None per group for a function schedule)
    with io.atomic_dir(folder) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(model).items()},
                  tmp / "adapter.safetensors")
        save_file(optimizer_tensors, tmp / "optimizer.safetensors")
        save_file(rng, tmp / "rng.safetensors")
        io.write_json({**state, "scheduler": scheduler_state, "param_groups": param_groups}, tmp / "state.json")


def latest_checkpoint(checkpoint_dir: Path, expected_fingerprint: str) -> Path | None:
    """The newest complete checkpoint of this config and data, or None."""
    if not checkpoint_dir.is_dir():
        return None
    for folder in sorted(checkpoint_dir.glob("step-*"), reverse=True):
        state_file = folder / "state.json"
        if not state_file.is_file():
            continue
        found = io.read_json(state_file).get("fingerprint")
        if found == expected_fingerprint:
            return folder
        log.warning("ignoring checkpoint %s: it belongs to another training config or data (%s)", folder, found)
    return None


def load_checkpoint(folder: Path, model, optimizer, scheduler) -> dict[str, Any]:
    """Restore adapter, optimizer, scheduler and RNG from ``folder``; returns its state.json."""
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = io.read_json(folder / "state.json")
    device = next(p for p in model.parameters() if p.requires_grad).device
    set_peft_model_state_dict(model, load_file(folder / "adapter.safetensors", device=str(device)))
    tensors = load_file(folder / "optimizer.safetensors")
    per_param: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        per_param.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": per_param, "param_groups": state["param_groups"]})
    scheduler.load_state_dict(state["scheduler"])
    rng = load_file(folder / "rng.safetensors")
    torch.set_rng_state(rng["cpu"])
    if torch.cuda.is_available() and "cuda.0" in rng:
        torch.cuda.set_rng_state_all([rng[f"cuda.{i}"] for i in range(torch.cuda.device_count()) if f"cuda.{i}" in rng])
    return state


# --- training -----------------------------------------------------------------------------------------


def lora_model(model, training: Mapping[str, Any]):
    """``model`` wrapped with a fresh LoRA adapter (peft), only the adapter trainable."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=int(training["rank"]), lora_alpha=float(training["alpha"]),
                        lora_dropout=float(training["dropout"]), target_modules=list(training["target_modules"]),
                        bias="none")
    try:
        return get_peft_model(model, config)
    except ValueError as err:
        raise TrainingError(f"distillation.training.target_modules {list(training['target_modules'])}: {err}. Name "
                            "linear layers of the student (e.g. q_proj, k_proj, v_proj, o_proj)") from err


def total_steps(n_examples: int, training: Mapping[str, Any]) -> int:
    per_epoch = math.ceil(n_examples / int(training["batch_size"]))
    return int(training["max_steps"]) if training["max_steps"] else per_epoch * int(training["epochs"])


def train_lora(model, processor, examples: pl.DataFrame, training: Mapping[str, Any], checkpoint_dir: str | Path, *,
               base: str = "", open_image: Callable[[str], Any] | None = None,
               image_hashes: Sequence[str] | None = None,
               on_step: Callable[[int], None] | None = None) -> tuple[Any, dict[str, Any]]:
    """Train a LoRA adapter on ``examples`` (columns ``image_path, instruction, target``), resuming from
    ``checkpoint_dir``; returns (peft model, summary with the loss curve). ``on_step(step)`` runs after
    each completed step (tests use it to kill the process)."""
    import torch
    from transformers import get_cosine_schedule_with_warmup

    missing = [c for c in ("image_path", "instruction", "target") if c not in examples.columns]
    if missing or examples.height == 0:
        raise TrainingError(f"distillation examples need rows with columns image_path, instruction, target; "
                            f"got {examples.height} rows, missing {missing}")
    open_image = open_image or _open_image
    hashes = list(image_hashes) if image_hashes is not None else (
        examples["image_sha256"].to_list() if "image_sha256" in examples.columns else examples["image_path"].to_list())
    key = fingerprint(training, examples, hashes, base)
    checkpoint_dir = Path(checkpoint_dir)

    if training.get("gradient_checkpointing"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()  # the frozen embeddings' outputs must carry gradients to the adapters
    torch.manual_seed(int(training["seed"]))  # LoRA's A matrices are drawn here
    peft_model = lora_model(model, training)
    parameters = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=float(training["learning_rate"]),
                                  weight_decay=float(training["weight_decay"]))
    steps = total_steps(examples.height, training)
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(round(float(training["warmup_ratio"]) * steps)), steps)
    batch_size, every = int(training["batch_size"]), int(training["checkpoint_steps"])
    log_every = max(1, steps // 20)
    state: dict[str, Any] = {"step": 0, "epoch": 0, "position": 0, "losses": [], "fingerprint": key, "steps": steps}
    found = latest_checkpoint(checkpoint_dir, key)
    if found is not None:
        state = load_checkpoint(found, peft_model, optimizer, scheduler)
        log.info("resumed from %s (step %d of %d)", found, state["step"], steps)
    first_step = state["step"]
    instructions, targets = examples["instruction"].to_list(), examples["target"].to_list()
    paths = examples["image_path"].to_list()
    pictures: dict[str, Any] = {}
    pad = processor.tokenizer.pad_token_id if processor.tokenizer.pad_token_id is not None else processor.tokenizer.eos_token_id
    device = parameters[0].device
    peft_model.train()
    started = time.perf_counter()
    order = epoch_order(examples.height, int(training["seed"]), state["epoch"])
    with progress(steps, "training", unit="step", initial=state["step"]) as bar:
        while state["step"] < steps:
            if state["position"] >= examples.height:
                state["epoch"], state["position"] = state["epoch"] + 1, 0
                order = epoch_order(examples.height, int(training["seed"]), state["epoch"])
            chosen = order[state["position"]:state["position"] + batch_size]
            rows = []
            for i in chosen:
                if paths[i] not in pictures:
                    pictures[paths[i]] = open_image(paths[i])
                rows.append(encode_example(processor, pictures[paths[i]], instructions[i], targets[i]))
            batch = {k: v.to(device) for k, v in collate(rows, pad).items()}
            if "pixel_values" in batch:
                batch["pixel_values"] = batch["pixel_values"].to(peft_model.dtype)
            loss = peft_model(**batch).loss
            loss.backward()
            if training["max_grad_norm"]:
                torch.nn.utils.clip_grad_norm_(parameters, float(training["max_grad_norm"]))
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state["step"] += 1
            state["position"] += len(chosen)
            state["losses"].append([state["step"], float(loss.detach())])
            bar.update(1)
            if state["step"] % every == 0 or state["step"] == steps:
                save_checkpoint(checkpoint_dir / f"step-{state['step']:06d}", peft_model, optimizer, scheduler, state)
                _keep_newest(checkpoint_dir, 2)
                log.info("step %d/%d: loss %.4f (checkpoint)", state["step"], steps, state["losses"][-1][1])
            elif state["step"] % log_every == 0:  # the loss curve in the job's log, ~20 lines a job
                log.info("step %d/%d: loss %.4f", state["step"], steps, state["losses"][-1][1])
            if on_step is not None:
                on_step(state["step"])
    seconds = time.perf_counter() - started
    peft_model.eval()
    done_here = state["step"] - first_step
    summary = {"steps": steps, "examples": examples.height, "epochs_run": state["epoch"] + 1, "losses": state["losses"],
               "seconds": round(seconds, 3), "seconds_per_step": round(seconds / done_here, 5) if done_here else None,
               "resumed_from_step": first_step, "fingerprint": key,
               "threads": torch.get_num_threads(), "device": str(device)}
    return peft_model, summary


def on_gpu_if_any(model):
    """``model`` on the job's GPU when one is visible and the config placed it nowhere (``device_map: null``)."""
    import torch

    if torch.cuda.is_available() and not getattr(model, "hf_device_map", None):
        return model.to("cuda")
    return model


def _keep_newest(checkpoint_dir: Path, keep: int) -> None:
    for folder in sorted(checkpoint_dir.glob("step-*"))[:-keep]:
        shutil.rmtree(folder, ignore_errors=True)


def _open_image(path: str):
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")


# --- rule entry point --------------------------------------------------------------------------------


def train_adapter(*, data: str, adapter: str, curve: str, student: str, teacher: str, strategy: str,
                  model_config: Mapping[str, Any], training: Mapping[str, Any], checkpoints: str,
                  running: Mapping[str, Any] | None = None, threads: int | None = None,
                  **_inputs: Any) -> dict[str, Any]:
    """Rule ``distillation_train``: one (student, teacher, strategy) -> ``adapter/`` + the loss curve.

    ``training``: what determines the adapter (tracked by the rule); ``running``: how the job runs
    (``checkpoint_steps``, ``gradient_checkpointing``; untracked)."""
    import torch

    from prompt_reliability.scoring.backends.hf import _quiet_transformers, hf_settings, load_model, model_fingerprint

    if threads:
        torch.set_num_threads(int(threads))
    examples = pl.read_parquet(data)
    if examples.height == 0:
        raise TrainingError(f"{data}: no training examples for {teacher}/{strategy}; the teacher's run parsed no "
                            "question (see its parse_report.parquet) or every image was held out")
    settings = hf_settings(student, model_config)
    with _quiet_transformers():
        processor, model = load_model(student, settings)
    model = on_gpu_if_any(model)
    for p in model.parameters():
        p.requires_grad_(False)
    base = model_fingerprint(settings["path"], getattr(model.config, "_commit_hash", None), settings["revision"])
    training = {**training, **(running or {})}
    peft_model, summary = train_lora(model, processor, examples, training, checkpoints, base=base)
    provenance = {"student": student, "teacher": teacher, "strategy": strategy, "base": base,
                  "training": dict(training),
                  "data": io.read_parquet_metadata(data).get("distillation_data", {}),
                  "data_sha256": hashlib.sha256(Path(data).read_bytes()).hexdigest()}
    with io.atomic_dir(adapter) as tmp:
        peft_model.save_pretrained(tmp, safe_serialization=True)
        io.write_json({**summary, "provenance": provenance}, tmp / "training.json")
    io.write_json({**summary, "provenance": provenance}, curve)
    shutil.rmtree(checkpoints, ignore_errors=True)
    log.info("%s <- %s/%s: %d steps in %.1f s (%.3f s/step on %s, %d threads); final loss %.4f", student, teacher,
             strategy, summary["steps"], summary["seconds"], summary["seconds_per_step"] or float("nan"),
             summary["device"], summary["threads"], summary["losses"][-1][1])
    return summary
