"""Dataset adapters: every source becomes the same manifest (docs/architecture.md, "Manifest").

One row per sample:
``sample_id: str`` (unique), ``split: str``, ``label: int8`` (1 = unsafe), ``query: str``
(may be empty), ``image_path: str``, ``category: str`` (may be null), ``pair_id: str`` (may be null;
matched safe/unsafe look-alikes share one), ``image_sha256: str`` (the image file's content hash;
empty without an image).

Beside the manifest, :func:`manifest_keys` writes its content keys (``{dataset}.keys.json``): steps
that read the manifest are keyed on these (Snakemake params), not on the file, so that a corrected
label re-runs the analyses but no model step, and new bytes under an old image path re-score.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from prompt_reliability.base import io
from prompt_reliability.data import synthetic

MANIFEST_SCHEMA: dict[str, pl.DataType] = {
    "sample_id": pl.Utf8,
    "split": pl.Utf8,
    "label": pl.Int8,
    "query": pl.Utf8,
    "image_path": pl.Utf8,
    "category": pl.Utf8,
    "pair_id": pl.Utf8,  # optional: matched safe/unsafe look-alikes share one (issue 14)
    "image_sha256": pl.Utf8,  # content of the image file, so that new bytes under an old path re-score
}
# What a model sees of a sample (its scores depend on these, never on its label, split or path), which
# split each sample is in (model steps that work on some splits only), and what the analyses further
# read of it; each gets one content key (manifest_keys).
SAMPLE_INPUT_COLUMNS = ("sample_id", "query", "image_sha256")
SAMPLE_SPLIT_COLUMNS = ("sample_id", "split")
SAMPLE_LABEL_COLUMNS = ("sample_id", "split", "label", "category", "pair_id")
# The documented default (schema, datasets.labels): anything else (yes/no, U/S) needs an explicit
# 'labels' mapping, so that "yes" is never silently unsafe.
_DEFAULT_UNSAFE = {"1", "true", "unsafe"}
_DEFAULT_SAFE = {"0", "false", "safe"}


log = logging.getLogger("prompt_reliability")


class DatasetError(ValueError):
    """Bad dataset input; the message names the file, the field and the fix."""


def build_manifest(name: str, cfg: Mapping[str, Any], image_dir: Path, import_files: Iterable[str] = ()) -> pl.DataFrame:
    """Build the manifest of dataset ``name`` from its config entry."""
    adapter = cfg["adapter"]
    if adapter == "synthetic":
        manifest = synthetic_manifest(name, cfg, image_dir)
    elif adapter == "local":
        manifest = local_manifest(name, cfg, image_dir)
    elif adapter == "hub":
        manifest = hub_manifest(name, cfg, image_dir)
    elif adapter == "scores":
        manifest = scores_manifest(name, list(import_files))
    elif adapter == "vscbench":
        manifest = vscbench_manifest(name, cfg)
    else:  # the config schema already rejects this; keep the message for library users
        raise DatasetError(f"dataset {name!r}: unknown adapter {adapter!r}")
    manifest = validate_manifest(manifest, f"dataset {name!r}")
    if cfg.get("typography"):
        manifest = typography_manifest(manifest, image_dir / "typography", int(cfg.get("image_size", 64)))
    return manifest.with_columns(pl.Series("image_sha256", [_file_sha256(p) for p in manifest["image_path"]], dtype=pl.Utf8))


def _file_sha256(path: str) -> str:
    if not path:
        return ""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def mark_changed_images(manifest_path: str | Path, stats_path: str | Path, marker_path: str | Path) -> None:
    """Touch ``marker_path`` (an input of the manifest job) when an image file's bytes differ from those
    the built manifest recorded: new bytes under an old image path rebuild the manifest.

    Called when the workflow is planned. A file whose size and modification time match
    ``stats_path`` (a JSON cache written here) keeps its known hash; any other is hashed again, so a
    moved or cloned data folder (new times, same bytes) changes nothing. The marker holds the hash of
    the current contents (Snakemake also compares an input's checksum) and is written only when they
    differ from the manifest's; a new marker is created empty and old (it triggers nothing).
    """
    import json
    import os

    marker = Path(marker_path)
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("")
        os.utime(marker, (0, 0))
    try:
        rows = pl.read_parquet(manifest_path, columns=["image_path", "image_sha256"])
    except (OSError, pl.exceptions.PolarsError):
        return  # not built yet
    try:
        known = json.loads(Path(stats_path).read_text())
    except (OSError, ValueError):
        known = {}
    stats, changed = {}, []
    for path, recorded in zip(rows["image_path"], rows["image_sha256"]):
        if not path:
            continue
        try:
            info = os.stat(path)
        except OSError:
            changed.append(f"{path}: missing")
            continue
        stamp = [info.st_size, info.st_mtime_ns]
        entry = known.get(path)
        sha = entry[2] if entry and entry[:2] == stamp else _file_sha256(path)
        stats[path] = [*stamp, sha]
        if sha != recorded:
            changed.append(f"{path}: {sha}")
    if stats != known:
        io.write_json(stats, stats_path)
    if changed:
        content = hashlib.sha256("\n".join(changed).encode()).hexdigest()
        if marker.read_text() != content:
            marker.write_text(content)


def _columns_key(rows: pl.DataFrame, columns: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for column in columns:
        digest.update(column.encode() + b"\0" + "\x1f".join("" if v is None else str(v) for v in rows[column]).encode() + b"\0")
    return digest.hexdigest()[:20]


def manifest_keys(manifest: pl.DataFrame) -> dict[str, Any]:
    """Content keys of a manifest: ``samples`` (ids, queries, image contents: what scores depend on),
    ``splits`` (ids and splits: which samples a step that reads some splits sees), ``labels`` (ids,
    splits, labels, categories, pairs) and ``split_labels`` (the labels key of each split alone: a step
    that learns from the lock split's labels, such as few-shot demonstrations or steering vectors, does
    not re-run when a test label is corrected). Row order and image paths do not count, but for
    ``order`` (the sample ids in manifest order: the steps that take the first n images)."""
    rows = manifest.sort("sample_id")
    keys: dict[str, Any] = {key: _columns_key(rows, columns) for key, columns in (
        ("samples", SAMPLE_INPUT_COLUMNS), ("splits", SAMPLE_SPLIT_COLUMNS), ("labels", SAMPLE_LABEL_COLUMNS))}
    keys["order"] = _columns_key(manifest, ("sample_id",))
    keys["split_labels"] = {split: _columns_key(rows.filter(pl.col("split") == split), SAMPLE_LABEL_COLUMNS)
                            for split in sorted(rows["split"].unique().to_list())}
    return keys


def typography_manifest(manifest: pl.DataFrame, image_dir: Path, image_size: int = 64) -> pl.DataFrame:
    """FigStep-style transform (dataset option ``typography: true``): each query is typed into the sample's
    image (a white panel with the text and an empty numbered list below the original image, or the
    panel alone when the sample has none) and the text prompt is replaced by the neutral
    :data:`synthetic.TYPOGRAPHY_QUERY`. Turns a text-centric safety set into a multimodal one; labels,
    ids and categories are kept."""
    from PIL import Image

    image_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for sample_id, query, original in zip(manifest["sample_id"], manifest["query"], manifest["image_path"]):
        path = image_dir / f"{_safe_filename(sample_id)}.png"
        base = None
        if original:
            with Image.open(original) as opened:
                base = opened.convert("RGB")
        synthetic.typography_image(query or "", max(image_size, 128), base).save(path, format="PNG")
        paths.append(str(path))
    return manifest.with_columns(pl.Series("image_path", paths, dtype=pl.Utf8), pl.lit(synthetic.TYPOGRAPHY_QUERY).alias("query"))


def write_manifest(*, manifest: str, content_keys: str, dataset: str, dataset_config: Mapping[str, Any], image_dir: str,
                   score_files: Iterable[str] = (), source: str | None = None,
                   images_changed: str | None = None) -> pl.DataFrame:
    """Build dataset ``dataset``'s manifest and write it with its content keys (``source``: the local
    file; ``images_changed``: :func:`mark_changed_images`'s marker; both only re-run the job)."""
    built = build_manifest(dataset, dataset_config, Path(image_dir), score_files)
    io.write_parquet(built, manifest)
    io.write_json({"dataset": dataset, "n": built.height, **manifest_keys(built)}, content_keys)
    log.info("wrote %s: %s", manifest, split_counts(built))
    return built


def with_labels(answered: pl.DataFrame, manifest: str, responses: str) -> pl.DataFrame:
    """``answered`` (a responses table) with each sample's ``label`` and ``category`` from ``manifest``:
    responses carry neither (a corrected label re-answers nothing, it re-judges)."""
    rows = pl.read_parquet(manifest, columns=["sample_id", "label", "category"])
    joined = answered.drop("label", "category", strict=False).join(rows, on="sample_id", how="left",
                                                                   maintain_order="left")
    missing = joined.filter(pl.col("label").is_null())["sample_id"]
    if len(missing):
        raise DatasetError(f"{responses}: {len(missing)} responses to samples that {manifest} lacks "
                         f"(e.g. {missing.head(3).to_list()}); re-run the responses of this dataset")
    return joined


def validate_manifest(df: pl.DataFrame, source: str) -> pl.DataFrame:
    missing = [c for c in ("sample_id", "split", "label") if c not in df.columns]
    if missing:
        raise DatasetError(f"{source}: manifest lacks columns {missing}")
    for column, dtype in MANIFEST_SCHEMA.items():
        if column not in df.columns:
            df = df.with_columns(pl.lit("" if column in ("query", "image_path", "image_sha256") else None, dtype=dtype).alias(column))
    df = df.select([pl.col(c).cast(t) for c, t in MANIFEST_SCHEMA.items()])
    df = df.with_columns(pl.col("query").fill_null(""), pl.col("image_path").fill_null(""))
    for column in ("sample_id", "split", "label"):
        if df[column].null_count():
            row = df.with_row_index().filter(pl.col(column).is_null())["index"][0]
            raise DatasetError(f"{source}: field {column!r} is empty in row {row}; every sample needs one")
    if not df["label"].is_in([0, 1]).all():
        raise DatasetError(f"{source}: field 'label' must be 0 (safe) or 1 (unsafe); got {sorted(df['label'].unique().to_list())}")
    dupes = df.filter(pl.col("sample_id").is_duplicated())["sample_id"].unique().sort()
    if len(dupes):
        raise DatasetError(f"{source}: sample_id values must be unique; duplicated: {dupes.head(5).to_list()}")
    return df


def map_labels(values: pl.Series, label_cfg: Mapping[str, Any] | None, source: str) -> pl.Series:
    """Raw label values -> int8 1/0 following config ``labels`` (see the schema)."""
    label_cfg = label_cfg or {}
    raw = values.cast(pl.Utf8).str.strip_chars()
    if label_cfg.get("last_char"):
        raw = raw.str.slice(-1)
    raw = raw.str.to_lowercase()
    last_char = bool(label_cfg.get("last_char"))
    unsafe = {str(v).lower() for v in label_cfg.get("unsafe", [])} or ({"u"} if last_char else _DEFAULT_UNSAFE)
    safe = {str(v).lower() for v in label_cfg.get("safe", [])} or ({"s"} if last_char else _DEFAULT_SAFE)
    mapped = pl.when(raw.is_in(list(unsafe))).then(1).when(raw.is_in(list(safe))).then(0).otherwise(None)
    labels = pl.select(mapped.cast(pl.Int8).alias("label")).to_series()
    if raw.null_count():
        row = int(raw.is_null().arg_true()[0])
        raise DatasetError(f"{source}: row {row} (0-based, header not counted) has no label; give every sample a label "
                           "or drop the row")
    unknown = raw.filter(labels.is_null()).unique().sort()
    if len(unknown):
        raise DatasetError(
            f"{source}: label values {unknown.head(5).to_list()} are neither unsafe {sorted(unsafe)} nor safe "
            f"{sorted(safe)}; set 'labels: {{unsafe: [...], safe: [...]}}' (or 'last_char: true') in the dataset's config"
        )
    return labels


# --- synthetic -------------------------------------------------------------------------------

DEFAULT_SYNTHETIC_SPLITS = {"train": {"n": 96, "unsafe_rate": 0.4}, "test": {"n": 96, "unsafe_rate": 0.4}}


def synthetic_manifest(name: str, cfg: Mapping[str, Any], image_dir: Path) -> pl.DataFrame:
    splits = cfg.get("splits") or DEFAULT_SYNTHETIC_SPLITS
    if not isinstance(splits, Mapping):
        raise DatasetError(f"dataset {name!r}: synthetic 'splits' must map split name -> {{n, unsafe_rate}}")
    kind = cfg.get("kind") or "safety"
    if kind in ("paired", "pope", "science_mc"):
        generate = {"paired": synthetic.generate_paired_split, "pope": synthetic.generate_pope_split,
                    "science_mc": synthetic.generate_science_mc_split}[kind]
        return pl.concat([generate(name, split, int(size["n"]), int(cfg.get("seed", 0)),
                                   image_dir if cfg.get("images", True) else None, int(cfg.get("image_size", 64)))
                          for split, size in splits.items()], how="diagonal_relaxed")
    frames = [
        synthetic.generate_split(
            name,
            split,
            int(size["n"]),
            float(size["unsafe_rate"]),
            int(cfg["seed"]),
            image_dir if cfg["images"] else None,
            int(cfg["image_size"]),
        )
        for split, size in splits.items()
    ]
    return pl.concat(frames)


# --- local files and the Hub, both read through `datasets` ------------------------------------

_LOCAL_BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}


