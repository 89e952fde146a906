"""shardsift against the reference tools, in the same run, on bench/corpus.py's generated corpus.

    python bench/vs_reference.py [--docs 1000000] [--workers 2] [--ref-docs-minhash 100000]
                                 [--ref-docs-dsir 20000] [--only minhash,dsir,overhead] [--repeat K]

Three comparisons, every measurement a fresh process tree (bench/common.py: CPU of the process and
all its descendants, peak RSS of the driver and of its workers):

- minhash: `shardsift select` with one minhash_dedup stage (threshold 0.8), end to end (read,
  signatures, LSH, verification, write), against datatrove 0.10.1's four MinHash stages (whitespace
  word tokenizer, its default 14 x 8 buckets, Parquet in and out), end to end.
- dsir: the dsir stage's CPU from the manifest (fit on target and pool, importance weights, the
  keep-0.1 selection) against data-selection 1.0.3's fit_importance_estimator +
  compute_importance_weights (num_proc=1; the JSONL it reads is written before its timer starts);
  both processes end to end too.
- overhead: `shardsift select` with one `length` stage (read + filter + write) against plain
  pyarrow reading every shard and writing it back (zstd), the cheapest Parquet-to-Parquet copy.

The references are pure Python and slow: each runs on the first --ref-docs-* documents of the same
corpus when that is fewer than --docs, and the JSON says so (`reference_docs`); per-CPU-second rates
are compared, and shardsift is measured at the reference's size too (`shardsift_at_reference_size`).

Start-up is reported apart from throughput. For each tool, on a 250-document input that goes
through every code path (bench/corpus.py write_tiny): cold = the first run with an empty numba
cache (NUMBA_CACHE_DIR a fresh folder: what a first run after install pays), warm = the same run
again (the fixed start-up of every later run). Marginal docs/CPU-s = (N - 250) / (CPU at N - warm).
Results merge into bench/figures/vs_reference.json by size.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import (  # noqa: E402
    DATA_DIR,
    FIGURES,
    child_env,
    command_line,
    corpus_meta,
    machine,
    measure,
    run_select,
    save,
    self_peak_rss_mb,
    versions,
)

GOALS = {"minhash": {"ratio_at_least": 20.0}, "dsir": {"ratio_at_least": 30.0}, "overhead": {"cpu_ratio_at_most": 1.5}}


# -- the reference tools, each run as `python vs_reference.py --child NAME IN OUT [TARGET]` ----------

def child_datatrove(inp, out, _target):
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import ParquetWriter
    from datatrove.utils.hashing import HashConfig
    from datatrove.utils.word_tokenizers import WordTokenizer

    class Whitespace(WordTokenizer):
        """Whitespace words, as shardsift shingles: datatrove's default needs a language model."""

        def word_tokenize(self, text):
            return text.split()

        def sent_tokenize(self, text):
            return [text]

        def span_tokenize(self, text):
            return [(0, len(text))]

    import datatrove.utils.hashes.xxhash as dt_xx
    import xxhash

    # datatrove 0.10.1 hands str to xxhash, which xxhash >= 4 refuses; encode as older xxhash did
    dt_xx.xxhash64 = lambda data: xxhash.xxh64_intdigest(data.encode() if isinstance(data, str) else data)
    dt_xx.xxhash32 = lambda data: xxhash.xxh32_intdigest(data.encode() if isinstance(data, str) else data)
    cfg = MinhashConfig(hash_config=HashConfig(precision=64))
    tok = Whitespace()
    w, logs = os.path.join(out, "work"), os.path.join(out, "logs")

    def reader():
        return ParquetReader(inp, glob_pattern="*.parquet", text_key="text", id_key="id")

    def run(steps, tasks, name):
        LocalPipelineExecutor(steps, tasks=tasks, workers=1, logging_dir=os.path.join(logs, name)).run()

    run([reader(), MinhashDedupSignature(output_folder=f"{w}/sigs", config=cfg, language=tok)], 1, "s1")
    run([MinhashDedupBuckets(input_folder=f"{w}/sigs", output_folder=f"{w}/buckets", config=cfg)],
        cfg.num_buckets, "s2")
    run([MinhashDedupCluster(input_folder=f"{w}/buckets", output_folder=f"{w}/remove", config=cfg)], 1, "s3")
    run([reader(), MinhashDedupFilter(input_folder=f"{w}/remove"),
         ParquetWriter(output_folder=os.path.join(out, "data"))], 1, "s4")
    import pyarrow.parquet as pq

    kept = sum(pq.ParquetFile(f).metadata.num_rows for f in glob.glob(os.path.join(out, "data", "*.parquet")))
    return {"docs_kept": kept, "bands_rows": [cfg.num_buckets, cfg.hashes_per_bucket]}


