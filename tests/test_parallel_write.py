"""The task-parallel final write (used by the Ray executor) gives the sequential write's bytes exactly."""
import pytest
from conftest import file_digests

from shardsift.pipeline.executors import LocalExecutor
from shardsift.pipeline.runner import run_pipeline


class ParallelWriteLocal(LocalExecutor):
    parallel_write = True


@pytest.mark.parametrize("max_bytes,batch", [("40KB", 97), ("123KB", 8192), ("256MB", 50)])
def test_parallel_write_same_bytes_as_sequential(sample_dir, tmp_path, max_bytes, batch):
    def cfg(out):
        return {"input": {"path": str(sample_dir / "pool"), "batch_size": batch, "id_column": "gen_id"},
                "output": {"path": str(out), "max_shard_bytes": max_bytes, "scores": True}, "workers": 1,
                "stages": [{"length": {"min_words": 20}}, {"random": {"keep": 0.5}}]}

    seq = run_pipeline(cfg(tmp_path / "seq"))
    par = run_pipeline(cfg(tmp_path / "par"), executor=ParallelWriteLocal(1))
    a, b = file_digests(tmp_path / "seq" / "data"), file_digests(tmp_path / "par" / "data")
    assert a and a == b
    assert seq["output"]["files"] == par["output"]["files"]
    assert (seq["docs_kept"], seq["bytes_kept"], seq["tokens_kept"]) == \
        (par["docs_kept"], par["bytes_kept"], par["tokens_kept"])


def test_everything_dropped_still_writes_an_empty_part(sample_dir, tmp_path):
    m = run_pipeline({"input": str(sample_dir / "pool"), "output": str(tmp_path / "o"), "workers": 1,
                      "stages": [{"length": {"min_words": 10**9}}]}, executor=ParallelWriteLocal(1))
    assert m["docs_kept"] == 0 and [f["rows"] for f in m["output"]["files"]] == [0]


def test_part_and_row_group_cuts_do_not_depend_on_batching(tmp_path):
    """The bounded writer cuts parts and row groups on the row sizes alone: the same rows written in
    calls of 1, 7, 64 rows or all at once give the same files, byte for byte; a row group ends at
    the row that fills it; and the parallel write's plan (plan_parts) cuts at the same rows."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from shardsift.pipeline.io import BoundedParquetWriter, _row_bytes
    from shardsift.pipeline.parallel_write import plan_parts

    rng = np.random.default_rng(5)
    n = 900
    text = ["w" * int(k) for k in rng.integers(1, 400, size=n)]
    table = pa.table({"text": text, "id": [f"d{i}" for i in range(n)]})
    max_bytes, group_bytes = 60_000, 9_000
    got = {}
    for calls in (1, 7, 64, n):
        out = tmp_path / f"calls-{calls}"
        out.mkdir()
        w = BoundedParquetWriter(str(out), table.schema, max_bytes, group_bytes, "zstd")
        for lo in range(0, n, calls):
            w.write(table.slice(lo, calls))
        files = w.close()
        got[calls] = ([f["rows"] for f in files], file_digests(out))
    assert len(got[1][0]) > 2 and len(set(map(repr, got.values()))) == 1

    # every row group but a part's last ends at the first row whose cumulative size reaches group_bytes
    sizes = _row_bytes(table)
    at = 0
    groups = []
    for f in sorted((tmp_path / "calls-7").glob("part-*.parquet")):
        md = pq.ParquetFile(f).metadata
        rows = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
        for k, r in enumerate(rows):
            filled = np.cumsum(sizes[at:at + r])
            assert filled[-1] <= max_bytes
            if k < len(rows) - 1:
                assert filled[-1] >= group_bytes > (filled[-2] if r > 1 else 0)
            at += r
        groups.append(rows)
    assert at == n

    # the parallel write's replay, on the row sizes of calls of 13 rows, makes the same groups
    plan = plan_parts([[sizes[lo:lo + 13] for lo in range(0, n, 13)]], max_bytes, group_bytes)
    assert [[sum(t for _, _, _, t in g) for g in part] for part in plan] == groups
