"""Tests of the DSIR selector: features, weights, Gumbel top-k, exactness, errors, end to end."""
from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from dsir_fakes import FakeDecide, FakeFit, score_all
from fnv import fnv1a64

from shardsift.api import Scores
from shardsift.errors import ConfigError, DataError
from shardsift.selectors import resolve
from shardsift.selectors.dsir import DSIRSelector, featurize, log_probs

CORPORA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "corpora")
if not os.path.isdir(CORPORA):
    CORPORA = "/work/shared/corpora"

M64 = (1 << 64) - 1
WORDS = ["star", "planet", "orbit", "galaxy", "court", "judge", "contract", "team", "player", "goal", "recipe", "oven", "flour", "the", "a", "of", "and", "to", "in", "is", "was"]


def _mix64(h: int) -> int:
    h ^= h >> 30
    h = (h * 0xBF58476D1CE4E5B9) & M64
    h ^= h >> 27
    h = (h * 0x94D049BB133111EB) & M64
    h ^= h >> 31
    return h


def py_ngram_hash(tokens: list[str]) -> int:
    """Pure-Python twin of shardsift.text.ngrams: order 1 is the token hash, higher orders chain."""
    hs = [fnv1a64(t.encode()) for t in tokens]
    if len(hs) == 1:
        return hs[0]
    h = len(hs)
    for x in hs:
        h = _mix64((h * 0x9E3779B97F4A7C15 + x) & M64)
    return h


def py_tokens(text: str) -> list[str]:
    return re.findall(r"\w+|[^\w\s]+", text.lower())


def corpus(n, seed=0, topic_bias=None):
    rng = np.random.default_rng(seed)
    texts = []
    for i in range(n):
        m = int(rng.integers(5, 60))
        p = np.ones(len(WORDS))
        if topic_bias is not None:
            p[topic_bias] *= 6
        w = rng.choice(WORDS, size=m, p=p / p.sum())
        texts.append(" ".join(w) + ("." if i % 3 else ", fine!"))
    return texts


def table(texts, prefix="d"):
    return pa.table({"id": [f"{prefix}{i}" for i in range(len(texts))], "text": texts})


def shards_of(tbl, n):
    bounds = np.linspace(0, tbl.num_rows, n + 1).astype(int)
    return [tbl.slice(a, b - a) for a, b in zip(bounds[:-1], bounds[1:])]


def fitted(pool_shards, target_tbl, seed=0, **kw):
    kw.setdefault("min_tokens", 0)
    if "n" not in kw and kw.get("mode") != "threshold":
        kw.setdefault("keep", 0.5)
    if not {"target", "targets", "estimator"} & set(kw):
        kw["target"] = target_tbl
    sel = DSIRSelector(**kw)
    sel.fit_metrics_ = sel.fit(FakeFit(pool_shards, seed=seed))   # as the engine stores them
    return sel


def run_select(sel, shards, batch=1000):
    sc = score_all(sel, shards, batch=batch)
    return sc, sel.decide(sc, FakeDecide(shards))


# ---------------------------------------------------------------------------------------------
def test_registered():
    assert resolve("dsir") is DSIRSelector


def test_features_match_pure_python_hash():
    text = "The Star, orbits... a planet; Über-Galaxy 42"
    feats, off, ntok = featurize(pa.array([text]), ngram_order=2)
    toks = py_tokens(text)
    assert ntok[0] == len(toks)
    want = [py_ngram_hash([t]) for t in toks] + [py_ngram_hash(toks[i:i + 2]) for i in range(len(toks) - 1)]
    assert [int(x) for x in feats] == want


def test_hashing_stable_across_processes():
    code = ("import pyarrow as pa;from shardsift.selectors.dsir import featurize;"
            "f,o,_=featurize(pa.array(['Hello, World! a b c', 'zeta eta']), ngram_order=3);"
            "print(','.join(str(int(x) % 10000) for x in f))")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": str(s)}).stdout.strip() for s in (1, 2)}
    f, _, _ = featurize(pa.array(["Hello, World! a b c", "zeta eta"]), ngram_order=3)
    assert outs == {",".join(str(int(x) % 10000) for x in f)}


