"""The output's data parts and decisions, written by one task per input shard.

A shard's task reads the shard once more, keeps the rows that survived every stage (in input
order) and writes them as bounded Parquet parts named after the shard (``part-SSSSS-KKKKK``),
plus the shard's decisions file. What a task writes depends on its shard alone, so the bytes are the
same for any number of workers and either executor, and no document passes through the driver.
Each task writes into its shard's folder in the work dir, done marker last, so a rerun skips the
shards already written (by these tasks, or by a scan that ran every stage fused); the driver then
moves the parts into the output (a rename on a local disk).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..columns import any_arrow_array, arrow_array, arrow_strings, arrow_take, one_array
from ..io import iter_tables, normalize, pass_batch_size, select_rows, storage
from . import faults, workdir
from .accounting import shard_decisions
from .output_formats import OutputFormat
from .shards import ShardContext, task_stats, usage
from .sources import decorate


@dataclass
class ShardOutputTask:
    ctx: ShardContext            # the shard, with the last stage's keep file as its alive rows
    schema: pa.Schema
    data_dir: str                # this shard's output folder in the work dir
    keep_paths: list             # each stage's keep file of this shard, in stage order
    stage_names: list
    fmt: OutputFormat            # what the parts are: Parquet, JSON Lines or token shards
    scores: bool = False         # also each stage's score table of this shard (the scores sidecar)
    source: str | None = None    # a mixture's source of this shard: the source column's value
    mixing: bool = False         # the last stage is the mix step: rows repeat by its copies, epoch column

    @property
    def label(self):
        return f"write: {self.ctx.shard.uri}"

    @property
    def done_path(self) -> str:
        return os.path.join(self.data_dir, "done.json")

    @property
    def decisions_path(self) -> str:
        return os.path.join(self.data_dir, "decisions.parquet")

    def scores_path(self, stage: int) -> str:
        return os.path.join(self.data_dir, f"scores-{stage:02d}.parquet")

    def writer(self):
        return self.fmt.writer(self.data_dir, self.schema, self.ctx.index)


def run_shard_output(task: ShardOutputTask) -> dict:
    """Write one shard's kept rows, decisions and scores (unless a task, or the fused scan, already
    did); returns the parts written and what was kept."""
    if storage.exists(task.done_path):
        done = workdir.read_json(task.done_path)
        if all(storage.exists(os.path.join(task.data_dir, f["name"]))
               for f in done["files"]) and storage.exists(task.decisions_path):
            return done
    t0, before = time.perf_counter(), usage()
    workdir.remove(task.data_dir)  # what a killed task left
    storage.makedirs(task.data_dir)
    writer = task.writer()
    ids = _write_kept(task, task.ctx.alive_rows(), writer)
    return {**finish_shard_output(task, writer.close(), ids), **task_stats(before, t0)}


def finish_shard_output(task: ShardOutputTask, files: list[dict], ids: pa.Array) -> dict:
    """The shard's decisions and score tables beside its parts, then its done marker (the task's
    one result)."""
    ctx = task.ctx
    scan = ctx.stats()
    rows = ctx.alive_rows()
    keeps = [workdir.read_npz(p) for p in task.keep_paths]
    _write_table(shard_decisions(scan, keeps, task.stage_names, ids), task.decisions_path)
    if task.scores:
        for i, (name, keep) in enumerate(zip(task.stage_names, keeps)):
            if len(keep["row"]) and "passthrough" not in keep:  # not another source's stage
                _write_table(score_table(name, keep, ids, scan["n_tokens"]), task.scores_path(i))
    done = {"files": [{"name": os.path.basename(f["path"]), **{k: v for k, v in f.items() if k != "path"}}
                      for f in files],
            "rows": int(len(rows)), "bytes": int(scan["n_bytes"][rows].sum()),
            "words": int(scan["n_words"][rows].sum()), "tokens": int(scan["n_tokens"][rows].sum())}
    if task.mixing:
        done["rows_written"] = sum(f["rows"] for f in files)
    workdir.write_json(task.done_path, done)
    faults.point(f"write:{ctx.index}")
    return done


def _write_kept(task: ShardOutputTask, rows: np.ndarray, writer) -> pa.Array:
    """One pass over the shard: the given ascending rows, every column, into ``writer`` in the
    output schema (a mixture's rows with their source, repeated by the mix step's copies);
    returns every row's id (made from the shard's name and row where the input has none) for the
    decisions."""
    ctx, schema = task.ctx, task.schema
    copies = None
    if task.mixing:
        z = workdir.read_npz(ctx.alive_path)
        copies = z["extra_copies"][z["keep"]].astype(np.int64)
    start, ids = 0, []
    for tbl in iter_tables(ctx.shard, None, pass_batch_size(ctx.batch_size), ctx.batch_bytes):
        n = tbl.num_rows
        tbl, _ = normalize(tbl, ctx.shard, ctx.text_column, ctx.id_column, start, need_text=False)
        ids.append(one_array(tbl.column(ctx.id_column)))
        lo, hi = np.searchsorted(rows, [start, start + n])
        if hi > lo and task.source is not None:
            part = decorate(tbl, rows[lo:hi] - start, None if copies is None else copies[lo:hi], task.source,
                            task.mixing)
            writer.write(part.select(schema.names))
        elif hi > lo:
            writer.write(select_rows(tbl, rows[lo:hi] - start).select(schema.names))
        start += n
    return as_ids(ids)


def as_ids(parts: list) -> pa.Array:
    """The id arrays of a shard's batches as one string array."""
    return pa.concat_arrays([p.cast(pa.string()) for p in parts]) if parts else pa.nulls(0, pa.string())


