"""POPE and CHAIR (UnSAF Appendix G) against brute-force references and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from brute_force import chair_reference, pope_reference

from prompt_reliability.analysis.hallucination import ObjectVocabulary, chair_metrics, pope_metrics, pope_says_yes
from prompt_reliability.data.synthetic import SCENE_OBJECTS, generate_object_scenes, pope_probes

REPLIES = ("Yes", "Yes, there is.", "No", "No.", "There is no dog.", "I do not see one", "Not really, no",
           "yes.", "Yes. But not a big one.", "Nope", "The image does not show it", "It is there, no doubt",
           "", "Sure", "no, there is not")


def test_pope_reading_follows_the_reference_script():
    assert [pope_says_yes(r) for r in REPLIES] == [True, True, False, False, False, False, False, True, True, True,
                                                   False, False, True, True, False]


@pytest.mark.parametrize("seed", range(5))
def test_pope_metrics_match_brute_force_and_sklearn(seed):
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 200)
    replies = [REPLIES[i] for i in rng.integers(0, len(REPLIES), 200)]
    got = pope_metrics(labels, replies)
    ref = pope_reference(labels.tolist(), replies)
    for key, value in ref.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    said = np.array([pope_says_yes(r) for r in replies], dtype=int)
    assert got["pope_f1"] == pytest.approx(f1_score(labels, said), abs=1e-12)
    assert got["pope_precision"] == pytest.approx(precision_score(labels, said), abs=1e-12)
    assert got["pope_recall"] == pytest.approx(recall_score(labels, said), abs=1e-12)
    assert got["pope_accuracy"] == pytest.approx(accuracy_score(labels, said), abs=1e-12)


def test_pope_undefined_is_nan_not_zero():
    got = pope_metrics([1, 0, 1], ["no", "no", "no"])  # never says yes: precision undefined
    assert math.isnan(got["pope_precision"]) and math.isnan(got["pope_f1"])
    assert got["pope_recall"] == 0.0 and got["pope_yes_ratio"] == 0.0


@pytest.mark.parametrize("seed", range(5))
def test_chair_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    objects = list(SCENE_OBJECTS)
    captions, truths = [], []
    for _ in range(60):
        truth = list(rng.choice(objects, size=int(rng.integers(1, 4)), replace=False))
        said = list(rng.choice(objects, size=int(rng.integers(1, 5))))  # repeats allowed: instances count twice
        words = []
        for name in said:
            plural = rng.random() < 0.3
            words += ["a", name + ("s" if plural else ""), rng.choice(["and", "next to", "with", ","])]
        if rng.random() < 0.1:
            words = ["nothing", "to", "see", "here"]
        captions.append(("There is " + " ".join(words) + ".").capitalize())
        truths.append(truth)
    got = chair_metrics(captions, truths, ObjectVocabulary.from_objects(objects))
    ref = chair_reference(captions, truths, objects)
    for key, value in ref.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


def test_chair_counts_instances_and_prefers_longer_phrases():
    vocabulary = ObjectVocabulary({"red circle": ["red disc"], "circle": []})
    assert vocabulary.mentions("A red circle, two circles and a Red  Disc.") == ["red circle", "circle", "red circle"]
    got = chair_metrics(["a red circle and a red circle and a circle"], [["circle"]], vocabulary)
    assert got["chair_i"] == pytest.approx(2 / 3)  # two hallucinated instances of three mentions
    assert got["chair_s"] == 1.0
    assert got["chair_f1"] == pytest.approx(2 * 0.5 * 1.0 / 1.5)  # G = {red circle, circle}, T = {circle}
    assert math.isnan(chair_metrics(["nothing here"], [["circle"]], vocabulary)["chair_i"])


def test_scenes_know_their_objects_and_probes_follow_pope(tmp_path):
    scenes = generate_object_scenes("toy", 12, seed=3, image_dir=tmp_path)
    assert scenes.height == 12 and all(1 <= len(o) <= 3 and set(o) <= set(SCENE_OBJECTS) for o in scenes["objects"])
    assert all((tmp_path / f"{s}.png").is_file() for s in scenes["sample_id"])
    again = generate_object_scenes("toy", 12, seed=3, image_dir=None)
    assert again["objects"].to_list() == scenes["objects"].to_list()
    probes = pope_probes(scenes, SCENE_OBJECTS, seed=0)
    assert probes.height == 24 and probes["label"].sum() == 12
    truth = dict(zip(scenes["sample_id"], scenes["objects"]))
    for row in probes.iter_rows(named=True):
        assert (row["object"] in truth[row["sample_id"]]) == bool(row["label"])
        assert row["query"] == f"Is there a {row['object']} in the image?"


def test_objects_file_gives_scenes_and_probes_and_names_bad_lines(tmp_path):
    import json

    from PIL import Image

    from prompt_reliability.base import io
    from prompt_reliability.data.object_scenes import ObjectScenesError, write_object_scenes

    for name in ("a", "b"):
        Image.new("RGB", (8, 8)).save(tmp_path / f"{name}.png")
    objects = tmp_path / "objects.jsonl"
    objects.write_text(json.dumps({"image": "a.png", "objects": ["Dog", "car"]}) + "\n\n"
                       + json.dumps({"image": "b.png", "objects": ["cup"]}) + "\n")
    scenes = write_object_scenes(scenes=str(tmp_path / "s.parquet"), probes=str(tmp_path / "p.parquet"),
                                 image_dir=str(tmp_path / "unused"), n=5, seed=0, image_size=32,
                                 objects_file=str(objects))
    assert scenes["objects"].to_list() == [["car", "dog"], ["cup"]]
    assert io.read_parquet_metadata(tmp_path / "s.parquet")["vocabulary"] == ["car", "cup", "dog"]
    probes = pl.read_parquet(tmp_path / "p.parquet")
    assert probes["label"].to_list() == [1, 0, 1, 0] and set(probes["object"]) <= {"car", "cup", "dog"}
    objects.write_text(json.dumps({"image": "a.png", "objects": "dog"}) + "\n")
    with pytest.raises(ObjectScenesError, match="objects.jsonl, line 1: needs 'image'"):
        write_object_scenes(scenes=str(tmp_path / "s.parquet"), probes=str(tmp_path / "p.parquet"), image_dir="",
                            n=1, seed=0, image_size=32, objects_file=str(objects))


def test_arm_scores_count_objects_no_image_shows(tmp_path):
    from prompt_reliability.analysis.distillation_scores import write_arm_scores
    from prompt_reliability.base import io

    scenes = pl.DataFrame({"sample_id": ["a"], "image_path": [""], "objects": [["red circle"]]})
    io.write_parquet(scenes, tmp_path / "scenes.parquet", metadata={"vocabulary": ["red circle", "blue square"]})
    pl.DataFrame({"sample_id": ["a"], "caption": ["A red circle next to a blue square."]}).write_parquet(
        tmp_path / "captions.parquet")
    pl.DataFrame({"label": [1, 0], "reply": ["Yes", "No"]}).write_parquet(tmp_path / "pope.parquet")
    pl.DataFrame({"question_id": ["q"], "kind": ["answerable"], "variant": ["default"], "reply": ["Red"]}).write_parquet(
        tmp_path / "answers.parquet")
    pl.DataFrame({"sample_id": ["a"], "kind": ["answerable"], "n_parsed": [1], "n_rejected": [0],
                  "n_unparseable": [1]}).write_parquet(tmp_path / "parse_report.parquet")
    row = write_arm_scores(**{k: str(tmp_path / f"{k}.parquet") for k in ("answers", "parse_report", "pope", "captions",
                                                                          "scenes")},
                           score=str(tmp_path / "score.parquet"), student="s", teacher=None, strategy="baseline",
                           variant="default").row(0, named=True)
    assert row["chair_i"] == 0.5 and row["chair_s"] == 1.0  # the blue square is named, and no image shows one
    assert row["pope_f1"] == 1.0 and row["parse_rate"] == 0.5 and row["ta"] == 1
