"""``perplexity_correlation``: data selection by perplexity correlations (Thrush et al. 2024).

Given the bits per byte (BPB) of many public language models on a set of texts or domains (the loss
matrix) and the same models' benchmark errors, texts whose loss is most correlated with the error
are the ones whose likelihood "predicts" benchmark skill; pretraining on them should help. The
stage:

1. fit: reads the loss matrix and errors (checked), computes a per-key correlation estimate
   (``estimator``), projects it onto the capped simplex (``projection``) with caps
   tau_i = token share of key i / desired keep ratio, and labels keys with projected weight > 0
   ``include``, the rest ``exclude``;
2. trains a fastText classifier (word bigrams, deterministic: one thread, seeded) on a seeded sample
   of the pool documents whose key is in the matrix, each flattened to a single line, holds out a
   split and reports its precision and recall in the manifest;
3. score: the include probability of every pool document (also documents whose key has no BPB:
   that is the point of the classifier);
4. decide (global): keeps the most likely documents until ``keep`` (fraction), ``n`` (count) or
   ``tokens`` (whitespace words).

``model: path`` reuses a trained classifier (e.g. ``OUTPUT/models/<stage>/fasttext.bin`` of an earlier
run) and skips steps 1-2.
"""
from __future__ import annotations

import json
import os
import warnings
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..api import Decision, Param, Selector, check_keep_n, count_to_keep
from ..columns import hash_strings
from ..errors import ConfigError, DataError
from . import perplexity_math as pm

INCLUDE = "__label__include"
EXCLUDE = "__label__exclude"
_SEPARATORS = r"[\x00\t\n\v\f\r ]+"  # what fastText splits words on; a newline ends an example


# -- reading the inputs ----------------------------------------------------------------------------

def _read_table(path: str, what: str) -> pa.Table:
    """A Parquet or CSV file as an Arrow table, or a one-line DataError."""
    if not os.path.exists(path):
        raise DataError(f"{path}: {what} file not found")
    low = path.lower()
    try:
        if low.endswith((".parquet", ".pq")):
            import pyarrow.parquet as pq

            return pq.read_table(path)
        if low.endswith((".csv", ".csv.gz", ".tsv")):
            from pyarrow import csv

            opts = csv.ParseOptions(delimiter="\t") if low.endswith(".tsv") else csv.ParseOptions()
            return csv.read_csv(path, parse_options=opts)
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"{path}: cannot read {what}: {str(err).splitlines()[0]}") from None
    raise DataError(f"{path}: {what} must be .parquet or .csv")


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_decimal(t)


