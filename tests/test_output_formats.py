"""output.format: JSON Lines parts hold exactly the Parquet output's rows; token shards read back by
Megatron-LM's own reader give the tokenizer's ids of the kept documents (each followed by the EOS
id) in the documented order; both are byte-identical for 1 or 2 workers; bad settings fail in one line."""
import json
import os
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import file_digests

from shardsift.engine.runner import run_pipeline
from shardsift.errors import ConfigError
from shardsift.io.megatron import BoundedTokenWriter, read_index, token_dtype
from shardsift.output import verify_output
from shardsift.tokenizer import load_tokenizer

FUSED = [{"length": {"min_words": 20}}]                              # every stage fused into the scan
STAGED = [{"length": {"min_words": 20}}, {"random": {"keep": 0.6}}]  # a global stage: the output tasks
PART = re.compile(r"part-\d{5}-\d{5}")


def megatron_reader():
    mod = pytest.importorskip("megatron.core.datasets.indexed_dataset",
                              reason="megatron-core (extra lm, needs torch) is not importable")
    return mod.IndexedDataset


@pytest.fixture(scope="module")
def tokenizer_json(sample_dir, tmp_path_factory):
    """A byte-level BPE (vocabulary 800, end of text <|endoftext|>) trained on the sample pool."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    texts = pq.read_table(sample_dir / "pool").column("text").to_pylist()[:400]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=800, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>"], show_progress=False)
    tok.train_from_iterator(texts, trainer)
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tok.save(str(path))
    return str(path)


def cfg(sample_dir, out, stages, workers=1, tokenizer=None, **output):
    c = {"input": {"path": str(sample_dir / "pool")}, "output": {"path": str(out), **output},
         "workers": workers, "seed": 5, "stages": stages}
    return {**c, "tokenizer": tokenizer} if tokenizer else c


def jsonl_rows(out) -> list[dict]:
    """Every line of data/'s parts in part order, parsed by the standard library."""
    rows = []
    for name in sorted(os.listdir(out / "data")):
        path = str(out / "data" / name)
        codec = {"zst": "zstd", "gz": "gzip"}.get(name.rsplit(".", 1)[-1])
        with pa.input_stream(path, compression=codec) as fh:
            rows += [json.loads(line) for line in fh.read().decode("utf-8").splitlines()]
    return rows


@pytest.mark.parametrize("compression,suffix", [("none", ".jsonl"), ("zstd", ".jsonl.zst"), ("gzip", ".jsonl.gz")])
@pytest.mark.parametrize("stages", [FUSED, STAGED], ids=["fused", "staged"])
def test_jsonl_holds_the_parquet_rows(sample_dir, tmp_path, compression, suffix, stages):
    run_pipeline(cfg(sample_dir, tmp_path / "pq", stages))
    m = run_pipeline(cfg(sample_dir, tmp_path / "js", stages, format="jsonl", compression=compression,
                         max_shard_bytes=40_000))
    want = pq.read_table(tmp_path / "pq" / "data").to_pylist()
    assert want and jsonl_rows(tmp_path / "js") == want  # same rows, columns and order
    names = sorted(os.listdir(tmp_path / "js" / "data"))
    assert len(names) > 3 and all(PART.fullmatch(n[:-len(suffix)]) and n.endswith(suffix) for n in names)
    assert m["output"]["format"] == "jsonl" and sum(f["rows"] for f in m["output"]["files"]) == len(want)
    verify_output(str(tmp_path / "js"))


def test_jsonl_escapes_and_types_round_trip(tmp_path):
    from shardsift.io.json_lines import BoundedJsonlWriter

    t = pa.table({"id": ["a", 'q"\\', None], "text": ["h\u00e9 \u4e16\n\x01\t\x7f", "", "\u2028x"],
                  "n": [1, None, -(2**62)], "f": [0.1, float("nan"), 1e-7], "b": [True, None, False],
                  "l": [[1.5, None], None, []], "s": [{"k": "v"}, None, {"k": None}]})
    w = BoundedJsonlWriter(str(tmp_path), 10**6, "zstd", prefix="part-00000-")
    w.write(t.slice(0, 1))
    w.write(t.slice(1))
    assert [f["rows"] for f in w.close()] == [3]
    with pa.input_stream(str(tmp_path / "part-00000-00000.jsonl.zst"), compression="zstd") as fh:
        got = [json.loads(line) for line in fh.read().decode().split("\n") if line]
    want = t.to_pylist()
    want[1]["f"] = None  # NaN has no JSON form: null
    assert got == want


