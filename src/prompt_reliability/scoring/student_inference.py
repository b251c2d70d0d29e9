"""What a student (the base model, or the base model + one distilled LoRA adapter) writes when evaluated.

UnSAF section 5.2 evaluates each student with the same two-stage self-assessment as the teachers,
and its hallucination with POPE and CHAIR (Appendix G). Two model steps per student arm:

- :func:`student_generate`: stage 1 (answerable / unanswerable questions) on the held-out images,
  POPE replies to the object probes, and one caption per scene image (``caption_prompt``).
- :func:`student_answer`: stage 2, every parsed question in a fresh conversation (``variant``).

Parsing and scoring happen in the analysis stage (``analysis.self_assessment_scores``,
``analysis.hallucination``). An adapter is loaded with ``peft.PeftModel.from_pretrained`` from the
safetensors folder the training job wrote; the base arm loads no adapter.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import polars as pl

from prompt_reliability.base import io
from prompt_reliability.scoring.self_assessment_inference import load_templates, run_answering, run_generation

log = logging.getLogger(__name__)


def load_student(student: str, model_config: Mapping[str, Any], adapter: str | None, max_new_tokens: int,
                 batch_size: int, threads: int | None = None):
    """An :class:`HFGenerator` over the student, with the adapter in ``adapter`` when given."""
    import torch

    from prompt_reliability.scoring.backends.hf import _quiet_transformers, hf_settings, load_model
    from prompt_reliability.scoring.distillation import on_gpu_if_any
    from prompt_reliability.scoring.generation import HFGenerator

    if threads:
        torch.set_num_threads(int(threads))
    with _quiet_transformers():
        processor, model = load_model(student, hf_settings(student, model_config))
        model = on_gpu_if_any(model)
        if adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter).eval()
    return HFGenerator(processor, model, max_new_tokens, batch_size)


def _open(path: str):
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")


def generate_student(generator, images: pl.DataFrame, scenes: pl.DataFrame, probes: pl.DataFrame,
                     templates: Mapping[str, Any], *, setting: str, k: int, caption_prompt: str,
                     open_image=_open) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(stage-1 generations, POPE replies, captions) of one student arm."""
    generations = run_generation(images.select("sample_id", "image_path"), templates, setting, k, generator,
                                 open_image=open_image)
    pictures = {p: open_image(p) for p in dict.fromkeys([*probes["image_path"], *scenes["image_path"]])}
    pope = probes.with_columns(pl.Series("reply", generator([pictures[p] for p in probes["image_path"]],
                                                            probes["query"].to_list()) if probes.height else [],
                                         dtype=pl.String))
    captions = scenes.select("sample_id", "image_path").with_columns(pl.Series(
        "caption", generator([pictures[p] for p in scenes["image_path"]], [caption_prompt] * scenes.height)
        if scenes.height else [], dtype=pl.String))
    return generations, pope, captions


def student_generate(*, heldout: str, scenes: str, probes: str, prompts: str, generations: str, pope: str,
                     captions: str, student: str, arm: str, model_config: Mapping[str, Any],
                     evaluation: Mapping[str, Any], setting: str, k: int, caption_prompt: str,
                     adapter: str | None = None, threads: int | None = None, **_inputs: Any) -> None:
    """Rule ``distillation_generate``: stage 1, POPE and captions of one (student, arm)."""
    generator = load_student(student, model_config, adapter, evaluation["max_new_tokens"], evaluation["batch_size"],
                             threads)
    tables = generate_student(generator, pl.read_parquet(heldout), pl.read_parquet(scenes), pl.read_parquet(probes),
                              load_templates(prompts), setting=setting, k=k, caption_prompt=caption_prompt)
    stats = generator.stats()
    for table, path in zip(tables, (generations, pope, captions)):
        io.write_parquet(table, path, metadata={"student": student, "arm": arm, "generation": stats})
    log.info("%s/%s: %d generations, %d POPE replies, %d captions in %.1f s", student, arm, tables[0].height,
             tables[1].height, tables[2].height, stats["seconds"])


def student_answer(*, questions: str, prompts: str, answers: str, student: str, arm: str,
                   model_config: Mapping[str, Any], evaluation: Mapping[str, Any], setting: str, variant: str,
                   adapter: str | None = None, threads: int | None = None, **_inputs: Any) -> None:
    """Rule ``distillation_answer``: stage 2 of one (student, arm)."""
    table_in = pl.read_parquet(questions)
    templates = load_templates(prompts)
    if table_in.height == 0:
        log.warning("%s/%s: no parseable questions, nothing to answer", student, arm)
        table = run_answering(table_in, templates, setting, [variant], lambda images, texts: [])
        io.write_parquet(table, answers, metadata={"student": student, "arm": arm, "generation": {"generations": 0}})
        return
    generator = load_student(student, model_config, adapter, evaluation["max_new_tokens"], evaluation["batch_size"],
                             threads)
    table = run_answering(table_in, templates, setting, [variant], generator)
    io.write_parquet(table, answers, metadata={"student": student, "arm": arm, "generation": generator.stats()})
    log.info("%s/%s: %d answers", student, arm, table.height)
