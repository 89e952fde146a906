"""Columnar helpers over Arrow buffers, without numba: string buffers as NumPy, word counts,
byte lengths, id hashes, and NumPy arrays as Arrow arrays.

The scan and the document-scope built-ins need only these, so a run of them never loads numba;
the tokenizing kernels of :mod:`shardsift.text` build on the same buffers. Hashes are FNV-1a 64
over a string's bytes followed by the splitmix64 finaliser: stable across processes, machines and
Python versions (unlike the salted built-in ``hash``).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_BLOCK = 1 << 18          # bytes of text per word-count block: the temporaries stay in cache


def one_array(col) -> pa.Array:
    """A column as one Arrow array: its only chunk as it is (combine_chunks copies even that one)."""
    if isinstance(col, pa.ChunkedArray):
        return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
    return col


def string_buffers(arr) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(offsets int64[n+1], data uint8, valid bool[n] or None) of a string array, without copying text."""
    arr = one_array(arr)
    if pa.types.is_string(arr.type) or pa.types.is_binary(arr.type):
        width, dtype = 4, np.int32
    else:
        if not (pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type)):
            arr = arr.cast(pa.large_string())
        width, dtype = 8, np.int64
    bufs = arr.buffers()
    n = len(arr)
    offsets = np.frombuffer(bufs[1], dtype=dtype, count=n + 1, offset=arr.offset * width).astype(
        np.int64, copy=False)  # int32 offsets widen (a copy of the offsets, never of the text)
    data = np.zeros(0, dtype=np.uint8) if bufs[2] is None else np.frombuffer(bufs[2], dtype=np.uint8)
    valid = None
    if arr.null_count:
        valid = valid_mask(arr)
    return offsets, data, valid


def spans(arr) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(starts int64[n], ends int64[n], data uint8) of a string array, without copying the text;
    null entries come out as empty spans."""
    offsets, data, valid = string_buffers(arr)
    starts, ends = offsets[:-1], offsets[1:]
    if valid is not None:
        ends = ends.copy()
        ends[~valid] = starts[~valid]
    return starts, ends, data


def byte_lengths(arr) -> np.ndarray:
    """UTF-8 byte length per string (0 for nulls), from the offsets alone."""
    off, _, valid = string_buffers(arr)
    out = np.diff(off)
    if valid is not None:
        out[~valid] = 0
    return out


def _space(data: np.ndarray, out: np.ndarray, tmp: np.ndarray, low: np.ndarray) -> None:
    """out[i] = data[i] is ASCII whitespace (space, \\t \\n \\v \\f \\r), as every whitespace tokenizer of shardsift.text.
    ``tmp`` (uint8) and ``low`` (bool) are scratch of data's length."""
    np.equal(data, 32, out=out)
    np.subtract(data, np.uint8(9), out=tmp)  # wraps below 9: only 9..13 land in 0..4
    np.less(tmp, 5, out=low)
    out |= low


