"""A global decide as tasks over the shards' score files (``Selector.decide_sharded``).

The driver never concatenates the stage's scores: it learns each shard's size from its score
file's header and hands the selector a picklable context whose steps run as tasks on the
executor. Every step's result is a file in the stage's work folder (on the work dir's storage, so
any node reads it), written whole or not at all; a resumed run skips the files already there. The
keep files are written by one task per shard, with the same kill points as the driver's decide.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..api import ShardedDecideContext
from ..io import storage
from . import faults, workdir
from .shards import ShardContext, annotate_only, as_decision, decision_arrays, task_stats, usage, write_keep


class ShardedDecide(ShardedDecideContext):
    """The engine's ShardedDecideContext for one stage; only ``_runner`` stays in the driver."""

    def __init__(self, runner, sel, st, stage_dir: str, tasks: list, keep_paths: list):
        self._runner = runner
        self.seed = sel.seed_
        self.workers = runner.cfg.workers
        self.folder = os.path.join(stage_dir, "decide-tasks")
        self.tag = os.path.basename(stage_dir)[:2]
        self.label = tasks[0].stage_label if tasks else st.name
        self.stage_name, self.drop, self.display = st.name, st.drop, sel.display_name()
        self.shard_names = [t.ctx.shard.name for t in tasks]
        self._ctxs: list[ShardContext] = [t.ctx for t in tasks]
        self._scores = [t.scores_path for t in tasks]
        self._passthrough = [t.passthrough for t in tasks]
        self._keep = list(keep_paths)
        self.stats: list[dict] = []        # each task's CPU and memory (the stage's accounting)
        self.step_cpu: dict[str, float] = {}  # CPU seconds of each step's tasks (the stage's metrics)
        sizes = [workdir.npz_headers(p)["row"][0][0] for p in self._scores]
        self.shard_offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        storage.makedirs(self.folder)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_runner"] = None  # the driver's runner never travels with a task
        return state

    def _map(self, run: Callable, steps: list, what: str) -> list:
        """Run a step's tasks; returns their results and keeps their CPU and memory figures."""
        # a one-task step (the candidates, the clusters) holds what the decide has to: in a worker
        out = self._runner.executor.map(run, steps, desc=f"{self.label}: {what}", progress=self._runner.progress,
                                        isolate=True)
        stats = [st for _, st in out]
        self.stats += stats
        self.step_cpu[what] = round(self.step_cpu.get(what, 0.0) + sum(st.get("cpu_s", 0.0) for st in stats), 3)
        return [res for res, _ in out]

    # -- ShardedDecideContext ----------------------------------------------------------------------
    def tasks(self, fn, items, step: str) -> list[str]:
        names = [f"{step}-{i:05d}" for i in range(len(items))]
        steps = [DecideStep(self, fn, item, name, f"decide:{self.tag}:{step}:{i}", f"{self.label}: {step} {i}")
                 for i, (item, name) in enumerate(zip(items, names))]
        self._map(run_step, steps, step)
        return names

    def load(self, name: str, keys=None) -> dict:
        return workdir.read_npz(self._path(name), keys)

    def scores(self, shard: int, columns=None) -> dict:
        return workdir.read_npz(self._scores[shard], columns)

    def read_texts(self, shard: int, rows):
        return self._ctxs[shard].read_texts(rows)

    def write_decisions(self, fn) -> list[dict]:
        steps = [WriteStep(self, fn, j, f"{self.label}: decide shard {j}")
                 for j in range(self.n_shards) if not self._passthrough[j]]
        return self._map(run_write, steps, "write")

    # -- in tasks ------------------------------------------------------------------------------------
    def _path(self, name: str) -> str:
        return os.path.join(self.folder, f"{name}.npz")


@dataclass
class DecideStep:
    """One task of a sharded decide's step: ``fn(ctx, item)``, its arrays saved under ``name``."""

    ctx: ShardedDecide
    fn: Callable
    item: Any
    name: str
    point: str
    label: str


def run_step(step: DecideStep) -> tuple[None, dict]:
    """(None, the task's CPU and memory figures)."""
    t0, before = time.perf_counter(), usage()
    path = step.ctx._path(step.name)
    if not storage.exists(path):
        arrays = step.fn(step.ctx, step.item)
        workdir.write_npz(path, {k: np.asarray(v) for k, v in arrays.items()})
        faults.point(step.point)
    return None, task_stats(before, t0)


@dataclass
class WriteStep:
    """One shard's keep file of a sharded decide."""

    ctx: ShardedDecide
    fn: Callable
    shard: int
    label: str


def run_write(step: WriteStep) -> tuple[dict, dict]:
    """(the shard's Decision.metrics, the task's CPU and memory figures)."""
    t0, before = time.perf_counter(), usage()
    ctx, j = step.ctx, step.shard
    cols = ctx.scores(j)
    n = len(cols["row"])
    dec = as_decision(step.fn(ctx, j, cols), n, ctx.label)
    if not ctx.drop:
        dec = annotate_only(dec)
    metrics = dict(dec.metrics or {})
    write_keep(ctx._keep[j], decision_arrays(cols, dec, ctx.display, ctx.stage_name))
    faults.point(f"decide:{ctx.tag}:{j}")
    return metrics, task_stats(before, t0)
