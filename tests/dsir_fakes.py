"""In-memory stand-ins for the runner's FitContext/DecideContext, for unit tests and the bench."""
from __future__ import annotations

import glob
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shardsift.api import Docs, Scores
from shardsift.columns import count_words
from shardsift.errors import DataError


def make_docs(table: pa.Table, shard_index: int = 0, rows=None, shard: str = "") -> Docs:
    text = table.column("text").combine_chunks()
    rows = np.arange(table.num_rows, dtype=np.int64) if rows is None else np.asarray(rows, np.int64)
    return Docs(table, text_column="text", id_column="id", row=rows, n_words=count_words(text),
                n_bytes=pc.binary_length(text).to_numpy(zero_copy_only=False).astype(np.int64),
                shard=shard or f"shard-{shard_index}", shard_index=shard_index)


def read_tables(spec) -> list[pa.Table]:
    path = spec["path"] if isinstance(spec, dict) else spec
    files = sorted(glob.glob(os.path.join(path, "*.parquet")) if os.path.isdir(path) else glob.glob(path))
    if not files:
        raise DataError(f"target: no files match {path}")
    return [pq.read_table(f, columns=["id", "text"]) for f in files]


class FakeFit:
    def __init__(self, shards: list[pa.Table], seed=0, work_dir=None, batch=1000):
        self.shards, self.seed, self.work_dir, self.batch = shards, seed, work_dir, batch
        self.n_docs = sum(t.num_rows for t in shards)
        self.workers = 1

    def _batches(self, i):
        t = self.shards[i]
        for a in range(0, t.num_rows, self.batch):
            yield make_docs(t.slice(a, self.batch), i, np.arange(a, min(a + self.batch, t.num_rows)))

    def map_shards(self, fn, columns=(), need_text=True):
        return [fn(self._batches(i)) for i in range(len(self.shards))]

    def iter_docs(self, columns=(), need_text=True):
        for i in range(len(self.shards)):
            yield from self._batches(i)

    def sample(self, n, columns=()):
        """A seeded uniform sample of n documents (all if fewer), in shard order, as one Docs."""
        sizes = [t.num_rows for t in self.shards]
        total = sum(sizes)
        rng = np.random.default_rng([self.seed, 7])
        pick = np.sort(rng.choice(total, size=min(n, total), replace=False))
        whole = pa.concat_tables(self.shards)
        return make_docs(whole.take(pa.array(pick)), -1, pick, shard="<sample>")

    def read_input(self, spec, what="target"):
        if isinstance(spec, pa.Table):
            tables = [spec]
        else:
            tables = read_tables(spec)
        for t in tables:
            for a in range(0, t.num_rows, self.batch):
                yield make_docs(t.slice(a, self.batch))


class FakeDecide:
    def __init__(self, shards, seed=0, work_dir=None):
        self.shards, self.seed, self.work_dir, self.workers = shards, seed, work_dir, 1

    def map(self, fn, items):
        return [fn(x) for x in items]

    def read_docs(self, shard_index, rows, columns=()):
        return make_docs(self.shards[shard_index].take(pa.array(rows)), shard_index, rows)


def score_all(sel, shards, batch=1000) -> Scores:
    """Run score over every shard in batches and concatenate like the runner does."""
    cols: dict[str, list] = {}
    offs = [0]
    ctx = FakeFit(shards, batch=batch)
    for i in range(len(shards)):
        n = 0
        for docs in ctx._batches(i):
            out = sel.score(docs)
            out = out if isinstance(out, dict) else {"score": out}
            out = {**out, "n_words": docs.n_words, "n_bytes": docs.n_bytes, "row": docs.row}
            for k, v in out.items():
                cols.setdefault(k, []).append(np.asarray(v))
            n += len(docs)
        offs.append(offs[-1] + n)
    return Scores({k: np.concatenate(v) for k, v in cols.items()}, np.array(offs),
                  [f"shard-{i}" for i in range(len(shards))])
