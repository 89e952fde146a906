"""quality_classifier: fastText training (real, on small generated corpora), selection, errors."""
from __future__ import annotations

import glob
import hashlib
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import corpora_path
from dsir_fakes import FakeFit, score_all

from shardsift.api import Scores
from shardsift.columns import hash_strings
from shardsift.errors import ConfigError, DataError
from shardsift.selectors import resolve
from shardsift.selectors.quality import QualityClassifier
from shardsift.selectors.quality import classifier as ft

SCIENCE = ["star", "planet", "orbit", "galaxy", "telescope", "comet", "nebula", "gravity", "moon", "solar"]
OTHER = ["court", "judge", "contract", "team", "player", "goal", "recipe", "oven", "flour", "butter",
         "sale", "price", "movie", "actor", "song"]
COMMON = ["the", "a", "of", "and", "to", "in", "is", "was", "it", "for"]


def corpus(n, seed, science_share, prefix="d"):
    """Documents of 20-120 words; a document is on-topic with probability science_share."""
    rng = np.random.default_rng(seed)
    texts, topical = [], rng.random(n) < science_share
    for on in topical:
        topic = SCIENCE if on else OTHER
        m = int(rng.integers(20, 120))
        words = rng.choice(topic * 2 + COMMON + (OTHER if on else SCIENCE)[:2], size=m)
        texts.append(" ".join(words).capitalize() + ".\nNext line\tof it.")
    return pa.table({"id": [f"{prefix}{i}" for i in range(n)], "text": texts}), topical


POOL, POOL_TOPICAL = corpus(600, 1, 0.1)   # 10% of the negatives sampled from it are on-topic
POSITIVES, _ = corpus(300, 2, 1.0, "p")
SMALL = dict(dim=8, bucket=5000, epoch=10, lr=0.5)
POOL_SETTINGS = {"balance": "weighted", "max_chars": 2000, "negative_sample": 10000}   # measured in the docs


def shards_of(tbl, n):
    bounds = np.linspace(0, tbl.num_rows, n + 1).astype(int)
    return [tbl.slice(a, b - a) for a, b in zip(bounds[:-1], bounds[1:])]


def fitted(tmp_path, seed=0, name="fit", **kw):
    kw = {"positives": POSITIVES, **SMALL, **kw}
    if not {"keep", "n", "tokens", "threshold"} & set(kw):
        kw["keep"] = 0.2
    sel = QualityClassifier(**kw)
    sel.setup()
    sel.fit_metrics_ = sel.fit(FakeFit(shards_of(POOL, 3), seed=seed, work_dir=str(tmp_path / name)))
    sel.seed_ = seed
    return sel


def digest(path):
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def scores_of(score, ids, words=None, shards=1):
    n = len(score)
    offs = np.linspace(0, n, shards + 1).astype(np.int64)
    return Scores({"score": np.asarray(score, float), "idhash": hash_strings(pa.array(ids)), "row": np.arange(n),
                   "n_words": np.full(n, 10) if words is None else np.asarray(words), "n_bytes": np.full(n, 50)},
                  offs, [f"s{i}" for i in range(shards)])


def bare(seed=0, **kw):
    sel = QualityClassifier(positives="unused", **kw)
    sel.seed_ = seed
    return sel


# ---------------------------------------------------------------------------------------------
def test_registered_and_declared():
    assert resolve("quality_classifier") is QualityClassifier
    caps = QualityClassifier(positives="x", keep=0.1).capabilities()
    assert caps.scope == "global" and caps.needs_fit and caps.columns == () and caps.reads_text


def test_normalize_like_dclm():
    text = pa.array(["Hello\nWorld\r\n\tTAB  x", "__label__positive Sneaky", "  Ünïcode  "])
    got = ft.normalize(text, lowercase=True, collapse_whitespace=True, max_chars=0).to_pylist()
    assert got == ["hello world tab x", "_label_positive sneaky", "ünïcode"]
    plain = ft.normalize(text, lowercase=False, collapse_whitespace=False, max_chars=5).to_pylist()
    assert plain == ["Hello", "__lab", "  Ünï"]
    kept = ft.normalize(text, lowercase=False, collapse_whitespace=False, max_chars=0).to_pylist()
    assert kept[0] == "Hello World  \tTAB  x".replace("\t", " ") and "\n" not in "".join(kept)
    assert kept[1].startswith("_label_")


