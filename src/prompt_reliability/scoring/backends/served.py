"""Scoring backend ``served``: the label tokens' log-probabilities of the first generated token, from a server.

For a served model with ``logprobs`` set (``models.<name>.logprobs``), every (sample, prompt) is one
chat request (image, then the rendered prompt; ``max_tokens: 1``, greedy) sent through
:class:`~prompt_reliability.scoring.served.ServedClient` (cached per request, resumable). The reply's
``choices[0].logprobs.content[0]`` holds the first token and its ``top_logprobs``:

- ``top_logprobs`` (commercial APIs, vLLM): ``logprobs: true, top_logprobs: k``; a label token is read
  where an entry's ``token`` equals the label string exactly. A label outside the k returned is
  **missing**: its row is not scored, and the job fails naming how many rows lack which label (raise
  ``top_logprobs``, or use ``logprob_token_ids``); no value is invented.
- ``logprob_token_ids`` (vLLM >= 0.28): ``logprobs: true, logprob_token_ids: [u, s],
  return_tokens_as_token_ids: true``: the server returns the sampled token plus each requested id,
  written ``token_id:<id>``; the ids come from ``models.<name>.label_token_ids``.

``logit_u``/``logit_s`` hold the two log-probabilities: ``sigmoid(logit_u - logit_s)`` is then
p(U) / (p(U) + p(S)), the same two-label rule as the hf backend's raw logits (the softmax
normaliser cancels), and ``label_mass`` = p(U) + p(S).

Tested on response bodies in both documented shapes; not yet run against a real logprob server
here (``transformers serve`` ignores ``logprobs``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl

from prompt_reliability.data.prompts import render_instruction
from prompt_reliability.scoring.cache import ScoreCacheError, ScoringJob

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelLogprobs:
    """The two labels' log-probabilities at the first generated position (None = not returned)."""

    unsafe: float | None
    safe: float | None
    top_token: str | None


def label_tokens(mode: str, labels: tuple[str, str], token_ids: Mapping[str, int] | None) -> tuple[str, str]:
    """The ``token`` strings the server writes for the (unsafe, safe) labels in this mode."""
    if mode == "logprob_token_ids":
        if not token_ids:
            raise ScoreCacheError("logprobs 'logprob_token_ids' needs label_token_ids {unsafe: <id>, safe: <id>}")
        return f"token_id:{int(token_ids['unsafe'])}", f"token_id:{int(token_ids['safe'])}"
    if mode == "top_logprobs":
        return labels
    raise ScoreCacheError(f"logprobs {mode!r} reads no label log-probabilities; use top_logprobs or logprob_token_ids")


def request_fields(mode: str, top_k: int, token_ids: Mapping[str, int] | None) -> dict[str, Any]:
    """Request fields that ask the server for the labels' log-probabilities."""
    if mode == "top_logprobs":
        return {"logprobs": True, "top_logprobs": int(top_k)}
    if mode == "logprob_token_ids":
        unsafe, safe = int(token_ids["unsafe"]), int(token_ids["safe"])
        return {"logprobs": True, "logprob_token_ids": [unsafe, safe], "return_tokens_as_token_ids": True}
    raise ScoreCacheError(f"logprobs {mode!r} reads no label log-probabilities")


def read_label_logprobs(body: Mapping[str, Any], tokens: tuple[str, str]) -> LabelLogprobs:
    """The (unsafe, safe) tokens' log-probabilities at the first position of a chat-completion body.

    An entry counts when its ``token`` equals the label token exactly; a label found nowhere is
    None (missing), never a floor value. A body without log-probabilities is an error: the server
    ignored the request for them.
    """
    try:
        content = body["choices"][0]["logprobs"]["content"]
    except (KeyError, IndexError, TypeError):
        content = None
    if not content:
        raise ScoreCacheError("the server's reply carries no choices[0].logprobs.content: it does not return "
                              "log-probabilities (transformers serve ignores them), so it cannot score; set the model's "
                              "logprobs: none to use it for generation only")
    first = content[0]
    found: dict[str, float] = {}
    for entry in [first, *(first.get("top_logprobs") or [])]:
        token, value = entry.get("token"), entry.get("logprob")
        if token in tokens and value is not None and token not in found:
            found[token] = float(value)
    unsafe, safe = (found.get(token) for token in tokens)
    for value in (unsafe, safe):
        if value is not None and not (math.isfinite(value) or value == -math.inf):
            raise ScoreCacheError(f"the server returned the log-probability {value!r}; expected a number <= 0")
    return LabelLogprobs(unsafe, safe, first.get("token"))


