"""Benchmark: bootstrap CI widths, independent vs clustered resampling (issue 24, item 3).

Reads a finished run of config/safety_calibration.yaml (its look-alike pairs carry `pair_id`; its
typography set shares images between queries), and for every model x evaluation pair recomputes the
selected - mean NLL / ECE bootstrap (native prevalence) with each resampling unit: `sample`
(independent), `pair_id` and `image`. Prints each CI's width and the clustered / independent ratio:
look-alike pairs are not independent samples, so the clustered interval is the honest one.

    snakemake --configfile config/safety_calibration.yaml --cores all -d results-safety
    PYTHONPATH=src python benchmarks/clustered_bootstrap.py --results results-safety/results
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from prompt_reliability.analysis import bootstrap as bs  # noqa: E402
from prompt_reliability.analysis.lockfile import locked_scores, read_lock  # noqa: E402
from prompt_reliability.data.matrix import split_rows  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, required=True, help="the run's results/ folder")
    parser.add_argument("--split", default="test")
    parser.add_argument("--resamples", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    started = time.perf_counter()
    rows_out = []
    for matrix_path in sorted((args.results / "matrix").glob("*/*.parquet")):
        model, dataset = matrix_path.parent.name, matrix_path.stem
        lock_path, manifest_path = args.results / "lock" / f"{model}.json", args.results / "data" / f"{dataset}.parquet"
        if not lock_path.exists() or not manifest_path.exists():
            continue
        full = pl.read_parquet(matrix_path)
        if args.split not in set(full["split"]):
            continue
        rows = split_rows(full, args.split, str(matrix_path))
        scores = locked_scores(rows, read_lock(str(lock_path), full))
        manifest = pl.read_parquet(manifest_path)
        y = rows["label"].to_numpy()
        widths = {}
        for unit in bs.UNITS:
            clusters = bs.sample_clusters(rows, manifest, unit, str(manifest_path))
            table = bs.bootstrap_deltas(y, scores["selected"], scores["mean"], ["native"], n_resamples=args.resamples,
                                        seed=args.seed, clusters=clusters, unit=unit)
            for row in table.iter_rows(named=True):
                widths[unit, row["metric"]] = (row["ci_high"] - row["ci_low"], row["clusters"])
        for metric in bs.METRICS:
            independent = widths["sample", metric][0]
            rows_out.append({"model": model, "dataset": dataset, "n": len(y), "metric": metric,
                             "width_sample": independent,
                             **{f"width_{u}": widths[u, metric][0] for u in ("pair_id", "image")},
                             **{f"clusters_{u}": widths[u, metric][1] for u in ("pair_id", "image")},
                             **{f"ratio_{u}": widths[u, metric][0] / independent for u in ("pair_id", "image")}})
    if not rows_out:
        print(f"no model x dataset with split {args.split!r} under {args.results}")
        return 1
    frame = pl.DataFrame(rows_out)
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=200, float_precision=4):
        print(f"95% percentile CI width of selected - mean (native prevalence), {args.resamples} resamples")
        print(frame)
        print(frame.group_by("metric", maintain_order=True).agg(pl.col("ratio_pair_id").mean(), pl.col("ratio_image").mean()))
    print(f"{time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
