"""The run's token unit end to end, on real documents: the scan's counts, a `tokens:` budget cut
exactly, output.tokens, the same bytes for 1 and 2 workers, resume keyed by the tokenizer, and bad
tokenizer specs refused before anything is written."""
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import corpora_path, file_digests

from shardsift.columns import count_words, hash_strings
from shardsift.engine.fingerprint import stage_seed
from shardsift.engine.runner import run_pipeline
from shardsift.errors import ConfigError
from shardsift.params import parse_count
from shardsift.pipeline import Pipeline
from shardsift.report.summary import manifest_table
from shardsift.selectors.budget import tie_keys
from shardsift.tokenizer import load_tokenizer

tokenizers = pytest.importorskip("tokenizers", reason="the `tokenizers` package is a core dependency")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Three input shards of real pool documents (400 each) and a byte-level BPE trained on others."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    src = pq.read_table(corpora_path("pool", "part-00001.parquet"), columns=["id", "text"])
    folder = tmp_path_factory.mktemp("tokcorpus")
    for j in range(3):
        pq.write_table(src.slice(j * 400, 400), folder / f"in-{j}.parquet")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=800, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>"], show_progress=False)
    tok.train_from_iterator(src.slice(1200, 400).column("text").to_pylist(), trainer)
    tok.save(str(folder / "tokenizer.json"))
    texts = pa.concat_arrays([c for j in range(3) for c in src.slice(j * 400, 400).column("text").chunks])
    ids = pa.concat_arrays([c for j in range(3) for c in src.slice(j * 400, 400).column("id").chunks])
    return {"input": str(folder / "in-*.parquet"), "tokenizer": str(folder / "tokenizer.json"),
            "texts": texts, "ids": ids, "dir": folder}


def run(corpus, out, stages, workers=1, output=None):
    cfg = {"input": corpus["input"], "output": output or {"path": str(out), "scores": True}, "workers": workers,
           "tokenizer": corpus["tokenizer"], "stages": stages}
    return run_pipeline(cfg)


def own_counts(corpus) -> dict:
    """Each document's tokens by the tokenizer's own per-document encode."""
    own = tokenizers.Tokenizer.from_file(corpus["tokenizer"])
    return {i: len(own.encode(t or "", add_special_tokens=False).ids)
            for i, t in zip(corpus["ids"].to_pylist(), corpus["texts"].to_pylist())}


BUDGET_STAGES = [{"length": {"min_words": 1, "drop": False}}, {"combine": {"weights": {"length": -1}, "tokens": "40K"}}]


def test_tokens_budget_exact_in_the_runs_unit(corpus, tmp_path):
    m = run(corpus, tmp_path / "one", BUDGET_STAGES)
    own = own_counts(corpus)
    tok = load_tokenizer(corpus["tokenizer"])
    assert m["token_unit"] == tok.unit == "tokens (hf:tokenizer.json)" and m["tokenizer"] == tok.name
    assert m["tokens_in"] == sum(own.values()) != int(count_words(corpus["texts"]).sum())
    kept = pq.read_table(tmp_path / "one" / "data").column("id").to_pylist()
    assert m["tokens_kept"] == sum(own[i] for i in kept)
    side = pq.read_table(tmp_path / "one" / ".shardsift" / "scores" / "stage-02-combine.parquet").to_pydict()
    assert all(own[i] == n for i, n in zip(side["id"], side["n_tokens"]))  # the sidecar's unit too
    # the ranking the budget cuts: combined score, highest first, ties by the stage's seeded id hash
    ties = tie_keys(hash_strings(pa.array(side["id"])), stage_seed(0, 1))
    order = np.lexsort((ties, -np.asarray(side["score"])))
    toks = np.asarray(side["n_tokens"])[order]
    k = int(np.sum(np.asarray(side["kept"])))
    assert sorted(np.asarray(side["id"])[order[:k]]) == sorted(kept) and 0 < k < len(order)
    assert toks[:k].sum() <= 40_000 < toks[:k + 1].sum()
    assert m["stages"][2]["metrics"]["kept_tokens"] == toks[:k].sum() == m["tokens_kept"]
    # the same bytes with two workers
    run(corpus, tmp_path / "two", BUDGET_STAGES, workers=2)
    for part in ("data", os.path.join(".shardsift", "decisions")):
        assert file_digests(tmp_path / "one" / part) == file_digests(tmp_path / "two" / part)


