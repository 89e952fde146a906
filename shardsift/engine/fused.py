"""Stage fusion: the stages that need no other shard run inside the scan's task, batch by batch.

The planner hands a shard's scan the leading run of document-scope stages with nothing to fit,
and the score of the global stage after them when it has nothing to fit either. Each batch the
scan decodes goes through them in order: a document stage scores and decides the batch (its
decide is per document), the next stage sees the survivors. When every stage of the pipeline is
fused, the task also writes the shard's output parts and decisions into the work dir. The files
are those the stages' own tasks would write, so a rerun that finds some missing recomputes them
in those tasks, to the same bytes. A failing stage fails the task, named by stage and shard.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..api import Decision, Docs
from ..columns import arrow_array, arrow_filter, one_array
from ..errors import ShardsiftError, TaskError, missing_file
from ..io import storage
from . import workdir
from .output_parts import ShardOutputTask, as_ids, finish_shard_output
from .shards import (
    ScoreParts,
    ScoreTask,
    _score_done,
    decide_documents,
    decision_arrays,
    load_selector,
    usage,
    write_keep,
    write_passthrough,
)
from .sources import decorate


@dataclass
class FusedPlan:
    """What a scan task runs besides the scan: stages (their ScoreTasks, in order) and, when the
    whole pipeline is fused, the shard's output."""

    stages: list           # ScoreTask per fused stage
    output: ShardOutputTask | None = None


class _Stage:
    """One fused stage's score columns and (document scope) decisions, batch by batch."""

    def __init__(self, task: ScoreTask):
        self.task = task
        self.passed: list[np.ndarray] | None = [] if task.passthrough else None  # rows passed through
        self.sel = None if task.passthrough else load_selector(task.selector_path)
        caps = self.sel.capabilities() if self.sel is not None else None
        self.decides = caps is not None and caps.scope == "document"
        self.columns = [c for c in caps.columns if c not in (task.ctx.text_column, task.ctx.id_column)] if caps else []
        self.acc = ScoreParts(task.stage_label)
        self.keep, self.reason, self.score, self.extra = [], [], [], {}
        self.cpu = self.wall = 0.0

    def run(self, docs: Docs) -> np.ndarray:
        """Score (and decide) one batch of survivors; returns which of them this stage keeps."""
        t0, c0 = time.perf_counter(), usage()["cpu_s"]
        n = len(docs)
        if self.passed is not None:  # another source's stage: every document passes, unscored
            self.passed.append(docs.row)
            return np.ones(n, dtype=bool)
        cols = self.acc.add(self.sel, docs)
        keep = np.ones(n, dtype=bool)
        if self.decides and n:
            dec = decide_documents(self.sel, self.task, cols)
            keep = dec.keep
            self.keep.append(keep)
            self.reason.append(dec.reason if dec.reason is None or isinstance(dec.reason, str)
                               else np.asarray(dec.reason, dtype=object))
            self.score.append(None if dec.score is None else np.asarray(dec.score, dtype=np.float64))
            for k, v in (dec.extra or {}).items():
                self.extra.setdefault(k, []).append(np.asarray(v))
        self.cpu += usage()["cpu_s"] - c0
        self.wall += time.perf_counter() - t0
        return keep

    def finish(self) -> dict:
        """The stage's files for this shard (those ``run_score`` writes) and its stats."""
        t0, c0 = time.perf_counter(), usage()["cpu_s"]
        if self.passed is not None:
            write_passthrough(self.task, np.concatenate(self.passed) if self.passed else np.zeros(0, np.int64))
            return _score_done(self.task, {"cpu_s": usage()["cpu_s"] - c0, "rss_mb": usage()["rss_mb"],
                                           "wall_s": time.perf_counter() - t0, "pid": os.getpid()})
        arrays = self.acc.arrays()
        workdir.write_npz(self.task.scores_path, arrays)
        if self.decides:
            dec = self._decision(len(arrays["row"]))
            write_keep(self.task.keep_path, decision_arrays(arrays, dec, self.sel.display_name(),
                                                            self.task.stage_label))
        stats = {"cpu_s": self.cpu + usage()["cpu_s"] - c0, "rss_mb": usage()["rss_mb"],
                 "wall_s": self.wall + time.perf_counter() - t0, "pid": os.getpid()}
        return _score_done(self.task, stats)

    def _decision(self, n: int) -> Decision:
        """The batches' decisions as one, as a decide over the whole shard would have given it."""
        keep = np.concatenate(self.keep) if self.keep else np.zeros(0, bool)
        reasons = self.reason
        if all(not isinstance(r, np.ndarray) for r in reasons) and len(set(reasons)) <= 1:
            reason = reasons[0] if reasons else None
        else:
            reason = np.concatenate([r if isinstance(r, np.ndarray) else np.full(len(k), r, dtype=object)
                                     for r, k in zip(reasons, self.keep)]) if reasons else None
        score = None
        if self.score and all(s is not None for s in self.score):
            score = np.concatenate(self.score)
        extra = {k: np.concatenate(v) for k, v in self.extra.items()}
        return Decision(keep=keep, reason=reason, score=score, extra=extra)


