"""The ``hf`` scoring backend: a Hugging Face VLM's raw first-token label logits, checkpointed.

``score(job)`` is the backend function of :mod:`prompt_reliability.scoring`: it loads the model
(``AutoProcessor`` + ``AutoModelForImageTextToText``, from a Hub id or a local folder), renders each
(image, query, template) with the model's own chat template (image first), resolves the two label
tokens from that prompt (:mod:`label_tokens`), scores chunk by chunk with the configured engine
(:mod:`hf_engines`) and checkpoints every chunk (:mod:`chunks`), so a killed job resumes where it
stopped. A progress bar (samples/s, ETA) goes to the job log; a one-line summary ends it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from prompt_reliability.base.logs import progress
from prompt_reliability.data.prompts import render_instruction
from prompt_reliability.scoring.cache import (
    ScoreCacheError,
    ScoringJob,
    package_versions,
)
from prompt_reliability.scoring.chunks import ChunkStore
from prompt_reliability.scoring.hf_engines import (
    SCORERS,
    VLM,
    FirstTokenScores,
    adds_special_tokens,
    render_chat,
)
from prompt_reliability.scoring.label_tokens import resolve_label_ids
from prompt_reliability.scoring.reasoning import (
    cue_ids,
    reasoning_summary,
    score_after_reasoning,
)

log = logging.getLogger(__name__)

# Files up to this size are hashed by content for the model fingerprint; larger ones (weight
# shards of real models) by name, size and modification time, so a job does not read 15 GB first.
_HASH_CONTENT_BELOW = 64 * 2**20


def hf_settings(model: str, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The model's validated hf settings; ``path`` comes from the rule (a tiny model's build folder).

    The schema (definitions.hf_model) fills every default and checks every value at parse time,
    and ``check_config`` the path; nothing is re-declared or re-checked here.
    """
    if not cfg.get("path"):
        raise ScoreCacheError(f"config key 'models.{model}.path' is missing: backend 'hf' needs a Hub id or a local model folder")
    return dict(cfg)


# --- loading -------------------------------------------------------------------------------------


def load_model(model: str, settings: Mapping[str, Any]):
    """(processor, model) for ``settings['path']``; offline-friendly errors name the model and path."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path, revision = settings["path"], settings["revision"]
    common = {"revision": revision, "trust_remote_code": bool(settings["trust_remote_code"])}
    dtype = "auto" if settings["dtype"] == "auto" else getattr(torch, settings["dtype"])
    try:
        processor = AutoProcessor.from_pretrained(path, **common)
        vlm = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype, device_map=settings["device_map"], **common)
    except (OSError, ValueError) as err:
        where = "local folder" if Path(path).exists() else "Hub id (no such local folder)"
        raise ScoreCacheError(
            f"model {model!r}: cannot load {path!r} ({where}, revision {revision!r}) with AutoProcessor + "
            f"AutoModelForImageTextToText: {err}. Set models.{model}.path to a folder holding config.json, the "
            "weights and the processor files, or to a Hub id this machine can download or has cached"
        ) from err
    return processor, vlm.eval()


def model_fingerprint(path: str | Path, commit_hash: str | None, revision: str | None = None) -> str:
    """What identifies the weights: the Hub commit (else the requested revision), or a hash of a local folder's files."""
    folder = Path(path)
    if not folder.is_dir():
        return f"hub:{path}@{commit_hash or revision or 'default'}"
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = file.stat()
        digest.update(f"{file.relative_to(folder)}\0{stat.st_size}\0".encode())
        if stat.st_size < _HASH_CONTENT_BELOW:
            digest.update(file.read_bytes())
        else:
            digest.update(str(stat.st_mtime_ns).encode())
    return f"local:{digest.hexdigest()[:20]}"


def _device(model) -> str:
    device_map = getattr(model, "hf_device_map", None)
    if device_map and len(set(map(str, device_map.values()))) > 1:
        return "split:" + ",".join(sorted(set(map(str, device_map.values()))))
    return str(model.get_input_embeddings().weight.device)


def _hardware(model) -> str:
    """What the numbers depend on: the device kind and GPU model, not which GPU index a job got."""
    import torch

    devices = {p.device for p in model.parameters()}
    names = sorted({torch.cuda.get_device_name(d) if d.type == "cuda" else d.type for d in devices})
    return "+".join(names)


