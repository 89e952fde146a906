"""``shardsift check``: what a run would refuse, found before any document is read.

Every key and parameter is validated when the config is parsed; this adds the inputs: each file
exists and is readable, and its text column exists with a string type (from the Parquet footer or
the first JSONL block), and whether the output already holds a finished run.
"""
from __future__ import annotations

import os

import pyarrow as pa

from ..errors import DataError
from ..io import layout, resolve_shards, shard_schema, storage
from ..io.json_lines import check_schema
from .config import Config, _is_dataset


def check_inputs(cfg: Config) -> list[str]:
    """Lines describing the checked inputs and output; raises DataError at the first bad one."""
    inp, lines = cfg.input, []
    if _is_dataset(inp.path):
        names = inp.path.column_names
        if inp.text_column not in names:
            raise DataError(f"<datasets.Dataset>: no text column {inp.text_column!r} (columns: {', '.join(names)})")
        return [f"input: a datasets.Dataset of {len(inp.path):,} rows"]
    shards = resolve_shards(inp.path, inp.format, inp.storage_options)
    total = 0
    for sh in shards:
        schema = shard_schema(sh)
        if schema.names and inp.text_column not in schema.names:
            raise DataError(f"{sh.uri}: no text column {inp.text_column!r} (columns: {', '.join(schema.names)}; "
                            "set input.text_column)")
        if schema.names:
            typ = schema.field(inp.text_column).type
            if not (pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_null(typ)):
                raise DataError(f"{sh.uri}: column {inp.text_column!r} is {typ}, not a string type "
                                "(set input.text_column to the column that holds the text)")
        if cfg.output.format == "jsonl":
            check_schema(schema, f"{sh.uri}: output.format: jsonl")
        total += sh.size
    lines.append(f"input: {len(shards)} file(s), {total / 1e6:,.1f} MB, text column {inp.text_column!r}")
    out = storage.abspath(cfg.output.path)
    if storage.exists(os.path.join(out, layout.MANIFEST)):
        lines.append(f"output: {out} holds a finished run (select needs --overwrite to replace it)")
    else:
        lines.append(f"output: {out}")
    return lines
