"""A new user's first hour: a config's relative paths mean its own folder's files from any working
directory, `shardsift check` names every file a run would fail on, and the usual first mistakes
each get one clear line with nothing written."""
import os
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import ROOT, run_cli

import shardsift
from shardsift.engine.config import resolve_config_paths
from shardsift.errors import ConfigError
from shardsift.params import Param, map_paths, resolve_path


def write_yaml(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(data, fh)
    return path


def texts(path, n=40, column="text"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]
    pq.write_table(pa.table({column: [" ".join(words[(i + j) % 10] for j in range(30 + i)) for i in range(n)]}),
                   path)
    return path


# -- 1. relative paths are relative to the config file ------------------------------------------------

def test_resolution_covers_input_output_work_dir_and_declared_stage_paths():
    base = "/proj/configs"
    raw = {
        "input": {"path": ["../data/a", "/abs/b", "s3://bucket/c"], "text_column": "body"},
        "output": {"path": "../out", "work_dir": "~/work"},
        "stages": [
            "exact_dedup",
            {"dsir": {"targets": [{"path": "../t1", "weight": 1}, {"path": "gs://b/t2", "weight": 2}],
                      "tokenizer": "wordpunct", "keep": 0.5}},
            {"perplexity_correlation": {"losses": "m/losses.csv", "errors": "file:///e.csv", "key": "domain"}},
            {"quality_classifier": {"positives": "pos/*.parquet", "model": "hf://org/model.bin"}},
            {"kmeans_diversity": {"model_dir": "../models/k", "embedding_column": "emb"}},
            {"no_such_selector": {"path": "left/alone"}},
        ],
    }
    got = resolve_config_paths(raw, base)
    assert got["input"] == {"path": ["/proj/data/a", "/abs/b", "s3://bucket/c"], "text_column": "body"}
    assert got["output"] == {"path": "/proj/out", "work_dir": os.path.expanduser("~/work")}
    st = got["stages"]
    assert st[0] == "exact_dedup"
    assert st[1]["dsir"] == {"targets": [{"path": "/proj/t1", "weight": 1}, {"path": "gs://b/t2", "weight": 2}],
                             "tokenizer": "wordpunct", "keep": 0.5}  # a choice, not a path: as written
    assert st[2]["perplexity_correlation"] == {"losses": "/proj/configs/m/losses.csv", "errors": "file:///e.csv",
                                               "key": "domain"}
    assert st[3]["quality_classifier"] == {"positives": "/proj/configs/pos/*.parquet", "model": "hf://org/model.bin"}
    assert st[4]["kmeans_diversity"] == {"model_dir": "/proj/models/k", "embedding_column": "emb"}
    assert st[5] == {"no_such_selector": {"path": "left/alone"}}
    assert raw["input"]["path"][0] == "../data/a"  # the caller's mapping is not changed
    assert resolve_config_paths({"input": "in", "output": "out"}, base) == {
        "input": "/proj/configs/in", "output": "/proj/configs/out"}


def test_path_flag_is_checked():
    assert Param(str, None, path=True).path is True and Param(object, None, path="corpus").path == "corpus"
    assert Param(str, None, path="output").path == "output"
    with pytest.raises(ValueError, match="path"):
        Param(str, None, path="yes")
    assert resolve_path("", "/b") == "" and resolve_path("a/../c", "/b") == "/b/c"


def test_config_runs_the_same_from_any_working_directory_and_command_line_paths_stay_cwd_relative(tmp_path):
    proj, elsewhere = tmp_path / "proj", tmp_path / "elsewhere"
    texts(str(proj / "data" / "pool" / "a.parquet"))
    texts(str(proj / "data" / "target" / "t.parquet"), n=10)
    elsewhere.mkdir()
    cfg = write_yaml(str(proj / "configs" / "c.yaml"), {
        "input": "../data/pool", "output": {"path": "../out"}, "workers": 1,
        "stages": [{"length": {"min_words": 5}},
                   {"dsir": {"target": {"path": "../data/target"}, "keep": 0.5, "min_tokens": 1,
                             "metrics": False}}]})
    run_cli("check", cfg, cwd=str(elsewhere))
    run_cli("select", cfg, "--quiet", cwd=str(elsewhere))
    assert pq.read_table(proj / "out" / "data").num_rows == 20
    assert not os.listdir(elsewhere)

    # --input, --output and --set are the user's own words: relative to where the command runs
    texts(str(elsewhere / "mine" / "pool.parquet"))
    texts(str(elsewhere / "mine" / "target.parquet"), n=10)
    run_cli("select", cfg, "--quiet", "--input", "mine/pool.parquet", "--output", "res",
            "--set", "stages.1.dsir.target.path=mine/target.parquet", cwd=str(elsewhere))
    assert pq.read_table(elsewhere / "res" / "data").num_rows == 20
    pipe = shardsift.Pipeline.from_yaml(str(cfg), ["stages.1.dsir.target.path=mine/target.parquet"])
    assert pipe.config["stages"][1]["dsir"]["target"] == {"path": "mine/target.parquet"}
    assert pipe.config["input"] == str(proj / "data" / "pool")


@pytest.mark.parametrize("config", sorted(f for f in os.listdir(os.path.join(ROOT, "configs")) if f.endswith(".yaml")))
def test_shipped_configs_name_the_repository_files_from_any_directory(config, tmp_path, monkeypatch):
    """`make select` runs the configs from the repository root, on data/sample and into out/: their
    paths, relative to configs/, name those folders of the repository wherever the command runs."""
    monkeypatch.chdir(tmp_path)
    cfg = shardsift.Pipeline.from_yaml(os.path.join(ROOT, "configs", config)).check()
    assert cfg.output.path.startswith(os.path.join(ROOT, "out") + os.sep)
    paths = [cfg.input.path] if isinstance(cfg.input.path, str) else list(cfg.input.path)
    for sel in cfg.built:
        for key, spec in type(sel).param_specs().items():
            value = getattr(sel, key)
            if spec.path and value is not None:
                map_paths(value, paths.append)
    assert paths
    for p in paths:
        assert p.startswith(os.path.join(ROOT, "data", "sample") + os.sep) or p == os.path.join(ROOT, "raw", "*.parquet"), p


# -- 2. check names every file a stage references -----------------------------------------------------

def test_check_lists_every_bad_stage_file_one_line_each_and_writes_nothing(tmp_path):
    texts(str(tmp_path / "pool" / "a.parquet"))
    texts(str(tmp_path / "body.parquet"), column="body")
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "numbers.parquet")
    (tmp_path / "corrupt.parquet").write_bytes(b"PAR1 not really")
    (tmp_path / "bad.csv").write_text('model,error\n"unterminated\n')
    (tmp_path / "errors.csv").write_text("model,error\nm1,0.5\n")
    cfg = write_yaml(str(tmp_path / "c.yaml"), {
        "input": "pool", "output": "out",
        "stages": [
            {"dsir": {"targets": [{"path": "missing_target", "weight": 1}, {"path": "numbers.parquet", "weight": 1}],
                      "keep": 0.5}},
            {"perplexity_correlation": {"losses": "corrupt.parquet", "errors": "bad.csv", "keep": 0.5}},
            {"perplexity_correlation": {"losses": "nowhere/losses.csv", "errors": "errors.csv", "keep": 0.5}},
            {"quality_classifier": {"positives": {"path": "body.parquet", "text_column": "txt"}, "keep": 0.1}},
            {"quality_classifier": {"model": "models/fasttext.bin", "keep": 0.1}},
        ]})
    proc = run_cli("check", cfg, cwd=str(tmp_path / "pool"), check=False)
    assert proc.returncode == 1
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("shardsift: error: ")]
    expected = [
        f"stages[0].dsir.targets[0]: {tmp_path / 'missing_target'} not found",
        f"stages[0].dsir.targets[1]: {tmp_path / 'numbers.parquet'}: column 'text' is int64, not a string type",
        f"stages[1].perplexity_correlation.losses: {tmp_path / 'corrupt.parquet'}: not a readable Parquet file",
        f"stages[1].perplexity_correlation.errors: {tmp_path / 'bad.csv'}: not a readable CSV file",
        f"stages[2].perplexity_correlation.losses: {tmp_path / 'nowhere' / 'losses.csv'}: not found",
        f"stages[3].quality_classifier.positives: {tmp_path / 'body.parquet'}: no text column 'txt' (columns: body",
        f"stages[4].quality_classifier.model: {tmp_path / 'models' / 'fasttext.bin'}: not found",
    ]
    assert len(errors) == len(expected), proc.stderr
    for line, want in zip(errors, expected):
        assert want in line, (line, want)
    assert len(proc.stderr.splitlines()) == len(expected)
    assert proc.stdout.splitlines()[-1] == f"{cfg}: {len(expected)} problem(s); nothing was written"
    assert not (tmp_path / "out").exists()


