"""What a user sees around a run: scores by default, honest CPU, reused stages marked, an empty
selection that still loads, the work dir removed on request, broken pipes, and check."""
import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, run_cli

from shardsift.engine.runner import run_pipeline


def corpus(tmp_path, n=400):
    pq.write_table(pa.table({"id": [f"d{i}" for i in range(n)],
                             "text": [" ".join(["word"] * (1 + i % 50)) for i in range(n)]}), tmp_path / "in.parquet")
    return str(tmp_path / "in.parquet")


def test_scores_by_default_and_reused_stages_marked(tmp_path):
    cfg = {"input": corpus(tmp_path), "output": str(tmp_path / "o"), "workers": 1,
           "stages": [{"length": {"min_words": 10}}, {"random": {"keep": 0.5}}]}
    m = run_pipeline(cfg)
    assert m["output"]["scores"] and sorted(os.listdir(tmp_path / "o" / ".shardsift" / "scores")) == [
        "stage-01-length.parquet", "stage-02-random.parquet"]
    assert not any(s.get("reused") for s in m["stages"])
    again = run_pipeline(cfg, overwrite=True)
    assert [s.get("reused", False) for s in again["stages"][1:]] == [True, True]
    assert again["docs_kept"] == m["docs_kept"]


def test_manifest_cpu_counts_the_worker_processes(tmp_path):
    """With local workers the manifest's CPU is the process tree's: what the workers spent,
    their start-up and imports included, is not missing from it."""
    code = ("import json, resource, sys\nfrom shardsift.engine.runner import run_pipeline\n"
            "def tree():\n"
            "    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)\n"
            "    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime\n"
            "t0 = tree()\nm = run_pipeline(json.loads(sys.argv[1]))\n"
            "print(m['cpu_s'], tree() - t0)")
    cfg = {"input": corpus(tmp_path, 4000), "output": str(tmp_path / "o"), "workers": 2,
           "stages": [{"length": {"min_words": 10}}, {"minhash_dedup": {}}]}
    out = subprocess.run([sys.executable, "-c", code, json.dumps(cfg)], capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=ROOT)).stdout.split()
    reported, measured = float(out[0]), float(out[1])
    assert 0.75 * measured <= reported <= measured, (reported, measured)


def test_a_run_that_keeps_nothing_warns_and_loads_as_zero_rows(tmp_path):
    """The output is one Parquet part with the schema and no row group: Arrow and the Python API
    read it as 0 rows with every column (datasets' load_dataset refuses any empty split)."""
    import shardsift

    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({"input": corpus(tmp_path), "output": str(tmp_path / "o"), "workers": 1,
                               "stages": [{"length": {"min_words": 1000}}]}))
    proc = run_cli("select", cfg, "--quiet")
    assert "warning: the run kept no documents" in proc.stderr
    table = pq.read_table(tmp_path / "o" / "data")
    assert table.num_rows == 0 and table.column_names == ["id", "text"]
    result = shardsift.Pipeline([{"length": {"min_words": 1000}}], workers=1).run(
        str(tmp_path / "in.parquet"), str(tmp_path / "o2"))
    ds = result.to_dataset()
    assert len(ds) == 0 and set(ds.column_names) == {"id", "text"}


def test_keep_work_false_and_clean_remove_the_work_dir(tmp_path):
    src = corpus(tmp_path)
    run_pipeline({"input": src, "output": {"path": str(tmp_path / "a"), "keep_work": False}, "workers": 1,
                  "stages": [{"length": {"min_words": 10}}]})
    assert not (tmp_path / "a" / ".work").exists() and (tmp_path / "a" / ".shardsift" / "manifest.json").exists()
    run_pipeline({"input": src, "output": str(tmp_path / "b"), "workers": 1, "stages": [{"length": {"min_words": 10}}]})
    assert (tmp_path / "b" / ".work").exists()
    assert "removed" in run_cli("clean", tmp_path / "b").stdout
    assert not (tmp_path / "b" / ".work").exists()
    bad = run_cli("clean", tmp_path / "nothing", check=False)
    assert bad.returncode != 0 and bad.stderr.count("\n") == 1


def test_fresh_recomputes_every_stage(tmp_path):
    cfg = {"input": corpus(tmp_path), "output": str(tmp_path / "o"), "workers": 1,
           "stages": [{"length": {"min_words": 10}}]}
    run_pipeline(cfg)
    m = run_pipeline(cfg, overwrite=True, fresh=True)
    assert not m["stages"][1].get("reused")


