"""The fastText side of ``quality_classifier``: text normalisation, the training file, training in a
fresh process, loading a model, the positive-class probability of a batch, and holdout figures.

fastText reads one example per line and splits words on space, tab, newline, CR, VT, FF and NUL, so
every document becomes one line; the normalisation (as DCLM's classifiers were trained: lowercase,
newlines as spaces, whitespace collapsed) runs in Arrow compute, one call per batch.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...errors import ConfigError, DataError

POSITIVE = "__label__positive"
NEGATIVE = "__label__negative"
LABEL_PREFIX = "__label__"
_SEPARATOR_BYTES = ("\n", "\r", "\t", "\v", "\f", "\x00")   # fastText splits words on these and space;
_SEPARATORS = r"[\x00\t\n\v\f\r ]+"                      # a newline ends an example


def normalize(text: pa.Array, *, lowercase: bool, collapse_whitespace: bool, max_chars: int,
              separators: bool = True) -> pa.Array:
    """One line per document: optionally truncated to ``max_chars`` characters and lowercased, every
    separator made a space (with ``collapse_whitespace`` every run of them one space, and the ends
    trimmed), and the label prefix defused, so a document can never carry a label into training.

    fastText skips runs of separators, so collapsing changes the lines' length, not what the model
    reads; one plain replacement per separator byte is several times faster than the regex.
    ``separators=False`` leaves them as they are, for a reader that splits words on all of them
    and reads past newlines (the numba predictor's ``multiline``): the same words, fewer passes."""
    t = text
    if max_chars:
        t = pc.utf8_slice_codeunits(t, 0, max_chars)
    if lowercase:
        t = pc.utf8_lower(t)
    if separators and collapse_whitespace:
        t = pc.utf8_trim_whitespace(pc.replace_substring_regex(t, _SEPARATORS, " "))
    elif separators:
        for sep in _SEPARATOR_BYTES:
            t = pc.replace_substring(t, sep, " ")
    t = pc.replace_substring(t, LABEL_PREFIX, "_label_")
    return t.cast(pa.large_string())


def write_train_file(path: str, positive: np.ndarray, lines: pa.Array) -> None:
    """``__label__positive text\\n`` or ``__label__negative text\\n`` per example, written from the
    Arrow buffer in one go."""
    lab = pc.if_else(pa.array(positive, pa.bool_()), pa.scalar(POSITIVE + " ", pa.large_string()),
                     pa.scalar(NEGATIVE + " ", pa.large_string()))
    nl = pa.scalar("\n", pa.large_string())
    joined = pc.binary_join_element_wise(lab, lines.cast(pa.large_string()), nl, pa.scalar("", pa.large_string()))
    joined = joined.cast(pa.large_string())
    offsets = np.frombuffer(joined.buffers()[1], dtype=np.int64, count=len(joined) + 1, offset=joined.offset * 8)
    with open(path, "wb") as fh:
        if len(joined):
            fh.write(memoryview(joined.buffers()[2])[offsets[0]:offsets[-1]])


_TRAIN_CODE = ("import json, sys, fasttext\n"
               "a = json.loads(sys.argv[1])\n"
               "fasttext.train_supervised(**a).save_model(sys.argv[2])\n")


def train(train_path: str, model_path: str, args: dict, where: str) -> dict:
    """Train a supervised model on ``train_path`` and save it to ``model_path``, in a fresh process;
    return its CPU and wall seconds (``train_cpu_s``, ``train_wall_s``).

    fastText's result (even with one thread and a fixed seed) was seen to depend on the state of the
    process it ran in (diverging to NaN after unrelated work), so it trains where nothing else has
    run: the model bytes are then a function of the training file and the arguments only."""
    before, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _TRAIN_CODE, json.dumps({"input": train_path, **args}),
                           model_path], capture_output=True, text=True)
    wall, after = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        hint = "; lower lr" if "NaN" in proc.stderr else ""
        raise DataError(f"{where}: fastText training failed ({tail}){hint}")
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {"train_cpu_s": round(cpu, 3), "train_wall_s": round(wall, 3)}


def load(path: str, where: str, error: type[Exception] = DataError):
    """A fastText model, or a one-line ``error`` for a file that is missing or not a fastText model."""
    import fasttext

    if not os.path.isfile(path):
        raise error(f"{where}: {path} not found")
    try:
        return fasttext.load_model(path)
    except ValueError as err:
        raise error(f"{where}: {path} is not a fastText model ({err})") from None


def positive_label(model, label: str, path: str, where: str) -> str:
    """The model's label named by ``label`` (with or without the ``__label__`` prefix)."""
    labels = list(model.get_labels())
    for name in (label, LABEL_PREFIX + label):
        if name in labels:
            return name
    raise ConfigError(f"{where}: the model {path} has no label {label!r}; its labels: {', '.join(labels) or 'none'}")


def predict(model, lines: pa.Array, label: str) -> np.ndarray:
    """P(label) per line, float64.

    fastText's ``multilinePredict`` takes the lines with their newline; asking for every label
    (k=-1) gives one row of labels and probabilities per line, turned into arrays in one step each."""
    n = len(lines)
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    empty = pa.scalar("", pa.large_string())
    with_nl = pc.binary_join_element_wise(lines.cast(pa.large_string()), pa.scalar("\n", pa.large_string()), empty)
    labels, probs = model.f.multilinePredict(with_nl.to_pylist(), -1, 0.0, "strict")
    width = len(model.get_labels())
    sizes = np.fromiter(map(len, probs), dtype=np.int64, count=n)
    if not (sizes == width).all():   # a line with no known word gets no prediction: probability 0
        ragged = np.flatnonzero(sizes != width)
        pad = [""] * width
        for i in ragged:
            labels[i] = list(labels[i]) + pad[sizes[i]:]
            probs[i] = np.concatenate([probs[i], np.zeros(width - sizes[i])])
    lab = np.array(labels, dtype=object).reshape(n, width)
    prob = np.asarray(np.stack(probs), dtype=np.float64).reshape(n, width)
    return np.clip((prob * (lab == label)).sum(axis=1), 0.0, 1.0)


def holdout_figures(p: np.ndarray, truth: np.ndarray) -> dict:
    """Precision and recall at probability 0.5, and the ROC AUC (ties count one half)."""
    pred = p >= 0.5
    tp = int((pred & truth).sum())
    n_pos, n_neg = int(truth.sum()), int((~truth).sum())
    out = {"holdout_docs": len(p), "holdout_positives": n_pos,
           "holdout_precision": tp / int(pred.sum()) if pred.any() else None,
           "holdout_recall": tp / n_pos if n_pos else None,
           "holdout_accuracy": float((pred == truth).mean()) if len(p) else None, "holdout_auc": None}
    if n_pos and n_neg:
        _, inverse, counts = np.unique(p, return_inverse=True, return_counts=True)
        first = np.concatenate([[0], np.cumsum(counts)[:-1]])
        ranks = (first + (counts + 1) / 2.0)[inverse]          # average 1-based rank of each value
        out["holdout_auc"] = float((ranks[truth].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    return out
