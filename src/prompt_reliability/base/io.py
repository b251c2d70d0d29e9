"""Atomic file writing and Parquet metadata.

Every output is written to a temporary file beside its target and renamed into place, so a
killed job never leaves a half-written file that a rerun would trust.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

METADATA_KEY = b"prompt_reliability"


def _remove_stale_temporaries(target: Path) -> None:
    """Remove what a killed writer of ``target`` left (its ``.<name>.*.tmp`` file or folder).

    A SIGKILL skips the cleanup below; the rerun that Snakemake then starts for ``target`` (one job
    per output, so no other writer can be at work) clears them before writing again.
    """
    for stale in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def _temporary_beside(target: Path, make) -> Path:
    """A fresh temporary path next to ``target`` (created by ``make(prefix=, suffix=, dir=)``), after
    removing what a killed writer of ``target`` left."""
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(target)
    return Path(make(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it onto ``target`` on success."""
    target = Path(target)
    tmp_path = _temporary_beside(target, lambda **where: _closed(*tempfile.mkstemp(**where)))
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def _closed(fd: int, path: str) -> str:
    os.close(fd)
    return path


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder next to ``target``; on success it replaces ``target`` (a folder) whole."""
    target = Path(target)
    tmp = _temporary_beside(target, tempfile.mkdtemp)
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_parquet(df: pl.DataFrame, path: str | os.PathLike, metadata: Mapping[str, Any] | None = None) -> None:
    """Write ``df`` atomically; ``metadata`` (JSON-serialisable) goes into the file's schema metadata."""
    table = df.to_arrow()
    if metadata is not None:
        existing = table.schema.metadata or {}
        table = table.replace_schema_metadata({**existing, METADATA_KEY: json.dumps(metadata, sort_keys=True, default=str).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_parquet_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata dict written by :func:`write_parquet` (empty if none)."""
    raw = (pq.read_schema(path).metadata or {}).get(METADATA_KEY)
    return json.loads(raw) if raw else {}


def write_json(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def write_text(text: str, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_csv(df: pl.DataFrame, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        df.write_csv(tmp)


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays reach JSON as plain numbers and lists
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


__all__ = [
    "atomic_path",
    "atomic_dir",
    "write_parquet",
    "read_parquet_metadata",
    "write_json",
    "read_json",
    "write_text",
    "write_csv",
]


def jsonl_records(path: str | os.PathLike, error: type[Exception]) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` of every non-blank line of a JSON-lines file; a line that is not JSON
    raises ``error`` naming the file, the line and the column."""
    with Path(path).open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield line_no, json.loads(line)
            except json.JSONDecodeError as err:
                raise error(f"{path}, line {line_no}: not valid JSON ({err.msg} at column {err.colno}); write one "
                            "JSON object per line") from None