def read_losses(path: str, key: str) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(keys as a str array, model names, BPB matrix N x D) from a loss-matrix file.

    One row per key, one floating-point column per model. The key column is the column named like
    the stage's ``key`` (``id``, ``domain``, ...), else the first non-numeric column. Other integer or
    string columns (e.g. a chunk number) are ignored.
    """
    tbl = _read_table(path, "loss matrix")
    names = tbl.column_names
    if key in names:
        key_col = key
    else:
        text_cols = [c for c in names if not _is_number(tbl.schema.field(c).type)]
        if not text_cols:
            raise DataError(f"{path}: no key column {key!r} (and no non-numeric column to use as the key)")
        key_col = text_cols[0]
    models = [c for c in names if c != key_col and pa.types.is_floating(tbl.schema.field(c).type)]
    if not models:
        raise DataError(f"{path}: no floating-point model columns besides the key column {key_col!r}")
    keys_arr = tbl.column(key_col).combine_chunks()
    if keys_arr.null_count:
        raise DataError(f"{path}: column {key_col!r} has {keys_arr.null_count} empty keys")
    keys = np.asarray(keys_arr.cast(pa.string()).to_numpy(zero_copy_only=False), dtype=object)
    uniq, counts = np.unique(keys.astype(str), return_counts=True)
    if (counts > 1).any():
        raise DataError(f"{path}: key {str(uniq[counts > 1][0])!r} appears {int(counts[counts > 1][0])} times in "
                        f"column {key_col!r}; give one row per key")
    X = np.empty((len(models), tbl.num_rows), dtype=np.float64)
    for i, m in enumerate(models):
        col = tbl.column(m).combine_chunks()
        X[i] = col.to_numpy(zero_copy_only=False).astype(np.float64) if len(col) else np.zeros(0)
        bad = ~np.isfinite(X[i])
        if bad.any():
            j = int(np.argmax(bad))
            raise DataError(f"{path}: model {m!r}, key {str(keys[j])!r}: bits per byte is {X[i, j]} "
                            "(missing or not finite)")
        neg = X[i] < 0
        if neg.any():
            j = int(np.argmax(neg))
            raise DataError(f"{path}: model {m!r}, key {str(keys[j])!r}: bits per byte {X[i, j]} is negative")
    return keys, models, X


def read_errors(path: str) -> dict[str, float]:
    """Benchmark error per model (lower is better) from CSV, Parquet, YAML or JSON.

    CSV/Parquet: long form with columns ``model`` and ``error`` (or exactly two columns: name, value),
    or wide form with one numeric column per model, whose rows (e.g. one per benchmark) are
    averaged, as the reference example does. YAML/JSON: a mapping ``model: error``.
    """
    low = path.lower()
    if low.endswith((".yaml", ".yml", ".json")):
        if not os.path.exists(path):
            raise DataError(f"{path}: benchmark errors file not found")
        import yaml

        try:
            with open(path, encoding="utf-8") as fh:
                data = yaml.safe_load(fh)
        except yaml.YAMLError as err:
            raise DataError(f"{path}: invalid YAML: {getattr(err, 'problem', err)}") from None
        if isinstance(data, dict) and set(data) == {"errors"} and isinstance(data["errors"], dict):
            data = data["errors"]
        if not isinstance(data, dict) or not data:
            raise DataError(f"{path}: expected a mapping of model name to benchmark error")
        out = {}
        for k, v in data.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise DataError(f"{path}: model {k!r}: benchmark error {v!r} is not a number")
            out[str(k)] = float(v)
        return out
    tbl = _read_table(path, "benchmark errors")
    names = tbl.column_names
    lower = {c.lower(): c for c in names}
    if "model" in lower and "error" in lower:
        mcol, ecol = lower["model"], lower["error"]
    elif len(names) == 2 and not _is_number(tbl.schema.field(names[0]).type):
        mcol, ecol = names
    else:
        models = [c for c in names if _is_number(tbl.schema.field(c).type)]
        if not models or tbl.num_rows == 0:
            raise DataError(f"{path}: expected columns model,error or one numeric column per model")
        out = {}
        for m in models:
            v = tbl.column(m).to_numpy(zero_copy_only=False).astype(np.float64)
            out[m] = float(np.mean(v))
        return out
    if not _is_number(tbl.schema.field(ecol).type):
        raise DataError(f"{path}: column {ecol!r} must hold numbers (benchmark errors)")
    ms = [str(m) for m in tbl.column(mcol).to_pylist()]
    es = tbl.column(ecol).to_numpy(zero_copy_only=False).astype(np.float64)
    if len(set(ms)) != len(ms):
        dup = next(m for m in ms if ms.count(m) > 1)
        raise DataError(f"{path}: model {dup!r} appears more than once")
    return dict(zip(ms, es.tolist()))


def align_inputs(keys, models, X, errors: dict, losses_path: str, errors_path: str, strict: bool):
    """Check the two inputs against each other; return (X, y) with models in the loss file's order."""
    only_l = [m for m in models if m not in errors]
    if only_l:
        raise DataError(f"model {only_l[0]!r} is in the loss matrix {losses_path} but not in the benchmark "
                        f"errors {errors_path}" + (f" ({len(only_l)} such models)" if len(only_l) > 1 else ""))
    only_e = [m for m in errors if m not in set(models)]
    if only_e:
        raise DataError(f"model {only_e[0]!r} is in the benchmark errors {errors_path} but not in the loss "
                        f"matrix {losses_path}" + (f" ({len(only_e)} such models)" if len(only_e) > 1 else ""))
    if len(models) < 3:
        raise DataError(f"{losses_path}: {len(models)} models; perplexity correlations need at least 3 "
                        "(tens in practice)")
    if len(keys) == 0:
        raise DataError(f"{losses_path}: the loss matrix has no rows")
    y = np.array([errors[m] for m in models], dtype=np.float64)
    bad = ~np.isfinite(y)
    if bad.any():
        raise DataError(f"{errors_path}: model {models[int(np.argmax(bad))]!r}: benchmark error is not a number")
    out = (y < 0) | (y > 1)
    if out.any():
        m = models[int(np.argmax(out))]
        msg = (f"{errors_path}: model {m!r}: benchmark error {errors[m]} is outside [0, 1] "
               f"({int(out.sum())} such models); is this an error rate (1 - accuracy)?")
        if strict:
            raise DataError(msg + " (strict: true)")
        warnings.warn(msg, stacklevel=3)
    return X, y


