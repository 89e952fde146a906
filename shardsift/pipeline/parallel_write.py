"""The final write as tasks (used by the Ray executor): no document passes through the driver.

The output must be byte-identical to the sequential write (``Runner._write_data`` with
``BoundedParquetWriter``), whose part and row-group boundaries depend on the global order of the
kept rows. So the write runs in two rounds of tasks:

1. plan, one task per input shard: replay the shard's writes (the same batches, the same row
   selection, the same cast) and return the per-row byte sizes the writer would count (8 bytes per
   kept document);
2. the driver replays ``BoundedParquetWriter.write`` on those sizes alone, which gives every output
   part as a list of row groups, each a list of pieces (shard, write call, slice);
3. write, one task per output part: rebuild exactly those pieces from the input and write them with
   the same Parquet settings, so the bytes are those of the sequential write.

A part task that dies is rerun whole (it rewrites its file from the start); data/ is published and
manifest.json written by the driver only after every part task has finished.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import storage
from .io import PartCutter, _row_bytes, iter_tables, make_ids, pass_batch_size, select_rows
from .shards import ShardContext, task_stats, usage


@dataclass
class PlanTask:
    ctx: ShardContext
    schema: pa.Schema

    @property
    def label(self):
        return f"write plan: {self.ctx.shard.uri}"


def _shard_writes(ctx: ShardContext, schema: pa.Schema, rows: np.ndarray, upto: int | None = None):
    """Yield (call index, table) for each ``writer.write`` the sequential write makes for this shard."""
    sh, inp_batch = ctx.shard, pass_batch_size(ctx.batch_size)
    start, k = 0, 0
    for tbl in iter_tables(sh, None, inp_batch, ctx.batch_bytes):
        n = tbl.num_rows
        lo, hi = np.searchsorted(rows, [start, start + n])
        if hi > lo:
            if ctx.id_column not in tbl.column_names:
                tbl = tbl.append_column(ctx.id_column, make_ids(sh.name, start, n))
            tbl = select_rows(tbl, rows[lo:hi] - start).select(schema.names)  # as Runner._write_shard does
            yield k, (tbl.cast(schema) if tbl.schema != schema else tbl)
            k += 1
            if upto is not None and k > upto:
                return
        start += n
        if hi == len(rows):
            break


def run_plan(task: PlanTask) -> list:
    """Row byte sizes of each write call of one shard (empty list: nothing kept)."""
    rows = task.ctx.alive_rows()
    if len(rows) == 0:
        return []
    return [_row_bytes(tbl) for _, tbl in _shard_writes(task.ctx, task.schema, rows)]


def plan_parts(sizes: list[list[np.ndarray]], max_bytes: int, row_group_bytes: int) -> list:
    """Replay BoundedParquetWriter.write on row sizes: parts -> row groups -> (shard, call, start, take)."""
    cutter = PartCutter(max_bytes, row_group_bytes)
    parts: list[list[list[tuple]]] = []
    group: list[tuple] = []

    def apply(events, j=-1, c=-1):
        nonlocal group
        for ev in events:
            if ev[0] == "rows":
                group.append((j, c, ev[1], ev[2]))
            elif ev[0] == "group":
                parts[-1].append(group)
                group = []
            elif ev[0] == "open":
                parts.append([])

    for j, calls in enumerate(sizes):
        for c, row_bytes in enumerate(calls):
            apply(cutter.cut(row_bytes), j, c)
    apply(cutter.finish())
    return parts


@dataclass
class PartTask:
    path: str
    groups: list           # [[(shard index, call, start, take), ...], ...]
    ctxs: dict             # shard index -> ShardContext (only the shards this part reads)
    schema: pa.Schema
    compression: str

    @property
    def label(self):
        return f"write: {os.path.basename(self.path)}"


def run_part(task: PartTask) -> dict:
    t0, before = time.perf_counter(), usage()
    need: dict[int, set] = {}
    for group in task.groups:
        for j, c, _, _ in group:
            need.setdefault(j, set()).add(c)
    tables: dict[tuple, pa.Table] = {}
    for j, calls in need.items():
        ctx = task.ctxs[j]
        for k, tbl in _shard_writes(ctx, task.schema, ctx.alive_rows(), upto=max(calls)):
            if k in calls:
                tables[(j, k)] = tbl
    fs, where = storage.arrow_fs(task.path)
    comp = None if task.compression == "none" else task.compression
    writer = pq.ParquetWriter(where, task.schema, filesystem=fs, compression=comp,
                              use_dictionary=False, write_statistics=False)
    rows = 0
    try:
        for group in task.groups:
            tbl = pa.concat_tables([tables[(j, c)].slice(s, t) for j, c, s, t in group])
            writer.write_table(tbl, row_group_size=max(1, tbl.num_rows))
            rows += tbl.num_rows
    finally:
        writer.close()
    return {"path": task.path, "rows": rows, **task_stats(before, t0)}


def write_data(runner, tmp: str, schema: pa.Schema, alive_path: list):
    """The sequential write's (files, kept rows, kept bytes, kept words), with the data written by tasks."""
    ctxs = [runner.shard_ctx(j, alive_path[j]) for j in range(len(runner.shards))]
    kept_rows = kept_bytes = kept_words = 0
    for ctx in ctxs:  # small per-shard arrays from the work dir
        rows = ctx.alive_rows()
        if len(rows):
            scan = ctx.stats()
            kept_rows += len(rows)
            kept_bytes += int(scan["n_bytes"][rows].sum())
            kept_words += int(scan["n_words"][rows].sum())
    ex, prog = runner.executor, runner.progress
    sizes = ex.map(run_plan, [PlanTask(c, schema) for c in ctxs], desc="write: plan", progress=prog)
    parts = plan_parts(sizes, runner.cfg.output.max_shard_bytes, runner.cfg.output.row_group_bytes)
    tasks = []
    for p, groups in enumerate(parts):
        used = sorted({j for g in groups for j, _, _, _ in g})
        tasks.append(PartTask(os.path.join(tmp, f"part-{p:05d}.parquet"), groups, {j: ctxs[j] for j in used},
                              schema, runner.cfg.output.compression))
    stats = ex.map(run_part, tasks, desc="write: parts", progress=prog)
    runner._account(stats)
    files = [{"path": s["path"], "rows": s["rows"]} for s in stats]
    if sum(f["rows"] for f in files) != kept_rows:
        raise RuntimeError(f"write: accounting error: {kept_rows} kept, {sum(f['rows'] for f in files)} written")
    return files, kept_rows, kept_bytes, kept_words
