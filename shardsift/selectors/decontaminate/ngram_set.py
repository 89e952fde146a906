"""The evaluation sets' word n-grams as one sorted array of 64-bit hashes, and the lookup of a
batch's n-grams in it.

An n-gram's hash is a polynomial in its words' hashes (mod 2^64, an odd base), finished by
splitmix64 together with its length: a window rolls forward with one multiply-add, so a document
of m words costs about m hashes per length looked up. An evaluation text of at least ``n`` words
contributes all its n-grams; a shorter one (at least ``min_words``) contributes its whole text as
one n-gram of its own length k, and documents are then also looked up at length k.

The set is ``hashes`` (uint64, sorted, unique) and ``bench`` (uint16, the first benchmark each
hash came from): 10 bytes per n-gram, pickled with the fitted selector. Each process adds a
directory over the hashes' top bits (int32, at most 4 bytes per n-gram), so a lookup reads the
directory and then about one hash: 14 bytes per n-gram in a worker.
"""
from __future__ import annotations

import numba as nb
import numpy as np

from ...text import _mix64

_BASE = np.uint64(0x9E3779B97F4A7C15)   # odd: multiplication by it is invertible mod 2^64
_LENGTH = np.uint64(0xD6E8FEB86659FD93)
MERGE_EVERY = 1 << 19   # n-gram hashes gathered before they are made unique (bounds the fit's memory)


@nb.njit(cache=True, nogil=True)
def _power(k):
    p = np.uint64(1)
    for _ in range(k - 1):
        p = p * _BASE
    return p


@nb.njit(cache=True, nogil=True)
def _window(words, a, k):
    """The polynomial sum of words[a:a+k] (mod 2^64), before _finish."""
    h = np.uint64(0)
    for j in range(k):
        h = h * _BASE + words[a + j]
    return h


@nb.njit(cache=True, nogil=True)
def _finish(h, k):
    return _mix64(h ^ (np.uint64(k) * _LENGTH))


@nb.njit(cache=True, nogil=True)
def _eval_ngrams(hashes, offsets, n, min_words):
    """The n-gram hashes of evaluation texts: all n-grams of a text of >= n words, the whole text
    of one of min_words..n-1 words. Returns (hashes, per-text word count, per-text n-gram count)."""
    nd = offsets.shape[0] - 1
    total = 0
    for d in range(nd):
        m = offsets[d + 1] - offsets[d]
        if m >= n:
            total += m - n + 1
        elif m >= min_words and m > 0:
            total += 1
    out = np.empty(total, dtype=np.uint64)
    per_text = np.zeros(nd, dtype=np.int64)
    top = _power(n)
    k = 0
    for d in range(nd):
        a = offsets[d]
        m = offsets[d + 1] - a
        if m >= n:
            h = _window(hashes, a, n)
            for i in range(m - n + 1):
                if i:
                    h = (h - hashes[a + i - 1] * top) * _BASE + hashes[a + i + n - 1]
                out[k] = _finish(h, n)
                k += 1
            per_text[d] = m - n + 1
        elif m >= min_words and m > 0:
            out[k] = _finish(_window(hashes, a, m), m)
            k += 1
            per_text[d] = 1
    return out, offsets[1:] - offsets[:-1], per_text


def sorted_unique(hashes: np.ndarray) -> np.ndarray:
    """The sorted distinct values, by a sort (NumPy's hash-based ``unique`` of uint64 is slower)."""
    out = hashes.copy()
    out.sort()
    if len(out) < 2:
        return out
    new = np.empty(len(out), dtype=bool)
    new[0] = True
    np.not_equal(out[1:], out[:-1], out=new[1:])
    return out[new]


def unique_merge(parts: list[np.ndarray]) -> np.ndarray:
    """The sorted unique hashes of several arrays."""
    if not parts:
        return np.zeros(0, np.uint64)
    out = np.concatenate(parts)
    out.sort()
    new = np.empty(len(out), dtype=bool)
    new[:1] = True
    np.not_equal(out[1:], out[:-1], out=new[1:])
    return out[new]


