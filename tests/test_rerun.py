"""What re-runs what (issue 23): each kind of change re-runs exactly the jobs whose result it changes, in
one run, and then a dry run has nothing to do.

Two studies share one copy of this checkout. The core study (a local CSV dataset with images, a
simulated model and a tiny hf model built by the workflow) is run once; then, one after the other,
each change below is made and the workflow run again; the test asserts the exact set of jobs that
ran, and that ``-n`` then finds nothing to do. The model-steps study runs every other kind of model
step (safety-calibration variants, steering vectors, responses, an hf judge, self-assessment
generation and answering, imported answers) and checks that a corrected label re-runs no model step
but the judge (whose question names the label) and that a clone re-runs nothing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import BIN, REPO, snakemake_env

pytestmark = pytest.mark.workflow
pytest.importorskip("transformers")

N_PER_SPLIT = 10
# One worker: the hf steps of a run then import torch once (their cost is the import and the model's
# load, not the 20 samples), and `make test` runs other test files on the other cores.
CORES = "1"
MODELS = ("sim", "tiny")
FAMILIES = ("A", "B")  # two are enough: a template edit of B must leave A alone
# The analyses the study asks for (targets), per model, on the test split.
TARGETS = [f"results/analysis/{m}/mine/test/{a}.parquet" for m in MODELS for a in ("reliability", "fragility")]


def job(rule: str, **wildcards: str) -> tuple[str, tuple]:
    return rule, tuple(sorted(wildcards.items()))


def scoring(model: str, *families: str) -> set:
    return {job("score_family", model=model, dataset="mine", family=f) for f in families}


def analyses(model: str, *names: str) -> set:
    return {job(name, model=model, dataset="mine", split="test") for name in names}


def downstream(model: str) -> set:
    """Everything after a model's caches: its matrix, the pair's rows, the lock, the target analyses."""
    return ({job("score_matrix", model=model, dataset="mine"), job("lock", model=model)}
            | analyses(model, "split_matrix", "reliability", "fragility"))


MANIFEST = {job("dataset_manifest", dataset="mine"), job("check_manifest", dataset="mine")}
PREFLIGHT = {job("preflight")}


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A copy of this working tree (its tracked and untracked files), shared by the module's tests."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    checkout = tmp_path_factory.mktemp("rerun") / "checkout"
    for name in files:
        if (REPO / name).is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, checkout / name)
    return checkout


def write_study(study: Path, **extra) -> Path:
    """The study folder: CSV, images, prompts, config (``extra``: more config keys)."""
    from PIL import Image

    (study / "data/images").mkdir(parents=True)
    shutil.copytree(REPO / "prompts", study / "prompts")
    rng = np.random.default_rng(0)
    lines = ["id,split,label,query,image"]
    for split in ("train", "test"):
        for i in range(N_PER_SPLIT):
            name = f"{split}{i}.png"
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(study / "data/images" / name)
            lines.append(f"{split}{i},{split},{'unsafe' if i % 2 else 'safe'},What is shown?,images/{name}")
    (study / "data/mine.csv").write_text("\n".join(lines) + "\n")
    config = {
        "datasets": {"mine": {"adapter": "local", "path": "data/mine.csv", "columns": {"sample_id": "id"}}},
        "models": {"sim": {"backend": "simulate"}, "tiny": {"backend": "hf", "tiny": {"arch": "llava", "seed": 0}}},
        "prompt_dir": "prompts",
        "prompts": list(FAMILIES),
        "lock": {"dataset": "mine", "split": "train"},
        "evaluate": [{"dataset": "mine", "split": "test"}],
        **extra,
    }
    (study / "config.yaml").write_text(yaml.safe_dump(config))
    return study


def snakemake(checkout: Path, study: Path, *args: str) -> str:
    cmd = [str(BIN / "snakemake"), "-s", str(checkout / "Snakefile"), "-d", str(study), "--configfile",
           str(study / "config.yaml"), *args]
    result = subprocess.run(cmd, cwd=study, env=snakemake_env(study), capture_output=True, text=True, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    return output


def executed(log: str) -> set:
    """The jobs a run executed: (rule, wildcards) of each job block whose job id finished."""
    finished = set(re.findall(r"Finished jobid: (\d+) ", log))
    jobs = set()
    for block in re.split(r"\n(?=\s*(?:local)?(?:rule|checkpoint) \w+:)", log):
        head = re.match(r"\s*(?:local)?(?:rule|checkpoint) (\w+):", block)
        jobid = re.search(r"^\s*jobid: (\d+)", block, re.M)
        if not head or not jobid or jobid.group(1) not in finished:
            continue
        found = re.search(r"^\s*wildcards: (.*)$", block, re.M)
        wildcards = dict(item.split("=", 1) for item in found.group(1).split(", ")) if found else {}
        jobs.add(job(head.group(1), **wildcards))
    return jobs


def run_once(checkout: Path, study: Path, targets=TARGETS) -> set:
    """One run, the jobs it executed (target rules left out), and then nothing left to do."""
    ran = executed(snakemake(checkout, study, "--cores", CORES, *targets))
    assert "Nothing to be done" in snakemake(checkout, study, "-n", *targets)
    return ran


def clone(checkout: Path, study: Path, root: Path) -> tuple[Path, Path]:
    """Another clone of the same commit at another place, and the study copied with ``results/`` (its
    times kept) but without .snakemake (no metadata); everything else gets new times, as a clone of a
    repository holding the study would (its data, prompts, config and imported files)."""
    cloned, moved = root / "clone", root / "moved" / study.name
    shutil.copytree(checkout, cloned)
    shutil.copytree(study, moved, ignore=shutil.ignore_patterns(".snakemake"))
    for path in [*cloned.rglob("*"), *(p for p in moved.rglob("*") if "results" not in p.relative_to(moved).parts)]:
        path.touch()
    return cloned, moved


def edit_yaml(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_each_change_reruns_exactly_what_it_changes_in_one_run(checkout, tmp_path):
    study = write_study(tmp_path / "study")
    first = run_once(checkout, study)
    assert scoring("sim", *FAMILIES) | scoring("tiny", *FAMILIES) <= first

    # a template's text: that family of every model (hf too, in this run), after the preflight
    edit_yaml(study / "prompts/B.yaml", lambda d: d["templates"][0].update(text=d["templates"][0]["text"] + " Be brief."))
    assert run_once(checkout, study) == PREFLIGHT | scoring("sim", "B") | scoring("tiny", "B") | downstream("sim") | downstream("tiny")

    # the label tokens: every family of every model
    edit_yaml(study / "prompts/labels.yaml", lambda d: d.update(unsafe={**d["unsafe"], "token": d["safe"]["token"]},
                                                                 safe={**d["safe"], "token": d["unsafe"]["token"]}))
    assert run_once(checkout, study) == (PREFLIGHT | scoring("sim", *FAMILIES) | scoring("tiny", *FAMILIES)
                                         | downstream("sim") | downstream("tiny"))

    # a model setting that can change scores: that model only
    edit_yaml(study / "config.yaml", lambda d: d["models"]["tiny"].update(engine="reference"))
    assert run_once(checkout, study) == PREFLIGHT | scoring("tiny", *FAMILIES) | downstream("tiny")

    # how the work is split and run, and a docstring or comment of a module an analysis calls:
    # nothing (cases that re-run nothing share one run: none may re-run anything)
    edit_yaml(study / "config.yaml", lambda d: (d["models"]["tiny"].update(batch_size=3, chunk_size=4),
                                                d.update(workers={"max_jobs": 50}, resources={"analysis_mem_mb": 900})))
    module = checkout / "src/prompt_reliability/analysis/fragility.py"
    source = module.read_text()
    module.write_text(source.replace('"""', '"""Edited docstring. ', 1) + "\n# a comment\n")
    assert run_once(checkout, study) == set()

    # new bytes under an old image path: the manifest, then the hf model (simulated scores ignore images)
    image = study / "data/images/test3.png"
    image.write_bytes((study / "data/images/test4.png").read_bytes())
    assert run_once(checkout, study) == MANIFEST | scoring("tiny", *FAMILIES) | downstream("tiny")

    # one corrected label: the manifest and the analyses; no hf model re-scores (the simulated model
    # draws its scores from the labels, so it does)
    csv = study / "data/mine.csv"
    csv.write_text(csv.read_text().replace("test3,test,unsafe", "test3,test,safe"))
    assert run_once(checkout, study) == MANIFEST | scoring("sim", *FAMILIES) | downstream("sim") | downstream("tiny")

    # a package module an analysis calls: that analysis only
    module.write_text(source + "\nDECILES_NOTE = 'an edit'\n")
    try:
        assert run_once(checkout, study) == analyses("sim", "fragility") | analyses("tiny", "fragility")

        # another clone of the same commit at another place, results/ copied: nothing
        cloned, moved = clone(checkout, study, tmp_path)
        assert "Nothing to be done" in snakemake(cloned, moved, "-n", *TARGETS)
        assert executed(snakemake(cloned, moved, "--cores", CORES, *TARGETS)) == set()
    finally:
        module.write_text(source)  # the checkout is shared with the next test


# --- the other model steps: safety calibration (scores, steering, responses, judges), self-assessment

VARIANTS = ("none", "fewshot-1", "iar-L1-a1", "pe")
JUDGES = ("phrase", "tiny")
MODEL_STEPS_TARGETS = ["results/tables/safety_calibration.parquet", "results/tables/safety_responses.parquet",
                       "results/tables/safety_judges.parquet", "results/tables/self_assessment.parquet"]
# the model steps of this study (rule names), none of which a corrected label may re-run but the judge
MODEL_STEP_RULES = {"tiny_model", "preflight", "score_family", "safety_variant_scores", "safety_steering_vectors",
                    "safety_responses", "safety_judge_responses", "safety_judge_labelled", "self_assessment_generate",
                    "self_assessment_answer"}


def write_model_steps_study(study: Path) -> Path:
    study = write_study(
        study,
        prompts=["A"],  # the calibration family
        safety_calibration={"models": ["tiny"], "few_shot": {"shots": [1]}, "steering": {"layers": [1], "alphas": [1.0]},
                            "prompting": ["pe"], "responses": {"enabled": True, "max_new_tokens": 4, "judges": list(JUDGES)}},
        self_assessment={"models": ["tiny"], "settings": ["open"], "images": 2, "k": 1, "max_new_tokens": 8,
                         "imports": {"harness": "answers.jsonl"}},
    )
    shutil.copy2(REPO / ".test/unsaf_import/answers/harness.jsonl", study / "answers.jsonl")
    config = yaml.safe_load((study / "config.yaml").read_text())
    config["models"].pop("sim")  # the tiny model alone: every model step is an hf one
    (study / "config.yaml").write_text(yaml.safe_dump(config))
    return study


def test_model_steps_rerun_on_what_they_read_not_on_labels_or_a_clone(checkout, tmp_path):
    study = write_model_steps_study(tmp_path / "study")
    first = run_once(checkout, study, MODEL_STEPS_TARGETS)
    assert MODEL_STEP_RULES <= {rule for rule, _ in first}, "every kind of model step ran"

    # one corrected test label: the manifest, the matrix and what reads labels; the model judge
    # re-judges (its question names the request's label); no other model step (the lock split's
    # labels, which the few-shot demonstrations and the steering vectors read, are unchanged)
    csv = study / "data/mine.csv"
    csv.write_text(csv.read_text().replace("test3,test,unsafe", "test3,test,safe"))
    pair = {"model": "tiny", "dataset": "mine", "split": "test"}
    assert run_once(checkout, study, MODEL_STEPS_TARGETS) == (
        MANIFEST | {job("score_matrix", model="tiny", dataset="mine"), job("lock", model="tiny")}
        | {job(rule, **pair) for rule in ("split_matrix", "safety_sra")}
        | {job("safety_variant_sra", method=v, **pair) for v in VARIANTS}
        | {job("safety_judge_responses", judge="tiny", model="tiny", variant=v, dataset="mine") for v in VARIANTS}
        | {job("safety_response_sra", variant=v, judge=j, **pair) for v in VARIANTS for j in JUDGES}
        | {job("safety_calibration_table"), job("safety_responses_table")})

    # another clone with results/ copied, the study's files (data, prompts, imported answers) new: nothing
    cloned, moved = clone(checkout, study, tmp_path)
    assert "Nothing to be done" in snakemake(cloned, moved, "-n", *MODEL_STEPS_TARGETS)