def child_data_selection(inp, out, target):
    import resource

    import pyarrow.parquet as pq
    from data_selection import HashedNgramDSIR

    def cpu():
        s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime

    os.makedirs(out, exist_ok=True)
    paths = {}
    for name, folder in (("raw", inp), ("target", target)):
        paths[name] = os.path.join(out, f"{name}.jsonl")
        with open(paths[name], "w") as fh:
            for f in sorted(glob.glob(os.path.join(folder, "*.parquet"))):
                t = pq.ParquetFile(f).read(columns=["id", "text"])
                fh.writelines(json.dumps({"id": i, "text": x}) + "\n"
                              for i, x in zip(t["id"].to_pylist(), t["text"].to_pylist()))
    c0, t0 = cpu(), time.perf_counter()
    ref = HashedNgramDSIR([paths["raw"]], [paths["target"]], cache_dir=os.path.join(out, "cache"), num_proc=1)
    ref.fit_importance_estimator()
    ref.compute_importance_weights()
    return {"fit_weights_cpu_s": cpu() - c0, "fit_weights_wall_s": time.perf_counter() - t0}


def child_pyarrow(inp, out, _target):
    import pyarrow.parquet as pq

    os.makedirs(out, exist_ok=True)
    rows = 0
    for i, f in enumerate(sorted(glob.glob(os.path.join(inp, "*.parquet")))):
        t = pq.ParquetFile(f).read()
        rows += t.num_rows
        pq.write_table(t, os.path.join(out, f"part-{i:05d}.parquet"), compression="zstd")
    return {"docs_kept": rows}


CHILDREN = {"datatrove": child_datatrove, "data_selection": child_data_selection, "pyarrow": child_pyarrow}


def run_reference(name, inp, docs_in, tmp_root, target=None, numba_cache=None) -> dict:
    tmp = tempfile.mkdtemp(prefix=f"ref-{name}-", dir=tmp_root)
    out = os.path.join(tmp, "out")
    cmd = [sys.executable, os.path.abspath(__file__), "--child", name, inp, out, target or ""]
    r = measure(cmd, env=child_env(numba_cache), log=os.path.join(tmp, "log.txt"))
    if r["rc"] == 0:
        with open(out + ".result.json") as fh:
            r.update(json.load(fh))
    else:
        with open(os.path.join(tmp, "log.txt")) as fh:
            r["error"] = fh.read()[-3000:]
    r["docs_in"] = docs_in
    r["docs_per_cpu_s"] = r["docs_in"] / r["cpu_s"] if r["rc"] == 0 else None
    shutil.rmtree(tmp, ignore_errors=True)
    return r


# -- measuring -------------------------------------------------------------------------------------

KEEP = ("rc", "wall_s", "cpu_s", "user_s", "sys_s", "docs_in", "docs_kept", "docs_per_cpu_s", "driver_peak_rss_mb",
        "worker_peak_rss_mb", "tree_peak_rss_mb", "work_dir_bytes", "output_bytes", "fit_weights_cpu_s",
        "fit_weights_wall_s", "bands_rows", "error", "load_avg_1min_after")


def slim(r: dict, stage: str | None = None) -> dict:
    out = {k: r[k] for k in KEEP if k in r}
    if "manifest" in r:
        out["manifest_peak_rss_mb"] = r["manifest"].get("peak_rss_mb")
        if stage:
            st = [s for s in r["manifest"]["stages"] if s["name"] == stage]
            if st:
                out["stage_cpu_s"] = st[0]["cpu_s"]
                out["stage_docs_per_cpu_s"] = st[0]["docs_in"] / st[0]["cpu_s"] if st[0]["cpu_s"] else None
    return out