def read_tokens(IndexedDataset, out) -> list[tuple[str, np.ndarray]]:
    """(part prefix, ids) of every document of data/ by Megatron's reader, parts in manifest order."""
    m = json.loads((out / ".shardsift" / "manifest.json").read_text())
    docs = []
    for f in m["output"]["files"]:
        ds = IndexedDataset(str(out / f["path"]))
        assert len(ds) == f["rows"] and int(ds.sequence_lengths.sum()) == f["tokens"]
        docs += [(f["path"], np.array(ds[i])) for i in range(len(ds))]  # copies: the mapping closes with ds
        del ds
    return docs


def expected_tokens(tokenizer_json, table: pa.Table) -> list[np.ndarray]:
    tok = load_tokenizer(tokenizer_json)
    ids, off = tok.encode(table.column("text"))
    return [np.append(ids[off[i]:off[i + 1]], tok.eos_id) for i in range(table.num_rows)]


@pytest.mark.parametrize("stages", [FUSED, STAGED], ids=["fused", "staged"])
def test_tokens_read_back_by_megatron(sample_dir, tmp_path, tokenizer_json, stages):
    IndexedDataset = megatron_reader()
    run_pipeline(cfg(sample_dir, tmp_path / "pq", stages))
    m = run_pipeline(cfg(sample_dir, tmp_path / "tk", stages, format="tokens", shard_tokens="20K",
                         tokenizer=tokenizer_json))
    kept = pq.read_table(tmp_path / "pq" / "data")
    want = expected_tokens(tokenizer_json, kept)
    got = read_tokens(IndexedDataset, tmp_path / "tk")
    assert len(got) == len(want) == m["docs_kept"] > 100
    assert all(np.array_equal(g, w) for (_, g), w in zip(got, want))  # input order, EOS after each
    out = m["output"]
    assert out["format"] == "tokens" and out["dtype"] == "uint16" and out["eos_id"] == load_tokenizer(
        tokenizer_json).eos_id
    assert out["tokens"] == sum(len(w) for w in want) == sum(f["tokens"] for f in out["files"])
    assert out["tokens"] == m["tokens_kept"] + m["docs_kept"]  # the run's token count, plus one EOS each
    assert len(out["files"]) > 3 and all(f["tokens"] <= 20_000 for f in out["files"])
    assert all(PART.fullmatch(f["path"].split("/")[1]) for f in out["files"])
    assert read_index(str(tmp_path / "tk" / out["files"][0]["path"]) + ".idx")["dtype"] == "uint16"
    verify_output(str(tmp_path / "tk"))


def test_tokens_shuffle_permutes_each_shard_deterministically(sample_dir, tmp_path, tokenizer_json):
    IndexedDataset = megatron_reader()
    runs = {}
    for name, extra in (("plain", {}), ("s5", {"shuffle": True, "seed": 5}), ("s5b", {"shuffle": True, "seed": 5}),
                        ("s6", {"shuffle": True, "seed": 6})):
        run_pipeline(cfg(sample_dir, tmp_path / name, FUSED, format="tokens", tokenizer=tokenizer_json, **extra))
        runs[name] = read_tokens(IndexedDataset, tmp_path / name)

    def by_shard(docs):
        out = {}
        for path, ids in docs:
            out.setdefault(path.split("/")[1][:10], []).append(tuple(ids.tolist()))
        return out

    plain, s5 = by_shard(runs["plain"]), by_shard(runs["s5"])
    assert len(plain) == 3 and plain.keys() == s5.keys()
    for shard in plain:  # the same documents within each input shard, in another order
        assert sorted(plain[shard]) == sorted(s5[shard]) and plain[shard] != s5[shard]
    assert file_digests(tmp_path / "s5" / "data") == file_digests(tmp_path / "s5b" / "data")
    assert file_digests(tmp_path / "s5" / "data") != file_digests(tmp_path / "s6" / "data")


