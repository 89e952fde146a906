"""Writing bounded JSON Lines parts: each row one JSON object, columns in schema order.

Rows are formatted column by column (Arrow casts and joins, a numba kernel that escapes strings:
:mod:`.json_escape`),
never one Python object per row: a batch becomes one string array of lines. Strings keep their
UTF-8 (no ``\\uXXXX`` for non-ASCII); numbers are written as Arrow prints them (the shortest form
that reads back as the same value), non-finite floats as ``null``; dates and times as strings;
lists as arrays and structs as objects. Parts end where :class:`PartCutter` cuts the rows by their
line lengths, so any batching of the same rows writes the same files.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa

from ..columns import arrow_call, spans, string_buffers
from ..errors import ConfigError
from . import storage
from .writers import PartCutter

# output.compression -> (Arrow codec, file suffix)
CODECS = {"none": (None, ".jsonl"), "zstd": ("zstd", ".jsonl.zst"), "gzip": ("gzip", ".jsonl.gz")}


def check_schema(schema: pa.Schema, where: str = "output.format: jsonl") -> None:
    """Refuse, before anything is written, a column JSON has no plain form for (bytes, maps)."""
    for f in schema:
        bad = _unsupported(f.type)
        if bad is not None:
            raise ConfigError(f"{where}: column {f.name!r} is {f.type} ({bad} has no JSON form); "
                              f"use output.format: parquet")


def _unsupported(t: pa.DataType) -> pa.DataType | None:
    if pa.types.is_dictionary(t):
        return _unsupported(t.value_type)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return _unsupported(t.value_type)
    if pa.types.is_struct(t):
        return next((b for b in (_unsupported(t.field(i).type) for i in range(t.num_fields)) if b), None)
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t) \
            or pa.types.is_map(t) or pa.types.is_union(t):
        return t
    return None


def json_strings(arr: pa.Array) -> pa.Array:
    """Each string as a JSON string literal (quoted, escaped), ``null`` for a null."""
    from .json_escape import escape, escaped_lengths  # numba: compiled on the first JSON Lines write

    starts, ends, data = spans(arr)
    valid = np.ones(len(arr), dtype=bool) if arr.null_count == 0 else \
        np.asarray(arrow_call("is_valid", arr).to_numpy(zero_copy_only=False), dtype=bool)
    lengths = np.empty(len(arr), dtype=np.int64)
    escaped_lengths(starts, ends, data, valid, lengths)
    offsets = np.zeros(len(arr) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    out = np.empty(int(offsets[-1]), dtype=np.uint8)
    escape(starts, ends, data, valid, offsets, out)
    return pa.Array.from_buffers(pa.large_string(), len(arr), [None, pa.py_buffer(offsets), pa.py_buffer(out)])


def _null_as_json(arr: pa.Array) -> pa.Array:
    return arrow_call("coalesce", arr.cast(pa.large_string()), pa.scalar("null", pa.large_string()))


def _wrap(left: str, arr: pa.Array, right: str, nulls: pa.Array | None = None) -> pa.Array:
    """``left + value + right`` per row; ``null`` where ``nulls`` (the original column) is null."""
    s = pa.scalar
    joined = arrow_call("binary_join_element_wise", s(left, pa.large_string()), arr.cast(pa.large_string()),
                        s(right, pa.large_string()), s("", pa.large_string()))
    if nulls is not None and nulls.null_count:
        joined = arrow_call("if_else", arrow_call("is_valid", nulls), joined, pa.scalar(None, pa.large_string()))
    return _null_as_json(joined)


def json_values(arr) -> pa.Array:
    """Every value of a column as JSON text (a large_string array, no nulls)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    t = arr.type
    if pa.types.is_dictionary(t):
        return json_values(arr.cast(t.value_type))
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return json_strings(arr)
    if pa.types.is_null(t):
        return pa.array(np.full(len(arr), "null", dtype=object), pa.large_string())
    if pa.types.is_boolean(t):
        return _null_as_json(arrow_call("if_else", arr, pa.scalar("true"), pa.scalar("false")))
    if pa.types.is_integer(t) or pa.types.is_decimal(t):
        return _null_as_json(arr.cast(pa.string()))
    if pa.types.is_floating(t):
        finite = arrow_call("is_finite", arr)  # null for NaN and infinities as for nulls
        return _null_as_json(arrow_call("if_else", finite, arr.cast(pa.string()), pa.scalar(None, pa.string())))
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        if pa.types.is_fixed_size_list(t):
            arr = arr.cast(pa.list_(t.value_type))
        items = json_values(arr.values)
        lists = pa.LargeListArray.from_arrays(arr.offsets.cast(pa.int64()), items)
        return _wrap("[", arrow_call("binary_join", lists, pa.scalar(",", pa.large_string())), "]", arr)
    if pa.types.is_struct(t):
        return _object([f.name for f in t], [arr.field(i) for i in range(t.num_fields)], arr)
    # dates, times, timestamps, durations: as Arrow prints them, quoted
    return json_strings(arr.cast(pa.string()))


