"""End-to-end runs of the staged pipeline through the CLI and the Python API, on real Parquet files."""
import gzip
import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import file_digests, run_cli

from shardsift import io
from shardsift.engine.runner import run_pipeline
from shardsift.errors import ConfigError, DataError, UsageError
from shardsift.io import readers
from shardsift.output import verify_output

TORTURE = bool(os.environ.get("SHARDSIFT_TORTURE"))


def write_cfg(tmp_path, name="c.yaml", **cfg):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(cfg))
    return p


def basic(sample_dir, out, workers=1, **extra):
    cfg = {"input": {"path": str(sample_dir / "pool")}, "output": {"path": str(out), "scores": True},
           "workers": workers, "seed": 3,
           "stages": [{"length": {"min_words": 20}}, {"random": {"keep": 0.5}}]}
    cfg.update(extra)
    return cfg


def read_out(out):
    return pq.read_table(os.path.join(out, "data"))


def test_select_cli_summary_manifest_and_datasets_load(sample_dir, tmp_path):
    out = tmp_path / "out"
    cfg = write_cfg(tmp_path, **basic(sample_dir, out, workers=2))
    proc = run_cli("select", cfg)
    assert "length" in proc.stdout and "random" in proc.stdout and "kept" in proc.stdout
    m = json.loads((out / ".shardsift" / "manifest.json").read_text())
    assert m["docs_in"] == 1200
    assert m["docs_in"] == m["docs_kept"] + sum(sum(s["dropped"].values()) for s in m["stages"])
    st = {s["name"]: s for s in m["stages"]}
    assert st["length"]["dropped"] == {"too_short": st["length"]["docs_in"] - st["length"]["kept"]}
    assert st["random"]["kept"] == round(0.5 * st["random"]["docs_in"])
    tbl = read_out(out)
    assert tbl.num_rows == m["docs_kept"]
    assert set(tbl.column_names) == {"id", "text", "domain"}
    assert len(set(tbl.column("id").to_pylist())) == tbl.num_rows
    assert m["tokens_kept"] == sum(len(t.split()) for t in tbl.column("text").to_pylist())
    datasets = pytest.importorskip("datasets", reason="datasets is a core dependency")
    ds = datasets.load_dataset("parquet", data_dir=str(out / "data"), split="train")
    assert len(ds) == m["docs_kept"] and ds.column_names == tbl.column_names
    # inspect prints the same table
    insp = run_cli("inspect", out)
    assert "random" in insp.stdout and f"{m['docs_kept']:,} kept" in insp.stdout


def test_workers_1_and_2_give_identical_bytes(sample_dir, tmp_path):
    run_pipeline(basic(sample_dir, tmp_path / "w1", workers=1))
    run_pipeline(basic(sample_dir, tmp_path / "w2", workers=2))
    d1, d2 = file_digests(tmp_path / "w1" / "data"), file_digests(tmp_path / "w2" / "data")
    assert d1 and d1 == d2
    assert file_digests(tmp_path / "w1" / ".shardsift" / "scores") == file_digests(tmp_path / "w2" / ".shardsift" / "scores")


@pytest.mark.parametrize("kill_at", ["scan:1", "score:00:2", "stage:00", "decide:01:1", "write:0",
                                     "write:renamed", "manifest"])
def test_sigkill_then_rerun_is_byte_identical(sample_dir, tmp_path, kill_at):
    ref = tmp_path / "ref"
    run_pipeline(basic(sample_dir, ref, workers=2))
    out = tmp_path / "out"
    cfg = write_cfg(tmp_path, **basic(sample_dir, out, workers=2))
    proc = run_cli("select", cfg, env={"SHARDSIFT_KILL_AT": kill_at}, check=False)
    assert proc.returncode != 0, "the kill point was never reached"
    assert not (out / ".shardsift" / "manifest.json").exists()
    log = tmp_path / "points.log"
    proc = run_cli("select", cfg, env={"SHARDSIFT_LIST_POINTS": str(log)})
    points = log.read_text().split()
    # the task that finished at the kill point is not redone (others may have been mid-flight); a
    # stage fused into a scan finishes with that scan task (its summary is the task's last write)
    if kill_at.startswith("scan:"):
        assert kill_at not in points and len([p for p in points if p.startswith("scan:")]) < 3
    if kill_at.startswith("score:"):
        shard = kill_at.rsplit(":", 1)[1]
        assert kill_at in points and f"scan:{shard}" in points
    if kill_at == "stage:00" or kill_at.startswith("decide:"):
        assert not any(p.startswith("score:00") for p in points)
    if kill_at.startswith("decide:"):
        assert not any(p.startswith("score:01") for p in points)
    assert file_digests(out / "data") == file_digests(ref / "data")
    assert file_digests(out / ".shardsift" / "scores") == file_digests(ref / ".shardsift" / "scores")


def test_output_exists_refused_unless_overwrite(sample_dir, tmp_path):
    out = tmp_path / "out"
    run_pipeline(basic(sample_dir, out))
    with pytest.raises(UsageError, match="output exists"):
        run_pipeline(basic(sample_dir, out))
    cfg = write_cfg(tmp_path, **basic(sample_dir, out))
    proc = run_cli("select", cfg, check=False)
    assert proc.returncode == 2 and "use --overwrite" in proc.stderr and proc.stderr.count("\n") == 1
    run_cli("select", cfg, "--overwrite", "--seed", "4")
    assert json.loads((out / ".shardsift" / "manifest.json").read_text())["config"]["seed"] == 4


