"""``shardsift check``: what a run would refuse, found before any document is read.

Every key and parameter is validated when the config is parsed; this adds the files: each input
file exists and is readable, and its text column exists with a string type (from the Parquet
footer or the first JSONL block); every file a stage or the config names through a path parameter
(``Param(path=...)``: targets, loss matrices, models, tokenizers, benchmark files) exists and is
readable, a tabular one parses, and a corpus has its text column as strings; and whether the
output already holds a finished run. Every problem is one line; nothing is written.
"""
from __future__ import annotations

import json
import os

import pyarrow as pa

from ..errors import ShardsiftError
from ..io import layout, resolve_shards, shard_schema, storage
from ..io.json_lines import check_schema
from ..params import map_paths
from .config import INPUT, OUTPUT, TOP, Config, _is_dataset


def check_config(cfg: Config) -> tuple[list[str], list[str]]:
    """(lines describing what was checked, one line per problem found)."""
    lines, problems = [], []
    fmt = cfg.output.format if cfg.output is not None else None
    if cfg.sources:  # a mixture: each source with its own files and reader options
        lines += [f"source {s.name}: " + line.removeprefix("input: ")
                  for s in cfg.sources for line in _check_input(s.input, problems, fmt)]
    elif cfg.input is not None:
        lines += _check_input(cfg.input, problems, fmt)
    problems += file_problems(cfg)
    if cfg.output is not None:
        out = storage.abspath(cfg.output.path)
        finished = storage.exists(os.path.join(out, layout.MANIFEST))
        lines.append(f"output: {out}" + (" holds a finished run (select needs --overwrite to replace it)"
                                         if finished else ""))
    return lines, problems


def file_problems(cfg: Config) -> list[str]:
    """One line per problem of every file the config names besides the input: the config's own (a
    tokenizer, say), then each stage's (targets, loss matrices, models, benchmarks). ``select`` runs
    this before the scan, ``check`` with everything else."""
    sections = [("config", TOP, cfg.raw.get), ("input", {k: v for k, v in INPUT.items() if k != "path"},
                                                          lambda k: getattr(cfg.input, k, None)),
                ("output", OUTPUT, lambda k: getattr(cfg.output, k, None))]
    sections += [(st.where, type(sel).param_specs(), lambda k, sel=sel: getattr(sel, k, None))
                 for st, sel in zip(cfg.stages, cfg.built)]
    sections += [(st.where, st.cls.param_specs(), lambda k, st=st: st.params.get(k))  # a source's own stages
                 for src in cfg.sources or () for st in src.stages]
    problems = []
    for where, specs, get in sections:
        for key, spec in specs.items():
            if spec.path and spec.path != "output" and (value := get(key)) is not None:
                problems += _check_param(f"{where}.{key}", spec, value)
    return problems


def _check_input(inp, problems: list[str], out_format: str | None) -> list[str]:
    if _is_dataset(inp.path):
        names = inp.path.column_names
        if inp.text_column not in names:
            problems.append(f"<datasets.Dataset>: no text column {inp.text_column!r} (columns: {', '.join(names)})")
        return [f"input: a datasets.Dataset of {len(inp.path):,} rows"]
    try:
        shards = resolve_shards(inp.path, inp.format, inp.storage_options)
    except ShardsiftError as err:
        problems.append(str(err))
        return []
    for sh in shards:
        problems += _text_column_problems(sh, inp.text_column, "input.text_column", jsonl=out_format == "jsonl")
    total = sum(sh.size for sh in shards)
    return [f"input: {len(shards)} file(s), {total / 1e6:,.1f} MB, text column {inp.text_column!r}"]


