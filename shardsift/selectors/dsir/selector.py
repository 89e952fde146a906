"""DSIR: Data Selection with Importance Resampling (Xie et al. 2023), the selector.

``fit`` counts hashed n-gram features (``features``) of the target corpus and of the documents that
reach the stage into two smoothed distributions (``estimator``); ``score`` gives every document its
log importance weight; ``decide`` samples ``k`` documents without replacement in proportion to the
weights with the Gumbel top-k trick, the noise of a document being a stable hash of (seed, id), so
the selection does not depend on shard layout, batch size or the number of workers.

The decide's metrics give the paper's quality figure, the KL reduction
``KL(target||raw) - KL(target||selected)`` in the same hashed feature space, and the same figure
for a uniform random selection of the same size.
"""
from __future__ import annotations

import math
import os
from functools import partial

import numpy as np

from ...api import Budget, Decision, Param, Selector, check_keep_n, count_to_keep
from ...columns import hash_strings
from ...errors import ConfigError, DataError
from ...params import Count
from ...text import MODES
from . import estimator as est
from .features import gumbel_from_hash, uniform_from_hash

_RANDOM_SALT = np.uint64(0xA24BAED4963EE407)   # random baseline selection for the metrics
_TARGET_SALT = np.uint64(0x9FB21C651E98DF25)   # per-target Gumbel noise streams


# -- the selector ----------------------------------------------------------------------------

