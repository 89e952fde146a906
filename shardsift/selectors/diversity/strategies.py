"""Per-cluster budgets and selection strategies on unit embeddings (cosine geometry).

- :func:`allocate`: integer quotas per cluster (water-filling), exact and deterministic.
- members of a cluster by the smallest key (:func:`take_by_quota`); facility location and
  farthest-first are in :mod:`.members`.
- :func:`semdedup_max_similarity` (SemDeDup, Abbas et al. 2023) and :func:`density_quotas`
  (density-based pruning, Abbas et al. 2024).
- :func:`coverage`: how well a selection covers the pool, against a random one of the same size.
"""
from __future__ import annotations

import itertools

import numpy as np

from ...api import top_k_mask
from .kmeans_fit import split_cluster
from .nearest import nearest_similarity_pruned

BLOCK = 2048            # rows per block of the blockwise similarity products
SEMDEDUP_MAX = 16384    # larger clusters are compared inside their sub-clusters


def allocate(sizes: np.ndarray, weights: np.ndarray, budget: int, tiebreak: np.ndarray) -> np.ndarray:
    """Integer quotas q with 0 <= q <= sizes, sum(q) == budget, proportional to ``weights``.

    Continuous water-filling: a cluster whose share exceeds its size gives all it has and the rest
    is shared out again among the others; then largest-remainder rounding, ties broken by
    ``tiebreak`` (a seeded permutation rank), so the result is exact and deterministic.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    budget = int(min(budget, sizes.sum()))
    w = np.where(sizes > 0, np.asarray(weights, dtype=np.float64), 0.0)
    if budget <= 0:
        return np.zeros_like(sizes)
    if not np.any(w > 0):
        w = (sizes > 0).astype(np.float64)
    x = np.zeros(len(sizes), dtype=np.float64)
    active = (sizes > 0) & (w > 0)
    rest = float(budget)
    while active.any() and rest > 1e-9:
        share = rest * w[active] / w[active].sum()
        idx = np.flatnonzero(active)
        over = share >= sizes[idx]
        if not over.any():
            x[idx] = share
            break
        x[idx[over]] = sizes[idx[over]]
        rest -= float(sizes[idx[over]].sum())
        active[idx[over]] = False
    q = np.minimum(np.floor(x + 1e-9).astype(np.int64), sizes)
    left = budget - int(q.sum())
    while left > 0:
        room = np.flatnonzero(q < sizes)
        frac = (x - q)[room]
        order = room[np.lexsort((tiebreak[room], -frac))][:left]
        q[order] += 1
        left = budget - int(q.sum())
    return q


def _rank_in_group(group: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order of documents by (group, key, index) and each document's rank inside its group."""
    n = len(group)
    order = np.lexsort((np.arange(n), key, group))
    g = group[order]
    starts = np.r_[0, np.flatnonzero(np.diff(g)) + 1]
    lens = np.diff(np.r_[starts, n])
    rank_sorted = np.arange(n) - np.repeat(starts, lens)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = rank_sorted
    return order, rank


def take_by_quota(group, key, quotas):
    """Keep the ``quotas[g]`` documents of each group with the smallest key."""
    _, rank = _rank_in_group(group, key)
    return rank < quotas[group]



