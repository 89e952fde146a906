"""`shardsift eval`: the vectorised Kneser-Ney bigram model against a plain-Python reference, the
check's ranking on generated data, and its one-line errors."""
import math
import os
from collections import Counter, defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import run_cli

from shardsift.evaluate import (
    DISCOUNT,
    BigramKN,
    Vocabulary,
    bigrams,
    count_vocabulary,
    first_words,
    heldout_texts,
    split_words,
)

TRAIN = ["the cat sat on the mat", "  The dog sat\ton the log ", "a cat and a dog", "", "the end of the cat"]
TEST = ["the cat sat on the log", "a bird sat on the mat", "dog", "zebra zebra the"]


# -- the reference ---------------------------------------------------------------------------------

def reference_perplexity(train, test, vocab, d=DISCOUNT):
    """Interpolated Kneser-Ney bigram, word by word with dictionaries (the module docstring's formula)."""
    def sentence(text):
        return ["<s>"] + [w if w in vocab else "<unk>" for w in text.lower().split()] + ["</s>"]

    bigram = Counter()
    for text in train:
        s = sentence(text)
        bigram.update(zip(s, s[1:]))
    context_count, context_types, before = Counter(), Counter(), defaultdict(set)
    for (v, w), c in bigram.items():
        context_count[v] += c
        context_types[v] += 1
        before[w].add(v)
    predictable = sorted(vocab) + ["<unk>", "</s>"]
    types = len(bigram)
    with_cont = sum(1 for w in predictable if before[w])

    def p_cont(w):
        return (max(len(before[w]) - d, 0) + d * with_cont / len(predictable)) / types

    def prob(v, w):
        if context_count[v] == 0:
            return p_cont(w)
        return (max(bigram[(v, w)] - d, 0) + d * context_types[v] * p_cont(w)) / context_count[v]

    logs = []
    for text in test:
        s = sentence(text)
        logs.extend(math.log(prob(v, w)) for v, w in zip(s, s[1:]))
    # each P(. | v) sums to one over the predictable words
    for v in ["<s>", "the", "zebra", "<unk>"]:
        assert abs(sum(prob(v, w) for w in predictable) - 1) < 1e-12
    return math.exp(-sum(logs) / len(logs))


def model_perplexity(train, test, vocab):
    voc = Vocabulary(pa.array(sorted(vocab), pa.string()))
    words, doc = split_words(pa.array(train, pa.string()))
    model = BigramKN(voc.size).fit(*bigrams(voc.ids(words), doc, len(train), voc))
    t_words, t_doc = split_words(pa.array(test, pa.string()))
    return model, voc, model.perplexity(*bigrams(voc.ids(t_words), t_doc, len(test), voc))


@pytest.mark.parametrize("vocab", [
    {"the", "cat", "sat", "on", "mat", "dog", "log", "a", "and", "end", "of"},  # every training word
    {"the", "cat", "sat", "on", "dog", "bird"},  # OOV words in both, a vocabulary word never trained on
])
def test_perplexity_matches_the_reference(vocab):
    _, _, ours = model_perplexity(TRAIN, TEST, vocab)
    ref = reference_perplexity(TRAIN, TEST, vocab)
    assert ours == pytest.approx(ref, rel=1e-9, abs=0)


def test_probabilities_sum_to_one_in_every_context():
    model, voc, _ = model_perplexity(TRAIN, TEST, {"the", "cat", "sat", "on", "dog", "bird"})
    nxt = np.arange(voc.size - 1)  # every id but <s>
    for v in range(voc.size):
        total = np.exp(model.log_prob(np.full(len(nxt), v), nxt)).sum()
        assert total == pytest.approx(1.0, abs=1e-12)


