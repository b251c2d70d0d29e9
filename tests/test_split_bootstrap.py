"""One bootstrap stream for every model of an evaluation split: each model's numbers are those of a
bootstrap of that model alone (the resamples were always shared through the one seed)."""

from __future__ import annotations

import numpy as np

from prompt_reliability.analysis import bootstrap as bs
from prompt_reliability.analysis import metrics, trust
from prompt_reliability.analysis.resampling import cluster_index

PREVALENCES = ["native", 0.1]


def _models(rng, n, k):
    y = rng.integers(0, 2, n)
    return y, [np.clip(0.5 + (0.1 + 0.1 * j) * (y - 0.5) + 0.25 * rng.standard_normal((2, n)), 0.01, 0.99)
               for j in range(k)]


def _alone(y, scores, **kwargs):
    return bs.bootstrap_metrics(y, scores, PREVALENCES, **kwargs)


def test_shared_stream_equals_each_model_alone_bit_for_bit():
    rng = np.random.default_rng(11)
    y, sets = _models(rng, 300, 3)
    settings = dict(n_resamples=90, seed=5, chunk_size=32, smece_resamples=40)
    shared = bs.bootstrap_score_sets(y, sets, PREVALENCES, **settings,
                                     extra=[[(metrics.CountedAUROC(y, s[1]), 50)] for s in sets])
    for scores, drawn in zip(sets, shared):
        alone = _alone(y, scores, **settings, extra=[(metrics.CountedAUROC(y, scores[1]), 50)])
        for field in ("point", "resampled", "smooth_point", "smooth_resampled"):
            assert np.array_equal(getattr(drawn, field), getattr(alone, field)), field
        assert np.array_equal(drawn.extra[0], alone.extra[0])


def test_shared_stream_with_clusters_equals_each_model_alone():
    rng = np.random.default_rng(12)
    y, sets = _models(rng, 200, 2)
    clusters = cluster_index([f"img{i // 3}" for i in range(200)])[0]
    settings = dict(n_resamples=60, seed=2, chunk_size=16, clusters=clusters)
    shared = bs.bootstrap_score_sets(y, sets, PREVALENCES, **settings)
    for scores, drawn in zip(sets, shared):
        assert np.array_equal(drawn.resampled, _alone(y, scores, **settings).resampled)


def test_the_trust_auroc_on_the_bootstrap_resamples_equals_the_standalone_ci():
    """With independent resampling, the first resamples of the bootstrap are the trust table's own."""
    rng = np.random.default_rng(13)
    y, (scores,) = _models(rng, 400, 1)
    drawn = bs.bootstrap_metrics(y, scores, ["native"], n_resamples=300, seed=8, chunk_size=64,
                                 extra=[(metrics.CountedAUROC(y, scores[1]), 200)])
    interval = trust.auroc_interval(metrics.auroc(y, scores[1]), drawn.extra[0])
    assert interval == trust.auroc_with_ci(y, scores[1], n_resamples=200, seed=8, chunk_size=64)
