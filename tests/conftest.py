"""Shared fixtures: the repository, a snakemake runner, tiny import score files."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SCHEMA_PATH = REPO / "workflow/schemas/config.schema.yaml"
BIN = Path(sys.executable).parent
PROMPT_IDS = [f"{family}{i}" for family in "ABC" for i in range(1, 6)]


def pytest_collection_modifyitems(config, items):
    """Longest first, so that parallel test workers (``make test`` runs pytest -n) end together.

    The SLURM tests go first (minutes, mostly waiting on the cluster's status polls), then the
    other end-to-end workflow runs, then the tests that run the tiny models in this process (torch),
    then the unit tests that fill the gaps.
    """
    def weight(item) -> int:
        if item.get_closest_marker("slurm"):
            return 0
        if item.get_closest_marker("workflow"):
            return 1
        return 2 if "tiny_models" in getattr(item, "fixturenames", ()) else 3

    items.sort(key=weight)  # stable: collection order within each kind


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


def snakemake_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        MPLCONFIGDIR=str(tmp / ".mpl"),
        XDG_CACHE_HOME=str(tmp / ".cache"),
        HF_HOME=str(tmp / ".hf"),
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


@contextlib.contextmanager
def torch_threads(n: int):
    """torch on ``n`` threads inside the block, as a workflow worker runs a model step (its
    ``cpus_per_task``): a reduction's float order depends on the thread count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_snakemake(workdir: Path, *args: str, check: bool = True, timeout: int = 900,
                  env: dict[str, str] | None = None, snakefile: Path = REPO / "Snakefile") -> subprocess.CompletedProcess:
    """Run this repository's Snakefile (or ``snakefile``) in ``workdir``; ``env`` adds variables."""
    cmd = [str(BIN / "snakemake"), "-s", str(snakefile), "-d", str(workdir), *args]
    result = subprocess.run(cmd, cwd=workdir, env={**snakemake_env(workdir), **(env or {})}, capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed ({' '.join(args)}):\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
    return result


def dry_run_jobs(workdir: Path, *args: str, snakefile: Path = REPO / "Snakefile") -> dict[str, int]:
    """Rule name -> job count that ``snakemake -n`` would run."""
    out = run_snakemake(workdir, *args, "-n", "--quiet", "rules", snakefile=snakefile).stdout  # args may start with targets
    counts: dict[str, int] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("total", "job"):
            counts[parts[0]] = int(parts[1])
    return counts


def validated_model(cfg: dict, name: str = "m") -> dict:
    """A model entry with the schema's defaults filled: the package never re-declares them, tests read them here."""
    import copy

    from prompt_reliability.base.config import validate_config

    config = {"datasets": {"d": {"adapter": "synthetic"}}, "models": {name: copy.deepcopy(cfg)},
              "lock": {"dataset": "d"}, "evaluate": [{"dataset": "d"}]}
    validate_config(config, SCHEMA_PATH)
    return config["models"][name]


def validated_manifest(name: str, cfg: dict, image_dir):
    """build_manifest on a dataset entry as the workflow passes it (schema defaults filled)."""
    from prompt_reliability.data.datasets import build_manifest

    return build_manifest(name, validated_dataset(cfg, name), image_dir)


def synthetic_manifest_file(workdir: Path, seed: int, train: int, test: int, images: bool = True) -> Path:
    """``workdir``/manifest.parquet: a seeded synthetic set (32-px images, half unsafe) of ``train`` + ``test`` samples."""
    from prompt_reliability.base import io

    manifest = validated_manifest("synth", {"adapter": "synthetic", "seed": seed, "image_size": 32, "images": images,
                                            "splits": {"train": {"n": train, "unsafe_rate": 0.5},
                                                       "test": {"n": test, "unsafe_rate": 0.5}}}, workdir / "images")
    io.write_parquet(manifest, workdir / "manifest.parquet")
    return workdir / "manifest.parquet"


def validated_dataset(cfg: dict, name: str = "d") -> dict:
    """A dataset entry with the schema's defaults filled."""
    import copy

    from prompt_reliability.base.config import validate_config

    config = {"datasets": {name: copy.deepcopy(cfg)}, "models": {"m": {"backend": "simulate"}},
              "lock": {"dataset": name}, "evaluate": [{"dataset": name}]}
    return validate_config(config, SCHEMA_PATH)["datasets"][name]


def analysis_defaults() -> dict:
    """Every ``analysis`` key with the schema's default (what rules read from a validated config)."""
    from prompt_reliability.base.config import validate_config

    config = {"datasets": {"d": {"adapter": "synthetic"}}, "models": {"m": {"backend": "simulate"}},
              "lock": {"dataset": "d"}, "evaluate": [{"dataset": "d"}]}
    return validate_config(config, SCHEMA_PATH)["analysis"]


def safety_defaults() -> dict:
    """Every ``safety_calibration`` key with the schema's default."""
    from prompt_reliability.base.config import validate_config

    config = {"datasets": {"d": {"adapter": "synthetic"}}, "models": {"m": {"backend": "simulate"}},
              "lock": {"dataset": "d"}, "evaluate": [{"dataset": "d"}]}
    return validate_config(config, SCHEMA_PATH)["safety_calibration"]


def simulate_params(**settings) -> dict:
    """The simulate backend's parameters: the schema's defaults, overridden by ``settings``."""
    return validated_model({"backend": "simulate", "simulate": settings})["simulate"]


def write_config(workdir: Path, config: dict) -> Path:
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def write_import_jsonl(path: Path, dataset: str, splits: dict[str, int], seed: int, prompt_ids=PROMPT_IDS) -> None:
    """Score file in the import JSONL format: informative, prompt-dependent probabilities."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        for split, n in splits.items():
            labels = (np.arange(n) % 5 < 2).astype(int)
            evidence = 2.0 * labels - 1.0 + rng.normal(0, 1, n)
            for k, prompt_id in enumerate(prompt_ids):
                z = evidence + 0.3 * (k - 7) / 7 + rng.normal(0, 0.5, n)
                p = 1.0 / (1.0 + np.exp(-z))
                for i in range(n):
                    handle.write(json.dumps({"sample_id": f"{dataset}-{split}-{i}", "split": split, "label": int(labels[i]),
                                             "prompt_id": prompt_id, "first_probs": {"U": float(p[i]), "S": float(1 - p[i])}}) + "\n")


IMPORT_CONFIG = {
    "datasets": {"ds_a": {"adapter": "scores"}, "ds_b": {"adapter": "scores"}},
    "models": {
        "m1": {"backend": "import", "scores": {"ds_a": "imports/m1_a.jsonl", "ds_b": "imports/m1_b.jsonl"}},
        "m2": {"backend": "import", "scores": {"ds_a": "imports/m2_a.jsonl", "ds_b": "imports/m2_b.jsonl"}},
    },
    "prompts": ["A", "B", "C"],
    "lock": {"dataset": "ds_a", "split": "train"},
    "evaluate": [{"dataset": "ds_a", "split": "test"}, {"dataset": "ds_b", "split": "test"}],
}


def make_import_workdir(workdir: Path) -> Path:
    """``workdir`` with the issue's import config and its four score files."""
    for seed, (model, ds) in enumerate([("m1", "a"), ("m1", "b"), ("m2", "a"), ("m2", "b")]):
        splits = {"train": 40, "test": 60} if ds == "a" else {"test": 50}
        write_import_jsonl(workdir / "imports" / f"{model}_{ds}.jsonl", f"ds_{ds}", splits, seed=seed if model == "m1" else seed + 10)
    write_config(workdir, IMPORT_CONFIG)
    return workdir


@pytest.fixture
def import_workdir(tmp_path: Path) -> Path:
    """A working directory holding the issue's import config and its four score files."""
    return make_import_workdir(tmp_path)


@contextlib.contextmanager
def built_once(tmp_path_factory, name: str):
    """``(folder, todo)`` for a session-wide fixture shared by the test workers (``pytest -n``).

    The first worker gets ``todo=True`` and builds ``folder``, while the others wait on a file lock;
    later ones get ``todo=False``. A build that raises is redone by the next worker that asks.
    """
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's folder, above each worker's own
    folder, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        todo = not done.exists()
        if todo:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
        yield folder, todo
        if todo:
            done.touch()


@pytest.fixture(scope="session")
def import_run(tmp_path_factory) -> Path:
    """The import config run to the end, once per test session: tests only read it (or copy it)."""
    with built_once(tmp_path_factory, "import-run") as (workdir, todo):
        if todo:
            make_import_workdir(workdir)
            run_snakemake(workdir, "--configfile", str(workdir / "config.yaml"), "--cores", "2")
    return workdir


@pytest.fixture
def import_run_copy(import_run: Path, tmp_path: Path) -> Path:
    """A copy of :func:`import_run` (times kept, so Snakemake sees it complete) for a test to change."""
    copy = tmp_path / "import-run"
    shutil.copytree(import_run, copy, symlinks=True, ignore=shutil.ignore_patterns("locks", "incomplete"))
    return copy


# --- tiny offline VLMs (hf backend tests) ------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Every tiny architecture, built once per test session (shared by the test workers): arch -> model folder.

    Torch runs single-threaded in the test process: these models are far too small to gain from
    threads, and on a busy CI machine extra threads made the hf tests 8x slower.
    """
    import torch

    from prompt_reliability.scoring.tiny_models import (
        ARCHITECTURES,
        build_tiny_model,
    )

    torch.set_num_threads(1)

    with built_once(tmp_path_factory, "tiny_models") as (root, todo):
        if todo:
            for arch in ARCHITECTURES:
                build_tiny_model(root / arch, arch, seed=0)
    return {arch: root / arch for arch in ARCHITECTURES}


