"""Coverage measured in an embedding the selection did not use (a held-out yardstick).

A selection that optimises coverage in its own embedding can look good there and no better than
random elsewhere. This measures it in a second, independent embedding: word TF-IDF (scikit-learn's
tokenizer, unigrams, sublinear) and a 128-d truncated SVD, fitted on a seeded sample of the
stage's documents (texts read back through the decide context, each cut to its first 5,000
characters), so its cost is bounded by the sample, not the corpus. Inside the sample, each document's
cosine distance to the nearest selected document of the sample is compared with the same for random
selections of the same size.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .strategies import nearest_similarity

MAX_CHARS = 5000
DIM = 128


def read_sample_texts(shard: np.ndarray, rows: np.ndarray, read_texts) -> list[str]:
    """The texts of the documents at (``shard``, ``rows``), in that order, read back one shard at a
    time through ``read_texts(shard, ascending rows)`` (a decide context's)."""
    texts: list[str] = [None] * len(rows)
    for s in np.unique(shard):
        at = np.flatnonzero(shard == s)
        order = np.argsort(rows[at], kind="stable")
        k = 0
        for text, pos in read_texts(int(s), rows[at][order]):
            part = pc.utf8_slice_codeunits(text.take(pa.array(pos)), 0, MAX_CHARS).to_pylist()
            for t in part:
                texts[at[order[k]]] = t
                k += 1
    return texts


def embed_independent(texts: list[str], seed: int) -> np.ndarray:
    """Unit word TF-IDF + SVD vectors of ``texts``, fitted on them (at most ``DIM`` dimensions)."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    try:
        x = TfidfVectorizer(sublinear_tf=True, min_df=2, dtype=np.float32).fit_transform(texts)
    except ValueError:  # no term in two documents: nothing to measure with
        return np.zeros((len(texts), 0), dtype=np.float32)
    dim = min(DIM, x.shape[0] - 1, x.shape[1] - 1)
    if dim < 2:
        return np.zeros((len(texts), 0), dtype=np.float32)
    e = TruncatedSVD(dim, random_state=seed % (2**31), algorithm="randomized", n_iter=4).fit_transform(x)
    norms = np.linalg.norm(e, axis=1, keepdims=True)
    return np.divide(e, norms, out=np.zeros_like(e), where=norms > 0).astype(np.float32)


def sample_positions(n: int, sample: int, seed: int) -> tuple[np.random.Generator, np.ndarray]:
    """The measure's generator and its sample: ``sample`` of the ``n`` positions, ascending."""
    rng = np.random.default_rng([seed, 0x686C64])
    return rng, np.sort(rng.choice(n, min(n, sample), replace=False))


def heldout_coverage(scores, ctx, keep: np.ndarray, sample: int, seed: int) -> dict:
    """Mean and 95th-percentile distance to the nearest selected document, within a sample of
    ``sample`` documents in the independent embedding, against random selections (mean of 5)."""
    rng, pos = sample_positions(len(keep), sample, seed)
    rows = np.asarray(scores["row"], dtype=np.int64)[pos]
    return measure(lambda: read_sample_texts(scores.shard_index[pos], rows, ctx.read_texts), keep[pos], rng, seed)


def measure(texts, sel: np.ndarray, rng, seed: int) -> dict:
    """heldout_coverage of a sample whose selected members are ``sel``; ``texts()`` reads them."""
    m = int(sel.sum())
    out = {"embedding": f"word tf-idf + svd {DIM} (scikit-learn), fitted on the sample",
           "docs": int(len(sel)), "selected_in_sample": m}
    if m == 0 or len(sel) < 3:
        return out
    e = embed_independent(texts(), seed)
    if e.shape[1] == 0:
        return out

    def dist(mask):
        return np.clip(1.0 - nearest_similarity(e, e[mask]), 0.0, 2.0)

    d = dist(sel)
    rand = []
    for _ in range(5):
        r = np.zeros(len(sel), dtype=bool)
        r[rng.choice(len(sel), m, replace=False)] = True
        rand.append(dist(r))
    out.update({"mean_distance": round(float(d.mean()), 6),
                "random_mean_distance": round(float(np.mean([r.mean() for r in rand])), 6),
                "p95_distance": round(float(np.quantile(d, 0.95)), 6),
                "random_p95_distance": round(float(np.mean([np.quantile(r, 0.95) for r in rand])), 6)})
    return out
