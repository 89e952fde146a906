"""Writing bounded zstd Parquet parts: where parts and row groups end depends only on the kept
rows' sizes, in order, never on how they arrive in batches."""
from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..columns import byte_lengths
from . import storage

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
    ``row_bytes``; a single larger row gets a part of its own) and, within them, row groups that
    end at the row reaching ``row_group_bytes``. The cuts depend on the row sizes alone, not on how
    the rows arrive in calls, so any batching of the same rows writes the same files.

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
    """Writes {prefix}00000.parquet, {prefix}00001.parquet, ... each at most ``max_bytes`` of data.

    The bound is applied to the uncompressed Arrow size of the rows written, so the compressed files
    stay under it; a single row larger than the bound goes alone into its own part. Where parts
    and row groups end is ``PartCutter``'s: it does not depend on how the rows are batched.
    """

    def __init__(self, out_dir: str, schema: pa.Schema, max_bytes: int, row_group_bytes: int,
                 compression: str = "zstd", prefix: str = "part-"):
        self.out_dir = out_dir
        self.prefix = prefix
        self.schema = schema
        self.compression = None if compression == "none" else compression
        self.cutter = PartCutter(max_bytes, row_group_bytes)
        self.files: list[dict] = []
        self._writer = None
        self._buffer: list[pa.Table] = []

    def _open(self):
        path = os.path.join(self.out_dir, f"{self.prefix}{len(self.files):05d}.parquet")
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
        self._apply(self.cutter.cut(row_bytes(table)), table)

    def close(self) -> list[dict]:
        self._apply(self.cutter.finish())
        return self.files


def row_bytes(table: pa.Table) -> np.ndarray:
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
