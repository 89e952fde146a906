"""DSIR: Data Selection with Importance Resampling (Xie et al. 2023).

Each document is a bag of hashed n-gram features (lowercased word-punct tokens, unigrams and bigrams
by default, hashed into ``buckets``). Two smoothed categorical distributions over the buckets are fit:
``p_target`` on the target corpus and ``p_raw`` on the documents that reach the stage. A document's
log importance weight is ``sum_features count * (log p_target - log p_raw)``, computed as a segmented
sum of a per-bucket log-ratio table over its feature occurrences (no per-document count vectors).
Selection samples ``k`` documents without replacement in proportion to the weights with the Gumbel
top-k trick; the Gumbel noise of a document is a stable hash of (seed, document id), so the selection
does not depend on shard layout, batch size or the number of workers.

The manifest gets the paper's quality figure, the KL reduction ``KL(target||raw) - KL(target||selected)``
in the same hashed feature space, and the same figure for a uniform random selection of the same size.
"""
from __future__ import annotations

import json
import math
import os
from functools import partial

import numba as nb
import numpy as np

from ..api import Decision, Param, Selector, check_keep_n, count_to_keep
from ..columns import hash_strings, mix64
from ..errors import ConfigError, DataError
from ..text import MODES, lower, ngrams, tokenize

ESTIMATOR_FILE = "dsir_estimator.npz"
_FORMAT = 1
_FIT_SALT = np.uint64(0x5DEECE66D1F2B3C5)      # raw-fit token budget subsample
_RANDOM_SALT = np.uint64(0xA24BAED4963EE407)   # random baseline selection for the manifest
_TARGET_SALT = np.uint64(0x9FB21C651E98DF25)   # per-target Gumbel noise streams


# -- featurization -------------------------------------------------------------------------------

@nb.njit(cache=True, nogil=True)
def _chunk_offsets(off, size):
    """Split every document's token range into pieces of ``size`` tokens (the last may be shorter)."""
    nd = off.shape[0] - 1
    total = 0
    for d in range(nd):
        m = off[d + 1] - off[d]
        total += (m + size - 1) // size
    out = np.empty(total + 1, dtype=np.int64)
    k = 0
    for d in range(nd):
        a = off[d]
        while a < off[d + 1]:
            out[k] = a
            k += 1
            a += size
    out[k] = off[nd]
    return out


@nb.njit(cache=True, nogil=True)
def _segment_sums(hashes, off, table, buckets):
    """out[d, t] = sum over document d's features f of table[t, hash_f % buckets]."""
    nd = off.shape[0] - 1
    nt = table.shape[0]
    out = np.zeros((nd, nt), dtype=np.float64)
    b64 = np.uint64(buckets)
    for d in range(nd):
        for i in range(off[d], off[d + 1]):
            b = np.int64(hashes[i] % b64)
            for t in range(nt):
                out[d, t] += table[t, b]
    return out


@nb.njit(cache=True, nogil=True)
def _bucket_counts(hashes, off, keep_doc, buckets):
    """Bucket histogram of the features of documents with keep_doc true."""
    counts = np.zeros(buckets, dtype=np.int64)
    b64 = np.uint64(buckets)
    for d in range(off.shape[0] - 1):
        if keep_doc[d]:
            for i in range(off[d], off[d + 1]):
                counts[np.int64(hashes[i] % b64)] += 1
    return counts


def featurize(text, *, ngram_order: int, tokenizer: str = "wordpunct", lowercase: bool = True,
              chunk_tokens: int | None = None):
    """Hashed n-gram features of a string array.

    Returns (feature_hashes uint64[F], feature_offsets int64[n+1], n_tokens int64[n]). With
    ``chunk_tokens`` the documents are cut into pieces of that many tokens first (n-grams do not
    cross a cut); offsets are still per document.
    """
    if lowercase:
        text = lower(text)
    tok, off = tokenize(text, tokenizer, lowercase)
    n_tokens = np.diff(off)
    if chunk_tokens:
        coff = _chunk_offsets(off, chunk_tokens)
        feats, foff = ngrams(tok, coff, ngram_order)
        # map chunk offsets back to document offsets: doc d's chunks are contiguous
        n_chunks = (n_tokens + chunk_tokens - 1) // chunk_tokens
        doc_first_chunk = np.concatenate([[0], np.cumsum(n_chunks)])
        return feats, foff[doc_first_chunk], n_tokens
    feats, foff = ngrams(tok, off, ngram_order)
    return feats, foff, n_tokens


_NO_SALT = np.uint64(0)


