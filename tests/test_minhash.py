"""minhash_dedup: signatures, S-curve, clusters across shards, spill path, runner, word tokenizer."""
import glob
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dedup_fakes import VOCAB, edit, jaccard, make_docs, positions, random_doc, run_global, write_corpus

from shardsift.errors import ConfigError, DataError
from shardsift.selectors import resolve
from shardsift.selectors.exact import ExactDedup
from shardsift.selectors.minhash import (
    MERSENNE61,
    MinHashDedup,
    candidate_probability,
    choose_bands,
    minhash_signatures,
    permutations,
    shingle_hashes,
)
from shardsift.selectors.minhash.lsh import _runs
from shardsift.selectors.minhash.shingles import _sorted_sets
from shardsift.text import tokenize


@pytest.fixture(scope="module")
def planted():
    """Three shards: originals, near duplicates of them at known Jaccard in other shards, noise."""
    rng = np.random.default_rng(42)
    origs = [" ".join(random_doc(rng)) for _ in range(60)]
    shard0 = list(origs[:30]) + [" ".join(random_doc(rng)) for _ in range(20)]
    shard1 = list(origs[30:])
    shard2 = []
    pairs_dup, pairs_far = [], []
    for k, o in enumerate(origs):
        w = o.split()
        if k % 3 == 0:
            d = " ".join(edit(rng, w, 0.01))         # J ~ 0.9
        elif k % 3 == 1:
            d = " ".join(edit(rng, w, 0.005)).upper()  # J ~ 0.95, case changed
        else:
            d = " ".join(edit(rng, w, 0.12))         # J ~ 0.3: not a duplicate
        shard = shard2 if k % 2 else shard1
        shard.append(d)
        (pairs_dup if jaccard(o, d) >= 0.8 else pairs_far).append((o, d))
    shard2 += [" ".join(random_doc(rng)) for _ in range(15)]
    shard2.append("short doc")
    shard2.append("")
    return [shard0, shard1, shard2], pairs_dup, pairs_far


# -- signatures ----------------------------------------------------------------------------

def test_word_shingles():
    texts = pa.array(["The quick, brown fox jumps over the lazy dog again",
                      "the QUICK brown\n\n fox   jumps over the lazy dog again!", "a b", "", "b a"],
                     pa.large_string())
    sh, off = shingle_hashes(texts, ngram=3)
    assert np.diff(off).tolist() == [8, 8, 1, 0, 1]  # m - n + 1; 2 tokens < n: one shingle of all
    assert np.array_equal(sh[off[0]:off[1]], sh[off[1]:off[2]])  # case, whitespace, punctuation
    assert sh[off[2]] != sh[off[4]]  # order matters
    assert len(set(sh[off[0]:off[1]].tolist())) == 8
    # with punctuation kept, tokens are whitespace-separated runs: "quick," differs from "quick"
    sk, ok = shingle_hashes(texts, ngram=3, strip_punctuation=False)
    assert np.diff(ok).tolist() == [8, 8, 1, 0, 1]
    assert sk[0] != sh[0] and np.array_equal(sk[ok[0] + 2:ok[1]], sh[off[0] + 2:off[1]])
    # tokens are text.tokenize's: one-word shingles are the token hashes, mixed
    one, _ = shingle_hashes(texts[:1], ngram=1)
    tok, _ = tokenize(texts[:1], mode="word")
    assert len(set(one.tolist())) == len(set(tok.tolist())) == 9


def test_sorted_sets_match_numpy_unique():
    rng = np.random.default_rng(5)
    lens = rng.integers(0, 900, 300)
    off = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    sh = rng.integers(0, 2**64 - 1, off[-1], dtype=np.uint64, endpoint=True)
    sh[off[7]:off[7] + 50] = 9                                  # repeats
    sh[off[9]:off[10]] = np.tile(rng.integers(0, 2**63, 3, dtype=np.uint64), lens[9])[:lens[9]]  # periodic
    # two values in one bucket, interleaved: the insertion sort gives up and falls back to a full sort
    sh[off[11]:off[12]] = np.tile(np.array([2**40 + 1, 2**40], np.uint64), lens[11])[:lens[11]]
    data, doff = _sorted_sets(sh, off)
    for d in range(300):
        assert np.array_equal(data[doff[d]:doff[d + 1]], np.unique(sh[off[d]:off[d + 1]]))
    # the verification sets' 32-bit fingerprints: distinct high halves (the repeats above collapse too)
    sh[off[13]:off[13] + 40] = (sh[off[13]:off[13] + 40] | np.uint64(0xFFFFFFFF)) ^ np.uint64(7)  # same high half
    data, doff = _sorted_sets(sh, off, 32)
    for d in range(300):
        assert np.array_equal(data[doff[d]:doff[d + 1]], np.unique(sh[off[d]:off[d + 1]] >> np.uint64(32)))


def test_signature_is_exact_minhash_mod_mersenne():
    sel = MinHashDedup(bands=4, rows=2, num_perm=8, hash_seed=3, hash_family="mersenne")
    text = "one two three four five six seven eight nine ten"
    sig = sel.signatures(pa.array([text]))[0]
    sh, _ = shingle_hashes(pa.array([text]))
    a, b = permutations(8, 3, "mersenne")
    ref = [min((int(a[i]) * (int(x) % MERSENNE61) + int(b[i])) % MERSENNE61 for x in sh) for i in range(8)]
    assert [int(v) for v in sig] == ref


@pytest.mark.parametrize("strip", [True, False])
def test_signature_is_exact_minhash_multiply_shift(strip):
    # the fused word kernel gives exactly min over shingles of ((a*x + b) mod 2^64) >> 32
    sel = MinHashDedup(bands=4, rows=2, num_perm=8, hash_seed=3, strip_punctuation=strip,
                       hash_family="multiply_shift")
    texts = ["One two, three four five six seven eight nine ten.", "short one", "", "x " * 40,
             "Ünïcode wörds ÀND more of them here"]
    sig = sel.signatures(pa.array(texts))
    sh, off = shingle_hashes(pa.array(texts), strip_punctuation=strip)
    a, b = permutations(8, 3)
    for d, text in enumerate(texts):
        xs = [int(x) for x in sh[off[d]:off[d + 1]]]
        ref = [min([((int(a[i]) * x + int(b[i])) % 2**64) >> 32 for x in xs], default=2**32) for i in range(8)]
        assert [int(v) for v in sig[d]] == ref, text
    # and the CSR kernel (used for char shingles) agrees with the fused one
    assert np.array_equal(minhash_signatures(sh, off, 8, 3, "multiply_shift"), sig)


