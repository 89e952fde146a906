"""perplexity_correlation: estimator/projection math, input checks, the fastText filter end to end."""
import json
import os
import shutil
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, corpora_path, file_digests, run_cli

from shardsift.api import Scores
from shardsift.engine.runner import run_pipeline
from shardsift.errors import ConfigError, DataError
from shardsift.selectors import resolve
from shardsift.selectors.perplexity import estimators as pm
from shardsift.selectors.perplexity.classifier import fasttext_lines, write_fasttext_file
from shardsift.selectors.perplexity.inputs import align_inputs, read_errors, read_losses, write_example_inputs

# -- math: parity with the reference package -------------------------------------------------------

def _matrix(n=40, d=500, seed=0):
    rng = np.random.default_rng(seed)
    skill = rng.normal(size=n)
    w = rng.normal(size=d)
    X = 1.0 + 0.1 * rng.random((n, d)) + 0.02 * np.outer(skill, w)
    y = np.clip(0.5 - 0.1 * skill + 0.02 * rng.normal(size=n), 0, 1)
    return X, y


def test_estimators_and_projections_match_reference():
    ref_est = pytest.importorskip("perplexity_correlations.estimation",
                                  reason="reference package perplexity-correlations not installed (bench extra)")
    ref_proj = pytest.importorskip("perplexity_correlations.projection", reason="reference package not installed")
    X, y = _matrix()
    rng = np.random.default_rng(1)
    tau = rng.uniform(0.001, 0.01, size=X.shape[1])  # caps summing to ~2.75
    ours_all = pm.estimate_all(X, y)
    for name in pm.ESTIMATORS:
        ref = getattr(ref_est, name)(X, y)
        ours = pm.estimate(X, y, name)
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(ours_all[name], ref, rtol=0, atol=1e-6, err_msg=name)
        for proj in pm.PROJECTIONS:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                want = getattr(ref_proj, proj)(ref, tau)
            got = pm.project(ours, tau, proj)
            assert abs(got.sum() - 1) < 1e-9 and (got <= tau + 1e-12).all()
            # the reference's linear projection is float32 and its l2 a bisection to 1e-12. The rank
            # estimators give tied values (sign_sign: a multiple of 1/780 here); when a tie straddles the
            # linear projection's cut, which tied key is filled first is arbitrary: the reference takes
            # numpy's unstable argsort order, we take the first key. Both solve the same linear program
            # (equal objective); every key whose estimate is not tied gets the same weight.
            np.testing.assert_allclose(got @ ref, want @ ref, rtol=0, atol=1e-6, err_msg=f"{name}/{proj}")
            vals, counts = np.unique(ref, return_counts=True)
            untied = np.isin(ref, vals[counts == 1])
            np.testing.assert_allclose(got[untied], want[untied], rtol=0, atol=1e-6, err_msg=f"{name}/{proj}")
            if proj == "l2" or untied.all():
                np.testing.assert_allclose(got, want, rtol=0, atol=1e-6, err_msg=f"{name}/{proj}")


def _brute_sign_sign(X, y):
    n = len(y)
    s = np.zeros(X.shape[1])
    for i in range(n):
        for j in range(i + 1, n):
            s += np.sign(y[j] - y[i]) * np.sign(X[j] - X[i])
    return 2 * s / (n * (n - 1))


def test_ties_do_not_depend_on_model_order():
    rng = np.random.default_rng(3)
    X = np.round(rng.random((12, 60)), 1)  # many ties per text
    y = np.round(rng.random(12), 1)        # and among the errors
    perm = rng.permutation(12)
    a, b = pm.estimate_all(X, y), pm.estimate_all(X[perm], y[perm])
    for name in pm.ESTIMATORS:
        np.testing.assert_allclose(a[name], b[name], atol=1e-12, err_msg=name)
    np.testing.assert_allclose(a["sign_sign"], _brute_sign_sign(X, y), atol=1e-12)