def local_manifest(name: str, cfg: Mapping[str, Any], image_dir: Path) -> pl.DataFrame:
    import datasets

    if not cfg.get("path"):
        raise DatasetError(f"dataset {name!r}: adapter 'local' needs 'path' (a Parquet/JSONL/CSV file or an image folder)")
    path = Path(cfg["path"])
    if not path.exists():
        raise DatasetError(f"dataset {name!r}: path {str(path)!r} does not exist (relative paths start at the working directory)")
    if path.is_file() and path.stat().st_size == 0:
        raise DatasetError(f"dataset {name!r}: {str(path)!r} is empty (0 bytes); write a header and one row per sample "
                           f"into it, or point 'datasets.{name}.path' at the right file")
    if path.is_dir():
        try:
            loaded = datasets.load_dataset("imagefolder", data_dir=str(path))
        except ValueError as err:
            if "file_name" not in str(err):
                raise
            raise DatasetError(
                f"dataset {name!r}: image folder {str(path)!r} has a metadata file (metadata.csv/.jsonl) without a "
                "'file_name' column; name the column holding each image's path (relative to the metadata file's "
                "folder) 'file_name'") from None
    else:
        builder = _LOCAL_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise DatasetError(f"dataset {name!r}: {path} has suffix {path.suffix!r}; use one of {sorted(_LOCAL_BUILDERS)} or a folder")
        try:
            loaded = datasets.load_dataset(builder, data_files=str(path))
        except ValueError as err:
            if "corresponds to no data" not in str(err):
                raise
            raise DatasetError(f"dataset {name!r}: {str(path)!r} has no rows (only a header, or empty); "
                               "fill it with one row per sample, or point 'path' at the right file") from None
    return _manifest_from_dataset_dict(name, cfg, loaded, image_dir, base_dir=path if path.is_dir() else path.parent, source=str(path), single_file=path.is_file())


