"""``kmeans_diversity``'s ``balanced`` decide as tasks (``decide_sharded``), with ``member:
facility`` or ``farthest`` and a ``keep``/``n`` budget: the driver holds per-cluster counts and
bounded samples, never an array over the documents.

1. ``sizes``, one task per shard: its documents per cluster. The driver shares the budget among
   the clusters (``strategies.allocate``, as the single-process decide does); a cluster whose quota
   is all of it or nothing needs no member choice.
2. ``route``, one task per shard: the documents of the other clusters (embedding, distance,
   position) to partitions of whole clusters, balanced by size.
3. ``select``, one task per partition: ``members.select_members`` over its clusters, each with its
   members in position order, as in the single-process decide.
4. ``queries``, one task per shard: the embeddings of its documents in the coverage sample.
5. The keep files, one task per shard; each also measures its part of the coverage: the nearest
   kept document of each query, and of a random selection of the same expected size
   (:func:`.nearest.nearest_similarity_pruned`).

The keep files are the single-process decide's bytes (tests compare them); its coverage metrics
come from the same sample of queries against a Bernoulli random baseline (the single-process
decide draws an exact-size one).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...api import Decision, count_to_keep
from ...columns import mix64
from ..partition import partition_bits, shard_range
from . import strategies as st
from .embedders import normalize_rows
from .heldout import measure, read_sample_texts, sample_positions
from .kmeans_fit import one_thread
from .members import MEMBER_MAX, method_names, select_members
from .nearest import nearest_similarity_pruned

BYTES_PER_DOC = 2048   # a select task: the float16 embedding, its float32 unit copy, the similarity blocks
BUDGET = 1 << 30       # what one select task may hold
_RANDOM_SALT = 0x72616E64


@dataclass
class ShardedBalanced:
    """The plan of one sharded decide; its methods are the task functions (``fn(ctx, item)``). ``run``
    sets what later steps read (the counts and quotas, the partitions, the step files, the coverage
    and held-out samples) before it starts them: the plan travels with each task."""

    sel: object  # the KMeansDiversity
    k: int
    seed: int
    quotas: np.ndarray = field(default=None)
    sizes: np.ndarray = field(default=None)
    part_of: np.ndarray = field(default=None)  # each cluster's partition; -1: no member choice

    def cluster_sizes(self, ctx, j: int) -> dict:
        cols = ctx.scores(j, ["cluster"]) if ctx.shard_offsets[j + 1] > ctx.shard_offsets[j] else {}
        return {"sizes": np.bincount(np.asarray(cols.get("cluster", []), np.int64), minlength=self.k)}

    def route(self, ctx, j: int) -> dict:
        nparts = int(self.part_of.max()) + 1
        lo, hi = int(ctx.shard_offsets[j]), int(ctx.shard_offsets[j + 1])
        if hi == lo:
            cols = {"cluster": np.zeros(0, np.int64), "distance": np.zeros(0, np.float32),
                    "embedding": np.zeros((0, 1), np.float16)}
        else:
            cols = ctx.scores(j, ["cluster", "distance", "embedding"])
        part = self.part_of[np.asarray(cols["cluster"], np.int64)]
        out = {}
        for p in range(nparts):
            at = np.flatnonzero(part == p)
            out |= {f"c{p}": cols["cluster"][at], f"d{p}": cols["distance"][at], f"e{p}": cols["embedding"][at],
                    f"i{p}": at + lo}
        return out

    def select(self, ctx, p: int) -> dict:
        keys = [f"c{p}", f"d{p}", f"e{p}", f"i{p}"]
        parts = [ctx.load(name, keys) for name in self.route_files]
        parts = [z for z in parts if len(z[f"i{p}"])]
        if not parts:
            return {"kept": np.zeros(0, np.int64), "counts": np.zeros(4, np.int64), "split": np.zeros(2, np.int64),
                    "methods": np.full(self.k, -1, np.int8)}
        cluster = np.concatenate([z[f"c{p}"] for z in parts]).astype(np.int64)
        dist = np.concatenate([z[f"d{p}"] for z in parts]).astype(np.float32)
        pos = np.concatenate([z[f"i{p}"] for z in parts])
        emb = normalize_rows(np.concatenate([z[f"e{p}"] for z in parts]))
        del parts
        with one_thread():  # as the single-process decide: sums in one order, whatever the machine
            keep, info = select_members(emb, cluster, dist, self.quotas, self.sel.member, self.seed)
        m = self.sel.member
        by = info["clusters_by_method"]
        return {"kept": pos[keep], "counts": np.array([by["all"], by["none"], by[m], by[f"{m}_subclustered"]]),
                "split": np.array([info["subclusters"], info["chunked_clusters"]]), "methods": info["cluster_methods"]}

    def queries(self, ctx, j: int) -> dict:
        r = shard_range(self.query_pos, ctx.shard_offsets, j)
        if r.stop == r.start:
            return {"emb": np.zeros((0, 0), np.float32)}
        emb = ctx.scores(j, ["embedding"])["embedding"]
        return {"emb": normalize_rows(emb[self.query_pos[r] - ctx.shard_offsets[j]])}

    def decision(self, ctx, j: int, cols: dict) -> Decision:
        lo, hi = int(ctx.shard_offsets[j]), int(ctx.shard_offsets[j + 1])
        cluster = np.asarray(cols["cluster"], np.int64)
        dist = np.asarray(cols["distance"], dtype=np.float32)
        q, size = self.quotas[cluster], self.sizes[cluster]
        keep = q >= size
        for name in self.select_files:
            kept = ctx.load(name, ["kept"])["kept"]
            keep[kept[shard_range(kept, ctx.shard_offsets, j)] - lo] = True
        pos = np.arange(lo, hi, dtype=np.int64)
        rand = _uniform(pos, self.seed) < self.kept_total / max(1, int(ctx.shard_offsets[-1]))
        emb = normalize_rows(cols["embedding"])
        queries = self.query_emb
        tokens = np.asarray(cols["n_tokens"], np.int64)
        with one_thread():
            near, near_random = (nearest_similarity_pruned(queries, self.sel.centroids_, emb[m], cluster[m])
                                 for m in (keep, rand))
        metrics = {"kept_tokens": int(tokens[keep].sum()), "after": np.bincount(cluster[keep], minlength=self.k),
                   "random": np.bincount(cluster[rand], minlength=self.k), "near": near, "near_random": near_random}
        r = shard_range(self.heldout_pos, ctx.shard_offsets, j)
        at = self.heldout_pos[r] - lo
        # the held-out sample's texts, read here: the sample falls in nearly every batch of every shard
        texts = read_sample_texts(np.full(len(at), j), cols["row"][at], ctx.read_texts) if len(at) else []
        metrics["heldout"] = (keep[at], texts)
        reason = "cluster_quota" if self.kept_total < ctx.shard_offsets[-1] else np.full(hi - lo, "", object)
        return Decision(keep=keep, reason=reason, score=dist,
                        extra={"cluster": cluster.astype(np.int32), "distance": dist}, metrics=metrics)

    # the driver's side ---------------------------------------------------------------------------
    def run(self, ctx) -> dict:
        sel, n, k = self.sel, int(ctx.shard_offsets[-1]), self.k
        names = ctx.tasks(self.cluster_sizes, list(range(ctx.n_shards)), "sizes")
        self.sizes = sum(ctx.load(name)["sizes"] for name in names)
        budget = count_to_keep(n, sel.keep, sel.n, sel.display_name())
        tiebreak = np.random.default_rng([self.seed, 0x6B6D65616E73]).permutation(k)
        self.quotas = st.allocate(self.sizes, self.sizes.astype(np.float64) ** sel.quota_exponent, budget, tiebreak)
        self.kept_total = int(self.quotas.sum())
        choose = (self.quotas > 0) & (self.quotas < self.sizes)
        self.part_of = _balanced_partitions(self.sizes, choose, partition_bits(
            int(self.sizes[choose].sum()), BYTES_PER_DOC, BUDGET, ctx.workers))
        self.select_files = []
        if choose.any():
            self.route_files = ctx.tasks(self.route, list(range(ctx.n_shards)), "route")
            self.select_files = ctx.tasks(self.select, list(range(int(self.part_of.max()) + 1)), "select")
        rng = np.random.default_rng([self.seed, 0x636F76])
        n_q = n if sel.coverage_sample == 0 else min(n, sel.coverage_sample)
        self.query_pos = np.sort(rng.choice(n, n_q, replace=False)) if n_q < n else np.arange(n)
        qnames = ctx.tasks(self.queries, list(range(ctx.n_shards)), "queries")
        self.query_emb = np.concatenate([e for e in (ctx.load(q)["emb"] for q in qnames) if e.size])
        h_rng, self.heldout_pos = sample_positions(n, sel.heldout_sample, self.seed)
        parts = ctx.write_decisions(self.decision)
        return self.metrics(ctx, parts, h_rng)

    def metrics(self, ctx, parts: list[dict], h_rng) -> dict:
        sel, k, m = self.sel, self.k, self.member_counts(ctx)
        after = sum(p["after"] for p in parts)
        out = {"strategy": sel.strategy, "k": int(k), "embedding": sel.embedding, "selection": m,
               "decided_in": "tasks", "kept_tokens": sum(p["kept_tokens"] for p in parts),
               "cluster_sizes_before": self.sizes.tolist(), "cluster_sizes_after": after.tolist()}
        for name, arr in (("before", self.sizes), ("after", after)):
            out[f"cluster_size_{name}"] = {"min": int(arr.min()), "median": float(np.median(arr)),
                                           "max": int(arr.max()), "empty": int((arr == 0).sum())}
        out["coverage"] = self._coverage(parts, after)
        if sel.heldout_sample:
            keep = np.concatenate([p["heldout"][0] for p in parts])
            texts = [t for p in parts for t in p["heldout"][1]]  # shards in order: the sample's order
            with one_thread():
                out["coverage_heldout"] = measure(lambda: texts, keep, h_rng, self.seed)
        return out

    def member_counts(self, ctx) -> dict:
        m = self.sel.member
        counts, split = np.zeros(4, np.int64), np.zeros(2, np.int64)
        codes = np.full(self.k, -1, np.int8)
        for name in self.select_files:
            z = ctx.load(name, ["counts", "split", "methods"])
            counts += z["counts"]
            split += z["split"]
            codes = np.maximum(codes, z["methods"])
        present = self.sizes > 0
        whole, none = present & (self.quotas >= self.sizes), present & (self.quotas == 0) & (self.quotas < self.sizes)
        counts[0] += int(whole.sum())
        counts[1] += int(none.sum())
        codes[whole], codes[none] = 0, 1
        by = dict(zip(("all", "none", m, f"{m}_subclustered"), (int(c) for c in counts)))
        return {"clusters_by_method": by, "member_max": MEMBER_MAX, "subclusters": int(split[0]),
                "chunked_clusters": int(split[1]), "largest_cluster": int(self.sizes.max()) if len(self.sizes) else 0,
                "approximate": bool(by[f"{m}_subclustered"]), "cluster_methods": method_names(codes, m)}

    def _coverage(self, parts: list[dict], after: np.ndarray) -> dict:
        kept = int(after.sum())
        if not kept:
            return {"selected": kept}
        out = {"pool_docs_measured": len(self.query_pos), "selected": kept,
               "random_baseline": "Bernoulli at the kept fraction"}
        for name, key, counts in (("", "near", after), ("random_", "near_random", sum(p["random"] for p in parts))):
            d = np.clip(1.0 - np.max([p[key] for p in parts], axis=0), 0.0, 2.0)
            out[f"{name}mean_distance"] = round(float(d.mean()), 6)
            out[f"{name}p95_distance"] = round(float(np.quantile(d, 0.95)), 6)
            out[f"{name}cluster_entropy"] = round(st.entropy(counts), 6)
        return out


def _uniform(pos: np.ndarray, seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per position, from a hash of (seed, position)."""
    s = np.uint64((int(seed) * 0x9E3779B97F4A7C15 + _RANDOM_SALT) % (1 << 64))
    return (mix64(pos.astype(np.uint64) ^ s) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _balanced_partitions(sizes: np.ndarray, choose: np.ndarray, bits: int) -> np.ndarray:
    """Each chosen cluster's partition (largest first, to the least filled), -1 for the others."""
    part = np.full(len(sizes), -1, np.int64)
    idx = np.flatnonzero(choose)
    nparts = max(1, min(1 << bits, len(idx)))
    load = np.zeros(nparts, np.int64)
    for c in idx[np.lexsort((idx, -sizes[idx]))]:
        p = int(np.argmin(load))
        part[c] = p
        load[p] += sizes[c]
    return part


def sharded_plan(sel, ctx) -> ShardedBalanced | None:
    """The plan where the decide runs as tasks (balanced, facility or farthest members, a count
    budget); None where the single-process decide runs."""
    if sel.strategy != "balanced" or sel.member not in ("facility", "farthest") or sel.tokens is not None:
        return None
    return ShardedBalanced(sel, len(sel.centroids_), int(ctx.seed))
