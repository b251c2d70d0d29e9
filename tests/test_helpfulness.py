"""Helpfulness beside POPE: ScienceQA-style multiple choice read through yes/no probes."""

import numpy as np
import polars as pl
import pytest
from brute_force import multiple_choice_accuracy as brute_mc
from PIL import Image

from prompt_reliability.analysis.helpfulness import HelpfulnessError, multiple_choice_accuracy, yes_no_accuracy
from prompt_reliability.data.synthetic import POPE_COLOURS, generate_science_mc_split


def test_multiple_choice_accuracy_matches_enumeration_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(30):
        n_questions = int(rng.integers(1, 6))
        ids, labels, scores = [], [], []
        for q in range(n_questions):
            k = int(rng.integers(2, 5))
            correct = int(rng.integers(k))
            for option in range(k):
                ids.append(f"q{q}")
                labels.append(int(option == correct))
                scores.append(float(rng.choice([0.1, 0.5, 0.9])))  # coarse values: many ties
        assert multiple_choice_accuracy(ids, np.array(labels), np.array(scores)) == pytest.approx(brute_mc(ids, labels, scores))
    assert np.isnan(multiple_choice_accuracy([], np.array([]), np.array([])))
    with pytest.raises(HelpfulnessError, match="question 'q0' has 2 correct options"):
        multiple_choice_accuracy(["q0", "q0"], np.array([1, 1]), np.array([0.2, 0.3]))
    assert yes_no_accuracy(np.array([1, 0, 1]), np.array([0.9, 0.6, 0.4])) == pytest.approx(1 / 3)


def test_science_mc_questions_have_one_correct_option_that_the_image_shows(tmp_path):
    probes = generate_science_mc_split("sqa", "test", 20, seed=2, image_dir=tmp_path)
    assert probes.height == 60 and probes["pair_id"].n_unique() == 20
    assert probes.group_by("pair_id").agg(pl.col("label").sum())["label"].to_list() == [1] * 20
    for row in probes.filter((pl.col("label") == 1) & (pl.col("category") == "colour")).iter_rows(named=True):
        answer = row["query"].rsplit(") ", 1)[1].removesuffix(" the answer?")
        centre = Image.open(row["image_path"]).convert("RGB").getpixel((32, 40))
        assert centre == POPE_COLOURS[answer]
    # a scorer that says yes to the correct option answers every question; a constant one gets 1/3 in expectation
    y = probes["label"].to_numpy()
    assert multiple_choice_accuracy(probes["pair_id"], y, y.astype(float)) == 1.0
    assert multiple_choice_accuracy(probes["pair_id"], y, np.full(y.size, 0.5)) == pytest.approx(1 / 3)


def _probe_cache(path, probes: pl.DataFrame, p) -> str:
    """A score cache of one prompt over the probes (p_unsafe = the yes-score)."""
    from prompt_reliability.base import io

    n = probes.height
    io.write_parquet(pl.DataFrame({
        "sample_id": probes["sample_id"], "split": probes["split"], "label": probes["label"], "family": ["pope"] * n,
        "prompt_id": ["H1"] * n, "logit_u": [0.0] * n, "logit_s": [0.0] * n, "p_unsafe": list(p), "label_mass": [1.0] * n,
        "top_token": ["Y"] * n}), path)
    return str(path)


def test_tradeoff_table_adds_multiple_choice_accuracy_beside_yes_no(tmp_path):
    from prompt_reliability.analysis.safety_calibration import tradeoff_table
    from prompt_reliability.base import io

    probes = generate_science_mc_split("sqa", "test", 4, seed=0, image_dir=None)  # 4 questions x 3 options
    io.write_parquet(probes, tmp_path / "sqa.parquet")
    y = probes["label"].to_numpy().astype(float)
    safety = pl.DataFrame({"sample_id": ["a", "b"], "split": ["test"] * 2, "label": pl.Series([1, 0], dtype=pl.Int8)})
    io.write_parquet(safety, tmp_path / "safety.parquet")  # score caches carry no labels: the manifests do
    entries = []
    # none answers every question (yes-score on the correct option); fewshot-1 answers the first two only
    for method, mc in [("none", y * 0.8 + 0.1), ("fewshot-1", np.where(np.arange(12) < 6, y * 0.8 + 0.1, 1 - y * 0.8 - 0.1))]:
        entries.append({"model": "m", "dataset": "d", "split": "test", "method": method,
                        "scores": _probe_cache(tmp_path / f"{method}.parquet", safety, [0.9, 0.1]),
                        "helpfulness": _probe_cache(tmp_path / f"{method}_h.parquet", safety, [0.9, 0.1]),
                        "helpfulness_split": "test",
                        "manifest": str(tmp_path / "safety.parquet"), "helpfulness_manifest": str(tmp_path / "safety.parquet"),
                        "multiple_choice": _probe_cache(tmp_path / f"{method}_mc.parquet", probes, mc),
                        "multiple_choice_manifest": str(tmp_path / "sqa.parquet")})
    table = tradeoff_table(entries)
    assert table["helpfulness_mc"].to_list() == [1.0, 0.5] and table["d_helpfulness_mc"].to_list() == [0.0, -0.5]
    assert "helpfulness_mc" not in tradeoff_table([{k: v for k, v in e.items() if not k.startswith("multiple")}
                                                   for e in entries]).columns

