"""Speed of the four web-text rule filters against datatrove 0.10.1's, in documents per CPU-second.

shardsift's gopher_repetition, gopher_quality, c4_quality and fineweb_quality run together (each
on every document, as in one fused scan) over the shared pool repeated to at least --docs
documents, in batches of --batch; datatrove's four filters run over a seeded sample of
--reference-docs pool documents (its per-document Python is slow), which shardsift's also run on
for a same-documents figure. Two datatrove references run on that sample: configured as shardsift's
rules count (words split on whitespace, sentences after . ! ? and whitespace; tests/quality_reference.py),
and as datatrove ships (its default English word tokenizer: spaCy's blank English pipeline and
rule-based sentencizer, no model download; in a child process, since the first one patches
datatrove). shardsift's agreement with each on the sample is recorded. Numba kernels, the character
table and spaCy's pipeline are loaded and warmed up before timing.

    python bench/bench_quality_rules.py [--docs 100000] [--reference-docs 4000]
Writes bench/figures/quality_rules.json.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import time
from importlib.metadata import version

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, ROOT)

from common import corpora, write_figure  # noqa: E402

NAMES = ("gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality")


def sample_texts(pool, n: int) -> list:
    import numpy as np
    import pyarrow as pa

    rows = np.sort(np.random.default_rng(0).choice(len(pool), n, replace=False))
    return pool.take(pa.array(rows))


def read_pool():
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted(glob.glob(os.path.join(corpora("pool"), "*.parquet")))
    pool = pa.concat_arrays([pq.read_table(f, columns=["text"]).column("text").combine_chunks() for f in files])
    return pool.filter(pool.is_valid())


def child_default(n: int) -> None:
    """datatrove's four filters as shipped (spaCy words and sentences) on the sample; JSON to stdout."""
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )
    from quality_reference import reference_decisions

    filters = {"gopher_repetition": GopherRepetitionFilter(), "gopher_quality": GopherQualityFilter(),
               "c4_quality": C4QualityFilter(), "fineweb_quality": FineWebQualityFilter()}
    texts = sample_texts(read_pool(), n).to_pylist()
    t0 = time.process_time()
    for name, flt in filters.items():
        reference_decisions(name, flt, texts[:20])  # loads spaCy's blank English pipeline
    load_cpu = time.process_time() - t0
    out = {"load_cpu_s": load_cpu, "cpu_s_by_filter": {}, "keep": {}, "reason": {}}
    for name, flt in filters.items():
        t1 = time.process_time()
        keep, reasons = reference_decisions(name, flt, texts)
        out["cpu_s_by_filter"][name] = time.process_time() - t1
        out["keep"][name], out["reason"][name] = keep, reasons
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--reference-docs", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=8192)
    ap.add_argument("--child-default", type=int, metavar="N", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_default:
        child_default(args.child_default)
        return

    import numpy as np
    import pyarrow.compute as pc
    from quality_reference import reference_decisions, reference_filters
    from test_quality_rules import as_docs

    from shardsift.selectors import resolve

    pool = read_pool()
    repeats = -(-args.docs // len(pool))
    n_docs = repeats * len(pool)
    n_bytes = repeats * int(pc.sum(pc.binary_length(pool)).as_py())

    filters = [resolve(name)() for name in NAMES]
    t0 = time.process_time()
    for f in filters:
        f.setup()
    setup_cpu = time.process_time() - t0
    warm = as_docs(pool.slice(0, 200))
    for f in filters:
        f.keep(warm)                                  # numba: load (or compile) the cached kernels

    batches = [as_docs(pool.slice(lo, args.batch)) for lo in range(0, len(pool), args.batch)] * repeats
    kept = {name: 0 for name in NAMES}
    per_filter = {name: 0.0 for name in NAMES}
    t0 = time.process_time()
    for docs in batches:
        for name, f in zip(NAMES, filters):
            t1 = time.process_time()
            kept[name] += int(f.keep(docs).keep.sum())
            per_filter[name] += time.process_time() - t1
    ours_cpu = time.process_time() - t0

    sample = sample_texts(pool, args.reference_docs)
    ref_texts = sample.to_pylist()
    refs = reference_filters()
    ref_cpu, same_docs_cpu, agree = {}, {}, {}
    sub = as_docs(sample)
    for name, f in zip(NAMES, filters):
        t1 = time.process_time()
        keep, reasons = reference_decisions(name, refs[name], ref_texts)
        ref_cpu[name] = time.process_time() - t1
        t1 = time.process_time()
        dec = f.keep(sub)
        same_docs_cpu[name] = time.process_time() - t1
        agree[name] = {"keep": float(np.mean(dec.keep == np.array(keep))),
                       "reason": float(np.mean(dec.reason == np.array(reasons)))}
    ref_total = sum(ref_cpu.values())
    ours_sample = {name: f.keep(sub) for name, f in zip(NAMES, filters)}

    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child-default", str(args.reference_docs)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"datatrove with its default tokenizer failed:\n{proc.stderr[-3000:]}")
    default = json.loads(proc.stdout.strip().splitlines()[-1])
    default_total = sum(default["cpu_s_by_filter"].values())
    default_agree = {name: {"keep": float(np.mean(ours_sample[name].keep == np.array(default["keep"][name]))),
                            "reason": float(np.mean(ours_sample[name].reason == np.array(default["reason"][name])))}
                     for name in NAMES}

    ours_rate = n_docs / ours_cpu
    ref_rate = args.reference_docs / ref_total
    result = {
        "corpus": f"shared pool ({len(pool)} documents) repeated {repeats}x",
        "docs": n_docs, "text_mb": round(n_bytes / 1e6, 1), "batch": args.batch,
        "shardsift": {"cpu_s": round(ours_cpu, 3), "docs_per_cpu_s": round(ours_rate),
                      "mb_per_cpu_s": round(n_bytes / 1e6 / ours_cpu, 1), "setup_cpu_s": round(setup_cpu, 3),
                      "cpu_s_by_filter": {k: round(v, 3) for k, v in per_filter.items()},
                      "kept_by_filter": kept},
        "datatrove": {"version": version("datatrove"), "docs": args.reference_docs, "cpu_s": round(ref_total, 3),
                      "docs_per_cpu_s": round(ref_rate, 1),
                      "cpu_s_by_filter": {k: round(v, 3) for k, v in ref_cpu.items()}},
        "speedup": round(ours_rate / ref_rate, 1),
        "datatrove_default": {"tokenizer": f"spaCy {version('spacy')} blank English + sentencizer (datatrove's default)",
                              "docs": args.reference_docs, "cpu_s": round(default_total, 3),
                              "docs_per_cpu_s": round(args.reference_docs / default_total, 1),
                              "startup_cpu_s": round(default["load_cpu_s"], 3),
                              "cpu_s_by_filter": {k: round(v, 3) for k, v in default["cpu_s_by_filter"].items()},
                              "agreement_with_shardsift": default_agree},
        "speedup_vs_datatrove_default": round(ours_rate / (args.reference_docs / default_total), 1),
        "same_docs": {"shardsift_cpu_s": round(sum(same_docs_cpu.values()), 4),
                      "speedup": round(ref_total / sum(same_docs_cpu.values()), 1)},
        "agreement_on_reference_docs": agree,
    }
    print(json.dumps(result, indent=2))
    write_figure(os.path.join(ROOT, "bench", "figures", "quality_rules.json"), result)


if __name__ == "__main__":
    main()