@nb.njit(cache=True, nogil=True)
def _merge(a, b):
    """The sorted union of two sorted unique arrays."""
    out = np.empty(a.shape[0] + b.shape[0], dtype=np.uint64)
    i = j = k = 0
    while i < a.shape[0] and j < b.shape[0]:
        if a[i] < b[j]:
            out[k] = a[i]
            i += 1
        elif b[j] < a[i]:
            out[k] = b[j]
            j += 1
        else:
            out[k] = a[i]
            i += 1
            j += 1
        k += 1
    while i < a.shape[0]:
        out[k] = a[i]
        i += 1
        k += 1
    while j < b.shape[0]:
        out[k] = b[j]
        j += 1
        k += 1
    return out[:k].copy()


class UniqueHashes:
    """Distinct hashes gathered batch by batch: each batch's sorted unique hashes wait in a list
    until they pass MERGE_EVERY, then are merged into one sorted array. Memory follows the
    distinct hashes (about twice them while merging), not the text read."""

    def __init__(self):
        self.done = np.zeros(0, np.uint64)
        self.pending: list[np.ndarray] = []
        self.waiting = 0

    def add(self, hashes: np.ndarray) -> None:
        self.pending.append(sorted_unique(hashes))
        self.waiting += len(self.pending[-1])
        if self.waiting > MERGE_EVERY:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            batch = unique_merge(self.pending)
            self.pending, self.waiting = [], 0
            self.done = _merge(self.done, batch)

    def result(self) -> np.ndarray:
        self._flush()
        return self.done


