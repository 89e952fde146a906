"""quality_classifier at scale: training on 100k documents of ~2 KB with the default settings, then
scoring and selecting over 1M documents with the trained model, each a fresh `shardsift select`
process measured whole (every process's CPU, driver and worker peak RSS); fastText's own
per-document predict on the same model and documents as the scoring reference, same run.

    python bench/bench_classifier.py [--docs 1000000] [--workers 2]

The corpus is bench/corpus.py's (eight topics). Positives: every topic-0 document of pool shards
1-4 (about 50,000); the stage's input: the 100,000-document subset, from which the default negative
sample takes 50,000 (``negative_sample: 50000``), so that the classes are equal and the model trains
on 90,000 documents with 10,000 held out. Every other setting is the default. The training
process's CPU (``train_cpu_s`` of the stage's metrics) is the training figure. The second run applies
the trained model (``model:``) to all --docs documents with ``keep: 0.125`` (topic 0's share of the
pool); the share of topic 0 in what it keeps is the quality yardstick. Writes
bench/figures/classifier.json.
"""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from common import DATA_DIR, FIGURES, command_line, corpus_meta, machine, measured_select, save, versions  # noqa: E402

REFERENCE_DOCS = 20_000


def topic_share(out: str) -> float:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    topic = pq.read_table(os.path.join(out, "data"), columns=["topic"]).column("topic")
    return float(pc.mean(pc.equal(topic, 0).cast("int8")).as_py())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    meta = corpus_meta(args.docs, 0, DATA_DIR, subset=100_000)
    root = os.path.join(DATA_DIR, f"corpus-n{args.docs}-s0")
    pool, subset = os.path.join(root, "pool"), os.path.join(root, "subset-100000")
    shards = sorted(glob.glob(os.path.join(pool, "*.parquet")))
    tmp = tempfile.mkdtemp(prefix="shardsift-bench-classifier-", dir=DATA_DIR)
    positives = os.path.join(tmp, "positives.parquet")
    parts = [pq.read_table(f, columns=["id", "text", "topic"]) for f in shards[1:5]]
    table = pa.concat_tables([t.filter(pc.equal(t.column("topic"), 0)) for t in parts])
    pq.write_table(table.select(["id", "text"]), positives)
    stage = {"positives": positives, "negative_sample": 50_000}

    fit, fit_man = measured_select({"input": {"path": subset}, "output": {"path": os.path.join(tmp, "fit", "out"), "scores": False},
                           "workers": args.workers, "seed": 0,
                           "stages": [{"quality_classifier": {**stage, "keep": 0.125}}]}, os.path.join(tmp, "fit"))
    st = fit_man["stages"][-1]
    m = st["metrics"]
    model = os.path.join(tmp, "model.bin")
    shutil.copy(glob.glob(os.path.join(tmp, "fit", "out", ".shardsift", "models", "*", "quality_classifier.bin"))[0],
                model)
    training = {"positives_read": m["positives_read"], "negatives_read": m["negatives_read"],
                "train_docs": m["train_positives"] + m["train_negatives"], "holdout_docs": m.get("holdout_docs"),
                "train_cpu_s": m["train_cpu_s"], "train_wall_s": m["train_wall_s"],
                "holdout_auc": m.get("holdout_auc"), "holdout_precision": m.get("holdout_precision"),
                "holdout_recall": m.get("holdout_recall"), "model_mb": os.path.getsize(model) / 1e6,
                "run": {k: fit[k] for k in ("cpu_s", "wall_s", "driver_peak_rss_mb", "worker_peak_rss_mb")},
                "kept_topic0_share": topic_share(os.path.join(tmp, "fit", "out"))}
    print(f"training: {training['train_docs']:,} documents, {training['train_cpu_s']:.1f} CPU s "
          f"({training['train_wall_s']:.1f} s wall), holdout AUC {training['holdout_auc']:.4f}, "
          f"model {training['model_mb']:.0f} MB", flush=True)

    score, score_man = measured_select({"input": {"path": pool}, "output": {"path": os.path.join(tmp, "score", "out"),
                                                                   "scores": False},
                               "workers": args.workers, "seed": 0,
                               "stages": [{"quality_classifier": {"model": model, "keep": 0.125}}]},
                              os.path.join(tmp, "score", "cfg"))
    sst = score_man["stages"][-1]
    scoring = {"docs": score_man["docs_in"], "kept": sst["kept"], "docs_per_cpu_s": score_man["docs_in"] / score["cpu_s"],
               "stage_cpu_s": sst["cpu_s"], "stage_docs_per_cpu_s": score_man["docs_in"] / sst["cpu_s"],
               **{k: score[k] for k in ("cpu_s", "wall_s", "driver_peak_rss_mb", "worker_peak_rss_mb")},
               "kept_topic0_share": topic_share(os.path.join(tmp, "score", "out"))}
    print(f"scoring + selecting {scoring['docs']:,}: {scoring['docs_per_cpu_s']:,.0f} docs/CPU-s over the run, "
          f"stage {scoring['stage_docs_per_cpu_s']:,.0f}; driver {scoring['driver_peak_rss_mb']:.0f} MB, "
          f"worker {scoring['worker_peak_rss_mb']:.0f} MB; topic-0 share kept {scoring['kept_topic0_share']:.3f}",
          flush=True)

    import fasttext

    ft = fasttext.load_model(model)
    texts = pq.read_table(shards[5], columns=["text"]).column("text").slice(0, REFERENCE_DOCS).to_pylist()
    c0 = time.process_time()
    for t in texts:  # the reference: fastText's Python API, one document at a time (as DCLM applies it)
        ft.predict(" ".join(t.lower().split()))
    ref_cpu = time.process_time() - c0
    reference = {"docs": len(texts), "cpu_s": ref_cpu, "docs_per_cpu_s": len(texts) / ref_cpu,
                 "what": "fasttext predict per document on lowercased, whitespace-collapsed text"}
    print(f"reference: fastText predict per document {reference['docs_per_cpu_s']:,.0f} docs/CPU-s", flush=True)
    result = {"what": "quality_classifier training on 100k documents and scoring/selecting over the corpus, "
                      "each a measured shardsift select run; fastText's per-document predict as the reference",
              "corpus": {"generator": "bench/corpus.py", "docs": args.docs,
                         "mean_doc_bytes": meta.get("mean_doc_bytes")},
              "workers": args.workers, "training": training, "scoring": scoring, "reference": reference,
              "scoring_vs_reference_stage": scoring["stage_docs_per_cpu_s"] / reference["docs_per_cpu_s"],
              "versions": versions("shardsift", "fasttext-numpy2-wheel", "pyarrow", "numpy"),
              "machine": machine(), "command": command_line()}
    print("wrote", save("classifier", result, FIGURES))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
