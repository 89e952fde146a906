"""The Python API and the plugin contract as a user meets them: Pipeline with selector objects,
names and {name: params}; paths or a datasets.Dataset in; the kept documents back; a Filter whose
__init__ and setup() do real work."""
import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import shardsift
from shardsift.errors import ConfigError

WORDS = ["alpha", "beta", "gamma", "delta", "spam", "eggs", "lorem", "ipsum"]


def corpus(path, n=600, shards=3, seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(path, exist_ok=True)
    per = n // shards
    for s in range(shards):
        texts = [" ".join(rng.choice(WORDS, int(rng.integers(3, 40)))) for _ in range(per)]
        ids = [f"s{s}-{i}" for i in range(per)]
        pq.write_table(pa.table({"id": ids, "text": texts, "source": ["gen"] * per}), os.path.join(path, f"p{s}.parquet"))
    return path


class NoSpam(shardsift.Filter):
    """Drops documents that mention any of the words in a word-list file (read in __init__)."""

    path = shardsift.Param(str, doc="a file with one word per line")
    setups = 0

    def __init__(self, **params):
        super().__init__(**params)
        with open(self.path, encoding="utf-8") as fh:
            self.words = [w.strip() for w in fh if w.strip()]

    def setup(self):
        type(self).setups += 1

    def keep(self, docs):
        import pyarrow.compute as pc

        hit = np.zeros(len(docs), dtype=bool)
        for w in self.words:
            hit |= pc.match_substring(docs.text, w).to_numpy(zero_copy_only=False)
        return shardsift.Decision(keep=~hit, reason="spam_word")


@pytest.fixture()
def wordlist(tmp_path):
    p = tmp_path / "words.txt"
    p.write_text("spam\neggs\n")
    return str(p)


def test_pipeline_of_objects_names_and_mappings(tmp_path, wordlist):
    src = corpus(str(tmp_path / "in"))
    NoSpam.setups = 0
    pipe = shardsift.Pipeline([NoSpam(path=wordlist), "exact_dedup", {"length": {"min_words": 5}}], seed=1, workers=1)
    result = pipe.run(src, str(tmp_path / "out"))
    m = result.manifest
    assert NoSpam.setups == 1  # once in this process, before the first batch
    texts = pq.read_table(str(tmp_path / "in")).column("text").to_pylist()
    no_spam = [t for t in texts if "spam" not in t and "eggs" not in t]
    assert m["stages"][1]["name"] == "NoSpam" and m["stages"][1]["dropped"] == {"spam_word": len(texts) - len(no_spam)}
    table = result.to_table()
    ds = result.to_dataset()
    assert table.num_rows == len(ds) == m["docs_kept"] > 0
    assert set(ds.column_names) == {"id", "text", "source"}
    assert not any("spam" in t or "eggs" in t for t in ds["text"])
    assert all(len(t.split()) >= 5 for t in ds["text"])
    assert m["docs_in"] == m["docs_kept"] + m["docs_dropped"]


def test_a_dataset_in_and_the_same_kept_documents_as_from_files(tmp_path, wordlist):
    import datasets

    src = corpus(str(tmp_path / "in"))
    table = pa.concat_tables([pq.read_table(os.path.join(src, f)) for f in sorted(os.listdir(src))])
    pipe = shardsift.Pipeline([NoSpam(path=wordlist), {"random": {"keep": 0.5}}], seed=3, workers=1)
    from_files = pipe.run(src, str(tmp_path / "a")).to_dataset()
    from_ds = pipe.run(datasets.Dataset(table), str(tmp_path / "b")).to_dataset()
    assert 0 < len(from_ds) < len(table)
    assert sorted(from_ds["id"]) == sorted(from_files["id"])  # the draw is seeded by (seed, id)


def test_a_users_object_is_not_changed_by_a_run(tmp_path, wordlist):
    f = NoSpam(path=wordlist)
    shardsift.Pipeline([f], workers=1).run(corpus(str(tmp_path / "in")), str(tmp_path / "out"))
    assert not hasattr(f, "seed_") and f.words == ["spam", "eggs"]


def test_bad_stages_are_one_line_config_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"stages\[0\]\.length\.min_words: expected int"):
        shardsift.Pipeline([{"length": {"min_words": "ten"}}]).check("x", "y")
    with pytest.raises(ConfigError, match=r"stages\[1\]: unknown selector 'lenght' \(did you mean 'length'\?\)"):
        shardsift.Pipeline(["exact_dedup", "lenght"]).check("x", "y")


def test_from_yaml_and_select_share_one_path(tmp_path, wordlist):
    """shardsift select CONFIG and Pipeline.from_yaml(CONFIG).run() write the same bytes; --set
    reaches any value by its dotted path."""
    src = corpus(str(tmp_path / "in"))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"input: {{path: {src}}}\noutput: {{path: {tmp_path / 'cli'}}}\nworkers: 1\nseed: 2\n"
                   "stages:\n  - length: {min_words: 3}\n  - random: {keep: 0.5}\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-m", "shardsift", "select", str(cfg), "--quiet",
                    "--set", "stages.0.length.min_words=10", "--set", "stages.1.random.keep=0.25"],
                   check=True, env=env, capture_output=True)
    result = shardsift.Pipeline.from_yaml(str(cfg), ["stages.0.length.min_words=10", "stages.1.random.keep=0.25"]) \
        .run(output=str(tmp_path / "api"))
    cli = json.loads((tmp_path / "cli" / ".shardsift" / "manifest.json").read_text())
    assert cli["stages"][1]["params"]["min_words"] == 10 and cli["stages"][2]["params"]["keep"] == 0.25
    assert cli["docs_kept"] == result.manifest["docs_kept"]
    for name in sorted(os.listdir(tmp_path / "cli" / "data")):
        assert (tmp_path / "cli" / "data" / name).read_bytes() == (tmp_path / "api" / "data" / name).read_bytes()


def test_set_errors_name_the_path(tmp_path):
    from shardsift.engine.config import apply_sets

    raw = {"stages": ["length", {"random": {"keep": 0.5}}], "input": "x"}
    got = apply_sets(raw, ["stages.0.length.min_words=7", "input.text_column=body", "seed=3"])
    assert got["stages"][0] == {"length": {"min_words": 7}} and got["input"] == {"path": "x", "text_column": "body"}
    assert raw["stages"][0] == "length"  # the caller's mapping is left as it was
    with pytest.raises(ConfigError, match=r"--set stages\.5\.x: 'stages\.5': no item 5 in a list of 2"):
        apply_sets(raw, ["stages.5.x=1"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_sets(raw, ["seed"])