def test_bounded_output_shards(sample_dir, tmp_path):
    out = tmp_path / "out"
    m = run_pipeline(basic(sample_dir, out, output={"path": str(out), "max_shard_bytes": "200KB"}, stages=[]))
    files = sorted(os.listdir(out / "data"))
    assert len(files) > 3 and files[0] == "part-00000-00000.parquet"  # parts of input shard 0 first
    for f in files:
        assert os.path.getsize(out / "data" / f) <= 200_000
    assert read_out(out).num_rows == m["docs_in"] == 1200
    # order and content are the input's
    src = pq.read_table(sample_dir / "pool")
    assert read_out(out).column("id").to_pylist() == src.column("id").to_pylist()


def test_batches_bounded_by_bytes_and_rows(tmp_path):
    """input.batch_bytes ends a batch at about that much data of the columns read (estimated from
    the Parquet footer; from the block read for JSONL), batch_size at that many rows."""
    texts = [("x" * 990) + f"{i:09d}" for i in range(1000)]  # 1,000 bytes each
    table = pa.table({"text": texts, "id": [str(i) for i in range(1000)]})
    pq.write_table(table, tmp_path / "a.parquet", row_group_size=300)
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps({"text": t, "id": str(i)}) for i, t in enumerate(texts)))
    for name in ("a.parquet", "b.jsonl"):
        sh = io.resolve_shards(str(tmp_path / name), "auto")[0]
        rows = [t.num_rows for t in io.iter_tables(sh, None, 8192, 100_000)]
        assert sum(rows) == 1000 and 80 <= max(rows) <= 110, (name, rows)
        assert [t.num_rows for t in io.iter_tables(sh, None, 64, 100_000)] == [64] * 15 + [40]
        assert [t.num_rows for t in io.iter_tables(sh, None, 8192, None)][0] >= 300
    sh = io.resolve_shards(str(tmp_path / "a.parquet"), "auto")[0]
    # only the id column is read: its few bytes per row allow one batch of the whole file
    assert [t.num_rows for t in io.iter_tables(sh, ["id"], 8192, 100_000)] == [1000]
    assert io.batch_rows(8192, 100_000, 0, 0) == 8192 and io.batch_rows(10, 1, 10**6, 10) == 1


def test_output_row_groups_and_batch_bytes_keep_the_output(sample_dir, tmp_path):
    """Row groups end at about output.row_group_bytes of data; the input's batch_bytes changes how
    the passes batch the rows, never the output bytes."""
    digests = []
    for bb in ("16KB", "4MiB"):
        out = tmp_path / f"out-{bb}"
        cfg = basic(sample_dir, out, output={"path": str(out), "row_group_bytes": "64KB"}, stages=[{"length": {"min_words": 20}}])
        cfg["input"]["batch_bytes"] = bb
        run_pipeline(cfg)
        digests.append(file_digests(out / "data"))
    files = sorted(os.listdir(out / "data"))
    md = pq.ParquetFile(out / "data" / files[0]).metadata
    assert md.num_row_groups > 3
    # each group ends at the row that brings it to 64 KB of Arrow data; Parquet's uncompressed
    # size of the group is near that
    sizes = [md.row_group(i).total_byte_size for i in range(md.num_row_groups - 1)]
    assert all(48_000 <= b <= 96_000 for b in sizes), sizes
    assert digests[0] == digests[1]


def test_scores_sidecar_records_every_decision(sample_dir, tmp_path):
    out = tmp_path / "out"
    m = run_pipeline(basic(sample_dir, out))
    sc = pq.read_table(out / ".shardsift" / "scores" / "stage-02-random.parquet")
    st = m["stages"][2]
    assert sc.num_rows == st["docs_in"]
    kept = sc.filter(sc.column("kept")).column("id").to_pylist()
    assert sorted(kept) == sorted(read_out(out).column("id").to_pylist())
    assert set(sc.filter(pa.compute.invert(sc.column("kept"))).column("reason").to_pylist()) == {"random"}
    ln = pq.read_table(out / ".shardsift" / "scores" / "stage-01-length.parquet")
    short = ln.filter(pa.compute.invert(ln.column("kept")))
    assert set(short.column("reason").to_pylist()) == {"too_short"}
    assert max(short.column("score").to_pylist()) < 20


def test_jsonl_gz_zst_glob_and_generated_ids(tmp_path):
    rows = [{"text": f"document number {i} " + "word " * (i % 7), "lang": "en", "n": i} for i in range(50)]
    lines = "\n".join(json.dumps(r) for r in rows).encode()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_bytes(lines)
    (tmp_path / "in" / "b.jsonl.gz").write_bytes(gzip.compress(lines))
    with pa.CompressedOutputStream(str(tmp_path / "in" / "c.jsonl.zst"), "zstd") as fh:  # a zstd frame
        fh.write(lines)
    out = tmp_path / "out"
    m = run_pipeline({"input": str(tmp_path / "in" / "*.jsonl*"), "output": str(out), "workers": 1, "stages": []})
    assert m["docs_in"] == 150 and len(m["inputs"]) == 3
    t = read_out(out)
    assert t.column("id").to_pylist()[:2] == ["a.jsonl/0", "a.jsonl/1"]
    assert t.column("id").to_pylist()[-1] == "c.jsonl.zst/49"
    assert t.column("n").to_pylist() == [r["n"] for r in rows] * 3


