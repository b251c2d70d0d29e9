"""Job resources from config, the profiles, GPU claims and the paper config (no cluster needed)."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys

import pytest
import yaml
from conftest import REPO, run_snakemake, validated_model, write_config

from prompt_reliability.base.config import ConfigError, check_config, validate_config
from prompt_reliability.base.gpus import claim_gpus
from prompt_reliability.base.resources import check_resources, optional_keys_in_use, scoring_resources
from prompt_reliability.base.usage import read_usage

SCHEMA = str(REPO / "workflow/schemas/config.schema.yaml")
SLURM_PROFILE = REPO / "config/profiles/slurm"
WORKSTATION_PROFILE = REPO / "config/profiles/workstation"

SMALL = {
    "datasets": {"synth": {"adapter": "synthetic", "images": False, "splits": {"train": {"n": 20}, "test": {"n": 20}}}},
    "lock": {"dataset": "synth"},
    "evaluate": [{"dataset": "synth"}],
}


# --- resources from a model's config --------------------------------------------------------


def validate(config, schema=SCHEMA):
    return validate_config(config, schema)


def filled(models):
    """Models with the schema's resources defaults (the package reads validated config only)."""
    return {name: validated_model({"backend": "simulate", **cfg}, name) for name, cfg in models.items()}


def test_defaults_are_the_schemas():
    schema = yaml.safe_load(open(SCHEMA))["definitions"]["resources"]["properties"]
    defaults = {key: schema[key]["default"] for key in ("mem_mb", "runtime", "cpus_per_task")}
    assert scoring_resources(validated_model({"backend": "simulate"})) == {**defaults, "gpu": schema["gpus"]["default"]}


def test_gpu_request_follows_the_plugin_names():
    res = scoring_resources(filled({"m": {"resources": {"gpus": 2, "gpu_model": "a100", "mem_mb": 64000, "runtime": 240,
                                           "cpus_per_task": 8, "constraint": "gpu80g", "slurm_partition": "gpu"}}})["m"])
    assert res == {"mem_mb": 64000, "runtime": 240, "cpus_per_task": 8, "gpu": 2, "gpu_model": "a100",
                   "constraint": "gpu80g", "slurm_partition": "gpu"}
    # gres replaces the --gpus request (and is then not counted against a workstation's `gpu`)
    gres = filled({"m": {"resources": {"gres": "gpu:a100:1"}}})["m"]
    assert "gpu" not in scoring_resources(gres)
    assert scoring_resources(gres)["gres"] == "gpu:a100:1"


def test_optional_keys_only_when_some_model_sets_them():
    models = {"a": {"resources": {"gpus": 1}}, "b": {"resources": {"gpu_model": "h100", "gpus": 1}}}
    assert optional_keys_in_use(models) == ["gpu_model"]
    assert optional_keys_in_use({"a": {}}) == []


@pytest.mark.parametrize(
    "models, message",
    [
        ({"m": {"resources": {"gpu_model": "a100"}}}, r"'models.m.resources.gpu_model' is 'a100' but 'models.m.resources.gpus' is 0"),
        ({"m": {"resources": {"gpus": 1, "gres": "gpu:1"}}}, r"'models.m.resources.gres' and .*both set"),
        ({"m": {"resources": {"slurm_extra": "--qos=x --gres=gpu:1"}}}, r"slurm_extra' contains '--gres'.*use resources.gpus"),
        ({"m": {"resources": {"slurm_extra": "-p gpu"}}}, r"contains '-p'.*resources.slurm_partition"),
        ({"m": {"resources": {"slurm_extra": "--mem=4G"}}}, r"contains '--mem'.*resources.mem_mb"),
        ({"m": {"resources": {"slurm_partition": "gpu"}}, "n": {}}, r"'resources.slurm_partition' is set for model\(s\) \['m'\] but not for \['n'\]"),
    ],
)
def test_resource_mistakes_fail_before_any_job(models, message):
    with pytest.raises(ConfigError, match=message):
        check_resources(filled(models))


def test_harmless_slurm_extra_passes():
    check_resources(filled({"m": {"resources": {"slurm_extra": "--qos=gpu --gres-flags=enforce-binding --comment-x", "gpus": 1}}}))


