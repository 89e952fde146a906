"""Shingles of ``minhash_dedup``: the byte-table word tokenizer, word and character n-gram hashes,
and the sorted 32-bit fingerprint sets the verification compares.

Words are hashed as :func:`shardsift.text.tokenize` hashes them (FNV-1a over the word's bytes,
ASCII lowercased, then mix64), but split on every Unicode whitespace code point (Python's
``str.split()`` set): the texts reach the kernels through
:func:`shardsift.selectors.normalize.prepared_spans`, which lowercases the documents with a
non-ASCII byte in Arrow (after NFKC with ``nfkc``) and overwrites their Unicode whitespace with
ASCII spaces, and the byte tables take the ASCII separators 0x1C-0x1F for whitespace too. Every
kernel works on the Arrow string buffers: no Python object per document.
"""
from __future__ import annotations

import functools

import numba as nb
import numpy as np

from ...text import _mix64
from ..normalize import ASCII_SPACES, prepared_spans

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


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


def _byte_classes() -> np.ndarray:
    """0 whitespace, 1 word byte, 2 ASCII punctuation: the classes of text.tokenize, as a table,
    with the ASCII separators 0x1C-0x1F whitespace too (as ``str.split()`` has them)."""
    cls = np.full(256, 2, dtype=np.uint8)
    for b in range(256):
        if b in ASCII_SPACES:
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
    """Hash the words of the bytes data[lo:hi] into ``tok`` as text.tokenize does (mode "word", or
    "whitespace" with keep_punct: see _word_tables; the bytes 0x1C-0x1F also separate words here);
    returns how many. ``tok`` holds
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
    """Character (code point) n-gram hashes of the normalized bytes (prepared_spans): ASCII letters
    lowered, whitespace runs -> one space, leading/trailing whitespace dropped, ASCII punctuation
    dropped when strip_punct."""
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
            if b == 32 or (9 <= b <= 13) or (28 <= b <= 31):
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
            if 65 <= b <= 90:
                b += 32
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


def _word_args(texts, ngram: int, strip_punctuation: bool, rows=None, nfkc: bool = False) -> tuple:
    """The leading arguments every word-shingle kernel takes: the prepared text's spans and bytes
    (prepared_spans; of texts[rows] when given), the word byte tables (_word_tables), the n-gram
    multipliers and n."""
    return (*prepared_spans(texts, rows, nfkc=nfkc), *_word_tables(not strip_punctuation),
            _shingle_multipliers(ngram), ngram)


def shingle_hashes(texts, *, shingle: str = "word", ngram: int = 5, strip_punctuation: bool = True,
                   nfkc: bool = False):
    """(hashes uint64[S], offsets int64[n+1]) of every document's shingles (with repeats)."""
    if shingle == "char":
        return _char_shingles(*prepared_spans(texts, nfkc=nfkc), ngram, strip_punctuation)
    return _word_shingles(*_word_args(texts, ngram, strip_punctuation, nfkc=nfkc))


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
