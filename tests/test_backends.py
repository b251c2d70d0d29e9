import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from conftest import REPO, simulate_params, validated_model

from prompt_reliability.base.io import read_parquet_metadata
from prompt_reliability.data.prompts import load_registry
from prompt_reliability.data.score_files import ScoreFileError, read_import_file
from prompt_reliability.scoring.backends import simulate
from prompt_reliability.scoring.cache import (
    ScoreCacheError,
    ScoringJob,
    finalize_cache,
    score_to_cache,
)


def manifest(n=40):
    labels = (np.arange(n) % 3 == 0).astype(np.int8)
    return pl.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "split": ["test"] * n, "label": labels,
                         "query": [""] * n, "image_path": [""] * n, "category": [None] * n},
                        schema_overrides={"label": pl.Int8, "category": pl.Utf8})


def test_simulated_family_draws_match_any_grouping():
    labels = manifest()["label"].to_numpy()
    together, _ = simulate.simulate_logits("d", labels, ["A1", "B1"], ["A", "B"], simulate_params(seed=3))
    alone, _ = simulate.simulate_logits("d", labels, ["B1"], ["B"], simulate_params(seed=3))
    np.testing.assert_array_equal(together[:, 1], alone[:, 0])
    other_seed, _ = simulate.simulate_logits("d", labels, ["B1"], ["B"], simulate_params(seed=4))
    assert not np.allclose(other_seed, alone)


def test_simulated_scores_are_informative_and_heteroscedastic():
    n = 4000
    labels = (np.arange(n) % 5 < 2).astype(np.int8)
    prompt_ids = [f"A{i}" for i in range(1, 16)]
    z, mass = simulate.simulate_logits("d", labels, prompt_ids, ["A"] * 15, simulate_params(seed=0))
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(labels, z.mean(axis=1)) > 0.85
    sd = z.std(axis=1)
    assert np.quantile(sd, 0.9) > 2.5 * np.quantile(sd, 0.1)  # some samples are far more fragile
    assert 0 < mass.min() and mass.max() < 1


def test_simulate_parameters_have_their_defaults_in_the_schema_only():
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    properties = schema["definitions"]["simulate"]["properties"]
    assert tuple(properties) == simulate.PARAMS and all("default" in v for v in properties.values())
    assert not hasattr(simulate, "DEFAULTS")
    assert simulate_params()["separation"] == properties["separation"]["default"]


def test_import_jsonl_validation_names_file_and_line(tmp_path):
    good = {"sample_id": "s1", "split": "test", "label": 1, "prompt_id": "A1", "first_probs": {"U": 0.7, "S": 0.3}}
    cases = [
        ({**good, "label": 2}, "line 2: field 'label' must be 0"),
        ({**good, "first_probs": {"U": 0.7, "S": 0.2}}, "line 2: first_probs must sum to 1"),
        ({**good, "first_probs": {"U": 1.2, "S": -0.2}}, r"line 2: first_probs\['U'\] must be a probability"),
        ({k: v for k, v in good.items() if k != "split"}, r"line 2: missing field\(s\) \['split'\]"),
        (good, "more than one row for prompt 'A1'"),
    ]
    for bad, message in cases:
        path = tmp_path / "scores.jsonl"
        path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
        with pytest.raises(ScoreFileError, match=message):
            read_import_file(path)


def test_import_parquet_with_logits_or_probabilities(tmp_path):
    base = {"sample_id": ["a", "b"], "split": ["test", "test"], "label": [1, 0], "prompt_id": ["A1", "A1"]}
    pl.DataFrame({**base, "logit_u": [2.0, -1.0], "logit_s": [0.0, 0.5]}).write_parquet(tmp_path / "l.parquet")
    rows = read_import_file(tmp_path / "l.parquet")
    np.testing.assert_allclose(rows["p_unsafe"].to_numpy(), 1 / (1 + np.exp([-2.0, 1.5])))
    pl.DataFrame({**base, "p_unsafe": [0.9, 1.5]}).write_parquet(tmp_path / "p.parquet")
    with pytest.raises(ScoreFileError, match=r"p.parquet, row 1: p_unsafe must be a probability"):
        read_import_file(tmp_path / "p.parquet")


def _job(rows_manifest, family="A"):
    registry = load_registry(REPO / "prompts", ["A", "B", "C"])
    return ScoringJob("m", validated_model({"backend": "simulate"}), "d", family, rows_manifest, "h", registry, {}, Path("unused"))


def test_finalize_cache_orders_rows_and_computes_p():
    m = manifest(3)
    job = _job(m)
    rows = pl.DataFrame({"sample_id": [s for s in reversed(m["sample_id"]) for _ in job.prompt_ids],
                         "prompt_id": job.prompt_ids * 3, "logit_u": [1.0] * 15, "logit_s": [0.0] * 15})
    cache = finalize_cache(rows, job)
    assert cache.columns == ["sample_id", "family", "prompt_id", "logit_u", "logit_s", "p_unsafe", "label_mass", "top_token"]
    assert cache["sample_id"].to_list() == [s for s in m["sample_id"] for _ in range(5)]
    assert cache["prompt_id"].to_list()[:5] == ["A1", "A2", "A3", "A4", "A5"]
    np.testing.assert_allclose(cache["p_unsafe"].to_numpy(), 1 / (1 + np.exp(-1.0)))
    with pytest.raises(ScoreCacheError, match="no score for sample 's0' under prompt"):
        finalize_cache(rows.filter(~((pl.col("sample_id") == "s0") & (pl.col("prompt_id") == "A3"))), job)


def test_score_to_cache_writes_provenance(tmp_path):
    m = manifest(10)
    m.write_parquet(tmp_path / "m.parquet")
    out = tmp_path / "scores.parquet"
    score_to_cache(model="sim", model_cfg=validated_model({"backend": "simulate", "simulate": {"seed": 1}}), dataset="d", family="B",
                   manifest_path=tmp_path / "m.parquet", prompt_dir=REPO / "prompts", families=["A", "B", "C"],
                   prompt_format={}, output=out, work_dir=tmp_path / "chunks")
    meta = read_parquet_metadata(out)
    assert meta["prompt_ids"] == ["B1", "B2", "B3", "B4", "B5"]
    assert meta["backend"] == "simulate" and meta["simulate"]["seed"] == 1
    assert len(meta["prompt_text_hash"]) == 16 and "polars" in meta["package_versions"]
    cache = pl.read_parquet(out)
    assert cache.height == 50 and set(cache["top_token"]) <= {"U", "S", "<other>"}


def test_import_row_with_unknown_sample_names_it_and_the_fix(tmp_path):
    from prompt_reliability.scoring.backends import imported

    m = manifest(3)
    rows = [{"sample_id": s, "split": "test", "label": int(y), "prompt_id": p, "first_probs": {"U": 0.6, "S": 0.4}}
            for s, y in zip([*m["sample_id"], "ghost-7"], [*m["label"], 1]) for p in ["A1", "A2", "A3", "A4", "A5"]]
    path = tmp_path / "scores.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    job = ScoringJob("ext", validated_model({"backend": "import", "scores": {"d": str(path)}}), "d", "A", m, "h",
                     load_registry(REPO / "prompts", ["A", "B", "C"]), {}, Path("unused"))
    with pytest.raises(ScoreCacheError, match=r"scores.jsonl: sample 'ghost-7' \(1 sample id\(s\) in all\) is not in dataset "
                                              r"'d'; fix the sample id in the score file, or drop its rows"):
        imported.score(job)