def combine(per_bench: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(hashes, bench): every benchmark's sorted unique hashes as one sorted unique array, each
    hash labelled with the first benchmark (in the given order) that has it."""
    if len(per_bench) == 1:
        return per_bench[0], np.zeros(len(per_bench[0]), dtype=np.uint16)
    hashes = np.concatenate(per_bench)
    order = np.argsort(hashes, kind="stable")   # equal hashes stay in benchmark order
    bench = np.repeat(np.arange(len(per_bench), dtype=np.uint16), [len(h) for h in per_bench])[order]
    hashes = hashes[order]
    del order
    first = np.ones(len(hashes), dtype=bool)
    first[1:] = hashes[1:] != hashes[:-1]
    return hashes[first], bench[first]


def directory(hashes: np.ndarray) -> tuple[np.ndarray, int]:
    """(dir, shift): the hashes whose top bits are p are hashes[dir[p]:dir[p+1]]; about one per
    bucket (2^bits <= len(hashes))."""
    bits = int(max(1, min(30, np.floor(np.log2(max(len(hashes), 2))))))
    shift = 64 - bits
    edges = np.arange(1 << bits, dtype=np.uint64) << np.uint64(shift)
    out = np.empty((1 << bits) + 1, dtype=np.int32 if len(hashes) < 2**31 else np.int64)
    out[:-1] = np.searchsorted(hashes, edges)
    out[-1] = len(hashes)
    return out, shift


@nb.njit(cache=True, nogil=True)
def _queries(hashes, offsets, lengths):
    """Every window's hash, per text, per length (in ``lengths`` order), per start position: the
    order _tally walks. A rolling polynomial: one multiply-add per window and length."""
    nd = offsets.shape[0] - 1
    total = 0
    for d in range(nd):
        m = offsets[d + 1] - offsets[d]
        for k in lengths:
            if m >= k:
                total += m - k + 1
    out = np.empty(total, dtype=np.uint64)
    short = np.empty(total, dtype=np.bool_)
    q = 0
    for d in range(nd):
        a = offsets[d]
        m = offsets[d + 1] - a
        for li in range(lengths.shape[0]):
            k = lengths[li]
            if m < k:
                continue
            top = _power(k)
            h = _window(hashes, a, k)
            for i in range(m - k + 1):
                if i:
                    h = (h - hashes[a + i - 1] * top) * _BASE + hashes[a + i + k - 1]
                out[q] = _finish(h, k)
                short[q] = li > 0
                q += 1
    return out, short


@nb.njit(cache=True, nogil=True)
def _lookup(queries, short, keys, dirs, shift, skeys, sdirs, sshift):
    """The set position of each query, or -1 (a short one's in the short texts' set, numbered
    after the n-grams): a short loop whose iterations do not depend on each other, so the
    processor keeps many of their cache misses in flight."""
    out = np.empty(queries.shape[0], dtype=np.int64)
    base = keys.shape[0]
    for i in range(queries.shape[0]):
        h = queries[i]
        f = -1
        if short[i]:
            p = np.int64(h >> np.uint64(sshift))
            for j in range(sdirs[p], sdirs[p + 1]):
                if skeys[j] == h:
                    f = base + j
        else:
            p = np.int64(h >> np.uint64(shift))
            for j in range(dirs[p], dirs[p + 1]):
                if keys[j] == h:
                    f = j
        out[i] = f
    return out


@nb.njit(cache=True, nogil=True)
def _tally(found, offsets, lengths):
    """Per text: the start positions where some window of the set begins (counted once), and
    the first one's word index, length and set position (the shortest length there)."""
    nd = offsets.shape[0] - 1
    count = np.zeros(nd, dtype=np.int64)
    first = np.full(nd, -1, dtype=np.int64)
    length = np.zeros(nd, dtype=np.int64)
    where = np.full(nd, -1, dtype=np.int64)
    longest = 0
    for d in range(nd):
        longest = max(longest, offsets[d + 1] - offsets[d])
    hit = np.zeros(longest + 1, dtype=np.bool_)
    q = 0
    for d in range(nd):
        a = offsets[d]
        m = offsets[d + 1] - a
        hit[:m] = False
        best = m
        for k in lengths:
            if m < k:
                continue
            for i in range(m - k + 1):
                j = found[q]
                q += 1
                if j >= 0:
                    if not hit[i]:
                        hit[i] = True
                        count[d] += 1
                    if i < best or (i == best and k < length[d]):
                        best = i
                        first[d] = a + i
                        length[d] = k
                        where[d] = j
    return count, first, length, where


class NgramSet:
    """The fitted set: the n-grams' sorted unique hashes and their benchmark, the same for the
    short texts (a set of its own: small, so the lookups at their lengths stay in cache), the
    short lengths. Looked up by :meth:`match` through per-process directories (not pickled)."""

    def __init__(self, hashes: np.ndarray, bench: np.ndarray, short_hashes: np.ndarray,
                 short_bench: np.ndarray, short: np.ndarray, n: int):
        self.hashes, self.bench = hashes, bench
        self.short_hashes, self.short_bench = short_hashes, short_bench
        self.short = short            # bool[n + 1]: lengths k < n of short evaluation texts
        self.n = n
        self._dirs = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_dirs"] = None
        return state

    def __len__(self) -> int:
        return len(self.hashes) + len(self.short_hashes)

    @property
    def nbytes(self) -> int:
        return int(self.hashes.nbytes + self.bench.nbytes + self.short_hashes.nbytes + self.short_bench.nbytes)

    def match(self, words_hashes: np.ndarray, offsets: np.ndarray):
        """(count, first word, length, benchmark index) per text; benchmark -1 where none."""
        if self._dirs is None:
            self._dirs = (*directory(self.hashes), *directory(self.short_hashes))
        lengths = np.array([self.n, *np.flatnonzero(self.short[:self.n])], dtype=np.int64)
        queries, short = _queries(words_hashes, offsets, lengths)
        found = _lookup(queries, short, self.hashes, *self._dirs[:2], self.short_hashes, *self._dirs[2:])
        del queries, short
        count, first, length, where = _tally(found, offsets, lengths)
        base = len(self.hashes)
        bench = np.full(len(where), -1, dtype=np.int64)
        long_hit, short_hit = (where >= 0) & (where < base), where >= base
        bench[long_hit] = self.bench[where[long_hit]]
        bench[short_hit] = self.short_bench[where[short_hit] - base]
        return count, first, length, bench
