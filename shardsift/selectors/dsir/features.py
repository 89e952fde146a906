"""DSIR's feature space: hashed n-grams of word-punct tokens, and the per-document seeded noise.

A document is a bag of n-gram features (orders 1..n of lowercased word-punct tokens), each a stable
64-bit hash; a bucket is ``hash % buckets``. Everything runs in numba kernels over the Arrow string
buffers, with no Python object per document or token. The uniform and Gumbel noise of a document is a
hash of (seed, document id), so a selection does not depend on shard layout, batch size or workers.
"""
from __future__ import annotations

import numba as nb
import numpy as np

from ...columns import mix64
from ...text import lower, ngrams, tokenize

_NO_SALT = np.uint64(0)


@nb.njit(cache=True, nogil=True)
def _chunk_offsets(off, size):
    """Split every document's token range into pieces of ``size`` tokens (the last may be shorter)."""
    nd = off.shape[0] - 1
    total = 0
    for d in range(nd):
        m = off[d + 1] - off[d]
        total += (m + size - 1) // size
    out = np.empty(total + 1, dtype=np.int64)
    k = 0
    for d in range(nd):
        a = off[d]
        while a < off[d + 1]:
            out[k] = a
            k += 1
            a += size
    out[k] = off[nd]
    return out


@nb.njit(cache=True, nogil=True)
def segment_sums(hashes, off, table, buckets):
    """out[d, t] = sum over document d's features f of table[t, hash_f % buckets]."""
    nd = off.shape[0] - 1
    nt = table.shape[0]
    out = np.zeros((nd, nt), dtype=np.float64)
    b64 = np.uint64(buckets)
    for d in range(nd):
        for i in range(off[d], off[d + 1]):
            b = np.int64(hashes[i] % b64)
            for t in range(nt):
                out[d, t] += table[t, b]
    return out


@nb.njit(cache=True, nogil=True)
def bucket_counts(hashes, off, keep_doc, buckets):
    """Bucket histogram of the features of documents with keep_doc true."""
    counts = np.zeros(buckets, dtype=np.int64)
    b64 = np.uint64(buckets)
    for d in range(off.shape[0] - 1):
        if keep_doc[d]:
            for i in range(off[d], off[d + 1]):
                counts[np.int64(hashes[i] % b64)] += 1
    return counts


def featurize(text, *, ngram_order: int, tokenizer: str = "wordpunct", lowercase: bool = True,
              chunk_tokens: int | None = None):
    """Hashed n-gram features of a string array.

    Returns (feature_hashes uint64[F], feature_offsets int64[n+1], n_tokens int64[n]). With
    ``chunk_tokens`` the documents are cut into pieces of that many tokens first (n-grams do not
    cross a cut); offsets are still per document.
    """
    if lowercase:
        text = lower(text)
    tok, off = tokenize(text, tokenizer, lowercase)
    n_tokens = np.diff(off)
    if chunk_tokens:
        coff = _chunk_offsets(off, chunk_tokens)
        feats, foff = ngrams(tok, coff, ngram_order)
        # map chunk offsets back to document offsets: doc d's chunks are contiguous
        n_chunks = (n_tokens + chunk_tokens - 1) // chunk_tokens
        doc_first_chunk = np.concatenate([[0], np.cumsum(n_chunks)])
        return feats, foff[doc_first_chunk], n_tokens
    feats, foff = ngrams(tok, off, ngram_order)
    return feats, foff, n_tokens


def uniform_from_hash(idhash: np.ndarray, seed: int, salt: np.uint64 = _NO_SALT) -> np.ndarray:
    """A uniform number in (0, 1) per document from its id hash, the seed and a salt: stable anywhere."""
    with np.errstate(over="ignore"):
        s = np.uint64((int(seed) * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % (1 << 64))
        h = mix64(np.asarray(idhash, dtype=np.uint64) ^ s ^ salt)
    return ((h >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)


def gumbel_from_hash(idhash: np.ndarray, seed: int, salt: np.uint64 = _NO_SALT) -> np.ndarray:
    """Standard Gumbel noise per document, from ``uniform_from_hash``."""
    return -np.log(-np.log(uniform_from_hash(idhash, seed, salt)))
