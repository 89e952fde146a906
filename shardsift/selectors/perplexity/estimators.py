"""Estimators and projections of perplexity-correlation data selection (Thrush et al. 2024).

``X`` is an N x D matrix of bits per byte (N language models, D texts or domains) and ``y`` the N
models' benchmark errors (lower is better). Each estimator returns a D-vector whose order follows
the correlation between a text's loss and the error: a large value means models that have low loss
on that text tend to have low error, so the text is worth training on.

The formulas are those of the paper and of the reference package ``perplexity-correlations`` 0.1.2:

- ``product``:   mean_k y_k x_k                                             (Plan et al. 2016)
- ``sign``:      2/(N(N-1)) sum_{k<g} sign(y_g - y_k) (x_g - x_k)            (Chen & Banerjee 2017)
- ``sign_cdf``:  as ``sign`` with x replaced by its per-text empirical CDF (rank / N)
- ``sign_sign``: 2/(N(N-1)) sum_{k<g} sign(y_g - y_k) sign(x_g - x_k)
- ``spearmanr``: 1 - 6 sum_k (rank(y_k) - rank(x_k))^2 / (N(N^2-1)), per text

The reference loops over the N models in Python and does O(N^2 D) work for the pairwise ones. Here:

- ``sign`` and ``sign_cdf`` are linear in x: the pair sum collapses to ``c @ X`` with
  ``c_k = sum_m sign(y_k - y_m)``, O(N D) in one matrix-vector product.
- ranks are computed once per text (one vectorised argsort down the model axis), shared by
  ``sign_cdf``, ``sign_sign`` and ``spearmanr``.
- ``sign_sign`` (a Kendall-tau numerator) is a numba kernel over the rank matrix with the models
  put in order of y once, so each pair's y sign is known and the inner loop is a branch-free,
  vectorisable count of concordant minus discordant pairs.

Ties: tied values get their average rank, so an estimate never depends on the order in which the
models are listed. The reference breaks ties by sort position (``argsort(argsort(.))``); without
ties both give the same numbers.
"""
from __future__ import annotations

import numba as nb
import numpy as np

ESTIMATORS = ("spearmanr", "sign", "sign_cdf", "sign_sign", "product")
PROJECTIONS = ("linear", "l2")


# -- ranks -----------------------------------------------------------------------------------

@nb.njit(cache=True, nogil=True)
def _rank_columns(values, order):
    """Average ranks (1-based) of each column of ``values`` (N x D) given ``argsort(values, axis=0)``;
    returned transposed, D x N, so that each text's ranks are contiguous."""
    n, d_count = values.shape
    out = np.empty((d_count, n), dtype=np.float64)
    for d in range(d_count):
        i = 0
        while i < n:
            j = i
            v = values[order[i, d], d]
            while j + 1 < n and values[order[j + 1, d], d] == v:
                j += 1
            r = (i + j) / 2.0 + 1.0
            for t in range(i, j + 1):
                out[d, order[t, d]] = r
            i = j + 1
    return out


def rank_columns_T(values: np.ndarray) -> np.ndarray:
    """Average ranks (ties averaged) down each column of an N x D array, as a D x N array.

    numpy's argsort along axis 0 sorts all columns at once (vectorised across columns), then one pass
    assigns ranks; far faster than transposing first or sorting per column in numba.
    """
    values = np.ascontiguousarray(values, dtype=np.float64)
    return _rank_columns(values, np.argsort(values, axis=0))


def rank_vector(values: np.ndarray) -> np.ndarray:
    return rank_columns_T(np.asarray(values, dtype=np.float64)[:, None])[0]


# -- the five estimators ---------------------------------------------------------------------

def _check(X, y):
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X has {X.ndim} dimensions but expected 2")
    if y.ndim != 1:
        raise ValueError(f"y has {y.ndim} dimensions but expected 1")
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows (models) but y has {y.shape[0]} values")
    if X.shape[0] < 2:
        raise ValueError("need at least 2 models")
    return X, y


def _pair_weights(y):
    """c_k = sum_m sign(y_k - y_m): the coefficient of x_k in the pairwise sign sums."""
    return np.sign(y[:, None] - y[None, :]).sum(axis=1)


def product(X, y):
    X, y = _check(X, y)
    return (y @ X) / X.shape[0]


def sign(X, y):
    X, y = _check(X, y)
    n = X.shape[0]
    return 2.0 * (_pair_weights(y) @ X) / (n * (n - 1))


def _x_ranks_T(X):
    """Ranks of each text's N losses: a D x N array (rows are texts)."""
    return rank_columns_T(X)


def sign_cdf(X, y, *, x_ranks_T=None):
    X, y = _check(X, y)
    n = X.shape[0]
    r = _x_ranks_T(X) if x_ranks_T is None else x_ranks_T
    return 2.0 * (r @ _pair_weights(y)) / (n * n * (n - 1))


def spearmanr(X, y, *, x_ranks_T=None):
    X, y = _check(X, y)
    n = X.shape[0]
    r = _x_ranks_T(X) if x_ranks_T is None else x_ranks_T
    ry = rank_vector(y)
    # sum_k (ry_k - r_dk)^2 = sum ry^2 - 2 r.ry + sum_k r_dk^2 ; exact in float64 for integer
    # and half-integer ranks at any realistic N.
    sq = np.einsum("dk,dk->d", r, r) - 2.0 * (r @ ry) + float(ry @ ry)
    return 1.0 - 6.0 * sq / (n * (n * n - 1))


