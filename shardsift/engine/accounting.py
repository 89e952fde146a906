"""Per-document accounting: for every input document, kept or dropped, by which stage and why.

``OUTPUT/decisions/shard-NNNNN.parquet`` holds one row per input document: id, kept, stage (the
index of the stage that dropped it: 0 is reading the input, -1 for kept documents), stage_name and
reason (dictionary-encoded). ``verify_output`` checks an output against its manifest and decisions.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..columns import arrow_array, arrow_strings
from ..errors import DataError
from . import workdir


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


def read_parts(folder: str, columns=None, filter=None) -> pa.Table | None:
    """Every Parquet file of a folder as one table. Files are read one by one (their dictionaries and
    extra columns may differ) and dictionary columns become plain strings."""
    files = sorted(f for f in os.listdir(folder) if f.endswith(".parquet")) if os.path.isdir(folder) else []
    tables = []
    for f in files:
        t = pq.read_table(os.path.join(folder, f), columns=columns, filters=filter)
        for i, field in enumerate(t.schema):
            if pa.types.is_dictionary(field.type):
                t = t.set_column(i, field.name, t.column(i).cast(field.type.value_type))
        tables.append(t)
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="permissive")


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


def read_manifest(output: str) -> dict:
    path = os.path.join(output, "manifest.json")
    if not os.path.exists(path):
        raise DataError(f"{output}: no manifest.json (not a finished shardsift output)")
    return workdir.read_json(path)


def explain(output: str, doc_id: str) -> list[str]:
    """Lines saying what happened to one document: kept, or dropped by which stage and why."""
    import pyarrow.compute as pc

    m = read_manifest(output)
    ddir = os.path.join(output, "decisions")
    if not os.path.isdir(ddir):
        raise DataError(f"{output}: no decisions/ record (written by shardsift >= 0.1)")
    hit = read_parts(ddir, filter=pc.field("id") == doc_id)
    if hit is None or hit.num_rows == 0:
        raise DataError(f"{output}: no input document has id {doc_id!r}")
    row = hit.slice(0, 1).to_pylist()[0]
    lines = []
    if row["kept"]:
        lines.append(f"{doc_id}: kept (passed all {len(m['stages']) - 1} stages)")
    else:
        lines.append(f"{doc_id}: dropped by stage {row['stage']} '{row['stage_name']}' (reason: {row['reason']})")
    sdir = os.path.join(output, "scores")
    if os.path.isdir(sdir):
        sc = read_parts(sdir, filter=pc.field("id") == doc_id)
        for r in sorted(sc.to_pylist() if sc is not None else [], key=lambda r: r["stage"]):
            extra = {k: v for k, v in r.items() if k not in ("id", "stage", "score", "kept", "reason") and v is not None}
            more = "".join(f", {k} {v}" for k, v in extra.items())
            lines.append(f"  {r['stage']}: score {r['score']:.6g}, {'kept' if r['kept'] else 'dropped'}"
                         f"{'' if r['kept'] else ' (' + str(r['reason']) + ')'}{more}")
    return lines


def verify_output(output: str) -> dict:
    """Check a finished output: docs_in = kept + dropped, and the output ids are exactly the kept ids,
    each once, with row counts and file list matching the manifest. Raises DataError on any mismatch."""
    import pyarrow.compute as pc

    m = read_manifest(output)
    if m["docs_in"] != m["docs_kept"] + sum(sum(s["dropped"].values()) for s in m["stages"]):
        raise DataError(f"{output}: manifest accounting does not add up")
    for s in m["stages"]:
        if s["docs_in"] != s["kept"] + sum(s["dropped"].values()):
            raise DataError(f"{output}: stage {s['name']!r}: in != kept + dropped")
    for a, b in zip(m["stages"], m["stages"][1:]):
        if a["kept"] != b["docs_in"]:
            raise DataError(f"{output}: stage {b['name']!r} got {b['docs_in']} documents, the one before kept {a['kept']}")
    files = sorted(f["path"] for f in m["output"]["files"])
    on_disk = sorted(f"data/{f}" for f in os.listdir(os.path.join(output, "data")))
    if files != on_disk:
        raise DataError(f"{output}: data files {on_disk} differ from the manifest's {files}")
    id_col = m["config"]["input"]["id_column"]
    data_ids = pa.concat_arrays([pq.read_table(os.path.join(output, f), columns=[id_col]).column(id_col)
                                 .combine_chunks().cast(pa.string()) for f in files]) if files else pa.array([], pa.string())
    for f in m["output"]["files"]:
        if pq.ParquetFile(os.path.join(output, f["path"])).metadata.num_rows != f["rows"]:
            raise DataError(f"{output}: {f['path']} row count differs from the manifest")
    if len(data_ids) != m["docs_kept"]:
        raise DataError(f"{output}: {len(data_ids)} rows in data/, manifest says {m['docs_kept']} kept")
    if len(pc.unique(data_ids)) != len(data_ids):
        raise DataError(f"{output}: an id appears more than once in data/")
    dec = read_parts(os.path.join(output, "decisions"))
    if dec is None or dec.num_rows != m["docs_in"]:
        raise DataError(f"{output}: decisions/ has {0 if dec is None else dec.num_rows} rows for "
                        f"{m['docs_in']} input documents")
    kept_ids = dec.filter(dec.column("kept")).column("id").combine_chunks().cast(pa.string())
    if sorted(kept_ids.to_pylist()) != sorted(data_ids.to_pylist()):
        raise DataError(f"{output}: the ids in data/ are not exactly the kept ids in decisions/")
    by_stage = {}
    for r in dec.filter(pc.invert(dec.column("kept"))).group_by(["stage", "reason"]).aggregate([("id", "count")]).to_pylist():
        by_stage.setdefault(int(r["stage"]), {})[str(r["reason"])] = int(r["id_count"])
    for i, s in enumerate(m["stages"]):
        if by_stage.get(i, {}) != s["dropped"]:
            raise DataError(f"{output}: stage {s['name']!r} drops {s['dropped']} in the manifest, "
                            f"{by_stage.get(i, {})} in decisions/")
    return {"docs_in": m["docs_in"], "docs_kept": m["docs_kept"], "files": len(files)}


def dumps(obj) -> str:
    return json.dumps(obj, indent=2)
