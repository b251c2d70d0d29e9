"""Imported answers (self_assessment.imports): the same table as a run of the two stages, bad lines rejected."""

import json
import math

import polars as pl
import pytest

from prompt_reliability.analysis import self_assessment_imports as imports
from prompt_reliability.analysis import self_assessment_scores as sa
from prompt_reliability.analysis import self_assessment_simulation as simulation

PROFILE = {"params_b": 7.0, "public_scale": True, "well_formed": 0.8, "awareness": 0.0, "answer_bias": 0.5,
           "instruct": False, "skill": 0.0, "overconfidence": 0.0}
SIM = {"seeds": 2, "task_items": 50, "mc_answer_bias": 2.0, "datasets": {},
       "effects": {"scale": 1.0, "instruction_timidity": 1.0, "prompt_shift": 1.0, "awareness_dataset_sd": 0.1,
                   "calibration_dataset_sd": 0.4}}
VARIANTS = ["default", "cautious"]


def _simulated(setting):
    ids = pl.DataFrame({"sample_id": [f"img{i}" for i in range(15)], "image_path": [""] * 15})
    return simulation.simulate_setting(ids, PROFILE, SIM, model="m", dataset="d", setting=setting, k=3,
                                       variants=VARIANTS)


def _lines(run, setting, with_task=False):
    questions = {q["question_id"]: q for q in run["questions"].iter_rows(named=True)}
    out = []
    for a in run["answers"].iter_rows(named=True):
        q = questions[a["question_id"]]
        line = {"model": "m", "dataset": "d", "image_id": q["sample_id"], "setting": setting, "kind": a["kind"],
                "question": q["question"], "reply": a["reply"], "variant": a["variant"], "seed": a["seed"]}
        if setting == "mc":
            line["options"] = [q[f"option_{c}"] for c in "abcd"]
        if with_task:
            line["confidence"], line["correct"] = 0.7, len(a["reply"]) % 2 == 0
        out.append(line)
    # the questions the parser could not recover: one line each, question null
    for r in run["parse_report"].iter_rows(named=True):
        out += [{"model": "m", "dataset": "d", "image_id": r["sample_id"], "setting": setting, "kind": r["kind"],
                 "question": None, "reply": "", "seed": r["seed"]}] * r["n_unparseable"]
    return out


def _write(path, lines):
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return str(path)


@pytest.mark.parametrize("setting", ["mc", "open"])
def test_imported_answers_give_the_table_of_the_two_stages(tmp_path, setting):
    run = _simulated(setting)
    source = _write(tmp_path / "answers.jsonl", _lines(run, setting))
    table = imports.import_answers(source, str(tmp_path / "scores.parquet"), str(tmp_path / "answers.parquet"),
                                   ece_bins=15)
    direct = sa.score_table(run["answers"], run["parse_report"], VARIANTS, model="m", dataset="d", setting=setting)
    keys = ["variant", "n_questions", "n_unparseable", *sa.TYPES, "n_seeds"]
    assert table.select(keys).rows() == direct.select(keys).rows()
    assert table["unf1"].to_list() == pytest.approx(direct["unf1"].to_list())
    # no confidence / correctness: the conventional metrics are undefined, with the reason
    assert all(math.isnan(v) for v in table["ece"]) and table["conventional_note"][0].startswith("imported rows carry no")
    written = pl.read_parquet(tmp_path / "answers.parquet")
    assert {"model", "dataset", "setting", "sample_id", "reply"} <= set(written.columns)


def test_confidence_and_correctness_give_the_conventional_metrics(tmp_path):
    run = _simulated("open")
    lines = _lines(run, "open", with_task=True)
    table = imports.score_imported(imports.read_imported_answers(_write(tmp_path / "a.jsonl", lines)))
    answered = [line for line in lines if line.get("confidence") is not None]
    accuracy = sum(line["correct"] for line in answered) / len(answered)
    assert table["accuracy"][0] == pytest.approx(accuracy) and table["n_task_items"][0] == len(answered)
    assert table["ece"][0] == pytest.approx(abs(accuracy - 0.7))  # one confidence value: one bin
    assert table["conventional_note"][0] == ""


@pytest.mark.parametrize(("change", "field"), [
    ({"setting": "multiple"}, "'setting'"), ({"kind": "maybe"}, "'kind'"), ({"options": ["a", "b"]}, "'options'"),
    ({"confidence": 1.5}, "'confidence'"), ({"correct": "yes"}, "'correct'"), ({"reply": None}, "'reply'"),
    ({"model": ""}, "'model'"), ({"colour": "red"}, "'colour'"), ({"seed": 1.5}, "'seed'"),
])
def test_a_bad_line_is_rejected_with_file_line_and_field_and_nothing_is_written(tmp_path, change, field):
    lines = _lines(_simulated("mc"), "mc")[:5]
    lines[3] = {**lines[3], **change}
    source = _write(tmp_path / "answers.jsonl", lines)
    with pytest.raises(imports.ImportedAnswersError) as err:
        imports.import_answers(source, str(tmp_path / "scores.parquet"), str(tmp_path / "answers.parquet"),
                               ece_bins=15)
    assert f"{source}:4: field {field}" in str(err.value)
    assert not (tmp_path / "scores.parquet").exists() and not (tmp_path / "answers.parquet").exists()


def test_missing_fields_and_broken_json_are_reported_per_line(tmp_path):
    path = tmp_path / "answers.jsonl"
    path.write_text('{"model": "m"}\nnot json\n')
    with pytest.raises(imports.ImportedAnswersError) as err:
        imports.read_imported_answers(path)
    text = str(err.value)
    assert f"{path}:1: field 'dataset': missing (required)" in text and f"{path}:2: not valid JSON" in text
