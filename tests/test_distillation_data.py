"""Distillation data (UnSAF section 5.1) from a teacher's two-stage run files."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from PIL import Image

from prompt_reliability.analysis.distillation_data import (
    ABSTAIN_TARGET,
    DistillationDataError,
    heldout_images,
    image_splits,
    write_distillation_data,
)
from prompt_reliability.analysis.self_assessment_scores import parse_questions
from prompt_reliability.base import io

PROMPTS = "prompts/self_assessment/unsaf.yaml"


def teacher_run(tmp_path, n_images=40, k=2):
    rows, answers = [], []
    for i in range(n_images):
        path = tmp_path / f"img{i}.png"
        Image.new("RGB", (8, 8), (i, 2 * i, 3 * i)).save(path)
        for kind in ("answerable", "unanswerable"):
            for j in range(k if i % 7 else k - 1):  # some generations parsed fewer questions
                qid = f"s{i}:{kind}:{j}"
                rows.append({"question_id": qid, "sample_id": f"s{i}", "image_path": str(path), "setting": "open",
                             "kind": kind, "question": f"What {kind} thing number {j} is in image {i}?",
                             **{f"option_{c}": None for c in "abcd"}})
                for variant, reply in (("default", "Cannot be determined." if kind == "unanswerable" and j == 0
                                        else ("" if i == 3 else f"Blue {j}")), ("cautious", "unanswerable")):
                    answers.append({"question_id": qid, "kind": kind, "variant": variant, "reply": reply})
    qpath, apath = tmp_path / "questions.parquet", tmp_path / "answers.parquet"
    io.write_parquet(pl.DataFrame(rows), qpath, metadata={"backend": "simulate"})
    io.write_parquet(pl.DataFrame(answers), apath, metadata={"backend": "simulate"})
    return str(qpath), str(apath)


def build(tmp_path, **overrides):
    questions, answers = teacher_run(tmp_path)
    manifest = tmp_path / "manifest.parquet"
    pl.read_parquet(questions).select("sample_id", "image_path").unique("image_path", maintain_order=True).write_parquet(
        manifest)
    data = {s: str(tmp_path / f"{s}.parquet") for s in ("qa", "iq", "joint")}
    for strategy, path in data.items():
        kwargs = {"manifest": str(manifest), "questions": questions, "answers": answers, "prompts": PROMPTS,
                  "data": path, "teacher": "teach", "strategy": strategy, "setting": "open", "k": 2,
                  "variant": "default", "images": 40, "heldout_fraction": 0.25, "seed": 0, **overrides}
        write_distillation_data(**kwargs)
    return data, str(manifest)


def test_no_image_is_both_trained_on_and_held_out(tmp_path):
    data, manifest = build(tmp_path)
    held = set(heldout_images(pl.read_parquet(manifest), 40, 0.25, seed=0)["image_sha256"])  # the students' evaluation
    assert 3 <= len(held) <= 18  # about a quarter of 40
    for path in data.values():
        trained = set(pl.read_parquet(path)["image_sha256"])
        assert trained and not trained & held
    everything = {p.name for p in tmp_path.glob("img*.png")}
    trained = {Path(p).name for p in pl.read_parquet(data["joint"])["image_path"]}
    assert len(everything - trained - {Path(p).name for p in heldout_images(pl.read_parquet(manifest), 40, 0.25,
                                                                              seed=0)["image_path"]}) == 0


def test_strategies_hold_their_tasks_and_targets(tmp_path):
    data, _ = build(tmp_path)
    qa, iq, joint = (pl.read_parquet(data[s]) for s in ("qa", "iq", "joint"))
    assert set(qa["task"]) == {"qa"} and set(iq["task"]) == {"iq"}
    assert joint.height == qa.height + iq.height
    unanswerable_first = qa.filter(pl.col("example_id").str.ends_with(":unanswerable:0"))
    assert unanswerable_first.height and set(unanswerable_first["target"]) == {ABSTAIN_TARGET}
    assert not qa["target"].str.contains("^$").any()  # empty teacher replies give no example
    assert set(qa.filter(pl.col("sample_id") == "s3")["example_id"]) <= {"qa:s3:unanswerable:0"}
    for row in iq.iter_rows(named=True):  # every IQ target parses back into the teacher's questions
        parsed = parse_questions(row["target"], "open", 2)
        assert parsed.questions and parsed.unparseable == 2 - len(parsed.questions)
        assert "{k}" not in row["instruction"] and "Write 2 questions" in row["instruction"]
    assert all("If you are unsure" in text for text in qa["instruction"])  # the default variant's instruction
    meta = io.read_parquet_metadata(data["iq"])["distillation_data"]
    assert meta["teacher"] == "teach" and meta["strategy"] == "iq" and len(meta["questions_sha256"]) == 64
    assert meta["teacher_run"]["answers"] == {"backend": "simulate"} and "generation.open.answerable" in meta["prompt_sha256"]
    assert meta["images"] == 40 and meta["variant"] == "default"


def test_split_depends_on_the_image_only():
    hashes = [f"{i:064x}" for i in range(200)]
    full = image_splits(hashes, 0.2, seed=1)
    part = image_splits(hashes[50:120], 0.2, seed=1)
    assert all(full[h] == part[h] for h in part)
    assert 20 <= sum(v == "heldout" for v in full.values()) <= 60


def test_missing_variant_is_a_clear_error(tmp_path):
    with pytest.raises(DistillationDataError, match="variant 'encouraging'.*distillation.variant"):
        build(tmp_path, variant="encouraging")


def test_distillation_table_deltas_and_claim_counts_leave_out_undefined_cells():
    import math

    from prompt_reliability.report.distillation_tables import distillation_claims, distillation_table

    nan = math.nan
    rows = [  # student, teacher, strategy, unf1, pope_f1, chair_i
        ("s1", None, "baseline", 0.5, 0.80, 0.10), ("s1", "t", "qa", 0.4, 0.85, 0.12), ("s1", "t", "iq", 0.7, 0.70, 0.05),
        ("s1", "t", "joint", nan, 0.90, nan), ("s2", None, "baseline", nan, 0.6, 0.2), ("s2", "t", "qa", 0.3, 0.5, 0.1),
        ("s2", "t", "iq", 0.6, 0.7, 0.3), ("s2", "t", "joint", 0.6, 0.7, 0.3)]
    metrics = ("audacity", "timidity", "tu_share", "parse_rate", "chair_f1")
    pieces = pl.DataFrame([{"student": s, "teacher": t, "strategy": g, "unf1": u, "pope_f1": p, "chair_i": c,
                            **dict.fromkeys(metrics, 0.5)} for s, t, g, u, p, c in rows])
    table = distillation_table(pieces)
    assert table.columns[:9] == ["student", "teacher", "strategy", "audacity", "timidity", "unf1", "pope_f1", "chair_i",
                                 "chair_f1"]
    iq = table.filter((pl.col("student") == "s1") & (pl.col("strategy") == "iq")).row(0, named=True)
    assert iq["d_unf1"] == pytest.approx(0.2) and iq["d_pope_f1"] == pytest.approx(-0.1)
    assert math.isnan(table.filter((pl.col("student") == "s2") & (pl.col("strategy") == "qa"))["d_unf1"][0])
    counts = {r["statistic"]: (r["count"], r["pairs"]) for r in distillation_claims(table).iter_rows(named=True)}
    assert counts["iq_unf1_above_qa"] == (2, 2)  # both students: 0.7 > 0.4, 0.6 > 0.3
    assert counts["pope_f1_above_baseline"] == (4, 6)  # s1: qa, joint; s2: iq, joint
    assert counts["chair_i_below_baseline"] == (2, 5)  # s1 iq, s2 qa; s1 joint undefined
