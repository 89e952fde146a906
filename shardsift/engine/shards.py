"""Per-shard tasks: scan an input shard, score a stage, run a fit map; plus reading surviving docs.

Everything here is picklable and runs in worker processes (or Ray tasks): a task reads its shard
from storage, writes its result to the work dir atomically and returns a small summary.
"""
from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..api import Decision, Docs, Scores
from ..columns import arrow_array, arrow_filter, byte_lengths, count_words, hash_strings, one_array
from ..io import Shard, iter_tables, normalize, row_mask, storage
from . import faults, workdir

RESERVED = ("row", "n_words", "n_bytes")


def usage() -> dict:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_s": ru.ru_utime + ru.ru_stime, "rss_mb": ru.ru_maxrss / 1024.0, "pid": os.getpid()}


def task_stats(before: dict, t0: float) -> dict:
    after = usage()
    return {"cpu_s": after["cpu_s"] - before["cpu_s"], "rss_mb": after["rss_mb"],
            "wall_s": time.perf_counter() - t0, "pid": after["pid"]}


@dataclass
class ShardContext:
    """Everything needed to read one shard's documents that reach a stage."""

    shard: Shard
    index: int
    text_column: str
    id_column: str
    batch_size: int
    scan_path: str
    alive_path: str | None = None   # previous stage's keep file; None: the scan's alive rows
    batch_bytes: int | None = None  # and about this much data per batch (io.batch_rows)

    @property
    def label(self) -> str:
        return self.shard.uri

    def alive_rows(self) -> np.ndarray:
        if self.alive_path is None:
            z = workdir.read_npz(self.scan_path)
            return np.flatnonzero(z["alive"]).astype(np.int64)
        z = workdir.read_npz(self.alive_path)
        return z["row"][z["keep"]]

    def stats(self) -> dict:
        return workdir.read_npz(self.scan_path)

    def iter_docs(self, columns: Sequence[str] = (), need_text: bool = True,
                  rows: np.ndarray | None = None) -> Iterator[Docs]:
        """Stream the alive documents (or the given sorted rows) as Docs batches."""
        rows = self.alive_rows() if rows is None else np.asarray(rows, dtype=np.int64)
        scan = self.stats() if len(rows) else None
        for tbl, start, pos in self.iter_batches(rows, columns, need_text):
            r = pos + start
            if len(pos) != tbl.num_rows:
                tbl = arrow_filter(tbl, row_mask(pos, tbl.num_rows))
            yield Docs(tbl, text_column=self.text_column, id_column=self.id_column, row=r,
                       n_words=scan["n_words"][r], n_bytes=scan["n_bytes"][r],
                       shard=self.shard.name, shard_index=self.index)

    def iter_batches(self, rows: np.ndarray, columns: Sequence[str] = (), need_text: bool = True,
                     need_ids: bool = True) -> Iterator[tuple[Any, int, np.ndarray]]:
        """(table, first row, positions): each decoded batch that holds some of the given sorted
        rows, whole (no copy; its other rows may be null or dropped), the shard row of its first
        row, and the given rows' positions in it. Without ``need_ids`` no id column is read."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == 0:
            return
        cols = [self.id_column, *columns] if need_ids else list(columns)
        if need_text:
            cols = [self.text_column, *cols]
        cols = list(dict.fromkeys(cols))
        start = 0
        for tbl in iter_tables(self.shard, cols, self.batch_size, self.batch_bytes):
            n = tbl.num_rows
            lo, hi = np.searchsorted(rows, [start, start + n])
            if hi > lo:
                # the scan checked every row of this shard (its fingerprint keys the work dir)
                tbl, _ = normalize(tbl, self.shard, self.text_column, self.id_column, start, need_text,
                                   checked=True, need_ids=need_ids)
                missing = [c for c in columns if c not in tbl.column_names]
                if missing:
                    from ..errors import DataError

                    raise DataError(f"{self.shard.uri}: no column {missing[0]!r} (needed by a selector)")
                yield tbl, start, rows[lo:hi] - start
            start += n
            if hi == len(rows):
                break


# -- scan --------------------------------------------------------------------------------------

@dataclass
class ScanTask:
    ctx: ShardContext
    score: ScoreTask | None = None  # the first stage's score, run on the shard while it is in memory

    @property
    def label(self):
        return self.ctx.shard.uri


def run_scan(task: ScanTask) -> dict:
    """Read a shard once: text validity, word and byte counts, id hashes. Detects bad input early.

    With ``task.score`` (the runner's choice: a first stage with nothing to fit), each batch the
    scan reads goes on to that stage's score (``_FusedScore``), so the input is decoded once for
    both and only one batch is in memory at a time; the score's files and fault point are those of
    ``run_score``, and its CPU seconds come back as ``fused_cpu_s`` (not stored: a resumed scan
    skips both). A score that fails leaves no file and does not fail the scan: the stage's own
    score task runs it again, and reports it under the stage's name."""
    ctx = task.ctx
    summary_path = ctx.scan_path[:-4] + ".json"
    if storage.exists(ctx.scan_path) and storage.exists(summary_path):
        return workdir.read_json(summary_path)
    if task.score is None:
        return _scan_shard(task, summary_path)
    fused = _FusedScore(task.score)
    summary = _scan_shard(task, summary_path, fused)
    stats = fused.finish()
    return summary if stats is None else {**summary, "fused_cpu_s": stats["cpu_s"]}


class _FusedScore:
    """The first stage's score of the batches a scan reads: their valid rows (the scan's alive
    rows, as ``ShardContext.iter_docs`` would give them) as Docs, then ``run_score``'s files.
    Its CPU seconds are counted apart from the scan's. After an error it stops scoring."""

    def __init__(self, task: ScoreTask):
        self.task = task
        self.acc: _ScoreParts | None = None  # once the selector is loaded
        self.cpu = self.wall = 0.0
        self.failed = False
        self.columns: list[str] = []
        try:
            self.sel = load_selector(task.selector_path)
            self.columns = [c for c in self.sel.capabilities().columns
                            if c not in (task.ctx.text_column, task.ctx.id_column)]
            self.acc = _ScoreParts(task.stage_label)
        except Exception:  # noqa: BLE001 - as in add
            self.failed = True

    def add(self, tbl, ok: np.ndarray, start: int, words: np.ndarray, nbytes: np.ndarray) -> None:
        if self.failed:
            return
        t0, c0 = time.perf_counter(), usage()["cpu_s"]
        try:
            ctx = self.task.ctx
            missing = [c for c in self.columns if c not in tbl.column_names]
            if missing:  # reported by the stage's own score task (iter_docs)
                raise KeyError(missing[0])
            r = np.flatnonzero(ok)
            if len(r):
                if len(r) != tbl.num_rows:
                    tbl = arrow_filter(tbl, arrow_array(ok))
                self.acc.add(self.sel, Docs(tbl, text_column=ctx.text_column, id_column=ctx.id_column,
                                            row=r + start, n_words=words[r], n_bytes=nbytes[r],
                                            shard=ctx.shard.name, shard_index=ctx.index))
        except Exception:  # noqa: BLE001 - the stage's own score task runs it again and reports it
            self.failed = True
        self.cpu += usage()["cpu_s"] - c0
        self.wall += time.perf_counter() - t0

    def finish(self) -> dict | None:
        if self.failed:
            return None
        t0, c0 = time.perf_counter(), usage()["cpu_s"]
        try:
            self.acc.write(self.task, self.sel)
        except Exception:  # noqa: BLE001 - as in add
            return None
        stats = {"cpu_s": self.cpu + usage()["cpu_s"] - c0, "rss_mb": usage()["rss_mb"],
                 "wall_s": self.wall + time.perf_counter() - t0, "pid": os.getpid()}
        return _score_done(self.task, stats)


def _scan_shard(task: ScanTask, summary_path: str, fused: _FusedScore | None = None) -> dict:
    """The scan's result (its arrays are in the work dir)."""
    ctx = task.ctx
    t0, before = time.perf_counter(), usage()
    valid, words, nbytes, idh = [], [], [], []
    start = _scan_batches(ctx, [ctx.text_column, ctx.id_column], valid, words, nbytes, idh, fused)
    if start == 0:
        # still validates the text column on a zero-row shard
        from ..errors import DataError
        from ..io import shard_schema

        names = shard_schema(ctx.shard).names
        if names and ctx.text_column not in names:
            raise DataError(f"{ctx.shard.uri}: no text column {ctx.text_column!r} (columns: {', '.join(names)})")
    cat = lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt)
    arrays = {"valid": cat(valid, bool), "n_words": cat(words, np.int64),
              "n_bytes": cat(nbytes, np.int64), "id_hash": cat(idh, np.uint64)}
    arrays["alive"] = arrays["valid"].copy()
    workdir.write_npz(ctx.scan_path, arrays)
    summary = {"rows": start, "null_text": int((~arrays["valid"]).sum()),
               "bytes": int(arrays["n_bytes"].sum()), "words": int(arrays["n_words"].sum()),
               **task_stats(before, t0)}
    if fused is not None:
        summary["cpu_s"] -= fused.cpu
    workdir.write_json(summary_path, summary)
    faults.point(f"scan:{ctx.index}")
    return summary