@pytest.mark.parametrize("stages", [FUSED, STAGED], ids=["fused", "staged"])
@pytest.mark.parametrize("output", [{"format": "jsonl", "max_shard_bytes": 30_000},
                                    {"format": "tokens", "shard_tokens": 15_000, "shuffle": True}],
                         ids=["jsonl", "tokens"])
def test_one_and_two_workers_write_identical_bytes(sample_dir, tmp_path, tokenizer_json, stages, output):
    if output["format"] == "tokens":
        output = {**output, "tokenizer": tokenizer_json}
    run_pipeline(cfg(sample_dir, tmp_path / "w1", stages, workers=1, **output))
    run_pipeline(cfg(sample_dir, tmp_path / "w2", stages, workers=2, **output))
    d1 = file_digests(tmp_path / "w1" / "data")
    assert len(d1) > 3 and d1 == file_digests(tmp_path / "w2" / "data")


@pytest.fixture(scope="module")
def wordpiece_json(sample_dir, tmp_path_factory):
    """A BERT-style WordPiece (lowercase, BERT pre-tokenizer, [SEP] ends a document): the tokenizer
    kind whose counts and ids go through distinct space-separated chunks (shardsift.token_chunks)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    texts = pq.read_table(sample_dir / "pool").column("text").to_pylist()[:400]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=900, special_tokens=["[UNK]", "[SEP]"],
                                                             show_progress=False))
    path = tmp_path_factory.mktemp("wp") / "tokenizer.json"
    tok.save(str(path))
    return str(path)


@pytest.mark.parametrize("workers", [1, 2])
def test_chunk_path_tokens_equal_the_tokenizers_own_encode(sample_dir, tmp_path, wordpiece_json, workers):
    """Token shards written through the distinct-chunk path, read back by Megatron's reader, hold
    the package's own per-document ids of the kept documents, each followed by [SEP]; the same
    bytes for 1 and 2 workers."""
    from tokenizers import Tokenizer

    IndexedDataset = megatron_reader()
    assert load_tokenizer(wordpiece_json).chunked is not None
    run_pipeline(cfg(sample_dir, tmp_path / "pq", STAGED))
    m = run_pipeline(cfg(sample_dir, tmp_path / "tk", STAGED, workers=workers, format="tokens",
                         shard_tokens="20K", tokenizer=wordpiece_json))
    own = Tokenizer.from_file(wordpiece_json)
    sep = own.token_to_id("[SEP]")
    want = [own.encode(t, add_special_tokens=False).ids + [sep]
            for t in pq.read_table(tmp_path / "pq" / "data").column("text").to_pylist()]
    got = read_tokens(IndexedDataset, tmp_path / "tk")
    assert len(got) == len(want) == m["docs_kept"] > 100
    assert all(g.tolist() == w for (_, g), w in zip(got, want))
    assert m["tokens_kept"] == sum(len(w) - 1 for w in want)  # the scan's counts, same path
    if workers == 2:
        run_pipeline(cfg(sample_dir, tmp_path / "tk1", STAGED, workers=1, format="tokens", shard_tokens="20K",
                         tokenizer=wordpiece_json))
        assert file_digests(tmp_path / "tk" / "data") == file_digests(tmp_path / "tk1" / "data")


def test_int32_shards_for_a_large_vocabulary(tmp_path):
    IndexedDataset = megatron_reader()
    assert token_dtype(65_499) == "uint16" and token_dtype(65_500) == "int32" and token_dtype(None) == "int32"
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 40, 25)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ids = rng.integers(0, 200_000, int(offsets[-1])).astype(np.uint32)
    w = BoundedTokenWriter(str(tmp_path), "int32", 100, prefix="part-00000-")
    w.write(ids, offsets[:8])
    w.write(ids[offsets[7]:], offsets[7:] - offsets[7])
    files = w.close()
    got = []
    for f in files[::2]:
        ds = IndexedDataset(f["path"][:-4])
        assert ds.index.dtype == np.int32
        got += [np.array(ds[i]) for i in range(len(ds))]
        del ds
    assert [len(g) for g in got] == lengths.tolist()
    assert np.array_equal(np.concatenate(got), ids.astype(np.int32))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # megatron-core converts the tensor with numpy.array
@pytest.mark.parametrize("dtype,vocab", [("uint16", 800), ("int32", 100_000)])
def test_parts_equal_megatrons_own_builder_byte_for_byte(tmp_path, dtype, vocab):
    """The same documents through Megatron's IndexedDatasetBuilder give the same .bin and .idx bytes."""
    megatron_reader()
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 60, 40)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ids = rng.integers(0, vocab, int(offsets[-1])).astype(np.uint32)
    w = BoundedTokenWriter(str(tmp_path), dtype, 10**6, prefix="ours-")
    w.write(ids, offsets)
    w.close()
    builder = IndexedDatasetBuilder(str(tmp_path / "ref.bin"), dtype=np.dtype(dtype).type)
    for i in range(len(lengths)):
        builder.add_document(torch.from_numpy(ids[offsets[i]:offsets[i + 1]].astype(np.int64)), [int(lengths[i])])
    builder.finalize(str(tmp_path / "ref.idx"))
    for suffix in (".bin", ".idx"):
        assert (tmp_path / f"ours-00000{suffix}").read_bytes() == (tmp_path / f"ref{suffix}").read_bytes()


