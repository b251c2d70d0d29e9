"""Invalidation by content (issue 13, point 3): dry-run summaries after a real run of the scoring stage
(tests/test_rerun.py checks every kind of change on a run to the end).

A study scored with one checkout and dry-run with another clone of the same tree re-runs nothing;
editing one prompt re-scores exactly that family; swapping the label tokens (labels.yaml)
re-scores every family. Scoring jobs wait for ``check_manifest`` (a gate that re-scores nothing).
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml
from conftest import BIN, REPO, snakemake_env

CONFIG = {
    "datasets": {"synth": {"adapter": "synthetic", "images": False,
                           "splits": {"train": {"n": 24}, "test": {"n": 24}}}},
    "models": {"sim": {"backend": "simulate"}},
    "lock": {"dataset": "synth", "split": "train"},
    "evaluate": [{"dataset": "synth", "split": "test"}],
}


def clone(target):
    """A copy of this working tree (tracked and new files, no .git), as another clone would be."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (REPO / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)
    return target


def snakemake(checkout, workdir, *args):
    cmd = [str(BIN / "snakemake"), "-s", str(checkout / "Snakefile"), "-d", str(workdir), *args, "--configfile",
           str(workdir / "config.yaml")]
    result = subprocess.run(cmd, cwd=workdir, env=snakemake_env(workdir), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def dry_run(checkout, workdir):
    counts = {}
    for line in snakemake(checkout, workdir, "scores", "-n", "--quiet", "rules").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("total", "job"):
            counts[parts[0]] = int(parts[1])
    return counts


@pytest.mark.workflow
def test_another_clone_reruns_nothing_and_edits_rerun_exactly_their_family(tmp_path):
    a, b, work = (tmp_path / n for n in ("a", "b", "study"))
    for folder in (a, b, work):
        folder.mkdir()
    clone(a), clone(b)
    (work / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    snakemake(a, work, "scores", "--cores", "1")
    assert (work / "results/checks/synth.json").exists()

    assert dry_run(a, work) == {}
    summary = snakemake(b, work, "scores", "-n")
    print("another clone, same commit:\n" + summary[-400:])
    assert "Nothing to be done" in summary
    assert dry_run(b, work) == {}

    family_b = b / "prompts/B.yaml"
    data = yaml.safe_load(family_b.read_text())
    data["templates"][0]["text"] += " Be brief."
    family_b.write_text(yaml.safe_dump(data, sort_keys=False))
    assert dry_run(b, work) == {"score_family": 1, "scores": 1}  # family B only (`scores` is the target rule)

    labels = b / "prompts/labels.yaml"
    swapped = yaml.safe_load(labels.read_text())
    swapped["unsafe"]["token"], swapped["safe"]["token"] = swapped["safe"]["token"], swapped["unsafe"]["token"]
    labels.write_text(yaml.safe_dump(swapped))
    assert dry_run(b, work) == {"score_family": 3, "scores": 1}
    labels.write_text(yaml.safe_dump(yaml.safe_load((REPO / "prompts/labels.yaml").read_text())))
    family_b.write_text((REPO / "prompts/B.yaml").read_text())
    assert dry_run(b, work) == {}

    # a new requirement re-runs the manifest check, never the scoring: the check is a gate (a
    # checkpoint), so a dry run lists the scoring jobs behind it as pending, but the run re-evaluates
    # them once it has passed and runs none
    (work / "config.yaml").write_text(yaml.safe_dump({**CONFIG, "analysis": {"bootstrap": {"prevalences": ["native"]}}}))
    assert dry_run(b, work)["check_manifest"] == 1
    ran = snakemake(b, work, "scores", "--cores", "1")
    assert re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", ran) == ["check_manifest"]
    assert dry_run(b, work) == {}


def test_code_hash_follows_content_not_location(tmp_path, monkeypatch):
    import importlib
    import sys

    from prompt_reliability.base.runtime import code_hash

    hashes = []
    for where in ("one", "two"):
        (tmp_path / where).mkdir()
        (tmp_path / where / "analysis_x.py").write_text("def f():\n    return 1\n")
        monkeypatch.syspath_prepend(str(tmp_path / where))
        sys.modules.pop("analysis_x", None)
        module = importlib.import_module("analysis_x")
        hashes.append(code_hash(module.f))
    assert hashes[0] == hashes[1] and len(hashes[0]) == 16
    (tmp_path / "two" / "analysis_x.py").write_text("def f():\n    return 2\n")
    assert code_hash("analysis_x") != hashes[0]
    sys.modules.pop("analysis_x", None)