def test_datasets_dataset_input(tmp_path):
    datasets = pytest.importorskip("datasets", reason="datasets is a core dependency")
    ds = datasets.Dataset.from_dict({"body": [f"text {i} " * (i % 5 + 1) for i in range(100)],
                                     "uid": [f"u{i}" for i in range(100)]})
    m = run_pipeline({"input": {"path": ds, "text_column": "body", "id_column": "uid"},
                      "output": str(tmp_path / "o"), "workers": 1,
                      "stages": [{"length": {"min_words": 4}}]})
    t = read_out(tmp_path / "o")
    assert t.num_rows == m["docs_kept"] == sum(1 for i in range(100) if 2 * (i % 5 + 1) >= 4)
    assert t.column("uid").to_pylist()[0] == "u1"


def test_custom_selector_by_module_path_and_entry_point(tmp_path, sample_dir):
    pkg = tmp_path / "plug"
    pkg.mkdir()
    (pkg / "myfilters.py").write_text(
        "import numpy as np\nfrom shardsift import Selector, Param\n"
        "class EvenWords(Selector):\n"
        "    '''Keep documents with an even number of words.'''\n"
        "    name = 'even_words'\n"
        "    needs_text = False\n"
        "    def score(self, docs):\n        return docs.n_words\n"
        "    def decide(self, scores, ctx):\n        return scores['score'] % 2 == 0\n")
    dist = pkg / "myfilters-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myfilters\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[shardsift.selectors]\neven_words = myfilters:EvenWords\n")
    env = {"PYTHONPATH": f"{pkg}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    for name in ("myfilters:EvenWords", "even_words"):
        out = tmp_path / f"out-{name.replace(':', '_')}"
        cfg = write_cfg(tmp_path, input={"path": str(sample_dir / "pool")}, output={"path": str(out)},
                        workers=2, stages=[{name: {}}])
        run_cli("select", cfg, env=env)
        words = [len(t.split()) for t in read_out(out).column("text").to_pylist()]
        assert words and all(w % 2 == 0 for w in words)
    listing = run_cli("selectors", env=env).stdout
    assert "even_words" in listing and "length" in listing and "min_words" in listing


def test_an_edited_custom_selector_is_scored_again_not_served_from_the_work_dir(tmp_path, sample_dir):
    """A stage's work-dir results are keyed by its selector's code too: after the file that defines
    a custom selector changes, a rerun (here --overwrite of a finished output, the same params)
    scores again instead of reusing the old scores; an unchanged file is still reused. A class
    with no file (typed into ``python -c``) is keyed by its methods' compiled code."""
    pkg = tmp_path / "plug"
    pkg.mkdir()
    src = ("from shardsift import Selector\n"
           "class Parity(Selector):\n"
           "    name = 'parity'\n"
           "    needs_text = False\n"
           "    def score(self, docs):\n        return docs.n_words % 2\n"
           "    def decide(self, scores, ctx):\n        return scores['score'] == KEEP\n")
    env = {"PYTHONPATH": f"{pkg}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = tmp_path / "out"
    cfg = write_cfg(tmp_path, input={"path": str(sample_dir / "pool")}, output={"path": str(out)},
                    workers=1, stages=[{"parity_mod:Parity": {}}])

    def run(keep):
        (pkg / "parity_mod.py").write_text(src.replace("KEEP", str(keep)))
        run_cli("select", cfg, "--overwrite", env=env)
        words = [len(t.split()) for t in read_out(out).column("text").to_pylist()]
        stage_dirs = sorted(os.listdir(out / ".work" / "stages"))
        return words, stage_dirs

    even, dirs0 = run(0)
    odd, dirs1 = run(1)
    assert even and all(w % 2 == 0 for w in even)
    assert odd and all(w % 2 == 1 for w in odd)
    again, dirs2 = run(1)  # unchanged: served from the work dir, same stage folder
    assert again == odd and dirs2 == dirs1 and len(dirs1) == 2 and dirs0[0] in dirs1

    code = """
from shardsift import Selector
from shardsift.engine.fingerprint import code_fp

class Probe(Selector):
    name = "probe"
    scope = "document"
    def score(self, docs):
        return [KEEP] * len(docs)
    def decide(self, scores, ctx):
        return scores["score"] > 0

print(code_fp(Probe))
"""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    penv = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    fps = [subprocess.run([sys.executable, "-c", code.replace("KEEP", k)], capture_output=True, text=True,
                          env=penv, check=True).stdout.strip() for k in ["1", "1", "2"]]
    assert fps[0] == fps[1] != fps[2] and len(fps[0]) == 16


def test_read_texts_gives_the_rows_read_batches_gives_in_whole_batches(tmp_path):
    """A global decide reads rows back two ways: ``read_texts`` (each batch as decoded, the rows'
    positions in it) and ``read_batches`` (the rows copied out) agree, with null texts and rows a
    previous stage dropped lying between the selected ones."""
    os.makedirs(tmp_path / "in")
    for s in range(2):
        texts = [None if i % 7 == 3 else " ".join(["w"] * (i % 5 + 1)) + f" doc{s}-{i}" for i in range(300)]
        pq.write_table(pa.table({"text": texts}), tmp_path / "in" / f"part-{s}.parquet")
    m = run_pipeline({"input": {"path": str(tmp_path / "in"), "batch_size": 64}, "output": {"path": str(tmp_path / "o")},
                      "workers": 1, "stages": [{"length": {"min_words": 3}}, {"ray_plugins:ReadBack": {}}]})
    met = m["stages"][-1]["metrics"]
    assert met["shards_same"] == met["shards_whole"] == met["shards_docs_same"] == 2
    assert met["read"] == sum(len(range(0, n, 3)) for n in
                              [sum(1 for i in range(300) if i % 7 != 3 and i % 5 + 2 >= 3)] * 2)


# -- bad input: one line, the right exit code, nothing partial ---------------------------------------

def _expect_error(tmp_path, cfg, code, needle):
    p = write_cfg(tmp_path, "bad.yaml", **cfg)
    loud = run_cli("select", p, check=False)  # with progress lines: still no traceback
    assert loud.returncode == code and "Traceback" not in loud.stderr, loud.stderr
    proc = run_cli("select", p, "--quiet", check=False)
    assert proc.returncode == code, proc.stderr
    err = proc.stderr.strip()
    assert needle in err and "\n" not in err and "Traceback" not in err, err
    out = cfg.get("output", {}).get("path") if isinstance(cfg.get("output"), dict) else cfg.get("output")
    if out:
        assert not os.path.exists(os.path.join(out, ".shardsift", "manifest.json"))
        assert not os.path.exists(os.path.join(out, "data"))
    return err


def test_missing_file(tmp_path):
    _expect_error(tmp_path, {"input": str(tmp_path / "nope.parquet"), "output": str(tmp_path / "o"), "stages": []},
                  1, "nope.parquet not found")


def test_corrupt_parquet(tmp_path):
    (tmp_path / "in").mkdir()
    pq.write_table(pa.table({"text": ["fine doc"]}), tmp_path / "in" / "a.parquet")
    (tmp_path / "in" / "b.parquet").write_bytes(b"PAR1 this is not parquet at all")
    _expect_error(tmp_path, {"input": str(tmp_path / "in"), "output": str(tmp_path / "o"), "stages": []},
                  1, "b.parquet: not a readable Parquet file")


def test_truncated_parquet(tmp_path):
    pq.write_table(pa.table({"text": ["some text here"] * 1000}), tmp_path / "a.parquet")
    data = (tmp_path / "a.parquet").read_bytes()
    (tmp_path / "a.parquet").write_bytes(data[: len(data) // 2])
    _expect_error(tmp_path, {"input": str(tmp_path / "a.parquet"), "output": str(tmp_path / "o"), "stages": []},
                  1, "a.parquet: not a readable Parquet file")


def test_missing_text_column(tmp_path):
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "a.parquet")
    _expect_error(tmp_path, {"input": str(tmp_path / "a.parquet"), "output": str(tmp_path / "o"), "stages": []},
                  1, "a.parquet: no text column 'text' (columns: body")


def test_null_texts_dropped_and_counted(tmp_path):
    pq.write_table(pa.table({"text": ["good one", None, "another good", None]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"text": pa.nulls(3)}), tmp_path / "b.parquet")
    m = run_pipeline({"input": str(tmp_path / "*.parquet"), "output": str(tmp_path / "o"), "workers": 1,
                      "stages": []})
    assert m["stages"][0]["dropped"] == {"null_text": 5}
    assert m["docs_kept"] == 2 and read_out(tmp_path / "o").num_rows == 2


def test_a_text_column_that_is_not_strings_stops_the_run(tmp_path):
    """Integers in the text column are a data error naming file, column and type, never an empty
    output with every document dropped as null_text; nothing is left in a new output folder."""
    pq.write_table(pa.table({"text": ["good one"]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"text": [1, 2, 3]}), tmp_path / "b.parquet")
    err = _expect_error(tmp_path, {"input": str(tmp_path / "*.parquet"), "output": str(tmp_path / "o"),
                                   "stages": []}, 1, "b.parquet: column 'text' is int64, not a string type")
    assert "\n" not in err.strip() and not (tmp_path / "o").exists()


def test_empty_shards(tmp_path):
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"text": ["one doc", "two doc"]}), tmp_path / "b.parquet")
    m = run_pipeline({"input": str(tmp_path / "*.parquet"), "output": str(tmp_path / "o"), "workers": 1,
                      "stages": [{"random": {"keep": 0.5}}]})
    assert m["docs_in"] == 2 and m["docs_kept"] == 1
    # every input empty: still a valid (empty) dataset
    m = run_pipeline({"input": str(tmp_path / "a.parquet"), "output": str(tmp_path / "o2"), "workers": 1, "stages": []})
    assert m["docs_in"] == 0 and read_out(tmp_path / "o2").num_rows == 0