def test_training_is_deterministic_and_measured(tmp_path):
    a = fitted(tmp_path, seed=3, name="a")
    b = fitted(tmp_path, seed=3, name="b")
    c = fitted(tmp_path, seed=4, name="c")
    files = a.fitted_files()
    assert list(files) == ["quality_classifier.bin"] and files["quality_classifier.bin"].startswith(str(tmp_path / "a"))
    assert digest(files["quality_classifier.bin"]) == digest(b.fitted_files()["quality_classifier.bin"])
    assert digest(files["quality_classifier.bin"]) != digest(c.fitted_files()["quality_classifier.bin"])
    assert not glob.glob(str(tmp_path / "a" / "*.train"))          # the training file is removed
    m = a.fit_metrics_
    assert m["trained"] and m["positives_read"] == 300 and m["negatives_read"] == 600
    assert m["train_cpu_s"] > 0 and m["train_wall_s"] > 0  # the training process, timed on its own
    assert m["train_positives"] == m["train_negatives"] == 270       # balanced, 10% held out
    assert m["holdout_docs"] == 60 and m["holdout_auc"] > 0.85
    assert 0.8 < m["holdout_precision"] <= 1 and 0.8 < m["holdout_recall"] <= 1
    sc = score_all(a, shards_of(POOL, 3), batch=100)
    np.testing.assert_array_equal(sc["score"], score_all(b, [POOL])["score"])
    assert sc["score"][POOL_TOPICAL].mean() > 0.7 > 0.3 > sc["score"][~POOL_TOPICAL].mean()


def test_balance_modes(tmp_path):
    w = fitted(tmp_path, balance="weighted", name="w").fit_metrics_
    assert w["train_negatives"] == 540 and w["train_positives"] == 540   # 270 positives, twice each
    nb = fitted(tmp_path, balance="none", name="n").fit_metrics_
    assert nb["train_positives"] == 270 and nb["train_negatives"] == 540
    ns = fitted(tmp_path, negative_sample=100, name="s").fit_metrics_
    assert ns["negatives_read"] == 100 and ns["train_positives"] == ns["train_negatives"] == 90


def test_topk_selects_the_best_ties_by_seeded_id_hash(tmp_path):
    sel = fitted(tmp_path, n=100)
    sc = score_all(sel, shards_of(POOL, 3))
    dec = sel.decide(sc, None)
    s = sc["score"]
    assert dec.keep.sum() == 100 and s[dec.keep].min() >= s[~dec.keep].max()
    assert dec.reason == "low_quality" and dec.score is sc["score"]
    # all tied: the choice follows a seeded hash of the id, whatever the order or the shards
    ids = [f"x{i}" for i in range(200)]
    perm = np.random.default_rng(0).permutation(200)
    a = bare(5, n=20).decide(scores_of(np.full(200, 0.5), ids), None).keep
    b = bare(5, n=20).decide(scores_of(np.full(200, 0.5), [ids[i] for i in perm], shards=4), None).keep
    assert set(np.flatnonzero(a)) == set(perm[b])
    assert (a != bare(6, n=20).decide(scores_of(np.full(200, 0.5), ids), None).keep).any()


def test_sample_mode_is_seeded_and_follows_the_temperature():
    rng = np.random.default_rng(1)
    score = rng.random(2000)
    ids = [f"y{i}" for i in range(2000)]
    sc = scores_of(score, ids)
    a = bare(1, keep=0.1, mode="sample").decide(sc, None).keep
    assert a.sum() == 200
    np.testing.assert_array_equal(a, bare(1, keep=0.1, mode="sample").decide(sc, None).keep)
    assert (a != bare(2, keep=0.1, mode="sample").decide(sc, None).keep).any()
    top = bare(1, keep=0.1).decide(sc, None).keep
    cold = bare(1, keep=0.1, mode="sample", temperature=1e-4).decide(sc, None).keep
    hot = bare(1, keep=0.1, mode="sample", temperature=100.0).decide(sc, None).keep
    np.testing.assert_array_equal(cold, top)                       # temperature -> 0: top-k
    assert score[top].mean() > score[a].mean() > score[hot].mean()
    assert abs(score[hot].mean() - 0.5) < 0.06                     # temperature -> inf: uniform
    # exp(score / T) odds: at T = 0.1 a document scoring 0.9 is ~e^4 more likely than one at 0.5
    hi, mid = score > 0.85, (score > 0.45) & (score < 0.55)
    assert a[hi].mean() > 5 * a[mid].mean()