def test_select_refuses_a_missing_stage_file_before_reading_the_input(tmp_path):
    """select runs check's file checks before the scan: one line naming the stage, key and path (and
    how many more problems there are), exit 1, and no output folder."""
    texts(str(tmp_path / "pool" / "a.parquet"))
    cfg = write_yaml(str(tmp_path / "c.yaml"), {
        "input": "pool", "output": "out",
        "stages": [{"length": {"min_words": 1}},
                   {"dsir": {"target": "missing_target", "keep": 0.5}},
                   {"perplexity_correlation": {"losses": "nowhere.csv", "errors": "nowhere2.csv", "keep": 0.5}}]})
    proc = run_cli("select", cfg, cwd=str(tmp_path), check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"shardsift: error: stages[1].dsir.target: {tmp_path / 'missing_target'} not found")
    assert "(and 2 more: `shardsift check CONFIG` lists them)" in lines[0]
    assert not (tmp_path / "out").exists()


def test_check_passes_when_the_files_are_there(tmp_path):
    texts(str(tmp_path / "pool" / "a.parquet"))
    texts(str(tmp_path / "target.parquet"))
    cfg = write_yaml(str(tmp_path / "cfg" / "c.yaml"), {
        "input": "../pool", "output": "../out",
        "stages": [{"dsir": {"target": "../target.parquet", "keep": 0.5}}]})
    proc = run_cli("check", cfg, cwd=str(tmp_path / "pool"))
    assert proc.stderr == "" and proc.stdout.rstrip().endswith("nothing was read beyond file listings and footers)")


