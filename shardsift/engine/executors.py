"""Executors decide only where tasks run; tasks are idempotent and write their own results.

An executor maps a picklable function over a list of picklable task items and returns the results
in order. Every task writes its output to the work dir atomically, so a rerun skips what is done
and a retried task can never leave half a result behind.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import ShardsiftError, TaskError, missing_file
from ..io import storage


class Progress:
    """Progress per stage: a tqdm bar on a terminal, plain lines otherwise (or nothing)."""

    def __init__(self, enabled: bool = True, stream=None):
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()

    def line(self, text: str) -> None:
        if self.enabled:
            print(f"[shardsift] {text}", file=self.stream, flush=True)

    def warn(self, text: str) -> None:
        """Printed even when progress lines are off."""
        print(f"[shardsift] warning: {text}", file=self.stream, flush=True)

    def bar(self, items: Sequence, desc: str):
        return _Bar(self, items, desc)


def _amount(item) -> tuple[int, str]:
    """How much work a task is, for progress: its ``work`` (documents or bytes), else one task."""
    work = getattr(item, "work", None)
    return work if work else (1, "task")


def _human(x: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.1f}{unit}"
    return f"{x:.0f}"


class _Bar:
    """One bar per phase: tasks done, and the documents (or bytes) they held per second with the
    time left, on a terminal (tqdm) or as a line every few seconds."""

    def __init__(self, progress: Progress, items: Sequence, desc: str):
        amounts = [_amount(it) for it in items]
        units = {u for _, u in amounts}
        self.unit = units.pop() if len(units) == 1 else "task"
        self.weights = [a if self.unit != "task" else 1 for a, _ in amounts]
        self.p, self.desc, self.tasks, self.done = progress, desc, len(items), 0
        self.total, self.n, self.t0 = sum(self.weights), 0, time.monotonic()
        self._tqdm = None
        self._last = 0.0
        if progress.tty:
            from tqdm import tqdm

            self._tqdm = tqdm(total=self.total, desc=desc, unit=self.unit if self.unit != "task" else "task",
                              unit_scale=self.unit != "task", file=progress.stream, leave=False)

    def update(self, index: int) -> None:
        k = self.weights[index]
        self.n += k
        self.done += 1
        if self._tqdm is not None:
            self._tqdm.update(k)
        elif self.p.enabled and (self.done == self.tasks or time.monotonic() - self._last > 5):
            self._last = time.monotonic()
            took = max(time.monotonic() - self.t0, 1e-9)
            line = f"{self.desc}: {self.done}/{self.tasks} task(s)"
            if self.unit != "task":
                rate = self.n / took
                left = (self.total - self.n) / rate if rate else 0.0
                if self.unit == "B":
                    line += f", {self.n / 1e6:,.1f} MB, {rate / 1e6:,.1f} MB/s"
                else:
                    line += f", {_human(self.n)} {self.unit}, {_human(rate)} {self.unit}/s"
                line += f", {left:.0f} s left" if self.done < self.tasks else f" in {took:.1f} s"
            self.p.line(line)

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()


def task_label(item: Any) -> str:
    return getattr(item, "label", None) or str(item)[:200]


class Executor:
    """Interface: ``map(fn, items, desc)`` runs fn over items (in parallel) and returns results in order."""

    name = "base"
    workers = 1

    def map(self, fn: Callable, items: Sequence, desc: str = "", progress: Progress | None = None,
            isolate: bool = False) -> list:
        """``isolate``: run even a single task in a worker process where there are workers (a step
        whose memory must not land in the driver)."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class LocalExecutor(Executor):
    """A process pool over shard tasks (``workers: N``); with one worker, tasks run in-process."""

    name = "local"

    def __init__(self, workers: int = 1):
        self.workers = max(1, int(workers))
        self._pool = None  # a concurrent.futures.ProcessPoolExecutor once needed (imported then)

    def _get_pool(self):
        if self._pool is None:
            import concurrent.futures as cf
            import multiprocessing as mp

            # spawn, not fork: the driver may hold Arrow/numba threads that a fork would copy mid-state
            self._pool = cf.ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"))
        return self._pool

    def map(self, fn, items, desc="", progress=None, isolate=False):
        items = list(items)
        bar = progress.bar(items, desc) if progress and items else None
        results: list = [None] * len(items)
        try:
            if self.workers == 1 or not items or (len(items) == 1 and not isolate):
                for i, item in enumerate(items):
                    results[i] = _call(fn, item)
                    if bar:
                        bar.update(i)
                return results
            return self._map_pool(fn, items, bar, results, desc)
        finally:
            if bar:
                bar.close()

    def _map_pool(self, fn, items, bar, results, desc):
        import concurrent.futures as cf
        from concurrent.futures.process import BrokenProcessPool

        try:
            pool = self._get_pool()
            reg = storage.registry()  # storage options travel with each task, not in the environment
            futures = {pool.submit(_worker_call, fn, item, reg): i for i, item in enumerate(items)}
            try:
                for fut in cf.as_completed(futures):
                    results[futures[fut]] = fut.result()
                    if bar:
                        bar.update(futures[fut])
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
            return results
        except BrokenProcessPool as err:
            self._pool = None
            raise TaskError(f"a worker process died during {desc or 'a task'} ({err}); rerun to resume") from None

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _call(fn, item):
    """Run one task; re-raise failures as one line naming the task."""
    try:
        return fn(item)
    except ShardsiftError:
        raise
    except MemoryError:
        raise TaskError(f"{task_label(item)}: out of memory") from None
    except FileNotFoundError as err:  # not transient: not retried, no rerun offered
        raise missing_file(err, task_label(item)) from None
    except OSError as err:
        if err.filename and err.strerror:  # disk full, read-only work dir: name the file
            raise TaskError(f"{task_label(item)}: {err.filename}: {err.strerror}") from None
        raise TaskError(f"{task_label(item)}: {type(err).__name__}: {err}") from None
    except Exception as err:  # noqa: BLE001 - every task failure becomes one line naming the shard
        import traceback

        tb = traceback.extract_tb(err.__traceback__)
        where = f" at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno}" if tb else ""
        raise TaskError(f"{task_label(item)}: {type(err).__name__}: {err}{where}") from None


def _worker_call(fn, item, storage_options: dict):
    """A task's body in a pool process: install the driver's storage options, then run it."""
    storage.load_registry(storage_options)
    return _call(fn, item)


def make_executor(cfg) -> Executor:
    if cfg.executor == "ray":
        try:
            from .ray_executor import RayExecutor
        except ImportError as err:
            raise ShardsiftError(
                f"executor 'ray' needs the ray extra: pip install 'shardsift[ray]' ({err})"
            ) from None
        return RayExecutor(workers=cfg.workers, **(cfg.ray or {}))
    return LocalExecutor(cfg.workers)