# -- text preparation for fastText ---------------------------------------------------------------

def fasttext_lines(text: pa.Array, max_chars: int, lowercase: bool) -> pa.Array:
    """One line per document: truncated, optionally lowercased, every run of the bytes fastText
    splits on (space, tab, newline, CR, VT, FF, NUL) made one space, and the label prefix defused so
    text can never inject a label."""
    t = text
    if max_chars:
        t = pc.utf8_slice_codeunits(t, 0, max_chars)
    if lowercase:
        t = pc.utf8_lower(t)
    t = pc.replace_substring_regex(t, _SEPARATORS, " ")
    t = pc.replace_substring(t, "__label__", "_label_")
    return pc.utf8_trim_whitespace(t)


def _doc_keys(docs, key: str) -> pa.Array:
    arr = docs.ids if key == "id" else docs.column(key)
    return arr.cast(pa.string()) if arr.type != pa.string() else arr


def _rand_keys(ids: pa.Array, seed: int) -> np.ndarray:
    """A stable uniform uint64 per document from (seed, id): independent of shards and workers."""
    h = hash_strings(ids) ^ np.uint64((seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % (1 << 64))
    h = (h ^ (h >> np.uint64(31))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(29))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(32))


def _holdout_mask(rand: np.ndarray, frac: float) -> np.ndarray:
    h = (rand ^ np.uint64(0xD6E8FEB86659FD93)) * np.uint64(0xA0761D6478BD642F)
    h ^= h >> np.uint64(33)
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53) < frac


# map functions (module level, so they pickle)

def _scan_shard(batches, key: str, matrix_keys: pa.Array, seed: int, cap: int):
    """Pass 1 over one shard: words and documents per matrix key, pool words in total, and the
    ``cap`` matrix documents with the smallest random keys (the candidates of the training sample)."""
    d = len(matrix_keys)
    words = np.zeros(d, dtype=np.float64)
    docs_per_key = np.zeros(d, dtype=np.int64)
    total_words = 0
    n_docs = 0
    cand = {"rand": [], "row": [], "key": []}
    shard_index = -1
    for docs in batches:
        shard_index = docs.shard_index
        idx = pc.index_in(_doc_keys(docs, key), value_set=matrix_keys).fill_null(-1)
        idx = idx.to_numpy(zero_copy_only=False).astype(np.int64)
        n_docs += len(docs)
        total_words += int(docs.n_words.sum())
        m = idx >= 0
        words += np.bincount(idx[m], weights=docs.n_words[m], minlength=d)
        docs_per_key += np.bincount(idx[m], minlength=d)
        if m.any():
            rand = _rand_keys(docs.ids, seed)[m]
            cand["rand"].append(rand)
            cand["row"].append(docs.row[m])
            cand["key"].append(idx[m])
            if sum(len(r) for r in cand["rand"]) > 2 * cap:
                cand = {k: [np.concatenate(v)] for k, v in cand.items()}
                keep = np.lexsort((cand["row"][0], cand["rand"][0]))[:cap]
                cand = {k: [v[0][keep]] for k, v in cand.items()}
    if cand["rand"]:
        c = {k: np.concatenate(v) for k, v in cand.items()}
        keep = np.lexsort((c["row"], c["rand"]))[:cap]
        c = {k: v[keep] for k, v in c.items()}
    else:
        c = {"rand": np.zeros(0, np.uint64), "row": np.zeros(0, np.int64), "key": np.zeros(0, np.int64)}
    c["shard"] = np.full(len(c["row"]), shard_index, dtype=np.int64)
    return {"words": words, "docs": docs_per_key, "total_words": total_words, "n_docs": n_docs, "cand": c}