def test_token_budget_and_threshold():
    rng = np.random.default_rng(2)
    score, words = rng.random(500), rng.integers(10, 200, 500)
    sc = scores_of(score, [f"z{i}" for i in range(500)], words)
    for mode in ("topk", "sample"):
        dec = bare(0, tokens=5000, mode=mode).decide(sc, None)
        used = int(words[dec.keep].sum())
        assert used <= 5000 and dec.metrics["selected_tokens"] == used
        assert used > 4500    # the budget is nearly used: documents of at most 200 words
    top = bare(0, tokens=5000).decide(sc, None).keep
    assert score[top].min() >= score[~top].max()
    order = np.argsort(-score)   # the best documents in order, up to the first that does not fit
    assert words[order[:top.sum()]].sum() <= 5000 < words[order[:top.sum() + 1]].sum()
    thr = bare(0, threshold=0.7).decide(sc, None)
    np.testing.assert_array_equal(thr.keep, score >= 0.7)


def test_a_given_model_is_applied(tmp_path):
    trained = fitted(tmp_path)
    path = trained.fitted_files()["quality_classifier.bin"]
    for label in ("positive", "__label__positive"):
        sel = QualityClassifier(model=path, label=label, keep=0.2)
        sel.setup()
        m = sel.fit(FakeFit([POOL], work_dir=str(tmp_path / "apply")))
        assert m["trained"] is False and set(m["labels"]) == {ft.POSITIVE, ft.NEGATIVE}
        assert sel.fitted_files() == {}
        np.testing.assert_array_equal(score_all(sel, [POOL])["score"], score_all(trained, [POOL])["score"])
    neg = QualityClassifier(model=path, label="negative", keep=0.2)
    neg.setup()
    neg.fit(FakeFit([POOL]))
    np.testing.assert_allclose(score_all(neg, [POOL])["score"], 1 - score_all(trained, [POOL])["score"],
                               atol=1e-4)   # fastText's probabilities sum to 1 within 1e-4
    with pytest.raises(ConfigError, match=r"has no label 'hq'; its labels: __label__positive, __label__negative"):
        QualityClassifier(model=path, label="hq", keep=0.2).fit(FakeFit([POOL]))
    before = QualityClassifier(model=path, keep=0.2).version   # in the stage fingerprint
    os.utime(path, ns=(1, 1))
    assert QualityClassifier(model=path, keep=0.2).version != before
    assert QualityClassifier(positives="x", keep=0.2).version == ""


def test_config_errors():
    for kw, text in (({"keep": 0.1, "n": 5}, r"exactly one of keep, n, tokens or threshold \(got keep and n\)"),
                     ({}, r"exactly one of keep, n, tokens or threshold \(got none\)"),
                     ({"tokens": 10, "threshold": 0.5}, "got tokens and threshold"),
                     ({"threshold": 0.5, "mode": "sample"}, "mode sample"),
                     ({"keep": 0.1, "temperature": 0}, "temperature"),
                     ({"keep": 0.1, "negatives": 3}, "negatives: expected a path"),
                     ({"keep": 0.1, "label": "hq"}, "label: names the positive label of a given model")):
        with pytest.raises(ConfigError, match=text):
            QualityClassifier(positives="x", **kw)
    with pytest.raises(ConfigError, match="positives: give the positive examples"):
        QualityClassifier(keep=0.1)
    with pytest.raises(ConfigError, match="drop positives"):
        QualityClassifier(model="m.bin", positives="x", keep=0.1)