def test_weights_equal_direct_numpy_formula():
    B, a = 64, 0.5
    pool = corpus(40, seed=1)
    target = corpus(30, seed=2, topic_bias=[0, 1, 2])
    sel = fitted(shards_of(table(pool), 2), table(target, "t"), buckets=B, smoothing=a, min_tokens=0)

    def counts(texts):
        c = np.zeros((len(texts), B))
        for i, t in enumerate(texts):
            toks = py_tokens(t)
            for g in [toks[j:j + 1] for j in range(len(toks))] + [toks[j:j + 2] for j in range(len(toks) - 1)]:
                c[i, py_ngram_hash(g) % B] += 1
        return c

    cp, ct = counts(pool), counts(target)
    np.testing.assert_array_equal(sel.raw_counts_, cp.sum(0))
    np.testing.assert_array_equal(sel.target_counts_[0], ct.sum(0))
    pt = (ct.sum(0) + a) / (ct.sum() + a * B)
    pr = (cp.sum(0) + a) / (cp.sum() + a * B)
    want = cp @ (np.log(pt) - np.log(pr))
    sc = score_all(sel, shards_of(table(pool), 2), batch=7)
    np.testing.assert_allclose(sc["score"], want, rtol=1e-10, atol=1e-10)
    # length_normalize divides by the feature count and scales to norm_length
    sel2 = fitted(shards_of(table(pool), 2), table(target, "t"), buckets=B, smoothing=a, min_tokens=0,
                  length_normalize=True, norm_length=10)
    np.testing.assert_allclose(score_all(sel2, [table(pool)])["score"], want / cp.sum(1) * 10, rtol=1e-10)
    sel3 = fitted(shards_of(table(pool), 2), table(target, "t"), buckets=B, smoothing=a, min_tokens=0,
                  length_normalize="sqrt", norm_length=10)
    np.testing.assert_allclose(score_all(sel3, [table(pool)])["score"], want * np.sqrt(10 / cp.sum(1)),
                               rtol=1e-10)


def _scores(logw, ids=None, shards=1):
    n = len(logw)
    ids = ids if ids is not None else [f"doc{i}" for i in range(n)]
    from shardsift.columns import hash_strings
    offs = np.linspace(0, n, shards + 1).astype(np.int64)
    return Scores({"score": np.asarray(logw, float), "dsir_tokens": np.full(n, 100),
                   "idhash": hash_strings(pa.array(ids)), "row": np.arange(n), "n_words": np.full(n, 100),
                   "n_bytes": np.full(n, 500)}, offs, [f"s{i}" for i in range(shards)])


def _bare(seed, **kw):
    sel = DSIRSelector(target="unused", metrics=False, min_tokens=0, **kw)
    sel.seed_ = seed
    sel.target_weights_ = np.array([1.0])
    sel.target_names_ = ["t"]
    return sel


def test_gumbel_topk_selects_in_proportion_to_weights():
    w = np.array([1.0, 2.0, 3.0, 4.0, 10.0])
    sc = _scores(np.log(w))
    draws = np.array([np.flatnonzero(_bare(seed, n=1).decide(sc, None).keep)[0] for seed in range(3000)])
    freq = np.bincount(draws, minlength=len(w)) / len(draws)
    expected = w / w.sum()
    chi2 = len(draws) * np.sum((freq - expected) ** 2 / expected)
    assert chi2 < 18.5, (freq, expected)  # chi-square, 4 dof: p = 0.001
    # sampling without replacement: with k = 2 the heaviest item is in nearly every draw, never twice
    two = [np.flatnonzero(_bare(seed, n=2).decide(sc, None).keep) for seed in range(300)]
    assert all(len(t) == 2 for t in two)
    assert np.mean([4 in t for t in two]) > 0.7


