"""kmeans_diversity: embed + cluster + select of the 160 MB pool, against scikit-learn TF-IDF + SVD.

Usage: python bench/bench_kmeans.py [--quick] [--workers N] [--keep F] [--strategy S] [--seed N]
       [--stage JSON] [--no-reference]

Two measurements, each in a fresh subprocess so that CPU time and peak memory are its own:
- shardsift: `shardsift select` with one kmeans_diversity stage (default hashed TF-IDF embedding) on the
  pool; docs per CPU-second of the whole process tree (read, embed, cluster, select, write), and of the
  stage alone (manifest).
- reference: scikit-learn TfidfVectorizer(1-2 grams) + TruncatedSVD(256) on all documents + MiniBatchKMeans,
  the usual way to do this in Python (fit on everything).
Quality: the stage's coverage metrics against a random selection of the same size (from the manifest, in
the stage's own embedding), and the evenness (entropy) and per-domain shares of the selection's domain mix
against random's (the domain column is read here only, after the run).
Goal: >= 2,000 docs per CPU-second with the default embedding; peak memory < 2 GB.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import child_env, corpora, save  # noqa: E402


def run_shardsift(src: str, tmp: str, workers: int, stage: dict, seed: int) -> dict:
    """One kmeans_diversity stage through `shardsift select`, measured as a fresh process tree."""
    from common import measure, write_config

    out = os.path.join(tmp, "out")
    cfg = write_config(tmp, src, out, [{"kmeans_diversity": stage}], workers, seed)
    r = measure([sys.executable, "-m", "shardsift", "select", cfg, "--overwrite", "--quiet"], env=child_env(),
                log=os.path.join(tmp, "log.txt"))
    if r["rc"] != 0:
        with open(os.path.join(tmp, "log.txt")) as fh:
            raise SystemExit(f"shardsift select failed:\n{fh.read()[-3000:]}")
    with open(os.path.join(out, ".shardsift", "manifest.json")) as fh:
        man = json.load(fh)
    st = man["stages"][-1]
    return {"wall_s": r["wall_s"], "cpu_s": r["cpu_s"], "peak_rss_mb": max(r["driver_peak_rss_mb"], r["worker_peak_rss_mb"]),
            "stage_cpu_s": st["cpu_s"], "stage_wall_s": st["wall_s"], "stage_peak_rss_mb": st["peak_rss_mb"],
            "docs": st["docs_in"], "kept": st["kept"], "metrics": st["metrics"]}


CHILD_SKLEARN = r"""
import glob, json, resource, sys, time
import numpy as np, pyarrow as pa, pyarrow.parquet as pq
src, limit = sys.argv[1], int(sys.argv[2])
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.decomposition import TruncatedSVD
from sklearn.cluster import MiniBatchKMeans
from sklearn.preprocessing import normalize
t0 = time.perf_counter()
c0 = time.process_time()
tbl = pa.concat_tables([pq.read_table(f, columns=["text"]) for f in sorted(glob.glob(src + "/*.parquet"))])
texts = tbl.column("text").to_pylist()[:limit or None]
x = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2, dtype=np.float32).fit_transform(texts)
c1 = time.process_time()
e = normalize(TruncatedSVD(256, random_state=0).fit_transform(x))
c2 = time.process_time()
km = MiniBatchKMeans(64, random_state=0, n_init=1, batch_size=2048).fit(e)
c3 = time.process_time()
s = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({{"docs": len(texts), "cpu_s": c3 - c0, "tfidf_cpu_s": c1 - c0, "svd_cpu_s": c2 - c1,
                  "kmeans_cpu_s": c3 - c2, "wall_s": time.perf_counter() - t0,
                  "peak_rss_mb": s.ru_maxrss / 1024}}))
