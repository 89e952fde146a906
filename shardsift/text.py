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


@nb.njit(cache=True, nogil=True)
def _is_space(b):
    return b == 32 or (9 <= b <= 13)


@nb.njit(cache=True, nogil=True)
def _is_word(b):
    return (
        (48 <= b <= 57)
        or (65 <= b <= 90)
        or (97 <= b <= 122)
        or b == 95
        or b >= 128
    )


_mix64 = nb.njit(cache=True, nogil=True)(mix64)


@nb.njit(cache=True, nogil=True)
def _tokenize(starts, ends, data, mode, lowercase):
    n = starts.shape[0]
    total = 0
    for d in range(n):
        total += ends[d] - starts[d]
    hashes = np.empty(total, dtype=np.uint64)
    doc_off = np.zeros(n + 1, dtype=np.int64)
    t = 0
    prime = np.uint64(0x100000001B3)
    for d in range(n):
        cls = -1  # class of the current token: 0 word, 1 punct, 2 non-space (whitespace mode)
        h = np.uint64(0xCBF29CE484222325)
        for i in range(starts[d], ends[d]):
            b = data[i]
            if _is_space(b):
                c = -1
            elif mode == 2:
                c = 2
            elif _is_word(b):
                c = 0
            elif mode == 1:
                c = -1
            else:
                c = 1
            if c != cls:
                if cls != -1:
                    hashes[t] = _mix64(h)
                    t += 1
                h = np.uint64(0xCBF29CE484222325)
                cls = c
            if c != -1:
                if lowercase and 65 <= b <= 90:
                    b = b + 32
                h = (h ^ np.uint64(b)) * prime
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
    return _tokenize(s, e, data, MODES[mode], lowercase)


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
    golden = np.uint64(0x9E3779B97F4A7C15)
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
                        h = _mix64(h * golden + tok[a + i + j])
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