def test_gumbel_deterministic_and_layout_free():
    rng = np.random.default_rng(0)
    logw = rng.normal(size=500) * 3
    ids = [f"x{i}" for i in range(500)]
    a = _bare(7, keep=0.1).decide(_scores(logw, ids), None).keep
    perm = rng.permutation(500)
    b = _bare(7, keep=0.1).decide(_scores(logw[perm], [ids[i] for i in perm], shards=3), None).keep
    assert a.sum() == 50
    assert set(np.flatnonzero(a)) == set(perm[b])
    c = _bare(8, keep=0.1).decide(_scores(logw, ids), None).keep
    assert (a != c).any()


def test_keep_and_n_exact_across_shards():
    pool = table(corpus(301, seed=3))
    target = table(corpus(50, seed=4, topic_bias=[3, 4]), "t")
    results = []
    for n_shards, batch in ((1, 1000), (3, 17), (5, 64)):
        shards = shards_of(pool, n_shards)
        sel = fitted(shards, target, keep=0.2)
        sc, dec = run_select(sel, shards, batch=batch)
        assert dec.keep.sum() == round(0.2 * 301)
        ids = np.concatenate([s["id"].to_numpy(zero_copy_only=False) for s in shards])
        results.append(set(ids[dec.keep]))
        sel_n = fitted(shards, target, n=37, mode="topk")
        assert run_select(sel_n, shards, batch=batch)[1].keep.sum() == 37
    assert results[0] == results[1] == results[2]


def test_topk_and_threshold_modes():
    pool = shards_of(table(corpus(200, seed=5)), 2)
    target = table(corpus(50, seed=6, topic_bias=[0, 1]), "t")
    sel = fitted(pool, target, n=20, mode="topk")
    sc, dec = run_select(sel, pool)
    s = sc["score"]
    assert s[dec.keep].min() >= s[~dec.keep].max()
    thr = float(np.median(s))
    sel_t = fitted(pool, target, mode="threshold", threshold=thr)
    _, dec_t = run_select(sel_t, pool)
    np.testing.assert_array_equal(dec_t.keep, s >= thr)


def test_min_tokens_and_reasons():
    texts = ["a b"] * 5 + corpus(45, seed=7)
    pool = [table(texts)]
    sel = fitted(pool, table(corpus(20, seed=8), "t"), keep=0.5, min_tokens=4)
    _, dec = run_select(sel, pool)
    assert not dec.keep[:5].any()
    assert set(dec.reason[:5]) == {"too_short"}
    assert dec.metrics["too_short"] == 5


def test_kl_metrics_reported():
    pool = shards_of(table(corpus(400, seed=9) + corpus(100, seed=10, topic_bias=[0, 1, 2])), 2)
    target = table(corpus(100, seed=11, topic_bias=[0, 1, 2]), "t")
    sel = fitted(pool, target, keep=0.2)
    _, dec = run_select(sel, pool)
    m = dec.metrics
    for key in ("kl_target_raw", "kl_target_selected", "kl_target_random", "kl_reduction",
                "kl_reduction_random"):
        assert np.isfinite(m[key]), key
    assert m["kl_reduction"] > 0
    assert m["kl_reduction"] > m["kl_reduction_random"]
    json.dumps(m)


def test_several_targets_quotas_without_repeats():
    base = corpus(300, seed=12)
    pool = shards_of(table(base), 3)
    t1 = table(corpus(40, seed=13, topic_bias=[0, 1]), "a")
    t2 = table(corpus(40, seed=14, topic_bias=[7, 8]), "b")
    sel = fitted(pool, None, targets=[{"path": t1, "weight": 3}, {"path": t2, "weight": 1}], n=40)
    sc, dec = run_select(sel, pool)
    assert dec.keep.sum() == 40
    tgt = dec.extra["target"]
    assert (tgt[dec.keep] >= 0).all() and (tgt[~dec.keep] == -1).all()
    assert np.bincount(tgt[dec.keep]).tolist() == [30, 10]
    assert sc["logw"].shape == (300, 2)


