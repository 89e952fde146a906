"""Training-ready output at scale: token counts, a three-source mixture and Megatron token shards on
the generated 1M-document corpus, each run a fresh `shardsift select` process measured whole
(documents per CPU-second over every process, driver and worker peak RSS), and datatrove's
tokenization pipeline on the same documents as the reference, measured the same way.

    python bench/bench_training_output.py [--docs 1000000] [--workers 2]

Runs (2 workers each; the corpus is bench/corpus.py's, ten Parquet shards of ~2 KB documents):

* ``plain``: `length` (min 20 words), Parquet output, whitespace words: the run without a tokenizer.
* ``counted``: the same with ``tokenizer: minilm``: every document's tokens counted in the scan.
* ``tokens_all``: no stages, ``tokenizer: minilm``, ``output.format: tokens``: every document
  tokenized into .bin/.idx shards (EOS after each).
* ``datatrove_tokens``: datatrove 0.10.1's ParquetReader + DocumentTokenizer (no shuffle, EOS ``[SEP]``,
  the same tokenizer.json with its 128-token truncation switched off, as shardsift switches it off),
  one task per shard, 2 workers. Its .ds files hold uint16 ids back to back like the .bin files: the
  bench checks that the two outputs are the same bytes. Its pool workers are not reaped through
  wait4, so their CPU is polled from /proc and added to the parent's.
* ``mixture``: three sources (shards 0-5 ``web``, 6-8 ``code``, 9 ``books``) with weights
  0.6/0.25/0.15 of ``mix.tokens`` (default 900M), ``max_epochs: 2`` (``books`` needs more than one
  epoch), a shared `length` stage, Parquet output; the achieved shares come from the manifest.
* ``mixture_tokens``: the same mixture written as token shards.

Start-up (a 100-document input through the ``counted`` config) is reported on its own line.
Writes bench/figures/training_output.json.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from common import (  # noqa: E402
    DATA_DIR,
    FIGURES,
    child_env,
    command_line,
    corpus_meta,
    machine,
    measure,
    measured_select,
    save,
    versions,
)

TOKENIZER = "minilm"


def untruncated_copy(folder: str) -> str:
    """The named default's tokenizer.json with truncation and padding off (datatrove keeps them)."""
    from shardsift.tokenizer import load_tokenizer

    with open(load_tokenizer(TOKENIZER).path) as fh:
        spec = json.load(fh)
    spec["truncation"], spec["padding"] = None, None
    path = os.path.join(folder, "tokenizer.json")
    with open(path, "w") as fh:
        json.dump(spec, fh)
    return path


def child_datatrove(inp: str, out: str, tokenizer: str, workers: int) -> None:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.tokens import DocumentTokenizer

    tasks = len(glob.glob(os.path.join(inp, "*.parquet")))
    steps = [ParquetReader(inp, glob_pattern="*.parquet", text_key="text", id_key="id"),
             DocumentTokenizer(os.path.join(out, "data"), tokenizer_name_or_path=tokenizer, eos_token="[SEP]",
                               shuffle_documents=False)]
    LocalPipelineExecutor(steps, tasks=tasks, workers=workers, logging_dir=os.path.join(out, "logs")).run()


def select(cfg: dict, folder: str) -> dict:
    """One measured `shardsift select` run; the manifest's counts added."""
    res, man = measured_select(cfg, folder)
    res.update({"docs_in": man["docs_in"], "docs_kept": man["docs_kept"], "tokens_in": man.get("tokens_in"),
                "tokens_kept": man.get("tokens_kept"), "token_unit": man.get("token_unit"),
                "docs_per_cpu_s": man["docs_in"] / res["cpu_s"],
                "stages": [{k: s.get(k) for k in ("name", "kept", "cpu_s", "wall_s")} for s in man.get("stages", [])]})
    if "sources" in man:
        res["sources"] = man["sources"]
    if man.get("output", {}).get("format") == "tokens":
        res["output"] = {k: man["output"].get(k) for k in ("format", "dtype", "tokens", "eos_id", "vocab_size")}
    return res


def bin_bytes(folder: str, pattern: str) -> list[str]:
    return sorted(glob.glob(os.path.join(folder, "**", pattern), recursive=True))


