"""The staged runner: scan -> stages (fit / score / decide) -> write -> manifest.

Resume is exact: every task's result is a file in the work dir, keyed by a fingerprint of the
inputs and of every stage up to it, so a rerun skips finished work and recomputes only what
changed. The output appears atomically: data/ and scores/ are written under temporary names and
renamed, then manifest.json is written last; a reader takes an output as finished only when its
manifest.json exists.
"""
from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from .. import __version__
from ..api import Decision, Scores, Selector
from ..errors import DataError, ShardsiftError, UsageError
from ..io import layout, normalize, resolve_shards, storage, take_rows
from . import faults, workdir
from .check import file_problems
from .config import Config, _is_dataset, parse_config
from .contexts import StageDecide, StageFit, _concat_scores, read_corpus
from .duplicate_ids import later_occurrences
from .executors import Executor, Progress, make_executor
from .fingerprint import code_fp, fingerprint, stage_seed
from .fused import FusedPlan
from .global_budget import BudgetDecide
from .lock import OutputLock
from .mix import Mix
from .output_writer import OutputWriting
from .scan import ScanTask, run_scan
from .sharded_decide import ShardedDecide
from .shards import (
    ScoreTask,
    ShardContext,
    annotate_only,
    as_decision,
    decision_arrays,
    drop_counts,
    publish_fitted,
    run_score,
    tree_cpu,
    usage,
    write_keep,
)
from .sources import engine_stages, passthrough, resolve_source_shards
from .token_cap import cap_output


