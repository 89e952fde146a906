"""Seeded, columnar generator of benchmark corpora: N documents of ~2 KB as Parquet shards.

    python bench/corpus.py --docs 1000000 [--seed 0] [--data-dir /tmp/shardsift-bench]

The benchmarks need corpora of 10^5-10^7 documents that anyone can rebuild bit for bit, so they
are generated, not downloaded. Every document is whitespace-separated words drawn from a Zipf
vocabulary; a share of each document comes from one of a few topic vocabularies (so `dsir` and
`kmeans_diversity` have structure to find), and some documents are edited copies of a shared
template (so `minhash_dedup` has near-duplicates to cluster, across shards). A small `target`
corpus, drawn from topic 0 only, is what `dsir` selects toward.

Token ids are drawn as NumPy arrays and turned into text with Arrow's C++ kernels (take +
binary_join), no Python loop per document: 1M documents take seconds per core. Shards of
100,000 documents (zstd) are generated in parallel processes and cached under
DATA_DIR/corpus-n{N}-s{seed}/ (pool/, target/, meta.json); a complete cache is reused.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

import numpy as np

VERSION = 2  # bump when the output for a given (N, seed) changes: old caches are then rebuilt
DEFAULT_DATA_DIR = os.environ.get("SHARDSIFT_BENCH_DATA", "/tmp/shardsift-bench")  # as common.DATA_DIR
SHARD_DOCS = 100_000
VOCAB = 50_000           # fits uint16 token ids
ZIPF_A = 1.05
TOPICS = 8
TOPIC_WORDS = 400        # words per topic vocabulary
TOPIC_SHARE = 0.2        # share of a document's words drawn from its topic's vocabulary
DUP_SHARE = 0.1          # documents that are an edited copy of a template (two copies per template)
EDIT_MAX = 0.02          # each copy has a uniform(0, EDIT_MAX) share of its words replaced: pairs span J ~0.7-1
TARGET_DOCS = 5_000
TARGET_BYTES = 2_000     # mean document size aimed at
_TABLE_BITS = 22         # inverse-CDF lookup table: one gather per token instead of a search


class Vocab:
    """Words, their Zipf sampling table and the topic vocabularies, all from one seed."""

    def __init__(self, seed: int):
        import pyarrow as pa

        rng = np.random.default_rng([seed, 0x766F63])
        letters = np.frombuffer(b"etaoinshrdlcumwfgypbvkjxqz", np.uint8)
        lp = 1.0 / np.arange(1, 27) ** 0.9
        lens = np.clip(np.rint(rng.normal(7.0, 2.5, 2 * VOCAB)), 2, 16).astype(np.int64)
        chars = letters[rng.choice(26, size=(lens.size, 16), p=lp / lp.sum())]
        words = list(dict.fromkeys(row[:k].tobytes().decode() for row, k in zip(chars, lens)))[:VOCAB]
        # frequent (low-rank) words are the short ones, as in natural language, with some spread
        order = np.argsort(np.array([len(w) for w in words]) + rng.normal(0, 1.5, len(words)), kind="stable")
        words = [words[i] for i in order]
        self.words = pa.array(words, pa.string())
        self.word_bytes = np.array([len(w) + 1 for w in words], np.float64)  # with the separator
        p = 1.0 / np.arange(1, VOCAB + 1) ** ZIPF_A
        p /= p.sum()
        self.table = _inverse_cdf_table(p)
        # topic vocabularies: disjoint sets of mid-frequency words, each sampled Zipf-like too
        mid = rng.permutation(np.arange(500, VOCAB))[: TOPICS * TOPIC_WORDS]
        self.topic_words = mid.reshape(TOPICS, TOPIC_WORDS).astype(np.uint16)
        tp = 1.0 / np.arange(1, TOPIC_WORDS + 1) ** 0.8
        self.topic_table = _inverse_cdf_table(tp / tp.sum())
        mean_word = (1 - TOPIC_SHARE) * float(p @ self.word_bytes) + TOPIC_SHARE * float(
            np.mean([(tp / tp.sum()) @ self.word_bytes[self.topic_words[t]] for t in range(TOPICS)]))
        self.mean_words = TARGET_BYTES / mean_word

    def lengths(self, rng, n: int) -> np.ndarray:
        m = self.mean_words
        return rng.integers(int(0.6 * m), int(1.4 * m) + 1, n)

    def tokens(self, rng, lengths: np.ndarray, topics: np.ndarray) -> np.ndarray:
        """Token ids of documents with these lengths and topics, concatenated (uint16)."""
        total = int(lengths.sum())
        ids = self.table[rng.integers(0, 1 << _TABLE_BITS, total, dtype=np.uint32)]
        on_topic = np.flatnonzero(rng.random(total, dtype=np.float32) < TOPIC_SHARE)
        doc_topic = np.repeat(topics.astype(np.int64), lengths)[on_topic]
        pick = self.topic_table[rng.integers(0, 1 << _TABLE_BITS, on_topic.size, dtype=np.uint32)]
        ids[on_topic] = self.topic_words[doc_topic, pick]
        return ids

    def text(self, ids: np.ndarray, lengths: np.ndarray):
        """Documents as one Arrow string array: words joined by single spaces."""
        import pyarrow as pa
        import pyarrow.compute as pc

        offsets = np.zeros(lengths.size + 1, np.int32)
        np.cumsum(lengths, out=offsets[1:])
        words = self.words.take(pa.array(ids.astype(np.int32)))
        return pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), words), " ")


def _inverse_cdf_table(p: np.ndarray) -> np.ndarray:
    cdf = np.cumsum(p)
    u = (np.arange(1 << _TABLE_BITS) + 0.5) / (1 << _TABLE_BITS)
    return np.minimum(np.searchsorted(cdf, u), p.size - 1).astype(np.uint16)


def _ragged_index(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The indices starts[i] .. starts[i]+lengths[i]-1 for every i, concatenated, without a loop."""
    ends = np.cumsum(lengths)
    return np.arange(int(ends[-1]) if ends.size else 0) + np.repeat(starts - (ends - lengths), lengths)


