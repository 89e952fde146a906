"""``perplexity_correlation``: the stage. Parameters, fit (estimate, project, label, train), score
(P(include) and the include rank of the document's key) and the global decide.

One rule ties the include set, the budget and the fill together. The budget is counted in its own
unit: documents for ``keep``/``n``, the run's tokens for ``tokens``. The projection's caps count
the matrix keys in that unit, with the ratio the budget implies (or ``target_ratio``), so the
include keys are the top keys, in estimate order, that the budget's share of the matrix keys can
hold. The decide fills the budget with the include keys' documents in that order, then with the
other documents by classifier score.
"""
from __future__ import annotations

import os
import warnings
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...api import Capabilities, Decision, Param, Selector, check_keep_n, count_to_keep
from ...errors import ConfigError, DataError
from ...params import Count
from . import classifier as clf
from . import estimators as est_mod
from .inputs import align_inputs, doc_keys, file_fingerprint, read_errors, read_losses


class PerplexityCorrelationSelector(Selector):
    """Perplexity-correlation selection (Thrush et al. 2024) with a fastText include/exclude filter.

    Keys whose loss best predicts benchmark error are labelled include; their documents fill the
    budget first, in estimate order, and a classifier trained on the labels fills the rest with
    the documents it finds most likely 'include'."""

    name = "perplexity_correlation"
    scope = "global"
    needs_fit = True  # with model: given, fit only checks the classifier's labels

    losses = Param(str, None, "loss matrix: BPB of N models (columns) on D keys (rows), .parquet or .csv",
                   path=True)
    errors = Param(str, None, "benchmark error per model (lower is better): .csv (model,error) or .yaml",
                   path=True)
    key = Param(str, "id", "pool column whose value is a document's key in the loss matrix; 'id' = the "
                "document id, e.g. 'domain' for a per-domain matrix")
    estimator = Param(str, "sign_cdf", "correlation estimator", choices=est_mod.ESTIMATORS)
    projection = Param(str, "linear", "projection onto the capped simplex", choices=est_mod.PROJECTIONS)
    target_ratio = Param(float, None, "share of the matrix keys' documents (keep, n) or tokens (tokens) to "
                         "label include, the ratio in the caps tau = share / ratio; default: the budget's share "
                         "of the pool", gt=0, le=1)
    strict = Param(bool, False, "refuse benchmark errors outside [0, 1] instead of warning")
    missing_keys = Param(str, "error", "loss-matrix keys absent from the pool: error, or drop them",
                         choices=("error", "drop"))
    keep = Param(float, None, "budget: fraction of documents to keep", gt=0, le=1)
    n = Param(int, None, "budget: number of documents to keep", ge=0)
    tokens = Param(Count, None, "budget: tokens to keep, in the run's unit (the longest prefix of the ranking that fits)",
                   ge=0)
    model = Param(str, None, "a trained fastText classifier (.bin) to reuse instead of training",
                  path=True)
    holdout = Param(float, 0.1, "fraction of the training documents held out to measure the classifier",
                    ge=0, lt=0.9)
    max_train_docs = Param(int, 100_000, "at most this many documents (a seeded sample) to train on", gt=0)
    max_chars = Param(int, 10_000, "characters of each document the classifier reads (0 = all)", ge=0)
    lowercase = Param(bool, True, "lowercase text for the classifier")
    word_ngrams = Param(int, 2, "fastText word n-grams", ge=1, le=5)
    dim = Param(int, 32, "fastText vector size", ge=2)
    epoch = Param(int, 5, "fastText epochs", ge=1)
    lr = Param(float, 0.5, "fastText learning rate", gt=0)
    bucket = Param(int, 200_000, "fastText hash buckets for n-grams", ge=1000)
    min_count = Param(int, 1, "fastText minimum word count", ge=1)

    def validate(self):
        check_keep_n(self)
        budgets = [k for k in ("keep", "n", "tokens") if getattr(self, k) is not None]
        if len(budgets) != 1:
            raise ConfigError("perplexity_correlation: give exactly one of keep (fraction), n (count) or "
                              f"tokens (token budget); got {', '.join(budgets) or 'none'}")
        if self.model is not None:
            if self.losses is not None or self.errors is not None:
                raise ConfigError("perplexity_correlation: give model (a trained classifier) or losses and "
                                  "errors, not both")
        elif self.losses is None or self.errors is None:
            missing = "losses" if self.losses is None else "errors"
            raise ConfigError(f"perplexity_correlation.{missing}: a value is required (or give model: a "
                              "trained fastText classifier)")

    def _key_columns(self) -> tuple[str, ...]:
        """The pool column holding each document's key (none when the key is the document id)."""
        return () if self.key == "id" else (self.key,)

    def capabilities(self) -> Capabilities:
        """score reads the key column (named by ``key``) to rank the include keys' documents first;
        a reused classifier has no include keys and reads the text only."""
        return Capabilities(scope=self.scope, needs_fit=self.needs_fit,
                            columns=() if self.model is not None else self._key_columns(), reads_text=True)

    @property
    def budget_unit(self) -> str:
        """What the budget counts: documents (keep, n) or tokens in the run's unit (tokens)."""
        return "tokens" if self.tokens is not None else "documents"

    @property
    def version(self):
        """Enters the stage fingerprint: a changed input file reruns the stage instead of resuming."""
        return "|".join(file_fingerprint(p) for p in (self.losses, self.errors, self.model))

    def setup(self):
        """Load the classifier once per process: the reused one (``model``) or, once fitted, the
        trained one (``model_path_``)."""
        path = getattr(self, "model_path_", None) or self.model
        if path is None:
            return
        if not os.path.exists(path):
            what = "perplexity_correlation.model" if path == self.model else "the trained classifier"
            raise DataError(f"{what}: {path}: file not found")
        self._use(clf.load_model(path))

    def _use(self, model) -> None:
        """Score with ``model``: its numba predictor where it has one (every process the same way)."""
        from ..fasttext_predict import fast_predictor  # numba: loaded where a model is

        self._model, self._fast = model, fast_predictor(model)

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_model", None)  # fastText models do not pickle; setup() loads model_path_ again
        state.pop("_fast", None)
        return state

    # -- fit -------------------------------------------------------------------------------------
    def fit(self, ctx):
        """Estimate, project and label the keys, then train the classifier on a seeded sample; with
        ``model`` only check that it is an include/exclude classifier. Returns the metrics."""
        seed = int(ctx.seed)
        if self.model is not None:
            self.model_path_ = os.path.abspath(self.model)
            labels = set(self._model.get_labels())
            if clf.INCLUDE not in labels:
                raise DataError(f"{self.model}: not a perplexity_correlation classifier (labels: "
                                f"{', '.join(sorted(labels))}; expected {clf.INCLUDE})")
            return {"model": self.model, "trained": False}
        keys, models, X = read_losses(self.losses, self.key)
        errors = read_errors(self.errors)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            X, y = align_inputs(keys, models, X, errors, self.losses, self.errors, self.strict)
        input_warnings = [str(w.message) for w in caught]
        for msg in input_warnings:
            warnings.warn(msg, stacklevel=2)

        # pass 1: tokens per key, pool size, training candidates
        matrix_keys = pa.array(keys.astype(str).tolist(), pa.string())
        cap = self.max_train_docs
        parts = ctx.map_shards(partial(clf.scan_shard, key=self.key, matrix_keys=matrix_keys, seed=seed, cap=cap),
                               columns=self._key_columns(), need_text=False)
        words = np.sum([p["words"] for p in parts], axis=0) if parts else np.zeros(len(keys))
        ndocs = np.sum([p["docs"] for p in parts], axis=0) if parts else np.zeros(len(keys), np.int64)
        pool_words = sum(p["total_words"] for p in parts)
        pool_docs = sum(p["n_docs"] for p in parts)
        absent = ndocs == 0
        if absent.all():
            col = "document id" if self.key == "id" else f"{self.key!r} column"
            raise DataError(f"{self.losses}: none of the {len(keys)} loss-matrix keys (e.g. {str(keys[0])!r}) is a "
                            f"{col} value of the pool's documents")
        if absent.any() and self.missing_keys == "error":
            ex = ", ".join(repr(str(k)) for k in keys[absent][:3])
            col = "document ids" if self.key == "id" else f"{self.key!r} values"
            raise DataError(f"{self.losses}: {int(absent.sum())} of {len(keys)} loss-matrix keys are not "
                            f"{col} of the pool (e.g. {ex}); set missing_keys: drop to ignore them")
        present = ~absent
        ratio = self._ratio(pool_words, pool_docs)
        est, weight = self._label_keys(X[:, present], y, keys[present].astype(str), words[present],
                                       ndocs[present], ratio, ctx.work_dir)
        include = np.zeros(len(keys), dtype=bool)
        include[np.flatnonzero(present)[weight > 0]] = True

        # the training sample: the max_train_docs matrix documents with the smallest random keys
        c = {k: np.concatenate([p["cand"][k] for p in parts]) for k in ("rand", "row", "key", "shard")}
        c = {k: v[present[c["key"]]] for k, v in c.items()}
        order = np.lexsort((c["row"], c["shard"], c["rand"]))[:cap]
        c = {k: v[order] for k, v in c.items()}
        rows_by_shard = {int(s): np.sort(c["row"][c["shard"] == s]) for s in np.unique(c["shard"])}
        got = ctx.map_shards(partial(clf.collect_text, rows_by_shard=rows_by_shard, max_chars=self.max_chars,
                                     lowercase=self.lowercase), columns=())
        lines = pa.concat_arrays([g[1] for g in got]) if got else pa.array([], pa.large_string())
        lines = lines.take(pa.array(clf.sample_positions(c, got)))
        labels = include[c["key"]]

        hold = clf.holdout_mask(c["rand"], self.holdout) if self.holdout > 0 else np.zeros(len(labels), bool)
        train = ~hold
        if labels[train].all() or not labels[train].any():
            which = "include" if labels[train].all() else "exclude"
            raise DataError(f"{self.losses}: every training document is labelled {which} (projected weights "
                            f"leave no {'exclude' if which == 'include' else 'include'} key); lower keep/"
                            "target_ratio or give more keys")
        train_path = os.path.join(ctx.work_dir, "fasttext.train")
        clf.write_fasttext_file(train_path, labels[train], lines.filter(pa.array(train)))
        settings = {"wordNgrams": self.word_ngrams, "dim": self.dim, "epoch": self.epoch, "lr": self.lr,
                    "bucket": self.bucket, "minCount": self.min_count}
        model, self.lr_used_ = clf.train(train_path, settings, seed, self.losses)
        self.model_path_ = os.path.join(ctx.work_dir, "fasttext.bin")
        model.save_model(self.model_path_)
        self._use(model)
        os.remove(train_path)

        metrics = {"trained": True, "models": len(models), "keys": len(keys),
                   "keys_missing_from_pool": int(absent.sum()), "estimator": self.estimator,
                   "projection": self.projection, "budget_unit": self.budget_unit, "target_ratio": ratio,
                   "include_keys": int(include.sum()), "include_docs": int(ndocs[include].sum()),
                   "include_words": int(words[include].sum()),
                   "train_docs": int(train.sum()), "lr_used": self.lr_used_, "train_include": int(labels[train].sum()),
                   "holdout_docs": int(hold.sum())}
        if hold.any():
            p = clf.predict_include(model, lines.filter(pa.array(hold)), self._fast)
            pred, truth = p >= 0.5, labels[hold]
            tp = int((pred & truth).sum())
            metrics["holdout_precision"] = tp / max(int(pred.sum()), 1) if pred.any() else None
            metrics["holdout_recall"] = tp / int(truth.sum()) if truth.any() else None
            metrics["holdout_accuracy"] = float((pred == truth).mean())
        top = np.argsort(-est, kind="stable")[:10]
        pk = keys[present].astype(str)
        metrics["top_keys"] = [{"key": str(pk[i]), "estimate": round(float(est[i]), 6),
                                "weight": round(float(weight[i]), 6)} for i in top]
        if input_warnings:
            metrics["warnings"] = input_warnings
        return metrics

    def _label_keys(self, X, y, keys, words, ndocs, ratio: float, work_dir: str):
        """(estimate, projected weight) of the keys present in the pool; sets the fill order
        ``include_keys_`` (weight > 0, by decreasing estimate, ties by position: the projection's
        order) and writes the per-key table. The caps count the budget's unit."""
        est = est_mod.estimate(X, y, self.estimator)
        key_words = np.maximum(words, 1.0)  # a key of empty documents still gets a positive cap
        key_size = key_words if self.budget_unit == "words" else ndocs.astype(np.float64)
        tau = key_size / key_size.sum() / ratio
        weight = est_mod.project(est, tau, self.projection)
        by_estimate = np.argsort(-est, kind="stable")
        fill_order = by_estimate[weight[by_estimate] > 0]
        self.include_keys_ = pa.array(keys[fill_order].tolist(), pa.string())
        include_rank = np.full(len(est), -1, dtype=np.int64)
        include_rank[fill_order] = np.arange(len(fill_order))
        import pyarrow.parquet as pq

        self.weights_path_ = os.path.join(work_dir, "key_weights.parquet")
        pq.write_table(pa.table({
            "key": pa.array(keys.tolist(), pa.string()), "words": key_words.astype(np.int64), "docs": ndocs,
            "tau": tau, "estimate": est, "weight": weight, "include": weight > 0, "include_rank": include_rank}),
            self.weights_path_)
        return est, weight

    def _ratio(self, pool_words: int, pool_docs: int) -> float:
        """The projection's ratio: ``target_ratio``, else the budget's share of the pool in its unit."""
        if self.target_ratio is not None:
            return float(self.target_ratio)
        if self.keep is not None:
            return float(self.keep)
        if self.tokens is not None:
            return float(min(1.0, self.tokens / max(pool_words, 1)))
        return float(min(1.0, max(self.n, 1) / max(pool_docs, 1)))

    # -- score and decide ------------------------------------------------------------------------
    def score(self, docs):
        """P(include) of each document, and the fill rank of its key (-1: not an include key)."""
        lines = clf.fasttext_lines(docs.text, self.max_chars, self.lowercase)
        include_keys = getattr(self, "include_keys_", None)
        if include_keys is None or len(include_keys) == 0:
            rank = np.full(len(docs), -1, dtype=np.int64)
        else:
            rank = pc.index_in(doc_keys(docs, self.key), value_set=include_keys).fill_null(-1)
            rank = rank.to_numpy(zero_copy_only=False).astype(np.int64)
        return {"score": clf.predict_include(self._model, lines, self._fast), "include_rank": rank}

    def decide(self, scores, ctx=None):
        """Fill the budget with the include keys' documents in fill order (within a key, most likely
        first), then with the other documents by P(include); ties by position."""
        p = np.asarray(scores["score"], dtype=np.float64)
        words = np.asarray(scores["n_tokens"], dtype=np.int64)
        rank = np.asarray(scores["include_rank"], dtype=np.int64)
        total = len(p)
        from_include = rank >= 0
        fill_rank = np.where(from_include, rank, np.iinfo(np.int64).max)
        order = np.lexsort((np.arange(total), -p, fill_rank))
        keep = np.zeros(total, dtype=bool)
        if self.tokens is not None:
            cum = np.cumsum(words[order])
            k = int(np.searchsorted(cum, self.tokens, side="right"))
        else:
            k = count_to_keep(total, self.keep, self.n, "perplexity_correlation")
        keep[order[:k]] = True
        by_classifier = keep & ~from_include
        units = words if self.tokens is not None else np.ones(total, dtype=np.int64)
        kept_units = int(units[keep].sum())
        last_filled = order[:k][~from_include[order[:k]]]
        fill_threshold = float(p[last_filled[-1]]) if len(last_filled) else None
        metrics = {"budget_unit": self.budget_unit, "kept_tokens": int(words[keep].sum()),
                   "kept_from_include_keys": int((keep & from_include).sum()),
                   "kept_by_classifier": int(by_classifier.sum()),
                   "budget_share_from_include_keys": (float(units[keep & from_include].sum() / kept_units)
                                                      if kept_units else None),
                   "fill_prob_threshold": fill_threshold,
                   # a cut on P(include) alone only when no include key was placed ahead of it
                   "include_prob_threshold": fill_threshold if not (keep & from_include).any() else None,
                   "mean_include_prob_kept": float(p[keep].mean()) if keep.any() else None,
                   "mean_include_prob_all": float(p.mean()) if total else None}
        return Decision(keep=keep, reason="low_include_prob", score=p, metrics=metrics)

    def fitted_files(self):
        out = {}
        if getattr(self, "model_path_", None):
            out["fasttext"] = self.model_path_
        if getattr(self, "weights_path_", None):
            out["key_weights"] = self.weights_path_
        return out