def test_schema_rejects_unknown_resource_keys():
    config = copy.deepcopy({**SMALL, "models": {"m": {"backend": "simulate", "resources": {"gpu": 1}}}})
    with pytest.raises(ConfigError, match=r"'models.m.resources.gpu' is not a known key; did you mean 'gpus'\?"):
        validate(config, SCHEMA)


# --- the slurm profile's dry run -----------------------------------------------------------------


def job_blocks(output: str) -> list[dict[str, str]]:
    """Each job of a dry run's output: rule name plus its 'key: value' lines."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?(?:rule|checkpoint) \w+:)", output):  # gates are checkpoints
        head = re.match(r"(local)?(?:rule|checkpoint) (\w+):", block)
        if head:
            fields = dict(re.findall(r"^\s+(\w+): (.*)$", block, flags=re.M))
            jobs.append({"rule": head.group(2), "local": bool(head.group(1)), **fields})
    return jobs


def resources_of(job: dict[str, str]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in job["resources"].split(", "))


def test_slurm_profile_dry_run_gives_scoring_jobs_their_model_resources(tmp_path):
    config = {**SMALL, "resources": {"analysis_mem_mb": 1500, "analysis_runtime": 20}, "models": {
        "big": {"backend": "simulate", "resources": {"gpus": 2, "gpu_model": "h100", "mem_mb": 64000, "runtime": 240, "cpus_per_task": 8}},
        "small": {"backend": "simulate", "resources": {"gpus": 1, "mem_mb": 16000}},
    }}
    write_config(tmp_path, config)
    out = run_snakemake(tmp_path, "-n", "--profile", str(SLURM_PROFILE), "--configfile", str(tmp_path / "config.yaml")).stdout
    jobs = job_blocks(out)
    scoring = [j for j in jobs if j["rule"] == "score_family"]
    assert len(scoring) == 2 * 3
    for job in scoring:
        res = resources_of(job)
        if "model=big" in job["wildcards"]:
            assert (res["gpu"], res["gpu_model"], res["mem_mb"], res["runtime"], res["cpus_per_task"]) == ("2", "h100", "64000", "240", "8")
        else:
            assert (res["gpu"], res["gpu_model"] if "gpu_model" in res else None, res["mem_mb"], res["runtime"]) == ("1", None, "16000", "60")
        # the profile's placeholders still apply: no model sets a partition of its own
        assert res["slurm_partition"] == "<partition>" and res["slurm_account"] == "<account>"
    analysis = [j for j in jobs if j["rule"] in ("dataset_manifest", "lock", "per_prompt_metrics")]
    assert analysis
    for job in analysis:
        res = resources_of(job)
        assert "gpu" not in res and "gpu_model" not in res
        assert res["mem_mb"] == "1500" and res["runtime"] == "20"  # the config's, not the profile's


# --- the workstation profile: `--resources gpu=N` and each job's own GPUs --------------------------


def peak_concurrent(output: str, rule: str) -> int:
    """Most jobs of ``rule`` running at once, from a local run's log (start and finish lines)."""
    running = peak = 0
    for line in output.splitlines():
        if re.match(rf"(local)?rule {rule}:$", line):
            running += 1
            peak = max(peak, running)
        elif re.search(rf"Finished jobid: \d+ \(Rule: {rule}\)", line):
            running -= 1
    return peak


@pytest.mark.workflow
@pytest.mark.parametrize("gpus, expected_peak", [(None, 1), (2, 2)])  # None: the profile's own gpu=1
def test_workstation_profile_caps_concurrent_gpu_jobs(tmp_path, gpus, expected_peak):
    config = {**SMALL, "models": {"sim": {"backend": "simulate", "resources": {"gpus": 1}}}}
    write_config(tmp_path, config)
    env = {"CUDA_VISIBLE_DEVICES": "0,1", "PR_GPU_LOCK_DIR": str(tmp_path / "gpu-locks")}
    more = ["--resources", f"gpu={gpus}"] if gpus else []
    # the target first: --configfile and --resources take every word after them
    result = run_snakemake(tmp_path, "scores", "--profile", str(WORKSTATION_PROFILE), "--configfile",
                           str(tmp_path / "config.yaml"), "--cores", "2", *more, env=env)  # scoring is what this is about
    # (a simulated model is a CPU step, run by the workers; the cap is Snakemake's, whatever runs the job)
    assert peak_concurrent(result.stdout + result.stderr, "score_family") == expected_peak


