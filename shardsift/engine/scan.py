"""The scan: every input shard read once, its texts checked and counted, its ids hashed; the
stages fused into it (engine/fused.py) run on the same batches."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..columns import byte_lengths, count_words, hash_strings, one_array
from ..io import iter_tables, normalize, storage
from . import faults, workdir
from .fused import FusedChain, FusedPlan
from .shards import ShardContext, task_stats, usage


@dataclass
class ScanTask:
    ctx: ShardContext
    fused: FusedPlan | None = None  # the stages (and output) that run on the shard as it is scanned

    @property
    def label(self):
        return self.ctx.shard.uri

    @property
    def work(self) -> tuple[int, str]:
        return self.ctx.shard.size, "B"


def run_scan(task: ScanTask) -> dict:
    """Read a shard once: text validity, word, token and byte counts, id hashes. Detects bad input early.

    With ``task.fused`` (the planner's choice, engine/fused.py) each batch the scan reads goes on
    through the fused stages (and into the output), so the input is decoded once for all of them
    and only one batch is in memory at a time; their CPU seconds come back as ``fused_cpu_s`` per
    stage and ``fused_write_cpu_s`` (not stored: a resumed scan skips them). The summary file is
    the task's last write: a scan found done had its fused stages finish too."""
    ctx = task.ctx
    summary_path = ctx.scan_path[:-4] + ".json"
    if storage.exists(ctx.scan_path) and storage.exists(summary_path):
        return workdir.read_json(summary_path)
    if task.fused is None:
        return _finish(ctx, summary_path, _scan_shard(task))
    fused = FusedChain(task.fused)
    summary = _scan_shard(task, fused)
    cpu = fused.finish()
    _finish(ctx, summary_path, summary)
    return {**summary, "fused_cpu_s": cpu["stage_cpu_s"], "fused_write_cpu_s": cpu["output_cpu_s"]}


def _finish(ctx: ShardContext, summary_path: str, summary: dict) -> dict:
    workdir.write_json(summary_path, summary)
    faults.point(f"scan:{ctx.index}")
    return summary


def _scan_shard(task: ScanTask, fused: FusedChain | None = None) -> dict:
    """The scan's summary; its arrays are written to the work dir (the fused stages read them)."""
    ctx = task.ctx
    t0, before = time.perf_counter(), usage()
    valid, words, nbytes, idh, toks = [], [], [], [], []
    start = _scan_batches(ctx, [ctx.text_column, ctx.id_column], valid, words, nbytes, idh, toks, fused)
    if start == 0:
        # still validates the text column on a zero-row shard
        from ..errors import DataError
        from ..io import shard_schema

        names = shard_schema(ctx.shard).names
        if names and ctx.text_column not in names:
            raise DataError(f"{ctx.shard.uri}: no text column {ctx.text_column!r} (columns: {', '.join(names)})")
    cat = lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt)
    arrays = {"valid": cat(valid, bool), "n_words": cat(words, np.int64),
              "n_bytes": cat(nbytes, np.int64), "id_hash": cat(idh, np.uint64), "n_tokens": cat(toks, np.int64)}
    arrays["alive"] = arrays["valid"].copy()
    workdir.write_npz(ctx.scan_path, arrays)
    summary = {"rows": start, "null_text": int((~arrays["valid"]).sum()),
               "bytes": int(arrays["n_bytes"].sum()), "words": int(arrays["n_words"].sum()),
               "tokens": int(arrays["n_tokens"].sum()),
               **task_stats(before, t0)}
    if fused is not None:
        summary["cpu_s"] -= fused.cpu_in_batches
    return summary


def _scan_batches(ctx: ShardContext, keys, valid, words, nbytes, idh, toks, fused=None) -> int:
    """The scan's per-batch work; with a fused score, each batch (its columns too) goes on to it.
    Each document's tokens in the run's unit are counted here, once (null texts count 0)."""
    start = 0
    read = keys if fused is None else None if fused.reads_all else keys + fused.columns
    for tbl in iter_tables(ctx.shard, read, ctx.batch_size, ctx.batch_bytes):
        tbl, ok = normalize(tbl, ctx.shard, ctx.text_column, ctx.id_column, start)
        text = one_array(tbl.column(ctx.text_column))
        valid.append(ok)
        words.append(count_words(text))
        toks.append(words[-1] if ctx.tokenizer is None else ctx.tokenizer.count(text))
        nbytes.append(byte_lengths(text))
        idh.append(hash_strings(one_array(tbl.column(ctx.id_column))))
        if fused is not None:
            fused.add(tbl, ok, start, words[-1], nbytes[-1], toks[-1])
        start += tbl.num_rows
    return start
