"""The proxy LM check on three selections of the shared pool toward Wikipedia.

    python bench/bench_eval.py [--out bench/figures/eval.json] [--workers 1] [--classifier JSON]

The Wikipedia target is split in two halves by a seeded hash of the document id: one half is
the selection target (DSIR's target, the classifier's positives), the other the held-out
target of `shardsift eval`, so no evaluated document steered a selection. Selections, with
`shardsift select` into temporary outputs:

- random: 10% of the pool's documents;
- dsir: 10% of the documents, toward the selection half;
- quality_classifier: positives the selection half, as many words as DSIR kept (tokens:).

Then `shardsift eval` on the three with the held-out half; the perplexities and the wall time of
each step go to bench/figures/eval.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow.parquet as pq
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from common import write_figure  # noqa: E402

from shardsift.columns import hash_strings, mix64  # noqa: E402

CORPORA = os.path.join(os.path.dirname(ROOT), "shared", "corpora")
if not os.path.isdir(CORPORA):
    CORPORA = "/work/shared/corpora"
SPLIT_SEED = 7


def shardsift(*args, cwd=None) -> tuple[subprocess.CompletedProcess, float]:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "shardsift", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd)
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"shardsift {' '.join(map(str, args))} failed:\n{proc.stderr}")
    return proc, wall


def split_target(path: str, tmp: str) -> tuple[str, str, int, int]:
    """Two halves of the target by a seeded hash of the id: (selection half, held-out half)."""
    t = pq.read_table(path)
    salt = mix64(np.array([SPLIT_SEED], np.uint64))
    h = mix64(hash_strings(t.column("id").combine_chunks().cast("string")) ^ salt)
    first = (h & 1) == 0
    sel, held = os.path.join(tmp, "target_select.parquet"), os.path.join(tmp, "target_heldout.parquet")
    pq.write_table(t.filter(first), sel)
    pq.write_table(t.filter(~first), held)
    return sel, held, int(first.sum()), int((~first).sum())


def select(tmp: str, name: str, pool: str, stage: dict, workers: int) -> tuple[str, dict, float]:
    out = os.path.join(tmp, name)
    cfg = os.path.join(tmp, f"{name}.yaml")
    with open(cfg, "w") as fh:
        yaml.safe_dump({"input": {"path": pool}, "output": {"path": out}, "workers": workers, "seed": 0,
                        "stages": [stage]}, fh)
    _, wall = shardsift("select", cfg, "--quiet")
    with open(os.path.join(out, ".shardsift", "manifest.json")) as fh:
        manifest = json.load(fh)
    print(f"{name}: kept {manifest['docs_kept']:,} documents, {manifest['tokens_kept']:,} words ({wall:.1f} s)",
          flush=True)
    return out, manifest, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(HERE, "figures", "eval.json"))
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--classifier", default="{}", metavar="JSON",
                    help="quality_classifier parameters besides positives and tokens (default: its defaults)")
    args = ap.parse_args()
    classifier = json.loads(args.classifier)
    pool, target = os.path.join(CORPORA, "pool"), os.path.join(CORPORA, "target", "wikipedia.parquet")
    if not (os.path.isdir(pool) and os.path.exists(target)):
        print(f"skipped: the shared corpora are not at {CORPORA} (pool/ and target/wikipedia.parquet)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        sel_half, held_half, n_sel, n_held = split_target(target, tmp)
        print(f"target split: {n_sel} documents to select toward, {n_held} held out", flush=True)
        outs, figures = {}, {}
        out, m, wall = select(tmp, "random", pool, {"random": {"keep": 0.1}}, args.workers)
        outs["random"], figures["random"] = out, {"select_s": wall, "docs_kept": m["docs_kept"],
                                                  "words_kept": m["tokens_kept"]}
        out, m, wall = select(tmp, "dsir", pool, {"dsir": {"keep": 0.1, "target": sel_half}}, args.workers)
        outs["dsir"], figures["dsir"] = out, {"select_s": wall, "docs_kept": m["docs_kept"],
                                              "words_kept": m["tokens_kept"]}
        out, m, wall = select(tmp, "quality_classifier", pool,
                              {"quality_classifier": {**classifier, "positives": sel_half,
                                                      "tokens": m["tokens_kept"]}},
                              args.workers)
        outs["quality_classifier"], figures["quality_classifier"] = out, {
            "select_s": wall, "docs_kept": m["docs_kept"], "words_kept": m["tokens_kept"]}
        proc, eval_wall = shardsift("eval", *outs, "--target", held_half, "--json", cwd=tmp)
        res = json.loads(proc.stdout)
        print(f"shardsift eval: {eval_wall:.1f} s (wall, with the interpreter's start)")
        print(shardsift("eval", *outs, "--target", held_half, cwd=tmp)[0].stdout)
    for name, row in zip(outs, res["outputs"]):
        figures[name].update({k: row[k] for k in ("perplexity", "words", "docs", "train_oov_rate", "seconds")})
        figures[name]["eval_words"] = figures[name].pop("words")
        figures[name]["eval_docs"] = figures[name].pop("docs")
        figures[name]["eval_s"] = figures[name].pop("seconds")
    result = {
        "pool": pool, "target": target, "split_seed": SPLIT_SEED,
        "target_docs_select": n_sel, "target_docs_heldout": n_held,
        "eval": {k: res[k] for k in ("heldout_docs", "heldout_words", "oov_rate", "vocab_size", "words",
                                     "discount", "seed", "vocab_seconds", "target_seconds")},
        "eval_wall_s": eval_wall, "selections": figures, "classifier_params": classifier,
    }
    write_figure(args.out, result)


if __name__ == "__main__":
    main()
