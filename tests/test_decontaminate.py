"""decontaminate: planted copies of evaluation texts are removed, unrelated text is not; the
n-gram set's memory; the explain line; bad input as one line."""
import glob
import json
import os
import pickle
import re
import tracemalloc

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import as_docs, corpora_path

from shardsift.api import Docs
from shardsift.engine.contexts import read_corpus
from shardsift.errors import ConfigError, DataError
from shardsift.output import explain
from shardsift.selectors import resolve
from shardsift.selectors.decontaminate.selector import Decontaminate
from shardsift.selectors.decontaminate.words import Words

VOCAB = np.array([f"{a}{b}{c}" for a in "bcdfghklmnprstvz" for b in "aeiou" for c in "bdgklmnprstxz"])


def words(rng, n):
    return list(VOCAB[rng.integers(0, len(VOCAB), n)])



class Fit:
    """What fit needs of the engine's FitContext: reading another corpus, as the engine does."""

    def read_input(self, spec, what):
        return read_corpus(spec, what)


def fitted(**params) -> Decontaminate:
    sel = Decontaminate(**params)
    sel.setup()
    sel.metrics_ = sel.fit(Fit())
    return pickle.loads(pickle.dumps(sel))   # as a worker gets it


def reference_words(text):
    """The normalization in plain Python: lowercase, words are runs of letters and digits."""
    return re.findall(r"[^\W_]+", text.lower())


# -- the normalization and the lookup against a plain-Python reference -----------------------------
def test_words_are_lowercase_runs_of_letters_and_digits():
    texts = ["The U.S.-based café’s NAÏVE test_case, 3.14!", "", "  ... —  ", "Ελληνικά ΚΕΙΜΕΝΑ x2"]
    w = Words(pa.array(texts))
    got = [[bytes(w.data[a:b]).decode().lower() for a, b in zip(w.starts[lo:hi], w.ends[lo:hi])]
           for lo, hi in zip(w.offsets[:-1], w.offsets[1:])]
    assert got == [reference_words(t) for t in texts]
    assert got[0] == ["the", "u", "s", "based", "café", "s", "naïve", "test", "case", "3", "14"]


def test_matching_phrase_is_the_documents_normalized_words_cut_at_a_character():
    from shardsift.selectors.decontaminate.words import phrases

    w = Words(pa.array(["Ab, CD! éé-ÉÉ x", "skip", "Ωmega ΩMEGA"]))
    got = phrases(w, np.array([0, -1, 6]), np.array([5, 0, 2]), 200)
    assert [g.decode() for g in got] == ["ab cd éé éé x", "", "ωmega ωmega"]
    cut = phrases(w, np.array([0, -1, 6]), np.array([5, 0, 2]), 8)
    assert [g.decode() for g in cut] == ["ab cd…", "", "ωmeg…"]
    cut = phrases(w, np.array([2]), np.array([2]), 4)   # "éé éé" in 4 bytes: no whole character before the "…"
    assert cut[0].decode() == "…"


def test_counts_and_first_match_equal_a_python_reference(tmp_path):
    rng = np.random.default_rng(3)
    evals = [" ".join(words(rng, int(rng.integers(20, 60)))) for _ in range(40)]
    pq.write_table(pa.table({"text": evals}), tmp_path / "eval.parquet")
    n = 6
    grams = {}
    for t in evals:
        w = reference_words(t)
        for i in range(len(w) - n + 1):
            grams.setdefault(tuple(w[i:i + n]), 0)
    docs = []
    for _ in range(300):
        parts = [" ".join(words(rng, int(rng.integers(0, 30))))]
        for _ in range(int(rng.integers(0, 3))):
            src = reference_words(evals[int(rng.integers(len(evals)))])
            k = int(rng.integers(0, len(src) - 8))
            parts.append(" ".join(src[k:k + int(rng.integers(3, 9))]).upper() + ".")
            parts.append(" ".join(words(rng, int(rng.integers(0, 5)))))
        docs.append(", ".join(parts))
    sel = fitted(benchmarks=[{"path": str(tmp_path / "eval.parquet"), "name": "ev"}], n=n)
    out = sel.score(as_docs(docs))
    for d, text in enumerate(docs):
        w = reference_words(text)
        hits = [i for i in range(len(w) - n + 1) if tuple(w[i:i + n]) in grams]
        assert out["matches"][d] == len(hits), text
        assert out["match_ngram"][d].decode() == (" ".join(w[hits[0]:hits[0] + n]) if hits else "")
        assert out["benchmark"][d] == (0 if hits else -1)
    assert 20 < (out["matches"] > 0).sum() < 290    # both kinds are there


