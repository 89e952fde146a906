"""``minhash_dedup``: the selector (parameters, score, decide). The kernels are in the package's
other modules; the method is described in the package docstring and docs/dedup.md."""
from __future__ import annotations

import os
import shutil

import numpy as np

from ...api import Decision, Param, Selector
from ...columns import arrow_array, arrow_take
from ...errors import ConfigError
from ...params import Size
from ..keep_policy import KeepPolicy, duplicate_of, size_histogram, survivors
from .lsh import _band_runs_spilled, _row_hash, _runs, candidate_probability, choose_bands
from .sharded import sharded_plan
from .shingles import _sorted_sets, _word_args, _word_sets_into, shingle_hashes
from .signatures import (
    _band_keys,
    _word_band_keys,
    _word_signatures,
    minhash_signatures,
    permutations,
    signatures_and_values,
)
from .verify import _cluster_band, _roots


class MinHashDedup(KeepPolicy, Selector):
    """MinHash LSH near-duplicate removal, with exact Jaccard verification, across all shards."""

    name = "minhash_dedup"
    scope = "global"

    threshold = Param(float, 0.8, "Jaccard similarity of shingle sets at which two documents are duplicates",
                      gt=0, le=1)
    ngram = Param(int, 5, "shingle length in words (or characters with shingle: char)", ge=1)
    shingle = Param(str, "word", "shingles: word n-grams or character n-grams", choices=("word", "char"))
    strip_punctuation = Param(bool, True, "drop ASCII punctuation before shingling")
    nfkc = Param(bool, False, "apply Unicode NFKC normalization (Arrow's utf8_normalize) before lowercasing")
    num_perm = Param(int, 128, "MinHash permutations available to the bands", ge=2, le=4096)
    bands = Param(int, None, "LSH bands (default: from threshold and min_candidate_prob)", ge=1)
    rows = Param(int, None, "signature values per band (default: from threshold and min_candidate_prob)", ge=1)
    min_candidate_prob = Param(float, 0.99, "when choosing bands/rows: candidate probability wanted at "
                               "the threshold", gt=0, lt=1)
    verify = Param(bool, True, "check each candidate pair's exact Jaccard before joining clusters")
    keep = Param(str, "first", "survivor of each cluster: first | longest | a numeric input column (largest)")
    memory_budget = Param(Size, "512MiB", "memory for grouping one band's keys and for the candidates' shingle "
                          "sets; above it they go to files in the work dir")
    hash_seed = Param(int, 1, "seed of the MinHash permutations (fixed so signatures compare across runs)", ge=0)
    hash_family = Param(str, "one_permutation", "MinHash values: one_permutation (one hash per shingle into "
                        "num_perm bins, empty bins densified: one multiply per shingle), multiply_shift "
                        "(num_perm permutations (a*x + b) mod 2^64, top 32 bits: one multiply per shingle "
                        "and permutation) or mersenne ((a*x + b) mod 2^61-1, exact: ~2.5x slower again)",
                        choices=("one_permutation", "multiply_shift", "mersenne"))

    def validate(self):
        where = self.name
        if self.bands is not None and self.rows is not None and self.bands * self.rows > self.num_perm:
            raise ConfigError(f"{where}: bands * rows = {self.bands * self.rows} exceeds num_perm "
                              f"({self.num_perm})")
        for key in ("bands", "rows"):
            v = getattr(self, key)
            if v is not None and v > self.num_perm:
                raise ConfigError(f"{where}.{key}: {v} exceeds num_perm ({self.num_perm})")
        self.check_keep()

    # -- parameters derived once -----------------------------------------------------------
    def band_shape(self) -> tuple[int, int]:
        if self.bands is not None and self.rows is not None:
            return self.bands, self.rows
        if self.bands is not None:
            return self.bands, self.num_perm // self.bands
        if self.rows is not None:
            return self.num_perm // self.rows, self.rows
        return choose_bands(self.threshold, self.num_perm, self.min_candidate_prob)

    def shortcut_values(self) -> int | None:
        """The independent signature values (score column ``n_sig_values``) a document needs to be
        joined to an identical signature without reading texts: two documents below the threshold
        t share m such values with probability at most t^m, so the least m with t^m < 1e-9 (0, every
        document, without verification); None when no signature has that many."""
        if not self.verify:
            return 0
        b, r = self.band_shape()
        m = 1
        while m <= b * r and self.threshold ** m >= 1e-9:
            m += 1
        return m if m <= b * r else None

    def joinable(self, active: np.ndarray, n_sig_values: np.ndarray) -> np.ndarray:
        """The ``active`` documents (positions into ``n_sig_values``) the identical-signature
        shortcut may join unread: those with at least ``shortcut_values()`` independent values."""
        need = self.shortcut_values()
        return active[n_sig_values[active] >= need] if need is not None else active[:0]

    def shingles(self, texts):
        return shingle_hashes(texts, shingle=self.shingle, ngram=self.ngram,
                              strip_punctuation=self.strip_punctuation, nfkc=self.nfkc)

    def _word_kernel(self) -> bool:
        """Whether shingling and signatures run in one kernel (word shingles, any family but mersenne)."""
        return self.shingle == "word" and self.hash_family != "mersenne"

    def _word_kernel_args(self, texts, k: int) -> tuple:
        """The arguments of _word_signatures / _word_band_keys for k values (bands * rows)."""
        return (*_word_args(texts, self.ngram, self.strip_punctuation, nfkc=self.nfkc),
                *permutations(k, self.hash_seed), self.hash_family == "one_permutation")

    def signatures(self, texts) -> np.ndarray:
        """uint64[n, bands*rows] signatures of a string array (for inspection and tests)."""
        return self.signatures_and_counts(texts)[0]

    def signatures_and_counts(self, texts) -> tuple[np.ndarray, np.ndarray]:
        """(uint64[n, bands*rows] signatures, int32[n] shingle counts with repeats) of a string array."""
        b, r = self.band_shape()
        if self._word_kernel():
            return _word_signatures(*self._word_kernel_args(texts, b * r))
        sh, off = self.shingles(texts)
        return minhash_signatures(sh, off, b * r, self.hash_seed, self.hash_family), np.diff(off).astype(np.int32)

    # -- score -------------------------------------------------------------------------------
    def score(self, docs):
        b, r = self.band_shape()
        if self._word_kernel():
            args = self._word_kernel_args(docs.text, b * r)
            keys, count, values = _word_band_keys(*args, b, r)
        else:
            sh, off = self.shingles(docs.text)
            sig, values = signatures_and_values(sh, off, b * r, self.hash_seed, self.hash_family)
            keys = _band_keys(sig, b, r)
            count = np.diff(off).astype(np.int32)
        return {"bands": keys, "n_shingles": count, "n_sig_values": values, **self.keep_scores(docs)}

    # -- decide ------------------------------------------------------------------------------
    def decide(self, scores, ctx):
        """Clusters over every shard's band keys (identical signatures joined first, then the
        buckets of each band), each candidate pair verified by the exact Jaccard of its shingle
        sets, one survivor per cluster. The candidates' texts are read back from their shards with
        ``ctx.read_texts``, one pass per shard: nothing is carried over from the score step but
        its score columns, so the result never depends on which process scored."""
        n = len(scores)
        b, r = self.band_shape()
        if n == 0:  # nothing reached the stage (an emptied shard records no score columns)
            return Decision(keep=np.zeros(0, dtype=bool), metrics={"bands": b, "rows": r, "clusters": 0,
                                                                   "docs_removed": 0})
        budget = self.memory_budget
        band_keys = scores["bands"]
        idx_dtype = np.int32 if n < 2**31 - 1 else np.int64
        active = np.flatnonzero(scores["n_shingles"] > 0).astype(idx_dtype)
        spill = len(active) * 40 > budget
        spill_dir = os.path.join(ctx.work_dir, "minhash-spill") if spill else None

        def runs(keys, idx, tag):
            if spill:
                return _band_runs_spilled(keys, idx, budget, spill_dir, tag)
            return _runs(keys, idx)

        # 0. identical signatures: joined without reading the texts when a pair below the threshold
        #    could share them only with probability < 1e-9 (shortcut_values); one representative each
        rep = np.arange(n, dtype=idx_dtype)
        joinable = self.joinable(active, scores["n_sig_values"])
        if len(joinable):
            members, starts = runs(_row_hash(band_keys, joinable), joinable, b)
            lens = np.diff(starts)
            rep[members] = np.repeat(members[starts[:-1]], lens)
            reps = active[rep[active] == active]
        else:
            reps = active
        n_identical = int(len(active) - len(reps))

        # 1. candidate buckets per band among the representatives (members as global positions)
        per_band = []
        for j in range(b):
            per_band.append(runs(np.ascontiguousarray(band_keys[reps, j]), reps, j))
        if spill_dir:
            shutil.rmtree(spill_dir, ignore_errors=True)
        # candidates (every bucket member, ascending) and each one's slot: a mask and a position
        # map, O(n), where np.unique sorted all bucket entries
        is_cand = np.zeros(n, dtype=bool)
        for m, _ in per_band:
            is_cand[m] = True
        cand = np.flatnonzero(is_cand).astype(idx_dtype)
        del is_cand
        nc = len(cand)
        slot_dtype = np.int32 if nc < 2**31 - 1 else np.int64
        slot_of = np.zeros(n if nc else 0, dtype=slot_dtype)
        slot_of[cand] = np.arange(nc, dtype=slot_dtype)

        # 2. shingle sets of the candidates, read back from their shards
        sets_path, read_back = None, 0
        if self.verify and nc:
            data, off, sets_path, read_back = self._candidate_sets(scores, cand, ctx, budget)
        else:
            data, off = np.zeros(0, np.uint32), np.zeros(nc + 1, np.int64)

        # 3. verify and union, band by band
        parent = np.arange(nc, dtype=slot_dtype)
        best = np.zeros(nc, dtype=np.float32)
        counts = np.zeros(5, dtype=np.int64)
        # refused pairs, remembered across bands: a power of two of slots >= the candidates (8 B
        # each), taking up to half as many pairs; past that, a refused pair is merged again
        memo = self.verify and nc < 2**31 - 1  # the pair key packs two slots in 32 bits each
        refused = np.zeros(1 << max(10, int(nc - 1).bit_length()) if memo else 2, dtype=np.uint64)
        n_bucket_entries = 0
        for members, starts in per_band:
            slots = slot_of[members]
            n_bucket_entries += len(members)
            _cluster_band(slots, starts, parent, data, off, float(self.threshold), bool(self.verify), 4,
                          best, counts, refused)
        root = _roots(parent)

        # 4. clusters (id = the cluster's first document), survivors, sidecar columns
        del per_band, data, off, parent, slot_of
        if sets_path:
            os.remove(sets_path)
        rep_cluster = np.arange(n, dtype=idx_dtype)
        rep_cluster[cand] = cand[root]  # root slot = smallest slot = first representative
        if self.verify:
            sim = np.zeros(n, dtype=np.float32)
            sim[cand] = best
            sim[np.bincount(rep, minlength=n)[rep] >= 2] = 1.0  # has an identical-signature mate
        else:
            sim = np.full(n, np.nan, dtype=np.float32)
        cluster = rep_cluster[rep]
        del rep_cluster, rep, root
        size = np.bincount(cluster, minlength=n).astype(idx_dtype)
        cluster_size = size[cluster]
        keep = survivors(cluster, self.keep, scores)
        sizes = size[size >= 2]
        metrics = {
            "bands": b, "rows": r, "perms_used": b * r,
            "candidate_prob_at_threshold": round(float(candidate_probability(self.threshold, b, r)), 4),
            "clusters": len(sizes),
            "docs_in_clusters": int(sizes.sum()),
            "docs_removed": int((~keep).sum()),
            "largest_cluster": int(sizes.max()) if len(sizes) else 0,
            "cluster_sizes": size_histogram(sizes),
            "docs_without_shingles": int(n - len(active)),
            "identical_signature_docs": n_identical,
            "candidate_docs": int(nc),
            "bucket_entries": int(n_bucket_entries),
            "pairs_checked": int(counts[0]),
            "pairs_joined": int(counts[1]),
            "pairs_rejected": int(counts[2]),
            "pairs_rejected_before": int(counts[4]),
            "spilled": bool(spill),
            "candidate_shingles_on_disk": bool(sets_path),
            "shards_read_back": int(read_back),
            "index_bytes_per_doc": int(8 * b + 4 + 40 * (not spill)),
        }
        return Decision(keep=keep, reason="near_duplicate", score=sim,
                        extra={"cluster": cluster, "cluster_size": cluster_size,
                               **duplicate_of(cluster, cluster_size, keep, scores["row"], scores.shard_offsets)}, metrics=metrics)

    def decide_sharded(self, ctx):
        """The same decide as tasks (sharded.py): the driver holds no per-document array."""
        return sharded_plan(self, ctx).run(ctx)

    def _candidate_sets(self, scores, cand, ctx, budget):
        """Sorted unique 32-bit shingle fingerprints (CSR, in ``cand`` order) of the candidate
        documents, read back from their shards: one pass per shard (``ctx.read_texts``: each input
        batch decoded once, the candidates' texts used where they lie in it, not copied out), so
        the decide never depends on which process (or which run) scored. Word shingles are
        tokenized, hashed, sorted and deduplicated in one kernel that writes each set straight into
        its place.

        32 bits, not the shingles' 64: half the memory, and two documents of ~340 shingles share a
        spurious fingerprint with probability ~5e-5, which moves their Jaccard by ~1/340. The sets
        go to one array of the size the score step counted (``n_shingles``): in memory when it
        fits ``budget``, else a file in the work dir mapped into memory (the OS pages it; resident
        memory stays bounded). Returns (data, off, the file or None, shards read back)."""
        shard_of = np.searchsorted(scores.shard_offsets, cand, side="right") - 1
        rows = np.asarray(scores["row"])[cand]
        # shard_of ascends (cand does): each shard's candidates are one slice, from where it
        # changes (np.unique would import numpy.ma, ~0.01 CPU-s per process)
        cut = np.append(np.flatnonzero(np.diff(shard_of, prepend=-1)), len(shard_of))
        path = None
        total = int(np.asarray(scores["n_shingles"])[cand].sum())
        if total * 4 > budget:
            path = os.path.join(ctx.work_dir, "minhash-candidate-shingles.u32")
            data = np.memmap(path, dtype=np.uint32, mode="w+", shape=(max(total, 1),))
        else:
            data = np.empty(total, dtype=np.uint32)
        off = np.zeros(len(cand) + 1, dtype=np.int64)
        k = 0  # documents done; shards come in ascending order and cand is sorted: pieces are in cand order
        read_back = 0
        for lo, hi in zip(cut[:-1], cut[1:]):
            s = shard_of[lo]
            read_back += 1
            k = self.sets_into(ctx.read_texts(int(s), rows[lo:hi]), data, off, k)
        if k != len(cand):
            raise RuntimeError(f"{self.name}: read back {k} of {len(cand)} candidate documents")
        return data, off, path, read_back

    def sets_into(self, texts, data, off, k: int) -> int:
        """Write the sorted 32-bit shingle sets of the documents ``texts`` yields ((text, positions)
        pairs of one shard, as ``read_texts`` gives them: each input batch decoded once, the
        documents read where they lie) into ``data``/``off`` (CSR) from document ``k``; returns
        the next document's place."""
        for text, pos in texts:
            if self.shingle == "word":  # straight into place, one kernel call
                _word_sets_into(*_word_args(text, self.ngram, self.strip_punctuation, pos, self.nfkc),
                                data, off, k)
                k += len(pos)
                continue
            if len(pos) != len(text):
                text = arrow_take(text, arrow_array(pos))
            for sub in range(0, len(text), 1024):  # bounded transient arrays while shingling
                sh, so = _sorted_sets(*self.shingles(text.slice(sub, 1024)), 32)
                m = len(so) - 1
                data[off[k]:off[k] + len(sh)] = sh
                off[k + 1:k + 1 + m] = off[k] + so[1:]
                k += m
        return k
