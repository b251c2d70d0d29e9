"""Slow, obviously-correct references written from the definitions, one per metric (used by the tests and
the benchmarks): ECE and MCE one bin at a time, the bootstrap one resample at a time (sharing nothing with
the kernel but the resample indices), Boschloo's test, the hallucination metrics, Platt scaling by Newton's
method.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def weighted_nll(y: np.ndarray, p: np.ndarray, w: np.ndarray, eps: float = 1e-12) -> float:
    p = np.clip(p, eps, 1.0 - eps)
    return float(np.sum(w * -(y * np.log(p) + (1 - y) * np.log(1 - p))) / np.sum(w))


def calibration_bins(p: np.ndarray, n_bins: int, strategy: str = "width") -> list[list[int]]:
    """Sample indices of each bin, from the definitions: ``width`` = ``[b / M, (b + 1) / M)`` (p = 1 in
    the last bin); ``mass`` = M equal-count runs of the samples ordered by score (ties by index)."""
    n = len(p)
    if strategy == "width":
        return [[i for i in range(n) if b / n_bins <= p[i] < (b + 1) / n_bins or (b == n_bins - 1 and p[i] == 1.0)]
                for b in range(n_bins)]
    order = sorted(range(n), key=lambda i: (p[i], i))
    return [[int(i) for i in part] for part in np.array_split(order, n_bins)]


def ece(y: np.ndarray, p: np.ndarray, n_bins: int = 15, strategy: str = "width", w: np.ndarray | None = None) -> float:
    """The one ECE reference of the tests: ``sum_b W_b / W * |mean_w(y in b) - mean_w(p in b)|``, one bin at a
    time (``w``: sample weights, default 1)."""
    w = np.ones(len(p)) if w is None else np.asarray(w, dtype=np.float64)
    total = float(np.sum(w))
    value = 0.0
    for members in calibration_bins(p, n_bins, strategy):
        if members:
            wb = w[members]
            value += np.sum(wb) / total * abs(np.average(y[members], weights=wb) - np.average(p[members], weights=wb))
    return float(value)


def mce(y: np.ndarray, p: np.ndarray, n_bins: int = 15) -> float:
    """Maximum over non-empty equal-width bins of ``|mean(y in b) - mean(p in b)|``."""
    return max(abs(np.mean(y[m]) - np.mean(p[m])) for m in calibration_bins(p, n_bins) if m)


def platt_newton(x: np.ndarray, y: np.ndarray, max_iter: int = 200) -> tuple[float, float]:
    """(a, b) of the unregularised logistic regression ``P(y=1) = sigmoid(a * x + b)`` by Newton's method on the
    score equations ``mean((q - y) x) = mean(q - y) = 0``, from (1, 0): each step solves ``H step = gradient``
    and is halved while it would grow the gradient's largest entry (the loss is not compared: near the optimum
    its changes fall below its rounding), until a step moves (a, b) by less than 1e-15 relative."""
    design = np.column_stack([np.asarray(x, dtype=np.float64), np.ones(len(y))])
    y = np.asarray(y, dtype=np.float64)
    beta = np.array([1.0, 0.0])

    def gradient(b: np.ndarray) -> np.ndarray:
        return design.T @ (1.0 / (1.0 + np.exp(-(design @ b))) - y) / len(y)

    for _ in range(max_iter):
        q = 1.0 / (1.0 + np.exp(-(design @ beta)))
        hessian = (design * (q * (1.0 - q))[:, None]).T @ design / len(y)
        step = np.linalg.solve(hessian, gradient(beta))
        scale, size = 1.0, np.abs(gradient(beta)).max()
        while np.abs(gradient(beta - scale * step)).max() > size and scale > 1e-6:
            scale /= 2.0
        beta = beta - scale * step
        if np.abs(scale * step).max() <= 1e-15 * (1.0 + np.abs(beta).max()):
            break
    return float(beta[0]), float(beta[1])


def brute_force_metrics(y: np.ndarray, scores: np.ndarray, weights: np.ndarray, index_chunks: Iterable[np.ndarray],
                        n_bins: int = 15, eps: float = 1e-12) -> np.ndarray:
    """(B x P x S x 2) [NLL, ECE] of every score under every weighting on every resample, by loops."""
    y = np.asarray(y, dtype=np.float64)
    out = []
    for chunk in index_chunks:
        for idx in chunk:
            idx = idx.astype(np.int64)
            out.append([[[weighted_nll(y[idx], p[idx], w[idx], eps), ece(y[idx], p[idx], n_bins, w=w[idx])]
                         for p in scores] for w in weights])
    return np.array(out)


def boschloo_below(k: int, n: int, paper_k: int, paper_n: int, grid: int = 4001) -> float:
    """One-sided Boschloo p-value from its definition: the statistic is Fisher's one-sided p-value
    P(X <= x1 | margins) of the table (this run x1 of n, the paper x2 of N); the p-value is the
    supremum over the common success rate pi of P(statistic <= observed), on a fine grid of pi."""
    from math import comb

    def fisher_less(x1: int, x2: int) -> float:
        total = x1 + x2
        denominator = comb(n + paper_n, total)
        return sum(comb(n, i) * comb(paper_n, total - i) for i in range(0, x1 + 1)
                   if 0 <= total - i <= paper_n) / denominator

    observed = fisher_less(k, paper_k)
    extreme = [(x1, x2) for x1 in range(n + 1) for x2 in range(paper_n + 1)
               if fisher_less(x1, x2) <= observed * (1 + 1e-9)]
    best = 0.0
    for pi in np.linspace(0.0, 1.0, grid):
        mass = sum(comb(n, x1) * pi ** x1 * (1 - pi) ** (n - x1) * comb(paper_n, x2) * pi ** x2 * (1 - pi) ** (paper_n - x2)
                   for x1, x2 in extreme)
        best = max(best, mass)
    return float(best)
# --- object hallucination (UnSAF Appendix G), from the benchmarks' definitions --------------------


def pope_reference(labels, replies) -> dict[str, float]:
    """POPE's evaluate.py reading of each reply, then the confusion counts one probe at a time."""
    tp = fp = fn = tn = 0
    for label, reply in zip(labels, replies):
        text = reply.split(".")[0] if "." in reply else reply
        words = text.replace(",", "").split(" ")
        yes = not any(w in ("No", "no", "not") for w in words)
        if yes and label:
            tp += 1
        elif yes:
            fp += 1
        elif label:
            fn += 1
        else:
            tn += 1
    precision = tp / (tp + fp)
    recall = tp / (tp + fn)
    return {"pope_accuracy": (tp + tn) / len(labels), "pope_precision": precision, "pope_recall": recall,
            "pope_f1": 2 * precision * recall / (precision + recall), "pope_yes_ratio": (tp + fp) / len(labels)}