def test_output_tokens_cap(corpus, tmp_path):
    stages = [{"length": {"min_words": 20}}]
    run(corpus, tmp_path / "one", stages)
    base = set(pq.read_table(tmp_path / "one" / "data").column("id").to_pylist())
    cfg_out = {"path": str(tmp_path / "cap1"), "scores": True, "tokens": "30K"}
    m = run(corpus, tmp_path / "cap1", stages, output=cfg_out)
    own = own_counts(corpus)
    kept = pq.read_table(tmp_path / "cap1" / "data").column("id").to_pylist()
    assert set(kept) < base and m["tokens_kept"] == sum(own[i] for i in kept) <= 30_000
    # the survivors in the seeded hash order: the kept ones are its prefix, the next would pass the cap
    ids = np.array(sorted(base))
    order = np.argsort(tie_keys(hash_strings(pa.array(ids)), 0), kind="stable")
    k = len(kept)
    assert sorted(ids[order[:k]]) == sorted(kept)
    assert sum(own[i] for i in ids[order[:k + 1]]) > 30_000
    assert set(kept) & set(corpus["ids"].slice(800, 400).to_pylist()), "the cap keeps documents of the last shard too"
    assert m["stages"][-1]["name"] == "output" and m["stages"][-1]["dropped"] == {"output:tokens_cap": len(base) - k}
    dec = pq.read_table(tmp_path / "cap1" / ".shardsift" / "decisions").to_pydict()
    capped = {i for i, r in zip(dec["id"], dec["reason"]) if r == "output:tokens_cap"}
    assert capped == base - set(kept)
    run(corpus, tmp_path / "cap2", stages, workers=2, output={**cfg_out, "path": str(tmp_path / "cap2")})
    assert file_digests(tmp_path / "cap1" / "data") == file_digests(tmp_path / "cap2" / "data")


def test_changing_the_tokenizer_invalidates_resume(corpus, tmp_path):
    out = tmp_path / "out"
    cfg = {"input": corpus["input"], "output": str(out), "workers": 1, "stages": ["length"]}
    words = run_pipeline(cfg)
    assert words["token_unit"] == "whitespace words" and words["tokenizer"] == "words"
    assert words["tokens_in"] == int(count_words(corpus["texts"]).sum())
    again = Pipeline(["length"], workers=1, tokenizer=corpus["tokenizer"]).run(
        corpus["input"], str(out), overwrite=True).manifest
    assert again["tokens_in"] == sum(own_counts(corpus).values()) != words["tokens_in"]
    # inspect's table names the unit
    assert f"tokens (whitespace words): {words['tokens_in']:,} in" in manifest_table(words)
    assert f"tokens (hf:tokenizer.json): {again['tokens_in']:,} in" in manifest_table(again)


@pytest.mark.parametrize("what", ["missing", "not_a_tokenizer"])
def test_bad_tokenizer_one_line_nothing_written(corpus, tmp_path, what):
    bad = tmp_path / ("nope.json" if what == "missing" else "notes.json")
    if what == "not_a_tokenizer":
        bad.write_text(json.dumps({"these": "are notes"}))
    out = tmp_path / "out"
    with pytest.raises(ConfigError) as err:
        run_pipeline({"input": corpus["input"], "output": str(out), "tokenizer": str(bad), "stages": ["length"]})
    assert str(bad) in str(err.value) and "\n" not in str(err.value) and str(err.value).startswith("tokenizer:")
    assert not out.exists()


def test_counts_parse():
    assert [parse_count(v, "x") for v in ("2B", "500M", "1.5K", "7", 12, "3t")] == \
        [2 * 10**9, 500 * 10**6, 1500, 7, 12, 3 * 10**12]
    for bad in ("2 GB", "-1", "1.5", True, "lots"):
        with pytest.raises(ConfigError, match="is not a count"):
            parse_count(bad, "stages[0].combine.tokens")
