"""Benchmark perplexity_correlation: estimators and projections against the reference package
(perplexity-correlations 0.1.2, bench extra) in the same run, then the whole stage on a corpus.

    python bench/bench_perplexity.py            # N=90 models x D=100,000 texts; the real pool if present
    python bench/bench_perplexity.py --quick    # N=40 x D=10,000; the generated sample corpus

Times are CPU seconds (time.process_time of this process; the stage, run through `shardsift select`,
by its own cpu_s from the manifest, which includes its worker processes). Writes bench/results/perplexity.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
import warnings

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from shardsift.selectors.perplexity import estimators as pm


def peak_rss_mb() -> float:
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(self_kb, child_kb) / 1024


def cpu(fn, *a):
    t = time.process_time()
    out = fn(*a)
    return out, time.process_time() - t


def bench_math(n: int, d: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    skill = rng.normal(size=n)
    X = 1.0 + 0.2 * rng.random((n, d)) + 0.02 * np.outer(skill, rng.normal(size=d))
    y = np.clip(0.5 - 0.1 * skill + 0.02 * rng.normal(size=n), 0, 1)
    pm.estimate_all(X[:, :64], y)  # numba compile outside the timing
    res = {"n_models": n, "n_texts": d, "estimators": {}, "projections": {}}
    all_est, t_all = cpu(pm.estimate_all, X, y)
    res["ours_all_five_cpu_s"] = round(t_all, 3)
    try:
        from perplexity_correlations import estimation as ref_est
        from perplexity_correlations import projection as ref_proj
    except ImportError:
        ref_est = ref_proj = None
        res["reference"] = "perplexity-correlations not installed (pip install -e '.[bench]')"
    ref_total = 0.0
    for name in pm.ESTIMATORS:
        ours, t_ours = cpu(pm.estimate, X, y, name)
        row = {"ours_cpu_s": round(t_ours, 4)}
        if ref_est is not None:
            ref, t_ref = cpu(getattr(ref_est, name), X, y)
            ref_total += t_ref
            row.update(ref_cpu_s=round(t_ref, 3), speedup=round(t_ref / max(t_ours, 1e-9), 1),
                       max_abs_diff=float(np.abs(ours - ref).max()))
        res["estimators"][name] = row
        print(f"estimator {name:10s} ours {t_ours:7.3f}s" + (
            f"  reference {row['ref_cpu_s']:7.3f}s  x{row['speedup']:<7} max|diff| {row['max_abs_diff']:.1e}"
            if ref_est is not None else ""))
    if ref_est is not None:
        res["reference_all_five_cpu_s"] = round(ref_total, 3)
        res["speedup_all_five"] = round(ref_total / max(t_all, 1e-9), 1)
    print(f"all five estimators: ours {t_all:.3f}s" + (
        f", reference {ref_total:.2f}s (x{res['speedup_all_five']})" if ref_est is not None else ""))
    tau = rng.uniform(0.5, 1.5, size=d) / d * 3  # caps summing to ~3 (keep a third)
    for proj in pm.PROJECTIONS:
        est = all_est["sign_cdf"] if proj == "linear" else all_est["sign"]
        ours, t_ours = cpu(pm.project, est, tau, proj)
        row = {"estimate": "sign_cdf" if proj == "linear" else "sign", "ours_cpu_s": round(t_ours, 4)}
        if ref_proj is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref, t_ref = cpu(getattr(ref_proj, proj), est, tau)
            row.update(ref_cpu_s=round(t_ref, 4), max_abs_diff=float(np.abs(ours - ref).max()),
                       objective_diff=float(abs(ours @ est - ref @ est)))
        res["projections"][proj] = row
        print(f"projection {proj:6s} ours {t_ours:.4f}s" + (
            f"  reference {row['ref_cpu_s']:.4f}s  max|diff| {row['max_abs_diff']:.1e}" if ref_proj is not None else ""))
    return res


def bench_stage(quick: bool, workers: int) -> dict:
    from common import select_cli

    from shardsift.selectors.perplexity import write_example_inputs

    tmp = tempfile.mkdtemp(prefix="bench-ppl-")
    real = os.path.join(os.path.dirname(ROOT), "shared", "corpora", "pool")
    if not quick and os.path.isdir(real):
        pool, corpus = real, "../shared/corpora/pool"
        informative = ["encyclopedia", "legal_contract", "speech_political"]
        stage = {"keep": 0.05, "target_ratio": 0.2, "max_train_docs": 20000, "max_chars": 5000}
    else:
        import subprocess

        from common import child_env

        subprocess.run([sys.executable, "-m", "shardsift", "sample", os.path.join(tmp, "sample"), "--docs", "4000",
                        "--shards", "4", "--seed", "0"], check=True, env=child_env(), capture_output=True)
        pool, corpus = os.path.join(tmp, "sample", "pool"), "generated sample (4,000 docs)"
        informative = ["law", "sports"]
        stage = {"keep": 0.3}
    info = write_example_inputs(os.path.join(tmp, "inputs"), pool, seed=2, informative=informative, n_models=40)
    stage.update(losses=info["losses"], errors=info["errors"], key="domain")
    out = os.path.join(tmp, "out")
    cfg = {"input": {"path": pool, "text_column": "text"}, "output": {"path": out, "scores": False},
           "workers": workers, "seed": 0, "stages": [{"perplexity_correlation": stage}]}
    t0 = time.perf_counter()
    man = select_cli(cfg, os.path.join(tmp, "config"))  # `shardsift select`, in a child process
    wall = time.perf_counter() - t0
    st = man["stages"][-1]
    met = st["metrics"]
    import pyarrow.dataset as ds

    kept = ds.dataset(os.path.join(out, "data")).to_table(columns=["domain"]).column("domain").to_pylist()
    pool_dom = ds.dataset(pool).to_table(columns=["domain"]).column("domain").to_pylist()
    k = len(informative)
    top = [t["key"] for t in met["top_keys"][:k]]
    res = {"corpus": corpus, "docs_in": st["docs_in"], "kept": st["kept"], "workers": workers,
           "stage_cpu_s": round(st["cpu_s"], 2), "stage_wall_s": round(st["wall_s"], 2), "run_wall_s": round(wall, 2),
           "docs_per_cpu_s": round(st["docs_in"] / max(st["cpu_s"], 1e-9), 1),
           "stage_peak_rss_mb": round(st["peak_rss_mb"], 1),
           "informative_keys": informative, f"precision_at_{k}": len(set(top) & set(informative)) / k,
           "include_keys": met["include_keys"], "holdout_precision": met.get("holdout_precision"),
           "holdout_recall": met.get("holdout_recall"), "train_docs": met["train_docs"],
           "kept_informative_share": round(float(np.isin(kept, informative).mean()), 4),
           "pool_informative_share": round(float(np.isin(pool_dom, informative).mean()), 4)}
    print(f"stage on {corpus}: {st['docs_in']} docs, cpu {st['cpu_s']:.1f}s ({res['docs_per_cpu_s']} docs/cpu-s), "
          f"peak {st['peak_rss_mb']:.0f} MB; precision@{k} {res[f'precision_at_{k}']}, holdout P/R "
          f"{met.get('holdout_precision')}/{met.get('holdout_recall')}, informative share kept "
          f"{res['kept_informative_share']} vs pool {res['pool_informative_share']}")
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip-stage", action="store_true")
    args = ap.parse_args()
    n, d = (40, 10_000) if args.quick else (90, 100_000)
    result = {"bench": "perplexity_correlation", "python": platform.python_version(),
              "machine": platform.machine(), "cpus": os.cpu_count(), "quick": args.quick,
              "math": bench_math(n, d)}
    if not args.skip_stage:
        result["stage"] = bench_stage(args.quick, args.workers)
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    path = os.path.join(ROOT, "bench", "results", "perplexity.json")
    with open(path, "w") as fh:
        json.dump(result, fh, indent=1)
    print(f"peak memory {result['peak_rss_mb']} MB; wrote {path}")


if __name__ == "__main__":
    main()