@nb.njit(cache=True, nogil=True)
def _sign_sign_kernel(r_by_y, before):
    """Concordant minus discordant pairs between y and each row of ``r_by_y`` (D x N ranks, columns
    in increasing y). Model i is paired with models 0..before[i]-1, those of strictly smaller y, so
    pairs tied in y contribute 0, as sign(0) = 0; pairs tied in x contribute 0 through the compares.
    The branch-free inner loop over a contiguous row vectorises."""
    d_count, n = r_by_y.shape
    out = np.empty(d_count, dtype=np.float64)
    for d in range(d_count):
        row = r_by_y[d]
        total = 0
        for i in range(1, n):
            xi = row[i]
            c = 0
            for j in range(before[i]):
                xj = row[j]
                c += (xi > xj) - (xi < xj)
            total += c
        out[d] = total
    return out


def sign_sign(X, y, *, x_ranks_T=None):
    X, y = _check(X, y)
    n = X.shape[0]
    r = _x_ranks_T(X) if x_ranks_T is None else x_ranks_T
    y_order = np.argsort(y, kind="stable")
    ys = y[y_order]
    new_group = np.r_[True, ys[1:] != ys[:-1]]
    group_start = np.flatnonzero(new_group)
    before = group_start[np.cumsum(new_group) - 1].astype(np.int64)  # first position of i's y group
    s = _sign_sign_kernel(np.ascontiguousarray(r[:, y_order]), before)
    return 2.0 * s / (n * (n - 1))


_FUNCS = {"product": product, "sign": sign, "sign_cdf": sign_cdf, "sign_sign": sign_sign,
          "spearmanr": spearmanr}


def estimate(X, y, method: str) -> np.ndarray:
    """The D-vector estimate of ``method`` (one of :data:`ESTIMATORS`)."""
    try:
        return _FUNCS[method](X, y)
    except KeyError:
        raise ValueError(f"unknown estimator {method!r}; choose one of {', '.join(ESTIMATORS)}") from None


def estimate_all(X, y) -> dict[str, np.ndarray]:
    """Every estimator at once, sharing the rank computation."""
    X, y = _check(X, y)
    r = _x_ranks_T(X)
    return {
        "product": product(X, y),
        "sign": sign(X, y),
        "sign_cdf": sign_cdf(X, y, x_ranks_T=r),
        "sign_sign": sign_sign(X, y, x_ranks_T=r),
        "spearmanr": spearmanr(X, y, x_ranks_T=r),
    }


# -- projections onto the capped simplex {w : sum w = 1, 0 <= w <= tau} ----------------------------

def _check_tau(est, tau):
    est = np.asarray(est, dtype=np.float64)
    tau = np.asarray(tau, dtype=np.float64)
    if est.ndim != 1 or tau.shape != est.shape:
        raise ValueError(f"estimate and tau must be 1-D of the same length, got {est.shape} and {tau.shape}")
    if np.any(~(tau > 0)):
        raise ValueError("tau values must be positive")
    if tau.sum() < 1:
        raise ValueError(f"projection is infeasible: the caps tau sum to {tau.sum():.6g} < 1")
    return est, tau


def linear(est, tau) -> np.ndarray:
    """argmax_w <est, w> on the capped simplex: fill keys in decreasing estimate up to their cap.

    Ties in the estimate are broken by position (stable sort), so the result is deterministic.
    """
    est, tau = _check_tau(est, tau)
    order = np.argsort(-est, kind="stable")
    tau_sorted = tau[order]
    cum = np.cumsum(tau_sorted)
    j = int(np.argmax(cum >= 1.0))  # first key whose cap completes the mass
    w = np.zeros_like(est)
    if j == 0:
        w[order[0]] = 1.0
    else:
        w[order[:j]] = tau_sorted[:j]
        w[order[j]] = 1.0 - cum[j - 1]
    return w


def l2(est, tau) -> np.ndarray:
    """argmin_w ||w - est||_2 on the capped simplex, solved exactly.

    The solution is clip(est + c, 0, tau) for the offset c where the sum is 1. That sum is a
    non-decreasing piecewise-linear function of c with breakpoints -est_i and tau_i - est_i; sort the
    breakpoints, walk the slopes, and interpolate on the segment that crosses 1 (O(D log D), no
    bisection tolerance).
    """
    est, tau = _check_tau(est, tau)
    d = est.shape[0]
    points = np.concatenate([-est, tau - est])
    slope_change = np.concatenate([np.ones(d), -np.ones(d)])
    order = np.argsort(points, kind="stable")
    points, slope_change = points[order], slope_change[order]
    slopes = np.cumsum(slope_change)               # slope on [points[i], points[i+1]]
    gains = slopes[:-1] * np.diff(points)
    g = np.concatenate([[0.0], np.cumsum(gains)])  # sum of clip at each breakpoint
    k = int(np.searchsorted(g, 1.0, side="left"))  # first breakpoint where the sum reaches 1
    if k == 0:
        c = points[0]
    elif k >= len(points):
        c = points[-1]
    else:
        c = points[k - 1] + (1.0 - g[k - 1]) / slopes[k - 1]
    return np.clip(est + c, 0.0, tau)


def project(est, tau, method: str) -> np.ndarray:
    if method == "linear":
        return linear(est, tau)
    if method == "l2":
        return l2(est, tau)
    raise ValueError(f"unknown projection {method!r}; choose one of {', '.join(PROJECTIONS)}")