def _one_permutation_reference(xs, a, b, k):
    """One permutation hashing with optimal densification, spelled out in Python integers."""
    M = 2**64
    cur = [None] * k
    for x in xs:
        h = (int(a[0]) * x + int(b[0])) % M
        j = ((h >> 32) * k) >> 32
        v = h & 0xFFFFFFFF
        cur[j] = v if cur[j] is None else min(cur[j], v)
    if not xs:
        return [2**32] * k
    out = []
    for j in range(k):
        x, t = int(b[j]), 0
        while cur[((x >> 32) * k) >> 32 if t else j] is None:
            x, t = (x + int(a[j])) % M, t + 1
        out.append(cur[((x >> 32) * k) >> 32 if t else j])
    return out


@pytest.mark.parametrize("strip", [True, False])
def test_one_permutation_signature_is_densified_one_permutation_hashing(strip):
    # the default family: one hash per shingle into k bins, an empty bin takes the first filled bin
    # of its own probe sequence; the fused word kernel and the CSR kernel (char shingles) agree
    sel = MinHashDedup(bands=8, rows=4, num_perm=32, hash_seed=3, strip_punctuation=strip)
    assert sel.hash_family == "one_permutation"
    texts = ["One two, three four five six seven eight nine ten.", "short one", "", "x " * 40,
             "Ünïcode wörds ÀND more of them here", " ".join(f"w{i}" for i in range(300))]
    sig = sel.signatures(pa.array(texts))
    sh, off = shingle_hashes(pa.array(texts), strip_punctuation=strip)
    a, b = permutations(32, 3)
    for d, text in enumerate(texts):
        ref = _one_permutation_reference([int(x) for x in sh[off[d]:off[d + 1]]], a, b, 32)
        assert [int(v) for v in sig[d]] == ref, text
    assert (sig[5] < 2**32).all() and len(np.unique(sig[5])) > 24  # 296 shingles fill most of 32 bins
    assert len(np.unique(sig[1])) == 1  # one shingle: every bin densified from it
    assert np.array_equal(minhash_signatures(sh, off, 32, 3, "one_permutation"), sig)


def test_signature_independent_of_layout_and_batches(planted):
    shards, _, _ = planted
    texts = [t for s in shards for t in s]
    sel = MinHashDedup()
    whole = sel.signatures(pa.array(texts, pa.large_string()))
    pieces = np.concatenate([sel.signatures(pa.array(texts[lo:lo + 13], pa.large_string()))
                             for lo in range(0, len(texts), 13)])
    assert np.array_equal(whole, pieces)
    # a copy of the selector (as a worker process would load it) gives the same values
    import pickle

    again = pickle.loads(pickle.dumps(sel)).signatures(pa.array(texts[:5], pa.large_string()))
    assert np.array_equal(again, whole[:5])
    assert not np.array_equal(MinHashDedup(hash_seed=2).signatures(pa.array(texts[:5])), whole[:5])


@pytest.mark.parametrize("family", ["one_permutation", "multiply_shift", "mersenne"])
def test_estimated_jaccard_tracks_true(family):
    rng = np.random.default_rng(7)
    sel = MinHashDedup(num_perm=256, bands=256, rows=1, hash_family=family)
    errs, z = [], []
    for _ in range(150):
        w = random_doc(rng, 200)
        rate = rng.uniform(0.0, 0.15)
        a, b = " ".join(w), " ".join(edit(rng, w, rate))
        true = jaccard(a, b)
        sig = sel.signatures(pa.array([a, b]))
        est = float(np.mean(sig[0] == sig[1]))
        errs.append(est - true)
        sd = max(np.sqrt(true * (1 - true) / 256), 1e-3)
        z.append(abs(est - true) / sd)
    errs, z = np.array(errs), np.array(z)
    assert abs(errs.mean()) < 0.01          # unbiased
    assert np.mean(np.abs(errs)) < 0.03     # ~ sqrt(J(1-J)/256)
    assert np.mean(z < 3) > 0.95            # binomial spread


def test_s_curve_of_default_bands():
    b, r = MinHashDedup().band_shape()
    assert b * r <= 128
    assert candidate_probability(0.8, b, r) > 0.95
    assert candidate_probability(0.8, b, r) >= 0.99  # the default target
    assert candidate_probability(0.3, b, r) < 0.05
    assert choose_bands(0.8, 128, 0.95) == (18, 7)
    p = candidate_probability(np.linspace(0, 1, 11), 16, 8)
    assert np.all(np.diff(p) >= 0) and p[0] == 0 and p[-1] == 1


def test_short_documents_with_identical_densified_signatures_are_verified(tmp_path):
    # two shingles fill two of the 126 bins and densification copies them to the rest, so two
    # short documents below the threshold can share their whole signature: only a signature with
    # enough independent values (0.8^m < 1e-9) is joined unread; these two are verified and kept
    sel = MinHashDedup()
    assert sel.shortcut_values() == 93 and 0.8 ** 93 < 1e-9 <= 0.8 ** 92
    a = "w0 w1 w2 w3 w4 w5"  # two 5-word shingles; each b below has three: Jaccard 2/3
    bs = [f"{a} x{i}" for i in range(3000)]
    sig = sel.signatures(pa.array([a] + bs))
    same = np.flatnonzero((sig[1:] == sig[0]).all(axis=1))
    assert len(same), "no short pair with identical signatures among 3,000 (expected ~1 in 100)"
    b = bs[same[0]]
    scores = sel.score(make_docs([a, b, " ".join(random_doc(np.random.default_rng(2)))]))
    assert scores["n_sig_values"].tolist()[:2] == [2, 2] and scores["n_sig_values"][2] > 93
    dec, _, ctx = run_global(MinHashDedup(), [[a, b]], tmp_path)
    assert dec.keep.all() and dec.metrics["identical_signature_docs"] == 0
    assert dec.metrics["pairs_rejected"] == 1 and ctx.reads == 2
    # copies of a long document still join unread
    long = " ".join(random_doc(np.random.default_rng(4)))
    dec, _, ctx = run_global(MinHashDedup(), [[long, long, a, b]], tmp_path / "long")
    assert dec.metrics["identical_signature_docs"] == 1 and ctx.reads == 2 and dec.keep.tolist() == [1, 0, 1, 1]


# -- clusters ------------------------------------------------------------------------------

