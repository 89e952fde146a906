"""The fastText include/exclude classifier of perplexity-correlation selection.

It carries the per-key labels (include: keys the projection gives weight) to every pool document,
including those whose key has no loss. Here: the two passes that draw its seeded training sample
from the pool, the one-line-per-document text it reads, training in a fresh process, and
P(include) per document.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...columns import hash_strings
from ...errors import DataError
from .inputs import doc_keys

INCLUDE = "__label__include"
EXCLUDE = "__label__exclude"
_SEPARATORS = r"[\x00\t\n\v\f\r ]+"  # what fastText splits words on; a newline ends an example


# -- text: one line per document ------------------------------------------------------------------

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


# -- the training sample: two passes over the pool ----------------------------------------------------

def rand_keys(ids: pa.Array, seed: int) -> np.ndarray:
    """A stable uniform uint64 per document from (seed, id): independent of shards and workers."""
    h = hash_strings(ids) ^ np.uint64((seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % (1 << 64))
    h = (h ^ (h >> np.uint64(31))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(29))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(32))


def holdout_mask(rand: np.ndarray, frac: float) -> np.ndarray:
    """A hash split of the random keys: True for about ``frac`` of the documents, the held-out ones."""
    h = (rand ^ np.uint64(0xD6E8FEB86659FD93)) * np.uint64(0xA0761D6478BD642F)
    h ^= h >> np.uint64(33)
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53) < frac


def scan_shard(batches, key: str, matrix_keys: pa.Array, seed: int, cap: int):
    """Pass 1 over one shard: tokens (the run's unit) and documents per matrix key, pool tokens in total, and the
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
        idx = pc.index_in(doc_keys(docs, key), value_set=matrix_keys).fill_null(-1)
        idx = idx.to_numpy(zero_copy_only=False).astype(np.int64)
        n_docs += len(docs)
        total_words += int(docs.n_tokens.sum())
        m = idx >= 0
        words += np.bincount(idx[m], weights=docs.n_tokens[m], minlength=d)
        docs_per_key += np.bincount(idx[m], minlength=d)
        if m.any():
            rand = rand_keys(docs.ids, seed)[m]
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


def collect_text(batches, rows_by_shard: dict, max_chars: int, lowercase: bool):
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


def sample_positions(sample: dict, got: list) -> np.ndarray:
    """Index into the concatenated pass-2 output (``got``: one (rows, lines) per shard, in shard
    order) of each sample document, in sample order."""
    offsets = np.cumsum([0] + [len(g[0]) for g in got])
    pos = np.empty(len(sample["row"]), dtype=np.int64)
    for s in np.unique(sample["shard"]):
        m = sample["shard"] == s
        rows = got[int(s)][0]
        order = np.argsort(rows, kind="stable")
        found = np.searchsorted(rows[order], sample["row"][m])
        if (found >= len(rows)).any() or (rows[order][np.minimum(found, len(rows) - 1)] != sample["row"][m]).any():
            raise RuntimeError("perplexity_correlation: training documents changed between passes")
        pos[m] = offsets[int(s)] + order[found]
    return pos


# -- training and prediction -------------------------------------------------------------------------


def write_fasttext_file(path: str, labels: np.ndarray, lines: pa.Array) -> None:
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


def predict_include(model, lines: pa.Array, fast=None) -> np.ndarray:
    """P(include) per line (fastText's softmax over the two labels); ``fast``: the model's numba
    predictor (``fasttext_predict.fast_predictor``) where it has one."""
    if len(lines) == 0:
        return np.zeros(0, dtype=np.float64)
    if fast is not None and len(fast.labels) == 2:
        p = fast.probabilities(lines)
        p_inc = p[:, fast.labels.index(INCLUDE)]
        return np.clip(p_inc / np.maximum(p.sum(axis=1), 1e-12), 0.0, 1.0)
    labels, probs = model.predict(lines.to_pylist(), k=2)
    first_is_inc = np.fromiter((lab[0] == INCLUDE if lab else False for lab in labels), bool, len(labels))
    p = np.zeros((len(probs), 2), dtype=np.float64)
    for j, pr in enumerate(probs):  # fastText hands back one small array per line
        p[j, :len(pr)] = pr[:2]
    p_inc = np.where(first_is_inc, p[:, 0], p[:, 1])
    return np.clip(p_inc / np.maximum(p.sum(axis=1), 1e-12), 0.0, 1.0)



def train(path: str, settings: dict, seed: int, where: str):
    """(model, learning rate used): fastText trained on the labelled file ``path``, in a fresh process.

    fastText's training result was seen to depend on the state of the process it runs in (the
    same file, seed and one thread diverged to NaN after unrelated work in the same process), so
    it runs where nothing else has: the model is then a function of its inputs only. Should it
    still diverge, the learning rate is halved (at most three times) and the rate used is reported.
    ``settings``: wordNgrams, dim, epoch, lr, bucket, minCount.
    """
    import fasttext

    out = path + ".bin"
    lr = float(settings["lr"])
    code = ("import json, sys, fasttext\n"
            "a = json.loads(sys.argv[1])\n"
            "fasttext.train_supervised(**a).save_model(sys.argv[2])\n")
    for _ in range(4):
        args = dict(settings, input=path, lr=lr, thread=1, seed=int(seed), verbose=0)
        proc = subprocess.run([sys.executable, "-c", code, json.dumps(args), out], capture_output=True, text=True)
        if proc.returncode == 0:
            model = fasttext.load_model(out)
            os.remove(out)
            return model, lr
        if "NaN" not in proc.stderr:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"perplexity_correlation: fastText training failed: {tail}")
        lr /= 2
    raise DataError(f"{where}: fastText training diverged (NaN) even at lr {lr * 2:g}; "
                    "lower lr or add training documents")


def load_model(path: str):
    """A saved fastText classifier, or a one-line DataError."""
    import fasttext

    try:
        return fasttext.load_model(path)
    except ValueError as err:
        raise DataError(f"{path}: cannot load the fastText model ({err})") from None