def test_projections_are_feasible_and_optimal():
    rng = np.random.default_rng(5)
    est = rng.normal(size=300)
    tau = rng.uniform(0.001, 0.02, size=300)
    for proj in pm.PROJECTIONS:
        w = pm.project(est, tau, proj)
        assert abs(w.sum() - 1) < 1e-9 and (w >= 0).all() and (w <= tau + 1e-12).all()
    lin = pm.linear(est, tau)
    # linear: nothing outside the support beats anything inside it
    assert est[lin > 0].min() >= est[lin == 0].max()
    # l2: matches a plain bisection of the offset
    lo, hi = -est.max(), (tau - est).max()
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if np.clip(est + mid, 0, tau).sum() > 1 else (mid, hi)
    np.testing.assert_allclose(pm.l2(est, tau), np.clip(est + lo, 0, tau), atol=1e-9)
    with pytest.raises(ValueError, match="infeasible"):
        pm.linear(est, np.full(300, 0.001))


# -- input files and checks ---------------------------------------------------------------------------

def _write_inputs(tmp_path, X, y, keys, models=None, errors_fmt="csv"):
    models = models or [f"m{i}" for i in range(max(X.shape[0], len(y)))]
    cols = {"domain": keys}
    cols.update({m: X[i] for i, m in enumerate(models[:X.shape[0]])})
    losses = tmp_path / "losses.parquet"
    pq.write_table(pa.table(cols), losses)
    if errors_fmt == "csv":
        errors = tmp_path / "errors.csv"
        errors.write_text("model,error\n" + "".join(f"{m},{e}\n" for m, e in zip(models, y)))
    else:
        errors = tmp_path / "errors.yaml"
        errors.write_text("".join(f"{m}: {e}\n" for m, e in zip(models, y)))
    return str(losses), str(errors)


def _check(tmp_path, X, y, keys=("a", "b"), models=None, strict=False):
    lp, ep = _write_inputs(tmp_path, np.asarray(X, float), y, list(keys), models)
    k, m, Xr = read_losses(lp, "domain")
    return align_inputs(k, m, Xr, read_errors(ep), lp, ep, strict)


@pytest.mark.parametrize("X, y, models, needle", [
    ([[1, 1], [1, 2]], [0.1, 0.2], None, "2 models; perplexity correlations need at least 3"),
    ([[1, 1], [1, 2], [1, 1]], [0.1, 0.2, 0.3, 0.4], None, "model 'm3' is in the benchmark errors"),
    ([[1, 1], [1, 2], [1, 1], [2, 2]], [0.1, 0.2, 0.3], ["m0", "m1", "m2", "zz"],
     "model 'zz' is in the loss matrix"),
    ([[1, 1], [1, -2], [1, 1]], [0.1, 0.2, 0.3], None, "model 'm1', key 'b': bits per byte -2.0 is negative"),
    ([[1, 1], [1, np.nan], [1, 1]], [0.1, 0.2, 0.3], None, "model 'm1', key 'b': bits per byte is nan"),
])
def test_bad_inputs_get_one_clear_line(tmp_path, X, y, models, needle):
    with pytest.raises(DataError) as ei:
        _check(tmp_path, X, y, models=models)
    assert needle in str(ei.value) and "\n" not in str(ei.value)


def test_errors_outside_unit_interval_warn_or_refuse(tmp_path):
    X = [[1, 1], [1, 2], [1, 1.5]]
    with pytest.warns(UserWarning, match="model 'm2': benchmark error 1.5 is outside"):
        _check(tmp_path, X, [0.1, 0.2, 1.5])
    with pytest.raises(DataError, match="outside \\[0, 1\\].*strict"):
        _check(tmp_path, X, [0.1, 0.2, 1.5], strict=True)


def test_error_file_formats(tmp_path):
    (tmp_path / "e.yaml").write_text("a: 0.1\nb: 0.2\n")
    (tmp_path / "wide.csv").write_text("benchmark,a,b\narc,0.2,0.4\npiqa,0.4,0.6\n")
    (tmp_path / "two.csv").write_text("name,value\na,0.3\nb,0.5\n")
    assert read_errors(str(tmp_path / "e.yaml")) == {"a": 0.1, "b": 0.2}
    assert read_errors(str(tmp_path / "wide.csv")) == pytest.approx({"a": 0.3, "b": 0.5})
    assert read_errors(str(tmp_path / "two.csv")) == {"a": 0.3, "b": 0.5}
    (tmp_path / "dup.parquet").write_bytes(b"")
    pq.write_table(pa.table({"domain": ["x", "x"], "m": [1.0, 2.0]}), tmp_path / "dup.parquet")
    with pytest.raises(DataError, match="key 'x' appears 2 times"):
        read_losses(str(tmp_path / "dup.parquet"), "domain")


