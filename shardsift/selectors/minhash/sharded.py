"""``minhash_dedup``'s decide as tasks (``decide_sharded``): the driver holds no per-document array.

1. ``keys``, one task per shard: each band's keys (and with the identical-signature shortcut, the
   whole signature's hash as one more "band") go to range partitions by their top bits.
2. ``group``, one task per partition: each band's keys of every shard, in shard order, grouped into
   buckets (``lsh._runs``: ascending key order, members in input order). Partitions in order are in
   key order, so the buckets are exactly those of the driver's decide.
3. ``candidates``, one task: identical-signature groups, each band's buckets among their
   representatives, the candidate documents.
4. ``sets``, one task per shard: the candidates' sorted shingle fingerprints, read back from the
   shard.
5. ``cluster``, one task: verification and union-find over the candidates only (the same kernel,
   the same band and bucket order as the driver's decide), survivors, ``duplicate_of``.
6. The keep files, one task per shard, from the clustered documents that fall in it.

Steps 3 and 5 hold state proportional to the candidates (the documents in some bucket), never to
the corpus; the result is the driver decide's, byte for byte (tests compare them).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...api import Decision
from ..keep_policy import duplicate_of, size_histogram, survivors
from ..partition import partition_bits, shard_range
from .lsh import _partition_keys, _row_hash, _runs, candidate_probability
from .verify import _cluster_band, _roots

BYTES_PER_ENTRY = 40  # a (key, position) pair grouped by lsh._runs, with its copy and table


@dataclass
class ShardedMinHash:
    """The plan of one sharded decide; its methods are the task functions (``fn(ctx, item)``)."""

    sel: object       # the MinHashDedup
    bands: int
    rows: int
    shortcut: bool    # identical signatures joined without reading texts
    bits: int         # partition bits
    n: int            # documents reaching the stage

    @property
    def columns(self) -> int:
        return self.bands + self.shortcut

    @property
    def idx_dtype(self):
        return np.int32 if self.n < 2**31 - 1 else np.int64

    # 1. keys -----------------------------------------------------------------------------------
    def keys(self, ctx, j: int) -> dict:
        """Shard j's band keys of its documents with shingles (and the whole-signature hashes of
        those the shortcut may join, as band ``bands``), by partition then band."""
        nparts, t = 1 << self.bits, self.columns
        lo, hi = int(ctx.shard_offsets[j]), int(ctx.shard_offsets[j + 1])
        if hi == lo:
            return {**{f"k{p}": np.zeros(0, np.uint64) for p in range(nparts)},
                    **{f"i{p}": np.zeros(0, np.int64) for p in range(nparts)},
                    "bounds": np.zeros(nparts * t + 1, np.int64), "active": np.int64(0)}
        cols = ctx.scores(j, ["bands", "n_shingles", "n_sig_values"])
        active = np.flatnonzero(cols["n_shingles"] > 0)
        band_keys = cols["bands"]
        joinable = self.sel.joinable(active, cols["n_sig_values"])
        k, i, bounds = _partition_keys(band_keys, active, joinable, _row_hash(band_keys, joinable), lo, self.bits, t)
        out = {"bounds": bounds, "active": np.int64(len(active))}
        for p in range(nparts):
            a, b = bounds[p * t], bounds[(p + 1) * t]
            out[f"k{p}"], out[f"i{p}"] = k[a:b], i[a:b]
        return out

    # 2. group ------------------------------------------------------------------------------------
    def group(self, ctx, p: int) -> dict:
        """Partition p's buckets of each band: members (global positions) and run starts."""
        t = self.columns
        pieces = [ctx.load(name, [f"k{p}", f"i{p}", "bounds"]) for name in self.key_files]
        out = {}
        for band in range(t):
            ks, ix = [], []
            for z in pieces:
                base = z["bounds"][p * t]
                a, b = z["bounds"][p * t + band] - base, z["bounds"][p * t + band + 1] - base
                ks.append(z[f"k{p}"][a:b])
                ix.append(z[f"i{p}"][a:b])
            out[f"m{band}"], out[f"s{band}"] = _runs(np.concatenate(ks), np.concatenate(ix))
        return out

    # 3. candidates -----------------------------------------------------------------------------
    def _band_runs(self, ctx, band: int) -> tuple[np.ndarray, np.ndarray]:
        """A band's buckets over all partitions, in key order (CSR)."""
        ms, ss, total = [], [], 0
        for name in self.group_files:
            z = ctx.load(name, [f"m{band}", f"s{band}"])
            ms.append(z[f"m{band}"])
            ss.append(z[f"s{band}"][:-1] + total)
            total += len(z[f"m{band}"])
        return np.concatenate(ms), np.concatenate(ss + [np.array([total], np.int64)])

    def candidates(self, ctx, _item) -> dict:
        """Identical-signature groups, each band's buckets among their representatives (as slots
        into the candidates), and the candidates: every document in a bucket, ascending."""
        out = {}
        if self.shortcut:
            members, starts = self._band_runs(ctx, self.bands)
            rep = np.repeat(members[starts[:-1]], np.diff(starts))
        else:
            members = rep = np.zeros(0, np.int64)
        out["ident"], out["ident_rep"] = members, rep
        hidden = np.sort(members[members != rep])  # non-representatives take no part in the buckets
        runs = []
        for band in range(self.bands):
            m, s = self._band_runs(ctx, band)
            if len(hidden):
                pos = np.minimum(np.searchsorted(hidden, m), len(hidden) - 1)
                alive = hidden[pos] != m
                left = np.add.reduceat(alive.astype(np.int64), s[:-1]) if len(m) else np.zeros(0, np.int64)
                ok = np.repeat(left >= 2, np.diff(s)) & alive
                m = m[ok]
                s = np.concatenate([[0], np.cumsum(left[left >= 2])]).astype(np.int64)
            runs.append((m, s))
        cand = np.unique(np.concatenate([m for m, _ in runs])) if runs else np.zeros(0, np.int64)
        for band, (m, s) in enumerate(runs):
            out[f"m{band}"], out[f"s{band}"] = np.searchsorted(cand, m), s
        out["cand"] = cand
        out["per_shard"] = np.diff(np.searchsorted(cand, ctx.shard_offsets))  # what the driver reads
        return out

    # 4. sets -------------------------------------------------------------------------------------
    def sets(self, ctx, j: int) -> dict:
        """Shard j's candidates' sorted 32-bit shingle fingerprints (CSR, in candidate order)."""
        cand = ctx.load("candidates-00000", ["cand"])["cand"]
        mine = cand[shard_range(cand, ctx.shard_offsets, j)] - ctx.shard_offsets[j]
        if not len(mine):
            return {"data": np.zeros(0, np.uint32), "off": np.zeros(1, np.int64)}
        cols = ctx.scores(j, ["row", "n_shingles"])
        rows = cols["row"][mine]
        data = np.empty(int(cols["n_shingles"][mine].sum()), np.uint32)
        off = np.zeros(len(mine) + 1, np.int64)
        k = self.sel.sets_into(ctx.read_texts(j, rows), data, off, 0)
        if k != len(mine):
            raise RuntimeError(f"{self.sel.name}: read back {k} of {len(mine)} candidate documents")
        return {"data": data[:off[-1]], "off": off}

    # 5. cluster ----------------------------------------------------------------------------------
    def cluster(self, ctx, _item) -> dict:
        c = ctx.load("candidates-00000")
        cand = c["cand"]
        nc = len(cand)
        slot_dtype = np.int32 if nc < 2**31 - 1 else np.int64
        verify = bool(self.sel.verify)
        if verify and nc:
            parts = [ctx.load(f"sets-{j:05d}") for j in range(ctx.n_shards)]
            sizes = np.concatenate([np.diff(z["off"]) for z in parts])
            data = np.concatenate([z["data"] for z in parts])
            off = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
            del parts
        else:
            data, off = np.zeros(0, np.uint32), np.zeros(nc + 1, np.int64)
        parent = np.arange(nc, dtype=slot_dtype)
        best = np.zeros(nc, dtype=np.float32)
        counts = np.zeros(5, dtype=np.int64)
        memo = verify and nc < 2**31 - 1
        refused = np.zeros(1 << max(10, int(nc - 1).bit_length()) if memo else 2, dtype=np.uint64)
        entries = 0
        for band in range(self.bands):
            slots = c[f"m{band}"].astype(slot_dtype)
            entries += len(slots)
            _cluster_band(slots, c[f"s{band}"], parent, data, off, float(self.sel.threshold), verify, 4,
                          best, counts, refused)
        root = _roots(parent)
        del data, off, parent

        # every document a bucket or an identical signature touched, and its cluster
        ident, ident_rep = c["ident"], c["ident_rep"]
        pos = np.union1d(cand, ident)
        rep = pos.copy()
        at = np.searchsorted(pos, ident)
        rep[at] = ident_rep
        cluster = rep.copy()
        in_cand = np.searchsorted(cand, rep)
        is_cand = in_cand < nc
        is_cand[is_cand] = cand[in_cand[is_cand]] == rep[is_cand]
        cluster[is_cand] = cand[root[in_cand[is_cand]]]
        if verify:
            sim = np.zeros(len(pos), np.float32)
            sim[np.searchsorted(pos, cand)] = best
            _, group, mates = np.unique(rep, return_inverse=True, return_counts=True)
            sim[mates[group] >= 2] = 1.0
        else:
            sim = np.full(len(pos), np.nan, np.float32)
        ids, at_id, size = np.unique(cluster, return_inverse=True, return_counts=True)
        size = size[at_id]
        rows, value = self._rows_values(ctx, pos)
        keep = survivors(cluster, self.sel.keep, {"n_bytes": value, "keep_by": value}, pos)
        dup = duplicate_of(cluster, size, keep, rows, ctx.shard_offsets, pos)
        sizes = np.unique(cluster[size >= 2], return_counts=True)[1]
        return {"pos": pos, "cluster": cluster, "size": size, "sim": sim, "keep": keep, **dup,
                "sizes": sizes, "counts": counts, "n_cand": np.int64(nc), "n_ident": np.int64(len(ident) -
                                                                                            len(np.unique(ident_rep))),
                "entries": np.int64(entries)}

    def _rows_values(self, ctx, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The row and the keep policy's value (``n_bytes`` or ``keep_by``) of these documents."""
        col = {"first": None, "longest": "n_bytes"}.get(self.sel.keep, "keep_by")
        rows = np.empty(len(pos), np.int64)
        value = np.zeros(len(pos), np.float64)
        for j in range(ctx.n_shards):
            r = shard_range(pos, ctx.shard_offsets, j)
            if r.stop == r.start:
                continue
            z = ctx.scores(j, ["row"] + ([col] if col else []))
            local = pos[r] - ctx.shard_offsets[j]
            rows[r] = z["row"][local]
            if col:
                value[r] = z[col][local]
        return rows, value

    # 6. the keep files ---------------------------------------------------------------------------
    def decision(self, ctx, j: int, cols: dict) -> Decision:
        lo, hi = int(ctx.shard_offsets[j]), int(ctx.shard_offsets[j + 1])
        res = ctx.load("cluster-00000", ["pos", "cluster", "size", "sim", "keep", "duplicate_of_shard",
                                         "duplicate_of_row"])
        r = shard_range(res["pos"], ctx.shard_offsets, j)
        at = res["pos"][r] - lo
        n, dt = hi - lo, self.idx_dtype
        cluster = np.arange(lo, hi, dtype=dt)
        cluster[at] = res["cluster"][r]
        size = np.ones(n, dt)
        size[at] = res["size"][r]
        sim = np.zeros(n, np.float32) if self.sel.verify else np.full(n, np.nan, np.float32)
        sim[at] = res["sim"][r]
        keep = np.ones(n, bool)
        keep[at] = res["keep"][r]
        dshard, drow = np.full(n, -1, np.int32), np.full(n, -1, np.int64)
        dshard[at], drow[at] = res["duplicate_of_shard"][r], res["duplicate_of_row"][r]
        return Decision(keep=keep, reason="near_duplicate", score=sim,
                        extra={"cluster": cluster, "cluster_size": size, "duplicate_of_shard": dshard,
                               "duplicate_of_row": drow})

    # the driver's side ---------------------------------------------------------------------------
    def run(self, ctx) -> dict:
        self.key_files = ctx.tasks(self.keys, list(range(ctx.n_shards)), "keys")
        self.group_files = ctx.tasks(self.group, list(range(1 << self.bits)), "group")
        ctx.tasks(self.candidates, [0], "candidates")
        per_shard = ctx.load("candidates-00000", ["per_shard"])["per_shard"]
        self.read_back = 0
        if self.sel.verify and per_shard.any():
            ctx.tasks(self.sets, list(range(ctx.n_shards)), "sets")
            self.read_back = int((per_shard > 0).sum())
        ctx.tasks(self.cluster, [0], "cluster")
        ctx.write_decisions(self.decision)
        return self.metrics(ctx)

    def metrics(self, ctx) -> dict:
        z = ctx.load("cluster-00000", ["sizes", "counts", "n_cand", "n_ident", "entries", "keep"])
        active = sum(int(ctx.load(name, ["active"])["active"]) for name in self.key_files)
        sizes, counts = z["sizes"], z["counts"]
        b, r = self.bands, self.rows
        return {
            "bands": b, "rows": r, "perms_used": b * r,
            "candidate_prob_at_threshold": round(float(candidate_probability(self.sel.threshold, b, r)), 4),
            "clusters": len(sizes),
            "docs_in_clusters": int(sizes.sum()),
            "docs_removed": int((~z["keep"]).sum()),
            "largest_cluster": int(sizes.max()) if len(sizes) else 0,
            "cluster_sizes": size_histogram(sizes),
            "docs_without_shingles": int(self.n - active),
            "identical_signature_docs": int(z["n_ident"]),
            "candidate_docs": int(z["n_cand"]),
            "bucket_entries": int(z["entries"]),
            "pairs_checked": int(counts[0]),
            "pairs_joined": int(counts[1]),
            "pairs_rejected": int(counts[2]),
            "pairs_rejected_before": int(counts[4]),
            "shards_read_back": self.read_back,
            "decided_in": "tasks",
            "partitions": 1 << self.bits,
        }


def sharded_plan(sel, ctx) -> ShardedMinHash:
    b, r = sel.band_shape()
    n = int(ctx.shard_offsets[-1])
    shortcut = sel.shortcut_values() is not None
    bits = partition_bits(n * (b + shortcut), BYTES_PER_ENTRY, sel.memory_budget, ctx.workers)
    return ShardedMinHash(sel, b, r, shortcut, bits, n)
