"""MinHash signatures and band keys of ``minhash_dedup``.

``h_i(x) = ((a_i * x + b_i) mod 2^64) >> 32`` (multiply-add-shift) or ``(a_i * x + b_i) mod p``
with p the Mersenne prime 2^61 - 1 (exact 122-bit products folded modulo p), minimum over a
document's shingles, for ``bands * rows`` seeded permutations; or one permutation hashing with
optimal densification (``one_permutation``, the default): one hash per shingle picks its bin and
its value, each bin keeps its minimum, and an empty bin takes the value of the first filled bin
on its own seeded probe sequence (Shrivastava, "Optimal Densification for Fast and Accurate
Minwise Hashing", ICML 2017): each value still collides with probability J for two sets of
Jaccard J, at one multiply per shingle instead of one per shingle and permutation. A signature
depends only on the text and the seed, never on shard layout or worker count. Each band of
``rows`` values is hashed to one 64-bit band key; only the band keys leave the score step.
"""
from __future__ import annotations

import numba as nb
import numpy as np

from ...text import _mix64
from .shingles import _doc_word_shingles, _word_buffer

MERSENNE61 = (1 << 61) - 1
_EMPTY32 = np.uint64(1 << 32)  # above every multiply_shift value


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
def _one_permutation(out, cur, a, b, sh, lo, hi):
    """The one-permutation signature of the shingles sh[lo:hi] into ``out`` (k = len(out) bins;
    ``cur`` scratch of >= k). h = a[0] * x + b[0] (mod 2^64) is a bijection of the uniform shingle
    hashes: its top 32 bits pick the bin (multiply-shift range reduction), its low 32 bits are the
    value, each bin keeps its least. Empty bin j then probes bins c_t = top32(b[j] + t * a[j]) * k
    >> 32, t = 1, 2, ... (a Weyl sequence: every bin is reached) and takes the first filled one's
    value; the probe sequences are the seed's, the same for every document. No shingle: all
    _EMPTY32. Returns how many bins the shingles filled (the signature's independent values)."""
    k = out.shape[0]
    uk = np.uint64(k)
    low = np.uint64(0xFFFFFFFF)
    s32 = np.uint64(32)
    for j in range(k):
        cur[j] = _EMPTY32
    a0, b0 = a[0], b[0]
    for s in range(lo, hi):
        h = a0 * sh[s] + b0
        j = ((h >> s32) * uk) >> s32
        cur[j] = min(cur[j], h & low)
    if hi == lo:
        out[:] = _EMPTY32
        return 0
    filled = 0
    for j in range(k):
        v = cur[j]
        filled += v != _EMPTY32
        x = b[j]
        while v == _EMPTY32:
            x += a[j]
            v = cur[((x >> s32) * uk) >> s32]
        out[j] = v
    return filled


@nb.njit(cache=True, nogil=True)
def _one_permutation_csr(sh, off, a, b):
    """One-permutation signatures of shingle hashes in CSR form (uint64[nd, len(a)]) and each
    document's filled bins (int16[nd])."""
    nd = off.shape[0] - 1
    out = np.empty((nd, a.shape[0]), dtype=np.uint64)
    filled = np.zeros(nd, dtype=np.int16)
    cur = np.empty(a.shape[0], dtype=np.uint64)
    for d in range(nd):
        filled[d] = _one_permutation(out[d], cur, a, b, sh, off[d], off[d + 1])
    return out, filled


@nb.njit(cache=True, nogil=True, inline="always")
def _doc_signature(out, data, lo, hi, val, msk, mult, n, tok, sh, ap, bp, cur, a, b, oph):
    """One document's signature (data[lo:hi]'s word shingles into ``sh``) into ``out``: one
    permutation hashing (``oph``, with a and b) or multiply-shift (minima over the padded
    permutations ap, bp in ``cur``); returns its shingle count and its independent values (the
    filled bins, or every permutation)."""
    ns = _doc_word_shingles(data, lo, hi, val, msk, mult, n, tok, sh)
    if oph:
        return ns, _one_permutation(out, cur, a, b, sh, 0, ns)
    cur[:] = _ALL64
    _min_full(cur, ap, bp, sh, 0, ns)
    _shift_out(out, cur, ns)
    return ns, out.shape[0] if ns else 0