# -- through the engine --------------------------------------------------------------------------
def _write(dirpath, tbl, n_shards):
    os.makedirs(dirpath, exist_ok=True)
    for i, s in enumerate(shards_of(tbl, n_shards)):
        pq.write_table(s, os.path.join(dirpath, f"part-{i:05d}.parquet"))


def test_pipeline_end_to_end(tmp_path):
    from shardsift.engine.runner import run_pipeline

    _write(tmp_path / "pool", POOL, 3)
    _write(tmp_path / "pos", POSITIVES, 1)
    kept = []
    for workers in (1, 2):
        out = tmp_path / f"out{workers}"
        stage = {"positives": {"path": str(tmp_path / "pos")}, "keep": 0.1, **SMALL}
        man = run_pipeline({"input": {"path": str(tmp_path / "pool")}, "output": {"path": str(out), "scores": True},
                            "workers": workers, "seed": 3, "stages": [{"quality_classifier": stage}]}, progress=False)
        st = man["stages"][-1]
        assert st["kept"] == 60 and st["metrics"]["holdout_auc"] > 0.85 and st["metrics"]["selected"] == 60
        assert glob.glob(str(out / ".shardsift" / "models" / "**" / "quality_classifier.bin"), recursive=True)
        ids = pq.read_table(str(out / "data")).column("id").to_pylist()
        kept.append(sorted(ids))
    assert kept[0] == kept[1]
    topical_ids = set(POOL.column("id").to_numpy(zero_copy_only=False)[POOL_TOPICAL])
    assert int(POOL_TOPICAL.sum()) == 57 and len(topical_ids & set(kept[0])) >= 52


def test_bad_inputs_are_one_line_errors(tmp_path):
    from shardsift.engine.runner import run_pipeline

    _write(tmp_path / "pool", POOL.slice(0, 100), 1)
    pq.write_table(pa.table({"id": pa.array([], pa.string()), "text": pa.array([], pa.string())}),
                   tmp_path / "empty.parquet")
    (tmp_path / "junk.bin").write_bytes(b"not a fastText model at all" * 10)
    base = {"input": {"path": str(tmp_path / "pool")}, "output": {"path": str(tmp_path / "out")}}
    cases = [({"positives": str(tmp_path / "none-*.parquet"), "keep": 0.5}, DataError,
              r"quality_classifier\.positives: no input files match"),
             ({"positives": {"path": str(tmp_path / "empty.parquet")}, "keep": 0.5}, DataError,
              r"quality_classifier\.positives: no documents with text"),
             ({"model": str(tmp_path / "junk.bin"), "keep": 0.5}, DataError, "is not a fastText model"),
             ({"model": str(tmp_path / "missing.bin"), "keep": 0.5}, DataError, r"quality_classifier\.model: .*missing\.bin: not found"),
             ({"positives": "x", "keep": 0.5, "n": 3}, ConfigError, "exactly one of keep, n, tokens or threshold")]
    for stage, err, text in cases:
        with pytest.raises(err, match=text) as info:
            run_pipeline({**base, "stages": [{"quality_classifier": stage}]}, overwrite=True, progress=False)
        assert "\n" not in str(info.value)


# -- the shared corpora ----------------------------------------------------------------------------
@pytest.mark.slow
def test_pool_toward_wikipedia_keeps_encyclopedia(tmp_path):
    pool_dir, target = corpora_path("pool"), corpora_path("target", "wikipedia.parquet")
    shards = [pq.read_table(f, columns=["id", "text", "domain"]) for f in sorted(glob.glob(f"{pool_dir}/*.parquet"))]
    domain = np.concatenate([s["domain"].to_numpy(zero_copy_only=False) for s in shards])
    shards = [s.drop(["domain"]) for s in shards]   # the selector never sees the label
    sel = QualityClassifier(positives={"path": target}, keep=0.02, **POOL_SETTINGS)
    sel.setup()
    metrics = sel.fit(FakeFit(shards, seed=0, work_dir=str(tmp_path)))
    sc = score_all(sel, shards, batch=4096)
    shares = {}
    for keep in (0.02, 0.04):
        sel.keep = keep
        dec = sel.decide(sc, None)
        shares[keep] = float((domain[dec.keep] == "encyclopedia").mean())
    print(f"\nquality_classifier toward Wikipedia: encyclopedia share {shares[0.02]:.3f} at 2%, "
          f"{shares[0.04]:.3f} at 4%; holdout AUC {metrics['holdout_auc']:.3f}")
    assert shares[0.02] >= 0.95 and shares[0.04] >= 0.75


