"""The `vscbench` adapter: VSCBench-shaped pairs (image- and text-centric) become manifest rows; bad rows are named."""

import csv
import json
import shutil

import polars as pl
import pytest
import yaml
from conftest import REPO, run_snakemake, validated_dataset

from prompt_reliability.data.datasets import DatasetError, build_manifest

FIXTURE = REPO / "data" / "vscbench_fixture"


def _manifest(cfg, tmp_path, name="v"):
    return build_manifest(name, validated_dataset(cfg, name), tmp_path / "images")


def test_fixture_loads_both_subsets_as_pairs(tmp_path):
    image = _manifest({"adapter": "vscbench", "subset": "image_centric", "path": str(FIXTURE / "image_centric.jsonl")}, tmp_path)
    assert image.height == 24 and image["pair_id"].n_unique() == 12
    assert image.group_by("pair_id").agg(pl.col("label").sort())["label"].to_list() == [[0, 1]] * 12
    assert sorted(image["category"].unique()) == ["discrimination", "illegal_activity", "pornography", "privacy",
                                                  "self_harm", "violence"]
    first = image.filter(pl.col("pair_id") == "ic-000").sort("label")
    assert first["sample_id"].to_list() == ["ic-000-s", "ic-000-u"]
    assert [p.rsplit("/", 1)[1] for p in first["image_path"]] == ["ic-000-safe.png", "ic-000-unsafe.png"]
    assert first["query"].n_unique() == 1  # one query, two look-alike images
    assert image.group_by("split").len().sort("split")["len"].to_list() == [12, 12]

    text = _manifest({"adapter": "vscbench", "subset": "text_centric", "path": str(FIXTURE / "text_centric.jsonl"),
                      "image_kinds": ["FigStep"]}, tmp_path)
    assert text.height == 8 and set(text["pair_id"]) == {"tc-004", "tc-005", "tc-006", "tc-007"}
    pair = text.filter(pl.col("pair_id") == "tc-004").sort("label")
    assert pair["image_path"].n_unique() == 1 and pair["query"].n_unique() == 2  # one image, safe vs unsafe query
    assert "Python process" in pair["query"][0] and "person" in pair["query"][1]


def test_columns_map_a_csv_with_other_names(tmp_path):
    rows = [json.loads(line) for line in (FIXTURE / "text_centric.jsonl").read_text().splitlines()]
    shutil.copytree(FIXTURE / "images", tmp_path / "images")
    with (tmp_path / "tc.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "type", "benign", "harmful", "attack", "img"])
        for row in rows:
            writer.writerow([row["pair_id"], row["category"], row["safe_query"], row["unsafe_query"], row["image_kind"].lower(),
                             row["image"]])
    cfg = {"adapter": "vscbench", "subset": "text_centric", "path": str(tmp_path / "tc.csv"), "split_column_default": "test",
           "columns": {"pair_id": "id", "category": "type", "safe_query": "benign", "unsafe_query": "harmful",
                       "image_kind": "attack", "image": "img"}}
    manifest = _manifest(cfg, tmp_path)
    assert manifest.height == 16 and set(manifest["split"]) == {"test"}
    with pytest.raises(DatasetError, match=r"no column 'pair_id' for the field 'pair_id'.*columns: \{pair_id: <column>\}"):
        _manifest({**cfg, "columns": {}}, tmp_path)


BAD_ROWS = [
    ("empty", lambda r: r.update(category=" "), r"line 2: field 'category' \(column 'category'\) is empty"),
    ("kind", lambda r: r.update(image_kind="Typo"), r"line 2: field 'image_kind' is 'Typo'; use one of \['QueryRelevant', 'FigStep'\]"),
    ("image", lambda r: r.update(image="images/nowhere.png"), r"line 2: field 'image' names image 'images/nowhere.png'"),
    ("duplicate", lambda r: r.update(pair_id="tc-000"), r"line 2: field 'pair_id' repeats 'tc-000' of line 1"),
]


@pytest.mark.parametrize(("case", "spoil", "message"), BAD_ROWS, ids=[c[0] for c in BAD_ROWS])
def test_bad_rows_are_rejected_naming_file_line_and_field(tmp_path, case, spoil, message):
    shutil.copytree(FIXTURE / "images", tmp_path / "images")
    rows = [json.loads(line) for line in (FIXTURE / "text_centric.jsonl").read_text().splitlines()]
    spoil(rows[1])
    path = tmp_path / "tc.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DatasetError, match=rf"^{path}, {message}"):
        _manifest({"adapter": "vscbench", "subset": "text_centric", "path": str(path)}, tmp_path)


def test_malformed_line_and_missing_subset_are_named(tmp_path):
    path = tmp_path / "ic.jsonl"
    path.write_text((FIXTURE / "image_centric.jsonl").read_text().splitlines()[0] + "\n{not json\n")
    with pytest.raises(DatasetError, match=rf"^{path}, line 2: not valid JSON"):
        _manifest({"adapter": "vscbench", "subset": "image_centric", "path": str(path)}, tmp_path)
    with pytest.raises(DatasetError, match="needs 'subset: image_centric' or 'subset: text_centric'"):
        build_manifest("v", {"adapter": "vscbench", "path": str(path), "split_column_default": "test"}, tmp_path)


def test_fixture_config_runs_to_the_safety_table(tmp_path):
    config = yaml.safe_load((REPO / "config" / "vscbench_fixture.yaml").read_text())
    for cfg in config["datasets"].values():
        cfg["path"] = str(REPO / cfg["path"])
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    run_snakemake(tmp_path, "--configfile", str(tmp_path / "config.yaml"), "--cores", "2",
                  "results/tables/safety_calibration.parquet")
    table = pl.read_parquet(tmp_path / "results" / "tables" / "safety_calibration.parquet")
    assert set(table["dataset"]) == {"vsc_image", "vsc_text_queryrelevant", "vsc_text_figstep"}
    overall = table.filter((pl.col("category") == "all") & (pl.col("method") == "selected"))
    assert overall.sort("dataset")[["n_safe", "n_unsafe"]].rows() == [(6, 6), (3, 3), (3, 3)]  # image, figstep, queryrelevant