# -- planted copies, end to end ------------------------------------------------------------------
def _planted(tmp_path):
    """A pool of generated documents with planted copies of two benchmarks' texts, and the ids
    that must go (with their benchmark) and those that must stay."""
    rng = np.random.default_rng(11)
    qa = [" ".join(words(rng, int(rng.integers(30, 80)))) + "?" for _ in range(50)]
    mc = [" ".join(words(rng, int(rng.integers(15, 40)))) for _ in range(50)]
    short = "Which " + " ".join(words(rng, 8)) + "?"             # 9 words, fewer than n = 13
    pq.write_table(pa.table({"question": qa + [short]}), tmp_path / "qa.parquet")
    with open(tmp_path / "mc.jsonl", "w") as fh:
        for t in mc:
            fh.write(json.dumps({"text": t}) + "\n")
    texts, must_go, must_stay = [], {}, set()

    def add(text, bench=None):
        doc_id = f"d{len(texts):04d}"
        texts.append(text)
        (must_go.__setitem__(doc_id, bench) if bench else must_stay.add(doc_id))

    filler = lambda k: " ".join(words(rng, k))  # noqa: E731
    for _ in range(400):
        add(filler(int(rng.integers(50, 300))))
    for i in range(10):
        add(qa[i], "qa")                                                    # whole copy
        w = mc[i].split()
        k = int(rng.integers(0, len(w) - 13 + 1))
        add(f"{filler(100)} {' '.join(w[k:k + 13])} {filler(100)}", "mc")   # a 13-word window
        w = qa[20 + i].split()
        changed = ", ".join(x.upper() if j % 2 else x.capitalize() + "!" for j, x in enumerate(w[5:25]))
        add(f"{filler(40)}\n{changed}... {filler(40)}", "qa")               # case and punctuation changed
        w = mc[20 + i].split()
        k = int(rng.integers(0, len(w) - 12 + 1))
        add(f"{filler(100)} {' '.join(w[k:k + 12])} {filler(100)}")        # 12 words: not an n-gram
    add(f"{filler(60)} — which {short.split(' ', 1)[1].upper()} {filler(60)}", "qa")  # the short text
    add(f"{filler(60)} which {' '.join(short.split()[1:-1][:7])} {filler(60)}")       # 8 of its 9 words
    order = rng.permutation(len(texts))
    ids = [f"d{i:04d}" for i in range(len(texts))]
    table = pa.table({"id": [ids[i] for i in order], "text": [texts[i] for i in order]})
    os.makedirs(tmp_path / "pool")
    for j, part in enumerate(np.array_split(np.arange(len(texts)), 3)):
        pq.write_table(table.take(pa.array(part)), tmp_path / "pool" / f"part-{j}.parquet")
    return must_go, must_stay


def test_planted_copies_are_all_removed_and_nothing_else(tmp_path):
    from shardsift.engine.runner import run_pipeline
    from shardsift.output import read_decisions, read_parts, scores_dir

    must_go, must_stay = _planted(tmp_path)
    stage = {"decontaminate": {"benchmarks": [
        {"path": str(tmp_path / "qa.parquet"), "name": "qa", "text_column": "question"},
        {"path": str(tmp_path / "mc.jsonl"), "name": "mc"}]}}
    out = tmp_path / "out"
    m = run_pipeline({"input": str(tmp_path / "pool"), "output": str(out), "workers": 2, "stages": [stage]},
                     progress=False)
    dec = read_decisions(str(out)).to_pylist()
    dropped = {r["id"]: r["reason"] for r in dec if not r["kept"]}
    assert dropped == {i: f"decontaminate:{b}" for i, b in must_go.items()}
    assert {r["id"] for r in dec if r["kept"]} == must_stay
    st = m["stages"][1]
    assert st["dropped"] == {"decontaminate:qa": 21, "decontaminate:mc": 10}
    assert st["metrics"]["short_lengths"] == [9] and st["metrics"]["benchmarks"]["qa"]["short_texts"] == 1
    sc = {r["id"]: r for r in read_parts(scores_dir(str(out))).to_pylist()}
    for i in must_stay:
        assert sc[i]["match_ngram"] is None and sc[i]["benchmark"] is None and sc[i]["matches"] == 0
    for i, b in must_go.items():
        assert sc[i]["benchmark"] == b and sc[i]["matches"] >= 1 and sc[i]["score"] == sc[i]["matches"]
        assert len(sc[i]["match_ngram"].split()) in (9, 13)
    one = next(i for i, b in must_go.items() if b == "mc")
    lines = explain(str(out), one)
    assert lines[0] == f"{one}: dropped by stage 1 'decontaminate' (reason: decontaminate:mc)"
    assert f"match_ngram {sc[one]['match_ngram']}" in lines[1] and "benchmark mc" in lines[1]
    kept = next(iter(must_stay))
    assert "match_ngram" not in " ".join(explain(str(out), kept))