def _train_model(tmp_path, name, lines, positive, **args):
    train = str(tmp_path / f"{name}.train")
    ft.write_train_file(train, positive, lines)
    path = str(tmp_path / f"{name}.bin")
    ft.train(train, path, {**bare(**SMALL, keep=0.2)._train_args(), **args}, "test")
    return ft.load(path, "test")


def test_numba_prediction_equals_fasttexts(tmp_path):
    """The numba predictor gives fastText's probabilities (float rounding aside) for softmax models
    of word n-gram orders 2 and 3 (a unigram model diverges to NaN on this corpus whatever the
    rate, in fastText's own training), on Unicode, label-like, out-of-vocabulary, blank and very long lines, over
    Arrow slices; other models are left to fastText."""
    from shardsift.selectors.fasttext_predict import fast_predictor

    texts = POOL.column("text").combine_chunks()
    odd = pa.array(["", "   ", "qqzx vvbn", "Ünïcödé wörds ß 東京 the star", "__label__positive star planet",
                    "a\nb\tc\rd\x0be\x0cf", " ".join(["star", "court"] * 3000), "é" * 50])
    lines = ft.normalize(pa.concat_arrays([texts, odd]), lowercase=True, collapse_whitespace=False, max_chars=0)
    positive = np.asarray(POOL_TOPICAL)
    train_lines = ft.normalize(texts, lowercase=True, collapse_whitespace=False, max_chars=0)
    for n in (2, 3):
        model = _train_model(tmp_path, f"ng{n}", train_lines, positive, wordNgrams=n)
        fast = fast_predictor(model)
        assert fast is not None
        for label in (ft.POSITIVE, ft.NEGATIVE):
            for part in (lines, lines.slice(7, 300)):
                want, got = ft.predict(model, part, label), fast(part, label)
                assert np.abs(got - want).max() < 1e-6, (n, label)
        assert len(np.unique(fast(lines, ft.POSITIVE))) > 10   # the model separates something
        raw = pa.array(["__label__positive star planet", "star __label__x planet", "__label__negative"])
        assert np.abs(fast(raw, ft.POSITIVE) - ft.predict(model, raw, ft.POSITIVE)).max() < 1e-6
        first = pa.array(["star planet orbit", "star planet orbit\ncourt judge team", "star planet orbit\n"])
        assert len(set(fast(first, ft.POSITIVE).tolist())) == 1   # fastText reads up to the first newline
        assert np.abs(fast(first, ft.POSITIVE) - ft.predict(model, first, ft.POSITIVE)).max() < 1e-6
        # the score's path: separators left in place and read as spaces (multiline) gives the
        # probabilities of the normalised lines, in both whitespace modes
        messy = pa.concat_arrays([texts.slice(0, 300), odd, pa.array(["\n\nstar\r\n\tplanet  \x00court\n",
                                                                     "x__label__y star\nplanet"])])
        for collapse in (True, False):
            kw = {"lowercase": True, "collapse_whitespace": collapse, "max_chars": 700}
            want = fast(ft.normalize(messy, **kw), ft.POSITIVE)
            got = fast(ft.normalize(messy, **kw, separators=False), ft.POSITIVE, multiline=True)
            assert np.array_equal(got, want), collapse
    for other in ({"loss": "ova"}, {"loss": "hs"}, {"minn": 2, "maxn": 4}):
        assert fast_predictor(_train_model(tmp_path, "other", train_lines, positive, **other)) is None
    assert fitted(tmp_path).fit_metrics_["prediction"] == "shardsift (numba)"
    assert fitted(tmp_path, name="ova", loss="ova").fit_metrics_["prediction"] == "fastText"
