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
    normalize(): texts with every kind of whitespace (ASCII controls, the separators 0x1C-0x1F,
    Unicode spaces, and U+200B, which is not one) inside and at both ends, mixed case, non-ASCII
    letters (Arrow lowers those), compatibility forms (NFKC folds them), empty and all-space
    texts, in batches that are all-ASCII, mostly ASCII (the non-ASCII documents prepared alone)
    and mostly not (the whole batch prepared)."""
    import pyarrow.compute as pc

    from shardsift.columns import hash_strings

    rng = np.random.default_rng(7)
    pieces = ["Ab", "cD", "x", "ÉTÉ", "İstanbul", "Straße", "日本", "ΣΑΣ", "ｆｕｌｌ", "ﬁne", "Ⅻ", ".", ",!", " ", "  ",
              "\t", "\n", "\r\n", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\xa0", "\u1680", "\u2003", "\u2009",
              "\u202f", "\u205f", "\u3000", "\u2028", "\u2029", "\u200b"]
    texts = ["", " ", "\u3000 \t", "A", "a\x0bb", " \u3000Ab\u2003 ", "\x1c", "a\x1fb"]
    for _ in range(3000):
        texts.append("".join(rng.choice(pieces, size=int(rng.integers(0, 12)))))
    ascii_only = [t for t in texts if t.isascii()]
    mostly_ascii = ascii_only[:400] + [t for t in texts if not t.isascii()][:5]
    for batch in (pa.array(texts, pa.string()), pa.array(ascii_only, pa.large_string()),
                  pa.array(mostly_ascii, pa.large_string()), texts[:50]):
        for kw in ({}, {"lowercase": False}, {"collapse_whitespace": False}, {"strip_punctuation": True},
                   {"lowercase": False, "collapse_whitespace": False}, {"nfkc": True},
                   {"nfkc": True, "strip_punctuation": True}, {"nfkc": True, "collapse_whitespace": False}):
            sel = ExactDedup(**kw)
            h, size = sel.normalized_hashes(batch)
            norm = sel.normalize(pa.array(batch) if isinstance(batch, list) else batch)
            assert h.tolist() == hash_strings(norm).tolist(), kw
            assert size.tolist() == pc.binary_length(norm).to_numpy(zero_copy_only=False).tolist(), kw
    # and normalize()'s whitespace step is Python's str.split(): every Unicode space
    norm = ExactDedup(lowercase=False).normalize(pa.array(texts)).to_pylist()
    assert norm == [" ".join(t.split()) for t in texts]


def test_space_code_points_are_pythons_and_the_ones_arrow_trims():
    """normalize.SPACE_CODE_POINTS is Python's str.isspace() set (what str.split() splits on) and
    exactly what Arrow's utf8_trim_whitespace removes, over every code point; ASCII_SPACES its
    ASCII part."""
    import pyarrow.compute as pc

    from shardsift.selectors.normalize import ASCII_SPACES, SPACE_CODE_POINTS

    cps = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    assert [c for c in cps if chr(c).isspace()] == SPACE_CODE_POINTS.tolist()
    trimmed = pc.utf8_trim_whitespace(pa.array([chr(c) + "a" + chr(c) for c in cps])).to_pylist()
    assert [c for c, s in zip(cps, trimmed) if s == "a"] == SPACE_CODE_POINTS.tolist()
    assert bytes([9, 10, 11, 12, 13, 28, 29, 30, 31, 32]) == ASCII_SPACES


def test_unicode_whitespace_and_nfkc_group_texts(tmp_path):
    """No-break, thin, ideographic spaces, the line separators and 0x1C-0x1F are whitespace like
    any other: texts that differ only there are one group; NFKC (off by default) folds
    compatibility forms as well."""
    shards = [["Hello world", "hello\u00a0world", "ＨＥＬＬＯ\u3000world"],
              ["\u2009hello \u2028\u2009 world\u3000", "hello\x1cworld", "hello\u200bworld"]]
    dec, _, _ = run_global(ExactDedup(), shards, tmp_path)
    assert dec.extra["cluster"].tolist() == [0, 0, 2, 0, 0, 5]  # U+200B is no space; fullwidth without NFKC
    dec, _, _ = run_global(ExactDedup(nfkc=True), shards, tmp_path)
    assert dec.extra["cluster"].tolist() == [0, 0, 0, 0, 0, 5]
    dec, _, _ = run_global(ExactDedup(collapse_whitespace=False), shards, tmp_path)
    assert dec.keep.all()


def test_duplicate_of_names_the_survivor(tmp_path):
    """Every dropped document names its group's survivor by input shard and row; -1 for kept
    documents; the survivor follows ``keep``."""
    shards = [["a b", "other", "x y"], ["A  B", "x  y!", "a b"], ["X Y", "a b c"]]
    dec, scores, _ = run_global(ExactDedup(), shards, tmp_path)
    assert dec.keep.tolist() == [True, True, True, False, True, False, False, True]
    assert dec.extra["duplicate_of_shard"].tolist() == [-1, -1, -1, 0, -1, 0, 0, -1]
    assert dec.extra["duplicate_of_row"].tolist() == [-1, -1, -1, 0, -1, 0, 2, -1]
    assert dec.extra["duplicate_of_shard"].dtype == np.int32 and dec.extra["duplicate_of_row"].dtype == np.int64
    dec, _, _ = run_global(ExactDedup(keep="longest"), shards, tmp_path)  # "A  B" is longest: shard 1 row 0
    assert dec.keep.tolist() == [False, True, True, True, True, False, False, True]
    assert dec.extra["duplicate_of_shard"].tolist() == [1, -1, -1, -1, -1, 1, 0, -1]
    assert dec.extra["duplicate_of_row"].tolist() == [0, -1, -1, -1, -1, 0, 2, -1]
