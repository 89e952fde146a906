"""SemDeDup on the real pool: how many of the pairs it removes are near-duplicates by a measure it
never sees, how many documents it removes, and the domain mix it leaves.

Pairs: each dropped document and the kept document it records as ``duplicate_of``. A pair counts as
a near-duplicate when its word 5-gram Jaccard is >= 0.5 or its cosine is >= 0.9 in a held-out
embedding (scikit-learn word TF-IDF, fitted on 8,000 pool documents cut to 5,000 characters, + 128-d
SVD). Domain entropy: Shannon entropy of the pool's ``domain`` column (read here only) over the kept
documents. The last row runs ``configs/diversity.yaml``'s stages through the runner on the pool.

    PYTHONPATH=. python bench/bench_semdedup_pool.py [--docs N]   -> bench/figures/semdedup_pool.json
"""
from __future__ import annotations

import argparse
import copy
import glob
import os
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import FIGURES, ROOT, corpora, save  # noqa: E402

from shardsift.api import Docs, Scores  # noqa: E402
from shardsift.columns import count_words  # noqa: E402
from shardsift.selectors.diversity import SemDeDup  # noqa: E402

# (label, dim, k, eps, lexical); the row marked default is the selector's default
SETTINGS = [
    ("eps 0.1, no pair check", 256, 128, 0.1, 0.0),
    ("eps 0.05, no pair check", 256, 128, 0.05, 0.0),
    ("eps 0.02, no pair check", 256, 128, 0.02, 0.0),
    ("dim 512, eps 0.05, no pair check", 512, 128, 0.05, 0.0),
    ("eps 0.1, pair check 0.6 (default)", 256, 128, 0.1, 0.6),
    ("eps 0.1, pair check 0.5", 256, 128, 0.1, 0.5),
    ("eps 0.15, pair check 0.5", 256, 128, 0.15, 0.5),
    ("eps 0.1, pair check 0.4", 256, 128, 0.1, 0.4),
    ("k 16 (diversity.yaml), eps 0.1, pair check 0.6", 256, 16, 0.1, 0.6),
]


def load_pool(n_docs: int | None):
    files = sorted(glob.glob(os.path.join(corpora("pool"), "*.parquet")))
    tbl = pa.concat_tables([pq.read_table(f, columns=["id", "text", "domain"]) for f in files]).combine_chunks()
    if n_docs and n_docs < len(tbl):  # a seeded subset, in pool order
        tbl = tbl.take(pa.array(np.sort(np.random.default_rng(5).choice(len(tbl), n_docs, replace=False))))
    return tbl


class _Fit:
    def __init__(self, docs, seed):
        self.docs, self.seed, self.work_dir, self.workers, self.n_docs = docs, seed, None, 1, len(docs)

    def sample(self, n, columns=()):
        if n >= len(self.docs):
            return self.docs
        idx = np.sort(np.random.default_rng([self.seed, 7]).choice(len(self.docs), n, replace=False))
        d = self.docs
        return Docs(d.table.take(pa.array(idx)), text_column="text", id_column="id", row=d.row[idx],
                    n_words=d.n_words[idx], n_bytes=d.n_bytes[idx], shard="<sample>", shard_index=-1)


class _Decide:
    def __init__(self, docs, seed):
        self.docs, self.seed, self.work_dir, self.workers = docs, seed, None, 1

    def read_texts(self, shard_index, rows):
        yield self.docs.text.take(pa.array(rows)), np.arange(len(rows))


def semdedup_direct(tbl, seed=0, **params):
    """The selector's setup, fit, score and global decide in-process, the pool as one shard."""
    text = tbl.column("text")
    docs = Docs(tbl, text_column="text", id_column="id", row=np.arange(len(tbl), dtype=np.int64),
                n_words=count_words(text), n_bytes=np.asarray(pc.binary_length(text).to_numpy(), np.int64),
                shard="pool", shard_index=0)
    sel = SemDeDup(heldout_sample=0, **params)
    sel.setup()
    t0 = time.process_time()
    sel.fit(_Fit(docs, seed))
    cols = sel.score(docs)
    scores = Scores({**cols, "row": docs.row, "n_words": docs.n_words, "n_bytes": docs.n_bytes},
                    np.array([0, len(tbl)]), ["pool"])
    return sel, scores, _Decide(docs, seed), time.process_time() - t0


def heldout_embedding(texts: list[str]) -> np.ndarray:
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    texts = [t[:5000] for t in texts]
    fit = np.random.default_rng(12345).choice(len(texts), min(8000, len(texts)), replace=False)
    vec = TfidfVectorizer(sublinear_tf=True, min_df=2, max_features=50000, dtype=np.float32)
    vec.fit([texts[i] for i in fit])
    x = vec.transform(texts)
    svd = TruncatedSVD(128, random_state=0, algorithm="randomized", n_iter=4).fit(x[fit])
    return normalize(svd.transform(x)).astype(np.float32)


