"""Scale-out: every selector on generated corpora of 0.25M, 1M and 3M documents, through the CLI.

    python bench/scale.py [--docs 250000,1000000,3000000] [--configs length,minhash_dedup,...]
                          [--workers 2] [--data-dir /tmp/shardsift-bench] [--timeout S]

For each size, bench/corpus.py's corpus (~2 KB documents, 100k-document shards), and for each
config a fresh `python -m shardsift select CONFIG --overwrite --workers N` process. Recorded per
run: wall, CPU of the whole process tree, docs per CPU-second and per wall-second, the driver's
and the workers' peak RSS, the driver's own CPU (the tree's less the workers' polled CPU), the
manifest's own peak-memory and per-stage CPU figures, work-dir bytes (in all and per part: scan,
each stage, output), output bytes and the output folder's peak bytes (sampled every second while
the run goes on; the work dir is inside it). Before the timed runs each config runs once on 200
documents, so numba's cache is warm (cold start is vs_reference.py's job). A run that fails or
passes --timeout is recorded with the reason, not left out. Results merge into
bench/figures/scale.json by size and config (--out names another file).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    DATA_DIR,
    FIGURES,
    command_line,
    corpus_meta,
    machine,
    run_select,
    save,
    self_peak_rss_mb,
    versions,
)

CONFIGS = ["length", "minhash_dedup", "dsir", "kmeans_diversity", "chain"]


def stages_for(name: str, target: str) -> list:
    dsir = {"target": {"path": target}}
    return {
        "length": [{"length": {"min_words": 20}}],
        "minhash_dedup": [{"minhash_dedup": {"threshold": 0.8}}],
        "dsir": [{"dsir": {**dsir, "keep": 0.1}}],
        "kmeans_diversity": [{"kmeans_diversity": {"keep": 0.5}}],
        "chain": [{"length": {"min_words": 20}}, {"exact_dedup": {}}, {"minhash_dedup": {"threshold": 0.8}},
                  {"dsir": {**dsir, "keep": 0.3}}, {"kmeans_diversity": {"keep": 0.5}}],
    }[name]


def summary(r: dict) -> dict:
    """The figures of one run worth keeping (the manifest's per-stage table included)."""
    keys = ("rc", "wall_s", "cpu_s", "user_s", "sys_s", "docs_in", "docs_kept", "bytes_in", "docs_per_cpu_s",
            "driver_peak_rss_mb", "worker_peak_rss_mb", "tree_peak_rss_mb", "workers_seen", "work_dir_bytes", "work_dir_parts_bytes",
            "output_bytes", "watch_dir_peak_bytes", "manifest", "error", "timed_out", "load_avg_1min_after",
            "worker_cpu_s_polled")
    out = {k: r[k] for k in keys if k in r}
    if r.get("cpu_s") and "worker_cpu_s_polled" in r:
        # what the driver process itself spent (fit, global decides, planning): the part that does
        # not spread over a cluster. The workers' CPU is polled, so this is an upper bound.
        out["driver_cpu_s"] = r["cpu_s"] - r["worker_cpu_s_polled"]
    if r.get("wall_s") and r.get("docs_in"):
        out["docs_per_wall_s"] = r["docs_in"] / r["wall_s"]
    if "watch_dir_peak_bytes" in out:
        out["out_dir_peak_bytes"] = out.pop("watch_dir_peak_bytes")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", default="250000,1000000,3000000", help="comma-separated corpus sizes")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=DATA_DIR)
    ap.add_argument("--timeout", type=float, default=None, help="seconds per run; a longer run is recorded as missing")
    ap.add_argument("--out", default=os.path.join(FIGURES, "scale.json"))
    args = ap.parse_args()
    sizes = [int(float(x)) for x in args.docs.split(",") if x]
    configs = [c for c in args.configs.split(",") if c]
    unknown = set(configs) - set(CONFIGS)
    if unknown:
        sys.exit(f"unknown configs {sorted(unknown)}; known: {CONFIGS}")

    import json

    result = {"bench": "scale", "sizes": {}}
    if os.path.exists(args.out):
        with open(args.out) as fh:
            result = json.load(fh)
    result.update(machine=machine(), versions=versions("shardsift", "pyarrow", "numpy", "numba"), workers=args.workers)
    result.setdefault("configs", {}).update({c: stages_for(c, "TARGET") for c in configs})
    os.makedirs(args.data_dir, exist_ok=True)
    tmp_root = tempfile.mkdtemp(prefix="scale-", dir=args.data_dir)
    numba_cache = os.path.join(args.data_dir, "numba-cache")
    try:
        for n in sizes:
            meta = corpus_meta(n, args.seed, args.data_dir, tiny=os.path.join(tmp_root, f"tiny-{n}"))
            print(f"corpus {n:,} docs: {meta['shards']} shard(s), {meta['text_bytes'] / 1e9:.2f} GB of text "
                  + ("(cached)" if meta["cached"] else f"(generated in {meta['generate_wall_s']:.1f} s)"), flush=True)
            tiny = meta["tiny"]
            old = result["sizes"].get(str(n), {})
            entry = {"docs": n, "corpus": {k: meta[k] for k in ("text_bytes", "mean_doc_bytes", "shards", "seed",
                                                                  "template_copies", "target_docs")},
                     "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                     "command": command_line(),
                     # runs of other configs at this size, from an earlier command, stay (each names its command)
                     "runs": {k: {"command": old.get("command"), "measured_at": old.get("measured_at"), **v}
                              for k, v in old.get("runs", {}).items()}}
            for c in configs:
                stages = stages_for(c, meta["target"])
                warm = run_select(tiny, stages, args.workers, tmp_root, numba_cache=numba_cache, label=f"warm-{c}")
                r = run_select(meta["pool"], stages, args.workers, tmp_root, numba_cache=numba_cache,
                               label=f"{c}-{n}", timeout_s=args.timeout)
                s = summary(r)
                s["warmup_cpu_s"] = warm.get("cpu_s")
                s["command"], s["measured_at"] = entry["command"], entry["measured_at"]
                if r["rc"] != 0:
                    s["missing"] = (f"timed out after {args.timeout:.0f} s" if r.get("timed_out")
                                    else f"exit status {r['rc']}")
                    print(f"  {c:17s} MISSING: {s['missing']}\n{r.get('error', '')[-800:]}", flush=True)
                else:
                    print(f"  {c:17s} wall {r['wall_s']:7.1f} s  cpu {r['cpu_s']:7.1f} s  "
                          f"{r['docs_per_cpu_s']:8.0f} docs/CPU-s  kept {r['docs_kept']:>9,}  driver "
                          f"{r['driver_peak_rss_mb']:6.0f} MB  workers {r['worker_peak_rss_mb']:6.0f} MB  "
                          f"work dir {r['work_dir_bytes'] / 1e6:7.1f} MB", flush=True)
                entry["runs"][c] = s
                entry["bench_parent_peak_rss_mb"] = self_peak_rss_mb()
                result["sizes"][str(n)] = entry
                _write(args.out, result)  # after every run: a later failure keeps what was measured
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    print(f"wrote {args.out}")


def _write(path: str, result: dict) -> None:
    folder, name = os.path.split(path)
    save(name[:-5] if name.endswith(".json") else name, result, folder=folder)


if __name__ == "__main__":
    main()