@pytest.mark.parametrize("params, needle", [
    ({"losses": "l", "errors": "e"}, "give exactly one of keep"),
    ({"losses": "l", "errors": "e", "keep": 0.5, "tokens": 10}, "give exactly one of keep"),
    ({"losses": "l", "keep": 0.5}, "perplexity_correlation.errors: a value is required"),
    ({"model": "m.bin", "losses": "l", "errors": "e", "keep": 0.5}, "not both"),
    ({"losses": "l", "errors": "e", "keep": 0.5, "estimator": "sign_cfd"}, "did you mean 'sign_cdf'"),
])
def test_config_validation(params, needle):
    with pytest.raises(ConfigError, match=needle):
        resolve("perplexity_correlation")(**params)


# -- fastText text preparation ---------------------------------------------------------------------

def test_multiline_documents_become_one_training_line_each(tmp_path):
    texts = pa.array(["first line\nsecond\r\nthird\tx\vy\fz\x00w", "  __label__include sneaky  ",
                      "plain", "\n\n"])
    lines = fasttext_lines(texts, max_chars=0, lowercase=True)
    assert lines.to_pylist()[0] == "first line second third x y z w"
    assert "__label__" not in lines.to_pylist()[1]
    path = tmp_path / "train.txt"
    write_fasttext_file(str(path), np.array([True, False, True, False]), lines)
    raw = path.read_bytes().decode()
    assert raw.count("\n") == 4 and raw.endswith("\n")
    labels = [ln.split(" ")[0] for ln in raw.split("\n")[:-1]]
    assert labels == ["__label__include", "__label__exclude", "__label__include", "__label__exclude"]
    assert sum(ln.count("__label__") for ln in raw.split("\n")) == 4  # no injected label
    assert fasttext_lines(pa.array(["abcdef"]), max_chars=3, lowercase=False).to_pylist() == ["abc"]


def _scores(p, words, include_rank):
    p, words = np.asarray(p, float), np.asarray(words)
    return Scores({"score": p, "include_rank": np.asarray(include_rank), "n_words": words, "n_bytes": words * 5,
                   "row": np.arange(len(p))}, np.array([0, len(p)]), ["a"])


def test_decide_token_budget_and_count():
    sel = resolve("perplexity_correlation")(losses="l", errors="e", tokens=100)
    s = _scores([0.9, 0.1, 0.8, 0.8, 0.5], [60, 10, 30, 20, 5], [-1] * 5)
    dec = sel.decide(s)
    # no include key: most likely first (ties by position): 0 (60), 2 (90), 3 (110 > 100) -> stop
    assert dec.keep.tolist() == [True, False, True, False, False]
    assert dec.metrics["kept_tokens"] == 90 and dec.metrics["budget_share_from_include_keys"] == 0
    assert dec.metrics["include_prob_threshold"] == 0.8
    sel_n = resolve("perplexity_correlation")(losses="l", errors="e", n=3)
    assert sel_n.decide(s).keep.tolist() == [True, False, True, True, False]


def test_decide_fills_the_budget_with_include_keys_first():
    """Include keys in fill order, most likely first within a key, then the rest by P(include)."""
    p = [0.9, 0.1, 0.2, 0.05, 0.6, 0.3, 0.95]
    rank = [-1, 1, 0, 0, -1, 1, -1]
    sel = resolve("perplexity_correlation")(losses="l", errors="e", n=5)
    dec = sel.decide(_scores(p, [10] * 7, rank))
    # key 0: docs 2, 3; key 1: docs 5 (0.3) then 1 (0.1); then the best other document, 6 (0.95)
    assert dec.keep.tolist() == [False, True, True, True, False, True, True]
    m = dec.metrics
    assert m["budget_unit"] == "documents" and m["kept_from_include_keys"] == 4 and m["kept_by_classifier"] == 1
    assert m["budget_share_from_include_keys"] == pytest.approx(0.8) and m["fill_prob_threshold"] == 0.95
    assert m["include_prob_threshold"] is None  # not a cut on P(include) alone
    # a word budget counts words: key 0 (30 + 20 words), key 1's most likely (40) -> 90; 100 does not fit
    sel_t = resolve("perplexity_correlation")(losses="l", errors="e", tokens=99)
    dec = sel_t.decide(_scores(p, [5, 10, 30, 20, 5, 40, 1], rank))
    assert dec.keep.tolist() == [False, False, True, True, False, True, False]
    assert dec.metrics["budget_unit"] == "tokens" and dec.metrics["budget_share_from_include_keys"] == 1.0


