"""The same pipeline with the local executor and with Ray on one machine: wall and CPU time side by side.

    python bench/bench_ray.py [--pool DIR] [--workers 2] [--repeat 2] [--quick]

Runs configs/default.yaml's stages (those that apply to any pool) plus a global random stage on the real pool (../shared/corpora/pool, 160 MB of text in 8
shards), alternating local and Ray runs, and prints the best wall time of each, the CPU time of
every process involved (the driver, its worker processes, and for Ray the raylet, GCS and Ray
workers), and Ray's overhead as a ratio of wall times. The local Ray runtime is started once
before the runs (its start-up is reported on its own line) and every run checks that both
executors wrote the same output bytes. Writes bench/results/ray.json.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def tree_cpu() -> float:
    """CPU seconds of this process and every descendant, including reaped children."""
    import psutil

    me = psutil.Process()
    total = 0.0
    for p in [me] + me.children(recursive=True):
        try:
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            pass
    return total


def digests(folder: str) -> dict:
    """sha256 of every output file, by name: equal digests are byte-identical outputs."""
    import hashlib

    out = {}
    for f in sorted(glob.glob(os.path.join(folder, "**", "*"), recursive=True)):
        if os.path.isfile(f):
            with open(f, "rb") as fh:
                out[os.path.relpath(f, folder)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", default=os.path.join(os.path.dirname(ROOT), "shared", "corpora", "pool"))
    ap.add_argument("--config", default=os.path.join(ROOT, "configs", "default.yaml"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="two shards of the pool, one repeat")
    ap.add_argument("--json", default=os.path.join(ROOT, "bench", "results", "ray.json"))
    args = ap.parse_args()
    if not os.path.isdir(args.pool):
        print(f"pool not found at {args.pool}; pass --pool", file=sys.stderr)
        return 2
    import ray
    import yaml
    from common import select_cli

    files = sorted(glob.glob(os.path.join(args.pool, "*.parquet")))
    if args.quick:
        files, args.repeat = files[:2], 1
    with open(args.config, encoding="utf-8") as fh:
        stages = (yaml.safe_load(fh) or {}).get("stages", [])
    tmp = tempfile.mkdtemp(prefix="shardsift-bench-ray-")
    # stages whose inputs belong to the generated sample (its loss matrix, keyed by the sample's domains)
    # do not apply to the real pool; a global random stage adds a driver-side decide and a second pass
    skipped = [s for s in stages if "data/sample" in yaml.safe_dump(s)]
    stages = [s for s in stages if s not in skipped] + [{"random": {"keep": 0.5}}]
    if skipped:
        print(f"left out (sample-specific inputs): {[next(iter(s)) for s in skipped]}")

    t = time.perf_counter()
    ray.init(num_cpus=args.workers, include_dashboard=False, configure_logging=False, log_to_driver=False)
    ray_init_s = time.perf_counter() - t

    # local-1: one worker, tasks in the driver process (no pool to start): the pipeline's own cost.
    # Every run is `shardsift select` in a child process; its CPU (and the Ray runtime's, whose
    # processes are this one's children) is in tree_cpu once it has exited
    runs: dict[str, list[dict]] = {"local": [], "ray": [], "local-1": []}
    ref = None
    try:
        for r in range(args.repeat):
            for ex in ("local", "ray", "local-1"):
                out = os.path.join(tmp, f"{ex}-{r}")
                cfg = {"input": files, "output": {"path": out}, "seed": 0, "stages": stages,
                       "workers": 1 if ex == "local-1" else args.workers, "executor": ex.split("-")[0]}
                if ex == "ray":
                    cfg["ray"] = {"address": "auto"}  # the runtime this process started, not a new one per run
                c0, t0 = tree_cpu(), time.perf_counter()
                m = select_cli(cfg, os.path.join(tmp, f"cfg-{ex}-{r}"))
                wall, cpu = time.perf_counter() - t0, tree_cpu() - c0
                d = digests(os.path.join(out, "data"))
                ref = ref or d
                if d != ref:
                    print(f"{ex} run {r}: output differs from the first run", file=sys.stderr)
                    return 1
                runs[ex].append({"wall_s": wall, "cpu_s": cpu, "manifest_cpu_s": m["cpu_s"],
                                 "docs_in": m["docs_in"], "docs_kept": m["docs_kept"], "bytes_in": m["bytes_in"]})
                print(f"  {ex:7s} run {r}: wall {wall:6.1f} s  cpu {cpu:6.1f} s  (tasks+driver per manifest "
                      f"{m['cpu_s']:.1f} s)", flush=True)
                shutil.rmtree(out)
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)

    best = {ex: min(rs, key=lambda x: x["wall_s"]) for ex, rs in runs.items()}
    mb = best["local"]["bytes_in"] / 1e6
    print(f"\npool: {len(files)} shards, {best['local']['docs_in']:,} docs, {mb:.0f} MB of text; "
          f"stages: {[next(iter(s)) if isinstance(s, dict) else s for s in stages]}; workers/CPUs: {args.workers}")
    print(f"{'executor':10s} {'wall s':>8s} {'cpu s':>8s} {'MB/wall s':>10s}")
    for ex in ("local", "ray", "local-1"):
        b = best[ex]
        print(f"{ex:10s} {b['wall_s']:8.1f} {b['cpu_s']:8.1f} {mb / b['wall_s']:10.1f}")
    ratio = best["ray"]["wall_s"] / best["local"]["wall_s"]
    cpu_ratio = best["ray"]["cpu_s"] / best["local"]["cpu_s"]
    with_init = (best["ray"]["wall_s"] + ray_init_s) / best["local"]["wall_s"]
    print(f"ray start-up (ray.init, once per driver): {ray_init_s:.1f} s; "
          f"wall with start-up: {with_init:.2f}x local")
    print(f"ray overhead: wall {ratio:.2f}x local, cpu {cpu_ratio:.2f}x local "
          f"(goal: wall within 1.3x); output bytes identical: yes")
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w", encoding="utf-8") as fh:
        json.dump({"bench": "ray", "command": " ".join(sys.argv), "pool": args.pool, "shards": len(files),
                   "workers": args.workers, "stages": stages, "runs": runs, "best": best,
                   "ray_init_s": ray_init_s, "wall_ratio": ratio, "wall_ratio_with_init": with_init, "cpu_ratio": cpu_ratio,
                   "ray_version": ray.__version__, "python": platform.python_version(),
                   "cpus": os.cpu_count(), "load_avg": os.getloadavg()}, fh, indent=2)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
