"""Per-document accounting: for every input document, kept or dropped, by which stage and why.

``OUTPUT/decisions/shard-NNNNN.parquet`` holds one row per input document: id, kept, stage (the
index of the stage that dropped it: 0 is reading the input, -1 for kept documents), stage_name and
reason (dictionary-encoded). Reading them back (explain, verify) is `shardsift.output`'s job.
"""
from __future__ import annotations

import os

import numpy as np
import pyarrow as pa

from ..columns import arrow_array, arrow_strings


def shard_decisions(scan: dict, keep_files: list[dict], stage_names: list[str], ids: pa.Array) -> pa.Table:
    """One shard's decision table from its scan record and each stage's keep file (in stage order)."""
    n = len(scan["valid"])
    stage = np.full(n, -1, np.int16)
    reason = np.full(n, -1, np.int32)
    vocab: list[str] = []

    def code(name: str) -> int:
        if name not in vocab:
            vocab.append(name)
        return vocab.index(name)

    stage[~scan["valid"]] = 0
    reason[~scan["valid"]] = code("null_text")
    dup = scan["valid"] & ~scan["alive"]
    stage[dup] = 0
    reason[dup] = code("duplicate_id")
    for i, z in enumerate(keep_files, start=1):
        dropped = ~z["keep"]
        if not dropped.any():
            continue
        rows = z["row"][dropped]
        codes = z["reason_code"][dropped]
        names = z["reason_names"]
        remap = np.array([code(str(x)) for x in names], dtype=np.int32)
        stage[rows] = i
        reason[rows] = remap[codes]
    kept = stage == -1
    # a dictionary of distinct names: two stages may share one (Parquet writes a dictionary with
    # repeated values with undefined bytes in its page, so the file would differ from run to run)
    names_all = list(dict.fromkeys(["read", *stage_names]))
    name_of_stage = np.array([names_all.index(x) for x in ["read", *stage_names]], dtype=np.int32)
    stage_name = pa.DictionaryArray.from_arrays(
        arrow_array(name_of_stage[np.where(kept, 0, stage)], mask=kept), arrow_strings(names_all))
    reason_arr = pa.DictionaryArray.from_arrays(arrow_array(reason, mask=kept), arrow_strings(vocab or [""]))
    return pa.table({"id": ids, "kept": arrow_array(kept), "stage": arrow_array(stage),
                     "stage_name": stage_name, "reason": reason_arr})


def folder_digests(folder: str) -> dict[str, str]:
    """sha256 of every file below a folder, by relative path: how runs are compared byte for byte."""
    import hashlib

    out = {}
    for root, _, files in sorted(os.walk(folder)):
        for f in sorted(files):
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, folder)] = hashlib.sha256(fh.read()).hexdigest()
    return dict(sorted(out.items()))
