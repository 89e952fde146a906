"""The one reader of a finished output directory, for `verify`, `explain`, `report` and `compare`.

A finished output holds the kept documents under ``data/`` and, in the hidden ``.shardsift/``
folder, ``manifest.json`` (written last: no manifest, no finished output), one row per input document
(``decisions/``: id, kept, the stage that dropped it and why), the scores sidecar
(``scores/stage-NN-NAME.parquet``) and fitted models (``models/``); the layout is named once, in
``shardsift.io.layout``. Every read goes through the storage layer, so an output on object storage
reads like a local one. Nothing here reads the input corpus or the private work dir: what the
output does not hold, its readers say is missing.
"""
from __future__ import annotations

import json
import re

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .errors import DataError
from .io import storage
from .io.json_lines import is_jsonl, read_jsonl
from .io.layout import DATA, DECISIONS, MANIFEST, MODELS, SCORES, scores_file_name  # noqa: F401 (the layout)
from .io.megatron import read_index

LABEL_CANDIDATES = ("domain", "label", "source", "category", "lang", "language")
MAX_LABELS = 40
_SCORES_FILE = re.compile(r"stage-(\d+)-.*\.parquet$")


# -- the layout ------------------------------------------------------------------------------------

def manifest_path(out: str) -> str:
    return storage.join(out, MANIFEST)


def data_dir(out: str) -> str:
    """The kept documents: Parquet parts with every input column."""
    return storage.join(out, DATA)


def decisions_dir(out: str) -> str:
    """One row per input document: id, kept, stage, stage_name, reason."""
    return storage.join(out, DECISIONS)


def scores_dir(out: str) -> str:
    """The scores sidecar: one file per stage, one row per document that reached the stage."""
    return storage.join(out, SCORES)


def models_dir(out: str) -> str:
    """What stages fitted (classifiers, n-gram tables), one folder per stage."""
    return storage.join(out, MODELS)


# -- low-level reads -------------------------------------------------------------------------------

def load_manifest(out: str) -> dict:
    path = manifest_path(out)
    if not storage.exists(path):
        raise DataError(f"{out}: no {MANIFEST} (not a finished shardsift output)")
    try:
        return json.loads(storage.read_bytes(path))
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable manifest ({err})") from None


def parquet_files(folder: str) -> list[str]:
    """The Parquet files directly in a folder, by name ([] when it does not exist)."""
    if not storage.isdir(folder):
        return []
    return [storage.join(folder, f) for f in sorted(storage.listdir(folder)) if f.endswith(".parquet")]


def read_table(path: str, columns=None, filters=None) -> pa.Table:
    if is_jsonl(path):
        return read_jsonl(path, columns)
    fs, where = storage.arrow_fs(path)
    return pq.read_table(where, columns=columns, filters=filters, filesystem=fs)


def read_schema(path: str) -> pa.Schema:
    if is_jsonl(path):
        return read_jsonl(path).schema
    fs, where = storage.arrow_fs(path)
    if fs is None:
        return pq.read_schema(where)
    with fs.open_input_file(where) as fh:
        return pq.read_schema(fh)


def num_rows(path: str) -> int:
    if is_jsonl(path):
        return read_jsonl(path).num_rows
    if storage.exists(path + ".idx"):  # a token shard's prefix
        return len(read_index(path + ".idx")["lengths"])
    fs, where = storage.arrow_fs(path)
    if fs is None:
        return pq.ParquetFile(where).metadata.num_rows
    with fs.open_input_file(where) as fh:
        return pq.ParquetFile(fh).metadata.num_rows


def read_parts(folder: str, columns=None, filter=None) -> pa.Table | None:
    """Every Parquet file of a folder as one table (None when there is none). Files are read one by
    one (their dictionaries and extra columns may differ) and dictionary columns become plain strings."""
    tables = []
    for path in parquet_files(folder):
        t = read_table(path, columns=columns, filters=filter)
        for i, field in enumerate(t.schema):
            if pa.types.is_dictionary(field.type):
                t = t.set_column(i, field.name, t.column(i).cast(field.type.value_type))
        tables.append(t)
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="permissive")


# -- what the output holds -------------------------------------------------------------------------

def input_columns(manifest: dict) -> tuple[str, str]:
    """(text column, id column) of the run's input."""
    inp = (manifest.get("config") or {}).get("input") or {}
    return inp.get("text_column", "text"), inp.get("id_column", "id")


def data_files(out: str) -> list[str]:
    """The parts of data/ that hold documents' columns (Parquet or JSON Lines; none for token shards)."""
    folder = data_dir(out)
    if not storage.isdir(folder):
        return []
    return [storage.join(folder, f) for f in sorted(storage.listdir(folder)) if f.endswith(".parquet") or is_jsonl(f)]


