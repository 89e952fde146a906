"""Small selectors for the report tests that emit the sidecar columns and metrics the built-in selectors
emit (dsir, minhash_dedup, kmeans_diversity, perplexity_correlation), so every report section is drawn
from a real pipeline run whatever selectors are merged. Cheap stand-ins, not the methods."""
from __future__ import annotations

import numpy as np

from shardsift.api import Decision, Param, Selector, count_to_keep, top_k_mask
from shardsift.columns import hash_strings


class FakeImportance(Selector):
    """dsir-like: a log weight per document; keeps the top fraction; KL metrics."""

    name = "fake_importance"
    scope = "global"
    keep = Param(float, 0.5, "fraction", gt=0, le=1)

    def score(self, docs):
        h = hash_strings(docs.ids).astype(np.float64) / 2.0**64
        return np.log1p(docs.n_words.astype(np.float64)) * 0.3 + h

    def decide(self, scores, ctx):
        k = count_to_keep(len(scores), self.keep, None, self.name)
        keep = top_k_mask(scores["score"], k)
        return Decision(keep=keep, reason="low_importance",
                        metrics={"kl_target_raw": 1.5, "kl_target_selected": 0.9, "kl_reduction": 0.6})


class FakeDedup(Selector):
    """minhash_dedup-like: clusters of documents sharing their first 40 characters."""

    name = "fake_dedup"
    scope = "global"

    def score(self, docs):
        import pyarrow.compute as pc

        return {"key": hash_strings(pc.utf8_slice_codeunits(docs.text, 0, 40))}

    def decide(self, scores, ctx):
        key = scores["key"]
        n = len(key)
        _, first, inv = np.unique(key, return_index=True, return_inverse=True)
        cluster = first[inv].astype(np.int64)
        size = np.bincount(cluster, minlength=n)
        keep = cluster == np.arange(n)
        sim = np.where(size[cluster] >= 2, 0.8 + (np.arange(n) % 17) / 85.0, 0.0)  # 0.8 to 1 in clusters
        return Decision(keep=keep, reason=np.where(keep, "", "near_duplicate"), score=sim,
                        extra={"cluster": cluster, "cluster_size": size[cluster].astype(np.int64)},
                        metrics={"clusters": int((size >= 2).sum()), "docs_removed": int((~keep).sum())})


class FakeKMeans(Selector):
    """kmeans_diversity-like: an embedding per document (hashed word counts), nearest of k random
    centroids, a balanced quota per cluster; the embeddings go to the scores sidecar."""

    name = "fake_kmeans"
    scope = "global"
    k = Param(int, 6, "clusters", ge=1)
    keep = Param(float, 0.7, "fraction", gt=0, le=1)

    def score(self, docs):
        from shardsift.text import tokenize

        tok, off = tokenize(docs.text)
        dim = 32
        emb = np.zeros((len(docs), dim), np.float32)
        doc = np.repeat(np.arange(len(docs)), np.diff(off))
        np.add.at(emb, (doc, (tok % np.uint64(dim)).astype(np.int64)), 1.0)
        emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-9)
        cents = np.random.default_rng(7).normal(size=(self.k, dim)).astype(np.float32)
        cents /= np.linalg.norm(cents, axis=1, keepdims=True)
        sim = emb @ cents.T
        return {"cluster": sim.argmax(1), "distance": 1 - sim.max(1), "embedding": emb}

    def decide(self, scores, ctx):
        cluster = np.asarray(scores["cluster"], np.int64)
        dist = np.asarray(scores["distance"], np.float64)
        n = len(cluster)
        budget = count_to_keep(n, self.keep, None, self.name)
        order = np.lexsort((dist, cluster))
        rank = np.empty(n, np.int64)
        starts = np.r_[0, np.flatnonzero(np.diff(cluster[order])) + 1]
        rank[order] = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
        keep = np.zeros(n, bool)
        keep[np.lexsort((dist, rank))[:budget]] = True
        sizes = np.bincount(cluster, minlength=self.k)
        return Decision(keep=keep, reason="balanced", score=dist,
                        extra={"cluster": cluster.astype(np.int32), "distance": dist,
                               "embedding": np.asarray(scores["embedding"], np.float32)},
                        metrics={"cluster_sizes_before": sizes.tolist(),
                                 "cluster_sizes_after": np.bincount(cluster[keep], minlength=self.k).tolist()})


class FakePerplexity(Selector):
    """perplexity_correlation-like: an include probability, a threshold, top keys and held-out quality."""

    name = "fake_perplexity"
    scope = "global"
    needs_fit = True
    keep = Param(float, 0.8, "fraction", gt=0, le=1)

    def fit(self, ctx):
        self.fit_metrics_ = {"top_keys": [{"key": f"domain{i}", "estimate": 0.5 - 0.1 * i, "weight": 0.2}
                                          for i in range(6)],
                             "holdout_precision": 0.81, "holdout_recall": 0.74, "holdout_accuracy": 0.9}

    def score(self, docs):
        return 1.0 / (1.0 + np.exp(-(docs.n_words.astype(np.float64) - 60) / 25.0))

    def decide(self, scores, ctx):
        p = scores["score"]
        k = count_to_keep(len(p), self.keep, None, self.name)
        keep = top_k_mask(p, k)
        thr = float(p[keep].min()) if keep.any() else None
        return Decision(keep=keep, reason="low_include_prob", score=p,
                        metrics={"include_prob_threshold": thr})
