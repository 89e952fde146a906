"""Range partitions of 64-bit hash keys, for decides as tasks (the dedup selectors, the duplicate-id
check): a key's top bits pick its partition, so the partitions in order are in key order and equal
keys always meet in one partition, whichever shard they come from. NumPy only: the engine's scan
path imports it and loads no numba."""
from __future__ import annotations

import math

import numpy as np


def partition_bits(entries: int, bytes_per_entry: int, budget: int, workers: int, most: int = 10) -> int:
    """Bits of the partition number: enough partitions that one partition's entries fit ``budget``
    and that every worker has two, at most 2**most."""
    want = max(2 * max(1, workers), math.ceil(entries * bytes_per_entry / max(1, budget)))
    return min(most, max(0, math.ceil(math.log2(want))))


def partition_of(keys: np.ndarray, bits: int) -> np.ndarray:
    """Each key's partition (int64): its top ``bits`` bits."""
    if bits == 0:
        return np.zeros(len(keys), np.int64)
    return (np.asarray(keys, np.uint64) >> np.uint64(64 - bits)).astype(np.int64)


def group_order(part: np.ndarray, nparts: int) -> tuple[np.ndarray, np.ndarray]:
    """(order, bounds): the entries of partition p are order[bounds[p]:bounds[p + 1]], in input
    order (a stable sort of partition numbers below 2**16: numpy's radix sort, O(n))."""
    part = np.asarray(part)
    order = np.argsort(part.astype(np.uint16) if nparts <= 1 << 16 else part, kind="stable")
    bounds = np.zeros(nparts + 1, np.int64)
    np.cumsum(np.bincount(part, minlength=nparts), out=bounds[1:])
    return order, bounds


def shard_range(pos: np.ndarray, offsets: np.ndarray, shard: int) -> slice:
    """The slice of ascending global positions ``pos`` that fall in ``shard``."""
    lo, hi = np.searchsorted(pos, [offsets[shard], offsets[shard + 1]])
    return slice(int(lo), int(hi))