@contextlib.contextmanager
def _quiet_transformers():
    """Loading notices and weight-loading bars would bury the progress bar in the job log."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _text_hash(text: str | None) -> str | None:
    return hashlib.sha256(text.encode()).hexdigest()[:16] if text else None


def _variant(vlm: VLM, settings: Mapping[str, Any], provenance: dict):
    """Steering hook of a calibration variant (settings key ``steering: {vectors, layer, alpha}``), recorded in the provenance."""
    steer = settings.get("steering")
    if not steer:
        return contextlib.nullcontext()
    from prompt_reliability.scoring import steering

    vector = steering.load_vector(steer["vectors"], steer["layer"])
    provenance["steering"] = {"layer": int(steer["layer"]), "alpha": float(steer["alpha"]),
                              "vectors": str(steer["vectors"]), "vectors_hash": steering.file_hash(steer["vectors"]),
                              "vector_norm": float(np.linalg.norm(vector)),
                              "vector_provenance": steering.read_provenance(steer["vectors"])}
    return steering.steering(vlm.model, int(steer["layer"]), vector, float(steer["alpha"]))


class _FewShot:
    """Few-shot demonstrations of a calibration variant (settings key ``few_shot``: manifest, split, shots,
    seed, template); see :mod:`prompt_reliability.scoring.few_shot`."""

    def __init__(self, job: ScoringJob, vlm: VLM, settings: Mapping[str, Any], provenance: dict):
        from prompt_reliability.scoring import few_shot
        from prompt_reliability.scoring.cache import manifest_hash

        cfg = settings["few_shot"]
        lock = pl.read_parquet(cfg["manifest"])
        self.plan = few_shot.plan_demonstrations(lock, cfg["split"], int(cfg["shots"]), int(cfg.get("seed", 0)),
                                                 f"model {job.model!r}, few_shot.manifest {cfg['manifest']}")
        # the demonstrations answer with the labels this model is scored on (its own `labels`, else the registry's)
        unsafe, safe = provenance["label_strings"]
        self.answer = {1: unsafe, 0: safe}
        self.template, self.fmt, self.vlm, self.dataset = cfg["template"], job.prompt_format, vlm, job.dataset
        self._images: dict[str, Any] = {}
        provenance["few_shot"] = few_shot.few_shot_provenance(self.plan, job.manifest["sample_id"].to_list(), cfg,
                                                              manifest_hash(lock))

    def _image(self, demo):
        if demo.sample_id not in self._images:
            self._images[demo.sample_id] = _open_image(demo.image_path, demo.sample_id, self.dataset)
        return self._images[demo.sample_id]

    def render(self, sample_ids: list[str], instructions: list[list[str]], images: list) -> tuple[list[list[str]], list]:
        texts, all_images = [], []
        for sample_id, row, image in zip(sample_ids, instructions, images):
            demos = self.plan.for_sample(sample_id)
            turns = [(render_instruction(self.template, d.query, self.fmt["with_query"], self.fmt["without_query"]),
                      self.answer[d.label]) for d in demos]
            texts.append([render_chat(self.vlm.processor, text, turns) for text in row])
            all_images.append([*(self._image(d) for d in demos), image])
        return texts, all_images


# --- the backend ---------------------------------------------------------------------------------


def _instructions(job: ScoringJob, queries: list[str]) -> list[list[str]]:
    fmt = job.prompt_format
    return [[render_instruction(t.text, q, fmt["with_query"], fmt["without_query"]) for t in job.templates] for q in queries]


def _open_image(path: str, sample_id: str, dataset: str):
    from PIL import Image

    if not path:
        raise ScoreCacheError(f"dataset {dataset!r}, sample {sample_id!r}: no image (empty image_path); the hf backend "
                              "scores images: give the dataset an image column (config 'columns: {image: ...}')")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except OSError as err:
        raise ScoreCacheError(f"dataset {dataset!r}, sample {sample_id!r}: cannot read image {path!r} ({err}); fix or "
                              f"drop the file and rebuild the manifest of dataset {dataset!r} (delete it and re-run)") from err


def _chunk_rows(sample_ids: list[str], prompt_ids: list[str], scores: FirstTokenScores, tokenizer) -> pl.DataFrame:
    k = len(prompt_ids)
    top = scores.top_id.reshape(-1)
    names = {int(i): tokenizer.decode([int(i)]) for i in np.unique(top)}
    return pl.DataFrame({
        "sample_id": np.repeat(sample_ids, k).tolist(),
        "prompt_id": prompt_ids * len(sample_ids),
        "logit_u": scores.logit_u.reshape(-1).astype(np.float64),
        "logit_s": scores.logit_s.reshape(-1).astype(np.float64),
        "label_mass": scores.label_mass.reshape(-1).astype(np.float64),
        "top_token": [names[int(i)] for i in top],
    })


def open_vlm(job: ScoringJob, settings: Mapping[str, Any]) -> tuple[VLM, dict]:
    """Load the model, resolve its label tokens from the rendered prompt; the provenance of both."""
    import torch

    labels = settings.get("labels") or {}
    unsafe, safe = labels.get("unsafe", job.registry.labels.unsafe), labels.get("safe", job.registry.labels.safe)
    with _quiet_transformers():
        processor, model = load_model(job.model, settings)
    if not getattr(processor, "chat_template", None):
        raise ScoreCacheError(f"model {job.model!r} ({settings['path']}): the processor has no chat template; score a "
                              "chat (instruct) checkpoint, or put a chat_template.jinja in the model folder")
    first_query = job.manifest["query"][0] if job.manifest.height else ""
    probe = render_chat(processor, _instructions(job, [first_query])[0][0])
    add_special = adds_special_tokens(processor, probe)
    # a reasoning variant reads the label after its answer cue: resolve the ids where they are read
    reasoning = settings.get("reasoning")
    label_probe = probe + reasoning["cue"] if reasoning else probe
    label_ids = resolve_label_ids(processor.tokenizer, label_probe, unsafe, safe, model=job.model,
                                  add_special_tokens=add_special)
    image_processor = getattr(processor, "image_processor", None)
    commit = getattr(model.config, "_commit_hash", None)
    provenance = {
        "model_path": str(settings["path"]),
        "model_id": getattr(model.config, "_name_or_path", None) or str(settings["path"]),
        "model_type": model.config.model_type,
        "revision": settings["revision"],
        "commit_hash": commit,
        "model_fingerprint": model_fingerprint(settings["path"], commit, settings["revision"]),
        "dtype": str(model.dtype).removeprefix("torch."),
        "device": _device(model),
        "hardware": _hardware(model),
        "engine": settings["engine"],
        "batch_size": settings["batch_size"],
        "chunk_size": settings["chunk_size"],
        "image_processor": type(image_processor).__name__ if image_processor is not None else None,
        "image_processor_backend": getattr(image_processor, "backend", None),
        "chat_template_hash": _text_hash(getattr(processor, "chat_template", None)),
        "add_special_tokens": add_special,
        "label_strings": [unsafe, safe],
        **({"reasoning_cue_ids": cue_ids(processor.tokenizer, probe, reasoning["cue"], add_special)}
           if reasoning else {}),
        "label_token_ids": label_ids.as_dict(),
        "torch_threads": torch.get_num_threads(),
        "tiny": job.model_cfg.get("tiny"),
    }
    return VLM(job.model, model, processor, label_ids.unsafe, label_ids.safe, add_special), provenance


def chunk_key_parts(job: ScoringJob, provenance: Mapping[str, Any]) -> dict[str, Any]:
    """Everything a checkpoint's numbers depend on; checkpoints of any other key are stale."""
    versions = package_versions()
    return {
        "model_fingerprint": provenance["model_fingerprint"],
        "prompt_text_hash": job.registry.text_hash(job.family),
        "manifest_hash": job.manifest_hash,
        "prompt_format": dict(job.prompt_format),
        "labels": provenance["label_token_ids"],
        "chat_template": provenance["chat_template_hash"],
        "settings": {key: provenance[key] for key in ("engine", "batch_size", "chunk_size", "dtype", "hardware")},
        "versions": {name: versions.get(name) for name in ("torch", "transformers", "tokenizers", "torchvision", "pillow")},
        # calibration variants (issue 14), present only when set so plain checkpoints keep their key
        **{key: provenance[key] for key in ("steering", "few_shot", "reasoning") if provenance.get(key)},
    }


