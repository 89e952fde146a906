"""Output formats: shardsift's JSON Lines and Megatron token-shard writers against the references,
on the real pool, in one process, CPU seconds per writer (start-up on its own line).

    python bench/bench_output_formats.py [--docs 20000] [--out bench/figures/output_formats.json]

JSON Lines: shardsift's columnar formatter + zstd against the standard library (``json.dumps`` per
row, ``ensure_ascii=False``, compact separators) through the same pyarrow zstd codec; the bytes must
be identical. Parquet (shardsift's bounded writer, zstd) is measured on the same rows for scale.
Token shards: shardsift's writer (EOS appended, .bin/.idx) against Megatron-LM's own
``IndexedDatasetBuilder`` (``add_document`` per document) on the same ids; the files must be
identical. Tokenization (the tokenizer package's batch call) is measured on its own line.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from common import FIGURES, command_line, corpora, machine, save, versions  # noqa: E402


def timed(fn):
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - c0, time.perf_counter() - t0


def read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def batches(table, rows=2048):
    return [table.slice(i, rows) for i in range(0, table.num_rows, rows)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=20_000)
    ap.add_argument("--out", default=os.path.join(FIGURES, "output_formats.json"))
    args = ap.parse_args()

    import importlib

    _, startup_cpu, _ = timed(lambda: [importlib.import_module(m) for m in (
        "shardsift.io.json_lines", "shardsift.io.megatron", "shardsift.engine.output_formats")])
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from shardsift.engine.output_formats import with_eos
    from shardsift.io import BoundedParquetWriter
    from shardsift.io.json_lines import BoundedJsonlWriter, json_lines
    from shardsift.io.megatron import BoundedTokenWriter
    from shardsift.tokenizer import load_tokenizer

    table = pq.read_table(corpora("pool")).slice(0, args.docs)
    table = table.select([c for c in ("id", "text", "domain") if c in table.column_names]).combine_chunks()
    text_mb = sum(len(t.encode()) for t in table.column("text").to_pylist()) / 1e6
    _, kernel_cpu, _ = timed(lambda: json_lines(table.slice(0, 10)))  # numba: compile or load the cache
    work = tempfile.mkdtemp(prefix="shardsift-bench-formats-")
    parts = batches(table)
    res = {"command": command_line(), "machine": machine(), "docs": table.num_rows, "text_mb": text_mb,
           "versions": versions("shardsift", "pyarrow", "numpy", "megatron-core", "tokenizers"),
           "startup": {"import_cpu_s": startup_cpu, "json_kernel_first_use_cpu_s": kernel_cpu}}

    def ours_jsonl():
        w = BoundedJsonlWriter(os.path.join(work, "ours"), 10**12, "zstd", prefix="part-")
        for b in parts:
            w.write(b)
        return w.close()[0]["path"]

    def ref_jsonl():
        path = os.path.join(work, "ref.jsonl.zst")
        names = table.column_names
        with pa.CompressedOutputStream(path, "zstd") as out:
            for b in parts:
                cols = [b.column(n).to_pylist() for n in names]
                out.write("".join(json.dumps(dict(zip(names, row)), ensure_ascii=False, separators=(",", ":")) + "\n"
                                  for row in zip(*cols)).encode("utf-8"))
        return path

    def ours_parquet():
        w = BoundedParquetWriter(os.path.join(work, "pq"), table.schema, 10**12, 8 * 2**20, "zstd")
        for b in parts:
            w.write(b)
        return w.close()

    for d in ("ours", "pq"):
        os.makedirs(os.path.join(work, d), exist_ok=True)
    ours_path, ours_cpu, ours_wall = timed(ours_jsonl)
    ref_path, ref_cpu, ref_wall = timed(ref_jsonl)
    _, pq_cpu, pq_wall = timed(ours_parquet)
    same = read(ours_path) == read(ref_path)
    res["jsonl_zstd"] = {
        "identical_bytes": same,
        "shardsift": {"cpu_s": ours_cpu, "wall_s": ours_wall, "text_mb_per_cpu_s": text_mb / ours_cpu},
        "stdlib_json_reference": {"cpu_s": ref_cpu, "wall_s": ref_wall, "text_mb_per_cpu_s": text_mb / ref_cpu},
        "speedup_cpu": ref_cpu / ours_cpu,
        "parquet_zstd_shardsift": {"cpu_s": pq_cpu, "wall_s": pq_wall, "text_mb_per_cpu_s": text_mb / pq_cpu},
    }

    try:
        tok = load_tokenizer("minilm")
    except Exception as err:  # noqa: BLE001 - the bench reports what it could not measure
        res["tokens"] = {"skipped": f"no tokenizer: {err}"}
    else:
        (enc, enc_cpu, enc_wall) = timed(lambda: [tok.encode(b.column("text")) for b in parts])
        res["tokenize"] = {"tokenizer": tok.name, "cpu_s": enc_cpu, "wall_s": enc_wall,
                           "text_mb_per_cpu_s": text_mb / enc_cpu}
        dtype = "uint16" if tok.vocab_size < 65_500 else "int32"

        def ours_tokens():
            w = BoundedTokenWriter(work, dtype, 10**12, prefix="tok-")
            for ids, off in enc:
                w.write(*with_eos(ids, off, tok.eos_id))
            return w.close()

        def megatron_tokens():
            from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

            builder = IndexedDatasetBuilder(os.path.join(work, "mt.bin"), dtype=np.dtype(dtype).type)
            for ids, off in enc:
                ids, off = with_eos(ids, off, tok.eos_id)
                for i in range(len(off) - 1):
                    builder.add_document(ids[off[i]:off[i + 1]], [int(off[i + 1] - off[i])])
            builder.finalize(os.path.join(work, "mt.idx"))

        _, t_cpu, t_wall = timed(ours_tokens)
        n_tokens = int(sum(len(ids) + len(off) - 1 for ids, off in enc))
        out = {"tokens": n_tokens, "dtype": dtype,
               "shardsift": {"cpu_s": t_cpu, "wall_s": t_wall, "mtokens_per_cpu_s": n_tokens / 1e6 / t_cpu}}
        try:
            _, m_cpu, m_wall = timed(megatron_tokens)
        except ImportError as err:
            out["megatron_reference"] = {"skipped": f"megatron-core not importable: {err}"}
        else:
            same = all(read(os.path.join(work, f"tok-00000{s}")) == read(os.path.join(work, f"mt{s}"))
                       for s in (".bin", ".idx"))
            out["identical_bytes"] = same
            out["megatron_reference"] = {"cpu_s": m_cpu, "wall_s": m_wall, "mtokens_per_cpu_s": n_tokens / 1e6 / m_cpu}
            out["speedup_cpu"] = m_cpu / t_cpu
        res["tokens"] = out
    print(json.dumps({k: v for k, v in res.items() if k not in ("machine", "command")}, indent=1))
    print("wrote", save(os.path.basename(args.out)[:-5], res, folder=os.path.dirname(os.path.abspath(args.out))))


if __name__ == "__main__":
    main()