def chair_reference(captions, truths, objects) -> dict[str, float]:
    """CHAIR_i / CHAIR_s / mean CHAIR F1 by scanning each caption's words for each object name."""
    mentioned = hallucinated = bad_captions = 0
    f1s = []
    for caption, truth in zip(captions, truths):
        words = caption.lower().replace(",", " ").replace(".", " ").split()
        said = []
        i = 0
        while i < len(words):
            hit = None
            for name in sorted(objects, key=len, reverse=True):
                parts = name.split()
                window = words[i:i + len(parts)]
                if len(window) == len(parts) and all(w in (p, p + "s", p + "es") for w, p in zip(window, parts)):
                    hit = name
                    break
            if hit:
                said.append(hit)
                i += len(hit.split())
            else:
                i += 1
        wrong = [o for o in said if o not in truth]
        mentioned += len(said)
        hallucinated += len(wrong)
        bad_captions += bool(wrong)
        g, t = set(said), set(truth)
        p = len(g & t) / len(g) if g else 0.0
        r = len(g & t) / len(t)
        f1s.append(2 * p * r / (p + r) if p + r else 0.0)
    return {"chair_i": hallucinated / mentioned, "chair_s": bad_captions / len(captions),
            "chair_f1": sum(f1s) / len(f1s)}


def prr(error, confidence) -> float:
    """LM-Polygraph's prediction rejection ratio (quality = 1 - error) by enumeration: the rejection area is
    averaged over every order of the tied confidences (itertools.permutations; small inputs only), the random
    area over every order of all samples, the oracle is every correct sample first."""
    from itertools import permutations

    quality = [1.0 - e for e in error]
    n = len(quality)

    def area(order):
        total, accepted = 0.0, 0.0
        for k, i in enumerate(order, start=1):
            accepted += quality[i]
            total += accepted / k
        return total / n

    def expected_area(groups):
        orders = [[]]
        for group in groups:  # every order within each group, groups in sequence
            orders = [o + list(p) for o in orders for p in permutations(group)]
        return sum(area(o) for o in orders) / len(orders)

    levels = sorted(set(confidence), reverse=True)
    signal = expected_area([[i for i in range(n) if confidence[i] == c] for c in levels])
    random = expected_area([list(range(n))])
    oracle = area(sorted(range(n), key=lambda i: -quality[i]))
    return float("nan") if oracle == random else (signal - random) / (oracle - random)


def multiple_choice_accuracy(question_ids, labels, scores) -> float:
    """Multiple-choice accuracy by enumeration: each question's options are visited in every order
    (itertools.permutations), the first option with the highest score in that order is the answer, and the
    question's credit is the share of orders whose answer is correct (random tie-breaking, in expectation)."""
    from itertools import permutations

    questions: dict = {}
    for q, y, p in zip(question_ids, labels, scores):
        questions.setdefault(q, []).append((float(p), int(y)))
    credits = []
    for options in questions.values():
        orders = list(permutations(options))
        hits = 0
        for order in orders:
            best = max(p for p, _ in order)
            hits += next(y for p, y in order if p == best)
        credits.append(hits / len(orders))
    return sum(credits) / len(credits)