class Runner(OutputWriting):
    """One run: scan, the stages in order, the output; every step's results in the work dir."""

    def __init__(self, cfg: Config, *, overwrite: bool = False, progress: Progress | None = None,
                 executor: Executor | None = None, fresh: bool = False, tree_cpu0: float | None = None):
        self.fresh = fresh  # recompute everything: the work dir of earlier runs is removed first
        self.cfg = cfg
        self.stages = engine_stages(cfg)  # each source's own stages, the shared ones, the mix step
        self.shard_source = None  # each shard's source index, for a mixture
        self.mixing = any(isinstance(st.instance, Mix) for st in self.stages)
        self.overwrite = overwrite
        self.progress = progress or Progress(enabled=False)
        self.out = storage.abspath(cfg.output.path)
        self.work = storage.abspath(cfg.output.work_dir) if cfg.output.work_dir else os.path.join(self.out, layout.WORK)
        for path in (self.out, self.work):  # remote URIs: the options reach the tasks too
            storage.set_options(path, cfg.output.storage_options)
        self._executor = executor
        self.t0 = time.perf_counter()
        self.cpu0 = usage()["cpu_s"]
        self.tree_cpu0 = tree_cpu() if tree_cpu0 is None else tree_cpu0  # from before the config was read
        self.task_cpu = 0.0
        self.task_rss = 0.0
        self.fused_cpu: dict[int, float] = {}  # stage -> CPU seconds of its scores fused into this process's scans
        self.fused_write_cpu = 0.0  # and of the output parts those scans wrote
        self._schema = None
        self._earlier: list[tuple[str, str]] = []  # (name, stage dir) of the stages done so far

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
        inp, tok = self.cfg.input, self.cfg.tokenizer
        return ShardContext(self.shards[j], j, inp.text_column, inp.id_column, inp.batch_size,
                            os.path.join(self.work, "scan", f"shard-{j:05d}.npz"), alive_path, inp.batch_bytes,
                            None if tok.name == "words" else tok)

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
        try:
            self._prepare_output()
            self.shards = self._resolve_inputs()
            if self.cfg.sources:
                self.output_schema()  # a column the mixture would overwrite: refused before any work
            _ = self.out_format  # an input the output format cannot write stops the run here
            problems = file_problems(self.cfg)  # every file a stage names, before anything is written
            if problems:
                more = f" (and {len(problems) - 1} more: `shardsift check CONFIG` lists them)" if problems[1:] else ""
                raise DataError(problems[0] + more)
            for sel in self.cfg.built:   # the stages' own inputs (benchmarks), before anything is written
                sel.check(read_corpus)
            self.input_fp = fingerprint([s.fingerprint for s in self.shards], self.cfg.input.text_column,
                                        self.cfg.input.id_column, __version__, self.cfg.tokenizer.fingerprint(),
                                        *([[s.name for s in self.cfg.sources], self.shard_source.tolist()]
                                          if self.cfg.sources else []))
            scan = self._scan()
            started = True
            alive_path: list[str | None] = [None] * len(self.shards)
            stage_reports = [scan["report"]]
            prev_fp = self.input_fp + scan["fp"]
            for i, st in enumerate(self.stages):
                rep, alive_path, prev_fp = self._stage(i, st, alive_path, prev_fp)
                stage_reports.append(rep)
                self._earlier.append((st.name, rep["dir"]))
            if self.cfg.output.tokens is not None:  # the output's token cap: a last global step
                rep, alive_path, prev_fp = cap_output(self, alive_path, prev_fp)
                stage_reports.append(rep)
            self.last_fp = prev_fp
            return self._write(stage_reports, alive_path)
        except ShardsiftError:
            # bad input found before any stage ran: leave nothing behind in an output we created
            if created and not started:
                self._close_executor()  # tasks still in flight finish first: nothing is written after
                lock.release()
                workdir.remove(self.out)
            raise
        finally:
            self._close_executor()
            lock.release()

    def _passes(self, st, j: int) -> bool:
        """Whether shard j passes through stage ``st`` untouched (another source's own stage)."""
        if self.shard_source is None:
            return False
        return passthrough(st, self.cfg.sources[int(self.shard_source[j])].name)

    def _close_executor(self) -> None:
        if self._executor is not None:
            self._executor.close()
            self._executor = None

    def _prepare_output(self):
        out = self.out
        if storage.exists(os.path.join(out, layout.MANIFEST)):
            if not self.overwrite:
                raise UsageError(f"{out}: output exists (has {layout.MANIFEST}); use --overwrite to replace it")
            for name in (layout.MANIFEST, layout.DATA, layout.AUDIT, layout.REPORT):
                workdir.remove(os.path.join(out, name))
        elif storage.isdir(out) and storage.listdir(out):
            known = {layout.WORK, layout.DATA, layout.AUDIT, ".lock", ".data.tmp"}
            other = [x for x in storage.listdir(out) if x not in known and not x.startswith(".tmp-")]
            if other and not self.overwrite:
                raise UsageError(f"{out}: output directory is not empty ({other[0]!r}); use --overwrite or another path")
        if self.fresh:
            workdir.remove(self.work)
        storage.makedirs(self.work)

    def _resolve_inputs(self):
        inp = self.cfg.input
        if self.cfg.sources:
            shards, self.shard_source = resolve_source_shards(self.cfg.sources, resolve_shards)
            return shards
        if _is_dataset(inp.path):
            return self._materialize_dataset(inp.path)
        return resolve_shards(inp.path, inp.format, inp.storage_options)

    def _materialize_dataset(self, ds):
        fp = getattr(ds, "_fingerprint", None) or fingerprint(len(ds), ds.column_names)
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
        plans = self._fusion_plan()
        tasks = [ScanTask(self.shard_ctx(j, None), plans[j] if plans else None) for j in range(len(self.shards))]
        also = f" and {len(plans[0].stages)} fused stage(s)" if plans else ""
        self.progress.line(f"scan: {len(tasks)} input shard(s){also}" + (" and the output" if plans and plans[0].output
                                                                          else ""))
        stats = self.executor.map(run_scan, tasks, desc="scan", progress=self.progress)
        me = os.getpid()
        for st in stats:  # fused work run in this process: its CPU goes to its stage (or the write)
            if st.get("pid") == me:
                for i, cpu in enumerate(st.get("fused_cpu_s", [])):
                    self.fused_cpu[i] = self.fused_cpu.get(i, 0.0) + cpu
                self.fused_write_cpu += st.get("fused_write_cpu_s", 0.0)
        c0 += sum(self.fused_cpu.values()) + self.fused_write_cpu
        dup = self._duplicate_ids()
        return self._scan_report(stats, dup, time.perf_counter() - t0, usage()["cpu_s"] - c0)

    def _fusion_plan(self) -> list[FusedPlan] | None:
        """Per shard, what its scan also runs (engine/fused.py), or None for the scan alone.

        The leading document-scope stages with nothing to fit, then the score of a global stage
        with nothing to fit; when every stage is fused, the shard's output too. Only where the
        documents reaching the first stage are known when a shard is scanned: with
        ``on_duplicate_id: error`` (dropping a later duplicate would change an earlier shard's)."""
        if not self.stages or self.cfg.on_duplicate_id != "error":
            return None
        prev_fp = self.input_fp + self._scan_fp()
        fused, dirs = [], []
        for i, st in enumerate(self.stages):
            sel, label, fp, stage_dir, _ = self._stage_setup(i, st, prev_fp)
            caps = sel.capabilities()
            if caps.needs_fit or storage.exists(os.path.join(stage_dir, "done.json")):
                break
            fused.append((stage_dir, self._unfitted_selector(i, sel, stage_dir), label, st.drop))
            dirs.append(stage_dir)
            prev_fp = fp
            if caps.scope != "document":
                break
        if not fused:
            return None
        whole = len(fused) == len(self.stages) and caps.scope == "document" and self.cfg.output.tokens is None
        outputs = None
        if whole:
            self.last_fp = prev_fp
            last = [os.path.join(dirs[-1], f"keep-{j:05d}.npz") for j in range(len(self.shards))]
            outputs = self.output_tasks(self.output_schema(), last, dirs)
        return [FusedPlan([ScoreTask(self.shard_ctx(j, None), *f, passthrough=self._passes(st, j))
                           for f, st in zip(fused, self.stages)],
                          outputs[j] if outputs else None) for j in range(len(self.shards))]

    @staticmethod
    def _unfitted_selector(i: int, sel, stage_dir: str) -> str:
        """The selector file of stage i when it has nothing to fit, written
        once (kill point ``fit:SS``); returns its path."""
        sel_path = os.path.join(stage_dir, "selector.pkl")
        if not storage.exists(sel_path):
            workdir.write_pickle(sel_path, sel)
            faults.point(f"fit:{i:02d}")
        return sel_path

    def _scan_fp(self) -> str:
        """What besides the input decides the documents reaching the first stage."""
        return fingerprint(self.cfg.on_duplicate_id)

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
        """Duplicate ids: refuse (default) or keep the first occurrence (``on_duplicate_id: keep_first``).
        Found by tasks (engine/duplicate_ids.py); the driver holds the later occurrences only."""
        paths = [os.path.join(self.work, "scan", f"shard-{j:05d}.npz") for j in range(len(self.shards))]
        if not paths:
            return 0
        dup, offs = later_occurrences(self.executor, self.progress, paths, os.path.join(self.work, "scan", "ids"),
                                      self.cfg.workers)
        if not len(dup):
            return 0
        if self.cfg.on_duplicate_id == "error":
            g = int(dup[0])
            j = int(np.searchsorted(offs, g, side="right") - 1)
            row = g - offs[j]
            tbl = take_rows(self.shards[j], np.array([row]), None, self.cfg.input.batch_size)
            tbl, _ = normalize(tbl, self.shards[j], self.cfg.input.text_column, self.cfg.input.id_column,
                               row, need_text=False) if tbl is not None else (None, None)
            the_id = tbl.column(self.cfg.input.id_column)[0].as_py() if tbl is not None else "?"
            raise DataError(
                f"{self.shards[j].uri}: duplicate id {the_id!r} at row {row} ({len(dup)} duplicate ids "
                "in the input); set on_duplicate_id: keep_first to keep the first occurrence")
        n = 0
        edges = np.searchsorted(dup, offs)
        for j, p in enumerate(paths):
            if edges[j] == edges[j + 1]:
                continue
            s = workdir.read_npz(p)  # a shard with duplicates: its whole scan, rewritten
            d = np.zeros(len(s["valid"]), bool)
            d[dup[edges[j]:edges[j + 1]] - offs[j]] = True
            d &= s["valid"]
            if d.any() and (s["alive"] & d).any():
                s["alive"] = s["valid"] & ~d
                workdir.write_npz(p, s)
            n += int(d.sum())
        return n

    def _stage_setup(self, i: int, st, prev_fp: str):
        """The stage's selector (seeded), label, fingerprint, work folder and keep files."""
        sel = st.build()
        sel.seed_ = stage_seed(self.cfg.seed, i)
        if isinstance(sel, Mix):
            sel.shard_source_ = self.shard_source  # the mix step's shard -> source
        label = f"stage {i + 1}/{len(self.stages)} {st.name}"
        fp = fingerprint(prev_fp, st.name, f"{type(sel).__module__}.{type(sel).__qualname__}", sel.get_params(),
                         sel.seed_, getattr(sel, "version", 0), code_fp(type(sel)), st.drop)
        stage_dir = os.path.join(self.work, "stages", f"{i:02d}-{layout.safe_name(st.name)}-{fp}")
        storage.makedirs(stage_dir)
        keep_paths = [os.path.join(stage_dir, f"keep-{j:05d}.npz") for j in range(len(self.shards))]
        return sel, label, fp, stage_dir, keep_paths

    def _stage(self, i: int, st, alive_path: list, prev_fp: str):
        sel, label, fp, stage_dir, keep_paths = self._stage_setup(i, st, prev_fp)
        done = os.path.join(stage_dir, "done.json")
        if storage.exists(done):
            self.progress.line(f"{label}: done (reused from the work dir)")
            rep = {**workdir.read_json(done), "reused": True}  # its times are those of the run that made it
            self._account([{"rss_mb": rep.get("peak_rss_mb", 0)}])
            return rep, keep_paths, fp

        t0, c0 = time.perf_counter(), usage()["cpu_s"]
        c0 -= self.fused_cpu.get(i, 0.0)
        ctxs = [self.shard_ctx(j, alive_path[j]) for j in range(len(self.shards))]
        per_shard = [len(c.alive_rows()) for c in ctxs]
        n_in = sum(per_shard)
        stats_all: list[dict] = []
        sel_path = os.path.join(stage_dir, "selector.pkl")
        if storage.exists(sel_path):
            sel = workdir.read_pickle(sel_path)
        else:
            if sel.capabilities().needs_fit:
                self.progress.line(f"{label}: fit")
                sel.setup()
                mine = [j for j in range(len(ctxs)) if not self._passes(st, j)]  # a source's stage: its shards
                metrics = sel.fit(StageFit(self, stage_dir, [ctxs[j] for j in mine],
                                           sum(per_shard[j] for j in mine), sel.seed_))
                if metrics is not None:
                    sel.fit_metrics_ = dict(metrics)
                publish_fitted(sel, stage_dir)
            workdir.write_pickle(sel_path, sel)
            faults.point(f"fit:{i:02d}")
        self.progress.line(f"{label}: score {len(ctxs)} shard(s), {n_in} documents")
        tasks = [ScoreTask(c, stage_dir, sel_path, label, st.drop, n, passthrough=self._passes(st, j))
                 for j, (c, n) in enumerate(zip(ctxs, per_shard))]
        stats_all += self.executor.map(run_score, tasks, desc=f"{label}: score", progress=self.progress)
        metrics = dict(getattr(sel, "fit_metrics_", {}) or {})
        self.decide_step_cpu: dict = {}
        if sel.capabilities().scope == "global":
            self.progress.line(f"{label}: decide")
            metrics.update(self._global_decide(sel, st, stage_dir, tasks, keep_paths, stats_all))
        rep = self._stage_report(i, st, sel, label, stage_dir, ctxs, keep_paths, n_in, stats_all, metrics,
                                 time.perf_counter() - t0, usage()["cpu_s"] - c0)
        return rep, keep_paths, fp

    def _stage_report(self, i, st, sel, label, stage_dir, ctxs, keep_paths, n_in, stats, metrics, wall, cpu_here):
        """Count the stage's keep files, check docs_in = kept + dropped, record done.json."""
        dropped: dict[str, int] = {}
        kept = tokens_in = tokens_kept = bytes_kept = selected = 0
        for c, p in zip(ctxs, keep_paths):
            z = workdir.read_npz(p)
            kept += int(z["keep"].sum())
            selected += int(z["extra_selected"].sum()) if "extra_selected" in z else 0
            for k, v in drop_counts(z).items():
                dropped[k] = dropped.get(k, 0) + v
            scan = c.stats()
            tokens_in += int(scan["n_tokens"][z["row"]].sum())
            tokens_kept += int(scan["n_tokens"][z["row"][z["keep"]]].sum())
            bytes_kept += int(scan["n_bytes"][z["row"][z["keep"]]].sum())
        cpu, rss = self._account(stats)
        if not st.drop:  # annotate only: how many the selector would have kept
            metrics = {**metrics, "selected": selected}
            rep_extra = {"annotate_only": True}
        else:
            rep_extra = {}
        if kept + sum(dropped.values()) != n_in:
            raise RuntimeError(f"{label}: accounting error: {n_in} in, {kept} kept, {dropped} dropped")
        rep = {"name": st.name, "selector": f"{type(sel).__module__}:{type(sel).__qualname__}",
               "params": sel.get_params(), "docs_in": n_in, "kept": kept, "dropped": dropped,
               "tokens_in": tokens_in, "tokens_kept": tokens_kept, "bytes_kept": bytes_kept,
               "wall_s": wall, "cpu_s": cpu_here + cpu,
               "peak_rss_mb": max(rss, usage()["rss_mb"]), "metrics": metrics, "dir": stage_dir,
               "models": {k: v for k, v in (sel.fitted_files() or {}).items()}, **rep_extra}
        if self.decide_step_cpu:  # a decide as tasks: the CPU seconds of each of its steps
            rep["decide_cpu_s_by_step"] = self.decide_step_cpu
        workdir.write_json(os.path.join(stage_dir, "done.json"), rep)
        faults.point(f"stage:{i:02d}")
        self.progress.line(f"{label}: kept {kept} of {n_in}")
        return rep

    def _global_decide(self, sel, st, stage_dir, tasks, keep_paths, stats: list) -> dict:
        """The stage's decide; its tasks' CPU and memory figures are added to ``stats``."""
        if getattr(sel, "budget", lambda: None)() is not None:  # budget selection: in passes of shard tasks (engine/global_budget.py)
            budget = BudgetDecide(self, sel, st, stage_dir, tasks, keep_paths)
            metrics = budget.run()
            stats += budget.stats
            return metrics
        if type(sel).decide_sharded is not Selector.decide_sharded:  # a decide as tasks (engine/sharded_decide.py)
            ctx = ShardedDecide(self, sel, st, stage_dir, tasks, keep_paths)
            if ctx.shard_offsets[-1]:
                metrics = sel.decide_sharded(ctx)
                stats += ctx.stats
                self.decide_step_cpu = ctx.step_cpu
                if metrics is not NotImplemented:  # NotImplemented: this configuration decides below
                    return dict(metrics or {})
        cols, offs = _concat_scores([t.scores_path for t in tasks])
        if offs[-1]:
            ctx = StageDecide(self, stage_dir, sel.seed_, cols["row"], offs, self._earlier)
            dec = sel.decide(Scores(cols, offs, [s.name for s in self.shards]), ctx)
        else:  # nothing reaches this stage: nothing to decide
            dec = Decision(keep=np.zeros(0, bool))
        dec = as_decision(dec, int(offs[-1]), st.name)
        if not st.drop:
            dec = annotate_only(dec)
        arrays = decision_arrays(cols, dec, sel.display_name(), st.name)
        for j, p in enumerate(keep_paths):
            if tasks[j].passthrough:  # another source's shard: its score task wrote its keep file
                continue
            write_keep(p, arrays, int(offs[j]), int(offs[j + 1]))
            faults.point(f"decide:{os.path.basename(stage_dir)[:2]}:{j}")
        return dict(getattr(dec, "metrics", {}) or {})



def run_pipeline(config: Any, *, overwrite: bool = False, progress: Progress | bool | None = None,
                 executor: Executor | None = None, fresh: bool = False, tree_cpu0: float | None = None) -> dict:
    """Run a pipeline from a config mapping (or a validated Config); returns the manifest.
    ``tree_cpu0``: the process tree's CPU seconds when the caller started (default: now)."""
    tree_cpu0 = tree_cpu() if tree_cpu0 is None else tree_cpu0
    cfg = config if isinstance(config, Config) else parse_config(config)
    if isinstance(progress, bool):
        progress = Progress(enabled=progress)
    return Runner(cfg, overwrite=overwrite, progress=progress, executor=executor, fresh=fresh,
                  tree_cpu0=tree_cpu0).run()