def hub_manifest(name: str, cfg: Mapping[str, Any], image_dir: Path) -> pl.DataFrame:
    import datasets

    if not cfg.get("path"):
        raise DatasetError(f"dataset {name!r}: adapter 'hub' needs 'path' (a Hub id such as 'org/name', or a local copy)")
    loaded = datasets.load_dataset(cfg["path"], cfg.get("name"), revision=cfg.get("revision"))
    return _manifest_from_dataset_dict(name, cfg, loaded, image_dir, base_dir=Path("."), source=cfg["path"])


def _manifest_from_dataset_dict(name, cfg, loaded, image_dir: Path, base_dir: Path, source: str, single_file: bool = False) -> pl.DataFrame:
    columns = {field: field for field in ("sample_id", "split", "label", "query", "category", "pair_id")}
    columns["image"] = "image"
    columns.update(cfg.get("columns") or {})
    keep = cfg.get("splits")
    frames = []
    for loaded_split, ds in loaded.items():
        check_column_map(name, cfg.get("columns") or {}, ds.column_names,
                         source if single_file else f"{source} (split {loaded_split!r})")
        for field in ("label", "image"):
            if columns[field] not in ds.column_names:
                raise DatasetError(
                    f"{source} (split {loaded_split!r}): no column {columns[field]!r} for the manifest field {field!r}; "
                    f"columns are {ds.column_names}; {separator_hint(ds.column_names)}set "
                    f"'datasets.{name}.columns.{field}: <column>' in the config"
                )
        table = pl.from_arrow(ds.data.table.select([c for c in ds.column_names if c != columns["image"]]))
        n = len(ds)
        if columns["split"] in table.columns:
            split = table[columns["split"]].cast(pl.Utf8)
        else:
            # `datasets` names the one split of a plain data file "train": that name means nothing
            split = pl.Series([cfg["split_column_default"] if single_file else loaded_split] * n)
        ids = table[columns["sample_id"]].cast(pl.Utf8) if columns["sample_id"] in table.columns else pl.Series([f"{loaded_split}-{i:06d}" for i in range(n)])
        frame = pl.DataFrame(
            {
                "sample_id": ids,
                "split": split,
                "label": map_labels(table[columns["label"]], cfg.get("labels"), f"{source}, column {columns['label']!r}"),
                "query": table[columns["query"]].cast(pl.Utf8) if columns["query"] in table.columns else pl.Series([""] * n),
                "category": table[columns["category"]].cast(pl.Utf8) if columns["category"] in table.columns else pl.Series([None] * n, dtype=pl.Utf8),
                "pair_id": table[columns["pair_id"]].cast(pl.Utf8) if columns["pair_id"] in table.columns else pl.Series([None] * n, dtype=pl.Utf8),
            }
        )
        frame = frame.with_columns(pl.Series("image_path", _materialise_images(ds, columns["image"], frame["sample_id"], image_dir, base_dir, source)))
        if keep:
            frame = frame.filter(pl.col("split").is_in(list(keep)))
        frames.append(frame)
    return pl.concat(frames)


