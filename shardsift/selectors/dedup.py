"""Duplicate removal across all shards: ``minhash_dedup`` (near duplicates) and ``exact_dedup``.

``minhash_dedup`` in four steps, every one columnar or compiled:

1. shingles (score, per shard): word n-grams (5 by default) of the normalized text: Unicode
   lowercase (Arrow), whitespace runs collapsed, ASCII punctuation dropped unless
   ``strip_punctuation: false``; or character n-grams with ``shingle: char``. One 64-bit hash per
   shingle (words hashed as :func:`shardsift.text.tokenize` does). A document shorter than n
   tokens is one shingle (all of it).
2. signatures (score): ``h_i(x) = ((a_i * x + b_i) mod 2^64) >> 32`` (multiply-add-shift, the
   default ``hash_family``) or ``(a_i * x + b_i) mod p`` with p the Mersenne prime 2^61 - 1
   (exact 122-bit products folded modulo p), minimum over the shingles, for ``bands * rows``
   seeded permutations (``hash_seed``), in a numba kernel (fused with the word shingling for the
   default). A signature depends only on the text and the seed, never on shard layout or worker
   count. Each band of ``rows`` values is hashed to one 64-bit band key; only the band keys leave
   the shard (``8 * bands`` bytes/document).
3. candidates (decide, global): documents with identical signatures (all band keys equal) are
   joined without reading them when a pair below the threshold could share all b*r values only
   with probability t^(b*r) < 1e-9; then, for each band, the remaining documents with equal keys
   form a bucket (grouped with a hash table, in the order a stable sort of the keys gives). The
   grouping runs in memory when ``40 * documents`` bytes fit in ``memory_budget``; otherwise the
   band's (key, document) pairs are partitioned by the top bits of the key into files in the work
   dir and each partition is grouped alone (same buckets, same order, same clusters).
4. verification and clustering: the shingle sets of documents that share any bucket are read
   back (``ctx.read_texts``: each batch decoded once, the texts not copied out; the sets
   file-mapped from the work dir above the budget) and every candidate pair is checked with the
   exact Jaccard similarity of its shingle sets before union-find joins it (``verify: true``, the
   default), so LSH false positives never chain unrelated documents into one cluster. One
   survivor per cluster by ``keep``.

Bands and rows: by default the largest ``rows`` whose S-curve ``1 - (1 - t^rows)^bands`` (with
``bands = num_perm // rows``) is at least ``min_candidate_prob`` at the threshold t; for
t = 0.8, 128 permutations, 0.99: 21 bands x 6 rows, candidate probability 0.998 at J = 0.8.
"""
from __future__ import annotations

import functools
import math
import os
import re
import shutil

import numba as nb
import numpy as np
import pyarrow as pa

from ..api import Decision, Param, Selector
from ..columns import arrow_array, arrow_take
from ..errors import ConfigError, DataError
from ..text import _mix64, lower, spans

MERSENNE61 = (1 << 61) - 1
_P = np.uint64(MERSENNE61)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_EMPTY32 = np.uint64(1 << 32)  # above every multiply_shift value
_KEEP_BUILTIN = ("first", "longest")
_RE_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)


def parse_bytes(value, where: str) -> int:
    """``512MB`` / ``2GiB`` / 1000000 -> bytes (K/M/G/T are powers of 1024)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value <= 0:
            raise ConfigError(f"{where}: {value!r} must be positive")
        return int(value)
    m = _RE_SIZE.match(str(value))
    if not m:
        raise ConfigError(f"{where}: {value!r} is not a size like 512MB or 2GB")
    unit = (m.group(2) or "b")[0].lower()
    mult = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[unit]
    n = int(float(m.group(1)) * mult)
    if n <= 0:
        raise ConfigError(f"{where}: {value!r} must be positive")
    return n


def _fixed(fn):
    """Memoise a function of a few hashable parameters whose result (an array or a tuple of
    arrays) never changes: the score calls it once per batch (a seeded generator is ~50 us, the
    band search ~120 S-curve points), and each call gets its own copies to keep."""
    memo = {}

    @functools.wraps(fn)
    def get(*args):
        if args not in memo:
            memo[args] = fn(*args)
        val = memo[args]
        return tuple(v.copy() for v in val) if isinstance(val, tuple) else val.copy()

    return get


def candidate_probability(jaccard, bands: int, rows: int):
    """The LSH S-curve: probability that a pair with this Jaccard shares at least one band."""
    j = np.asarray(jaccard, dtype=np.float64)
    return 1.0 - (1.0 - j ** rows) ** bands


@functools.lru_cache(maxsize=64)
def choose_bands(threshold: float, num_perm: int, min_prob: float = 0.99) -> tuple[int, int]:
    """(bands, rows) for recall: the largest rows (fewest false candidates) whose S-curve is at
    least ``min_prob`` at the threshold, with bands = num_perm // rows."""
    for rows in range(num_perm, 0, -1):
        bands = num_perm // rows
        if candidate_probability(threshold, bands, rows) >= min_prob:
            return bands, rows
    return num_perm, 1


# -- shingles ----------------------------------------------------------------------------------

def _byte_classes() -> np.ndarray:
    """0 whitespace, 1 word byte, 2 ASCII punctuation: the classes of text.tokenize, as a table."""
    cls = np.full(256, 2, dtype=np.uint8)
    for b in range(256):
        if b == 32 or 9 <= b <= 13:
            cls[b] = 0
        elif 48 <= b <= 57 or 65 <= b <= 90 or 97 <= b <= 122 or b == 95 or b >= 128:
            cls[b] = 1
    return cls


_CLASSES = _byte_classes()