# -- memory of the n-gram set --------------------------------------------------------------------
def test_a_million_ngram_set_is_ten_bytes_each_and_the_fit_memory_follows_distinct_ngrams(tmp_path):
    rng = np.random.default_rng(5)
    texts = [" ".join(words(rng, 1112)) for _ in range(1000)]            # 1,100,000 13-grams
    pq.write_table(pa.table({"text": texts}), tmp_path / "once.parquet")
    pq.write_table(pa.table({"text": texts * 4}), tmp_path / "four.parquet")
    fitted(benchmarks=[{"path": str(tmp_path / "once.parquet")}], n=13)  # compile and load the kernels first
    peaks = {}
    for name in ("once", "four"):
        sel = Decontaminate(benchmarks=[{"path": str(tmp_path / f"{name}.parquet")}])
        sel.setup()
        tracemalloc.start()
        metrics = sel.fit(Fit())
        peaks[name] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        n = metrics["ngrams"]
        assert n >= 1_099_000 and metrics["set_bytes"] == 10 * n
        assert len(pickle.dumps(sel)) < 10 * n + 4096                   # what each worker loads
    # four copies of the text: four times the n-grams read, the same distinct ones, bounded peak
    assert peaks["four"] < 32 * n + 24e6, peaks
    assert peaks["four"] - peaks["once"] < 24e6, peaks


# -- bad input -----------------------------------------------------------------------------------
def test_bad_input_is_one_line_and_writes_no_output(tmp_path):
    from shardsift.engine.runner import run_pipeline

    os.makedirs(tmp_path / "pool")
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["some words here", "more words"]}),
                   tmp_path / "pool" / "p.parquet")
    pq.write_table(pa.table({"question": ["what is this text about today then"]}), tmp_path / "nocol.parquet")
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), tmp_path / "empty.parquet")
    pq.write_table(pa.table({"text": ["too short"]}), tmp_path / "short.parquet")
    pq.write_table(pa.table({"text": ["a benchmark text of more than eight words in all"]}), tmp_path / "ok.parquet")
    ok = {"path": str(tmp_path / "ok.parquet"), "name": "ok"}
    cases = [
        ([{"path": str(tmp_path / "nocol.parquet"), "name": "nc"}], {}, DataError,
         r"benchmarks\[0\]: .*nocol\.parquet: no text column 'text' \(columns: question; "
         r"set stages\[0\]\.decontaminate\.benchmarks\[0\]\.text_column\)"),
        ([{"path": str(tmp_path / "empty.parquet"), "name": "empty_set"}], {}, DataError,
         r"benchmarks\[0\] \(empty_set\): .*empty\.parquet is empty"),
        ([{"path": str(tmp_path / "short.parquet"), "name": "tiny"}], {}, DataError,
         r"benchmarks\[0\] \(tiny\): none of the 1 texts .* has 8 words or more"),
        ([ok, {"path": str(tmp_path / "missing.parquet"), "name": "gone"}], {}, DataError,
         r"stages\[0\]\.decontaminate\.benchmarks\[1\]: .*missing\.parquet not found"),
        ([ok, {"path": str(tmp_path / "x.parquet"), "name": "ok"}], {}, ConfigError,
         r"benchmarks\[1\]\.name: benchmark name 'ok' is used twice"),
        ([ok], {"n": 0}, ConfigError, r"decontaminate\.n: 0 is out of range \(must be >= 1\)"),
        ([], {}, ConfigError, r"decontaminate\.benchmarks: give at least one"),
        ([{"name": "x"}], {}, ConfigError, r"benchmarks\[0\]\.path: a path is required"),
        ([{"path": "a", "colum": "q"}], {}, ConfigError, r"benchmarks\[0\]: unknown key 'colum'"),
    ]
    for k, (benchmarks, more, err, text) in enumerate(cases):
        out = tmp_path / f"out{k}"
        with pytest.raises(err, match=text) as info:
            run_pipeline({"input": str(tmp_path / "pool"), "output": str(out),
                          "stages": [{"decontaminate": {"benchmarks": benchmarks, **more}}]}, progress=False)
        assert "\n" not in str(info.value)
        assert not out.exists(), (text, os.listdir(out))  # found before any document is read