def score_table(stage_name: str, keep: dict, ids: pa.Array, n_tokens=None) -> pa.Table:
    """One stage's rows of the scores sidecar for one shard: id, stage, score, kept, reason,
    n_tokens (the run's token unit, given the scan's counts) and the selector's extra columns, from
    the stage's keep file."""
    names = arrow_strings([*keep["reason_names"].tolist(), None])  # code -1 (kept): the trailing null
    code = keep["reason_code"].astype(np.int64)
    cols = {"id": arrow_take(ids, arrow_array(keep["row"])),
            "stage": arrow_take(arrow_strings([stage_name]), arrow_array(np.zeros(len(keep["row"]), np.int32))),
            "score": arrow_array(keep["score"]), "kept": arrow_array(keep["keep"]),
            "reason": arrow_take(names, arrow_array(np.where(code < 0, len(names) - 1, code)))}
    if n_tokens is not None:
        cols["n_tokens"] = arrow_array(np.asarray(n_tokens, dtype=np.int64)[keep["row"]])
    for k in keep:
        if k.startswith("extra_"):
            cols[k[6:]] = _sidecar_column(keep[k])
    return pa.table(cols)


def _sidecar_column(values: np.ndarray) -> pa.Array:
    """An extra column as Arrow. Text columns: NumPy strings have no null, so a selector leaves
    "" where a value does not apply (e.g. no match) and it is written as null; a bytes column
    that is valid UTF-8 (text kept at a byte per ASCII character) is written as strings."""
    if values.ndim == 1 and values.dtype.kind in "US":
        typ = pa.string() if values.dtype.kind == "U" else pa.binary()
        arr = pa.array(values, typ, mask=values == values.dtype.type())
        if values.dtype.kind == "S":
            try:
                arr = arr.cast(pa.string())
            except pa.ArrowInvalid:
                pass
        return arr
    return any_arrow_array(values)


def _write_table(table: pa.Table, path: str) -> None:
    fs, where = storage.arrow_fs(path)
    pq.write_table(table, where, filesystem=fs, compression="zstd")


def output_tasks(runner, schema: pa.Schema, alive_path: list, stage_dirs: list, names: list,
                 folder: str, scores: bool, fmt: OutputFormat) -> list[ShardOutputTask]:
    """Every shard's output task; ``folder`` (in the work dir) is keyed by all that decides the bytes."""
    sources, owner = runner.cfg.sources, runner.shard_source
    return [ShardOutputTask(runner.shard_ctx(j, alive_path[j]), schema, os.path.join(folder, f"shard-{j:05d}"),
                            [os.path.join(d, f"keep-{j:05d}.npz") for d in stage_dirs], names, fmt, scores,
                            source=sources[int(owner[j])].name if sources else None, mixing=runner.mixing)
            for j in range(len(runner.shards))]


def write_shards(runner, tasks: list[ShardOutputTask], data_tmp: str, decisions_tmp: str) -> dict:
    """Run the shards' output tasks not done yet, then move their parts into ``data_tmp`` and their
    decisions into ``decisions_tmp``; returns the files and the kept rows, bytes, words and tokens."""
    stats = runner.executor.map(run_shard_output, tasks, desc="write", progress=runner.progress)
    runner._account([s for s in stats if "cpu_s" in s])
    files = []
    for task, done in zip(tasks, stats):
        for f in done["files"]:
            dest = os.path.join(data_tmp, f["name"])
            storage.move(os.path.join(task.data_dir, f["name"]), dest)
            files.append({**f, "path": dest})
        storage.move(task.decisions_path, os.path.join(decisions_tmp, f"shard-{task.ctx.index:05d}.parquet"))
    return {"files": files, "rows": sum(s["rows"] for s in stats), "bytes": sum(s["bytes"] for s in stats),
            "words": sum(s["words"] for s in stats), "tokens": sum(s["tokens"] for s in stats)}
