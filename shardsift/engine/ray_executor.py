"""The ``ray`` executor: the local executor's shard tasks, run as Ray tasks on one machine or a cluster.

Tasks are the same picklable objects (scan, score, fit map, decide map): each reads its shard from
storage, writes its result to the work dir atomically and returns a small summary, so no document
passes through the driver or Ray's object store. Resume is unchanged: a task whose result file
exists returns it without recomputing.

Failures: a task whose worker dies (killed, out of memory, node lost) is retried by Ray; a task that
raises is retried too (``max_retries``, default 2), and then the run fails with one line naming the
shard and the original error. Errors in the data or the config (``DataError``, ``ConfigError``) are
deterministic: they are not retried and stop the run at once.
"""
from __future__ import annotations

from typing import Any

from ..errors import ShardsiftError, TaskError
from ..io import storage
from . import faults
from .executors import Executor, _call, task_label


class _Failed:
    """A data or config error travelling back as a value, so that Ray does not retry it."""

    def __init__(self, err: ShardsiftError):
        self.cls, self.msg = type(err), str(err)


def _ray_task(fn, item, storage_options: dict, test_settings: dict):
    """Body of every Ray task: install the driver's storage options (and test kill points), run the
    task, return its summary."""
    storage.load_registry(storage_options)
    faults.use(test_settings)
    try:
        return _call(fn, item)
    except TaskError:
        raise  # retried by Ray (retry_exceptions), then reported by the driver
    except ShardsiftError as err:
        return _Failed(err)


class RayExecutor(Executor):
    """Run tasks on Ray. With no ``address`` a local Ray runtime with ``workers`` CPUs is started (and
    stopped by ``close``); ``address: auto`` or ``ray://host:10001`` joins a running cluster.

    ``workers`` bounds the tasks in flight; ``num_cpus`` and ``resources`` are what each task asks Ray
    for (default one CPU); ``runtime_env`` is passed to ``ray.init`` (e.g. ``{pip: [...]}`` or
    ``{working_dir: ...}`` so that cluster workers can import your selector plugins).
    """

    name = "ray"
    def __init__(self, workers: int = 1, address: str | None = None, num_cpus: float | None = None,
                 resources: dict | None = None, max_retries: int = 2, runtime_env: dict | None = None):
        import ray

        self.workers = max(1, int(workers))
        self.max_retries = int(max_retries)
        self._ray = ray
        self._owns = False
        if not ray.is_initialized():
            kw: dict[str, Any] = {"ignore_reinit_error": True, "include_dashboard": False,
                                  "log_to_driver": True, "configure_logging": False}
            if runtime_env:
                kw["runtime_env"] = runtime_env
            if address:
                kw["address"] = address
            else:
                kw["num_cpus"] = self.workers
            ray.init(**kw)
            self._owns = True
        opts: dict[str, Any] = {"max_retries": self.max_retries, "retry_exceptions": [TaskError],
                                "num_cpus": 1 if num_cpus is None else num_cpus}
        if resources:
            opts["resources"] = dict(resources)
        self._remote = ray.remote(_ray_task).options(**opts)

    def map(self, fn, items, desc="", progress=None, isolate=False):  # every task runs on the cluster
        ray = self._ray
        items = list(items)
        if not items:
            return []
        bar = progress.bar(items, desc) if progress else None
        reg = storage.registry()
        env = faults.settings()
        fn_ref = ray.put(fn)  # one copy of the function (and what it closes over) for all tasks
        results: list = [None] * len(items)
        pending: dict = {}
        nxt = 0
        try:
            while nxt < len(items) or pending:
                while nxt < len(items) and len(pending) < self.workers:
                    pending[self._remote.remote(fn_ref, items[nxt], reg, env)] = nxt
                    nxt += 1
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    i = pending.pop(ref)
                    results[i] = self._get(ref, items[i])
                    if bar:
                        bar.update(i)
            return results
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        finally:
            if bar:
                bar.close()

    def _get(self, ref, item):
        ray = self._ray
        try:
            out = ray.get(ref)
        except ray.exceptions.RayTaskError as err:
            cause = getattr(err, "cause", None)
            if isinstance(cause, ShardsiftError):
                msg = str(cause)
            else:
                msg = f"{task_label(item)}: {type(cause or err).__name__}: {_first_line(cause or err)}"
            raise TaskError(f"{msg} (failed {self.max_retries + 1} times)") from None
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                ray.exceptions.OutOfMemoryError) as err:
            raise TaskError(f"{task_label(item)}: worker lost {self.max_retries + 1} times "
                            f"({type(err).__name__}: {_first_line(err)}); rerun to resume") from None
        except ray.exceptions.RayError as err:
            raise TaskError(f"{task_label(item)}: {type(err).__name__}: {_first_line(err)}") from None
        if isinstance(out, _Failed):
            raise out.cls(out.msg)
        return out

    def close(self):
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns = False


def _first_line(err) -> str:
    lines = [x.strip() for x in str(err).strip().splitlines() if x.strip()]
    return lines[0] if lines else type(err).__name__
