"""Shared helpers for the benchmarks: running a command in a fresh process tree and measuring it,
running shardsift through its CLI only, and where results go.

The bench drives shardsift through `python -m shardsift select CONFIG` and OUTPUT/.shardsift/manifest.json and
nothing else, so it keeps working while the package's internals move.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
CORPORA = os.path.join(os.path.dirname(ROOT), "shared", "corpora")
RESULTS = os.path.join(BENCH, "results")   # scratch (git-ignored)
FIGURES = os.path.join(BENCH, "figures")   # results that are committed and feed docs/benchmarks.md
DATA_DIR = os.environ.get("SHARDSIFT_BENCH_DATA", "/tmp/shardsift-bench")  # generated corpora (cached)


def corpora(*parts) -> str:
    path = os.path.join(CORPORA, *parts)
    if not os.path.exists(path):
        sys.exit(f"skipped: real corpora not found at {path} (../shared/corpora beside the checkout)")
    return path


def save(name: str, result: dict, folder: str = RESULTS) -> str:
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{name}.json")
    with open(path + ".tmp", "w") as fh:
        json.dump(result, fh, indent=1, default=_jsonable)
    os.replace(path + ".tmp", path)
    return path


def write_figure(path: str, result: dict) -> None:
    """A bench script's result as readable JSON at ``path`` (its folder made), and a line saying so."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(result, fh, indent=2)
        fh.write("\n")
    print(f"wrote {path}")


def _jsonable(x):
    try:
        return x.item()  # NumPy scalars
    except AttributeError:
        return str(x)


def command_line() -> str:
    """How this script was run, with paths inside the checkout made relative to it."""
    return "python " + " ".join(os.path.relpath(a, ROOT) if os.path.isabs(a) and a.startswith(ROOT + os.sep) else a
                                for a in sys.argv)


def machine() -> dict:
    """What the figures were measured on: they only compare within one machine and one run."""
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "load_avg_at_start": list(os.getloadavg())}
    try:
        with open("/proc/cpuinfo") as fh:
            names = [ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")]
        info["cpu_model"] = names[0] if names else None
    except OSError:
        pass
    info["env"] = {k: os.environ[k] for k in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                               "MKL_NUM_THREADS") if k in os.environ}
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    return info


def versions(*modules: str) -> dict:
    from importlib import metadata

    out = {}
    for m in modules:
        try:
            out[m] = metadata.version(m)
        except metadata.PackageNotFoundError:
            out[m] = None
    return out


def dir_bytes(path: str) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def work_dir_parts(work_dirs: list[str]) -> dict:
    """Bytes of each part of a finished run's work dir: ``scan``, ``output``, and each stage
    (``stages/NN-NAME``, the fingerprint left off): the disk each step leaves behind."""
    out: dict[str, int] = {}
    for w in work_dirs:
        for name in sorted(os.listdir(w)):
            p = os.path.join(w, name)
            if name == "stages" and os.path.isdir(p):
                for st in sorted(os.listdir(p)):
                    key = "stages/" + st.rsplit("-", 1)[0]
                    out[key] = out.get(key, 0) + dir_bytes(os.path.join(p, st))
            else:
                out[name] = out.get(name, 0) + (dir_bytes(p) if os.path.isdir(p) else os.path.getsize(p))
    return out


