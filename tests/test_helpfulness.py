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
