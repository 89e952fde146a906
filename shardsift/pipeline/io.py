"""Shards in and out: resolve inputs, stream record batches, write bounded zstd Parquet shards.

Inputs are local paths, globs and directories of Parquet and JSONL (plain, .gz, .zst), or remote
URIs through fsspec. Reading is streaming: one record batch at a time, so memory does not grow with
the corpus.
"""
from __future__ import annotations

import contextlib
import glob as globlib
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.json as pajson
import pyarrow.parquet as pq

from ..errors import DataError
from . import storage
from .kernels import arrow_array, arrow_filter, byte_lengths, one_array, valid_mask

PARQUET_EXT = (".parquet", ".pq")
JSONL_EXT = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".json", ".json.gz", ".json.zst", ".ndjson")


def is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def filesystem(path: str, storage_options: dict | None = None) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the path within it, for local paths and any fsspec URI."""
    if not is_remote(path):
        return pafs.LocalFileSystem(), os.path.abspath(path.removeprefix("file://"))
    import fsspec

    fs, fs_path = fsspec.core.url_to_fs(path, **(storage_options or {}))
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), fs_path


def _fsspec(path: str, storage_options: dict | None):
    import fsspec

    return fsspec.core.url_to_fs(path, **(storage_options or {}))


@dataclass(frozen=True)
class Shard:
    """One input file: the unit of parallel work."""

    uri: str            # as the user gave it (for messages)
    path: str           # path within the filesystem
    format: str         # parquet | jsonl
    size: int
    fingerprint: str
    name: str           # short unique name, used in generated ids
    storage_options: dict = field(default_factory=dict, hash=False, compare=False)
    cache: str | None = field(default=None, hash=False, compare=False)  # decoded copy (ShardCache)

    def fs(self) -> pafs.FileSystem:
        return filesystem(self.uri, self.storage_options)[0]

    @property
    def compression(self) -> str | None:
        if self.path.endswith(".gz"):
            return "gzip"
        if self.path.endswith(".zst"):
            return "zstd"
        return None


def _format_of(path: str, fmt: str) -> str | None:
    if fmt != "auto":
        return fmt
    low = path.lower()
    if low.endswith(PARQUET_EXT):
        return "parquet"
    if low.endswith(JSONL_EXT):
        return "jsonl"
    return None


def _fingerprint(fs: pafs.FileSystem, path: str, size: int, mtime) -> str:
    """Size, mtime and the first and last 64 KiB: cheap, and changes when the file does."""
    h = hashlib.sha256(f"{size}:{mtime}".encode())
    try:
        with fs.open_input_file(path) as fh:
            h.update(fh.read(65536))
            if size > 65536:
                fh.seek(max(65536, size - 65536))
                h.update(fh.read(65536))
    except Exception:  # unreadable files are reported when read
        pass
    return h.hexdigest()[:24]


def resolve_shards(paths, fmt: str = "auto", storage_options: dict | None = None,
                   what: str = "input") -> list[Shard]:
    """Expand files, globs and directories into a sorted list of shards. Raises DataError."""
    if isinstance(paths, str):
        paths = [paths]
    found: list[tuple[str, str]] = []  # (uri, fs path)
    for p in paths:
        found.extend(_expand(p, fmt, storage_options, what))
    if not found:
        raise DataError(f"{what}: no input files match {', '.join(map(repr, paths))}")
    seen = set()
    uniq = []
    for uri, path in found:
        if uri not in seen:
            seen.add(uri)
            uniq.append((uri, path))
    names = _short_names([u for u, _ in uniq])
    shards = []
    for (uri, _), name in zip(uniq, names):
        fs, fs_path = filesystem(uri, storage_options)
        try:
            info = fs.get_file_info(fs_path)
        except Exception as err:
            raise DataError(f"{uri}: cannot read ({err})") from None
        if info.type == pafs.FileType.NotFound:
            raise DataError(f"{uri}: file not found")
        f = _format_of(fs_path, fmt)
        if f is None:
            raise DataError(f"{uri}: unknown file type (expected .parquet or .jsonl[.gz|.zst]; set input.format)")
        size = int(info.size or 0)
        shards.append(Shard(uri=uri, path=fs_path, format=f, size=size,
                            fingerprint=_fingerprint(fs, fs_path, size, info.mtime_ns),
                            name=name, storage_options=dict(storage_options or {})))
    return shards


def _expand(p: str, fmt: str, storage_options, what) -> list[tuple[str, str]]:
    if is_remote(p):
        fs, fs_path = _fsspec(p, storage_options)
        proto = p.split("://", 1)[0]
        if any(c in fs_path for c in "*?["):
            hits = sorted(fs.glob(fs_path))
        elif fs.isdir(fs_path):
            hits = sorted(x for x in fs.find(fs_path) if _format_of(x, fmt))
        elif fs.exists(fs_path):
            hits = [fs_path]
        else:
            raise DataError(f"{what}: {p} not found")
        return [(f"{proto}://{h}", h) for h in hits]
    local = p.removeprefix("file://")
    if any(c in local for c in "*?["):
        hits = sorted(h for h in globlib.glob(local, recursive=True) if os.path.isfile(h))
        return [(h, os.path.abspath(h)) for h in hits]
    if os.path.isdir(local):
        hits = []
        for root, dirs, files in os.walk(local):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for f in sorted(files):
                if _format_of(f, fmt) and not f.startswith("."):
                    hits.append(os.path.join(root, f))
        return [(h, os.path.abspath(h)) for h in sorted(hits)]
    if not os.path.exists(local):
        raise DataError(f"{what}: {p} not found")
    return [(local, os.path.abspath(local))]


def _short_names(uris: list[str]) -> list[str]:
    """File names, made unique by their parent folders when two files share a name."""
    base = [u.rstrip("/").split("/")[-1] for u in uris]
    if len(set(base)) == len(base):
        return base
    common = os.path.commonpath([u.split("://")[-1] for u in uris]) if len(uris) > 1 else ""
    return [u.split("://")[-1][len(common):].lstrip("/") for u in uris]


# -- reading -----------------------------------------------------------------------------------

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


@contextlib.contextmanager
def malloc_pool():
    """Arrow allocates from the C library's malloc while inside (a run, a task), not from the
    wheels' default mimalloc, unless ``ARROW_DEFAULT_MEMORY_POOL`` says which; the default pool
    is back after. mimalloc takes memory in 2 MB huge pages and holds ~3x what a pass keeps live
    (a scan of 4 MiB batches: ~55 MB for 18 MB live, malloc ~37 MB), and where fresh memory is dear
    (a VM whose host takes back freed memory: ~2-3 ms per MB faulted in) that is the larger cost.
    docs/pipeline.md, "The allocator"."""
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        yield
        return
    prev = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        yield
    finally:
        pa.set_memory_pool(prev)


def _hugepage_setter():
    """NumPy's switch for asking the kernel for transparent huge pages on its large arrays (a
    private function of NumPy's, present since 1.20; None where it is not)."""
    try:
        from numpy._core import multiarray
    except ImportError:  # NumPy 1.x
        from numpy.core import multiarray
    return getattr(multiarray, "_set_madvise_hugepage", None)


