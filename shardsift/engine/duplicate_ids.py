"""The duplicate-id check as tasks: each shard's id hashes (from its scan file) go to range
partitions by their top bits, one task per partition finds the later occurrences of a hash, and
the driver holds only those (the documents a ``keep_first`` run drops), never a hash per document.

A later occurrence is one after the first in shard order, then row order: what a stable sort of
every shard's hashes, concatenated, finds.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..io import storage
from ..selectors.partition import group_order, partition_bits, partition_of
from . import workdir

BYTES_PER_ENTRY = 32  # a (hash, position) pair and its sort
BUDGET = 256 << 20    # what one partition task may hold


@dataclass
class IdTask:
    """One task of the check: ``split`` one shard's hashes, or ``find`` one partition's duplicates."""

    what: str
    index: int
    folder: str
    scan_paths: tuple
    offsets: tuple
    bits: int

    @property
    def label(self) -> str:
        return f"duplicate ids: {self.what} {self.index}"

    def path(self, what: str, index: int) -> str:
        return os.path.join(self.folder, f"{what}-{self.bits:02d}-{index:05d}.npz")


def run_id_task(task: IdTask) -> None:
    out = task.path(task.what, task.index)
    if storage.exists(out):
        return None
    if task.what == "split":
        h = workdir.read_npz(task.scan_paths[task.index], ["id_hash"])["id_hash"]
        order, bounds = group_order(partition_of(h, task.bits), 1 << task.bits)
        pos = order + task.offsets[task.index]
        parts = {}
        for p in range(1 << task.bits):
            take = order[bounds[p]:bounds[p + 1]]
            parts[f"h{p}"], parts[f"i{p}"] = h[take], pos[bounds[p]:bounds[p + 1]]
        workdir.write_npz(out, parts)
        return None
    p = task.index
    parts = [workdir.read_npz(task.path("split", j), [f"h{p}", f"i{p}"]) for j in range(len(task.scan_paths))]
    h = np.concatenate([z[f"h{p}"] for z in parts])
    pos = np.concatenate([z[f"i{p}"] for z in parts])  # ascending: shards in order, rows in order
    del parts
    order = np.argsort(h, kind="stable")
    sh = h[order]
    later = np.zeros(len(h), bool)
    later[1:] = sh[1:] == sh[:-1]
    workdir.write_npz(out, {"dup": np.sort(pos[order[later]])})
    return None


def later_occurrences(executor, progress, scan_paths: list[str], folder: str,
                      workers: int) -> tuple[np.ndarray, np.ndarray]:
    """Global positions (shard order, then row) of every id hash seen before, ascending; and each
    shard's first global position (one more than the shards)."""
    sizes = [workdir.npz_headers(p)["id_hash"][0][0] for p in scan_paths]
    offsets = tuple(int(x) for x in np.concatenate([[0], np.cumsum(sizes)]))
    bits = partition_bits(offsets[-1], BYTES_PER_ENTRY, BUDGET, workers)
    storage.makedirs(folder)
    common = (folder, tuple(scan_paths), offsets, bits)
    executor.map(run_id_task, [IdTask("split", j, *common) for j in range(len(scan_paths))],
                 desc="duplicate ids", progress=progress)
    finds = [IdTask("find", p, *common) for p in range(1 << bits)]
    executor.map(run_id_task, finds, desc="duplicate ids", progress=progress)
    dups = [workdir.read_npz(t.path("find", t.index))["dup"] for t in finds]
    return (np.sort(np.concatenate(dups)) if dups else np.zeros(0, np.int64)), np.asarray(offsets, np.int64)