class Plan:
    """Which documents are template copies and which template each copies: fixed by (N, seed)."""

    def __init__(self, vocab: Vocab, n_docs: int, seed: int):
        rng = np.random.default_rng([seed, 0x706C616E])
        n_templates = int(n_docs * DUP_SHARE) // 2
        self.topic = rng.integers(0, TOPICS, n_docs).astype(np.int8)
        self.template = np.full(n_docs, -1, np.int64)
        copies = rng.choice(n_docs, 2 * n_templates, replace=False)
        self.template[copies] = np.repeat(np.arange(n_templates), 2)
        self.t_len = vocab.lengths(rng, n_templates)
        self.t_topic = rng.integers(0, TOPICS, n_templates).astype(np.int8)
        self.topic[copies] = np.repeat(self.t_topic, 2)
        self.t_start = np.zeros(n_templates, np.int64)
        if n_templates:
            self.t_start[1:] = np.cumsum(self.t_len)[:-1]
        self.t_ids = vocab.tokens(rng, self.t_len, self.t_topic)


_STATE: dict = {}  # vocab and plan, set before the shard processes fork (not pickled per shard)


def _write_shard(args) -> int:
    seed, shard, lo, hi, out = args
    vocab, plan = _STATE["vocab"], _STATE["plan"]
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    rng = np.random.default_rng([seed, 0x73686172, shard])
    n = hi - lo
    tmpl = plan.template[lo:hi]
    is_copy = tmpl >= 0
    lengths = vocab.lengths(rng, n)
    lengths[is_copy] = plan.t_len[tmpl[is_copy]]
    topics = plan.topic[lo:hi]
    ids = vocab.tokens(rng, lengths, topics)
    if is_copy.any():
        starts = np.zeros(n, np.int64)
        starts[1:] = np.cumsum(lengths)[:-1]
        pos = _ragged_index(starts[is_copy], lengths[is_copy])
        copied = plan.t_ids[_ragged_index(plan.t_start[tmpl[is_copy]], lengths[is_copy])]
        rate = np.repeat(rng.uniform(0, EDIT_MAX, int(is_copy.sum())), lengths[is_copy])
        edit = rng.random(pos.size) < rate
        copied[edit] = ids[pos[edit]]  # replaced by the fresh words drawn for this position
        ids[pos] = copied
    text = vocab.text(ids, lengths)
    doc_id = pc.binary_join_element_wise(
        "d", pc.utf8_lpad(pc.cast(pa.array(np.arange(lo, hi)), pa.string()), 9, "0"), "")
    table = pa.table({"id": doc_id, "text": text, "topic": pa.array(topics)})
    pq.write_table(table, out + ".tmp", compression="zstd", row_group_size=20_000)
    os.replace(out + ".tmp", out)
    return int(pc.sum(pc.binary_length(text)).as_py())


def corpus_dir(n_docs: int, seed: int = 0, data_dir: str = DEFAULT_DATA_DIR) -> str:
    return os.path.join(data_dir, f"corpus-n{n_docs}-s{seed}")