@contextlib.contextmanager
def small_pages():
    """NumPy allocates in ordinary 4 KiB pages inside, not in the 2 MiB transparent huge pages it
    asks the kernel for on every array of 4 MiB or more, unless ``NUMPY_MADVISE_HUGEPAGE`` says
    which; NumPy's setting is back after. For a large array written once, front to back, whose
    first touch is most of its cost: on the VM this was measured on, huge pages were the dear
    memory (faulted in from what the host took back). A 200,000-document dedup, whose kept
    shingles are 280 MB, took 5.90 CPU-s (1.50 of them system) with its large arrays in huge
    pages, 5.19 (1.04) in small ones. Arrays read at random over and over are better off in huge pages:
    a run of dsir or kmeans_diversity with every array in small pages took 2-4% more user time.
    docs/pipeline.md, "NumPy in small pages for the kept shingles"."""
    setter = _hugepage_setter()
    if setter is None or os.environ.get("NUMPY_MADVISE_HUGEPAGE") is not None:
        yield
        return
    prev = setter(False)
    try:
        yield
    finally:
        setter(prev)


# One shard's batches kept in memory while the runner's one-pass mode scans, scores and writes it,
# so that its text is decoded once (see Runner._one_pass). Holds at most one shard at a time.
_HELD: dict = {}
HOLD_MAX_BYTES = 256 * 2**20


def shard_data_bytes(shard: Shard) -> int:
    """Estimated in-memory size of a shard's columns: Parquet from its footer, JSONL from its size."""
    if shard.format == "parquet":
        try:
            with shard.fs().open_input_file(shard.path) as fh:
                return _parquet_bytes(pq.ParquetFile(fh).metadata, None)
        except Exception:  # unreadable: reported by the read itself
            return 0
    return shard.size * (1 if shard.compression is None else 10)


def hold(shard: Shard, batch_size: int, batch_bytes: int | None = None) -> bool:
    """Read a shard's batches (all columns) into memory for the next reads of it, if it is small
    enough; ``release`` drops them. Returns whether the shard is held."""
    release()
    if shard_data_bytes(shard) > HOLD_MAX_BYTES:
        return False
    tables = list(iter_tables(shard, None, batch_size, batch_bytes))
    _HELD.update(shard=shard, batch_size=batch_size, tables=tables)
    return True