def nearest_similarity(queries: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """max_j <queries_i, pool_j>, blockwise so memory stays ~ BLOCK x BLOCK floats."""
    best = np.full(len(queries), -np.inf, dtype=np.float32)
    if len(pool) == 0:
        return best
    for a in range(0, len(queries), BLOCK):
        q = queries[a:a + BLOCK]
        b_best = np.full(len(q), -np.inf, dtype=np.float32)
        for b in range(0, len(pool), BLOCK):
            np.maximum(b_best, (q @ pool[b:b + BLOCK].T).max(axis=1), out=b_best)
        best[a:a + BLOCK] = b_best
    return best


def _max_similarity_to_earlier(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``x``: the highest dot product with a row before it (-inf for the first) and
    that row's position (-1 for the first). Blocks of rows against everything before them, at most
    ~2^23 floats at a time."""
    m = len(x)
    res = np.full(m, -np.inf, dtype=np.float32)
    arg = np.full(m, -1, dtype=np.int64)
    step = BLOCK if m <= 4096 else max(256, BLOCK * 4096 // m)
    for a in range(1, m, step):
        b = min(m, a + step)
        sims = x[a:b] @ x[:b].T            # rows a..b-1 against everything ranked before b
        # row r (global index a + r) may only look at columns < a + r
        sims[np.arange(b)[None, :] >= np.arange(a, b)[:, None]] = -np.inf
        arg[a:b] = sims.argmax(axis=1)
        res[a:b] = sims[np.arange(b - a), arg[a:b]]
    return res, arg


def semdedup_max_similarity(emb: np.ndarray, cluster: np.ndarray, dist: np.ndarray, seed: int = 0,
                            max_size: int = SEMDEDUP_MAX) -> tuple[np.ndarray, dict]:
    """Per document: the highest cosine similarity to a document of its cluster ranked before it;
    and how the clusters were compared (:func:`semdedup_nearest`)."""
    msim, _, info = semdedup_nearest(emb, cluster, dist, seed, max_size)
    return msim, info


def semdedup_nearest(emb: np.ndarray, cluster: np.ndarray, dist: np.ndarray, seed: int = 0,
                     max_size: int = SEMDEDUP_MAX) -> tuple[np.ndarray, np.ndarray, dict]:
    """Per document: the highest cosine similarity to a document of its cluster ranked before it,
    that document's index (-1 for none), and how the clusters were compared.

    Rank inside a cluster: distance to the centroid, far first (ties by position). The first
    document of each cluster gets -inf (always kept by any threshold). A cluster of more than
    ``max_size`` documents is split into sub-clusters (:func:`split_cluster`) and each document is
    compared with the earlier ones of its sub-cluster: near-duplicates sit next to each other, so
    they land in one sub-cluster unless they straddle a boundary (the approximation), and the cost
    stays O(size x max_size) instead of O(size^2).
    """
    n = len(cluster)
    out = np.full(n, -np.inf, dtype=np.float32)
    near = np.full(n, -1, dtype=np.int64)
    order = np.lexsort((np.arange(n), -dist, cluster))
    g = cluster[order]
    bounds = np.r_[0, np.flatnonzero(np.diff(g)) + 1, n]
    info = {"exact": 0, "subclustered": 0, "subclusters": 0, "chunked": 0, "largest_cluster": 0}
    for s, e in itertools.pairwise(bounds):
        idx = order[s:e]
        x = emb[idx]
        info["largest_cluster"] = max(info["largest_cluster"], len(idx))
        groups = [np.arange(len(idx))]
        if len(idx) <= max_size:
            info["exact"] += 1
        else:
            groups, chunked = split_cluster(x, max_size, seed + int(g[s]))
            info["subclustered"] += 1
            info["subclusters"] += len(groups)
            info["chunked"] += int(chunked)
        for pos in groups:  # positions ascending: the cluster's rank order within each group
            sim, arg = _max_similarity_to_earlier(x[pos])
            out[idx[pos]] = sim
            near[idx[pos]] = np.where(arg >= 0, idx[pos][np.maximum(arg, 0)], -1)
    return out, near, info


def quota_methods(sizes: np.ndarray, quotas: np.ndarray, method: str) -> dict:
    """Manifest summary of a per-cluster quota taken by ``method`` (exact at any cluster size)."""
    live = sizes > 0
    return {"clusters_by_method": {"all": int((live & (quotas >= sizes)).sum()),
                                   "none": int((live & (quotas == 0)).sum()),
                                   method: int((live & (quotas > 0) & (quotas < sizes)).sum())},
            "largest_cluster": int(sizes.max()) if len(sizes) else 0, "approximate": False}


def semdedup_methods(compared: dict) -> dict:
    """Manifest summary of how :func:`semdedup_max_similarity` compared each cluster."""
    return {"clusters_by_method": {"semdedup": compared["exact"],
                                   "semdedup_subclustered": compared["subclustered"]},
            "semdedup_max": SEMDEDUP_MAX, "subclusters": compared["subclusters"],
            "chunked_clusters": compared["chunked"], "largest_cluster": compared["largest_cluster"],
            "approximate": bool(compared["subclustered"])}


def entropy(counts: np.ndarray) -> float:
    c = counts[counts > 0].astype(np.float64)
    if c.sum() == 0:
        return 0.0
    p = c / c.sum()
    return float(-(p * np.log(p)).sum())



# -- SemDeDup and density-based quotas -----------------------------------------------------------


def semdedup_keep(msim, budget, eps):
    """Keep by a threshold (``eps``) or the ``budget`` documents least similar to an earlier one."""
    if budget is None:
        keep = ~(msim > 1.0 - eps)
        return keep, {"eps": eps, "duplicates": int((~keep).sum())}
    keep = top_k_mask(-msim.astype(np.float64), budget)
    dropped = msim[~keep]
    eff = float(1.0 - dropped.min()) if len(dropped) else None
    return keep, {"eps_effective": eff, "duplicates": int((~keep).sum())}


def density_quotas(centroids, cluster, dist, sizes, budget, tiebreak, *, temperature, min_per_cluster,
                   inter_neighbors):
    """Abbas et al. 2024: complexity = intra-cluster spread x distance to neighbour centroids;
    quotas from softmax(standardised complexity / temperature) after a floor per cluster."""
    w, info = density_weights(centroids, cluster, dist, sizes, temperature=temperature,
                              inter_neighbors=inter_neighbors)
    floor = np.minimum(sizes, min_per_cluster)
    return floored_quotas(sizes, floor, w, budget, tiebreak), info


def floored_quotas(sizes, floor, w, budget, tiebreak):
    """``floor`` per cluster first (shared evenly when the budget is smaller), the rest by ``w``."""
    k = len(sizes)
    if floor.sum() >= budget:
        return allocate(floor, np.ones(k), budget, tiebreak)
    return floor + allocate(sizes - floor, w, budget - int(floor.sum()), tiebreak)


def density_weights(centroids, cluster, dist, sizes, *, temperature, inter_neighbors):
    """Per-cluster quota weights: softmax of standardised complexity / temperature; and the metrics."""
    k = len(sizes)
    live = sizes > 0
    intra = np.zeros(k)
    np.add.at(intra, cluster, dist.astype(np.float64))
    intra = np.divide(intra, sizes, out=np.zeros(k), where=live)
    if k > 1:
        cd = 1.0 - np.clip(centroids @ centroids.T, -1.0, 1.0)
        np.fill_diagonal(cd, np.inf)
        cd[:, ~live] = np.inf
        m = max(1, min(inter_neighbors, int(live.sum()) - 1))
        near = np.sort(cd, axis=1)[:, :m]
        fin = np.isfinite(near)
        cnt = fin.sum(axis=1)
        inter = np.divide(np.where(fin, near, 0.0).sum(axis=1), cnt, out=np.ones(k), where=cnt > 0)
    else:
        inter = np.ones(k)
    complexity = intra * inter
    c = complexity[live]
    z = (c - c.mean()) / (c.std() if c.std() > 0 else 1.0)
    w = np.zeros(k)
    e = np.exp((z - z.max()) / temperature)
    w[live] = e / e.sum()
    return w, {"complexity": [round(float(v), 6) for v in complexity],
                    "quota_weights": [round(float(v), 6) for v in w]}


# -- coverage ----------------------------------------------------------------------------------


def coverage(emb, cluster, keep, centroids, rng, sample: int) -> dict:
    """Mean and 95th-percentile cosine distance from ``sample`` pool documents (0: all) to their
    nearest selected one (:func:`.nearest.nearest_similarity_pruned`), and the entropy of the
    selected cluster sizes; each also for a random selection of the same size (``random_*``)."""
    n = len(keep)
    m = int(keep.sum())
    if n == 0 or m == 0:
        return {"selected": m}
    n_q = n if sample == 0 else min(n, sample)
    q_idx = np.sort(rng.choice(n, n_q, replace=False)) if n_q < n else np.arange(n)
    rand = np.zeros(n, dtype=bool)
    rand[rng.choice(n, m, replace=False)] = True
    queries = emb[q_idx]
    out = {"pool_docs_measured": int(n_q), "selected": m}
    for name, mask in (("", keep), ("random_", rand)):
        d = 1.0 - nearest_similarity_pruned(queries, centroids, emb[mask], cluster[mask])
        d = np.clip(d, 0.0, 2.0)
        out[f"{name}mean_distance"] = round(float(d.mean()), 6)
        out[f"{name}p95_distance"] = round(float(np.quantile(d, 0.95)), 6)
        out[f"{name}cluster_entropy"] = round(entropy(np.bincount(cluster[mask], minlength=len(centroids))), 6)
    return out