def same_stream(ours: list[str], theirs: list[str]) -> bool:
    """The concatenation of two file lists holds the same bytes (read in 64 MB blocks)."""
    def blocks(files):
        for f in files:
            with open(f, "rb") as fh:
                while block := fh.read(64 << 20):
                    yield block
    a, b = b"".join(blocks(ours)), b"".join(blocks(theirs))
    return a == b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--mix-tokens", default="900M")
    ap.add_argument("--child-datatrove", nargs=3, metavar=("INPUT", "OUT", "TOKENIZER"))
    args = ap.parse_args()
    if args.child_datatrove:
        child_datatrove(*args.child_datatrove, args.workers)
        return

    meta = corpus_meta(args.docs, 0, DATA_DIR)
    pool = os.path.join(DATA_DIR, f"corpus-n{args.docs}-s0", "pool")
    shards = sorted(glob.glob(os.path.join(pool, "*.parquet")))
    tmp = tempfile.mkdtemp(prefix="shardsift-bench-training-", dir=DATA_DIR)
    length = [{"length": {"min_words": 20}}]

    def cfg(name, stages, tokenizer=TOKENIZER, fmt="parquet", inp=None, mix=None):
        out = {"path": os.path.join(tmp, name, "out"), "format": fmt, "scores": False}
        c = {"input": inp or {"path": pool}, "output": out, "workers": args.workers, "seed": 0, "stages": stages}
        if tokenizer:
            c["tokenizer"] = tokenizer
        if mix:
            c["mix"] = mix
        return c

    if len(shards) < 3:
        sys.exit(f"the mixture needs at least 3 shards in {pool}, found {len(shards)}")
    a = max(1, min(len(shards) - 2, round(0.6 * len(shards))))
    b = max(a + 1, min(len(shards) - 1, round(0.9 * len(shards))))
    groups = {"web": shards[:a], "code": shards[a:b], "books": shards[b:]}
    sources = [{"name": n, "path": files, "weight": w} for (n, files), w in zip(groups.items(), (0.6, 0.25, 0.15))]
    mix = {"tokens": args.mix_tokens, "max_epochs": 2, "seed": 0}

    tiny = os.path.join(tmp, "tiny")
    os.makedirs(tiny)
    import pyarrow.parquet as pq

    pq.write_table(pq.read_table(shards[0]).slice(0, 100), os.path.join(tiny, "part-00000.parquet"))
    startup = select(cfg("startup", length, inp={"path": tiny}), os.path.join(tmp, "startup"))

    runs = {}
    for name, c in (("plain", cfg("plain", length, tokenizer=None)),
                    ("counted", cfg("counted", length)),
                    ("tokens_all", cfg("tokens_all", [], fmt="tokens")),
                    ("mixture", cfg("mixture", length, inp=sources, mix=mix)),
                    ("mixture_tokens", cfg("mixture_tokens", length, fmt="tokens", inp=sources, mix=mix))):
        runs[name] = select(c, os.path.join(tmp, name))
        r = runs[name]
        print(f"{name:<16} {r['docs_per_cpu_s']:>8,.0f} docs/CPU-s  {r['cpu_s']:7.1f} CPU s  {r['wall_s']:6.1f} wall s  "
              f"driver {r['driver_peak_rss_mb']:6.0f} MB  worker {r['worker_peak_rss_mb']:6.0f} MB", flush=True)
        if name != "tokens_all":
            shutil.rmtree(os.path.join(tmp, name, "out", "data"), ignore_errors=True)

    dt_out = os.path.join(tmp, "datatrove")
    tok_path = untruncated_copy(tmp)
    cmd = [sys.executable, os.path.abspath(__file__), "--workers", str(args.workers),
           "--child-datatrove", pool, dt_out, tok_path]
    ref = measure(cmd, env=child_env(), log=os.path.join(tmp, "datatrove.log"))
    if ref["rc"] != 0:
        with open(os.path.join(tmp, "datatrove.log")) as fh:
            sys.exit(f"datatrove failed:\n{fh.read()[-3000:]}")
    # datatrove's pool workers are not reaped through wait4, so their CPU is not in cpu_s: it is
    # polled from /proc while they run (which misses at most a poll interval of each)
    ref["cpu_s_wait4"] = ref["cpu_s"]
    ref["cpu_s"] = ref["cpu_s_wait4"] + ref["worker_cpu_s_polled"]
    ref["docs_per_cpu_s"] = runs["tokens_all"]["docs_in"] / ref["cpu_s"]
    ours_bins = bin_bytes(os.path.join(tmp, "tokens_all", "out", "data"), "*.bin")
    theirs = bin_bytes(os.path.join(dt_out, "data"), "*.ds")
    ref["same_bytes_as_shardsift"] = same_stream(ours_bins, theirs)
    ref["files"] = len(theirs)
    print(f"{'datatrove_tokens':<16} {ref['docs_per_cpu_s']:>8,.0f} docs/CPU-s  {ref['cpu_s']:7.1f} CPU s  "
          f"{ref['wall_s']:6.1f} wall s  driver {ref['driver_peak_rss_mb']:6.0f} MB  worker "
          f"{ref['worker_peak_rss_mb']:6.0f} MB  same bytes: {ref['same_bytes_as_shardsift']}", flush=True)

    shares = {}
    for name in ("mixture", "mixture_tokens"):
        rows = runs[name].get("sources") or []
        total = sum(r["tokens_out"] for r in rows)
        shares[name] = {r["name"]: {"share": r["tokens_out"] / total, "epochs": r["epochs"],
                                    "tokens_out": r["tokens_out"], "short": r.get("short")} for r in rows}
    result = {
        "what": "training-ready output on the generated corpus: shardsift select runs measured whole (every process's "
                "CPU; driver and worker peak RSS) and datatrove's tokenization of the same documents",
        "corpus": {"generator": "bench/corpus.py", "docs": args.docs, "shards": len(shards), **{
            k: meta.get(k) for k in ("bytes", "cached") if k in meta}},
        "tokenizer": TOKENIZER, "workers": args.workers, "mix": mix,
        "startup": {k: startup[k] for k in ("wall_s", "cpu_s", "driver_peak_rss_mb", "worker_peak_rss_mb")},
        "runs": runs, "datatrove_tokens": ref,
        "tokens_speedup_per_cpu_s_vs_datatrove": ref["cpu_s"] / runs["tokens_all"]["cpu_s"],
        "mixture_token_shares": shares,
        "versions": versions("shardsift", "tokenizers", "datatrove", "pyarrow", "numpy"),
        "machine": machine(), "command": command_line(),
    }
    print(json.dumps({"shares": shares, "speedup_vs_datatrove": result["tokens_speedup_per_cpu_s_vs_datatrove"]}))
    print("wrote", save("training_output", result, FIGURES))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