PLUGIN = """
import numpy as np
import shardsift


class StopWords(shardsift.Filter):
    lists = shardsift.Param(list, [], "word list files", path=True)

    def setup(self):
        self.words_ = {w for p in self.lists for w in open(p, encoding="utf-8").read().split()}

    def keep(self, docs):
        return np.array([not (set(t.split()) & self.words_) for t in docs.text.to_pylist()])
"""


def test_a_plugins_declared_paths_are_resolved_and_checked(tmp_path):
    """A plugin's own path parameter (a list of files) gets the same treatment as the built-ins'."""
    (tmp_path / "plug").mkdir()
    (tmp_path / "plug" / "stopplug.py").write_text(PLUGIN)
    (tmp_path / "data").mkdir()
    pq.write_table(pa.table({"text": ["one kappa two", "one two three", "four five", "kappa"]}),
                   tmp_path / "data" / "pool.parquet")
    (tmp_path / "cfg" / "lists").mkdir(parents=True)
    (tmp_path / "cfg" / "lists" / "a.txt").write_text("kappa\n")
    cfg = write_yaml(str(tmp_path / "cfg" / "c.yaml"), {
        "input": "../data/pool.parquet", "output": "../out", "workers": 1,
        "stages": [{"stopplug:StopWords": {"lists": ["lists/a.txt", "lists/b.txt"]}}]})
    proc = run_cli("check", cfg, cwd=str(tmp_path / "plug"), check=False)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == (f"shardsift: error: stages[0].stopplug:StopWords.lists: "
                                           f"{tmp_path / 'cfg' / 'lists' / 'b.txt'}: not found")
    (tmp_path / "cfg" / "lists" / "b.txt").write_text("nothing\n")
    run_cli("select", cfg, "--quiet", cwd=str(tmp_path / "plug"))
    kept = pq.read_table(tmp_path / "out" / "data").column("text").to_pylist()
    assert kept == ["one two three", "four five"]


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads files whatever their mode")
def test_check_names_an_unreadable_file(tmp_path):
    texts(str(tmp_path / "pool" / "a.parquet"))
    (tmp_path / "model.bin").write_bytes(b"x")
    os.chmod(tmp_path / "model.bin", 0)
    cfg = write_yaml(str(tmp_path / "c.yaml"), {"input": "pool", "output": "out", "stages": [
        {"quality_classifier": {"model": "model.bin", "keep": 0.1}}]})
    proc = run_cli("check", cfg, check=False)
    assert proc.returncode == 1
    assert f"stages[0].quality_classifier.model: {tmp_path / 'model.bin'}: not readable" in proc.stderr