def _collect_text(batches, rows_by_shard: dict, max_chars: int, lowercase: bool):
    """Pass 2 over one shard: the flattened lines of the chosen training documents, by row."""
    rows_out, lines = [], []
    for docs in batches:
        want = rows_by_shard.get(docs.shard_index)
        if want is None or len(want) == 0:
            continue
        m = np.isin(docs.row, want)
        if not m.any():
            continue
        take = np.flatnonzero(m)
        rows_out.append(docs.row[take])
        lines.append(fasttext_lines(docs.text.take(pa.array(take)), max_chars, lowercase))
    if not rows_out:
        return np.zeros(0, np.int64), pa.array([], pa.large_string())
    return np.concatenate(rows_out), pa.concat_arrays([a.cast(pa.large_string()) for a in lines])


def _write_fasttext_file(path: str, labels: np.ndarray, lines: pa.Array) -> None:
    """``__label__x text\\n`` per example, written from the Arrow buffer in one go."""
    lab = pa.array(np.where(labels, INCLUDE + " ", EXCLUDE + " ").tolist(), pa.large_string())
    # the last argument is the separator: label + text + "\n"
    joined = pc.binary_join_element_wise(lab, lines.cast(pa.large_string()), pa.scalar("\n", pa.large_string()),
                                         pa.scalar("", pa.large_string()))
    joined = joined.cast(pa.large_string())
    offsets = np.frombuffer(joined.buffers()[1], dtype=np.int64, count=len(joined) + 1, offset=joined.offset * 8)
    data = joined.buffers()[2]
    with open(path, "wb") as fh:
        if len(joined):
            fh.write(memoryview(data)[offsets[0]:offsets[-1]])


def _predict_include(model, lines: pa.Array) -> np.ndarray:
    """P(include) per line (fastText's softmax over the two labels)."""
    if len(lines) == 0:
        return np.zeros(0, dtype=np.float64)
    labels, probs = model.predict(lines.to_pylist(), k=2)
    first_is_inc = np.fromiter((lab[0] == INCLUDE if lab else False for lab in labels), bool, len(labels))
    p = np.zeros((len(probs), 2), dtype=np.float64)
    for j, pr in enumerate(probs):  # fastText hands back one small array per line
        p[j, :len(pr)] = pr[:2]
    p_inc = np.where(first_is_inc, p[:, 0], p[:, 1])
    return np.clip(p_inc / np.maximum(p.sum(axis=1), 1e-12), 0.0, 1.0)


def _file_fingerprint(path: str | None) -> str:
    if not path:
        return ""
    try:
        st = os.stat(path)
    except OSError:
        return f"{path}:missing"
    return f"{os.path.abspath(path)}:{st.st_size}:{st.st_mtime_ns}"


