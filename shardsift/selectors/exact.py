"""``exact_dedup``: exact duplicate removal across all shards, by one 64-bit hash (plus the byte
length) of each document's normalized text. The score hashes the normalized text in one compiled
pass over the UTF-8 bytes without writing it; ``normalize()`` is the same text as Arrow computes it
(the tests compare the two on every option)."""
from __future__ import annotations

import numba as nb
import numpy as np
import pyarrow as pa

from ..api import Decision, Param, Selector
from ..text import _mix64
from .exact_sharded import sharded_plan
from .keep_policy import KeepPolicy, duplicate_of, size_histogram, survivors
from .normalize import ASCII_SPACES, prepared_spans

# Python's str.isspace() set (what str.split() splits on), in RE2's syntax
_SPACE_RUN = r"[\s\x0b\x1c-\x1f\x85\p{Z}]+"


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
def _normalized_hashes(starts, ends, data, val, ws, collapse):
    """The FNV-1a hash (mixed by mix64) and the byte length of each string as exact_dedup
    normalizes it, without writing the normalized text. ``val`` gives each byte's value (ASCII
    A-Z lowered when lowercasing; other letters were lowered before, by Arrow); with ``collapse``
    both ends are trimmed of the bytes ``ws`` marks (ASCII whitespace: Unicode whitespace was
    overwritten with spaces before, normalize.prepared_spans) and every run of them inside is one
    space, as ``" ".join(text.split())``. Without either, the plain hash of the bytes
    (columns.hash_strings).

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
            while a < z and ws[data[a]]:
                a += 1
            while z > a and ws[data[z - 1]]:
                z -= 1
            lo[d], hi[d] = a, z
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


def _byte_tables(lowercase: bool, collapse: bool) -> tuple[np.ndarray, np.ndarray]:
    """(val, ws) of _normalized_hashes: each byte's value (A-Z lowered with ``lowercase``; with
    ``collapse`` every ASCII whitespace byte a space) and 1 for the whitespace bytes that collapse."""
    val = np.arange(256).astype(np.uint64)
    ws = np.zeros(256, dtype=np.int64)
    if lowercase:
        val[65:91] += np.uint64(32)
    if collapse:
        for b in ASCII_SPACES:
            ws[b] = 1
            val[b] = np.uint64(32)
    return val, ws


class ExactDedup(KeepPolicy, Selector):
    """Exact duplicate removal across all shards: one 64-bit hash (plus length) of normalized text."""

    name = "exact_dedup"
    scope = "global"

    lowercase = Param(bool, True, "compare texts lowercased (Unicode)")
    collapse_whitespace = Param(bool, True, "treat every run of Unicode whitespace as one space and trim the ends")
    strip_punctuation = Param(bool, False, "drop punctuation (Unicode) before comparing")
    nfkc = Param(bool, False, "apply Unicode NFKC normalization (Arrow's utf8_normalize) first")
    keep = Param(str, "first", "survivor of each group: first | longest | a numeric input column (largest)")

    def validate(self):
        self.check_keep()

    def normalize(self, texts):
        """The text documents are compared by (as Arrow computes it; score hashes it in one pass)."""
        import pyarrow.compute as pc  # imported when needed: ~0.045 CPU-s, which minhash_dedup's runs do without

        t = self._lowered_stripped(texts)
        if self.collapse_whitespace:
            t = pc.utf8_trim_whitespace(pc.replace_substring_regex(t, _SPACE_RUN, " "))
        return t

    def _lowered_stripped(self, texts):
        """normalize() up to its whitespace step: NFKC, Unicode-lowercased, punctuation dropped, as set."""
        import pyarrow.compute as pc

        t = texts
        if self.nfkc:
            t = pc.utf8_normalize(t, form="NFKC")
        if self.lowercase:
            t = pc.utf8_lower(t)
        if self.strip_punctuation:
            t = pc.replace_substring_regex(t, r"[\p{P}\p{S}]+", "")
        return t

    def normalized_hashes(self, texts) -> tuple[np.ndarray, np.ndarray]:
        """(hash, byte length) of each text's ``normalize()``: the values of ``hash_strings`` and
        ``binary_length`` on it (tests check), from one pass over the bytes that writes no
        normalized text (_normalized_hashes). Only documents with a non-ASCII byte are prepared
        first (normalize.prepared_spans: NFKC and lowercase by Arrow, Unicode whitespace made
        ASCII spaces), and ``strip_punctuation``'s regex stays Arrow's. Arrow's regex for the
        whitespace alone ran at ~57 MB/s on the pool."""
        if not isinstance(texts, (pa.Array, pa.ChunkedArray)):
            texts = pa.array(texts, pa.large_string())
        collapse = bool(self.collapse_whitespace)
        if self.strip_punctuation:
            starts, ends, data = prepared_spans(self._lowered_stripped(texts), lower_case=False, spaces=collapse)
        else:
            starts, ends, data = prepared_spans(texts, lower_case=bool(self.lowercase), spaces=collapse,
                                                nfkc=bool(self.nfkc))
        return _normalized_hashes(np.ascontiguousarray(starts, dtype=np.int64),
                                  np.ascontiguousarray(ends, dtype=np.int64), data,
                                  *_byte_tables(bool(self.lowercase), collapse), collapse)

    def score(self, docs):
        h, size = self.normalized_hashes(docs.text)
        return {"hash": h, "norm_bytes": size, **self.keep_scores(docs)}

    def decide(self, scores, ctx):
        n = len(scores)
        if n == 0:
            return Decision(keep=np.zeros(0, dtype=bool), metrics={"groups": 0, "docs_removed": 0})
        h, ln = scores["hash"], scores["norm_bytes"]
        order = np.lexsort((np.arange(n), ln, h))
        hs, ls = h[order], ln[order]
        new = np.ones(n, dtype=bool)
        new[1:] = (hs[1:] != hs[:-1]) | (ls[1:] != ls[:-1])
        group_first = order[np.flatnonzero(new)]  # the first position of each group (stable order)
        gid = np.cumsum(new) - 1
        cluster = np.empty(n, dtype=np.int64)
        cluster[order] = group_first[gid]
        size = np.bincount(cluster, minlength=n)
        keep = survivors(cluster, self.keep, scores)
        sizes = size[size >= 2]
        size = size[cluster]
        metrics = {"groups": len(sizes), "docs_in_groups": int(sizes.sum()),
                   "docs_removed": int((~keep).sum()), "largest_group": int(sizes.max()) if len(sizes) else 0,
                   "group_sizes": size_histogram(sizes), "index_bytes_per_doc": 16 + 24}
        return Decision(keep=keep, reason="exact_duplicate", score=size.astype(np.float64),
                        extra={"cluster": cluster, "cluster_size": size.astype(np.int64),
                               **duplicate_of(cluster, size, keep, scores["row"], scores.shard_offsets)},
                        metrics=metrics)

    def decide_sharded(self, ctx):
        """The same decide as tasks (exact_sharded.py): the driver holds no per-document array."""
        return sharded_plan(self, ctx).run(ctx)
