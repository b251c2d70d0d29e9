import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import validated_dataset
from PIL import Image

from prompt_reliability.data.datasets import DatasetError, build_manifest, map_labels
from prompt_reliability.data.synthetic import generate_split

HARM_WORDS = ("hurt", "harm", "injure")


def red_triangle_present(path: str) -> bool:
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    red = (pixels[..., 0] == 220) & (pixels[..., 1] == 20) & (pixels[..., 2] == 20)
    return red.sum() > 10


def test_synthetic_is_deterministic_and_labels_follow_content(tmp_path):
    a = generate_split("d", "train", 80, 0.4, seed=3, image_dir=tmp_path / "a", image_size=48)
    b = generate_split("d", "train", 80, 0.4, seed=3, image_dir=tmp_path / "b", image_size=48)
    assert a.drop("image_path").equals(b.drop("image_path"))
    assert all(Image.open(x).tobytes() == Image.open(y).tobytes() for x, y in zip(a["image_path"], b["image_path"]))
    assert a["label"].sum() == 32
    # the label is recoverable from content alone: red triangle or harmful query
    from_content = [int(red_triangle_present(path) or any(w in q for w in HARM_WORDS)) for path, q in zip(a["image_path"], a["query"])]
    assert from_content == a["label"].to_list()
    # and neither cue alone suffices (decoys and image-only hazards exist)
    assert any(red_triangle_present(p) for p in a.filter(pl.col("query").str.contains("hurt|harm|injure").not_())["image_path"])
    other_split = generate_split("d", "test", 80, 0.4, seed=3, image_dir=None)
    assert other_split["image_path"].to_list() == [""] * 80
    assert other_split["query"].to_list() != a["query"].to_list()