def test_twenty_megabyte_document(tmp_path):
    big = ("lorem ipsum " * (20 * 2**20 // 12 + 1))[: 20 * 2**20]
    pq.write_table(pa.table({"text": [big, "small doc here"]}), tmp_path / "a.parquet")
    lines = json.dumps({"text": big}) + "\n" + json.dumps({"text": "tiny"}) + "\n"
    (tmp_path / "b.jsonl").write_text(lines)
    m = run_pipeline({"input": str(tmp_path / "in*") if False else [str(tmp_path / "a.parquet"), str(tmp_path / "b.jsonl")],
                      "output": {"path": str(tmp_path / "o"), "max_shard_bytes": "8MB"}, "workers": 1,
                      "stages": [{"length": {"max_bytes": 10 * 2**20}}]})
    assert m["docs_in"] == 4 and m["stages"][1]["dropped"] == {"too_long": 2}
    m = run_pipeline({"input": str(tmp_path / "a.parquet"), "output": {"path": str(tmp_path / "o2"),
                      "max_shard_bytes": "8MB"}, "workers": 1, "stages": []})
    assert read_out(tmp_path / "o2").column("text")[0].as_py() == big


def test_invalid_utf8_jsonl(tmp_path):
    (tmp_path / "bad.jsonl").write_bytes(b'{"text": "ok"}\n{"text": "bad \xff\xfe bytes"}\n')
    _expect_error(tmp_path, {"input": str(tmp_path / "bad.jsonl"), "output": str(tmp_path / "o"), "stages": []},
                  1, "bad.jsonl: invalid UTF-8")


def test_utf8_checked_by_the_scan_only(tmp_path, monkeypatch):
    """Parquet readers do not check UTF-8 either: the scan names the bad row of a Parquet shard.
    Reads after the scan (the score, a decide's read-back) trust the scan of the same shard and do
    not check the text again."""
    raw = pa.array([b"fine text", b"bad \xff\xfe bytes"], pa.binary())
    bad = pa.Array.from_buffers(pa.string(), 2, raw.buffers())  # a string column that is not UTF-8
    pq.write_table(pa.table({"text": bad}), tmp_path / "bad.parquet")
    _expect_error(tmp_path, {"input": str(tmp_path / "bad.parquet"), "output": str(tmp_path / "o"), "stages": []},
                  1, "bad.parquet: invalid UTF-8")

    from shardsift.io import readers as sio

    calls = []
    real = sio.check_utf8
    monkeypatch.setattr(sio, "check_utf8", lambda col, *a: (calls.append(len(col)), real(col, *a)))
    pq.write_table(pa.table({"id": [f"d{i}" for i in range(6)],
                             "text": [f"doc {i} with some words in it" for i in range(6)]}), tmp_path / "ok.parquet")
    m = run_pipeline({"input": {"path": str(tmp_path / "ok.parquet")},
                      "output": str(tmp_path / "o2"), "workers": 1,
                      "stages": [{"length": {"min_words": 1}}, {"minhash_dedup": {}}]})
    assert m["docs_kept"] == 6
    assert calls == [6]  # the scan's check only: the stages' scores read the shard again unchecked


def test_config_errors_exit_2(tmp_path, sample_dir):
    err = _expect_error(tmp_path, {"input": str(sample_dir / "pool"), "output": str(tmp_path / "o"),
                                   "stages": [{"random": {"keep": 1.5}}]}, 2, "stages[0].random.keep")
    assert "out of range" in err
    _expect_error(tmp_path, {"input": str(sample_dir / "pool"), "output": str(tmp_path / "o"), "wrokers": 2,
                             "stages": []}, 2, "did you mean 'workers'")


def test_duplicate_ids_refused_or_first_kept(tmp_path):
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["x y", "y z"]}), tmp_path / "1.parquet")
    pq.write_table(pa.table({"id": ["c", "a"], "text": ["z w", "dup"]}), tmp_path / "2.parquet")
    with pytest.raises(DataError, match="2.parquet: duplicate id 'a' at row 1"):
        run_pipeline({"input": str(tmp_path / "*.parquet"), "output": str(tmp_path / "o"), "workers": 1, "stages": []})
    m = run_pipeline({"input": str(tmp_path / "*.parquet"), "output": str(tmp_path / "o2"), "workers": 1,
                      "on_duplicate_id": "keep_first", "stages": []})
    assert m["stages"][0]["dropped"] == {"duplicate_id": 1}
    assert read_out(tmp_path / "o2").column("text").to_pylist() == ["x y", "y z", "z w"]