def token_shards(out: str) -> list[str]:
    """The Megatron prefixes (``data/part-SSSSS-KKKKK``) of a token-shard output, in order."""
    folder = data_dir(out)
    if not storage.isdir(folder):
        return []
    return [storage.join(folder, f[:-4]) for f in sorted(storage.listdir(folder)) if f.endswith(".bin")]


def read_kept(out: str, manifest: dict, columns=(), ids: pa.Array | None = None) -> pa.Table:
    """The kept documents' ids (column ``id``, as strings) and whichever of ``columns`` the output
    has; only the documents whose id is in ``ids`` when given."""
    _, id_col = input_columns(manifest)
    parts = []
    if (manifest.get("output") or {}).get("format") == "tokens":  # the shards hold ids of tokens only
        dec = read_decisions(out, columns=["id", "kept"])
        kept = pa.table({"id": pa.array([], pa.string())}) if dec is None else \
            dec.filter(dec.column("kept")).select(["id"]).cast(pa.schema([("id", pa.string())]))
        parts = [kept if ids is None else kept.filter(pc.is_in(kept.column("id"), value_set=ids))]
    for path in data_files(out):
        names = read_schema(path).names
        t = read_table(path, columns=[c for c in dict.fromkeys([id_col, *columns]) if c in names])
        if id_col not in t.column_names:
            continue
        t = t.set_column(t.column_names.index(id_col), "id", t.column(id_col).cast(pa.string()))
        if ids is not None:
            t = t.filter(pc.is_in(t.column("id"), value_set=ids))
        parts.append(t)
    if not parts:
        return pa.table({"id": pa.array([], pa.string())})
    return pa.concat_tables(parts, promote_options="permissive")


def kept_texts(out: str, manifest: dict, ids) -> dict[str, str]:
    """{id: text} of those of ``ids`` that are in the output (dropped documents are not stored)."""
    want = pa.array(sorted(set(ids)), pa.string())
    if not len(want):
        return {}
    text_col, _ = input_columns(manifest)
    t = read_kept(out, manifest, [text_col], ids=want)
    if text_col not in t.column_names:
        return {}
    return dict(zip(t.column("id").to_pylist(), t.column(text_col).to_pylist()))


def read_decisions(out: str, columns=None, filter=None) -> pa.Table | None:
    """decisions/ as one table (None when the output has none)."""
    return read_parts(decisions_dir(out), columns=columns, filter=filter)


def read_scores(out: str) -> dict[int, pa.Table]:
    """{manifest stage index: sidecar table} from scores/ ({} when the run wrote no sidecar)."""
    tables = {}
    for path in parquet_files(scores_dir(out)):
        m = _SCORES_FILE.search(storage.basename(path))
        if m:
            tables[int(m.group(1))] = read_table(path)
    return tables


def models(out: str, manifest: dict) -> dict[str, dict[str, str]]:
    """{stage name: {model key: path}} of the fitted models the output holds."""
    found = {}
    for stage, files in ((manifest.get("output") or {}).get("models") or {}).items():
        paths = {k: storage.join(out, *rel.split("/")) for k, rel in files.items()}
        found[stage] = {k: p for k, p in paths.items() if storage.exists(p)}
    return found


def detect_label(out: str, manifest: dict) -> str | None:
    """A low-cardinality label column of the kept documents (domain, label, source, ...), if any."""
    files = data_files(out)
    if not files:
        return None
    text_col, id_col = input_columns(manifest)
    names = read_schema(files[0]).names
    for name in LABEL_CANDIDATES:
        if name in names and name not in (text_col, id_col):
            col = read_table(files[0], columns=[name]).column(name)
            if (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
                    or pa.types.is_integer(col.type)) and len(pc.unique(col)) <= MAX_LABELS:
                return name
    return None


# -- explain and verify ----------------------------------------------------------------------------

def explain(out: str, doc_id: str) -> list[str]:
    """Lines saying what happened to one document: kept, or dropped by which stage and why."""
    m = load_manifest(out)
    if not storage.isdir(decisions_dir(out)):
        raise DataError(f"{out}: no {DECISIONS}/ record in this output")
    hit = read_decisions(out, filter=pc.field("id") == doc_id)
    if hit is None or hit.num_rows == 0:
        raise DataError(f"{out}: no input document has id {doc_id!r}")
    row = hit.slice(0, 1).to_pylist()[0]
    if row["kept"]:
        lines = [f"{doc_id}: kept (passed all {len(m['stages']) - 1} stages)"]
    else:
        lines = [f"{doc_id}: dropped by stage {row['stage']} '{row['stage_name']}' (reason: {row['reason']})"]
    sc = read_parts(scores_dir(out), filter=pc.field("id") == doc_id)
    for r in sorted(sc.to_pylist() if sc is not None else [], key=lambda r: r["stage"]):
        extra = {k: v for k, v in r.items() if k not in ("id", "stage", "score", "kept", "reason") and v is not None}
        more = "".join(f", {k} {v}" for k, v in extra.items())
        lines.append(f"  {r['stage']}: score {r['score']:.6g}, {'kept' if r['kept'] else 'dropped'}"
                     f"{'' if r['kept'] else ' (' + str(r['reason']) + ')'}{more}")
    return lines