def check_column_map(name: str, mapping: Mapping[str, str], columns: list[str], source: str) -> None:
    """Every column the config names explicitly must exist (a missing one would silently fill '' or nulls)."""
    import difflib

    for field, column in mapping.items():
        if column not in columns:
            close = difflib.get_close_matches(column, columns, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise DatasetError(f"config key 'datasets.{name}.columns.{field}' names column {column!r}, which {source} does "
                               f"not have (columns: {columns}); {separator_hint(columns)}{hint}fix the column name")


def separator_hint(columns: list[str]) -> str:
    """A hint when a CSV was read as one column because its fields are separated by something else."""
    if len(columns) == 1:
        for separator, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "bars")):
            if separator in columns[0]:
                return (f"the file was read as one column because its fields are separated by {name}, not commas: "
                        "save it comma-separated (or as JSONL/Parquet); ")
    return ""


def _materialise_images(ds, image_column: str, sample_ids: pl.Series, image_dir: Path, base_dir: Path, source: str) -> list[str]:
    """Paths of every sample's image; embedded image bytes are written once under ``image_dir``."""
    import datasets

    feature = ds.features[image_column]
    if isinstance(feature, datasets.Image):
        ds = ds.cast_column(image_column, datasets.Image(decode=False))
    paths = []
    for row, (sample_id, value) in enumerate(zip(sample_ids, ds[image_column])):
        if isinstance(value, dict) and value.get("bytes"):
            suffix = Path(value.get("path") or "x.png").suffix or ".png"
            target = image_dir / f"{_safe_filename(sample_id)}{suffix}"
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(value["bytes"])
            paths.append(str(target))
            continue
        raw = value.get("path") if isinstance(value, dict) else value
        if not raw:
            raise DatasetError(f"{source}: row {row} (sample {sample_id!r}) has no image in column {image_column!r}")
        candidate = Path(raw) if Path(raw).is_absolute() else base_dir / raw
        if not candidate.exists():
            raise DatasetError(f"{source}: row {row} (sample {sample_id!r}): image file {str(candidate)!r} does not exist")
        paths.append(str(candidate))
    return paths