def test_bigrams_mark_document_boundaries():
    voc = Vocabulary(pa.array(["x", "y"], pa.string()))
    words, doc = split_words(pa.array(["x y", "", " Y  z "], pa.string()))
    prev, nxt = bigrams(voc.ids(words), doc, 3, voc)
    b, e, u = voc.bos, voc.eos, voc.unk
    assert list(zip(prev, nxt)) == [(b, 0), (0, 1), (1, e), (b, e), (b, 1), (1, u), (u, e)]


def test_first_words_cuts_the_last_document():
    voc = Vocabulary(pa.array(["a"], pa.string()))
    batches = [pa.array(["a a a", "a a"], pa.string()), pa.array(["a a a a", "a"], pa.string())]
    ids, doc, n_docs = first_words(iter(batches), 7, voc)
    assert len(ids) == 7 and n_docs == 3 and list(doc) == [0, 0, 0, 1, 1, 2, 2]
    ids, doc, n_docs = first_words(iter(batches), 100, voc)
    assert len(ids) == 10 and n_docs == 4


def test_vocabulary_takes_the_most_frequent_words_across_batches():
    batches = [pa.array(["b a b c", "d"], pa.string()), pa.array(["C c A b"], pa.string())]
    voc = count_vocabulary(iter(batches), 2)
    assert voc.words.to_pylist() == ["b", "c"]  # b 3, c 3, a 2, d 1; ties by the word


def test_heldout_sample_does_not_depend_on_the_file_split(tmp_path):
    ids = [f"t{i}" for i in range(200)]
    texts = [f"doc {i}" for i in range(200)]
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    pq.write_table(pa.table({"id": ids, "text": texts}), one / "t.parquet")
    pq.write_table(pa.table({"id": ids[120:], "text": texts[120:]}), two / "a.parquet")
    pq.write_table(pa.table({"id": ids[:120], "text": texts[:120]}), two / "b.parquet")
    a = heldout_texts(str(one), "text", 30, seed=1).to_pylist()
    assert len(a) == 30 == len(set(a))
    assert sorted(a) == sorted(heldout_texts(str(two), "text", 30, seed=1).to_pylist())
    assert sorted(a) != sorted(heldout_texts(str(one), "text", 30, seed=2).to_pylist())


# -- the command on generated data -----------------------------------------------------------------

def make_docs(rng, words, n, length=60):
    ranks = np.arange(1, len(words) + 1)
    p = 1 / ranks / (1 / ranks).sum()
    return [" ".join(rng.choice(words, size=length, p=p)) for _ in range(n)]


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """A pool mixing a target-like domain with another, a selection of each kind, and the target."""
    root = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(0)
    shared = [f"w{i}" for i in range(40)]
    near = shared + [f"n{i}" for i in range(200)]
    far = shared[::-1] + [f"f{i}" for i in range(200)]
    near_docs, far_docs = make_docs(rng, near, 300), make_docs(rng, far, 300)
    for name, docs in (("pool", near_docs + far_docs), ("near", near_docs)):
        (root / name).mkdir()
        order = rng.permutation(len(docs))
        pq.write_table(pa.table({"id": [f"{name}{i}" for i in range(len(docs))],
                                 "text": [docs[i] for i in order]}), root / name / "part-0.parquet")
    pq.write_table(pa.table({"id": [f"t{i}" for i in range(100)], "text": make_docs(rng, near, 100)}),
                   root / "target.parquet")
    pq.write_table(pa.table({"id": pa.array([], pa.string()), "text": pa.array([], pa.string())}),
                   root / "empty.parquet")
    for out, inp, keep in (("random", "pool", 0.5), ("own", "near", 1.0)):
        cfg = root / f"{out}.yaml"
        cfg.write_text(yaml.safe_dump({"input": {"path": str(root / inp)}, "output": {"path": str(root / out)},
                                       "stages": [{"random": {"keep": keep}}]}))
        run_cli("select", cfg, "--quiet")
    return root