def test_shardsift_check_finds_each_bad_benchmark(tmp_path):
    from shardsift.engine.check import check_config
    from shardsift.engine.config import parse_config

    os.makedirs(tmp_path / "pool")
    pq.write_table(pa.table({"id": ["a"], "text": ["x y"]}), tmp_path / "pool" / "p.parquet")
    pq.write_table(pa.table({"question": ["q"]}), tmp_path / "nocol.parquet")
    cfg = parse_config({"input": str(tmp_path / "pool"), "output": str(tmp_path / "out"), "stages": [
        {"decontaminate": {"benchmarks": [{"path": str(tmp_path / "nocol.parquet"), "name": "nc"},
                                          {"path": str(tmp_path / "gone.parquet"), "name": "g"}]}}]})
    _, problems = check_config(cfg)
    assert problems == [
        f"stages[0].decontaminate.benchmarks[0]: {tmp_path / 'nocol.parquet'}: no text column 'text' "
        "(columns: question; set stages[0].decontaminate.benchmarks[0].text_column)",
        f"stages[0].decontaminate.benchmarks[1]: {tmp_path / 'gone.parquet'} not found"]
    assert not (tmp_path / "out").exists()


def test_registered_by_name():
    assert resolve("decontaminate") is Decontaminate
    assert Decontaminate.needs_fit and Decontaminate.scope == "document"


# -- the real pool -------------------------------------------------------------------------------
def _pool():
    files = sorted(glob.glob(os.path.join(corpora_path("pool"), "*.parquet")))
    return pa.concat_tables([pq.read_table(f, columns=["id", "text", "domain"]) for f in files])


def _score_pool(sel, pool):
    out = {"matches": [], "benchmark": [], "match_ngram": []}
    for batch in pool.to_batches(max_chunksize=4096):
        tbl = pa.Table.from_batches([batch])
        docs = Docs(tbl, text_column="text", id_column="id", row=np.arange(tbl.num_rows),
                    n_words=np.zeros(tbl.num_rows, np.int64), n_bytes=np.zeros(tbl.num_rows, np.int64),
                    shard="pool", shard_index=0)
        for k, v in sel.score(docs).items():
            out[k].append(v)
    return {k: np.concatenate(v) for k, v in out.items()}


@pytest.mark.slow
def test_no_false_positive_on_the_real_pool(tmp_path):
    """A generated benchmark of ~1M n-grams shares no 13-gram with the real pool: not one of its
    37,652 documents is dropped (a hash collision or a tokenizer fault would drop some)."""
    pool = _pool()
    rng = np.random.default_rng(9)
    pq.write_table(pa.table({"text": [" ".join(words(rng, 1012)) for _ in range(1000)]}), tmp_path / "gen.parquet")
    sel = fitted(benchmarks=[{"path": str(tmp_path / "gen.parquet"), "name": "gen"}])
    assert sel.metrics_["ngrams"] >= 1_000_000
    out = _score_pool(sel, pool)
    assert int((out["matches"] > 0).sum()) == 0


@pytest.mark.slow
def test_wikipedia_target_against_the_pool_every_match_is_real(tmp_path):
    """The Wikipedia target as the benchmark: the pool's encyclopedia articles are other articles,
    the rest other kinds of text, so a match is shared boilerplate or a quotation. Measured and
    printed; each match is checked to be a real shared 13-gram of the target's normalized text."""
    target = corpora_path("target", "wikipedia.parquet")
    pool = _pool()
    sel = fitted(benchmarks=[{"path": target, "name": "wikipedia"}])
    out = _score_pool(sel, pool)
    hit = out["matches"] > 0
    domain = pool.column("domain").to_numpy(zero_copy_only=False)
    by_domain = {d: int(c) for d, c in zip(*np.unique(domain[hit], return_counts=True))}
    print(f"\ndecontaminate, Wikipedia target ({sel.metrics_['ngrams']} 13-grams) vs the pool: "
          f"{int(hit.sum())} of {len(domain)} documents match; by domain {by_domain}")
    wiki = " " + " ".join(" ".join(reference_words(t)) for t in pq.read_table(target, columns=["text"])
                          .column("text").to_pylist() if t) + " "
    for phrase in out["match_ngram"][hit]:
        phrase = phrase.decode()
        assert len(phrase.split()) == 13 and f" {phrase} " in wiki, phrase
    texts = pool.column("text").to_pylist()
    for d in np.flatnonzero(hit):
        assert out["match_ngram"][d].decode() in " ".join(reference_words(texts[d]))
    assert hit.sum() <= 0.02 * len(domain)