"""


def child(code, *args):
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def read_pool(pool: str):
    import glob

    import pyarrow as pa
    import pyarrow.parquet as pq

    return pa.concat_tables([pq.read_table(f, columns=["id", "text", "domain"]) for f in sorted(glob.glob(pool + "/*.parquet"))])


def chosen_mask(tbl, out: str):
    import numpy as np
    import pyarrow.parquet as pq

    kept = pq.read_table(os.path.join(out, "data"), columns=["id"]).column("id").to_pylist()
    return np.isin(np.array(tbl.column("id").to_pylist()), kept)


def domain_evenness(tbl, chosen, seed: int = 0) -> dict:
    """Entropy and per-domain shares of the selection's domain mix, against 10 random selections."""
    import collections

    import numpy as np

    dom = np.array(tbl.column("domain").to_pylist())
    names = sorted(set(dom))

    def entropy(x):
        c = np.array(list(collections.Counter(x).values()), float)
        p = c / c.sum()
        return float(-(p * np.log(p)).sum())

    def shares(x):
        c = collections.Counter(x)
        return np.array([c[d] / len(x) for d in names])

    rng = np.random.default_rng(seed)
    draws = [dom[rng.choice(len(dom), int(chosen.sum()), replace=False)] for _ in range(10)]
    rand = [entropy(d) for d in draws]
    rshare = np.mean([shares(d) for d in draws], axis=0)
    return {"domain_entropy": round(entropy(dom[chosen]), 4), "random_domain_entropy_mean": round(float(np.mean(rand)), 4),
            "random_domain_entropy_max": round(float(np.max(rand)), 4), "pool_domain_entropy": round(entropy(dom), 4),
            "share": {d: [round(float(a), 4), round(float(b), 4)] for d, a, b in zip(names, shares(dom[chosen]), rshare)}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="reference on 8,000 documents only")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", type=float, default=0.2)
    ap.add_argument("--strategy", default="balanced")
    ap.add_argument("--stage", default="{}", help="extra kmeans_diversity params as JSON")
    ap.add_argument("--no-reference", action="store_true", help="skip the scikit-learn reference")
    ap.add_argument("--seed", type=int, default=0, help="pipeline seed")
    args = ap.parse_args()
    pool = corpora("pool")
    stage = {"strategy": args.strategy, "keep": args.keep, **json.loads(args.stage)}
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out")
        ours = run_shardsift(pool, tmp, args.workers, stage, args.seed)
        tbl = read_pool(pool)
        chosen = chosen_mask(tbl, out)
    even = domain_evenness(tbl, chosen, args.seed)
    ref = None if args.no_reference else child(CHILD_SKLEARN.format(), pool, 8000 if args.quick else 0)
    n = ours["docs"]
    cov = ours["metrics"].get("coverage", {})
    res = {
        "stage": stage, "seed": args.seed, "workers": args.workers, "docs": n,
        "shardsift_docs_per_cpu_s": round(n / ours["cpu_s"], 1),
        "shardsift_stage_docs_per_cpu_s": round(n / ours["stage_cpu_s"], 1),
        "shardsift_cpu_s": round(ours["cpu_s"], 2), "shardsift_stage_cpu_s": round(ours["stage_cpu_s"], 2),
        "shardsift_wall_s": round(ours["wall_s"], 2), "shardsift_peak_rss_mb": round(ours["peak_rss_mb"], 1),
        "coverage": cov, "domain": even,
        "fit_sample": ours["metrics"].get("fit_sample"), "k": ours["metrics"].get("k"),
    }
    if ref is not None:
        res.update({"reference_docs": ref["docs"], "reference_docs_per_cpu_s": round(ref["docs"] / ref["cpu_s"], 1),
                    "reference_cpu_s": {k: round(v, 2) for k, v in ref.items() if k.endswith("cpu_s")},
                    "reference_peak_rss_mb": round(ref["peak_rss_mb"], 1)})
        res["speedup_vs_reference"] = round(res["shardsift_docs_per_cpu_s"] / res["reference_docs_per_cpu_s"], 2)
    print(f"kmeans_diversity ({args.strategy}, keep={args.keep}) on {n} docs, {args.workers} workers")
    print(f"  shardsift whole run : {res['shardsift_docs_per_cpu_s']:>8.0f} docs/CPU-s  "
          f"({res['shardsift_cpu_s']} CPU-s, {res['shardsift_wall_s']} s wall, peak {res['shardsift_peak_rss_mb']} MB)")
    print(f"  kmeans stage alone  : {res['shardsift_stage_docs_per_cpu_s']:>8.0f} docs/CPU-s")
    if ref is not None:
        print(f"  sklearn TF-IDF+SVD  : {res['reference_docs_per_cpu_s']:>8.0f} docs/CPU-s on {ref['docs']} docs "
              f"({res['reference_cpu_s']}, peak {res['reference_peak_rss_mb']} MB)")
        print(f"  ratio               : {res['speedup_vs_reference']}x")
    if cov:
        print(f"  coverage mean dist  : {cov['mean_distance']} (random {cov['random_mean_distance']})")
        print(f"  coverage p95 dist   : {cov['p95_distance']} (random {cov['random_p95_distance']})")
        print(f"  cluster entropy     : {cov['cluster_entropy']} (random {cov['random_cluster_entropy']})")
    print(f"  domain entropy      : {even['domain_entropy']} (random mean {even['random_domain_entropy_mean']}, "
          f"max of 10 {even['random_domain_entropy_max']})")
    print("  domain share        : selected / random (mean of 10)")
    for d, (a, b) in even["share"].items():
        print(f"    {d:<24}{a:>7.3f} / {b:.3f}")
    tag = "".join(ch if ch.isalnum() else "_" for ch in json.dumps(stage, sort_keys=True)).strip("_")
    default = args.stage == "{}" and args.strategy == "balanced" and not args.no_reference and args.seed == 0
    print("saved", save("bench_kmeans" if default else f"bench_kmeans_{tag}_seed{args.seed}"[:120], res))


if __name__ == "__main__":
    main()
