"""The staged runner: scan -> stages (fit / score / decide) -> write -> manifest.

Resume is exact: every task's result is a file in the work dir, keyed by a fingerprint of the
inputs and of every stage up to it, so a rerun skips finished work and recomputes only what
changed. The output appears atomically: data/ and scores/ are written under temporary names and
renamed, then manifest.json is written last; a reader takes an output as finished only when its
manifest.json exists.
"""
from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import os
import resource
import shutil
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import __version__
from ..errors import DataError, ShardsiftError, UsageError
from ..selectors.base import DecideContext, Decision, Docs, FitContext, Scores, Selector
from . import faults, handoff, io, storage, workdir
from .accounting import shard_decisions
from .config import Config, InputConfig, _is_dataset, parse_config
from .executors import Executor, LocalExecutor, Progress, _call, make_executor
from .io import (
    BoundedParquetWriter,
    iter_tables,
    make_ids,
    normalize,
    resolve_shards,
    select_rows,
    shard_schema,
    take_rows,
)
from .kernels import (
    any_arrow_array,
    arrow_array,
    arrow_strings,
    arrow_take,
    byte_lengths,
    count_words,
    one_array,
)
from .lock import OutputLock
from .shards import (
    CallTask,
    FitTask,
    ScanTask,
    ScoreTask,
    ShardContext,
    decision_arrays,
    drop_counts,
    hold_shard,
    release_shard,
    run_call,
    run_fit,
    run_scan,
    run_score,
    usage,
    write_keep,
)

MANIFEST = "manifest.json"


def _fp(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def _hash_code(h, code) -> None:
    """A compiled function's bytecode, constants (nested functions too) and names into ``h``."""
    h.update(code.co_code)
    h.update(repr(code.co_names).encode())
    for c in code.co_consts:
        if hasattr(c, "co_code"):
            _hash_code(h, c)
        else:
            h.update(repr(c).encode())


def code_fp(cls) -> str:
    """What a selector's code is, for its stage's fingerprint: a work dir's results of a selector
    whose code changed are not served again. shardsift's own selectors are covered by the version
    in the input's fingerprint; any other class (and each non-shardsift class it inherits from) by
    the bytes of the file that defines it, or where it has none (a class typed into ``python -c``
    or a notebook) by its methods' compiled code. Code it calls in other modules is not covered:
    a selector's ``version`` attribute is the way to say that changed."""
    h = hashlib.sha256()
    seen = set()
    for klass in cls.__mro__:
        mod = klass.__module__ or ""
        if klass is object or mod == "shardsift" or mod.startswith("shardsift."):
            continue
        path = getattr(sys.modules.get(mod), "__file__", None)
        if path and path not in seen:
            seen.add(path)
            try:
                with open(path, "rb") as fh:
                    h.update(fh.read())
                continue
            except OSError:
                pass
        for name, v in sorted(vars(klass).items()):
            # functions; staticmethod and classmethod (__func__); property (fget, fset)
            for fn in (getattr(v, "__func__", v), getattr(v, "fget", None), getattr(v, "fset", None)):
                code = getattr(fn, "__code__", None)
                if code is not None:
                    h.update(name.encode())
                    _hash_code(h, code)
    return h.hexdigest()[:16]


def stage_seed(seed: int, index: int) -> int:
    return int(hashlib.sha256(f"{seed}:{index}".encode()).hexdigest()[:8], 16) & 0x7FFFFFFF


class _Fit(FitContext):
    def __init__(self, runner: Runner, stage_dir: str, ctxs: list[ShardContext], n_docs: int, seed: int):
        self.runner = runner
        self.work_dir = storage.local_dir(os.path.join(stage_dir, "fit"))
        self.ctxs = ctxs
        self.n_docs = n_docs
        self.seed = seed
        self.workers = runner.cfg.workers
        self._calls = 0

    def map_shards(self, fn, columns: Sequence[str] = (), need_text: bool = True):
        k = self._calls
        self._calls += 1
        tasks = [FitTask(fn, c, tuple(columns), os.path.join(self.work_dir, f"map{k}-{c.index:05d}.pkl"), need_text)
                 for c in self.ctxs]
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
        batches = []
        for c, a, lo, hi in zip(self.ctxs, alive, offsets[:-1], offsets[1:]):
            sel = pick[(pick >= lo) & (pick < hi)] - lo
            if len(sel):
                batches.extend(c.iter_docs(columns, rows=a[sel]))
        return concat_docs(batches, self.runner.cfg.input)

    def read_input(self, spec, what: str = "target"):
        return read_corpus(spec, what)


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
    keys = list(full[0]) if full else ["row", "n_words", "n_bytes", "score"]
    proto = full[0] if full else heads[0]
    with io.small_pages():  # written once, front to back (io.small_pages)
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
                    n_words=np.zeros(0, np.int64), n_bytes=np.zeros(0, np.int64), shard="<sample>", shard_index=-1)
    tbl = pa.concat_tables([b.table for b in batches], promote_options="permissive")
    return Docs(tbl, text_column=batches[0].text_column, id_column=batches[0].id_column,
                row=np.concatenate([b.row for b in batches]), n_words=np.concatenate([b.n_words for b in batches]),
                n_bytes=np.concatenate([b.n_bytes for b in batches]), shard="<sample>", shard_index=-1)


def read_corpus(spec, what: str = "target"):
    """Stream another corpus (a target, say) as Docs; null texts are skipped."""
    if _is_dataset(spec):
        spec = {"path": spec}
    inp = InputConfig.parse(spec, where=what)
    if _is_dataset(inp.path):
        ds = inp.path
        for start in range(0, len(ds), inp.batch_size):
            tbl = ds.data.table.slice(start, inp.batch_size) if hasattr(ds, "data") else None
            if tbl is None:
                break
            yield from _docs_from_table(tbl, None, inp, start, what)
        return
    shards = resolve_shards(inp.path, inp.format, inp.storage_options, what=what)
    for i, sh in enumerate(shards):
        start = 0
        for tbl in iter_tables(sh, None, inp.batch_size, inp.batch_bytes):
            yield from _docs_from_table(tbl, sh, inp, start, what, i)
            start += tbl.num_rows


