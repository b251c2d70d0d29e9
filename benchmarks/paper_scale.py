"""Benchmark: the whole workflow at the paper's scale (config/paper_sim.yaml), scoring and analyses timed apart.

Runs `snakemake --cores N` in a scratch directory, twice per repetition: first the `scores` target
plus the score matrices (the scoring phase: manifests, 42 simulated scoring jobs, 14 matrices), then
everything else (the analysis phase: locks, per-pair analyses, tables, figures). Prints per phase the
wall time, the number of jobs, the summed job time and the five slowest rules (from each job's own
usage file, results/benchmarks/), and the peak RSS of the largest process. `--scale 4` / `--scale 16` multiply every
split size of the config. Medians over `--runs` repetitions (each from an empty directory).

    .venv/bin/python benchmarks/paper_scale.py [--runs 3] [--scale 1] [--cores 2] [--keep DIR] [--repo CHECKOUT]

``--repo`` runs another checkout's Snakefile (e.g. an older commit, for before/after figures).

Targets (issue 11, 2-core machine): analyses from existing caches <= 60 s; from nothing <= 90 s;
peak RSS of any job <= 2 GiB.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO  # the checkout whose Snakefile runs (--repo)
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def scaled_config(scale: int) -> dict:
    config = yaml.safe_load((WORKFLOW / "config/paper_sim.yaml").read_text())
    for dataset in config["datasets"].values():
        for split in dataset["splits"].values():
            split["n"] *= scale
    return config


def run_snakemake(workdir: Path, cores: int, targets: list[str]) -> tuple[float, int]:
    """Run Snakemake on ``targets`` (default target when empty); (wall seconds, peak RSS in MiB of the
    largest process this benchmark has run so far, Snakemake and its jobs included)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "MPLCONFIGDIR": str(workdir / ".mpl")}
    cmd = [str(SNAKEMAKE), *targets, "-s", str(WORKFLOW / "Snakefile"), "-d", str(workdir), "--configfile",
           str(workdir / "config.yaml"), "--cores", str(cores), "--quiet"]
    started = time.perf_counter()
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode:
        sys.exit(f"snakemake failed ({' '.join(cmd)}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024


def job_times(workdir: Path, since: float) -> dict[str, list[float]]:
    """Seconds of every job whose benchmark file was written after ``since``, by rule folder."""
    times: dict[str, list[float]] = defaultdict(list)
    for path in (workdir / "results" / "benchmarks").rglob("*.tsv"):
        if path.stat().st_mtime < since:
            continue
        rule = path.relative_to(workdir / "results" / "benchmarks").parts[0]
        if rule == "figures":
            rule = "figures/" + path.relative_to(workdir / "results" / "benchmarks").parts[1]
        seconds = float(path.read_text().splitlines()[1].split("\t")[0])
        times[rule].append(seconds)
    return times


def matrix_targets(config: dict) -> list[str]:
    datasets = list(dict.fromkeys([config["lock"]["dataset"], *(e["dataset"] for e in config["evaluate"])]))
    return [f"results/matrix/{m}/{d}.parquet" for m in config["models"] for d in datasets]


def one_run(scale: int, cores: int, keep: Path | None) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="paper_scale-")) if keep is None else keep
    if keep is not None and workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    config = scaled_config(scale)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    phases = {}
    for phase, targets in (("scoring", ["scores", *matrix_targets(config)]), ("analysis", [])):
        since = time.time() - 1
        wall, peak = run_snakemake(workdir, cores, targets)
        times = job_times(workdir, since)
        phases[phase] = {"wall": wall, "peak_mib": peak, "jobs": sum(map(len, times.values())),
                         "job_seconds": sum(map(sum, times.values())),
                         "slowest": sorted(((sum(v), len(v), k) for k, v in times.items()), reverse=True)[:5]}
    if keep is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="run the last repetition in this directory and keep it")
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout whose Snakefile runs (default: this one)")
    args = parser.parse_args()
    global WORKFLOW
    WORKFLOW = args.repo.resolve()
    print(f"machine: {platform.node()} {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; {WORKFLOW}: "
          f"config/paper_sim.yaml x{args.scale}, --cores {args.cores}, {args.runs} run(s)")
    runs = [one_run(args.scale, args.cores, args.keep if i == args.runs - 1 else None) for i in range(args.runs)]
    for phase in ("scoring", "analysis"):
        walls = [r[phase]["wall"] for r in runs]
        last = runs[-1][phase]
        print(f"\n{phase} phase: wall {statistics.median(walls):.1f} s median (runs: {', '.join(f'{w:.1f}' for w in walls)}), "
              f"{last['jobs']} jobs, summed job time {last['job_seconds']:.1f} s")
        for seconds, count, rule in last["slowest"]:
            print(f"  {rule:<28} {seconds:7.1f} s over {count} job(s)")
    total = [r["scoring"]["wall"] + r["analysis"]["wall"] for r in runs]
    print(f"\nfrom nothing: {statistics.median(total):.1f} s median; "
          f"peak RSS of the largest process: {max(r[p]['peak_mib'] for r in runs for p in r)} MiB; load now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