class DSIRSelector(Selector):
    """Importance resampling toward a target corpus in a hashed n-gram feature space."""

    name = "dsir"
    scope = "global"
    needs_fit = True

    target = Param(object, None, "target corpus: a path/glob, an input mapping {path: ...}, or a "
                   "datasets.Dataset", path="corpus")
    targets = Param(list, None, "several targets [{path: ..., weight: w}, ...]; documents are selected "
                    "per target in proportion to the weights, without repeats", path="corpus")
    estimator = Param(str, None, "load a fitted estimator (a dsir_estimator.npz or the models/<stage> "
                      "folder holding it) instead of fitting", path=True)
    keep = Param(float, None, "fraction of the documents reaching the stage to select", gt=0, le=1)
    n = Param(int, None, "number of documents to select", ge=0)
    tokens = Param(Count, None, "tokens to select, in the run's unit (2B, 500M): per target, its share "
                   "of the budget in ranked documents while they fit", ge=0)
    mode = Param(str, "resample", "resample: Gumbel top-k sampling without replacement in proportion "
                 "to the importance weights; topk: the k largest weights; threshold: log weight >= "
                 "threshold", choices=("resample", "topk", "threshold"))
    threshold = Param(float, None, "log-weight threshold for mode: threshold")
    buckets = Param(int, 10000, "number of hash buckets of the n-gram feature space", ge=2, le=1 << 24)
    ngrams = Param(int, 2, "n-gram orders 1..ngrams are counted (2: unigrams and bigrams)", ge=1, le=5)
    tokenizer = Param(str, "wordpunct", "token definition (see shardsift.text)", choices=tuple(MODES))
    lowercase = Param(bool, True, "Unicode-lowercase the text before tokenizing")
    smoothing = Param(float, 1.0, "additive smoothing: pseudo-count added to every bucket of both "
                      "distributions", gt=0)
    raw_tokens = Param(int, None, "fit the raw distribution on about this many whitespace words of the "
                       "pool (a seeded subsample of documents); default all", gt=0)
    chunk_tokens = Param(int, None, "cut documents into pieces of this many tokens when fitting (n-grams "
                         "do not cross cuts)", ge=2)
    min_tokens = Param(int, 32, "documents with fewer tokens are never selected (reason too_short) and "
                       "are left out of the raw fit", ge=0)
    length_normalize = Param((bool, str), False, "false/none: the paper's sum over features (favours long "
                             "documents); mean (or true): the mean per feature; sqrt: divided by the square "
                             "root of the feature count (in between); normalised weights are scaled to "
                             "norm_length", choices=(False, True, "none", "mean", "sqrt"))
    norm_length = Param(int, None, "with length_normalize: the feature count a normalised weight is "
                        "scaled to, so that one of that length keeps its plain weight; default the median "
                        "of the pool's documents", gt=0)
    metrics = Param(bool, True, "compute the KL-reduction metrics (re-reads the selected documents and "
                    "a random selection of the same size)")

    # -- parameters ------------------------------------------------------------------------
    def validate(self):
        check_keep_n(self, "dsir")
        given = [k for k in ("target", "targets", "estimator") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ConfigError(f"dsir: give one of target, targets or estimator, not {' and '.join(given)}")
        if not given:
            raise ConfigError("dsir: give a target ({path: ...}), targets ([{path, weight}, ...]) or an "
                              "estimator (path)")
        if self.mode == "threshold":
            if self.threshold is None:
                raise ConfigError("dsir.threshold: mode threshold needs a threshold (a log weight)")
            if self.keep is not None or self.n is not None or self.tokens is not None:
                raise ConfigError("dsir: mode threshold selects by threshold; drop keep/n/tokens")
        else:
            if self.threshold is not None:
                raise ConfigError(f"dsir.threshold: only used with mode threshold (mode is {self.mode})")
            given = [k for k in ("keep", "n", "tokens") if getattr(self, k) is not None]
            if len(given) != 1:
                raise ConfigError("dsir: give one of keep (a fraction in (0, 1]), n (a count) or tokens (a "
                                  f"token budget){' (got ' + ', '.join(given) + ')' if given else ''}")
        if self.target is not None:
            self._check_spec(self.target, "dsir.target")
        if self.targets is not None:
            if not self.targets:
                raise ConfigError("dsir.targets: the list is empty")
            with_w = [isinstance(t, dict) and "weight" in t for t in self.targets]
            if any(with_w) and not all(with_w):
                raise ConfigError("dsir.targets: give a weight to every target or to none")
            for i, t in enumerate(self.targets):
                where = f"dsir.targets[{i}]"
                if isinstance(t, dict) and "weight" in t:
                    w = t["weight"]
                    if isinstance(w, bool) or not isinstance(w, (int, float)) or not w > 0 \
                            or math.isinf(w):
                        raise ConfigError(f"{where}.weight: expected a positive number, got {w!r}")
                    t = {k: v for k, v in t.items() if k != "weight"}
                self._check_spec(t, where)

    @staticmethod
    def _check_spec(spec, where):
        if isinstance(spec, str):
            if not spec:
                raise ConfigError(f"{where}: empty path")
        elif isinstance(spec, dict):
            if spec.get("path") is None or spec.get("path") == "":
                raise ConfigError(f"{where}: a mapping needs a path key (got keys {sorted(spec)})")
        elif spec is None or isinstance(spec, (bool, int, float, list, tuple)):
            raise ConfigError(f"{where}: expected a path, a mapping with path, or a datasets.Dataset; "
                              f"got {type(spec).__name__} {spec!r}")

    def _target_specs(self):
        """[(name, read_input spec, weight or None)]"""
        if self.target is not None:
            return [(self._spec_name(self.target), self.target, 1.0)]
        out = []
        for t in self.targets:
            w = None
            if isinstance(t, dict) and "weight" in t:
                w = float(t["weight"])
                t = {k: v for k, v in t.items() if k != "weight"}
                if list(t) == ["path"]:
                    t = t["path"]
            out.append((self._spec_name(t), t, w))
        return out

    @staticmethod
    def _spec_name(spec):
        if isinstance(spec, str):
            return spec
        if isinstance(spec, dict) and isinstance(spec.get("path"), str):
            return spec["path"]
        return f"<{type(spec).__name__}>"

    def _norm_power(self) -> float:
        """Exponent of the length normalisation: weight * (norm_length / n_features) ** power."""
        return {False: 0.0, "none": 0.0, True: 1.0, "mean": 1.0, "sqrt": 0.5}[self.length_normalize]

    def _feature_kw(self, chunk=False):
        return {"buckets": self.buckets, "ngram_order": self.ngrams, "tokenizer": self.tokenizer,
                "lowercase": self.lowercase, "chunk_tokens": self.chunk_tokens if chunk else None,
                "min_tokens": self.min_tokens}

    # -- fit ---------------------------------------------------------------------------------
    def fit(self, ctx):
        """Count the target(s) and the raw pool, or load an estimator; save it; return the metrics."""
        self.seed_ = int(ctx.seed)
        if self.estimator is not None:
            metrics = self._load(self.estimator)
        else:
            metrics = self._fit_counts(ctx)
        self.target_log_ = est.log_probs(self.target_counts_, self.smoothing)
        self.raw_log_ = est.log_probs(self.raw_counts_, self.smoothing)
        self.log_ratio_ = self.target_log_ - self.raw_log_[None, :]
        self.norm_length_ = float(self.norm_length or max(self.median_length_, 1.0))
        if self._norm_power():
            metrics["norm_length"] = self.norm_length_
        self.estimator_path_ = None
        if ctx.work_dir:
            os.makedirs(ctx.work_dir, exist_ok=True)
            self.estimator_path_ = os.path.join(ctx.work_dir, est.ESTIMATOR_FILE)
            self.save(self.estimator_path_, metrics)
        return metrics

    def _fit_counts(self, ctx) -> dict:
        """Bucket histograms of the targets and of the documents reaching the stage."""
        kw = self._feature_kw(chunk=True)
        names, tcounts, weights, tstats = [], [], [], []
        for name, spec, w in self._target_specs():
            where = "dsir.target" if self.target is not None else f"dsir.targets[{len(names)}]"
            res = est.count_docs(ctx.read_input(spec, what=where), **kw)
            if res["seen"] == 0:
                raise DataError(f"{where}: the target {name} is empty (no documents with text)")
            if res["docs"] == 0 or res["counts"].sum() == 0:
                raise DataError(f"{where}: none of the {res['seen']} documents of the target {name} has at "
                                f"least {max(self.min_tokens, 1)} tokens (min_tokens)")
            names.append(name)
            tcounts.append(res["counts"])
            weights.append(w if w is not None else float(res["counts"].sum()))
            tstats.append({"docs": res["docs"], "tokens": res["tokens"]})
        rate = 1.0
        if self.raw_tokens is not None:
            total_words = int(sum(ctx.map_shards(est.shard_words, need_text=False)))
            rate = min(1.0, self.raw_tokens / max(total_words, 1))
        shard_res = ctx.map_shards(partial(est.count_docs, **kw, rate=rate, seed=self.seed_, return_lengths=True))
        raw = np.zeros(self.buckets, dtype=np.int64)
        for r in shard_res:
            raw += r["counts"]
        if raw.sum() == 0:
            raise DataError(f"dsir: no document reaching the stage has at least {max(self.min_tokens, 1)} "
                            "tokens; nothing to fit the raw distribution on")
        w = np.asarray(weights, dtype=np.float64)
        self.target_names_ = names
        self.target_weights_ = w / w.sum()
        self.target_counts_ = np.stack(tcounts)
        self.raw_counts_ = raw
        median = est.median_of_histograms([r["lengths"] for r in shard_res])  # no per-document array here
        self.median_length_ = 1.0 if median is None else median
        metrics = {
            "target_docs": sum(st["docs"] for st in tstats),
            "target_tokens": sum(st["tokens"] for st in tstats),
            "raw_docs": sum(r["docs"] for r in shard_res), "raw_tokens": sum(r["tokens"] for r in shard_res),
            "raw_sample_rate": rate,
        }
        if len(names) > 1:
            metrics["targets"] = {nm: {"weight": float(wt), **st}
                                  for nm, wt, st in zip(names, self.target_weights_, tstats)}
        return metrics

    # -- the estimator file ------------------------------------------------------------------
    def save(self, path: str, metrics: dict | None = None) -> None:
        """Write the fitted estimator (counts, feature settings, fit metrics) as one .npz."""
        meta = {
            "buckets": self.buckets, "ngrams": self.ngrams, "tokenizer": self.tokenizer,
            "lowercase": self.lowercase, "smoothing": self.smoothing, "min_tokens": self.min_tokens,
            "chunk_tokens": self.chunk_tokens, "median_length": self.median_length_,
            "target_names": list(self.target_names_), "fit_metrics": dict(metrics or {}),
        }
        est.save_estimator(path, target_counts=self.target_counts_, raw_counts=self.raw_counts_,
                       target_weights=self.target_weights_, meta=meta)

    def _load(self, path: str) -> dict:
        """Take the counts and the feature space from an estimator file; its fit metrics."""
        path, arrays, meta = est.load_estimator(path)
        # the feature space is the estimator's: a different setting here would make the counts meaningless
        for key in est.FEATURE_KEYS:
            setattr(self, key, meta[key])
        self.target_counts_ = arrays["target_counts"]
        self.raw_counts_ = arrays["raw_counts"]
        self.target_weights_ = arrays["target_weights"]
        self.target_names_ = meta["target_names"]
        self.median_length_ = float(meta["median_length"])
        return {"estimator": path, **meta.get("fit_metrics", {})}

    def fitted_files(self):
        p = getattr(self, "estimator_path_", None)
        return {est.ESTIMATOR_FILE: p} if p and os.path.exists(p) else {}

    # -- score -------------------------------------------------------------------------------
    def log_weights(self, text) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(log weights float64[n, targets], n_tokens, n_features) of a string array."""
        return est.log_weights(text, self.log_ratio_, buckets=self.buckets, ngram_order=self.ngrams,
                           tokenizer=self.tokenizer, lowercase=self.lowercase, power=self._norm_power(),
                           norm_length=self.norm_length_)

    def score(self, docs):
        lw, ntok, _ = self.log_weights(docs.text)
        out = {"score": self._mixture(lw), "dsir_tokens": ntok.astype(np.int64),
               "idhash": hash_strings(docs.ids)}
        if lw.shape[1] > 1:
            out["logw"] = lw
        return out

    def _mixture(self, lw):
        """Log importance weight toward the weighted mixture of the targets."""
        if lw.shape[1] == 1:
            return lw[:, 0].copy()
        m = lw + np.log(self.target_weights_)[None, :]
        mx = m.max(axis=1, keepdims=True)
        return (mx + np.log(np.exp(m - mx).sum(axis=1, keepdims=True)))[:, 0]

    # -- decide as budget selection in shard tasks (one target) --------------------------------
    def budget(self):
        """With one target the decide is a budget cut over each eligible document's key (the log
        weight, plus its Gumbel noise when resampling): the engine finds it in shard tasks and the
        driver holds no per-document array. Several targets split the budget in turn: ``decide``."""
        if len(getattr(self, "target_weights_", ())) != 1:
            return None
        short = (f"dsir: asked for {{k}} documents but only {{available}} of {{total}} have at least "
                 f"min_tokens={self.min_tokens} tokens")
        if self.mode == "threshold":
            return Budget(threshold=self.threshold, reason="low_importance", nan_kept=False, short=short)
        return Budget(keep=self.keep, n=self.n, tokens=None if self.tokens is None else int(self.tokens),
                      reason="low_importance", clip_n=False, nan_kept=False, short=short)

    def budget_rank(self, scores):
        score = np.asarray(scores["score"], dtype=np.float64)
        idhash = np.asarray(scores["idhash"], dtype=np.uint64)
        key = score.copy()
        if self.mode == "resample":
            key += gumbel_from_hash(idhash, self.seed_, np.uint64(int(_TARGET_SALT) % (1 << 64)))
        key[~self._eligible(scores)] = np.nan  # never kept
        return key, idhash, score

    def _eligible(self, scores) -> np.ndarray:
        # min_tokens counts DSIR's own feature tokens (its tokenizer parameter), not the run's unit
        return np.asarray(scores["dsir_tokens"]) >= self.min_tokens

    def budget_decision(self, scores, keep, score, shard):
        """One shard's reasons, and its part of the metrics: sums over its eligible and kept
        documents and, with ``metrics``, the feature counts of its kept documents and of as many
        of its eligible documents at random (a random baseline stratified by shard)."""
        eligible = self._eligible(scores)
        sums = {"eligible": int(eligible.sum()), "log_weight_sum_eligible": float(score[eligible].sum()),
                "log_weight_sum_selected": float(score[keep].sum())}
        if self.metrics and keep.any():
            idhash = np.asarray(scores["idhash"], dtype=np.uint64)
            u = uniform_from_hash(idhash, self.seed_, _RANDOM_SALT)
            rand = np.zeros(len(keep), dtype=bool)
            rand[_top_k(u, idhash, eligible, int(keep.sum()))] = True
            both = keep | rand  # one pass over the shard for the two sets
            rows = np.asarray(scores["row"], dtype=np.int64)[both]
            counts = est.count_subsets(shard.iter_docs(rows=rows), np.stack([keep[both], rand[both]]),
                                       **{**self._feature_kw(), "min_tokens": 0})
            sums["selected_counts"], sums["random_counts"] = counts[0], counts[1]
        return Decision(keep=keep, reason=np.where(eligible, "low_importance", "too_short").astype(object),
                        score=score, metrics=sums)

    def budget_metrics(self, summary):
        sums, kept = summary["sums"], summary["kept"]
        eligible = sums.get("eligible", 0)
        m = {"mode": self.mode, "selected": kept, "eligible": eligible, "selected_tokens": summary["kept_tokens"],
             "too_short": summary["docs"] - eligible,
             "mean_log_weight_all": sums["log_weight_sum_eligible"] / eligible if eligible else None,
             "mean_log_weight_selected": sums["log_weight_sum_selected"] / kept if kept else None}
        if "selected_counts" in sums:
            m.update(self._kl(sums["selected_counts"], sums["random_counts"]))
            m["random_baseline"] = "stratified by shard"
        return m

    def _kl(self, sel_counts, rand_counts) -> dict:
        """The KL figures of a selection's and a random baseline's feature counts."""
        t_log = np.log(np.exp(self.target_log_).T @ self.target_weights_)  # mixture target
        m = {"kl_target_raw": est.kl(t_log, self.raw_log_),
             "kl_target_selected": est.kl(t_log, est.log_probs(sel_counts, self.smoothing)),
             "kl_target_random": est.kl(t_log, est.log_probs(rand_counts, self.smoothing))}
        m["kl_reduction"] = m["kl_target_raw"] - m["kl_target_selected"]
        m["kl_reduction_random"] = m["kl_target_raw"] - m["kl_target_random"]
        return m

    # -- decide ------------------------------------------------------------------------------
    def decide(self, scores, ctx):
        n_all = len(scores)
        score = np.asarray(scores["score"], dtype=np.float64)
        lw = np.asarray(scores["logw"]) if "logw" in scores else score[:, None]
        idhash = np.asarray(scores["idhash"], dtype=np.uint64)
        eligible = self._eligible(scores)
        keep = np.zeros(n_all, dtype=bool)
        chosen_for = np.full(n_all, -1, dtype=np.int64)
        per_target = []
        if self.mode == "threshold":
            keep = eligible & (score >= self.threshold)
        elif self.tokens is not None:
            self._token_budget(scores, lw, idhash, eligible, keep, chosen_for, per_target)
        else:
            k = count_to_keep(n_all, self.keep, self.n, "dsir")
            n_elig = int(eligible.sum())
            if k > n_elig:
                raise ConfigError(f"dsir: asked for {k} documents but only {n_elig} of {n_all} have at "
                                  f"least min_tokens={self.min_tokens} tokens")
            quotas = _apportion(k, self.target_weights_)
            avail = eligible.copy()
            for t, q in enumerate(quotas):
                key = lw[:, t].copy()
                if self.mode == "resample":
                    key += gumbel_from_hash(idhash, self.seed_, np.uint64(int(_TARGET_SALT) * (t + 1) % (1 << 64)))
                idx = _top_k(key, idhash, avail, q)
                keep[idx] = True
                avail[idx] = False
                chosen_for[idx] = t
                per_target.append(int(q))
        reason = np.where(eligible, "low_importance", "too_short").astype(object)
        metrics = self._metrics(scores, keep, eligible, idhash, score, per_target, ctx)
        extra = {"target": chosen_for} if len(self.target_weights_) > 1 else {}
        return Decision(keep=keep, reason=reason, score=score, extra=extra, metrics=metrics)

    def _token_budget(self, scores, lw, idhash, eligible, keep, chosen_for, per_target) -> None:
        """``tokens``: the budget split over the targets by weight; each target takes its ranked
        available documents while their tokens (the run's unit) fit its share."""
        n_tokens = np.asarray(scores["n_tokens"], dtype=np.int64)
        avail = eligible.copy()
        for t, q in enumerate(_apportion(int(self.tokens), self.target_weights_)):
            key = lw[:, t].copy()
            if self.mode == "resample":
                key += gumbel_from_hash(idhash, self.seed_, np.uint64(int(_TARGET_SALT) * (t + 1) % (1 << 64)))
            ranked = _top_k(key, idhash, avail, int(avail.sum()))
            idx = ranked[:int(np.searchsorted(np.cumsum(n_tokens[ranked]), q, side="right"))]
            keep[idx] = True
            avail[idx] = False
            chosen_for[idx] = t
            per_target.append(len(idx))

    def _metrics(self, scores, keep, eligible, idhash, score, per_target, ctx):
        m = {"mode": self.mode, "selected": int(keep.sum()), "eligible": int(eligible.sum()),
             "selected_tokens": int(np.asarray(scores["n_tokens"])[keep].sum()),
             "too_short": int((~eligible).sum()),
             "mean_log_weight_all": _mean(score[eligible]), "mean_log_weight_selected": _mean(score[keep])}
        if len(per_target) > 1:
            m["selected_per_target"] = dict(zip(self.target_names_, per_target))
        if not self.metrics or keep.sum() == 0:
            return m
        # random baseline of the same size among the eligible documents
        u = uniform_from_hash(idhash, self.seed_, _RANDOM_SALT)
        rand = np.zeros(len(keep), dtype=bool)
        rand[_top_k(u, idhash, eligible, int(keep.sum()))] = True
        m.update(self._kl(*self._recount(scores, [keep, rand], ctx)))
        return m

    def _recount(self, scores, masks, ctx):
        """Bucket histograms of the documents in each mask, re-read shard by shard (one read of each
        shard's documents in any mask). On the driver: the documents are a fraction of the pool, and
        the context's reader holds the runner, which does not travel to worker processes."""
        rows = np.asarray(scores["row"], dtype=np.int64)
        kw = {**self._feature_kw(), "min_tokens": 0}
        offs = scores.shard_offsets
        totals = np.zeros((len(masks), self.buckets), dtype=np.int64)
        for s in range(len(offs) - 1):
            flags = np.stack([mk[offs[s]:offs[s + 1]] for mk in masks])
            union = flags.any(axis=0)
            if union.any():
                docs = ctx.read_docs(s, rows[offs[s]:offs[s + 1]][union])
                totals += est.count_subsets([docs], flags[:, union], **kw)
        return list(totals)


def _mean(x):
    return float(np.mean(x)) if len(x) else None


def _apportion(k: int, weights: np.ndarray) -> list[int]:
    """Split k into integer quotas proportional to weights (largest remainder, ties to earlier)."""
    raw = k * np.asarray(weights, dtype=np.float64)
    q = np.floor(raw).astype(np.int64)
    rest = k - int(q.sum())
    if rest > 0:
        order = np.lexsort((np.arange(len(q)), -(raw - q)))
        q[order[:rest]] += 1
    return [int(x) for x in q]


def _top_k(key: np.ndarray, idhash: np.ndarray, avail: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k available documents with the largest key; ties by id hash (layout-free)."""
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    cand = np.flatnonzero(avail)
    kc = key[cand]
    if k < len(cand):
        # pre-select with argpartition, widened to every element tied with the k-th value
        kth = np.partition(kc, len(kc) - k)[len(kc) - k]
        cand = cand[kc >= kth]
        kc = key[cand]
    order = np.lexsort((idhash[cand], -kc))
    return cand[order[:k]]