def _text_column_problems(sh, text_column: str, key: str, jsonl: bool = False) -> list[str]:
    """The problems of one shard's schema (read once): its text column, and with ``jsonl`` a column
    JSON Lines cannot write."""
    try:
        schema = shard_schema(sh)
    except ShardsiftError as err:
        return [str(err)]
    problems = []
    if jsonl:
        try:
            check_schema(schema, f"{sh.uri}: output.format: jsonl")
        except ShardsiftError as err:
            problems.append(str(err))
    if not schema.names:
        return problems
    if text_column not in schema.names:
        return [f"{sh.uri}: no text column {text_column!r} (columns: {', '.join(schema.names)}; set {key})", *problems]
    typ = schema.field(text_column).type
    if not (pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_null(typ)):
        return [f"{sh.uri}: column {text_column!r} is {typ}, not a string type "
                f"(set {key} to the column that holds the text)", *problems]
    return problems


def _check_param(where: str, spec, value) -> list[str]:
    """The problems of one path parameter's files: a corpus is listed and its text column checked
    like the input; any other path must exist, be readable and, when tabular, parse."""
    if spec.path == "corpus":
        items = value if isinstance(value, list) else [value]
        problems = []
        for i, item in enumerate(items):
            at = f"{where}[{i}]" if isinstance(value, list) else where
            problems += _check_corpus(at, item)
        return problems
    paths: list[str] = []
    map_paths(value, paths.append)
    return [f"{where}: {p}: {msg}" for p in paths if (msg := _file_problem(p))]


def _check_corpus(where: str, spec) -> list[str]:
    if _is_dataset(spec) or (isinstance(spec, dict) and _is_dataset(spec.get("path"))):
        return []
    spec = {k: v for k, v in spec.items() if k in INPUT} if isinstance(spec, dict) else {"path": spec}
    text_column = spec.get("text_column") or INPUT["text_column"].default
    try:
        shards = resolve_shards(spec.get("path"), spec.get("format") or "auto", spec.get("storage_options"),
                                what=where)
    except ShardsiftError as err:
        msg = str(err)
        return [msg if msg.startswith(where) else f"{where}: {msg}"]
    return [f"{where}: {msg}" for sh in shards for msg in _text_column_problems(sh, text_column, f"{where}.text_column")]


def _file_problem(path: str) -> str | None:
    """Why ``path`` cannot be used, or None: missing, unreadable, or a tabular file that does not parse."""
    if storage.is_remote(path):
        try:
            return None if storage.exists(path) else "not found"
        except Exception as err:  # noqa: BLE001 - any storage failure is the user's one line
            return f"cannot be reached ({_first_line(err)})"
    if not os.path.exists(path):
        return "not found"
    if os.path.isdir(path):
        return None if os.access(path, os.R_OK | os.X_OK) else "folder not readable (permission denied)"
    if not os.access(path, os.R_OK):
        return "not readable (permission denied)"
    kind = _tabular_kind(path)
    if kind is None:
        return None
    try:
        _parse_head(path, kind)
    except Exception as err:  # noqa: BLE001 - what the reader says, on one line
        return f"not a readable {kind} file ({_first_line(err)})"
    return None


def _tabular_kind(path: str) -> str | None:
    low = path.lower()
    for ext, kind in ((".parquet", "Parquet"), (".csv", "CSV"), (".tsv", "CSV"), (".jsonl", "JSONL"),
                      (".json", "JSON"), (".yaml", "YAML"), (".yml", "YAML")):
        if low.endswith(ext):
            return kind
    return None


def _parse_head(path: str, kind: str) -> None:
    """Read as little as tells whether the file parses: a footer, a header block, a first line."""
    if kind == "Parquet":
        import pyarrow.parquet as pq

        pq.read_metadata(path)
    elif kind == "CSV":
        from pyarrow import csv

        delim = "\t" if path.lower().endswith(".tsv") else ","
        csv.open_csv(path, parse_options=csv.ParseOptions(delimiter=delim))  # reads the first block
    elif kind == "JSONL":
        with open(path, encoding="utf-8") as fh:
            line = fh.readline()
        if line.strip():
            json.loads(line)
    else:
        import yaml

        with open(path, encoding="utf-8") as fh:
            yaml.safe_load(fh) if kind == "YAML" else json.load(fh)


def _first_line(err) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