def _object(names: list, columns: list, nulls: pa.Array | None = None) -> pa.Array:
    """``{"name": value, ...}`` per row from the columns' JSON values."""
    if not names:
        body = pa.array(np.full(len(nulls), "", dtype=object), pa.large_string())
        return _wrap("{", body, "}", nulls)
    parts = []
    for i, (name, col) in enumerate(zip(names, columns)):
        parts += [pa.scalar(("{" if i == 0 else ",") + json.dumps(name, ensure_ascii=False) + ":",
                            pa.large_string()), json_values(col)]
    parts.append(pa.scalar("}", pa.large_string()))
    body = arrow_call("binary_join_element_wise", *parts, pa.scalar("", pa.large_string()))
    return body if nulls is None or not nulls.null_count else _wrap("", body, "", nulls)


def json_lines(table: pa.Table) -> pa.Array:
    """Each row of a table as one JSON object followed by a newline."""
    if table.num_rows == 0:
        return pa.array([], pa.large_string())
    obj = _object(table.column_names, [table.column(i) for i in range(table.num_columns)])
    return arrow_call("binary_join_element_wise", obj, pa.scalar("\n", pa.large_string()),
                      pa.scalar("", pa.large_string()))


class BoundedJsonlWriter:
    """Writes {prefix}00000.jsonl[.zst|.gz], ... each at most ``max_bytes`` of uncompressed lines
    (a single longer line gets a part of its own), same interface as BoundedParquetWriter."""

    def __init__(self, out_dir: str, max_bytes: int, compression: str = "zstd", prefix: str = "part-"):
        self.out_dir, self.prefix = out_dir, prefix
        self.codec, self.suffix = CODECS[compression]
        self.cutter = PartCutter(max_bytes, max_bytes)
        self.files: list[dict] = []
        self._raw = self._stream = None

    def _open(self) -> None:
        path = os.path.join(self.out_dir, f"{self.prefix}{len(self.files):05d}{self.suffix}")
        self._raw = storage.open_file(path, "wb")
        self._stream = pa.CompressedOutputStream(self._raw, self.codec) if self.codec else self._raw
        self.files.append({"path": path, "rows": 0})

    def _close(self) -> None:
        self._stream.close()
        if self._stream is not self._raw:
            self._raw.close()
        self._raw = self._stream = None

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        lines = json_lines(table)
        offsets, data, _ = string_buffers(lines)
        for ev in self.cutter.cut(np.diff(offsets)):
            if ev[0] == "rows":
                lo, hi = offsets[ev[1]], offsets[ev[1] + ev[2]]
                self._stream.write(memoryview(data[lo:hi]))
                self.files[-1]["rows"] += ev[2]
            elif ev[0] == "open":
                self._open()
            elif ev[0] == "close":
                self._close()

    def close(self) -> list[dict]:
        for ev in self.cutter.finish():
            if ev[0] == "close":
                self._close()
        return self.files


def empty_part(path: str, compression: str) -> None:
    """An empty part (no lines; a valid empty compressed stream where compressed)."""
    codec, _ = CODECS[compression]
    with storage.open_file(path, "wb") as raw:
        if codec:
            pa.CompressedOutputStream(raw, codec).close()


def is_jsonl(path: str) -> bool:
    return path.endswith(tuple(suffix for _, suffix in CODECS.values()))


def read_jsonl(path: str, columns=None) -> pa.Table:
    """A JSON Lines part as a table (types inferred by Arrow's JSON reader); ``columns``: those of
    them the part has."""
    import pyarrow.json as pajson

    codec = next((c for c, suffix in CODECS.values() if c and path.endswith(suffix)), None)
    with storage.open_file(path, "rb") as raw:
        data = (pa.CompressedInputStream(raw, codec) if codec else pa.PythonFile(raw, mode="r")).read()
    if not data:
        return pa.table({c: pa.array([], pa.string()) for c in (columns or [])})
    table = pajson.read_json(pa.BufferReader(data))
    return table if columns is None else table.select([c for c in columns if c in table.column_names])