@nb.njit(cache=True, nogil=True)
def _word_signatures(starts, ends, data, val, msk, mult, n, a, b, oph):
    """Word shingles and signatures (one permutation hashing with ``oph``, else multiply-shift),
    document by document: a document's shingle hashes (those of :func:`_doc_word_shingles`) go
    from a scratch buffer straight into the minima. Returns (uint64[nd, k] signatures, int32[nd]
    shingle counts with repeats)."""
    nd = starts.shape[0]
    tok = _word_buffer(starts, ends)
    sh = _word_buffer(starts, ends)
    out = np.empty((nd, a.shape[0]), dtype=np.uint64)
    count = np.zeros(nd, dtype=np.int32)
    ap, bp, cur = _padded(a, b)
    for d in range(nd):
        count[d] = _doc_signature(out[d], data, starts[d], ends[d], val, msk, mult, n, tok, sh, ap, bp, cur,
                                  a, b, oph)[0]
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
def _word_band_keys(starts, ends, data, val, msk, mult, n, a, b, oph, bands, rows):
    """_band_keys(_word_signatures(...)) without the signatures: each document's band keys are
    taken from its minima while they are in cache (the score keeps only the keys), no signature
    matrix (8 bytes per permutation and document) is written and read again. Returns
    (uint64[nd, bands] band keys, int32[nd] shingle counts with repeats, int16[nd] independent
    values of each signature: see _doc_signature)."""
    nd = starts.shape[0]
    tok = _word_buffer(starts, ends)
    sh = _word_buffer(starts, ends)
    out = np.empty((nd, bands), dtype=np.uint64)
    count = np.zeros(nd, dtype=np.int32)
    values = np.zeros(nd, dtype=np.int16)
    ap, bp, cur = _padded(a, b)
    one = np.empty(a.shape[0], dtype=np.uint64)
    for d in range(nd):
        count[d], values[d] = _doc_signature(one, data, starts[d], ends[d], val, msk, mult, n, tok, sh, ap, bp,
                                             cur, a, b, oph)
        _bands_of(out[d], one, bands, rows)
    return out, count, values


def permutations(num_perm: int, seed: int, family: str = "multiply_shift") -> tuple[np.ndarray, np.ndarray]:
    """The seeded (a, b) of the hash family. multiply_shift and one_permutation: a odd in
    [1, 2^64), b in [0, 2^64) (one_permutation hashes with the first pair, and bin j probes with
    the j-th); mersenne: a in [1, p), b in [0, p)."""
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
                       family: str = "one_permutation") -> np.ndarray:
    """uint64[n, num_perm] MinHash signatures of documents given as shingle hashes (CSR).
    A document with no shingle gets all values at the family's maximum (never a real minimum:
    2^32 for multiply_shift and one_permutation, p for mersenne)."""
    return signatures_and_values(sh, off, num_perm, seed, family)[0]


def signatures_and_values(sh: np.ndarray, off: np.ndarray, num_perm: int, seed: int,
                          family: str = "one_permutation") -> tuple[np.ndarray, np.ndarray]:
    """(minhash_signatures, int16[n] independent values of each signature): the bins its shingles
    filled (one_permutation), every permutation (the other families), 0 without shingles."""
    a, b = permutations(num_perm, seed, family)
    if family == "one_permutation":
        return _one_permutation_csr(sh, off, a, b)
    values = np.where(np.diff(off) > 0, num_perm, 0).astype(np.int16)
    if family == "mersenne":
        return _minhash(sh, off, a & np.uint64(0xFFFFFFFF), a >> np.uint64(32), b), values
    return _minhash_shift(sh, off, a, b), values