def _write_images(folder: Path, n: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(folder / f"img{i}.png")
        names.append(f"img{i}.png")
    return names


def test_local_jsonl_with_relative_image_paths_and_label_mapping(tmp_path):
    names = _write_images(tmp_path / "imgs", 4)
    rows = [{"id": f"s{i}", "img": f"imgs/{n}", "verdict": ["Unsafe", "Safe"][i % 2], "prompt": f"q{i}", "part": "test"} for i, n in enumerate(names)]
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    cfg = {"adapter": "local", "path": str(tmp_path / "data.jsonl"),
           "columns": {"sample_id": "id", "image": "img", "label": "verdict", "query": "prompt", "split": "part"}}
    manifest = build_manifest("loc", validated_dataset(cfg), tmp_path / "out")
    assert manifest["sample_id"].to_list() == ["s0", "s1", "s2", "s3"]
    assert manifest["label"].to_list() == [1, 0, 1, 0]
    assert manifest["split"].unique().to_list() == ["test"]
    assert all(Path(p).exists() for p in manifest["image_path"])
    assert manifest["category"].null_count() == 4


def test_local_csv_without_split_column_uses_default_and_missing_image_is_named(tmp_path):
    names = _write_images(tmp_path, 2)
    pl.DataFrame({"image": names, "label": [1, 0]}).write_csv(tmp_path / "d.csv")
    manifest = build_manifest("c", validated_dataset({"adapter": "local", "path": str(tmp_path / "d.csv"), "split_column_default": "eval"}), tmp_path / "o")
    assert manifest["split"].to_list() == ["eval", "eval"]
    pl.DataFrame({"image": ["nope.png"], "label": [1]}).write_csv(tmp_path / "bad.csv")
    with pytest.raises(DatasetError, match=r"bad.csv: row 0 .*nope.png"):
        build_manifest("c", validated_dataset({"adapter": "local", "path": str(tmp_path / "bad.csv")}), tmp_path / "o")


def test_image_folder_with_metadata(tmp_path):
    folder = tmp_path / "folder"
    names = _write_images(folder, 3)
    pl.DataFrame({"file_name": names, "label": ["unsafe", "safe", "unsafe"], "category": ["a", "b", "a"]}).write_csv(folder / "metadata.csv")
    manifest = build_manifest("f", validated_dataset({"adapter": "local", "path": str(folder)}), tmp_path / "images")
    assert sorted(manifest["label"].to_list()) == [0, 1, 1]
    assert set(manifest["category"]) == {"a", "b"}


def test_hub_adapter_writes_embedded_images_once(tmp_path):
    import datasets

    def image_bytes(i):
        path = tmp_path / f"src{i}.png"
        Image.new("RGB", (8, 8), (0, i * 40, 0)).save(path)
        return path.read_bytes()

    features = datasets.Features({"image": datasets.Image(), "query": datasets.Value("string"), "category": datasets.Value("string"),
                                  "type": datasets.Value("string")})
    ds = datasets.Dataset.from_dict({"image": [{"bytes": image_bytes(i), "path": f"x{i}.png"} for i in range(3)],
                                     "query": ["a", "b", "c"], "category": ["k", "k", "m"], "type": ["SSU", "USS", "UUU"]}, features=features)
    local_copy = tmp_path / "holisafe"
    local_copy.mkdir()
    ds.to_parquet(str(local_copy / "test.parquet"))
    cfg = {"adapter": "hub", "path": str(local_copy), "columns": {"label": "type"}, "labels": {"last_char": True}}
    manifest = build_manifest("holi", validated_dataset(cfg), tmp_path / "images")
    assert manifest["label"].to_list() == [1, 0, 1]
    assert manifest["query"].to_list() == ["a", "b", "c"]
    written = [Path(p) for p in manifest["image_path"]]
    assert all(p.parent == tmp_path / "images" for p in written)
    mtimes = [p.stat().st_mtime_ns for p in written]
    build_manifest("holi", validated_dataset(cfg), tmp_path / "images")
    assert [p.stat().st_mtime_ns for p in written] == mtimes  # not rewritten


def test_unknown_labels_name_the_values_and_the_fix():
    with pytest.raises(DatasetError, match=r"\['maybe'\] are neither unsafe"):
        map_labels(pl.Series(["Safe", "maybe"]), None, "f.csv")
    assert map_labels(pl.Series(["bad", "ok"]), {"unsafe": ["bad"], "safe": ["ok"]}, "f").to_list() == [1, 0]


def test_duplicate_sample_ids_are_rejected(tmp_path):
    names = _write_images(tmp_path, 2)
    pl.DataFrame({"sample_id": ["a", "a"], "image": names, "label": [1, 0]}).write_parquet(tmp_path / "d.parquet")
    with pytest.raises(DatasetError, match="unique"):
        build_manifest("d", validated_dataset({"adapter": "local", "path": str(tmp_path / "d.parquet")}), tmp_path / "o")


def test_manifest_keys_tell_apart_what_each_kind_of_step_reads():
    """Each content key changes with what it covers and with nothing else: a corrected test label moves
    ``labels`` and that split's ``split_labels``, not ``samples``, ``splits`` or the lock split's; a
    reordered source moves ``order`` only; a moved sample moves ``splits``; a new query ``samples``."""
    from prompt_reliability.data.datasets import manifest_keys

    manifest = pl.DataFrame({"sample_id": ["a", "b", "c", "d"], "split": ["train", "train", "test", "test"],
                             "label": pl.Series([0, 1, 0, 1], dtype=pl.Int8), "query": ["q"] * 4,
                             "image_path": ["x"] * 4, "category": [None] * 4, "pair_id": [None] * 4,
                             "image_sha256": ["h1", "h2", "h3", "h4"]})
    base = manifest_keys(manifest)

    def changed(frame):
        keys = manifest_keys(frame)
        return {k for k in base if keys[k] != base[k]} | {f"split_labels.{s}" for s in base["split_labels"]
                                                           if keys["split_labels"].get(s) != base["split_labels"][s]}

    relabelled = manifest.with_columns(pl.when(pl.col("sample_id") == "d").then(0).otherwise(pl.col("label"))
                                       .cast(pl.Int8).alias("label"))
    assert changed(relabelled) == {"labels", "split_labels", "split_labels.test"}
    assert changed(manifest.reverse()) == {"order"}
    assert changed(manifest.with_columns(pl.lit("elsewhere").alias("image_path"))) == set()
    moved = manifest.with_columns(pl.when(pl.col("sample_id") == "b").then(pl.lit("test")).otherwise(pl.col("split"))
                                  .alias("split"))
    assert changed(moved) == {"splits", "labels", "split_labels", "split_labels.train", "split_labels.test"}
    assert changed(manifest.with_columns(pl.lit("other").alias("query"))) == {"samples"}
    assert changed(manifest.with_columns(pl.Series("image_sha256", ["h1", "h2", "h3", "h9"]))) == {"samples"}
