"""Members of each cluster: which documents fill a cluster's quota.

- ``facility``: greedy facility location, the members that maximise the sum over the cluster of the
  similarity to the nearest pick (the most representative documents).
- ``farthest``: greedy k-center from the member nearest the centroid (the most spread-out ones).

Both need a cluster's members against each other: a cluster of more than ``MEMBER_MAX`` members is
split into sub-clusters of at most ``MEMBER_MAX`` (:func:`split_cluster`), its quota shared among
them in proportion to their sizes, and the method runs inside each. Memory stays bounded by one
MEMBER_MAX^2 similarity matrix (64 MB) and the cost grows linearly with the cluster.
"""
from __future__ import annotations

import numba as nb
import numpy as np

from .kmeans_fit import split_cluster
from .strategies import allocate

MEMBER_MAX = 4096


def facility_greedy(sim, q):
    """The ``q`` items greedy facility location picks (:func:`facility_greedy_ordered`), ascending."""
    return np.sort(facility_greedy_ordered(sim, q)[0])


@nb.njit(cache=True, nogil=True, inline="always")
def _sift_down(gain, item, pos, n):
    """Restore the max-heap ``gain[:n]`` (ties: lowest ``item`` on top) below ``pos``."""
    while True:
        c = 2 * pos + 1
        if c >= n:
            return
        r = c + 1
        if r < n and (gain[r] > gain[c] or (gain[r] == gain[c] and item[r] < item[c])):
            c = r
        if gain[c] > gain[pos] or (gain[c] == gain[pos] and item[c] < item[pos]):
            gain[c], gain[pos] = gain[pos], gain[c]
            item[c], item[pos] = item[pos], item[c]
            pos = c
        else:
            return


