"""DSIR's bag-of-n-grams estimator: bucket histograms of a corpus, smoothed log distributions, the
log importance weights, the KL figure of a selection, and the estimator file.

A document's log importance weight is ``sum over its feature occurrences f of log p_target(bucket f)
- log p_raw(bucket f)``, a segmented sum of a per-bucket log-ratio table over its features (no
per-document count vectors). The functions given to ``map_shards`` are module-level so they pickle.
"""
from __future__ import annotations

import json
import os

import numpy as np

from ...columns import hash_strings
from ...errors import DataError
from .features import bucket_counts, featurize, segment_sums, uniform_from_hash

ESTIMATOR_FILE = "dsir_estimator.npz"
FORMAT = 1
FIT_SALT = np.uint64(0x5DEECE66D1F2B3C5)      # raw-fit token budget subsample
FEATURE_KEYS = ("buckets", "ngrams", "tokenizer", "lowercase")   # what the estimator's feature space is


def log_probs(counts: np.ndarray, smoothing: float) -> np.ndarray:
    """Additively smoothed log distribution over the last axis: log((c + a) / (N + a B))."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum(axis=-1, keepdims=True)
    return np.log(counts + smoothing) - np.log(total + smoothing * counts.shape[-1])


def kl(p_log: np.ndarray, q_log: np.ndarray) -> float:
    """KL(p || q) in nats from log probabilities."""
    p = np.exp(p_log)
    return float(np.sum(p * (p_log - q_log)))


def log_weights(text, log_ratio: np.ndarray, *, buckets: int, ngram_order: int, tokenizer: str,
                lowercase: bool, power: float = 0.0, norm_length: float = 1.0):
    """(log weights float64[n, targets], n_tokens, n_features) of a string array.

    ``log_ratio[t, b]`` is ``log p_target_t(b) - log p_raw(b)``. With ``power`` > 0 a weight is
    multiplied by ``(norm_length / n_features) ** power`` (the length normalisation)."""
    feats, foff, ntok = featurize(text, ngram_order=ngram_order, tokenizer=tokenizer, lowercase=lowercase)
    lw = segment_sums(feats, foff, log_ratio, buckets)
    nfeat = np.diff(foff)
    if power:
        lw *= ((norm_length / np.maximum(nfeat, 1)) ** power)[:, None]
    return lw, ntok, nfeat


def shard_words(batches) -> int:
    """Whitespace words of one shard (to turn a raw-token budget into a sampling rate)."""
    return int(sum(int(np.sum(b.n_words)) for b in batches))


def count_docs(batches, *, buckets, ngram_order, tokenizer, lowercase, chunk_tokens, min_tokens,
               rate=1.0, seed=0, return_lengths=False) -> dict:
    """Bucket histogram of a stream of Docs batches (one shard, or a target corpus).

    Documents shorter than ``min_tokens`` are left out; with ``rate < 1`` a stable hash of the
    document id picks a subsample of about that fraction (the raw-distribution token budget).
    """
    counts = np.zeros(buckets, dtype=np.int64)
    n_docs = n_tok = n_seen = 0
    lengths = []
    for docs in batches:
        n_seen += len(docs)
        if len(docs) == 0:
            continue
        feats, foff, ntok = featurize(docs.text, ngram_order=ngram_order, tokenizer=tokenizer,
                                      lowercase=lowercase, chunk_tokens=chunk_tokens)
        use = ntok >= max(min_tokens, 1)
        if rate < 1.0:
            use &= uniform_from_hash(hash_strings(docs.ids), seed, FIT_SALT) < rate
        counts += bucket_counts(feats, foff, use, buckets)
        n_docs += int(use.sum())
        n_tok += int(ntok[use].sum())
        if return_lengths:
            lengths.append(np.diff(foff)[use].astype(np.int32))
    out = {"counts": counts, "docs": n_docs, "tokens": n_tok, "seen": n_seen}
    if return_lengths:  # a histogram (distinct lengths, counts): its size does not grow with the shard
        out["lengths"] = np.unique(np.concatenate(lengths) if lengths else np.zeros(0, np.int32), return_counts=True)
    return out


def median_of_histograms(parts: list[tuple[np.ndarray, np.ndarray]]) -> float | None:
    """np.median of the values the (values, counts) histograms describe; None when they are empty."""
    values = np.concatenate([v for v, _ in parts]) if parts else np.zeros(0, np.int64)
    counts = np.concatenate([c for _, c in parts]) if parts else np.zeros(0, np.int64)
    values, at = np.unique(values, return_inverse=True)
    counts = np.bincount(at, weights=counts, minlength=len(values)).astype(np.int64)
    m = int(counts.sum())
    if m == 0:
        return None
    cum = np.cumsum(counts)
    lo = values[np.searchsorted(cum, (m - 1) // 2, side="right")]
    hi = values[np.searchsorted(cum, m // 2, side="right")]
    return (float(lo) + float(hi)) / 2


def count_subsets(batches, flags: np.ndarray, *, buckets, ngram_order, tokenizer, lowercase, chunk_tokens,
                  min_tokens=0) -> np.ndarray:
    """Bucket histograms (int64[subsets, buckets]) of several subsets of one stream of Docs, each
    document featurized once: ``flags[i, d]`` says whether the stream's d-th document is in subset i
    (the selection and its random baseline, read back in one pass). Each subset's row is what
    ``count_docs`` gives for its documents alone."""
    flags = np.asarray(flags, dtype=bool)
    counts = np.zeros((len(flags), buckets), dtype=np.int64)
    start = 0
    for docs in batches:
        if len(docs) == 0:
            continue
        feats, foff, ntok = featurize(docs.text, ngram_order=ngram_order, tokenizer=tokenizer,
                                      lowercase=lowercase, chunk_tokens=chunk_tokens)
        use = ntok >= max(min_tokens, 1)
        for i in range(len(flags)):
            counts[i] += bucket_counts(feats, foff, use & flags[i, start:start + len(docs)], buckets)
        start += len(docs)
    return counts


def save_estimator(path: str, *, target_counts, raw_counts, target_weights, meta: dict) -> None:
    """Write a fitted estimator (counts, feature settings, fit metrics) as one .npz, atomically."""
    tmp = path + ".tmp.npz"
    np.savez(tmp, target_counts=target_counts, raw_counts=raw_counts, target_weights=target_weights,
             meta=np.array(json.dumps({"format": FORMAT, **meta})))
    os.replace(tmp, path)


def load_estimator(path: str) -> tuple[str, dict, dict]:
    """(the file's path, its arrays, its meta) from an estimator file or the folder holding one."""
    if os.path.isdir(path):
        path = os.path.join(path, ESTIMATOR_FILE)
    if not os.path.isfile(path):
        raise DataError(f"dsir.estimator: {path} not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            arrays = {k: z[k] for k in ("target_counts", "raw_counts", "target_weights")}
    except Exception as err:  # noqa: BLE001 - any unreadable file is one data error
        raise DataError(f"dsir.estimator: {path} is not a DSIR estimator ({err})") from None
    if meta.get("format") != FORMAT:
        raise DataError(f"dsir.estimator: {path} has format {meta.get('format')}, expected {FORMAT}")
    return path, arrays, meta