def test_a_broken_pipe_exits_quietly(tmp_path):
    run_pipeline({"input": corpus(tmp_path), "output": str(tmp_path / "o"), "workers": 1,
                  "stages": [{"length": {"min_words": 10}}]})
    proc = subprocess.run(f"{sys.executable} -m shardsift inspect {tmp_path / 'o'} --json | head -1", shell=True,
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.stdout.strip() == "{" and "Error" not in proc.stderr and "rerun" not in proc.stderr


@pytest.mark.parametrize("text, needle", [
    ({"input": "missing/*.parquet"}, "no input files match"),
    ({"stages": [{"length": {"min_wrds": 3}}]}, "stages[0].length: unknown key 'min_wrds' (did you mean 'min_words'?)"),
])
def test_check_finds_bad_configs_without_running(tmp_path, text, needle):
    cfg = {"input": corpus(tmp_path), "output": str(tmp_path / "o"), "stages": []}
    cfg.update(text)
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(cfg))
    proc = run_cli("check", path, check=False)
    assert proc.returncode in (1, 2) and needle in proc.stderr and proc.stderr.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_check_accepts_a_good_config_and_names_its_inputs(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps({"input": corpus(tmp_path), "output": str(tmp_path / "o"),
                                "stages": [{"length": {"min_words": 3}}]}))
    out = run_cli("check", path).stdout
    assert "input: 1 file(s)" in out and "ok (1 stage(s)" in out and not (tmp_path / "o").exists()
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "in.parquet")
    bad = run_cli("check", path, check=False)
    assert bad.returncode == 1 and "column 'text' is int64, not a string type" in bad.stderr


def test_load_dataset_on_the_output_folder_reads_the_kept_documents_only(tmp_path):
    import datasets

    m = run_pipeline({"input": corpus(tmp_path), "output": str(tmp_path / "o"), "workers": 1,
                      "stages": [{"length": {"min_words": 10}}, {"exact_dedup": {}}]})
    ds = datasets.load_dataset("parquet", data_dir=str(tmp_path / "o"), split="train")
    assert len(ds) == m["docs_kept"] and 0 < m["docs_kept"] < m["docs_in"]
    assert set(ds.column_names) == {"id", "text"}
    assert (tmp_path / "o" / ".shardsift" / "decisions").is_dir() and (tmp_path / "o" / ".shardsift" / "scores").is_dir()


def test_a_bad_shard_with_two_workers_gives_its_own_error_every_time(tmp_path):
    """The first real error is the one reported, never a cleanup error of the work dir, and the new
    output folder is gone: 20 runs with two workers racing over a bad shard among good ones."""
    from shardsift.errors import DataError

    for s in range(4):
        pq.write_table(pa.table({"text": [f"doc {s} {i} " * 30 for i in range(3000)]}), tmp_path / f"p{s}.parquet")
    data = (tmp_path / "p2.parquet").read_bytes()
    (tmp_path / "p2.parquet").write_bytes(data[: len(data) // 2])
    for k in range(20):
        out = tmp_path / f"o{k}"
        with pytest.raises(DataError) as exc:
            run_pipeline({"input": str(tmp_path / "*.parquet"), "output": str(out), "workers": 2,
                          "stages": [{"random": {"keep": 0.5}}]})  # the bad shard is found in a worker's scan
        assert "p2.parquet: not a readable Parquet file" in str(exc.value), (k, str(exc.value))
        assert not out.exists(), k


def test_quiet_log_file_and_key_figures(tmp_path):
    """--quiet prints the summary only, --log-file keeps the progress lines, the summary names its
    key figures in words, and inspect --all-metrics lists every metric by its raw name."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({"input": corpus(tmp_path), "output": str(tmp_path / "o"), "workers": 1,
                               "stages": [{"exact_dedup": {}}, {"length": {"min_words": 10}}]}))
    proc = run_cli("select", cfg, "--quiet", "--log-file", tmp_path / "run.log")
    assert "[shardsift]" not in proc.stderr and "[shardsift]" not in proc.stdout
    log = (tmp_path / "run.log").read_text()
    assert "scan:" in log and "done: kept" in log
    assert "exact_dedup: groups of identical text" in proc.stdout
    full = run_cli("inspect", tmp_path / "o", "--all-metrics").stdout
    assert "metrics of exact_dedup:" in full and "    groups:" in full
