"""The workflow on a real SLURM cluster: single node on localhost, from tests/slurm/cluster.sh.

The cluster is started once per session (and stopped after it) unless one is running already.
It needs root; outside CI the tests skip without it, in CI (CI=true) they fail. Every Snakemake
run is wrapped in `timeout -k 10 N`: a status-check hang must fail the test, not stall CI.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
import yaml
from conftest import BIN, IMPORT_CONFIG, REPO, dry_run_jobs, snakemake_env, write_config
from polars.testing import assert_frame_equal

from prompt_reliability.base.usage import read_usage

# They share one cluster: one test worker runs them all (make test: pytest -n --dist loadfile).
pytestmark = [pytest.mark.slurm, pytest.mark.workflow]

HARNESS = REPO / "tests/slurm/cluster.sh"
STATE = Path(os.environ.get("PR_SLURM_STATE", "/tmp/prompt-reliability-slurm"))
PARTITION = os.environ.get("PR_SLURM_PARTITION", "debug")  # the harness's partition
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
RUN_LIMIT = 480  # seconds per Snakemake run on the cluster; a normal run takes 1-2 minutes

# What the local cluster needs on top of the repository's profile: the placeholders filled in,
# squeue status checks (no slurmdbd, so sacct would hang the run), fast polling, short latency
# wait (local disk), and the SLURM logs of successful jobs kept for the assertions below.
# (Polling: after a check that finds no job finished, the plugin waits 10 s longer than the time
# before, so a job's end is seen up to ~20 s late; that, not the jobs, dominates the run time.)
LOCAL_OVERRIDE = {
    "default-resources": {"slurm_partition": PARTITION, "slurm_account": "prtest"},
    "slurm-status-command": "squeue",
    "slurm-init-seconds-before-status-checks": 2,
    "seconds-between-status-checks": 1,
    "latency-wait": 5,
    "slurm-keep-successful-logs": True,
}

# The embedded default's rule kinds, small: synthetic data, a simulated model that asks for a GPU,
# two prompt families (two scoring jobs share the two-CPU node, one wave).
CONFIG = {
    "prompts": ["A", "B"],
    "datasets": {"synth": {"adapter": "synthetic", "images": False, "splits": {"train": {"n": 40}, "test": {"n": 40}}}},
    "models": {"sim": {"backend": "simulate", "simulate": {"seed": 3}, "resources": {"gpus": 1, "mem_mb": 500, "runtime": 10}}},
    "lock": {"dataset": "synth"},
    "evaluate": [{"dataset": "synth"}],
}
LOCAL_RULES = {"all", "scores", "score_matrix", "per_prompt_table", "lock", "check_manifest"}
# The analyses of one evaluation pair, which travel as one SLURM job (group pair_{model}_{dataset}_{split}).
PAIR_RULES = {"split_matrix", "per_prompt", "fragility", "fragility_figure", "reliability", "ranking_distribution", "ece_variants",
              "reliability_diagram", "aggregation", "topk", "topk_figure", "calibration", "selective",
              "selective_figure", "operating_points", "family_view", "safety_sra"}
SUBMITTED = re.compile(r"Job ([\w-]+) has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.")


def harness(command: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PR_SLURM_STATE": str(STATE)}
    return subprocess.run(["timeout", "-k", "10", str(timeout), str(HARNESS), command], env=env, capture_output=True, text=True)


def unusable(reason: str):
    if IN_CI:
        pytest.fail(f"CI must run the SLURM tests: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def slurm_cluster():
    """Environment for SLURM clients (SLURM_CONF); the cluster runs for the whole session."""
    if os.geteuid() != 0:
        unusable("the local SLURM cluster needs root (slurmd runs as root; packages come from apt)")
    running_before = harness("status").returncode == 0
    if not running_before:
        started = time.monotonic()
        result = harness("start")
        if result.returncode != 0:
            pytest.fail(f"tests/slurm/cluster.sh start failed:\n{result.stderr[-4000:]}")
        print(f"\n[slurm] cluster started in {time.monotonic() - started:.1f} s")
    yield {"SLURM_CONF": str(STATE / "etc/slurm.conf")}
    if not running_before:  # leave a cluster someone else started running
        harness("stop")


@pytest.fixture(scope="session")
def slurm_profile(tmp_path_factory) -> Path:
    """The repository's SLURM profile with LOCAL_OVERRIDE applied, as a profile folder."""
    profile = yaml.safe_load((REPO / "config/profiles/slurm/config.yaml").read_text())
    assert profile["executor"] == "slurm"
    for key in LOCAL_OVERRIDE["default-resources"]:
        assert key in profile["default-resources"], f"the repository profile lost its {key} placeholder"
    profile["default-resources"].update(LOCAL_OVERRIDE["default-resources"])
    profile.update({k: v for k, v in LOCAL_OVERRIDE.items() if k != "default-resources"})
    folder = tmp_path_factory.mktemp("slurm-profile")
    (folder / "config.yaml").write_text(yaml.safe_dump(profile))
    return folder