def _check_manifest(out: str, m: dict) -> None:
    if m["docs_in"] != m["docs_kept"] + sum(sum(s["dropped"].values()) for s in m["stages"]):
        raise DataError(f"{out}: manifest accounting does not add up")
    for s in m["stages"]:
        if s["docs_in"] != s["kept"] + sum(s["dropped"].values()):
            raise DataError(f"{out}: stage {s['name']!r}: in != kept + dropped")
    for a, b in zip(m["stages"], m["stages"][1:]):
        if a["kept"] != b["docs_in"]:
            raise DataError(f"{out}: stage {b['name']!r} got {b['docs_in']} documents, the one before kept {a['kept']}")


def _first_copies(out: str, m: dict) -> pa.Array:
    """The ids in data/, each document's first copy only: a mixture repeats an upsampled document
    as rows with epoch 1, 2, ..., every one of them the repeat of an epoch-0 row."""
    if "rows_written" not in m:
        return read_kept(out, m).column("id").combine_chunks()
    t = read_kept(out, m, columns=["epoch"])
    if t.num_rows != m["rows_written"]:
        raise DataError(f"{out}: {t.num_rows} rows in {DATA}/, manifest says {m['rows_written']} written")
    if "epoch" not in t.column_names:
        return t.column("id").combine_chunks()
    first = t.filter(pc.equal(t.column("epoch"), 0)).column("id").combine_chunks()
    again = t.filter(pc.greater(t.column("epoch"), 0))
    pairs = again.group_by(["id", "epoch"]).aggregate([]).num_rows
    if pairs != again.num_rows or not pc.all(pc.is_in(again.column("id"), value_set=first), min_count=0).as_py():
        raise DataError(f"{out}: a repeated row in {DATA}/ is not one repetition of a kept document")
    return first


def verify_output(out: str) -> dict:
    """Check a finished output: docs_in = kept + dropped, and the output ids are exactly the kept ids,
    each once, with row counts and file list matching the manifest. Raises DataError on any mismatch."""
    m = load_manifest(out)
    _check_manifest(out, m)
    files = sorted(f["path"] for f in m["output"]["files"])
    on_disk = sorted(f"{DATA}/{storage.basename(p)}" for p in data_files(out) + token_shards(out))
    if files != on_disk:
        raise DataError(f"{out}: data files {on_disk} differ from the manifest's {files}")
    for f in m["output"]["files"]:
        if num_rows(storage.join(out, *f["path"].split("/"))) != f["rows"]:
            raise DataError(f"{out}: {f['path']} row count differs from the manifest")
    data_ids = _first_copies(out, m)
    if len(data_ids) != m["docs_kept"]:
        raise DataError(f"{out}: {len(data_ids)} rows in {DATA}/, manifest says {m['docs_kept']} kept")
    if len(pc.unique(data_ids)) != len(data_ids):
        raise DataError(f"{out}: an id appears more than once in {DATA}/")
    dec = read_decisions(out)
    if dec is None or dec.num_rows != m["docs_in"]:
        raise DataError(f"{out}: {DECISIONS}/ has {0 if dec is None else dec.num_rows} rows for "
                        f"{m['docs_in']} input documents")
    kept_ids = dec.filter(dec.column("kept")).column("id").combine_chunks().cast(pa.string())
    # data ids are distinct (above): the same count, all of them kept and the kept distinct = the same set
    if len(kept_ids) != len(data_ids) or len(pc.unique(kept_ids)) != len(kept_ids) \
            or not pc.all(pc.is_in(data_ids.cast(pa.string()), value_set=kept_ids), min_count=0).as_py():
        raise DataError(f"{out}: the ids in {DATA}/ are not exactly the kept ids in {DECISIONS}/")
    by_stage: dict[int, dict] = {}
    for r in dec.filter(pc.invert(dec.column("kept"))).group_by(["stage", "reason"]).aggregate(
            [("id", "count")]).to_pylist():
        by_stage.setdefault(int(r["stage"]), {})[str(r["reason"])] = int(r["id_count"])
    for i, s in enumerate(m["stages"]):
        if by_stage.get(i, {}) != s["dropped"]:
            raise DataError(f"{out}: stage {s['name']!r} drops {s['dropped']} in the manifest, "
                            f"{by_stage.get(i, {})} in {DECISIONS}/")
    return {"docs_in": m["docs_in"], "docs_kept": m["docs_kept"], "files": len(files),
            "rows": m.get("rows_written", m["docs_kept"])}