def test_a_selection_from_the_target_distribution_has_lower_perplexity(corpora):
    import json

    proc = run_cli("eval", corpora / "random", corpora / "own", "--target", corpora / "target.parquet",
                   "--vocab-from", corpora / "pool", "--words", 9000, "--heldout", 50, "--json")
    res = json.loads(proc.stdout)
    rand, own = res["outputs"]
    assert rand["words"] == own["words"] == 9000 and own["docs"] == 150
    assert res["heldout_docs"] == 50 and res["vocab_size"] == 440
    assert own["perplexity"] < 0.8 * rand["perplexity"]
    table = run_cli("eval", corpora / "random", corpora / "own", "--target", corpora / "target.parquet",
                    "--words", 9000, "--heldout", 50).stdout
    assert "perplexity" in table and str(corpora / "own") in table
    assert f"{own['perplexity']:.2f}" in table  # the default vocabulary is the first output's pool: the same


@pytest.mark.parametrize("case, code, message", [
    ("not_output", 1, "not a finished shardsift output"),
    ("missing_target", 1, "nowhere.parquet not found"),
    ("empty_target", 1, "the target has no documents"),
    ("zero_words", 2, "--words: expected a positive number"),
    ("no_target", 2, "--target"),
])
def test_bad_input_is_one_line(corpora, case, code, message):
    out, target, extra = corpora / "own", corpora / "target.parquet", []
    if case == "not_output":
        out = corpora / "pool"
    elif case == "missing_target":
        target = corpora / "nowhere.parquet"
    elif case == "empty_target":
        target = corpora / "empty.parquet"
    elif case == "zero_words":
        extra = ["--words", "0"]
    args = [out, *extra] + ([] if case == "no_target" else ["--target", target])
    proc = run_cli("eval", *args, check=False)
    assert proc.returncode == code
    assert message in proc.stderr
    if code == 1:
        assert proc.stderr.count("\n") == 1 and os.fspath(proc.stderr).startswith("shardsift: error: ")


def test_vocabulary_from_an_output_is_its_input_pool(corpora):
    import json

    res = json.loads(run_cli("eval", corpora / "random", "--target", corpora / "target.parquet", "--vocab-from",
                             corpora / "own", "--words", 500, "--heldout", 10, "--json").stdout)
    assert res["vocab_size"] == 240 and res["vocabulary"] == f"the input pool of {corpora / 'own'}"
    assert res["outputs"][0]["train_oov_rate"] > 0.05  # the far domain's own words are <unk> now


def test_saved_table_is_shown_by_each_outputs_report(corpora, tmp_path):
    """`eval --save` writes the table into every evaluated output; the report of each shows it with
    its own row marked; a broken table costs its section only, never the page."""
    import json

    outs = [corpora / "random", corpora / "own"]
    proc = run_cli("eval", *outs, "--target", corpora / "target.parquet", "--vocab-from", corpora / "pool",
                   "--words", 3000, "--heldout", 20, "--json", "--save")
    res = json.loads(proc.stdout)
    assert proc.stderr.count("wrote ") == 2
    for i, out in enumerate(outs):
        saved = json.loads((out / ".shardsift" / "eval.json").read_text())
        assert saved == {**res, "this_output": i}
        page = tmp_path / f"{out.name}.html"
        run_cli("report", out, "--path", page)
        html = page.read_text()
        assert "Proxy LM check" in html and f"{out} (this output)" in html and html.count("(this output)") == 1
        for row in res["outputs"]:
            assert f"{row['perplexity']:.2f}" in html
    (outs[0] / ".shardsift" / "eval.json").write_text("{not json")
    run_cli("report", outs[0], "--path", tmp_path / "broken.html")
    html = (tmp_path / "broken.html").read_text()
    assert "this section could not be drawn" in html and "not a readable eval table" in html
    assert "Funnel" in html
    (outs[0] / ".shardsift" / "eval.json").unlink()
    (outs[1] / ".shardsift" / "eval.json").unlink()