def test_result_reads_jsonl_and_refuses_tokens(sample_dir, tmp_path, tokenizer_json):
    from shardsift import Pipeline
    from shardsift.errors import UsageError

    want = Pipeline(FUSED, workers=1).run(str(sample_dir / "pool"), str(tmp_path / "pq")).to_table()
    got = Pipeline(FUSED, workers=1, output={"format": "jsonl"}).run(str(sample_dir / "pool"),
                                                                      str(tmp_path / "js")).to_table()
    assert got.to_pylist() == want.to_pylist()
    res = Pipeline(FUSED, workers=1, tokenizer=tokenizer_json, output={"format": "tokens"}).run(
        str(sample_dir / "pool"), str(tmp_path / "tk"))
    with pytest.raises(UsageError, match="token shards"):
        res.to_table()


def test_empty_selection(sample_dir, tmp_path, tokenizer_json):
    none = [{"length": {"min_words": 10**6}}]
    m = run_pipeline(cfg(sample_dir, tmp_path / "tk", none, format="tokens", tokenizer=tokenizer_json))
    assert m["docs_kept"] == 0 and m["output"]["files"] == [] and os.listdir(tmp_path / "tk" / "data") == []
    m = run_pipeline(cfg(sample_dir, tmp_path / "js", none, format="jsonl"))
    assert [f["rows"] for f in m["output"]["files"]] == [0] and jsonl_rows(tmp_path / "js") == []
    verify_output(str(tmp_path / "js"))


@pytest.mark.parametrize("output,top,message", [
    ({"format": "tokens"}, {}, "output.format: tokens needs token ids: set `tokenizer:`"),
    ({"format": "jsonl", "compression": "snappy"}, {}, "output.compression: 'snappy'"),
    ({"format": "parquet", "shuffle": True}, {}, "output.shuffle: applies to format: tokens only"),
    ({"format": "csv"}, {}, "output.format"),
    ({"format": "tokens", "shard_tokens": 0}, {}, "output.shard_tokens"),
])
def test_bad_settings_fail_in_one_line_before_writing(sample_dir, tmp_path, output, top, message):
    out = tmp_path / "out"
    with pytest.raises(ConfigError) as err:
        run_pipeline({**cfg(sample_dir, out, FUSED, **output), **top})
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not out.exists()


