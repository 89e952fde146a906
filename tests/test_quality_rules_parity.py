"""The four web-text rule filters against datatrove 0.10.1's on generated and real documents.

Both sides split words on whitespace and sentences after '.', '!' or '?' followed by whitespace
(datatrove's own tokenizer needs spaCy): see tests/quality_reference.py. Agreement is asserted on
at least 99% of documents, for keep/drop and for the rule that dropped a document.
"""
import glob
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import corpora_path
from quality_reference import reference_decisions, reference_filters, web_like_texts
from test_quality_rules import as_docs

from shardsift.selectors import resolve

pytest.importorskip("datatrove", reason="datatrove (the reference) is not installed: pip install datatrove==0.10.1")

NAMES = ("gopher_quality", "gopher_repetition", "c4_quality", "fineweb_quality")


def pool_sample(n: int, seed: int = 0) -> list[str]:
    files = sorted(glob.glob(os.path.join(corpora_path("pool"), "*.parquet")))
    if not files:
        pytest.skip("no Parquet shards in ../shared/corpora/pool")
    texts = pa.concat_arrays([pq.read_table(f, columns=["text"]).column("text").combine_chunks()
                              for f in files])
    rows = np.sort(np.random.default_rng(seed).choice(len(texts), size=min(n, len(texts)), replace=False))
    return [t for t in texts.take(pa.array(rows)).to_pylist() if t is not None]


def agreement(texts: list[str]) -> dict:
    refs = reference_filters()
    docs = as_docs(texts)
    out = {}
    for name in NAMES:
        flt = resolve(name)()
        flt.setup()
        dec = flt.keep(docs)
        keep, reasons = reference_decisions(name, refs[name], texts)
        out[name] = (np.mean(dec.keep == np.array(keep)), np.mean(dec.reason == np.array(reasons)),
                     float(np.mean(keep)))
    return out


def check(result: dict) -> None:
    for name, (keep_agree, reason_agree, ref_kept) in result.items():
        assert 0.05 < ref_kept < 0.95, f"{name}: the sample keeps {ref_kept:.0%}, it tests too little"
        assert keep_agree >= 0.99, f"{name}: keep/drop agrees on {keep_agree:.2%} of documents"
        assert reason_agree >= 0.99, f"{name}: the dropping rule agrees on {reason_agree:.2%} of documents"


def test_parity_on_generated_web_text():
    check(agreement(web_like_texts(2000, seed=7)))


def test_parity_on_the_shared_pool():
    check(agreement(pool_sample(2500)))
