"""Verification and clustering of ``minhash_dedup``'s candidates: exact Jaccard of two documents'
sorted 32-bit shingle fingerprint sets, union-find (the smallest position is the root), and the
per-band loop that joins a bucket's members only when their Jaccard reaches the threshold, so
LSH false positives never chain unrelated documents into one cluster."""
from __future__ import annotations

import numba as nb
import numpy as np

from ...text import _mix64


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
