"""perplexity_correlation: estimator/projection math, input checks, the fastText filter end to end."""
import json
import os
import warnings

import numpy as np
import pyarrow as pa
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


def test_decide_token_budget_and_count():
    sel = resolve("perplexity_correlation")(losses="l", errors="e", tokens=100)
    p = np.array([0.9, 0.1, 0.8, 0.8, 0.5])
    words = np.array([60, 10, 30, 20, 5])
    s = Scores({"score": p, "n_words": words, "n_bytes": words * 5, "row": np.arange(5)}, np.array([0, 5]), ["a"])
    dec = sel.decide(s)
    # most likely first (ties by position): 0 (60), 2 (90), 3 (110 > 100) -> stop
    assert dec.keep.tolist() == [True, False, True, False, False]
    assert dec.metrics["kept_words"] == 90
    sel_n = resolve("perplexity_correlation")(losses="l", errors="e", n=3)
    assert sel_n.decide(s).keep.tolist() == [True, False, True, True, False]


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
    kept = _kept_domains(out1)
    share = np.isin(kept, INFORMATIVE).mean()
    pool_dom = pads.dataset(str(sample_dir / "pool")).to_table(columns=["domain"]).column("domain").to_pylist()
    base = np.isin(pool_dom, INFORMATIVE).mean()
    print(f"informative share: kept {share:.3f}, pool {base:.3f}")
    assert share > 0.9 and share > 2 * base
    assert m["stages"][-1]["kept"] == round(0.3 * m["stages"][-1]["docs_in"])
    assert os.path.exists(out1 / "models") and any(
        f.endswith("fasttext.bin") for _, _, fs in os.walk(out1 / "models") for f in fs)

    # two workers give the same bytes
    out2 = tmp_path / "out2"
    run_pipeline(_cfg(sample_dir / "pool", out2, stage, workers=2))
    assert file_digests(out1 / "data") == file_digests(out2 / "data")

    # the saved classifier filters a pool again without the loss matrix, with the same result
    model_path = next(os.path.join(d, f) for d, _, fs in os.walk(out1 / "models") for f in fs
                      if f.endswith("fasttext.bin"))
    out3 = tmp_path / "out3"
    m3 = run_pipeline(_cfg(sample_dir / "pool", out3, {"model": model_path, "keep": 0.3}))
    assert m3["stages"][-1]["metrics"]["trained"] is False
    assert file_digests(out1 / "data") == file_digests(out3 / "data")


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
    proc = run_cli("select", os.path.join(ROOT, "configs", "perplexity.yaml"), "--output", str(tmp_path / "out"),
                   "--workers", "1", "--quiet", "--json", cwd=str(tmp_path))
    man = json.loads(proc.stdout)
    st = man["stages"][-1]
    truth = json.loads((tmp_path / "data" / "sample" / "perplexity" / "truth.json").read_text())
    assert st["name"] == "perplexity_correlation" and st["kept"] == round(0.3 * st["docs_in"])
    assert {t["key"] for t in st["metrics"]["top_keys"][:len(truth["informative"])]} == set(truth["informative"])


@pytest.mark.slow
def test_real_corpus_domains(tmp_path):
    """The ../shared/corpora pool (18 labelled domains): a loss matrix in which three domains' loss
    tracks the benchmark error; the filter should keep mostly their documents."""
    pool = corpora_path("pool")
    informative = ["encyclopedia", "legal_contract", "speech_political"]
    info = write_example_inputs(str(tmp_path / "inputs"), pool, seed=2, informative=informative, n_models=40)
    # the three domains hold ~20% of the words and ~5% of the documents: label keys up to 20% of the
    # words include, keep 5% of the documents
    stage = {"losses": info["losses"], "errors": info["errors"], "key": "domain", "keep": 0.05, "target_ratio": 0.2,
             "max_train_docs": 8000, "max_chars": 2000}
    m = run_pipeline(_cfg(pool, tmp_path / "out", stage, workers=2, scores=False))
    met = m["stages"][-1]["metrics"]
    top = {t["key"] for t in met["top_keys"][:3]}
    print("top keys:", met["top_keys"][:5], "holdout P/R:", met["holdout_precision"], met["holdout_recall"])
    assert top == set(informative)
    kept = _kept_domains(tmp_path / "out")
    share = np.isin(kept, informative).mean()
    print(f"kept {len(kept)} docs, informative share {share:.3f}")
    assert share > 0.8