@pytest.mark.workflow
def test_a_gpu_step_runs_the_adapter_in_a_process_of_its_own_that_claims_its_gpus(tmp_path, tiny_models):
    # an hf model asking for a GPU: its scoring jobs are GPU steps (rule score_family_gpu, the adapter
    # script), each claims a GPU of the two before CUDA loads (none here: torch then runs on the CPU)
    config = {**SMALL, "prompts": ["A", "B"],
              "datasets": {"synth": {"adapter": "synthetic", "image_size": 32, "splits": {"train": {"n": 4}, "test": {"n": 4}}}},
              "models": {"gpu_model": {"backend": "hf", "path": str(tiny_models["qwen2_vl"]), "resources": {"gpus": 1}}}}
    write_config(tmp_path, config)
    env = {"CUDA_VISIBLE_DEVICES": "0,1", "PR_GPU_LOCK_DIR": str(tmp_path / "gpu-locks")}
    result = run_snakemake(tmp_path, "scores", "--profile", str(WORKSTATION_PROFILE), "--configfile",
                           str(tmp_path / "config.yaml"), "--cores", "2", "--resources", "gpu=2", env=env)
    assert re.findall(r"^(?:local)?rule (score_family\w*):$", result.stdout + result.stderr, flags=re.M) == ["score_family_gpu"] * 2
    usage = [read_usage(tmp_path / f"results/benchmarks/scores/gpu_model/synth/{f}.tsv") for f in "AB"]
    assert [u["runner"] for u in usage] == ["script"] * 2 and usage[0]["pid"] != usage[1]["pid"]
    assert all(u["job_in_process"] == "1" and float(u["max_rss_mb"]) > 200 for u in usage)  # torch's, its own
    logs = [(tmp_path / f"results/logs/scores/gpu_model/synth/{f}.log").read_text() for f in "AB"]
    used = [re.search(r"using GPU\(s\) (\S+)", text).group(1) for text in logs]
    assert set(used) <= {"0", "1"}


# --- claim_gpus -----------------------------------------------------------------------------------


