"""Checkpoints of a long scoring job: fixed chunks of samples, each written atomically.

A job's chunks live in ``<root>/<key>/``, where ``key`` hashes everything the scores depend on
(model fingerprint, prompt text hash, dataset manifest hash, scoring settings, library versions).
Chunk ``i`` covers samples ``[i*size, (i+1)*size)`` of the manifest order, so a restarted job
finds exactly the chunks it would have written and scores only the rest; a chunk file exists
completely or not at all (temporary file + rename). Folders under ``root`` with any other key are
stale (the model, prompts, data or settings changed) and are deleted, never read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from prompt_reliability.base import io

log = logging.getLogger(__name__)
KEY_FILE = "key.json"


def chunk_key(parts: Mapping[str, Any]) -> str:
    """Short stable hash of the JSON of ``parts`` (sorted keys)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def chunk_bounds(n: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(n, start + size)) for start in range(0, n, size)]


class ChunkStore:
    """The chunk folder of one job: ``root/key``. Creating it deletes stale siblings."""

    def __init__(self, root: str | Path, parts: Mapping[str, Any], n_samples: int, size: int):
        self.root = Path(root)
        self.key = chunk_key(parts)
        self.dir = self.root / self.key
        self.bounds = chunk_bounds(n_samples, size)
        if self.root.exists():
            for other in self.root.iterdir():
                if other.name != self.key:
                    log.info("removing stale chunks %s (model, prompts, data or settings changed)", other)
                    shutil.rmtree(other) if other.is_dir() else other.unlink()
        self.dir.mkdir(parents=True, exist_ok=True)
        for leftover in self.dir.glob(".*.tmp"):  # a write killed before its rename
            leftover.unlink()
        io.write_json(dict(parts), self.dir / KEY_FILE)

    def path(self, start: int, stop: int) -> Path:
        return self.dir / f"chunk-{start:09d}-{stop:09d}.parquet"

    def done(self) -> list[tuple[int, int]]:
        return [b for b in self.bounds if self.path(*b).exists()]

    def todo(self) -> list[tuple[int, int]]:
        return [b for b in self.bounds if not self.path(*b).exists()]

    def save(self, start: int, stop: int, rows: pl.DataFrame) -> None:
        io.write_parquet(rows, self.path(start, stop), {"chunk_key": self.key, "start": start, "stop": stop})

    def load(self, start: int, stop: int) -> pl.DataFrame:
        path = self.path(start, stop)
        meta = io.read_parquet_metadata(path)
        if meta.get("chunk_key") != self.key or (meta.get("start"), meta.get("stop")) != (start, stop):
            raise ValueError(f"{path}: chunk metadata {meta} does not match key {self.key} [{start}, {stop}); "
                             f"delete {self.dir} and rerun")
        return pl.read_parquet(path)

    def load_all(self) -> pl.DataFrame:
        missing = self.todo()
        if missing:
            raise ValueError(f"{self.dir}: chunks {missing[:3]} are missing; the job did not finish")
        return pl.concat([self.load(*b) for b in self.bounds])