# -- end to end ------------------------------------------------------------------------------------------

INFORMATIVE = ["law", "sports"]


def _cfg(pool, out, stage, workers=1, scores=True):
    return {"input": {"path": str(pool), "text_column": "text"}, "output": {"path": str(out), "scores": scores},
            "workers": workers, "seed": 0, "stages": [{"perplexity_correlation": stage}]}


def _kept_domains(out):
    return pads.dataset(os.path.join(out, "data")).to_table(columns=["domain"]).column("domain").to_pylist()


def test_end_to_end_recovers_correlated_domains(sample_dir, tmp_path):
    info = write_example_inputs(str(tmp_path / "inputs"), str(sample_dir / "pool"), seed=1, informative=INFORMATIVE)
    stage = {"losses": info["losses"], "errors": info["errors"], "key": "domain", "keep": 0.3}
    out1 = tmp_path / "out1"
    m = run_pipeline(_cfg(sample_dir / "pool", out1, stage, workers=1))
    met = m["stages"][-1]["metrics"]
    k = len(INFORMATIVE)
    top = [t["key"] for t in met["top_keys"][:k]]
    precision_at_k = len(set(top) & set(INFORMATIVE)) / k
    print(f"precision@{k} of the estimate: {precision_at_k}")
    assert precision_at_k == 1.0
    assert met["include_keys"] >= k and met["holdout_precision"] > 0.9 and met["holdout_recall"] > 0.9
    assert met["budget_unit"] == "documents" and met["budget_share_from_include_keys"] > 0.9
    kept = _kept_domains(out1)
    share = np.isin(kept, INFORMATIVE).mean()
    pool_dom = pads.dataset(str(sample_dir / "pool")).to_table(columns=["domain"]).column("domain").to_pylist()
    base = np.isin(pool_dom, INFORMATIVE).mean()
    print(f"informative share: kept {share:.3f}, pool {base:.3f}")
    assert share > 0.9 and share > 2 * base
    assert m["stages"][-1]["kept"] == round(0.3 * m["stages"][-1]["docs_in"])
    assert os.path.exists(out1 / ".shardsift" / "models") and any(
        f.endswith("fasttext.bin") for _, _, fs in os.walk(out1 / ".shardsift" / "models") for f in fs)

    # two workers give the same bytes
    out2 = tmp_path / "out2"
    run_pipeline(_cfg(sample_dir / "pool", out2, stage, workers=2))
    assert file_digests(out1 / "data") == file_digests(out2 / "data")

    # the saved classifier filters a pool again without the loss matrix: the same P(include) per
    # document; with no include keys to place first, the budget is filled by P(include) alone
    model_path = next(os.path.join(d, f) for d, _, fs in os.walk(out1 / ".shardsift" / "models") for f in fs
                      if f.endswith("fasttext.bin"))
    out3 = tmp_path / "out3"
    m3 = run_pipeline(_cfg(sample_dir / "pool", out3, {"model": model_path, "keep": 0.3}))
    met3 = m3["stages"][-1]["metrics"]
    assert met3["trained"] is False and met3["kept_from_include_keys"] == 0
    s1, s3 = (pads.dataset(os.path.join(o, ".shardsift", "scores")).to_table(columns=["id", "score", "kept"]) for o in (out1, out3))
    assert s1.column("id").equals(s3.column("id")) and s1.column("score").equals(s3.column("score"))
    kept3 = s3.filter(s3.column("kept")).column("score").to_numpy()
    assert kept3.min() == met3["include_prob_threshold"] >= s3.filter(pc.invert(s3.column("kept"))).column(
        "score").to_numpy().max()

    # the runs score with the numba predictor; fastText's own predict gives the same P(include)
    from shardsift.selectors.fasttext_predict import fast_predictor
    from shardsift.selectors.perplexity import classifier as clf

    model = clf.load_model(model_path)
    text = pads.dataset(str(sample_dir / "pool")).to_table(columns=["text"]).column("text").combine_chunks()
    lines = clf.fasttext_lines(text, 0, True)
    fast = fast_predictor(model)
    assert fast is not None
    assert np.abs(clf.predict_include(model, lines, fast) - clf.predict_include(model, lines)).max() < 1e-6


PLANTED = ["astronomy", "law", "medicine"]