def release() -> None:
    _HELD.clear()


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
    if _HELD and _HELD["shard"] == shard and _HELD["batch_size"] >= batch_size:
        for tbl in _HELD["tables"]:  # the same batches and column order as reading the file
            if tbl.num_rows <= batch_size:
                yield select_columns(tbl, columns)
                continue
            for lo in range(0, tbl.num_rows, batch_size):  # a smaller batch_size: zero-copy slices
                yield select_columns(tbl.slice(lo, batch_size), columns)
        return
    if shard.cache is not None:
        yield from _iter_cache(shard.cache, columns)
        return
    if shard.format == "parquet":
        yield from _iter_parquet(shard, columns, batch_size, batch_bytes)
    else:
        for tbl in _iter_jsonl(shard, batch_size, batch_bytes):
            yield select_columns(tbl, columns)


def select_columns(tbl: pa.Table, columns: list[str] | None) -> pa.Table:
    """The named columns the table has, in the order asked (all of them for None): a missing one is
    reported by whoever needs it (normalize, a selector's column check)."""
    return tbl if columns is None else tbl.select([c for c in columns if c in tbl.column_names])


# -- decoded-shard cache -----------------------------------------------------------------------

class ShardCache:
    """A decoded copy of a shard in the work dir: its batches, all columns, as one uncompressed
    Arrow IPC file, written while the scan reads the shard. The passes after the scan (every
    stage's score, a global decide reading documents back, the write) map it into memory instead
    of decompressing and decoding the input again: zero-copy, and shared by worker processes
    through the page cache. Written under a temporary name and renamed whole; a shard whose
    batches change schema (JSONL blocks may) is not cached."""

    def __init__(self, path: str):
        self.path, self.tmp = path, path + ".tmp"
        self._writer = None
        self._schema = None
        self.ok = True

    def add(self, tbl: pa.Table) -> None:
        if not self.ok:
            return
        if self._writer is None:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self._schema = tbl.schema
            self._writer = pa.ipc.new_file(self.tmp, tbl.schema)
        elif not tbl.schema.equals(self._schema):
            self.abort()
            return
        self._writer.write_table(tbl)

    def close(self) -> bool:
        """Rename the finished copy into place; returns whether there is one."""
        if not self.ok or self._writer is None:
            self.abort()
            return False
        self._writer.close()
        os.replace(self.tmp, self.path)
        return True

    def abort(self) -> None:
        self.ok = False
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001 - being thrown away
                pass
            self._writer = None
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass


def cache_rows(path: str) -> int | None:
    """Rows in a cache file, or None when it is absent or unreadable (then it is not used)."""
    try:
        reader = pa.ipc.open_file(pa.memory_map(path))
        return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
    except (OSError, pa.ArrowException):
        return None


def _iter_cache(path: str, columns):
    reader = pa.ipc.open_file(pa.memory_map(path))  # the batches keep the mapping alive
    for i in range(reader.num_record_batches):
        yield select_columns(pa.Table.from_batches([reader.get_batch(i)]), columns)


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
    # ~40 MB of compressed chunk in memory (fresh memory is dear: docs/pipeline.md, "Memory of the
    # passes").
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
    """Check the text column, make ids when the id column is missing, mark non-string texts.

    ``checked``: the shard's texts were already found valid UTF-8 (by the scan of this work dir,
    which is keyed by the shard's fingerprint, and which also wrote any decoded copy of it), so the
    check is not run again. Without ``need_ids`` the id column is left as it is (or absent).

    Returns (table with the text column (string or large_string, as read) and an id column, valid mask) where
    ``valid`` is False for null or non-string texts (dropped later with reason ``null_text``).
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
        else:  # non-string texts count as null_text
            col = pa.nulls(n, pa.large_string())
            valid = np.zeros(n, dtype=bool)
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
    the same rows (sequential or parallel_write) gets the same chunks and the same bytes."""
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


# -- writing -----------------------------------------------------------------------------------

# Rows per decoded batch in the passes whose batches no selector's score sees (the write, a
# global decide reading documents back), where ``input.batch_size`` bounds the others. Arrow's
# Parquet reader grows a batch's string buffer by doubling, into fresh allocations each batch, and
# the allocator keeps a multiple of the batch: reading one 124 MB shard held 146 MB of memory in
# 8192-row batches, 46-88 MB in 1024-4096. Fresh memory costs more than the decode on the bench
# machine (a first-touched page is faulted in by its host), and it is memory either way.
PASS_BATCH_ROWS = 2048


def pass_batch_size(batch_size: int) -> int:
    return min(batch_size, PASS_BATCH_ROWS)