def _scan_batches(ctx: ShardContext, keys, valid, words, nbytes, idh, fused=None) -> int:
    """The scan's per-batch work; with a fused score, each batch (its columns too) goes on to it."""
    start = 0
    read = keys + fused.columns if fused is not None else keys
    for tbl in iter_tables(ctx.shard, read, ctx.batch_size, ctx.batch_bytes):
        tbl, ok = normalize(tbl, ctx.shard, ctx.text_column, ctx.id_column, start)
        text = one_array(tbl.column(ctx.text_column))
        valid.append(ok)
        words.append(count_words(text))
        nbytes.append(byte_lengths(text))
        idh.append(hash_strings(one_array(tbl.column(ctx.id_column))))
        if fused is not None:
            fused.add(tbl, ok, start, words[-1], nbytes[-1])
        start += tbl.num_rows
    return start


# -- score -------------------------------------------------------------------------------------

_SELECTORS: dict[str, Any] = {}  # selector file -> the selector, set up, in this process
_SELECTORS_MAX = 16


def load_selector(path: str):
    """A stage's fitted selector, loaded and set up (``setup()``) once per process."""
    sel = _SELECTORS.get(path)
    if sel is None:
        sel = workdir.read_pickle(path)
        sel.setup()
        if len(_SELECTORS) >= _SELECTORS_MAX:
            _SELECTORS.pop(next(iter(_SELECTORS)))
        _SELECTORS[path] = sel
    return sel