def shingles(text: str) -> set:
    w = text.lower().split()
    return {" ".join(w[i:i + 5]) for i in range(max(1, len(w) - 4))}


def pair_precision(texts, held, a, b) -> dict:
    """Share of pairs (a[i], b[i]) that are near-duplicates by 5-gram Jaccard or held-out cosine."""
    if len(a) == 0:
        return {"pairs": 0, "precision": None}
    cos = (held[a] * held[b]).sum(axis=1)
    jac = np.array([len((sa := shingles(texts[i])) & (sb := shingles(texts[j]))) / max(1, len(sa | sb))
                    for i, j in zip(a, b)])
    near = (jac >= 0.5) | (cos >= 0.9)
    return {"pairs": len(a), "precision": round(float(near.mean()), 4),
            "by_jaccard": round(float((jac >= 0.5).mean()), 4), "by_heldout_cosine": round(float((cos >= 0.9).mean()), 4)}


def entropy(labels) -> float:
    _, c = np.unique(labels, return_counts=True)
    p = c / c.sum()
    return float(-(p * np.log(p)).sum())


def diversity_yaml_entropy(pool_dir: str, domain_of: dict, stages=None) -> dict:
    """Run configs/diversity.yaml's stages on the pool through the runner; domain entropy in and kept."""
    from shardsift.engine.runner import run_pipeline

    with open(os.path.join(ROOT, "configs", "diversity.yaml")) as fh:
        cfg = yaml.safe_load(fh)
    with tempfile.TemporaryDirectory() as out:
        run = {"input": {"path": pool_dir, "text_column": "text", "id_column": "id"},
               "output": {"path": out, "scores": False}, "workers": 2, "seed": cfg.get("seed", 0),
               "stages": copy.deepcopy(stages or cfg["stages"])}
        t0 = time.time()
        man = run_pipeline(run)
        kept = pq.read_table(os.path.join(out, "data"), columns=["id"]).column("id").to_pylist()
    dom_in = np.array(list(domain_of.values()))
    return {"stages": run["stages"], "docs_in": len(dom_in), "kept": len(kept),
            "entropy_in": round(entropy(dom_in), 4), "entropy_kept": round(entropy([domain_of[i] for i in kept]), 4),
            "per_stage_kept": [s["kept"] for s in man["stages"]], "wall_s": round(time.time() - t0, 1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=None, help="a seeded subset of the pool (default: all)")
    ap.add_argument("--no-yaml", action="store_true", help="skip the configs/diversity.yaml run")
    args = ap.parse_args()
    t0 = time.time()
    tbl = load_pool(args.docs)
    texts = tbl.column("text").to_pylist()
    domain = np.array(tbl.column("domain").to_pylist())
    print(f"start-up: {len(tbl)} docs loaded in {time.time() - t0:.1f}s", flush=True)
    held = heldout_embedding(texts)
    rows, fitted = [], {}
    for label, dim, k, eps, lexical in SETTINGS:
        key = (dim, k)
        if key not in fitted:
            fitted[key] = semdedup_direct(tbl, dim=dim, k=k)
        sel, scores, ctx, fit_score_cpu = fitted[key]
        sel.eps, sel.lexical = eps, lexical
        c0 = time.process_time()
        dec = sel.decide(scores, ctx)
        decide_cpu = time.process_time() - c0
        drop = np.flatnonzero(~dec.keep)
        of = dec.extra["duplicate_of_row"][drop]
        row = {"setting": label, "dim": dim, "k": k, "eps": eps, "lexical": lexical, "removed": len(drop),
               **pair_precision(texts, held, drop, of), "entropy_in": round(entropy(domain), 4),
               "entropy_kept": round(entropy(domain[dec.keep]), 4),
               "docs_per_cpu_s": round(len(tbl) / (fit_score_cpu + decide_cpu), 1)}
        rows.append(row)
        print(row, flush=True)
    result = {"docs": len(tbl), "settings": rows,
              "measure": "pair = (dropped, duplicate_of); near-duplicate = word 5-gram Jaccard >= 0.5 or "
                         "held-out word TF-IDF + 128-d SVD cosine >= 0.9"}
    if not args.no_yaml and not args.docs:
        result["diversity_yaml"] = diversity_yaml_entropy(corpora("pool"), dict(zip(tbl.column("id").to_pylist(), domain)))
        print(result["diversity_yaml"], flush=True)
    print("wrote", save("semdedup_pool", result, FIGURES))


if __name__ == "__main__":
    main()
