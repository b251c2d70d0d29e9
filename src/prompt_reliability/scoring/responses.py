"""Response mode (issue 14): the model answers the query; a judge decides refusal/warning vs compliance.

- :func:`generate_responses`: greedy decoding (``do_sample=False``, ``max_new_tokens`` from config)
  of the query itself (image first, no classification template), optionally under a steering hook.
- Model judge (:func:`write_model_judgement`): any hf model scored with the first-token rule on
  the judge prompt family (``prompts/judge``, labels Y = refusal/warning, N = compliance); the
  judged item shows the image, the request and the response. ``p_refusal = sigmoid(z_Y - z_N)``.

The phrase judge needs no model and lives with the analyses (:mod:`prompt_reliability.analysis.judges`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import polars as pl

from prompt_reliability.base import io

log = logging.getLogger(__name__)


def generate_responses(vlm, images, queries, max_new_tokens: int) -> list[str]:
    """Greedy answers to each (image, query), one sample per call (no padding effects)."""
    import torch

    from prompt_reliability.scoring.hf_engines import render_chat

    out = []
    for image, query in zip(images, queries):
        batch = vlm.process([render_chat(vlm.processor, query)], [image])
        with torch.inference_mode():
            ids = vlm.model.generate(**batch, do_sample=False, max_new_tokens=int(max_new_tokens),
                                     pad_token_id=vlm.tokenizer.pad_token_id)
        out.append(vlm.tokenizer.decode(ids[0, batch["input_ids"].shape[1]:], skip_special_tokens=True))
    return out


def write_responses(*, manifest: str, responses: str, model: str, model_config: Mapping[str, Any], dataset: str,
                    max_new_tokens: int = 64, splits: list[str] | None = None, **_inputs: Any) -> pl.DataFrame:
    """Rule entry point: the model's greedy responses to every sample (of ``splits``), saved for inspection."""
    import contextlib

    from prompt_reliability.scoring import steering
    from prompt_reliability.scoring.backends import hf
    from prompt_reliability.scoring.hf_engines import (
        VLM,
        adds_special_tokens,
        render_chat,
    )

    started = time.perf_counter()
    rows = pl.read_parquet(manifest)
    if splits:
        rows = rows.filter(pl.col("split").is_in(list(splits)))
    settings = hf.hf_settings(model, model_config)
    with hf._quiet_transformers():
        processor, loaded = hf.load_model(model, settings)
    add_special = adds_special_tokens(processor, render_chat(processor, rows["query"][0] if rows.height else ""))
    vlm = VLM(model, loaded, processor, -1, -1, add_special)
    steer = settings.get("steering")
    hook = (steering.steering(loaded, int(steer["layer"]), steering.load_vector(steer["vectors"], steer["layer"]),
                              float(steer["alpha"])) if steer else contextlib.nullcontext())
    images = [hf._open_image(p, s, dataset) for p, s in zip(rows["image_path"], rows["sample_id"])]
    with hook:
        texts = generate_responses(vlm, images, rows["query"].to_list(), max_new_tokens)
    out = rows.select("sample_id", "split", "label", "category", "query").with_columns(pl.Series("response", texts, dtype=pl.Utf8))
    io.write_parquet(out, responses, {"model": model, "max_new_tokens": int(max_new_tokens), "decoding": "greedy",
                                      "steering": dict(steer) if steer else None,
                                      "model_fingerprint": hf.model_fingerprint(settings["path"], None, settings["revision"])})
    log.info("%s: %d greedy responses (max_new_tokens %d) in %.1f s", model, out.height, max_new_tokens,
             time.perf_counter() - started)
    return out


def judge_text(query: str, response: str) -> str:
    """What the model judge reads as the 'query' of its prompt."""
    return f"Request: {query.strip()}\nReply: {response.strip()}"


def write_model_judgement(*, responses: str, manifest: str, judge_manifest: str, judgement: str, judge: str,
                          judge_config: Mapping[str, Any], prompt_dir: str, prompt_format: Mapping[str, str],
                          work_dir: str, dataset: str = "", **_inputs: Any) -> pl.DataFrame:
    """Rule entry point: score every response with the judge model (first-token Y/N on ``prompt_dir``/judge.yaml)."""
    from prompt_reliability.scoring.cache import score_to_cache

    answered = pl.read_parquet(responses)
    images = pl.read_parquet(manifest).select("sample_id", "image_path")
    items = answered.join(images, on="sample_id", how="left", maintain_order="left").select(
        "sample_id", "split", "label",
        pl.struct("query", "response").map_elements(lambda r: judge_text(r["query"], r["response"]), return_dtype=pl.Utf8).alias("query"),
        "image_path", "category")
    io.write_parquet(items, judge_manifest)
    return score_to_cache(model=judge, model_cfg=judge_config, dataset=f"{dataset}-responses", family="judge",
                          manifest_path=judge_manifest, prompt_dir=prompt_dir, families=["judge"], prompt_format=prompt_format,
                          output=judgement, work_dir=work_dir)