def test_estimator_roundtrip(tmp_path):
    pool = shards_of(table(corpus(120, seed=15)), 2)
    target = table(corpus(30, seed=16, topic_bias=[2]), "t")
    sel = DSIRSelector(target=target, keep=0.3, buckets=512, min_tokens=0)
    fit_metrics = sel.fit(FakeFit(pool, work_dir=str(tmp_path / "fit")))
    files = sel.fitted_files()
    assert list(files) == ["dsir_estimator.npz"] and os.path.exists(files["dsir_estimator.npz"])
    loaded = DSIRSelector(estimator=str(tmp_path / "fit"), keep=0.3, min_tokens=0)
    loaded_metrics = loaded.fit(FakeFit(pool, work_dir=str(tmp_path / "fit2")))
    assert loaded.buckets == 512  # the feature space comes from the estimator
    assert loaded_metrics == {"estimator": files["dsir_estimator.npz"], **fit_metrics}
    a, b = score_all(sel, pool), score_all(loaded, pool)
    np.testing.assert_allclose(a["score"], b["score"])
    with pytest.raises(DataError, match="not found"):
        DSIRSelector(estimator=str(tmp_path / "nope.npz"), keep=0.3).fit(FakeFit(pool))


def test_config_errors():
    with pytest.raises(ConfigError, match="not both"):
        DSIRSelector(target="x", keep=0.1, n=5)
    with pytest.raises(ConfigError, match="keep"):
        DSIRSelector(target="x", keep=1.5)
    with pytest.raises(ConfigError, match="target"):
        DSIRSelector(keep=0.1)
    with pytest.raises(ConfigError, match="not target and estimator"):
        DSIRSelector(target="x", estimator="y", keep=0.1)
    with pytest.raises(ConfigError, match="threshold"):
        DSIRSelector(target="x", mode="threshold", keep=0.1)
    with pytest.raises(ConfigError, match="length_normalize"):
        DSIRSelector(target="x", keep=0.1, length_normalize="log")
    with pytest.raises(ConfigError, match="weight"):
        DSIRSelector(targets=[{"path": "a", "weight": 1}, {"path": "b"}], keep=0.1)
    pool = [table(corpus(10, seed=17))]
    sel = fitted(pool, table(corpus(5, seed=18), "t"), n=11)
    with pytest.raises(ConfigError, match=r"dsir\.n: 11 is larger than the 10"):
        run_select(sel, pool)


def test_data_errors(tmp_path):
    pool = [table(corpus(10, seed=19))]
    empty = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"id": pa.array([], pa.string()), "text": pa.array([], pa.string())}), empty)
    with pytest.raises(DataError, match="is empty"):
        fitted(pool, None, target={"path": str(empty)}, keep=0.5)
    short = tmp_path / "short.parquet"
    pq.write_table(pa.table({"id": ["s"], "text": ["two words"]}), short)
    with pytest.raises(DataError, match="none of the 1 documents"):
        fitted(pool, None, target={"path": str(short)}, keep=0.5, min_tokens=5)
    with pytest.raises(DataError, match="no files match"):
        fitted(pool, None, target={"path": str(tmp_path / "missing-*.parquet")}, keep=0.5)


def test_length_normalize_prefers_shorter_documents():
    rng = np.random.default_rng(20)
    topic, other, func = WORDS[:3], WORDS[3:12], WORDS[15:]
    # long documents are mildly on-topic, short ones strongly, the rest off-topic: unnormalised
    # weights favour the long ones, normalised weights the short ones
    long_docs = [" ".join(rng.choice(topic + func * 3, 400)) for _ in range(20)]
    short_docs = [" ".join(rng.choice(topic * 3 + func, 40)) for _ in range(20)]
    off_docs = [" ".join(rng.choice(other + func, 100)) for _ in range(300)]
    pool = [table(long_docs + short_docs + off_docs)]
    target = table([" ".join(rng.choice(topic + func, 50)) for _ in range(40)], "t")
    kw = dict(n=20, mode="topk", buckets=512)
    plain = run_select(fitted(pool, target, **kw), pool)[1].keep
    norm = run_select(fitted(pool, target, length_normalize=True, **kw), pool)[1].keep
    assert plain[:20].sum() > 15      # mostly long
    assert norm[20:40].sum() > 15     # mostly short


