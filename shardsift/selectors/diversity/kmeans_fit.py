"""Spherical k-means on unit embeddings: the fit, nearest-centroid assignment and the fitted files.

The fit runs scikit-learn's MiniBatchKMeans on L2-normalised vectors and renormalises the centroids
(cosine geometry). Assignment is a numba kernel that treats documents one by one in a fixed order,
so a document's cluster never depends on its batch or on the machine.
"""
from __future__ import annotations

import json
import os

import numba as nb
import numpy as np

from ...errors import ConfigError
from .embedders import HashedTfidfEmbedder, normalize_rows


def one_thread():
    """BLAS / OpenMP limited to one thread: results that do not depend on the machine's thread
    count (reductions are ordered), and no spin-waiting threads burning CPU on a busy box."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


@nb.njit(cache=True, nogil=True, fastmath=True)
def assign_nearest(emb, centroids):
    """Nearest centroid by cosine (inputs L2-normalised), per document in a fixed order."""
    n, dim = emb.shape
    k = centroids.shape[0]
    cluster = np.zeros(n, dtype=np.int32)
    dist = np.ones(n, dtype=np.float32)
    for i in range(n):
        best = np.float32(-2.0)
        arg = 0
        for c in range(k):
            s = np.float32(0.0)
            for j in range(dim):
                s += np.float32(emb[i, j]) * centroids[c, j]
            if s > best:
                best = s
                arg = c
        cluster[i] = arg
        dist[i] = min(max(np.float32(1.0) - best, np.float32(0.0)), np.float32(2.0))
    return cluster, dist


def spherical_kmeans(x: np.ndarray, k: int, seed: int, n_init: int, max_iter: int,
                     weight: np.ndarray | None = None) -> np.ndarray:
    """Unit centroids (at most ``k``, fewer when the points have fewer distinct values) of the
    non-zero rows of ``x`` (and positive ``weight``): MiniBatchKMeans on unit vectors, renormalised."""
    from sklearn.cluster import MiniBatchKMeans

    x = normalize_rows(x)
    ok = np.linalg.norm(x, axis=1) > 0
    if weight is not None:
        ok &= weight > 0
        weight = weight[ok]
    live = x[ok]
    if len(live) == 0:
        return np.eye(1, x.shape[1], dtype=np.float32)
    rows = np.ascontiguousarray(live.astype(np.float16))
    distinct = len(np.unique(rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1])))))
    k = max(1, min(k, distinct))
    if k == 1:
        return normalize_rows(live.mean(axis=0, keepdims=True))
    km = MiniBatchKMeans(n_clusters=k, random_state=seed % (2**31), n_init=n_init, max_iter=max_iter,
                         batch_size=min(2048, len(live)), reassignment_ratio=0.01)
    km.fit(live, sample_weight=weight)
    c = normalize_rows(km.cluster_centers_)
    return np.ascontiguousarray(c[np.linalg.norm(c, axis=1) > 0], dtype=np.float32)


# -- fitted files: centroids, the hashed TF-IDF embedder's state, a JSON description ----------------


def save_fitted(work_dir: str, centroids: np.ndarray, embedder: HashedTfidfEmbedder | None,
                meta: dict) -> dict[str, str]:
    """Write ``centroids.npy``, ``embedder.npz`` (hashed TF-IDF only) and ``kmeans.json`` to
    ``work_dir``; returns name -> path of what was written."""
    os.makedirs(work_dir, exist_ok=True)
    files = {"centroids.npy": os.path.join(work_dir, "centroids.npy"),
             "kmeans.json": os.path.join(work_dir, "kmeans.json")}
    np.save(files["centroids.npy"], centroids)
    if embedder is not None:
        files["embedder.npz"] = os.path.join(work_dir, "embedder.npz")
        np.savez_compressed(files["embedder.npz"], **embedder.state())
    with open(files["kmeans.json"], "w") as fh:
        json.dump(meta, fh, indent=1, sort_keys=True, default=str)
    return files


def load_centroids(path: str, where: str) -> np.ndarray:
    cpath = os.path.join(path, "centroids.npy")
    if not os.path.isfile(cpath):
        raise ConfigError(f"{where}.model_dir: no centroids.npy in {path!r}")
    return normalize_rows(np.load(cpath))


def load_embedder(path: str, where: str, embedder: HashedTfidfEmbedder, dim: int) -> HashedTfidfEmbedder:
    """``embedder`` (configured, unfitted) with the state saved in ``path``; checks it matches the
    configured bucket count and the centroids' dimension ``dim``."""
    epath = os.path.join(path, "embedder.npz")
    if not os.path.isfile(epath):
        raise ConfigError(f"{where}.model_dir: no embedder.npz in {path!r}")
    with np.load(epath) as st:
        embedder.load_state(st)
    if len(embedder.lut_) != (1 << embedder.bucket_bits) or embedder.dim_ != dim:
        raise ConfigError(f"{where}.model_dir: {epath!r} does not match bucket_bits / centroid dimension")
    return embedder


def lloyd_centroids(x: np.ndarray, k: int, seed: int, iters: int = 10) -> np.ndarray:
    """At most ``k`` unit centroids of unit rows ``x``: spherical Lloyd iterations from ``k`` seeded
    rows (a centroid left with no row stays where it is). Enough to cut a cluster into
    sub-clusters, at a fraction of a full fit's cost."""
    k = min(k, len(x))
    c = x[np.sort(np.random.default_rng(seed).choice(len(x), k, replace=False))]
    onehot = np.zeros((k, len(x)), dtype=np.float32)
    for _ in range(iters):
        label = np.argmax(x @ c.T, axis=1)
        onehot[:] = 0.0
        onehot[label, np.arange(len(x))] = 1.0
        sums = onehot @ x
        live = onehot.any(axis=1)
        c = np.where(live[:, None], normalize_rows(sums), c)
    return np.ascontiguousarray(c, dtype=np.float32)


def split_cluster(x: np.ndarray, max_size: int, seed: int, depth: int = 0) -> tuple[list[np.ndarray], bool]:
    """Positions of ``x``'s rows (unit vectors) in groups of at most ``max_size``: spherical k-means
    into ~2 x len(x) / max_size sub-clusters (fitted on at most 10,000 rows, every row assigned),
    again inside any still too large. Rows k-means cannot separate (identical ones, or three levels
    down) are cut into consecutive chunks; the flag says whether that happened."""
    m = len(x)
    if m <= max_size:
        return [np.arange(m)], False
    parts = -(-2 * m // max_size)
    if depth < 3:
        rng = np.random.default_rng([seed, depth, m])
        fit_rows = x if m <= 10000 else x[np.sort(rng.choice(m, 10000, replace=False))]
        cents = lloyd_centroids(fit_rows, parts, seed + depth)
        if len(cents) > 1:
            sub, _ = assign_nearest(np.ascontiguousarray(x, dtype=np.float32), cents)
            order = np.argsort(sub, kind="stable")
            bounds = np.r_[0, np.flatnonzero(np.diff(sub[order])) + 1, m]
            if len(bounds) > 2:  # at least two non-empty groups: progress
                groups, chunked = [], False
                for s, e in zip(bounds[:-1], bounds[1:]):
                    pos = order[s:e]
                    inner, ch = split_cluster(x[pos], max_size, seed, depth + 1)
                    groups += [pos[g] for g in inner]
                    chunked |= ch
                return groups, chunked
    return [np.arange(a, min(m, a + max_size)) for a in range(0, m, max_size)], True
