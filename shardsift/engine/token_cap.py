"""``output.tokens``: the output capped at a number of tokens, as a last global step after the stages.

The surviving documents are taken in a seeded order of their id hashes (the same for any sharding
and worker count, and no shard is favoured) until the next document would pass the cap; the rest
are dropped with reason ``output:tokens_cap``. Tokens are the run's unit (the scan's ``n_tokens``).
Its keep files sit in a stage folder of the work dir like a stage's, so decisions, explain and
resume treat it as the last stage, named ``output``.
"""
from __future__ import annotations

import os
import time

import numpy as np

from ..io import layout, storage
from ..selectors.budget import tie_keys
from . import faults, workdir
from .fingerprint import fingerprint
from .shards import usage, write_keep

NAME = "output"
REASON = "output:tokens_cap"


def cap_output(runner, alive_path: list, prev_fp: str) -> tuple[dict, list, str]:
    """(stage report, keep paths, fingerprint) of the cap step over the stages' survivors."""
    cap, seed = runner.cfg.output.tokens, runner.cfg.seed
    i = len(runner.cfg.stages)
    fp = fingerprint(prev_fp, "output.tokens", cap, seed)
    stage_dir = os.path.join(runner.work, "stages", f"{i:02d}-{layout.safe_name(NAME)}-tokens-{fp}")
    storage.makedirs(stage_dir)
    keep_paths = [os.path.join(stage_dir, f"keep-{j:05d}.npz") for j in range(len(runner.shards))]
    done = os.path.join(stage_dir, "done.json")
    if storage.exists(done):
        return {**workdir.read_json(done), "reused": True}, keep_paths, fp
    t0, c0 = time.perf_counter(), usage()["cpu_s"]
    ctxs = [runner.shard_ctx(j, alive_path[j]) for j in range(len(runner.shards))]
    rows = [c.alive_rows() for c in ctxs]
    scans = [c.stats() for c in ctxs]
    toks = np.concatenate([s["n_tokens"][r] for s, r in zip(scans, rows)] or [np.zeros(0, np.int64)])
    nbytes = np.concatenate([s["n_bytes"][r] for s, r in zip(scans, rows)] or [np.zeros(0, np.int64)])
    ids = np.concatenate([s["id_hash"][r] for s, r in zip(scans, rows)] or [np.zeros(0, np.uint64)])
    order = np.lexsort((np.arange(len(ids)), tie_keys(ids, seed)))
    k = int(np.searchsorted(np.cumsum(toks[order].astype(np.int64)), cap, side="right"))
    keep = np.zeros(len(ids), dtype=bool)
    keep[order[:k]] = True
    rank = np.empty(len(ids), dtype=np.float64)
    rank[order] = np.arange(len(ids), dtype=np.float64)
    offs = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    dropped: dict[str, int] = {}
    for j, p in enumerate(keep_paths):
        lo, hi = int(offs[j]), int(offs[j + 1])
        arrays = {"row": rows[j], "keep": keep[lo:hi], "reason_code": np.where(keep[lo:hi], -1, 0).astype(np.int16),
                  "score": rank[lo:hi], "reason_names": np.array([REASON], dtype=str)}
        for reason, n in write_keep(p, arrays).items():
            dropped[reason] = dropped.get(reason, 0) + n
        faults.point(f"decide:{i:02d}:{j}")
    nxt = int(toks[order[k]]) if k < len(ids) else None
    rep = {"name": NAME, "selector": REASON, "params": {"tokens": cap}, "docs_in": len(ids), "kept": int(k),
           "dropped": dropped, "tokens_in": int(toks.sum()), "tokens_kept": int(toks[keep].sum()),
           "bytes_kept": int(nbytes[keep].sum()), "wall_s": time.perf_counter() - t0,
           "cpu_s": usage()["cpu_s"] - c0, "peak_rss_mb": usage()["rss_mb"],
           "metrics": {"cap": cap, "order": "seeded id hash", "next_doc_tokens": nxt}, "dir": stage_dir, "models": {}}
    workdir.write_json(done, rep)
    faults.point(f"stage:{i:02d}")
    runner.progress.line(f"output tokens cap {cap}: kept {k} of {len(ids)} documents")
    return rep, keep_paths, fp


def stage_names(runner) -> list[str]:
    """The names of the steps whose keep files the output reads: the stages, then the cap."""
    names = [st.name for st in runner.cfg.stages]
    return names + [NAME] if runner.cfg.output.tokens is not None else names
