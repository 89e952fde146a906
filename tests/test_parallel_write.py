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
