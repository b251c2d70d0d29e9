"""Smooth ECE (Błasiok & Nakkiran 2023, "Smooth ECE: principled reliability diagrams via kernel
smoothing"): the point estimate and its bootstrap resamples.

:func:`smece` is ``relplot.smECE`` itself, with the bandwidth sigma* its search picked (relplot
imports scikit-learn, pandas, seaborn and pyplot, ~1.3 s: it is imported here, inside the jobs that
need it). :func:`resampled_smece` gives the smooth ECE of B resamples at a fixed bandwidth, the
point estimate's sigma* (``relplot.smECE_sigma(resample, sigma*)``): re-running relplot's
11-step bandwidth search on every resample would cost ~13 ms each (core-minutes per pair at
10,000 resamples), holding the bandwidth fixed costs one batched convolution. At sigma* the
original sample's value is the point estimate itself (the search's fixed point), so the interval
is centred on it; it leaves out the bandwidth's own sampling variation, an adaptation named in
the bootstrap table (``ci_method``) and the README.

The batched computation follows relplot 1.0.3 step for step: each sample's residual ``p - y`` is
split linearly between the two nearest points of a grid of ``max(2000, round(20 / sigma)) // 2 + 1``
points, the grid is convolved with a Gaussian reflected at 0 and 1, interpolated onto
``max(round(10 / sigma), 200)`` evaluation points and divided by the smoothed density (+ 1e-4).
A resample is a count vector, so its grid sums are one sparse product and the convolution and
interpolation one dense product with a precomputed operator. ``tests/test_smooth_ece.py`` checks it against relplot on resampled data.
"""

from __future__ import annotations

import numpy as np

DENSITY_EPS = 1e-4  # relplot.kernels.BaseKernelMixin.smooth(eps=0.0001)
MESH_POINTS = 200  # relplot.config.smECE_mesh_pts


