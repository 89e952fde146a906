"""Columnar text kernels: whitespace word counts, tokenization and stable n-gram hashing.

Everything here works on the raw Arrow string buffers (int64 offsets + UTF-8 bytes) with numba
kernels (compiled on first use and cached on disk), so no Python object is created per document
or per token. Only selectors that tokenize import this module; the scan's word counts and id
hashes are in :mod:`shardsift.columns`. Hashes are FNV-1a 64 over the token's
bytes followed by a splitmix64 finaliser: stable across processes, machines and Python versions
(unlike the salted built-in ``hash``).

Tokenization modes:
- ``wordpunct``: runs of word bytes (ASCII letters, digits, ``_`` and every non-ASCII byte, so a
  UTF-8 letter stays inside its word) and runs of ASCII punctuation are separate tokens; the
  byte-level analogue of ``\\w+|[^\\w\\s]+``.
- ``word``: runs of word bytes only; punctuation separates words and is dropped.
- ``whitespace``: runs of non-whitespace bytes.
ASCII letters are lowercased in the kernel when ``lowercase`` is true; call :func:`lower` first
for full Unicode lowercasing (Arrow's vectorised ``utf8_lower``).
"""
from __future__ import annotations

import numba as nb
import numpy as np

from .columns import arrow_call, mix64, spans

MODES = {"wordpunct": 0, "word": 1, "whitespace": 2}

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def lower(arr):
    """Unicode lowercase, vectorised in Arrow."""
    return arrow_call("utf8_lower", arr)


def _byte_classes(mode: int) -> np.ndarray:
    """Each byte's class in ``mode``: 0 word (ASCII letters, digits, ``_`` and every byte of a
    non-ASCII character), 1 punctuation, 2 any non-space (whitespace mode), -1 a separator."""
    b = np.arange(256)
    space = (b == 32) | ((b >= 9) & (b <= 13))
    word = ((b >= 48) & (b <= 57)) | ((b >= 65) & (b <= 90)) | ((b >= 97) & (b <= 122)) | (b == 95) | (b >= 128)
    if mode == 2:
        cls = np.full(256, 2)
    else:
        cls = np.where(word, 0, -1 if mode == 1 else 1)
    return np.where(space, -1, cls).astype(np.int8)


_CLASSES = [_byte_classes(m) for m in range(3)]
_FOLD = [np.arange(256, dtype=np.uint64), np.arange(256, dtype=np.uint64)]  # as is; ASCII lowercased
_FOLD[1][65:91] += np.uint64(32)

_mix64 = nb.njit(cache=True, nogil=True)(mix64)


@nb.njit(cache=True, nogil=True)
def _tokenize(starts, ends, data, classes, fold):
    """FNV-1a of each token's bytes (``fold``: ASCII lowercasing or none), tokens being runs of
    bytes of one class (``classes``: a table per byte, so the loop has one lookup, no chain of
    comparisons)."""
    n = starts.shape[0]
    total = 0
    for d in range(n):
        total += ends[d] - starts[d]
    hashes = np.empty(total, dtype=np.uint64)
    doc_off = np.zeros(n + 1, dtype=np.int64)
    t = 0
    for d in range(n):
        cls = -1  # class of the current token
        h = _FNV_OFFSET
        for i in range(starts[d], ends[d]):
            b = data[i]
            c = classes[b]
            if c != cls:
                if cls != -1:
                    hashes[t] = _mix64(h)
                    t += 1
                h = _FNV_OFFSET
                cls = c
            if c != -1:
                h = (h ^ fold[b]) * _FNV_PRIME
        if cls != -1:
            hashes[t] = _mix64(h)
            t += 1
        doc_off[d + 1] = t
    return hashes[:t].copy(), doc_off


def tokenize(arr, mode: str = "wordpunct", lowercase: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Hash every token of every document.

    Returns (token_hashes uint64[T], doc_offsets int64[n+1]); document d's tokens are
    ``token_hashes[doc_offsets[d]:doc_offsets[d+1]]``.
    """
    s, e, data = spans(arr)
    return _tokenize(s, e, data, _CLASSES[MODES[mode]], _FOLD[int(bool(lowercase))])


@nb.njit(cache=True, nogil=True)
def _ngrams(tok, doc_off, n_min, n_max):
    nd = doc_off.shape[0] - 1
    total = 0
    for d in range(nd):
        m = doc_off[d + 1] - doc_off[d]
        for n in range(n_min, n_max + 1):
            if m >= n:
                total += m - n + 1
    out = np.empty(total, dtype=np.uint64)
    out_off = np.zeros(nd + 1, dtype=np.int64)
    k = 0
    for d in range(nd):
        a = doc_off[d]
        m = doc_off[d + 1] - a
        for n in range(n_min, n_max + 1):
            for i in range(m - n + 1):
                if n == 1:
                    out[k] = tok[a + i]
                else:
                    h = np.uint64(n)
                    for j in range(n):
                        h = _mix64(h * _GOLDEN + tok[a + i + j])
                    out[k] = h
                k += 1
        out_off[d + 1] = k
    return out, out_off


def ngrams(token_hashes: np.ndarray, doc_offsets: np.ndarray, n_max: int, n_min: int = 1):
    """Hashes of all n-grams of orders n_min..n_max per document (same layout as :func:`tokenize`).

    Order 1 keeps the token hash; higher orders chain the token hashes through a 64-bit mixer, so
    an n-gram's hash depends on its tokens and their order only.
    """
    if n_min < 1 or n_max < n_min:
        raise ValueError(f"bad n-gram orders {n_min}..{n_max}")
    return _ngrams(token_hashes, doc_offsets, n_min, n_max)