def test_planted_near_duplicates_found_across_shards(planted, tmp_path):
    shards, pairs_dup, pairs_far = planted
    assert len(pairs_dup) >= 30 and len(pairs_far) >= 15
    dec, _, ctx = run_global(MinHashDedup(), shards, tmp_path)
    pos = positions(shards)
    cluster = dec.extra["cluster"]
    for o, d in pairs_dup:
        assert cluster[pos[o]] == cluster[pos[d]], "near duplicate missed"
    for o, d in pairs_far:
        assert cluster[pos[o]] != cluster[pos[d]], "dissimilar pair merged"
    # exactly one survivor per cluster, and it is the first document
    for c in np.unique(cluster):
        members = np.flatnonzero(cluster == c)
        assert dec.keep[members].sum() == 1
        assert dec.keep[members[0]]
    assert np.array_equal(dec.extra["cluster_size"], np.bincount(cluster)[cluster])
    m = dec.metrics
    assert m["clusters"] == len(pairs_dup) and m["docs_removed"] == len(pairs_dup)
    assert m["cluster_sizes"] == {"2": len(pairs_dup)}
    assert m["docs_without_shingles"] == 1
    assert ctx.reads == m["candidate_docs"] <= 2 * len(pairs_dup) + 10
    assert np.all(dec.score[~dec.keep] >= 0.8)
    # each removed document names its survivor (here its original) by input shard and row
    where = {}
    for s, texts in enumerate(shards):
        for r, t in enumerate(texts):
            where.setdefault(t, (s, r))
    of_shard, of_row = dec.extra["duplicate_of_shard"], dec.extra["duplicate_of_row"]
    for o, d in pairs_dup:
        assert (of_shard[pos[d]], of_row[pos[d]]) == where[o]
    assert (of_shard[dec.keep] == -1).all() and (of_row[dec.keep] == -1).all()


def test_exact_copies_cluster_cheaply_and_keep_policies(tmp_path):
    rng = np.random.default_rng(1)
    base = " ".join(random_doc(rng))
    copies = [base] * 50
    longer = base + " and a tail of five more words here"
    shards = [copies[:25], copies[25:] + [longer]]
    dec, _, ctx = run_global(MinHashDedup(), shards, tmp_path)
    assert len(np.unique(dec.extra["cluster"])) == 1 and dec.keep.sum() == 1 and dec.keep[0]
    # identical signatures join without reading texts: only the copy representative and the longer doc
    assert dec.metrics["identical_signature_docs"] == 49 and ctx.reads == 2
    assert dec.score.tolist() == [1.0] * 50 + [pytest.approx(dec.score[50])] and 0.8 < dec.score[50] < 1
    # without the shortcut (t^(b*r) not negligible) copies are verified, with O(k) checks, not O(k^2)
    dec, _, ctx = run_global(MinHashDedup(num_perm=16, bands=4, rows=4), shards, tmp_path)
    assert dec.metrics["identical_signature_docs"] == 0 and ctx.reads == 51
    assert len(np.unique(dec.extra["cluster"])) == 1 and dec.keep.sum() == 1
    assert dec.metrics["pairs_checked"] <= 4 * 5 * 51
    dec, _, _ = run_global(MinHashDedup(keep="longest"), shards, tmp_path)
    assert dec.keep.sum() == 1 and dec.keep[50]
    of = set(zip(dec.extra["duplicate_of_shard"].tolist(), dec.extra["duplicate_of_row"].tolist()))
    assert of == {(1, 25), (-1, -1)} and dec.extra["duplicate_of_row"][50] == -1  # the survivor: shard 1, row 25
    quality = [np.arange(25, dtype=np.float64), np.r_[np.arange(25.0), -1.0]]
    sel = MinHashDedup(keep="quality")
    assert sel.capabilities().columns == ("quality",) and MinHashDedup().capabilities().columns == ()
    dec, _, _ = run_global(sel, shards, tmp_path, extra={"quality": quality})
    assert dec.keep.sum() == 1 and dec.keep[24]  # value 24 first appears at position 24


def test_verify_stops_false_chains(tmp_path):
    """With 1-row bands almost every pair of small-vocabulary docs collides; verification keeps
    them apart, plain LSH chains them into one cluster."""
    rng = np.random.default_rng(3)
    small = VOCAB[:30]
    texts = [" ".join(small[rng.integers(0, 30, 40)]) for _ in range(60)]
    sel = MinHashDedup(ngram=1, bands=32, rows=1, num_perm=32)
    dec, _, _ = run_global(sel, [texts], tmp_path)
    assert dec.metrics["pairs_rejected"] > 0
    loose = MinHashDedup(ngram=1, bands=32, rows=1, num_perm=32, verify=False)
    dec2, _, _ = run_global(loose, [texts], tmp_path)
    assert dec2.metrics["largest_cluster"] > 30 > dec.metrics["largest_cluster"]


@pytest.mark.parametrize("n,distinct,top", [(0, 1, 0), (1, 1, 0), (2, 1, 0), (9, 3, 0), (5000, 4000, 0),
                                             (5000, 7, 0), (5000, 2**62, 0), (5000, 4000, 4),
                                             (60000, 50000, 0), (60000, 50000, 4), (60000, 20, 0)])
