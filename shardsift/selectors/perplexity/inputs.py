"""The inputs of perplexity-correlation selection: the loss matrix and the benchmark errors.

Reading and checking both files (each problem is one line naming the file, the model and the key),
aligning them model by model, and writing generated example inputs for the sample corpus and tests.
"""
from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...errors import DataError


def _read_table(path: str, what: str) -> pa.Table:
    """A Parquet or CSV file as an Arrow table, or a one-line DataError."""
    if not os.path.exists(path):
        raise DataError(f"{path}: {what} file not found")
    low = path.lower()
    try:
        if low.endswith((".parquet", ".pq")):
            import pyarrow.parquet as pq

            return pq.read_table(path)
        if low.endswith((".csv", ".csv.gz", ".tsv")):
            from pyarrow import csv

            opts = csv.ParseOptions(delimiter="\t") if low.endswith(".tsv") else csv.ParseOptions()
            return csv.read_csv(path, parse_options=opts)
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"{path}: cannot read {what}: {str(err).splitlines()[0]}") from None
    raise DataError(f"{path}: {what} must be .parquet or .csv")


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_decimal(t)


def read_losses(path: str, key: str) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(keys as a str array, model names, BPB matrix N x D) from a loss-matrix file.

    One row per key, one floating-point column per model. The key column is the column named like
    the stage's ``key`` (``id``, ``domain``, ...), else the first non-numeric column. Other integer or
    string columns (e.g. a chunk number) are ignored.
    """
    tbl = _read_table(path, "loss matrix")
    names = tbl.column_names
    if key in names:
        key_col = key
    else:
        text_cols = [c for c in names if not _is_number(tbl.schema.field(c).type)]
        if not text_cols:
            raise DataError(f"{path}: no key column {key!r} (and no non-numeric column to use as the key)")
        key_col = text_cols[0]
    models = [c for c in names if c != key_col and pa.types.is_floating(tbl.schema.field(c).type)]
    if not models:
        raise DataError(f"{path}: no floating-point model columns besides the key column {key_col!r}")
    keys_arr = tbl.column(key_col).combine_chunks()
    if keys_arr.null_count:
        raise DataError(f"{path}: column {key_col!r} has {keys_arr.null_count} empty keys")
    keys = np.asarray(keys_arr.cast(pa.string()).to_numpy(zero_copy_only=False), dtype=object)
    uniq, counts = np.unique(keys.astype(str), return_counts=True)
    if (counts > 1).any():
        raise DataError(f"{path}: key {str(uniq[counts > 1][0])!r} appears {int(counts[counts > 1][0])} times in "
                        f"column {key_col!r}; give one row per key")
    X = np.empty((len(models), tbl.num_rows), dtype=np.float64)
    for i, m in enumerate(models):
        col = tbl.column(m).combine_chunks()
        X[i] = col.to_numpy(zero_copy_only=False).astype(np.float64) if len(col) else np.zeros(0)
        bad = ~np.isfinite(X[i])
        if bad.any():
            j = int(np.argmax(bad))
            raise DataError(f"{path}: model {m!r}, key {str(keys[j])!r}: bits per byte is {X[i, j]} "
                            "(missing or not finite)")
        neg = X[i] < 0
        if neg.any():
            j = int(np.argmax(neg))
            raise DataError(f"{path}: model {m!r}, key {str(keys[j])!r}: bits per byte {X[i, j]} is negative")
    return keys, models, X


def read_errors(path: str) -> dict[str, float]:
    """Benchmark error per model (lower is better) from CSV, Parquet, YAML or JSON.

    CSV/Parquet: long form with columns ``model`` and ``error`` (or exactly two columns: name, value),
    or wide form with one numeric column per model, whose rows (e.g. one per benchmark) are
    averaged, as the reference example does. YAML/JSON: a mapping ``model: error``.
    """
    low = path.lower()
    if low.endswith((".yaml", ".yml", ".json")):
        if not os.path.exists(path):
            raise DataError(f"{path}: benchmark errors file not found")
        import yaml

        try:
            with open(path, encoding="utf-8") as fh:
                data = yaml.safe_load(fh)
        except yaml.YAMLError as err:
            raise DataError(f"{path}: invalid YAML: {getattr(err, 'problem', err)}") from None
        if isinstance(data, dict) and set(data) == {"errors"} and isinstance(data["errors"], dict):
            data = data["errors"]
        if not isinstance(data, dict) or not data:
            raise DataError(f"{path}: expected a mapping of model name to benchmark error")
        out = {}
        for k, v in data.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise DataError(f"{path}: model {k!r}: benchmark error {v!r} is not a number")
            out[str(k)] = float(v)
        return out
    tbl = _read_table(path, "benchmark errors")
    names = tbl.column_names
    lower = {c.lower(): c for c in names}
    if "model" in lower and "error" in lower:
        mcol, ecol = lower["model"], lower["error"]
    elif len(names) == 2 and not _is_number(tbl.schema.field(names[0]).type):
        mcol, ecol = names
    else:
        models = [c for c in names if _is_number(tbl.schema.field(c).type)]
        if not models or tbl.num_rows == 0:
            raise DataError(f"{path}: expected columns model,error or one numeric column per model")
        out = {}
        for m in models:
            v = tbl.column(m).to_numpy(zero_copy_only=False).astype(np.float64)
            out[m] = float(np.mean(v))
        return out
    if not _is_number(tbl.schema.field(ecol).type):
        raise DataError(f"{path}: column {ecol!r} must hold numbers (benchmark errors)")
    ms = [str(m) for m in tbl.column(mcol).to_pylist()]
    es = tbl.column(ecol).to_numpy(zero_copy_only=False).astype(np.float64)
    if len(set(ms)) != len(ms):
        dup = next(m for m in ms if ms.count(m) > 1)
        raise DataError(f"{path}: model {dup!r} appears more than once")
    return dict(zip(ms, es.tolist()))


def align_inputs(keys, models, X, errors: dict, losses_path: str, errors_path: str, strict: bool):
    """Check the two inputs against each other; return (X, y) with models in the loss file's order."""
    only_l = [m for m in models if m not in errors]
    if only_l:
        raise DataError(f"model {only_l[0]!r} is in the loss matrix {losses_path} but not in the benchmark "
                        f"errors {errors_path}" + (f" ({len(only_l)} such models)" if len(only_l) > 1 else ""))
    only_e = [m for m in errors if m not in set(models)]
    if only_e:
        raise DataError(f"model {only_e[0]!r} is in the benchmark errors {errors_path} but not in the loss "
                        f"matrix {losses_path}" + (f" ({len(only_e)} such models)" if len(only_e) > 1 else ""))
    if len(models) < 3:
        raise DataError(f"{losses_path}: {len(models)} models; perplexity correlations need at least 3 "
                        "(tens in practice)")
    if len(keys) == 0:
        raise DataError(f"{losses_path}: the loss matrix has no rows")
    y = np.array([errors[m] for m in models], dtype=np.float64)
    bad = ~np.isfinite(y)
    if bad.any():
        raise DataError(f"{errors_path}: model {models[int(np.argmax(bad))]!r}: benchmark error is not a number")
    out = (y < 0) | (y > 1)
    if out.any():
        m = models[int(np.argmax(out))]
        msg = (f"{errors_path}: model {m!r}: benchmark error {errors[m]} is outside [0, 1] "
               f"({int(out.sum())} such models); is this an error rate (1 - accuracy)?")
        if strict:
            raise DataError(msg + " (strict: true)")
        warnings.warn(msg, stacklevel=3)
    return X, y