def _safe_filename(sample_id: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in sample_id)


# --- VSCBench-shaped pairs (adapter `vscbench`) -----------------------------------------------

VSCBENCH_DOC = """VSCBench-shaped data (adapter ``vscbench``): pairs become manifest rows (docs/architecture.md, "Manifest").

VSCBench (arXiv 2505.20362) has two subsets, read here from a JSONL or CSV file with one pair per line
(config ``subset``; file columns mapped to the fields below through ``columns:``, like the other adapters):

- ``image_centric``: ``pair_id, category, safe_image, unsafe_image, query``: two visually similar
  images, one query; the safe image's sample is label 0, the unsafe image's label 1.
- ``text_centric``: ``pair_id, category, safe_query, unsafe_query, image_kind, image``: XSTest-style
  safe/unsafe queries shown with an image made by the ``image_kind`` attack (``QueryRelevant`` or
  ``FigStep``). ``image`` is one image for both queries; a layout with one image per query maps
  them to ``safe_image`` and ``unsafe_image`` instead. ``image_kinds`` keeps only some kinds (one
  dataset per kind gives one SRA row per kind).

A ``split`` column is optional (``split_column_default`` otherwise). Sample ids are
``<pair_id>-s`` / ``<pair_id>-u``; both share ``pair_id`` and ``category``. Image paths are relative
to the file's folder. Every row is checked before anything is written: an empty field, an unknown
image kind, a missing image file, a duplicated pair id or a malformed line raise :class:`DatasetError`
naming the file, the line and the field.

This layout is this project's reading of the paper's description; it has not been checked against
the Hub copy of VSCBench (README, "Datasets").
"""