# -- end to end through the runner -----------------------------------------------------------------
def _write_parquet(dirpath, tbl, n_shards):
    os.makedirs(dirpath, exist_ok=True)
    for i, s in enumerate(shards_of(tbl, n_shards)):
        pq.write_table(s, os.path.join(dirpath, f"part-{i:05d}.parquet"))


def test_pipeline_end_to_end_workers(tmp_path):
    run_pipeline = pytest.importorskip("shardsift.engine.runner").run_pipeline
    pool = table(corpus(300, seed=21) + corpus(60, seed=22, topic_bias=[0, 1, 2]))
    _write_parquet(tmp_path / "pool", pool, 3)
    _write_parquet(tmp_path / "target", table(corpus(60, seed=23, topic_bias=[0, 1, 2]), "t"), 1)
    kept = []
    for workers in (1, 2):
        out = tmp_path / f"out{workers}"
        cfg = {"input": {"path": str(tmp_path / "pool")}, "output": {"path": str(out), "scores": True},
               "workers": workers, "seed": 3,
               "stages": [{"dsir": {"target": {"path": str(tmp_path / "target")}, "keep": 0.25,
                                    "min_tokens": 0, "buckets": 256}}]}
        man = run_pipeline(cfg, progress=False)
        st = [s for s in man["stages"] if s["name"] == "dsir"][0]
        assert st["kept"] == 90
        assert st["metrics"]["kl_reduction"] > st["metrics"]["kl_reduction_random"]
        assert os.path.exists(out / ".shardsift" / "models")
        assert glob.glob(str(out / ".shardsift" / "models" / "**" / "dsir_estimator.npz"), recursive=True)
        ids = pq.read_table(str(out / "data")).column("id").to_pylist()
        kept.append(sorted(ids))
    assert kept[0] == kept[1]


def test_pipeline_errors_are_one_line(tmp_path):
    run_pipeline = pytest.importorskip("shardsift.engine.runner").run_pipeline
    _write_parquet(tmp_path / "pool", table(corpus(20, seed=29)), 1)
    pq.write_table(pa.table({"id": pa.array([], pa.string()), "text": pa.array([], pa.string())}),
                   tmp_path / "empty.parquet")
    base = {"input": {"path": str(tmp_path / "pool")}, "output": {"path": str(tmp_path / "out")}}
    cases = [({"target": {"path": str(tmp_path / "none-*.parquet")}, "keep": 0.5}, DataError, "dsir.target"),
             ({"target": {"path": str(tmp_path / "empty.parquet")}, "keep": 0.5}, DataError, "is empty"),
             ({"target": str(tmp_path / "pool"), "n": 21}, ConfigError, "larger than the 20")]
    for stage, err, text in cases:
        with pytest.raises(err, match=text) as info:
            run_pipeline({**base, "stages": [{"dsir": stage}]}, overwrite=True, progress=False)
        assert "\n" not in str(info.value)


# -- real corpus -------------------------------------------------------------------------------------
def _real():
    pool_files = sorted(glob.glob(os.path.join(CORPORA, "pool", "*.parquet")))
    target = os.path.join(CORPORA, "target", "wikipedia.parquet")
    if not pool_files or not os.path.exists(target):
        pytest.skip(f"shared corpora not found at {CORPORA}")
    return pool_files, target


