"""Benchmark exact_dedup's score: normalized-text hashes of the 160 MB pool in ../shared/corpora.

    python bench/bench_exact_dedup.py [--quick] [--repeat K]

Both sides compute the same values, checked here: each document's 64-bit hash and byte length of
``ExactDedup.normalize`` (lowercase, whitespace runs collapsed, ends trimmed).

- shardsift: ``ExactDedup().normalized_hashes``, one compiled pass over each shard's bytes
  (only documents with a non-ASCII byte lowercased by Arrow first);
- reference: the same normalization with pyarrow.compute (``utf8_lower``,
  ``replace_substring_regex``, ``utf8_trim_whitespace``), then the same hash of its output.

Each side runs on every shard's text column, already in memory, K times; the median CPU time
counts. Then a one-stage exact_dedup pipeline over the pool through the CLI (read, score, decide,
write), with its stage's CPU seconds from the manifest. --quick: the first two shards, no pipeline.
Writes bench/results/exact_dedup.json.
"""
from __future__ import annotations

import argparse
import glob
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import corpora, save, select_cli  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="two shards, no pipeline run")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    pool = corpora("pool")

    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from shardsift.columns import hash_strings
    from shardsift.selectors.exact import ExactDedup

    files = sorted(glob.glob(os.path.join(pool, "*.parquet")))[: 2 if args.quick else None]
    texts = [pq.ParquetFile(f).read(columns=["text"]).column("text").combine_chunks() for f in files]
    n_docs = sum(len(t) for t in texts)
    mb = sum(t.buffers()[2].size for t in texts) / 1e6
    sel = ExactDedup()
    sel.normalized_hashes(texts[0].slice(0, 10))  # loads the kernels (compiled ahead of time by `make`)

    def shardsift_side():
        return [sel.normalized_hashes(t) for t in texts]

    def reference_side():
        out = []
        for t in texts:
            norm = sel.normalize(t)  # utf8_lower, replace_substring_regex, utf8_trim_whitespace
            out.append((hash_strings(norm), pc.binary_length(norm).to_numpy(zero_copy_only=False)))
        return out

    cpu = {"shardsift": [], "reference": []}
    results = {}
    for _ in range(args.repeat):
        for name, fn in (("shardsift", shardsift_side), ("reference", reference_side)):
            t0 = time.process_time()
            results[name] = fn()
            cpu[name].append(time.process_time() - t0)
    same = all((a[0] == b[0]).all() and (a[1] == b[1]).all()
               for a, b in zip(results["shardsift"], results["reference"]))
    if not same:
        sys.exit("shardsift's normalized hashes differ from the pyarrow.compute reference")
    med = {k: statistics.median(v) for k, v in cpu.items()}
    print(f"{len(files)} shards, {n_docs} docs, {mb:.0f} MB of text; same hashes and lengths on both sides")
    for name in ("shardsift", "reference"):
        print(f"{name:<10} CPU s {', '.join(f'{c:.3f}' for c in cpu[name])}; median {med[name]:.3f} "
              f"({mb / med[name]:.0f} MB/CPU-s, {n_docs / med[name]:.0f} docs/CPU-s)")
    ratio = med["reference"] / med["shardsift"]
    print(f"shardsift / pyarrow.compute reference: {ratio:.1f}x per CPU-second")
    result = {"shards": len(files), "docs": n_docs, "text_mb": mb, "cpu_s": cpu, "median_cpu_s": med,
              "ratio": ratio}

    if not args.quick:
        with tempfile.TemporaryDirectory() as tmp:
            man = select_cli({"input": {"path": pool}, "output": {"path": os.path.join(tmp, "out"), "scores": False},
                              "workers": 1, "seed": 0, "stages": [{"exact_dedup": {}}]}, tmp)
        st = man["stages"][1]
        print(f"pipeline (shardsift select), one exact_dedup stage on the pool: stage {st['cpu_s']:.2f} CPU-s "
              f"({n_docs / st['cpu_s']:.0f} docs/CPU-s), whole run {man['cpu_s']:.2f} CPU-s; "
              f"groups {st['metrics']['groups']}, removed {st['metrics']['docs_removed']}")
        result["pipeline"] = {"stage_cpu_s": st["cpu_s"], "run_cpu_s": man["cpu_s"], "metrics": st["metrics"]}
    print(f"wrote {save('exact_dedup', result)}")


if __name__ == "__main__":
    main()