def _docs_from_table(tbl, shard, inp, start, what, index=0):
    from .io import Shard

    sh = shard or Shard(uri=f"<{what} dataset>", path="", format="dataset", size=0, fingerprint="", name=what)
    tbl, valid = normalize(tbl, sh, inp.text_column, inp.id_column, start)
    rows = np.flatnonzero(valid)
    if len(rows) == 0:
        return
    if len(rows) != tbl.num_rows:
        tbl = arrow_take(tbl, arrow_array(rows))
    text = one_array(tbl.column(inp.text_column))
    nbytes = byte_lengths(text)
    yield Docs(tbl, text_column=inp.text_column, id_column=inp.id_column, row=rows + start,
               n_words=count_words(text), n_bytes=nbytes, shard=sh.name, shard_index=index)


class _Decide(DecideContext):
    def __init__(self, runner: Runner, stage_dir: str, seed: int):
        self.runner = runner
        self.seed = seed
        self.work_dir = storage.local_dir(os.path.join(stage_dir, "decide"))
        self.workers = runner.cfg.workers
        self.stage_dir = stage_dir

    def handoff(self, shard_index: int):
        return handoff.take(self.stage_dir, shard_index)

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
        table, row, n_words, n_bytes = docs.table, docs.row, docs.n_words, docs.n_bytes
        if len(rows) > 1 and not (rows[1:] > rows[:-1]).all():  # back to the order asked (in file order: as read)
            inv = np.empty_like(order)
            inv[order] = np.arange(len(order))
            table, row, n_words, n_bytes = arrow_take(table, arrow_array(inv)), row[inv], n_words[inv], n_bytes[inv]
        return Docs(table, text_column=docs.text_column, id_column=docs.id_column, row=row, n_words=n_words,
                    n_bytes=n_bytes, shard=ctx.shard.name, shard_index=shard_index)

    def read_batches(self, shard_index: int, rows, columns: Sequence[str] = ()):
        ctx, rows = self._read_back(shard_index, rows, "read_batches")
        n = 0
        for docs in ctx.iter_docs(columns, rows=rows):
            n += len(docs)
            yield docs
        if n != len(rows):
            raise DataError(f"{ctx.shard.uri}: could not read back {len(rows) - n} rows")

    def read_texts(self, shard_index: int, rows):
        ctx, rows = self._read_back(shard_index, rows, "read_texts")
        n = 0
        for tbl, _, pos in ctx.iter_batches(rows, need_ids=False):
            n += len(pos)
            yield one_array(tbl.column(ctx.text_column)), pos
        if n != len(rows):
            raise DataError(f"{ctx.shard.uri}: could not read back {len(rows) - n} rows")

    def _read_back(self, shard_index: int, rows, what: str):
        """(shard context with the passes' batch size, rows as int64) for read_batches/read_texts."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) > 1 and not (rows[1:] > rows[:-1]).all():
            raise ValueError(f"{what}: rows must be strictly ascending")
        ctx = self.runner.shard_ctx(shard_index, None)
        return dataclasses.replace(ctx, batch_size=io.pass_batch_size(ctx.batch_size)), rows


class Runner:
    def __init__(self, cfg: Config, *, overwrite: bool = False, progress: Progress | None = None,
                 executor: Executor | None = None):
        self.cfg = cfg
        self.overwrite = overwrite
        self.progress = progress or Progress(enabled=False)
        self.out = storage.abspath(cfg.output.path)
        self.work = storage.abspath(cfg.output.work_dir) if cfg.output.work_dir else os.path.join(self.out, ".work")
        for path in (self.out, self.work):  # remote URIs: the options reach the tasks too
            storage.set_options(path, cfg.output.storage_options)
        self._executor = executor
        self.t0 = time.perf_counter()
        self.cpu0 = usage()["cpu_s"]
        self.task_cpu = 0.0
        self.task_rss = 0.0
        self.fused_cpu = 0.0  # CPU seconds of first-stage scores run inside this process's scan tasks

    @property
    def executor(self) -> Executor:
        if self._executor is None:
            self._executor = make_executor(self.cfg)
        return self._executor

    # -- bookkeeping ---------------------------------------------------------------------------
    def _account(self, stats: list[dict]) -> tuple[float, float]:
        me = os.getpid()
        cpu = sum(s.get("cpu_s", 0.0) for s in stats if s.get("pid") != me)
        rss = max([s.get("rss_mb", 0.0) for s in stats] + [0.0])
        self.task_cpu += cpu
        self.task_rss = max(self.task_rss, rss)
        return cpu, rss

    def shard_ctx(self, j: int, alive_path: str | None) -> ShardContext:
        inp = self.cfg.input
        return ShardContext(self.shards[j], j, inp.text_column, inp.id_column, inp.batch_size,
                            os.path.join(self.work, "scan", f"shard-{j:05d}.npz"), alive_path, inp.batch_bytes)

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> dict:
        if storage.exists(self.out) and not storage.isdir(self.out):
            raise UsageError(f"{self.out}: output path exists and is not a directory")
        created = not storage.exists(self.out)
        storage.makedirs(self.out)
        # object stores have no exclusive create: no output lock there (docs/ray.md)
        lock = storage.NoLock() if storage.is_remote(self.out) else OutputLock(self.out)
        lock.acquire()
        started = False
        # a score running in this process may leave data in memory for its stage's decide;
        # Arrow allocates from malloc (io.malloc_pool)
        with handoff.active(), io.malloc_pool():
            try:
                self._prepare_output()
                self.shards = self._resolve_inputs()
                self.input_fp = _fp([s.fingerprint for s in self.shards], self.cfg.input.text_column,
                                    self.cfg.input.id_column, __version__)
                if self._one_pass_ok():
                    done = self._one_pass()
                    if done is not None:
                        started = True
                        return self._write_end(*done)
                scan = self._scan()
                started = True
                alive_path: list[str | None] = [None] * len(self.shards)
                stage_reports = [scan["report"]]
                prev_fp = self.input_fp + scan["fp"]
                for i, st in enumerate(self.cfg.stages):
                    rep, alive_path, prev_fp = self._stage(i, st, alive_path, prev_fp)
                    stage_reports.append(rep)
                manifest = self._write(stage_reports, alive_path)
                workdir.remove(os.path.join(self.work, "cache"))  # the decoded copies served this run only
                return manifest
            except ShardsiftError:
                # bad input found before any stage ran: leave nothing behind in an output we created
                if created and not started:
                    lock.release()
                    workdir.remove(self.out)
                raise
            finally:
                if self._executor is not None:
                    self._executor.close()
                lock.release()

    def _prepare_output(self):
        out = self.out
        if storage.exists(os.path.join(out, MANIFEST)):
            if not self.overwrite:
                raise UsageError(f"{out}: output exists (has {MANIFEST}); use --overwrite to replace it")
            for name in (MANIFEST, "data", "decisions", "scores", "models", "report.html"):
                workdir.remove(os.path.join(out, name))
        elif storage.isdir(out) and storage.listdir(out):
            known = {".work", "data", "decisions", "scores", "models", ".lock", ".data.tmp", ".decisions.tmp",
                     ".scores.tmp", ".models.tmp"}
            other = [x for x in storage.listdir(out) if x not in known and not x.startswith(".tmp-")]
            if other and not self.overwrite:
                raise UsageError(f"{out}: output directory is not empty ({other[0]!r}); use --overwrite or another path")
        storage.makedirs(self.work)

    def _resolve_inputs(self):
        inp = self.cfg.input
        if _is_dataset(inp.path):
            return self._materialize_dataset(inp.path)
        return resolve_shards(inp.path, inp.format, inp.storage_options)

    def _materialize_dataset(self, ds):
        fp = getattr(ds, "_fingerprint", None) or _fp(len(ds), ds.column_names)
        d = os.path.join(self.work, f"dataset-{fp}")
        if not storage.exists(os.path.join(d, ".done")):
            storage.makedirs(d)
            n_shards = max(1, min(64, len(ds) // 50_000 + 1, max(1, len(ds))))
            for k in range(n_shards):
                part = ds.shard(n_shards, k, contiguous=True)
                final = os.path.join(d, f"part-{k:05d}.parquet")
                if storage.is_remote(d):  # one PUT: whole or absent
                    fs, where = storage.arrow_fs(final)
                    pq.write_table(part.data.table, where, filesystem=fs, compression="zstd")
                    continue
                tmp = os.path.join(d, f".tmp-part-{k:05d}.parquet")
                pq.write_table(part.data.table, tmp, compression="zstd")
                os.replace(tmp, final)
            workdir.write_json(os.path.join(d, ".done"), {"rows": len(ds)})
        return resolve_shards(d, "parquet", storage.options_for(d))

    def _scan(self) -> dict:
        t0, c0 = time.perf_counter(), usage()["cpu_s"]
        self._scan_prepare()
        fused = self._fused_score()
        cache = self._cache_dir(fused is not None)
        tasks = [ScanTask(self.shard_ctx(j, None), cache and os.path.join(cache, f"{j:05d}-{sh.fingerprint}.arrow"),
                          fused and ScoreTask(self.shard_ctx(j, None), *fused))
                 for j, sh in enumerate(self.shards)]
        self.progress.line(f"scan: {len(tasks)} input shard(s)" + (f" (and {fused[2]}: score)" if fused else ""))
        stats = self.executor.map(run_scan, tasks, desc="scan", progress=self.progress)
        # a first-stage score run inside a scan task of this process: its CPU goes to that stage
        me = os.getpid()
        self.fused_cpu = sum(st.get("fused_cpu_s", 0.0) for st in stats if st.get("pid") == me)
        c0 += self.fused_cpu
        if cache:
            for j, (task, st) in enumerate(zip(tasks, stats)):
                if io.cache_rows(task.cache_path) == st["rows"]:  # absent (e.g. a resumed scan): read the input
                    self.shards[j] = dataclasses.replace(self.shards[j], cache=task.cache_path)
        dup = self._duplicate_ids()
        return self._scan_report(stats, dup, time.perf_counter() - t0, usage()["cpu_s"] - c0)

    def _fused_score(self) -> tuple[str, str, str] | None:
        """(stage dir, selector path, label) of the first stage when its score can run inside the
        scan tasks (``run_scan``: the shard decoded once for both), else None.

        That needs a first stage with nothing to fit, not finished before, and documents reaching
        it that are known when its shard is scanned: ``on_duplicate_id: error`` (the default), as
        dropping a later duplicate changes an earlier shard's alive rows only after every scan.
        Local executors only: on Ray a failing score would spend the scan task's retries."""
        if not self.cfg.stages or self.cfg.on_duplicate_id != "error" or not isinstance(self.executor, LocalExecutor):
            return None
        st = self.cfg.stages[0]
        if st.cls.fit is not Selector.fit:
            return None
        sel, label, _, stage_dir, _ = self._stage_setup(0, st, self.input_fp + self._scan_fp())
        if storage.exists(os.path.join(stage_dir, "done.json")):
            return None
        return stage_dir, self._unfitted_selector(0, sel, stage_dir), label

    @staticmethod
    def _unfitted_selector(i: int, sel, stage_dir: str) -> str:
        """The selector file of stage i when its fit is Selector.fit (nothing to learn), written
        once (kill point ``fit:SS``); returns its path."""
        sel_path = os.path.join(stage_dir, "selector.pkl")
        if not storage.exists(sel_path):
            workdir.write_pickle(sel_path, sel)
            faults.point(f"fit:{i:02d}")
        return sel_path

    def _scan_fp(self) -> str:
        """What besides the input decides the documents reaching the first stage."""
        return _fp(self.cfg.on_duplicate_id)

    def _cache_dir(self, fused: bool) -> str | None:
        """Where the scan leaves decoded copies of the shards (io.ShardCache), or None for no copies.

        Only a local work dir can be mapped into memory. ``input.cache: auto`` wants at least three
        reads of the text after the scan (``_reads_after_scan``): the copy costs about as much as
        decoding twice where fresh memory is dear (the bench's VM), less elsewhere. It also wants
        the copies (uncompressed: ~3x zstd Parquet) to take at most a quarter of the free space."""
        mode = self.cfg.input.cache
        if mode is False or storage.is_remote(self.work):
            return None
        d = os.path.join(self.work, "cache")
        if mode == "auto":
            if self._reads_after_scan(fused) < 3:
                return None
            need = sum(io.shard_data_bytes(sh) for sh in self.shards)
            if need > shutil.disk_usage(self.work).free // 4:
                return None
        return d

    def _reads_after_scan(self, fused: bool) -> int:
        """Reads of the input's text the staged flow makes after the scan: each stage's score that
        needs the text (not the first stage's when the scan runs it), each global stage's decide
        (it may read documents back: minhash_dedup's candidates, dsir's checks), the write."""
        n = 1
        for i, st in enumerate(self.cfg.stages):
            n += int(st.cls.needs_text and not (i == 0 and fused)) + int(st.cls.scope == "global")
        return n

    def _scan_prepare(self) -> None:
        storage.makedirs(os.path.join(self.work, "scan"))
        # a changed input invalidates the scan; remember whose scan this is
        marker = os.path.join(self.work, "scan", "input.json")
        if storage.exists(marker) and workdir.read_json(marker).get("fp") != self.input_fp:
            workdir.remove(os.path.join(self.work, "scan"))
            storage.makedirs(os.path.join(self.work, "scan"))
        workdir.write_json(marker, {"fp": self.input_fp, "files": [s.uri for s in self.shards]})

    def _scan_report(self, stats: list[dict], dup: int, wall: float, cpu_here: float) -> dict:
        cpu, rss = self._account(stats)
        self.scan_stats = stats
        docs = sum(s["rows"] for s in stats)
        null = sum(s["null_text"] for s in stats)
        dropped = {"null_text": null} if null else {}
        if dup:
            dropped["duplicate_id"] = dup
        rep = {"name": "read", "selector": "input", "docs_in": docs, "kept": docs - null - dup,
               "dropped": dropped, "wall_s": wall, "cpu_s": cpu_here + cpu, "peak_rss_mb": rss, "metrics": {}}
        return {"report": rep, "fp": self._scan_fp()}

    def _duplicate_ids(self) -> int:
        """Duplicate ids: refuse (default) or keep the first occurrence (``on_duplicate_id: keep_first``)."""
        paths = [os.path.join(self.work, "scan", f"shard-{j:05d}.npz") for j in range(len(self.shards))]
        scans = [workdir.read_npz(p) for p in paths]
        h = np.concatenate([s["id_hash"] for s in scans]) if scans else np.zeros(0, np.uint64)
        if len(h) == 0:
            return 0
        order = np.argsort(h, kind="stable")
        sh = h[order]
        dup_sorted = np.zeros(len(h), bool)
        dup_sorted[1:] = sh[1:] == sh[:-1]
        if not dup_sorted.any():
            return 0
        is_dup = np.zeros(len(h), bool)
        is_dup[order] = dup_sorted  # later occurrences (stable order) are the duplicates
        sizes = [len(s["id_hash"]) for s in scans]
        offs = np.concatenate([[0], np.cumsum(sizes)])
        if self.cfg.on_duplicate_id == "error":
            g = int(np.flatnonzero(is_dup)[0])
            j = int(np.searchsorted(offs, g, side="right") - 1)
            row = g - offs[j]
            tbl = take_rows(self.shards[j], np.array([row]), None, self.cfg.input.batch_size)
            tbl, _ = normalize(tbl, self.shards[j], self.cfg.input.text_column, self.cfg.input.id_column,
                               row, need_text=False) if tbl is not None else (None, None)
            the_id = tbl.column(self.cfg.input.id_column)[0].as_py() if tbl is not None else "?"
            raise DataError(
                f"{self.shards[j].uri}: duplicate id {the_id!r} at row {row} ({int(is_dup.sum())} duplicate ids "
                "in the input); set on_duplicate_id: keep_first to keep the first occurrence")
        n = 0
        for j, (s, p) in enumerate(zip(scans, paths)):
            d = is_dup[offs[j]:offs[j + 1]] & s["valid"]
            if d.any() and (s["alive"] & d).any():
                s["alive"] = s["valid"] & ~d
                workdir.write_npz(p, s)
            n += int(d.sum())
        return n

    def _stage_setup(self, i: int, st, prev_fp: str):
        """The stage's selector (seeded), label, fingerprint, work folder and keep files."""
        sel = st.build()
        sel.seed_ = stage_seed(self.cfg.seed, i)
        label = f"stage {i + 1}/{len(self.cfg.stages)} {st.name}"
        fp = _fp(prev_fp, st.name, f"{type(sel).__module__}.{type(sel).__qualname__}", sel.get_params(),
                 sel.seed_, getattr(sel, "version", 0), code_fp(type(sel)))
        safe = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in st.name)[:40]
        stage_dir = os.path.join(self.work, "stages", f"{i:02d}-{safe}-{fp}")
        storage.makedirs(stage_dir)
        keep_paths = [os.path.join(stage_dir, f"keep-{j:05d}.npz") for j in range(len(self.shards))]
        return sel, label, fp, stage_dir, keep_paths

    def _stage(self, i: int, st, alive_path: list, prev_fp: str):
        sel, label, fp, stage_dir, keep_paths = self._stage_setup(i, st, prev_fp)
        done = os.path.join(stage_dir, "done.json")
        if storage.exists(done):
            self.progress.line(f"{label}: done (resumed)")
            rep = workdir.read_json(done)
            self._account([{"rss_mb": rep.get("peak_rss_mb", 0)}])
            return rep, keep_paths, fp

        t0, c0 = time.perf_counter(), usage()["cpu_s"]
        if i == 0:
            c0 -= self.fused_cpu
        ctxs = [self.shard_ctx(j, alive_path[j]) for j in range(len(self.shards))]
        n_in = sum(len(c.alive_rows()) for c in ctxs)
        stats_all: list[dict] = []
        sel_path = os.path.join(stage_dir, "selector.pkl")
        if storage.exists(sel_path):
            sel = workdir.read_pickle(sel_path)
        else:
            if type(sel).fit is not Selector.fit:
                self.progress.line(f"{label}: fit")
            sel.fit(_Fit(self, stage_dir, ctxs, n_in, sel.seed_))
            workdir.write_pickle(sel_path, sel)
            faults.point(f"fit:{i:02d}")
        self.progress.line(f"{label}: score {len(ctxs)} shard(s), {n_in} documents")
        tasks = [ScoreTask(c, stage_dir, sel_path, f"{label}") for c in ctxs]
        stats_all += self.executor.map(run_score, tasks, desc=f"{label}: score", progress=self.progress)
        metrics = dict(getattr(sel, "fit_metrics_", {}) or {})
        if sel.scope == "global":
            self.progress.line(f"{label}: decide")
            metrics.update(self._global_decide(sel, st.name, stage_dir, tasks, keep_paths))
        rep = self._stage_report(i, st, sel, label, stage_dir, ctxs, keep_paths, n_in, stats_all, metrics,
                                 time.perf_counter() - t0, usage()["cpu_s"] - c0)
        return rep, keep_paths, fp

    def _stage_report(self, i, st, sel, label, stage_dir, ctxs, keep_paths, n_in, stats, metrics, wall, cpu_here):
        """Count the stage's keep files, check docs_in = kept + dropped, record done.json."""
        dropped: dict[str, int] = {}
        kept = tokens_in = tokens_kept = bytes_kept = 0
        for c, p in zip(ctxs, keep_paths):
            z = workdir.read_npz(p)
            kept += int(z["keep"].sum())
            for k, v in drop_counts(z).items():
                dropped[k] = dropped.get(k, 0) + v
            scan = c.stats()
            tokens_in += int(scan["n_words"][z["row"]].sum())
            tokens_kept += int(scan["n_words"][z["row"][z["keep"]]].sum())
            bytes_kept += int(scan["n_bytes"][z["row"][z["keep"]]].sum())
        cpu, rss = self._account(stats)
        if kept + sum(dropped.values()) != n_in:
            raise RuntimeError(f"{label}: accounting error: {n_in} in, {kept} kept, {dropped} dropped")
        rep = {"name": st.name, "selector": f"{type(sel).__module__}:{type(sel).__qualname__}",
               "params": sel.get_params(), "docs_in": n_in, "kept": kept, "dropped": dropped,
               "tokens_in": tokens_in, "tokens_kept": tokens_kept, "bytes_kept": bytes_kept,
               "wall_s": wall, "cpu_s": cpu_here + cpu,
               "peak_rss_mb": max(rss, usage()["rss_mb"]), "metrics": metrics, "dir": stage_dir,
               "models": {k: v for k, v in (sel.fitted_files() or {}).items()}}
        workdir.write_json(os.path.join(stage_dir, "done.json"), rep)
        faults.point(f"stage:{i:02d}")
        self.progress.line(f"{label}: kept {kept} of {n_in}")
        return rep

    def _global_decide(self, sel, name, stage_dir, tasks, keep_paths) -> dict:
        cols, offs = _concat_scores([t.scores_path for t in tasks])
        try:
            if offs[-1]:
                dec = sel.decide(Scores(cols, offs, [s.name for s in self.shards]), _Decide(self, stage_dir, sel.seed_))
            else:  # nothing reaches this stage: nothing to decide
                dec = Decision(keep=np.zeros(0, bool))
        finally:
            handoff.drop_stage(stage_dir)  # what the scores left for the decide, used or not
        arrays = decision_arrays(cols, dec, sel.display_name(), name)
        for j, p in enumerate(keep_paths):
            write_keep(p, arrays, int(offs[j]), int(offs[j + 1]))
            faults.point(f"decide:{os.path.basename(stage_dir)[:2]}:{j}")
        return dict(getattr(dec, "metrics", {}) or {})

    # -- one pass per shard --------------------------------------------------------------------
    def _one_pass_ok(self) -> bool:
        """Every stage is document-scope without fit and tasks run in this process (one worker)."""
        if type(self.executor) is not LocalExecutor or self.executor.workers != 1:
            return False
        return all(st.cls.scope == "document" and st.cls.fit is Selector.fit for st in self.cfg.stages)

    def _one_pass(self):
        """Scan, every stage and the write of one shard after another, reading each file once.

        No step of such a pipeline waits for other shards, so a shard's batches stay in memory
        (io.hold, when under io.HOLD_MAX_BYTES) from its scan to its output rows and its text is
        decoded once instead of twice. The work dir gets the same files as the staged flow (scan,
        selector, scores, keep, done) and the writer gets the same tables in the same order, so a
        rerun, in either flow, resumes from them and writes the same bytes. Duplicate ids need every
        shard: at the first one this returns None and the staged flow takes over, reusing the
        finished tasks, and refuses or drops exactly as it always does. Otherwise returns the
        arguments of _write_end.
        """
        t_scan = [0.0, 0.0]  # wall, cpu of each part of the pass
        t_write = [0.0, 0.0]

        def clock(acc, t, c):  # add the wall and CPU seconds since (t, c) to acc
            acc[0] += time.perf_counter() - t
            acc[1] += usage()["cpu_s"] - c

        t, c = time.perf_counter(), usage()["cpu_s"]
        self._scan_prepare()
        prev_fp = self.input_fp + self._scan_fp()
        stages = []
        for i, st in enumerate(self.cfg.stages):
            sel, label, fp, stage_dir, keep_paths = self._stage_setup(i, st, prev_fp)
            sel_path = self._unfitted_selector(i, sel, stage_dir)
            stages.append({"st": st, "sel": sel, "label": label, "dir": stage_dir, "keep": keep_paths,
                           "sel_path": sel_path, "stats": [], "clock": [0.0, 0.0]})
            prev_fp = fp
        clock(t_scan, t, c)
        n = len(self.shards)
        self.progress.line(f"one pass over {n} input shard(s): scan, {len(stages)} document stage(s), write")
        t, c = time.perf_counter(), usage()["cpu_s"]
        tmp, schema = self._write_begin()
        writer = self._writer(tmp, schema)
        clock(t_write, t, c)
        scan_stats: list[dict] = []
        seen = np.zeros(0, np.uint64)  # sorted id hashes of the shards before
        kept_rows = kept_bytes = kept_words = 0
        bar = self.progress.bar(n, "one pass") if n else None
        try:
            for j in range(n):
                t, c = time.perf_counter(), usage()["cpu_s"]
                task = ScanTask(self.shard_ctx(j, None))
                _call(hold_shard, task)
                scan_stats.append(_call(run_scan, task))
                ids = np.sort(workdir.read_npz(task.ctx.scan_path)["id_hash"])
                at = np.minimum(np.searchsorted(seen, ids), max(len(seen) - 1, 0))
                if (ids[1:] == ids[:-1]).any() or (len(seen) and (seen[at] == ids).any()):
                    writer.close()
                    workdir.remove(tmp)
                    self.progress.line("duplicate ids: continuing stage by stage")
                    return None
                seen = np.concatenate([seen, ids])
                seen.sort(kind="stable")  # two sorted runs: a merge
                clock(t_scan, t, c)
                alive = None
                for s in stages:
                    t, c = time.perf_counter(), usage()["cpu_s"]
                    ctx = self.shard_ctx(j, alive)
                    s["stats"].append(_call(run_score, ScoreTask(ctx, s["dir"], s["sel_path"], s["label"])))
                    alive = s["keep"][j]
                    clock(s["clock"], t, c)
                t, c = time.perf_counter(), usage()["cpu_s"]
                rows, nbytes, words = self._write_shard(writer, schema, j, alive)
                kept_rows, kept_bytes, kept_words = kept_rows + rows, kept_bytes + nbytes, kept_words + words
                release_shard()
                clock(t_write, t, c)
                if bar:
                    bar.update()
        except BaseException:
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - the first error is the one to report
                pass
            raise
        finally:
            release_shard()
            if bar:
                bar.close()
        reports = [self._scan_report(scan_stats, 0, t_scan[0], t_scan[1])["report"]]
        alive_path: list[str | None] = [None] * n
        for i, s in enumerate(stages):
            done = os.path.join(s["dir"], "done.json")
            ctxs = [self.shard_ctx(j, alive_path[j]) for j in range(n)]
            if storage.exists(done):
                rep = workdir.read_json(done)
                self._account([{"rss_mb": rep.get("peak_rss_mb", 0)}])
            else:
                t, c = time.perf_counter(), usage()["cpu_s"]
                n_in = sum(len(ctx.alive_rows()) for ctx in ctxs)
                clock(s["clock"], t, c)
                rep = self._stage_report(i, s["st"], s["sel"], s["label"], s["dir"], ctxs, s["keep"], n_in,
                                         s["stats"], {}, s["clock"][0], s["clock"][1])
            reports.append(rep)
            alive_path = s["keep"]
        t, c = time.perf_counter(), usage()["cpu_s"]
        files = writer.close()
        clock(t_write, t, c)
        return reports, tmp, schema, files, kept_rows, kept_bytes, kept_words, t_write[0], t_write[1]

    # -- output --------------------------------------------------------------------------------
    def _write(self, stage_reports: list[dict], alive_path: list) -> dict:
        t0, c0 = time.perf_counter(), usage()["cpu_s"]
        self.progress.line("write: output shards")
        tmp, schema = self._write_begin()
        if getattr(self.executor, "parallel_write", False):  # Ray: parts written by tasks, same bytes
            from .parallel_write import write_data

            files, kept_rows, kept_bytes, kept_words = write_data(self, tmp, schema, alive_path)
        else:
            files, kept_rows, kept_bytes, kept_words = self._write_data(tmp, schema, alive_path)
        return self._write_end(stage_reports, tmp, schema, files, kept_rows, kept_bytes, kept_words,
                               time.perf_counter() - t0, usage()["cpu_s"] - c0)

    def _write_begin(self) -> tuple[str, pa.Schema]:
        tmp = os.path.join(self.out, ".data.tmp")
        workdir.remove(tmp)
        workdir.remove(os.path.join(self.out, "data"))  # a data/ without manifest.json is an unfinished write
        storage.makedirs(tmp)
        return tmp, self._output_schema()

    def _write_end(self, stage_reports, tmp, schema, files, kept_rows, kept_bytes, kept_words, wall, cpu) -> dict:
        """Decisions, scores and models next to the data, the renames, then manifest.json last."""
        t0, c0 = time.perf_counter() - wall, usage()["cpu_s"] - cpu
        final = os.path.join(self.out, "data")
        if not files:  # an empty selection is still a readable dataset
            fs, where = storage.arrow_fs(os.path.join(tmp, "part-00000.parquet"))
            empty = pa.Table.from_arrays([pa.nulls(0, f.type) for f in schema], schema=schema)  # no pandas import
            pq.write_table(empty, where, filesystem=fs, compression=self.cfg.output.compression)
            files = [{"path": os.path.join(tmp, "part-00000.parquet"), "rows": 0}]
        out_files = []
        for f in files:
            name = os.path.basename(f["path"])
            out_files.append({"path": f"data/{name}", "rows": f["rows"], "bytes": storage.getsize(f["path"])})
        self._write_decisions(stage_reports)
        faults.point("write:decisions")
        if self.cfg.output.scores:
            self._write_scores(stage_reports)
        models = self._copy_models(stage_reports)
        faults.point("write:before-rename")
        storage.replace_dir(tmp, final)  # object stores: a copy, not atomic; manifest.json comes after
        faults.point("write:renamed")
        for name in ("decisions", "scores", "models"):
            if storage.exists(os.path.join(self.out, f".{name}.tmp")):
                workdir.remove(os.path.join(self.out, name))
                storage.replace_dir(os.path.join(self.out, f".{name}.tmp"), os.path.join(self.out, name))
        write_rep = {"wall_s": time.perf_counter() - t0, "cpu_s": usage()["cpu_s"] - c0}
        manifest = self._manifest(stage_reports, out_files, kept_rows, kept_bytes, kept_words, write_rep, models)
        faults.point("manifest")
        workdir.write_json(os.path.join(self.out, MANIFEST), manifest)
        self.progress.line(f"done: kept {kept_rows} of {manifest['docs_in']} documents -> {final}")
        return manifest

    def _writer(self, tmp: str, schema: pa.Schema) -> BoundedParquetWriter:
        out = self.cfg.output
        return BoundedParquetWriter(tmp, schema, out.max_shard_bytes, out.row_group_bytes, out.compression)

    def _write_data(self, tmp: str, schema: pa.Schema, alive_path: list):
        """Stream the kept rows of every shard, in order, into bounded parts under ``tmp``."""
        writer = self._writer(tmp, schema)
        kept_rows = kept_bytes = kept_words = 0
        for j in range(len(self.shards)):
            r, b, w = self._write_shard(writer, schema, j, alive_path[j])
            kept_rows, kept_bytes, kept_words = kept_rows + r, kept_bytes + b, kept_words + w
        return writer.close(), kept_rows, kept_bytes, kept_words

    def _write_shard(self, writer: BoundedParquetWriter, schema: pa.Schema, j: int, alive_path: str | None):
        """Shard j's kept rows, in order, into the writer; returns (rows, bytes, words) kept."""
        inp = self.cfg.input
        sh = self.shards[j]
        ctx = self.shard_ctx(j, alive_path)
        rows = ctx.alive_rows()
        kept_rows = kept_bytes = kept_words = 0
        if len(rows):
            scan = ctx.stats()
            kept_bytes = int(scan["n_bytes"][rows].sum())
            kept_words = int(scan["n_words"][rows].sum())
            start = 0
            for tbl in iter_tables(sh, None, io.pass_batch_size(inp.batch_size), inp.batch_bytes):
                n = tbl.num_rows
                lo, hi = np.searchsorted(rows, [start, start + n])
                if hi > lo:
                    if inp.id_column not in tbl.column_names:
                        tbl = tbl.append_column(inp.id_column, make_ids(sh.name, start, n))
                    writer.write(select_rows(tbl, rows[lo:hi] - start).select(schema.names))
                    kept_rows += int(hi - lo)
                start += n
                if hi == len(rows):
                    break
        faults.point(f"write:{j}")
        return kept_rows, kept_bytes, kept_words

    def _output_schema(self) -> pa.Schema:
        inp = self.cfg.input
        schemas = []
        raw = [shard_schema(sh) for sh in self.shards]
        text_types = [s.field(inp.text_column).type for s in raw if inp.text_column in s.names]
        str_type = next((t for t in text_types if pa.types.is_string(t) or pa.types.is_large_string(t)), pa.string())
        for s in raw:
            i = s.get_field_index(inp.text_column)
            if i >= 0 and s.field(i).type != str_type:
                # a shard whose texts are not strings has all its rows dropped as null_text
                s = s.set(i, pa.field(inp.text_column, str_type))
            if inp.id_column not in s.names:
                s = s.append(pa.field(inp.id_column, pa.string()))
            schemas.append(s)
        try:
            return pa.unify_schemas(schemas, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
            first = schemas[0]
            for sh, s in zip(self.shards, schemas):
                for f in s:
                    if f.name in first.names and first.field(f.name).type != f.type:
                        raise DataError(
                            f"{sh.uri}: column {f.name!r} is {f.type} but {first.field(f.name).type} in "
                            f"{self.shards[0].uri}") from None
            raise DataError(f"inputs have incompatible schemas ({err})") from None

    def _write_decisions(self, stage_reports):
        tmp = os.path.join(self.out, ".decisions.tmp")
        workdir.remove(tmp)
        storage.makedirs(tmp)
        names = [r["name"] for r in stage_reports[1:]]
        for j in range(len(self.shards)):
            scan = workdir.read_npz(os.path.join(self.work, "scan", f"shard-{j:05d}.npz"))
            keeps = [workdir.read_npz(os.path.join(r["dir"], f"keep-{j:05d}.npz")) for r in stage_reports[1:]]
            tbl = shard_decisions(scan, keeps, names, self._ids(j))
            fs, where = storage.arrow_fs(os.path.join(tmp, f"shard-{j:05d}.parquet"))
            pq.write_table(tbl, where, filesystem=fs, compression="zstd")

    def _write_scores(self, stage_reports):
        tmp = os.path.join(self.out, ".scores.tmp")
        workdir.remove(tmp)
        storage.makedirs(tmp)
        for i, rep in enumerate(stage_reports[1:]):
            tables = []
            for j in range(len(self.shards)):
                z = workdir.read_npz(os.path.join(rep["dir"], f"keep-{j:05d}.npz"))
                if len(z["row"]) == 0:
                    continue
                # code -1 (kept) picks the trailing null; one string per reason, taken per row
                names = arrow_strings([*z["reason_names"].tolist(), None])
                code = z["reason_code"].astype(np.int64)
                reason = arrow_take(names, arrow_array(np.where(code < 0, len(names) - 1, code)))
                cols = {"id": arrow_take(self._ids(j), arrow_array(z["row"])),
                        "stage": arrow_take(arrow_strings([rep["name"]]), arrow_array(np.zeros(len(z["row"]), np.int32))),
                        "score": arrow_array(z["score"]), "kept": arrow_array(z["keep"]),
                        "reason": reason}
                for k in z:
                    if k.startswith("extra_"):
                        v = z[k]
                        cols[k[6:]] = any_arrow_array(v)
                tables.append(pa.table(cols))
            if tables:
                safe = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in rep["name"])[:40]
                fs, where = storage.arrow_fs(os.path.join(tmp, f"stage-{i + 1:02d}-{safe}.parquet"))
                pq.write_table(pa.concat_tables(tables, promote_options="permissive"), where, filesystem=fs,
                               compression="zstd")

    def _ids(self, j: int) -> pa.Array:
        cache = self.__dict__.setdefault("_id_cache", {})
        if j not in cache:
            cache.clear()
            cache[j] = self._read_ids(j)
        return cache[j]

    def _read_ids(self, j: int) -> pa.Array:
        inp = self.cfg.input
        sh = self.shards[j]
        parts, start = [], 0
        for tbl in iter_tables(sh, [inp.id_column], inp.batch_size):
            tbl, _ = normalize(tbl, sh, inp.text_column, inp.id_column, start, need_text=False)
            ids = one_array(tbl.column(inp.id_column))
            parts.append(ids if ids.type == pa.string() else ids.cast(pa.string()))
            start += tbl.num_rows
        return pa.concat_arrays(parts) if parts else pa.nulls(0, pa.string())

    def _copy_models(self, stage_reports) -> dict:
        out = {}
        tmp = os.path.join(self.out, ".models.tmp")
        workdir.remove(tmp)
        for i, rep in enumerate(stage_reports[1:]):
            for key, path in (rep.get("models") or {}).items():
                if not os.path.exists(path):
                    continue
                safe = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in rep["name"])[:40]
                d = os.path.join(tmp, f"stage-{i + 1:02d}-{safe}")
                storage.makedirs(d)
                dest = os.path.join(d, os.path.basename(path))
                storage.upload(path, dest)
                out.setdefault(rep["name"], {})[key] = f"models/{os.path.relpath(dest, tmp)}"
        return out

    def _manifest(self, stage_reports, out_files, kept_rows, kept_bytes, kept_words, write_rep, models) -> dict:
        docs_in = stage_reports[0]["docs_in"]
        dropped_total = sum(sum(r["dropped"].values()) for r in stage_reports)
        if docs_in != kept_rows + dropped_total:
            raise RuntimeError(f"accounting error: {docs_in} in, {kept_rows} kept, {dropped_total} dropped")
        for r in stage_reports:
            r.pop("dir", None)
            r.pop("models", None)
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "shardsift_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": socket.gethostname(),
            "config": self.cfg.resolved(),
            "inputs": [{"path": s.uri, "bytes": s.size, "fingerprint": s.fingerprint, "rows": st["rows"]}
                       for s, st in zip(self.shards, self.scan_stats)],
            "docs_in": docs_in,
            "docs_kept": kept_rows,
            "docs_dropped": dropped_total,
            "bytes_in": sum(st["bytes"] for st in self.scan_stats),
            "bytes_kept": kept_bytes,
            "tokens_in": sum(st["words"] for st in self.scan_stats),
            "tokens_kept": kept_words,
            "stages": stage_reports,
            "write": write_rep,
            "output": {"files": out_files, "models": models, "scores": bool(self.cfg.output.scores)},
            "wall_s": time.perf_counter() - self.t0,
            "cpu_s": usage()["cpu_s"] - self.cpu0 + self.task_cpu,
            "peak_rss_mb": max(ru.ru_maxrss / 1024.0, self.task_rss),
        }


def run_pipeline(config: Any, *, overwrite: bool = False, progress: Progress | bool | None = None,
                 executor: Executor | None = None) -> dict:
    """Run a pipeline from a config mapping (or a validated Config); returns the manifest."""
    cfg = config if isinstance(config, Config) else parse_config(config)
    if isinstance(progress, bool):
        progress = Progress(enabled=progress)
    try:
        return Runner(cfg, overwrite=overwrite, progress=progress, executor=executor).run()
    finally:
        _freeze_once()


_FROZEN = []


def _freeze_once() -> None:
    """After the first run in a process, move every object then alive (modules, numba's type
    registries, compiled kernels: ~125,000 objects after a minhash_dedup run, nearly all of them kept
    for the life of the process)
    to the garbage collector's permanent generation. Later collections, and the one at interpreter
    exit (0.3 CPU-s after a numba stage), then skip them. Once per process, so what is frozen is
    bounded: at most the cyclic garbage alive at the end of the first run, never collected."""
    if not _FROZEN:
        _FROZEN.append(True)
        gc.freeze()