def test_unknown_selector_in_python_api_raises_config_error(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'random'"):
        run_pipeline({"input": "x", "output": str(tmp_path / "o"), "stages": [{"randon": {}}]})


def test_global_stage_after_a_shard_is_emptied_keeps_selector_columns(tmp_path):
    # shard a loses every document in stage 1; stage 2 is global and needs its own 'key' column
    pq.write_table(pa.table({"text": ["x"] * 5}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"text": ["long enough words here"] * 6}), tmp_path / "b.parquet")
    mod = tmp_path / "twocol.py"
    mod.write_text("import numpy as np\nfrom shardsift import Selector\n"
                   "class TwoCol(Selector):\n    scope = 'global'\n    needs_text = False\n"
                   "    def score(self, docs):\n        return {'score': docs.n_words * 1.0, 'key': docs.row % 2}\n"
                   "    def decide(self, scores, ctx):\n        return scores['key'] == 0\n")
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        m = run_pipeline({"input": str(tmp_path / "*.parquet"), "output": str(tmp_path / "o"), "workers": 1,
                          "stages": [{"length": {"min_words": 2}}, {"twocol:TwoCol": {}},
                                     {"length": {"min_words": 100}}, {"twocol:TwoCol": {}}]})
    finally:
        sys.path.remove(str(tmp_path))
    assert [s["kept"] for s in m["stages"]] == [11, 6, 3, 0, 0]
    assert m["stages"][1]["tokens_in"] == 5 + 24 and m["stages"][1]["tokens_kept"] == 24