def test_hash_grouping_gives_the_runs_of_a_stable_sort(n, distinct, top):
    """The band buckets come from a hash table, not a sort: same runs, same run order (ascending
    key), same member order (input order) as the stable argsort they replaced. ``top``: keys that
    share their top bits, as in one partition of the spill path. From 8,192 keys on they are
    partitioned before grouping (by the bits below the shared ones)."""
    rng = np.random.default_rng(n + distinct)
    keys = rng.integers(0, distinct, n).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    keys[: n // 10] = np.uint64(2**64 - 1)  # the largest key: the last run, the last partition
    if top:  # every key, that one too, shares the top bits
        keys = (keys >> np.uint64(top)) | np.uint64(0b1011 << 60)
    idx = rng.permutation(n).astype(np.int32)
    order = np.argsort(keys, kind="stable")
    ks, ids = keys[order], idx[order]
    cut = np.flatnonzero(ks[1:] != ks[:-1]) + 1 if n else np.zeros(0, np.int64)
    lo, hi = np.r_[0, cut][: len(cut) + (n > 0)], np.r_[cut, n][: len(cut) + (n > 0)]
    runs = [ids[a:b] for a, b in zip(lo, hi) if b - a >= 2]  # in key order, members in input order
    want_members = np.concatenate(runs) if runs else np.zeros(0, idx.dtype)
    want_starts = np.r_[0, np.cumsum([len(r) for r in runs])]
    members, starts = _runs(keys, idx)
    assert np.array_equal(members, want_members) and np.array_equal(starts, want_starts)
    if n >= 9 and distinct < n:
        assert len(starts) > 1  # the case has runs to find


def test_spill_path_gives_same_clusters(planted, tmp_path):
    shards, _, _ = planted
    mem, _, _ = run_global(MinHashDedup(), shards, tmp_path)
    spilled, _, _ = run_global(MinHashDedup(memory_budget=1000), shards, tmp_path)
    assert not mem.metrics["spilled"] and spilled.metrics["spilled"]
    assert not mem.metrics["candidate_shingles_on_disk"] and spilled.metrics["candidate_shingles_on_disk"]
    assert np.array_equal(mem.keep, spilled.keep)
    assert np.array_equal(mem.extra["cluster"], spilled.extra["cluster"])
    assert mem.metrics["pairs_checked"] == spilled.metrics["pairs_checked"]
    assert os.listdir(tmp_path) == []  # spill files and mapped shingle sets are removed


def test_char_shingles(tmp_path):
    sel = MinHashDedup(shingle="char", ngram=5)
    a = "Hello,   world! This is a test of character shingles for near duplicates."
    b = "hello world this is a test of character shingles for near duplicates"
    c = "Something else entirely, with other words in a different order."
    dec, _, _ = run_global(sel, [[a, c], [b]], tmp_path)
    assert dec.extra["cluster"][2] == 0 and dec.keep.tolist() == [True, True, False]
    _, off = shingle_hashes(pa.array(["héllo wörld", "abc"]), shingle="char", ngram=3)
    assert off[1] - off[0] == 9 and off[2] - off[1] == 1  # 11 code points -> 9 trigrams
    # Unicode whitespace runs are one space too, and ASCII letters are lowered in the kernel
    for strip in (True, False):
        sh, off = shingle_hashes(pa.array(["Héllo\u00a0\u2009 Wörld\u3000", "héllo wörld", "HELLO\x1cWORLD",
                                           "hello world"]), shingle="char", ngram=3, strip_punctuation=strip)
        assert np.array_equal(sh[off[0]:off[1]], sh[off[1]:off[2]])
        assert np.array_equal(sh[off[2]:off[3]], sh[off[3]:off[4]])


def test_nfkc_folds_compatibility_forms_first(tmp_path):
    """nfkc: true applies NFKC before lowercasing (fullwidth letters, ligatures, roman numerals,
    the ideographic space); off by default."""
    texts = pa.array(["ＨＥＬＬＯ\u3000ｗｏｒｌｄ ﬁne Ⅻ", "hello world fine xii"])
    for shingle in ("word", "char"):
        sh, off = shingle_hashes(texts, shingle=shingle, ngram=2)
        assert sorted(sh[off[0]:off[1]].tolist()) != sorted(sh[off[1]:off[2]].tolist())
        sh, off = shingle_hashes(texts, shingle=shingle, ngram=2, nfkc=True)
        assert sorted(sh[off[0]:off[1]].tolist()) == sorted(sh[off[1]:off[2]].tolist())
    sig = MinHashDedup(nfkc=True).signatures(texts)
    assert (sig[0] == sig[1]).all() and not (MinHashDedup().signatures(texts)[0] == sig[1]).all()
    dec, _, _ = run_global(MinHashDedup(nfkc=True, ngram=2, threshold=0.9), [texts.to_pylist()], tmp_path)
    assert dec.keep.tolist() == [True, False]


def test_config_errors():
    with pytest.raises(ConfigError, match="bands"):
        MinHashDedup(bands=20, rows=8)
    with pytest.raises(ConfigError, match="memory_budget"):
        MinHashDedup(memory_budget="lots")
    with pytest.raises(ConfigError, match="threshold"):
        MinHashDedup(threshold=1.5)
    with pytest.raises(ConfigError, match="shingle"):
        MinHashDedup(shingle="sentence")
    assert resolve("minhash_dedup") is MinHashDedup and resolve("exact_dedup") is ExactDedup
    sel = MinHashDedup(keep="label")
    with pytest.raises(DataError, match="label"):
        sel.score(make_docs(["a b c"], extra={"label": pa.array(["x"])}))


# -- through the runner --------------------------------------------------------------------

def test_runner_end_to_end_same_output_for_1_and_2_workers(planted, tmp_path):
    from shardsift.engine.runner import run_pipeline

    shards, pairs_dup, _ = planted
    write_corpus(tmp_path / "in", [s for s in shards])
    outs = []
    for w in (1, 2):
        cfg = {"input": {"path": str(tmp_path / "in"), "text_column": "text"},
               "output": {"path": str(tmp_path / f"out{w}"), "scores": True}, "workers": w, "seed": 0,
               "stages": [{"exact_dedup": {}}, {"minhash_dedup": {"threshold": 0.8}}]}
        man = run_pipeline(cfg)
        st = man["stages"][2]
        assert st["name"] == "minhash_dedup" and st["dropped"] == {"near_duplicate": len(pairs_dup)}
        assert st["metrics"]["clusters"] == len(pairs_dup)
        assert st["metrics"]["shards_read_back"] == 3  # the decide reads its candidates back
        data = pq.read_table(glob.glob(str(tmp_path / f"out{w}" / "data" / "*.parquet"))).sort_by("id")
        side = pq.read_table(glob.glob(str(tmp_path / f"out{w}" / ".shardsift" / "scores" / "*minhash*.parquet"))[0])
        outs.append((data.column("id").to_pylist(), side.sort_by("id").to_pydict()))
    assert outs[0] == outs[1]
    side = outs[0][1]
    assert {"cluster", "cluster_size", "duplicate_of_shard", "duplicate_of_row"} <= set(side)
    assert sum(1 for s, k in zip(side["cluster_size"], side["kept"]) if s > 1 and not k) == len(pairs_dup)
    # the sidecar's duplicate_of names a kept document of the same cluster (ids here: d{shard}-{row})
    row_of = {i: k for k, i in enumerate(side["id"])}
    for k, kept in enumerate(side["kept"]):
        of = f"d{side['duplicate_of_shard'][k]}-{side['duplicate_of_row'][k]}"
        if kept:
            assert side["duplicate_of_shard"][k] == -1 and side["duplicate_of_row"][k] == -1
        else:
            assert side["kept"][row_of[of]] and side["cluster"][row_of[of]] == side["cluster"][k]


def test_runner_first_shard_emptied_by_earlier_stage(tmp_path):
    """A global stage still sees every score column when the first shard has no surviving docs."""
    from shardsift.engine.runner import run_pipeline

    words = " ".join(f"w{i}" for i in range(50))
    write_corpus(tmp_path / "in", [["x", "y"], [words, words, words + " z", "unrelated " * 9]])
    cfg = {"input": {"path": str(tmp_path / "in")}, "output": {"path": str(tmp_path / "out")}, "workers": 1,
           "stages": [{"length": {"min_words": 5}}, {"minhash_dedup": {}}]}
    man = run_pipeline(cfg)
    assert man["stages"][2]["dropped"] == {"near_duplicate": 2}
    assert man["stages"][2]["metrics"]["clusters"] == 1


@pytest.mark.slow
def test_real_pool_shards(tmp_path):
    """Two shards of the real pool: duplicates are found, every removed document is within the
    threshold of a cluster mate (exact Jaccard), one survivor per cluster."""
    from conftest import corpora_path

    from shardsift.engine.runner import run_pipeline

    pool = corpora_path("pool")
    files = sorted(glob.glob(os.path.join(pool, "*.parquet")))[:2]
    cfg = {"input": {"path": files}, "output": {"path": str(tmp_path / "out"), "scores": True},
           "workers": 2, "stages": [{"minhash_dedup": {}}]}
    man = run_pipeline(cfg)
    m = man["stages"][1]["metrics"]
    assert m["clusters"] > 50 and m["docs_removed"] > 100 and m["pairs_rejected"] > 0
    side = pq.read_table(glob.glob(str(tmp_path / "out" / ".shardsift" / "scores" / "*.parquet"))[0]).to_pandas()
    removed = side[~side.kept]
    assert len(removed) == m["docs_removed"] and (removed.score >= 0.8).all()
    in_clusters = side[side.cluster_size > 1]
    assert (in_clusters.groupby("cluster").kept.sum() == 1).all()


def _ref_words(text: str, strip_punctuation: bool) -> list:
    """The selector's words by definition: split on every Unicode whitespace (str.split), lowered;
    with strip_punctuation, ASCII punctuation separates words too."""
    import re

    words = text.lower().split()
    if not strip_punctuation:
        return words
    return re.findall(r"[0-9a-z_\u0080-\U0010ffff]+", " ".join(words))


def _ref_jaccard(a: list, b: list, n: int = 5) -> float:
    def grams(w):
        return {tuple(w[i:i + n]) for i in range(max(1, len(w) - n + 1))} if w else set()

    sa, sb = grams(a), grams(b)
    return len(sa & sb) / max(1, len(sa | sb))


@pytest.mark.slow
@pytest.mark.parametrize("strip", [True, False])
def test_unicode_spaced_near_duplicates_of_real_text(tmp_path, strip):
    """Near duplicates of real documents whose spaces were swapped for U+00A0 / U+2009 and a few
    words edited: every pair whose true word 5-gram Jaccard (words split on any Unicode whitespace)
    is at least 0.8 is caught (recall >= 0.99), and every removed document is within the threshold
    of a cluster mate by that true Jaccard (precision 1.000); pairs edited far below it stay apart.
    Through the runner, with duplicate_of naming each removed document's survivor."""
    from conftest import corpora_path

    from shardsift.engine.runner import run_pipeline

    path = os.path.join(corpora_path("pool"), "part-00000.parquet")
    texts = pq.read_table(path, columns=["text"]).column("text").to_pylist()
    origs = [t for t in texts if 50 <= len(t.split()) <= 2000][:1500]
    rng = np.random.default_rng(17)
    variants = []
    for o in origs:
        v = "".join(str(rng.choice([" ", "\u00a0", "\u2009"], p=[0.4, 0.3, 0.3])) if c == " " else c for c in o)
        words = v.split(" ")  # what ASCII spaces are left: the edits keep the other whitespace
        far = rng.random() < 0.25
        m = len(o.split())
        k = max(1, m // 10) if far else int(rng.integers(0, max(1, (m - 4) // 50) + 1))
        for i in rng.choice(len(words), size=min(k, len(words)), replace=False):
            words[i] = f"zq{rng.integers(1 << 30)}x"
        variants.append(" ".join(words))
    order = rng.permutation(2 * len(origs))
    docs = (origs + variants)
    shards = [[docs[i] for i in order[lo::3]] for lo in range(3)]  # originals and variants mixed
    write_corpus(tmp_path / "in", shards)
    where = {}
    for s_, sh in enumerate(shards):
        for r, t in enumerate(sh):
            where.setdefault(t, (s_, r))

    cfg = {"input": {"path": str(tmp_path / "in")}, "output": {"path": str(tmp_path / "out"), "scores": True},
           "workers": 1, "stages": [{"minhash_dedup": {"strip_punctuation": strip}}]}
    run_pipeline(cfg)
    side = pq.read_table(glob.glob(str(tmp_path / "out" / ".shardsift" / "scores" / "*.parquet"))[0]).to_pydict()
    by_id = {i: k for k, i in enumerate(side["id"])}
    id_at = {(int(i.split("-")[0][1:]), int(i.split("-")[1])): i for i in side["id"]}

    def row(t):
        s_, r = where[t]
        return by_id[f"d{s_}-{r}"]

    words = {t: _ref_words(t, strip) for t in set(docs)}
    caught = near = 0
    for o, v in zip(origs, variants):
        j = _ref_jaccard(words[o], words[v])
        same = side["cluster"][row(o)] == side["cluster"][row(v)]
        if j >= 0.8:
            near += 1
            caught += same
        elif j < 0.5:
            assert not same, "a pair far below the threshold was merged"
    assert near >= 1000 and caught / near >= 0.99, (caught, near)
    removed = [k for k, kept in enumerate(side["kept"]) if not kept]
    assert len(removed) >= near * 0.99
    # precision: every removed document is within the threshold of a cluster mate (clusters are
    # the transitive closure of verified pairs, so not necessarily of the survivor itself); its
    # score is its closest verified mate's Jaccard (32-bit fingerprints: within ~0.01 of the
    # truth), or 1.0 when it was joined on an identical signature without being read
    text_of = {f"d{s_}-{r}": words[t] for s_, sh in enumerate(shards) for r, t in enumerate(sh)}
    members = {}
    for k, c in enumerate(side["cluster"]):
        members.setdefault(c, []).append(k)
    below = 0
    for k in removed:
        mine = text_of[side["id"][k]]
        best = max(_ref_jaccard(mine, text_of[side["id"][q]]) for q in members[side["cluster"][k]] if q != k)
        below += best < 0.8
        assert 0.8 <= side["score"][k] <= best + 0.02 or side["score"][k] == 1.0
        survivor = id_at[(side["duplicate_of_shard"][k], side["duplicate_of_row"][k])]
        assert side["kept"][by_id[survivor]] and side["cluster"][by_id[survivor]] == side["cluster"][k]
    assert below == 0, f"precision {1 - below / len(removed):.4f}"
    kept = [k for k, kept in enumerate(side["kept"]) if kept]
    assert all(side["duplicate_of_shard"][k] == -1 and side["duplicate_of_row"][k] == -1 for k in kept)


def test_nothing_reaches_the_stage(tmp_path):
    from shardsift.engine.runner import run_pipeline

    write_corpus(tmp_path / "in", [["a b", "c d"], ["e f"]])
    cfg = {"input": {"path": str(tmp_path / "in")}, "output": {"path": str(tmp_path / "out")}, "workers": 1,
           "stages": [{"length": {"min_words": 5}}, {"exact_dedup": {}}, {"minhash_dedup": {}}]}
    man = run_pipeline(cfg)
    assert man["docs_kept"] == 0 and man["stages"][3]["docs_in"] == 0


# -- word tokenizer: two FNV chains per document, ASCII batches not Unicode-lowered --------------

M64 = (1 << 64) - 1
WORD_CHARS = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") + [
    "é", "É", "À", "ß", "ñ", "Ω", "Σ", "中", "文", "🙂", "İ", "\u212a"]  # Kelvin sign lowers to ASCII k
PUNCT = list("!\"#$%&'()*+,-./:;<=>?@[\\]^`{|}~") + ["\x00", "\x7f", "—", "’"]
SPACES = [" ", " ", " ", "  ", "\t", "\n", "\r\n", "\x0b", "\x0c", " \n\t  "]
# Python's str.split() splits on these too: the tokenizer's public path treats them as spaces
UNICODE_SPACES = SPACES + ["\xa0", "\u2009", "\u3000", "\x85", "\u2028", "\u1680", "\u202f", "\x1c", "\x1f",
                           " \xa0 ", "\u2000\u200a"]


def _py_mix64(h):
    h ^= h >> 30
    h = (h * 0xBF58476D1CE4E5B9) & M64
    h ^= h >> 27
    h = (h * 0x94D049BB133111EB) & M64
    return h ^ (h >> 31)


def _py_is_word(b, keep_punct):
    if b == 32 or 9 <= b <= 13 or 28 <= b <= 31:
        return False
    return keep_punct or 48 <= b <= 57 or 65 <= b <= 90 or 97 <= b <= 122 or b == 95 or b >= 128


def ref_tokens(raw: bytes, keep_punct: bool) -> list:
    """The serial reference: FNV-1a 64 of each maximal run of word bytes (ASCII lowercased), mixed."""
    toks, h = [], None
    for b in raw:
        if _py_is_word(b, keep_punct):
            b = b + 32 if 65 <= b <= 90 else b
            h = ((0xCBF29CE484222325 if h is None else h) ^ b) * 0x100000001B3 & M64
        elif h is not None:
            toks.append(_py_mix64(h))
            h = None
    if h is not None:
        toks.append(_py_mix64(h))
    return toks


def ref_shingles(toks: list, n: int) -> list:
    from shardsift.selectors.minhash.shingles import _shingle_multipliers

    mult = [int(x) for x in _shingle_multipliers(n)]
    w = min(n, len(toks))
    return [_py_mix64((w * 0x9E3779B97F4A7C15 + sum(toks[s + j] * mult[j] for j in range(w))) & M64)
            for s in range(len(toks) - w + 1 if toks else 0)]


def ref_csr(texts, keep_punct: bool, n=None):
    """Reference tokens (or n-gram shingles) of every document after Arrow's Unicode lowercase,
    every Unicode whitespace character (str.isspace) a space."""
    import pyarrow.compute as pc

    out, off = [], [0]
    for t in pc.utf8_lower(texts).to_pylist():
        t = "".join(" " if c.isspace() else c for c in (t or ""))
        toks = ref_tokens(t.encode(), keep_punct)
        out += toks if n is None else ref_shingles(toks, n)
        off.append(len(out))
    return np.array(out, dtype=np.uint64), np.array(off, dtype=np.int64)


def random_text(rng, nbytes, ascii_only=False, spaces=SPACES):
    chars = WORD_CHARS[:63] if ascii_only else WORD_CHARS
    p = np.where(np.arange(len(chars)) < 63, 1.0, 0.5 if not ascii_only else 0.0)
    punct = [c for c in PUNCT if not ascii_only or c.isascii()]
    parts, size = [], 0
    if rng.random() < 0.3:
        parts.append(str(rng.choice(spaces)))
    while size < nbytes:
        word = "".join(rng.choice(chars, size=int(rng.geometric(0.2)), p=p / p.sum()))
        r = rng.random()
        if r < 0.15:
            word += "".join(rng.choice(punct, size=int(rng.integers(1, 4))))  # "word," "it's!?"
        elif r < 0.2:
            word = str(rng.choice(punct)) + word
        sep = str(rng.choice(spaces)) if rng.random() < 0.9 else "".join(rng.choice(punct, size=2))
        parts += [word, sep]
        size += len(word.encode()) + len(sep.encode())
    if rng.random() < 0.5:
        parts.pop()  # end inside a word
    return "".join(parts)


def cut_docs():
    """Documents whose cut (at byte len // 2) falls inside a word, on a separator, just before or
    after one, in a run of separators; single long words; the shortest two-chain lengths."""
    docs = []
    for n in (64, 65, 66, 101, 300):
        q = n // 2
        for p in range(q - 3, q + 4):
            docs.append("a" * p + " " + "B" * (n - p - 1))
            docs.append("a" * p + "  \t" + "b" * (n - p - 3))
            docs.append("x " * (p // 2) + "y" * (n - 2 * (p // 2)))
            docs.append("é" * (p // 2) + " " + "É" * ((n - p) // 2))
        docs += ["w" * n, "W" * (n - 1) + " ", " " + "w" * (n - 1), " " * n, "!" * n, "a " * (n // 2),
                 " a" * (n // 2), "a " * (n // 2) + "a", "É" * (n // 2), "ab," * (n // 3), "a\x00b " * (n // 4)]
    docs += ["", " ", "a", "A", "ÉÀ", "a" * 63, "a" * 63 + " ", " " * 63 + "a",
             "x" * 2000, "x" * 1000 + " tail", "head " + "y" * 1000, "ÉÀ" * 500]
    return docs


def tokens_of(texts, keep_punct, one_by_one=False):
    """_doc_tokens over each document, run with bounds checks so a scratch overrun fails here."""
    import numba as nb

    from shardsift.columns import spans
    from shardsift.selectors.minhash.shingles import _doc_tokens, _word_buffer, _word_tables

    @nb.njit(boundscheck=True)
    def run(starts, ends, data, val, msk):
        tok = _word_buffer(starts, ends)  # the scratch size every kernel uses
        out = np.empty(ends.shape[0] + (ends - starts).sum(), dtype=np.uint64)
        off = np.zeros(starts.shape[0] + 1, dtype=np.int64)
        for d in range(starts.shape[0]):
            m = _doc_tokens(data, starts[d], ends[d], val, msk, tok)
            out[off[d]:off[d] + m] = tok[:m]
            off[d + 1] = off[d] + m
        return out[:off[-1]], off

    val, msk = _word_tables(keep_punct)
    if not one_by_one:
        return run(*spans(texts), val, msk)
    parts = [run(*spans(texts.slice(i, 1)), val, msk)[0] for i in range(len(texts))]
    return np.concatenate(parts), np.concatenate([[0], np.cumsum([len(p) for p in parts])])


@pytest.fixture(scope="module")
def token_texts():
    rng = np.random.default_rng(11)
    lens = np.concatenate([rng.integers(0, 64, 120), rng.integers(64, 400, 120), rng.integers(400, 4000, 40)])
    docs = [random_text(rng, int(n)) for n in lens]
    docs = cut_docs() + docs + [None, None]
    return [docs[i] for i in rng.permutation(len(docs))]


@pytest.mark.parametrize("keep_punct", [False, True])
def test_doc_tokens_match_serial_reference(token_texts, keep_punct):
    """The two-chain kernel gives the serial FNV tokens exactly, in order, on the raw bytes (upper
    case ASCII, punctuation, NUL, non-ASCII, whitespace runs, cuts inside and between words)."""
    arr = pa.array(token_texts, pa.large_string())
    ref, ref_off = [], [0]
    for t in token_texts:
        ref += ref_tokens((t or "").encode(), keep_punct)
        ref_off.append(len(ref))
    for one_by_one in (False, True):
        tok, off = tokens_of(arr, keep_punct, one_by_one)
        assert np.array_equal(off, ref_off)
        assert np.array_equal(tok, np.array(ref, dtype=np.uint64))
    # and text.tokenize, the definition the docstrings point at
    t2, o2 = tokenize(arr, mode="whitespace" if keep_punct else "word")
    assert np.array_equal(t2, tok) and np.array_equal(o2, off)


@pytest.mark.parametrize("strip", [True, False])
@pytest.mark.parametrize("batch", ["mostly_ascii", "mostly_non_ascii"])
def test_word_shingles_and_signatures_match_reference(token_texts, strip, batch):
    """Public path (ASCII documents not Unicode-lowered, the others lowered by Arrow and their
    Unicode whitespace made spaces): shingles and fused signatures equal the serial reference
    after utf8_lower with every str.isspace() character a space, in a batch mixing ASCII and
    non-ASCII documents (both preparation branches), sliced and chunked."""
    rng = np.random.default_rng(5)
    ascii_docs = [random_text(rng, int(n), ascii_only=True) for n in rng.integers(0, 3000, 60)]
    spaced = [random_text(rng, int(n), spaces=UNICODE_SPACES) for n in rng.integers(0, 3000, 20)]
    if batch == "mostly_ascii":  # a few non-ASCII documents: prepared alone and spliced in
        docs = ascii_docs + ["ÉCOLE ÀLA Carte İSTANBUL \u212aELVIN", None, "x", "a\u3000b\xa0c", "d\x1ce"] + \
            token_texts[:6] + spaced[:3]
    else:
        docs = ascii_docs[:5] + token_texts + spaced
    docs = [docs[i] for i in rng.permutation(len(docs))]
    arr = pa.array(["PAD"] * 3 + docs, pa.large_string()).slice(3)
    for texts in (arr, pa.chunked_array([arr.slice(0, 10), arr.slice(10)])):
        for n in (1, 5):
            sh, off = shingle_hashes(texts, ngram=n, strip_punctuation=strip)
            rsh, roff = ref_csr(arr, not strip, n)
            assert np.array_equal(off, roff) and np.array_equal(sh, rsh), n
        sel = MinHashDedup(bands=8, rows=4, num_perm=32, hash_seed=9, strip_punctuation=strip)
        sig = sel.signatures(texts)
        assert np.array_equal(sig, minhash_signatures(rsh, roff, 32, 9))


def test_prepared_spans_prepare_only_non_ascii_documents():
    import pyarrow.compute as pc

    from shardsift.columns import spans
    from shardsift.selectors.normalize import prepared_spans

    def docs_of(s, e, d):
        return [bytes(d[a:b]) for a, b in zip(s, e)]

    def lowered(t, everything=False, spaces=False, nfkc=False):
        if t is None:
            return b""
        if not (everything or not t.isascii()):
            return t.encode()
        t = pc.utf8_normalize(pa.array([t]), form="NFKC")[0].as_py() if nfkc else t
        t = pc.utf8_lower(pa.array([t]))[0].as_py()
        return "".join(" " * len(c.encode()) if spaces and c.isspace() else c for c in t).encode()

    def lower_spans(arr, rows=None):
        return prepared_spans(arr, rows, spaces=False)

    texts = ["Hello WORLD", "ÉCOLE à Paris", None, "", "PLAIN ascii", "İstanbul \u212a", "tail TEXT " * 30]
    low = [lowered(t) for t in texts]  # ASCII documents as they are, the rest lowered by Arrow
    arr = pa.array(texts, pa.string())
    assert docs_of(*lower_spans(arr)) == low
    assert docs_of(*lower_spans(arr.slice(1, 6))) == low[1:7]
    assert docs_of(*lower_spans(pa.chunked_array([arr.slice(0, 2), arr.slice(2)]))) == low
    # an all-ASCII batch is not copied at all
    asc = pa.array(["Only ASCII", None, "HERE\x1c"], pa.large_string())
    s, e, d = prepared_spans(asc, nfkc=True)
    assert np.shares_memory(d, spans(asc)[2]) and docs_of(s, e, d) == [b"Only ASCII", b"", b"HERE\x1c"]
    # non-ASCII documents hold most bytes: the whole batch is lowered, ASCII documents too
    assert docs_of(*lower_spans(arr.slice(1, 5))) == [lowered(t, True) for t in texts[1:6]]
    # selected rows of a batch (the read-back's): their spans in the whole batch's bytes, the
    # non-ASCII ones lowered; the same documents as the selection taken out first
    for rows in ([0, 4, 6], [1, 5, 6], [1, 5], [3], []):
        rows = np.array(rows, np.int64)
        s, e, d = lower_spans(arr, rows)
        assert docs_of(s, e, d) == [low[r] for r in rows]
        if rows.tolist() == [0, 4, 6]:  # all ASCII: nothing copied, the batch's own bytes
            assert np.shares_memory(d, spans(arr)[2])
    assert docs_of(*lower_spans(arr, np.array([1, 5]))) == [lowered(texts[1], True), lowered(texts[5], True)]
    # Unicode whitespace: each such code point's bytes become ASCII spaces, in both branches, after
    # NFKC when asked (which folds some spaces and the fullwidth letters itself)
    spaced = ["A\u00a0B", "plain TEXT " * 20, "x\u3000Ｙ\u2009z\u200b", None, "\u2028\u2029\x85\u1680\u205f\u202f",
              "Ünï\u2000\u200acode"]
    arr = pa.array(spaced)
    for nfkc in (False, True):
        want = [lowered(t, spaces=True, nfkc=nfkc) for t in spaced]
        assert docs_of(*prepared_spans(arr, nfkc=nfkc)) == want  # mostly ASCII: the others alone
        assert docs_of(*prepared_spans(arr, np.array([0, 2, 4]), nfkc=nfkc)) == [want[0], want[2], want[4]]
        assert docs_of(*prepared_spans(arr.slice(2, 4), nfkc=nfkc)) == [lowered(t, True, True, nfkc)
                                                                        for t in spaced[2:6]]
    assert docs_of(*prepared_spans(arr, lower_case=False))[0] == b"A  B"
    assert docs_of(*prepared_spans(arr, lower_case=False, spaces=False))[0] == "A\u00a0B".encode()


def test_verification_jaccard_is_exact_at_and_above_the_threshold():
    """The merge that verifies a candidate pair: every pair at or above the threshold (the exact
    boundary J == t included) gets its exact Jaccard, every pair below it a value below it."""
    from shardsift.selectors.minhash.verify import _jaccard

    rng = np.random.default_rng(11)
    sets, want = [], []
    for _ in range(400):  # Jaccard spread over [0, 1], half of the pairs within 0.1 of 0.8
        na = int(rng.integers(1, 300))
        nb = int(rng.integers(max(1, na - 30), na + 30))
        target = rng.uniform(0.7, 0.9) if rng.random() < 0.5 else rng.uniform(0, 1)
        inter = min(na, nb, int(round(target * (na + nb) / (1 + target))))
        pool = rng.choice(2**32 - 1, size=na + nb - inter, replace=False).astype(np.uint32)
        a, b = np.sort(pool[:na]), np.sort(np.concatenate([pool[:inter], pool[na:]]))
        sets += [a, b]
        want.append(inter / (na + nb - inter))
    # exact boundaries: J = 4/5 = 0.8 and 8/10
    for inter, extra in ((4, 1), (8, 2)):
        pool = np.arange(inter + 2 * extra, dtype=np.uint32) * 7
        sets += [np.sort(pool[:inter + extra]), np.sort(np.concatenate([pool[:inter], pool[inter + extra:]]))]
        want.append(inter / (inter + 2 * extra))
    off = np.concatenate([[0], np.cumsum([len(s) for s in sets])]).astype(np.int64)
    data = np.concatenate(sets).astype(np.uint32)
    for t in (0.5, 0.8, 0.9):
        for p, j in enumerate(want):
            got = _jaccard(data, off, 2 * p, 2 * p + 1, t)
            if j >= t:
                assert got == j, (p, t)
            else:
                assert got < t, (p, t)
    assert sum(j >= 0.8 for j in want) > 20 and sum(0 < j < 0.8 for j in want) > 20


def test_a_refused_pair_is_merged_once_across_the_bands_it_shares():
    """A pair below the threshold that shares several bands is merged once: the later bands find it
    among the refused pairs (counted as pairs_rejected_before), and the clusters are those of
    merging it every time (the memo off: a table too small to take any pair)."""
    from shardsift.selectors.minhash.verify import _cluster_band

    rng = np.random.default_rng(2)
    base = np.sort(rng.choice(2**32 - 1, size=200, replace=False)).astype(np.uint32)
    near = np.sort(np.concatenate([base[:150], rng.choice(2**31, size=50, replace=False).astype(np.uint32)]))
    dup = np.sort(np.concatenate([base[:195], rng.choice(2**31, size=5, replace=False).astype(np.uint32)]))
    sets = [base, near, dup]  # J(base, near) = 150/250 = 0.6, J(base, dup) = 195/205
    off = np.concatenate([[0], np.cumsum([len(x) for x in sets])]).astype(np.int64)
    data = np.concatenate(sets)
    bands = [(np.array([0, 1], np.int32), np.array([0, 2], np.int64))] * 3 + \
            [(np.array([0, 1, 2], np.int32), np.array([0, 3], np.int64))]
    got = {}
    for slots in (1024, 2):
        parent, best, counts = np.arange(3, dtype=np.int32), np.zeros(3, np.float32), np.zeros(5, np.int64)
        refused = np.zeros(slots, np.uint64)
        for members, starts in bands:
            _cluster_band(members, starts, parent, data, off, 0.8, True, 4, best, counts, refused)
        got[slots] = (parent.copy(), best.copy(), counts.copy())
    (p1, b1, c1), (p0, b0, c0) = got[1024], got[2]
    assert np.array_equal(p1, p0) and np.array_equal(b1, b0) and p1[2] == p1[0] != p1[1]
    # [checked, joined, rejected, already joined, refused before]; the last band also checks (0, 2),
    # joined, then (1, 2), refused (J = 0.6 too)
    assert c0.tolist() == [6, 1, 5, 0, 0]  # memo off: (0, 1) merged in all four bands
    assert c1.tolist() == [3, 1, 2, 0, 3]  # memo on: once, then refused before three times