def smece(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """``(smECE, sigma*)`` of scores ``p`` against labels ``y`` by relplot (NaN, NaN without samples)."""
    if len(p) == 0:
        return float("nan"), float("nan")
    import relplot  # heavy import (module docstring)

    value, sigma = relplot.smECE(np.asarray(p, dtype=np.float64), np.asarray(y, dtype=np.float64), return_width=True)
    return float(value), float(sigma)


def _grid_points(sigma: float) -> int:
    return max(2000, round(20 / sigma)) // 2 + 1


def grid_spread(f: np.ndarray, values: np.ndarray, points: int):
    """The n x points sparse matrix that puts each sample's value on the grid as relplot's
    ``smooth_round_to_grid`` does (split linearly between its two nearest grid points)."""
    from scipy import sparse

    f = np.asarray(f, dtype=np.float64)
    left = (f * (points - 1)).astype(int).clip(0, points - 2)
    right_share = f * (points - 1) - left
    n = len(f)
    rows = np.r_[np.arange(n), np.arange(n)]
    return sparse.csr_matrix((np.r_[(1 - right_share) * values, right_share * values], (rows, np.r_[left, left + 1])),
                             shape=(n, points))


def _reflected_operator(points: int, sigma: float) -> np.ndarray:
    """The (points x points) matrix of relplot's ``ReflectedGaussianKernel.convolve``: a grid row ``g``
    smooths to ``g @ operator``. Row j is the convolution of a unit at grid point j, i.e. the kernel
    placed at j's (up to three) positions in the reflected grid, built directly: convolving the
    identity by FFT took 0.5-0.8 s at 1,001 points, this takes ~20 ms. Equal to relplot's convolve
    row by row to rounding (tests/test_smooth_ece.py)."""
    t = np.linspace(0, 1, points)
    kernel = np.exp(-(t - 0.5) * (t - 0.5) / (2 * sigma ** 2)) / (np.sqrt(2 * np.pi) * sigma)
    start = points - 1 + points // 2
    j = np.arange(points)[:, None]
    out = np.arange(points)[None, :] + start  # index into the full convolution
    operator = np.zeros((points, points))
    # grid point j sits in the extended grid at P-1-j (left mirror, j >= 1), P-1+j, and 3P-3-j (right mirror, j <= P-2)
    for place, present in ((points - 1 - j, j >= 1), (points - 1 + j, j >= 0), (3 * points - 3 - j, j <= points - 2)):
        offset = out - place
        inside = present & (offset >= 0) & (offset < points)
        operator += np.where(inside, kernel[np.clip(offset, 0, points - 1)], 0.0)
    return operator


def _interpolate(t: np.ndarray, smoothed: np.ndarray) -> np.ndarray:
    points = smoothed.shape[1]
    left = (t * (points - 1)).astype(int).clip(0, points - 2)
    share = (t - left / (points - 1)) * (points - 1)
    return smoothed[:, left] * (1 - share) + smoothed[:, left + 1] * share


class FixedBandwidth:
    """Smooth ECE at bandwidth ``sigma`` of resamples of one score, given as count matrices (B x n).

    Everything after the grid sums is linear, so it is one (points x evaluation points) operator:
    the reflected convolution followed by the interpolation, built once by applying both to the
    identity; a chunk of resamples then costs a sparse product and a dense one.
    """

    def __init__(self, y: np.ndarray, p: np.ndarray, sigma: float):
        p = np.asarray(p, dtype=np.float64)
        points = _grid_points(sigma)
        t = np.linspace(0, 1, max(round(10 / sigma), MESH_POINTS))
        self.operator = _interpolate(t, _reflected_operator(points, sigma))  # points x len(t)
        self.residual_spread = grid_spread(p, p - np.asarray(y, dtype=np.float64), points).T.tocsr()
        # relplot's sum_t |R_t / D_t| D_t is sum_t |R_t| (to rounding); sum_t D_t is linear in the counts
        self.density_total = np.asarray(grid_spread(p, np.ones_like(p), points) @ self.operator.sum(axis=1)).ravel()
        self.eps_total = DENSITY_EPS * len(t)

    def __call__(self, counts: np.ndarray) -> np.ndarray:
        counts = np.asarray(counts, dtype=np.float64)
        residual = (self.residual_spread @ counts.T).T @ self.operator
        return np.abs(residual).sum(axis=1) / (counts @ self.density_total + self.eps_total)


def resampled_smece(y: np.ndarray, p: np.ndarray, sigma: float, counts: np.ndarray) -> np.ndarray:
    """Smooth ECE at bandwidth ``sigma`` of each resample (rows of the B x n count matrix ``counts``)."""
    return FixedBandwidth(y, p, sigma)(counts)


PLOT_MESH_POINTS = 200  # relplot.config.plot_mesh_pts


def smoothed_curve(y: np.ndarray, p: np.ndarray, *, n_resamples: int = 200, seed: int = 0,
                   confidence: float = 0.95) -> dict[str, np.ndarray | float]:
    """relplot's smoothed reliability curve and its bootstrap band, for a reliability diagram.

    ``mesh`` (200 points on [0, 1]), ``mu`` = relplot's kernel smoother of the labels at the smECE
    bandwidth sigma* (``KernelSmoother(ReflectedGaussianKernel(sigma*))``, what
    ``relplot.prepare_rel_diagram`` draws without its band), ``density`` = the smoothed sample
    count (for shading where the curve rests on few samples), and ``lower`` / ``upper`` = the
    percentile band of the same smoother over ``n_resamples`` seeded resamples (relplot bags 200
    unseeded scikit-learn refits, ~0.8 s a curve; here one batched product).
    """
    from prompt_reliability.analysis.resampling import resample_counts, resample_indices

    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    value, sigma = smece(y, p)
    points = _grid_points(sigma)
    mesh = np.linspace(0, 1, PLOT_MESH_POINTS)
    operator = _interpolate(mesh, _reflected_operator(points, sigma))
    label_spread = grid_spread(p, y, points).T.tocsr()
    count_spread = grid_spread(p, np.ones_like(p), points).T.tocsr()

    def curve(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        labels = (label_spread @ counts.T).T @ operator
        density = (count_spread @ counts.T).T @ operator
        return labels / (density + DENSITY_EPS), density

    mu, density = curve(np.ones((1, len(p))))
    counts = np.concatenate([resample_counts(i) for i in resample_indices(len(p), n_resamples, seed, 256)])
    tail = 100.0 * (1.0 - confidence) / 2.0
    lower, upper = np.percentile(curve(counts)[0], [tail, 100.0 - tail], axis=0)
    return {"mesh": mesh, "mu": mu[0], "lower": lower, "upper": upper, "density": density[0] / len(p),
            "smece": value, "sigma": sigma}