# -- one pass per shard (document-scope stages without fit, one worker) ----------------------------

def doc_stages(sample_dir, out, workers=1, **extra):
    """Two document-scope stages with one name, a bounded output that spans shards, and scores."""
    cfg = {"input": {"path": str(sample_dir / "pool")},
           "output": {"path": str(out), "scores": True, "max_shard_bytes": "400KB"},
           "workers": workers, "seed": 3,
           "stages": [{"length": {"min_words": 150}}, {"length": {"max_words": 400}}]}
    cfg.update(extra)
    return cfg


def outputs(out) -> dict:
    return {d: file_digests(os.path.join(out, p)) for d, p in (("data", "data"), ("decisions", ".shardsift/decisions"),
                                                                 ("scores", ".shardsift/scores"))}


def test_one_and_two_workers_write_the_same_bytes_and_accounts(sample_dir, tmp_path):
    run_cli("select", write_cfg(tmp_path, **doc_stages(sample_dir, tmp_path / "one")))
    run_pipeline(doc_stages(sample_dir, tmp_path / "staged", workers=2))
    one, staged = outputs(tmp_path / "one"), outputs(tmp_path / "staged")
    assert len(one["data"]) > 1 and len(one["decisions"]) == 3 and one == staged
    m1, m2 = (json.loads((tmp_path / d / ".shardsift" / "manifest.json").read_text()) for d in ("one", "staged"))
    for key in ("docs_in", "docs_kept", "docs_dropped", "bytes_in", "bytes_kept", "tokens_in", "tokens_kept"):
        assert m1[key] == m2[key], key
    assert [(s["docs_in"], s["kept"], s["dropped"]) for s in m1["stages"]] == \
           [(s["docs_in"], s["kept"], s["dropped"]) for s in m2["stages"]]
    assert 0 < m1["stages"][1]["kept"] < m1["stages"][1]["docs_in"]
    assert 0 < m1["stages"][2]["kept"] < m1["stages"][2]["docs_in"]
    verify_output(str(tmp_path / "one"))


def test_one_pass_sigkill_at_any_point_then_rerun_is_byte_identical(sample_dir, tmp_path):
    ref, log = tmp_path / "ref", tmp_path / "points.log"
    run_cli("select", write_cfg(tmp_path, "ref.yaml", **doc_stages(sample_dir, ref)),
            env={"SHARDSIFT_LIST_POINTS": str(log)})
    points = log.read_text().split()
    assert len(points) == len(set(points)) == 2 + 3 * 4 + 6  # fit x2, per shard scan/score x2/write, the end
    picks = points if TORTURE else sorted(set(points[1::3]) | {"stage:00", "write:1"}, key=points.index)  # 9
    want = outputs(ref)
    for k, point in enumerate(picks):
        out = tmp_path / f"out{k}"
        cfg = write_cfg(tmp_path, f"c{k}.yaml", **doc_stages(sample_dir, out))
        killed = run_cli("select", cfg, env={"SHARDSIFT_KILL_AT": point}, check=False)
        assert killed.returncode != 0 and not (out / ".shardsift" / "manifest.json").exists(), point
        again = tmp_path / f"again{k}.log"
        run_cli("select", cfg, env={"SHARDSIFT_LIST_POINTS": str(again)})
        if point.startswith(("fit:", "scan:")):  # the task that finished is not redone
            assert point not in again.read_text().split(), point
        assert outputs(out) == want, point


def test_a_duplicate_id_dropped_alike_for_any_worker_count(tmp_path):
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["x y", "y z"]}), tmp_path / "1.parquet")
    pq.write_table(pa.table({"id": ["c", "a"], "text": ["z w v", "dup"]}), tmp_path / "2.parquet")
    cfg = {"input": str(tmp_path / "*.parquet"), "on_duplicate_id": "keep_first",
           "stages": [{"length": {"min_words": 2}}]}
    m1 = run_pipeline({**cfg, "output": str(tmp_path / "w1"), "workers": 1})
    m2 = run_pipeline({**cfg, "output": str(tmp_path / "w2"), "workers": 2})
    assert m1["stages"][0]["dropped"] == m2["stages"][0]["dropped"] == {"duplicate_id": 1}
    assert outputs(tmp_path / "w1") == outputs(tmp_path / "w2")
    assert not (tmp_path / "w1" / ".data.tmp").exists()


def test_document_stage_run_imports_neither_numba_nor_pandas(sample_dir, tmp_path):
    """numba's import and kernel load cost ~0.7 CPU-s and pandas' ~0.3 CPU-s per process: more than
    the whole pipeline's work on a few hundred MB (bench/bench_pipeline.py)."""
    for workers in (1, 2):
        cfg = doc_stages(sample_dir, tmp_path / f"out{workers}", workers=workers,
                         stages=[{"length": {"min_words": 150}}, {"random": {"keep": 0.5}}])
        code = ("import json, sys\nfrom shardsift.engine.runner import run_pipeline\n"
                f"run_pipeline(json.loads({json.dumps(json.dumps(cfg))}))\n"
                "print(sorted(m for m in ('numba', 'pandas', 'sklearn', 'datasets') if m in sys.modules))")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert proc.stdout.strip().splitlines()[-1] == "[]", (workers, proc.stdout)