class FusedChain:
    """The fused stages (and output) of one shard's scan, fed batch by batch."""

    def __init__(self, plan: FusedPlan):
        self.plan = plan
        self.stages = []
        for task in plan.stages:
            try:
                self.stages.append(_Stage(task))
            except ShardsiftError:
                raise
            except FileNotFoundError as err:
                raise missing_file(err, task.label) from None
            except Exception as err:  # noqa: BLE001 - one line naming the stage and shard
                raise TaskError(f"{task.label}: {type(err).__name__}: {err}") from None
        self.columns = list(dict.fromkeys(c for st in self.stages for c in st.columns))
        self.reads_all = plan.output is not None  # the output needs every column
        out = plan.output
        self.writer = None
        if out is not None:
            storage.makedirs(out.data_dir)
            self.writer = out.writer()
        self.ids: list[pa.Array] = []
        self.cpu = 0.0

    def add(self, tbl: pa.Table, ok: np.ndarray, start: int, words: np.ndarray, nbytes: np.ndarray,
            tokens: np.ndarray) -> None:
        """One scanned batch (``ok``: its valid rows) through every fused stage, then the output."""
        alive = ok.copy()
        for st in self.stages:
            r = np.flatnonzero(alive)
            if not len(r):
                break
            missing = [c for c in st.columns if c not in tbl.column_names]
            if missing:
                from ..errors import DataError

                raise DataError(f"{st.task.ctx.shard.uri}: no column {missing[0]!r} (needed by a selector)")
            sub = tbl if len(r) == tbl.num_rows else arrow_filter(tbl, arrow_array(alive))
            ctx = st.task.ctx
            docs = Docs(sub, text_column=ctx.text_column, id_column=ctx.id_column, row=r + start,
                        n_words=words[r], n_bytes=nbytes[r], shard=ctx.shard.name, shard_index=ctx.index,
                        n_tokens=tokens[r])
            try:
                keep = st.run(docs)
            except ShardsiftError:
                raise
            except FileNotFoundError as err:
                raise missing_file(err, st.task.label) from None
            except Exception as err:  # noqa: BLE001 - one line naming the stage and shard
                raise TaskError(f"{st.task.label}: {type(err).__name__}: {err}") from None
            alive[r[~keep]] = False
        if self.writer is not None:
            t0 = usage()["cpu_s"]
            out = self.plan.output
            self.ids.append(one_array(tbl.column(out.ctx.id_column)))
            kept = np.flatnonzero(alive)
            if len(kept) and out.source is not None:  # a mixture's rows, with their source
                self.writer.write(decorate(tbl, kept, None, out.source, False).select(out.schema.names))
            elif len(kept):
                part = tbl if len(kept) == tbl.num_rows else arrow_filter(tbl, arrow_array(alive))
                self.writer.write(part.select(out.schema.names))
            self.cpu += usage()["cpu_s"] - t0

    def finish(self) -> dict:
        """Every fused stage's files, then the shard's output; returns CPU seconds per stage."""
        stats = [st.finish() for st in self.stages]
        if self.writer is not None:
            files = self.writer.close()
            finish_shard_output(self.plan.output, files, as_ids(self.ids))
        return {"stage_cpu_s": [s["cpu_s"] for s in stats], "output_cpu_s": self.cpu}

    @property
    def cpu_in_batches(self) -> float:
        """CPU seconds the fused stages and output took while the scan fed them batches."""
        return sum(st.cpu for st in self.stages) + self.cpu
