"""Benchmark of the DSIR selector against the reference package `data-selection` 1.0.3.

    python bench/bench_dsir.py [--quick] [--pool-shards N] [--out bench/results/dsir.json]

Measured in one run, single process, CPU time (time.process_time):

1. Throughput: fit (target + raw distributions) + log importance weights on the same documents of about
   1 KB (pieces of the shared pool and Wikipedia target, cut at whitespace), reference vs shardsift.
2. Quality on ../shared/corpora: select 4% and 10% of the pool toward the Wikipedia target, with both
   implementations at their defaults; report the `encyclopedia` share (the label is read here only) and
   the KL reduction KL(target||raw) - KL(target||selected), evaluated for both selections in both hashed
   feature spaces (ours: FNV/splitmix, the reference's: sha256), plus a random selection of the same size.
3. Quality on the generated sample corpus (shardsift.sample): astronomy share and KL reduction.
4. What length_normalize and chunk_tokens change (ours): share, KL reduction, mean selected length.
5. Rank correlation of the two implementations' log weights on the same pool.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import resource
import sys
import tempfile
import time

os.environ.setdefault("TQDM_DISABLE", "1")  # the reference's progress bars

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, os.path.join(HERE, ".."))

from dsir_fakes import FakeDecide, FakeFit, score_all

from shardsift.selectors.dsir.estimator import kl, log_probs
from shardsift.selectors.dsir.features import featurize
from shardsift.selectors.dsir.selector import DSIRSelector

CORPORA = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "corpora"))
if not os.path.isdir(CORPORA):
    CORPORA = "/work/shared/corpora"


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pieces(texts, size=1024, limit=None):
    """Cut texts into ~size-byte pieces at whitespace (bench data preparation only)."""
    out = []
    for t in texts:
        i = 0
        while i < len(t):
            j = t.rfind(" ", i + size // 2, i + size) if i + size < len(t) else len(t)
            j = len(t) if j <= i else j
            piece = t[i:j].strip()
            if len(piece) >= size // 2:
                out.append(piece)
            i = j + 1
            if limit and len(out) >= limit:
                return out
    return out


def tbl(texts, ids=None, prefix="d"):
    ids = ids if ids is not None else [f"{prefix}{i}" for i in range(len(texts))]
    return pa.table({"id": pa.array(ids, pa.string()), "text": pa.array(texts, pa.large_string())})


def write_jsonl(path, texts, ids=None):
    with open(path, "w") as f:
        f.writelines(json.dumps({"id": ids[i] if ids else str(i), "text": t}) + "\n" for i, t in enumerate(texts))


# -- the reference -------------------------------------------------------------------------------
def ref_run(pool_texts, target_texts, work, k_list=(), ids=None, seeds=(0,), **kw):
    """Fit + weights with data-selection (timed), then its own resample for each k (not timed)."""
    from data_selection import HashedNgramDSIR

    os.makedirs(work, exist_ok=True)
    raw_p, tgt_p = os.path.join(work, "raw.jsonl"), os.path.join(work, "target.jsonl")
    ids = ids or [str(i) for i in range(len(pool_texts))]
    write_jsonl(raw_p, pool_texts, ids)
    write_jsonl(tgt_p, target_texts)
    t0 = time.process_time()
    ref = HashedNgramDSIR([raw_p], [tgt_p], cache_dir=os.path.join(work, "cache"), num_proc=1, **kw)
    ref.fit_importance_estimator()
    ref.compute_importance_weights()
    cpu = time.process_time() - t0
    logw = np.load(os.path.join(work, "cache", "log_importance_weights", "0.npy"))
    picks = {}
    pos = {x: i for i, x in enumerate(ids)}
    for k in k_list:
        for seed in seeds:
            np.random.seed(seed)  # the reference draws its Gumbel noise from numpy's global RNG
            out = os.path.join(work, f"sel{k}-{seed}")
            ref.resample(out_dir=out, num_to_sample=k, cache_dir=os.path.join(work, f"selcache{k}-{seed}"))
            mask = np.zeros(len(ids), bool)
            with open(os.path.join(out, "0.jsonl")) as f:
                for line in f:
                    mask[pos[json.loads(line)["id"]]] = True
            picks[k, seed] = mask
    return {"cpu_s": cpu, "logw": logw, "picks": picks, "ref": ref}


def ref_counts(texts, buckets=10000):
    """The reference's feature counts (its tokenizer, its sha256 bucket hash), with each distinct
    n-gram hashed once: same numbers as its get_ngram_counts, faster for evaluation."""
    from collections import Counter

    from data_selection.hashed_ngram_dsir import hash_buckets, wpt

    grams = Counter()
    for t in texts:
        w = wpt.tokenize(t.lower())
        grams.update(w)
        grams.update(" ".join(p) for p in zip(w, w[1:]))
    c = np.zeros(buckets, dtype=np.int64)
    for g, v in grams.items():
        c[hash_buckets(g, buckets)] += v
    return c


# -- ours ----------------------------------------------------------------------------------------
def ours_fit_weights(pool_shards, target, **kw):
    if "n" not in kw:
        kw.setdefault("keep", 0.1)
    sel = DSIRSelector(target=target, **kw)
    sel.seed_ = 0
    t0 = time.process_time()
    sel.fit(FakeFit(pool_shards))
    sc = score_all(sel, pool_shards)
    return sel, sc, time.process_time() - t0


def ours_select(pool_shards, target, **kw):
    sel, sc, cpu = ours_fit_weights(pool_shards, target, **kw)
    dec = sel.decide(sc, FakeDecide(pool_shards))
    return sel, sc, dec, cpu


def our_counts(texts, buckets=10000):
    f, o, _ = featurize(pa.array(texts, pa.large_string()), ngram_order=2)
    return np.bincount((f % np.uint64(buckets)).astype(np.int64), minlength=buckets)


def kl_reduction(target_c, raw_c, sel_c, smoothing=1.0):
    t = log_probs(target_c, smoothing)
    return kl(t, log_probs(raw_c, smoothing)) - kl(t, log_probs(sel_c, smoothing))


def random_mask(n, k, seed=0):
    m = np.zeros(n, bool)
    m[np.random.default_rng(seed).choice(n, k, replace=False)] = True
    return m


# -- sections ------------------------------------------------------------------------------------
def throughput(pool_texts, wiki_texts, n_pool, n_target, tmp):
    pool1k = pieces(pool_texts, limit=n_pool)
    tgt1k = pieces(wiki_texts, limit=n_target)
    print(f"throughput data: {len(pool1k)} pool docs and {len(tgt1k)} target docs of ~1 KB "
          f"(mean {np.mean([len(t.encode()) for t in pool1k]):.0f} bytes)", flush=True)
    r = ref_run(pool1k, tgt1k, os.path.join(tmp, "tp"))
    # ours: repeat to get a stable CPU time on the same data (numba compiled once before)
    ours_fit_weights([tbl(pool1k[:50])], tbl(tgt1k[:50], prefix="t"), min_tokens=0)
    shards, target = [tbl(pool1k)], tbl(tgt1k, prefix="t")
    reps = []
    for _ in range(5):
        sel, sc, cpu = ours_fit_weights(shards, target, min_tokens=0)
        reps.append(cpu)
    ours_cpu = float(np.median(reps))
    from scipy.stats import spearmanr

    rho = float(spearmanr(sc["score"], r["logw"]).statistic)
    res = {"pool_docs": len(pool1k), "target_docs": len(tgt1k),
           "ref_cpu_s": r["cpu_s"], "ref_docs_per_cpu_s": len(pool1k) / r["cpu_s"],
           "ours_cpu_s": ours_cpu, "ours_docs_per_cpu_s": len(pool1k) / ours_cpu,
           "ours_cpu_s_all_reps": reps, "speedup": r["cpu_s"] / ours_cpu,
           "logw_spearman_own_hashing": rho}
    print(f"  reference: {res['ref_docs_per_cpu_s']:.0f} docs/CPU-s ({r['cpu_s']:.2f} s)\n"
          f"  shardsift: {res['ours_docs_per_cpu_s']:.0f} docs/CPU-s ({ours_cpu:.3f} s, median of 5)\n"
          f"  speedup x{res['speedup']:.1f}; log-weight Spearman (each its own hashing/smoothing) {rho:.4f}",
          flush=True)
    return res


def quality_real(shards, domain, wiki_texts, target_tbl, tmp, fractions=(0.04, 0.10), seeds=(0, 1, 2, 3, 4)):
    pool_texts = [t for s in shards for t in s["text"].to_pylist()]
    ids = [i for s in shards for i in s["id"].to_pylist()]
    n = len(pool_texts)
    ks = [int(round(f * n)) for f in fractions]
    print(f"quality: {n} pool docs ({len(shards)} shard(s)) toward {len(wiki_texts)} Wikipedia articles; "
          "running the reference...", flush=True)
    r = ref_run(pool_texts, wiki_texts, os.path.join(tmp, "q"), k_list=ks, ids=ids, seeds=seeds)
    our_t, our_raw = our_counts(wiki_texts), our_counts(pool_texts)
    ref_t, ref_raw = ref_counts(wiki_texts), ref_counts(pool_texts)
    out = {"pool_docs": n, "target_docs": len(wiki_texts), "ref_fit_weights_cpu_s": r["cpu_s"],
           "seeds": list(seeds), "by_keep": {}}
    variants = {"ours_default": {}, "ours_length_normalize_sqrt": {"length_normalize": "sqrt"},
                "ours_length_normalize": {"length_normalize": True},
                "ours_chunk128": {"chunk_tokens": 128},
                "ours_length_normalize_chunk128": {"length_normalize": True, "chunk_tokens": 128}}
    fitted = {}
    for name, kw in variants.items():
        sel, sc, cpu = ours_fit_weights(shards, target_tbl, **kw)
        fitted[name] = (sel, sc, cpu)

    def ours_mask(name, k, seed):
        sel, sc, _ = fitted[name]
        sel.keep, sel.n, sel.seed_ = None, k, seed
        return sel.decide(sc, FakeDecide(shards)).keep

    def evaluate(m):
        texts = [pool_texts[i] for i in np.flatnonzero(m)]
        return {"selected": int(m.sum()),
                "encyclopedia_docs": int((domain[m] == "encyclopedia").sum()),
                "encyclopedia_share": float((domain[m] == "encyclopedia").mean()),
                "mean_selected_kb": float(np.mean([len(t) for t in texts]) / 1024),
                "kl_reduction_our_space": kl_reduction(our_t, our_raw, our_counts(texts)),
                "kl_reduction_ref_space": kl_reduction(ref_t, ref_raw, ref_counts(texts)),
                "top_domains": _top(domain[m])}

    for f, k in zip(fractions, ks):
        rows = {}
        per_seed = {"reference": [evaluate(r["picks"][k, s]) for s in seeds],
                    "ours_default": [evaluate(ours_mask("ours_default", k, s)) for s in seeds],
                    "ours_length_normalize_sqrt": [evaluate(ours_mask("ours_length_normalize_sqrt", k, s))
                                                   for s in seeds],
                    "random": [evaluate(random_mask(n, k, s)) for s in seeds]}
        for name, evs in per_seed.items():
            row = dict(evs[0])
            for key in ("encyclopedia_share", "kl_reduction_our_space", "kl_reduction_ref_space"):
                vals = [e[key] for e in evs]
                row[key] = float(np.mean(vals))
                row[key + "_sd"] = float(np.std(vals))
            row["encyclopedia_docs"] = float(np.mean([e["encyclopedia_docs"] for e in evs]))
            rows[name] = row
        for name in variants:
            if name not in rows:
                rows[name] = evaluate(ours_mask(name, k, 0))
        for name in variants:
            rows[name]["fit_weights_cpu_s"] = fitted[name][2]
        out["by_keep"][f"{f:g}"] = rows
        print(f"  keep {f:g} ({k} docs); mean (sd) over seeds {list(seeds)} where an sd is shown:")
        for name, row in rows.items():
            def sd(key, row=row):
                return f" ({row[key + '_sd']:.4f})" if key + "_sd" in row else ""

            print(f"    {name:31s} encyclopedia {row['encyclopedia_docs']:6.1f} ({row['encyclopedia_share']:.3f})"
                  f"  KL red. ours {row['kl_reduction_our_space']:.4f}{sd('kl_reduction_our_space')}"
                  f" ref {row['kl_reduction_ref_space']:.4f}{sd('kl_reduction_ref_space')}"
                  f"  mean {row['mean_selected_kb']:.1f} KB  {row['top_domains']}", flush=True)
    return out


def _top(d, n=4):
    u, c = np.unique(d, return_counts=True)
    o = np.argsort(-c)[:n]
    return {str(u[i]): int(c[i]) for i in o}


def quality_generated(tmp, n_docs):
    from shardsift.sample import generate

    pool, target = generate(n_docs, seed=0)
    domain = np.array(pool["domain"])
    texts = pool["text"]
    k = int((domain == "astronomy").sum())
    print(f"generated corpus: {len(texts)} docs, select {k} (= its astronomy count)", flush=True)
    r = ref_run(texts, target["text"], os.path.join(tmp, "gen"), k_list=[k], ids=pool["id"],
                min_example_length=0)
    shards = [tbl(texts, pool["id"])]
    sel, sc, dec, cpu = ours_select(shards, tbl(target["text"], prefix="t"), n=k, min_tokens=0)
    our_t, our_raw = our_counts(target["text"]), our_counts(texts)
    ref_t, ref_raw = ref_counts(target["text"]), ref_counts(texts)
    out = {"docs": len(texts), "k": k}
    for name, m in (("reference", r["picks"][k, 0]), ("ours_default", dec.keep), ("random", random_mask(len(texts), k))):
        sel_texts = [texts[i] for i in np.flatnonzero(m)]
        out[name] = {"astronomy_share": float((domain[m] == "astronomy").mean()),
                     "kl_reduction_our_space": kl_reduction(our_t, our_raw, our_counts(sel_texts)),
                     "kl_reduction_ref_space": kl_reduction(ref_t, ref_raw, ref_counts(sel_texts))}
        print(f"    {name:14s} astronomy share {out[name]['astronomy_share']:.3f}  KL red. ours "
              f"{out[name]['kl_reduction_our_space']:.4f} ref {out[name]['kl_reduction_ref_space']:.4f}",
              flush=True)
    out["ref_fit_weights_cpu_s"], out["ours_fit_weights_cpu_s"] = r["cpu_s"], cpu
    return out


def length_sweep(files, wiki_texts, fracs=(0.04, 0.1, 0.3)):
    """Ours only, fast: length_normalize none/sqrt/mean on the whole pool toward the whole target and on
    two generated corpora; mode topk (the Gumbel noise changes nothing at these weight gaps)."""
    from shardsift.sample import generate

    shards = [pq.read_table(f, columns=["id", "text", "domain"]) for f in files]
    cases = [("shared_corpora", [t for s in shards for t in s["text"].to_pylist()],
              np.concatenate([s["domain"].to_numpy(zero_copy_only=False) for s in shards]), wiki_texts,
              "encyclopedia")]
    for seed in (0, 1):
        pool, target = generate(4000, seed=seed)
        cases.append((f"generated_seed{seed}", pool["text"], np.array(pool["domain"]), target["text"],
                       "astronomy"))
    out = {}
    for name, texts, domain, target, want in cases:
        our_t, our_raw = our_counts(target), our_counts(texts)
        pool_tbl = tbl(texts)
        out[name] = {}
        for ln in ("none", "sqrt", "mean"):
            sel, sc, _ = ours_fit_weights([pool_tbl], tbl(target, prefix="t"), length_normalize=ln)
            for f in fracs:
                k = int(round(f * len(texts)))
                sel.keep, sel.n, sel.mode, sel.metrics = None, k, "topk", False
                m = sel.decide(sc, None).keep
                row = {"kl_reduction": kl_reduction(our_t, our_raw, our_counts([texts[i] for i in np.flatnonzero(m)])),
                       f"{want}_share": float((domain[m] == want).mean())}
                out[name][f"{ln}@{f:g}"] = row
                print(f"  {name:18s} length_normalize {ln:4s} keep {f:<4g} KL red. {row['kl_reduction']:.4f}  "
                      f"{want} share {row[want + '_share']:.3f}", flush=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    ap.add_argument("--pool-shards", type=int, default=None, help="pool shards for the quality run")
    ap.add_argument("--target-docs", type=int, default=None, help="Wikipedia articles for the quality run")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "dsir.json"))
    ap.add_argument("--sweep", action="store_true",
                    help="only the length_normalize sweep (ours, whole pool and generated corpora; fast)")
    args = ap.parse_args()
    try:
        import data_selection  # noqa: F401
    except ImportError:
        sys.exit("bench_dsir: needs the reference package: pip install 'shardsift[bench]'")
    files = sorted(glob.glob(os.path.join(CORPORA, "pool", "*.parquet")))
    wiki_path = os.path.join(CORPORA, "target", "wikipedia.parquet")
    if not files or not os.path.exists(wiki_path):
        sys.exit(f"bench_dsir: shared corpora not found at {CORPORA}")
    if args.sweep:
        wiki_all = pq.read_table(wiki_path, columns=["text"])["text"].to_pylist()
        res = {"command": " ".join(["python"] + sys.argv), "length_sweep": length_sweep(files, wiki_all)}
        out = args.out.replace(".json", "_sweep.json")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out, "w") as f:
            json.dump(res, f, indent=2)
        print(f"wrote {out}")
        return
    n_shards = args.pool_shards or (1 if args.quick else 2)
    n_target = args.target_docs or (300 if args.quick else 1000)
    wiki = pq.read_table(wiki_path, columns=["id", "text"])
    wiki_texts = wiki["text"].to_pylist()
    shards = [pq.read_table(f, columns=["id", "text", "domain"]) for f in files[:n_shards]]
    domain = np.concatenate([s["domain"].to_numpy(zero_copy_only=False) for s in shards])
    shards = [s.drop(["domain"]) for s in shards]  # the selectors never see the label
    res = {"machine": platform.platform(), "python": platform.python_version(), "quick": args.quick,
           "command": " ".join(["python"] + sys.argv)}
    with tempfile.TemporaryDirectory(prefix="bench_dsir_") as tmp:
        pool_texts = [t for s in shards for t in s["text"].to_pylist()]
        res["throughput"] = throughput(pool_texts, wiki_texts, 1000 if args.quick else 3000,
                                       300 if args.quick else 1000, tmp)
        rng = np.random.default_rng(0)
        tsub = [wiki_texts[i] for i in np.sort(rng.choice(len(wiki_texts), min(n_target, len(wiki_texts)),
                                                           replace=False))]
        res["quality_real"] = quality_real(shards, domain, tsub, tbl(tsub, prefix="t"), tmp)
        res["quality_generated"] = quality_generated(tmp, 1000 if args.quick else 4000)
        # ours alone on the whole 1 KB-piece pool, for a larger-scale throughput figure
        all_pool = [pq.read_table(f, columns=["id", "text"]) for f in (files[:2] if args.quick else files)]
        big = pieces([t for s in all_pool for t in s["text"].to_pylist()])
        tgt_tbl = tbl(pieces(wiki_texts), prefix="t")
        sel, sc, cpu = ours_fit_weights([tbl(big)], tgt_tbl, min_tokens=0)
        res["throughput_large"] = {"pool_docs": len(big), "target_docs": tgt_tbl.num_rows, "cpu_s": cpu,
                                   "docs_per_cpu_s": len(big) / cpu,
                                   "mb_per_cpu_s": (sum(len(t) for t in big) + sum(len(t) for t in
                                                    tgt_tbl["text"].to_pylist())) / 1e6 / cpu}
        print(f"shardsift alone, {len(big)} pool docs of ~1 KB + {tgt_tbl.num_rows} target docs: "
              f"{res['throughput_large']['docs_per_cpu_s']:.0f} docs/CPU-s "
              f"({res['throughput_large']['mb_per_cpu_s']:.1f} MB/CPU-s of pool+target text)")
    res["peak_rss_mb"] = peak_mb()
    print(f"peak memory (RSS, whole bench incl. the reference): {res['peak_rss_mb']:.0f} MB")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(res, f, indent=2, default=float)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
