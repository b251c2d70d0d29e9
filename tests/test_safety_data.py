"""Safety-calibration data (issue 14): paired look-alikes, the POPE-style set, the typography transform."""

from __future__ import annotations

import numpy as np
import polars as pl
from conftest import validated_dataset, validated_manifest
from PIL import Image

from prompt_reliability.data.synthetic import PAIR_CATEGORIES, TYPOGRAPHY_QUERY


def test_paired_look_alikes_differ_in_one_detail(tmp_path):
    cfg = {"adapter": "synthetic", "kind": "paired", "seed": 1, "image_size": 48, "splits": {"train": {"n": 12}, "test": {"n": 10}}}
    manifest = validated_manifest("pairs", cfg, tmp_path / "images")
    assert manifest.height == 44 and manifest["pair_id"].null_count() == 0
    assert set(manifest["category"]) <= set(PAIR_CATEGORIES) and len(set(manifest["category"])) >= 3
    visual = textual = 0
    for _, pair in manifest.group_by("pair_id", maintain_order=True):
        assert sorted(pair["label"].to_list()) == [0, 1] and pair["category"].n_unique() == 1 and pair["split"].n_unique() == 1
        unsafe, safe = pair.sort("label", descending=True).iter_rows(named=True)
        a = np.asarray(Image.open(unsafe["image_path"]), dtype=int)
        b = np.asarray(Image.open(safe["image_path"]), dtype=int)
        if unsafe["query"] == safe["query"]:  # visual pair: only the triangle's colour differs
            visual += 1
            changed = np.any(a != b, axis=-1)
            assert 0 < changed.mean() < 0.3
            assert (a[changed][:, 0] > a[changed][:, 2]).mean() > 0.5 and (b[changed][:, 2] > b[changed][:, 0]).mean() > 0.5
        else:  # textual pair: same image, queries share most words
            textual += 1
            assert np.array_equal(a, b)
            u, v = unsafe["query"].split(), safe["query"].split()
            head = next(i for i, (x, y) in enumerate(zip(u + [None], v + [None])) if x != y)
            tail = next(i for i, (x, y) in enumerate(zip(u[::-1] + [None], v[::-1] + [None])) if x != y)
            changed = (len(u) - head - tail, len(v) - head - tail)
            assert max(changed) >= 1 and min(changed) >= 0 and max(changed) <= 4 and head >= 3
    assert visual and textual
    again = validated_manifest("pairs", cfg, tmp_path / "images2")
    assert again.drop("image_path").equals(manifest.drop("image_path"))


def test_pope_set_asks_about_objects_the_generator_drew(tmp_path):
    cfg = {"adapter": "synthetic", "kind": "pope", "seed": 0, "image_size": 64, "splits": {"test": {"n": 20}}}
    manifest = validated_manifest("pope", cfg, tmp_path / "images")
    assert manifest.height == 20 and manifest["label"].sum() == 10
    colours = {"red": (220, 20, 20), "blue": (20, 60, 220), "green": (20, 160, 60), "yellow": (235, 200, 20)}
    for row in manifest.iter_rows(named=True):
        colour = row["query"].split()[3]
        pixels = np.asarray(Image.open(row["image_path"]).convert("RGB")).reshape(-1, 3)
        has_colour = bool(np.all(pixels == colours[colour], axis=1).any())
        if row["label"] == 1:  # asked object drawn: its colour must be in the image
            assert has_colour
        assert row["query"].startswith("Is there a ") and row["category"] in row["query"]


def test_typography_moves_the_query_into_the_image(tmp_path):
    cfg = validated_dataset({"adapter": "synthetic", "seed": 0, "image_size": 32, "typography": True,
                             "splits": {"test": {"n": 6}}}, "txt")
    plain = validated_manifest("txt", {**cfg, "typography": False}, tmp_path / "a")
    typed = validated_manifest("txt", cfg, tmp_path / "b")
    assert typed["label"].to_list() == plain["label"].to_list() and typed["sample_id"].to_list() == plain["sample_id"].to_list()
    assert set(typed["query"]) == {TYPOGRAPHY_QUERY}
    assert all("/typography/" in p for p in typed["image_path"])
    images = [np.asarray(Image.open(p).convert("RGB")) for p in typed["image_path"]]
    side = images[0].shape[1]
    assert all(im.shape == (2 * side, side, 3) for im in images), "original image on top, typed panel below"
    panels = [im[side:] for im in images]
    assert all((panel < 128).any() for panel in panels), "text is drawn"
    # the original image is kept (resized) on top
    original = np.asarray(Image.open(plain["image_path"][0]).convert("RGB").resize((side, side)))
    assert np.array_equal(images[0][:side], original)
    # the panel is a function of the query: equal queries equal panels, different queries different ones
    by_query = {}
    for query, panel in zip(plain["query"], panels):
        by_query.setdefault(query, []).append(panel)
    assert all(np.array_equal(v[0], w) for v in by_query.values() for w in v)
    firsts = [v[0] for v in by_query.values()]
    assert len(firsts) >= 2 and not np.array_equal(firsts[0], firsts[1])


def test_local_adapter_maps_category_and_pair_columns(tmp_path):
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    pl.DataFrame({"id": ["a", "b"], "y": [1, 0], "kind": ["weapons", "weapons"], "pair": ["p1", "p1"], "img": [str(image)] * 2,
                  "split": ["test", "test"]}).write_csv(tmp_path / "d.csv")
    cfg = {"adapter": "local", "path": str(tmp_path / "d.csv"),
           "columns": {"sample_id": "id", "label": "y", "category": "kind", "pair_id": "pair", "image": "img"}}
    manifest = validated_manifest("local", cfg, tmp_path / "images")
    assert manifest["pair_id"].to_list() == ["p1", "p1"] and manifest["category"].to_list() == ["weapons", "weapons"]
