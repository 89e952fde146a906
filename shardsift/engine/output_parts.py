"""The output's data parts and decisions, written by one task per input shard.

A shard's task reads the shard once more, keeps the rows that survived every stage (in input
order) and writes them as bounded Parquet parts named after the shard (``part-SSSSS-KKKK``), plus
the shard's decisions file. What a task writes depends on its shard alone, so the bytes are the
same for any number of workers and either executor, and no document passes through the driver.
A task that dies is rerun whole: it writes its files afresh.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..columns import one_array
from ..io import BoundedParquetWriter, iter_tables, make_ids, normalize, pass_batch_size, select_rows, storage
from . import faults, workdir
from .accounting import shard_decisions
from .shards import ShardContext, task_stats, usage


@dataclass
class ShardOutputTask:
    ctx: ShardContext            # the shard, with the last stage's keep file as its alive rows
    schema: pa.Schema
    data_dir: str                # the output's temporary data folder
    decisions_path: str
    keep_paths: list             # each stage's keep file of this shard, in stage order
    stage_names: list
    max_shard_bytes: int
    row_group_bytes: int
    compression: str

    @property
    def label(self):
        return f"write: {self.ctx.shard.uri}"


def run_shard_output(task: ShardOutputTask) -> dict:
    """Write one shard's kept rows and its decisions; return the parts written and what was kept."""
    t0, before = time.perf_counter(), usage()
    ctx = task.ctx
    rows = ctx.alive_rows()
    scan = ctx.stats()
    files = []
    if len(rows):
        writer = BoundedParquetWriter(task.data_dir, task.schema, task.max_shard_bytes, task.row_group_bytes,
                                      task.compression, prefix=f"part-{ctx.index:05d}-")
        try:
            for tbl in _kept_tables(ctx, task.schema, rows):
                writer.write(tbl)
        finally:
            files = writer.close()
    keeps = [workdir.read_npz(p) for p in task.keep_paths]
    table = shard_decisions(scan, keeps, task.stage_names, shard_ids(ctx))
    fs, where = storage.arrow_fs(task.decisions_path)
    pq.write_table(table, where, filesystem=fs, compression="zstd")
    faults.point(f"write:{ctx.index}")
    return {"files": files, "rows": int(len(rows)), "bytes": int(scan["n_bytes"][rows].sum()),
            "words": int(scan["n_words"][rows].sum()), **task_stats(before, t0)}


def _kept_tables(ctx: ShardContext, schema: pa.Schema, rows: np.ndarray):
    """The given ascending rows of the shard, every column, batch by batch, in the output schema."""
    start = 0
    for tbl in iter_tables(ctx.shard, None, pass_batch_size(ctx.batch_size), ctx.batch_bytes):
        n = tbl.num_rows
        lo, hi = np.searchsorted(rows, [start, start + n])
        if hi > lo:
            if ctx.id_column not in tbl.column_names:
                tbl = tbl.append_column(ctx.id_column, make_ids(ctx.shard.name, start, n))
            tbl = select_rows(tbl, rows[lo:hi] - start).select(schema.names)
            yield tbl.cast(schema) if tbl.schema != schema else tbl
        start += n
        if hi == len(rows):
            break


def shard_ids(ctx: ShardContext) -> pa.Array:
    """Every row's id (made from the shard's name and row where the input has none)."""
    parts, start = [], 0
    for tbl in iter_tables(ctx.shard, [ctx.id_column], ctx.batch_size):
        tbl, _ = normalize(tbl, ctx.shard, ctx.text_column, ctx.id_column, start, need_text=False)
        ids = one_array(tbl.column(ctx.id_column))
        parts.append(ids if ids.type == pa.string() else ids.cast(pa.string()))
        start += tbl.num_rows
    return pa.concat_arrays(parts) if parts else pa.nulls(0, pa.string())


def write_shards(runner, tmp: str, schema: pa.Schema, alive_path: list, stage_reports: list) -> dict:
    """Run every shard's output task; return the files and the kept rows, bytes and words."""
    out = runner.cfg.output
    dec_tmp = os.path.join(runner.out, ".decisions.tmp")
    workdir.remove(dec_tmp)
    storage.makedirs(dec_tmp)
    names = [r["name"] for r in stage_reports[1:]]
    tasks = [ShardOutputTask(runner.shard_ctx(j, alive_path[j]), schema, tmp,
                             os.path.join(dec_tmp, f"shard-{j:05d}.parquet"),
                             [os.path.join(r["dir"], f"keep-{j:05d}.npz") for r in stage_reports[1:]], names,
                             out.max_shard_bytes, out.row_group_bytes, out.compression)
             for j in range(len(runner.shards))]
    stats = runner.executor.map(run_shard_output, tasks, desc="write", progress=runner.progress)
    runner._account(stats)
    return {"files": [f for s in stats for f in s["files"]], "rows": sum(s["rows"] for s in stats),
            "bytes": sum(s["bytes"] for s in stats), "words": sum(s["words"] for s in stats)}