def label_rows(bodies: list[Mapping[str, Any]], keys: list[tuple[str, str]], tokens: tuple[str, str],
               labels: tuple[str, str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(rows, missing)``: score rows for (sample_id, prompt_id) ``keys``, and those lacking a label."""
    read = [read_label_logprobs(body, tokens) for body in bodies]
    table = pl.DataFrame({"sample_id": [k[0] for k in keys], "prompt_id": [k[1] for k in keys],
                          "logit_u": [r.unsafe for r in read], "logit_s": [r.safe for r in read],
                          "top_token": [r.top_token for r in read]},
                         schema={"sample_id": pl.String, "prompt_id": pl.String, "logit_u": pl.Float64,
                                 "logit_s": pl.Float64, "top_token": pl.String})
    missing = table.filter(pl.col("logit_u").is_null() | pl.col("logit_s").is_null()).with_columns(
        pl.when(pl.col("logit_u").is_null() & pl.col("logit_s").is_null()).then(pl.lit(f"{labels[0]} and {labels[1]}"))
        .when(pl.col("logit_u").is_null()).then(pl.lit(labels[0])).otherwise(pl.lit(labels[1])).alias("missing"))
    rows = table.with_columns((pl.col("logit_u").exp() + pl.col("logit_s").exp()).alias("label_mass"))
    return rows, missing


def score(job: ScoringJob) -> tuple[pl.DataFrame, dict]:
    from prompt_reliability.scoring.served import ServedClient, user_turn

    cfg = job.model_cfg
    if job.request_cache is None:
        raise ScoreCacheError(f"model {job.model!r} is served: its scoring rule must pass request_cache")
    labels = (job.registry.labels.unsafe, job.registry.labels.safe)
    tokens = label_tokens(cfg["logprobs"], labels, cfg.get("label_token_ids"))
    client = ServedClient.from_config(job.model, cfg, job.request_cache)
    fmt = job.prompt_format
    keys, conversations = [], []
    for row in job.manifest.select("sample_id", "query", "image_path").iter_rows(named=True):
        images = [row["image_path"]] if row["image_path"] else []
        for template in job.templates:
            text = render_instruction(template.text, row["query"], fmt["with_query"], fmt["without_query"])
            keys.append((row["sample_id"], template.prompt_id))
            conversations.append([user_turn(text, images)])
    bodies = client.complete(conversations, max_tokens=1, desc=f"{job.model}/{job.dataset}/{job.family}",
                             **request_fields(cfg["logprobs"], cfg["top_logprobs"], cfg.get("label_token_ids")))
    rows, missing = label_rows(bodies, keys, tokens, labels)
    if missing.height:
        first = missing.row(0, named=True)
        raise ScoreCacheError(
            f"model {job.model!r}, dataset {job.dataset!r}, family {job.family!r}: {missing.height} of {rows.height} "
            f"(sample, prompt) rows lack a label's log-probability (first: sample {first['sample_id']!r}, prompt "
            f"{first['prompt_id']!r}, missing {first['missing']!r}); the server returned only its top "
            f"{cfg['top_logprobs']} tokens. A missing label is not invented: raise models.{job.model}.top_logprobs, or "
            "use logprobs: logprob_token_ids on vLLM >= 0.28. The answers are cached: a rerun sends nothing again")
    provenance = {"served": {"model": cfg["model"], "logprobs": cfg["logprobs"], "label_tokens": list(tokens),
                             "requests": client.stats.as_dict()}}
    log.info("%s/%s/%s: %d rows scored from the server's log-probabilities (%s)", job.model, job.dataset, job.family,
             rows.height, client.stats.as_dict())
    return rows, provenance
