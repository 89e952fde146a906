"""The web-text rule filters: measured values, the first failing rule, parameters, the engine path."""
import numpy as np
import pyarrow as pa
import pytest
from conftest import as_docs

from shardsift.api import Scores
from shardsift.errors import ConfigError
from shardsift.selectors import resolve
from shardsift.selectors.quality_rules.c4_quality import C4Quality
from shardsift.selectors.quality_rules.fineweb_quality import FineWebQuality
from shardsift.selectors.quality_rules.gopher_quality import GopherQuality
from shardsift.selectors.quality_rules.gopher_repetition import GopherRepetition


def run(cls, texts, **params):
    flt = cls(**params)
    flt.setup()
    return flt.keep(as_docs(texts))


def test_gopher_quality_measures_each_rule_and_names_the_first_failure():
    text = "the cat and the dog\n- # item...\nwith one two"
    dec = run(GopherQuality, [text])
    m = {k: v[0] for k, v in dec.extra.items()}
    assert m["word_count"] == 9                    # '-' and '#' are symbols, not words
    assert m["mean_word_length"] == pytest.approx(32 / 9)
    assert m["hash_ratio"] == pytest.approx(1 / 11) and m["ellipsis_ratio"] == pytest.approx(1 / 11)
    assert m["bullet_lines"] == pytest.approx(1 / 3) and m["ellipsis_lines"] == pytest.approx(1 / 3)
    assert m["alpha_words"] == pytest.approx(9 / 11)
    assert m["stop_words"] == 3                    # the, and, with
    assert list(dec.keep) == [False] and dec.reason[0] == "gopher_quality:word_count"
    dec = run(GopherQuality, [text], min_doc_words=5)
    assert dec.reason[0] == "gopher_quality:ellipsis_lines"
    dec = run(GopherQuality, [text], min_doc_words=5, max_ellipsis_lines_ratio=0.5)
    assert list(dec.keep) == [True] and dec.reason[0] == ""


def test_gopher_quality_counts_characters_and_exact_stop_words():
    dec = run(GopherQuality, ["café naïve", "The Be to", "day… night..... end"], min_doc_words=0)
    assert dec.extra["mean_word_length"][0] == 4.5          # code points, not UTF-8 bytes
    assert dec.extra["stop_words"][1] == 1                  # 'The' and 'Be' are not stop words
    assert dec.extra["ellipsis_ratio"][2] == pytest.approx(2 / 3)   # '…' and one '...' in '.....'
    assert dec.extra["ellipsis_lines"][2] == 0


def test_gopher_repetition_lines_paragraphs_and_ngrams():
    texts = ["a\na\nb", "", "x y x y x y z", "a b c d e a b c d e", "p\n\np\n\nq"]
    dec = run(GopherRepetition, texts)
    ex = dec.extra
    assert ex["dup_line_frac"][0] == pytest.approx(1 / 3) and ex["dup_line_char_frac"][0] == pytest.approx(1 / 5)
    assert ex["dup_para_frac"][0] == 0
    assert ex["top_2_gram"][2] == pytest.approx(3 * 3 / 13)  # 'x y' three times, 13 characters
    assert ex["dup_5_gram"][3] == pytest.approx(5 / 19)      # the second 'abcde', without spaces
    assert ex["dup_para_frac"][4] == pytest.approx(1 / 3)
    assert list(dec.reason) == ["gopher_repetition:dup_line_frac", "gopher_repetition:empty",
                                "gopher_repetition:top_2_gram", "gopher_repetition:top_2_gram",
                                "gopher_repetition:dup_para_frac"]
    distinct = " ".join(f"word{i:02d}" for i in range(60))
    short = "one two three four five six"          # its first 2-gram is over 20% of its characters
    dec = run(GopherRepetition, [distinct, short])
    assert dec.keep.tolist() == [True, False] and dec.reason[1] == "gopher_repetition:top_2_gram"


def test_c4_quality_counts_sentences_of_kept_lines_only():
    five = "This is one. This is two. This is three! Is this four? This is five."
    four = five.rsplit(" This", 1)[0]
    texts = [five, four,
             four + "\nthis line has no end\nPlease enable JavaScript to see it.\nWe use cookies on this site.",
             four + "\nOne more line here.[1]",
             four + "\nOne more line here. [1]",
             five + "\nLorem ipsum dolor sit amet.",
             five + "\nthe {field} goes here.",
             five + "\nthe {field} goes here",
             four + "\nWait for it..."]
    dec = run(C4Quality, texts)
    assert dec.extra["sentences"].tolist() == [5, 4, 4, 5, 4, 5, 5, 5, 4]
    assert dec.extra["kept_lines"].tolist() == [1, 1, 1, 2, 1, 1, 1, 1, 1]
    assert list(dec.reason) == ["", "c4_quality:sentences", "c4_quality:sentences", "", "c4_quality:sentences",
                                "c4_quality:lorem_ipsum", "c4_quality:curly_bracket", "", "c4_quality:sentences"]
    dec = run(C4Quality, texts, min_sentences=4, filter_javascript=False, filter_policy=False)
    assert dec.extra["sentences"][2] == 6 and dec.keep[2]