def test_select_rows_slices_long_runs_and_copies_sparse_rows():
    import numpy as np

    tbl = pa.table({"id": [f"d{i}" for i in range(1000)], "text": [f"text {i}" for i in range(1000)]})
    rng = np.random.default_rng(0)
    cases = {"all": np.arange(1000), "two long runs": np.r_[0:400, 500:1000], "sparse": np.arange(0, 1000, 7),
             "long runs, few rows": np.r_[100:200], "random": np.flatnonzero(rng.random(1000) < 0.9)}
    for name, rows in cases.items():
        got = io.select_rows(tbl, rows)
        assert got.equals(tbl.take(rows)), name
        chunks = got.column("text").num_chunks
        if name == "two long runs":
            assert chunks == 2  # slices: no copy
        elif name != "all":
            assert chunks == 1, name  # one filter copy: short runs, or less than half the rows kept


def parquet_reads(monkeypatch) -> list:
    """The names of the shards whose Parquet is decoded from now on, one entry per read."""
    reads = []
    real = readers._iter_parquet
    monkeypatch.setattr(readers, "_iter_parquet", lambda shard, *a: (reads.append(shard.name), real(shard, *a))[1])
    return reads


# -- first stage scored inside the scan ----------------------------------------------------------

def test_first_stage_is_scored_in_the_scan_with_the_same_bytes(sample_dir, tmp_path, monkeypatch):
    """A first stage with nothing to fit is scored by the scan tasks, each batch going from the scan
    to the score (the shard is never held whole): one Parquet read per shard
    fewer, scored as each shard is scanned, and the same data, decisions and scores as a run
    without it (on_duplicate_id: keep_first turns it off, as a duplicate dropped later would change
    a scanned shard's documents)."""
    stages = [{"minhash_dedup": {"threshold": 0.8}}, {"random": {"keep": 0.5}}]
    reads = parquet_reads(monkeypatch)
    got = {}
    for fused in (True, False):
        reads.clear()
        out, log = tmp_path / f"out-{fused}", tmp_path / f"points-{fused}.log"
        monkeypatch.setenv("SHARDSIFT_LIST_POINTS", str(log))
        extra = {} if fused else {"on_duplicate_id": "keep_first"}
        m = run_pipeline(basic(sample_dir, out, stages=stages, input={"path": str(sample_dir / "pool")}, **extra))
        points = log.read_text().split()
        got[fused] = (outputs(out), len(reads), points, m)
    (o1, r1, p1, m1), (o0, r0, p0, m0) = got[True], got[False]
    assert o1 == o0 and o1["data"] and o1["scores"]
    assert r1 == r0 - 3  # three shards: the first stage's score read none
    # each shard's fused score, then its scan's summary (the task's last write), shard after shard
    assert p1.index("score:00:0") < p1.index("scan:0") < p1.index("score:00:1") < p1.index("scan:1")
    assert p0.index("scan:2") < p0.index("score:00:0")
    assert m1["stages"][1]["cpu_s"] > 0 and m1["stages"][1]["metrics"] == m0["stages"][1]["metrics"]


def test_a_failing_fused_stage_fails_its_task_naming_stage_and_shard(sample_dir, tmp_path):
    """A stage fused into the scan that raises fails the scan's task with one line naming the
    stage and the shard (no second, silent attempt); the rerun after the cause is gone resumes and
    gives the same output as a run that never failed."""
    from shardsift.errors import TaskError

    log = tmp_path / "attempts.log"

    def cfg(out, fails):
        return basic(sample_dir, out, workers=2, stages=[{"ray_plugins:FailSome": {
            "shard": "part-00001.parquet", "fails": fails, "log": str(log)}}])

    with pytest.raises(TaskError) as exc:
        run_pipeline(cfg(tmp_path / "bad", 1))
    msg = str(exc.value)
    assert msg.startswith("stage 1/1 ray_plugins:FailSome: ") and "part-00001.parquet" in msg and "boom 1" in msg, msg
    assert not (tmp_path / "bad" / ".shardsift" / "manifest.json").exists()
    assert log.read_text().count("part-00001.parquet ") == 1
    run_pipeline(cfg(tmp_path / "bad", 1))  # the log says it failed once already: this time it passes
    run_pipeline(cfg(tmp_path / "ok", 0))
    assert outputs(tmp_path / "bad") == outputs(tmp_path / "ok")