def _status_kb(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def measure(cmd: list[str], env: dict | None = None, poll_s: float = 0.2, watch_dir: str | None = None,
            log: str | None = None, timeout_s: float | None = None) -> dict:
    """Run `cmd` as a child and measure its whole process tree.

    cpu_s: user + system CPU of the child and every descendant it waited for (wait4's rusage),
    the figure every docs/CPU-s is computed from. driver_peak_rss_mb: the child's own peak RSS
    (VmHWM, read while it runs); worker_peak_rss_mb: the largest VmHWM among its descendants;
    tree_peak_rss_mb: wait4's ru_maxrss (the largest single process). watch_dir: its size is
    sampled (peak) and measured at the end. The polling runs in this process, outside the tree.
    """
    import psutil

    out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 (closed below, after the loop)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT if log else subprocess.DEVNULL)
    driver_hwm = 0
    workers: dict[int, dict] = {}
    dir_peak = 0
    last_dir = 0.0
    status = ru = None
    timed_out = False
    try:
        root = psutil.Process(proc.pid)
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            driver_hwm = max(driver_hwm, _status_kb(proc.pid, "VmHWM:") or 0)
            try:
                kids = root.children(recursive=True)
            except psutil.Error:
                kids = []
            for k in kids:
                hwm = _status_kb(k.pid, "VmHWM:")
                w = workers.setdefault(k.pid, {"hwm": 0, "cpu": 0.0, "name": None})
                if hwm:
                    w["hwm"] = max(w["hwm"], hwm)
                try:
                    ct = k.cpu_times()
                    w["cpu"] = max(w["cpu"], ct.user + ct.system)
                    w["name"] = w["name"] or " ".join(k.cmdline()[:4])[:120]
                except psutil.Error:
                    pass
            now = time.perf_counter()
            if watch_dir and now - last_dir > 1.0:
                dir_peak = max(dir_peak, dir_bytes(watch_dir))
                last_dir = now
            if timeout_s and now - t0 > timeout_s:
                timed_out = True
                proc.kill()
            time.sleep(poll_s)
    finally:
        if log:
            out.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    real_workers = {p: w for p, w in workers.items() if "resource_tracker" not in (w["name"] or "")}
    res = {"cmd": " ".join(cmd), "rc": proc.returncode, "timed_out": timed_out, "wall_s": wall,
           "cpu_s": ru.ru_utime + ru.ru_stime, "user_s": ru.ru_utime, "sys_s": ru.ru_stime,
           "tree_peak_rss_mb": ru.ru_maxrss / 1024, "driver_peak_rss_mb": driver_hwm / 1024,
           "worker_peak_rss_mb": max((w["hwm"] for w in real_workers.values()), default=0) / 1024,
           "workers_seen": len(real_workers),
           "worker_cpu_s_polled": sum(w["cpu"] for w in real_workers.values()),
           "load_avg_1min_after": os.getloadavg()[0]}  # other users of a shared machine stretch wall time
    if watch_dir:
        res["watch_dir_peak_bytes"] = max(dir_peak, dir_bytes(watch_dir))
    return res