def count_words(arr) -> np.ndarray:
    """Whitespace-separated word count per string (0 for nulls): the manifest's words.

    A word starts at a non-space byte whose previous byte is a space or which starts its string.
    The starts are counted over the whole buffer with packed bits and a popcount prefix sum, then
    read off at the string boundaries; strings that start mid-word of the previous string (no
    space between them in the buffer) get their first word added back.
    """
    off, data, valid = string_buffers(arr)
    n = len(off) - 1
    if n == 0:
        return np.zeros(0, np.int64)
    lo, hi = int(off[0]), int(off[-1])
    total = hi - lo
    # bit i of `bits` (little-endian, 64 per word): a word starts at byte lo + i
    bits = np.zeros((total + 63) // 64 + 1, dtype=np.uint64)
    as_bytes = bits.view(np.uint8)
    size = min(total, _BLOCK)
    space = np.empty(size + 1, dtype=bool)
    start = np.empty(size, dtype=bool)
    tmp = np.empty(size, dtype=np.uint8)
    low = np.empty(size, dtype=bool)
    for b0 in range(0, total, _BLOCK):  # _BLOCK is a multiple of 64: blocks fill whole words
        b1 = min(total, b0 + _BLOCK)
        m = b1 - b0
        chunk = data[lo + b0:lo + b1]
        space[0] = True if b0 == 0 else _is_space_byte(data[lo + b0 - 1])
        sp = space[1:m + 1]
        _space(chunk, sp, tmp[:m], low[:m])
        np.greater(space[:m], sp, out=start[:m])       # a space, then a non-space: a word starts
        packed = np.packbits(start[:m], bitorder="little")
        as_bytes[b0 // 8:b0 // 8 + len(packed)] = packed
    prefix = np.zeros(len(bits) + 1, np.int64)
    np.cumsum(np.bitwise_count(bits), out=prefix[1:])
    pos = off - lo  # word starts before pos: whole words, then the low bits of the partial word
    w, r = pos >> 6, (pos & 63).astype(np.uint64)
    low = bits[w] & ((np.uint64(1) << r) - np.uint64(1))
    out = np.diff(prefix[w] + np.bitwise_count(low))
    # a non-empty string whose first byte is a non-space preceded by a non-space byte of the
    # previous string: its first word was not counted as a start
    s0, e0 = off[:-1], off[1:]
    cand = (e0 > s0) & (s0 > lo)
    if cand.any():
        idx = np.flatnonzero(cand)
        first = data[s0[idx]]
        prev = data[s0[idx] - 1]
        fix = ~_space_array(first) & ~_space_array(prev)
        out[idx[fix]] += 1
    if valid is not None:
        out[~valid] = 0
    return out


def _is_space_byte(b) -> bool:
    b = int(b)
    return b == 32 or 9 <= b <= 13


def _space_array(b: np.ndarray) -> np.ndarray:
    out = np.empty(len(b), dtype=bool)
    _space(b, out, np.empty(len(b), dtype=np.uint8), np.empty(len(b), dtype=bool))
    return out


def hash_strings(arr) -> np.ndarray:
    """FNV-1a 64 + splitmix64 finaliser per string (nulls hash as empty): ids and seeded draws.

    Vectorised across strings, one step per byte position: strings are taken longest first, so the
    strings still going at position k are a prefix of that order (ids are short; a long string
    costs one NumPy step per byte of its length).
    """
    off, data, valid = string_buffers(arr)
    n = len(off) - 1
    starts = off[:-1]
    lens = np.diff(off)
    if valid is not None:
        lens[~valid] = 0
    order = np.argsort(-lens, kind="stable")
    s_sorted = starts[order]
    l_sorted = lens[order]
    h = np.full(n, _FNV_OFFSET, dtype=np.uint64)
    maxlen = int(l_sorted[0]) if n else 0
    # alive[k] = how many strings are longer than k
    alive = np.searchsorted(-l_sorted, -np.arange(maxlen), side="left")
    for k in range(maxlen):
        m = int(alive[k])
        hk = h[:m]
        hk ^= data[s_sorted[:m] + k].astype(np.uint64)
        hk *= _FNV_PRIME
    h = mix64(h)
    out = np.empty(n, dtype=np.uint64)
    out[order] = h
    return out


def mix64(h):
    """The splitmix64 finaliser, on a uint64 array (a new array) or, compiled by numba in
    :mod:`shardsift.text`, on one uint64: the same source for both."""
    h = h ^ (h >> np.uint64(30))
    h = h * np.uint64(0xBF58476D1CE4E5B9)
    h = h ^ (h >> np.uint64(27))
    h = h * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


# -- NumPy to Arrow without pa.array ----------------------------------------------------------
# pa.array() asks pyarrow's pandas shim whether its argument is a pandas object, and the shim
# imports pandas to find out: about 0.3 CPU-s, the first time, in a process that never needs
# pandas. These build the same arrays from buffers.

_ARROW_TYPES = {np.dtype(np.int8): pa.int8(), np.dtype(np.int16): pa.int16(), np.dtype(np.int32): pa.int32(),
                np.dtype(np.int64): pa.int64(), np.dtype(np.uint8): pa.uint8(), np.dtype(np.uint16): pa.uint16(),
                np.dtype(np.uint32): pa.uint32(), np.dtype(np.uint64): pa.uint64(),
                np.dtype(np.float32): pa.float32(), np.dtype(np.float64): pa.float64()}


def _bitmap(values: np.ndarray) -> pa.Buffer:
    return pa.py_buffer(np.packbits(np.asarray(values, dtype=bool), bitorder="little"))


def arrow_array(values: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    """A bool or numeric NumPy array as an Arrow array (null where ``mask`` is True), like pa.array."""
    values = np.asarray(values)
    n = len(values)
    validity = None if mask is None or not np.asarray(mask).any() else _bitmap(~np.asarray(mask, dtype=bool))
    if values.dtype == bool:
        return pa.Array.from_buffers(pa.bool_(), n, [validity, _bitmap(values)])
    typ = _ARROW_TYPES.get(values.dtype)
    if typ is None:
        raise TypeError(f"arrow_array: unsupported dtype {values.dtype}")
    return pa.Array.from_buffers(typ, n, [validity, pa.py_buffer(np.ascontiguousarray(values))])


def any_arrow_array(values: np.ndarray) -> pa.Array:
    """A NumPy array as an Arrow array: arrow_array for a bool or numeric vector, else pa.array
    (rows of a 2-D array become lists)."""
    if values.ndim == 1 and (values.dtype == bool or values.dtype in _ARROW_TYPES):
        return arrow_array(values)
    return pa.array(list(values)) if values.ndim > 1 else pa.array(values)


def arrow_strings(values) -> pa.Array:
    """Python strings (None: null) as an Arrow string array, like pa.array(values, pa.string()).

    For short lists (dictionaries of reason and stage names); a column of many strings should come
    from Arrow already."""
    values = list(values)
    nulls = np.array([v is None for v in values], dtype=bool)
    encoded = [b"" if v is None else str(v).encode("utf-8") for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    offsets[1:] = np.cumsum(np.array([len(b) for b in encoded], dtype=np.int64))
    validity = _bitmap(~nulls) if nulls.any() else None
    return pa.Array.from_buffers(pa.string(), len(encoded),
                                 [validity, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))])


def arrow_call(name: str, *args):
    """Arrow's compute function ``name`` on ``args`` (arrays, tables, scalars)."""
    import pyarrow.compute as pc

    return pc.call_function(name, list(args))


def arrow_filter(values, mask):
    """``values.filter(mask)`` (a table, record batch or array; mask: a boolean Arrow array),
    nulls in the mask dropping their rows as Table.filter's default does."""
    return arrow_call("filter", values, mask)


def arrow_take(values, indices):
    """``values.take(indices)`` (indices: an integer Arrow array)."""
    return arrow_call("take", values, indices)


def valid_mask(arr) -> np.ndarray:
    """bool[n], True where an entry is not null, read off the validity bitmap (Array.is_valid
    imports pyarrow.compute). For arrays whose first buffer is their validity bitmap: strings,
    binaries, numbers, booleans."""
    n = len(arr)
    if arr.null_count == 0:  # a chunked column too: no per-chunk masks to join
        return np.ones(n, dtype=bool)
    if isinstance(arr, pa.ChunkedArray):
        return np.concatenate([valid_mask(c) for c in arr.chunks])
    if arr.null_count == n:
        return np.zeros(n, dtype=bool)
    bits = np.frombuffer(arr.buffers()[0], dtype=np.uint8)
    return np.unpackbits(bits, count=arr.offset + n, bitorder="little")[arr.offset:].astype(bool)
