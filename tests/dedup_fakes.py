"""Shared by tests/test_minhash.py and tests/test_exact_dedup.py: small documents, a fake decide
context that reads texts back from lists, and a global run (score in batches, concatenate as the
runner does, decide)."""
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from shardsift.api import DecideContext, Docs, Scores
from shardsift.columns import count_words

VOCAB = np.array([f"w{i}" for i in range(5000)])


def random_doc(rng, n_words=300):
    return list(VOCAB[rng.integers(0, len(VOCAB), n_words)])


def edit(rng, words, rate):
    """Substitute a fraction of the words."""
    words = list(words)
    for i in rng.choice(len(words), size=round(rate * len(words)), replace=False):
        words[i] = VOCAB[rng.integers(0, len(VOCAB))] + "x"
    return words


def shingle_set(text, n=5):
    toks = text.lower().split()
    return {tuple(toks[i:i + n]) for i in range(len(toks) - n + 1)}


def jaccard(a, b):
    sa, sb = shingle_set(a), shingle_set(b)
    return len(sa & sb) / len(sa | sb)


def make_docs(texts, shard_index=0, start=0, extra=None):
    arr = pa.array(texts, pa.large_string())
    cols = {"text": arr, "id": pa.array([f"s{shard_index}-{i}" for i in range(start, start + len(texts))])}
    cols.update(extra or {})
    tbl = pa.table(cols)
    return Docs(tbl, text_column="text", id_column="id", row=np.arange(start, start + len(texts)),
                n_words=count_words(arr), n_bytes=np.array([len(t.encode()) for t in texts], np.int64),
                shard=f"shard{shard_index}", shard_index=shard_index)


class FakeCtx(DecideContext):
    """The parts of the runner's DecideContext a global decide uses."""

    def __init__(self, shards, work_dir):
        self.shards = shards  # list of lists of texts
        self.work_dir = str(work_dir)
        self.seed = 0
        self.workers = 1
        self.reads = 0

    def read_docs(self, shard_index, rows, columns=()):
        self.reads += len(rows)
        texts = [self.shards[shard_index][r] for r in rows]
        d = make_docs(texts, shard_index)
        d.row = np.asarray(rows)
        return d


def run_global(sel, shards, work_dir, batch=7, extra=None, order=None):
    """Score every shard in batches (in ``order``), concatenate as the runner does, decide."""
    parts, offs = {}, [0]
    for s in order or range(len(shards)):
        texts, cols = shards[s], {}
        for lo in range(0, len(texts), batch):
            ex = {k: v[s][lo:lo + batch] for k, v in (extra or {}).items()}
            docs = make_docs(texts[lo:lo + batch], s, lo, {k: pa.array(v) for k, v in ex.items()})
            out = sel.score(docs)
            out = dict(out, row=docs.row, n_words=docs.n_words, n_bytes=docs.n_bytes)
            for k, v in out.items():
                cols.setdefault(k, []).append(np.asarray(v))
        parts[s] = {k: np.concatenate(v) for k, v in cols.items()}
    for texts in shards:
        offs.append(offs[-1] + len(texts))
    parts = [parts[s] for s in range(len(shards))]
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    scores = Scores(cols, np.array(offs), [f"shard{i}" for i in range(len(shards))])
    ctx = FakeCtx(shards, work_dir)
    return sel.decide(scores, ctx), scores, ctx


def positions(shards):
    pos, p = {}, 0
    for texts in shards:
        for t in texts:
            pos.setdefault(t, p)
            p += 1
    return pos


def write_corpus(folder, shards):
    os.makedirs(folder, exist_ok=True)
    for i, texts in enumerate(shards):
        pq.write_table(pa.table({"id": [f"d{i}-{k}" for k in range(len(texts))], "text": texts}),
                       os.path.join(folder, f"part-{i:05d}.parquet"))
