"""Candidate buckets of ``minhash_dedup``: the LSH S-curve and band shape, and the grouping of
band keys into runs of equal keys (a hash table per cache-sized part; above the memory budget,
partition files in the work dir).

Every grouping gives exactly the runs a stable sort of the keys gives: runs in ascending key
order, members in input order, so the buckets and the clusters built from them do not depend on
whether a band was grouped in memory or spilled.
"""
from __future__ import annotations

import functools
import math
import os
import shutil

import numba as nb
import numpy as np

from ...text import _mix64


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


@nb.njit(cache=True, nogil=True, inline="always")
def _part(key, bits):
    """A key's range partition: its top ``bits`` bits (0 without partitions)."""
    return np.int64(key >> np.uint64(64 - bits)) if bits else np.int64(0)


@nb.njit(cache=True, nogil=True)
def _partition_keys(band_keys, active, joinable, whole, base, bits, t):
    """Range partitions of one shard's keys, by a counting sort in two passes: every band's keys of
    the ``active`` documents, then (as band b, when t = b + 1) the whole-signature hashes ``whole``
    of the ``joinable`` ones, each with its global position (row + ``base``). Returns (keys,
    positions, bounds): the entries of partition p and band j are [bounds[p*t + j],
    bounds[p*t + j + 1]), in input order."""
    b = band_keys.shape[1]
    bounds = np.zeros((1 << bits) * t + 1, dtype=np.int64)
    for j in range(b):
        for x in active:
            bounds[_part(band_keys[x, j], bits) * t + j + 1] += 1
    for q in range(joinable.shape[0]):
        bounds[_part(whole[q], bits) * t + b + 1] += 1
    for c in range(1, bounds.shape[0]):
        bounds[c] += bounds[c - 1]
    at = bounds[:-1].copy()
    keys = np.empty(bounds[-1], dtype=np.uint64)
    pos = np.empty(bounds[-1], dtype=np.int64)
    for j in range(b):
        for x in active:
            c = _part(band_keys[x, j], bits) * t + j
            keys[at[c]] = band_keys[x, j]
            pos[at[c]] = x + base
            at[c] += 1
    for q in range(joinable.shape[0]):
        c = _part(whole[q], bits) * t + b
        keys[at[c]] = whole[q]
        pos[at[c]] = joinable[q] + base
        at[c] += 1
    return keys, pos, bounds


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
