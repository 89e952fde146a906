"""The driver's peak memory of a global budget selection: in shard tasks vs in the driver.

    python bench/bench_global_budget.py [--docs 1000000] [--workers 2] [--timeout S]

bench/corpus.py's corpus; one ``quality_classifier`` stage (a small fastText model trained on
the corpus's target as positives, reading the first 300 characters; keep 0.3), run through the
CLI twice in fresh processes: as shipped (the budget cut found by shard tasks,
engine/global_budget.py) and with the same selector's decide in the driver over every
document's scores (bench/budget_in_driver.py), that one first. Recorded per run: the driver's and the workers'
peak RSS, wall, CPU of the process tree and docs per CPU-second, and whether both kept the same
documents. A tiny run first warms numba's cache. Writes bench/figures/global_budget.json.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    BENCH,
    DATA_DIR,
    FIGURES,
    ROOT,
    child_env,
    command_line,
    corpus_meta,
    machine,
    measure,
    save,
    versions,
    write_config,
)


def stage(name: str, target: str) -> list:
    return [{name: {"positives": {"path": target}, "keep": 0.3, "max_chars": 300, "negative_sample": 5000,
                    "max_per_class": 5000, "epoch": 2, "dim": 16, "bucket": 50_000}}]


def run(name: str, pool: str, target: str, workers: int, tmp_root: str, timeout_s: float | None) -> dict:
    tmp = tempfile.mkdtemp(prefix=f"{name}-", dir=tmp_root)
    out = os.path.join(tmp, "out")
    cfg = write_config(tmp, pool, out, stage(name, target), workers)
    env = child_env(os.path.join(tmp_root, "numba-cache"))
    env["PYTHONPATH"] = os.pathsep.join([ROOT, BENCH])
    cmd = [sys.executable, "-m", "shardsift", "select", cfg, "--overwrite", "--quiet"]
    r = measure(cmd, env=env, log=os.path.join(tmp, "log.txt"), timeout_s=timeout_s)
    keys = ("rc", "wall_s", "cpu_s", "driver_peak_rss_mb", "worker_peak_rss_mb", "timed_out")
    res = {k: r[k] for k in keys if k in r}
    if r["rc"] != 0:
        with open(os.path.join(tmp, "log.txt")) as fh:
            res["error"] = fh.read()[-2000:]
        return res
    with open(os.path.join(out, ".shardsift", "manifest.json")) as fh:
        man = json.load(fh)
    st = man["stages"][-1]
    res.update(docs_in=man["docs_in"], docs_kept=man["docs_kept"], docs_per_cpu_s=man["docs_in"] / r["cpu_s"],
               stage_wall_s=st["wall_s"], stage_cpu_s=st["cpu_s"], manifest_peak_rss_mb=man.get("peak_rss_mb"))
    digest = hashlib.sha256()
    data = os.path.join(out, "data")
    for f in sorted(os.listdir(data)):
        with open(os.path.join(data, f), "rb") as fh:
            digest.update(fh.read())
    res["data_sha256"] = digest.hexdigest()
    shutil.rmtree(tmp, ignore_errors=True)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=None)
    ap.add_argument("--data-dir", default=DATA_DIR)
    args = ap.parse_args()
    meta = corpus_meta(args.docs, 0, args.data_dir)
    tmp_root = tempfile.mkdtemp(prefix="global-budget-", dir=args.data_dir)
    result = {"bench": "global_budget", "machine": machine(), "versions": versions("shardsift", "numpy", "pyarrow"),
              "command": command_line(), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "docs": args.docs, "workers": args.workers, "stage": stage("quality_classifier", "TARGET"), "runs": {}}
    try:
        tiny = corpus_meta(20_000, 0, args.data_dir)  # start-up: numba's cache warmed, not timed
        result["startup"] = run("quality_classifier", tiny["pool"], tiny["target"], args.workers, tmp_root, None)
        # the reference first: the second run reads the corpus from a warmer page cache, and the
        # wall time of the shipped path should not gain from it
        for name, label in (("budget_in_driver:QualityInDriver", "driver"), ("quality_classifier", "tasks")):
            r = run(name, meta["pool"], meta["target"], args.workers, tmp_root, args.timeout)
            result["runs"][label] = r
            print(f"{label:7s} driver peak {r.get('driver_peak_rss_mb', 0):7.1f} MB  workers "
                  f"{r.get('worker_peak_rss_mb', 0):7.1f} MB  wall {r.get('wall_s', 0):7.1f} s  cpu "
                  f"{r.get('cpu_s', 0):7.1f} s  {r.get('error', '')[-300:]}", flush=True)
        t, d = result["runs"]["tasks"], result["runs"]["driver"]
        if t.get("rc") == 0 and d.get("rc") == 0:
            result["same_output"] = t["data_sha256"] == d["data_sha256"]
            result["driver_peak_saved_mb"] = d["driver_peak_rss_mb"] - t["driver_peak_rss_mb"]
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    print("wrote", save("global_budget", result, folder=FIGURES))


if __name__ == "__main__":
    main()