def _long_and_short_pool(path, seed=0):
    """Seven topical domains in three shards: the planted ones hold few, long documents (13% of the
    documents, 60% of the words), the others many short ones, as encyclopedia and legal text against
    reviews and quotes in a real crawl. A short document takes a third of its topic words from one
    planted domain (a page that mentions a topic without being about it)."""
    from shardsift.sample import FUNCTION, TOPICS

    rng = np.random.default_rng(seed)
    ids, texts, domains = [], [], []
    for name, vocab in TOPICS.items():
        vocab = vocab.split()
        n_docs, (lo, hi) = ((50, (300, 500)) if name in PLANTED else (250, (20, 60)))
        for _ in range(n_docs):
            n = int(rng.integers(lo, hi))
            topic = rng.choice(vocab, n)
            if name not in PLANTED:
                borrowed = rng.choice(TOPICS[PLANTED[int(rng.integers(len(PLANTED)))]].split(), n)
                topic = np.where(rng.random(n) < 1 / 3, borrowed, topic)
            words = np.where(rng.random(n) < 0.45, topic, rng.choice(FUNCTION, n))
            texts.append(" ".join(words))
            domains.append(name)
            ids.append(f"doc-{len(ids):05d}")
    perm = rng.permutation(len(ids))
    tbl = pa.table({"id": ids, "text": texts, "domain": domains}).take(pa.array(perm))
    os.makedirs(path)
    for k, lo in enumerate(range(0, tbl.num_rows, 500)):
        pq.write_table(tbl.slice(lo, 500), os.path.join(path, f"part-{k:05d}.parquet"))
    return tbl


def _planted_inputs(path, domains, planted, seed=0, n_models=40):
    """A loss matrix in which only the planted domains' loss tracks benchmark skill, with noise as the
    paper models it: the error a monotone non-linear function of a single index (logistic link) plus
    noise, heavy-tailed (Student t, 3 degrees of freedom) noise on every loss, and outlier models whose
    loss is shifted on every domain (another tokenizer, a broken checkpoint)."""
    rng = np.random.default_rng(seed)
    ability = rng.normal(size=n_models)   # lowers every loss
    skill = rng.normal(size=n_models)     # lowers the planted domains' loss only
    error = 1 / (1 + np.exp(0.8 * ability + 1.2 * skill + rng.normal(0, 0.3, n_models)))
    inf = np.isin(domains, planted)
    X = (rng.uniform(0.8, 1.6, len(domains))[None, :] - 0.05 * ability[:, None]
         - 0.06 * skill[:, None] * inf[None, :] + 0.02 * rng.standard_t(3, size=(n_models, len(domains))))
    X[:3] += rng.uniform(0.5, 1.0, size=(3, 1))
    X = np.maximum(X, 0.05)
    models = [f"lm-{i:02d}" for i in range(n_models)]
    pq.write_table(pa.table({"domain": domains, **{m: X[i] for i, m in enumerate(models)}}), path / "losses.parquet")
    (path / "errors.csv").write_text("model,error\n" + "".join(f"{m},{e:.6f}\n" for m, e in zip(models, error)))
    return str(path / "losses.parquet"), str(path / "errors.csv")


def test_budget_about_the_planted_domains_keeps_them(tmp_path):
    """Three planted domains of long documents and a document budget about their size: the include
    keys are counted in documents, like the budget, so the three fill it, not the top one alone."""
    pool = tmp_path / "pool"
    tbl = _long_and_short_pool(str(pool))
    domains = sorted(set(tbl.column("domain").to_pylist()))
    losses, errors = _planted_inputs(tmp_path, domains, PLANTED)
    planted_docs = int(np.isin(tbl.column("domain").to_pylist(), PLANTED).sum())
    keep = round(planted_docs / tbl.num_rows, 2)
    stage = {"losses": losses, "errors": errors, "key": "domain", "keep": keep}
    m = run_pipeline(_cfg(pool, tmp_path / "out", stage, workers=2, scores=False))
    met = m["stages"][-1]["metrics"]
    assert {t["key"] for t in met["top_keys"][:3]} == set(PLANTED)
    kept = _kept_domains(tmp_path / "out")
    share = np.isin(kept, PLANTED).mean()
    print(f"keep {keep}: {len(kept)} kept, planted share {share:.3f}, include keys {met['include_keys']}, "
          f"budget share from include keys {met['budget_share_from_include_keys']:.3f}")
    assert len(kept) == round(keep * tbl.num_rows)
    assert share >= 0.8
    assert met["include_keys"] >= 3 and met["budget_share_from_include_keys"] >= 0.8
    # a word budget about their size: the caps count words, and the same three fill it
    words = sum(len(t.split()) for t, d in zip(tbl.column("text").to_pylist(), tbl.column("domain").to_pylist())
                if d in PLANTED)
    stage_words = {k: v for k, v in stage.items() if k != "keep"}
    m = run_pipeline(_cfg(pool, tmp_path / "out_words", dict(stage_words, tokens=words), scores=False))
    met = m["stages"][-1]["metrics"]
    share = np.isin(_kept_domains(tmp_path / "out_words"), PLANTED).mean()
    print(f"tokens {words}: planted share {share:.3f}")
    assert met["budget_unit"] == "tokens" and share >= 0.8


