"""Which documents the page shows: a few kept and dropped per stage, and (kept, dropped) pairs from
distinct duplicate clusters. Draws are seeded, so the same output gives the same page."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from .data import column


def rng(seed: int, i: int) -> np.random.Generator:
    return np.random.default_rng([seed, i])


def pick(n: int, k: int, gen: np.random.Generator) -> np.ndarray:
    """k of range(n) without replacement, ascending (all of them when n <= k)."""
    if n <= k:
        return np.arange(n)
    return np.sort(gen.choice(n, size=k, replace=False))


def sample_rows(t: pa.Table, in_output: np.ndarray, k: int, seed: int, i: int) -> dict[str, np.ndarray]:
    """Rows of a stage's sidecar to show: k kept (drawn from those also in the output, whose text the
    output holds, when there are any) and k dropped."""
    kept = column(t, "kept", bool)
    rows = {}
    for j, (name, mask) in enumerate((("kept", kept), ("dropped", ~kept))):
        if name == "kept" and (kept & in_output).any():
            mask = kept & in_output
        idx = np.flatnonzero(mask)
        rows[name] = idx[pick(len(idx), k, rng(seed, 100 + 2 * i + j))]
    return rows


def duplicate_pairs(t: pa.Table, in_output: np.ndarray, k: int, gen: np.random.Generator) -> list[tuple[int, int]]:
    """Up to k (kept row, dropped row) pairs, each from a different duplicate cluster; clusters whose
    survivor is in the output (so its text can be shown) come first."""
    cl = column(t, "cluster")
    kept = column(t, "kept", bool)
    if cl.ndim != 1 or not len(cl) or kept.all():
        return []
    kept_rows = np.flatnonzero(kept)
    kept_rows = kept_rows[np.argsort(~in_output[kept_rows], kind="stable")]  # survivors in the output first
    survivors, first = np.unique(cl[kept_rows], return_index=True)  # first kept member per cluster
    dropped = np.flatnonzero(~kept)
    pos = np.searchsorted(survivors, cl[dropped])
    has = (pos < len(survivors)) & (survivors[np.minimum(pos, len(survivors) - 1)] == cl[dropped])
    dropped, pos = dropped[has], pos[has]
    if not len(dropped):
        return []
    clusters, firstd = np.unique(pos, return_index=True)
    shown = in_output[kept_rows[first[clusters]]]
    order = gen.permutation(len(clusters))
    choice = np.sort(order[np.argsort(~shown[order], kind="stable")][:k])
    return [(int(kept_rows[first[clusters[c]]]), int(dropped[firstd[c]])) for c in choice]
