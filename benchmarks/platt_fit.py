"""Benchmark: Platt scaling's fit (analysis.calibration.fit_platt, scipy.optimize) against Newton's method.

On --splits seeded lock splits (30 to --max-n samples, slopes and offsets around the paper's), the
largest difference between the predictions ``sigmoid(a * logit(s) + b)`` of fit_platt and of the
Newton reference of tests/brute_force.py (the score equations solved to a 1e-15 step), and the time
per fit of each (best of --repeats passes over all splits, one thread).

    PYTHONPATH=src python benchmarks/platt_fit.py [--splits 300] [--max-n 3000]

Target (issue 22): predictions within 1e-9 of the Newton fit; the fit costs about a millisecond, two
fits per lock file (the selected and the mean score).
"""

from __future__ import annotations

import argparse
import json
import sys
import timeit
from pathlib import Path

import numpy as np
from scipy.special import expit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests"))  # the Newton reference lives beside the tests that pin it

from brute_force import platt_newton  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from prompt_reliability.analysis.calibration import fit_platt, score_logits  # noqa: E402


def lock_splits(count: int, max_n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    splits = []
    while len(splits) < count:
        n = int(rng.integers(30, max_n))
        z = rng.normal(0.0, 2.0, n)
        y = (rng.uniform(size=n) < expit(rng.normal(0.8, 0.5) * z + rng.normal(0.0, 1.0))).astype(np.int8)
        if len(np.unique(y)) == 2:
            splits.append((expit(z), y))
    return splits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=300)
    parser.add_argument("--max-n", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    splits = lock_splits(args.splits, args.max_n, args.seed)
    worst = 0.0
    for s, y in splits:
        x = score_logits(s)
        fitted = fit_platt(s, y)
        a, b = platt_newton(x, y)
        worst = max(worst, float(np.abs(expit(fitted["a"] * x + fitted["b"]) - expit(a * x + b)).max()))
    with threadpool_limits(1):
        scipy_s = min(timeit.repeat(lambda: [fit_platt(s, y) for s, y in splits], number=1, repeat=args.repeats))
        newton_s = min(timeit.repeat(lambda: [platt_newton(score_logits(s), y) for s, y in splits], number=1,
                                     repeat=args.repeats))
    print(json.dumps({"splits": len(splits), "max_prediction_diff": worst,
                      "fit_platt_ms_per_fit": round(scipy_s / len(splits) * 1e3, 3),
                      "newton_reference_ms_per_fit": round(newton_s / len(splits) * 1e3, 3)}))


if __name__ == "__main__":
    main()
