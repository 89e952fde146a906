"""`shardsift losses`: BPB loss matrix from local causal LMs, tested on tiny random models built here."""
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

torch = pytest.importorskip("torch", reason="torch not installed (the 'lm' extra)")
transformers = pytest.importorskip("transformers", reason="transformers not installed (the 'lm' extra)")
pytest.importorskip("tokenizers", reason="tokenizers not installed (comes with transformers)")

from shardsift.lm_losses import main

TEXTS = [
    "The cat sat on the mat.\nThen it slept.",
    "Stars and planets orbit; galaxies spin slowly.",
    "A dog barked at the moon all night long, and the neighbours complained about it.",
    "Ünïcödé text: café, naïve, 東京.",
    "short",
    "The court ruled on the contract dispute between the two parties after a long appeal.",
]
DOMAINS = ["pets", "space", "pets", "misc", "misc", "law"]


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TEXTS * 5, trainer)
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                                pad_token="<pad>", unk_token="<unk>")


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """Three randomly initialised GPT-2s of one layer, saved as local model directories."""
    root = tmp_path_factory.mktemp("lms")
    tok = _tokenizer()
    dirs = []
    for i in range(3):
        torch.manual_seed(i)
        cfg = transformers.GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=16, n_layer=1, n_head=2,
                                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
        model = transformers.GPT2LMHeadModel(cfg)
        d = root / f"tiny-{i}"
        model.save_pretrained(d)
        tok.save_pretrained(d)
        dirs.append(str(d))
    return dirs


@pytest.fixture()
def corpus(tmp_path):
    p = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"id": [f"d{i}" for i in range(len(TEXTS))], "text": TEXTS, "domain": DOMAINS}), p)
    return str(p)


def _reference_bpb(model_dir, text, max_length):
    """One document, no batching or padding: sum of token NLL in bits / bytes of the evaluated text."""
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir).eval()
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc["input_ids"][:max_length - 1]
    end = enc["offset_mapping"][len(ids) - 1][1]
    x = torch.tensor([[tok.bos_token_id] + ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=x).logits[0, :-1].double(), dim=-1)
    nll = -logp[torch.arange(len(ids)), x[0, 1:]].sum().item()
    return nll / math.log(2) / len(text[:end].encode("utf-8")), len(ids)


def test_per_document_bpb_matches_unbatched_forward(tiny_models, corpus, tmp_path):
    out = tmp_path / "losses.parquet"
    rc = main(["--models", *tiny_models, "--input", corpus, "--output", str(out), "--batch-size", "4",
               "--max-length", "64", "--quiet"])
    assert rc == 0
    tbl = pq.read_table(out)
    assert tbl.column_names == ["id", "tiny-0", "tiny-1", "tiny-2"]
    ids = tbl.column("id").to_pylist()
    assert ids == sorted(f"d{i}" for i in range(len(TEXTS)))
    for m, d in zip(["tiny-0", "tiny-2"], [tiny_models[0], tiny_models[2]]):
        col = dict(zip(ids, tbl.column(m).to_pylist()))
        for i in (0, 3, 4):
            want, _ = _reference_bpb(d, TEXTS[i], 64)
            assert col[f"d{i}"] == pytest.approx(want, rel=1e-4), (m, i)
    # random models are near uniform over the vocabulary: BPB about log2(V) * tokens / bytes, positive
    assert all(v > 0 for c in tbl.column_names[1:] for v in tbl.column(c).to_pylist())


def test_truncation_counts_only_the_evaluated_bytes(tiny_models, corpus, tmp_path):
    out, per_doc = tmp_path / "l.csv", tmp_path / "per_doc.parquet"
    rc = main(["--models", f"a={tiny_models[1]}", "--input", corpus, "--output", str(out), "--max-length", "8",
               "--per-doc", str(per_doc), "--quiet"])
    assert rc == 0
    doc = pq.read_table(per_doc).to_pydict()
    i = 2  # a long document: 7 predicted tokens after the start token
    assert doc["a/tokens"][i] == 7
    want, n = _reference_bpb(tiny_models[1], TEXTS[i], 8)
    assert n == 7
    assert doc["a/nll_bits"][i] / doc["a/bytes"][i] == pytest.approx(want, rel=1e-4)
    assert doc["a/bytes"][i] < len(TEXTS[i].encode())


def test_domain_rows_are_token_weighted_means(tiny_models, corpus, tmp_path):
    out, per_doc = tmp_path / "dom.parquet", tmp_path / "pd.parquet"
    assert main(["--models", *tiny_models, "--input", corpus, "--output", str(out), "--key", "domain",
                 "--per-doc", str(per_doc), "--quiet"]) == 0
    tbl = pq.read_table(out).to_pydict()
    assert tbl["domain"] == ["law", "misc", "pets", "space"]
    doc = pq.read_table(per_doc).to_pydict()
    sel = [j for j, dmn in enumerate(doc["domain"]) if dmn == "pets"]
    bpb = np.array([doc["tiny-0/nll_bits"][j] / doc["tiny-0/bytes"][j] for j in sel])
    t = np.array([doc["tiny-0/tokens"][j] for j in sel], dtype=float)
    assert tbl["tiny-0"][2] == pytest.approx(float((bpb * t).sum() / t.sum()), rel=1e-9)

    # and the matrix is a valid perplexity_correlation input
    from shardsift.selectors.perplexity import read_losses

    keys, models, X = read_losses(str(out), "domain")
    assert list(keys) == ["law", "misc", "pets", "space"] and models == ["tiny-0", "tiny-1", "tiny-2"]
    assert X.shape == (3, 4) and np.isfinite(X).all()


def test_bad_arguments_exit_with_one_line(tiny_models, corpus, tmp_path, capsys):
    assert main(["--models", str(tmp_path / "nope"), "--input", corpus, "--output", str(tmp_path / "o.parquet")]) == 2
    assert "not a directory" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["--models", str(empty), "--input", corpus, "--output", str(tmp_path / "o.parquet"), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert "cannot load a causal LM" in err and "\n" not in err
    assert main(["--models", tiny_models[0], "--input", corpus, "--output", str(tmp_path / "o.json")]) == 2
    assert main(["--models", tiny_models[0], "--input", corpus, "--output", str(tmp_path / "o.csv"),
                 "--key", "nocol"]) == 1
    assert "no column 'nocol'" in capsys.readouterr().err
