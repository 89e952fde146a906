"""Speed of `decontaminate` in documents per CPU-second, against a plain-Python n-gram set.

The pool is the generated benchmark corpus (bench/corpus.py, --docs documents of ~2 KB); the
evaluation set is its generated target corpus (>= 1M distinct 13-grams), with --planted pool
documents given a 13-word window of a target text, so the count of documents removed is known.
Measured in this process, kernels warmed first: start-up (the word table and the kernels'
loading, once per process) on its own line, the fit, and the score over every pool document in
batches of --batch. The reference is what lm-eval-style scripts do (a Python set of word 13-gram
tuples, regex words, one loop per document), on the first --reference-docs documents; both sides
are checked to remove the same documents there. Then the whole pipeline through the CLI (scan,
the stage, the output) with 2 workers, beside the same pipeline with a `length` stage only.

    python bench/bench_decontaminate.py [--docs 100000] [--reference-docs 2000]
Writes bench/figures/decontaminate.json.
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, ROOT)

from common import DATA_DIR, FIGURES, command_line, machine, run_select, save  # noqa: E402


def reference_removed(eval_texts, texts, n=13) -> tuple[list[bool], float, float]:
    """(removed per text, fit CPU-s, score CPU-s) of the plain-Python reference."""
    t0 = time.process_time()
    grams = set()
    for t in eval_texts:
        w = re.findall(r"[^\W_]+", t.lower())
        grams.update(hash(tuple(w[i:i + n])) for i in range(len(w) - n + 1))
    t1 = time.process_time()
    out = []
    for t in texts:
        w = re.findall(r"[^\W_]+", t.lower())
        out.append(any(hash(tuple(w[i:i + n])) in grams for i in range(len(w) - n + 1)))
    return out, t1 - t0, time.process_time() - t1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--reference-docs", type=int, default=2000)
    ap.add_argument("--planted", type=int, default=500)
    ap.add_argument("--batch", type=int, default=8192)
    ap.add_argument("--no-pipeline", action="store_true", help="skip the CLI runs")
    args = ap.parse_args()

    t_import = time.process_time()
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from corpus import generate

    from shardsift.api import Docs
    from shardsift.engine.contexts import read_corpus
    from shardsift.selectors.decontaminate.selector import Decontaminate
    import_cpu = time.process_time() - t_import

    meta = generate(args.docs, 0, DATA_DIR)
    target = sorted(glob.glob(os.path.join(meta["target"], "*.parquet")))[0]
    eval_texts = pq.read_table(target, columns=["text"]).column("text").to_pylist()
    tmp = tempfile.mkdtemp(prefix="decontaminate-", dir=DATA_DIR)
    # the pool with planted windows: every k-th document gets 13 words of a target text
    pool = pa.concat_tables([pq.read_table(f, columns=["id", "text"])
                             for f in sorted(glob.glob(os.path.join(meta["pool"], "*.parquet")))])
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(pool.num_rows, args.planted, replace=False))
    texts = pool.column("text").to_pylist()
    for r in rows.tolist():
        w = eval_texts[int(rng.integers(len(eval_texts)))].split()
        k = int(rng.integers(0, len(w) - 13))
        texts[r] = texts[r] + " " + " ".join(w[k:k + 13]).upper()
    pool = pa.table({"id": pool.column("id"), "text": pa.array(texts, pa.string())})
    os.makedirs(os.path.join(tmp, "pool"))
    pool_path = os.path.join(tmp, "pool", "part-00000.parquet")
    pq.write_table(pool, pool_path, compression="zstd")
    n_bytes = int(pc.sum(pc.binary_length(pool.column("text"))).as_py())

    class Fit:
        def read_input(self, spec, what):
            return read_corpus(spec, what)

    bench = [{"path": target, "name": "target"}]
    tiny = os.path.join(tmp, "tiny.parquet")
    pq.write_table(pa.table({"text": eval_texts[:3]}), tiny)

    def docs_of(tbl):
        z = np.zeros(tbl.num_rows, np.int64)
        return Docs(tbl, text_column="text", id_column="id", row=np.arange(tbl.num_rows), n_words=z,
                    n_bytes=z, shard="pool", shard_index=0)

    # start-up, once per process: the word table, and the kernels loaded (a fit and a score of a few texts)
    c0 = time.process_time()
    warm = Decontaminate(benchmarks=[{"path": tiny}])
    warm.setup()
    warm.fit(Fit())
    warm.score(docs_of(pool.slice(0, 10)))
    startup = time.process_time() - c0
    sel = Decontaminate(benchmarks=bench)
    c0 = time.process_time()
    sel.setup()
    fit_metrics = sel.fit(Fit())
    fit_cpu = time.process_time() - c0
    batches = [pa.Table.from_batches([b]) for b in pool.to_batches(max_chunksize=args.batch)]
    c0 = time.process_time()
    matches = [sel.score(docs_of(b))["matches"] for b in batches]
    score_cpu = time.process_time() - c0
    removed = np.concatenate(matches) > 0
    planted = np.zeros(pool.num_rows, bool)
    planted[rows] = True

    m = min(args.reference_docs, pool.num_rows)
    ref, ref_fit, ref_score = reference_removed(eval_texts, texts[:m])
    agree = float((np.array(ref) == removed[:m]).mean())
    result = {
        "corpus": f"bench/corpus.py, {args.docs} documents (seed 0), {args.planted} with a planted 13-word "
                  "window of a target text (upper-cased)",
        "docs": pool.num_rows, "text_mb": round(n_bytes / 1e6, 1), "mean_doc_bytes": round(n_bytes / pool.num_rows),
        "benchmark": {"texts": len(eval_texts), "ngrams": fit_metrics["ngrams"], "set_mb": round(fit_metrics["set_bytes"] / 1e6, 1)},
        "startup_cpu_s": round(startup, 3),
        "import_cpu_s": round(import_cpu, 3),
        "shardsift": {"fit_cpu_s": round(fit_cpu, 3), "score_cpu_s": round(score_cpu, 3),
                      "docs_per_cpu_s": round(pool.num_rows / score_cpu),
                      "mb_per_cpu_s": round(n_bytes / 1e6 / score_cpu, 1),
                      "docs_removed": int(removed.sum()), "planted_removed": int(removed[planted].sum()),
                      "unplanted_removed": int(removed[~planted].sum())},
        "reference": {"what": "Python set of hashed word 13-gram tuples (regex words), one loop per document",
                      "docs": m, "fit_cpu_s": round(ref_fit, 3), "score_cpu_s": round(ref_score, 3),
                      "docs_per_cpu_s": round(m / ref_score), "agreement_on_its_docs": agree},
        "speedup_score": round((pool.num_rows / score_cpu) / (m / ref_score), 1),
        "batch": args.batch,
    }
    if not args.no_pipeline:
        stage = [{"decontaminate": {"benchmarks": bench}}]
        runs = {}
        for label, stages in (("decontaminate", stage), ("length_only", [{"length": {"min_words": 1}}])):
            r = run_select(os.path.join(tmp, "pool"), stages, 2, tmp, label=label)
            if r["rc"] != 0:
                sys.exit(f"{label}: the pipeline failed: {r.get('error', '')[-500:]}")
            runs[label] = {"cpu_s": round(r["cpu_s"], 2), "wall_s": round(r["wall_s"], 2),
                           "docs_per_cpu_s": round(pool.num_rows / r["cpu_s"]),
                           "docs_removed": r["docs_in"] - r["docs_kept"],
                           "stage_cpu_s": round(r["manifest"]["stages"][1]["cpu_s"], 2),
                           "worker_peak_rss_mb": round(r["worker_peak_rss_mb"]),
                           "driver_peak_rss_mb": round(r["driver_peak_rss_mb"])}
        result["pipeline_2_workers"] = runs
    result.update(command=command_line(), machine=machine())
    print(f"start-up: {startup:.3f} CPU-s per process (word table, kernels loaded)")
    print(f"fit: {fit_metrics['ngrams']} 13-grams in {fit_cpu:.2f} CPU-s")
    print(f"score: {result['shardsift']['docs_per_cpu_s']} docs/CPU-s ({result['shardsift']['mb_per_cpu_s']} MB/CPU-s); "
          f"reference {result['reference']['docs_per_cpu_s']} docs/CPU-s; {result['speedup_score']}x")
    print(save("decontaminate", result, FIGURES))


if __name__ == "__main__":
    main()
