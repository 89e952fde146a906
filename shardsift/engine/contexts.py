"""What ``fit`` and a global ``decide`` are handed: the engine's FitContext and DecideContext, and
reading another corpus (a target) as Docs."""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from ..api import DecideContext, Docs, FitContext
from ..columns import arrow_array, arrow_take, byte_lengths, count_words, one_array
from ..errors import DataError
from ..io import iter_tables, normalize, resolve_shards, storage
from . import workdir
from .config import InputConfig, _is_dataset
from .shards import CallTask, FitTask, ShardContext, run_call, run_fit


class StageFit(FitContext):
    def __init__(self, runner, stage_dir: str, ctxs: list[ShardContext], n_docs: int, seed: int):
        self.runner = runner
        self.work_dir = storage.local_dir(os.path.join(stage_dir, "fit"))
        self.stage_dir = stage_dir
        self.ctxs = ctxs
        self.n_docs = n_docs
        self.seed = seed
        self.workers = runner.cfg.workers
        self._calls = 0

    def map_shards(self, fn, columns: Sequence[str] = (), need_text: bool = True):
        k = self._calls
        self._calls += 1
        # the results live in the work dir's storage, not in work_dir (the driver's disk when the
        # work dir is on an object store): tasks on any node write them, a rerun anywhere finds them
        tasks = [FitTask(fn, c, tuple(columns), storage.join(self.stage_dir, "fit", f"map{k}-{c.index:05d}.pkl"),
                         need_text) for c in self.ctxs]
        return self.runner.executor.map(run_fit, tasks, desc="fit", progress=self.runner.progress)

    def iter_docs(self, columns: Sequence[str] = (), need_text: bool = True):
        for c in self.ctxs:
            yield from c.iter_docs(columns, need_text=need_text)

    def sample(self, n: int, columns: Sequence[str] = ()) -> Docs:
        alive = [c.alive_rows() for c in self.ctxs]
        sizes = np.array([len(a) for a in alive])
        total = int(sizes.sum())
        rng = np.random.default_rng([self.seed, 7])
        pick = np.sort(rng.choice(total, size=min(n, total), replace=False)) if total else np.zeros(0, np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        items = []
        for c, a, lo, hi in zip(self.ctxs, alive, offsets[:-1], offsets[1:]):
            sel = pick[(pick >= lo) & (pick < hi)] - lo
            if len(sel):
                items.append((c, a[sel], tuple(columns)))
        # read by a task per shard: the picks fall in nearly every batch of every shard, so reading
        # them is a pass over the pool, which belongs in the workers, not the driver
        tasks = [CallTask(_sample_rows, it, i, f"fit sample: {it[0].shard.uri}") for i, it in enumerate(items)]
        parts = self.runner.executor.map(run_call, tasks, desc="fit sample", progress=self.runner.progress)
        return concat_docs([d for part in parts for d in part], self.runner.cfg.input)

    def read_input(self, spec, what: str = "target"):
        return read_corpus(spec, what, self.runner.cfg.tokenizer)


def _sample_rows(item) -> list[Docs]:
    """The Docs batches of the given sorted rows of one shard (StageFit.sample's task)."""
    ctx, rows, columns = item
    return list(ctx.iter_docs(columns, rows=rows))


def _concat_scores(paths: list[str]) -> tuple[dict, np.ndarray]:
    """Every shard's score columns, concatenated in shard order, and the shard offsets. The arrays
    are allocated once from the files' headers and filled one file at a time, so beside the result
    at most one shard's scores are in memory (concatenating them all once loaded held both).

    A shard with no surviving documents has only the bookkeeping columns: the selector's columns
    (dtype and trailing shape) come from the shards that have documents; a column's dtype is the
    one all shards' dtypes promote to."""
    heads = [workdir.npz_headers(p) for p in paths]
    sizes = [h["row"][0][0] for h in heads]
    offs = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    full = [h for h, n in zip(heads, sizes) if n]
    keys = list(full[0]) if full else ["row", "n_words", "n_bytes", "n_tokens", "score"]
    proto = full[0] if full else heads[0]
    cols = {k: np.empty((int(offs[-1]),) + tuple(proto[k][0][1:]),
                        np.result_type(*[h[k][1] for h in heads if k in h])) for k in keys}
    for p, n, lo in zip(paths, sizes, offs):
        if n:
            part = workdir.read_npz(p, keys)
            for k in keys:
                cols[k][lo:lo + n] = part[k]
            del part
    return cols, offs


def concat_docs(batches: list[Docs], inp: InputConfig) -> Docs:
    if not batches:
        tbl = pa.table({inp.text_column: pa.array([], pa.large_string()), inp.id_column: pa.array([], pa.string())})
        return Docs(tbl, text_column=inp.text_column, id_column=inp.id_column, row=np.zeros(0, np.int64),
                    n_words=np.zeros(0, np.int64), n_bytes=np.zeros(0, np.int64), shard="<sample>", shard_index=-1,
                    n_tokens=np.zeros(0, np.int64))
    tbl = pa.concat_tables([b.table for b in batches], promote_options="permissive")
    return Docs(tbl, text_column=batches[0].text_column, id_column=batches[0].id_column,
                row=np.concatenate([b.row for b in batches]), n_words=np.concatenate([b.n_words for b in batches]),
                n_bytes=np.concatenate([b.n_bytes for b in batches]), shard="<sample>", shard_index=-1,
                n_tokens=np.concatenate([b.n_tokens for b in batches]))


def read_corpus(spec, what: str = "target", tokenizer=None):
    """Stream another corpus (a target, say) as Docs; null texts are skipped. ``tokenizer``: the
    run's, for the Docs' ``n_tokens`` (None: whitespace words)."""
    if _is_dataset(spec):
        spec = {"path": spec}
    inp = InputConfig.parse(spec, where=what)
    if _is_dataset(inp.path):
        ds = inp.path
        for start in range(0, len(ds), inp.batch_size):
            tbl = ds.data.table.slice(start, inp.batch_size) if hasattr(ds, "data") else None
            if tbl is None:
                break
            yield from _docs_from_table(tbl, None, inp, start, what, tokenizer=tokenizer)
        return
    shards = resolve_shards(inp.path, inp.format, inp.storage_options, what=what)
    for i, sh in enumerate(shards):
        start = 0
        for tbl in iter_tables(sh, None, inp.batch_size, inp.batch_bytes):
            yield from _docs_from_table(tbl, sh, inp, start, what, i, tokenizer)
            start += tbl.num_rows


def _docs_from_table(tbl, shard, inp, start, what, index=0, tokenizer=None):
    from ..io import Shard

    sh = shard or Shard(uri=f"<{what} dataset>", path="", format="dataset", size=0, fingerprint="", name=what)
    tbl, valid = normalize(tbl, sh, inp.text_column, inp.id_column, start)
    rows = np.flatnonzero(valid)
    if len(rows) == 0:
        return
    if len(rows) != tbl.num_rows:
        tbl = arrow_take(tbl, arrow_array(rows))
    text = one_array(tbl.column(inp.text_column))
    nbytes = byte_lengths(text)
    words = count_words(text)
    yield Docs(tbl, text_column=inp.text_column, id_column=inp.id_column, row=rows + start,
               n_words=words, n_bytes=nbytes, shard=sh.name, shard_index=index,
               n_tokens=words if tokenizer is None else tokenizer.count(text))


class StageDecide(DecideContext):
    """What a global decide gets: seed, work dir, tasks, documents read back, earlier scores."""

    def __init__(self, runner, stage_dir: str, seed: int, rows=None, offsets=None, earlier=()):
        self.runner = runner
        self.seed = seed
        self.work_dir = storage.local_dir(os.path.join(stage_dir, "decide"))
        self.workers = runner.cfg.workers
        self.stage_dir = stage_dir
        self._rows, self._offsets = rows, offsets
        self._earlier = list(earlier)  # (name, stage dir) of the stages before this one

    def stage_scores(self, stage) -> np.ndarray:
        names = [n for n, _ in self._earlier]
        if isinstance(stage, int) and 1 <= stage <= len(names):
            k = stage - 1
        elif stage in names:
            k = len(names) - 1 - names[::-1].index(stage)  # the latest stage of that name
        else:
            raise KeyError(f"no earlier stage {stage!r}; earlier stages: {', '.join(map(str, names)) or 'none'}")
        out = np.empty(len(self._rows), dtype=np.float64)
        for j in range(len(self._offsets) - 1):
            lo, hi = int(self._offsets[j]), int(self._offsets[j + 1])
            if hi == lo:
                continue
            z = workdir.read_npz(os.path.join(self._earlier[k][1], f"keep-{j:05d}.npz"), ["row", "score"])
            pos = np.searchsorted(z["row"], self._rows[lo:hi])  # keep files list their rows ascending
            out[lo:hi] = z["score"][pos]
        return out

    def map(self, fn, items):
        tasks = [CallTask(fn, it, i, f"decide task {i}") for i, it in enumerate(items)]
        return self.runner.executor.map(run_call, tasks, desc="decide", progress=self.runner.progress)

    def read_docs(self, shard_index: int, rows, columns: Sequence[str] = ()) -> Docs:
        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        ctx = self.runner.shard_ctx(shard_index, None)
        batches = list(ctx.iter_docs(columns, rows=rows[order]))
        docs = concat_docs(batches, self.runner.cfg.input)
        if len(docs) != len(rows):
            raise DataError(f"{ctx.shard.uri}: could not read back {len(rows) - len(docs)} rows")
        table, row, n_words, n_bytes, n_tokens = docs.table, docs.row, docs.n_words, docs.n_bytes, docs.n_tokens
        if len(rows) > 1 and not (rows[1:] > rows[:-1]).all():  # back to the order asked (in file order: as read)
            inv = np.empty_like(order)
            inv[order] = np.arange(len(order))
            table, row, n_words, n_bytes = arrow_take(table, arrow_array(inv)), row[inv], n_words[inv], n_bytes[inv]
            n_tokens = n_tokens[inv]
        return Docs(table, text_column=docs.text_column, id_column=docs.id_column, row=row, n_words=n_words,
                    n_bytes=n_bytes, shard=ctx.shard.name, shard_index=shard_index, n_tokens=n_tokens)

    def read_batches(self, shard_index: int, rows, columns: Sequence[str] = ()):
        ctx, rows = self.runner.shard_ctx(shard_index, None).read_back(rows, "read_batches")
        n = 0
        for docs in ctx.iter_docs(columns, rows=rows):
            n += len(docs)
            yield docs
        if n != len(rows):
            raise DataError(f"{ctx.shard.uri}: could not read back {len(rows) - n} rows")

    def read_texts(self, shard_index: int, rows):
        return self.runner.shard_ctx(shard_index, None).read_texts(rows)