def test_fineweb_quality_rules():
    texts = ["\n \n", "abc.\nabc.\nxyz", "no punct here at all\n" * 3 + "and none here",
             "A long enough line that ends with a full stop.\nAnother long line ending well, and it goes on.\n"]
    dec = run(FineWebQuality, texts)
    ex = dec.extra
    assert ex["lines"].tolist() == [0, 3, 4, 2]
    assert ex["line_punct_ratio"][1] == pytest.approx(2 / 3) and ex["short_line_ratio"][1] == 1
    assert ex["char_dup_ratio"][1] == pytest.approx(4 / 11)
    assert ex["newline_ratio"][3] == pytest.approx(2 / 19)
    assert list(dec.reason) == ["fineweb_quality:empty", "fineweb_quality:short_line_ratio",
                                "fineweb_quality:line_punct_ratio", ""]
    dec = run(FineWebQuality, texts[2:3], line_punct_exclude_zero=True)   # no punctuated line: exempt
    assert dec.reason[0] == "fineweb_quality:short_line_ratio"


@pytest.mark.parametrize("name", ["gopher_quality", "gopher_repetition", "c4_quality", "fineweb_quality"])
def test_builtin_names_sliced_input_and_empty_batch(name):
    cls = resolve(name)
    assert cls.display_name() == name and cls.scope == "document"
    texts = pa.array(["skip me", "a b c. d e f.\n\nsome more words here.", "x\ny\nx"])
    whole = run(cls, texts)
    sliced = run(cls, texts.slice(1))
    assert sliced.keep.tolist() == whole.keep.tolist()[1:]
    for key in whole.extra:
        np.testing.assert_array_equal(sliced.extra[key], whole.extra[key][1:])
    assert len(run(cls, []).keep) == 0


def test_filter_path_carries_reasons_and_measurements_to_the_sidecar():
    flt = GopherQuality(min_doc_words=5)
    flt.setup()
    docs = as_docs(["the cat and the dog\n- # item...\nwith one two", "too short"])
    cols = flt.score(docs)
    assert "extra_stop_words" in cols
    cols.update(n_words=docs.n_words, n_bytes=docs.n_bytes, row=docs.row)
    dec = flt.decide(Scores(cols, np.array([0, 2]), ["s"]))
    assert dec.keep.tolist() == [False, False]
    assert list(dec.reason) == ["gopher_quality:ellipsis_lines", "gopher_quality:word_count"]
    assert dec.extra["word_count"].tolist() == [9, 2]


@pytest.mark.parametrize("cls, params, key", [
    (GopherQuality, {"max_bullet_lines_ratio": 1.5}, "gopher_quality.max_bullet_lines_ratio"),
    (GopherQuality, {"min_doc_words": 10, "max_doc_words": 5}, "gopher_quality.max_doc_words"),
    (GopherRepetition, {"dup_5_gram_frac": -0.1}, "gopher_repetition.dup_5_gram_frac"),
    (C4Quality, {"min_sentences": -2}, "c4_quality.min_sentences"),
    (FineWebQuality, {"short_line_thr": 2}, "fineweb_quality.short_line_thr"),
    (FineWebQuality, {"line_punct_thresh": 0.1}, "line_punct_thr"),
])
def test_bad_thresholds_are_one_line_config_errors(cls, params, key):
    with pytest.raises(ConfigError) as err:
        cls(**params)
    assert key in str(err.value) and "\n" not in str(err.value)


def test_web_recipe_runs_on_any_text(tmp_path, sample_dir):
    import json
    import os

    from conftest import ROOT, run_cli

    out = tmp_path / "out"
    run_cli("select", os.path.join(ROOT, "configs", "web.yaml"), "--input", str(sample_dir / "pool"),
            "--output", str(out), "--overwrite")
    with open(out / ".shardsift" / "manifest.json") as fh:
        stages = json.load(fh)["stages"]
    names = [s["name"] for s in stages]
    assert names[1:] == ["language", "gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality",
                         "exact_dedup", "minhash_dedup"]
    for stage in stages[1:6]:
        assert all(reason.startswith(stage["name"] + ":") for reason in stage["dropped"])
    assert stages[1]["docs_in"] > stages[5]["kept"]


def test_hash_sets_grow_for_a_large_document_mid_batch():
    big = "\n".join(f"line {i} of many" for i in range(5000))
    texts = ["a\nb\na", big + "\n" + big, "x y\nx y"]
    rep = run(GopherRepetition, texts)
    assert rep.extra["dup_line_frac"].tolist() == [pytest.approx(1 / 3), 0.5, 0.5]
    # the second copy's 20,000 words, 5 at a time, without the spaces between them
    assert rep.extra["dup_5_gram"][1] == pytest.approx(len("".join(big.split())) / len(texts[1]))
    fw = run(FineWebQuality, texts)
    assert fw.extra["char_dup_ratio"].tolist() == [pytest.approx(1 / 3), pytest.approx(0.5), pytest.approx(0.5)]
