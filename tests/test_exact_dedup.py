"""exact_dedup: normalized hashes against Arrow's normalization, groups, keep policies."""
import numpy as np
import pyarrow as pa
from dedup_fakes import run_global

from shardsift.selectors.exact import ExactDedup
from shardsift.selectors.keep_policy import size_histogram


def test_size_histogram():
    assert size_histogram(np.array([1, 2, 2, 3, 4, 5, 9, 17])) == {"2": 2, "3-4": 2, "5-8": 1, "9-16": 1,
                                                                   "17-32": 1}


def test_exact_dedup_normalized(tmp_path):
    shards = [["Hello  World", "other text", "x"], ["hello world ", "Other text!", "HELLO\nWORLD"]]
    dec, _, _ = run_global(ExactDedup(), shards, tmp_path)
    assert dec.keep.tolist() == [True, True, True, False, True, False]
    assert dec.extra["cluster"].tolist() == [0, 1, 2, 0, 4, 0]
    assert dec.metrics["groups"] == 1 and dec.metrics["docs_removed"] == 2
    dec, _, _ = run_global(ExactDedup(strip_punctuation=True, keep="longest"), shards, tmp_path)
    assert dec.keep.tolist() == [True, False, True, False, True, False]  # byte-length tie: first
    dec, _, _ = run_global(ExactDedup(lowercase=False, collapse_whitespace=False), shards, tmp_path)
    assert dec.keep.all()


def test_exact_dedup_hashes_equal_arrows_normalization_of_every_text():
    """The one-pass kernel gives, for every option, the hash and byte length of Arrow's
    normalize(): texts with every kind of whitespace (RE2's \\s, \\v, the other control and Unicode
    spaces) inside and at both ends, mixed case, non-ASCII letters (Arrow lowers those), empty and
    all-space texts, in batches that are all-ASCII and mixed."""
    import pyarrow.compute as pc

    from shardsift.columns import hash_strings

    rng = np.random.default_rng(7)
    pieces = ["Ab", "cD", "x", "ÉTÉ", "İstanbul", "Straße", "日本", "ΣΑΣ", ".", ",!", " ", "  ", "\t", "\n", "\r\n",
              "\x0b", "\x0c", "\x1c", "\x85", "\xa0", "\u2003", "\u3000", "\u2028", "\u200b"]
    texts = ["", " ", "\u3000 \t", "A", "a\x0bb", " \u3000Ab\u2003 "]
    for _ in range(3000):
        texts.append("".join(rng.choice(pieces, size=int(rng.integers(0, 12)))))
    ascii_only = [t for t in texts if t.isascii()]
    for batch in (pa.array(texts, pa.string()), pa.array(ascii_only, pa.large_string()), texts[:50]):
        for kw in ({}, {"lowercase": False}, {"collapse_whitespace": False}, {"strip_punctuation": True},
                   {"lowercase": False, "collapse_whitespace": False}):
            sel = ExactDedup(**kw)
            h, size = sel.normalized_hashes(batch)
            norm = sel.normalize(pa.array(batch) if isinstance(batch, list) else batch)
            assert h.tolist() == hash_strings(norm).tolist(), kw
            assert size.tolist() == pc.binary_length(norm).to_numpy(zero_copy_only=False).tolist(), kw


def test_trimmed_code_points_are_the_ones_arrow_trims():
    """text.TRIM_CODE_POINTS (Python's isspace set) is exactly what Arrow's utf8_trim_whitespace
    removes, over every code point."""
    import pyarrow.compute as pc

    from shardsift.text import TRIM_CODE_POINTS

    cps = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    trimmed = pc.utf8_trim_whitespace(pa.array([chr(c) + "a" + chr(c) for c in cps])).to_pylist()
    assert [c for c, s in zip(cps, trimmed) if s == "a"] == TRIM_CODE_POINTS.tolist()
