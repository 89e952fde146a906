"""SemDeDup's pair check: which document each dropped one duplicates, and whether the two share
their words.

A low-dimensional embedding puts unrelated documents of one topic close together (same vocabulary,
different text); the check keeps such a pair unless the two documents' sparse word TF-IDF vectors
(unigrams + bigrams, the embedder's own vocabulary and idf, before projection) also agree. A
paraphrase that swaps a quarter of its words keeps cosine ~0.6-0.7 there; unrelated documents of
one topic stay well below.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa


def resolve_survivor(near: np.ndarray, drop: np.ndarray) -> np.ndarray:
    """Per dropped document, the kept document its chain of nearest earlier documents ends at (each
    step goes to a document ranked earlier in its cluster, so chains end); -1 for kept documents
    and for a chain that ends without a kept document."""
    of = np.where(drop, near, -1)
    while True:
        live = of >= 0
        step = live.copy()
        step[live] = drop[of[live]]
        if not step.any():
            return of
        of[step] = near[of[step]]


def read_texts_at(scores, ctx, positions: np.ndarray) -> pa.Array:
    """The texts of the documents at ``positions`` (ascending, distinct) of ``scores``, in that
    order, read back shard by shard through the decide context."""
    rows = np.asarray(scores["row"], dtype=np.int64)[positions]
    shard = scores.shard_index[positions]
    parts, where = [], []
    for s in np.unique(shard):
        at = np.flatnonzero(shard == s)          # positions ascending: rows ascending within a shard
        k = 0
        for text, pos in ctx.read_texts(int(s), rows[at]):  # the requested rows in order, batch by batch
            parts.append(text.take(pa.array(np.asarray(pos, dtype=np.int64))))
            where.append(at[k:k + len(pos)])
            k += len(pos)
    if not parts:
        return pa.array([], pa.string())
    texts = pa.concat_arrays([p.cast(pa.large_string()) for p in parts])
    order = np.empty(len(positions), dtype=np.int64)
    order[np.concatenate(where)] = np.arange(len(positions))
    return texts.take(pa.array(order))


def pair_similarity(embedder, scores, ctx, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of the sparse TF-IDF vectors of documents ``a[i]`` and ``b[i]`` (positions in
    ``scores``), texts read back once per distinct document."""
    if len(a) == 0:
        return np.zeros(0, dtype=np.float32)
    both = np.unique(np.concatenate([a, b]))
    x = embedder.tfidf(read_texts_at(scores, ctx, both))
    pa_, pb = np.searchsorted(both, a), np.searchsorted(both, b)
    return np.asarray(x[pa_].multiply(x[pb]).sum(axis=1), dtype=np.float32).ravel()


def duplicate_of_columns(scores, of: np.ndarray) -> dict[str, np.ndarray]:
    """Decision.extra columns naming the survivor of every dropped document (``of`` >= 0): its input
    shard (``duplicate_of_shard``, int32) and row (``duplicate_of_row``, int64), as the exact and
    MinHash dedup selectors record them; -1 elsewhere."""
    shard = np.full(len(of), -1, dtype=np.int32)
    row = np.full(len(of), -1, dtype=np.int64)
    has = of >= 0
    shard[has] = np.searchsorted(scores.shard_offsets, of[has], side="right") - 1
    row[has] = np.asarray(scores["row"], dtype=np.int64)[of[has]]
    return {"duplicate_of_shard": shard, "duplicate_of_row": row}