def test_tokenizer_without_eos_is_refused(sample_dir, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    with pytest.raises(ConfigError, match="has no end-of-document token") as err:
        run_pipeline(cfg(sample_dir, tmp_path / "out", FUSED, format="tokens", tokenizer=str(path)))
    assert "\n" not in str(err.value) and not (tmp_path / "out").exists()


def test_jsonl_refuses_a_binary_column_before_any_work(tmp_path):
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["one two", "three"], "blob": [b"\x00", b"\x01"]}),
                   tmp_path / "in.parquet")
    from shardsift.engine.check import check_config
    from shardsift.engine.config import parse_config

    out = tmp_path / "out"
    c = {"input": str(tmp_path / "in.parquet"), "output": {"path": str(out), "format": "jsonl"}, "workers": 1,
         "stages": []}
    _, problems = check_config(parse_config(c))  # `shardsift check`: one line per problem
    assert len(problems) == 1 and "in.parquet: output.format: jsonl: column 'blob' is binary" in problems[0]
    with pytest.raises(ConfigError, match="column 'blob' is binary") as err:
        run_pipeline(c)
    assert "\n" not in str(err.value) and not out.exists()


@pytest.mark.parametrize("fmt", ["jsonl", "tokens"])
def test_killed_during_the_write_resumes_to_the_same_bytes(sample_dir, tmp_path, tokenizer_json, fmt):
    """A run killed after one shard's parts were written resumes (that shard's task skipped) to the
    bytes of a run never interrupted."""
    import yaml
    from conftest import run_cli

    extra = {"tokenizer": tokenizer_json, "shuffle": True} if fmt == "tokens" else {}

    def config(out):
        path = tmp_path / f"{out}.yaml"
        path.write_text(yaml.safe_dump(cfg(sample_dir, tmp_path / out, STAGED, format=fmt, **extra)))
        return path

    run_cli("select", config("ref"))
    killed = run_cli("select", config("out"), env={"SHARDSIFT_KILL_AT": "write:1"}, check=False)
    assert killed.returncode != 0 and not (tmp_path / "out" / ".shardsift" / "manifest.json").exists()
    run_cli("select", config("out"))
    assert file_digests(tmp_path / "out" / "data") == file_digests(tmp_path / "ref" / "data")


@pytest.mark.parametrize("shuffle", [False, True])
def test_parts_do_not_depend_on_how_rows_arrive(sample_dir, tmp_path, tokenizer_json, shuffle):
    """One call or many small ones: the same token and JSON Lines files."""
    from shardsift.engine.output_formats import OutputFormat
    from shardsift.io.json_lines import BoundedJsonlWriter

    table = pq.read_table(sample_dir / "pool").slice(0, 300)
    fmt = OutputFormat("tokens", "zstd", 0, 0, "text", load_tokenizer(tokenizer_json), 9_000, shuffle, 7)
    for name, step in (("one", table.num_rows), ("many", 37)):
        (tmp_path / name).mkdir()
        writers = [fmt.writer(str(tmp_path / name), table.schema, 3),
                   BoundedJsonlWriter(str(tmp_path / name), 20_000, "zstd", prefix="part-00003-")]
        for w in writers:
            for i in range(0, table.num_rows, step):
                w.write(table.slice(i, step))
            assert len(w.close()) > 2
    assert file_digests(tmp_path / "one") == file_digests(tmp_path / "many")


def test_jsonl_and_tokens_on_object_storage(sample_dir, tmp_path, tokenizer_json):
    """Parts written by worker processes straight to an S3 server hold the local run's bytes."""
    pytest.importorskip("s3fs", reason="object-store tests need s3fs (the ray and dev extras)")
    pytest.importorskip("moto.server", reason="object-store tests need moto[server] (the dev extra)")
    from s3_server import moto_s3, s3_digests, upload_dir

    with moto_s3("shardsift-formats") as (opts, fs):
        upload_dir(fs, str(sample_dir / "pool"), "shardsift-formats/pool")
        for fmt, extra in (("jsonl", {}), ("tokens", {"tokenizer": tokenizer_json, "shard_tokens": 20_000})):
            local = cfg(sample_dir, tmp_path / fmt, STAGED, format=fmt, **extra)
            run_pipeline(local)
            remote = {**local, "workers": 2, "input": {"path": "s3://shardsift-formats/pool", "storage_options": opts},
                      "output": {**local["output"], "path": f"s3://shardsift-formats/{fmt}", "storage_options": opts}}
            run_pipeline(remote)
            want = file_digests(tmp_path / fmt / "data")
            assert len(want) >= 3 and s3_digests(fs, f"shardsift-formats/{fmt}/data") == want
