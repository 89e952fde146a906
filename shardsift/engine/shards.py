"""Per-shard tasks: scan an input shard, score a stage, run a fit map; plus reading surviving docs.

Everything here is picklable and runs in worker processes (or Ray tasks): a task reads its shard
from storage, writes its result to the work dir atomically and returns a small summary.
"""
from __future__ import annotations

import dataclasses
import os
import resource
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..api import DecideContext, Decision, Docs, Scores
from ..columns import arrow_filter, one_array
from ..io import Shard, iter_tables, normalize, pass_batch_size, row_mask, storage
from . import faults, workdir

RESERVED = ("row", "n_words", "n_bytes", "n_tokens")


def usage() -> dict:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_s": ru.ru_utime + ru.ru_stime, "rss_mb": ru.ru_maxrss / 1024.0, "pid": os.getpid()}


def tree_cpu() -> float:
    """CPU seconds of this process and of every child it has reaped (local worker processes once
    their pool is shut down): the whole process tree's work, start-up and imports included."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


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
    tokenizer: Any = None           # the run's Tokenizer (the scan counts n_tokens); None: words

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
                       shard=self.shard.name, shard_index=self.index, n_tokens=scan["n_tokens"][r])

    def read_back(self, rows, what: str) -> tuple[ShardContext, np.ndarray]:
        """(this context with the read-back passes' batch size, ``rows`` as int64), the rows
        checked strictly ascending: what a decide's read_batches/read_texts pass reads with."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) > 1 and not (rows[1:] > rows[:-1]).all():
            raise ValueError(f"{what}: rows must be strictly ascending")
        return dataclasses.replace(self, batch_size=pass_batch_size(self.batch_size)), rows

    def read_texts(self, rows) -> Iterator[tuple[Any, np.ndarray]]:
        """(text column, positions) of each batch holding some of the given ascending rows, in one
        pass (``DecideContext.read_texts``); a row that cannot be read back is a DataError."""
        ctx, rows = self.read_back(rows, "read_texts")
        n = 0
        for tbl, _, pos in ctx.iter_batches(rows, need_ids=False):
            n += len(pos)
            yield one_array(tbl.column(ctx.text_column)), pos
        if n != len(rows):
            from ..errors import DataError

            raise DataError(f"{ctx.shard.uri}: could not read back {len(rows) - n} rows")

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


# -- score -------------------------------------------------------------------------------------

_SELECTORS: dict[str, Any] = {}  # selector file -> the selector, set up, in this process
_SELECTORS_MAX = 16


FITTED = "fitted.json"  # beside selector.pkl on an object store: {driver-local path: its copy in the work dir}


def publish_fitted(sel, stage_dir: str) -> None:
    """On an object-store work dir, copy the files a fit wrote on the driver's disk
    (``fitted_files()``: a trained model) into the stage's folder, and list them in ``fitted.json``,
    so a task on any node can fetch them (:func:`fetch_fitted`). Before selector.pkl is written."""
    if not storage.is_remote(stage_dir):
        return
    files = {}
    for key, local in sorted((sel.fitted_files() or {}).items()):
        if local and os.path.isfile(local):
            uri = storage.join(stage_dir, "fitted", layout_name(key))
            storage.upload(local, uri)
            files[local] = uri
    workdir.write_json(storage.join(stage_dir, FITTED), files)


def fetch_fitted(selector_path: str) -> None:
    """Put the fit's files where the selector expects them on this machine's disk, from the work
    dir, when they are not there (a node other than the driver's)."""
    if not storage.is_remote(selector_path):
        return
    listing = storage.join(selector_path.rsplit("/", 1)[0], FITTED)
    if not storage.exists(listing):
        return
    for local, uri in workdir.read_json(listing).items():
        if not os.path.isfile(local):
            storage.download(uri, local)


def layout_name(key: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in str(key)) or "file"


def load_selector(path: str):
    """A stage's fitted selector, loaded and set up (``setup()``) once per process; the files its
    fit wrote are fetched first where this machine lacks them."""
    sel = _SELECTORS.get(path)
    if sel is None:
        sel = workdir.read_pickle(path)
        fetch_fitted(path)
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
    drop: bool = True      # False: annotate only (annotate_only)
    docs: int = 0          # documents reaching the stage in this shard (for progress)
    passthrough: bool = False  # another source's own stage: every document passes, unscored

    @property
    def work(self) -> tuple[int, str] | None:
        return (self.docs, "docs") if self.docs else None

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


class ShardDecide(DecideContext):
    """What a document-scope decide gets: the stage's seed and the name of its one shard. It sees
    that shard's scores only (its memory never grows with the corpus), so it reads nothing back."""

    def __init__(self, seed: int, shard: str):
        self.seed, self.shard, self.work_dir, self.workers = seed, shard, None, 1

    def map(self, fn, items) -> list:
        return [fn(item) for item in items]

    def read_docs(self, shard_index, rows, columns=()):
        raise NotImplementedError("a document-scope decide sees its shard's scores only; "
                                  "declare scope = 'global' to read documents back")


class ScoreParts:
    """A stage's score columns of one shard, batch by batch (``run_score``, or the fused scan)."""

    def __init__(self, label: str):
        self.label = label
        self.parts: dict[str, list] = {}

    def add(self, sel, docs: Docs) -> dict[str, np.ndarray]:
        """Score one batch; returns its columns, bookkeeping (row, n_words, n_bytes, n_tokens) included."""
        cols = normalize_scores(sel.score(docs), len(docs), self.label)
        cols.update(row=docs.row, n_words=docs.n_words, n_bytes=docs.n_bytes, n_tokens=docs.n_tokens)
        for k, v in cols.items():
            self.parts.setdefault(k, []).append(v)
        return cols

    def arrays(self) -> dict[str, np.ndarray]:
        """The shard's columns; with no surviving documents the bookkeeping ones and an empty score."""
        if not self.parts:
            return {k: np.zeros(0, np.int64) for k in RESERVED} | {"score": np.zeros(0, np.float64)}
        return {k: np.concatenate(v) for k, v in self.parts.items()}


def decide_documents(sel, task: ScoreTask, arrays: dict) -> Decision:
    """A document-scope decide over these scores (a shard's, or one batch of a fused scan's), made
    annotate-only when the stage runs with ``drop: false``."""
    n = len(arrays["row"])
    if not n:
        return Decision(keep=np.zeros(0, bool))
    shard = task.ctx.shard.name
    dec = as_decision(sel.decide(Scores(arrays, np.array([0, n]), [shard]),
                                 ShardDecide(getattr(sel, "seed_", 0), shard)), n, task.stage_label)
    return dec if task.drop else annotate_only(dec)


def run_score(task: ScoreTask) -> dict:
    """Score one shard's surviving documents; for document-scope selectors also decide here."""
    if storage.exists(task.stats_path):
        return workdir.read_json(task.stats_path)
    t0, before = time.perf_counter(), usage()
    if task.passthrough:
        write_passthrough(task, task.ctx.alive_rows())
        return _score_done(task, task_stats(before, t0))
    sel = load_selector(task.selector_path)
    acc = ScoreParts(task.stage_label)
    caps = sel.capabilities()
    for docs in task.ctx.iter_docs(caps.columns, need_text=caps.reads_text):
        acc.add(sel, docs)
    arrays = acc.arrays()
    workdir.write_npz(task.scores_path, arrays)
    if caps.scope == "document":
        dec = decide_documents(sel, task, arrays)
        write_keep(task.keep_path, decision_arrays(arrays, dec, sel.display_name(), task.stage_label))
    return _score_done(task, task_stats(before, t0))


def write_passthrough(task: ScoreTask, rows: np.ndarray) -> None:
    """A shard that passes through another source's stage: no scores (a global decide sees none
    of its documents), a keep file that keeps every row reaching the stage, marked so the scores
    sidecar leaves them out."""
    empty = ScoreParts(task.stage_label).arrays()
    workdir.write_npz(task.scores_path, empty)
    rows = np.asarray(rows, np.int64)
    write_keep(task.keep_path, {"row": rows, "keep": np.ones(len(rows), bool),
                                "reason_code": np.full(len(rows), -1, np.int16),
                                "score": np.full(len(rows), np.nan), "reason_names": np.array(["passthrough"]),
                                "passthrough": np.ones(len(rows), bool)})


def _score_done(task: ScoreTask, stats: dict) -> dict:
    """A score task's last step, in the scan or on its own: its stats file, then its kill point."""
    workdir.write_json(task.stats_path, stats)
    faults.point(f"score:{os.path.basename(task.stage_dir)[:2]}:{task.ctx.index}")
    return stats


def annotate_only(dec: Decision) -> Decision:
    """A stage with ``drop: false``: every document kept; what the selector would have kept is
    recorded as the ``selected`` column of the scores sidecar."""
    return Decision(keep=np.ones(len(dec.keep), dtype=bool), score=dec.score,
                    extra={**(dec.extra or {}), "selected": np.asarray(dec.keep, dtype=bool)},
                    metrics=dec.metrics)


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
