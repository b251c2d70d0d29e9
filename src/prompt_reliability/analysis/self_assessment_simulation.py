"""UnSAF with a simulated self-assessor: both stages, the real parser in between, and the run's table rows.

Rule ``self_assessment_simulate`` (one job per model x dataset): for every setting and seed, the
simulated model (:mod:`prompt_reliability.scoring.self_assessment_simulator`) writes its stage-1
generations, :func:`~prompt_reliability.analysis.self_assessment_scores.questions_table` parses them,
the model answers the parsed questions under every variant, and the same files as an HF
self-assessor's are written (``generations``, ``questions``, ``parse_report``, ``answers``, ``scores``
per setting, every row with its ``seed``), plus ``task.parquet``: its answers to ``task_items``
benchmark items (``correct``, ``confidence``), which give the conventional metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from prompt_reliability.analysis import self_assessment_scores as sa
from prompt_reliability.base import io
from prompt_reliability.scoring import self_assessment_simulator as sim

log = logging.getLogger(__name__)


def image_ids(manifest: pl.DataFrame, n_images: int) -> pl.DataFrame:
    """``sample_id, image_path`` of the first ``n_images`` distinct images (sample ids when the set has no images)."""
    if "image_path" in manifest.columns and manifest["image_path"].fill_null("").str.len_chars().max():
        rows = manifest.filter(pl.col("image_path").fill_null("") != "").unique("image_path", keep="first",
                                                                                 maintain_order=True)
    else:
        rows = manifest.unique("sample_id", keep="first", maintain_order=True).with_columns(
            pl.lit("").alias("image_path"))
    return rows.head(n_images).select("sample_id", pl.col("image_path").fill_null(""))


def simulate_setting(images: pl.DataFrame, profile: Mapping[str, Any], simulation: Mapping[str, Any], *, model: str,
                     dataset: str, setting: str, k: int, variants: Sequence[str]) -> dict[str, pl.DataFrame]:
    """Generations, questions, parse report and answers of every seed for one setting (each row with ``seed``)."""
    effects = simulation["effects"]
    parts: dict[str, list[pl.DataFrame]] = {"generations": [], "questions": [], "parse_report": [], "answers": []}
    for seed in range(simulation["seeds"]):
        generations = sim.simulate_generations(images, profile, effects, model=model, dataset=dataset, setting=setting,
                                               k=k, seed=seed)
        questions, parse_report = sa.parse_generations(generations, k)
        questions = questions.with_columns((pl.lit(f"{seed}:") + pl.col("question_id")).alias("question_id"))
        answers = sim.simulate_answers(questions, profile, effects, model=model, dataset=dataset, setting=setting,
                                       variants=variants, seed=seed, mc_answer_bias=simulation["mc_answer_bias"])
        # the image of each answer: UnF1's sample-size view subsamples images (metric_stability)
        answers = answers.join(questions.select("question_id", "sample_id"), on="question_id", how="left",
                               maintain_order="left")
        for name, frame in (("generations", generations), ("questions", questions),
                            ("parse_report", parse_report), ("answers", answers)):
            parts[name].append(frame.with_columns(pl.lit(seed, pl.Int64).alias("seed")))
    return {name: pl.concat(frames) for name, frames in parts.items()}


def simulate_task(profile: Mapping[str, Any], simulation: Mapping[str, Any], *, model: str, dataset: str) -> pl.DataFrame:
    difficulty = float((simulation["datasets"].get(dataset) or {}).get("difficulty", 0.0))
    return pl.concat([sim.simulate_task(profile, simulation["effects"], model=model, dataset=dataset,
                                        n_items=simulation["task_items"], difficulty=difficulty, seed=seed)
                      for seed in range(simulation["seeds"])])


def simulate_run(manifest: str, generations: Sequence[str], questions: Sequence[str], parse_report: Sequence[str],
                 answers: Sequence[str], scores: Sequence[str], task: str, *, model: str, dataset: str,
                 profile: Mapping[str, Any], simulation: Mapping[str, Any], settings: Sequence[str], images: int, k: int,
                 variants: Sequence[str], ece_bins: int) -> None:
    """Rule ``self_assessment_simulate``: every setting of one model x dataset (output lists follow ``settings``)."""
    chosen = image_ids(pl.read_parquet(manifest), images)
    task_answers = simulate_task(profile, simulation, model=model, dataset=dataset)
    io.write_parquet(task_answers, task)
    for i, setting in enumerate(settings):
        run = simulate_setting(chosen, profile, simulation, model=model, dataset=dataset, setting=setting, k=k,
                               variants=variants)
        for name, paths in (("generations", generations), ("questions", questions), ("parse_report", parse_report),
                            ("answers", answers)):
            io.write_parquet(run[name], paths[i])
        table = sa.score_table(run["answers"], run["parse_report"], variants, model=model, dataset=dataset,
                               setting=setting, task=task_answers, n_bins=ece_bins)
        io.write_parquet(table, scores[i])
        parsed, missing = run["questions"].height, int(run["parse_report"]["n_unparseable"].sum())
        log.info("%s/%s/%s: %d seeds, %d of %d requested questions parsed, UnF1 (default variant) %.3f", model, dataset,
                 setting, simulation["seeds"], parsed, parsed + missing, table["unf1"][0])