def run(workdir: Path, *args: str, env: dict[str, str] | None = None, limit: int = RUN_LIMIT) -> subprocess.CompletedProcess:
    """Snakemake on this repository's Snakefile under a hard timeout; ``.wall`` holds the seconds."""
    cmd = ["timeout", "-k", "10", str(limit), str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "--configfile", str(workdir / "config.yaml"), *args]
    started = time.monotonic()
    result = subprocess.run(cmd, cwd=workdir, env={**snakemake_env(workdir), **(env or {})}, capture_output=True, text=True)
    result.wall = time.monotonic() - started
    result.log = result.stdout + result.stderr
    assert result.returncode not in (124, 137), f"snakemake hung and was killed after {limit} s:\n{result.log[-6000:]}"
    return result


def submissions(log: str) -> list[tuple[str, int, Path]]:
    """(rule or ``group:<id>``, SLURM job id, SLURM log) of every job the run submitted (named in the log path)."""
    found = []
    for _, slurm_id, path in SUBMITTED.findall(log):
        kind, name = re.search(r"/slurm_logs/(rule|group)_([^/]+)/", path).groups()
        # a group job's folder is its group id followed by its rules ("..." when long)
        found.append((name if kind == "rule" else f"group:{name}", int(slurm_id), Path(path)))
    return found