@dataclass
class ScoreTask:
    ctx: ShardContext
    stage_dir: str
    selector_path: str
    stage_label: str

    @property
    def label(self):
        return f"{self.stage_label}: {self.ctx.shard.uri}"

    @property
    def scores_path(self):
        return os.path.join(self.stage_dir, f"scores-{self.ctx.index:05d}.npz")

    @property
    def keep_path(self):
        return os.path.join(self.stage_dir, f"keep-{self.ctx.index:05d}.npz")

    @property
    def stats_path(self):
        return os.path.join(self.stage_dir, f"task-{self.ctx.index:05d}.json")


def normalize_scores(out, n: int, where: str) -> dict[str, np.ndarray]:
    if isinstance(out, dict):
        cols = {str(k): np.asarray(v) for k, v in out.items()}
    else:
        cols = {"score": np.asarray(out)}
    for k, v in cols.items():
        if k in RESERVED:
            raise ValueError(f"{where}: score column name {k!r} is reserved")
        if v.ndim == 0 or v.shape[0] != n:
            raise ValueError(f"{where}: score column {k!r} has {v.shape[0] if v.ndim else 0} rows for {n} documents")
        if v.dtype == object:
            raise ValueError(f"{where}: score column {k!r} must be numeric, not object")
    return cols


class _ScoreParts:
    """A stage's score columns of one shard, batch by batch, and the files ``run_score`` leaves."""

    def __init__(self, label: str):
        self.label = label
        self.parts: dict[str, list] = {}
        self.rows, self.words, self.nbytes = [], [], []

    def add(self, sel, docs: Docs) -> None:
        cols = normalize_scores(sel.score(docs), len(docs), self.label)
        for k, v in cols.items():
            self.parts.setdefault(k, []).append(v)
        self.rows.append(docs.row)
        self.words.append(docs.n_words)
        self.nbytes.append(docs.n_bytes)

    def write(self, task: ScoreTask, sel) -> None:
        """The scores file; for document-scope selectors the decision (keep file) too."""
        cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0, np.int64)
        arrays = {k: np.concatenate(v) for k, v in self.parts.items()}
        arrays.update(row=cat(self.rows), n_words=cat(self.words), n_bytes=cat(self.nbytes))
        if not self.parts:  # no surviving docs: still record the expected columns as empty
            arrays["score"] = np.zeros(0, np.float64)
        workdir.write_npz(task.scores_path, arrays)
        if sel.capabilities().scope == "document":
            scores = Scores(arrays, np.array([0, len(arrays["row"])]), [task.ctx.shard.name])
            dec = sel.decide(scores, None) if len(arrays["row"]) else Decision(keep=np.zeros(0, bool))
            write_keep(task.keep_path, decision_arrays(arrays, dec, sel.display_name(), task.stage_label))