@_fixed
def _shingle_multipliers(n: int) -> np.ndarray:
    """Distinct odd 64-bit multipliers, one per position in an n-gram (fixed: part of the hash)."""
    rng = np.random.default_rng(0x5348494E)
    return rng.integers(0, 2**63, size=n, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
_LOWER = np.arange(256, dtype=np.uint8)
_LOWER[65:91] += 32
_FNV_PRIME = 0x100000001B3
_FNV_BASIS = 0xCBF29CE484222325
# the value whose FNV step from a zeroed state gives the basis: (0 ^ v) * prime == basis (mod 2^64)
_FNV_RESET = _FNV_BASIS * pow(_FNV_PRIME, -1, 1 << 64) % (1 << 64)


@_fixed
def _word_tables(keep_punct: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per byte value: an all-ones mask for word bytes (class 1, and class 2 when ``keep_punct``),
    zero otherwise, and what enters the hash: the byte (ASCII lowercased) in a word, outside one
    the value that turns the zeroed state into the FNV basis (so a reset is one and, one xor)."""
    word = (_CLASSES == 1) | (keep_punct & (_CLASSES == 2))
    val = np.where(word, _LOWER.astype(np.uint64), np.uint64(_FNV_RESET)).astype(np.uint64)
    msk = np.where(word, np.uint64(0xFFFFFFFFFFFFFFFF), np.uint64(0))
    return val, msk


@nb.njit(cache=True, nogil=True, inline="always")
def _fnv_run(data, lo, hi, val, msk, tok, m, h, prev):
    """One FNV-1a chain over data[lo:hi], branch-free (word boundaries are unpredictable): every
    byte stores the running state at tok[m] and m advances where a word ends (prev all-ones: the
    previous byte was a word byte); outside words the mask zeroes the state and val resets it.
    Returns (m, h, prev) to go on from."""
    prime = np.uint64(_FNV_PRIME)
    for i in range(lo, hi):
        c = data[i]
        mk = msk[c]
        tok[m] = h
        m -= prev & ~mk  # all-ones: m + 1
        h = ((h & mk) ^ val[c]) * prime
        prev = mk
    return m, h, prev


@nb.njit(cache=True, nogil=True, inline="always")
def _fnv_close(data, s, hi, val, msk, tok, m, h, prev):
    """End a chain at s: a word still open runs on to its last byte (past s, even past later
    split points); returns the chain's end in ``tok`` (one past its last token)."""
    e = s
    if prev:
        while e < hi and msk[data[e]]:
            e += np.uint64(1)
    m, h, prev = _fnv_run(data, s, e, val, msk, tok, m, h, prev)
    tok[m] = h
    return m - prev


@nb.njit(cache=True, nogil=True, inline="always")
def _doc_tokens(data, lo, hi, val, msk, tok):
    """Hash the words of the bytes data[lo:hi] into ``tok`` exactly as text.tokenize does (mode
    "word", or "whitespace" with keep_punct: see _word_tables); returns how many. ``tok`` holds
    at least (hi - lo + 1) // 2 + 2 values (_word_buffer).

    One FNV chain is latency-bound (one and, xor and multiply after another per byte), so a
    document of 64 bytes or more is cut in half and the halves hashed in lockstep: the first chain
    finishes the word that straddles the cut, the second drops its first token when the cut falls
    inside a word. Two chains, not four: with two the loop is already bound by instruction
    throughput, four spill registers and ran slower (Zen 5). The second half's tokens go to their
    own region of ``tok`` and are moved up behind the first's, then all are mixed."""
    basis = np.uint64(_FNV_BASIS)
    prime = np.uint64(_FNV_PRIME)
    zero = np.uint64(0)
    one = np.uint64(1)
    ulo = np.uint64(lo)
    uhi = np.uint64(hi)
    if hi - lo < 64:
        m, h, p = _fnv_run(data, ulo, uhi, val, msk, tok, zero, basis, zero)
        tok[m] = h
        m -= p
    else:
        q = np.uint64((hi - lo) >> 1)
        s = ulo + q
        r = (q + np.uint64(3)) >> one  # past the first half's last state: it has <= (q + 1) // 2 words
        m0, m1 = zero, r
        h0, h1 = basis, basis
        p0, p1 = zero, zero
        for i in range(ulo, s):
            c0 = data[i]
            c1 = data[i + q]
            k0 = msk[c0]
            k1 = msk[c1]
            tok[m0] = h0
            tok[m1] = h1
            m0 -= p0 & ~k0
            m1 -= p1 & ~k1
            h0 = ((h0 & k0) ^ val[c0]) * prime
            h1 = ((h1 & k1) ^ val[c1]) * prime
            p0 = k0
            p1 = k1
        m = _fnv_close(data, s, uhi, val, msk, tok, m0, h0, p0)
        m1, h1, p1 = _fnv_run(data, s + q, uhi, val, msk, tok, m1, h1, p1)
        tok[m1] = h1
        m1 -= p1
        for i in range(r + (msk[data[s - one]] & msk[data[s]] & one), m1):
            tok[m] = tok[i]
            m += one
    for i in range(m):
        tok[i] = _mix64(tok[i])
    return np.int64(m)


@nb.njit(cache=True, nogil=True, inline="always")
def _doc_word_shingles(data, lo, hi, val, msk, mult, n, tok, out):
    """The word n-gram hashes of the bytes data[lo:hi] into ``out`` (``tok`` is scratch); returns
    how many. The n-gram tok[s:s+w] hashes to mix64(w * golden + sum_j tok[s+j] * mult[j]), with
    distinct odd multipliers (order-sensitive, one multiply per token instead of text.ngrams'
    chain of mixers). A document of 0 < m < n tokens gives one shingle of all m."""
    m = _doc_tokens(data, lo, hi, val, msk, tok)
    w = min(n, m)
    ns = m - w + 1 if m > 0 else 0
    # the sum, term by term over all shingles (each loop vectorised; wrapping sums are
    # exact in any order), then the mix
    g = np.uint64(w) * _GOLDEN
    for s in range(ns):
        out[s] = g
    for j in range(w):
        mj = mult[j]
        for s in range(ns):
            out[s] += tok[s + j] * mj
    for s in range(ns):
        out[s] = _mix64(out[s])
    return ns


@nb.njit(cache=True, nogil=True)
def _word_buffer(starts, ends):
    """Scratch for one document's tokens or shingles: a word takes at least one byte plus a
    separator, so the longest document has at most (len + 1) // 2 of either; _doc_tokens needs
    two more (its last running state, the gap before its second half's region), plus margin."""
    m = 0
    for d in range(starts.shape[0]):
        m = max(m, ends[d] - starts[d])
    return np.empty((m + 1) // 2 + 4, dtype=np.uint64)


@nb.njit(cache=True, nogil=True)
def _word_shingles(starts, ends, data, val, msk, mult, n):
    """Word n-gram hashes of every document (CSR: hashes, offsets), see _doc_word_shingles."""
    nd = starts.shape[0]
    total = 0
    for d in range(nd):
        total += (ends[d] - starts[d] + 1) // 2 + 1
    out = np.empty(total, dtype=np.uint64)
    out_off = np.zeros(nd + 1, dtype=np.int64)
    tok = _word_buffer(starts, ends)
    k = 0
    for d in range(nd):
        k += _doc_word_shingles(data, starts[d], ends[d], val, msk, mult, n, tok, out[k:])
        out_off[d + 1] = k
    return out[:k].copy(), out_off


@nb.njit(cache=True, nogil=True)
def _char_shingles(starts, ends, data, n, strip_punct):
    """Character (code point) n-gram hashes of the normalized bytes: whitespace runs -> one space,
    leading/trailing whitespace dropped, ASCII punctuation dropped when strip_punct."""
    nd = starts.shape[0]
    total = 0
    for d in range(nd):
        total += ends[d] - starts[d]
    out = np.empty(total, dtype=np.uint64)
    out_off = np.zeros(nd + 1, dtype=np.int64)
    k = 0
    maxlen = 0
    for d in range(nd):
        maxlen = max(maxlen, ends[d] - starts[d])
    buf = np.empty(maxlen + 1, dtype=np.uint8)
    cps = np.empty(maxlen + 2, dtype=np.int64)
    prime = np.uint64(0x100000001B3)
    for d in range(nd):
        m = 0
        ncp = 0
        pending = False
        for i in range(starts[d], ends[d]):
            b = data[i]
            if b == 32 or (9 <= b <= 13):
                pending = m > 0
                continue
            if strip_punct and b < 128 and not (
                    (48 <= b <= 57) or (65 <= b <= 90) or (97 <= b <= 122) or b == 95):
                continue
            if pending:
                cps[ncp] = m
                ncp += 1
                buf[m] = 32
                m += 1
                pending = False
            if b < 0x80 or b >= 0xC0:  # not a UTF-8 continuation byte: a new code point
                cps[ncp] = m
                ncp += 1
            buf[m] = b
            m += 1
        cps[ncp] = m
        if ncp > 0:
            w = min(n, ncp)
            for i in range(ncp - w + 1):
                h = np.uint64(0xCBF29CE484222325)
                for j in range(cps[i], cps[i + w]):
                    h = (h ^ np.uint64(buf[j])) * prime
                out[k] = _mix64(h ^ np.uint64(w))
                k += 1
        out_off[d + 1] = k
    return out[:k].copy(), out_off


@nb.njit(cache=True, nogil=True)
def _ascii_docs(starts, ends, data):
    """Per document: no byte >= 128. Blocks of 256 bytes, OR-reduced (vectorised), stop at the
    first block with a high bit."""
    out = np.empty(starts.shape[0], dtype=np.bool_)
    for d in range(starts.shape[0]):
        ok = True
        for a in range(starts[d], ends[d], 256):
            blk = data[a:min(a + 256, ends[d])]
            acc = np.uint8(0)
            for i in range(blk.shape[0]):
                acc = acc | blk[i]
            if acc >= np.uint8(128):
                ok = False
                break
        out[d] = ok
    return out


def _lower_spans(texts, rows=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """spans() of the Unicode-lowercased texts (of ``texts[rows]`` when rows are given: their
    spans in the whole array's bytes, nothing copied), as the word kernels need them. The byte
    tables already lowercase ASCII, so only documents with a non-ASCII byte go through Arrow's
    utf8_lower (~0.4-0.9 ns/byte): they are taken, lowered and appended to a copy of the batch's
    bytes (a copy is ~0.1 ns/byte), their spans pointed there. When they hold over half the
    bytes, all the (selected) texts are lowered as before."""
    if not isinstance(texts, (pa.Array, pa.ChunkedArray)):
        texts = pa.array(texts, pa.large_string())
    starts, ends, data = spans(texts)
    if rows is not None:
        starts, ends = starts[rows], ends[rows]
    if len(starts) == 0:
        return starts, ends, data
    asc = _ascii_docs(starts, ends, data)
    if asc.all():
        return starts, ends, data
    sizes = ends - starts
    other = np.flatnonzero(~asc)
    if 2 * int(sizes[other].sum()) > int(sizes.sum()):
        return spans(lower(texts if rows is None else arrow_take(texts, arrow_array(rows))))
    ls, le, ld = spans(lower(arrow_take(texts, arrow_array(other if rows is None else rows[other]))))
    base, top = int(starts.min()), int(ends.max())
    buf = np.empty(top - base + int(le[-1] - ls[0]), dtype=np.uint8)
    buf[:top - base] = data[base:top]
    buf[top - base:] = ld[ls[0]:le[-1]]
    starts = starts - base
    ends = ends - base
    starts[other] = ls - ls[0] + (top - base)
    ends[other] = le - ls[0] + (top - base)
    return starts, ends, buf


def _word_args(texts, ngram: int, strip_punctuation: bool, rows=None) -> tuple:
    """The leading arguments every word-shingle kernel takes: the lowercased text's spans and
    bytes (_lower_spans; of texts[rows] when given), the word byte tables (_word_tables), the
    n-gram multipliers and n."""
    return (*_lower_spans(texts, rows), *_word_tables(not strip_punctuation), _shingle_multipliers(ngram), ngram)


def shingle_hashes(texts, *, shingle: str = "word", ngram: int = 5, strip_punctuation: bool = True):
    """(hashes uint64[S], offsets int64[n+1]) of every document's shingles (with repeats)."""
    if shingle == "char":
        return _char_shingles(*spans(lower(texts)), ngram, strip_punctuation)
    return _word_shingles(*_word_args(texts, ngram, strip_punctuation))


@nb.njit(cache=True, nogil=True)
def _sort_unique(src, m, tmp, counts, out, k, drop):
    """Write the sorted distinct values of src[:m] >> drop to out[k:]; returns the new end
    (drop = 32: the 32-bit fingerprints of the verification sets, equal high halves adjacent
    once sorted). The hashes (64-bit, or 32-bit fingerprints already) are uniform, so a bucket
    pass on the top bits (next power of two >= m) leaves them nearly sorted and an insertion sort
    finishes in linear time; values whose repeats defeat that (many shifts) fall back to a
    comparison sort. tmp (src's dtype) holds >= m values, counts >= 2^ceil(log2 m) + 1."""
    if m == 0:
        return k
    kb = 1
    while (1 << kb) < m:
        kb += 1
    shift = np.uint64(8 * src.itemsize - kb)
    for i in range((1 << kb) + 1):
        counts[i] = 0
    for i in range(m):
        counts[(src[i] >> shift) + np.uint64(1)] += 1
    for i in range(1 << kb):
        counts[i + 1] += counts[i]
    for i in range(m):
        bk = src[i] >> shift
        tmp[counts[bk]] = src[i]
        counts[bk] += 1
    shifts = 0
    for i in range(1, m):
        v = tmp[i]
        j = i - 1
        while j >= 0 and tmp[j] > v:
            tmp[j + 1] = tmp[j]
            j -= 1
        tmp[j + 1] = v
        shifts += i - 1 - j
        if shifts > 16 * m:
            tmp[:m] = np.sort(tmp[:m])
            break
    last = tmp[0] >> drop
    out[k] = last
    k += 1
    for i in range(1, m):
        v = tmp[i] >> drop
        if v != last:
            out[k] = v
            k += 1
            last = v
    return k


@nb.njit(cache=True, nogil=True)
def _scratch(maxlen, like):
    """_sort_unique's scratch for sets of up to ``maxlen`` values of ``like``'s dtype: (tmp, counts)."""
    bits = 1
    while (1 << bits) < maxlen:
        bits += 1
    return np.empty(max(maxlen, 1), dtype=like.dtype), np.zeros((1 << bits) + 1, dtype=np.int64)


@nb.njit(cache=True, nogil=True)
def _sorted_sets(sh, off, drop=0):
    """Sort and deduplicate each document's shingle hashes (>> drop); returns the compacted CSR."""
    nd = off.shape[0] - 1
    out = np.empty_like(sh)
    out_off = np.zeros(nd + 1, dtype=np.int64)
    maxlen = 1
    for d in range(nd):
        maxlen = max(maxlen, off[d + 1] - off[d])
    tmp, counts = _scratch(maxlen, sh)
    k = 0
    for d in range(nd):
        k = _sort_unique(sh[off[d]:off[d + 1]], off[d + 1] - off[d], tmp, counts, out, k, np.uint64(drop))
        out_off[d + 1] = k
    return out[:k].copy(), out_off


@nb.njit(cache=True, nogil=True)
def _sets_from_kept(fp, fp_off, pos, out, out_off, d0):
    """The verification sets of documents ``pos`` of one batch from the fingerprints its score
    kept (fp[fp_off[i]:fp_off[i + 1]]: document i's shingles' top 32 bits, in text order, repeats
    included), sorted and deduplicated into the CSR arrays from document slot d0 on: the same sets
    :func:`_word_sets_into` makes from the text. ``out`` may be ``fp`` itself when every set goes
    at or below where it lies (each is read whole before it is written)."""
    maxlen = 1
    for d in range(pos.shape[0]):
        maxlen = max(maxlen, fp_off[pos[d] + 1] - fp_off[pos[d]])
    tmp, counts = _scratch(maxlen, fp)
    k = out_off[d0]
    for d in range(pos.shape[0]):
        lo = fp_off[pos[d]]
        hi = fp_off[pos[d] + 1]
        k = _sort_unique(fp[lo:hi], hi - lo, tmp, counts, out, k, np.uint64(0))
        out_off[d0 + d + 1] = k


@nb.njit(cache=True, nogil=True)
def _word_sets_into(starts, ends, data, val, msk, mult, n, out, out_off, d0):
    """Sorted distinct 32-bit fingerprints (high halves) of each document's word shingles written
    straight into the CSR arrays (out: uint32, out_off) from document slot d0 on: the verification
    sets, with no intermediate copy."""
    nd = starts.shape[0]
    tok = _word_buffer(starts, ends)
    sh = _word_buffer(starts, ends)
    tmp, counts = _scratch(sh.shape[0], sh)
    k = out_off[d0]
    for d in range(nd):
        m = _doc_word_shingles(data, starts[d], ends[d], val, msk, mult, n, tok, sh)
        k = _sort_unique(sh, m, tmp, counts, out, k, np.uint64(32))
        out_off[d0 + d + 1] = k


# -- signatures --------------------------------------------------------------------------------

@nb.njit(cache=True, nogil=True)
def _minhash(sh, off, a_lo, a_hi, b):
    """MinHash signatures, ``hash_family: mersenne``: min over shingles x of (a*x + b) mod (2^61 - 1),
    exact.

    a = a_hi * 2^32 + a_lo and x = x_hi * 2^32 + x_lo (both < 2^61) give the 122-bit product as
    three 64-bit partial products, folded with 2^61 = 1 and 2^64 = 8 (mod p)."""
    nd = off.shape[0] - 1
    k = a_lo.shape[0]
    P = np.uint64(0x1FFFFFFFFFFFFFFF)
    M32 = np.uint64(0xFFFFFFFF)
    M29 = np.uint64(0x1FFFFFFF)
    out = np.empty((nd, k), dtype=np.uint64)
    cur = np.empty(k, dtype=np.uint64)
    for d in range(nd):
        cur[:] = P
        for s in range(off[d], off[d + 1]):
            x = sh[s]
            x = (x & P) + (x >> np.uint64(61))
            x = x - P if x >= P else x
            x_lo = x & M32
            x_hi = x >> np.uint64(32)
            for i in range(k):
                lo = a_lo[i] * x_lo
                mid = a_lo[i] * x_hi + a_hi[i] * x_lo
                hi = a_hi[i] * x_hi
                r = ((lo & P) + (lo >> np.uint64(61)) + (hi << np.uint64(3)) + (mid >> np.uint64(29))
                     + ((mid & M29) << np.uint64(32)) + b[i])
                r = (r & P) + (r >> np.uint64(61))
                r = r - P if r >= P else r
                cur[i] = min(cur[i], r)
        out[d, :] = cur
    return out


_ALL64 = np.uint64(0xFFFFFFFFFFFFFFFF)


@nb.njit(cache=True, nogil=True, inline="always")
def _min_full(cur, a, b, sh, lo, hi):
    """cur[i] = min(cur[i], min over x in sh[lo:hi] of (a[i] * x + b[i]) mod 2^64) for every
    permutation i: the multiply-shift values before their shift, as min(v >> 32) = (min v) >> 32
    (:func:`_shift_out` applies it once per document instead of once per shingle and permutation).
    The inner loop over the permutations is vectorised; eight shingles share each pass over cur,
    a and b (then four, then one for the rest), which keeps the loads and stores of those arrays
    off the critical path: eight at a time took 25% less time than four (20,000 documents of
    the bench), and the unconditional min store 2% less than a compare and masked store."""
    s = lo
    while s + 8 <= hi:
        x0, x1, x2, x3 = sh[s], sh[s + 1], sh[s + 2], sh[s + 3]
        x4, x5, x6, x7 = sh[s + 4], sh[s + 5], sh[s + 6], sh[s + 7]
        for i in range(a.shape[0]):
            ai, bi = a[i], b[i]
            v = min(min(min(ai * x0 + bi, ai * x1 + bi), min(ai * x2 + bi, ai * x3 + bi)),
                    min(min(ai * x4 + bi, ai * x5 + bi), min(ai * x6 + bi, ai * x7 + bi)))
            cur[i] = min(cur[i], v)
        s += 8
    if s + 4 <= hi:
        x0, x1, x2, x3 = sh[s], sh[s + 1], sh[s + 2], sh[s + 3]
        for i in range(a.shape[0]):
            ai, bi = a[i], b[i]
            v = min(min(ai * x0 + bi, ai * x1 + bi), min(ai * x2 + bi, ai * x3 + bi))
            cur[i] = min(cur[i], v)
        s += 4
    for t in range(s, hi):
        x = sh[t]
        for i in range(a.shape[0]):
            cur[i] = min(cur[i], a[i] * x + b[i])


@nb.njit(cache=True, nogil=True, inline="always")
def _shift_out(out, cur, ns):
    """A document's signature from its minima (the first ``len(out)`` of cur): their top 32 bits;
    no shingle: all _EMPTY32."""
    if ns == 0:
        out[:] = _EMPTY32
    else:
        for i in range(out.shape[0]):
            out[i] = cur[i] >> np.uint64(32)


@nb.njit(cache=True, nogil=True, inline="always")
def _padded(a, b):
    """(a, b, cur) with the permutations repeated up to a multiple of 8 (a vector of 8 lanes of
    64 bits): the minima of k = 8q + r permutations then take q + 1 vector passes and no scalar
    pass for the last r (126 = 15 * 8 + 6 took as long for those 6 as for 64 others). The extra
    lanes' minima are computed and never read."""
    k = a.shape[0]
    kp = (k + 7) // 8 * 8
    ap = np.empty(kp, dtype=np.uint64)
    bp = np.empty(kp, dtype=np.uint64)
    for i in range(kp):
        ap[i] = a[i % k]
        bp[i] = b[i % k]
    return ap, bp, np.empty(kp, dtype=np.uint64)


@nb.njit(cache=True, nogil=True)
def _minhash_shift(sh, off, a, b):
    """MinHash signatures, ``hash_family: multiply_shift`` (default), of shingle hashes in CSR form."""
    nd = off.shape[0] - 1
    out = np.empty((nd, a.shape[0]), dtype=np.uint64)
    ap, bp, cur = _padded(a, b)
    for d in range(nd):
        cur[:] = _ALL64
        _min_full(cur, ap, bp, sh, off[d], off[d + 1])
        _shift_out(out[d], cur, off[d + 1] - off[d])
    return out


@nb.njit(cache=True, nogil=True, inline="always")
def _doc_signature(out, data, lo, hi, val, msk, mult, n, tok, sh, ap, bp, cur):
    """One document's multiply-shift signature (data[lo:hi]'s word shingles into ``sh``, their
    minima over the padded permutations in ``cur``) into ``out``; returns its shingle count."""
    ns = _doc_word_shingles(data, lo, hi, val, msk, mult, n, tok, sh)
    cur[:] = _ALL64
    _min_full(cur, ap, bp, sh, 0, ns)
    _shift_out(out, cur, ns)
    return ns


@nb.njit(cache=True, nogil=True)
def _word_signatures(starts, ends, data, val, msk, mult, n, a, b):
    """Word shingles and multiply-shift signatures, document by document: a document's shingle
    hashes (those of :func:`_doc_word_shingles`) go from a scratch buffer straight into the
    permutations' minima. Returns (uint64[nd, k] signatures, int32[nd] shingle counts with repeats)."""
    nd = starts.shape[0]
    tok = _word_buffer(starts, ends)
    sh = _word_buffer(starts, ends)
    out = np.empty((nd, a.shape[0]), dtype=np.uint64)
    count = np.zeros(nd, dtype=np.int32)
    ap, bp, cur = _padded(a, b)
    for d in range(nd):
        count[d] = _doc_signature(out[d], data, starts[d], ends[d], val, msk, mult, n, tok, sh, ap, bp, cur)
    return out, count


@nb.njit(cache=True, nogil=True, inline="always")
def _bands_of(out, sig, bands, rows):
    """One document's band keys from its signature: band j hashes sig[j*rows:(j+1)*rows]
    (the loop over bands innermost: vectorised)."""
    for j in range(bands):
        out[j] = _mix64(np.uint64(j + 1) * np.uint64(0x9E3779B97F4A7C15))
    for r in range(rows):
        for j in range(bands):
            out[j] = _mix64(out[j] * np.uint64(0x9E3779B97F4A7C15) + sig[j * rows + r])


@nb.njit(cache=True, nogil=True)
def _band_keys(sig, bands, rows):
    nd = sig.shape[0]
    out = np.empty((nd, bands), dtype=np.uint64)
    for d in range(nd):
        _bands_of(out[d], sig[d], bands, rows)
    return out


@nb.njit(cache=True, nogil=True)
def _word_band_keys(starts, ends, data, val, msk, mult, n, a, b, bands, rows, fp):
    """_band_keys(_word_signatures(...)) without the signatures: each document's band keys are
    taken from its minima while they are in cache (the score keeps only the keys), no signature
    matrix (8 bytes per permutation and document) is written and read again. Returns
    (uint64[nd, bands] band keys, int32[nd] shingle counts with repeats). A non-empty ``fp``
    (room for _fp_room's count) also gets every shingle's top 32 bits, document after document."""
    nd = starts.shape[0]
    tok = _word_buffer(starts, ends)
    sh = _word_buffer(starts, ends)
    out = np.empty((nd, bands), dtype=np.uint64)
    count = np.zeros(nd, dtype=np.int32)
    ap, bp, cur = _padded(a, b)
    one = np.empty(a.shape[0], dtype=np.uint64)
    keep = fp.shape[0] > 0
    k = 0
    for d in range(nd):
        ns = _doc_signature(one, data, starts[d], ends[d], val, msk, mult, n, tok, sh, ap, bp, cur)
        count[d] = ns
        _bands_of(out[d], one, bands, rows)
        if keep:
            for i in range(ns):
                fp[k + i] = np.uint32(sh[i] >> np.uint64(32))
            k += ns
    return out, count


def _fp_room(starts: np.ndarray, ends: np.ndarray) -> int:
    """An upper bound on the shingles of documents data[starts:ends] (_word_buffer's per document)."""
    return int((ends - starts + 1).sum() // 2 + len(starts))


def permutations(num_perm: int, seed: int, family: str = "multiply_shift") -> tuple[np.ndarray, np.ndarray]:
    """The seeded (a, b) of the hash family. multiply_shift: a odd in [1, 2^64), b in [0, 2^64);
    mersenne: a in [1, p), b in [0, p)."""
    rng = np.random.default_rng([int(seed), 0x4D48])
    if family == "mersenne":
        a = rng.integers(1, MERSENNE61, size=num_perm, dtype=np.uint64)
        b = rng.integers(0, MERSENNE61, size=num_perm, dtype=np.uint64)
        return a, b
    a = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64) * np.uint64(2) + rng.integers(
        0, 2, size=num_perm, dtype=np.uint64)
    return a, b


def minhash_signatures(sh: np.ndarray, off: np.ndarray, num_perm: int, seed: int,
                       family: str = "multiply_shift") -> np.ndarray:
    """uint64[n, num_perm] MinHash signatures of documents given as shingle hashes (CSR).
    A document with no shingle gets all values at the family's maximum (never a real minimum:
    2^32 for multiply_shift, p for mersenne)."""
    a, b = permutations(num_perm, seed, family)
    if family == "mersenne":
        return _minhash(sh, off, a & np.uint64(0xFFFFFFFF), a >> np.uint64(32), b)
    return _minhash_shift(sh, off, a, b)


# -- candidate buckets -------------------------------------------------------------------------

@nb.njit(cache=True, nogil=True)
def _row_hash(band_keys, idx):
    """One 64-bit hash of all band keys of each listed document (its whole signature)."""
    out = np.empty(idx.shape[0], dtype=np.uint64)
    for t in range(idx.shape[0]):
        h = np.uint64(0x51ED270B27A0D4F1)
        for j in range(band_keys.shape[1]):
            h = _mix64(h * np.uint64(0x9E3779B97F4A7C15) + band_keys[idx[t], j])
        out[t] = h
    return out


@nb.njit(cache=True, nogil=True)
def _hash_runs(keys, idx, first, count, slot):
    """The runs of equal keys of length >= 2 (members, and run starts as CSR) that a stable sort of
    the keys gives, found by hashing instead of sorting: an open-addressing table (``first``/``count``: a power of two >= 2n slots; the top bits of the
    key's mix64 pick the slot, so keys that share their top bits, as the spill path's partitions
    do, or any other regular keys still spread) holds each key's first position and count; the keys
    seen twice or more (few, and distinct) are sorted to order the runs; one pass in input order
    drops each of their entries into its run. O(n) where argsort of every key is O(n log n), and
    most keys occur once. ``slot`` (n) is scratch; all three are int32 below 2^31 entries."""
    n = keys.shape[0]
    size = first.shape[0]
    bits = 0
    while (1 << bits) < size:
        bits += 1
    mask = size - 1
    shift = np.uint64(64 - bits)
    nmulti = 0
    for i in range(n):
        k = keys[i]
        s = np.int64(_mix64(k) >> shift) if bits else np.int64(0)
        while count[s] != 0 and keys[first[s]] != k:
            s = (s + 1) & mask
        if count[s] == 0:
            first[s] = i
        count[s] += 1
        nmulti += count[s] == 2
        slot[i] = s
    mslot = np.empty(nmulti, dtype=np.int64)
    mkey = np.empty(nmulti, dtype=np.uint64)
    r = 0
    for s in range(size):
        if count[s] >= 2:
            mslot[r] = s
            mkey[r] = keys[first[s]]
            r += 1
        elif count[s] == 1:
            count[s] = -1  # a key seen once: no run
    order = np.argsort(mkey)  # distinct keys: every sort gives this order
    starts = np.empty(nmulti + 1, dtype=np.int64)
    m = 0
    for j in range(nmulti):
        s = mslot[order[j]]
        starts[j] = m
        m += count[s]
        count[s] = starts[j]  # from here on: the run's next free position
    starts[nmulti] = m
    members = np.empty(m, dtype=idx.dtype)
    for i in range(n):
        p = count[slot[i]]
        if p >= 0:
            members[p] = idx[i]
            count[slot[i]] = p + 1
    return members, starts


_PART_KEYS = 4096  # keys per partition _runs aims at: its grouping table (~64 KB) stays in L2


@nb.njit(cache=True, nogil=True)
def _group_parts(pk, pi, bounds, first, count, slot):
    """_hash_runs of each partition pk[bounds[p]:bounds[p + 1]] in turn, concatenated (CSR);
    first/count/slot are sized for the largest partition."""
    n = pk.shape[0]
    members = np.empty(n, dtype=pi.dtype)
    starts = np.empty(n + 1, dtype=np.int64)
    m = 0
    r = 0
    for p in range(bounds.shape[0] - 1):
        lo, hi = bounds[p], bounds[p + 1]
        if hi - lo < 2:
            continue
        size = 16
        while size < 2 * (hi - lo):
            size *= 2
        count[:size] = 0
        mm, ss = _hash_runs(pk[lo:hi], pi[lo:hi], first[:size], count[:size], slot[:hi - lo])
        members[m:m + mm.shape[0]] = mm
        for t in range(ss.shape[0] - 1):
            starts[r + t] = ss[t] + m
        r += ss.shape[0] - 1
        m += mm.shape[0]
    starts[r] = m
    return members[:m].copy(), starts[:r + 1].copy()


@nb.njit(cache=True, nogil=True)
def _runs(keys, idx):
    """Runs of equal keys of length >= 2 in ascending key order, members in input order (CSR),
    as _hash_runs gives them for all keys at once, but partitioned first: the (key, idx) pairs are
    split stably by the key's bits just below the prefix all keys share (the top bits, or the
    next ones within a spill partition) into parts of ~_PART_KEYS, so parts in order are in key
    order and each part's grouping table stays in cache (one table for 200,000 keys, 4 MB, took
    ~55 ns per key in cache misses; parts took ~35). Memory: 12 bytes per key for the copy plus
    the table and scratch of the largest part."""
    n = keys.shape[0]
    common = 0
    if n:
        diff = keys.min() ^ keys.max()
        while common < 64 and (diff >> np.uint64(63 - common)) & np.uint64(1) == 0:
            common += 1
    bits = 0
    while (n >> bits) > _PART_KEYS and bits < 16:
        bits += 1
    bits = min(bits, 64 - common)
    nparts = 1 << bits
    shift = np.uint64(64 - common - bits) if bits else np.uint64(0)
    pmask = np.uint64(nparts - 1)
    bounds = np.zeros(nparts + 1, dtype=np.int64)
    for i in range(n):
        bounds[((keys[i] >> shift) & pmask) + np.uint64(1)] += 1
    largest = 0
    for p in range(nparts):
        largest = max(largest, bounds[p + 1])
        bounds[p + 1] += bounds[p]
    pos = bounds[:nparts].copy()
    pk = np.empty_like(keys)
    pi = np.empty_like(idx)
    for i in range(n):
        part = (keys[i] >> shift) & pmask
        pk[pos[part]] = keys[i]
        pi[pos[part]] = idx[i]
        pos[part] += 1
    size = 16
    while size < 2 * largest:
        size *= 2
    if size < 2**31:
        return _group_parts(pk, pi, bounds, np.empty(size, np.int32), np.zeros(size, np.int32),
                            np.empty(max(largest, 1), np.int32))
    return _group_parts(pk, pi, bounds, np.empty(size, np.int64), np.zeros(size, np.int64),
                        np.empty(largest, np.int64))


def _band_runs_spilled(keys: np.ndarray, idx: np.ndarray, budget: int, folder: str, band: int):
    """The same runs as ``_runs`` but with ~budget bytes of memory: the (key, doc) pairs go to
    partition files by the top bits of the key (so equal keys meet in one partition and partitions
    in order are in key order), then each partition is grouped alone."""
    n = len(keys)
    per_entry = 40
    bits = max(1, math.ceil(math.log2(max(2.0, 2.0 * n * per_entry / budget))))
    bits = min(bits, 16)
    nparts = 1 << bits
    shift = np.uint64(64 - bits)
    chunk = max(1024, budget // per_entry)
    d = os.path.join(folder, f"band-{band:03d}")
    os.makedirs(d, exist_ok=True)
    fk = [os.path.join(d, f"k{p:05d}") for p in range(nparts)]
    fi = [os.path.join(d, f"i{p:05d}") for p in range(nparts)]
    used = set()
    for lo in range(0, n, chunk):
        k = np.ascontiguousarray(keys[lo:lo + chunk])
        i = idx[lo:lo + chunk]
        part = (k >> shift).astype(np.int64)
        order = np.argsort(part, kind="stable")
        bounds = np.searchsorted(part[order], np.arange(nparts + 1))
        ks, is_ = k[order], i[order]
        for p in np.flatnonzero(np.diff(bounds)):
            a, b = bounds[p], bounds[p + 1]
            used.add(int(p))
            # opened per write: a file handle per partition could exceed the process's limit
            with open(fk[p], "ab") as fh:
                fh.write(ks[a:b].tobytes())
            with open(fi[p], "ab") as fh:
                fh.write(is_[a:b].tobytes())
    members, starts = [], []
    total = 0
    for p in sorted(used):
        pk = np.fromfile(fk[p], dtype=np.uint64)
        pi = np.fromfile(fi[p], dtype=idx.dtype)
        m, s = _runs(pk, pi)
        if len(m):
            members.append(m)
            starts.append(s[:-1] + total)
            total += len(m)
    shutil.rmtree(d, ignore_errors=True)
    if not members:
        return np.zeros(0, idx.dtype), np.zeros(1, np.int64)
    return np.concatenate(members), np.concatenate(starts + [np.array([total], np.int64)])


# -- verification and union-find ---------------------------------------------------------------

@nb.njit(cache=True, nogil=True)
def _find(parent, x):
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


@nb.njit(cache=True, nogil=True)
def _union(parent, x, y):
    rx = _find(parent, x)
    ry = _find(parent, y)
    if rx == ry:
        return
    if rx < ry:
        parent[ry] = rx
    else:
        parent[rx] = ry


@nb.njit(cache=True, nogil=True)
def _jaccard(data, off, x, y, threshold):
    """Exact Jaccard of two sorted unique sets; -1.0 when the sizes alone rule out the threshold."""
    a0, a1 = off[x], off[x + 1]
    b0, b1 = off[y], off[y + 1]
    na = a1 - a0
    nb_ = b1 - b0
    if na == 0 or nb_ == 0:
        return 0.0
    if min(na, nb_) < threshold * max(na, nb_):
        return -1.0
    i, j, inter = a0, b0, 0
    while i < a1 and j < b1:
        u, v = data[i], data[j]
        if u == v:
            inter += 1
            i += 1
            j += 1
        elif u < v:
            i += 1
        else:
            j += 1
    return inter / (na + nb_ - inter)


@nb.njit(cache=True, nogil=True, inline="always")
def _refused(table, x, y, add):
    """Whether the pair (x, y) is in ``table``, a set of refused pairs (open addressing, a power of
    two of uint64 slots, 0 empty); with ``add``, put it in when absent. A full table (half its
    slots taken: ``table[0]`` counts them, slot 0 is never probed) takes no more."""
    key = (np.uint64(min(x, y)) << np.uint64(32)) | np.uint64(max(x, y) + 1)
    mask = np.uint64(table.shape[0] - 1)
    i = _mix64(key) & mask
    while True:
        if i == 0:
            i = np.uint64(1)
        v = table[i]
        if v == key:
            return True
        if v == 0:
            if add and table[0] < mask >> np.uint64(1):
                table[i] = key
                table[0] += np.uint64(1)
            return False
        i = (i + np.uint64(1)) & mask


@nb.njit(cache=True, nogil=True)
def _cluster_band(members, starts, parent, data, off, threshold, verify, reps_per_cluster, best, counts, refused):
    """Join the documents of each bucket of one band.

    With verify, each member is compared with representatives of the bucket's clusters seen so
    far (up to ``reps_per_cluster`` each, so a bucket of k copies costs O(k)), skipping those
    already in its cluster; a pair joins when its exact Jaccard >= threshold. A refused pair is
    remembered (``refused``, shared by the bands: see _refused) and not merged again when it
    shares another band: the same sets give the same Jaccard. counts: [checked, accepted,
    rejected by Jaccard, skipped as already joined, skipped as refused before]."""
    nruns = starts.shape[0] - 1
    reps = np.empty(members.shape[0], dtype=members.dtype)
    for r in range(nruns):
        a, b = starts[r], starts[r + 1]
        if not verify:
            for t in range(a + 1, b):
                if _find(parent, members[t]) != _find(parent, members[a]):
                    counts[1] += 1
                    _union(parent, members[t], members[a])
                else:
                    counts[3] += 1
            continue
        nrep = 0
        for t in range(a, b):
            m = members[t]
            for q in range(nrep):
                h = reps[q]
                if _find(parent, h) == _find(parent, m):
                    counts[3] += 1
                    continue
                if _refused(refused, m, h, False):
                    counts[4] += 1
                    continue
                counts[0] += 1
                jac = _jaccard(data, off, m, h, threshold)
                if jac >= threshold:
                    counts[1] += 1
                    _union(parent, m, h)
                    best[m] = max(best[m], jac)
                    best[h] = max(best[h], jac)
                else:
                    counts[2] += 1
                    _refused(refused, m, h, True)
            rm = _find(parent, m)
            same = 0
            for q in range(nrep):
                if _find(parent, reps[q]) == rm:
                    same += 1
            if same < reps_per_cluster:
                reps[nrep] = m
                nrep += 1


@nb.njit(cache=True, nogil=True)
def _roots(parent):
    n = parent.shape[0]
    out = np.empty(n, dtype=parent.dtype)
    for i in range(n):
        out[i] = _find(parent, i)
    return out


# -- survivors and metrics (shared by both selectors) ------------------------------------------

def size_histogram(sizes: np.ndarray) -> dict:
    """Cluster sizes (>= 2) in power-of-two bins: {"2": n, "3-4": n, "5-8": n, ...}."""
    out = {}
    sizes = np.asarray(sizes)
    sizes = sizes[sizes >= 2]
    if len(sizes) == 0:
        return out
    top = int(sizes.max())
    lo, hi = 2, 2
    while lo <= top:
        c = int(((sizes >= lo) & (sizes <= hi)).sum())
        if c:
            out[str(lo) if lo == hi else f"{lo}-{hi}"] = c
        lo, hi = hi + 1, hi * 2
    return out


def survivors(cluster: np.ndarray, keep: str, scores) -> np.ndarray:
    """One survivor per cluster: the first document, the longest (most bytes), or the largest value
    of a score column; ties go to the first. ``cluster`` ids are each cluster's first document."""
    n = len(cluster)
    pos = np.arange(n, dtype=cluster.dtype)
    if keep == "first":
        return cluster == pos
    if keep == "longest":
        value = np.asarray(scores["n_bytes"], dtype=np.float64)
    else:
        value = np.asarray(scores["keep_by"], dtype=np.float64)
    value = np.where(np.isnan(value), -np.inf, value)
    order = np.lexsort((pos, -value, cluster))
    first = np.ones(n, dtype=bool)
    first[1:] = cluster[order][1:] != cluster[order][:-1]
    mask = np.zeros(n, dtype=bool)
    mask[order[first]] = True
    return mask


def _keep_by(docs, column: str, where: str) -> np.ndarray:
    col = docs.column(column)
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type)):
        raise DataError(f"{where}.keep: column {column!r} of {docs.shard} is {col.type}, not numeric")
    return np.asarray(col.cast(pa.float64()).fill_null(float("nan")).to_numpy(zero_copy_only=False))


class _KeepPolicy:
    """``keep: first | longest | <numeric input column>``; a column is read at score time."""

    def _set_keep_columns(self):
        if self.keep not in _KEEP_BUILTIN:
            if not self.keep:
                raise ConfigError(f"{self.name}.keep: give first, longest or a numeric column name")
            self.columns = (self.keep,)
        else:
            self.columns = ()


# -- the selectors -----------------------------------------------------------------------------

class MinHashDedup(_KeepPolicy, Selector):
    """MinHash LSH near-duplicate removal, with exact Jaccard verification, across all shards."""

    name = "minhash_dedup"
    scope = "global"

    threshold = Param(float, 0.8, "Jaccard similarity of shingle sets at which two documents are duplicates",
                      gt=0, le=1)
    ngram = Param(int, 5, "shingle length in words (or characters with shingle: char)", ge=1)
    shingle = Param(str, "word", "shingles: word n-grams or character n-grams", choices=("word", "char"))
    strip_punctuation = Param(bool, True, "drop ASCII punctuation before shingling")
    num_perm = Param(int, 128, "MinHash permutations available to the bands", ge=2, le=4096)
    bands = Param(int, None, "LSH bands (default: from threshold and min_candidate_prob)", ge=1)
    rows = Param(int, None, "signature values per band (default: from threshold and min_candidate_prob)", ge=1)
    min_candidate_prob = Param(float, 0.99, "when choosing bands/rows: candidate probability wanted at "
                               "the threshold", gt=0, lt=1)
    verify = Param(bool, True, "check each candidate pair's exact Jaccard before joining clusters")
    keep = Param(str, "first", "survivor of each cluster: first | longest | a numeric input column (largest)")
    memory_budget = Param((str, int), "512MB", "memory for grouping one band's keys; more spills to the work dir")
    hash_seed = Param(int, 1, "seed of the MinHash permutations (fixed so signatures compare across runs)", ge=0)
    hash_family = Param(str, "multiply_shift", "MinHash permutations: multiply_shift ((a*x + b) mod 2^64, top "
                        "32 bits: one multiply) or mersenne ((a*x + b) mod 2^61-1, exact: ~2.5x slower)",
                        choices=("multiply_shift", "mersenne"))

    def validate(self):
        where = self.name
        if self.bands is not None and self.rows is not None and self.bands * self.rows > self.num_perm:
            raise ConfigError(f"{where}: bands * rows = {self.bands * self.rows} exceeds num_perm "
                              f"({self.num_perm})")
        for key in ("bands", "rows"):
            v = getattr(self, key)
            if v is not None and v > self.num_perm:
                raise ConfigError(f"{where}.{key}: {v} exceeds num_perm ({self.num_perm})")
        parse_bytes(self.memory_budget, f"{where}.memory_budget")
        self._set_keep_columns()

    # -- parameters derived once -----------------------------------------------------------
    def band_shape(self) -> tuple[int, int]:
        if self.bands is not None and self.rows is not None:
            return self.bands, self.rows
        if self.bands is not None:
            return self.bands, self.num_perm // self.bands
        if self.rows is not None:
            return self.num_perm // self.rows, self.rows
        return choose_bands(self.threshold, self.num_perm, self.min_candidate_prob)

    def shingles(self, texts):
        return shingle_hashes(texts, shingle=self.shingle, ngram=self.ngram,
                              strip_punctuation=self.strip_punctuation)

    def _word_kernel(self) -> bool:
        """Whether shingling and signatures run in one kernel (word shingles, multiply-shift)."""
        return self.shingle == "word" and self.hash_family == "multiply_shift"

    def _word_kernel_args(self, texts, k: int) -> tuple:
        """The arguments of _word_signatures / _word_band_keys for k permutations (bands * rows)."""
        return (*_word_args(texts, self.ngram, self.strip_punctuation), *permutations(k, self.hash_seed))

    def signatures(self, texts) -> np.ndarray:
        """uint64[n, bands*rows] signatures of a string array (for inspection and tests)."""
        return self.signatures_and_counts(texts)[0]

    def signatures_and_counts(self, texts) -> tuple[np.ndarray, np.ndarray]:
        """(uint64[n, bands*rows] signatures, int32[n] shingle counts with repeats) of a string array."""
        b, r = self.band_shape()
        if self._word_kernel():
            return _word_signatures(*self._word_kernel_args(texts, b * r))
        sh, off = self.shingles(texts)
        return minhash_signatures(sh, off, b * r, self.hash_seed, self.hash_family), np.diff(off).astype(np.int32)

    # -- score -------------------------------------------------------------------------------
    def score(self, docs):
        b, r = self.band_shape()
        if self._word_kernel():
            args = self._word_kernel_args(docs.text, b * r)
            keys, count = _word_band_keys(*args, b, r, np.zeros(0, dtype=np.uint32))
        else:
            sh, off = self.shingles(docs.text)
            keys = _band_keys(minhash_signatures(sh, off, b * r, self.hash_seed, self.hash_family), b, r)
            count = np.diff(off).astype(np.int32)
        out = {"bands": keys, "n_shingles": count}
        if self.keep not in _KEEP_BUILTIN:
            out["keep_by"] = _keep_by(docs, self.keep, self.name)
        return out

    # -- decide ------------------------------------------------------------------------------
    def decide(self, scores, ctx):
        n = len(scores)
        b, r = self.band_shape()
        if n == 0:  # nothing reached the stage (an emptied shard records no score columns)
            return Decision(keep=np.zeros(0, dtype=bool), metrics={"bands": b, "rows": r, "clusters": 0,
                                                                   "docs_removed": 0})
        budget = parse_bytes(self.memory_budget, f"{self.name}.memory_budget")
        band_keys = scores["bands"]
        idx_dtype = np.int32 if n < 2**31 - 1 else np.int64
        active = np.flatnonzero(scores["n_shingles"] > 0).astype(idx_dtype)
        spill = len(active) * 40 > budget
        spill_dir = os.path.join(ctx.work_dir, "minhash-spill") if spill else None

        def runs(keys, idx, tag):
            if spill:
                return _band_runs_spilled(keys, idx, budget, spill_dir, tag)
            return _runs(keys, idx)

        # 0. identical signatures: joined without reading the texts when a pair below the threshold
        #    could share all b*r values only with probability t^(b*r) (< 1e-9); one representative each
        rep = np.arange(n, dtype=idx_dtype)
        shortcut = self.threshold ** (b * r) < 1e-9 or not self.verify
        if shortcut and len(active):
            members, starts = runs(_row_hash(band_keys, active), active, b)
            lens = np.diff(starts)
            rep[members] = np.repeat(members[starts[:-1]], lens)
            reps = active[rep[active] == active]
        else:
            reps = active
        n_identical = int(len(active) - len(reps))

        # 1. candidate buckets per band among the representatives (members as global positions)
        per_band = []
        for j in range(b):
            per_band.append(runs(np.ascontiguousarray(band_keys[reps, j]), reps, j))
        if spill_dir:
            shutil.rmtree(spill_dir, ignore_errors=True)
        # candidates (every bucket member, ascending) and each one's slot: a mask and a position
        # map, O(n), where np.unique sorted all bucket entries
        is_cand = np.zeros(n, dtype=bool)
        for m, _ in per_band:
            is_cand[m] = True
        cand = np.flatnonzero(is_cand).astype(idx_dtype)
        del is_cand
        nc = len(cand)
        slot_dtype = np.int32 if nc < 2**31 - 1 else np.int64
        slot_of = np.zeros(n if nc else 0, dtype=slot_dtype)
        slot_of[cand] = np.arange(nc, dtype=slot_dtype)

        # 2. shingle sets of the candidates, read back from their shards
        sets_path, read_back, in_place = None, 0, False
        if self.verify and nc:
            data, off, sets_path, read_back, in_place = self._candidate_sets(scores, cand, ctx, budget)
        else:
            data, off = np.zeros(0, np.uint32), np.zeros(nc + 1, np.int64)

        # 3. verify and union, band by band
        parent = np.arange(nc, dtype=slot_dtype)
        best = np.zeros(nc, dtype=np.float32)
        counts = np.zeros(5, dtype=np.int64)
        # refused pairs, remembered across bands: a power of two of slots >= the candidates (8 B
        # each), taking up to half as many pairs; past that, a refused pair is merged again
        memo = self.verify and nc < 2**31 - 1  # the pair key packs two slots in 32 bits each
        refused = np.zeros(1 << max(10, int(nc - 1).bit_length()) if memo else 2, dtype=np.uint64)
        n_bucket_entries = 0
        for members, starts in per_band:
            slots = slot_of[members]
            n_bucket_entries += len(members)
            _cluster_band(slots, starts, parent, data, off, float(self.threshold), bool(self.verify), 4,
                          best, counts, refused)
        root = _roots(parent)

        # 4. clusters (id = the cluster's first document), survivors, sidecar columns
        del per_band, data, off, parent, slot_of
        if sets_path:
            os.remove(sets_path)
        rep_cluster = np.arange(n, dtype=idx_dtype)
        rep_cluster[cand] = cand[root]  # root slot = smallest slot = first representative
        if self.verify:
            sim = np.zeros(n, dtype=np.float32)
            sim[cand] = best
            sim[np.bincount(rep, minlength=n)[rep] >= 2] = 1.0  # has an identical-signature mate
        else:
            sim = np.full(n, np.nan, dtype=np.float32)
        cluster = rep_cluster[rep]
        del rep_cluster, rep, root
        size = np.bincount(cluster, minlength=n).astype(idx_dtype)
        cluster_size = size[cluster]
        keep = survivors(cluster, self.keep, scores)
        sizes = size[size >= 2]
        metrics = {
            "bands": b, "rows": r, "perms_used": b * r,
            "candidate_prob_at_threshold": round(float(candidate_probability(self.threshold, b, r)), 4),
            "clusters": len(sizes),
            "docs_in_clusters": int(sizes.sum()),
            "docs_removed": int((~keep).sum()),
            "largest_cluster": int(sizes.max()) if len(sizes) else 0,
            "cluster_sizes": size_histogram(sizes),
            "docs_without_shingles": int(n - len(active)),
            "identical_signature_docs": n_identical,
            "candidate_docs": int(nc),
            "bucket_entries": int(n_bucket_entries),
            "pairs_checked": int(counts[0]),
            "pairs_joined": int(counts[1]),
            "pairs_rejected": int(counts[2]),
            "pairs_rejected_before": int(counts[4]),
            "spilled": bool(spill),
            "candidate_shingles_on_disk": bool(sets_path),
            "shards_read_back": int(read_back),
            "candidate_shingles_in_place": bool(in_place),
            "index_bytes_per_doc": int(8 * b + 4 + 40 * (not spill)),
        }
        return Decision(keep=keep, reason="near_duplicate", score=sim,
                        extra={"cluster": cluster, "cluster_size": cluster_size}, metrics=metrics)

    def _candidate_sets(self, scores, cand, ctx, budget):
        """Sorted unique 32-bit shingle fingerprints (CSR, in ``cand`` order) of the candidate documents.
        32 bits, not the shingles' 64: half the memory (fresh memory is dear: ~1-3 ms per MB to
        fault in on the bench machine), and two documents of ~340 shingles share a spurious
        fingerprint with probability ~5e-5, which moves their Jaccard by ~1/340.

        Where the scores ran in this process they kept every document's fingerprints
        (``_KeptShingles``, through ``ctx.handoff``): the candidates' sets are made from those.
        When every shard's are there, in candidate order, each set is sorted into place in that
        same array, moved down over the documents that are not candidates: no other copy.

        Otherwise the sets go to one array of the size the score step counted (``n_shingles``):
        in memory when it fits ``budget``, else a file in the work dir mapped into memory (the OS
        pages it; resident memory stays bounded). A shard without kept fingerprints is read back
        in one pass (``ctx.read_texts``): each input batch is decoded once, its candidates read
        where they lie. Returns (data, off, file or None, shards read back, sorted in place)."""
        shard_of = np.searchsorted(scores.shard_offsets, cand, side="right") - 1
        rows = np.asarray(scores["row"])[cand]
        # shard_of ascends (cand does): each shard's candidates are one slice, from where it
        # changes (np.unique would import numpy.ma, ~0.01 CPU-s per process)
        cut = np.append(np.flatnonzero(np.diff(shard_of, prepend=-1)), len(shard_of))
        path = None
        total = int(np.asarray(scores["n_shingles"])[cand].sum())
        if total * 4 > budget:
            path = os.path.join(ctx.work_dir, "minhash-candidate-shingles.u32")
            data = np.memmap(path, dtype=np.uint32, mode="w+", shape=(max(total, 1),))
        else:
            data = np.empty(total, dtype=np.uint32)
        off = np.zeros(len(cand) + 1, dtype=np.int64)
        k = 0  # documents done; shards come in ascending order and cand is sorted: pieces are in cand order
        read_back = 0
        for lo, hi in zip(cut[:-1], cut[1:]):
            s = shard_of[lo]
            read_back += 1
            # one pass over the shard: each input batch decoded once, its candidates' texts read
            # where they lie (not copied out)
            for text, pos in ctx.read_texts(int(s), rows[lo:hi]):
                if self.shingle == "word":  # straight into place, one kernel call
                    _word_sets_into(*_word_args(text, self.ngram, self.strip_punctuation, pos), data, off, k)
                    k += len(pos)
                    continue
                if len(pos) != len(text):
                    text = arrow_take(text, arrow_array(pos))
                for sub in range(0, len(text), 1024):  # bounded transient arrays while shingling
                    sh, so = _sorted_sets(*self.shingles(text.slice(sub, 1024)), 32)
                    m = len(so) - 1
                    data[off[k]:off[k] + len(sh)] = sh
                    off[k + 1:k + 1 + m] = off[k] + so[1:]
                    k += m
        if k != len(cand):
            raise RuntimeError(f"{self.name}: read back {k} of {len(cand)} candidate documents")
        return data, off, path, read_back, False

class ExactDedup(_KeepPolicy, Selector):
    """Exact duplicate removal across all shards: one 64-bit hash (plus length) of normalized text."""

    name = "exact_dedup"
    scope = "global"

    lowercase = Param(bool, True, "compare texts lowercased (Unicode)")
    collapse_whitespace = Param(bool, True, "treat every whitespace run as one space and trim the ends")
    strip_punctuation = Param(bool, False, "drop punctuation (Unicode) before comparing")
    keep = Param(str, "first", "survivor of each group: first | longest | a numeric input column (largest)")

    def validate(self):
        self._set_keep_columns()

    def normalize(self, texts):
        """The text documents are compared by (as Arrow computes it; score hashes it in one pass)."""
        import pyarrow.compute as pc  # imported when needed: ~0.045 CPU-s, which minhash_dedup's runs do without

        t = self._lowered_stripped(texts)
        if self.collapse_whitespace:
            t = pc.utf8_trim_whitespace(pc.replace_substring_regex(t, r"\s+", " "))
        return t

    def _lowered_stripped(self, texts):
        """normalize() up to its whitespace step: Unicode-lowercased, punctuation dropped, as set."""
        import pyarrow.compute as pc

        t = texts
        if self.lowercase:
            t = pc.utf8_lower(t)
        if self.strip_punctuation:
            t = pc.replace_substring_regex(t, r"[\p{P}\p{S}]+", "")
        return t

    def normalized_hashes(self, texts) -> tuple[np.ndarray, np.ndarray]:
        """(hash, byte length) of each text's ``normalize()``: the values of ``hash_strings`` and
        ``binary_length`` on it (tests check), from one pass over the bytes that writes no
        normalized text (text._normalized_hashes). Only documents with a non-ASCII byte are
        lowercased by Arrow first (_lower_spans), and ``strip_punctuation``'s regex stays Arrow's.
        Arrow's regex for the whitespace alone ran at ~57 MB/s on the pool."""
        from ..text import TRIM_CODE_POINTS, _normalized_hashes

        if not isinstance(texts, (pa.Array, pa.ChunkedArray)):
            texts = pa.array(texts, pa.large_string())
        if self.strip_punctuation:
            starts, ends, data = spans(self._lowered_stripped(texts))
        elif self.lowercase:
            starts, ends, data = _lower_spans(texts)
        else:
            starts, ends, data = spans(texts)
        return _normalized_hashes(np.ascontiguousarray(starts, dtype=np.int64),
                                  np.ascontiguousarray(ends, dtype=np.int64), data, bool(self.lowercase),
                                  bool(self.collapse_whitespace), TRIM_CODE_POINTS)

    def score(self, docs):
        h, size = self.normalized_hashes(docs.text)
        out = {"hash": h, "norm_bytes": size}
        if self.keep not in _KEEP_BUILTIN:
            out["keep_by"] = _keep_by(docs, self.keep, self.name)
        return out

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
        metrics = {"groups": len(sizes), "docs_in_groups": int(sizes.sum()),
                   "docs_removed": int((~keep).sum()), "largest_group": int(sizes.max()) if len(sizes) else 0,
                   "group_sizes": size_histogram(sizes), "index_bytes_per_doc": 16 + 24}
        return Decision(keep=keep, reason="exact_duplicate",
                        score=size[cluster].astype(np.float64),
                        extra={"cluster": cluster, "cluster_size": size[cluster].astype(np.int64)},
                        metrics=metrics)
