"""``exact_dedup``'s decide as tasks (``decide_sharded``): the driver holds no per-document array.

1. ``keys``, one task per shard: each document's (hash, normalized length, position, row and the
   keep policy's value) to a range partition by the hash's top bits, so equal texts meet in one
   partition whichever shards they are in.
2. ``group``, one task per partition: its entries of every shard, in shard order, grouped by
   (hash, length); for each group of two or more, the cluster (its first document), the survivor
   and ``duplicate_of``.
3. The keep files, one task per shard, from the grouped documents that fall in it.

Only documents with a duplicate leave a partition task; the result is the driver decide's, byte
for byte (tests compare them).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..api import Decision
from .keep_policy import duplicate_of, size_histogram, survivors
from .partition import group_order, partition_bits, partition_of, shard_range

BYTES_PER_ENTRY = 64  # hash, length, position, row, value and the sort's order


@dataclass
class ShardedExact:
    """The plan of one sharded decide; its methods are the task functions (``fn(ctx, item)``)."""

    sel: object  # the ExactDedup
    bits: int

    @property
    def value_column(self) -> str | None:
        return {"first": None, "longest": "n_bytes"}.get(self.sel.keep, "keep_by")

    def keys(self, ctx, j: int) -> dict:
        nparts = 1 << self.bits
        lo, hi = int(ctx.shard_offsets[j]), int(ctx.shard_offsets[j + 1])
        col = self.value_column
        if hi == lo:
            z = {"hash": np.zeros(0, np.uint64), "norm_bytes": np.zeros(0, np.int64), "row": np.zeros(0, np.int64)}
            z |= {col: np.zeros(0, np.float64)} if col else {}
        else:
            z = ctx.scores(j, ["hash", "norm_bytes", "row"] + ([col] if col else []))
        order, bounds = group_order(partition_of(z["hash"], self.bits), nparts)
        pos = np.arange(lo, hi, dtype=np.int64)
        out = {}
        for p in range(nparts):
            take = order[bounds[p]:bounds[p + 1]]
            out |= {f"h{p}": z["hash"][take], f"l{p}": z["norm_bytes"][take], f"i{p}": pos[take],
                    f"r{p}": z["row"][take]}
            if col:
                out[f"v{p}"] = np.asarray(z[col][take], np.float64)
        return out

    def group(self, ctx, p: int) -> dict:
        """Partition p's groups of two or more: each member's position, cluster, size, survivor and
        ``duplicate_of``; and the group sizes."""
        keys = [f"h{p}", f"l{p}", f"i{p}", f"r{p}"] + ([f"v{p}"] if self.value_column else [])
        parts = [ctx.load(name, keys) for name in self.key_files]
        h, ln, pos, rows = (np.concatenate([z[k] for z in parts]) for k in keys[:4])
        value = np.concatenate([z[f"v{p}"] for z in parts]) if self.value_column else None
        del parts
        order = np.lexsort((pos, ln, h))
        hs, ls = h[order], ln[order]
        new = np.ones(len(order), bool)
        new[1:] = (hs[1:] != hs[:-1]) | (ls[1:] != ls[:-1])
        gid = np.cumsum(new) - 1
        size = np.bincount(gid)[gid] if len(gid) else np.zeros(0, np.int64)
        dup = order[size >= 2]  # members of groups of two or more, by group then position
        first = pos[order[np.flatnonzero(new)]]
        cluster = first[gid[size >= 2]]
        at = np.argsort(pos[dup], kind="stable")  # by position
        dup, cluster, size = dup[at], cluster[at], size[size >= 2][at].astype(np.int64)
        mine = pos[dup]
        keep = survivors(cluster, self.sel.keep, {"n_bytes": value[dup] if value is not None else None,
                                                  "keep_by": value[dup] if value is not None else None}, mine)
        return {"pos": mine, "cluster": cluster, "size": size, "keep": keep,
                **duplicate_of(cluster, size, keep, rows[dup], ctx.shard_offsets, mine),
                "sizes": np.unique(cluster, return_counts=True)[1]}

    def decision(self, ctx, j: int, cols: dict) -> Decision:
        lo, hi = int(ctx.shard_offsets[j]), int(ctx.shard_offsets[j + 1])
        n = hi - lo
        cluster = np.arange(lo, hi, dtype=np.int64)
        size = np.ones(n, np.int64)
        keep = np.ones(n, bool)
        dshard, drow = np.full(n, -1, np.int32), np.full(n, -1, np.int64)
        for name in self.group_files:
            z = ctx.load(name, ["pos", "cluster", "size", "keep", "duplicate_of_shard", "duplicate_of_row"])
            r = shard_range(z["pos"], ctx.shard_offsets, j)
            at = z["pos"][r] - lo
            cluster[at], size[at], keep[at] = z["cluster"][r], z["size"][r], z["keep"][r]
            dshard[at], drow[at] = z["duplicate_of_shard"][r], z["duplicate_of_row"][r]
        return Decision(keep=keep, reason="exact_duplicate", score=size.astype(np.float64),
                        extra={"cluster": cluster, "cluster_size": size, "duplicate_of_shard": dshard,
                               "duplicate_of_row": drow})

    def run(self, ctx) -> dict:
        self.key_files = ctx.tasks(self.keys, list(range(ctx.n_shards)), "keys")
        self.group_files = ctx.tasks(self.group, list(range(1 << self.bits)), "group")
        ctx.write_decisions(self.decision)
        sizes, removed = [], 0
        for name in self.group_files:  # arrays over the duplicates only
            z = ctx.load(name, ["sizes", "keep"])
            sizes.append(z["sizes"])
            removed += int((~z["keep"]).sum())
        sizes = np.concatenate(sizes)
        return {"groups": len(sizes), "docs_in_groups": int(sizes.sum()), "docs_removed": removed,
                "largest_group": int(sizes.max()) if len(sizes) else 0, "group_sizes": size_histogram(sizes),
                "decided_in": "tasks", "partitions": 1 << self.bits}


def sharded_plan(sel, ctx, budget: int = 512 << 20) -> ShardedExact:
    bits = partition_bits(int(ctx.shard_offsets[-1]), BYTES_PER_ENTRY, budget, ctx.workers)
    return ShardedExact(sel, bits)