SUBSET_FIELDS = {
    "image_centric": ("pair_id", "category", "safe_image", "unsafe_image", "query"),
    "text_centric": ("pair_id", "category", "safe_query", "unsafe_query", "image_kind", "image"),
}
IMAGE_KINDS = ("QueryRelevant", "FigStep")
_KIND_BY_LOWER = {k.lower(): k for k in IMAGE_KINDS}


def read_pair_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, row)`` of a JSONL or CSV file (CSV: the header is line 1)."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = []
        for line_no, row in io.jsonl_records(path, DatasetError):
            if not isinstance(row, dict):
                raise DatasetError(f"{path}, line {line_no}: a JSON object (one pair) is expected, got {type(row).__name__}")
            rows.append((line_no, row))
        return rows
    if suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            return [(reader.line_num, dict(row)) for row in reader]
    raise DatasetError(f"{path}: adapter 'vscbench' reads .jsonl or .csv files, not {suffix!r}")


def _pair_field(path: Path, line_no: int, row: Mapping[str, Any], columns: Mapping[str, str], field: str) -> str:
    raw = row.get(columns[field])
    text = "" if raw is None else str(raw).strip()
    if not text:
        raise DatasetError(f"{path}, line {line_no}: field {field!r} (column {columns[field]!r}) is empty; "
                           "every pair needs one (fix the line or drop the pair)")
    return text


def _pair_image(path: Path, line_no: int, raw: str, field: str) -> str:
    candidate = Path(raw) if Path(raw).is_absolute() else path.parent / raw
    if not candidate.is_file():
        raise DatasetError(f"{path}, line {line_no}: field {field!r} names image {raw!r}, but {str(candidate)!r} does "
                           "not exist (paths are relative to the file's folder)")
    return str(candidate)


