"""A ``tokens`` budget shared over clusters: per-cluster token quotas, each filled in its order.

Every cluster has an order of its members (the strategy's: random, facility-location or
farthest-first pick order, far from the centroid first). A cluster keeps the longest prefix of its
order whose tokens fit its quota, so the kept tokens never pass the budget. What the prefixes leave
unused is shared out again by the same quota rule among the clusters with documents left (rounds,
until a round keeps nothing more), then offered whole to each cluster in turn (a seeded order), so
the budget misses by less than the tokens of the next document of any cluster with documents left.
"""
from __future__ import annotations

import numpy as np

from .strategies import _rank_in_group, allocate, density_weights, floored_quotas

MAX_ROUNDS = 32  # redistribution rounds; the final pass makes the bound hold after any number


def _prefix_cumsum(cluster, key, n_tokens):
    """The order (cluster, key, index), each document's rank in its cluster, and in that order: the
    cluster, the document's tokens and the tokens of its cluster's prefix up to and including it."""
    order, rank = _rank_in_group(cluster, key)
    t = np.asarray(n_tokens, dtype=np.int64)[order]
    cum = np.cumsum(t)
    g = cluster[order]
    starts = np.r_[0, np.flatnonzero(np.diff(g)) + 1] if len(g) else np.zeros(0, dtype=np.int64)
    lens = np.diff(np.r_[starts, len(g)])
    before = np.repeat(np.r_[0, cum][starts], lens)
    return order, rank, g, t, cum - before


def take_by_token_quota(cluster, key, n_tokens, quotas, weights, budget: int,
                        tiebreak) -> tuple[np.ndarray, dict]:
    """Keep mask: per cluster c the longest prefix of its members by ``key`` (smallest first) whose
    tokens fit ``quotas[c]``, the unused tokens redistributed (by ``weights``) and finally offered
    whole to each cluster in ``tiebreak`` order. Kept tokens <= ``budget``."""
    cluster = np.asarray(cluster, dtype=np.int64)
    k = len(quotas)
    n_tokens = np.asarray(n_tokens, dtype=np.int64)
    totals = np.bincount(cluster, weights=n_tokens, minlength=k).astype(np.int64)
    _, rank, g, t, cum = _prefix_cumsum(cluster, key, n_tokens)
    q = np.minimum(np.asarray(quotas, dtype=np.int64), totals)

    def fill(limit):
        fits = cum <= limit[g]
        taken = np.bincount(g[fits], minlength=k)
        return taken, np.bincount(g[fits], weights=t[fits], minlength=k).astype(np.int64)

    taken, used = fill(q)
    rounds = 0
    while rounds < MAX_ROUNDS:
        left = int(budget) - int(used.sum())
        room = totals - used
        if left <= 0 or not np.any(room > 0):
            break
        taken2, used2 = fill(used + allocate(room, weights, left, tiebreak))
        if np.array_equal(taken2, taken):
            break
        taken, used = taken2, used2
        rounds += 1
    left = int(budget) - int(used.sum())
    starts = np.searchsorted(g, np.arange(k))
    ends = np.searchsorted(g, np.arange(k), side="right")
    for c in np.argsort(tiebreak, kind="stable"):  # per cluster, not per document
        if left <= 0:
            break
        s, e = starts[c], ends[c]
        if taken[c] >= e - s:
            continue
        t = int(np.searchsorted(cum[s:e], used[c] + left, side="right"))
        if t > taken[c]:
            new = int(cum[s + t - 1])
            left -= new - int(used[c])
            taken[c], used[c] = t, new
    keep = rank < taken[cluster]
    return keep, {"redistribution_rounds": rounds, "kept_tokens": int(used.sum())}


def token_prefix(order: np.ndarray, n_tokens: np.ndarray, budget: int) -> np.ndarray:
    """Keep mask: the longest prefix of ``order`` whose tokens fit ``budget`` (a global ranking)."""
    cum = np.cumsum(np.asarray(n_tokens, dtype=np.int64)[order])
    keep = np.zeros(len(n_tokens), dtype=bool)
    keep[order[:int(np.searchsorted(cum, budget, side="right"))]] = True
    return keep


def density_token_quotas(centroids, cluster, dist, sizes, totals, key, n_tokens, budget, tiebreak, *,
                         temperature, min_per_cluster, inter_neighbors):
    """Density quotas in tokens: the floor is the tokens of each cluster's first ``min_per_cluster``
    members in its order, the rest shared by the density weights. Returns quotas, weights, metrics."""
    w, info = density_weights(centroids, cluster, dist, sizes, temperature=temperature,
                              inter_neighbors=inter_neighbors)
    _, rank = _rank_in_group(cluster, key)
    first = rank < min_per_cluster
    floor = np.bincount(cluster[first], weights=n_tokens[first], minlength=len(sizes)).astype(np.int64)
    return floored_quotas(totals, floor, w, budget, tiebreak), w, info