# -- 3. the usual first mistakes: one line each, nothing written --------------------------------------

def _first_mistake(tmp_path, name):
    texts(str(tmp_path / "good.parquet"))
    ok = {"input": "good.parquet", "output": "out", "stages": [{"length": {"min_words": 1}}]}
    if name == "typo":
        return ok | {"stages": [{"lenght": {"min_words": 1}}]}, ()
    if name == "list":
        return [{"length": {"min_words": 1}}], ()
    if name == "percent":
        return ok | {"stages": [{"random": {"keep": "50%"}}]}, ()
    if name == "stages_string":
        return ok | {"stages": "length"}, ()
    if name == "indent":
        return ok | {"stages": [{"length": None, "min_words": 1}]}, ()
    if name == "empty_folder":
        (tmp_path / "empty").mkdir()
        return ok, ("--input", "empty")
    if name == "csv_folder":
        (tmp_path / "csvs").mkdir()
        (tmp_path / "csvs" / "a.csv").write_text("text\nhello\n")
        return ok, ("--input", "csvs")
    if name == "csv_file":
        (tmp_path / "a.csv").write_text("text\nhello\n")
        return ok, ("--input", "a.csv")
    pq.write_table(pa.table({"text": [1, 2, 3]}), tmp_path / "numbers.parquet")
    return ok, ("--input", "numbers.parquet")


@pytest.mark.parametrize("name, code, needle", [
    ("typo", 2, "stages[0]: unknown selector 'lenght' (did you mean 'length'?)"),
    ("list", 2, "expected a mapping at the top level, got list (a list of stages goes under 'stages:'"),
    ("percent", 2, "stages[0].random.keep: expected number, got str '50%' (a fraction: write 0.5 for 50%)"),
    ("stages_string", 2, "stages: expected a list of stages, got str 'length' (one stage a line: '- name'"),
    ("indent", 2, "stages[0]: one selector per list item, got 2 keys (length, min_words); indent"),
    ("empty_folder", 1, "input: folder empty holds no .parquet or .jsonl files (it is empty)"),
    ("csv_folder", 1, "input: folder csvs holds no .parquet or .jsonl files (it holds 1 other file(s): .csv; "
                      "CSV is not read: convert it to Parquet)"),
    ("csv_file", 1, "a.csv: unknown file type (expected .parquet or .jsonl[.gz|.zst]; CSV is not read"),
    ("numbers", 1, "numbers.parquet: column 'text' is int64, not a string type (set input.text_column"),
])
@pytest.mark.parametrize("command", ["check", "select"])
def test_first_mistakes_get_one_line(tmp_path, name, code, needle, command):
    raw, args = _first_mistake(tmp_path, name)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    quiet = ("--quiet",) if command == "select" else ()
    proc = run_cli(command, cfg, *args, *quiet, cwd=str(tmp_path), check=False)
    assert proc.returncode == code
    errors = proc.stderr.splitlines()
    assert errors[0].startswith("shardsift: error: ") and needle in errors[0], proc.stderr
    assert len([e for e in errors if e.startswith("shardsift: error: ")]) == 1
    assert not (tmp_path / "out").exists()


def test_a_malformed_percentage_is_a_plain_type_error():
    with pytest.raises(ConfigError, match=r"expected number, got str '5\.5\.5%'$"):
        shardsift.Pipeline([{"random": {"keep": "5.5.5%"}}]).check("x", "y")


def test_a_stage_item_with_two_keys_is_refused_from_python_too():
    with pytest.raises(ConfigError, match=r"stages\[1\]: one selector per list item, got 2 keys"):
        shardsift.Pipeline(["exact_dedup", {"length": {}, "random": {"keep": 0.5}}]).check("x", "y")


def test_unchanged_folder_of_data_files_still_reads(tmp_path):
    """The empty-folder line fires only when a folder has no data file at all."""
    texts(str(tmp_path / "pool" / "a.parquet"))
    (tmp_path / "pool" / "notes.txt").write_text("not data")
    shutil.copy(tmp_path / "pool" / "a.parquet", tmp_path / "pool" / "b.parquet")
    cfg = shardsift.Pipeline(["exact_dedup"]).check(str(tmp_path / "pool"), str(tmp_path / "out"))
    from shardsift.io import resolve_shards

    assert [os.path.basename(s.uri) for s in resolve_shards(cfg.input.path)] == ["a.parquet", "b.parquet"]
