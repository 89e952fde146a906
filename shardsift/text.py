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


# The code points Arrow's utf8_trim_whitespace trims: Python's str.isspace() set, all below U+3001
# (tests/test_dedup.py checks the two agree on every code point).
TRIM_CODE_POINTS = np.array([c for c in range(0x3001) if chr(c).isspace()], dtype=np.int64)


@nb.njit(cache=True, nogil=True, inline="always")
def _trimmed(data, i, hi, trim_cp):
    """Whether the code point starting at data[i] (valid UTF-8, before hi) is one of ``trim_cp``,
    and its byte length."""
    cp = np.int64(data[i])
    w = 1 if cp < 0x80 else (2 if cp < 0xE0 else (3 if cp < 0xF0 else 4))
    if i + w > hi:
        return False, 1
    if w > 1:
        cp &= 0x1F if w == 2 else (0x0F if w == 3 else 0x07)
        for k in range(1, w):
            cp = (cp << 6) | (np.int64(data[i + k]) & 0x3F)
    for c in trim_cp:
        if c == cp:
            return True, w
    return False, w


@nb.njit(cache=True, nogil=True, inline="always")
def _fnv_step(b, h, m, run, val, ws):
    """One byte of a normalized FNV-1a, without a branch: (hash, length, in a run) after byte b
    (``val``: each byte's normalized value; ``ws``: 1 for the bytes whose runs collapse to one;
    such a byte right after another leaves the hash and length as they were)."""
    w = ws[b]
    skip = w & run
    x = (h ^ val[b]) * np.uint64(0x100000001B3)
    return (h if skip else x), m + 1 - skip, w


@nb.njit(cache=True, nogil=True, inline="always")
def _fnv_normalized(data, lo, hi, val, ws, h, m, run):
    """_fnv_step over data[lo:hi], continuing from (hash, length, in a run)."""
    for i in range(lo, hi):
        h, m, run = _fnv_step(data[i], h, m, run, val, ws)
    return h, m, run


@nb.njit(cache=True, nogil=True)
def _normalized_hashes(starts, ends, data, lowercase, collapse, trim_cp):
    """The FNV-1a hash (mixed by mix64) and the byte length of each string as exact_dedup
    normalizes it, without writing the normalized text: ASCII A-Z lowered (``lowercase``; other
    letters were lowered before, by Arrow), and with ``collapse`` every run of RE2's ``\\s`` (tab,
    newline, form feed, carriage return, space) one space and the ends trimmed of the code points
    in ``trim_cp``, as ``utf8_trim_whitespace(replace_substring_regex(t, "\\s+", " "))`` does.
    Trimming first and collapsing after gives the same bytes: a collapsed run is a space, itself
    trimmed. Without either, the plain hash of the bytes (columns.hash_strings).

    FNV-1a is one multiply chain per string, so two strings are hashed side by side (twice the
    bytes per cycle), each step without a branch (_fnv_step)."""
    n = starts.shape[0]
    out = np.empty(n, dtype=np.uint64)
    size = np.empty(n, dtype=np.int64)
    lo = starts.copy()
    hi = ends.copy()
    if collapse:
        for d in range(n):
            a, z = lo[d], hi[d]
            while a < z:
                t, w = _trimmed(data, a, z, trim_cp)
                if not t:
                    break
                a += w
            while z > a:
                j = z - 1
                while j > a and (data[j] & 0xC0) == 0x80:  # back to the last code point's lead byte
                    j -= 1
                t, w = _trimmed(data, j, z, trim_cp)
                if not t:
                    break
                z = j
            lo[d], hi[d] = a, z
    val = np.arange(256).astype(np.uint64)
    ws = np.zeros(256, dtype=np.int64)
    if lowercase:
        val[65:91] += np.uint64(32)
    if collapse:
        for b in (9, 10, 12, 13, 32):
            ws[b] = 1
            val[b] = np.uint64(32)
    offset = np.uint64(0xCBF29CE484222325)
    for d in range(0, n - 1, 2):
        i, j = lo[d], lo[d + 1]
        k = min(hi[d] - i, hi[d + 1] - j)
        h1, m1, r1 = offset, 0, 0
        h2, m2, r2 = offset, 0, 0
        for t in range(k):
            h1, m1, r1 = _fnv_step(data[i + t], h1, m1, r1, val, ws)
            h2, m2, r2 = _fnv_step(data[j + t], h2, m2, r2, val, ws)
        h1, m1, r1 = _fnv_normalized(data, i + k, hi[d], val, ws, h1, m1, r1)
        h2, m2, r2 = _fnv_normalized(data, j + k, hi[d + 1], val, ws, h2, m2, r2)
        out[d], size[d] = _mix64(h1), m1
        out[d + 1], size[d + 1] = _mix64(h2), m2
    if n % 2:
        h, m, r = _fnv_normalized(data, lo[n - 1], hi[n - 1], val, ws, offset, 0, 0)
        out[n - 1], size[n - 1] = _mix64(h), m
    return out, size
