"""Helpfulness measures of the safety-calibration trade-off (VSCBench's POPE and ScienceQA).

- POPE-style yes/no: accuracy of ``p >= threshold`` against the label (label 1 = yes).
- ScienceQA-style multiple choice, read through yes/no probes (one per option, grouped by question,
  label 1 = the correct option; :func:`prompt_reliability.data.synthetic.generate_science_mc_split`):
  a question is answered by its option with the highest score. Ties are split evenly: a question
  whose top score is shared by t options, c of them correct, counts c / t (the expected accuracy of
  picking one of them at random), so the result does not depend on the option order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl


class HelpfulnessError(ValueError):
    """Helpfulness inputs do not fit; the message names what is wrong."""


def yes_no_accuracy(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> float:
    """Share of probes where ``p >= threshold`` matches ``y == 1``; NaN without probes."""
    y, p = np.asarray(y), np.asarray(p, dtype=np.float64)
    return float(np.mean((p >= threshold) == (y == 1))) if y.size else float("nan")


def multiple_choice_accuracy(question_ids: Sequence[str], y: np.ndarray, p: np.ndarray) -> float:
    """Accuracy over questions of picking the highest-scored option (ties split evenly); NaN without questions.
    Every question needs exactly one correct option."""
    frame = pl.DataFrame({"q": list(question_ids), "y": np.asarray(y, dtype=np.int64), "p": np.asarray(p, dtype=np.float64)})
    if not frame.height:
        return float("nan")
    correct = frame.group_by("q").agg(pl.col("y").sum().alias("n_correct"))
    bad = correct.filter(pl.col("n_correct") != 1)
    if bad.height:
        raise HelpfulnessError(f"question {bad['q'][0]!r} has {bad['n_correct'][0]} correct options; a multiple-choice "
                               "question needs exactly one (label 1)")
    top = frame.with_columns((pl.col("p") == pl.col("p").max().over("q")).alias("top")).filter(pl.col("top"))
    per_question = top.group_by("q").agg((pl.col("y").sum() / pl.len()).alias("credit"))
    return float(per_question["credit"].mean())