def uniform_from_hash(idhash: np.ndarray, seed: int, salt: np.uint64 = _NO_SALT) -> np.ndarray:
    """A uniform number in (0, 1) per document from its id hash, the seed and a salt: stable anywhere."""
    with np.errstate(over="ignore"):
        s = np.uint64((int(seed) * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % (1 << 64))
        h = mix64(np.asarray(idhash, dtype=np.uint64) ^ s ^ salt)
    return ((h >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)


def gumbel_from_hash(idhash: np.ndarray, seed: int, salt: np.uint64 = _NO_SALT) -> np.ndarray:
    return -np.log(-np.log(uniform_from_hash(idhash, seed, salt)))


def log_probs(counts: np.ndarray, smoothing: float) -> np.ndarray:
    """Additively smoothed log distribution over the last axis: log((c + a) / (N + a B))."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum(axis=-1, keepdims=True)
    return np.log(counts + smoothing) - np.log(total + smoothing * counts.shape[-1])


def kl(p_log: np.ndarray, q_log: np.ndarray) -> float:
    """KL(p || q) in nats from log probabilities."""
    p = np.exp(p_log)
    return float(np.sum(p * (p_log - q_log)))


# -- map functions (module level so they pickle) ----------------------------------------------

def _shard_words(batches):
    """Whitespace words of one shard (to turn a raw-token budget into a sampling rate)."""
    return int(sum(int(np.sum(b.n_words)) for b in batches))


def _count_docs(batches, *, buckets, ngram_order, tokenizer, lowercase, chunk_tokens, min_tokens,
                rate=1.0, seed=0, return_lengths=False):
    """Bucket histogram of a stream of Docs batches (one shard, or a target corpus).

    Documents shorter than ``min_tokens`` are left out; with ``rate < 1`` a stable hash of the
    document id picks a subsample of about that fraction (the raw-distribution token budget).
    """
    counts = np.zeros(buckets, dtype=np.int64)
    n_docs = n_tok = n_seen = 0
    lengths = []
    for docs in batches:
        n_seen += len(docs)
        if len(docs) == 0:
            continue
        feats, foff, ntok = featurize(docs.text, ngram_order=ngram_order, tokenizer=tokenizer,
                                      lowercase=lowercase, chunk_tokens=chunk_tokens)
        use = ntok >= max(min_tokens, 1)
        if rate < 1.0:
            use &= uniform_from_hash(hash_strings(docs.ids), seed, _FIT_SALT) < rate
        counts += _bucket_counts(feats, foff, use, buckets)
        n_docs += int(use.sum())
        n_tok += int(ntok[use].sum())
        if return_lengths:
            lengths.append(np.diff(foff)[use].astype(np.int32))
    out = {"counts": counts, "docs": n_docs, "tokens": n_tok, "seen": n_seen}
    if return_lengths:
        out["lengths"] = np.concatenate(lengths) if lengths else np.zeros(0, np.int32)
    return out


def _recount_rows(item, *, read_docs, feature_kw):
    """Bucket histograms of given rows of one shard, for the KL metrics in decide."""
    shard_index, row_sets = item
    out = []
    for rows in row_sets:
        if len(rows) == 0:
            out.append(np.zeros(feature_kw["buckets"], dtype=np.int64))
            continue
        docs = read_docs(shard_index, rows)
        out.append(_count_docs([docs], **feature_kw)["counts"])
    return out


# -- the selector ----------------------------------------------------------------------------

class DSIRSelector(Selector):
    """Importance resampling toward a target corpus in a hashed n-gram feature space."""

    name = "dsir"
    scope = "global"
    needs_fit = True

    target = Param(object, None, "target corpus: a path/glob, an input mapping {path: ...}, or a "
                   "datasets.Dataset")
    targets = Param(list, None, "several targets [{path: ..., weight: w}, ...]; documents are selected "
                    "per target in proportion to the weights, without repeats")
    estimator = Param(str, None, "load a fitted estimator (a dsir_estimator.npz or the models/<stage> "
                      "folder holding it) instead of fitting")
    keep = Param(float, None, "fraction of the documents reaching the stage to select", gt=0, le=1)
    n = Param(int, None, "number of documents to select", ge=0)
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
            if self.keep is not None or self.n is not None:
                raise ConfigError("dsir: mode threshold selects by threshold; drop keep/n")
        else:
            if self.threshold is not None:
                raise ConfigError(f"dsir.threshold: only used with mode threshold (mode is {self.mode})")
            if self.keep is None and self.n is None:
                raise ConfigError("dsir: give keep (a fraction in (0, 1]) or n (a count)")
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
        seed = getattr(self, "seed_", None)
        self.seed_ = int(ctx.seed if seed is None else seed)
        self.work_dir_ = getattr(ctx, "work_dir", None)
        if self.estimator is not None:
            self._load(self.estimator)
            self._finish_fit(save=True)
            return
        kw = self._feature_kw(chunk=True)
        names, tcounts, weights, tstats = [], [], [], []
        for name, spec, w in self._target_specs():
            where = "dsir.target" if self.target is not None else f"dsir.targets[{len(names)}]"
            res = _count_docs(ctx.read_input(spec, what=where), **kw)
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
            try:
                words = ctx.map_shards(_shard_words, need_text=False)
            except TypeError:  # a context without need_text
                words = ctx.map_shards(_shard_words)
            total_words = int(sum(words))
            rate = min(1.0, self.raw_tokens / max(total_words, 1))
        shard_res = ctx.map_shards(partial(_count_docs, **kw, rate=rate, seed=self.seed_,
                                           return_lengths=True))
        raw = np.zeros(self.buckets, dtype=np.int64)
        lengths = []
        raw_docs = raw_tok = 0
        for r in shard_res:
            raw += r["counts"]
            lengths.append(r["lengths"])
            raw_docs += r["docs"]
            raw_tok += r["tokens"]
        if raw.sum() == 0:
            raise DataError(f"dsir: no document reaching the stage has at least {max(self.min_tokens, 1)} "
                            "tokens; nothing to fit the raw distribution on")
        lengths = np.concatenate(lengths)
        w = np.asarray(weights, dtype=np.float64)
        self.target_names_ = names
        self.target_weights_ = w / w.sum()
        self.target_counts_ = np.stack(tcounts)
        self.raw_counts_ = raw
        self.median_length_ = float(np.median(lengths)) if len(lengths) else 1.0
        self.fit_metrics_ = {
            "target_docs": sum(st["docs"] for st in tstats),
            "target_tokens": sum(st["tokens"] for st in tstats),
            "raw_docs": raw_docs, "raw_tokens": raw_tok, "raw_sample_rate": rate,
        }
        if len(names) > 1:
            self.fit_metrics_["targets"] = {nm: {"weight": float(wt), **st}
                                            for nm, wt, st in zip(names, self.target_weights_, tstats)}
        self._finish_fit(save=True)

    def _finish_fit(self, save: bool):
        self.target_log_ = log_probs(self.target_counts_, self.smoothing)
        self.raw_log_ = log_probs(self.raw_counts_, self.smoothing)
        self.log_ratio_ = self.target_log_ - self.raw_log_[None, :]
        self.norm_length_ = float(self.norm_length or max(self.median_length_, 1.0))
        self.fit_metrics_ = dict(getattr(self, "fit_metrics_", {}) or {})
        if self._norm_power():
            self.fit_metrics_["norm_length"] = self.norm_length_
        self.estimator_path_ = None
        if save and self.work_dir_:
            os.makedirs(self.work_dir_, exist_ok=True)
            self.estimator_path_ = os.path.join(self.work_dir_, ESTIMATOR_FILE)
            self.save(self.estimator_path_)

    # -- the estimator file ------------------------------------------------------------------
    def save(self, path: str) -> None:
        """Write the fitted estimator (counts, feature parameters) as one .npz."""
        meta = {
            "format": _FORMAT, "buckets": self.buckets, "ngrams": self.ngrams, "tokenizer": self.tokenizer,
            "lowercase": self.lowercase, "smoothing": self.smoothing, "min_tokens": self.min_tokens,
            "chunk_tokens": self.chunk_tokens, "median_length": self.median_length_,
            "target_names": list(self.target_names_), "fit_metrics": getattr(self, "fit_metrics_", {}),
        }
        tmp = path + ".tmp.npz"
        np.savez(tmp, target_counts=self.target_counts_, raw_counts=self.raw_counts_,
                 target_weights=self.target_weights_, meta=np.array(json.dumps(meta)))
        os.replace(tmp, path)

    def _load(self, path: str) -> None:
        if os.path.isdir(path):
            path = os.path.join(path, ESTIMATOR_FILE)
        if not os.path.isfile(path):
            raise DataError(f"dsir.estimator: {path} not found")
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                tc, rc, tw = z["target_counts"], z["raw_counts"], z["target_weights"]
        except Exception as err:  # noqa: BLE001 - any unreadable file is one data error
            raise DataError(f"dsir.estimator: {path} is not a DSIR estimator ({err})") from None
        if meta.get("format") != _FORMAT:
            raise DataError(f"dsir.estimator: {path} has format {meta.get('format')}, expected {_FORMAT}")
        # the feature space is the estimator's: a different setting here would make the counts meaningless
        for key in ("buckets", "ngrams", "tokenizer", "lowercase"):
            setattr(self, key, meta[key])
        self.target_counts_, self.raw_counts_, self.target_weights_ = tc, rc, tw
        self.target_names_ = meta["target_names"]
        self.median_length_ = float(meta["median_length"])
        self.fit_metrics_ = {"estimator": path, **meta.get("fit_metrics", {})}

    def fitted_files(self):
        p = getattr(self, "estimator_path_", None)
        return {ESTIMATOR_FILE: p} if p and os.path.exists(p) else {}

    # -- score -------------------------------------------------------------------------------
    def log_weights(self, text) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(log weights float64[n, targets], n_tokens, n_features) of a string array."""
        feats, foff, ntok = featurize(text, **{k: v for k, v in self._feature_kw().items()
                                               if k not in ("buckets", "min_tokens")})
        lw = _segment_sums(feats, foff, self.log_ratio_, self.buckets)
        nfeat = np.diff(foff)
        power = self._norm_power()
        if power:
            lw *= ((self.norm_length_ / np.maximum(nfeat, 1)) ** power)[:, None]
        return lw, ntok, nfeat

    def score(self, docs):
        lw, ntok, _ = self.log_weights(docs.text)
        out = {"score": self._mixture(lw), "n_tokens": ntok.astype(np.int64),
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

    # -- decide ------------------------------------------------------------------------------
    def decide(self, scores, ctx):
        n_all = len(scores)
        score = np.asarray(scores["score"], dtype=np.float64)
        lw = np.asarray(scores["logw"]) if "logw" in scores else score[:, None]
        idhash = np.asarray(scores["idhash"], dtype=np.uint64)
        eligible = np.asarray(scores["n_tokens"]) >= self.min_tokens
        keep = np.zeros(n_all, dtype=bool)
        chosen_for = np.full(n_all, -1, dtype=np.int64)
        per_target = []
        if self.mode == "threshold":
            keep = eligible & (score >= self.threshold)
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

    def _metrics(self, scores, keep, eligible, idhash, score, per_target, ctx):
        m = {"mode": self.mode, "selected": int(keep.sum()), "eligible": int(eligible.sum()),
             "too_short": int((~eligible).sum()),
             "mean_log_weight_all": _mean(score[eligible]), "mean_log_weight_selected": _mean(score[keep])}
        if len(per_target) > 1:
            m["selected_per_target"] = dict(zip(self.target_names_, per_target))
        m.update({k: v for k, v in (getattr(self, "fit_metrics_", {}) or {}).items()})
        if not self.metrics or keep.sum() == 0:
            return m
        # random baseline of the same size among the eligible documents
        u = uniform_from_hash(idhash, self.seed_, _RANDOM_SALT)
        rand = np.zeros(len(keep), dtype=bool)
        rand[_top_k(u, idhash, eligible, int(keep.sum()))] = True
        sel_counts, rand_counts = self._recount(scores, [keep, rand], ctx)
        t_log = np.log(np.exp(self.target_log_).T @ self.target_weights_)  # mixture target
        m["kl_target_raw"] = kl(t_log, self.raw_log_)
        m["kl_target_selected"] = kl(t_log, log_probs(sel_counts, self.smoothing))
        m["kl_target_random"] = kl(t_log, log_probs(rand_counts, self.smoothing))
        m["kl_reduction"] = m["kl_target_raw"] - m["kl_target_selected"]
        m["kl_reduction_random"] = m["kl_target_raw"] - m["kl_target_random"]
        return m

    def _recount(self, scores, masks, ctx):
        """Bucket histograms of the documents in each mask, re-read shard by shard."""
        rows = np.asarray(scores["row"], dtype=np.int64)
        items = []
        offs = scores.shard_offsets
        for s in range(len(offs) - 1):
            a, b = offs[s], offs[s + 1]
            sets = [rows[a:b][mk[a:b]] for mk in masks]
            if any(len(x) for x in sets):
                items.append((s, sets))
        # On the driver: the documents are a fraction of the pool, and the context's reader holds
        # the runner, which does not travel to worker processes.
        fn = partial(_recount_rows, read_docs=ctx.read_docs,
                     feature_kw={**self._feature_kw(), "min_tokens": 0})
        results = [fn(it) for it in items]
        totals = [np.zeros(self.buckets, dtype=np.int64) for _ in masks]
        for res in results:
            for tot, c in zip(totals, res):
                tot += c
        return totals


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
