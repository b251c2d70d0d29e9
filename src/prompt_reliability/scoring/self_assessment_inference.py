"""UnSAF self-assessment, the inference half: stage 1 (question generation) and stage 2 (answering).

Prompts are data (``prompts/self_assessment/unsaf.yaml``): ``generation.<setting>.<kind>`` with
``{k}``; ``answering.<setting>`` with ``{question}``, ``{options}`` and ``{instruction}``;
``variants.<name>`` the answering instruction (``default``, ``cautious``, ``encouraging``).

- Stage 1 (:func:`run_generation`), one job per model x dataset x setting: the first ``images``
  distinct images of the manifest (manifest order), each with the answerable and the unanswerable
  generation prompt -> rows ``sample_id, image_path, setting, kind, text`` (raw, unparsed).
- Parsing happens between the stages, in :mod:`prompt_reliability.analysis.self_assessment_scores`.
- Stage 2 (:func:`run_answering`): every parsed question, under every variant, in a fresh
  conversation with its image -> rows ``question_id, kind, variant, reply``.

Both take a generator (:mod:`generation`): the HF model in the workflow, a served model
(:class:`ServedGenerator`, requests cached per request, see :mod:`served`), canned text in tests.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from prompt_reliability.base import io
from prompt_reliability.data import self_assessment_protocol as protocol
from prompt_reliability.data.self_assessment_protocol import SelfAssessmentError, load_templates  # noqa: F401 (their home before)
from prompt_reliability.scoring.generation import Generator

log = logging.getLogger(__name__)

SETTINGS, KINDS, OPTION_LETTERS = protocol.SETTINGS, protocol.KINDS, protocol.OPTION_LETTERS


def select_images(manifest: pl.DataFrame, n_images: int) -> pl.DataFrame:
    """``sample_id, image_path`` of the first ``n_images`` distinct non-empty images, in manifest order."""
    rows = manifest.filter(pl.col("image_path").is_not_null() & (pl.col("image_path") != ""))
    rows = rows.unique("image_path", keep="first", maintain_order=True).head(n_images)
    if rows.height == 0:
        raise SelfAssessmentError("the dataset has no images (empty image_path); self-assessment asks about images")
    return rows.select("sample_id", "image_path")


def _open_image(path: str):
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")


def run_generation(images: pl.DataFrame, templates: Mapping[str, Any], setting: str, k: int,
                   generate: Generator, open_image=_open_image) -> pl.DataFrame:
    """Stage 1: one raw generation per (image, kind); see the module docstring."""
    if setting not in SETTINGS:
        raise SelfAssessmentError(f"self-assessment setting must be one of {SETTINGS}, got {setting!r}")
    plan = [(row["sample_id"], row["image_path"], kind) for row in images.iter_rows(named=True) for kind in KINDS]
    pictures = {path: open_image(path) for path in images["image_path"]}
    instructions = [templates["generation"][setting][kind].replace("{k}", str(k)) for _, _, kind in plan]
    texts = generate([pictures[path] for _, path, _ in plan], instructions)
    return pl.DataFrame({"sample_id": [p[0] for p in plan], "image_path": [p[1] for p in plan],
                         "setting": [setting] * len(plan), "kind": [p[2] for p in plan], "text": list(texts)},
                        schema={"sample_id": pl.String, "image_path": pl.String, "setting": pl.String, "kind": pl.String,
                                "text": pl.String})


def answer_instruction(templates: Mapping[str, Any], question: Mapping[str, Any], setting: str, variant: str) -> str:
    """The stage-2 user message for one parsed question under one variant."""
    options = "\n".join(f"{letter}. {question[f'option_{letter.lower()}']}" for letter in OPTION_LETTERS) if setting == "mc" else ""
    text = templates["answering"][setting]
    for key, value in (("{question}", question["question"]), ("{options}", options),
                       ("{instruction}", templates["variants"][variant])):
        text = text.replace(key, value)
    return text


def run_answering(questions: pl.DataFrame, templates: Mapping[str, Any], setting: str, variants: Sequence[str],
                  generate: Generator, open_image=_open_image) -> pl.DataFrame:
    """Stage 2: every question under every variant, each a fresh one-turn conversation with its image."""
    unknown = [v for v in variants if v not in templates["variants"]]
    if unknown:
        raise SelfAssessmentError(f"self_assessment.variants has {unknown}; the prompts file defines {list(templates['variants'])}")
    plan = [(variant, q) for variant in variants for q in questions.iter_rows(named=True)]
    pictures = {path: open_image(path) for path in questions["image_path"].unique(maintain_order=True)}
    replies = generate([pictures[q["image_path"]] for _, q in plan],
                       [answer_instruction(templates, q, setting, variant) for variant, q in plan]) if plan else []
    return pl.DataFrame({"question_id": [q["question_id"] for _, q in plan], "kind": [q["kind"] for _, q in plan],
                         "variant": [v for v, _ in plan], "reply": list(replies)},
                        schema={"question_id": pl.String, "kind": pl.String, "variant": pl.String, "reply": pl.String})


# --- rule entry points (workflow/scripts/call.py) -------------------------------------------------


class ServedGenerator:
    """``generate(image_paths, instructions)`` through a served model: one fresh user turn each, image first.

    Images are the files' own bytes (``open_image=str`` keeps paths), so a request is the same bytes
    at every run and a resumed run finds its answers in the cache.
    """

    def __init__(self, client, max_new_tokens: int):
        self.client, self.max_new_tokens = client, int(max_new_tokens)

    def __call__(self, images: Sequence[Any], instructions: Sequence[str]) -> list[str]:
        from prompt_reliability.scoring.served import user_turn

        if len(images) != len(instructions):
            raise ValueError(f"{len(images)} images for {len(instructions)} instructions")
        return self.client.replies([[user_turn(text, [image])] for image, text in zip(images, instructions)],
                                   max_tokens=self.max_new_tokens)

    def stats(self) -> dict[str, Any]:
        return {"backend": "served", **self.client.stats.as_dict(), "max_new_tokens": self.max_new_tokens}


def _generator(model: str, model_config: Mapping[str, Any], settings: Mapping[str, Any], request_cache: str | None,
               connection: Mapping[str, Any] | None = None):
    """``(generate, open_image)`` for the model's backend: hf loads the model here, served sends requests
    (``connection``: the server's URL, key variable, limits; untracked params of the served rules)."""
    if model_config["backend"] == "served":
        from prompt_reliability.scoring.served import ServedClient

        if request_cache is None:
            raise SelfAssessmentError(f"model {model!r} is served: the rule must pass request_cache")
        client = ServedClient.from_config(model, {**model_config, **(connection or {})}, request_cache)
        return ServedGenerator(client, settings["max_new_tokens"]), str
    from prompt_reliability.scoring.backends.hf import hf_settings
    from prompt_reliability.scoring.generation import HFGenerator

    generator = HFGenerator.load(model, hf_settings(model, model_config), settings["max_new_tokens"], settings["batch_size"])
    return generator, _open_image


def generate_questions(manifest: str, prompts: str, generations: str, *, model: str, dataset: str, setting: str,
                       model_config: Mapping[str, Any], settings: Mapping[str, Any], request_cache: str | None = None,
                       connection: Mapping[str, Any] | None = None, **_inputs: Any) -> pl.DataFrame:
    """Rules ``self_assessment_generate`` (hf) and ``self_assessment_generate_served``: stage 1 for one model x dataset x setting."""
    templates = load_templates(prompts)
    images = select_images(pl.read_parquet(manifest), settings["images"])
    generator, open_image = _generator(model, model_config, settings, request_cache, connection)
    table = run_generation(images, templates, setting, settings["k"], generator, open_image)
    stats = generator.stats()
    log.info("%s/%s/%s: %d generations for %d images in %.1f s (%s)", model, dataset, setting, table.height, images.height,
             stats["seconds"], ", ".join(f"{k} {v}" for k, v in stats.items() if k != "seconds"))
    io.write_parquet(table, generations, metadata={"generation": stats})
    return table


def answer_questions(questions: str, prompts: str, answers: str, *, model: str, dataset: str, setting: str,
                     model_config: Mapping[str, Any], settings: Mapping[str, Any], request_cache: str | None = None,
                     connection: Mapping[str, Any] | None = None, **_inputs: Any) -> pl.DataFrame:
    """Rules ``self_assessment_answer`` (hf) and ``self_assessment_answer_served``: stage 2, every variant."""
    templates = load_templates(prompts)
    table_in = pl.read_parquet(questions)
    if table_in.height == 0:
        log.warning("%s/%s/%s: no parseable questions, nothing to answer", model, dataset, setting)
        table = run_answering(table_in, templates, setting, settings["variants"], lambda images, texts: [])
        io.write_parquet(table, answers, metadata={"generation": {"generations": 0}})
        return table
    generator, open_image = _generator(model, model_config, settings, request_cache, connection)
    table = run_answering(table_in, templates, setting, settings["variants"], generator, open_image)
    stats = generator.stats()
    log.info("%s/%s/%s: %d answers in %.1f s (%s)", model, dataset, setting, table.height, stats["seconds"],
             ", ".join(f"{k} {v}" for k, v in stats.items() if k != "seconds"))
    io.write_parquet(table, answers, metadata={"generation": stats})
    return table
