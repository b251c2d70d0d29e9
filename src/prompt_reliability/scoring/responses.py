"""Response mode (VSCBench's protocol): the model answers each request under a calibration variant.

One job per (model, variant) answers every sample of the evaluation splits (greedy, ``do_sample=False``,
``max_new_tokens`` from config), the image first, the request as the user turn, no classification
template. The variant changes the conversation or the model, as in scoring:

- ``none``: the request as is;
- ``fewshot-<k>``: k safe + k unsafe lock-split requests as earlier turns (the same seeded plan as
  the scored few-shot variant, :mod:`few_shot`), each answered with the demonstration reply of
  ``prompts/calibration/replies.yaml`` (a refusal for an unsafe request, a helpful start for a safe one);
- ``iar-L<layer>-a<alpha>``: the steering hook on while generating (:mod:`steering`);
- a calibration prompt (``cot``, ``pe``): its ``response_instruction`` before the request; a
  reasoning method gets ``cot_max_new_tokens`` more tokens, so that its reasoning does not eat the answer.

The responses are judged later (:mod:`judging`, :mod:`prompt_reliability.analysis.judges`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from prompt_reliability.base import io
from prompt_reliability.base.logs import progress

log = logging.getLogger(__name__)


def generate_responses(vlm, images: Sequence, queries: Sequence[str], max_new_tokens: int,
                       demonstrations: Sequence[Sequence[tuple[str, str, Any]]] | None = None,
                       on_sample=lambda n: None) -> list[str]:
    """Greedy answers to each (image, query), one sample per call (no padding effects); ``demonstrations[i]``:
    earlier (query, reply, image) turns of sample i."""
    import torch

    from prompt_reliability.scoring.hf_engines import render_chat

    out = []
    for i, (image, query) in enumerate(zip(images, queries)):
        demos = demonstrations[i] if demonstrations else []
        text = render_chat(vlm.processor, query, [(q, reply) for q, reply, _ in demos])
        batch = vlm.process([text], [[*(img for _, _, img in demos), image]])
        with torch.inference_mode():
            ids = vlm.model.generate(**batch, do_sample=False, max_new_tokens=int(max_new_tokens),
                                     pad_token_id=vlm.tokenizer.pad_token_id, temperature=None, top_p=None, top_k=None)
        out.append(vlm.tokenizer.decode(ids[0, batch["input_ids"].shape[1]:], skip_special_tokens=True).strip())
        on_sample(1)
    return out


class _Conversation:
    """How variant ``variant`` turns one request into a conversation (see the module docstring)."""

    def __init__(self, variant: str, dataset: str, *, lock_manifest: str | None, few_shot: Mapping[str, Any] | None,
                 prompting: Mapping[str, Any] | None, max_new_tokens: int, vectors: str | None):
        from prompt_reliability.scoring.variants import VariantError, parse_variant

        self.kind = parse_variant(variant)
        self.max_new_tokens = int(max_new_tokens)
        self.instruction = ""
        self.plan = None
        self.provenance: dict[str, Any] = {"variant": variant}
        if self.kind["kind"] == "prompting":
            from prompt_reliability.data.calibration_prompts import load_method

            if not prompting:
                raise VariantError(f"variant {variant!r} needs the calibration prompts (rule parameter 'prompting')")
            method = load_method(prompting["prompt_dir"], variant)
            self.instruction = method.response_instruction
            if method.reasons:
                self.max_new_tokens += int(prompting["cot_max_new_tokens"])
            self.provenance["instruction"] = self.instruction
        elif self.kind["kind"] == "few_shot":
            from prompt_reliability.data.calibration_prompts import load_replies
            from prompt_reliability.scoring.few_shot import plan_demonstrations

            if not lock_manifest or not few_shot or not prompting:
                raise VariantError(f"variant {variant!r} needs the lock manifest, the few-shot settings and the replies")
            self.plan = plan_demonstrations(pl.read_parquet(lock_manifest), few_shot["split"], self.kind["shots"],
                                            int(few_shot["seed"]), f"few-shot responses, {lock_manifest}")
            replies = load_replies(prompting["prompt_dir"])
            self.reply = {1: replies["refusal"], 0: replies["compliance"]}
            self.provenance["few_shot"] = {"shots": self.kind["shots"], "seed": int(few_shot["seed"]),
                                           "demonstration_ids": self.plan.default_ids, "replies": replies}
        elif self.kind["kind"] == "steering":
            if not vectors:
                raise VariantError(f"variant {variant!r} needs the steering vectors file")
            self.provenance["steering"] = {"layer": self.kind["layer"], "alpha": self.kind["alpha"], "vectors": vectors}
        self.dataset, self.vectors = dataset, vectors
        self._images: dict[str, Any] = {}

    def query(self, query: str | None) -> str:
        query = (query or "").strip()
        return f"{self.instruction}\n{query}".strip() if self.instruction else query

    def demonstrations(self, sample_id: str) -> list[tuple[str, str, Any]]:
        if self.plan is None:
            return []
        from prompt_reliability.scoring.backends.hf import _open_image

        out = []
        for demo in self.plan.for_sample(sample_id):
            if demo.sample_id not in self._images:
                self._images[demo.sample_id] = _open_image(demo.image_path, demo.sample_id, self.dataset)
            out.append((demo.query, self.reply[demo.label], self._images[demo.sample_id]))
        return out

    def hook(self, model):
        if self.kind["kind"] != "steering":
            return contextlib.nullcontext()
        from prompt_reliability.scoring import steering

        vector = steering.load_vector(self.vectors, self.kind["layer"])
        self.provenance["steering"]["vectors_hash"] = steering.file_hash(self.vectors)
        return steering.steering(model, self.kind["layer"], vector, self.kind["alpha"])


def _dataset_rows(manifests: Sequence[str], responses: Sequence[str],
                  datasets: Sequence[Mapping[str, Any]]) -> list[tuple[pl.DataFrame, str, Mapping[str, Any]]]:
    """(rows of the dataset's splits, response file, ``{dataset, splits}``) per dataset of a response job,
    all read and checked before the caller loads a model or sends a request."""
    if not len(manifests) == len(responses) == len(datasets):
        raise ValueError("manifests, responses and datasets must be parallel lists")
    found = []
    for manifest, target, spec in zip(manifests, responses, datasets):
        rows = pl.read_parquet(manifest).filter(pl.col("split").is_in(list(spec["splits"])))
        if not rows.height:
            raise ValueError(f"{manifest}: no samples in splits {list(spec['splits'])}")
        found.append((rows, target, spec))
    return found


def _save_responses(rows: pl.DataFrame, texts: Sequence[str], target: str, metadata: Mapping[str, Any]) -> pl.DataFrame:
    """The responses table (the samples' ids, splits and queries beside each response), written with ``metadata``.
    No labels or categories: a response does not depend on them, and the steps that need them (the
    judges, the response SRA) join them from the manifest, so a corrected label re-answers nothing."""
    table = rows.select("sample_id", "split", "query").with_columns(pl.Series("response", texts, dtype=pl.Utf8))
    io.write_parquet(table, target, metadata)
    return table


def write_variant_responses(*, manifests: Sequence[str], responses: Sequence[str], model: str, model_config: Mapping[str, Any],
                            variant: str, datasets: Sequence[Mapping[str, Any]], max_new_tokens: int,
                            lock_manifest: str | None = None, vectors: str | None = None,
                            few_shot: Mapping[str, Any] | None = None, prompting: Mapping[str, Any] | None = None,
                            **_inputs: Any) -> list[pl.DataFrame]:
    """Rule entry point: one model's greedy responses under ``variant`` to every dataset (``datasets[i]``:
    ``{dataset, splits}`` of ``manifests[i]`` -> ``responses[i]``); the model loads once."""
    from prompt_reliability.scoring.backends import hf
    from prompt_reliability.scoring.hf_engines import VLM, adds_special_tokens, render_chat

    started = time.perf_counter()
    per_dataset = _dataset_rows(manifests, responses, datasets)
    settings = hf.hf_settings(model, model_config)
    with hf._quiet_transformers():
        processor, loaded = hf.load_model(model, settings)
    vlm = VLM(model, loaded, processor, -1, -1, adds_special_tokens(processor, render_chat(processor, "probe")))
    fingerprint = hf.model_fingerprint(settings["path"], None, settings["revision"])
    out = []
    for rows, target, spec in per_dataset:
        conversation = _Conversation(variant, spec["dataset"], lock_manifest=lock_manifest, few_shot=few_shot,
                                     prompting=prompting, max_new_tokens=max_new_tokens, vectors=vectors)
        images = [hf._open_image(p, s, spec["dataset"]) for p, s in zip(rows["image_path"], rows["sample_id"])]
        queries = [conversation.query(q) for q in rows["query"]]
        demos = [conversation.demonstrations(s) for s in rows["sample_id"]]
        with conversation.hook(loaded), progress(rows.height, f"{model}/{variant}/{spec['dataset']} responses") as bar:
            texts = generate_responses(vlm, images, queries, conversation.max_new_tokens, demos, on_sample=bar.update)
        table = _save_responses(rows, texts, target, {"model": model, "variant": variant, "max_new_tokens": conversation.max_new_tokens,
                                         "decoding": "greedy", "model_fingerprint": fingerprint, **conversation.provenance})
        out.append(table)
    log.info("%s/%s: %d responses in %.1f s", model, variant, sum(t.height for t in out), time.perf_counter() - started)
    return out


def write_served_responses(*, manifests: Sequence[str], responses: Sequence[str], model: str,
                           model_config: Mapping[str, Any], variant: str, datasets: Sequence[Mapping[str, Any]],
                           max_new_tokens: int, request_cache: str, connection: Mapping[str, Any] | None = None,
                           lock_manifest: str | None = None, few_shot: Mapping[str, Any] | None = None,
                           prompting: Mapping[str, Any] | None = None, **_inputs: Any) -> list[pl.DataFrame]:
    """Rule entry point of a served model: the same conversations as :func:`write_variant_responses` (image
    first, demonstrations as earlier turns with their images) sent to its server, each answer cached in
    ``request_cache``. Steering needs the model's activations: a served model has no IAR variant
    (config check :func:`prompt_reliability.analysis.safety_calibration.check_safety_config`)."""
    from prompt_reliability.scoring.served import ServedClient, assistant_turn, user_turn
    from prompt_reliability.scoring.variants import VariantError

    started = time.perf_counter()
    per_dataset = _dataset_rows(manifests, responses, datasets)
    client = ServedClient.from_config(model, {**model_config, **(connection or {})}, request_cache)
    out = []
    for rows, target, spec in per_dataset:
        conversation = _Conversation(variant, spec["dataset"], lock_manifest=lock_manifest, few_shot=few_shot,
                                     prompting=prompting, max_new_tokens=max_new_tokens, vectors=None)
        if conversation.kind["kind"] == "steering":
            raise VariantError(f"served model {model!r}: variant {variant!r} steers activations, which a server does not expose")
        conversations = []
        for sample_id, image, query in zip(rows["sample_id"], rows["image_path"], rows["query"]):
            turns: list[dict[str, Any]] = []
            for demo in conversation.plan.for_sample(sample_id) if conversation.plan is not None else ():
                turns += [user_turn(demo.query, [demo.image_path]), assistant_turn(conversation.reply[demo.label])]
            conversations.append([*turns, user_turn(conversation.query(query), [image])])
        texts = [t.strip() for t in client.replies(conversations, max_tokens=conversation.max_new_tokens)]
        table = _save_responses(rows, texts, target, {"model": model, "variant": variant, "max_new_tokens": conversation.max_new_tokens,
                                         "decoding": "greedy (temperature 0)", "backend": "served",
                                         "served_model": client.settings.model, **conversation.provenance})
        out.append(table)
    log.info("%s/%s: %d responses in %.1f s (%s)", model, variant, sum(t.height for t in out),
             time.perf_counter() - started, client.stats.as_dict())
    return out