def test_claim_gpus_does_nothing_without_gpus_or_under_slurm(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert claim_gpus(0, tmp_path) is None
    monkeypatch.setenv("SLURM_JOB_ID", "17")
    assert claim_gpus(1, tmp_path) is None
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"


def test_claim_gpus_makes_do_with_the_gpus_there_are(monkeypatch, tmp_path):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert claim_gpus(1, tmp_path) is None  # no GPU: the backend runs on the CPU
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")
    assert claim_gpus(2, tmp_path) == ["7"] and os.environ["CUDA_VISIBLE_DEVICES"] == "7"


CLAIM = """
import os, sys, time
from prompt_reliability.base.gpus import claim_gpus
claim_gpus(int(sys.argv[1]), sys.argv[2], poll_seconds=0.05)
print(os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
time.sleep(float(sys.argv[3]))
"""


def test_concurrent_claims_get_disjoint_gpus_and_wait_for_free_ones(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SLURM_JOB_ID"}
    env.update(CUDA_VISIBLE_DEVICES="4,5,6", PYTHONPATH=str(REPO / "src"))

    def start(n, hold):
        return subprocess.Popen([sys.executable, "-c", CLAIM, str(n), str(tmp_path), str(hold)], env=env,
                                stdout=subprocess.PIPE, text=True)

    first = start(2, 3.0)
    assert first.stdout.readline().strip() in ("4,5",)
    second = start(1, 0.0)
    assert second.stdout.readline().strip() == "6"
    second.wait(timeout=30)
    third = start(2, 0.0)  # needs 2: waits until `first` exits (killed: the kernel frees its locks)
    first.kill()
    first.wait(timeout=30)
    assert sorted(third.stdout.readline().strip().split(",")) == ["4", "5"]
    assert third.wait(timeout=30) == 0


# --- the paper config ----------------------------------------------------------------------------

PAPER = REPO / "config/paper.yaml"


def test_paper_config_is_valid_and_sizes_every_model():
    config = yaml.safe_load(PAPER.read_text())
    validate(config, SCHEMA)
    check_config(config)
    models = config["models"]
    assert len(models) == 7 and all(m["backend"] == "hf" and m["dtype"] == "bfloat16" for m in models.values())
    assert {m["path"] for m in models.values()} == {
        "Qwen/Qwen3-VL-4B-Instruct", "Qwen/Qwen3-VL-8B-Instruct", "Qwen/Qwen3-VL-30B-A3B-Instruct",
        "OpenGVLab/InternVL3_5-8B-HF", "google/gemma-3-12b-it", "openbmb/MiniCPM-V-4.6",
        "meta-llama/Llama-3.2-11B-Vision-Instruct",
    }
    # MiniCPM-V-4.5 (remote code, no image-text-to-text class) cannot load: the native 4.6 stands in (README)
    assert not [n for n, m in models.items() if m.get("trust_remote_code")]
    for name, model in models.items():
        res = scoring_resources(model)
        assert res["gpu"] >= 1 and res["mem_mb"] >= 32000 and res["runtime"] >= 120, name
    # larger models get at least the resources of smaller ones
    assert scoring_resources(models["qwen3vl_30b_a3b"])["gpu"] >= 2
    assert config["lock"] == {"dataset": "unsafebench", "split": "train"}
    assert [(e["dataset"], e["split"]) for e in config["evaluate"]] == [("unsafebench", "test"), ("holisafe", "test")]


def test_paper_dry_run_on_the_slurm_profile_lists_scoring_jobs_with_gpus(tmp_path):
    result = run_snakemake(tmp_path, "-n", "--profile", str(SLURM_PROFILE), "--configfile", str(PAPER), check=False)
    output = result.stdout + result.stderr
    if result.returncode != 0 and "MissingInputException" in output and "results/scores/" in output:
        pytest.skip("no scoring rule for backend 'hf' in this checkout yet (issue 3)")
    assert result.returncode == 0, output[-4000:]
    config = validate(yaml.safe_load(PAPER.read_text()))
    scoring = [j for j in job_blocks(output) if j.get("output", "").startswith("results/scores/")]
    assert len(scoring) == 7 * 2 * 3
    for job in scoring:
        model = re.search(r"model=(\w+)", job["wildcards"]).group(1)
        res = resources_of(job)
        want = scoring_resources(config["models"][model])
        assert (int(res["gpu"]), int(res["mem_mb"]), int(res["runtime"]), int(res["cpus_per_task"])) == (
            want["gpu"], want["mem_mb"], want["runtime"], want["cpus_per_task"]), job
    # What `config/paper.yaml` submits: the 42 scoring jobs, one job per evaluation pair (its
    # analyses, grouped; their blocks are indented in the dry run), one bootstrap per evaluation
    # split (it resamples the split once for every model) and the two dataset manifests; everything
    # else runs on the submit host.
    groups = re.findall(r"Group job (pair_\w+) \(jobs in", output)
    assert sorted(groups) == sorted(f"pair_{m}_{e['dataset']}_{e['split']}" for m in config["models"] for e in config["evaluate"])
    ungrouped = job_blocks("\n".join(line for line in output.splitlines()  # without the indented grouped jobs
                                     if not (line.startswith(" " * 8) or re.match(r" {4}(\[|(local)?(rule|checkpoint) )", line))))
    submitted = [j["rule"] for j in ungrouped if j["rule"] not in local_rules() and not j["output"].startswith("results/tables/")]
    assert sorted(set(submitted)) == ["bootstrap", "dataset_manifest", "score_family_gpu"], sorted(set(submitted))
    assert submitted.count("bootstrap") == len(config["evaluate"])
    assert len(submitted) + len(groups) == 42 + 2 + 2 + 14


def local_rules() -> set[str]:
    """Rules that run on the submit host: ``localrules:`` lists and ``localrule: True`` bodies.

    The rules tables.smk generates (every one writes under results/tables/) are all local: checked here.
    """
    names: set[str] = set()
    for path in [REPO / "Snakefile", *sorted((REPO / "workflow/rules").glob("*.smk"))]:
        text = path.read_text()
        for block in re.findall(r"^localrules:\n((?:    \w+,?\n)+)", text, flags=re.M):
            names |= set(re.findall(r"\w+", block))
        for name, body in re.findall(r"^(?:rule|checkpoint) (\w+):\n((?:(?:    .*)?\n)+)", text, flags=re.M):
            if re.search(r"^    localrule: True$", body, flags=re.M):
                names.add(name)
    tables = (REPO / "workflow/rules/tables.smk").read_text()
    assert len(re.findall(r"^\s*rule( \w+)?:$", tables, flags=re.M)) == tables.count("localrule: True")
    return names