def test_score_files_concatenated_from_their_headers(tmp_path):
    """The global decide's score columns are allocated from the .npz headers and filled one shard at a
    time: the same arrays as concatenating them all, with a dtype all shards promote to; a shard with
    no surviving documents (bookkeeping columns only) takes no rows."""
    import numpy as np

    from shardsift.engine import workdir
    from shardsift.engine.contexts import _concat_scores

    def part(name, n, by_dtype):
        arrays = {"row": np.arange(n, dtype=np.int64), "n_words": np.full(n, 3, np.int64),
                  "n_bytes": np.full(n, 9, np.int64), "n_tokens": np.full(n, 4, np.int64)}
        if n:
            arrays["bands"] = np.arange(n * 2, dtype=np.uint64).reshape(n, 2) + 100 * len(name)
            arrays["keep_by"] = np.arange(n).astype(by_dtype) + 0.5 * (by_dtype == np.float64)
        else:
            arrays["score"] = np.zeros(0)
        path = str(tmp_path / f"{name}.npz")
        workdir.write_npz(path, arrays)
        return path, arrays

    parts = [part("a", 3, np.int32), part("bb", 0, None), part("ccc", 2, np.float64)]
    assert workdir.npz_headers(parts[0][0])["bands"] == ((3, 2), np.dtype(np.uint64))
    cols, offs = _concat_scores([p for p, _ in parts])
    assert offs.tolist() == [0, 3, 3, 5]
    assert sorted(cols) == ["bands", "keep_by", "n_bytes", "n_tokens", "n_words", "row"]
    full = [a for _, a in parts if len(a["row"])]
    for k in cols:
        assert np.array_equal(cols[k], np.concatenate([a[k] for a in full])), k
    assert cols["keep_by"].dtype == np.float64 and cols["keep_by"].tolist() == [0, 1, 2, 0.5, 1.5]
    assert cols["bands"].shape == (5, 2) and cols["bands"].dtype == np.uint64
    empty, offs = _concat_scores([parts[1][0]])
    assert offs.tolist() == [0, 0] and sorted(empty) == ["n_bytes", "n_tokens", "n_words", "row", "score"]


def test_docs_columns_are_not_copied():
    """Docs.text / ids / column hand a one-chunk column's array as it is (pyarrow's combine_chunks
    copies even a single chunk: a batch's whole text, per stage, per pass); several chunks are joined."""
    import numpy as np

    from shardsift.api import Docs

    text = pa.chunked_array([pa.array(["a b", "c d e"] * 3)])
    tbl = pa.table({"text": text, "id": pa.chunked_array([pa.array([str(i) for i in range(6)])]),
                    "two": pa.chunked_array([pa.array([1, 2, 3]), pa.array([4, 5, 6])])})
    d = Docs(tbl, text_column="text", id_column="id", row=np.arange(6), n_words=None, n_bytes=None,
             shard="s", shard_index=0)
    assert d.text.buffers()[2].address == text.chunk(0).buffers()[2].address
    assert d.ids.buffers()[2].address == tbl.column("id").chunk(0).buffers()[2].address
    assert d.column("two").to_pylist() == [1, 2, 3, 4, 5, 6]


def test_importing_and_running_leave_the_process_as_it_was(sample_dir, tmp_path):
    """A library must not change the process that imports it: no environment variable, no Arrow
    memory pool and no frozen garbage-collector state is different after an import and a run."""
    cfg = doc_stages(sample_dir, tmp_path / "out", workers=2,
                     stages=[{"length": {"min_words": 150}}, {"minhash_dedup": {}}])
    code = ("import gc, json, os, pyarrow as pa\n"
            "env0, pool0 = dict(os.environ), pa.default_memory_pool().backend_name\n"
            "import shardsift\nfrom shardsift.engine.runner import run_pipeline\n"
            "env1 = dict(os.environ)\n"
            f"m = run_pipeline(json.loads({json.dumps(json.dumps(cfg))}))\n"
            "print(json.dumps([env0 == env1 == dict(os.environ), pool0 == pa.default_memory_pool().backend_name,"
            " gc.get_freeze_count(), m['docs_kept'] > 0]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [True, True, 0, True], proc.stdout


def test_a_document_only_pipeline_reads_each_shard_once(sample_dir, tmp_path, monkeypatch):
    """Every stage document-scope: the scan's task scores and decides each batch through all of
    them and writes the shard's output parts and decisions, so each shard is decoded once; the
    bytes are those of the unfused flow (on_duplicate_id: keep_first turns fusion off)."""
    reads = parquet_reads(monkeypatch)
    got = {}
    for fused in (True, False):
        reads.clear()
        out = tmp_path / f"out-{fused}"
        extra = {} if fused else {"on_duplicate_id": "keep_first"}
        run_pipeline(doc_stages(sample_dir, out, **extra))
        got[fused] = (outputs(out), sorted(reads))
    shards = sorted(set(got[False][1]))
    assert got[True][1] == shards and len(shards) == 3  # one read per shard: the scan's
    assert len(got[False][1]) == 4 * len(shards)  # scan, two stages, write
    assert got[True][0] == got[False][0] and got[True][0]["data"] and got[True][0]["decisions"]


def test_a_folder_input_skips_shardsift_outputs_and_work_dirs(tmp_path):
    """A folder holding an earlier run's output (manifest.json, decisions/, a .work/ dir) next to
    the raw shards reads the raw shards only; a folder that is an output reads its kept documents."""
    raw = tmp_path / "raw"
    raw.mkdir()
    pq.write_table(pa.table({"id": ["a", "b", "c"], "text": ["one two", "three four", "five six"]}), raw / "p.parquet")
    m1 = run_pipeline({"input": str(raw), "output": str(raw / "out"), "workers": 1, "stages": [{"random": {"keep": 0.67}}]})
    assert m1["docs_in"] == 3
    m2 = run_pipeline({"input": str(raw), "output": str(tmp_path / "again"), "workers": 1, "stages": []})
    assert m2["docs_in"] == 3 and [i["path"].endswith("raw/p.parquet") for i in m2["inputs"]] == [True]
    m3 = run_pipeline({"input": str(raw / "out"), "output": str(tmp_path / "from-out"), "workers": 1, "stages": []})
    assert m3["docs_in"] == m1["docs_kept"] == 2