class PerplexityCorrelationSelector(Selector):
    """Perplexity-correlation selection (Thrush et al. 2024) with a fastText include/exclude filter.

    Keys whose loss best predicts benchmark error label the training text; the classifier then
    ranks every pool document and the most likely 'include' ones are kept."""

    name = "perplexity_correlation"
    scope = "global"
    needs_fit = True

    losses = Param(str, None, "loss matrix: BPB of N models (columns) on D keys (rows), .parquet or .csv")
    errors = Param(str, None, "benchmark error per model (lower is better): .csv (model,error) or .yaml")
    key = Param(str, "id", "pool column whose value is a document's key in the loss matrix; 'id' = the "
                "document id, e.g. 'domain' for a per-domain matrix")
    estimator = Param(str, "sign_cdf", "correlation estimator", choices=pm.ESTIMATORS)
    projection = Param(str, "linear", "projection onto the capped simplex", choices=pm.PROJECTIONS)
    target_ratio = Param(float, None, "desired keep ratio in tokens for the caps tau = token share / ratio; "
                         "default: the ratio that keep, n or tokens implies", gt=0, le=1)
    strict = Param(bool, False, "refuse benchmark errors outside [0, 1] instead of warning")
    missing_keys = Param(str, "error", "loss-matrix keys absent from the pool: error, or drop them",
                         choices=("error", "drop"))
    keep = Param(float, None, "fraction of documents to keep", gt=0, le=1)
    n = Param(int, None, "number of documents to keep", ge=0)
    tokens = Param(int, None, "keep the most likely documents until this many whitespace words", ge=0)
    model = Param(str, None, "a trained fastText classifier (.bin) to reuse instead of training")
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
                              f"tokens (word budget); got {', '.join(budgets) or 'none'}")
        if self.model is not None:
            if self.losses is not None or self.errors is not None:
                raise ConfigError("perplexity_correlation: give model (a trained classifier) or losses and "
                                  "errors, not both")
        elif self.losses is None or self.errors is None:
            missing = "losses" if self.losses is None else "errors"
            raise ConfigError(f"perplexity_correlation.{missing}: a value is required (or give model: a "
                              "trained fastText classifier)")

    @property
    def columns(self):
        """The key column, read while fitting; scoring needs only the text."""
        if self.key == "id" or self.model is not None or getattr(self, "model_path_", None):
            return ()
        return (self.key,)

    @property
    def version(self):
        """Enters the stage fingerprint: a changed input file reruns the stage instead of resuming."""
        return "|".join(_file_fingerprint(p) for p in (self.losses, self.errors, self.model))

    # -- fit -------------------------------------------------------------------------------------
    def fit(self, ctx):
        self.fit_metrics_ = {}
        if self.model is not None:
            if not os.path.exists(self.model):
                raise DataError(f"perplexity_correlation.model: {self.model}: file not found")
            self.model_path_ = os.path.abspath(self.model)
            labels = set(self._load_model().get_labels())
            if INCLUDE not in labels:
                raise DataError(f"{self.model}: not a perplexity_correlation classifier (labels: "
                                f"{', '.join(sorted(labels))}; expected {INCLUDE})")
            self.fit_metrics_ = {"model": self.model, "trained": False}
            return
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
        parts = ctx.map_shards(partial(_scan_shard, key=self.key, matrix_keys=matrix_keys, seed=self.seed_,
                                       cap=cap), columns=self.columns, need_text=False)
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

        # estimate and project over the keys present in the pool
        est = pm.estimate(X[:, present], y, self.estimator)
        key_words = np.maximum(words[present], 1.0)  # a key of empty documents still gets a positive cap
        share = key_words / key_words.sum()
        ratio = self._ratio(pool_words, pool_docs)
        tau = share / ratio
        weight = pm.project(est, tau, self.projection)
        include_present = weight > 0
        include = np.zeros(len(keys), dtype=bool)
        include[np.flatnonzero(present)[include_present]] = True

        table = pa.table({
            "key": pa.array(keys[present].astype(str).tolist(), pa.string()),
            "words": key_words.astype(np.int64), "docs": ndocs[present], "tau": tau, "estimate": est,
            "weight": weight, "include": include_present})
        import pyarrow.parquet as pq

        self.weights_path_ = os.path.join(ctx.work_dir, "key_weights.parquet")
        pq.write_table(table, self.weights_path_)

        # the training sample: the max_train_docs matrix documents with the smallest random keys
        c = {k: np.concatenate([p["cand"][k] for p in parts]) for k in ("rand", "row", "key", "shard")}
        c = {k: v[present[c["key"]]] for k, v in c.items()}
        order = np.lexsort((c["row"], c["shard"], c["rand"]))[:cap]
        c = {k: v[order] for k, v in c.items()}
        rows_by_shard = {int(s): np.sort(c["row"][c["shard"] == s]) for s in np.unique(c["shard"])}
        got = ctx.map_shards(partial(_collect_text, rows_by_shard=rows_by_shard, max_chars=self.max_chars,
                                     lowercase=self.lowercase), columns=())
        lines = pa.concat_arrays([g[1] for g in got]) if got else pa.array([], pa.large_string())
        pos = self._align(c, got)
        lines = lines.take(pa.array(pos))
        labels = include[c["key"]]

        hold = _holdout_mask(c["rand"], self.holdout) if self.holdout > 0 else np.zeros(len(labels), bool)
        train = ~hold
        if labels[train].all() or not labels[train].any():
            which = "include" if labels[train].all() else "exclude"
            raise DataError(f"{self.losses}: every training document is labelled {which} (projected weights "
                            f"leave no {'exclude' if which == 'include' else 'include'} key); lower keep/"
                            "target_ratio or give more keys")
        train_path = os.path.join(ctx.work_dir, "fasttext.train")
        _write_fasttext_file(train_path, labels[train], lines.filter(pa.array(train)))
        model = self._train(train_path)
        self.model_path_ = os.path.join(ctx.work_dir, "fasttext.bin")
        model.save_model(self.model_path_)
        self._model_cache = model
        os.remove(train_path)

        metrics = {"trained": True, "models": len(models), "keys": len(keys),
                   "keys_missing_from_pool": int(absent.sum()), "estimator": self.estimator,
                   "projection": self.projection, "target_ratio": ratio,
                   "include_keys": int(include.sum()),
                   "include_word_share": float(key_words[include_present].sum() / key_words.sum()),
                   "train_docs": int(train.sum()), "lr_used": self.lr_used_, "train_include": int(labels[train].sum()),
                   "holdout_docs": int(hold.sum())}
        if hold.any():
            p = _predict_include(model, lines.filter(pa.array(hold)))
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
        self.fit_metrics_ = metrics

    @staticmethod
    def _align(c, got):
        """Index into the concatenated pass-2 output for each sample document (c is in sample order)."""
        offsets = np.cumsum([0] + [len(g[0]) for g in got])
        # got[i] holds shard i's documents when map_shards covers every shard in order
        pos = np.empty(len(c["row"]), dtype=np.int64)
        for s in np.unique(c["shard"]):
            m = c["shard"] == s
            rows = got[int(s)][0]
            order = np.argsort(rows, kind="stable")
            found = np.searchsorted(rows[order], c["row"][m])
            if (found >= len(rows)).any() or (rows[order][np.minimum(found, len(rows) - 1)] != c["row"][m]).any():
                raise RuntimeError("perplexity_correlation: training documents changed between passes")
            pos[m] = offsets[int(s)] + order[found]
        return pos

    def _ratio(self, pool_words: int, pool_docs: int) -> float:
        if self.target_ratio is not None:
            return float(self.target_ratio)
        if self.keep is not None:
            return float(self.keep)
        if self.tokens is not None:
            return float(min(1.0, self.tokens / max(pool_words, 1)))
        return float(min(1.0, max(self.n, 1) / max(pool_docs, 1)))

    def _train(self, path: str):
        """Train in a fresh process and load the result.

        fastText's training result was seen to depend on the state of the process it runs in (the
        same file, seed and one thread diverged to NaN after unrelated work in the same process), so
        it runs where nothing else has: the model is then a function of its inputs only. Should it
        still diverge, the learning rate is halved (at most three times) and the rate used is reported.
        """
        import subprocess
        import sys

        import fasttext

        out = path + ".bin"
        lr = float(self.lr)
        for _ in range(4):
            args = {"input": path, "wordNgrams": self.word_ngrams, "dim": self.dim, "epoch": self.epoch,
                    "lr": lr, "bucket": self.bucket, "minCount": self.min_count, "thread": 1,
                    "seed": int(self.seed_), "verbose": 0}
            code = ("import json, sys, fasttext\n"
                    "a = json.loads(sys.argv[1])\n"
                    "fasttext.train_supervised(**a).save_model(sys.argv[2])\n")
            proc = subprocess.run([sys.executable, "-c", code, json.dumps(args), out],
                                  capture_output=True, text=True)
            if proc.returncode == 0:
                self.lr_used_ = lr
                model = fasttext.load_model(out)
                os.remove(out)
                return model
            if "NaN" not in proc.stderr:
                tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                raise RuntimeError(f"perplexity_correlation: fastText training failed: {tail}")
            lr /= 2
        raise DataError(f"{self.losses}: fastText training diverged (NaN) even at lr {lr * 2:g}; "
                        "lower lr or add training documents")

    def _load_model(self):
        model = getattr(self, "_model_cache", None)
        if model is None:
            import fasttext

            try:
                model = fasttext.load_model(self.model_path_)
            except ValueError as err:
                raise DataError(f"{self.model_path_}: cannot load the fastText model ({err})") from None
            self._model_cache = model
        return model

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_model_cache", None)  # fastText models do not pickle; workers reload from model_path_
        return state

    # -- score and decide ------------------------------------------------------------------------
    def score(self, docs):
        lines = fasttext_lines(docs.text, self.max_chars, self.lowercase)
        return {"score": _predict_include(self._load_model(), lines)}

    def decide(self, scores, ctx=None):
        p = np.asarray(scores["score"], dtype=np.float64)
        words = np.asarray(scores["n_words"], dtype=np.int64)
        total = len(p)
        order = np.lexsort((np.arange(total), -p))  # most likely first; ties by position
        keep = np.zeros(total, dtype=bool)
        if self.tokens is not None:
            cum = np.cumsum(words[order])
            k = int(np.searchsorted(cum, self.tokens, side="right"))
        else:
            k = count_to_keep(total, self.keep, self.n, "perplexity_correlation")
        keep[order[:k]] = True
        metrics = {"kept_words": int(words[keep].sum()),
                   "include_prob_threshold": float(p[order[k - 1]]) if 0 < k <= total else None,
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


# -- example inputs for the sample corpus ----------------------------------------------------------

def write_example_inputs(out_dir: str, pool_docs_or_domains, seed: int = 0, *, n_models: int = 24,
                         informative=None, key: str = "domain") -> dict:
    """Write a generated loss matrix and benchmark errors for a corpus, for examples and tests.

    ``pool_docs_or_domains``: a list of key values (e.g. domain names), an Arrow table / dict of
    columns with a ``key`` column, or a path to Parquet files with one. Each of ``n_models`` fake
    models has a general capability and a benchmark skill; its error falls with both, and its BPB on
    every key falls with capability, but only on the ``informative`` keys (a seeded third of them by
    default) also with benchmark skill, so those keys' losses correlate best with the error.
    Writes ``losses.csv`` (column ``key`` + one column per model), ``errors.csv`` (model,error) and
    ``truth.json``; returns their paths and the informative keys.
    """
    values = _key_values(pool_docs_or_domains, key)
    rng = np.random.default_rng(seed)
    if informative is None:
        k = max(1, len(values) // 3)
        informative = sorted(rng.choice(values, size=k, replace=False).tolist())
    informative = [str(v) for v in informative]
    inf = np.isin(np.array(values, dtype=object), informative)
    cap = rng.normal(size=n_models)
    skill = rng.normal(size=n_models)
    err = np.clip(0.5 - 0.08 * cap - 0.12 * skill + rng.normal(0, 0.02, n_models), 0.02, 0.98)
    base = rng.uniform(0.7, 1.6, size=len(values))
    X = (base[None, :] - 0.05 * cap[:, None] - 0.06 * skill[:, None] * inf[None, :]
         + rng.normal(0, 0.02, size=(n_models, len(values))))
    X = np.maximum(X, 0.05)
    models = [f"lm-{i:02d}" for i in range(n_models)]
    os.makedirs(out_dir, exist_ok=True)
    from pyarrow import csv

    cols = {key: pa.array(values, pa.string())}
    cols.update({m: pa.array(np.round(X[i], 6)) for i, m in enumerate(models)})
    losses = os.path.join(out_dir, "losses.csv")
    errors = os.path.join(out_dir, "errors.csv")
    csv.write_csv(pa.table(cols), losses)
    csv.write_csv(pa.table({"model": models, "error": np.round(err, 6)}), errors)
    truth = os.path.join(out_dir, "truth.json")
    with open(truth, "w", encoding="utf-8") as fh:
        json.dump({"key": key, "informative": informative, "seed": seed}, fh, indent=1)
    return {"losses": losses, "errors": errors, "truth": truth, "informative": informative}


def _key_values(src, key: str) -> list[str]:
    if isinstance(src, (str, os.PathLike)) and os.path.exists(src):
        import pyarrow.dataset as ds

        src = ds.dataset(str(src), format="parquet").to_table(columns=[key])
    if isinstance(src, dict):
        src = pa.table({key: src[key]})
    if isinstance(src, pa.Table):
        if key not in src.column_names:
            raise DataError(f"example inputs: no column {key!r} in the given documents")
        src = pc.unique(src.column(key).combine_chunks().cast(pa.string())).to_pylist()
    vals = sorted({str(v) for v in src if v is not None})
    if len(vals) < 2:
        raise DataError(f"example inputs: need at least 2 distinct {key} values, got {len(vals)}")
    return vals
