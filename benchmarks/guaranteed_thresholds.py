"""Benchmark: the guaranteed thresholds' coverage, proved by simulation (issue 24, item 4).

A simulator with a closed-form truth: unsafe logits ~ N(+mu, sd), safe logits ~ N(-mu, sd), score =
sigmoid(logit), so a threshold t has true recall 1 - Phi((logit t - mu) / sd) and true FPR
1 - Phi((logit t + mu) / sd). Each of --resplits seeded lock samples (--unsafe and --safe samples)
fixes, per target, the point-estimate threshold (analysis.operating_points.recall_threshold /
fpr_threshold) and the guaranteed one (guaranteed_*_threshold at --delta); the benchmark prints, per
target and kind, the share of lock samples whose threshold meets the target in truth (the guarantee:
>= 1 - delta), and the mean true cost (FPR for recall targets, recall for FPR targets).

    PYTHONPATH=src python benchmarks/guaranteed_thresholds.py [--resplits 2000] [--delta 0.05]

Target: the guaranteed share >= 1 - delta for every target; the point estimate's about 1/2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import norm

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from prompt_reliability.analysis import operating_points as op  # noqa: E402


def true_rates(threshold: float | None, mu: float, sd: float) -> tuple[float, float]:
    """(recall, FPR) of flagging score >= threshold under the simulator; None threshold = nothing flagged."""
    if threshold is None or threshold >= 1.0:
        return 0.0, 0.0
    if threshold <= 0.0:
        return 1.0, 1.0
    z = math.log(threshold / (1 - threshold))
    return float(norm.sf((z - mu) / sd)), float(norm.sf((z + mu) / sd))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resplits", type=int, default=2000)
    parser.add_argument("--unsafe", type=int, default=800, help="unsafe samples per lock split")
    parser.add_argument("--safe", type=int, default=1200, help="safe samples per lock split")
    parser.add_argument("--mu", type=float, default=1.2)
    parser.add_argument("--sd", type=float, default=1.3)
    parser.add_argument("--delta", type=float, default=0.05)
    parser.add_argument("--recall", type=float, nargs="+", default=[0.90, 0.95])
    parser.add_argument("--fpr", type=float, nargs="+", default=[0.05, 0.01])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    started = time.perf_counter()
    y = np.r_[np.ones(args.unsafe, dtype=int), np.zeros(args.safe, dtype=int)]
    targets = [("recall", r) for r in args.recall] + [("fpr", f) for f in args.fpr]
    met = {(t, v, k): [] for t, v in targets for k in ("point", "guaranteed")}
    cost = {key: [] for key in met}
    for resplit in range(args.resplits):
        rng = np.random.default_rng([args.seed, resplit])
        logits = np.r_[rng.normal(args.mu, args.sd, args.unsafe), rng.normal(-args.mu, args.sd, args.safe)]
        s = 1 / (1 + np.exp(-logits))
        for target, value in targets:
            if target == "recall":
                chosen = {"point": op.recall_threshold(y, s, value),
                          "guaranteed": op.guaranteed_recall_threshold(y, s, value, args.delta)}
            else:
                chosen = {"point": op.fpr_threshold(y, s, value),
                          "guaranteed": op.guaranteed_fpr_threshold(y, s, value, args.delta)}
            for kind, threshold in chosen.items():
                recall, fpr = true_rates(threshold, args.mu, args.sd)
                met[target, value, kind].append(recall >= value if target == "recall" else fpr <= value)
                cost[target, value, kind].append(fpr if target == "recall" else recall)
    print(f"{args.resplits} seeded lock samples of {args.unsafe} unsafe + {args.safe} safe; delta = {args.delta:g} "
          f"(guarantee: share >= {1 - args.delta:g}); truth in closed form")
    print(f"{'target':<14}{'kind':<12}{'share meeting target':>22}{'mean true cost':>30}")
    results = []
    ok = True
    for (target, value, kind), hits in met.items():
        share = float(np.mean(hits))
        mean_cost = float(np.mean(cost[target, value, kind]))
        label = "FPR" if target == "recall" else "recall"
        print(f"{target + ' ' + format(value, 'g'):<14}{kind:<12}{share:>22.4f}{label + ' ' + format(mean_cost, '.4f'):>30}")
        results.append({"target": target, "value": value, "kind": kind, "share_meeting": share, "mean_cost": mean_cost})
        if kind == "guaranteed":
            ok &= share >= 1 - args.delta
    print(f"guarantee holds on every target: {ok} ({time.perf_counter() - started:.1f} s)")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results,
                                         "guarantee_holds": ok}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
