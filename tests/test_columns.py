"""The columnar helpers of shardsift.columns against plain references: str.split for word counts,
a pure-Python FNV-1a for id hashes, and pyarrow's own constructors and compute functions.

The scan's word counts feed the manifest and the `length` selector, and its id hashes find
duplicate ids and seed every draw: they must be exact."""
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from fnv import fnv1a64
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shardsift import columns as kernels

_SPACE = " \t\n\x0b\x0c\r"


def ascii_words(s) -> int:
    """Words split on ASCII whitespace only, as the scan counts them."""
    return len([w for w in "".join(" " if c in _SPACE else c for c in (s or "")).split(" ") if w])

# bytes that matter to word splitting: every ASCII whitespace, its neighbours, and multi-byte UTF-8
PIECES = [" ", "\t", "\n", "\x0b", "\x0c", "\r", "\x08", "\x0e", "\x1f", "!", "a", "Zz", "é", "日本", "  ", "\u00a0"]
doc = st.one_of(st.none(), st.lists(st.sampled_from(PIECES), max_size=40).map("".join), st.text(max_size=30))


def as_array(docs, large, cut):
    arr = pa.array(docs, pa.large_string() if large else pa.string())
    if cut and len(arr) > 2:
        arr = arr.slice(1, len(arr) - 2)  # a non-zero array offset, and bytes before and after it
    return arr


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(doc, max_size=30), st.booleans(), st.booleans())
def test_counts_lengths_and_hashes_match_the_references(docs, large, cut):
    arr = as_array(docs, large, cut)
    values = arr.to_pylist()
    assert kernels.count_words(arr).tolist() == [ascii_words(s) for s in values]
    want = [fnv1a64((s or "").encode()) for s in values]
    got = kernels.hash_strings(arr)
    assert got.dtype == np.uint64 and [int(x) for x in got] == want
    want = pc.binary_length(arr).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    got = kernels.byte_lengths(arr)
    assert got.dtype == np.int64 and np.array_equal(got, want)


@pytest.mark.parametrize("block", [64, 128, 192])
def test_word_counts_across_block_boundaries(monkeypatch, block):
    monkeypatch.setattr(kernels, "_BLOCK", block)
    rng = np.random.default_rng(block)
    for _ in range(50):
        docs = ["".join(rng.choice(PIECES, int(rng.integers(0, 80)))) for _ in range(int(rng.integers(1, 20)))]
        arr = pa.array(docs)
        assert kernels.count_words(arr).tolist() == [ascii_words(s) for s in docs]


def test_word_count_of_a_large_buffer_and_known_values():
    arr = pa.array(["", " ", "one", " two  words ", "a\tb\nc\x0bd\x0ce\rf", "x" * 300_000 + " y"] * 40)
    assert kernels.count_words(arr)[:6].tolist() == [0, 0, 1, 2, 6, 2]
    assert kernels.count_words(arr).tolist() == [ascii_words(s) for s in arr.to_pylist()]


def test_long_strings_hash_like_the_reference():
    docs = ["k" * 5000, "short", None, "é" * 3000]
    assert [int(x) for x in kernels.hash_strings(pa.array(docs))] == [fnv1a64((s or "").encode()) for s in docs]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(-2**31, 2**31 - 1), st.booleans()), max_size=40),
       st.sampled_from([np.int16, np.int32, np.int64, np.uint64, np.float64, bool]))
def test_arrow_array_equals_pa_array(items, dtype):
    values = np.array([v for v, _ in items], dtype=np.int64).astype(dtype)
    mask = np.array([m for _, m in items], dtype=bool)
    assert kernels.arrow_array(values).equals(pa.array(values))
    assert kernels.arrow_array(values, mask=mask).equals(pa.array(values, mask=mask))


def test_arrow_strings_equals_pa_array():
    for values in ([], ["read", "length", "length"], ["é", None, ""], [None]):
        got = kernels.arrow_strings(values)
        got.validate(full=True)
        assert got.equals(pa.array(values, pa.string()))


@settings(max_examples=100, deadline=None)
@given(st.lists(doc, max_size=30), st.booleans(), st.booleans(), st.integers(1, 4))
def test_valid_mask_filter_and_take_equal_arrows_own(docs, large, cut, n_chunks):
    """The helpers give what Arrow's own methods give, sliced arrays and chunked columns included."""
    arr = as_array(docs, large, cut)
    assert np.array_equal(kernels.valid_mask(arr), arr.is_valid().to_numpy(zero_copy_only=False))
    bounds = np.linspace(0, len(arr), n_chunks + 1).astype(int)
    chunked = pa.chunked_array([arr.slice(a, b - a) for a, b in zip(bounds[:-1], bounds[1:])], arr.type)
    assert np.array_equal(kernels.valid_mask(chunked), kernels.valid_mask(arr))
    rng = np.random.default_rng(len(docs))
    mask = kernels.arrow_array(rng.random(len(arr)) < 0.5)
    table = pa.table({"text": chunked, "n": pa.array(np.arange(len(arr)))})
    assert kernels.arrow_filter(table, mask).equals(table.filter(mask))
    assert kernels.arrow_filter(arr, mask).equals(arr.filter(mask))
    idx = kernels.arrow_array(rng.integers(0, max(1, len(arr)), len(arr) and 7).astype(np.int32))
    assert kernels.arrow_take(arr, idx).equals(arr.take(idx))


def test_any_arrow_array_equals_pa_array():
    for values in (np.array([3, 1, 2], np.int32), np.array([True, False]), np.array([0.5], np.float32),
                   np.array(["a", "b"]), np.arange(6, dtype=np.int64).reshape(3, 2)):
        want = pa.array(list(values)) if values.ndim > 1 else pa.array(values)
        assert kernels.any_arrow_array(values).equals(want), values