@nb.njit(cache=True, nogil=True, fastmath=True)
def facility_greedy_ordered(sim, q):
    """Greedy facility location on a symmetric non-negative similarity matrix: ``q`` items, each
    maximising the gain sum_i max(0, sim[i, j] - cover[i]); returns the items in pick order and
    their gains (non-increasing: the objective is submodular). Lazy evaluation (Minoux 1978) on a
    max-heap of gain bounds: a stale gain is an upper bound, so only the item on top is
    re-evaluated, and finding it costs log(m), not m; the picks equal the plain greedy's (ties:
    lowest index)."""
    m = sim.shape[0]
    q = min(q, m)
    cover = np.zeros(m, dtype=np.float32)
    gain = np.empty(m, dtype=np.float64)  # the heap: an upper bound of each item's gain
    item = np.arange(m)
    fresh = np.ones(m, dtype=np.int64)  # the step at which an item's bound was last exact
    for j in range(m):
        g = 0.0
        row = sim[j]
        for i in range(m):
            g += np.float64(row[i])
        gain[j] = g
    for p in range(m // 2 - 1, -1, -1):
        _sift_down(gain, item, p, m)
    order = np.empty(q, dtype=np.int64)
    gains = np.empty(q, dtype=np.float64)
    n = m
    for step in range(1, q + 1):
        while fresh[item[0]] != step:
            row = sim[item[0]]
            g = 0.0
            for i in range(m):
                g += max(np.float64(row[i]) - np.float64(cover[i]), 0.0)
            gain[0] = g
            fresh[item[0]] = step
            _sift_down(gain, item, 0, n)
        j = item[0]
        order[step - 1] = j
        gains[step - 1] = gain[0]
        n -= 1
        gain[0], item[0] = gain[n], item[n]
        _sift_down(gain, item, 0, n)
        row = sim[j]
        for i in range(m):
            cover[i] = max(cover[i], row[i])
    return order, gains


@nb.njit(cache=True, nogil=True)
def farthest_greedy(x, q):
    """Greedy k-center on unit rows: row 0 first, then repeatedly the row least similar to its most
    similar pick (ties: lowest index). Returns the picked rows in pick order."""
    m, dim = x.shape
    q = min(q, m)
    best = np.full(m, -np.inf, dtype=np.float32)  # similarity to the most similar pick
    picked = np.empty(q, dtype=np.int64)
    j = 0
    for step in range(q):
        picked[step] = j
        best[j] = np.inf
        if step == q - 1:
            break
        for i in range(m):
            if best[i] != np.inf:
                s = np.float32(0.0)
                for t in range(dim):
                    s += x[i, t] * x[j, t]
                if s > best[i]:
                    best[i] = s
        j = int(np.argmin(best))
    return picked


def _pick(x: np.ndarray, q: int, method: str) -> np.ndarray:
    if method == "farthest":
        return farthest_greedy(np.ascontiguousarray(x, dtype=np.float32), q)
    sim = x @ x.T
    np.maximum(sim, np.float32(0.0), out=sim)
    return facility_greedy(sim, q)


def select_members(emb, cluster, dist, quotas, method: str, seed: int) -> tuple[np.ndarray, dict]:
    """Keep ``quotas[c]`` members of each cluster c by ``method`` (``facility`` or ``farthest``).

    Returns the keep mask and how each cluster was served, for the manifest: clusters kept whole
    (``all``), given nothing (``none``), chosen among exactly (the method's name) or inside
    sub-clusters (``<method>_subclustered``), with the number of sub-clusters and of clusters that
    had to be cut into consecutive chunks."""
    n = len(cluster)
    key = (np.arange(n), dist, cluster) if method == "farthest" else (np.arange(n), cluster)
    order = np.lexsort(key)
    keep = np.zeros(n, dtype=bool)
    g = cluster[order]
    bounds = np.r_[0, np.flatnonzero(np.diff(g)) + 1, n]
    counts = {"all": 0, "none": 0, method: 0, f"{method}_subclustered": 0}
    per = np.full(len(quotas), -1, np.int8)  # each cluster's way, as METHOD_CODES
    subclusters = chunked = 0
    for s, e in zip(bounds[:-1], bounds[1:]):
        idx = order[s:e]
        c = int(g[s])
        q = int(quotas[c])
        if q >= len(idx):
            keep[idx] = True
            counts["all"] += 1
            per[c] = 0
            continue
        if q == 0:
            counts["none"] += 1
            per[c] = 1
            continue
        x = emb[idx]
        if len(idx) <= MEMBER_MAX:
            keep[idx[_pick(x, q, method)]] = True
            counts[method] += 1
            per[c] = 2
            continue
        per[c] = 3
        # positions ascending in each group: the cluster's order (farthest starts nearest the centroid)
        groups, cut = split_cluster(x, MEMBER_MAX, seed + c)
        sizes = np.array([len(p) for p in groups])
        shares = allocate(sizes, sizes.astype(np.float64), q, np.arange(len(groups)))
        for pos, qg in zip(groups, shares):
            if qg >= len(pos):
                keep[idx[pos]] = True
            elif qg > 0:
                keep[idx[pos[_pick(x[pos], int(qg), method)]]] = True
        counts[f"{method}_subclustered"] += 1
        subclusters += len(groups)
        chunked += int(cut)
    info = {"clusters_by_method": counts, "member_max": MEMBER_MAX, "subclusters": subclusters,
            "chunked_clusters": chunked, "largest_cluster": int(np.bincount(cluster).max()) if n else 0,
            "approximate": bool(counts[f"{method}_subclustered"]), "cluster_methods": per}
    return keep, info


def method_names(codes: np.ndarray, method: str) -> list[str]:
    """The manifest's ``cluster_methods``: how each cluster (by id) was served; ``empty``: no member."""
    names = ("all", "none", method, f"{method}_subclustered", "empty")
    return [names[c] for c in np.where(codes < 0, 4, codes)]


def member_order(emb, cluster, dist, method: str, seed: int, whole: np.ndarray) -> tuple[np.ndarray, int]:
    """A key per document: its position in its cluster's ``method`` pick order run to the whole
    cluster (a token budget needs an order, not a count), and how many clusters were ordered through
    sub-clusters. Clusters flagged in ``whole`` (kept entirely) are not ordered. A cluster of more than ``MEMBER_MAX`` is ordered inside each
    sub-cluster and the orders interleaved by the fraction of the sub-cluster picked, so every prefix
    shares the cluster's take among its sub-clusters in proportion to their sizes."""
    n = len(cluster)
    key_cols = (np.arange(n), dist, cluster) if method == "farthest" else (np.arange(n), cluster)
    order = np.lexsort(key_cols)
    key = np.zeros(n, dtype=np.float64)
    subclustered = 0
    g = cluster[order]
    bounds = np.r_[0, np.flatnonzero(np.diff(g)) + 1, n]
    for s, e in zip(bounds[:-1], bounds[1:]):
        idx = order[s:e]
        c = int(g[s])
        if whole[c] or len(idx) == 1:
            continue
        x = emb[idx]
        groups = [np.arange(len(idx))]
        if len(idx) > MEMBER_MAX:
            groups, _ = split_cluster(x, MEMBER_MAX, seed + c)
            subclustered += 1
        for pos in groups:
            picked = _pick_ordered(x[pos], len(pos), method)
            key[idx[pos[picked]]] = (np.arange(len(pos)) + 0.5) / len(pos)  # ties: by position
    return key, subclustered


def _pick_ordered(x: np.ndarray, q: int, method: str) -> np.ndarray:
    if method == "farthest":
        return farthest_greedy(np.ascontiguousarray(x, dtype=np.float32), q)
    sim = x @ x.T
    np.maximum(sim, np.float32(0.0), out=sim)
    return facility_greedy_ordered(sim, q)[0]
