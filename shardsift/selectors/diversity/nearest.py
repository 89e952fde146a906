"""Nearest selected document of each coverage query, pruned by the clusters' geometry.

The coverage metrics need, for a few thousand pool documents, the most similar of up to millions of
selected ones. Against every selected document that is most of a k-means run's cost; most of the
pairs cannot matter. On the unit sphere the angle between a query q and a document x is at least
|angle(q, c) - angle(x, c)| for any unit c (the triangle inequality), so with the documents of each
cluster sorted by their angle to its centroid and cut into bands, a band whose angles all lie
farther from the query's than the query's best angle so far cannot hold a nearer document. Each
query first searches its own cluster (where its neighbour usually is), then the bands of the others
that the bound cannot rule out. The result is the exhaustive search's, up to float rounding: the
bound is applied with a margin larger than the rounding of the angles.
"""
from __future__ import annotations

import numpy as np

BAND = 512       # documents per band: large enough for a matrix product, small enough to prune
MARGIN = 2e-3    # radians: the rounding of arccos near 0 (float32) is below 1e-3


def angles_to(x: np.ndarray, centroids: np.ndarray, cluster: np.ndarray) -> np.ndarray:
    """Angle of each unit row of ``x`` to its cluster's centroid."""
    cos = np.einsum("ij,ij->i", x, centroids[cluster], dtype=np.float32)
    return np.arccos(np.clip(cos, -1.0, 1.0))


def nearest_similarity_pruned(queries: np.ndarray, centroids: np.ndarray, pool: np.ndarray,
                              pool_cluster: np.ndarray) -> np.ndarray:
    """max_j <queries_i, pool_j> for unit rows, the pool's rows grouped by their cluster
    (``pool_cluster``, ids into ``centroids``, unit rows); -inf where the pool is empty."""
    best = np.full(len(queries), -np.inf, dtype=np.float32)
    if len(pool) == 0 or len(queries) == 0:
        return best
    pool_cluster = np.asarray(pool_cluster, dtype=np.int64)
    q_angle = np.arccos(np.clip(queries @ centroids.T, -1.0, 1.0))  # queries x clusters
    x_angle = angles_to(pool, centroids, pool_cluster)
    order = np.lexsort((x_angle, pool_cluster))
    pool, x_angle, cl = pool[order], x_angle[order], pool_cluster[order]
    starts = np.r_[0, np.flatnonzero(np.diff(cl)) + 1]
    ends = np.r_[starts[1:], len(cl)]
    own = np.argmin(q_angle, axis=1)
    best_angle = np.full(len(queries), np.inf, dtype=np.float32)
    everyone = np.arange(len(queries))
    for own_pass in (True, False):
        for s, e in zip(starts, ends):
            c = int(cl[s])
            who = everyone[own == c] if own_pass else everyone[own != c]
            for a in range(s, e, BAND):
                b = min(e, a + BAND)
                t = q_angle[who, c]
                gap = np.maximum(np.maximum(x_angle[a] - t, t - x_angle[b - 1]), 0.0)
                w = who[gap <= best_angle[who] + MARGIN]
                if len(w) == 0:
                    continue
                sim = (queries[w] @ pool[a:b].T).max(axis=1)
                better = sim > best[w]
                w, sim = w[better], sim[better]
                best[w] = sim
                best_angle[w] = np.arccos(np.clip(sim, -1.0, 1.0))
    return best