def test_keys_missing_from_pool(sample_dir, tmp_path):
    info = write_example_inputs(str(tmp_path / "inputs"), ["law", "sports", "cooking", "no-such-domain"], seed=0,
                                informative=["law"])
    stage = {"losses": info["losses"], "errors": info["errors"], "key": "domain", "keep": 0.3}
    with pytest.raises(DataError, match="1 of 4 loss-matrix keys are not 'domain' values of the pool.*"
                                        "'no-such-domain'.*missing_keys: drop"):
        run_pipeline(_cfg(sample_dir / "pool", tmp_path / "o1", stage))
    m = run_pipeline(_cfg(sample_dir / "pool", tmp_path / "o2", dict(stage, missing_keys="drop")))
    assert m["stages"][-1]["metrics"]["keys_missing_from_pool"] == 1
    with pytest.raises(DataError, match="no column 'domian'"):
        run_pipeline(_cfg(sample_dir / "pool", tmp_path / "o3", dict(stage, key="domian")))


def test_example_config_runs_with_cli(tmp_path):
    from shardsift.sample import write_sample

    write_sample(str(tmp_path / "data" / "sample"), n_docs=600, n_shards=2, seed=0)
    (tmp_path / "configs").mkdir()  # a copy of the repository's layout: its paths are relative to configs/
    shutil.copy(os.path.join(ROOT, "configs", "perplexity.yaml"), tmp_path / "configs")
    proc = run_cli("select", tmp_path / "configs" / "perplexity.yaml", "--output", str(tmp_path / "out"),
                   "--workers", "1", "--quiet", "--json", cwd=str(tmp_path / "data"))
    man = json.loads(proc.stdout)
    st = man["stages"][-1]
    truth = json.loads((tmp_path / "data" / "sample" / "perplexity" / "truth.json").read_text())
    assert st["name"] == "perplexity_correlation" and st["kept"] == round(0.3 * st["docs_in"])
    assert {t["key"] for t in st["metrics"]["top_keys"][:len(truth["informative"])]} == set(truth["informative"])


@pytest.mark.slow
def test_real_corpus_domains(tmp_path):
    """The ../shared/corpora pool (18 labelled domains): a loss matrix in which three domains' loss
    tracks the benchmark error. They hold ~7% of the documents and ~20% of the words; a budget of 7%
    of the documents should keep mostly their documents."""
    pool = corpora_path("pool")
    informative = ["encyclopedia", "legal_contract", "speech_political"]
    info = write_example_inputs(str(tmp_path / "inputs"), pool, seed=2, informative=informative, n_models=40)
    stage = {"losses": info["losses"], "errors": info["errors"], "key": "domain", "keep": 0.07,
             "max_train_docs": 8000, "max_chars": 2000}
    m = run_pipeline(_cfg(pool, tmp_path / "out", stage, workers=2, scores=False))
    met = m["stages"][-1]["metrics"]
    top = {t["key"] for t in met["top_keys"][:3]}
    print("top keys:", met["top_keys"][:5], "holdout P/R:", met["holdout_precision"], met["holdout_recall"])
    assert top == set(informative)
    kept = _kept_domains(tmp_path / "out")
    share = np.isin(kept, informative).mean()
    print(f"kept {len(kept)} docs, informative share {share:.3f}, budget share from include keys "
          f"{met['budget_share_from_include_keys']:.3f}")
    assert share > 0.8 and met["budget_share_from_include_keys"] > 0.8