def child_env(numba_cache: str | None = None, **extra) -> dict:
    """The environment of a measured child: this checkout first on PYTHONPATH (the bench measures
    the code beside it), progress bars off, and numba's cache where the caller says (a fresh
    folder gives a cold start)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("TQDM_DISABLE", "1")
    if numba_cache:
        env["NUMBA_CACHE_DIR"] = numba_cache
    env.update({k: str(v) for k, v in extra.items()})
    return env


def write_config(folder: str, input_path: str, output_path: str, stages: list, workers: int, seed: int = 0,
                 work_dir: str | None = None) -> str:
    """A pipeline config file (YAML; JSON is YAML) for `shardsift select`."""
    output = {"path": output_path, "scores": False}
    if work_dir:
        output["work_dir"] = work_dir
    cfg = {"input": {"path": input_path, "text_column": "text"}, "output": output, "workers": workers,
           "seed": seed, "stages": stages}
    path = os.path.join(folder, "config.yaml")
    with open(path, "w") as fh:
        json.dump(cfg, fh, indent=1)
    return path


def run_select(input_path: str, stages: list, workers: int, tmp_root: str, numba_cache: str | None = None,
               keep_output: bool = False, label: str = "run", timeout_s: float | None = None) -> dict:
    """`python -m shardsift select CONFIG --overwrite` in a fresh process, measured; adds the
    manifest's figures (per stage CPU, peak memory as it reports them) and the output and work-dir
    sizes. The output is removed afterwards unless keep_output."""
    tmp = tempfile.mkdtemp(prefix=f"{label}-", dir=tmp_root)
    out = os.path.join(tmp, "out")
    cfg = write_config(tmp, input_path, out, stages, workers)
    cmd = [sys.executable, "-m", "shardsift", "select", cfg, "--overwrite", "--quiet"]
    res = measure(cmd, env=child_env(numba_cache), watch_dir=out, log=os.path.join(tmp, "log.txt"),
                  timeout_s=timeout_s)
    with open(cfg) as fh:
        res["config"] = json.load(fh)
    if res["rc"] != 0:
        with open(os.path.join(tmp, "log.txt")) as fh:
            res["error"] = fh.read()[-3000:]
        shutil.rmtree(tmp, ignore_errors=True)
        return res
    with open(os.path.join(out, ".shardsift", "manifest.json")) as fh:
        man = json.load(fh)
    res["docs_in"], res["docs_kept"], res["bytes_in"] = man["docs_in"], man["docs_kept"], man["bytes_in"]
    res["manifest"] = {"cpu_s": man.get("cpu_s"), "wall_s": man.get("wall_s"), "peak_rss_mb": man.get("peak_rss_mb"),
                       "write_cpu_s": (man.get("write") or {}).get("cpu_s"),
                       "stages": [{**{k: s.get(k) for k in ("name", "docs_in", "kept", "wall_s", "cpu_s", "peak_rss_mb",
                                                       "decide_cpu_s_by_step") if k in s},
                                   "metrics": _small(s.get("metrics") or {})}
                                  for s in man.get("stages", [])]}
    res["output_bytes"] = dir_bytes(os.path.join(out, "data"))
    work = [os.path.join(out, d) for d in os.listdir(out) if d.startswith(".work")]
    res["work_dir_bytes"] = sum(dir_bytes(w) for w in work)
    res["work_dir_parts_bytes"] = work_dir_parts(work)
    res["out_dir_bytes"] = dir_bytes(out)
    res["docs_per_cpu_s"] = res["docs_in"] / res["cpu_s"] if res["cpu_s"] else None
    if keep_output:
        res["out"] = out
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return res


def corpus_meta(n_docs: int, seed: int, data_dir: str, subset: int | None = None, tiny: str | None = None) -> dict:
    """bench/corpus.py in a child process: generate (or find) the corpus, optionally cut a subset or
    write the tiny start-up input. In a child because a process started later reports, as its own
    peak RSS (ru_maxrss, and so the manifest's figure), at least its parent's size at that moment:
    this process stays small so that those figures stay the child's own."""
    cmd = [sys.executable, os.path.join(BENCH, "corpus.py"), "--docs", str(n_docs), "--seed", str(seed),
           "--data-dir", data_dir]
    if subset is not None:
        cmd += ["--subset", str(subset)]
    if tiny is not None:
        cmd += ["--tiny", tiny]
    proc = subprocess.run(cmd, env=child_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"bench/corpus.py failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def self_peak_rss_mb() -> float:
    """This (measuring) process's peak RSS: a floor under every child's ru_maxrss-based figure."""
    return (_status_kb(os.getpid(), "VmHWM:") or 0) / 1024


def measured_select(cfg: dict, folder: str) -> tuple[dict, dict]:
    """A config (a dict) through `python -m shardsift select --overwrite --quiet` in a fresh process,
    measured whole by measure(); (the measurement, OUTPUT/.shardsift/manifest.json). Exits with the
    log's tail when the run fails."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "config.yaml")
    with open(path, "w") as fh:
        json.dump(cfg, fh, indent=1)
    log = os.path.join(folder, "log.txt")
    res = measure([sys.executable, "-m", "shardsift", "select", path, "--overwrite", "--quiet"], env=child_env(),
                  log=log)
    if res["rc"] != 0:
        with open(log) as fh:
            sys.exit(f"shardsift select failed:\n{fh.read()[-3000:]}")
    out = cfg["output"]["path"] if isinstance(cfg["output"], dict) else cfg["output"]
    with open(os.path.join(out, ".shardsift", "manifest.json")) as fh:
        return res, json.load(fh)


def select_cli(cfg: dict, folder: str, extra_args: tuple = (), check: bool = True) -> dict:
    """Run a pipeline config (a dict) with `python -m shardsift select --overwrite --quiet` in a
    child process and return OUTPUT/.shardsift/manifest.json: the whole interface the bench relies on. The
    child's CPU lands in this process's RUSAGE_CHILDREN once it has exited."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "config.yaml")
    with open(path, "w") as fh:
        json.dump(cfg, fh, indent=1)
    cmd = [sys.executable, "-m", "shardsift", "select", path, "--overwrite", "--quiet", *extra_args]
    proc = subprocess.run(cmd, env=child_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        if check:
            raise RuntimeError(f"shardsift select failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        return {"error": proc.stderr[-3000:], "rc": proc.returncode}
    out = cfg["output"]["path"] if isinstance(cfg["output"], dict) else cfg["output"]
    with open(os.path.join(out, ".shardsift", "manifest.json")) as fh:
        return json.load(fh)


def _small(metrics: dict) -> dict:
    """A stage's metrics without its per-cluster or per-bin lists (what a figure file keeps)."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            out[k] = _small(v)
        elif not isinstance(v, list):
            out[k] = v
    return out