def vscbench_manifest(name: str, cfg: Mapping[str, Any]) -> pl.DataFrame:
    """The manifest of a VSCBench-shaped file (:data:`VSCBENCH_DOC`)."""
    subset = cfg.get("subset")
    if subset not in SUBSET_FIELDS:
        raise DatasetError(f"dataset {name!r}: adapter 'vscbench' needs 'subset: image_centric' or 'subset: text_centric'")
    if not cfg.get("path"):
        raise DatasetError(f"dataset {name!r}: adapter 'vscbench' needs 'path' (a .jsonl or .csv file, one pair per line)")
    path = Path(cfg["path"])
    if not path.is_file():
        raise DatasetError(f"dataset {name!r}: path {str(path)!r} is not a file (relative paths start at the working directory)")
    columns = {field: field for field in (*SUBSET_FIELDS[subset], "split", "safe_image", "unsafe_image")}
    columns.update(cfg.get("columns") or {})
    rows = read_pair_rows(path)
    if not rows:
        raise DatasetError(f"{path}: no pairs; write one pair per line")
    present = set().union(*(row.keys() for _, row in rows))
    per_query_images = subset == "text_centric" and columns["image"] not in present
    required = [f for f in SUBSET_FIELDS[subset] if not (per_query_images and f == "image")]
    if per_query_images:
        required += ["safe_image", "unsafe_image"]
    for field in required:
        if columns[field] not in present:
            raise DatasetError(f"{path}: no column {columns[field]!r} for the field {field!r} of subset {subset!r}; columns are "
                               f"{sorted(present)}; set 'columns: {{{field}: <column>}}' in dataset {name!r}'s config")
    kinds = cfg.get("image_kinds")
    keep_splits = cfg.get("splits")
    seen: dict[str, int] = {}
    out: dict[str, list] = {k: [] for k in ("sample_id", "split", "label", "query", "image_path", "category", "pair_id")}
    for line_no, row in rows:
        def value(field: str, line_no: int = line_no, row: dict = row) -> str:
            return _pair_field(path, line_no, row, columns, field)

        def image(field: str, line_no: int = line_no, row: dict = row) -> str:
            return _pair_image(path, line_no, _pair_field(path, line_no, row, columns, field), field)

        pair_id = value("pair_id")
        if pair_id in seen:
            raise DatasetError(f"{path}, line {line_no}: field 'pair_id' repeats {pair_id!r} of line {seen[pair_id]}; pair ids "
                               "must be unique")
        seen[pair_id] = line_no
        category = value("category")
        split = str(row.get(columns["split"]) or "").strip() or cfg["split_column_default"]
        if subset == "image_centric":
            query = value("query")
            samples = ((0, query, image("safe_image")), (1, query, image("unsafe_image")))
        else:
            kind = _KIND_BY_LOWER.get(value("image_kind").lower())
            if kind is None:
                raise DatasetError(f"{path}, line {line_no}: field 'image_kind' is {row.get(columns['image_kind'])!r}; use one "
                                   f"of {list(IMAGE_KINDS)}")
            if kinds and kind not in kinds:
                continue
            safe_image, unsafe_image = ((image("safe_image"), image("unsafe_image")) if per_query_images
                                        else (image("image"),) * 2)
            samples = ((0, value("safe_query"), safe_image), (1, value("unsafe_query"), unsafe_image))
        if keep_splits and split not in keep_splits:
            continue
        for label, query, image_path in samples:
            for key, item in zip(out, (f"{pair_id}-{'u' if label else 's'}", split, label, query, image_path, category, pair_id)):
                out[key].append(item)
    if not out["sample_id"]:
        raise DatasetError(f"dataset {name!r}: no pair of {path} is kept (image_kinds {kinds}, splits {keep_splits}); "
                           "widen the filter")
    return pl.DataFrame(out, schema={"sample_id": pl.Utf8, "split": pl.Utf8, "label": pl.Int8, "query": pl.Utf8,
                                     "image_path": pl.Utf8, "category": pl.Utf8, "pair_id": pl.Utf8})


# --- imported scores carry the sample list themselves ----------------------------------------


def scores_manifest(name: str, import_files: list[str]) -> pl.DataFrame:
    from prompt_reliability.data.score_files import read_import_file

    if not import_files:
        raise DatasetError(
            f"dataset {name!r}: adapter 'scores' takes its samples from models with backend 'import', "
            f"but no model lists a score file for {name!r} under 'scores'"
        )
    reference: pl.DataFrame | None = None
    reference_file = ""
    for path in import_files:
        samples = read_import_file(path).select("sample_id", "split", "label").unique(maintain_order=True)
        conflicting = samples.filter(pl.col("sample_id").is_duplicated())
        if len(conflicting):
            raise DatasetError(f"{path}: sample {conflicting['sample_id'][0]!r} appears with different split or label")
        if reference is None:
            reference, reference_file = samples, path
            continue
        joined = reference.join(samples, on="sample_id", how="full", suffix="_other", coalesce=True)
        mismatch = joined.filter(
            (pl.col("split") != pl.col("split_other")) | (pl.col("label") != pl.col("label_other"))
            | pl.col("split").is_null() | pl.col("split_other").is_null()
        )
        if len(mismatch):
            row = mismatch.row(0, named=True)
            raise DatasetError(
                f"{path} and {reference_file} disagree on sample {row['sample_id']!r} "
                f"(split/label {row['split_other']}/{row['label_other']} vs {row['split']}/{row['label']}, or missing from one); "
                f"all models' score files for dataset {name!r} must cover the same samples"
            )
    assert reference is not None
    return reference.with_columns(pl.lit("").alias("query"), pl.lit("").alias("image_path"), pl.lit(None, dtype=pl.Utf8).alias("category"))


def split_counts(manifest: pl.DataFrame) -> dict[str, dict[str, float]]:
    """Per split: n and unsafe rate (for logs and the report)."""
    summary = manifest.group_by("split", maintain_order=True).agg(pl.len().alias("n"), pl.col("label").cast(pl.Float64).mean().alias("unsafe_rate"))
    return {row["split"]: {"n": row["n"], "unsafe_rate": float(np.round(row["unsafe_rate"], 4))} for row in summary.iter_rows(named=True)}