@pytest.mark.slow
def test_real_corpus_selects_encyclopedia():
    pool_files, target = _real()
    shards = [pq.read_table(f, columns=["id", "text", "domain"]) for f in pool_files]
    domain = np.concatenate([s["domain"].to_numpy(zero_copy_only=False) for s in shards])
    shards = [s.drop(["domain"]) for s in shards]  # the selector never sees the label
    sel = DSIRSelector(target={"path": target}, keep=0.04)
    sel.fit(FakeFit(shards))
    sc, dec = run_select(sel, shards)
    share = float((domain[dec.keep] == "encyclopedia").mean())
    print(f"\nDSIR 4% toward Wikipedia: {dec.keep.sum()} docs, encyclopedia share {share:.3f}, "
          f"KL reduction {dec.metrics['kl_reduction']:.4f} (random {dec.metrics['kl_reduction_random']:.4f})")
    assert share > 0.5
    assert dec.metrics["kl_reduction"] > 0.1 > dec.metrics["kl_reduction_random"]


# -- the reference package -------------------------------------------------------------------------
def test_matches_reference_package(tmp_path, monkeypatch):
    """Same tokenization (ASCII text: nltk's wordpunct equals ours), same bucket hash (ours, patched into
    the reference) and same smoothing (ours, fed to the reference): the log weights must agree."""
    hd = pytest.importorskip("data_selection.hashed_ngram_dsir", reason="data-selection (bench extra)")
    B, a = 1000, 1.0
    pool = corpus(150, seed=24) + corpus(50, seed=25, topic_bias=[0, 5, 9])
    target = corpus(80, seed=26, topic_bias=[0, 5, 9])
    for name, texts in (("raw", pool), ("target", target)):
        with open(tmp_path / f"{name}.jsonl", "w") as f:
            f.writelines(json.dumps({"text": t}) + "\n" for t in texts)
    monkeypatch.setattr(hd, "hash_buckets", lambda text, num_buckets=10000:
                        py_ngram_hash(text.split(" ")) % num_buckets)
    ref = hd.HashedNgramDSIR([str(tmp_path / "raw.jsonl")], [str(tmp_path / "target.jsonl")],
                             cache_dir=str(tmp_path / "cache"), num_proc=1, num_buckets=B, min_example_length=0)
    raw_c = ref._fit_bow(ref.raw_datasets)
    tgt_c = ref._fit_bow(ref.target_datasets)
    ref.log_diff = log_probs(tgt_c, a) - log_probs(raw_c, a)
    ref.compute_importance_weights()
    ref_w = np.load(tmp_path / "cache" / "log_importance_weights" / "0.npy")

    sel = fitted([table(pool)], table(target, "t"), buckets=B, smoothing=a, min_tokens=0, keep=0.1)
    np.testing.assert_array_equal(sel.raw_counts_, raw_c)
    ours = score_all(sel, [table(pool)])["score"]
    from scipy.stats import spearmanr
    assert spearmanr(ours, ref_w).statistic > 0.99
    np.testing.assert_allclose(ours, ref_w, rtol=1e-9, atol=1e-9)


def test_fit_returns_metrics_and_takes_the_seed_from_the_context():
    pool = [table(corpus(200, seed=30))]
    target = table(corpus(30, seed=31, topic_bias=[1]), "t")
    sel = DSIRSelector(target=target, keep=0.2, min_tokens=0, raw_tokens=1500)
    sel.seed_ = 99   # a stale value: fit takes ctx.seed
    metrics = sel.fit(FakeFit(pool, seed=4))
    assert sel.seed_ == 4
    assert metrics["raw_docs"] < 200 and metrics["target_docs"] == 30 and metrics["raw_sample_rate"] < 1
    assert not hasattr(sel, "fit_metrics_")   # the engine stores what fit returns
    again = fitted(pool, target, seed=4, keep=0.2, raw_tokens=1500)
    np.testing.assert_array_equal(sel.raw_counts_, again.raw_counts_)
    other = fitted(pool, target, seed=5, keep=0.2, raw_tokens=1500)
    assert (other.raw_counts_ != sel.raw_counts_).any()   # the raw subsample follows the seed
    assert DSIRSelector.needs_fit and sel.capabilities().scope == "global"