def generate(n_docs: int, seed: int = 0, data_dir: str = DEFAULT_DATA_DIR, processes: int | None = None) -> dict:
    """Write (or find cached) the corpus of n_docs documents; returns its meta.json as a dict."""
    root = corpus_dir(n_docs, seed, data_dir)
    meta_path = os.path.join(root, "meta.json")
    if os.path.exists(meta_path):
        with open(meta_path) as fh:
            meta = json.load(fh)
        if meta.get("version") == VERSION:
            meta["cached"] = True
            return meta
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(os.path.join(root, "pool"))
    os.makedirs(os.path.join(root, "target"))
    t0, c0 = time.perf_counter(), time.process_time()
    vocab = Vocab(seed)
    plan = Plan(vocab, n_docs, seed)
    bounds = list(range(0, n_docs, SHARD_DOCS)) + [n_docs]
    _STATE.update(vocab=vocab, plan=plan)
    jobs = [(seed, i, lo, hi, os.path.join(root, "pool", f"part-{i:05d}.parquet"))
            for i, (lo, hi) in enumerate(zip(bounds, bounds[1:]))]
    processes = processes or min(len(jobs), os.cpu_count() or 1)
    if processes > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(processes) as pool:  # the children inherit vocab and plan
            sizes = pool.map(_write_shard, jobs, chunksize=1)
    else:
        sizes = [_write_shard(j) for j in jobs]
    _STATE.clear()
    # the target: topic-0 documents from their own stream
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng([seed, 0x746172])
    n_t = min(TARGET_DOCS, max(100, n_docs // 20))
    t_len = vocab.lengths(rng, n_t)
    t_text = vocab.text(vocab.tokens(rng, t_len, np.zeros(n_t, np.int8)), t_len)
    pq.write_table(pa.table({"id": pa.array([f"t{i:06d}" for i in range(n_t)]), "text": t_text}),
                   os.path.join(root, "target", "part-00000.parquet"), compression="zstd")
    meta = {"version": VERSION, "docs": n_docs, "seed": seed, "shards": len(jobs), "shard_docs": SHARD_DOCS,
            "text_bytes": int(sum(sizes)), "mean_doc_bytes": sum(sizes) / max(1, n_docs),
            "template_copies": int((plan.template >= 0).sum()), "topics": TOPICS, "target_docs": n_t,
            "target_topic": 0, "vocab": VOCAB, "zipf_a": ZIPF_A, "topic_share": TOPIC_SHARE,
            "edit_max": EDIT_MAX, "pool": os.path.join(root, "pool"), "target": os.path.join(root, "target"),
            "generate_wall_s": time.perf_counter() - t0, "generate_processes": processes,
            "generate_parent_cpu_s": time.process_time() - c0}
    with open(meta_path + ".tmp", "w") as fh:
        json.dump(meta, fh, indent=1)
    os.replace(meta_path + ".tmp", meta_path)
    meta["cached"] = False
    return meta


def subset(n_docs: int, seed: int, data_dir: str, take: int) -> str:
    """The first `take` documents of the corpus (whole shards, then part of one), for references
    too slow to run on all of it; cached beside the corpus. Returns the folder."""
    import pyarrow.parquet as pq

    meta = generate(n_docs, seed, data_dir)
    if take >= n_docs:
        return meta["pool"]
    out = os.path.join(corpus_dir(n_docs, seed, data_dir), f"subset-{take}")
    done = os.path.join(out, ".done")
    if os.path.exists(done):
        return out
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    left, i = take, 0
    while left > 0:
        src = os.path.join(meta["pool"], f"part-{i:05d}.parquet")
        t = pq.read_table(src)
        pq.write_table(t.slice(0, left), os.path.join(out, f"part-{i:05d}.parquet"), compression="zstd",
                       row_group_size=20_000)
        left -= min(left, t.num_rows)
        i += 1
    open(done, "w").close()
    return out


def write_tiny(folder: str, source_shard: str, n: int = 200) -> int:
    """The first n documents of a shard plus near-copies of a quarter of them (the last 40 bytes cut),
    as a one-shard input: a run on it goes through every code path of a large run (candidate pairs,
    verification, clusters) and so measures the fixed start-up, JIT compilation included."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    os.makedirs(folder, exist_ok=True)
    t = pq.ParquetFile(source_shard).read_row_group(0).slice(0, n)
    k = t.slice(0, n // 4)
    copies = k.set_column(k.schema.get_field_index("id"), "id", pc.binary_join_element_wise(k["id"], "c", ""))
    cut = pc.utf8_slice_codeunits(copies["text"], 0, -40)
    copies = copies.set_column(copies.schema.get_field_index("text"), "text", cut)
    pq.write_table(pa.concat_tables([t, copies]), os.path.join(folder, "part-00000.parquet"), compression="zstd")
    return n + n // 4


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    ap.add_argument("--processes", type=int, default=None)
    ap.add_argument("--subset", type=int, default=None, help="also cut the first K documents (meta: subset, subset_docs)")
    ap.add_argument("--tiny", default=None, help="also write the 250-document start-up input to this folder")
    args = ap.parse_args()
    meta = generate(args.docs, args.seed, args.data_dir, args.processes)
    if args.subset is not None:
        meta["subset"] = subset(args.docs, args.seed, args.data_dir, args.subset)
        meta["subset_docs"] = min(args.subset, args.docs)
    if args.tiny:
        meta["tiny"] = args.tiny
        meta["tiny_docs"] = write_tiny(args.tiny, os.path.join(meta["pool"], "part-00000.parquet"))
    json.dump(meta, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