class PartCutter:
    """Where a bounded write cuts the stream of rows: parts of at most ``max_bytes`` (by
    ``_row_bytes``; a single larger row gets a part of its own) and, within them, row groups that
    end at the row reaching ``row_group_bytes``. The cuts depend on the row sizes alone, not on how
    the rows arrive in calls, so any batching of the same rows writes the same files (the one-pass
    flow, the staged one and the parallel write's replay do).

    ``cut(row_bytes)`` yields, for one call's rows, the events in order: ``("open",)`` a new part,
    ``("rows", start, take)`` rows of the call into the open row group, ``("group",)``
    the row group is complete, ``("close",)`` the part is complete (its group ended just before).
    """

    def __init__(self, max_bytes: int, row_group_bytes: int):
        self.max_bytes = max_bytes
        self.row_group_bytes = min(row_group_bytes, max_bytes)
        self.is_open = False
        self.part_bytes = 0
        self.group_bytes = 0
        self.group_rows = 0

    def cut(self, row_bytes: np.ndarray):
        start, n = 0, len(row_bytes)
        while start < n:
            if not self.is_open:
                self.is_open, self.part_bytes = True, 0
                yield ("open",)
            csum = np.cumsum(row_bytes[start:])
            take = int(np.searchsorted(csum, self.max_bytes - self.part_bytes, side="right"))
            if take == 0:
                if self.part_bytes:
                    yield from self.finish()
                    continue
                take = 1  # an oversized row gets a part of its own
            # the row that fills the group ends it
            take = min(take, int(np.searchsorted(csum, self.row_group_bytes - self.group_bytes)) + 1)
            added = int(csum[take - 1])
            yield ("rows", start, take)
            self.part_bytes += added
            self.group_bytes += added
            self.group_rows += take
            start += take
            if self.group_bytes >= self.row_group_bytes:
                yield from self._end_group()
            if self.part_bytes >= self.max_bytes and start < n:
                yield from self.finish()

    def finish(self):
        """Events that complete the open part (none when no part is open)."""
        if self.is_open:
            if self.group_rows:
                yield from self._end_group()
            self.is_open = False
            yield ("close",)

    def _end_group(self):
        self.group_bytes = self.group_rows = 0
        yield ("group",)


class BoundedParquetWriter:
    """Writes part-00000.parquet, part-00001.parquet, ... each at most ``max_bytes`` of data.

    The bound is applied to the uncompressed Arrow size of the rows written, so the compressed files
    stay under it; a single row larger than the bound goes alone into its own part. Where parts
    and row groups end is ``PartCutter``'s: it does not depend on how the rows are batched.
    """

    def __init__(self, out_dir: str, schema: pa.Schema, max_bytes: int, row_group_bytes: int,
                 compression: str = "zstd"):
        self.out_dir = out_dir
        self.schema = schema
        self.compression = None if compression == "none" else compression
        self.cutter = PartCutter(max_bytes, row_group_bytes)
        self.files: list[dict] = []
        self._writer = None
        self._buffer: list[pa.Table] = []

    def _open(self):
        path = os.path.join(self.out_dir, f"part-{len(self.files):05d}.parquet")
        fs, where = storage.arrow_fs(path)  # local: (None, path), as before; a URI: its fsspec filesystem
        self._writer = pq.ParquetWriter(where, self.schema, filesystem=fs, compression=self.compression,
                                        use_dictionary=False, write_statistics=False)
        self.files.append({"path": path, "rows": 0})

    def _flush(self):
        if self._buffer:
            tbl = pa.concat_tables(self._buffer)
            self._writer.write_table(tbl, row_group_size=max(1, tbl.num_rows))
            self.files[-1]["rows"] += tbl.num_rows
            self._buffer = []

    def _apply(self, events, table: pa.Table | None = None) -> None:
        for ev in events:
            if ev[0] == "rows":
                self._buffer.append(table.slice(ev[1], ev[2]))
            elif ev[0] == "group":
                self._flush()
            elif ev[0] == "open":
                self._open()
            else:  # close
                self._writer.close()
                self._writer = None

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        table = table.cast(self.schema) if table.schema != self.schema else table
        self._apply(self.cutter.cut(_row_bytes(table)), table)

    def close(self) -> list[dict]:
        self._apply(self.cutter.finish())
        return self.files


def _row_bytes(table: pa.Table) -> np.ndarray:
    """Approximate uncompressed bytes per row: variable-width string bytes plus fixed widths."""
    n = table.num_rows
    out = np.zeros(n, dtype=np.int64)
    fixed = 0
    for col in table.columns:
        t = col.type
        if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) \
                or pa.types.is_large_binary(t):
            chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
            out += (np.concatenate([byte_lengths(c) for c in chunks]) if chunks else 0) + 8  # nulls: 0
        else:
            try:
                fixed += max(1, t.bit_width // 8)
            except ValueError:
                fixed += max(1, col.nbytes // max(1, n))
    return out + fixed
