"""Reading shards: streaming record batches of Parquet and JSONL (plain, .gz, .zst), one at a
time so memory does not grow with the corpus, and checking each batch's text and id columns."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.json as pajson
import pyarrow.parquet as pq

from ..columns import arrow_array, arrow_filter, one_array, valid_mask
from ..errors import DataError
from .shards import Shard


def shard_schema(shard: Shard) -> pa.Schema:
    """The shard's column schema (Parquet: from the footer; JSONL: from its first block)."""
    if shard.format == "parquet":
        try:
            with shard.fs().open_input_file(shard.path) as fh:
                return pq.ParquetFile(fh).schema_arrow
        except Exception as err:
            raise DataError(f"{shard.uri}: not a readable Parquet file ({_first_line(err)})") from None
    for tbl in _iter_jsonl(shard, 1):
        return tbl.schema
    return pa.schema([])


def _first_line(err) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def batch_rows(batch_size: int, batch_bytes: int | None, data_bytes: int, num_rows: int) -> int:
    """Rows per batch: at most ``batch_size``, and as many as hold about ``batch_bytes`` of data
    at the average row size (``data_bytes / num_rows``); at least one. Bytes, not rows, bound a
    batch's memory when rows run from 100 bytes to 100 kB (``input.batch_bytes``)."""
    if not batch_bytes or num_rows <= 0 or data_bytes <= 0:
        return batch_size
    return max(1, min(batch_size, batch_bytes * num_rows // data_bytes))


def iter_tables(shard: Shard, columns: list[str] | None, batch_size: int,
                batch_bytes: int | None = None) -> Iterator[pa.Table]:
    """Stream the shard as tables of at most ``batch_size`` rows and, for Parquet and JSONL, about
    ``batch_bytes`` of the columns read (all columns if columns is None)."""
    if shard.format == "parquet":
        yield from _iter_parquet(shard, columns, batch_size, batch_bytes)
    else:
        for tbl in _iter_jsonl(shard, batch_size, batch_bytes):
            yield select_columns(tbl, columns)


def select_columns(tbl: pa.Table, columns: list[str] | None) -> pa.Table:
    """The named columns the table has, in the order asked (all of them for None): a missing one is
    reported by whoever needs it (normalize, a selector's column check)."""
    return tbl if columns is None else tbl.select([c for c in columns if c in tbl.column_names])


def _parquet_bytes(md, cols) -> int:
    """Uncompressed bytes of the named top-level columns (all for None) over a file's row groups."""
    total = 0
    for i in range(md.num_row_groups):
        rg = md.row_group(i)
        for j in range(rg.num_columns):
            col = rg.column(j)
            if cols is None or col.path_in_schema.split(".", 1)[0] in cols:
                total += col.total_uncompressed_size
    return total


def _iter_parquet(shard: Shard, columns, batch_size, batch_bytes=None):
    try:
        fs = shard.fs()
        fh = fs.open_input_file(shard.path)
    except Exception as err:
        raise DataError(f"{shard.uri}: cannot open ({_first_line(err)})") from None
    # A local file is read as the batches need it (1 MB reads) instead of whole column chunks
    # first (pyarrow's pre_buffer, meant for object stores' latency): a 124 MB text column held
    # ~40 MB of compressed chunk in memory (fresh memory is dear).
    local = isinstance(fs, pafs.LocalFileSystem)
    with fh:
        try:
            pf = pq.ParquetFile(fh, pre_buffer=not local, buffer_size=(1 << 20) if local else 0)
            names = pf.schema_arrow.names
            cols = None if columns is None else [c for c in columns if c in names]
            if batch_bytes:
                md = pf.metadata
                batch_size = batch_rows(batch_size, batch_bytes, _parquet_bytes(md, cols), md.num_rows)
            # one thread: tasks are the unit of parallelism (workers), and Arrow's column threads
            # cost ~10-20% more CPU per decode here (0.49-0.52 vs 0.41-0.49 CPU-s per 500 MB)
            for rb in pf.iter_batches(batch_size=batch_size, columns=cols, use_threads=False):
                yield pa.Table.from_batches([rb])
        except DataError:
            raise
        except (pa.ArrowException, OSError, ValueError) as err:
            raise DataError(f"{shard.uri}: not a readable Parquet file ({_first_line(err)})") from None


def _iter_jsonl(shard: Shard, batch_size: int, batch_bytes: int | None = None):
    block = 1 << 24
    while True:
        try:
            stream = shard.fs().open_input_stream(shard.path, compression=shard.compression)
        except Exception as err:
            raise DataError(f"{shard.uri}: cannot open ({_first_line(err)})") from None
        try:
            with stream:
                reader = pajson.open_json(stream, read_options=pajson.ReadOptions(block_size=block))
                pending = []
                schema = None
                for rb in reader:
                    tbl = pa.Table.from_batches([rb])
                    schema = schema or tbl.schema
                    rows = batch_rows(batch_size, batch_bytes, tbl.nbytes, tbl.num_rows)
                    for start in range(0, tbl.num_rows, rows):
                        yield tbl.slice(start, rows)
                del pending
                return
        except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as err:
            msg = _first_line(err)
            if ("straddling" in msg or "block size" in msg.lower()) and block < (1 << 31):
                block *= 4
                continue
            if "UTF8" in msg or "utf-8" in msg.lower() or "utf8" in msg.lower():
                raise DataError(f"{shard.uri}: invalid UTF-8 in JSONL ({msg})") from None
            raise DataError(f"{shard.uri}: not valid JSONL ({msg})") from None


def normalize(table: pa.Table, shard: Shard, text_column: str, id_column: str, row0: int,
              need_text: bool = True, checked: bool = False, need_ids: bool = True) -> tuple[pa.Table, np.ndarray]:
    """Check the text column, make ids when the id column is missing, mark null texts.

    ``checked``: the shard's texts were already found valid UTF-8 (by the scan of this work dir,
    which is keyed by the shard's fingerprint), so the check is not run again. Without ``need_ids`` the id column is left as it is (or absent).

    Returns (table with the text column (string or large_string, as read) and an id column, valid mask) where
    ``valid`` is False for null texts (dropped later with reason ``null_text``). A text column of
    another type (integers, say) is a DataError naming the file, column and type.
    """
    n = table.num_rows
    names = table.column_names
    if need_text:
        if text_column not in names:
            try:
                names = shard_schema(shard).names if shard.path else names
            except DataError:
                pass
            raise DataError(
                f"{shard.uri}: no text column {text_column!r} (columns: {', '.join(names) or 'none'}; "
                "set input.text_column)"
            )
        col = table.column(text_column)
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            if not checked:
                check_utf8(col, shard, text_column, row0)  # the column keeps its type: no copy
            valid = valid_mask(col)
        elif pa.types.is_null(col.type):
            col = pa.nulls(n, pa.large_string())
            valid = np.zeros(n, dtype=bool)
        else:  # read as empty it would drop every document silently: refuse it instead
            raise DataError(f"{shard.uri}: column {text_column!r} is {col.type}, not a string type "
                            "(set input.text_column to the column that holds the text)")
        table = table.set_column(names.index(text_column), text_column, col)
    else:
        valid = np.ones(n, dtype=bool)
    if not need_ids:
        return table, valid
    if id_column in names:
        ids = table.column(id_column)
        if not (pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type)):
            ids = ids.cast(pa.string())
            table = table.set_column(names.index(id_column), id_column, ids)
    else:
        table = table.append_column(id_column, make_ids(shard.name, row0, n))
    return table, valid


def check_utf8(col, shard: Shard, column: str, row0: int) -> None:
    """Arrow string data must be valid UTF-8; JSONL readers do not check it. Names the first bad row."""
    arr = one_array(col)
    try:
        arr.validate(full=True)
        return
    except pa.ArrowInvalid:
        pass
    lo, hi = 0, len(arr)
    while hi - lo > 1:  # binary search for the first invalid row
        mid = (lo + hi) // 2
        try:
            arr.slice(lo, mid - lo).validate(full=True)
            lo = mid
        except pa.ArrowInvalid:
            hi = mid
    raise DataError(f"{shard.uri}: invalid UTF-8 in column {column!r} at row {row0 + lo}")


def make_ids(name: str, row0: int, n: int) -> pa.Array:
    """``<shard file name>/<row index>`` ids, built column-wise."""
    import pyarrow.compute as pc  # imported when needed: ~0.05 CPU-s

    rows = pc.cast(arrow_array(np.arange(row0, row0 + n, dtype=np.int64)), pa.string())
    return pc.binary_join_element_wise(pa.scalar(name + "/"), rows, "")


def select_rows(table: pa.Table, rows: np.ndarray) -> pa.Table:
    """The given sorted rows of a table, for the output. When at least half the rows are kept, in runs
    of more than 32 consecutive rows on average, the runs become slices of the table: no copy of the
    text, one chunk per run, and the writer's buffer keeps at most twice the kept bytes alive.
    Otherwise one filter copies the rows. The choice depends on the rows alone, so every write of
    the same rows gets the same chunks and the same bytes."""
    n = table.num_rows
    if len(rows) == n:
        return table
    if len(rows) == 0:
        return table.slice(0, 0)
    cut = np.flatnonzero(np.diff(rows) != 1) + 1
    starts = rows[np.concatenate([[0], cut])]
    ends = rows[np.concatenate([cut - 1, [len(rows) - 1]])] + 1
    if len(rows) * 2 < n or len(starts) * 32 >= len(rows):
        return arrow_filter(table, row_mask(rows, n))
    return pa.concat_tables([table.slice(int(a), int(b - a)) for a, b in zip(starts, ends)])


def row_mask(rows: np.ndarray, n: int) -> pa.Array:
    """A boolean mask of length n selecting the given sorted rows (filter is cheaper than take)."""
    mask = np.zeros(n, dtype=bool)
    mask[rows] = True
    return arrow_array(mask)


def take_rows(shard: Shard, rows: np.ndarray, columns: list[str] | None, batch_size: int) -> pa.Table | None:
    """The given row indices (sorted ascending) of a shard, streaming through its batches."""
    parts = []
    start = 0
    rows = np.asarray(rows, dtype=np.int64)
    for tbl in iter_tables(shard, columns, batch_size):
        end = start + tbl.num_rows
        lo, hi = np.searchsorted(rows, [start, end])
        if hi > lo:
            parts.append(arrow_filter(tbl, row_mask(rows[lo:hi] - start, tbl.num_rows)))
        start = end
        if hi == len(rows):
            break
    if not parts:
        return None
    return pa.concat_tables(parts, promote_options="permissive")