def doc_keys(docs, key: str) -> pa.Array:
    """Each pool document's key, as strings: its id (``key: id``) or the value of the ``key`` column."""
    arr = docs.ids if key == "id" else docs.column(key)
    return arr.cast(pa.string()) if arr.type != pa.string() else arr


def file_fingerprint(path: str | None) -> str:
    """Path, size and modification time: in the stage fingerprint, so a changed input file reruns
    the stage instead of resuming it."""
    if not path:
        return ""
    try:
        st = os.stat(path)
    except OSError:
        return f"{path}:missing"
    return f"{os.path.abspath(path)}:{st.st_size}:{st.st_mtime_ns}"


# -- example inputs for the sample corpus ----------------------------------------------------------

def write_example_inputs(out_dir: str, pool_docs_or_domains, seed: int = 0, *, n_models: int = 24,
                         informative=None, key: str = "domain") -> dict:
    """Write a generated loss matrix and benchmark errors for a corpus, for examples and tests.

    ``pool_docs_or_domains``: a list of key values (e.g. domain names), an Arrow table / dict of
    columns with a ``key`` column, or a path to Parquet files with one. Each of ``n_models`` fake
    models has a general capability and a benchmark skill; its error falls with both, and its BPB on
    every key falls with capability, but only on the ``informative`` keys (a seeded third of them by
    default) also with benchmark skill, so those keys' losses correlate best with the error.
    Writes ``losses.csv`` (column ``key`` + one column per model), ``errors.csv`` (model,error) and
    ``truth.json``; returns their paths and the informative keys.
    """
    values = _key_values(pool_docs_or_domains, key)
    rng = np.random.default_rng(seed)
    if informative is None:
        k = max(1, len(values) // 3)
        informative = sorted(rng.choice(values, size=k, replace=False).tolist())
    informative = [str(v) for v in informative]
    inf = np.isin(np.array(values, dtype=object), informative)
    cap = rng.normal(size=n_models)
    skill = rng.normal(size=n_models)
    err = np.clip(0.5 - 0.08 * cap - 0.12 * skill + rng.normal(0, 0.02, n_models), 0.02, 0.98)
    base = rng.uniform(0.7, 1.6, size=len(values))
    X = (base[None, :] - 0.05 * cap[:, None] - 0.06 * skill[:, None] * inf[None, :]
         + rng.normal(0, 0.02, size=(n_models, len(values))))
    X = np.maximum(X, 0.05)
    models = [f"lm-{i:02d}" for i in range(n_models)]
    os.makedirs(out_dir, exist_ok=True)
    from pyarrow import csv

    cols = {key: pa.array(values, pa.string())}
    cols.update({m: pa.array(np.round(X[i], 6)) for i, m in enumerate(models)})
    losses = os.path.join(out_dir, "losses.csv")
    errors = os.path.join(out_dir, "errors.csv")
    csv.write_csv(pa.table(cols), losses)
    csv.write_csv(pa.table({"model": models, "error": np.round(err, 6)}), errors)
    truth = os.path.join(out_dir, "truth.json")
    with open(truth, "w", encoding="utf-8") as fh:
        json.dump({"key": key, "informative": informative, "seed": seed}, fh, indent=1)
    return {"losses": losses, "errors": errors, "truth": truth, "informative": informative}


def _key_values(src, key: str) -> list[str]:
    if isinstance(src, (str, os.PathLike)) and os.path.exists(src):
        import pyarrow.dataset as ds

        src = ds.dataset(str(src), format="parquet").to_table(columns=[key])
    if isinstance(src, dict):
        src = pa.table({key: src[key]})
    if isinstance(src, pa.Table):
        if key not in src.column_names:
            raise DataError(f"example inputs: no column {key!r} in the given documents")
        src = pc.unique(src.column(key).combine_chunks().cast(pa.string())).to_pylist()
    vals = sorted({str(v) for v in src if v is not None})
    if len(vals) < 2:
        raise DataError(f"example inputs: need at least 2 distinct {key} values, got {len(vals)}")
    return vals
