"""``quality_classifier``: keep the documents a fastText classifier finds most like a set of positives.

As in DCLM (Li et al. 2024): a supervised fastText model with word bigrams learns positives (any
corpus the readers accept: curated text, instruction data, a target domain) against negatives (by
default a seeded random sample of the documents reaching the stage); every document is scored with
the positive-class probability, and a global decide keeps the best by fraction, count, word budget
or threshold, either exactly (top-k) or as a seeded sample that favours high scores.
"""
from __future__ import annotations

import os
from typing import ClassVar

import numpy as np
import pyarrow as pa

from ...api import Budget, Decision, Param, Selector, count_to_keep
from ...columns import hash_strings
from ...errors import ConfigError, DataError
from ...params import Count
from . import classifier as ft
from .selection import count_within_budget, order_sample, order_topk, rank_sample, rank_topk

MODEL_FILE = "quality_classifier.bin"
_BUDGETS = ("keep", "n", "tokens", "threshold")


class QualityClassifier(Selector):
    """fastText positive-vs-negative classifier; keeps the documents with the highest P(positive)."""

    name = "quality_classifier"
    scope: ClassVar[str] = "global"
    needs_fit: ClassVar[bool] = True

    positives = Param(object, None, "positive examples: a path/glob, an input mapping {path, text_column, ...} "
                      "or a datasets.Dataset", path="corpus")
    negatives = Param(object, None, "negative examples as an input like positives; default a seeded random "
                      "sample of the documents reaching the stage", path="corpus")
    negative_sample = Param(int, 100_000, "documents of the stage sampled as negatives (when negatives is not "
                            "given)", gt=0)
    max_per_class = Param(int, 200_000, "at most this many documents of each class (a seeded subsample)", gt=0)
    balance = Param(str, "equal", "equal: the larger class is subsampled to the smaller one's size; weighted: "
                    "all documents, the smaller class repeated to the same total in training; none: as read",
                    choices=("equal", "weighted", "none"))
    holdout = Param(float, 0.1, "fraction of each class held out to measure precision, recall and AUC",
                    ge=0, lt=0.5)
    model = Param(str, None, "apply this fastText .bin instead of training", path=True)
    label = Param(str, None, "with model: its positive label (with or without the __label__ prefix); "
                  "default positive, the label of a model this selector trained")
    # text normalisation, the same before training and scoring
    lowercase = Param(bool, True, "Unicode-lowercase the text")
    collapse_whitespace = Param(bool, False, "make every run of whitespace one space and trim the ends; "
                                "fastText skips such runs anyway, so only the training file shrinks (newlines "
                                "always become spaces: one document is one fastText line)")
    max_chars = Param(int, 0, "characters of each document the classifier reads (0: all)", ge=0)
    # fastText supervised training (fastText's own names in parentheses)
    lr = Param(float, 0.1, "learning rate (lr)", gt=0)
    epoch = Param(int, 5, "passes over the training data (epoch)", ge=1)
    dim = Param(int, 32, "vector size (dim)", ge=1)
    word_ngrams = Param(int, 2, "word n-gram order: 2 = unigrams and bigrams (wordNgrams)", ge=1, le=5)
    min_count = Param(int, 1, "words rarer than this are ignored (minCount)", ge=1)
    bucket = Param(int, 200_000, "hash buckets of the word n-grams (bucket)", ge=1)
    minn = Param(int, 0, "shortest character n-gram, 0: none (minn)", ge=0)
    maxn = Param(int, 0, "longest character n-gram, 0: none (maxn)", ge=0)
    neg = Param(int, 5, "negatives sampled with loss ns (neg)", ge=1)
    loss = Param(str, "softmax", "loss function (loss)", choices=("softmax", "ns", "hs", "ova"))
    lr_update_rate = Param(int, 100, "tokens between learning-rate updates (lrUpdateRate)", ge=1)
    t = Param(float, 1e-4, "sampling threshold of frequent words (t)", gt=0)
    # selection
    keep = Param(float, None, "fraction of the documents reaching the stage to keep", gt=0, le=1)
    n = Param(int, None, "number of documents to keep", ge=0)
    tokens = Param(Count, None, "keep documents until this many tokens, in the run's unit (2B, 500M)", ge=0)
    threshold = Param(float, None, "keep every document with P(positive) >= threshold", ge=0, le=1)
    mode = Param(str, "topk", "topk: the best scores exactly (ties by a seeded hash of the id); sample: a "
                 "seeded draw without replacement with probability ~ exp(score / temperature)",
                 choices=("topk", "sample"))
    temperature = Param(float, 0.1, "mode sample: lower is closer to top-k, higher closer to uniform", gt=0)

    # -- parameters ------------------------------------------------------------------------
    def validate(self):
        where = self.display_name()
        given = [k for k in _BUDGETS if getattr(self, k) is not None]
        if len(given) != 1:
            got = f"got {' and '.join(given)}" if given else "got none"
            raise ConfigError(f"{where}: give exactly one of keep, n, tokens or threshold ({got})")
        if self.mode == "sample" and self.threshold is not None:
            raise ConfigError(f"{where}.threshold: mode sample draws a number of documents; give keep, n or tokens")
        if self.model is not None:
            extra = [k for k in ("positives", "negatives") if getattr(self, k) is not None]
            if extra:
                raise ConfigError(f"{where}: model applies a trained classifier; drop {' and '.join(extra)}")
            if not self.model:
                raise ConfigError(f"{where}.model: empty path")
        elif self.positives is None:
            raise ConfigError(f"{where}.positives: give the positive examples ({{path: ...}}) or a model (path)")
        elif self.label is not None:
            raise ConfigError(f"{where}.label: names the positive label of a given model; a trained model's "
                              f"is {ft.POSITIVE}")
        for key in ("positives", "negatives"):
            spec = getattr(self, key)
            if isinstance(spec, str) and not spec:
                raise ConfigError(f"{where}.{key}: empty path")
            if isinstance(spec, dict) and not spec.get("path"):
                raise ConfigError(f"{where}.{key}: a mapping needs a path key (got keys {sorted(spec)})")
            if isinstance(spec, (bool, int, float, list, tuple)):
                raise ConfigError(f"{where}.{key}: expected a path, a mapping with path, or a datasets.Dataset; "
                                  f"got {type(spec).__name__} {spec!r}")
        if self.maxn and self.maxn < self.minn:
            raise ConfigError(f"{where}.maxn: {self.maxn} is below minn {self.minn}")

    def _normalize(self, text: pa.Array, separators: bool = True) -> pa.Array:
        return ft.normalize(text, lowercase=self.lowercase, collapse_whitespace=self.collapse_whitespace,
                            max_chars=self.max_chars, separators=separators)

    def _train_args(self) -> dict:
        return {"lr": self.lr, "epoch": self.epoch, "dim": self.dim, "wordNgrams": self.word_ngrams,
                "minCount": self.min_count, "bucket": self.bucket, "minn": self.minn, "maxn": self.maxn,
                "neg": self.neg, "loss": self.loss, "lrUpdateRate": self.lr_update_rate, "t": self.t,
                "thread": 1, "seed": int(self.seed_), "verbose": 0}

    # -- setup and fit ---------------------------------------------------------------------------
    def setup(self):
        """Load the model (the trained one after fit, or the given one) once per process."""
        path = getattr(self, "model_path_", None) or self.model
        if path and getattr(self, "model_", None) is None:
            self.model_ = ft.load(path, f"{self.display_name()}.model")
            from ..fasttext_predict import fast_predictor  # numba: loaded where a model is

            self.predictor_ = fast_predictor(self.model_)

    def _predict(self, lines: pa.Array, multiline: bool = False) -> np.ndarray:
        """P(positive) per line: the numba predictor where it covers the model (``multiline``: its
        separators read as spaces, see FastPredictor), else fastText's on normalised lines."""
        if getattr(self, "predictor_", None) is not None:
            return self.predictor_(lines, self.label_, multiline=multiline)
        return ft.predict(self.model_, lines, self.label_)

    def _predictor_name(self) -> str:
        return "shardsift (numba)" if getattr(self, "predictor_", None) is not None else "fastText"

    @property
    def version(self) -> str:
        """Part of the stage's fingerprint: a given model file that changed is not served from an earlier
        run's work dir."""
        if not self.model:
            return ""
        try:
            st = os.stat(self.model)
        except OSError:
            return f"{self.model}:missing"
        return f"{os.path.abspath(self.model)}:{st.st_size}:{st.st_mtime_ns}"

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("model_", None)   # fastText models do not pickle; setup() loads them again
        state.pop("predictor_", None)
        return state

    def fit(self, ctx):
        """Train on positives against negatives (or check a given model's label); return metrics."""
        self.seed_ = int(ctx.seed)
        where = self.display_name()
        if self.model is not None:
            self.setup()
            self.label_ = ft.positive_label(self.model_, self.label or "positive", self.model, f"{where}.label")
            self.model_path_ = os.path.abspath(self.model)
            return {"trained": False, "model": self.model_path_, "label": self.label_,
                    "labels": list(self.model_.get_labels()), "prediction": self._predictor_name()}
        pos = self._read_lines(ctx.read_input(self.positives, f"{where}.positives"), f"{where}.positives")
        if self.negatives is not None:
            neg = self._read_lines(ctx.read_input(self.negatives, f"{where}.negatives"), f"{where}.negatives")
        else:
            neg = self._normalize(ctx.sample(self.negative_sample).text)
            if len(neg) == 0:
                raise DataError(f"{where}: no document reaches the stage to sample negatives from")
        rng = np.random.default_rng([self.seed_, 0x51C])
        pos, neg = _subsample(pos, self.max_per_class, rng), _subsample(neg, self.max_per_class, rng)
        n_read = {"positives_read": len(pos), "negatives_read": len(neg)}
        if self.balance == "equal":
            m = min(len(pos), len(neg))
            pos, neg = _subsample(pos, m, rng), _subsample(neg, m, rng)
        pos_train, pos_hold = _split(len(pos), self.holdout, rng)
        neg_train, neg_hold = _split(len(neg), self.holdout, rng)
        if len(pos_train) == 0 or len(neg_train) == 0:
            raise DataError(f"{where}: too few documents to train on ({len(pos)} positive, {len(neg)} negative)")
        if self.balance == "weighted":
            pos_train, neg_train = _repeat_to(pos_train, len(neg_train), rng), _repeat_to(neg_train, len(pos_train), rng)
        lines = pa.concat_arrays([pos.take(pa.array(pos_train)), neg.take(pa.array(neg_train))])
        labels = np.concatenate([np.ones(len(pos_train), bool), np.zeros(len(neg_train), bool)])
        shuffle = rng.permutation(len(labels))   # fastText learns in file order: mix the classes
        os.makedirs(ctx.work_dir, exist_ok=True)
        train_path = os.path.join(ctx.work_dir, "quality_classifier.train")
        ft.write_train_file(train_path, labels[shuffle], lines.take(pa.array(shuffle)))
        self.model_path_ = os.path.join(ctx.work_dir, MODEL_FILE)
        timing = ft.train(train_path, self.model_path_, self._train_args(), where)
        os.remove(train_path)
        self.label_ = ft.POSITIVE
        self.model_ = None
        self.setup()
        metrics = {"trained": True, **n_read, "train_positives": len(pos_train), "train_negatives": len(neg_train),
                   **timing, "prediction": self._predictor_name()}
        if len(pos_hold) or len(neg_hold):
            hold = pa.concat_arrays([pos.take(pa.array(pos_hold)), neg.take(pa.array(neg_hold))])
            truth = np.concatenate([np.ones(len(pos_hold), bool), np.zeros(len(neg_hold), bool)])
            metrics.update(ft.holdout_figures(self._predict(hold), truth))
        return metrics

    def _read_lines(self, batches, where: str) -> pa.Array:
        lines = [self._normalize(docs.text) for docs in batches if len(docs)]
        if not lines or not sum(len(x) for x in lines):
            raise DataError(f"{where}: no documents with text")
        return pa.concat_arrays(lines)

    def fitted_files(self):
        path = getattr(self, "model_path_", None)
        trained = path and self.model is None and os.path.exists(path)
        return {MODEL_FILE: path} if trained else {}

    # -- score and decide --------------------------------------------------------------------
    def score(self, docs):
        if getattr(self, "model_", None) is None:
            raise RuntimeError(f"{self.display_name()}: score before setup(): no model loaded")
        fast = getattr(self, "predictor_", None) is not None  # reads separators as fastText reads spaces
        p = self._predict(self._normalize(docs.text, separators=not fast), multiline=fast)
        return {"score": p, "idhash": hash_strings(docs.ids)}

    def budget(self) -> Budget:
        """The decide is budget selection: the engine runs it in shard tasks (engine/global_budget.py)."""
        return Budget(keep=self.keep, n=self.n, tokens=self.tokens, threshold=self.threshold,
                      reason="low_quality", clip_n=False)

    def budget_rank(self, scores):
        p = np.asarray(scores["score"], dtype=np.float64)
        idhash = np.asarray(scores["idhash"], dtype=np.uint64)
        if self.threshold is None and self.mode == "sample":
            rank, tie = rank_sample(p, idhash, self.seed_, self.temperature)
        else:
            rank, tie = rank_topk(p, idhash, self.seed_)
        return rank, tie, p

    def budget_metrics(self, summary: dict) -> dict:
        kept, docs = summary["kept"], summary["docs"]
        return {"mode": "threshold" if self.threshold is not None else self.mode, "selected": kept,
                "selected_tokens": summary["kept_tokens"], "min_score_selected": summary["score_min_kept"],
                "mean_score_selected": summary["score_sum_kept"] / kept if kept else None,
                "mean_score_all": summary["score_sum"] / docs if docs else None}

    def decide(self, scores, ctx=None):
        p = np.asarray(scores["score"], dtype=np.float64)
        words = np.asarray(scores["n_tokens"], dtype=np.int64)
        total = len(p)
        if self.threshold is not None:
            keep = p >= self.threshold
        else:
            idhash = np.asarray(scores["idhash"], dtype=np.uint64)
            order = (order_topk(p, idhash, self.seed_) if self.mode == "topk"
                     else order_sample(p, idhash, self.seed_, self.temperature))
            if self.tokens is not None:
                k = count_within_budget(order, words, self.tokens)
            else:
                k = count_to_keep(total, self.keep, self.n, self.display_name())
            keep = np.zeros(total, dtype=bool)
            keep[order[:k]] = True
        metrics = {"mode": "threshold" if self.threshold is not None else self.mode,
                   "selected": int(keep.sum()), "selected_tokens": int(words[keep].sum()),
                   "min_score_selected": float(p[keep].min()) if keep.any() else None,
                   "mean_score_selected": float(p[keep].mean()) if keep.any() else None,
                   "mean_score_all": float(p.mean()) if total else None}
        return Decision(keep=keep, reason="low_quality", score=p, metrics=metrics)


def _subsample(lines: pa.Array, m: int, rng) -> pa.Array:
    """At most m of the lines, a seeded subsample in their order."""
    if len(lines) <= m:
        return lines
    return lines.take(pa.array(np.sort(rng.choice(len(lines), size=m, replace=False))))


def _split(n: int, frac: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """(train, holdout) indices of n examples, a seeded split with round(frac * n) held out."""
    perm = rng.permutation(n)
    n_hold = int(round(frac * n)) if n > 1 else 0
    return np.sort(perm[n_hold:]), np.sort(perm[:n_hold])


def _repeat_to(idx: np.ndarray, target: int, rng) -> np.ndarray:
    """``idx`` repeated (whole copies, then a seeded sample) to at least ``target`` entries."""
    if len(idx) >= target or len(idx) == 0:
        return idx
    whole, rest = divmod(target, len(idx))
    return np.concatenate([np.tile(idx, whole), rng.choice(idx, size=rest, replace=False)])