def run_score(task: ScoreTask) -> dict:
    """Score one shard's surviving documents; for document-scope selectors also decide here."""
    if storage.exists(task.stats_path):
        return workdir.read_json(task.stats_path)
    t0, before = time.perf_counter(), usage()
    sel = load_selector(task.selector_path)
    acc = _ScoreParts(task.stage_label)
    caps = sel.capabilities()
    for docs in task.ctx.iter_docs(caps.columns, need_text=caps.reads_text):
        acc.add(sel, docs)
    acc.write(task, sel)
    return _score_done(task, task_stats(before, t0))


def _score_done(task: ScoreTask, stats: dict) -> dict:
    """A score task's last step, in the scan or on its own: its stats file, then its kill point."""
    workdir.write_json(task.stats_path, stats)
    faults.point(f"score:{os.path.basename(task.stage_dir)[:2]}:{task.ctx.index}")
    return stats


def as_decision(out, n: int, where: str) -> Decision:
    dec = out if isinstance(out, Decision) else Decision(keep=np.asarray(out))
    dec.keep = np.asarray(dec.keep)
    if dec.keep.dtype != bool or dec.keep.shape != (n,):
        raise ValueError(f"{where}: decide must return {n} booleans, got {dec.keep.dtype} {dec.keep.shape}")
    return dec


def decision_arrays(scores: dict, dec, default_reason: str, where: str) -> dict:
    """Encode a Decision as arrays aligned with ``scores["row"]``: keep, reason codes, sidecar columns."""
    n = len(scores["row"])
    dec = as_decision(dec, n, where)
    keep = dec.keep
    if dec.reason is None or isinstance(dec.reason, str):
        names = [dec.reason or default_reason]
        codes = np.where(keep, -1, 0).astype(np.int16)
    else:
        r = np.asarray(dec.reason, dtype=object)
        if r.shape != (n,):
            raise ValueError(f"{where}: decide returned {r.shape} reasons for {n} documents")
        dropped = r[~keep]
        dropped = np.array([str(x) if x else default_reason for x in dropped], dtype=object)
        names, inv = np.unique(dropped.astype(str), return_inverse=True)
        names = [str(x) for x in names]
        codes = np.full(n, -1, np.int16)
        codes[~keep] = inv.astype(np.int16)
    if dec.score is not None:
        score = np.asarray(dec.score, dtype=np.float64)
    elif "score" in scores and scores["score"].ndim == 1:
        score = scores["score"].astype(np.float64)
    else:
        score = np.full(n, np.nan)
    arrays = {"row": scores["row"], "keep": keep.astype(bool), "reason_code": codes, "score": score,
              "reason_names": np.array(names, dtype=str)}
    for k, v in (dec.extra or {}).items():
        v = np.asarray(v)
        if v.shape[:1] != (n,):
            raise ValueError(f"{where}: Decision.extra[{k!r}] has {v.shape[:1]} rows for {n} documents")
        arrays[f"extra_{k}"] = v
    return arrays


def write_keep(path: str, arrays: dict, lo: int = 0, hi: int | None = None) -> dict:
    """Write rows lo:hi of a decision as one shard's keep file; return its drop counts by reason."""
    hi = len(arrays["row"]) if hi is None else hi
    part = {k: (v if k == "reason_names" else v[lo:hi]) for k, v in arrays.items()}
    workdir.write_npz(path, part)
    return drop_counts(part)


def drop_counts(part: dict) -> dict:
    codes = part["reason_code"]
    counts = np.bincount(codes[codes >= 0], minlength=len(part["reason_names"]))
    return {str(nm): int(c) for nm, c in zip(part["reason_names"], counts) if c}


# -- fit map -----------------------------------------------------------------------------------

@dataclass
class FitTask:
    fn: Callable
    ctx: ShardContext
    columns: tuple
    out_path: str
    need_text: bool = True

    @property
    def label(self):
        return f"fit: {self.ctx.shard.uri}"


def run_fit(task: FitTask):
    if storage.exists(task.out_path):
        return workdir.read_pickle(task.out_path)
    result = task.fn(task.ctx.iter_docs(task.columns, need_text=task.need_text))
    workdir.write_pickle(task.out_path, result)
    faults.point(f"fitmap:{task.ctx.index}")
    return result


@dataclass
class CallTask:
    """A plain function call as a task (DecideContext.map)."""

    fn: Callable
    item: Any
    index: int = 0
    label: str = field(default="")


def run_call(task: CallTask):
    return task.fn(task.item)