def test_raw_token_budget_is_layout_free():
    pool = table(corpus(400, seed=27))
    target = table(corpus(40, seed=28), "t")
    a = fitted([pool], target, raw_tokens=3000)
    b = fitted(shards_of(pool, 4), target, raw_tokens=3000)
    assert 0 < a.fit_metrics_["raw_sample_rate"] < 1
    assert a.fit_metrics_["raw_docs"] < 400
    np.testing.assert_array_equal(a.raw_counts_, b.raw_counts_)
    full = fitted([pool], target)
    assert full.raw_counts_.sum() > a.raw_counts_.sum()


def test_token_budget_is_exact_per_target():
    """``tokens``: one target in topk takes the ranked prefix that fits; with two targets each takes
    its weighted share of the budget, and the total never passes it."""
    pool = shards_of(table(corpus(300, seed=21) + corpus(100, seed=22, topic_bias=[0, 1, 2])), 2)
    target = table(corpus(80, seed=23, topic_bias=[0, 1, 2]), "t")
    sel = fitted(pool, target, keep=None, tokens="2K", mode="topk")
    sc, dec = run_select(sel, pool)
    toks = np.asarray(sc["n_tokens"])
    order = np.lexsort((np.asarray(sc["idhash"]), -np.asarray(sc["score"])))
    k = int(dec.keep.sum())
    assert set(np.flatnonzero(dec.keep)) == set(order[:k]) and 0 < k < len(order)
    assert toks[order[:k]].sum() <= 2000 < toks[order[:k + 1]].sum()
    assert dec.metrics["selected_tokens"] == toks[dec.keep].sum()
    with pytest.raises(ConfigError, match="give one of keep"):
        DSIRSelector(target="unused", keep=0.5, tokens=100)
    t1 = table(corpus(40, seed=13, topic_bias=[0, 1]), "a")
    t2 = table(corpus(40, seed=14, topic_bias=[7, 8]), "b")
    sel = fitted(pool, None, targets=[{"path": t1, "weight": 3}, {"path": t2, "weight": 1}], keep=None,
                 tokens="1.6K")
    sc, dec = run_select(sel, pool)
    toks, tgt = np.asarray(sc["n_tokens"]), dec.extra["target"]
    got = [int(toks[dec.keep & (tgt == t)].sum()) for t in (0, 1)]
    assert 0 < got[0] <= 1200 and 0 < got[1] <= 400 and (tgt[~dec.keep] == -1).all()
    assert got[0] > 1200 - toks.max() and got[1] > 400 - toks.max()  # each share filled to within a document


def test_median_length_from_shard_histograms_is_numpys_median():
    """The fit's median document length comes from per-shard (length, count) histograms, so the
    driver holds no per-document array; it is np.median of the lengths, exactly."""
    from shardsift.selectors.dsir.estimator import median_of_histograms

    rng = np.random.default_rng(0)
    for _ in range(300):
        parts = [rng.integers(1, 50, rng.integers(0, 20)) for _ in range(rng.integers(1, 4))]
        lengths = np.concatenate(parts)
        got = median_of_histograms([np.unique(p, return_counts=True) for p in parts])
        assert got == (float(np.median(lengths)) if len(lengths) else None)


def test_counts_of_subsets_in_one_pass_equal_each_subset_counted_alone():
    """count_subsets (the KL recount: the selection and its random baseline read back together) gives
    each subset the histogram count_docs gives it alone, documents with no token included."""
    from conftest import as_docs

    from shardsift.selectors.dsir.estimator import count_docs, count_subsets

    texts = corpus(300, seed=31) + ["", "   ", "x"]
    rng = np.random.default_rng(0)
    flags = rng.random((2, len(texts))) < [[0.3], [0.6]]
    kw = {"buckets": 512, "ngram_order": 2, "tokenizer": "wordpunct", "lowercase": True, "chunk_tokens": None,
          "min_tokens": 0}
    batches = [as_docs(texts[i:i + 64]) for i in range(0, len(texts), 64)]
    got = count_subsets(batches, flags, **kw)
    for i in range(2):
        alone = count_docs([as_docs([t for t, f in zip(texts, flags[i]) if f])], **kw)["counts"]
        assert got[i].sum() > 0 and np.array_equal(got[i], alone), i
