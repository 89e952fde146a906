"""Storage and shards in and out: one storage layer (local paths and fsspec URIs), the input
shards of a corpus, streaming readers and bounded Parquet writers."""
from .readers import (
    batch_rows,
    check_utf8,
    iter_tables,
    make_ids,
    normalize,
    row_mask,
    select_columns,
    select_rows,
    shard_schema,
    take_rows,
)
from .shards import JSONL_EXT, PARQUET_EXT, Shard, resolve_shards
from .writers import PASS_BATCH_ROWS, BoundedParquetWriter, PartCutter, pass_batch_size, row_bytes

__all__ = ["JSONL_EXT", "PARQUET_EXT", "PASS_BATCH_ROWS", "BoundedParquetWriter", "PartCutter", "Shard",
           "batch_rows", "check_utf8", "iter_tables", "make_ids", "normalize", "pass_batch_size", "resolve_shards",
           "row_bytes", "row_mask", "select_columns", "select_rows", "shard_schema", "take_rows"]