def score(job: ScoringJob) -> tuple[pl.DataFrame, dict]:
    """Backend entry point (see :mod:`prompt_reliability.scoring`)."""
    settings = hf_settings(job.model, job.model_cfg)
    sample_ids, queries, image_paths = (job.manifest[c].to_list() for c in ("sample_id", "query", "image_path"))
    k = len(job.prompt_ids)
    started = time.perf_counter()
    vlm, provenance = open_vlm(job, settings)
    variant = _variant(vlm, settings, provenance)
    demos = _FewShot(job, vlm, settings, provenance) if settings.get("few_shot") else None
    reasoning = settings.get("reasoning")
    if reasoning:
        provenance["reasoning"] = {"max_new_tokens": int(reasoning["max_new_tokens"]), "answer_cue": reasoning["cue"],
                                   "cue_ids": provenance["reasoning_cue_ids"]}
    store = ChunkStore(job.chunk_dir, chunk_key_parts(job, provenance), len(sample_ids), settings["chunk_size"])
    resumed = sum(stop - start for start, stop in store.done())
    log.info("model %s (%s, %s on %s, engine %s): %d samples x %d prompts, labels %s -> ids %d/%d; checkpoints in %s, "
             "%d of %d chunks done before", job.model, provenance["model_type"], provenance["dtype"], provenance["device"],
             settings["engine"], len(sample_ids), k, "/".join(provenance["label_strings"]), vlm.unsafe_id, vlm.safe_id,
             store.dir, len(store.done()), len(store.bounds))
    load_seconds = time.perf_counter() - started

    scorer = SCORERS[settings["engine"]]
    scoring_started = time.perf_counter()
    with variant, progress(len(sample_ids), f"{job.model}/{job.dataset}/{job.family}", initial=resumed) as bar:
        for start, stop in store.todo():
            images = [_open_image(image_paths[i], sample_ids[i], job.dataset) for i in range(start, stop)]
            if demos is None:
                texts = [[render_chat(vlm.processor, text) for text in row] for row in _instructions(job, queries[start:stop])]
            else:
                texts, images = demos.render(sample_ids[start:stop], _instructions(job, queries[start:stop]), images)
            if reasoning:
                scores, reasoned = score_after_reasoning(vlm, images, texts, provenance["reasoning_cue_ids"],
                                                         reasoning["max_new_tokens"], on_samples=bar.update)
                rows = _chunk_rows(sample_ids[start:stop], job.prompt_ids, scores, vlm.tokenizer).with_columns(
                    pl.Series("reasoning", [r.reasoning for row in reasoned for r in row], dtype=pl.Utf8),
                    pl.Series("reasoning_tokens", [r.reasoning_tokens for row in reasoned for r in row], dtype=pl.Int64),
                    pl.Series("label_position", [r.label_position for row in reasoned for r in row], dtype=pl.Int64))
            else:
                scores = scorer(vlm, images, texts, settings["batch_size"], on_samples=bar.update)
                rows = _chunk_rows(sample_ids[start:stop], job.prompt_ids, scores, vlm.tokenizer)
            store.save(start, stop, rows)
    seconds = time.perf_counter() - scoring_started
    rows = store.load_all()
    if reasoning:
        provenance["reasoning"] |= reasoning_summary(rows["reasoning_tokens"].to_numpy(), rows["reasoning"].to_list(),
                                                     reasoning["max_new_tokens"], reasoning["cue"])

    scored = len(sample_ids) - resumed
    evals_per_s = scored * k / seconds if scored and seconds > 0 else None
    mean_mass = float(rows["label_mass"].mean()) if len(rows) else float("nan")
    log.info("scored %d samples x %d prompts (%d resumed from chunks) in %.1f s (+%.1f s loading): %s evals/s, "
             "mean label_mass %.3f", scored, k, resumed, seconds, load_seconds,
             f"{evals_per_s:.1f}" if evals_per_s else "n/a", mean_mass)
    provenance["run"] = {"samples_scored": scored, "samples_resumed": resumed, "seconds": round(seconds, 3),
                         "load_seconds": round(load_seconds, 3),
                         "evals_per_s": round(evals_per_s, 3) if evals_per_s else None, "mean_label_mass": mean_mass}
    return rows, provenance
