"""Benchmark: VSCBench at its own scale, simulated (config/vscbench_sim.yaml), from nothing.

Runs `snakemake --cores N` on the config in an empty scratch directory `--runs` times and prints the
median wall time, the five slowest rules of the last run (summed from each job's own usage file,
results/benchmarks/), the rows the simulation wrote and the VSCBench claims' verdicts.

    .venv/bin/python benchmarks/vscbench_sim.py [--runs 3] [--cores 2] [--keep DIR]

Target (issue 28, 2-core machine): <= 60 s from nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def run_once(workdir: Path, cores: int) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "MPLCONFIGDIR": str(workdir / ".mpl")}
    cmd = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--configfile",
           str(REPO / "config/vscbench_sim.yaml"), "--cores", str(cores), "--quiet"]
    started = time.perf_counter()
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"snakemake failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return time.perf_counter() - started


def slowest_rules(workdir: Path, top: int = 5) -> list[tuple[str, float]]:
    per_kind: dict[str, float] = defaultdict(float)
    for usage in (workdir / "results/benchmarks").rglob("*.tsv"):
        seconds = pl.read_csv(usage, separator="\t")["s"][0]
        per_kind[str(usage.relative_to(workdir / "results/benchmarks").parent)] += float(seconds)
    return sorted(per_kind.items(), key=lambda kv: -kv[1])[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="run in this directory (emptied first) and keep it")
    args = parser.parse_args()
    walls = []
    for _ in range(args.runs):
        workdir = args.keep or Path(tempfile.mkdtemp(prefix="vscbench-sim-"))
        if workdir.exists():
            subprocess.run(["rm", "-rf", str(workdir)], check=True)
        workdir.mkdir(parents=True)
        walls.append(run_once(workdir, args.cores))
        print(f"run {len(walls)}: {walls[-1]:.1f} s")
    print(f"median wall from nothing, {args.cores} cores: {statistics.median(walls):.1f} s (target <= 60 s; "
          f"load average {os.getloadavg()[0]:.1f})")
    print("slowest job kinds (summed job seconds):", ", ".join(f"{k} {s:.1f} s" for k, s in slowest_rules(workdir)))
    sra = pl.read_parquet(workdir / "results/tables/vscbench_sra.parquet")
    print(f"vscbench_sra: {sra.height} rows over {sra['model'].n_unique()} models")
    claims = pl.read_parquet(workdir / "results/tables/claims.parquet").filter(pl.col("paper_name") == "VSCBench")
    for row in claims.iter_rows(named=True):
        print(f"  {row['id']}: {row['this_run']}/{row['pairs']} vs paper {row['paper']} -> {row['verdict']}")


if __name__ == "__main__":
    main()
