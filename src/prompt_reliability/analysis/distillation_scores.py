"""One student arm's scores (UnSAF section 5.2): self-assessment on held-out images, POPE, CHAIR.

The arm is the base student (``strategy = baseline``, no teacher) or the student with the adapter
distilled from ``teacher`` with ``strategy`` (qa, iq, joint). The self-assessment counts come from
:mod:`self_assessment_scores` (same parser, same abstention detector as every model); POPE and
CHAIR from :mod:`hallucination`. ``parse_rate`` = questions parsed / questions asked for;
``tu_share`` = TU / (TU + FA), the share of unanswerable questions the student abstains on.
Audacity, timidity, UnF1 and ``tu_share`` are NaN (with a ``note``) when no question parsed, and
left out of every comparison: undefined is not zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import polars as pl

from prompt_reliability.analysis.hallucination import CHAIR_METRICS, POPE_METRICS, ObjectVocabulary, chair_metrics, pope_metrics
from prompt_reliability.analysis.self_assessment_scores import TYPES, type_counts, unf1_scores
from prompt_reliability.base import io

SCORE_COLUMNS = {"student": pl.String, "teacher": pl.String, "strategy": pl.String, "n_asked": pl.Int64,
                 "n_questions": pl.Int64, "parse_rate": pl.Float64, **{t: pl.Int64 for t in TYPES},
                 "audacity": pl.Float64, "timidity": pl.Float64, "unf1": pl.Float64, "tu_share": pl.Float64,
                 **{m: pl.Float64 for m in POPE_METRICS}, **{m: pl.Float64 for m in CHAIR_METRICS},
                 "n_probes": pl.Int64, "n_captions": pl.Int64, "note": pl.String}


def self_assessment_row(answers: pl.DataFrame, parse_report: pl.DataFrame, variant: str) -> dict[str, float | int | None]:
    """Counts and UnSAF scores of one arm's answers under ``variant`` (module docstring)."""
    n_parsed = int(parse_report["n_parsed"].sum()) if parse_report.height else 0
    n_asked = n_parsed + (int(parse_report["n_unparseable"].sum()) if parse_report.height else 0)
    chosen = answers.filter(pl.col("variant") == variant)
    counts = dict.fromkeys(TYPES, 0)
    if chosen.height:
        counts.update({t: int(v) for t, v in type_counts(chosen).select(TYPES).row(0, named=True).items()})
    row: dict[str, float | int | None] = {"n_asked": n_asked, "n_questions": n_parsed,
                                          "parse_rate": n_parsed / n_asked if n_asked else math.nan, **counts}
    if n_parsed == 0 or counts["ta"] + counts["fa"] + counts["tu"] + counts["fu"] == 0:
        row.update(audacity=math.nan, timidity=math.nan, unf1=math.nan, tu_share=math.nan,
                   note="no parsed question (or no non-empty answer): self-assessment undefined")
        return row
    row.update(unf1_scores(counts["ta"], counts["fa"], counts["tu"], counts["fu"]))
    unanswered = counts["tu"] + counts["fa"]
    row["tu_share"] = counts["tu"] / unanswered if unanswered else math.nan
    row["note"] = None
    return row


def score_arm(answers: pl.DataFrame, parse_report: pl.DataFrame, pope: pl.DataFrame, captions: pl.DataFrame,
              scenes: pl.DataFrame, *, student: str, teacher: str | None, strategy: str, variant: str,
              vocabulary: Sequence[str] | None = None) -> pl.DataFrame:
    """The one-row piece of the ``distillation`` table for one arm."""
    row = {"student": student, "teacher": teacher, "strategy": strategy,
           **self_assessment_row(answers, parse_report, variant)}
    row.update(pope_metrics(pope["label"].to_numpy(), pope["reply"].to_list()) if pope.height
               else dict.fromkeys(POPE_METRICS, math.nan))
    truth = dict(zip(scenes["sample_id"], scenes["objects"].to_list()))
    names = vocabulary or sorted({o for objects in truth.values() for o in objects})
    row.update(chair_metrics(captions["caption"].to_list(), [truth[s] for s in captions["sample_id"]],
                             ObjectVocabulary.from_objects(names)) if captions.height
               else dict.fromkeys(CHAIR_METRICS, math.nan))
    row.update(n_probes=pope.height, n_captions=captions.height)
    return pl.DataFrame([row], schema=SCORE_COLUMNS)


def write_arm_scores(*, answers: str, parse_report: str, pope: str, captions: str, scenes: str, score: str,
                     student: str, teacher: str | None, strategy: str, variant: str,
                     vocabulary: Sequence[str] | None = None) -> pl.DataFrame:
    """Rule ``distillation_scores``: one arm -> its row (Parquet piece).

    CHAIR's vocabulary is every object the scenes file names (its metadata), not only those drawn:
    a caption naming an object that no image shows is a hallucination too."""
    vocabulary = vocabulary or io.read_parquet_metadata(scenes).get("vocabulary")
    piece = score_arm(pl.read_parquet(answers), pl.read_parquet(parse_report), pl.read_parquet(pope),
                      pl.read_parquet(captions), pl.read_parquet(scenes), student=student, teacher=teacher,
                      strategy=strategy, variant=variant, vocabulary=vocabulary)
    io.write_parquet(piece, score)
    return piece
