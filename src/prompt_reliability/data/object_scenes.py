"""Images whose objects are known: the ground truth of the hallucination metrics (POPE, CHAIR).

Either synthetic scenes (:func:`synthetic.generate_object_scenes`, coloured shapes the generator
drew) or a user's JSONL, one line per image ``{"image": path, "objects": [names]}`` (for COCO: each
image's instance annotations mapped to category names). POPE probes are drawn from the objects
(:func:`synthetic.pope_probes`, POPE's random setting: one present and one absent object per image,
the absent one from every object named in the file).
"""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl

from prompt_reliability.base import io
from prompt_reliability.data import synthetic

log = logging.getLogger(__name__)


class ObjectScenesError(ValueError):
    """A bad objects file; the message names the file, the line and the fix."""


def read_objects_file(path: str | Path) -> pl.DataFrame:
    """``sample_id, image_path, objects`` from a JSONL of ``{"image", "objects"}`` lines (relative paths: to the file)."""
    source = Path(path)
    ids, paths, objects = [], [], []
    for number, row in io.jsonl_records(source, ObjectScenesError):
        image, names = row.get("image"), row.get("objects")
        if not isinstance(image, str) or not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ObjectScenesError(f"{source}, line {number}: needs 'image' (a path) and 'objects' (a list of names)")
        image_path = Path(image) if Path(image).is_absolute() else source.parent / image
        if not image_path.is_file():
            raise ObjectScenesError(f"{source}, line {number}: image {image_path} does not exist")
        ids.append(str(row.get("id", f"{source.stem}-{number:06d}")))
        paths.append(str(image_path))
        objects.append(sorted({n.strip().lower() for n in names if n.strip()}))
    if not ids:
        raise ObjectScenesError(f"{source}: no images; write one line per image")
    return pl.DataFrame({"sample_id": ids, "image_path": paths, "objects": objects},
                        schema={"sample_id": pl.Utf8, "image_path": pl.Utf8, "objects": pl.List(pl.Utf8)})


def write_object_scenes(*, scenes: str, probes: str, image_dir: str, n: int, seed: int, image_size: int,
                        objects_file: str | None = None) -> pl.DataFrame:
    """Rule ``distillation_scenes``: the scenes (with their objects) and the POPE probes over them."""
    if objects_file:
        table = read_objects_file(objects_file)
        vocabulary = sorted({o for names in table["objects"] for o in names})
    else:
        table = synthetic.generate_object_scenes("scenes", n, seed, Path(image_dir), image_size)
        vocabulary = list(synthetic.SCENE_OBJECTS)
    probe_table = synthetic.pope_probes(table, vocabulary, seed)
    io.write_parquet(table, scenes, metadata={"vocabulary": vocabulary, "source": objects_file or "synthetic"})
    io.write_parquet(probe_table, probes, metadata={"setting": "random", "seed": seed})
    log.info("%d scenes (%d objects named), %d POPE probes", table.height, len(vocabulary), probe_table.height)
    return table