def median_run(runs: list[dict]) -> dict:
    """The run with the median CPU time; every run's CPU kept beside it."""
    ok = [r for r in runs if r.get("rc") == 0]
    if not ok:
        return runs[-1]
    best = sorted(ok, key=lambda r: r["cpu_s"])[(len(ok) - 1) // 2]
    if len(runs) > 1:
        best = dict(best, cpu_s_runs=[r.get("cpu_s") for r in runs])
    return best


def startup(fn, tmp_root) -> dict:
    """Cold (empty numba cache) then warm (same cache) CPU of a run on the tiny input; warm best of 2."""
    cache = tempfile.mkdtemp(prefix="numba-cold-", dir=tmp_root)
    cold = fn(cache)
    warm = [fn(cache) for _ in range(2)]
    w = min(warm, key=lambda r: r["cpu_s"])
    return {"cold_cpu_s": cold["cpu_s"], "cold_wall_s": cold["wall_s"], "warm_cpu_s": w["cpu_s"],
            "warm_wall_s": w["wall_s"], "warm_cpu_s_runs": [r["cpu_s"] for r in warm],
            "cold_driver_peak_rss_mb": cold.get("driver_peak_rss_mb"), "rc": max(cold["rc"], w["rc"]),
            "cache": cache}


def marginal(n, cpu, tiny_n, warm_cpu):
    extra = cpu - warm_cpu
    return (n - tiny_n) / extra if extra > 0 else None


def side(label, n, big: dict, start: dict, tiny_n: int, stage: str | None = None) -> dict:
    s = slim(big, stage)
    if "cpu_s_runs" in big:
        s["cpu_s_runs"] = big["cpu_s_runs"]
    s.update({k: v for k, v in start.items() if k != "cache"})
    s["marginal_docs_per_cpu_s"] = marginal(n, big["cpu_s"], tiny_n, start["warm_cpu_s"]) if big.get("rc") == 0 else None
    if big.get("rc") != 0:
        s["missing"] = f"{label} failed (exit status {big.get('rc')})"
    return s


def compare_minhash(meta, args, tmp_root, tiny, tiny_n):
    stages = [{"minhash_dedup": {"threshold": 0.8}}]
    n = meta["docs"]
    ref_n = min(n, args.ref_docs_minhash)
    ref_in = corpus_meta(n, args.seed, args.data_dir, subset=ref_n)["subset"]

    def ours(inp, cache, label):
        return run_select(inp, stages, args.workers, tmp_root, numba_cache=cache, label=label)

    st = startup(lambda c: ours(tiny, c, "mh-tiny"), tmp_root)
    cache = st["cache"]
    ref_st = startup(lambda c: run_reference("datatrove", tiny, tiny_n, tmp_root, numba_cache=c), tmp_root)
    big = median_run([ours(meta["pool"], cache, "mh-big") for _ in range(args.repeat)])
    ref = median_run([run_reference("datatrove", ref_in, ref_n, tmp_root, numba_cache=ref_st["cache"])
                      for _ in range(args.repeat)])
    at_ref = ours(ref_in, cache, "mh-refsize") if ref_n < n else big
    res = {"workload": "MinHash dedup end to end", "docs": n, "reference_docs": ref_n,
           "reference": "datatrove 0.10.1 (4 MinHash stages, whitespace tokenizer, 14x8 buckets)",
           "shardsift": side("shardsift", n, big, st, tiny_n, "minhash_dedup"),
           "datatrove": side("datatrove", ref_n, ref, ref_st, tiny_n),
           "shardsift_at_reference_size": slim(at_ref, "minhash_dedup")}
    _ratios(res, "datatrove", "docs_per_cpu_s", "docs_per_cpu_s")
    return res


def compare_dsir(meta, args, tmp_root, tiny, tiny_n):
    target = meta["target"]
    stages = [{"dsir": {"target": {"path": target}, "keep": 0.1}}]
    n = meta["docs"]
    ref_n = min(n, args.ref_docs_dsir)
    ref_in = corpus_meta(n, args.seed, args.data_dir, subset=ref_n)["subset"]

    def ours(inp, cache, label):
        return run_select(inp, stages, args.workers, tmp_root, numba_cache=cache, label=label)

    st = startup(lambda c: ours(tiny, c, "dsir-tiny"), tmp_root)
    ref_st = startup(lambda c: run_reference("data_selection", tiny, tiny_n, tmp_root, target=target, numba_cache=c),
                     tmp_root)
    big = median_run([ours(meta["pool"], st["cache"], "dsir-big") for _ in range(args.repeat)])
    ref = median_run([run_reference("data_selection", ref_in, ref_n, tmp_root, target=target, numba_cache=ref_st["cache"])
                      for _ in range(args.repeat)])
    at_ref = ours(ref_in, st["cache"], "dsir-refsize") if ref_n < n else big
    res = {"workload": "DSIR fit + weights", "docs": n, "reference_docs": ref_n,
           "target_docs": meta["target_docs"],
           "reference": "data-selection 1.0.3 HashedNgramDSIR (num_proc=1; fit_importance_estimator + "
                        "compute_importance_weights; JSONL written before its timer)",
           "note": "shardsift's figure is the dsir stage's CPU in the manifest: fit, weights and the keep-0.1 "
                   "selection (a little more than fit + weights)",
           "shardsift": side("shardsift", n, big, st, tiny_n, "dsir"),
           "data_selection": side("data-selection", ref_n, ref, ref_st, tiny_n),
           "shardsift_at_reference_size": slim(at_ref, "dsir")}
    ds = res["data_selection"]
    if ds.get("fit_weights_cpu_s"):
        ds["fit_weights_docs_per_cpu_s"] = ref_n / ds["fit_weights_cpu_s"]
    _ratios(res, "data_selection", "stage_docs_per_cpu_s", "fit_weights_docs_per_cpu_s")
    # end to end too: both whole processes (ours reads Parquet and writes the selection; the
    # reference's process also writes its JSONL input, which its fit+weights figure leaves out)
    if res["shardsift"].get("docs_per_cpu_s") and ds.get("docs_per_cpu_s"):
        res["end_to_end_ratio"] = res["shardsift"]["docs_per_cpu_s"] / ds["docs_per_cpu_s"]
    return res


def compare_overhead(meta, args, tmp_root, tiny, tiny_n):
    stages = [{"length": {"min_words": 20}}]
    n = meta["docs"]

    def ours(inp, cache, label):
        return run_select(inp, stages, args.workers, tmp_root, numba_cache=cache, label=label)

    st = startup(lambda c: ours(tiny, c, "len-tiny"), tmp_root)
    ref_st = startup(lambda c: run_reference("pyarrow", tiny, tiny_n, tmp_root, numba_cache=c), tmp_root)
    bigs, refs = [], []
    for _ in range(args.repeat):  # interleaved: a slow spell of a shared machine hits both
        bigs.append(ours(meta["pool"], st["cache"], "len-big"))
        refs.append(run_reference("pyarrow", meta["pool"], n, tmp_root))
    big, ref = median_run(bigs), median_run(refs)
    res = {"workload": "pipeline overhead (read + length + write)", "docs": n, "reference_docs": n,
           "reference": "plain pyarrow: ParquetFile.read + write_table(zstd) of every shard",
           "shardsift": side("shardsift", n, big, st, tiny_n, "length"),
           "pyarrow": side("pyarrow", n, ref, ref_st, tiny_n)}
    if big.get("rc") == 0 and ref.get("rc") == 0:
        res["cpu_ratio"] = big["cpu_s"] / ref["cpu_s"]
        m_ours, m_ref = res["shardsift"]["marginal_docs_per_cpu_s"], res["pyarrow"]["marginal_docs_per_cpu_s"]
        res["marginal_cpu_ratio"] = m_ref / m_ours if m_ours and m_ref else None
        res["ratio"] = ref["cpu_s"] / big["cpu_s"]  # docs/CPU-s of shardsift over pyarrow's (<= 1)
    return res


def _ratios(res, ref_key, ours_field, ref_field):
    o, r = res["shardsift"], res[ref_key]
    if o.get(ours_field) and r.get(ref_field):
        res["ratio"] = o[ours_field] / r[ref_field]
    if o.get("marginal_docs_per_cpu_s") and r.get("marginal_docs_per_cpu_s"):
        res["marginal_ratio"] = o["marginal_docs_per_cpu_s"] / r["marginal_docs_per_cpu_s"]
    a = res.get("shardsift_at_reference_size", {})
    if a.get(ours_field) and r.get(ref_field):
        res["ratio_at_reference_size"] = a[ours_field] / r[ref_field]


COMPARISONS = {"minhash": compare_minhash, "dsir": compare_dsir, "overhead": compare_overhead}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ref-docs-minhash", type=int, default=100_000, help="datatrove's share of the corpus")
    ap.add_argument("--ref-docs-dsir", type=int, default=20_000, help="data-selection's share of the corpus")
    ap.add_argument("--only", default=",".join(COMPARISONS))
    ap.add_argument("--repeat", type=int, default=1, help="runs at full size per tool; the median CPU counts")
    ap.add_argument("--data-dir", default=DATA_DIR)
    ap.add_argument("--out", default=os.path.join(FIGURES, "vs_reference.json"))
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        name, inp, out, target = args.child
        res = CHILDREN[name](inp, out, target or None)
        with open(out + ".result.json", "w") as fh:
            json.dump(res, fh)
        return

    result = {"bench": "vs_reference", "sizes": {}}
    if os.path.exists(args.out):
        with open(args.out) as fh:
            result = json.load(fh)
    result.update(machine=machine(), goals=GOALS,
                  versions=versions("shardsift", "datatrove", "data-selection", "pyarrow", "numpy", "numba"))
    os.makedirs(args.data_dir, exist_ok=True)
    tmp_root = tempfile.mkdtemp(prefix="vsref-", dir=args.data_dir)
    meta = corpus_meta(args.docs, args.seed, args.data_dir, tiny=os.path.join(tmp_root, "tiny"))
    entry = result["sizes"].get(str(args.docs), {})
    entry.update(docs=args.docs, workers=args.workers, command=command_line(),
                 measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 corpus={k: meta[k] for k in ("text_bytes", "mean_doc_bytes", "shards", "seed", "target_docs")})
    entry.setdefault("comparisons", {})
    try:
        tiny, tiny_n = meta["tiny"], meta["tiny_docs"]
        entry["tiny_docs"] = tiny_n
        for name in [x for x in args.only.split(",") if x]:
            t0 = time.perf_counter()
            try:
                res = COMPARISONS[name](meta, args, tmp_root, tiny, tiny_n)
            except Exception as err:  # recorded, not hidden: the other comparisons still run
                res = {"missing": f"{type(err).__name__}: {err}"}
            res["bench_wall_s"] = time.perf_counter() - t0
            res["goal"] = GOALS[name]
            # each comparison names its own command: a later --only run leaves the others' in place
            res["command"], res["measured_at"] = entry["command"], entry["measured_at"]
            entry["comparisons"][name] = res
            entry["bench_parent_peak_rss_mb"] = self_peak_rss_mb()
            result["sizes"][str(args.docs)] = entry
            folder, fname = os.path.split(args.out)
            save(fname[:-5], result, folder=folder)
            print(report_line(name, res), flush=True)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    print(f"wrote {args.out}")


def report_line(name, r) -> str:
    if "missing" in r:
        return f"{name}: missing ({r['missing']})"
    o = r["shardsift"]
    ref_key = next(k for k in ("datatrove", "data_selection", "pyarrow") if k in r)
    ref = r[ref_key]

    def f(x, fmt="{:,.0f}"):
        return "n/a" if x is None else fmt.format(x)

    line = (f"{name}: shardsift {f(o.get('docs_per_cpu_s'))} docs/CPU-s at {r['docs']:,} "
            f"(marginal {f(o.get('marginal_docs_per_cpu_s'))}; start-up cold {f(o.get('cold_cpu_s'), '{:.2f}')} / warm "
            f"{f(o.get('warm_cpu_s'), '{:.2f}')} CPU-s); {ref_key} {f(ref.get('docs_per_cpu_s'))} at "
            f"{r['reference_docs']:,} (marginal {f(ref.get('marginal_docs_per_cpu_s'))})")
    if name == "dsir":
        line += (f"; stage {f(o.get('stage_docs_per_cpu_s'))} vs fit+weights "
                 f"{f(ref.get('fit_weights_docs_per_cpu_s'))}")
    if name == "overhead":
        line += f"; CPU ratio shardsift/pyarrow {f(r.get('cpu_ratio'), '{:.2f}')}x (goal <= 1.5x)"
    else:
        line += f"; ratio {f(r.get('ratio'), '{:.1f}')}x, marginal {f(r.get('marginal_ratio'), '{:.1f}')}x"
    return line


if __name__ == "__main__":
    main()