def scontrol_job(slurm_id: int, env: dict[str, str]) -> str:
    out = subprocess.run(["scontrol", "show", "job", "-d", "-o", str(slurm_id)], env={**os.environ, **env},
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


def check_ran_on_slurm(result: subprocess.CompletedProcess, env: dict[str, str], workdir: Path) -> None:
    """Every job of the run except local rules went through SLURM and got its resources there."""
    jobs = submissions(result.log)
    # local rules print "localrule"; the gates (dataset_manifest, check_manifest, preflight) are checkpoints
    started = re.findall(r"^(?:rule|checkpoint) (\w+):$", result.log, flags=re.M)
    singles = [rule for rule, _, _ in jobs if not rule.startswith("group:")]
    assert jobs and set(singles) <= set(started)
    assert not LOCAL_RULES & set(singles)
    for rule, slurm_id, slurm_log in jobs:
        # slurmd wrote the job's output to a log named by its SLURM job id
        text = slurm_log.read_text()
        assert slurm_log.name == f"{slurm_id}.log", slurm_log
        if rule.startswith("group:"):  # one evaluation pair: every per-pair analysis in one SLURM job
            ran = set(re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", text))
            assert PAIR_RULES <= ran, (PAIR_RULES - ran, text[-3000:])
            # ... in one job step: the job-step executor starts one `srun` Snakemake per connected
            # component of the group, one after another (12 when the analyses did not share an input)
            steps = text.count("Group job pair_")
            assert steps == 1, f"the pair's analyses ran as {steps} job steps: every per-pair rule must read split_matrix"
            # ... without a Snakemake start-up each: that job step's Snakemake ran them as threads
            # handing them to its worker processes (at most its 2 cores of them), which measured each
            paths = set(re.findall(r"^\s+log: \S+\.log, (\S+\.tsv)$", text, flags=re.M))  # each job is listed twice
            usage = [read_usage(workdir / path) for path in sorted(paths)]
            assert len(usage) == len(ran), (paths, ran)  # one per job (each pair rule runs once)
            assert {u["runner"] for u in usage} == {"worker"}, usage
            processes = {u["pid"] for u in usage}
            assert len(processes) <= 2, f"the pair's {len(usage)} analyses ran in {len(processes)} processes"
            info = scontrol_job(slurm_id, env)
            start, end = (datetime.fromisoformat(re.search(rf"{key}=(\S+)", info).group(1)) for key in ("StartTime", "EndTime"))
            print(f"\n[slurm] pair job {slurm_id}: {(end - start).total_seconds():.0f} s, {len(usage)} analyses in "
                  f"{len(processes)} worker processes ({sum(float(u['s']) for u in usage):.1f} s of job time)")
            continue
        assert f"rule {rule}:" in text or f"checkpoint {rule}:" in text
        # and SLURM allocated what the config asks: the model's GPU, memory and time for scoring
        info = scontrol_job(slurm_id, env)  # within MinJobAge (300 s) of the job's end
        assert "JobState=COMPLETED" in info and f"Partition={PARTITION}" in info, info
        if rule == "score_family":
            assert "TresPerJob=gres:gpu:1" in info and "MinMemoryNode=500M" in info and "TimeLimit=00:10:00" in info, info
        else:
            assert "gres:gpu" not in info and "TimeLimit=00:30:00" in info, info


def result_files(workdir: Path) -> dict[str, Path]:
    root = workdir / "results"
    return {str(p.relative_to(root)): p for sub in ("tables", "lock", "matrix", "analysis") for p in (root / sub).rglob("*") if p.is_file()}


def test_slurm_run_matches_local_run(slurm_cluster, slurm_profile, tmp_path):
    on_slurm, local = tmp_path / "slurm", tmp_path / "local"
    for workdir in (on_slurm, local):
        workdir.mkdir()
        write_config(workdir, CONFIG)

    # 1. Inference only on the cluster (the `scores` target) ...
    first = run(on_slurm, "--profile", str(slurm_profile), "scores", env=slurm_cluster)
    assert first.returncode == 0, first.log[-6000:]
    check_ran_on_slurm(first, slurm_cluster, on_slurm)
    assert sorted(rule for rule, _, _ in submissions(first.log)) == ["dataset_manifest"] + ["score_family"] * 2
    # ... leaves only analyses to run (here or on any other machine):
    remaining = dry_run_jobs(on_slurm, "--configfile", str(on_slurm / "config.yaml"))
    assert remaining and not {"dataset_manifest", "score_family"} & set(remaining), remaining

    # 2. The rest of the workflow on the cluster: no scoring job runs again.
    second = run(on_slurm, "--profile", str(slurm_profile), env=slurm_cluster)
    assert second.returncode == 0, second.log[-6000:]
    check_ran_on_slurm(second, slurm_cluster, on_slurm)
    # one sbatch per evaluation pair (here one pair) and one bootstrap per evaluation split (it resamples
    # the split once for every model), none per other analysis rule
    jobs = sorted(rule for rule, _, _ in submissions(second.log))
    assert len(jobs) == 2 and jobs[0] == "bootstrap", jobs
    assert jobs[1].startswith("group:pair_sim_synth_test_"), jobs
    local_rules = {m.group(1) for m in re.finditer(r"^local(?:rule|checkpoint) (\w+):$", first.log + second.log, flags=re.M)}
    assert LOCAL_RULES <= local_rules, local_rules
    submitted = submissions(first.log) + submissions(second.log)
    n_jobs = len(submitted)
    print("\n[slurm] SLURM job ids: " + ", ".join(f"{rule}={job_id}" for rule, job_id, _ in submitted))

    # 3. The same config with --cores 2: identical results.
    plain = run(local, "--cores", "2")
    assert plain.returncode == 0, plain.log[-6000:]
    print(f"\n[slurm] {n_jobs} SLURM jobs: {first.wall + second.wall:.1f} s on SLURM "
          f"({first.wall:.1f} + {second.wall:.1f}), {plain.wall:.1f} s with --cores 2")
    ours, theirs = result_files(on_slurm), result_files(local)
    assert ours.keys() == theirs.keys() and any(k.startswith("tables/") for k in ours)
    for name, path in ours.items():
        if path.suffix == ".parquet":  # the same frame; the file's metadata may carry a timestamp
            assert_frame_equal(pl.read_parquet(path), pl.read_parquet(theirs[name]))
        else:
            assert path.read_bytes() == theirs[name].read_bytes(), name


def test_failing_job_fails_the_run_without_hanging(slurm_cluster, slurm_profile, import_workdir):
    # one dataset, one model: the first job (the manifest, which parses the score file) fails
    config = {**IMPORT_CONFIG, "datasets": {"ds_a": {"adapter": "scores"}},
              "models": {"m1": {"backend": "import", "scores": {"ds_a": "imports/m1_a.jsonl"}}},
              "evaluate": [{"dataset": "ds_a", "split": "test"}]}
    write_config(import_workdir, config)
    path = import_workdir / "imports/m1_a.jsonl"
    lines = path.read_text().splitlines()
    lines[6] = '{"sample_id": "x", "split": "test"'
    path.write_text("\n".join(lines) + "\n")

    result = run(import_workdir, "--profile", str(slurm_profile), env=slurm_cluster, limit=300)
    assert result.returncode != 0
    failed = re.search(r"SLURM-job '(\d+)' failed, SLURM status is: 'FAILED'", result.log)
    assert failed, result.log[-6000:]
    [(rule, slurm_id, slurm_log)] = submissions(result.log)
    assert (rule, slurm_id) == ("dataset_manifest", int(failed.group(1)))
    # the cause is in the job's own log; the SLURM log of a failed job is kept
    assert slurm_log.is_file() and "Error in rule dataset_manifest" in slurm_log.read_text()
    assert "imports/m1_a.jsonl, line 7: not valid JSON" in (import_workdir / "results/logs/data/ds_a.log").read_text()
    assert "JobState=FAILED" in scontrol_job(int(failed.group(1)), slurm_cluster)
    assert not (import_workdir / "results/data/ds_a.parquet").exists()
    print(f"\n[slurm] failing run exited {result.returncode} after {result.wall:.1f} s")


def test_harness_is_idempotent(slurm_cluster):
    def pids():
        return {name: (STATE / f"run/{name}.pid").read_text().strip() for name in ("slurmctld", "slurmd")}

    before = pids()
    again = harness("start")
    assert again.returncode == 0 and "already running" in again.stderr
    assert pids() == before  # nothing restarted
    stopped = harness("stop")
    assert stopped.returncode == 0, stopped.stderr
    for pid in before.values():  # gone, or at most a zombie waiting for PID 1 to reap it
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().split(") ")[1][0] in "ZX"
    assert harness("stop").returncode == 0  # stopping twice is fine
    restarted = harness("start")
    assert restarted.returncode == 0, restarted.stderr
    assert harness("status").returncode == 0 and pids() != before
